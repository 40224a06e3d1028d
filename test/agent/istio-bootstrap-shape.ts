/**
 * Istio's bootstrap (what pilot-agent renders from envoy_bootstrap.json for a sidecar), rebuilt
 * from the shape of the goldens in istio/istio pkg/bootstrap/testdata/*_golden.json: the same
 * sections, names and values, with the variations those goldens cover (stats compression,
 * tracer, stats sinks, admin on a pipe). Addresses are on loopback so the result can really start.
 * Written here from their structure; none of Istio's files is copied.
 */

const HCM = 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager';
const ROUTER = { name: 'envoy.filters.http.router', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router' } };
const H2 = {
  'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
    '@type': 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
    explicit_http_config: { http2_protocol_options: {} },
  },
};

export type Compression = 'none' | 'gzip' | 'brotli' | 'zstd' | 'istio';

/**
 * The goldens whose current version (istio/istio master, 2026) puts three compressor filters on
 * the 15090 stats listener — envoy.filters.http.compressor.brotli, .zstd and .gzip, each with
 * content_type text/plain, application/vnd.google.protobuf, application/openmetrics-text and
 * application/openmetrics-protobuf — instead of none or the one chosen by an annotation.
 */
export const THREE_COMPRESSOR_GOLDENS: ReadonlySet<string> = new Set([
  'all', 'ambient', 'auth', 'authsds', 'default', 'explicit_internal_address', 'global_downstream_connection_settings',
  'global_downstream_connection_settings_with_meta', 'global_downstream_max_connections_both', 'global_downstream_max_connections_meta',
  'global_downstream_max_connections_runtime', 'invalid_stats_eviction_interval', 'lrs', 'metrics_no_statsd', 'running', 'runningsds',
  'secure_metrics', 'stats_eviction_interval', 'stats_flush_interval', 'stats_inclusion', 'stats_interval', 'tracing_datadog',
  'tracing_lightstep', 'tracing_none', 'tracing_tls_custom_sni', 'tracing_tls', 'tracing_zipkin', 'xdsproxy',
]);

/** The stats listener's compression of a shape: its own, else Istio's current three, else none. */
export function compressionOf(shape: IstioBootstrapShape): Compression {
  return shape.compression ?? (THREE_COMPRESSOR_GOLDENS.has(shape.golden) ? 'istio' : 'none');
}
export type Tracer = 'none' | 'zipkin' | 'datadog' | 'lightstep' | 'opencensusagent' | 'stackdriver' | 'zipkin_tls';

export interface IstioBootstrapShape {
  /** The golden it stands for (pkg/bootstrap/testdata/<name>_golden.json). */
  readonly golden: string;
  readonly compression?: Compression;
  readonly tracer?: Tracer;
  readonly statsd?: boolean;
  readonly metricsService?: boolean;
  readonly adminPipe?: boolean;
  readonly delta?: boolean;
  readonly nodeMetadata?: Record<string, unknown>;
}

