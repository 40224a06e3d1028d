/**
 * Fuzzing the route matcher against a simple reference model of Envoy's rules. Random
 * RouteConfigurations (Envoy JSON, decoded by the real decoder) with prefix / path /
 * path_separated_prefix routes, case sensitivity and exact / suffix / prefix / '*' domains; random
 * requests. Properties: building and matching never throw, and the chosen virtual host and route
 * are exactly the reference model's:
 *  - domains: exact, then the longest suffix wildcard, then the longest prefix wildcard, then '*'
 *    (a wildcard never matches the empty string); case-insensitive;
 *  - routes: the first match wins; prefix compares with the whole :path (query included, as
 *    Envoy does), path and path_separated_prefix with the path without query and fragment.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeRouteConfiguration } from '../../proxy/config/envoy';
import type { RouteConfiguration } from '../../proxy/config/types';
import type { RequestHead } from '../../proxy/http/codec';
import { routeTable } from '../../proxy/http/route-matcher';
import { createRegistries } from '../../proxy/registry';
import { params, timeoutFor } from './params';

const ctx = { httpFilters: createRegistries().httpFilters };

const seg = fc.stringMatching(/^[aAbB.%=-]{0,3}$/);
const pathGen = fc
  .tuple(fc.array(seg, { maxLength: 4 }), fc.option(fc.stringMatching(/^[?#][a=b/#?]{0,4}$/), { nil: undefined }), fc.boolean())
  .map(([segs, tail, slash]) => `/${segs.join('/')}${slash ? '/' : ''}${tail ?? ''}`);

type Kind = 'prefix' | 'path' | 'path_separated_prefix';
interface GenRoute {
  kind: Kind;
  value: string;
  caseSensitive: boolean;
}

const routeGen: fc.Arbitrary<GenRoute> = fc
  .record({
    kind: fc.constantFrom<Kind>('prefix', 'path', 'path_separated_prefix'),
    value: fc.tuple(fc.array(seg, { maxLength: 3 }), fc.boolean()).map(([s, slash]) => `/${s.join('/')}${slash ? '/' : ''}`),
    caseSensitive: fc.boolean(),
  })
  // Envoy rejects a path_separated_prefix ending in '/'; such draws become plain prefixes.
  .map((r) => (r.kind === 'path_separated_prefix' && r.value.endsWith('/') ? { ...r, kind: 'prefix' as const } : r));

const label = fc.constantFrom('a', 'b', 'api', 'x-y', 'svc');
const domainGen = fc.oneof(
  fc.constant('*'),
  fc.array(label, { minLength: 1, maxLength: 3 }).map((l) => l.join('.')),
  fc.array(label, { minLength: 1, maxLength: 2 }).map((l) => `*.${l.join('.')}`),
  fc.array(label, { minLength: 1, maxLength: 2 }).map((l) => `*-${l.join('.')}`),
  fc.array(label, { minLength: 1, maxLength: 2 }).map((l) => `${l.join('.')}.*`),
  fc.array(label, { minLength: 1, maxLength: 2 }).map((l) => `${l.join('.')}-*`),
);
const authorityGen = fc
  .tuple(fc.array(fc.oneof(label, fc.constantFrom('A', 'API', 'z-a')), { minLength: 1, maxLength: 4 }), fc.constantFrom('.', '-'))
  .map(([l, sep]) => l.join(sep === '.' ? '.' : '.').replace(/^\./, ''));

interface GenVhost {
  domains: string[];
  routes: GenRoute[];
}

/** Virtual hosts with distinct domains (Envoy rejects a domain listed twice). */
const configGen: fc.Arbitrary<GenVhost[]> = fc
  .tuple(
    fc.uniqueArray(domainGen, { minLength: 1, maxLength: 8, selector: (d) => d.toLowerCase() }),
    fc.array(fc.array(routeGen, { minLength: 1, maxLength: 6 }), { minLength: 1, maxLength: 4 }),
  )
  .map(([domains, routeSets]) => {
    const vhs: GenVhost[] = routeSets.map((routes) => ({ domains: [], routes }));
    domains.forEach((d, i) => vhs[i % vhs.length]!.domains.push(d));
    return vhs.filter((vh) => vh.domains.length > 0);
  });

/** Authorities: random ones, and ones built from the config's domains (so wildcards get hit). */
function authorities(vhs: GenVhost[]): fc.Arbitrary<string> {
  const fromDomains = vhs.flatMap((vh) => vh.domains).filter((d) => d !== '*');
  if (fromDomains.length === 0) return authorityGen;
  return fc.oneof(
    authorityGen,
    fc.tuple(fc.constantFrom(...fromDomains), label, fc.boolean()).map(([d, l, upper]) => {
      const a = d.replace('*', l);
      return upper ? a.toUpperCase() : a;
    }),
  );
}

