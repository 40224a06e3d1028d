/**
 * The rest of the validation catalogue: one case per rule not already covered by the
 * per-resource tests, each asserting the exact path and message (and no stray warning there).
 */
import { describe, expect, it } from 'vitest';
import { decodeBootstrap } from '../../proxy/config/bootstrap';
import {
  decodeCluster,
  decodeClusterLoadAssignment,
  decodeListener,
  decodeRouteConfiguration,
} from '../../proxy/config/envoy';
import type { ConfigError, FieldIssue } from '../../common/errors';
import { ctx, hcm, listener, staticCluster, TCP_PROXY_TYPE, TYPE_PREFIX } from './helpers';

const HPO = 'envoy.extensions.upstreams.http.v3.HttpProtocolOptions';
const T = (t: string) => `${TYPE_PREFIX}${t}`;
const HCM_P = 'filter_chains[0].filters[0].typed_config';
const STDOUT = T('envoy.extensions.access_loggers.stream.v3.StdoutAccessLog');

type Res = { errors: FieldIssue[]; warnings: FieldIssue[] };

function withHcm(extra: Record<string, unknown>): Res {
  return decodeListener(listener({}, extra), ctx());
}
function withTcp(tcp: Record<string, unknown>): Res {
  return decodeListener(
    {
      name: 'l',
      address: { socket_address: { address: '0.0.0.0', port_value: 1 } },
      filter_chains: [{ filters: [{ name: 't', typed_config: { '@type': TCP_PROXY_TYPE, ...tcp } }] }],
    },
    ctx(),
  );
}
function withCluster(extra: Record<string, unknown>): Res {
  return decodeCluster(staticCluster('c', extra), ctx());
}
function hpo(opts: Record<string, unknown>) {
  return { typed_extension_protocol_options: { [HPO]: { '@type': T(HPO), ...opts } } };
}
function upTls(common: Record<string, unknown>, extra: Record<string, unknown> = {}) {
  return {
    transport_socket: {
      name: 'envoy.transport_sockets.tls',
      typed_config: {
        '@type': T('envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext'),
        common_tls_context: common,
        ...extra,
      },
    },
  };
}
function route(r: Record<string, unknown>, vh: Record<string, unknown> = {}, rc: Record<string, unknown> = {}): Res {
  return decodeRouteConfiguration(
    {
      name: 'r',
      virtual_hosts: [{ name: 'vh', domains: ['*'], routes: [{ match: { prefix: '/' }, ...r }], ...vh }],
      ...rc,
    },
    ctx(),
  );
}
function tracing(http: Record<string, unknown>): FieldIssue[] {
  try {
    decodeBootstrap({ static_resources: { clusters: [staticCluster('zipkin')] }, tracing: { http } }, ctx());
    return [];
  } catch (e) {
    return [...(e as ConfigError).issues];
  }
}
function bootstrapIssues(raw: unknown): FieldIssue[] {
  try {
    decodeBootstrap(raw, ctx());
    return [];
  } catch (e) {
    return [...(e as ConfigError).issues];
  }
}

const R = 'virtual_hosts[0].routes[0]';
const TLS_P = 'transport_socket.typed_config';