/** The goldens of pkg/bootstrap/testdata, by the sections in which they differ. */
export const ISTIO_GOLDENS: readonly IstioBootstrapShape[] = [
  { golden: 'default' },
  { golden: 'default122' },
  { golden: 'all', tracer: 'lightstep', statsd: true },
  { golden: 'auth' },
  { golden: 'authsds' },
  { golden: 'running', tracer: 'zipkin', statsd: true },
  { golden: 'runningsds', tracer: 'zipkin' },
  { golden: 'admin_uds', adminPipe: true },
  { golden: 'ambient' },
  { golden: 'deferred_cluster_creation' },
  { golden: 'disable_bootstrap_tracing_datadog' },
  { golden: 'disable_bootstrap_tracing_zipkin' },
  { golden: 'explicit_internal_address' },
  { golden: 'global_downstream_connection_settings' },
  { golden: 'global_downstream_connection_settings_with_meta' },
  { golden: 'global_downstream_max_connections_both' },
  { golden: 'global_downstream_max_connections_meta' },
  { golden: 'global_downstream_max_connections_runtime' },
  { golden: 'inclusion_all_three' },
  { golden: 'invalid_stats_eviction_interval' },
  { golden: 'legacy_stats_tags_regex' },
  { golden: 'lrs' },
  { golden: 'metrics_no_statsd', metricsService: true },
  { golden: 'metrics_service', metricsService: true },
  { golden: 'secure_metrics' },
  { golden: 'stats_compression', compression: 'gzip' },
  { golden: 'stats_compression_gzip', compression: 'gzip', tracer: 'zipkin', statsd: true, metricsService: true, delta: true },
  { golden: 'stats_compression_brotli', compression: 'brotli', tracer: 'zipkin', statsd: true, metricsService: true, delta: true },
  { golden: 'stats_compression_zstd', compression: 'zstd', tracer: 'zipkin', statsd: true, metricsService: true, delta: true },
  { golden: 'stats_compression_unknown', tracer: 'zipkin', statsd: true, metricsService: true, delta: true },
  { golden: 'stats_eviction_interval' },
  { golden: 'stats_flush_interval' },
  { golden: 'stats_inclusion' },
  { golden: 'stats_interval' },
  { golden: 'stats_interval_minutes' },
  { golden: 'stats_interval_subsecond' },
  { golden: 'stats_regexps' },
  { golden: 'stats_suffixes' },
  { golden: 'tracing_datadog', tracer: 'datadog' },
  { golden: 'tracing_lightstep', tracer: 'lightstep' },
  { golden: 'tracing_none', tracer: 'none' },
  { golden: 'tracing_opencensusagent', tracer: 'opencensusagent' },
  { golden: 'tracing_stackdriver', tracer: 'stackdriver' },
  { golden: 'tracing_tls', tracer: 'zipkin_tls' },
  { golden: 'tracing_tls_custom_sni', tracer: 'zipkin_tls' },
  { golden: 'tracing_zipkin', tracer: 'zipkin' },
  { golden: 'tracing_zipkin_custom_dns', tracer: 'zipkin' },
  { golden: 'uds' },
  { golden: 'xdsproxy' },
];

function staticCluster(name: string, address: Record<string, unknown>, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    name,
    alt_stat_name: `${name};`,
    type: 'STATIC',
    connect_timeout: '0.250s',
    lb_policy: 'ROUND_ROBIN',
    load_assignment: { cluster_name: name, endpoints: [{ lb_endpoints: [{ endpoint: { address } }] }] },
    ...extra,
  };
}

function sock(port: number): Record<string, unknown> {
  return { socket_address: { protocol: 'TCP', address: '127.0.0.1', port_value: port } };
}

function dnsCluster(name: string, port: number, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    ...staticCluster(name, { socket_address: { address: 'localhost', port_value: port } }),
    type: 'STRICT_DNS',
    respect_dns_ttl: true,
    dns_lookup_family: 'V4_ONLY',
    dns_refresh_rate: '30s',
    connect_timeout: '1s',
    ...extra,
  };
}

function sdsRef(name: string): Record<string, unknown> {
  return {
    name,
    sds_config: {
      api_config_source: {
        api_type: 'GRPC',
        grpc_services: [{ envoy_grpc: { cluster_name: 'sds-grpc' } }],
        set_node_on_first_message_only: true,
        transport_api_version: 'V3',
      },
      resource_api_version: 'V3',
    },
  };
}

