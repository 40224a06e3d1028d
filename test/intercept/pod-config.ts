/**
 * Envoy-shaped bootstraps for the two sidecars of the interception tests, in the shape Istio
 * generates: the client pod's 15001 virtualOutbound (use_original_dst, hand-over to per-service
 * virtual listeners with bind_to_port: false, PassthroughCluster for everything else, a
 * BlackHoleCluster route for a REGISTRY_ONLY-style refusal), and the server pod's 15006
 * virtualInbound (chains per destination port, mTLS with the client's SPIFFE identity required
 * and authorised by network RBAC, delivery to the app from 127.0.0.6).
 */
import { APP_PORTS } from './pod-apps';

const T = 'type.googleapis.com/';
const HCM = `${T}envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager`;
const ROUTER = `${T}envoy.extensions.filters.http.router.v3.Router`;
const TCP = `${T}envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy`;
const RBAC = `${T}envoy.extensions.filters.network.rbac.v3.RBAC`;
const HTTP_OPTS = 'envoy.extensions.upstreams.http.v3.HttpProtocolOptions';

export interface Identity {
  readonly certChainPem: string;
  readonly privateKeyPem: string;
  readonly rootCertPem: string;
  readonly spiffeId: string;
}

const addr = (address: string, port: number) => ({ socket_address: { address, port_value: port } });

function common(id: Identity, verifySan?: string, alpn?: string[]): Record<string, unknown> {
  return {
    tls_certificates: [{ certificate_chain: { inline_string: id.certChainPem }, private_key: { inline_string: id.privateKeyPem } }],
    validation_context: {
      trusted_ca: { inline_string: id.rootCertPem },
      ...(verifySan ? { match_typed_subject_alt_names: [{ san_type: 'URI', matcher: { exact: verifySan } }] } : {}),
    },
    ...(alpn ? { alpn_protocols: alpn } : {}),
  };
}

function upstreamTls(id: Identity, peer: string, alpn?: string[]): Record<string, unknown> {
  return {
    name: 'envoy.transport_sockets.tls',
    typed_config: { '@type': `${T}envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext`, common_tls_context: common(id, peer, alpn) },
  };
}

function downstreamTls(id: Identity): Record<string, unknown> {
  return {
    name: 'envoy.transport_sockets.tls',
    typed_config: {
      '@type': `${T}envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext`,
      common_tls_context: common(id, undefined, ['h2', 'http/1.1']),
      require_client_certificate: true,
    },
  };
}

const h2Options = {
  typed_extension_protocol_options: { [HTTP_OPTS]: { '@type': `${T}${HTTP_OPTS}`, explicit_http_config: { http2_protocol_options: {} } } },
};

function hcm(statPrefix: string, cluster: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    name: 'envoy.filters.network.http_connection_manager',
    typed_config: {
      '@type': HCM,
      stat_prefix: statPrefix,
      route_config: { name: statPrefix, virtual_hosts: [{ name: 'all', domains: ['*'], routes: [{ match: { prefix: '/' }, route: { cluster } }] }] },
      http_filters: [{ name: 'envoy.filters.http.router', typed_config: { '@type': ROUTER } }],
      ...extra,
    },
  };
}

function tcpProxy(statPrefix: string, cluster: string): Record<string, unknown> {
  return { name: 'envoy.filters.network.tcp_proxy', typed_config: { '@type': TCP, stat_prefix: statPrefix, cluster } };
}

const originalDstFilter = {
  name: 'envoy.filters.listener.original_dst',
  typed_config: { '@type': `${T}envoy.extensions.filters.listener.original_dst.v3.OriginalDst` },
};

function staticCluster(name: string, ip: string, port: number, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    name,
    type: 'STATIC',
    connect_timeout: '2s',
    load_assignment: { cluster_name: name, endpoints: [{ lb_endpoints: [{ endpoint: { address: addr(ip, port) } }] }] },
    ...extra,
  };
}

function admin(): Record<string, unknown> {
  return { address: addr('127.0.0.1', 15000) };
}

