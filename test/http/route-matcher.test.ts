import { describe, expect, it } from 'vitest';
import type {
  HeaderMatcher,
  Route,
  RouteConfiguration,
  RouteMatch,
  StringMatcher,
  VirtualHost,
} from '../../proxy/config/types';
import type { RequestHead } from '../../proxy/http/codec';
import {
  findRoute,
  fullMatchRegex,
  matchHeader,
  matchString,
  pathOnly,
  queryParam,
  routeTable,
} from '../../proxy/http/route-matcher';

function head(path: string, opts: Partial<RequestHead> = {}): RequestHead {
  return {
    method: 'GET',
    path,
    authority: 'example.com',
    scheme: 'http',
    protocol: 'HTTP/1.1',
    headers: [],
    contentLength: 0,
    ...opts,
  };
}

function match(path: RouteMatch['path'], extra: Partial<RouteMatch> = {}): RouteMatch {
  return { path, caseSensitive: true, headers: [], queryParameters: [], grpc: false, ...extra };
}

function route(name: string, m: RouteMatch): Route {
  return {
    name,
    match: m,
    action: { kind: 'direct_response', status: 200 },
    requestHeadersToAdd: [],
    requestHeadersToRemove: [],
    responseHeadersToAdd: [],
    responseHeadersToRemove: [],
    typedPerFilterConfig: {},
  };
}

function vhost(
  name: string,
  domains: string[],
  routes: Route[] = [route(`${name}-all`, match({ kind: 'prefix', value: '/' }))],
): VirtualHost {
  return {
    name,
    domains,
    routes,
    requestHeadersToAdd: [],
    requestHeadersToRemove: [],
    responseHeadersToAdd: [],
    responseHeadersToRemove: [],
    typedPerFilterConfig: {},
  };
}

function rc(vhs: VirtualHost[]): RouteConfiguration {
  return Object.freeze({
    name: 'rc',
    virtualHosts: vhs,
    requestHeadersToAdd: [],
    requestHeadersToRemove: [],
    responseHeadersToAdd: [],
    responseHeadersToRemove: [],
  });
}

function exact(value: string, ignoreCase = false): StringMatcher {
  return { kind: 'exact', value, ignoreCase };
}

function hm(name: string, m: HeaderMatcher['match'], invert = false, treatMissingAsEmpty = false): HeaderMatcher {
  return { name, match: m, invert, treatMissingAsEmpty };
}

describe('virtual host selection (Envoy domain search order)', () => {
  const config = rc([
    vhost('default', ['*']),
    vhost('prefix-short', ['api.*']),
    vhost('prefix-long', ['api.example.*']),
    vhost('suffix-short', ['*.com']),
    vhost('suffix-long', ['*.example.com']),
    vhost('exact', ['www.example.com']),
    vhost('with-port', ['svc.ns:8080']),
    vhost('bare', ['svc.ns', 'bare.local']),
  ]);
  const t = routeTable(config);
  const pick = (authority: string) => t.virtualHost(authority)?.vhost.name;

  it('prefers an exact domain over any wildcard', () => {
    expect(pick('www.example.com')).toBe('exact');
  });
  it('is case-insensitive on the host', () => {
    expect(pick('WWW.Example.COM')).toBe('exact');
  });
  it('prefers the longest suffix wildcard', () => {
    expect(pick('a.example.com')).toBe('suffix-long');
    expect(pick('a.other.com')).toBe('suffix-short');
  });
  it('prefers any suffix wildcard over a prefix wildcard', () => {
    expect(pick('api.example.com')).toBe('suffix-long');
  });
  it('uses the longest prefix wildcard when no suffix matches', () => {
    expect(pick('api.example.org')).toBe('prefix-long');
    expect(pick('api.foo.org')).toBe('prefix-short');
  });
  it('falls back to * last', () => {
    expect(pick('unknown.net')).toBe('default');
  });
  it('never lets a wildcard match the empty string', () => {
    // "*.com" needs at least one character before ".com".
    expect(pick('.com')).toBe('default');
    expect(pick('api.')).toBe('default');
  });
  it('matches a domain with its port first, then strips the port', () => {
    expect(pick('svc.ns:8080')).toBe('with-port');
    expect(pick('svc.ns:9090')).toBe('bare');
    expect(pick('bare.local:80')).toBe('bare');
    expect(pick('www.example.com:443')).toBe('exact');
  });
  it('strips IPv6 ports correctly', () => {
    const t6 = routeTable(rc([vhost('v6', ['[::1]']), vhost('d', ['*'])]));
    expect(t6.virtualHost('[::1]:8080')?.vhost.name).toBe('v6');
    expect(t6.virtualHost('[::2]:8080')?.vhost.name).toBe('d');
  });
  it('ignore_port_in_host_matching: the port is removed before the search (istiod sets it)', () => {
    const vhs = [vhost('with-port', ['svc.ns:8080']), vhost('bare', ['svc.ns']), vhost('d', ['*'])];
    const ignoring = routeTable({ ...rc(vhs), ignorePortInHostMatching: true });
    expect(ignoring.virtualHost('svc.ns:8080')?.vhost.name).toBe('bare');
    expect(ignoring.virtualHost('svc.ns:1234')?.vhost.name).toBe('bare');
    expect(ignoring.virtualHost('[::1]:8080')?.vhost.name).toBe('d');
    expect(routeTable(rc(vhs)).virtualHost('svc.ns:8080')?.vhost.name).toBe('with-port');
  });
  it('returns undefined without a default virtual host', () => {
    const t2 = routeTable(rc([vhost('only', ['a.b'])]));
    expect(t2.virtualHost('c.d')).toBeUndefined();
    expect(t2.route(head('/', { authority: 'c.d' }))).toBeUndefined();
  });
  it('caches the compiled table per config object and rebuilds for a new one', () => {
    expect(routeTable(config)).toBe(t);
    const other = rc([vhost('x', ['*'])]);
    expect(routeTable(other)).not.toBe(t);
    expect(routeTable(other).virtualHost('anything')?.vhost.name).toBe('x');
  });
});

