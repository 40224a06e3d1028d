/**
 * What istiod generates for one sidecar, as Envoy-shaped JSON for the test xDS servers: a whole
 * sidecar for `productpage` in namespace `default` — virtualOutbound (15001), virtualInbound
 * (15006), outbound per-port listeners, the in-mesh outbound cluster with auto-mTLS
 * transport_socket_matches, passthrough/blackhole/inbound clusters, the outbound route
 * configuration with Istio's host aliases, and endpoints carrying `tlsMode` metadata — plus the
 * ambient/HBONE resources istiod adds next to them.
 *
 * Built from the shape of Istio's own test data (istioctl config dumps: authz configdump, the
 * describe and proxyconfig dumps) and pilot's listener/cluster builders, readdressed to loopback:
 * service VIPs are 127.0.x.y, workloads listen on ports the test passes in. Reused by the
 * issue-16 tests (acceptance, traffic, peer metadata, Istio's HTTP filters).
 *
 * Istio-private configs (stats.PluginConfig, the metadata exchange and ALPN configs) are written
 * in JSON form: meshlet's resource Root carries their descriptors (xds-client/istio-types.ts),
 * checked against bytes written by field number in test/istio/istio-types.test.ts.
 */

export const T = {
  listener: 'type.googleapis.com/envoy.config.listener.v3.Listener',
  route: 'type.googleapis.com/envoy.config.route.v3.RouteConfiguration',
  cluster: 'type.googleapis.com/envoy.config.cluster.v3.Cluster',
  cla: 'type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment',
} as const;

const TP = 'type.googleapis.com/';
type J = Record<string, unknown>;

// ───────────── Istio-private configs (meshlet's Root knows their descriptors) ─────────────

/** stats.PluginConfig (reporter: 0 UNSPECIFIED, 1 SERVER_GATEWAY). */
export function statsPluginConfig(o: { disableHostHeaderFallback?: boolean; reporter?: number } = {}): J {
  return {
    '@type': `${TP}stats.PluginConfig`,
    ...(o.disableHostHeaderFallback ? { disable_host_header_fallback: true } : {}),
    ...(o.reporter ? { reporter: o.reporter === 1 ? 'SERVER_GATEWAY' : 'UNSPECIFIED' } : {}),
  };
}

/** envoy.tcp.metadataexchange.config.MetadataExchange. */
export function metadataExchangeConfig(protocol = 'istio-peer-exchange'): J {
  return { '@type': `${TP}envoy.tcp.metadataexchange.config.MetadataExchange`, protocol };
}

/**
 * istio.envoy.config.filter.http.alpn.v2alpha1.FilterConfig, istiod's values: HTTP/1.0 →
 * istio-http/1.0, HTTP/1.1 → istio-http/1.1, HTTP/2 → istio-h2 (each followed by "istio").
 */
export function alpnFilterConfig(): J {
  return {
    '@type': `${TP}istio.envoy.config.filter.http.alpn.v2alpha1.FilterConfig`,
    alpn_override: [
      { upstream_protocol: 'HTTP10', alpn_override: ['istio-http/1.0', 'istio'] },
      { upstream_protocol: 'HTTP11', alpn_override: ['istio-http/1.1', 'istio'] },
      { upstream_protocol: 'HTTP2', alpn_override: ['istio-h2', 'istio'] },
    ],
  };
}

const typed = (type: string, fields: J = {}): J => ({ '@type': `${TP}${type}`, ...fields });

