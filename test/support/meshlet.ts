/**
 * Start a real meshlet in-process from an Envoy-shaped bootstrap object (proto3 JSON, as a user
 * writes it in YAML), plus small builders for the shapes tests need. Listeners bind port 0 unless
 * a port is given; `listenerPort(name)` tells where one ended up.
 */
import { decodeBootstrap } from '../../proxy/config/bootstrap';
import { createRegistries } from '../../proxy/registry';
import { MeshletServer, type MeshletServerOptions } from '../../proxy/server';

const running: MeshletServer[] = [];

export interface StartedMeshlet {
  server: MeshletServer;
  listenerPort(name: string): number;
  adminPort: number;
  warnings: readonly { path: string; message: string }[];
}

export async function startMeshlet(
  raw: Record<string, unknown>,
  opts: Omit<MeshletServerOptions, 'bootstrap'> = {},
): Promise<StartedMeshlet> {
  const registries = opts.registries ?? createRegistries();
  const { bootstrap, warnings } = decodeBootstrap(raw, { httpFilters: registries.httpFilters });
  const server = new MeshletServer({ ...opts, bootstrap, rawBootstrap: raw, registries });
  await server.start();
  running.push(server);
  return {
    server,
    warnings,
    adminPort: server.admin.port,
    listenerPort: (name) => {
      const l = server.listeners.get(name);
      if (!l) throw new Error(`no listener ${name}`);
      return l.boundPort;
    },
  };
}

export async function stopAllMeshlets(): Promise<void> {
  await Promise.all(running.splice(0).map((s) => s.close()));
}

// ───────────── builders for Envoy-shaped config ─────────────

export const HCM_TYPE = 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager';
export const ROUTER_TYPE = 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router';
export const TCP_PROXY_TYPE = 'type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy';

export function socketAddress(port: number, address = '127.0.0.1'): Record<string, unknown> {
  return { socket_address: { address, port_value: port } };
}

/** An HTTP listener with one HCM whose route_config is given inline. */
export function httpListener(
  name: string,
  routeConfig: Record<string, unknown>,
  hcmExtra: Record<string, unknown> = {},
  port = 0,
): Record<string, unknown> {
  return {
    name,
    address: socketAddress(port),
    filter_chains: [
      {
        filters: [
          {
            name: 'envoy.filters.network.http_connection_manager',
            typed_config: {
              '@type': HCM_TYPE,
              stat_prefix: name,
              route_config: routeConfig,
              http_filters: [{ name: 'envoy.filters.http.router', typed_config: { '@type': ROUTER_TYPE } }],
              ...hcmExtra,
            },
          },
        ],
      },
    ],
  };
}

/**
 * An HTTP listener whose HCM runs one filter before the router (the shape every filter test needs).
 * `chainExtra` is merged into the filter chain (e.g. a transport_socket).
 */
export function filterListener(
  name: string,
  filter: { name: string; type: string; config: Record<string, unknown> },
  routeList: Record<string, unknown>[],
  chainExtra: Record<string, unknown> = {},
): Record<string, unknown> {
  const l = httpListener(name, routes(routeList), {
    http_filters: [
      { name: filter.name, typed_config: { '@type': filter.type, ...filter.config } },
      { name: 'envoy.filters.http.router', typed_config: { '@type': ROUTER_TYPE } },
    ],
  });
  const chains = l.filter_chains as Record<string, unknown>[];
  chains[0] = { ...chainExtra, ...chains[0] };
  return l;
}

/** A route_config with one catch-all virtual host. */
export function routes(routeList: Record<string, unknown>[], vhostExtra: Record<string, unknown> = {}): Record<string, unknown> {
  return { name: 'local_route', virtual_hosts: [{ name: 'all', domains: ['*'], routes: routeList, ...vhostExtra }] };
}

export function tcpListener(name: string, cluster: string, extra: Record<string, unknown> = {}, port = 0): Record<string, unknown> {
  return {
    name,
    address: socketAddress(port),
    filter_chains: [
      { filters: [{ name: 'envoy.filters.network.tcp_proxy', typed_config: { '@type': TCP_PROXY_TYPE, stat_prefix: name, cluster, ...extra } }] },
    ],
  };
}

/** A STATIC cluster over 127.0.0.1 ports. Each endpoint may be a port or {port, weight, priority}. */
export function staticCluster(
  name: string,
  endpoints: (number | { port: number; weight?: number; priority?: number })[],
  extra: Record<string, unknown> = {},
): Record<string, unknown> {
  const byPriority = new Map<number, Record<string, unknown>[]>();
  for (const e of endpoints) {
    const ep = typeof e === 'number' ? { port: e } : e;
    const list = byPriority.get(ep.priority ?? 0) ?? [];
    list.push({ endpoint: { address: socketAddress(ep.port) }, ...(ep.weight ? { load_balancing_weight: ep.weight } : {}) });
    byPriority.set(ep.priority ?? 0, list);
  }
  return {
    name,
    type: 'STATIC',
    connect_timeout: '1s',
    load_assignment: {
      cluster_name: name,
      endpoints: [...byPriority].map(([priority, lb_endpoints]) => ({ priority, lb_endpoints })),
    },
    ...extra,
  };
}

export function bootstrap(
  listeners: Record<string, unknown>[],
  clusters: Record<string, unknown>[],
  extra: Record<string, unknown> = {},
): Record<string, unknown> {
  return {
    node: { id: 'test-node', cluster: 'test' },
    admin: { address: socketAddress(0) },
    static_resources: { listeners, clusters },
    ...extra,
  };
}