describe('route path matching', () => {
  const one = (m: RouteMatch) => rc([vhost('v', ['*'], [route('r', m)])]);
  const hit = (m: RouteMatch, h: RequestHead) => findRoute(one(m), h)?.route.name === 'r';

  it('prefix matches against the path (query included) and respects case sensitivity', () => {
    const m = match({ kind: 'prefix', value: '/api' });
    expect(hit(m, head('/api/v1'))).toBe(true);
    expect(hit(m, head('/api'))).toBe(true);
    expect(hit(m, head('/apix'))).toBe(true);
    expect(hit(m, head('/API/v1'))).toBe(false);
    expect(hit(m, head('/ap'))).toBe(false);
    const ci = match({ kind: 'prefix', value: '/Api' }, { caseSensitive: false });
    expect(hit(ci, head('/aPI/v1'))).toBe(true);
    expect(hit(match({ kind: 'prefix', value: '/a?x=1' }), head('/a?x=1&y'))).toBe(true);
  });

  it('path is an exact match without the query string', () => {
    const m = match({ kind: 'path', value: '/exact' });
    expect(hit(m, head('/exact'))).toBe(true);
    expect(hit(m, head('/exact?q=1'))).toBe(true);
    expect(hit(m, head('/exact/'))).toBe(false);
    expect(hit(m, head('/EXACT'))).toBe(false);
    expect(hit(match({ kind: 'path', value: '/Exact' }, { caseSensitive: false }), head('/eXACT'))).toBe(true);
  });

  it('safe_regex must match the whole path', () => {
    const m = match({ kind: 'safe_regex', value: '/items/[0-9]+', regex: /\/items\/[0-9]+/ });
    expect(hit(m, head('/items/42'))).toBe(true);
    expect(hit(m, head('/items/42?x=y'))).toBe(true);
    expect(hit(m, head('/items/42/more'))).toBe(false);
    expect(hit(m, head('/v1/items/42'))).toBe(false);
    // An alternation where the leftmost match is shorter than the input still full-matches.
    const alt = match({ kind: 'safe_regex', value: '/a|/ab', regex: /\/a|\/ab/ });
    expect(hit(alt, head('/ab'))).toBe(true);
  });

  it('path_separated_prefix matches the prefix exactly or followed by /', () => {
    const m = match({ kind: 'path_separated_prefix', value: '/api' });
    expect(hit(m, head('/api'))).toBe(true);
    expect(hit(m, head('/api/x'))).toBe(true);
    expect(hit(m, head('/api?x=1'))).toBe(true);
    expect(hit(m, head('/apix'))).toBe(false);
    expect(hit(m, head('/ap'))).toBe(false);
  });

  it('connect_matcher matches only CONNECT, and path matchers never match CONNECT', () => {
    const c = match({ kind: 'connect_matcher' });
    expect(hit(c, head('example.com:443', { method: 'CONNECT' }))).toBe(true);
    expect(hit(c, head('/'))).toBe(false);
    expect(hit(match({ kind: 'prefix', value: '' }), head('example.com:443', { method: 'CONNECT' }))).toBe(false);
  });

  it('routes are tried in order; the first match wins', () => {
    const config = rc([
      vhost(
        'v',
        ['*'],
        [
          route('specific', match({ kind: 'path', value: '/a/b' })),
          route('general', match({ kind: 'prefix', value: '/a' })),
          route('catchall', match({ kind: 'prefix', value: '/' })),
        ],
      ),
    ]);
    expect(findRoute(config, head('/a/b'))?.route.name).toBe('specific');
    expect(findRoute(config, head('/a/c'))?.route.name).toBe('general');
    expect(findRoute(config, head('/z'))?.route.name).toBe('catchall');
    expect(findRoute(config, head('/z'))?.vhost.name).toBe('v');
  });

  it('grpc: {} requires an application/grpc content type', () => {
    const m = match({ kind: 'prefix', value: '/' }, { grpc: true });
    expect(hit(m, head('/pkg.Svc/Method', { method: 'POST', headers: ['content-type', 'application/grpc'] }))).toBe(
      true,
    );
    expect(
      hit(m, head('/pkg.Svc/Method', { method: 'POST', headers: ['content-type', 'application/grpc+proto'] })),
    ).toBe(true);
    expect(hit(m, head('/pkg.Svc/Method', { method: 'POST', headers: ['content-type', 'application/json'] }))).toBe(
      false,
    );
    expect(hit(m, head('/pkg.Svc/Method', { method: 'POST' }))).toBe(false);
  });

  it('query_parameters: string and present matchers, all must match', () => {
    const m = match(
      { kind: 'prefix', value: '/' },
      {
        queryParameters: [
          { name: 'debug', match: { kind: 'string', matcher: exact('true') } },
          { name: 'user', match: { kind: 'present' } },
        ],
      },
    );
    expect(hit(m, head('/x?debug=true&user=bob'))).toBe(true);
    expect(hit(m, head('/x?user=&debug=true'))).toBe(true);
    expect(hit(m, head('/x?debug=false&user=bob'))).toBe(false);
    expect(hit(m, head('/x?debug=true'))).toBe(false);
    expect(hit(m, head('/x'))).toBe(false);
  });

  it('headers on a route must all match', () => {
    const m = match(
      { kind: 'prefix', value: '/' },
      {
        headers: [
          hm('x-canary', { kind: 'string', matcher: exact('1') }),
          hm(':method', { kind: 'string', matcher: exact('POST') }),
        ],
      },
    );
    expect(hit(m, head('/', { method: 'POST', headers: ['x-canary', '1'] }))).toBe(true);
    expect(hit(m, head('/', { method: 'GET', headers: ['x-canary', '1'] }))).toBe(false);
    expect(hit(m, head('/', { method: 'POST' }))).toBe(false);
  });
});