const cases: [string, () => Res | FieldIssue[], FieldIssue[]][] = [
  // access logs
  [
    'access log custom formatters',
    () =>
      withHcm({
        access_log: [
          {
            name: 'a',
            typed_config: { '@type': STDOUT, log_format: { text_format: 'x', formatters: [{ name: 'f' }] } },
          },
        ],
      }),
    [
      {
        path: `${HCM_P}.access_log[0].typed_config.log_format.formatters`,
        message: 'custom formatters are not supported by meshlet',
      },
    ],
  ],
  [
    'access log format from a file',
    () =>
      withHcm({
        access_log: [
          { name: 'a', typed_config: { '@type': STDOUT, log_format: { text_format_source: { filename: '/f' } } } },
        ],
      }),
    [
      {
        path: `${HCM_P}.access_log[0].typed_config.log_format.text_format_source`,
        message: 'only inline_string is supported by meshlet',
      },
    ],
  ],
  [
    'access log empty format',
    () => withHcm({ access_log: [{ name: 'a', typed_config: { '@type': STDOUT, log_format: {} } }] }),
    [
      {
        path: `${HCM_P}.access_log[0].typed_config.log_format`,
        message: 'one of text_format, text_format_source, json_format must be set',
      },
    ],
  ],
  [
    'access log filter',
    () =>
      withHcm({ access_log: [{ name: 'a', filter: { status_code_filter: {} }, typed_config: { '@type': STDOUT } }] }),
    [{ path: `${HCM_P}.access_log[0].filter`, message: 'access log filters are not supported by meshlet' }],
  ],
  [
    'access log without typed_config',
    () => withHcm({ access_log: [{ name: 'a' }] }),
    [{ path: `${HCM_P}.access_log[0].typed_config`, message: 'is required' }],
  ],
  // upstream protocol options
  [
    'explicit HTTP/3',
    () => withCluster(hpo({ explicit_http_config: { http3_protocol_options: {} } })),
    [
      {
        path: `typed_extension_protocol_options.${HPO}.explicit_http_config.http3_protocol_options`,
        message: 'HTTP/3 is not supported by meshlet',
      },
    ],
  ],
  [
    'empty explicit_http_config',
    () => withCluster(hpo({ explicit_http_config: {} })),
    [
      {
        path: `typed_extension_protocol_options.${HPO}.explicit_http_config`,
        message: 'one of http_protocol_options, http2_protocol_options must be set',
      },
    ],
  ],
  [
    'downstream protocol with HTTP/3',
    () => withCluster(hpo({ use_downstream_protocol_config: { http3_protocol_options: {} } })),
    [
      {
        path: `typed_extension_protocol_options.${HPO}.use_downstream_protocol_config.http3_protocol_options`,
        message: 'HTTP/3 is not supported by meshlet',
      },
    ],
  ],
  [
    'upstream HTTP filters',
    () => withCluster(hpo({ explicit_http_config: { http_protocol_options: {} }, http_filters: [{ name: 'x' }] })),
    [
      {
        path: `typed_extension_protocol_options.${HPO}.http_filters`,
        message: 'upstream HTTP filters are not supported by meshlet',
      },
    ],
  ],
  // core
  [
    'percent of the wrong type',
    () => withCluster({ common_lb_config: { healthy_panic_threshold: 'half' } }),
    [
      {
        path: 'common_lb_config.healthy_panic_threshold',
        message: 'expected a percentage between 0 and 100, got "half"',
      },
    ],
  ],
  [
    'internal listener address',
    () => decodeListener(listener({ address: { envoy_internal_address: { server_listener_name: 'x' } } }), ctx()),
    [{ path: 'address.envoy_internal_address', message: 'envoy_internal_address (ambient/HBONE internal listeners) is not supported: meshlet implements the sidecar data plane, not ambient' }],
  ],
  [
    'custom resolver',
    () =>
      decodeListener(
        listener({ address: { socket_address: { address: '0.0.0.0', port_value: 1, resolver_name: 'r' } } }),
        ctx(),
      ),
    [{ path: 'address.socket_address.resolver_name', message: 'custom resolvers are not supported by meshlet' }],
  ],
  [
    'named port',
    () => decodeListener(listener({ address: { socket_address: { address: '0.0.0.0', named_port: 'http' } } }), ctx()),
    [{ path: 'address.socket_address.named_port', message: 'named ports are not supported; use port_value' }],
  ],
  [
    'inline_bytes that are not base64',
    () =>
      decodeCluster(
        staticCluster(
          'c',
          upTls({
            tls_certificates: [{ certificate_chain: { inline_bytes: '%%%' }, private_key: { inline_string: 'k' } }],
          }),
        ),
        ctx(),
      ),
    [
      {
        path: `${TLS_P}.common_tls_context.tls_certificates[0].certificate_chain.inline_bytes`,
        message: 'expected base64',
      },
    ],
  ],
  [
    'empty config source',
    () => decodeCluster({ name: 'e', type: 'EDS', eds_cluster_config: { eds_config: {} } }, ctx()),
    [
      {
        path: 'eds_cluster_config.eds_config',
        message: 'one of ads, path_config_source, api_config_source must be set',
      },
    ],
  ],
  [
    'gRPC service with initial metadata but no kind',
    () =>
      decodeCluster(
        {
          name: 'e',
          type: 'EDS',
          eds_cluster_config: {
            eds_config: {
              api_config_source: {
                api_type: 'GRPC',
                grpc_services: [{ initial_metadata: [{ key: 'a', value: 'b' }] }],
              },
            },
          },
        },
        ctx(),
      ),
    [
      {
        path: 'eds_cluster_config.eds_config.api_config_source.grpc_services[0]',
        message: 'one of envoy_grpc, google_grpc must be set',
      },
      {
        path: 'eds_cluster_config.eds_config.api_config_source.grpc_services',
        message: 'at least one gRPC service is required',
      },
    ],
  ],
  [
    'google_grpc default credentials, and call credentials without a secure channel',
    () =>
      decodeCluster(
        {
          name: 'e',
          type: 'EDS',
          eds_cluster_config: {
            eds_config: {
              api_config_source: {
                api_type: 'GRPC',
                grpc_services: [
                  {
                    google_grpc: {
                      target_uri: 'x:1',
                      channel_credentials: { google_default: {} },
                      call_credentials: [{ access_token: 't' }],
                    },
                  },
                ],
              },
            },
          },
        },
        ctx(),
      ),
    [
      {
        path: 'eds_cluster_config.eds_config.api_config_source.grpc_services[0].google_grpc.channel_credentials.google_default',
        message: 'Google default credentials are not supported by meshlet',
      },
      {
        path: 'eds_cluster_config.eds_config.api_config_source.grpc_services[0].google_grpc.call_credentials',
        message:
          'call credentials need channel_credentials ssl_credentials or local_credentials; they are never sent over plaintext',
      },
    ],
  ],
  [
    'filter_metadata namespace that is not a map',
    () => withCluster({ metadata: { filter_metadata: { istio: 3 } } }),
    [{ path: 'metadata.filter_metadata.istio', message: 'expected a map' }],
  ],
  // endpoints
  [
    'named endpoints, LEDS and drop_overloads',
    () =>
      decodeClusterLoadAssignment(
        {
          cluster_name: 'c',
          endpoints: [{ lb_endpoints: [{ endpoint_name: 'e' }], leds_cluster_locality_config: {} }],
          policy: { drop_overloads: [{ category: 'x' }] },
        },
        ctx(),
      ),
    [
      { path: 'endpoints[0].lb_endpoints[0].endpoint_name', message: 'named endpoints are not supported by meshlet' },
      { path: 'endpoints[0].leds_cluster_locality_config', message: 'LEDS is not supported by meshlet' },
      { path: 'policy.drop_overloads', message: 'is not supported by meshlet' },
    ],
  ],
  // HCM
  [
    'HTTP filter from ECDS',
    () =>
      withHcm({
        http_filters: [
          { name: 'x', config_discovery: { config_source: { ads: {} } } },
          { name: 'r', typed_config: { '@type': T('envoy.extensions.filters.http.router.v3.Router') } },
        ],
      }),
    [
      {
        path: `${HCM_P}.http_filters[0].config_discovery`,
        message: 'filter config discovery (ECDS) is not supported by meshlet',
      },
    ],
  ],
  [
    'HTTP filter without typed_config',
    // Envoy finds a filter by name without typed_config; an unknown name has nothing to go on.
    () => withHcm({ http_filters: [{ name: 'my.filter' }] }),
    [{ path: `${HCM_P}.http_filters[0].typed_config`, message: 'is required' }],
  ],
  [
    'scoped routes',
    () => decodeListener(listener({}, { route_config: undefined, scoped_routes: { name: 's' } }), ctx()),
    [{ path: `${HCM_P}.scoped_routes`, message: 'scoped routes are not supported by meshlet' }],
  ],
  // headers
  [
    'value and raw_value',
    () =>
      route({
        route: { cluster: 'c' },
        request_headers_to_add: [{ header: { key: 'x', value: 'a', raw_value: 'Yg==' } }],
      }),
    [{ path: `${R}.request_headers_to_add[0].header.value`, message: 'only one of value, raw_value may be set' }],
  ],
  [
    'empty header to remove',
    () => route({ route: { cluster: 'c' }, response_headers_to_remove: [''] }),
    [{ path: `${R}.response_headers_to_remove[0]`, message: 'must not be empty' }],
  ],
  // health checks
  [
    'TCP payload with neither text nor binary; gRPC initial metadata',
    () =>
      withCluster({
        health_checks: [
          {
            timeout: '1s',
            interval: '1s',
            unhealthy_threshold: 1,
            healthy_threshold: 1,
            tcp_health_check: { send: {} },
          },
          {
            timeout: '1s',
            interval: '1s',
            unhealthy_threshold: 1,
            healthy_threshold: 1,
            grpc_health_check: { initial_metadata: [{ key: 'a' }] },
          },
          {
            timeout: '1s',
            interval: '1s',
            unhealthy_threshold: 1,
            healthy_threshold: 1,
            http_health_check: {
              path: '/',
              codec_client_type: 'HTTP3',
              request_headers_to_add: [{ header: { key: 'a', value: 'b' } }],
            },
          },
        ],
      }),
    [
      { path: 'health_checks[0].tcp_health_check.send', message: 'one of text, binary must be set' },
      { path: 'health_checks[1].grpc_health_check.initial_metadata', message: 'is not supported by meshlet' },
      { path: 'health_checks[2].http_health_check.codec_client_type', message: 'HTTP3 is not supported by meshlet' },
      { path: 'health_checks[2].http_health_check.request_headers_to_add', message: 'is not supported by meshlet' },
    ],
  ],
  [
    'health check intervals must be positive',
    () =>
      withCluster({
        health_checks: [
          {
            timeout: '1s',
            interval: '1s',
            no_traffic_interval: '0s',
            unhealthy_interval: { seconds: 0 },
            unhealthy_threshold: 1,
            healthy_threshold: 1,
            tcp_health_check: {},
          },
        ],
      }),
    [
      { path: 'health_checks[0].no_traffic_interval', message: 'must be greater than 0' },
      { path: 'health_checks[0].unhealthy_interval', message: 'must be greater than 0' },
    ],
  ],
  [
    'negative durations',
    () => route({ route: { cluster: 'c', timeout: '-1s', retry_policy: { per_try_timeout: { seconds: -2 } } } }),
    [
      { path: `${R}.route.timeout`, message: 'must not be negative, got "-1s"' },
      { path: `${R}.route.retry_policy.per_try_timeout`, message: 'must not be negative, got {"seconds":-2}' },
    ],
  ],
  // listener
  [
    'direct source prefix ranges; ECDS network filter; network filter without typed_config',
    () =>
      decodeListener(
        {
          name: 'l',
          address: { socket_address: { address: '0.0.0.0', port_value: 1 } },
          filter_chains: [
            {
              filter_chain_match: { direct_source_prefix_ranges: [{ address_prefix: '10.0.0.0' }] },
              filters: [{ name: 'x', config_discovery: {} }],
            },
            { filter_chain_match: { destination_port: 2 }, filters: [{ name: 'y' }] },
          ],
        },
        ctx(),
      ),
    [
      {
        path: 'filter_chains[0].filter_chain_match.direct_source_prefix_ranges',
        message: 'is not supported by meshlet',
      },
      {
        path: 'filter_chains[0].filters[0].config_discovery',
        message: 'filter config discovery (ECDS) is not supported by meshlet',
      },
      { path: 'filter_chains[1].filters[0].typed_config', message: 'is required' },
    ],
  ],
  // matchers
  [
    'query parameter name too long',
    () =>
      route({
        match: { prefix: '/', query_parameters: [{ name: 'q'.repeat(1025), present_match: true }] },
        route: { cluster: 'c' },
      }),
    [{ path: `${R}.match.query_parameters[0].name`, message: 'must be at most 1024 characters' }],
  ],
  // per-filter config
  [
    'disabling a filter per route',
    () =>
      route({
        route: { cluster: 'c' },
        typed_per_filter_config: { f: { '@type': T('envoy.config.route.v3.FilterConfig'), disabled: true } },
      }),
    [
      {
        path: `${R}.typed_per_filter_config.f.disabled`,
        message: 'disabling a filter per route is not supported by meshlet',
      },
    ],
  ],
  // RBAC
  [
    'empty or_rules, empty principal, continuous enforcement',
    () =>
      decodeListener(
        {
          name: 'l',
          address: { socket_address: { address: '0.0.0.0', port_value: 1 } },
          filter_chains: [
            {
              filters: [
                {
                  name: 'rbac',
                  typed_config: {
                    '@type': T('envoy.extensions.filters.network.rbac.v3.RBAC'),
                    stat_prefix: 's',
                    enforcement_type: 'CONTINUOUS',
                    rules: { policies: { p: { permissions: [{ or_rules: { rules: [] } }], principals: [{}] } } },
                  },
                },
                { name: 't', typed_config: { '@type': TCP_PROXY_TYPE, stat_prefix: 't', cluster: 'c' } },
              ],
            },
          ],
        },
        ctx(),
      ),
    [
      {
        path: 'filter_chains[0].filters[0].typed_config.rules.policies.p.permissions[0].or_rules.rules',
        message: 'at least one rule is required',
      },
      {
        path: 'filter_chains[0].filters[0].typed_config.rules.policies.p.principals[0]',
        message:
          'a principal identifier must be set (any, and_ids, or_ids, not_id, authenticated, direct_remote_ip, remote_ip, source_ip, header, url_path)',
      },
      {
        path: 'filter_chains[0].filters[0].typed_config.enforcement_type',
        message: 'CONTINUOUS is not supported by meshlet',
      },
    ],
  ],
  // route actions
  [
    'cluster_header in weighted clusters, upgrade filters, path_rewrite_policy',
    () =>
      route({
        route: {
          weighted_clusters: { clusters: [{ cluster_header: 'x', weight: 1 }] },
          upgrade_configs: [{ upgrade_type: 'websocket', filters: [{ name: 'f' }] }],
          path_rewrite_policy: { name: 'p' },
        },
      }),
    [
      {
        path: `${R}.route.weighted_clusters.clusters[0].cluster_header`,
        message: 'is not supported by meshlet in weighted clusters',
      },
      { path: `${R}.route.weighted_clusters.clusters[0].name`, message: 'is required' },
      { path: `${R}.route.path_rewrite_policy`, message: 'is not supported by meshlet' },
      { path: `${R}.route.upgrade_configs[0].filters`, message: 'upgrade filter chains are not supported by meshlet' },
    ],
  ],
  [
    'regex_rewrite in a redirect',
    () => route({ redirect: { regex_rewrite: { pattern: { regex: 'a' }, substitution: 'b' } } }),
    [{ path: `${R}.redirect.regex_rewrite`, message: 'regex_rewrite in redirects is not supported by meshlet' }],
  ],
  // routes
  [
    'path_match_policy, require_tls, VHDS',
    () =>
      route(
        { match: { path_match_policy: { name: 'p' } }, route: { cluster: 'c' } },
        { require_tls: 'ALL' },
        { vhds: { config_source: { ads: {} } } },
      ),
    [
      { path: `${R}.match.path_match_policy`, message: 'path match policies are not supported by meshlet' },
      { path: 'virtual_hosts[0].require_tls', message: 'ALL is not supported by meshlet' },
      { path: 'vhds', message: 'VHDS is not supported by meshlet' },
    ],
  ],
  // tcp proxy
  [
    'TCP proxy without a cluster, with tunneling',
    () => withTcp({ stat_prefix: 't', tunneling_config: { hostname: 'h' } }),
    [
      { path: 'filter_chains[0].filters[0].typed_config', message: 'one of cluster, weighted_clusters must be set' },
      { path: 'filter_chains[0].filters[0].typed_config.tunneling_config', message: 'HBONE/CONNECT tunneling (ambient) is not supported: meshlet implements the sidecar data plane, not ambient' },
    ],
  ],
  [
    'TCP proxy weighted clusters',
    () =>
      withTcp({
        stat_prefix: 't',
        weighted_clusters: { clusters: [{ name: 'a' }, { name: 'b', weight: 0 }] },
        max_connect_attempts: 0,
      }),
    [
      { path: 'filter_chains[0].filters[0].typed_config.weighted_clusters.clusters[0].weight', message: 'is required' },
      {
        path: 'filter_chains[0].filters[0].typed_config.weighted_clusters.clusters[1].weight',
        message: 'must be between 1 and 4294967295, got 0',
      },
      {
        path: 'filter_chains[0].filters[0].typed_config.max_connect_attempts',
        message: 'must be between 1 and 4294967295, got 0',
      },
    ],
  ],
  // TLS
  [
    'custom validator, inverted TLS versions, long SNI, certificate providers',
    () =>
      withCluster(
        upTls(
          {
            tls_params: { tls_minimum_protocol_version: 'TLSv1_3', tls_maximum_protocol_version: 'TLSv1_2' },
            tls_certificate_provider_instance: { instance_name: 'x' },
            validation_context: { custom_validator_config: { name: 'v' } },
          },
          { sni: 'a'.repeat(256) },
        ),
      ),
    [
      {
        path: `${TLS_P}.common_tls_context.tls_params.tls_maximum_protocol_version`,
        message: 'must not be lower than tls_minimum_protocol_version',
      },
      {
        path: `${TLS_P}.common_tls_context.tls_certificate_provider_instance`,
        message: 'is not supported by meshlet; use tls_certificates or SDS',
      },
      {
        path: `${TLS_P}.common_tls_context.validation_context.custom_validator_config`,
        message: 'custom validators are not supported by meshlet',
      },
      { path: `${TLS_P}.sni`, message: 'must be at most 255 characters' },
    ],
  ],
  [
    'validation context from a certificate provider; combined context parts required',
    () => withCluster(upTls({ validation_context_certificate_provider_instance: {} })),
    [
      {
        path: `${TLS_P}.common_tls_context.validation_context_certificate_provider_instance`,
        message: 'certificate provider instances are not supported by meshlet; use SDS',
      },
    ],
  ],
  [
    'combined validation context needs both parts',
    () => withCluster(upTls({ combined_validation_context: {} })),
    [
      {
        path: `${TLS_P}.common_tls_context.combined_validation_context.default_validation_context`,
        message: 'is required',
      },
      {
        path: `${TLS_P}.common_tls_context.combined_validation_context.validation_context_sds_secret_config`,
        message: 'is required',
      },
    ],
  ],
  // tracing
  [
    'OpenTelemetry over HTTP without http_uri, and both exporters',
    () =>
      tracing({
        name: 'o',
        typed_config: {
          '@type': T('envoy.config.trace.v3.OpenTelemetryConfig'),
          grpc_service: { envoy_grpc: { cluster_name: 'zipkin' } },
          http_service: {},
        },
      }),
    [
      { path: 'tracing.http.typed_config.http_service.http_uri', message: 'is required' },
      { path: 'tracing.http.typed_config.http_service', message: 'only one of grpc_service, http_service may be set' },
    ],
  ],
  [
    'OpenTelemetry HTTP URI problems',
    () =>
      tracing({
        name: 'o',
        typed_config: {
          '@type': T('envoy.config.trace.v3.OpenTelemetryConfig'),
          http_service: { http_uri: { uri: 'not a uri', cluster: 'nope' } },
        },
      }),
    [
      { path: 'tracing.http.typed_config.http_service.http_uri.cluster', message: 'unknown cluster "nope"' },
      { path: 'tracing.http.typed_config.http_service.http_uri.timeout', message: 'is required' },
      { path: 'tracing.http.typed_config.http_service.http_uri.uri', message: 'invalid URI "not a uri"' },
    ],
  ],
  [
    'Zipkin collector problems',
    () =>
      tracing({
        name: 'z',
        typed_config: {
          '@type': T('envoy.config.trace.v3.ZipkinConfig'),
          collector_cluster: 'missing',
          collector_endpoint: '/api/v2/spans',
          collector_endpoint_version: 'GRPC',
        },
      }),
    [
      { path: 'tracing.http.typed_config.collector_cluster', message: 'unknown cluster "missing"' },
      {
        path: 'tracing.http.typed_config.collector_endpoint_version',
        message: 'GRPC is not supported by meshlet (expected HTTP_JSON)',
      },
    ],
  ],
  // bootstrap
  [
    'xdstp resource locators and duplicate secret names',
    () =>
      bootstrapIssues({
        static_resources: {
          secrets: [
            { name: 's', validation_context: {} },
            { name: 's', validation_context: {} },
          ],
        },
        dynamic_resources: { lds_resources_locator: 'xdstp://x/envoy.config.listener.v3.Listener/*' },
      }),
    [
      {
        path: 'static_resources.secrets[1].name',
        message: 'duplicate secret name "s" (also static_resources.secrets[0])',
      },
      {
        path: 'dynamic_resources.lds_resources_locator',
        message: 'xdstp:// resource locators are not supported by meshlet',
      },
    ],
  ],
  [
    'admin without an address',
    () => bootstrapIssues({ admin: {} }),
    [{ path: 'admin.address', message: 'is required' }],
  ],
];

