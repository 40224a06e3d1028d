/**
 * Mesh → per-node Envoy v3 resources, in proto3 JSON form with "@type" (exactly what an Envoy user
 * would write in YAML), ready for xds-client/proto-json's `jsonToAny`.
 *
 * Owns the translation only; it is pure (same mesh and workload → same JSON, in a stable key
 * order, so the server can version resources by content hash). Names follow Istio:
 *  - outbound listeners `<outbound_ip>_<port>` (HCM with RDS route `<port>`, or tcp_proxy);
 *  - route configurations `<port>`, one virtual host per service `<host>:<port>`;
 *  - clusters `outbound|<port>|<subset>|<host>` (EDS, subset per version) and
 *    `inbound|<target port>||` (STATIC, the local app);
 *  - ClusterLoadAssignments named like their EDS clusters, endpoints = peers' sidecar inbound ports;
 *  - the inbound listener `inbound_<ip>_<inbound port>` (mTLS required, RBAC, then the local app;
 *    with `mtls: PERMISSIVE`, tls_inspector plus a `raw_buffer` chain per port for plaintext);
 *  - secrets `default` (workload identity) and `ROOTCA` (trust bundle), built by `secretResources`;
 *  - with `capture: iptables` (pods captured by `meshlet iptables`): outbound listeners become
 *    virtual `0.0.0.0_<port>` (bind_to_port: false) behind `virtualOutbound` on 0.0.0.0:15001
 *    (use_original_dst; PassthroughCluster or BlackHoleCluster per outbound_traffic_policy), the
 *    inbound listener is `virtualInbound` on 0.0.0.0:15006 with chains by original destination
 *    port and delivery from 127.0.0.6, and peers dial the workload at its app ports;
 *  - with `explicit_proxy_port` (no capture): `explicit_proxy_<ip>_<port>`, the app's HTTP proxy
 *    (absolute-form and CONNECT to every service by name, PassthroughCluster for the rest).
 * Leans Istio-compatible: default retry policy, LEAST_REQUEST, 10 s connect timeout, SNI
 * `outbound_.<port>_.<subset>_.<host>`, SAN verification against the destination's service accounts.
 */
import { TYPE_URLS } from '../xds-client/protos';
import { appAddressFor, type Mesh, type MeshService, type MeshWorkload, type ServicePort } from './mesh';
import { httpRbacFilters, networkRbacFilters } from './rbac';

export type ResourceJson = Record<string, unknown> & { '@type': string; name?: string; cluster_name?: string };

/** Resources of one node, by type URL, then by resource name. */
export type NodeResources = Map<string, Map<string, ResourceJson>>;

export const IDENTITY_SECRET = 'default';
export const ROOT_SECRET = 'ROOTCA';

const ADS = { ads: {}, resource_api_version: 'V3' } as const;
const T = {
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

/** Source address of inbound traffic delivered to a captured app (never recaptured by iptables). */
const INBOUND_PASSTHROUGH_SOURCE = '127.0.0.6';
const captured = (w: MeshWorkload): boolean => w.capture === 'iptables';

/** Istio's default retry policy when the mesh file sets none. */
const DEFAULT_RETRY = {
  retryOn: 'connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes',
  attempts: 2,
};

export function outboundClusterName(port: number, subset: string, host: string): string {
  return `outbound|${port}|${subset}|${host}`;
}
export function inboundClusterName(targetPort: number): string {
  return `inbound|${targetPort}||`;
}
function sni(port: number, subset: string, host: string): string {
  return `outbound_.${port}_.${subset}_.${host}`;
}
function socket(host: string, port: number): Record<string, unknown> {
  return { socket_address: { address: host, port_value: port } };
}
function sdsRef(name: string): Record<string, unknown> {
  return { name, sds_config: ADS };
}
const isHttp = (p: ServicePort) => p.protocol !== 'tcp';
const isH2 = (p: ServicePort) => p.protocol === 'http2' || p.protocol === 'grpc';

function workloadsOf(mesh: Mesh, s: MeshService, version?: string): MeshWorkload[] {
  return mesh.workloads.filter(
    (w) => w.service === s.name && w.namespace === s.namespace && (version === undefined || w.version === version),
  );
}
function versionsOf(mesh: Mesh, s: MeshService): string[] {
  return [...new Set(workloadsOf(mesh, s).map((w) => w.version))].sort();
}

function httpProtocolOptions(p: ServicePort): Record<string, unknown> | undefined {
  if (!isHttp(p)) return undefined;
  return {
    'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
      '@type': T.httpOptions,
      explicit_http_config: isH2(p) ? { http2_protocol_options: {} } : { http_protocol_options: {} },
    },
  };
}