const ISTIO_STATS_NET = { name: 'istio.stats', typed_config: statsPluginConfig({ disableHostHeaderFallback: true }) };
const ISTIO_STATS_HTTP_OUT = { name: 'istio.stats', typed_config: statsPluginConfig() };
const ISTIO_STATS_HTTP_IN = { name: 'istio.stats', typed_config: statsPluginConfig({ disableHostHeaderFallback: true }) };
const MX_NET = { name: 'istio.metadata_exchange', typed_config: metadataExchangeConfig() };
const ISTIO_AUTHN = {
  name: 'istio_authn',
  typed_config: typed('udpa.type.v1.TypedStruct', { type_url: `${TP}io.istio.network.authn.Config` }),
};
/** Older Istio's metadata exchange HTTP filter: Wasm with the null VM. */
const MX_HTTP_WASM = {
  name: 'istio.metadata_exchange',
  typed_config: typed('envoy.extensions.filters.http.wasm.v3.Wasm', {
    config: {
      vm_config: { runtime: 'envoy.wasm.runtime.null', code: { local: { inline_string: 'envoy.wasm.metadata_exchange' } } },
      configuration: metadataExchangeConfig(),
    },
  }),
};
const ALPN = {
  name: 'istio.alpn',
  typed_config: alpnFilterConfig(),
};
const ROUTER = { name: 'envoy.filters.http.router', typed_config: typed('envoy.extensions.filters.http.router.v3.Router') };
const FAULT = { name: 'envoy.filters.http.fault', typed_config: typed('envoy.extensions.filters.http.fault.v3.HTTPFault') };
const CORS = { name: 'envoy.filters.http.cors', typed_config: typed('envoy.extensions.filters.http.cors.v3.Cors') };
const GRPC_STATS = {
  name: 'envoy.filters.http.grpc_stats',
  typed_config: typed('envoy.extensions.filters.http.grpc_stats.v3.FilterConfig', { emit_filter_state: true, stats_for_all_methods: false }),
};

function tcpProxy(cluster: string, statPrefix = cluster): J {
  return { name: 'envoy.filters.network.tcp_proxy', typed_config: typed('envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy', { stat_prefix: statPrefix, cluster }) };
}

const SDS = (name: string): J => ({
  name,
  sds_config: {
    api_config_source: {
      api_type: 'GRPC',
      grpc_services: [{ envoy_grpc: { cluster_name: 'sds-grpc' } }],
      set_node_on_first_message_only: true,
      transport_api_version: 'V3',
    },
    initial_fetch_timeout: '0s',
    resource_api_version: 'V3',
  },
});

/** What the fixture needs to know about the test's loopback world. */
export interface SidecarWorld {
  /** Where virtualOutbound / virtualInbound bind (15001/15006 in a pod). */
  readonly outboundPort: number;
  readonly inboundPort: number;
  /** Service VIP of reviews (Istio: a ClusterIP) and its port. */
  readonly reviewsVip: string;
  readonly reviewsPort: number;
  /** reviews endpoints: one in the mesh (tlsMode: istio), one not. */
  readonly reviewsMeshEndpoint: { readonly address: string; readonly port: number };
  readonly reviewsPlainEndpoint: { readonly address: string; readonly port: number };
  /** The local application behind virtualInbound (inbound|9080||). */
  readonly appPort: number;
}

export const DEFAULT_WORLD: SidecarWorld = {
  outboundPort: 15001,
  inboundPort: 15006,
  reviewsVip: '127.0.96.20',
  reviewsPort: 9080,
  reviewsMeshEndpoint: { address: '127.0.0.21', port: 9080 },
  reviewsPlainEndpoint: { address: '127.0.0.22', port: 9080 },
  appPort: 9080,
};

const REVIEWS = 'reviews.default.svc.cluster.local';
export const REVIEWS_CLUSTER = `outbound|9080||${REVIEWS}`;
const SOCKET = (address: string, port: number): J => ({ socket_address: { address, port_value: port } });

function hcm(statPrefix: string, extra: J): J {
  return {
    name: 'envoy.filters.network.http_connection_manager',
    typed_config: typed('envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager', {
      stat_prefix: statPrefix,
      use_remote_address: false,
      upgrade_configs: [{ upgrade_type: 'websocket' }],
      stream_idle_timeout: '0s',
      normalize_path: true,
      path_with_escaped_slashes_action: 'KEEP_UNCHANGED',
      request_id_extension: { typed_config: typed('envoy.extensions.request_id.uuid.v3.UuidRequestIdConfig', { use_request_id_for_trace_sampling: true }) },
      ...extra,
    }),
  };
}