/** Client pod sidecar: 15001 with per-service virtual listeners for the server pod. */
export function outboundBootstrap(self: Identity, peerIp: string, peerId: string): Record<string, unknown> {
  const virtual = (port: number, filter: Record<string, unknown>) => ({
    name: `${peerIp}_${port}`,
    address: addr(peerIp, port),
    bind_to_port: false,
    traffic_direction: 'OUTBOUND',
    filter_chains: [{ filters: [filter] }],
  });
  const out = (port: number) => `outbound|${port}||server`;
  return {
    node: { id: 'client-pod', cluster: 'client' },
    admin: admin(),
    static_resources: {
      listeners: [
        {
          name: 'virtualOutbound',
          // Dual-stack: IPv4 connections arrive v4-mapped; both families' SO_ORIGINAL_DST work.
          address: addr('::', 15001),
          use_original_dst: true,
          traffic_direction: 'OUTBOUND',
          listener_filters: [originalDstFilter],
          filter_chains: [{ name: 'virtualOutbound-catchall-tcp', filters: [tcpProxy('PassthroughCluster', 'PassthroughCluster')] }],
        },
        virtual(APP_PORTS.http1, hcm(`outbound_${APP_PORTS.http1}`, out(APP_PORTS.http1))),
        virtual(APP_PORTS.http2, hcm(`outbound_${APP_PORTS.http2}`, out(APP_PORTS.http2))),
        virtual(APP_PORTS.tcpEcho, tcpProxy(`outbound_${APP_PORTS.tcpEcho}`, out(APP_PORTS.tcpEcho))),
        virtual(APP_PORTS.greeter, tcpProxy(`outbound_${APP_PORTS.greeter}`, out(APP_PORTS.greeter))),
        // REGISTRY_ONLY for this destination: Istio's BlackHoleCluster (no endpoints, connection refused).
        virtual(APP_PORTS.direct, tcpProxy('BlackHoleCluster', 'BlackHoleCluster')),
      ],
      clusters: [
        staticCluster(out(APP_PORTS.http1), peerIp, APP_PORTS.http1, { transport_socket: upstreamTls(self, peerId) }),
        staticCluster(out(APP_PORTS.http2), peerIp, APP_PORTS.http2, { transport_socket: upstreamTls(self, peerId, ['h2']), ...h2Options }),
        staticCluster(out(APP_PORTS.tcpEcho), peerIp, APP_PORTS.tcpEcho, { transport_socket: upstreamTls(self, peerId) }),
        staticCluster(out(APP_PORTS.greeter), peerIp, APP_PORTS.greeter, { transport_socket: upstreamTls(self, peerId) }),
        { name: 'PassthroughCluster', type: 'ORIGINAL_DST', lb_policy: 'CLUSTER_PROVIDED', connect_timeout: '2s' },
        { name: 'BlackHoleCluster', type: 'STATIC', connect_timeout: '2s' },
      ],
    },
  };
}

/** Server pod sidecar: 15006 terminating mTLS per destination port, delivering from 127.0.0.6. */
export function inboundBootstrap(self: Identity, allowedPeer: string): Record<string, unknown> {
  const rbac = {
    name: 'envoy.filters.network.rbac',
    typed_config: {
      '@type': RBAC,
      stat_prefix: 'inbound_rbac',
      rules: {
        action: 'ALLOW',
        policies: { 'allow-client': { permissions: [{ any: true }], principals: [{ authenticated: { principal_name: { exact: allowedPeer } } }] } },
      },
    },
  };
  const chain = (port: number, terminal: Record<string, unknown>) => ({
    name: `inbound|${port}`,
    filter_chain_match: { destination_port: port },
    transport_socket: downstreamTls(self),
    filters: [rbac, terminal],
  });
  const xfcc = { forward_client_cert_details: 'SANITIZE_SET', set_current_client_cert_details: { uri: true } };
  const bind = { upstream_bind_config: { source_address: { address: '127.0.0.6', port_value: 0 } } };
  return {
    node: { id: 'server-pod', cluster: 'server' },
    admin: admin(),
    static_resources: {
      listeners: [
        {
          name: 'virtualInbound',
          address: addr('0.0.0.0', 15006),
          traffic_direction: 'INBOUND',
          listener_filters: [originalDstFilter],
          filter_chains: [
            chain(APP_PORTS.http1, hcm(`inbound_${APP_PORTS.http1}`, `inbound|${APP_PORTS.http1}||`, xfcc)),
            chain(APP_PORTS.http2, hcm(`inbound_${APP_PORTS.http2}`, `inbound|${APP_PORTS.http2}||`, xfcc)),
            chain(APP_PORTS.tcpEcho, tcpProxy('InboundPassthroughCluster', 'InboundPassthroughCluster')),
            chain(APP_PORTS.greeter, tcpProxy(`inbound_${APP_PORTS.greeter}`, `inbound|${APP_PORTS.greeter}||`)),
          ],
        },
      ],
      clusters: [
        staticCluster(`inbound|${APP_PORTS.http1}||`, '127.0.0.1', APP_PORTS.http1, bind),
        staticCluster(`inbound|${APP_PORTS.http2}||`, '127.0.0.1', APP_PORTS.http2, { ...bind, ...h2Options }),
        staticCluster(`inbound|${APP_PORTS.greeter}||`, '127.0.0.1', APP_PORTS.greeter, bind),
        // Modern Istio delivers to the original destination (the pod IP) from 127.0.0.6.
        { name: 'InboundPassthroughCluster', type: 'ORIGINAL_DST', lb_policy: 'CLUSTER_PROVIDED', connect_timeout: '2s', ...bind },
      ],
    },
  };
}
