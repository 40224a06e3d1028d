/**
 * Fuzzing the bootstrap path an operator's file takes: text (YAML or JSON) → parseBootstrapText →
 * decodeBootstrap. Whatever the input — random JSON, a realistic bootstrap with random subtrees
 * replaced or removed, YAML-ish text assembled from anchors, aliases, merge keys, tags, flow
 * collections and garbage — the only error that may escape is a ConfigError listing at least one
 * issue with a path and a message. Plus the classic YAML attack: an alias expansion bomb.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeBootstrap, parseBootstrapText } from '../../proxy/config/bootstrap';
import { ConfigError } from '../../common/errors';
import { createRegistries } from '../../proxy/registry';
import { bootstrap, httpListener, routes, staticCluster, tcpListener } from '../support/meshlet';
import { params, timeoutFor } from './params';

const ctx = { httpFilters: createRegistries().httpFilters };

/** Run `fn`; it may return, or throw a ConfigError with issues; anything else fails. */
function onlyConfigError(fn: () => unknown): 'ok' | 'config-error' {
  try {
    fn();
    return 'ok';
  } catch (err) {
    if (!(err instanceof ConfigError)) throw new Error(`escaped a non-ConfigError: ${(err as Error)?.constructor?.name}: ${(err as Error)?.message}`);
    expect(err.issues.length).toBeGreaterThan(0);
    for (const i of err.issues) {
      expect(typeof i.path).toBe('string');
      expect(i.message.length).toBeGreaterThan(0);
    }
    return 'config-error';
  }
}

const SEED = bootstrap(
  [
    httpListener('http', routes([{ match: { prefix: '/' }, route: { cluster: 'up', timeout: '3s', retry_policy: { retry_on: '5xx', num_retries: 1 } } }]), {
      request_headers_timeout: '1s',
      common_http_protocol_options: { idle_timeout: '60s' },
    }),
    tcpListener('tcp', 'up', { idle_timeout: '10s' }),
  ],
  [staticCluster('up', [8080, { port: 8081, weight: 2, priority: 1 }], { lb_policy: 'RING_HASH', circuit_breakers: { thresholds: [{ max_connections: 5 }] } })],
  {
    layered_runtime: undefined,
    stats_flush_interval: '5s',
  },
);

function slots(v: unknown, out: [Record<string, unknown> | unknown[], string | number][] = []): typeof out {
  if (Array.isArray(v))
    v.forEach((x, i) => {
      out.push([v, i]);
      slots(x, out);
    });
  else if (v !== null && typeof v === 'object')
    for (const [k, x] of Object.entries(v)) {
      out.push([v as Record<string, unknown>, k]);
      slots(x, out);
    }
  return out;
}

const YAML_FRAGMENTS = [
  'node:\n', '  id: n\n', 'admin:\n', '  address:\n', '    socket_address: {address: 127.0.0.1, port_value: 0}\n',
  'static_resources:\n', '  clusters:\n', '  - name: c\n', '    connect_timeout: 1s\n', '    type: STATIC\n',
  '  listeners:\n', '  - &l {name: l, address: {socket_address: {address: 127.0.0.1, port_value: 0}}}\n', '  - *l\n',
  '  - <<: *l\n', '    name: l2\n', 'x: &a [1, 2]\n', 'y: [*a, *a, *a]\n', 'z: *undefined\n', 'k: !!binary aGVsbG8=\n',
  'k2: !!js/function "function(){}"\n', 'k3: !custom 1\n', '? complex\n: key\n', '{', '}', '[', ']', ': ', '- ', '"', "'", '\t', '\n',
  '---\n', '...\n', '%YAML 1.2\n', '#comment\n', 'n: .nan\n', 'i: 0x1F\n', 'd: 2001-12-14\n', 'dup: 1\ndup: 2\n', '\u0000', '\ufeff',
];

const yamlText = fc
  .array(fc.oneof({ weight: 5, arbitrary: fc.constantFrom(...YAML_FRAGMENTS) }, { weight: 1, arbitrary: fc.string({ maxLength: 10 }) }), { maxLength: 30 })
  .map((p) => p.join(''));

describe('bootstrap fuzzing', () => {
  it('the seed bootstrap is valid', () => {
    expect(onlyConfigError(() => decodeBootstrap(SEED, ctx))).toBe('ok');
  });

  it(
    'arbitrary JSON → only ConfigError',
    () => {
      fc.assert(
        fc.property(fc.jsonValue({ maxDepth: 5 }), (raw) => {
          onlyConfigError(() => decodeBootstrap(raw, ctx));
        }),
        params(),
      );
    },
    timeoutFor(),
  );

  it(
    'a realistic bootstrap with random subtrees replaced or removed → only ConfigError',
    () => {
      fc.assert(
        fc.property(
          fc.array(fc.tuple(fc.nat(), fc.boolean(), fc.oneof(fc.jsonValue({ maxDepth: 3 }), fc.constantFrom(-1, 65536, '', '-5s', 'x'.repeat(500), {}, [], null))), { minLength: 1, maxLength: 5 }),
          (edits) => {
            const copy = structuredClone(SEED);
            for (const [pick, del, value] of edits) {
              const all = slots(copy);
              const [parent, key] = all[pick % all.length]!;
              if (del && !Array.isArray(parent)) delete (parent as Record<string, unknown>)[key as string];
              else (parent as Record<string | number, unknown>)[key] = value;
            }
            onlyConfigError(() => decodeBootstrap(copy, ctx));
          },
        ),
        params(),
      );
    },
    timeoutFor(),
  );

  it(
    'YAML-ish text (anchors, aliases, merge keys, tags, garbage) → only ConfigError from parse and decode',
    () => {
      fc.assert(
        fc.property(yamlText, fc.constantFrom('b.yaml', 'b.json', 'b'), (text, name) => {
          onlyConfigError(() => decodeBootstrap(parseBootstrapText(text, name), ctx));
        }),
        params(),
      );
    },
    timeoutFor(),
  );

  it('a YAML alias expansion bomb is a ConfigError, not a hang or a crash', () => {
    const lines = ['a: &a ["x","x","x","x","x","x","x","x","x","x"]'];
    for (let i = 0; i < 9; i++) {
      const prev = String.fromCharCode(97 + i);
      const cur = String.fromCharCode(98 + i);
      lines.push(`${cur}: &${cur} [${Array(10).fill(`*${prev}`).join(',')}]`);
    }
    expect(onlyConfigError(() => parseBootstrapText(lines.join('\n'), 'bomb.yaml'))).toBe('config-error');
  });
});