/** AuthorizationPolicy (ALLOW, principals from mTLS) the way istiod writes it into http RBAC. */
export function authorizationPolicyRbac(allowedPrincipal: string): J {
  return {
    name: 'envoy.filters.http.rbac',
    typed_config: typed('envoy.extensions.filters.http.rbac.v3.RBAC', {
      rules: {
        policies: {
          'ns[default]-policy[productpage]-rule[0]': {
            permissions: [{ and_rules: { rules: [{ or_rules: { rules: [{ header: { name: ':method', exact_match: 'GET' } }] } }] } }],
            principals: [
              {
                and_ids: {
                  ids: [{ or_ids: { ids: [{ filter_state: { key: 'io.istio.peer_principal', string_match: { exact: allowedPrincipal } } }] } }],
                },
              },
            ],
          },
        },
      },
      shadow_rules_stat_prefix: 'istio_dry_run_allow_',
    }),
  };
}

function inboundHttpFilters(allowedPrincipal: string): J[] {
  return [MX_HTTP_WASM, authorizationPolicyRbac(allowedPrincipal), GRPC_STATS, FAULT, CORS, ISTIO_STATS_HTTP_IN, ROUTER];
}

function downstreamMtls(alpn: string[]): J {
  return {
    name: 'envoy.transport_sockets.tls',
    typed_config: typed('envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext', {
      common_tls_context: {
        tls_params: { tls_minimum_protocol_version: 'TLSv1_2', tls_maximum_protocol_version: 'TLSv1_3' },
        alpn_protocols: alpn,
        tls_certificate_sds_secret_configs: [SDS('default')],
        combined_validation_context: { default_validation_context: {}, validation_context_sds_secret_config: SDS('ROOTCA') },
      },
      require_client_certificate: true,
    }),
  };
}

const INBOUND_ROUTE = (cluster: string): J => ({
  name: 'inbound|9080||',
  virtual_hosts: [
    {
      name: 'inbound|http|9080',
      domains: ['*'],
      routes: [
        {
          match: { prefix: '/' },
          route: { cluster, timeout: '0s', max_stream_duration: { max_stream_duration: '0s', grpc_timeout_header_max: '0s' } },
          decorator: { operation: 'productpage.default.svc.cluster.local:9080/*' },
          name: 'default',
        },
      ],
    },
  ],
  validate_clusters: false,
});

