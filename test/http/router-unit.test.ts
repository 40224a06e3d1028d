/**
 * Pure parts of the router: the retry state machine, hash policies, weighted picks, rewrites and
 * redirect locations.
 */
import { describe, expect, it } from 'vitest';
import type { RedirectAction, WeightedCluster } from '../../proxy/config/types';
import type { RequestHead } from '../../proxy/http/codec';
import { CountingResource } from '../support/h1-harness';
import { routeTable } from '../../proxy/http/route-matcher';
import {
  computeHash,
  hashString,
  pickWeighted,
  prefixRewritePath,
  redirectLocation,
  regexRewritePath,
} from '../../proxy/http/router/request-shaping';
import { RetryDecision, RetryState, retryPolicyFromHeaders } from '../../proxy/http/router/retry-state';
import { ClusterStats, type UpstreamCluster } from '../../proxy/upstream/types';
import { action, prefix, retryPolicy, route, routeConfig, vhost } from './hcm-support';

function head(path: string, headers: string[] = [], authority = 'example.com:8080'): RequestHead {
  return { method: 'GET', path, authority, scheme: 'http', protocol: 'HTTP/1.1', headers, contentLength: 0 };
}

function fakeCluster(maxRetries: number): UpstreamCluster {
  return {
    stats: new ClusterStats(),
    resources: {
      connections: new CountingResource(10),
      pendingRequests: new CountingResource(10),
      requests: new CountingResource(10),
      retries: new CountingResource(maxRetries),
    },
  } as unknown as UpstreamCluster;
}

