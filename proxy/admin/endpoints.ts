/**
 * The core admin endpoints (Envoy's paths and output shapes): /ready, /server_info, /clusters,
 * /listeners, /config_dump, /certs, and the POST mutations /quitquitquit, /healthcheck/fail|ok,
 * /drain_listeners and /logging. Telemetry adds /stats, /stats/prometheus and /reset_counters
 * (telemetry/telemetry.ts).
 */
import type { ListenerConfig } from '../config/types';
import type { AdminTarget } from './admin-target';
import { logLevels, setLogLevel } from '../../common/logger';
import { VERSION } from '../../common/version';
import { type AdminServer, json, text } from './admin-server';
import { redactSecrets } from './redact';


function addressString(a: { kind: 'socket'; host: string; port: number } | { kind: 'pipe'; path: string }, bound?: number): string {
  return a.kind === 'pipe' ? a.path : `${a.host}:${bound || a.port}`;
}

export function registerCoreEndpoints(admin: AdminServer, server: AdminTarget): void {
  admin.route('GET', '/ready', 'LIVE when ready for traffic, 503 otherwise', () =>
    server.ready ? text('LIVE') : text(server.reportedState, 503),
  );

  admin.route('GET', '/server_info', 'version, state, uptime and node', () =>
    json({
      version: `meshlet/${VERSION}`,
      state: server.reportedState,
      hot_restart_version: 'disabled',
      uptime_current_epoch: `${Math.floor((Date.now() - server.startedAt) / 1000)}s`,
      uptime_all_epochs: `${Math.floor((Date.now() - server.startedAt) / 1000)}s`,
      node: server.bootstrap.node,
      command_line_options: {
        concurrency: 1,
        drain_time: `${(server.opts.drainTimeoutMs ?? 5000) / 1000}s`,
        drain_strategy: server.opts.drainStrategy === 'immediate' ? 'Immediate' : 'Gradual',
      },
    }),
  );

  admin.route('GET', '/clusters', 'upstream clusters, hosts, health and counters (?format=json)', (q) => {
    const all = server.clusters.describe();
    if (q.get('format') === 'json') {
      return json({
        cluster_statuses: all.map((c) => ({
          name: c.name,
          added_via_api: c.addedViaApi,
          host_statuses: c.hosts.map((h) => ({
            address: socketAddress(h.address),
            stats: Object.entries(h.stats).map(([name, value]) => ({ name, value: String(value) })),
            health_status: { failed_active_health_check: h.healthFlags.includes('failed_active_hc'), failed_outlier_check: h.healthFlags.includes('failed_outlier_check') },
            weight: h.weight,
            priority: h.priority,
          })),
        })),
      });
    }
    const lines: string[] = [];
    for (const c of all) {
      const cb = c.circuitBreakers.default;
      lines.push(`${c.name}::default_priority::max_connections::${cb.maxConnections}`);
      lines.push(`${c.name}::default_priority::max_pending_requests::${cb.maxPendingRequests}`);
      lines.push(`${c.name}::default_priority::max_requests::${cb.maxRequests}`);
      lines.push(`${c.name}::default_priority::max_retries::${cb.maxRetries}`);
      lines.push(`${c.name}::added_via_api::${c.addedViaApi}`);
      for (const h of c.hosts) {
        const key = `${c.name}::${h.address}`;
        for (const [k, v] of Object.entries(h.stats)) lines.push(`${key}::${k}::${v}`);
        lines.push(`${key}::hostname::${h.hostname}`);
        lines.push(`${key}::health_flags::${h.healthFlags}`);
        lines.push(`${key}::weight::${h.weight}`);
        lines.push(`${key}::priority::${h.priority}`);
        // meshlet's line (Envoy prints none): which transport_socket_matches entry the host uses.
        if (h.transportSocketMatch !== undefined) lines.push(`${key}::transport_socket_match::${h.transportSocketMatch}`);
      }
    }
    return text(lines.join('\n'));
  });

  admin.route('GET', '/listeners', 'listeners and their bound addresses (?format=json)', (q) => {
    const ls = server.listeners.all();
    if (q.get('format') === 'json') {
      return json({
        listener_statuses: ls.map((l) => ({
          name: l.config.name,
          local_address:
            l.config.address.kind === 'socket'
              ? { socket_address: { address: l.config.address.host, port_value: l.boundPort || l.config.address.port } }
              : { pipe: { path: l.config.address.path } },
        })),
      });
    }
    return text(ls.map((l) => `${l.config.name}::${addressString(l.config.address, l.boundPort)}`).join('\n'));
  });

  admin.route('GET', '/config_dump', 'running configuration in Envoy ConfigDump shape (?include_eds, ?resource=)', (q) =>
    json(configDump(server, { includeEds: q.has('include_eds'), resource: q.get('resource') ?? undefined })),
  );

  admin.route('GET', '/certs', 'workload certificates and trust bundles', () => json(server.certs.adminCerts()));

  admin.route('POST', '/healthcheck/fail', 'fail readiness (traffic keeps flowing)', () => {
    server.healthCheckFailed = true;
    return text('OK');
  });
  admin.route('POST', '/healthcheck/ok', 'clear a /healthcheck/fail', () => {
    server.healthCheckFailed = false;
    return text('OK');
  });

  admin.route('POST', '/drain_listeners', 'drain listeners (?inboundonly, ?graceful: accept during the drain time, ?skip_exit)', (q) => {
    // Envoy: without graceful the listeners stop accepting now; with it they keep accepting for
    // the drain time while connections are told to close, then stop (unless skip_exit).
    const filter = q.has('inboundonly') ? (l: { config: ListenerConfig }) => l.config.trafficDirection === 'INBOUND' : undefined;
    server.listenersDrained = true;
    if (q.has('graceful')) server.drainListeners(filter, q.has('skip_exit'));
    else server.listeners.drainAll(filter);
    return text('OK');
  });

  admin.route('POST', '/quitquitquit', 'drain and exit (as soon as no connection is left)', () => {
    // For jobs whose app is done: no need to keep outbound open for the whole drain time.
    setImmediate(() => {
      void server.shutdown(undefined, true).then(() => process.emit('meshlet:exit' as never));
    });
    return text('OK');
  });

  admin.route('POST', '/logging', 'set log levels: ?level=debug or ?<component>=<level>', (q) => {
    let changed = false;
    for (const [k, v] of q) {
      const ok = k === 'level' ? setLogLevel(v) : setLogLevel(v, k);
      if (!ok) return text(`invalid log level "${v}"`, 400);
      changed = true;
    }
    const levels = logLevels();
    const body = Object.entries(levels)
      .map(([k, v]) => `  ${k}: ${v}`)
      .join('\n');
    return text(`${changed ? 'levels updated' : 'active loggers'}:\n${body}`);
  });
}