/** Listeners istiod generates for the sidecar (no ambient ones). */
export function sidecarListeners(w: SidecarWorld, allowedPrincipal = 'spiffe://cluster.local/ns/default/sa/sleep'): J[] {
  const virtualOutbound = {
    name: 'virtualOutbound',
    address: SOCKET('127.0.0.1', w.outboundPort),
    filter_chains: [
      { filter_chain_match: { destination_port: w.outboundPort }, filters: [ISTIO_STATS_NET, tcpProxy('BlackHoleCluster')], name: 'virtualOutbound-blackhole' },
      { filters: [ISTIO_STATS_NET, tcpProxy('PassthroughCluster')], name: 'virtualOutbound-catchall-tcp' },
    ],
    use_original_dst: true,
    traffic_direction: 'OUTBOUND',
  };
  const outboundHttp = {
    name: `0.0.0.0_${w.reviewsPort}`,
    address: SOCKET('0.0.0.0', w.reviewsPort),
    filter_chains: [
      {
        filter_chain_match: { transport_protocol: 'raw_buffer', application_protocols: ['http/1.1', 'h2c'] },
        filters: [
          hcm(`outbound_0.0.0.0_${w.reviewsPort}`, {
            rds: { config_source: { ads: {}, initial_fetch_timeout: '0s', resource_api_version: 'V3' }, route_config_name: String(w.reviewsPort) },
            http_filters: [MX_HTTP_WASM, ALPN, FAULT, CORS, ISTIO_STATS_HTTP_OUT, ROUTER],
          }),
        ],
      },
      { name: 'PassthroughFilterChain', filters: [ISTIO_STATS_NET, tcpProxy('PassthroughCluster')] },
    ],
    listener_filters: [
      { name: 'envoy.filters.listener.tls_inspector', typed_config: typed('envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector') },
      { name: 'envoy.filters.listener.http_inspector', typed_config: typed('envoy.extensions.filters.listener.http_inspector.v3.HttpInspector') },
    ],
    listener_filters_timeout: '0s',
    continue_on_listener_filters_timeout: true,
    traffic_direction: 'OUTBOUND',
    bind_to_port: false,
  };
  const outboundTcp = {
    name: '127.0.96.10_53',
    address: SOCKET('127.0.96.10', 53),
    filter_chains: [{ filters: [ISTIO_STATS_NET, tcpProxy('outbound|53||kube-dns.kube-system.svc.cluster.local')] }],
    traffic_direction: 'OUTBOUND',
    bind_to_port: false,
  };
  const catchallHttp = (tls: boolean): J => ({
    filter_chain_match: {
      prefix_ranges: [{ address_prefix: '0.0.0.0', prefix_len: 0 }],
      transport_protocol: tls ? 'tls' : 'raw_buffer',
      application_protocols: tls ? ['istio-http/1.0', 'istio-http/1.1', 'istio-h2'] : ['http/1.1', 'h2c'],
    },
    filters: [
      ISTIO_AUTHN,
      MX_NET,
      hcm('InboundPassthroughClusterIpv4', {
        route_config: INBOUND_ROUTE('InboundPassthroughClusterIpv4'),
        http_filters: inboundHttpFilters(allowedPrincipal),
        forward_client_cert_details: 'APPEND_FORWARD',
        set_current_client_cert_details: { subject: true, dns: true, uri: true },
        server_name: 'istio-envoy',
      }),
    ],
    ...(tls ? { transport_socket: downstreamMtls(['h2', 'http/1.1']) } : {}),
    name: 'virtualInbound-catchall-http',
  });
  const portChain = (tls: boolean): J => ({
    filter_chain_match: tls
      ? { destination_port: w.appPort, transport_protocol: 'tls', application_protocols: ['istio', 'istio-peer-exchange', 'istio-http/1.0', 'istio-http/1.1', 'istio-h2'] }
      : { destination_port: w.appPort, transport_protocol: 'raw_buffer' },
    filters: [
      ISTIO_AUTHN,
      MX_NET,
      hcm(`inbound_0.0.0.0_${w.appPort}`, {
        route_config: INBOUND_ROUTE(`inbound|${w.appPort}||`),
        http_filters: inboundHttpFilters(allowedPrincipal),
        forward_client_cert_details: 'APPEND_FORWARD',
        set_current_client_cert_details: { subject: true, dns: true, uri: true },
        server_name: 'istio-envoy',
      }),
    ],
    ...(tls ? { transport_socket: downstreamMtls(['h2', 'http/1.1']) } : {}),
    name: `0.0.0.0_${w.appPort}`,
  });
  const virtualInbound = {
    name: 'virtualInbound',
    address: SOCKET('127.0.0.1', w.inboundPort),
    filter_chains: [
      { filter_chain_match: { destination_port: w.inboundPort }, filters: [MX_NET, ISTIO_STATS_NET, tcpProxy('BlackHoleCluster')], name: 'virtualInbound-blackhole' },
      catchallHttp(true),
      catchallHttp(false),
      {
        filter_chain_match: { prefix_ranges: [{ address_prefix: '0.0.0.0', prefix_len: 0 }], transport_protocol: 'raw_buffer' },
        filters: [ISTIO_AUTHN, MX_NET, ISTIO_STATS_NET, tcpProxy('InboundPassthroughClusterIpv4')],
        name: 'virtualInbound',
      },
      portChain(true),
      portChain(false),
    ],
    listener_filters: [
      { name: 'envoy.filters.listener.original_dst', typed_config: typed('envoy.extensions.filters.listener.original_dst.v3.OriginalDst') },
      {
        name: 'envoy.filters.listener.tls_inspector',
        typed_config: typed('envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector'),
        filter_disabled: { destination_port_range: { start: w.inboundPort, end: w.inboundPort + 1 } },
      },
      {
        name: 'envoy.filters.listener.http_inspector',
        typed_config: typed('envoy.extensions.filters.listener.http_inspector.v3.HttpInspector'),
        filter_disabled: { destination_port_range: { start: w.inboundPort, end: w.inboundPort + 1 } },
      },
    ],
    listener_filters_timeout: '0s',
    traffic_direction: 'INBOUND',
    continue_on_listener_filters_timeout: true,
  };
  return [virtualOutbound, virtualInbound, outboundHttp, outboundTcp];
}