describe('RetryState', () => {
  it('classifies statuses under each retry_on condition', () => {
    const s = (on: Parameters<typeof retryPolicy>[0], codes: number[] = []) =>
      new RetryState(retryPolicy(on, { retriableStatusCodes: codes }));
    expect(s(['5xx']).retriableStatus(500, -1)).toBe(true);
    expect(s(['5xx']).retriableStatus(503, -1)).toBe(true);
    expect(s(['5xx']).retriableStatus(404, -1)).toBe(false);
    expect(s(['gateway-error']).retriableStatus(502, -1)).toBe(true);
    expect(s(['gateway-error']).retriableStatus(504, -1)).toBe(true);
    expect(s(['gateway-error']).retriableStatus(500, -1)).toBe(false);
    expect(s(['retriable-4xx']).retriableStatus(409, -1)).toBe(true);
    expect(s(['retriable-4xx']).retriableStatus(400, -1)).toBe(false);
    expect(s(['retriable-status-codes'], [418]).retriableStatus(418, -1)).toBe(true);
    expect(s(['retriable-status-codes'], [418]).retriableStatus(419, -1)).toBe(false);
    expect(s(['unavailable']).retriableStatus(200, 14)).toBe(true);
    expect(s(['unavailable']).retriableStatus(200, 0)).toBe(false);
    expect(s(['cancelled']).retriableStatus(200, 1)).toBe(true);
    expect(s(['deadline-exceeded']).retriableStatus(200, 4)).toBe(true);
    expect(s(['resource-exhausted']).retriableStatus(200, 8)).toBe(true);
    expect(s(['internal']).retriableStatus(200, 13)).toBe(true);
  });

  it('retries a response whose headers match retriable_headers only under retriable-headers', () => {
    const policy = retryPolicy(['retriable-headers'], {
      retriableHeaders: [
        { name: 'x-upstream-retry', match: { kind: 'present', present: true }, invert: false, treatMissingAsEmpty: false },
        {
          name: ':status',
          match: { kind: 'range', start: 420, end: 430 },
          invert: false,
          treatMissingAsEmpty: false,
        },
      ],
    });
    const s = new RetryState(policy);
    expect(s.retriableStatus(200, -1, ['x-upstream-retry', '1'])).toBe(true);
    expect(s.retriableStatus(200, -1, ['x-other', '1'])).toBe(false);
    expect(s.retriableStatus(425, -1, [])).toBe(true);
    expect(s.retriableStatus(500, -1, [])).toBe(false);
    // The same matchers do nothing without the condition.
    expect(new RetryState({ ...policy, retryOn: new Set(['5xx']) }).retriableStatus(200, -1, ['x-upstream-retry', '1'])).toBe(
      false,
    );
  });

  it('classifies resets: 5xx/gateway-error/reset retry any reset, connect-failure only connect failures', () => {
    for (const on of ['5xx', 'gateway-error', 'reset'] as const) {
      const r = new RetryState(retryPolicy([on]));
      expect(r.retriableReset('remote_reset')).toBe(true);
      expect(r.retriableReset('connect_failure')).toBe(true);
      expect(r.retriableReset('overflow')).toBe(false);
      expect(r.retriableTimeout()).toBe(true);
    }
    const cf = new RetryState(retryPolicy(['connect-failure']));
    expect(cf.retriableReset('connect_failure')).toBe(true);
    expect(cf.retriableReset('timeout')).toBe(true);
    expect(cf.retriableReset('remote_reset')).toBe(false);
    expect(cf.retriableTimeout()).toBe(false);
    const rs = new RetryState(retryPolicy(['refused-stream']));
    expect(rs.retriableReset('refused_stream')).toBe(true);
    expect(rs.retriableReset('remote_reset')).toBe(false);
  });

  it('counts retries against num_retries, then reports the limit', () => {
    const r = new RetryState(retryPolicy(['5xx'], { numRetries: 2 }));
    const c = fakeCluster(10);
    expect(r.decide(c)).toBe(RetryDecision.Yes);
    expect(r.decide(c)).toBe(RetryDecision.Yes);
    expect(r.decide(c)).toBe(RetryDecision.NoLimitExceeded);
    expect(r.retriesUsed).toBe(2);
  });

  it('refuses a retry when the retries circuit breaker is full and counts the overflow', () => {
    const r = new RetryState(retryPolicy(['5xx'], { numRetries: 3 }));
    const c = fakeCluster(1);
    c.resources.retries.inc();
    expect(r.decide(c)).toBe(RetryDecision.NoOverflow);
    expect(c.stats.upstreamRqRetryOverflow).toBe(1);
    expect(r.retriesUsed).toBe(0);
  });

  it('backs off with full jitter below min(base × 2^n, max)', () => {
    const hi = new RetryState(retryPolicy(['5xx'], { numRetries: 10 }), () => 0.999999);
    const c = fakeCluster(100);
    const ceilings: number[] = [];
    for (let i = 0; i < 6; i++) {
      hi.decide(c);
      ceilings.push(hi.backOffMs());
    }
    expect(ceilings).toEqual([24, 49, 99, 199, 249, 249]);
    const lo = new RetryState(retryPolicy(['5xx']), () => 0);
    lo.decide(c);
    expect(lo.backOffMs()).toBe(0);
  });
});

