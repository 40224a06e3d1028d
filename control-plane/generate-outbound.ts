/**
 * The outbound side of a workload's resources (Istio's outbound listeners and clusters): per
 * service port and version subset an EDS cluster with upstream mTLS and its
 * ClusterLoadAssignment; per port a route configuration (virtual host per service, weighted
 * version splits, timeouts and the retry policy) and an outbound listener (HCM with RDS, or
 * tcp_proxy); and, by how the workload's traffic reaches its sidecar, the captured
 * `virtualOutbound` 15001 listener or the explicit HTTP proxy listener. Pure; called by
 * generateForWorkload (generate.ts).
 */
import { appAddressFor, type Mesh, type MeshService, type MeshWorkload, type ServicePort } from './mesh';
import {
  ADS,
  captured,
  httpProtocolOptions,
  IDENTITY_SECRET,
  isH2,
  isHttp,
  outboundClusterName,
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

/** Istio's PassthroughCluster: to the caller's original destination (ALLOW_ANY, explicit-proxy targets). */
function addPassthroughCluster(out: NodeResources): void {
  out.get(T.cluster)!.set('PassthroughCluster', {
    '@type': T.cluster,
    name: 'PassthroughCluster',
    type: 'ORIGINAL_DST',
    lb_policy: 'CLUSTER_PROVIDED',
    connect_timeout: '10s',
  });
}

/** Istio's default retry policy when the mesh file sets none. */
const DEFAULT_RETRY = {
  retryOn: 'connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes',
  attempts: 2,
};

function workloadsOf(mesh: Mesh, s: MeshService, version?: string): MeshWorkload[] {
  return mesh.workloads.filter(
    (w) => w.service === s.name && w.namespace === s.namespace && (version === undefined || w.version === version),
  );
}
export function versionsOf(mesh: Mesh, s: MeshService): string[] {
  return [...new Set(workloadsOf(mesh, s).map((w) => w.version))].sort();
}

export function outboundCluster(mesh: Mesh, s: MeshService, p: ServicePort, subset: string): ResourceJson {
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

export function loadAssignment(mesh: Mesh, s: MeshService, p: ServicePort, subset: string): ResourceJson {
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

export function routeConfiguration(mesh: Mesh, port: number, services: readonly [MeshService, ServicePort][]): ResourceJson {
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

export function outboundListener(
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

/**
 * A captured workload's 15001: use_original_dst hands each connection to the virtual listener of
 * its original destination; a connection to 15001 itself is blackholed (it would loop); anything
 * else goes to PassthroughCluster (ALLOW_ANY) or BlackHoleCluster (REGISTRY_ONLY).
 */
export function virtualOutboundResources(mesh: Mesh, w: MeshWorkload, out: NodeResources): void {
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
  addPassthroughCluster(out);
  out.get(T.cluster)!.set('BlackHoleCluster', { '@type': T.cluster, name: 'BlackHoleCluster', type: 'STATIC', connect_timeout: '10s' });
}

/**
 * The explicit-proxy listener of a workload without capture (`explicit_proxy_port`): one HCM
 * whose virtual hosts are every service port by name (`<name>[.<ns>[.svc[.<domain>]]]:<port>`):
 * absolute-form requests take the service's route, CONNECT is terminated (connect_config) and
 * tunnelled to the service's cluster; other destinations go to PassthroughCluster (ALLOW_ANY, the
 * target from the URI or CONNECT authority) or get a 404 (REGISTRY_ONLY).
 */
export function explicitProxyResources(mesh: Mesh, w: MeshWorkload, out: NodeResources): void {
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
    addPassthroughCluster(out);
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
