/**
 * The inbound side of a workload's resources (Istio's inbound listener): one listener on the
 * workload's inbound port (or, captured, `virtualInbound` on 0.0.0.0:15006) whose filter chains
 * terminate mTLS per service port — told apart by SNI or original destination port, with a
 * plaintext twin under `mtls: PERMISSIVE` — run the RBAC filters (rbac.ts) and hand the request
 * or connection to the local app through a STATIC `inbound|<port>||` cluster. Pure; called by
 * generateForWorkload (generate.ts).
 */
import { appAddressFor, type Mesh, type MeshService, type MeshWorkload, type ServicePort } from './mesh';
import { httpRbacFilters, networkRbacFilters } from './rbac';
import {
  captured,
  httpProtocolOptions,
  IDENTITY_SECRET,
  inboundClusterName,
  isH2,
  isHttp,
  type NodeResources,
  type ResourceJson,
  ROOT_SECRET,
  router,
  sdsRef,
  sni,
  socket,
  T,
  tcpTo,
} from './generate-shared';

/** Source address of inbound traffic delivered to a captured app (never recaptured by iptables). */
const INBOUND_PASSTHROUGH_SOURCE = '127.0.0.6';

/**
 * One inbound filter chain for service port `p`. `tls` chains terminate mTLS (and, with several
 * ports, are told apart by SNI); PERMISSIVE workloads also get a `raw_buffer` twin for plaintext
 * clients, told apart from the mTLS one by tls_inspector (and, with several ports, by the original
 * destination port, as Istio's inbound listener does).
 */
function inboundChain(
  mesh: Mesh,
  w: MeshWorkload,
  s: MeshService,
  p: ServicePort,
  multi: boolean,
  transport: 'tls' | 'raw_buffer',
): Record<string, unknown> {
  const cluster = inboundClusterName(appAddressFor(w, p).port);
  const statPrefix = `inbound_${w.ip}_${p.port}`;
  const filters = isHttp(p)
    ? [
        {
          name: 'envoy.filters.network.http_connection_manager',
          typed_config: {
            '@type': T.hcm,
            stat_prefix: statPrefix,
            codec_type: 'AUTO',
            route_config: {
              name: cluster,
              virtual_hosts: [
                {
                  name: `inbound|http|${p.port}`,
                  domains: ['*'],
                  routes: [{ name: 'default', match: { prefix: '/' }, route: { cluster, timeout: '0s' } }],
                },
              ],
              validate_clusters: false,
            },
            http_filters: [...httpRbacFilters(mesh, w, p.protocol), router()],
            forward_client_cert_details: 'APPEND_FORWARD',
            set_current_client_cert_details: { subject: true, dns: true, uri: true },
          },
        },
      ]
    : [
        ...networkRbacFilters(mesh, w, statPrefix),
        {
          name: 'envoy.filters.network.tcp_proxy',
          typed_config: { '@type': T.tcpProxy, stat_prefix: cluster, cluster },
        },
      ];
  if (transport === 'raw_buffer') {
    const match: Record<string, unknown> = { transport_protocol: 'raw_buffer' };
    if (multi || captured(w)) match.destination_port = appAddressFor(w, p).port;
    return { name: `inbound_${p.port}_plaintext`, filter_chain_match: match, filters };
  }
  const chain: Record<string, unknown> = {
    name: `inbound_${p.port}`,
    transport_socket: {
      name: 'envoy.transport_sockets.tls',
      typed_config: {
        '@type': T.downstreamTls,
        common_tls_context: {
          tls_certificate_sds_secret_configs: [sdsRef(IDENTITY_SECRET)],
          validation_context_sds_secret_config: sdsRef(ROOT_SECRET),
          alpn_protocols: isH2(p) ? ['h2'] : isHttp(p) ? ['h2', 'http/1.1'] : [],
        },
        require_client_certificate: true,
      },
    },
    filters,
  };
  const match: Record<string, unknown> = {};
  // Captured (15006): chains are told apart by the original destination port, as Istio does.
  if (captured(w)) match.destination_port = appAddressFor(w, p).port;
  else if (multi) match.server_names = [sni(p.port, '', s.host), sni(p.port, w.version, s.host)];
  if (w.mtls === 'PERMISSIVE') match.transport_protocol = 'tls';
  if (Object.keys(match).length > 0) chain.filter_chain_match = match;
  return chain;
}

export function inboundResources(mesh: Mesh, w: MeshWorkload, out: NodeResources): void {
  const s = mesh.services.find((x) => x.name === w.service && x.namespace === w.namespace);
  if (!s) return;
  const multi = s.ports.length > 1;
  // Captured: Istio's virtualInbound on 0.0.0.0 (iptables redirects to the pod IP, or to
  // 127.0.0.1 for the pod calling itself), chains by original destination port.
  const name = captured(w) ? 'virtualInbound' : `inbound_${w.ip}_${w.inboundPort}`;
  const chains = s.ports.flatMap((p) =>
    w.mtls === 'PERMISSIVE'
      ? [inboundChain(mesh, w, s, p, multi, 'tls'), inboundChain(mesh, w, s, p, multi, 'raw_buffer')]
      : [inboundChain(mesh, w, s, p, multi, 'tls')],
  );
  if (captured(w)) {
    chains.unshift({
      name: 'virtualInbound-blackhole',
      filter_chain_match: { destination_port: w.inboundPort },
      filters: [tcpTo('BlackHoleCluster', 'BlackHoleCluster')],
    });
  }
  const listener: ResourceJson = {
    '@type': T.listener,
    name,
    address: socket(captured(w) ? '0.0.0.0' : w.ip, w.inboundPort),
    traffic_direction: 'INBOUND',
    filter_chains: chains,
  };
  // Several ports share the one inbound port: chains are told apart by the SNI the client sets
  // (or, captured, by the original destination port); PERMISSIVE tells mTLS from plaintext by the
  // ClientHello, which needs tls_inspector.
  const listenerFilters: Record<string, unknown>[] = [];
  if (captured(w))
    listenerFilters.push({ name: 'envoy.filters.listener.original_dst', typed_config: { '@type': T.originalDst } });
  if ((multi && !captured(w)) || w.mtls === 'PERMISSIVE')
    listenerFilters.push({ name: 'envoy.filters.listener.tls_inspector', typed_config: { '@type': T.tlsInspector } });
  if (listenerFilters.length > 0) listener.listener_filters = listenerFilters;
  // A plaintext client that waits for the server to speak first (MySQL, SMTP) sends no ClientHello:
  // after the inspection timeout it continues on the raw_buffer chain instead of being closed (Istio).
  if (w.mtls === 'PERMISSIVE') listener.continue_on_listener_filters_timeout = true;
  out.get(T.listener)!.set(name, listener);
  for (const p of s.ports) {
    const app = appAddressFor(w, p);
    const cname = inboundClusterName(app.port);
    const cluster: ResourceJson = {
      '@type': T.cluster,
      name: cname,
      type: 'STATIC',
      connect_timeout: '10s',
      lb_policy: 'ROUND_ROBIN',
      load_assignment: {
        cluster_name: cname,
        endpoints: [{ lb_endpoints: [{ endpoint: { address: socket(app.host, app.port) } }] }],
      },
    };
    // Delivered from 127.0.0.6 so the pod's iptables do not capture it again.
    if (captured(w))
      cluster.upstream_bind_config = { source_address: { address: INBOUND_PASSTHROUGH_SOURCE, port_value: 0 } };
    const opts = httpProtocolOptions(p);
    if (opts) cluster.typed_extension_protocol_options = opts;
    out.get(T.cluster)!.set(cname, cluster);
  }
}
