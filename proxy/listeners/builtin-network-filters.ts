/**
 * meshlet's network filters as NetworkFilterFactory strategies (registered in proxy/registry.ts):
 * envoy.filters.network.http_connection_manager and tcp_proxy (terminal), rbac and
 * connection_limit (connection gates), ext_authz (holds connections in front of the terminal).
 */
import type { Socket } from 'node:net';
import { HttpConnectionManager } from '../http/connection-manager';
import { TcpProxy } from '../tcp/tcp-proxy';
import { type ConnectionLimitStats, connectionLimitStatsFor } from './connection-limit-stats';
import type { NetworkFilter } from './listener';
import type { NetworkFilterFactory } from './network-filter';
import { NetworkExtAuthzHandler } from './network-ext-authz';
import { NetworkRbacFilter } from './network-rbac';

/** envoy.filters.network.connection_limit: at most `max` connections of this chain at once. */
export class ConnectionLimitFilter implements NetworkFilter {
  private active = 0;
  denied = 0;
  constructor(
    private readonly max: number,
    private readonly stats?: ConnectionLimitStats,
  ) {}
  onNewConnection(socket: Socket): boolean {
    const stats = this.stats;
    if (this.active >= this.max) {
      this.denied++;
      if (stats !== undefined) stats.limitedConnections++;
      return false;
    }
    this.active++;
    if (stats !== undefined) stats.activeConnections++;
    socket.once('close', () => {
      this.active--;
      if (stats !== undefined) stats.activeConnections--;
    });
    return true;
  }
}

export const httpConnectionManagerFactory: NetworkFilterFactory<'http_connection_manager'> = {
  kind: 'http_connection_manager',
  build(f, parts, ctx) {
    const src = f.hcm.routeSource;
    const routes =
      src.kind === 'static' ? constant(src.config) : () => ctx.routeTable(src.routeConfigName);
    const t = ctx.forHcm(f.hcm, ctx.listener);
    parts.handler = new HttpConnectionManager({
      config: f.hcm,
      routes,
      filters: ctx.httpFilters,
      clusters: ctx.clusters,
      ...(ctx.runtime ? { runtime: ctx.runtime } : {}),
      ...(ctx.node ? { localNode: ctx.node } : {}),
      onStreamComplete: t.onStreamComplete,
      ...(t.tracer ? { tracer: t.tracer } : {}),
    });
  },
};

export const tcpProxyFactory: NetworkFilterFactory<'tcp_proxy'> = {
  kind: 'tcp_proxy',
  build(f, parts, ctx) {
    parts.handler = new TcpProxy(f.tcp, { clusters: ctx.clusters, ...ctx.forTcp(f.tcp, ctx.listener, parts.istioStats) });
  },
};

export const networkRbacFactory: NetworkFilterFactory<'rbac'> = {
  kind: 'rbac',
  build(f, parts) {
    parts.filters.push(new NetworkRbacFilter(f.rbac, f.name));
  },
};

export const connectionLimitFactory: NetworkFilterFactory<'connection_limit'> = {
  kind: 'connection_limit',
  build(f, parts) {
    parts.filters.push(new ConnectionLimitFilter(f.maxConnections, connectionLimitStatsFor(f.statPrefix)));
  },
};

export const networkExtAuthzFactory: NetworkFilterFactory<'ext_authz'> = {
  kind: 'ext_authz',
  build(f, parts, ctx) {
    // Asynchronous: it holds each connection in front of the terminal filter.
    parts.wrappers.push((inner) => new NetworkExtAuthzHandler(f.extAuthz, inner, ctx.clusters));
  },
};

function constant<T>(v: T): () => T {
  return () => v;
}