function upstreamMtls(sni: string, sans: string[]): J {
  return {
    name: 'envoy.transport_sockets.tls',
    typed_config: typed('envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext', {
      common_tls_context: {
        tls_params: { tls_minimum_protocol_version: 'TLSv1_2', tls_maximum_protocol_version: 'TLSv1_3' },
        alpn_protocols: ['istio-peer-exchange', 'istio'],
        tls_certificate_sds_secret_configs: [SDS('default')],
        combined_validation_context: {
          default_validation_context: { match_subject_alt_names: sans.map((exact) => ({ exact })) },
          validation_context_sds_secret_config: SDS('ROOTCA'),
        },
      },
      sni,
    }),
  };
}

const CIRCUIT_BREAKERS = {
  thresholds: [{ max_connections: 4294967295, max_pending_requests: 4294967295, max_requests: 4294967295, max_retries: 4294967295, track_remaining: true }],
};

/** Clusters istiod generates for the sidecar (no ambient ones). */
export function sidecarClusters(w: SidecarWorld): J[] {
  const reviews = {
    name: REVIEWS_CLUSTER,
    type: 'EDS',
    eds_cluster_config: { eds_config: { ads: {}, initial_fetch_timeout: '0s', resource_api_version: 'V3' }, service_name: REVIEWS_CLUSTER },
    connect_timeout: '10s',
    lb_policy: 'LEAST_REQUEST',
    circuit_breakers: CIRCUIT_BREAKERS,
    common_lb_config: { locality_weighted_lb_config: {} },
    metadata: {
      filter_metadata: {
        istio: { default_original_port: 9080, services: [{ host: REVIEWS, name: 'reviews', namespace: 'default' }] },
      },
    },
    filters: [MX_NET],
    transport_socket_matches: [
      {
        name: 'tlsMode-istio',
        match: { tlsMode: 'istio' },
        transport_socket: upstreamMtls(`outbound_.9080_._.${REVIEWS}`, ['spiffe://cluster.local/ns/default/sa/bookinfo-reviews']),
      },
      { name: 'tlsMode-disabled', match: {}, transport_socket: { name: 'envoy.transport_sockets.raw_buffer', typed_config: typed('envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer') } },
    ],
  };
  const passthrough = {
    name: 'PassthroughCluster',
    type: 'ORIGINAL_DST',
    connect_timeout: '10s',
    lb_policy: 'CLUSTER_PROVIDED',
    circuit_breakers: CIRCUIT_BREAKERS,
    typed_extension_protocol_options: {
      'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': typed('envoy.extensions.upstreams.http.v3.HttpProtocolOptions', {
        use_downstream_protocol_config: { http_protocol_options: {}, http2_protocol_options: {} },
      }),
    },
    filters: [MX_NET],
  };
  const inboundPassthrough = {
    name: 'InboundPassthroughClusterIpv4',
    type: 'ORIGINAL_DST',
    connect_timeout: '10s',
    lb_policy: 'CLUSTER_PROVIDED',
    circuit_breakers: CIRCUIT_BREAKERS,
    upstream_bind_config: { source_address: { address: '127.0.0.6', port_value: 0 } },
    typed_extension_protocol_options: {
      'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': typed('envoy.extensions.upstreams.http.v3.HttpProtocolOptions', {
        use_downstream_protocol_config: { http_protocol_options: {}, http2_protocol_options: {} },
      }),
    },
    filters: [MX_NET],
  };
  const inboundApp = {
    name: `inbound|${w.appPort}||`,
    type: 'STATIC',
    connect_timeout: '10s',
    circuit_breakers: CIRCUIT_BREAKERS,
    upstream_bind_config: { source_address: { address: '127.0.0.6', port_value: 0 } },
    load_assignment: {
      cluster_name: `inbound|${w.appPort}||`,
      endpoints: [{ lb_endpoints: [{ endpoint: { address: SOCKET('127.0.0.1', w.appPort) } }] }],
    },
    metadata: { filter_metadata: { istio: { services: [{ host: 'productpage.default.svc.cluster.local', name: 'productpage', namespace: 'default' }] } } },
  };
  const blackhole = { name: 'BlackHoleCluster', type: 'STATIC', connect_timeout: '10s' };
  const kubeDns = {
    name: 'outbound|53||kube-dns.kube-system.svc.cluster.local',
    type: 'EDS',
    eds_cluster_config: { eds_config: { ads: {}, initial_fetch_timeout: '0s', resource_api_version: 'V3' }, service_name: 'outbound|53||kube-dns.kube-system.svc.cluster.local' },
    connect_timeout: '10s',
    circuit_breakers: CIRCUIT_BREAKERS,
  };
  return [reviews, passthrough, inboundPassthrough, inboundApp, blackhole, kubeDns];
}

