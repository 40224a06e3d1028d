/**
 * What the resource generators share (generate.ts, generate-outbound.ts, generate-inbound.ts):
 * the proto3 JSON resource types, the type URLs, Istio's names (clusters, SNI, the identity and
 * trust secrets), the mesh port and workload predicates, and the small builders several
 * resources use (socket addresses, SDS references, the router filter, tcp_proxy, HTTP protocol
 * options). Pure.
 */
import { TYPE_URLS } from '../xds-client/protos';
import type { MeshWorkload, ServicePort } from './mesh';

export type ResourceJson = Record<string, unknown> & { '@type': string; name?: string; cluster_name?: string };

/** Resources of one node, by type URL, then by resource name. */
export type NodeResources = Map<string, Map<string, ResourceJson>>;

export const IDENTITY_SECRET = 'default';
export const ROOT_SECRET = 'ROOTCA';

export const ADS = { ads: {}, resource_api_version: 'V3' } as const;
export const T = {
  listener: TYPE_URLS.listener,
  route: TYPE_URLS.routeConfiguration,
  cluster: TYPE_URLS.cluster,
  endpoint: TYPE_URLS.clusterLoadAssignment,
  secret: TYPE_URLS.secret,
  hcm: 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
  tcpProxy: 'type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy',
  router: 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router',
  upstreamTls: 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext',
  downstreamTls: 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext',
  httpOptions: 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
  previousHosts: 'type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate',
  tlsInspector: 'type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector',
  originalDst: 'type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst',
} as const;

export const captured = (w: MeshWorkload): boolean => w.capture === 'iptables';

export function outboundClusterName(port: number, subset: string, host: string): string {
  return `outbound|${port}|${subset}|${host}`;
}
export function inboundClusterName(targetPort: number): string {
  return `inbound|${targetPort}||`;
}
export function sni(port: number, subset: string, host: string): string {
  return `outbound_.${port}_.${subset}_.${host}`;
}
export function socket(host: string, port: number): Record<string, unknown> {
  return { socket_address: { address: host, port_value: port } };
}
export function sdsRef(name: string): Record<string, unknown> {
  return { name, sds_config: ADS };
}
export const isHttp = (p: ServicePort) => p.protocol !== 'tcp';
export const isH2 = (p: ServicePort) => p.protocol === 'http2' || p.protocol === 'grpc';

export function httpProtocolOptions(p: ServicePort): Record<string, unknown> | undefined {
  if (!isHttp(p)) return undefined;
  return {
    'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
      '@type': T.httpOptions,
      explicit_http_config: isH2(p) ? { http2_protocol_options: {} } : { http_protocol_options: {} },
    },
  };
}

export function router(): Record<string, unknown> {
  return { name: 'envoy.filters.http.router', typed_config: { '@type': T.router } };
}

export function tcpTo(statPrefix: string, cluster: string): Record<string, unknown> {
  return { name: 'envoy.filters.network.tcp_proxy', typed_config: { '@type': T.tcpProxy, stat_prefix: statPrefix, cluster } };
}

/** The name a resource is known by in xDS (ClusterLoadAssignment uses cluster_name). */
export function resourceName(r: ResourceJson): string {
  return (r.name ?? r.cluster_name ?? '') as string;
}