describe('HeaderMatcher', () => {
  const h = (headers: string[], extra: Partial<RequestHead> = {}) => head('/p', { headers, ...extra });

  it('string matchers: exact, prefix, suffix, contains, ignore_case, safe_regex', () => {
    expect(matchHeader(hm('a', { kind: 'string', matcher: exact('v') }), h(['a', 'v']))).toBe(true);
    expect(matchHeader(hm('a', { kind: 'string', matcher: exact('V') }), h(['a', 'v']))).toBe(false);
    expect(matchHeader(hm('a', { kind: 'string', matcher: exact('V', true) }), h(['a', 'v']))).toBe(true);
    expect(
      matchHeader(
        hm('a', { kind: 'string', matcher: { kind: 'prefix', value: 'ab', ignoreCase: false } }),
        h(['a', 'abc']),
      ),
    ).toBe(true);
    expect(
      matchHeader(
        hm('a', { kind: 'string', matcher: { kind: 'suffix', value: 'bc', ignoreCase: false } }),
        h(['a', 'abc']),
      ),
    ).toBe(true);
    expect(
      matchHeader(
        hm('a', { kind: 'string', matcher: { kind: 'contains', value: 'B', ignoreCase: true } }),
        h(['a', 'abc']),
      ),
    ).toBe(true);
    expect(
      matchHeader(
        hm('a', { kind: 'string', matcher: { kind: 'contains', value: 'x', ignoreCase: false } }),
        h(['a', 'abc']),
      ),
    ).toBe(false);
    const re: StringMatcher = { kind: 'safe_regex', value: '\\d{3}', regex: /\d{3}/, ignoreCase: false };
    expect(matchHeader(hm('a', { kind: 'string', matcher: re }), h(['a', '123']))).toBe(true);
    expect(matchHeader(hm('a', { kind: 'string', matcher: re }), h(['a', '1234']))).toBe(false);
  });

  it('invert flips a value match (Envoy: \\d{3} inverted matches 1234)', () => {
    const re: StringMatcher = { kind: 'safe_regex', value: '\\d{3}', regex: /\d{3}/, ignoreCase: false };
    expect(matchHeader(hm('a', { kind: 'string', matcher: re }, true), h(['a', '1234']))).toBe(true);
    expect(matchHeader(hm('a', { kind: 'string', matcher: re }, true), h(['a', '123']))).toBe(false);
  });

  it('an absent header fails a value matcher, inverted or not, unless treated as empty', () => {
    expect(matchHeader(hm('a', { kind: 'string', matcher: exact('v') }), h([]))).toBe(false);
    expect(matchHeader(hm('a', { kind: 'string', matcher: exact('v') }, true), h([]))).toBe(false);
    expect(matchHeader(hm('a', { kind: 'string', matcher: exact('v') }, true, true), h([]))).toBe(true);
    expect(matchHeader(hm('a', { kind: 'string', matcher: exact('') }, false, true), h([]))).toBe(true);
  });

  it('present_match compares presence and honours invert', () => {
    expect(matchHeader(hm('a', { kind: 'present', present: true }), h(['a', '']))).toBe(true);
    expect(matchHeader(hm('a', { kind: 'present', present: true }), h([]))).toBe(false);
    expect(matchHeader(hm('a', { kind: 'present', present: false }), h([]))).toBe(true);
    expect(matchHeader(hm('a', { kind: 'present', present: true }, true), h([]))).toBe(true);
    expect(matchHeader(hm('a', { kind: 'any' }), h(['a', 'x']))).toBe(true);
    expect(matchHeader(hm('a', { kind: 'any' }), h([]))).toBe(false);
  });

  it('range_match is [start, end) over integers; non-integers never match', () => {
    const r = hm('n', { kind: 'range', start: -10, end: 10 });
    expect(matchHeader(r, h(['n', '-10']))).toBe(true);
    expect(matchHeader(r, h(['n', '9']))).toBe(true);
    expect(matchHeader(r, h(['n', '10']))).toBe(false);
    expect(matchHeader(r, h(['n', '1.5']))).toBe(false);
    expect(matchHeader(r, h(['n', 'abc']))).toBe(false);
    expect(matchHeader(r, h([]))).toBe(false);
  });

  it('repeated headers are joined with a comma', () => {
    expect(matchHeader(hm('a', { kind: 'string', matcher: exact('1,2') }), h(['a', '1', 'b', 'x', 'a', '2']))).toBe(
      true,
    );
  });

  it('pseudo-headers come from the request head', () => {
    expect(matchHeader(hm(':authority', { kind: 'string', matcher: exact('example.com') }), h([]))).toBe(true);
    expect(
      matchHeader(hm(':path', { kind: 'string', matcher: { kind: 'prefix', value: '/p', ignoreCase: false } }), h([])),
    ).toBe(true);
    expect(matchHeader(hm(':scheme', { kind: 'string', matcher: exact('http') }), h([]))).toBe(true);
    expect(matchHeader(hm(':method', { kind: 'string', matcher: exact('GET') }), h([]))).toBe(true);
  });
});

