/**
 * Decoder for envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy: the opaque TCP terminal
 * filter (a cluster or weighted clusters, idle timeout, connect attempts, access logs).
 * Envoy defaults: idle_timeout 1 h, max_connect_attempts 1.
 */
import type { Reader } from '../../../common/reader';
import type { TcpProxyConfig } from '../types';
import { decodeAccessLogs } from './access-log';
import { checkClusterRef, type DecodeContext } from './context';
import { dur } from './core';

export const T_TCP_PROXY = 'envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy';

export function decodeTcpProxy(r: Reader, ctx: DecodeContext): TcpProxyConfig | undefined {
  const statPrefix = r.requiredStr('stat_prefix');
  const which = r.oneof(['cluster', 'weighted_clusters'] as const);
  let cluster: TcpProxyConfig['cluster'] | undefined;
  if (which === undefined) {
    r.issues.error(r.path, 'one of cluster, weighted_clusters must be set');
  } else if (which === 'cluster') {
    const name = r.requiredStr('cluster');
    checkClusterRef(ctx, (m) => r.error('cluster', m), name);
    if (name) cluster = { kind: 'cluster', name };
  } else {
    const w = r.obj(which);
    if (w) {
      const clusters: { name: string; weight: number }[] = [];
      const list = w.arr('clusters');
      if (list.length === 0) w.error('clusters', 'at least one cluster is required');
      for (const c of list) {
        const name = c.requiredStr('name');
        checkClusterRef(ctx, (m) => c.error('name', m), name);
        if (!c.has('weight')) c.error('weight', 'is required');
        const weight = c.int('weight', 1, 1, 0xffffffff);
        c.done();
        if (name) clusters.push({ name, weight });
      }
      w.done();
      if (clusters.length > 0 && clusters.length === list.length) {
        cluster = { kind: 'weighted', clusters, totalWeight: clusters.reduce((s, c) => s + c.weight, 0) };
      }
    }
  }
  const idleTimeoutMs = dur(r, 'idle_timeout', 3_600_000);
  const maxConnectAttempts = r.int('max_connect_attempts', 1, 1, 0xffffffff);
  const accessLog = decodeAccessLogs(r);
  if (r.has('tunneling_config'))
    r.error('tunneling_config', 'HBONE/CONNECT tunneling (ambient) is not supported: meshlet implements the sidecar data plane, not ambient');
  r.raw('tunneling_config');
  if (r.has('on_demand')) r.error('on_demand', 'is not supported by meshlet');
  r.raw('on_demand');
  r.done();
  if (!cluster || !statPrefix) return undefined;
  return { statPrefix, cluster, idleTimeoutMs, maxConnectAttempts, accessLog };
}