describe('validation catalogue', () => {
  it.each(cases)('%s', (_name, run, expected) => {
    const out = run();
    const errors = Array.isArray(out) ? out : out.errors;
    expect(errors).toEqual(expected);
    if (!Array.isArray(out)) {
      const errored = new Set(expected.map((e) => e.path));
      expect(out.warnings.filter((w) => errored.has(w.path))).toEqual([]);
    }
  });

  it('decodes Zipkin tracing and reports the deprecated admin.access_log_path', () => {
    const { bootstrap, warnings } = decodeBootstrap(
      {
        admin: {
          access_log_path: '/dev/null',
          address: { socket_address: { address: '127.0.0.1', port_value: 15000 } },
        },
        static_resources: { clusters: [staticCluster('zipkin')] },
        tracing: {
          http: {
            name: 'z',
            typed_config: {
              '@type': T('envoy.config.trace.v3.ZipkinConfig'),
              collector_cluster: 'zipkin',
              collector_endpoint: '/api/v2/spans',
            },
          },
        },
      },
      ctx(),
    );
    expect(bootstrap.tracing).toEqual({
      provider: 'zipkin',
      httpService: { clusterName: 'zipkin', path: '/api/v2/spans', timeoutMs: 5000 },
      serviceName: '',
      zipkin: { traceId128bit: false, sharedSpanContext: true },
    });
    expect(bootstrap.admin).toEqual({
      address: { kind: 'socket', host: '127.0.0.1', port: 15000 },
      accessLogPath: '/dev/null',
    });
    expect(warnings).toEqual([{ path: 'admin.access_log_path', message: 'deprecated in Envoy; use access_log' }]);
  });

  it('warns (not errors) for Envoy-valid settings meshlet ignores', () => {
    const res = route({ route: { cluster: 'c', upgrade_configs: [{ upgrade_type: 'websocket', enabled: false }] } });
    expect(res.errors).toEqual([]);
    expect(res.warnings).toEqual([
      {
        path: `${R}.route.upgrade_configs[0].enabled`,
        message: 'disabling an upgrade per route is not supported by meshlet, ignored',
      },
    ]);
    const rb = decodeListener(
      {
        name: 'l',
        address: { socket_address: { address: '0.0.0.0', port_value: 1 } },
        filter_chains: [
          {
            filters: [
              {
                name: 'rbac',
                typed_config: {
                  '@type': T('envoy.extensions.filters.network.rbac.v3.RBAC'),
                  stat_prefix: 's',
                  rules: { audit_logging_options: {} },
                },
              },
              { name: 't', typed_config: { '@type': TCP_PROXY_TYPE, stat_prefix: 't', cluster: 'c' } },
            ],
          },
        ],
      },
      ctx(),
    );
    expect(rb.errors).toEqual([]);
    expect(rb.warnings).toEqual([
      {
        path: 'filter_chains[0].filters[0].typed_config.rules.audit_logging_options',
        message: 'not supported by meshlet, ignored',
      },
    ]);
    void hcm;
  });
});