function statsListener(port: number, compression: Compression): Record<string, unknown> {
  const library: Record<Exclude<Compression, 'none' | 'istio'>, string> = {
    gzip: 'envoy.extensions.compression.gzip.compressor.v3.Gzip',
    brotli: 'envoy.extensions.compression.brotli.compressor.v3.Brotli',
    zstd: 'envoy.extensions.compression.zstd.compressor.v3.Zstd',
  };
  const types = ['text/plain', 'application/vnd.google.protobuf', 'application/openmetrics-text', 'application/openmetrics-protobuf'];
  const three = (['brotli', 'zstd', 'gzip'] as const).map((lib) => ({
    name: `envoy.filters.http.compressor.${lib}`,
    typed_config: {
      '@type': 'type.googleapis.com/envoy.extensions.filters.http.compressor.v3.Compressor',
      compressor_library: { name: `stats_${lib}`, typed_config: { '@type': `type.googleapis.com/${library[lib]}` } },
      response_direction_config: { common_config: { content_type: types } },
    },
  }));
  const compressor =
    compression === 'none'
      ? []
      : compression === 'istio'
        ? three
        : [
          {
            name: 'envoy.filters.http.compressor',
            typed_config: {
              '@type': 'type.googleapis.com/envoy.extensions.filters.http.compressor.v3.Compressor',
              compressor_library: { name: 'text_optimized', typed_config: { '@type': `type.googleapis.com/${library[compression]}` } },
            },
          },
        ];
  return portListener('0.0.0.0_15090', port, 'stats', '/stats/prometheus', 'prometheus_stats', [...compressor, ROUTER]);
}

function portListener(name: string, port: number, statPrefix: string, prefix: string, cluster: string, filters: unknown[]): Record<string, unknown> {
  return {
    name,
    address: { socket_address: { protocol: 'TCP', address: '127.0.0.1', port_value: port } },
    ignore_global_conn_limit: true,
    bypass_overload_manager: true,
    filter_chains: [
      {
        filters: [
          {
            name: 'envoy.filters.network.http_connection_manager',
            typed_config: {
              '@type': HCM,
              codec_type: 'AUTO',
              stat_prefix: statPrefix,
              route_config: { virtual_hosts: [{ name: 'backend', domains: ['*'], routes: [{ match: { prefix }, route: { cluster } }] }] },
              http_filters: filters,
            },
          },
        ],
      },
    ],
  };
}

function tracing(t: Tracer): { tracing?: Record<string, unknown>; clusters: Record<string, unknown>[] } {
  switch (t) {
    case 'none':
      return { clusters: [] };
    case 'zipkin':
    case 'zipkin_tls':
      return {
        tracing: {
          http: {
            name: 'envoy.tracers.zipkin',
            typed_config: {
              '@type': 'type.googleapis.com/envoy.config.trace.v3.ZipkinConfig',
              collector_cluster: 'zipkin',
              collector_endpoint: '/api/v2/spans',
              collector_endpoint_version: 'HTTP_JSON',
              trace_id_128bit: true,
              shared_span_context: false,
            },
          },
        },
        clusters: [
          dnsCluster(
            'zipkin',
            9411,
            t === 'zipkin_tls'
              ? {
                  transport_socket: {
                    name: 'envoy.transport_sockets.tls',
                    typed_config: {
                      '@type': 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext',
                      common_tls_context: {
                        combined_validation_context: { default_validation_context: {}, validation_context_sds_secret_config: sdsRef('file-root:/etc/zipkin/ca.pem') },
                        tls_certificate_sds_secret_configs: [sdsRef('file-cert:/etc/zipkin/cert.pem~/etc/zipkin/key.pem')],
                      },
                      sni: 'zipkin-custom-sni',
                    },
                  },
                }
              : {},
          ),
        ],
      };
    case 'datadog':
      return {
        tracing: {
          http: {
            name: 'envoy.tracers.datadog',
            typed_config: { '@type': 'type.googleapis.com/envoy.config.trace.v3.DatadogConfig', collector_cluster: 'datadog_agent', service_name: 'istio-proxy' },
          },
        },
        clusters: [dnsCluster('datadog_agent', 8126)],
      };
    case 'lightstep':
      return {
        tracing: {
          http: {
            name: 'envoy.tracers.lightstep',
            typed_config: {
              '@type': 'type.googleapis.com/envoy.config.trace.v3.LightstepConfig',
              collector_cluster: 'lightstep',
              access_token_file: '/test-path/lightstep_access_token.txt',
            },
          },
        },
        clusters: [dnsCluster('lightstep', 8080, { typed_extension_protocol_options: H2 })],
      };
    case 'opencensusagent':
    case 'stackdriver':
      return {
        tracing: {
          http: {
            name: 'envoy.tracers.opencensus',
            typed_config: {
              '@type': 'type.googleapis.com/envoy.config.trace.v3.OpenCensusConfig',
              ...(t === 'stackdriver'
                ? { stackdriver_exporter_enabled: true, stackdriver_project_id: 'my-sd-project' }
                : { ocagent_exporter_enabled: true, ocagent_address: 'dns:127.0.0.1:55678' }),
              incoming_trace_context: ['TRACE_CONTEXT', 'GRPC_TRACE_BIN', 'CLOUD_TRACE_CONTEXT'],
              outgoing_trace_context: ['TRACE_CONTEXT', 'GRPC_TRACE_BIN', 'CLOUD_TRACE_CONTEXT'],
            },
          },
        },
        clusters: [],
      };
  }
}