describe('retry policy from x-envoy-* request headers', () => {
  it('returns the route policy untouched when no header is present', () => {
    const base = retryPolicy(['5xx']);
    expect(retryPolicyFromHeaders(['x-other', '1'], base)).toBe(base);
    expect(retryPolicyFromHeaders([], undefined)).toBeUndefined();
  });
  it('adds conditions and overrides counts, codes and per-try timeout', () => {
    const p = retryPolicyFromHeaders(
      [
        'x-envoy-retry-on',
        'retriable-status-codes, bogus',
        'x-envoy-retry-grpc-on',
        'unavailable',
        'x-envoy-max-retries',
        '4',
        'x-envoy-retriable-status-codes',
        '418,999',
        'x-envoy-upstream-rq-per-try-timeout-ms',
        '250',
      ],
      retryPolicy(['connect-failure']),
    )!;
    expect([...p.retryOn].sort()).toEqual(['connect-failure', 'retriable-status-codes', 'unavailable']);
    expect(p.numRetries).toBe(4);
    expect(p.retriableStatusCodes).toEqual([418]);
    expect(p.perTryTimeoutMs).toBe(250);
  });

  it('x-envoy-retriable-header-names adds presence matchers used under retriable-headers', () => {
    const p = retryPolicyFromHeaders(
      ['x-envoy-retry-on', 'retriable-headers', 'x-envoy-retriable-header-names', 'X-Try-Again, x-busy'],
      undefined,
    )!;
    expect(p.retriableHeaders.map((m) => m.name)).toEqual(['x-try-again', 'x-busy']);
    const s = new RetryState(p);
    expect(s.retriableStatus(200, -1, ['x-busy', 'yes'])).toBe(true);
    expect(s.retriableStatus(200, -1, ['x-fine', 'yes'])).toBe(false);
  });
  it('defaults to one retry when only x-envoy-retry-on is given', () => {
    expect(retryPolicyFromHeaders(['x-envoy-retry-on', '5xx'], undefined)?.numRetries).toBe(1);
    expect(retryPolicyFromHeaders(['x-envoy-max-retries', '3'], undefined)).toBeUndefined();
  });
});

describe('hash policies', () => {
  it('hashes header, cookie, source IP and query parameter; terminal stops', () => {
    const h = head('/p?user=alice', ['x-user', 'bob', 'cookie', 'a=1; session=xyz']);
    expect(computeHash([{ kind: 'header', name: 'x-user', terminal: false }], h, '10.0.0.1')).toBe(hashString('bob'));
    expect(computeHash([{ kind: 'cookie', name: 'session', terminal: false }], h, '10.0.0.1')).toBe(hashString('xyz'));
    expect(computeHash([{ kind: 'source_ip', terminal: false }], h, '10.0.0.1')).toBe(hashString('10.0.0.1'));
    expect(computeHash([{ kind: 'query_parameter', name: 'user', terminal: false }], h, '')).toBe(hashString('alice'));
    expect(computeHash([{ kind: 'header', name: 'x-missing', terminal: false }], h, '')).toBeUndefined();
    const terminal = computeHash(
      [
        { kind: 'header', name: 'x-user', terminal: true },
        { kind: 'source_ip', terminal: false },
      ],
      h,
      '10.0.0.1',
    );
    expect(terminal).toBe(hashString('bob'));
    const combined = computeHash(
      [
        { kind: 'header', name: 'x-user', terminal: false },
        { kind: 'source_ip', terminal: false },
      ],
      h,
      '10.0.0.1',
    );
    expect(combined).not.toBe(hashString('bob'));
    expect(combined).toBe(
      computeHash(
        [
          { kind: 'header', name: 'x-user', terminal: false },
          { kind: 'source_ip', terminal: false },
        ],
        h,
        '10.0.0.1',
      ),
    );
  });
});

describe('hash policy cookie generation', () => {
  it('generates a sticky cookie when absent and a ttl is configured', () => {
    const fx: { setCookie?: string } = {};
    const policy = [{ kind: 'cookie' as const, name: 'sticky', ttlMs: 3_600_000, path: '/', terminal: false }];
    const h1 = computeHash(policy, head('/'), '10.1.2.3', fx);
    expect(h1).toBeDefined();
    expect(fx.setCookie).toMatch(/^sticky="[0-9a-f]{8}"; Max-Age=3600; Path=\/; HttpOnly$/);
    // The client sends the cookie back: same hash, nothing new to set.
    const value = /"([0-9a-f]+)"/.exec(fx.setCookie!)![1]!;
    const fx2: { setCookie?: string } = {};
    expect(computeHash(policy, head('/', ['cookie', `sticky=${value}`]), '10.9.9.9', fx2)).toBe(h1);
    expect(fx2.setCookie).toBeUndefined();
  });
  it('does not generate without a ttl', () => {
    const fx: { setCookie?: string } = {};
    expect(computeHash([{ kind: 'cookie', name: 's', terminal: false }], head('/'), '10.1.2.3', fx)).toBeUndefined();
    expect(fx.setCookie).toBeUndefined();
  });
});