/** RDS: the outbound port route configuration with Istio's host aliases and allow_any. */
export function sidecarRoutes(w: SidecarWorld): J[] {
  return [
    {
      name: String(w.reviewsPort),
      virtual_hosts: [
        {
          name: `${REVIEWS}:${w.reviewsPort}`,
          domains: [
            `${REVIEWS}:${w.reviewsPort}`, REVIEWS, `reviews:${w.reviewsPort}`, 'reviews', `reviews.default.svc:${w.reviewsPort}`, 'reviews.default.svc',
            `reviews.default:${w.reviewsPort}`, 'reviews.default', `${w.reviewsVip}:${w.reviewsPort}`, w.reviewsVip,
          ],
          routes: [
            {
              match: { prefix: '/' },
              route: {
                cluster: REVIEWS_CLUSTER,
                timeout: '0s',
                retry_policy: {
                  retry_on: 'connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes',
                  num_retries: 2,
                  retry_host_predicate: [{ name: 'envoy.retry_host_predicates.previous_hosts', typed_config: typed('envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate') }],
                  host_selection_retry_max_attempts: 5,
                  retriable_status_codes: [503],
                },
                max_grpc_timeout: '0s',
              },
              decorator: { operation: `${REVIEWS}:${w.reviewsPort}/*` },
              name: 'default',
            },
          ],
          include_request_attempt_count: true,
        },
        {
          name: 'allow_any',
          domains: ['*'],
          routes: [{ match: { prefix: '/' }, route: { cluster: 'PassthroughCluster', timeout: '0s', max_grpc_timeout: '0s' }, name: 'allow_any' }],
          include_request_attempt_count: true,
        },
      ],
      validate_clusters: false,
      max_direct_response_body_size_bytes: 1048576,
      ignore_port_in_host_matching: true,
    },
  ];
}

/** EDS: reviews with one in-mesh endpoint (tlsMode: istio) and one plaintext endpoint. */
export function sidecarEndpoints(w: SidecarWorld): J[] {
  const ep = (a: { address: string; port: number }, tlsMode: string | undefined, workload: string): J => ({
    endpoint: { address: SOCKET(a.address, a.port) },
    metadata: {
      filter_metadata: {
        ...(tlsMode ? { 'envoy.transport_socket_match': { tlsMode } } : {}),
        istio: { workload: `${workload};default;reviews;v1;Kubernetes` },
      },
    },
    load_balancing_weight: 1,
  });
  return [
    {
      cluster_name: REVIEWS_CLUSTER,
      endpoints: [
        {
          locality: {},
          lb_endpoints: [ep(w.reviewsMeshEndpoint, 'istio', 'reviews-v1'), ep(w.reviewsPlainEndpoint, undefined, 'reviews-legacy')],
          load_balancing_weight: 2,
        },
      ],
    },
    { cluster_name: 'outbound|53||kube-dns.kube-system.svc.cluster.local', endpoints: [{ lb_endpoints: [{ endpoint: { address: SOCKET('127.0.96.11', 53) } }] }] },
  ];
}

