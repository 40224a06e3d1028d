import { describe, expect, it } from 'vitest';
import { decodeRouteConfiguration } from '../../proxy/config/envoy';
import type { RouteAction } from '../../proxy/config/types';
import { ctx, FAULT_TYPE, TYPE_PREFIX } from './helpers';

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

  it('reads ignore_port_in_host_matching (istiod sets it on outbound route configurations) without a warning', () => {
    const on = decodeRouteConfiguration(rc([], {}, { ignore_port_in_host_matching: true }), ctx());
    expect([on.errors, on.warnings, on.value!.ignorePortInHostMatching]).toEqual([[], [], true]);
    expect(decodeRouteConfiguration(rc([]), ctx()).value!.ignorePortInHostMatching).toBeUndefined();
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
      { prefix: '/', runtime_fraction: { runtime_key: 'k' } },
      [{ path: `${R}.match.runtime_fraction.default_value`, message: 'is required' }],
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

describe('route decorator (istiod writes one on every route)', () => {
  it('reads operation and propagate (default true) without a warning; operation is required', () => {
    const a = one({ route: { cluster: 'c' }, decorator: { operation: 'reviews.default.svc.cluster.local:9080/*' } });
    expect([a.errors, a.warnings]).toEqual([[], []]);
    expect(a.route!.decorator).toEqual({ operation: 'reviews.default.svc.cluster.local:9080/*', propagate: true });
    expect(one({ route: { cluster: 'c' }, decorator: { operation: 'op', propagate: false } }).route!.decorator).toEqual({
      operation: 'op',
      propagate: false,
    });
    expect(one({ route: { cluster: 'c' } }).route!.decorator).toBeUndefined();
    expect(one({ route: { cluster: 'c' }, decorator: {} }).errors.map((e) => e.path)).toEqual([`${R}.decorator.operation`]);
  });

  it('reads route tracing: only the percentages set, and custom tags', () => {
    const a = one({
      route: { cluster: 'c' },
      tracing: { random_sampling: { value: 5 }, overall_sampling: { value: 50 }, custom_tags: [{ tag: 't', literal: { value: 'v' } }] },
    });
    expect([a.errors, a.warnings]).toEqual([[], []]);
    expect(a.route!.tracing).toEqual({ randomSamplingPercent: 5, overallSamplingPercent: 50, customTags: [{ tag: 't', value: 'v' }] });
    expect(one({ route: { cluster: 'c' }, tracing: { client_sampling: { value: 101 } } }).errors).toHaveLength(1);
  });

  it('reads metadata custom tags of kind request and host; route and cluster warn and are left out', () => {
    const md = (kind: string) => ({ tag: kind, metadata: { kind: { [kind]: {} }, metadata_key: { key: 'ns', path: [{ key: 'a' }, { key: 'b' }] }, default_value: 'd' } });
    const a = one({ route: { cluster: 'c' }, tracing: { custom_tags: [md('request'), md('host'), md('route'), md('cluster')] } });
    expect(a.errors).toEqual([]);
    expect(a.route!.tracing!.customTags).toEqual([
      { tag: 'request', value: 'd', metadata: { kind: 'request', namespace: 'ns', path: ['a', 'b'] } },
      { tag: 'host', value: 'd', metadata: { kind: 'host', namespace: 'ns', path: ['a', 'b'] } },
    ]);
    expect(a.warnings.map((w) => w.message)).toEqual([
      'route metadata custom tags are not supported by meshlet; the tag is left out',
      'cluster metadata custom tags are not supported by meshlet; the tag is left out',
    ]);
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