describe('weighted clusters', () => {
  const wc = (name: string, weight: number): WeightedCluster => ({
    name,
    weight,
    requestHeadersToAdd: [],
    requestHeadersToRemove: [],
    responseHeadersToAdd: [],
    responseHeadersToRemove: [],
    typedPerFilterConfig: {},
  });
  it('picks by cumulative weight', () => {
    const cs = [wc('a', 10), wc('b', 90)];
    expect(pickWeighted(cs, 100, () => 0)?.name).toBe('a');
    expect(pickWeighted(cs, 100, () => 0.099)?.name).toBe('a');
    expect(pickWeighted(cs, 100, () => 0.1)?.name).toBe('b');
    expect(pickWeighted(cs, 100, () => 0.999)?.name).toBe('b');
  });
  it('follows the weights over many picks', () => {
    const cs = [wc('a', 25), wc('b', 75)];
    let seed = 42;
    const rnd = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    let a = 0;
    for (let i = 0; i < 4000; i++) if (pickWeighted(cs, 100, rnd)?.name === 'a') a++;
    expect(a).toBeGreaterThan(800);
    expect(a).toBeLessThan(1200);
  });
});

describe('rewrites and redirects', () => {
  const compiled = (m = prefix('/api')) =>
    routeTable(routeConfig([vhost([route(m, action('c'))])])).route(head('/api/x'))!;

  it('prefix_rewrite replaces the matched prefix and keeps the rest', () => {
    const r = compiled();
    expect(prefixRewritePath('/api/x?q=1', r, '/v2')).toBe('/v2/x?q=1');
    expect(prefixRewritePath('/api/x', r, '/')).toBe('//x');
  });

  it('regex_rewrite replaces every match in the path and supports \\1 references', () => {
    expect(regexRewritePath('/service/foo/v1/api?x=/v1/', /\/v1\//g, '/v2/')).toBe('/service/foo/v2/api?x=/v1/');
    expect(regexRewritePath('/aaa/123', /^\/(\w+)\/(\d+)$/g, '/\\2/\\1')).toBe('/123/aaa');
  });

  const redirect = (over: Partial<RedirectAction>): RedirectAction => ({
    kind: 'redirect',
    httpsRedirect: false,
    stripQuery: false,
    responseCode: 301,
    ...over,
  });

  it('builds Location from scheme, host, port and path rules', () => {
    const r = compiled();
    const h = head('/api/x?q=1');
    expect(redirectLocation(redirect({ httpsRedirect: true }), h, r)).toBe('https://example.com:8080/api/x?q=1');
    expect(redirectLocation(redirect({ httpsRedirect: true }), head('/api/x', [], 'example.com:80'), r)).toBe(
      'https://example.com/api/x',
    );
    expect(redirectLocation(redirect({ hostRedirect: 'other.org' }), h, r)).toBe('http://other.org/api/x?q=1');
    expect(redirectLocation(redirect({ portRedirect: 9443 }), h, r)).toBe('http://example.com:9443/api/x?q=1');
    expect(redirectLocation(redirect({ pathRedirect: '/new' }), h, r)).toBe('http://example.com:8080/new?q=1');
    expect(redirectLocation(redirect({ pathRedirect: '/new', stripQuery: true }), h, r)).toBe(
      'http://example.com:8080/new',
    );
    expect(redirectLocation(redirect({ prefixRewrite: '/v2' }), h, r)).toBe('http://example.com:8080/v2/x?q=1');
    expect(redirectLocation(redirect({ schemeRedirect: 'https', hostRedirect: 'h', stripQuery: true }), h, r)).toBe(
      'https://h/api/x',
    );
  });
});