describe('helpers', () => {
  it('matchString / fullMatchRegex', () => {
    expect(matchString({ kind: 'exact', value: 'a', ignoreCase: false }, 'a')).toBe(true);
    const re = /ab+/i;
    expect(fullMatchRegex(re)).toBe(fullMatchRegex(re));
    expect(fullMatchRegex(re).test('ABBB')).toBe(true);
    expect(fullMatchRegex(/x/g).test('x')).toBe(true);
    expect(fullMatchRegex(/x/g).test('x')).toBe(true);
  });
  it('queryParam decodes and returns the first value', () => {
    expect(queryParam('/a?x=1&x=2', 'x')).toBe('1');
    expect(queryParam('/a?na%6De=a+b%21', 'name')).toBe('a b!');
    expect(queryParam('/a?flag', 'flag')).toBe('');
    expect(queryParam('/a?x=1#frag', 'x')).toBe('1');
    expect(queryParam('/a', 'x')).toBeUndefined();
    expect(queryParam('/a?y=1', 'x')).toBeUndefined();
  });
  it('pathOnly strips query and fragment', () => {
    expect(pathOnly('/a/b?c#d')).toBe('/a/b');
    expect(pathOnly('/a#d?c')).toBe('/a');
    expect(pathOnly('/a')).toBe('/a');
  });
});
