/**
 * Decoders are pure functions over untrusted input: whatever arrives (a broken bootstrap, a
 * malformed xDS resource) they must report issues and never throw. Bounded property runs over
 * arbitrary JSON and over valid resources with random subtrees replaced.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeBootstrap } from '../../proxy/config/bootstrap';
import {
  decodeCluster,
  decodeClusterLoadAssignment,
  decodeListener,
  decodeRouteConfiguration,
  decodeSecret,
} from '../../proxy/config/envoy';
import { ConfigError } from '../../common/errors';
import { ctx, listener, staticCluster } from './helpers';

const decoders = [decodeListener, decodeRouteConfiguration, decodeCluster, decodeClusterLoadAssignment, decodeSecret];

/** Every (path, parent, key) of a JSON tree, so a property can replace one subtree. */
function slots(v: unknown, out: [Record<string, unknown> | unknown[], string | number][] = []): typeof out {
  if (Array.isArray(v))
    v.forEach((x, i) => {
      out.push([v, i]);
      slots(x, out);
    });
  else if (v && typeof v === 'object')
    for (const [k, x] of Object.entries(v)) {
      out.push([v as Record<string, unknown>, k]);
      slots(x, out);
    }
  return out;
}

function mutate(base: unknown, pick: number, replacement: unknown): unknown {
  const copy = structuredClone(base);
  const all = slots(copy);
  if (all.length === 0) return copy;
  const [parent, key] = all[pick % all.length]!;
  (parent as Record<string | number, unknown>)[key] = replacement;
  return copy;
}

describe('decoders never throw', () => {
  it('on arbitrary JSON', () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 4 }), (raw) => {
        for (const d of decoders) {
          const res = d(raw, ctx());
          expect(res.value === undefined || res.errors.length === 0).toBe(true);
        }
      }),
      { numRuns: 300 },
    );
  });

  it('on valid resources with one subtree replaced by arbitrary JSON', () => {
    const bases: [unknown, (typeof decoders)[number]][] = [
      [listener(), decodeListener],
      [
        staticCluster('c', {
          health_checks: [
            {
              timeout: '1s',
              interval: '1s',
              unhealthy_threshold: 1,
              healthy_threshold: 1,
              http_health_check: { path: '/' },
            },
          ],
        }),
        decodeCluster,
      ],
    ];
    fc.assert(
      fc.property(fc.nat(), fc.jsonValue({ maxDepth: 3 }), fc.nat(bases.length - 1), (pick, replacement, which) => {
        const [base, decode] = bases[which]!;
        const res = decode(mutate(base, pick, replacement), ctx());
        expect(Array.isArray(res.errors)).toBe(true);
      }),
      { numRuns: 500 },
    );
  });

  it('the bootstrap loader throws only ConfigError', () => {
    const base = {
      static_resources: { clusters: [staticCluster('service1')], listeners: [listener()] },
      dynamic_resources: { cds_config: { ads: {} } },
    };
    fc.assert(
      fc.property(fc.nat(), fc.jsonValue({ maxDepth: 3 }), (pick, replacement) => {
        try {
          decodeBootstrap(mutate(base, pick, replacement), ctx());
        } catch (e) {
          expect(e).toBeInstanceOf(ConfigError);
        }
      }),
      { numRuns: 300 },
    );
  });
});