function outboundCluster(mesh: Mesh, s: MeshService, p: ServicePort, subset: string): ResourceJson {
  const name = outboundClusterName(p.port, subset, s.host);
  const sas = [...new Set(workloadsOf(mesh, s, subset || undefined).map((w) => w.spiffeId))].sort();
  const cluster: ResourceJson = {
    '@type': T.cluster,
    name,
    type: 'EDS',
    eds_cluster_config: { eds_config: ADS, service_name: name },
    connect_timeout: '10s',
    lb_policy: 'LEAST_REQUEST',
    transport_socket: {
      name: 'envoy.transport_sockets.tls',
      typed_config: {
        '@type': T.upstreamTls,
        common_tls_context: {
          tls_certificate_sds_secret_configs: [sdsRef(IDENTITY_SECRET)],
          combined_validation_context: {
            default_validation_context: {
              match_typed_subject_alt_names: sas.map((id) => ({ san_type: 'URI', matcher: { exact: id } })),
            },
            validation_context_sds_secret_config: sdsRef(ROOT_SECRET),
          },
          alpn_protocols: isH2(p) ? ['h2'] : isHttp(p) ? ['http/1.1'] : [],
        },
        sni: sni(p.port, subset, s.host),
      },
    },
    metadata: { filter_metadata: { istio: { services: [{ host: s.host, name: s.name, namespace: s.namespace }] } } },
  };
  const opts = httpProtocolOptions(p);
  if (opts) cluster.typed_extension_protocol_options = opts;
  return cluster;
}

function loadAssignment(mesh: Mesh, s: MeshService, p: ServicePort, subset: string): ResourceJson {
  const lbEndpoints = workloadsOf(mesh, s, subset || undefined).map((w) => ({
    // A captured peer is dialled at its app port (its iptables hand the connection to 15006).
    endpoint: { address: captured(w) ? socket(w.ip, appAddressFor(w, p).port) : socket(w.ip, w.inboundPort) },
    health_status: 'HEALTHY',
    metadata: {
      filter_metadata: { 'envoy.lb': { version: w.version }, istio: { workload: `${w.name};${w.namespace}` } },
    },
    load_balancing_weight: 1,
  }));
  return {
    '@type': T.endpoint,
    cluster_name: outboundClusterName(p.port, subset, s.host),
    endpoints: lbEndpoints.length > 0 ? [{ lb_endpoints: lbEndpoints }] : [],
  };
}

function routeAction(mesh: Mesh, s: MeshService, p: ServicePort): Record<string, unknown> {
  const rule = mesh.traffic.find((t) => t.service === s.name && t.namespace === s.namespace);
  const action: Record<string, unknown> = {};
  const splits = rule?.splits.filter((x) => x.weight > 0) ?? [];
  if (splits.length > 0) {
    action.weighted_clusters = {
      clusters: splits.map((x) => ({ name: outboundClusterName(p.port, x.version, s.host), weight: x.weight })),
    };
  } else {
    action.cluster = outboundClusterName(p.port, '', s.host);
  }
  if (rule?.timeoutMs !== undefined) action.timeout = `${rule.timeoutMs / 1000}s`;
  const retry = rule?.retries ?? { ...DEFAULT_RETRY, perTryTimeoutMs: 0 };
  const retryPolicy: Record<string, unknown> = {
    retry_on: retry.retryOn,
    num_retries: retry.attempts,
    retry_host_predicate: [
      { name: 'envoy.retry_host_predicates.previous_hosts', typed_config: { '@type': T.previousHosts } },
    ],
    host_selection_retry_max_attempts: '5',
  };
  if (retry.perTryTimeoutMs > 0) retryPolicy.per_try_timeout = `${retry.perTryTimeoutMs / 1000}s`;
  if (retry.retryOn.includes('retriable-status-codes')) retryPolicy.retriable_status_codes = [503];
  action.retry_policy = retryPolicy;
  return action;
}

function routeConfiguration(mesh: Mesh, port: number, services: readonly [MeshService, ServicePort][]): ResourceJson {
  const single = services.length === 1;
  return {
    '@type': T.route,
    name: String(port),
    virtual_hosts: services.map(([s, p]) => {
      const short = [s.name, `${s.name}.${s.namespace}`, `${s.name}.${s.namespace}.svc`, s.host];
      const domains = short.flatMap((d) => [d, `${d}:${p.port}`]);
      // The app dials its sidecar's outbound IP directly: with one service on the port, any Host is it.
      if (single) domains.push('*');
      return {
        name: `${s.host}:${p.port}`,
        domains,
        routes: [{ name: 'default', match: { prefix: '/' }, route: routeAction(mesh, s, p) }],
      };
    }),
    validate_clusters: false,
  };
}

function router(): Record<string, unknown> {
  return { name: 'envoy.filters.http.router', typed_config: { '@type': T.router } };
}