/** The ambient/HBONE resources istiod sends next to the sidecar's (must be rejected by name). */
/** istiod's listener filter on its internal listeners (a TypedStruct of an Istio-private type). */
const SET_DST_ADDRESS = {
  name: 'set_dst_address',
  typed_config: typed('udpa.type.v1.TypedStruct', { type_url: `${TP}istio.set_internal_dst_address.v1.Config` }),
};
const istioTypedStruct = (type: string, value?: J): J => typed('udpa.type.v1.TypedStruct', { type_url: `${TP}${type}`, ...(value ? { value } : {}) });

export function ambientResources(connectTerminatePort = 1): { listeners: J[]; clusters: J[] } {
  return {
    listeners: [
      // HBONE termination (15008 in istiod's dump): CONNECT into main_internal, with Istio's
      // connect_baggage / connect_authority HTTP filters as TypedStructs (one per route too).
      {
        name: 'connect_terminate',
        address: { socket_address: { address: '127.0.0.1', port_value: connectTerminatePort } },
        filter_chains: [
          {
            name: 'default',
            filters: [
              { name: 'istio_authn', typed_config: istioTypedStruct('io.istio.network.authn.Config', { shared: true }) },
              {
                name: 'envoy.filters.network.http_connection_manager',
                typed_config: typed('envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager', {
                  stat_prefix: 'connect_terminate',
                  route_config: {
                    name: 'default',
                    virtual_hosts: [
                      {
                        name: 'default',
                        domains: ['*'],
                        routes: [
                          {
                            match: { connect_matcher: {} },
                            route: { cluster: 'main_internal', upgrade_configs: [{ upgrade_type: 'CONNECT', connect_config: {} }] },
                            typed_per_filter_config: { connect_authority: istioTypedStruct('io.istio.http.connect_authority.Config', { enabled: true }) },
                          },
                        ],
                      },
                    ],
                  },
                  http_filters: [
                    { name: 'connect_baggage', typed_config: istioTypedStruct('io.istio.http.connect_baggage.Config') },
                    { name: 'connect_authority', typed_config: istioTypedStruct('io.istio.http.connect_authority.Config') },
                    { name: 'envoy.filters.http.router', typed_config: typed('envoy.extensions.filters.http.router.v3.Router') },
                  ],
                  http2_protocol_options: { max_concurrent_streams: 100, allow_connect: true },
                  upgrade_configs: [{ upgrade_type: 'CONNECT' }],
                  stream_idle_timeout: '0s',
                }),
              },
            ],
          },
        ],
      },
      {
        name: 'main_internal',
        internal_listener: {},
        traffic_direction: 'INBOUND',
        listener_filters: [SET_DST_ADDRESS],
        filter_chains: [
          {
            name: '0.0.0.0_80',
            filter_chain_match: { destination_port: 80 },
            filters: [
              {
                name: 'envoy.filters.network.tcp_proxy',
                typed_config: typed('envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy', { stat_prefix: 'inbound_0.0.0.0_80', cluster: 'inbound|80||' }),
              },
            ],
          },
        ],
      },
      {
        name: 'connect_originate',
        internal_listener: {},
        listener_filters: [SET_DST_ADDRESS],
        filter_chains: [
          {
            filters: [
              {
                name: 'envoy.filters.network.tcp_proxy',
                typed_config: typed('envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy', {
                  stat_prefix: 'connect_originate',
                  cluster: 'connect_originate',
                  tunneling_config: { hostname: '%DOWNSTREAM_LOCAL_ADDRESS%' },
                }),
              },
            ],
          },
        ],
      },
    ],
    clusters: [
      {
        name: 'main_internal',
        type: 'STATIC',
        load_assignment: { cluster_name: 'main_internal', endpoints: [{ lb_endpoints: [{ endpoint: { address: { envoy_internal_address: { server_listener_name: 'main_internal' } } } }] }] },
        transport_socket: {
          name: 'internal_upstream',
          typed_config: typed('envoy.extensions.transport_sockets.internal_upstream.v3.InternalUpstreamTransport', {
            transport_socket: { name: 'raw_buffer', typed_config: typed('envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer') },
          }),
        },
      },
    ],
  };
}
