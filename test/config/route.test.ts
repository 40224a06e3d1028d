import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { decodeRouteConfiguration } from '../../proxy/config/envoy';
import type { RouteAction } from '../../proxy/config/types';
import { ctx, FAULT_TYPE, TYPE_PREFIX } from './helpers';

const tmp = mkdtempSync(join(tmpdir(), 'meshlet-route-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function rc(routes: unknown[], vh: Record<string, unknown> = {}, extra: Record<string, unknown> = {}) {
  return { name: 'r', virtual_hosts: [{ name: 'vh', domains: ['*'], routes, ...vh }], ...extra };
}
function one(route: Record<string, unknown>, c = ctx()) {
  const res = decodeRouteConfiguration(rc([{ match: { prefix: '/' }, ...route }]), c);
  return { route: res.value?.virtualHosts[0]?.routes[0], errors: res.errors, warnings: res.warnings };
}
const R = 'virtual_hosts[0].routes[0]';

describe('RouteConfiguration and VirtualHost', () => {
  it('lower-cases domains, accepts wildcard forms and ports', () => {
    const res = decodeRouteConfiguration(
      {
        name: 'r',
        virtual_hosts: [
          { name: 'a', domains: ['API.Example.com', '*.Example.org', 'foo.*', 'api.example.com:8080'], routes: [] },
          { name: 'b', domains: ['*'], routes: [] },
        ],
      },
      ctx(),
    );
    expect(res.errors).toEqual([]);
    expect(res.value!.virtualHosts.map((v) => v.domains)).toEqual([
      ['api.example.com', '*.example.org', 'foo.*', 'api.example.com:8080'],
      ['*'],
    ]);
  });

  it('rejects bad wildcards, duplicate domains across virtual hosts and a second "*"', () => {
    const res = decodeRouteConfiguration(
      {
        name: 'r',
        virtual_hosts: [
          { name: 'a', domains: ['*', 'x.com', 'a*b.com', '*.x.*', ''], routes: [] },
          { name: 'b', domains: ['X.com', '*'], routes: [] },
          { name: 'c', domains: [], routes: [] },
          { domains: ['y.com'] },
        ],
      },
      ctx(),
    );
    expect(res.value).toBeUndefined();
    expect(res.errors).toEqual([
      {
        path: 'virtual_hosts[0].domains[2]',
        message: 'invalid domain "a*b.com": a wildcard may only be a single leading or trailing "*"',
      },
      {
        path: 'virtual_hosts[0].domains[3]',
        message: 'invalid domain "*.x.*": a wildcard may only be a single leading or trailing "*"',
      },
      { path: 'virtual_hosts[0].domains[4]', message: 'must not be empty' },
      {
        path: 'virtual_hosts[1].domains',
        message:
          'only unique values for domains are permitted: duplicate entry of domain x.com (also in virtual host "a")',
      },
      {
        path: 'virtual_hosts[1].domains',
        message: 'only a single wildcard domain is permitted in route "r" (also in virtual host "a")',
      },
      { path: 'virtual_hosts[2].domains', message: 'at least one domain is required' },
      { path: 'virtual_hosts[3].name', message: 'is required' },
    ]);
  });

  it('decodes header mutations with append_action and the legacy append bool', () => {
    const res = decodeRouteConfiguration(
      rc(
        [],
        {},
        {
          request_headers_to_add: [
            { header: { key: 'X-A', value: '1' } },
            { header: { key: 'x-b', value: '%DOWNSTREAM_REMOTE_ADDRESS%' }, append: false },
            { header: { key: 'x-c', value: '' }, append_action: 'ADD_IF_ABSENT', keep_empty_value: true },
          ],
          request_headers_to_remove: ['X-Remove'],
          response_headers_to_add: [{ header: { key: 'x-d', value: 'v' }, appendAction: 'OVERWRITE_IF_EXISTS' }],
          response_headers_to_remove: ['server'],
        },
      ),
      ctx(),
    );
    expect(res.errors).toEqual([]);
    expect(res.value).toMatchObject({
      requestHeadersToAdd: [
        { key: 'x-a', value: '1', appendAction: 'APPEND_IF_EXISTS_OR_ADD', keepEmptyValue: false },
        {
          key: 'x-b',
          value: '%DOWNSTREAM_REMOTE_ADDRESS%',
          appendAction: 'OVERWRITE_IF_EXISTS_OR_ADD',
          keepEmptyValue: false,
        },
        { key: 'x-c', value: '', appendAction: 'ADD_IF_ABSENT', keepEmptyValue: true },
      ],
      requestHeadersToRemove: ['x-remove'],
      responseHeadersToAdd: [{ key: 'x-d', value: 'v', appendAction: 'OVERWRITE_IF_EXISTS' }],
      responseHeadersToRemove: ['server'],
    });
  });

  it('rejects pseudo-header and host mutations, and append with append_action', () => {
    const res = decodeRouteConfiguration(
      rc(
        [],
        {},
        {
          request_headers_to_add: [
            { header: { key: ':path', value: '/' } },
            { header: { key: 'x', value: 'v' }, append: true, append_action: 'ADD_IF_ABSENT' },
            { header: { key: 'bad header', value: 'v' } },
          ],
          request_headers_to_remove: ['Host', ':authority'],
        },
      ),
      ctx(),
    );
    expect(res.errors).toEqual([
      { path: 'request_headers_to_add[0].header.key', message: ':-prefixed or host headers may not be modified' },
      {
        path: 'request_headers_to_add[1].append',
        message: "both append and append_action are set and it's not allowed",
      },
      { path: 'request_headers_to_add[2].header.key', message: 'invalid header name "bad header"' },
      { path: 'request_headers_to_remove[0]', message: ':-prefixed or host headers may not be removed' },
      { path: 'request_headers_to_remove[1]', message: ':-prefixed or host headers may not be removed' },
    ]);
  });
});

describe('RouteMatch', () => {
  it('decodes every path specifier, headers, query parameters and grpc', () => {
    const res = decodeRouteConfiguration(
      rc([
        { match: { path: '/exact', case_sensitive: false }, route: { cluster: 'c' } },
        { match: { safe_regex: { google_re2: {}, regex: '/v[0-9]+/.*' } }, route: { cluster: 'c' } },
        { match: { path_separated_prefix: '/api' }, route: { cluster: 'c' } },
        { match: { connect_matcher: {} }, route: { cluster: 'c' } },
        {
          match: {
            prefix: '/',
            grpc: {},
            headers: [
              { name: 'X-Exact', string_match: { exact: 'v', ignore_case: true } },
              { name: 'x-regex', safe_regex_match: { regex: 'a+' } },
              { name: 'x-present', present_match: true },
              { name: 'x-range', range_match: { start: 1, end: 10 }, invert_match: true },
              { name: 'x-legacy', prefix_match: 'pre' },
              { name: 'x-missing', string_match: { exact: '' }, treat_missing_header_as_empty: true },
              { name: ':method', exact_match: 'GET' },
              { name: 'x-any' },
            ],
            query_parameters: [
              { name: 'debug', present_match: true },
              { name: 'v', string_match: { suffix: '2' } },
            ],
          },
          route: { cluster: 'c' },
        },
      ]),
      ctx(),
    );
    expect(res.errors).toEqual([]);
    const [exact, regex, sep, connect, full] = res.value!.virtualHosts[0]!.routes.map((r) => r.match);
    expect(exact).toEqual({
      path: { kind: 'path', value: '/exact' },
      caseSensitive: false,
      headers: [],
      queryParameters: [],
      grpc: false,
    });
    expect(regex!.path.kind).toBe('safe_regex');
    const re = (regex!.path as { regex: RegExp }).regex;
    expect(re.test('/v1/users')).toBe(true);
    expect(re.test('/x/v1/users')).toBe(false); // full match: anchored
    expect(sep!.path).toEqual({ kind: 'path_separated_prefix', value: '/api' });
    expect(connect!.path).toEqual({ kind: 'connect_matcher' });
    expect(full!.grpc).toBe(true);
    expect(full!.headers.map((h) => [h.name, h.match.kind, h.invert, h.treatMissingAsEmpty])).toEqual([
      ['x-exact', 'string', false, false],
      ['x-regex', 'string', false, false],
      ['x-present', 'present', false, false],
      ['x-range', 'range', true, false],
      ['x-legacy', 'string', false, false],
      ['x-missing', 'string', false, true],
      [':method', 'string', false, false],
      ['x-any', 'present', false, false],
    ]);
    expect(full!.headers[0]!.match).toEqual({
      kind: 'string',
      matcher: { kind: 'exact', value: 'v', ignoreCase: true },
    });
    expect(full!.headers[3]!.match).toEqual({ kind: 'range', start: 1, end: 10 });
    expect(full!.headers[4]!.match).toEqual({
      kind: 'string',
      matcher: { kind: 'prefix', value: 'pre', ignoreCase: false },
    });
    expect(full!.queryParameters).toEqual([
      { name: 'debug', match: { kind: 'present' } },
      { name: 'v', match: { kind: 'string', matcher: { kind: 'suffix', value: '2', ignoreCase: false } } },
    ]);
  });

  it.each([
    [
      {},
      [
        {
          path: `${R}.match`,
          message: 'one of prefix, path, safe_regex, path_separated_prefix, connect_matcher must be set',
        },
      ],
    ],
    [
      { prefix: '/', path: '/a' },
      [
        {
          path: `${R}.match.path`,
          message:
            'only one of prefix, path, safe_regex, path_separated_prefix, connect_matcher, path_match_policy may be set (also found prefix)',
        },
      ],
    ],
    [
      { path_separated_prefix: '/api/' },
      [
        {
          path: `${R}.match.path_separated_prefix`,
          message: '"/api/" must not be empty, contain ? or #, or end with /',
        },
      ],
    ],
    [
      { safe_regex: { regex: '(?=a)b' } },
      [
        {
          path: `${R}.match.safe_regex.regex`,
          message: 'invalid regex "(?=a)b": lookaround assertions are not supported (Envoy uses RE2)',
        },
      ],
    ],
    [
      { safe_regex: { regex: '(a)\\1' } },
      [
        {
          path: `${R}.match.safe_regex.regex`,
          message: 'invalid regex "(a)\\\\1": backreferences are not supported (Envoy uses RE2)',
        },
      ],
    ],
    [
      { safe_regex: { regex: '(' } },
      [
        {
          path: `${R}.match.safe_regex.regex`,
          message: 'invalid regex "(": Invalid regular expression: /^(?:()$/: Unterminated group',
        },
      ],
    ],
    [{ safe_regex: {} }, [{ path: `${R}.match.safe_regex.regex`, message: 'is required' }]],
    [
      { prefix: '/', runtime_fraction: { default_value: { numerator: 50 } } },
      [{ path: `${R}.match.runtime_fraction`, message: 'is not supported by meshlet' }],
    ],
    [
      { prefix: '/', headers: [{ name: 'x', string_match: {} }] },
      [
        {
          path: `${R}.match.headers[0].string_match`,
          message: 'one of exact, prefix, suffix, contains, safe_regex must be set',
        },
      ],
    ],
    [
      { prefix: '/', headers: [{ name: 'x', string_match: { prefix: '' } }] },
      [{ path: `${R}.match.headers[0].string_match.prefix`, message: 'must not be empty' }],
    ],
    [
      { prefix: '/', headers: [{ string_match: { exact: 'a' } }] },
      [{ path: `${R}.match.headers[0].name`, message: 'is required' }],
    ],
    [
      { prefix: '/', query_parameters: [{ string_match: { exact: 'a' } }] },
      [{ path: `${R}.match.query_parameters[0].name`, message: 'is required' }],
    ],
  ])('reports match error %#', (match, expected) => {
    const { errors, warnings } = one({ match, route: { cluster: 'c' } });
    expect(errors).toEqual(expected);
    expect(warnings).toEqual([]);
  });

  it('translates RE2-only syntax', () => {
    const { route, errors } = one({
      match: { safe_regex: { regex: '(?i)/(?P<id>[a-z]+)\\z' } },
      route: { cluster: 'c' },
    });
    expect(errors).toEqual([]);
    const re = (route!.match.path as { regex: RegExp }).regex;
    expect(re.test('/ABC')).toBe(true);
    expect(re.exec('/abc')?.groups?.id).toBe('abc');
    expect(re.test('/ab1')).toBe(false);
  });
});

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

  it('retry defaults: num_retries 1, back-off 25 ms base / 250 ms max', () => {
    const { route } = one({ route: { cluster: 'c', retry_policy: { retry_on: '5xx' } } });
    expect((route!.action as RouteAction).retryPolicy).toEqual({
      retryOn: new Set(['5xx']),
      numRetries: 1,
      perTryTimeoutMs: 0,
      retriableStatusCodes: [],
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

describe('typed_per_filter_config', () => {
  it('is decoded by the filter factory, on routes, virtual hosts and weighted clusters', () => {
    const fault = { '@type': `${TYPE_PREFIX}${FAULT_TYPE}`, abort: { http_status: 503 } };
    const res = decodeRouteConfiguration(
      rc(
        [
          {
            match: { prefix: '/' },
            route: {
              weighted_clusters: {
                clusters: [{ name: 'a', weight: 1, typed_per_filter_config: { 'envoy.filters.http.fault': fault } }],
              },
            },
            typed_per_filter_config: {
              'envoy.filters.http.fault': {
                '@type': `${TYPE_PREFIX}envoy.config.route.v3.FilterConfig`,
                config: fault,
              },
            },
          },
        ],
        { typed_per_filter_config: { 'envoy.filters.http.fault': fault } },
      ),
      ctx(),
    );
    expect(res.errors).toEqual([]);
    const vh = res.value!.virtualHosts[0]!;
    expect(vh.typedPerFilterConfig).toEqual({ 'envoy.filters.http.fault': { abortStatus: 503 } });
    expect(vh.routes[0]!.typedPerFilterConfig).toEqual({ 'envoy.filters.http.fault': { abortStatus: 503 } });
    const c = (vh.routes[0]!.action as RouteAction).cluster;
    expect(c.kind === 'weighted' && c.clusters[0]!.typedPerFilterConfig).toEqual({
      'envoy.filters.http.fault': { abortStatus: 503 },
    });
  });

  it('unknown types are errors unless wrapped in an optional FilterConfig', () => {
    const lua = { '@type': `${TYPE_PREFIX}envoy.extensions.filters.http.lua.v3.LuaPerRoute` };
    const router = { '@type': `${TYPE_PREFIX}envoy.extensions.filters.http.router.v3.Router` };
    const res = one({
      route: { cluster: 'c' },
      typed_per_filter_config: {
        lua,
        lua2: { '@type': `${TYPE_PREFIX}envoy.config.route.v3.FilterConfig`, is_optional: true, config: lua },
        router,
      },
    });
    expect(res.errors).toEqual([
      {
        path: `${R}.typed_per_filter_config.lua.@type`,
        message: 'unsupported filter config type envoy.extensions.filters.http.lua.v3.LuaPerRoute',
      },
      {
        path: `${R}.typed_per_filter_config.router.@type`,
        message: 'filter envoy.extensions.filters.http.router.v3.Router does not support per-route configuration',
      },
    ]);
    expect(res.warnings).toEqual([
      {
        path: `${R}.typed_per_filter_config.lua2.config.@type`,
        message: 'unknown filter config type envoy.extensions.filters.http.lua.v3.LuaPerRoute, ignored (is_optional)',
      },
    ]);
  });
});