/** tcp_proxy for a tcp service port: the whole service, or weighted version subsets. */
function tcpProxy(mesh: Mesh, s: MeshService, port: number): Record<string, unknown> {
  const rule = mesh.traffic.find((t) => t.service === s.name && t.namespace === s.namespace);
  const splits = rule?.splits.filter((x) => x.weight > 0) ?? [];
  const whole = outboundClusterName(port, '', s.host);
  const config: Record<string, unknown> = { '@type': T.tcpProxy, stat_prefix: whole };
  if (splits.length > 0) {
    config.weighted_clusters = {
      clusters: splits.map((x) => ({ name: outboundClusterName(port, x.version, s.host), weight: x.weight })),
    };
  } else {
    config.cluster = whole;
  }
  return { name: 'envoy.filters.network.tcp_proxy', typed_config: config };
}

function outboundListener(
  mesh: Mesh,
  w: MeshWorkload,
  port: number,
  services: readonly [MeshService, ServicePort][],
): ResourceJson {
  // Captured: Istio's virtual listener 0.0.0.0_<port>, reached only through 15001's hand-over.
  const host = captured(w) ? '0.0.0.0' : w.outboundIp;
  const name = `${host}_${port}`;
  const [s0, p0] = services[0]!;
  const filter = isHttp(p0)
    ? {
        name: 'envoy.filters.network.http_connection_manager',
        typed_config: {
          '@type': T.hcm,
          stat_prefix: `outbound_${name}`,
          codec_type: 'AUTO',
          rds: { route_config_name: String(port), config_source: ADS },
          http_filters: [router()],
        },
      }
    : tcpProxy(mesh, s0, port);
  return {
    '@type': T.listener,
    name,
    address: socket(host, port),
    ...(captured(w) ? { bind_to_port: false } : {}),
    traffic_direction: 'OUTBOUND',
    filter_chains: [{ name: `outbound_${port}`, filters: [filter] }],
  };
}

function tcpTo(statPrefix: string, cluster: string): Record<string, unknown> {
  return { name: 'envoy.filters.network.tcp_proxy', typed_config: { '@type': T.tcpProxy, stat_prefix: statPrefix, cluster } };
}

/**
 * A captured workload's 15001: use_original_dst hands each connection to the virtual listener of
 * its original destination; a connection to 15001 itself is blackholed (it would loop); anything
 * else goes to PassthroughCluster (ALLOW_ANY) or BlackHoleCluster (REGISTRY_ONLY).
 */
function virtualOutboundResources(mesh: Mesh, w: MeshWorkload, out: NodeResources): void {
  const port = w.outboundPort ?? 15001;
  const catchAll = mesh.outboundTrafficPolicy === 'REGISTRY_ONLY' ? 'BlackHoleCluster' : 'PassthroughCluster';
  out.get(T.listener)!.set('virtualOutbound', {
    '@type': T.listener,
    name: 'virtualOutbound',
    address: socket('0.0.0.0', port),
    use_original_dst: true,
    traffic_direction: 'OUTBOUND',
    listener_filters: [{ name: 'envoy.filters.listener.original_dst', typed_config: { '@type': T.originalDst } }],
    filter_chains: [
      { name: 'virtualOutbound-blackhole', filter_chain_match: { destination_port: port }, filters: [tcpTo('BlackHoleCluster', 'BlackHoleCluster')] },
      { name: 'virtualOutbound-catchall-tcp', filters: [tcpTo(catchAll, catchAll)] },
    ],
  });
  out.get(T.cluster)!.set('PassthroughCluster', {
    '@type': T.cluster,
    name: 'PassthroughCluster',
    type: 'ORIGINAL_DST',
    lb_policy: 'CLUSTER_PROVIDED',
    connect_timeout: '10s',
  });
  out.get(T.cluster)!.set('BlackHoleCluster', { '@type': T.cluster, name: 'BlackHoleCluster', type: 'STATIC', connect_timeout: '10s' });
}

/**
 * The explicit-proxy listener of a workload without capture (`explicit_proxy_port`): one HCM
 * whose virtual hosts are every service port by name (`<name>[.<ns>[.svc[.<domain>]]]:<port>`):
 * absolute-form requests take the service's route, CONNECT is terminated (connect_config) and
 * tunnelled to the service's cluster; other destinations go to PassthroughCluster (ALLOW_ANY, the
 * target from the URI or CONNECT authority) or get a 404 (REGISTRY_ONLY).
 */