function socketAddress(hostPort: string): unknown {
  const i = hostPort.lastIndexOf(':');
  if (i < 0) return { pipe: { path: hostPort } };
  return { socket_address: { address: hostPort.slice(0, i).replace(/^\[|\]$/g, ''), port_value: Number(hostPort.slice(i + 1)) } };
}

/**
 * Envoy's ConfigDump: one entry per config type, static and dynamic resources. Every
 * secret-bearing field is redacted ("[redacted]"), in every shape and ?resource= view.
 */
export function configDump(server: AdminTarget, opts: { includeEds?: boolean; resource?: string } = {}): { configs: unknown[] } {
  return redactSecrets(unredactedConfigDump(server, opts));
}

function unredactedConfigDump(server: AdminTarget, opts: { includeEds?: boolean; resource?: string }): { configs: unknown[] } {
  const raw = (server.opts.rawBootstrap ?? {}) as Record<string, unknown>;
  const rawStatic = (raw.static_resources ?? raw.staticResources ?? {}) as Record<string, unknown[] | undefined>;
  const lastUpdated = new Date(server.startedAt).toISOString();
  const snap = server.dynamic?.client.snapshot();
  const ofType = (suffix: string) => snap?.types.find((t) => t.type_url.endsWith(suffix))?.resources ?? [];
  const errorState = (r: { error_state?: unknown }) => (r.error_state ? { error_state: r.error_state } : {});
  const listenerStates = server.dynamic?.listenerStates;
  const configs: Record<string, unknown>[] = [
    { '@type': 'type.googleapis.com/envoy.admin.v3.BootstrapConfigDump', bootstrap: raw, last_updated: lastUpdated },
    {
      '@type': 'type.googleapis.com/envoy.admin.v3.ClustersConfigDump',
      static_clusters: (rawStatic.clusters ?? []).map((cluster) => ({ cluster, last_updated: lastUpdated })),
      dynamic_active_clusters: ofType('.Cluster')
        .filter((r) => r.resource && !server.clusters.warmingNames().includes(r.name))
        .map((r) => ({ version_info: r.version_info, cluster: r.resource, last_updated: r.last_updated, client_status: r.client_status, ...errorState(r) })),
      dynamic_warming_clusters: ofType('.Cluster')
        .filter((r) => r.resource && server.clusters.warmingNames().includes(r.name))
        .map((r) => ({ version_info: r.version_info, cluster: r.resource, last_updated: r.last_updated })),
    },
    {
      '@type': 'type.googleapis.com/envoy.admin.v3.ListenersConfigDump',
      static_listeners: (rawStatic.listeners ?? []).map((listener) => ({ listener, last_updated: lastUpdated })),
      dynamic_listeners: ofType('.Listener').map((r) => {
        const st = listenerStates?.get(r.name);
        return {
          name: r.name,
          ...(st?.active ? { active_state: { version_info: st.active.version, listener: r.resource, last_updated: st.active.lastUpdated } } : {}),
          ...(st?.warming ? { warming_state: { version_info: st.warming.version, listener: r.resource, last_updated: st.warming.lastUpdated } } : {}),
          ...(r.error_state
            ? { error_state: r.error_state }
            : st?.error
              ? { error_state: { details: st.error.details, last_update_attempt: st.error.lastUpdateAttempt, version_info: st.error.version } }
              : {}),
          client_status: r.client_status,
        };
      }),
    },
    {
      '@type': 'type.googleapis.com/envoy.admin.v3.RoutesConfigDump',
      dynamic_route_configs: ofType('.RouteConfiguration').map((r) => ({ version_info: r.version_info, route_config: r.resource, last_updated: r.last_updated, client_status: r.client_status, ...errorState(r) })),
    },
    {
      '@type': 'type.googleapis.com/envoy.admin.v3.SecretsConfigDump',
      static_secrets: (rawStatic.secrets ?? []).map((secret) => ({ name: (secret as { name?: unknown }).name, last_updated: lastUpdated, secret })),
      dynamic_active_secrets: ofType('.Secret').map((r) => ({ name: r.name, version_info: r.version_info, last_updated: r.last_updated, secret: r.resource, client_status: r.client_status, ...errorState(r) })),
    },
  ];
  if (opts.includeEds) {
    configs.push({
      '@type': 'type.googleapis.com/envoy.admin.v3.EndpointsConfigDump',
      dynamic_endpoint_configs: ofType('.ClusterLoadAssignment').map((r) => ({ version_info: r.version_info, endpoint_config: r.resource, last_updated: r.last_updated, client_status: r.client_status, ...errorState(r) })),
    });
  }
  if (snap) configs.push({ '@type': 'meshlet.admin.XdsStatus', connected: snap.connected, types: snap.types.map((t) => ({ type_url: t.type_url, version_info: t.version_info, last_updated: t.last_updated, ...(t.error_state ? { error_state: t.error_state } : {}) })) });
  const wanted = opts.resource;
  if (!wanted) return { configs };
  // Envoy's ?resource=<field>: the elements of that repeated field, each with its own @type.
  const out: unknown[] = [];
  for (const c of configs) {
    const list = c[wanted];
    if (!Array.isArray(list)) continue;
    const elementType = `${String(c['@type'])}.${RESOURCE_ELEMENT[wanted] ?? 'Resource'}`;
    for (const e of list) out.push({ '@type': elementType, ...(e as object) });
  }
  return { configs: out };
}

const RESOURCE_ELEMENT: Record<string, string> = {
  static_clusters: 'StaticCluster',
  dynamic_active_clusters: 'DynamicCluster',
  dynamic_warming_clusters: 'DynamicCluster',
  static_listeners: 'StaticListener',
  dynamic_listeners: 'DynamicListener',
  dynamic_route_configs: 'DynamicRouteConfig',
  static_secrets: 'StaticSecret',
  dynamic_active_secrets: 'DynamicSecret',
  dynamic_endpoint_configs: 'DynamicEndpointConfig',
};
