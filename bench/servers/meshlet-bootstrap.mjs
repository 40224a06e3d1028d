// Builds the Envoy v3 static bootstraps the bench feeds to `meshlet proxy --bootstrap FILE`: an
// HTTP listener (http_connection_manager + router) to one cluster, optional mTLS on either side,
// optional HTTP/2 upstream, or a tcp_proxy listener. Field names are Envoy's, so the same file
// would load in Envoy; that is the point of the comparison.

const HCM = 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager';
const ROUTER = 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router';
const TCP_PROXY = 'type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy';
const UPSTREAM_TLS = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext';
const DOWNSTREAM_TLS = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext';
const HTTP_OPTIONS = 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions';

const sock = (port) => ({ socket_address: { address: '127.0.0.1', port_value: port } });

function commonTls(identity, ca, peerSpiffe, alpn) {
  return {
    ...(alpn ? { alpn_protocols: alpn } : {}),
    tls_certificates: [{ certificate_chain: { filename: identity.cert }, private_key: { filename: identity.key } }],
    validation_context: {
      trusted_ca: { filename: ca },
      match_typed_subject_alt_names: [{ san_type: 'URI', matcher: { exact: peerSpiffe } }],
    },
  };
}

function cluster(name, port, { h2 = false, tls } = {}) {
  const c = {
    name,
    connect_timeout: '5s', // Envoy's default
    type: 'STATIC',
    lb_policy: 'ROUND_ROBIN',
    load_assignment: { cluster_name: name, endpoints: [{ lb_endpoints: [{ endpoint: { address: sock(port) } }] }] },
  };
  if (h2) {
    c.typed_extension_protocol_options = {
      'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
        '@type': HTTP_OPTIONS,
        explicit_http_config: { http2_protocol_options: {} },
      },
    };
  }
  if (tls) {
    c.transport_socket = {
      name: 'envoy.transport_sockets.tls',
      typed_config: {
        '@type': UPSTREAM_TLS,
        sni: 'localhost',
        common_tls_context: commonTls(tls.identity, tls.ca, tls.peerSpiffe, tls.alpn),
      },
    };
  }
  return c;
}

function hcm(statPrefix, clusterName) {
  return {
    name: 'envoy.filters.network.http_connection_manager',
    typed_config: {
      '@type': HCM,
      stat_prefix: statPrefix,
      codec_type: 'AUTO',
      route_config: {
        name: 'bench',
        virtual_hosts: [
          { name: 'bench', domains: ['*'], routes: [{ match: { prefix: '/' }, route: { cluster: clusterName } }] },
        ],
      },
      http_filters: [{ name: 'envoy.filters.http.router', typed_config: { '@type': ROUTER } }],
    },
  };
}

/**
 * @param {object} o
 * @param {string} o.id node id
 * @param {number} o.port listener port
 * @param {number} o.adminPort
 * @param {number} o.upstreamPort
 * @param {'http'|'tcp'} [o.mode]
 * @param {boolean} [o.h2Upstream] speak HTTP/2 (h2c) to the upstream
 * @param {{identity: {cert: string, key: string}, ca: string, peerSpiffe: string, alpn?: string[]}} [o.upstreamTls] originate mTLS
 * @param {{identity: {cert: string, key: string}, ca: string, peerSpiffe: string, alpn?: string[]}} [o.downstreamTls] terminate mTLS
 *   (`alpn`: the TLS context's alpn_protocols, e.g. ['h2'] for HTTP/2 between sidecars as Istio does)
 */
export function bootstrap(o) {
  const filter =
    o.mode === 'tcp'
      ? {
          name: 'envoy.filters.network.tcp_proxy',
          typed_config: { '@type': TCP_PROXY, stat_prefix: 'bench_tcp', cluster: 'upstream' },
        }
      : hcm(`${o.id}_http`, 'upstream');
  const chain = { filters: [filter] };
  if (o.downstreamTls) {
    chain.transport_socket = {
      name: 'envoy.transport_sockets.tls',
      typed_config: {
        '@type': DOWNSTREAM_TLS,
        require_client_certificate: true,
        common_tls_context: commonTls(
          o.downstreamTls.identity,
          o.downstreamTls.ca,
          o.downstreamTls.peerSpiffe,
          o.downstreamTls.alpn,
        ),
      },
    };
  }
  return {
    node: { id: o.id, cluster: 'bench' },
    admin: { address: sock(o.adminPort) },
    static_resources: {
      listeners: [{ name: `${o.id}_listener`, address: sock(o.port), filter_chains: [chain] }],
      clusters: [cluster('upstream', o.upstreamPort, { h2: o.h2Upstream, tls: o.upstreamTls })],
    },
  };
}