/** Ports the rebuilt bootstrap binds and dials (all on loopback). */
export interface ShapePorts {
  readonly admin: number;
  readonly stats: number;
  readonly ready: number;
  readonly agent: number;
  /** Unix sockets: istio-agent's XDS proxy and SDS server. */
  readonly xdsPath: string;
  readonly sdsPath: string;
  readonly adminPath?: string;
}

export function istioBootstrap(shape: IstioBootstrapShape, ports: ShapePorts): Record<string, unknown> {
  const t = tracing(shape.tracer ?? 'none');
  const sinks: unknown[] = [];
  const clusters: Record<string, unknown>[] = [
    staticCluster('prometheus_stats', sock(ports.admin)),
    staticCluster('agent', sock(ports.agent)),
    staticCluster('sds-grpc', { pipe: { path: ports.sdsPath } }, { typed_extension_protocol_options: H2, connect_timeout: '1s' }),
    staticCluster(
      'xds-grpc',
      { pipe: { path: ports.xdsPath } },
      {
        connect_timeout: '1s',
        circuit_breakers: {
          thresholds: [
            { priority: 'DEFAULT', max_connections: 100000, max_pending_requests: 100000, max_requests: 100000 },
            { priority: 'HIGH', max_connections: 100000, max_pending_requests: 100000, max_requests: 100000 },
          ],
        },
        upstream_connection_options: { tcp_keepalive: { keepalive_time: 300 } },
        max_requests_per_connection: 1,
        typed_extension_protocol_options: H2,
      },
    ),
    ...t.clusters,
  ];
  if (shape.metricsService) {
    clusters.push(dnsCluster('envoy_metrics_service', 15000, { typed_extension_protocol_options: H2 }));
    sinks.push({
      name: 'envoy.stat_sinks.metrics_service',
      typed_config: {
        '@type': 'type.googleapis.com/envoy.config.metrics.v3.MetricsServiceConfig',
        transport_api_version: 'V3',
        grpc_service: { envoy_grpc: { cluster_name: 'envoy_metrics_service' } },
      },
    });
  }
  if (shape.statsd)
    sinks.push({
      name: 'envoy.stat_sinks.statsd',
      typed_config: { '@type': 'type.googleapis.com/envoy.config.metrics.v3.StatsdSink', address: { socket_address: { address: '127.0.0.1', port_value: 9125 } } },
    });
  return {
    application_log_config: { log_format: { text_format: '%Y-%m-%dT%T.%fZ\t%l\tenvoy %n %g:%#\t%v\tthread=%t' } },
    node: {
      id: 'sidecar~1.2.3.4~foo~bar',
      cluster: 'istio-proxy',
      locality: {},
      metadata: {
        ENVOY_PROMETHEUS_PORT: 15090,
        ENVOY_STATUS_PORT: 15021,
        INSTANCE_IPS: '10.3.3.3,10.4.4.4,10.5.5.5,10.6.6.6',
        ISTIO_VERSION: 'binary-1.0',
        METADATA_DISCOVERY: 'false',
        OUTLIER_LOG_PATH: '/dev/stdout',
        PILOT_SAN: ['spiffe://cluster.local/ns/istio-system/sa/istio-pilot-service-account'],
        PROXY_CONFIG: { binaryPath: '/usr/local/bin/envoy', discoveryAddress: 'istio-pilot:15010', drainDuration: '2s', proxyAdminPort: 15000, serviceCluster: 'istio-proxy', statusPort: 15020 },
        ...shape.nodeMetadata,
      },
    },
    layered_runtime: {
      layers: [
        {
          name: 'global config',
          static_layer: {
            'envoy.deprecated_features:envoy.config.listener.v3.Listener.hidden_envoy_deprecated_use_original_dst': true,
            'envoy.reloadable_features.http_reject_path_with_fragment': false,
            're2.max_program_size.error_level': '32768',
          },
        },
        { name: 'admin', admin_layer: {} },
      ],
    },
    bootstrap_extensions: [
      {
        name: 'envoy.bootstrap.internal_listener',
        typed_config: {
          '@type': 'type.googleapis.com/udpa.type.v1.TypedStruct',
          type_url: 'type.googleapis.com/envoy.extensions.bootstrap.internal_listener.v3.InternalListener',
          value: { buffer_size_kb: 64 },
        },
      },
    ],
    stats_config: {
      use_all_default_tags: false,
      stats_tags: [
        { tag_name: 'cluster_name', regex: '^cluster(\\.(.+);)' },
        { tag_name: 'tcp_prefix', regex: '^tcp\\.((.*?)\\.)\\w+?$' },
        { regex: '_rq(_(\\d{3}))$', tag_name: 'response_code' },
      ],
      stats_matcher: { inclusion_list: { patterns: [{ prefix: 'reporter=' }, { prefix: 'cluster_manager' }, { suffix: 'rbac.allowed' }, { safe_regex: { regex: 'vhost\\..*\\.route\\..*' } }] } },
    },
    admin: {
      access_log: [{ name: 'envoy.access_loggers.file', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog', path: '/dev/null' } }],
      profile_path: '/var/lib/istio/data/envoy.prof',
      address: shape.adminPipe && ports.adminPath ? { pipe: { path: ports.adminPath } } : sock(ports.admin),
    },
    dynamic_resources: {
      lds_config: { ads: {}, initial_fetch_timeout: '0s', resource_api_version: 'V3' },
      cds_config: { ads: {}, initial_fetch_timeout: '0s', resource_api_version: 'V3' },
      ads_config: {
        api_type: shape.delta ? 'DELTA_GRPC' : 'GRPC',
        set_node_on_first_message_only: true,
        transport_api_version: 'V3',
        grpc_services: [{ envoy_grpc: { cluster_name: 'xds-grpc' } }],
      },
    },
    static_resources: {
      clusters,
      listeners: [
        statsListener(ports.stats, compressionOf(shape)),
        portListener('0.0.0.0_15021', ports.ready, 'agent', '/healthz/ready', 'agent', [ROUTER]),
      ],
    },
    overload_manager: {
      resource_monitors: [
        {
          name: 'envoy.resource_monitors.global_downstream_max_connections',
          typed_config: {
            '@type': 'type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig',
            max_active_downstream_connections: 2147483647,
          },
        },
      ],
    },
    ...(t.tracing ? { tracing: t.tracing } : {}),
    ...(sinks.length > 0 ? { stats_sinks: sinks } : {}),
    cluster_manager: { enable_deferred_cluster_creation: true, outlier_detection: { event_log_path: '/dev/stdout' } },
    deferred_stat_options: { enable_deferred_creation_stats: true },
  };
}