function explicitProxyResources(mesh: Mesh, w: MeshWorkload, out: NodeResources): void {
  const port = w.explicitProxyPort!;
  const connect = (cluster: Record<string, unknown>) => ({
    name: 'connect',
    match: { connect_matcher: {} },
    route: { ...cluster, upgrade_configs: [{ upgrade_type: 'CONNECT', connect_config: {} }] },
  });
  const vhosts: Record<string, unknown>[] = [];
  for (const s of mesh.services) {
    for (const p of s.ports) {
      const names = [s.name, `${s.name}.${s.namespace}`, `${s.name}.${s.namespace}.svc`, s.host];
      const domains = names.map((d) => `${d}:${p.port}`);
      if (p.port === 80) domains.push(...names);
      const action = isHttp(p) ? routeAction(mesh, s, p) : { cluster: outboundClusterName(p.port, '', s.host) };
      const { retry_policy: _noRetriesForTunnels, ...tunnelAction } = action;
      const routes: Record<string, unknown>[] = [connect(tunnelAction)];
      if (isHttp(p)) routes.push({ name: 'default', match: { prefix: '/' }, route: action });
      vhosts.push({ name: `${s.host}:${p.port}`, domains, routes });
    }
  }
  if (mesh.outboundTrafficPolicy !== 'REGISTRY_ONLY') {
    vhosts.push({
      name: 'allow_any',
      domains: ['*'],
      routes: [connect({ cluster: 'PassthroughCluster' }), { name: 'allow_any', match: { prefix: '/' }, route: { cluster: 'PassthroughCluster' } }],
    });
    out.get(T.cluster)!.set('PassthroughCluster', {
      '@type': T.cluster,
      name: 'PassthroughCluster',
      type: 'ORIGINAL_DST',
      lb_policy: 'CLUSTER_PROVIDED',
      connect_timeout: '10s',
    });
  }
  const name = `explicit_proxy_${w.outboundIp}_${port}`;
  out.get(T.listener)!.set(name, {
    '@type': T.listener,
    name,
    address: socket(w.outboundIp, port),
    traffic_direction: 'OUTBOUND',
    filter_chains: [
      {
        name: 'explicit-http-proxy',
        filters: [
          {
            name: 'envoy.filters.network.http_connection_manager',
            typed_config: {
              '@type': T.hcm,
              stat_prefix: `outbound_explicit_${port}`,
              codec_type: 'AUTO',
              route_config: { name: 'explicit_proxy', virtual_hosts: vhosts, validate_clusters: false },
              http_filters: [router()],
            },
          },
        ],
      },
    ],
  });
}

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

function inboundResources(mesh: Mesh, w: MeshWorkload, out: NodeResources): void {
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

/** Every xDS resource (except secrets) for workload `w`: LDS, RDS, CDS and EDS. */
export function generateForWorkload(mesh: Mesh, w: MeshWorkload): NodeResources {
  const out: NodeResources = new Map([
    [T.listener, new Map()],
    [T.route, new Map()],
    [T.cluster, new Map()],
    [T.endpoint, new Map()],
  ]);
  const byPort = new Map<number, [MeshService, ServicePort][]>();
  for (const s of mesh.services) {
    for (const p of s.ports) {
      byPort.set(p.port, [...(byPort.get(p.port) ?? []), [s, p]]);
      for (const subset of ['', ...versionsOf(mesh, s)]) {
        const c = outboundCluster(mesh, s, p, subset);
        out.get(T.cluster)!.set(c.name!, c);
        out.get(T.endpoint)!.set(c.name!, loadAssignment(mesh, s, p, subset));
      }
    }
  }
  for (const [port, services] of [...byPort].sort((a, b) => a[0] - b[0])) {
    const l = outboundListener(mesh, w, port, services);
    out.get(T.listener)!.set(l.name!, l);
    if (isHttp(services[0]![1])) out.get(T.route)!.set(String(port), routeConfiguration(mesh, port, services));
  }
  inboundResources(mesh, w, out);
  if (captured(w)) virtualOutboundResources(mesh, w, out);
  else if (w.explicitProxyPort !== undefined) explicitProxyResources(mesh, w, out);
  return out;
}

/**
 * The `ROOTCA` (trust bundle) Secret and, only when the control plane hands out keys (local
 * development), the `default` identity Secret with its private key.
 */
export function secretResources(
  identity: { certChainPem: string; privateKeyPem: string } | undefined,
  trustBundlePem: string,
): Map<string, ResourceJson> {
  const out = new Map<string, ResourceJson>();
  if (identity) {
    out.set(IDENTITY_SECRET, {
      '@type': T.secret,
      name: IDENTITY_SECRET,
      tls_certificate: {
        certificate_chain: { inline_string: identity.certChainPem },
        private_key: { inline_string: identity.privateKeyPem },
      },
    });
  }
  out.set(ROOT_SECRET, { '@type': T.secret, name: ROOT_SECRET, validation_context: { trusted_ca: { inline_string: trustBundlePem } } });
  return out;
}

/** The name a resource is known by in xDS (ClusterLoadAssignment uses cluster_name). */
export function resourceName(r: ResourceJson): string {
  return (r.name ?? r.cluster_name ?? '') as string;
}