function toEnvoy(vhs: GenVhost[]): Record<string, unknown> {
  return {
    name: 'rc',
    virtual_hosts: vhs.map((vh, i) => ({
      name: `vh${i}`,
      domains: vh.domains,
      routes: vh.routes.map((r, j) => ({
        name: `vh${i}-r${j}`,
        match: { [r.kind]: r.value, case_sensitive: r.caseSensitive },
        direct_response: { status: 200 },
      })),
    })),
  };
}

// ───────────── the reference model ─────────────

function refVhost(vhs: GenVhost[], authority: string): number | undefined {
  const host = authority.toLowerCase();
  const owner = new Map<string, number>();
  vhs.forEach((vh, i) => {
    for (const d of vh.domains) if (!owner.has(d.toLowerCase())) owner.set(d.toLowerCase(), i);
  });
  const exact = owner.get(host);
  if (exact !== undefined && !host.includes('*')) return exact;
  let best: { len: number; i: number } | undefined;
  for (const [d, i] of owner) {
    if (d.startsWith('*') && d !== '*') {
      const part = d.slice(1);
      if (host.length > part.length && host.endsWith(part) && (best === undefined || part.length > best.len)) best = { len: part.length, i };
    }
  }
  if (best) return best.i;
  for (const [d, i] of owner) {
    if (d.endsWith('*') && d !== '*') {
      const part = d.slice(0, -1);
      if (host.length > part.length && host.startsWith(part) && (best === undefined || part.length > best.len)) best = { len: part.length, i };
    }
  }
  if (best) return best.i;
  return owner.get('*');
}

function stripQuery(p: string): string {
  const cut = p.search(/[?#]/);
  return cut === -1 ? p : p.slice(0, cut);
}

function refRoute(routes: GenRoute[], path: string): number | undefined {
  for (let j = 0; j < routes.length; j++) {
    const r = routes[j]!;
    const norm = (s: string) => (r.caseSensitive ? s : s.toLowerCase());
    const v = norm(r.value);
    if (r.kind === 'prefix' && norm(path).startsWith(v)) return j;
    if (r.kind === 'path' && norm(stripQuery(path)) === v) return j;
    if (r.kind === 'path_separated_prefix') {
      const p = norm(stripQuery(path));
      if (p.startsWith(v) && (p.length === v.length || p[v.length] === '/')) return j;
    }
  }
  return undefined;
}

function head(path: string, authority: string): RequestHead {
  return { method: 'GET', path, authority, scheme: 'http', protocol: 'HTTP/1.1', headers: [], contentLength: 0 };
}

describe('route matcher fuzzing', () => {
  it(
    'agrees with the reference model on virtual host and route selection',
    () => {
      fc.assert(
        fc.property(
          configGen.chain((vhs) => fc.tuple(fc.constant(vhs), fc.array(fc.tuple(pathGen, authorities(vhs)), { minLength: 1, maxLength: 10 }))),
          ([vhs, reqs]) => {
          const decoded = decodeRouteConfiguration(toEnvoy(vhs), ctx);
          // Every generated config is valid Envoy config: it must be accepted.
          expect(decoded.errors).toEqual([]);
          if (decoded.value === undefined) return;
          const table = routeTable(decoded.value as RouteConfiguration);
          for (const [path, authority] of reqs) {
            const vi = refVhost(vhs, authority);
            const got = table.virtualHost(authority);
            expect(got?.vhost.name).toBe(vi === undefined ? undefined : `vh${vi}`);
            if (vi === undefined) continue;
            const ri = refRoute(vhs[vi]!.routes, path);
            const r = table.route(head(path, authority));
            expect(r?.route.name).toBe(ri === undefined ? undefined : `vh${vi}-r${ri}`);
          }
          },
        ),
        params(),
      );
    },
    timeoutFor(),
  );

  it(
    'never throws on arbitrary paths, methods and authorities',
    () => {
      fc.assert(
        fc.property(configGen, fc.string(), fc.string(), fc.constantFrom('GET', 'CONNECT', 'POST', ''), (vhs, path, authority, method) => {
          const decoded = decodeRouteConfiguration(toEnvoy(vhs), ctx);
          if (decoded.value === undefined) return;
          const table = routeTable(decoded.value as RouteConfiguration);
          table.route({ ...head(path, authority), method });
        }),
        params(),
      );
    },
    timeoutFor(),
  );
});
