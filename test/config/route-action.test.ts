import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { decodeRouteConfiguration } from '../../proxy/config/envoy';
import type { RouteAction } from '../../proxy/config/types';
import { ctx } from './helpers';

const tmp = mkdtempSync(join(tmpdir(), 'meshlet-route-action-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function rc(routes: unknown[]) {
  return { name: 'r', virtual_hosts: [{ name: 'vh', domains: ['*'], routes }] };
}
function one(route: Record<string, unknown>, c = ctx()) {
  const res = decodeRouteConfiguration(
    { name: 'r', virtual_hosts: [{ name: 'vh', domains: ['*'], routes: [{ match: { prefix: '/' }, ...route }] }] },
    c,
  );
  return { route: res.value?.virtualHosts[0]?.routes[0], errors: res.errors, warnings: res.warnings };
}
const R = 'virtual_hosts[0].routes[0]';

describe('RouteAction', () => {
  it('applies Envoy defaults', () => {
    const { route, errors } = one({ route: { cluster: 'c' } });
    expect(errors).toEqual([]);
    expect(route!.action).toEqual({
      kind: 'route',
      cluster: { kind: 'cluster', name: 'c' },
      autoHostRewrite: false,
      timeoutMs: 15_000,
      idleTimeoutMs: 0,
      hashPolicy: [],
      upgradeTypes: [],
    });
    expect(route!.typedPerFilterConfig).toEqual({});
  });

  it('decodes rewrites, timeouts, retry and hash policies, upgrades', () => {
    const { route, errors, warnings } = one({
      route: {
        cluster_header: 'X-Target-Cluster',
        regex_rewrite: {
          pattern: { google_re2: {}, regex: '^/service/([^/]+)(/.*)$' },
          substitution: '\\2/instance/\\1',
        },
        host_rewrite_literal: 'backend.internal',
        timeout: { seconds: 3, nanos: 500000000 },
        idle_timeout: '0s',
        retry_policy: {
          retry_on: 'gateway-error, reset,retriable-status-codes,envoy-ratelimited',
          num_retries: 3,
          per_try_timeout: '0.5s',
          retriable_status_codes: [409],
          retry_host_predicate: [{ name: 'envoy.retry_host_predicates.previous_hosts' }],
          host_selection_retry_max_attempts: 5,
          retry_back_off: { base_interval: '0.1s' },
        },
        hash_policy: [
          { header: { header_name: 'X-User' } },
          { cookie: { name: 'sticky', ttl: '60s', path: '/' }, terminal: true },
          { connection_properties: { source_ip: true } },
          { query_parameter: { name: 'user' } },
        ],
        upgrade_configs: [{ upgrade_type: 'WebSocket' }],
        max_stream_duration: { max_stream_duration: '30s' },
      },
    });
    expect(errors).toEqual([]);
    expect(warnings).toEqual([
      {
        path: `${R}.route.retry_policy.retry_on`,
        message: 'retry condition "envoy-ratelimited" is not supported by meshlet, ignored',
      },
    ]);
    const a = route!.action as RouteAction;
    expect(a.cluster).toEqual({ kind: 'cluster_header', header: 'x-target-cluster' });
    expect(
      '/service/foo/bar'.replace(a.regexRewrite!.regex, a.regexRewrite!.substitution.replace(/\\(\d)/g, '$$$1')),
    ).toBe('/bar/instance/foo');
    expect(a.hostRewriteLiteral).toBe('backend.internal');
    expect(a.timeoutMs).toBe(3500);
    expect(a.maxStreamDurationMs).toBe(30_000);
    expect(a.upgradeTypes).toEqual(['websocket']);
    expect([...a.retryPolicy!.retryOn]).toEqual(['gateway-error', 'reset', 'retriable-status-codes']);
    expect(a.retryPolicy).toMatchObject({
      numRetries: 3,
      perTryTimeoutMs: 500,
      retriableStatusCodes: [409],
      avoidPreviousHosts: true,
      hostSelectionRetryMaxAttempts: 5,
      backOffBaseMs: 100,
      backOffMaxMs: 1000,
    });
    expect(a.hashPolicy).toEqual([
      { kind: 'header', name: 'x-user', terminal: false },
      { kind: 'cookie', name: 'sticky', ttlMs: 60_000, path: '/', terminal: true },
      { kind: 'source_ip', terminal: false },
      { kind: 'query_parameter', name: 'user', terminal: false },
    ]);
  });

  it('decodes retriable_headers, and warns about retriable-headers without them', () => {
    const { route, errors } = one({
      route: {
        cluster: 'c',
        retry_policy: {
          retry_on: 'retriable-headers',
          retriable_headers: [{ name: 'X-Upstream-Retry', present_match: true }, { name: ':status', exact_match: '425' }],
        },
      },
    });
    expect(errors).toEqual([]);
    const p = (route!.action as RouteAction).retryPolicy!;
    expect(p.retriableHeaders.map((m) => [m.name, m.match.kind])).toEqual([
      ['x-upstream-retry', 'present'],
      [':status', 'string'],
    ]);
    const bare = one({ route: { cluster: 'c', retry_policy: { retry_on: 'retriable-headers' } } });
    expect(bare.warnings).toEqual([
      {
        path: `${R}.route.retry_policy.retry_on`,
        message: 'retriable-headers without retriable_headers never retries a response',
      },
    ]);
  });

  it('retry defaults: num_retries 1, back-off 25 ms base / 250 ms max', () => {
    const { route } = one({ route: { cluster: 'c', retry_policy: { retry_on: '5xx' } } });
    expect((route!.action as RouteAction).retryPolicy).toEqual({
      retryOn: new Set(['5xx']),
      numRetries: 1,
      perTryTimeoutMs: 0,
      retriableStatusCodes: [],
      retriableHeaders: [],
      avoidPreviousHosts: false,
      hostSelectionRetryMaxAttempts: 1,
      backOffBaseMs: 25,
      backOffMaxMs: 250,
    });
  });

  it('decodes weighted clusters (legacy total_weight checked against the sum)', () => {
    const { route, errors } = one({
      route: {
        weighted_clusters: {
          clusters: [
            { name: 'v1', weight: 90, request_headers_to_add: [{ header: { key: 'x-v', value: '1' } }] },
            { name: 'v2', weight: 10, host_rewrite_literal: 'v2.internal' },
          ],
          total_weight: 100,
        },
      },
    });
    expect(errors).toEqual([]);
    const c = (route!.action as RouteAction).cluster;
    expect(c.kind === 'weighted' && c.totalWeight).toBe(100);
    expect(c.kind === 'weighted' && c.clusters.map((x) => [x.name, x.weight, x.hostRewriteLiteral])).toEqual([
      ['v1', 90, undefined],
      ['v2', 10, 'v2.internal'],
    ]);
  });

  it.each([
    [{}, [{ path: `${R}.route`, message: 'one of cluster, cluster_header, weighted_clusters must be set' }]],
    [{ cluster: '' }, [{ path: `${R}.route.cluster`, message: 'must not be empty' }]],
    [
      { cluster_specifier_plugin: 'p' },
      [
        {
          path: `${R}.route.cluster_specifier_plugin`,
          message: 'cluster specifier plugins are not supported by meshlet',
        },
      ],
    ],
    [
      { weighted_clusters: { clusters: [] } },
      [{ path: `${R}.route.weighted_clusters.clusters`, message: 'at least one cluster is required' }],
    ],
    [
      { weighted_clusters: { clusters: [{ name: 'a', weight: 0 }] } },
      [
        {
          path: `${R}.route.weighted_clusters`,
          message: 'sum of weights in the weighted_cluster must be greater than 0',
        },
      ],
    ],
    [
      {
        weighted_clusters: {
          clusters: [
            { name: 'a', weight: 30 },
            { name: 'b', weight: 30 },
          ],
          total_weight: 100,
        },
      },
      [
        {
          path: `${R}.route.weighted_clusters.total_weight`,
          message: 'sum of weights in the weighted_cluster should add up to 100, got 60',
        },
      ],
    ],
    [
      { cluster: 'c', prefix_rewrite: '/', regex_rewrite: { pattern: { regex: 'a' }, substitution: 'b' } },
      [{ path: `${R}.route.regex_rewrite`, message: 'cannot specify both prefix_rewrite and regex_rewrite' }],
    ],
    [
      { cluster: 'c', host_rewrite_literal: 'a', auto_host_rewrite: true },
      [
        {
          path: `${R}.route.auto_host_rewrite`,
          message:
            'only one of host_rewrite_literal, auto_host_rewrite, host_rewrite_header, host_rewrite_path_regex may be set (also found host_rewrite_literal)',
        },
      ],
    ],
    [
      { cluster: 'c', retry_policy: { retry_on: '5xx,sometimes' } },
      [
        {
          path: `${R}.route.retry_policy.retry_on`,
          message:
            'unknown retry condition "sometimes" (expected one of 5xx, gateway-error, reset, connect-failure, retriable-4xx, refused-stream, retriable-status-codes, retriable-headers, cancelled, deadline-exceeded, internal, resource-exhausted, unavailable, http3-post-connect-failure)',
        },
      ],
    ],
    [
      { cluster: 'c', retry_policy: { retriable_status_codes: [99, 'x'] } },
      [
        {
          path: `${R}.route.retry_policy.retriable_status_codes[0]`,
          message: 'expected an HTTP status code (100-599), got 99',
        },
        {
          path: `${R}.route.retry_policy.retriable_status_codes[1]`,
          message: 'expected an HTTP status code (100-599), got "x"',
        },
      ],
    ],
    [
      { cluster: 'c', retry_policy: { retry_back_off: { base_interval: '1s', max_interval: '0.5s' } } },
      [
        {
          path: `${R}.route.retry_policy.retry_back_off.max_interval`,
          message: 'must be greater than or equal to the base_interval',
        },
      ],
    ],
    [
      { cluster: 'c', retry_policy: { retry_back_off: {} } },
      [{ path: `${R}.route.retry_policy.retry_back_off.base_interval`, message: 'is required' }],
    ],
    [
      {
        cluster: 'c',
        retry_policy: { retry_host_predicate: [{ name: 'envoy.retry_host_predicates.omit_canary_hosts' }] },
      },
      [
        {
          path: `${R}.route.retry_policy.retry_host_predicate[0].name`,
          message: 'unsupported retry host predicate "envoy.retry_host_predicates.omit_canary_hosts"',
        },
      ],
    ],
    [
      { cluster: 'c', hash_policy: [{}] },
      [
        {
          path: `${R}.route.hash_policy[0]`,
          message: 'one of header, cookie, connection_properties, query_parameter must be set',
        },
      ],
    ],
    [
      { cluster: 'c', hash_policy: [{ filter_state: { key: 'k' } }] },
      [{ path: `${R}.route.hash_policy[0].filter_state`, message: 'filter_state hashing is not supported by meshlet' }],
    ],
    [
      { cluster: 'c', timeout: '-' },
      [{ path: `${R}.route.timeout`, message: 'expected a duration such as "0.25s", got "-"' }],
    ],
  ])('reports route action error %#', (action, expected) => {
    const { errors, warnings } = one({ route: action });
    expect(errors).toEqual(expected);
    expect(warnings).toEqual([]);
  });

  it('a route needs a match and exactly one action', () => {
    const res = decodeRouteConfiguration(
      rc([
        { route: { cluster: 'c' } },
        { match: { prefix: '/' } },
        { match: { prefix: '/' }, route: { cluster: 'c' }, redirect: {} },
        { match: { prefix: '/' }, filter_action: {} },
      ]),
      ctx(),
    );
    expect(res.errors).toEqual([
      { path: 'virtual_hosts[0].routes[0].match', message: 'is required' },
      { path: 'virtual_hosts[0].routes[1]', message: 'one of route, redirect, direct_response must be set' },
      {
        path: 'virtual_hosts[0].routes[2].redirect',
        message:
          'only one of route, redirect, direct_response, filter_action, non_forwarding_action may be set (also found route)',
      },
      { path: 'virtual_hosts[0].routes[3].filter_action', message: 'is not supported by meshlet' },
    ]);
    expect(res.warnings).toEqual([]);
  });
});

describe('redirect and direct_response', () => {
  it('decodes a redirect (301 default)', () => {
    const { route, errors } = one({
      redirect: { https_redirect: true, host_redirect: 'secure.example.com', port_redirect: 8443, strip_query: true },
    });
    expect(errors).toEqual([]);
    expect(route!.action).toEqual({
      kind: 'redirect',
      httpsRedirect: true,
      hostRedirect: 'secure.example.com',
      portRedirect: 8443,
      stripQuery: true,
      responseCode: 301,
    });
    const r2 = one({
      redirect: { path_redirect: '/new', response_code: 'TEMPORARY_REDIRECT', scheme_redirect: 'HTTP' },
    });
    expect(r2.route!.action).toEqual({
      kind: 'redirect',
      schemeRedirect: 'http',
      httpsRedirect: false,
      pathRedirect: '/new',
      stripQuery: false,
      responseCode: 307,
    });
    expect(one({ redirect: { response_code: 'GONE' } }).errors).toEqual([
      {
        path: `${R}.redirect.response_code`,
        message:
          'unknown value "GONE" (expected one of MOVED_PERMANENTLY, FOUND, SEE_OTHER, TEMPORARY_REDIRECT, PERMANENT_REDIRECT)',
      },
    ]);
  });

  it('decodes direct responses, reading a filename body at decode time', () => {
    const file = join(tmp, 'body.txt');
    writeFileSync(file, 'from a file');
    expect(one({ direct_response: { status: 200, body: { inline_string: 'ok' } } }).route!.action).toEqual({
      kind: 'direct_response',
      status: 200,
      body: Buffer.from('ok'),
    });
    expect(
      one({ direct_response: { status: 503, body: { inline_bytes: Buffer.from('bytes').toString('base64') } } }).route!
        .action,
    ).toMatchObject({
      body: Buffer.from('bytes'),
    });
    expect(
      one({ direct_response: { status: 404, body: { filename: 'body.txt' } } }, ctx({ baseDir: tmp })).route!.action,
    ).toMatchObject({
      body: Buffer.from('from a file'),
    });
    expect(one({ direct_response: { status: 204 } }).route!.action).toEqual({ kind: 'direct_response', status: 204 });
  });

  it.each([
    [{ status: 100 }, [{ path: `${R}.direct_response.status`, message: 'must be between 200 and 599, got 100' }]],
    [{}, [{ path: `${R}.direct_response.status`, message: 'is required' }]],
    [
      { status: 200, body: { inline_string: 'x'.repeat(4097) } },
      [{ path: `${R}.direct_response.body`, message: 'response body size is 4097 bytes; maximum is 4096' }],
    ],
    [
      { status: 200, body: {} },
      [
        {
          path: `${R}.direct_response.body`,
          message: 'one of filename, inline_string, inline_bytes, environment_variable must be set',
        },
      ],
    ],
  ])('reports direct_response error %#', (dr, expected) => {
    const res = one({ direct_response: dr });
    expect(res.errors).toEqual(expected);
    expect(res.warnings).toEqual([]);
  });

  it('reports an unreadable body file', () => {
    const { errors } = one({ direct_response: { status: 200, body: { filename: join(tmp, 'missing.txt') } } });
    expect(errors).toHaveLength(1);
    expect(errors[0]!.path).toBe(`${R}.direct_response.body.filename`);
    expect(errors[0]!.message).toMatch(/^cannot read ".*missing\.txt": ENOENT/);
  });
});
