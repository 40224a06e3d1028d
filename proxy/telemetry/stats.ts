/**
 * Envoy-style stats read at scrape time from the counters each component already keeps
 * (ClusterStats, ListenerStats, the xDS client's per-type counters, process facts): the same
 * values under Envoy's dotted names for admin `/stats`, and as Prometheus families
 * (`envoy_cluster_upstream_rq_total{envoy_cluster_name=…}`, …) for `/stats/prometheus`.
 *
 * Leans on pull: nothing here runs per request. `POST /reset_counters` does not touch the
 * components; it records a baseline and counters are reported relative to it (Envoy resets
 * counters to zero, gauges are untouched), so component logic that reads its own counters keeps
 * working.
 *
 * Knows no component: the composition (proxy/server.ts) registers one StatsSource per component
 * with `addSource`, built by the factories below from what that component exposes.
 */
import { SSL_COUNTERS } from '../upstream/ssl-stats';
import type { RbacStats } from '../authz/engine';
import type { ProtocolDetectionStats } from '../detect/stats';
import type { CorsStats } from '../http/filters/cors';
import type { CsrfStats } from '../http/filters/csrf';
import type { FaultStats } from '../http/filters/fault';
import type { GrpcMethodStats } from '../http/filters/grpc-stats';
import type { GatewayCounter } from '../http/filters/gateway-stats';
import type { LocalRateLimitStats } from '../http/filters/local-ratelimit';
import type { Listener } from '../listeners/listener';
import type { XdsStats } from '../../xds-client/client';
import { endTableSnapshot, newTableSnapshot, type StatsTable, TableSnapshotWriter, type TableWriter, type TableSnapshot } from './stats-table';

/** One stat in Envoy's model. */
export interface StatEntry {
  /** Envoy's dotted name, e.g. cluster.backend.upstream_rq_total. */
  readonly name: string;
  readonly type: 'counter' | 'gauge';
  readonly value: number;
  /** For per-cluster / per-listener stats: the family, the owner's tag value, the stat. */
  readonly scope?: 'cluster' | 'listener';
  readonly tag?: string;
  readonly stat?: string;
}

/** xDS type URL suffix → Envoy's stat prefix for that subscription. */
export const XDS_PREFIX: Readonly<Record<string, string>> = {
  Listener: 'listener_manager.lds',
  Cluster: 'cluster_manager.cds',
  RouteConfiguration: 'http.rds',
  ClusterLoadAssignment: 'cluster_manager.eds',
  Secret: 'sds',
};

export const LISTENER_COUNTERS = [
  ['downstream_cx_total', 'downstreamCxTotal'],
  ['downstream_cx_destroy', 'downstreamCxDestroy'],
  ['no_filter_chain_match', 'noFilterChainMatch'],
  ['downstream_cx_overflow', 'downstreamCxOverflow'],
  ['downstream_pre_cx_timeout', 'downstreamPreCxTimeout'],
] as const;

/** Where a StatsSource writes: counters (raw, rebased on reset) and gauges, under Envoy's names. */
export interface StatsSink {
  counter(name: string, raw: number, scope?: 'cluster' | 'listener', tag?: string, stat?: string): void;
  gauge(name: string, value: number, scope?: 'cluster' | 'listener', tag?: string, stat?: string): void;
  /**
   * A table of per-owner stats (one row per cluster): the source writes whole rows, the sink
   * builds the Envoy names only where they are needed (/stats, a counter reset), not for every
   * stat of 10,000 clusters on every scrape.
   */
  table(table: StatsTable): TableWriter;
}

/**
 * One component's stats, read at scrape time (never per request). A source with many entries
 * (one per cluster) returns an iterator that writes a batch per step, so a Prometheus scrape can
 * give the event loop a turn between batches; `collect()` simply runs it to the end.
 */
export type StatsSource = (sink: StatsSink) => Iterator<unknown> | void;

export class EnvoyStats {
  /** Counter values at the last reset, by Envoy name. */
  private baseline = new Map<string, number>();
  /**
   * The same counters at the last reset for the tables' rows, by table id and row tag (one Map
   * lookup per row per scrape; a lookup by Envoy name per cell was ~180 ms a scrape at 10,000
   * clusters after a reset).
   */
  private rowBaselines = new Map<string, ReadonlyMap<string, Float64Array>>();
  private readonly sources: StatsSource[] = [];
  /** Group keys `scope|stat`, built once (a fresh string per stat per cluster was scrape garbage). */
  private readonly groupKeys = new Map<string, Map<string, string>>();

  private groupKey(scope: string, stat: string): string {
    let m = this.groupKeys.get(scope);
    if (m === undefined) {
      m = new Map();
      this.groupKeys.set(scope, m);
    }
    let k = m.get(stat);
    if (k === undefined) {
      k = `${scope}|${stat}`;
      m.set(stat, k);
    }
    return k;
  }

  /** Register a component's stats (called by the composition, once per component). */
  addSource(source: StatsSource): void {
    this.sources.push(source);
  }

  /** Every stat now, counters relative to the last reset. Sorted by name. */
  collect(): StatEntry[] {
    return this.entries();
  }

  /** collect(), also handing every table row to `onRow` (resetCounters keeps them). */
  private entries(onRow?: (table: StatsTable, tag: string, row: Float64Array) => void): StatEntry[] {
    const out: StatEntry[] = [];
    const sink: StatsSink = {
      counter: (name, raw, scope, tag, stat) => {
        out.push({ name, type: 'counter', value: Math.max(0, raw - (this.baseline.get(name) ?? 0)), scope, tag, stat });
      },
      gauge: (name, value, scope, tag, stat) => {
        out.push({ name, type: 'gauge', value, scope, tag, stat });
      },
      table: (t) => ({
        row: (tag, row) => {
          onRow?.(t, tag, row);
          const prefix = `${t.scope}.${tag}.`;
          for (let j = 0; j < t.stats.length; j++) {
            const stat = t.stats[j]!;
            if (j < t.counters) sink.counter(prefix + stat, row[j]!, t.scope, tag, stat);
            else sink.gauge(prefix + stat, row[j]!, t.scope, tag, stat);
          }
        },
      }),
    };
    for (const source of this.sources) {
      const it = source(sink);
      if (it !== undefined) while (it.next().done !== true);
    }
    out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    return out;
  }

  /** Envoy's /stats text format: `name: value` per line (?filter=regex, ?usedonly). */
  text(filter?: RegExp, usedOnly = false): string {
    const lines: string[] = [];
    for (const e of this.collect()) {
      if (filter && !filter.test(e.name)) continue;
      if (usedOnly && e.value === 0) continue;
      lines.push(`${e.name}: ${e.value}`);
    }
    return lines.join('\n');
  }

  /** Envoy's /stats?format=json shape. */
  json(filter?: RegExp): { stats: { name: string; value: number }[] } {
    return {
      stats: this.collect()
        .filter((e) => !filter || filter.test(e.name))
        .map((e) => ({ name: e.name, value: e.value })),
    };
  }

  /** POST /reset_counters: counters read from now on start at zero. */
  resetCounters(): void {
    this.baseline = new Map();
    this.rowBaselines = new Map();
    const raw = new Map<string, number>();
    const rows = new Map<string, Map<string, Float64Array>>();
    const keepRow = (t: StatsTable, tag: string, row: Float64Array): void => {
      let m = rows.get(t.id);
      if (m === undefined) {
        m = new Map();
        rows.set(t.id, m);
      }
      // What the entry's value is with no baseline: max(0, raw), counters only.
      const b = new Float64Array(t.counters);
      for (let j = 0; j < t.counters; j++) b[j] = Math.max(0, row[j]!);
      m.set(tag, b);
    };
    for (const e of this.entries(keepRow)) if (e.type === 'counter') raw.set(e.name, e.value);
    this.baseline = raw;
    this.rowBaselines = rows;
  }

  /**
   * One scrape's values for the Prometheus families, gathered in steps (a source that returns an
   * iterator yields between batches): drive the returned iterator, then read `snap`.
   *
   * `snap` is meant to be recycled from scrape to scrape: its group arrays are overwritten in
   * place and only truncated at the end, so after the first scrapes they live in V8's old
   * generation and a scrape at 10,000 clusters does not hand ~4 MB of fresh, surviving arrays to
   * every young-generation GC (those copies were the 20–50 ms pauses left, bench/SCRAPE.md).
   */
  *snapshot(snap: StatsSnapshot): Generator<void> {
    const baseline = this.baseline;
    const rebase = baseline.size > 0;
    for (const g of snap.groups.values()) g.n = 0;
    for (const t of snap.tables.values()) t.n = 0;
    const putGroup = (key: string, tag: string, value: number): void => {
      let g = snap.groups.get(key);
      if (g === undefined) {
        g = { tags: [], values: [], n: 0 };
        snap.groups.set(key, g);
      }
      const i = g.n++;
      if (i < g.tags.length) {
        g.tags[i] = tag;
        g.values[i] = value;
      } else {
        g.tags.push(tag);
        g.values.push(value);
      }
    };
    const put = (name: string, value: number, scope: string | undefined, tag: string | undefined, stat: string | undefined): void => {
      if (stat === undefined || tag === undefined) snap.byName.set(name, value);
      else putGroup(scope === undefined ? stat : this.groupKey(scope, stat), tag, value);
    };
    const sink: StatsSink = {
      counter: (name, raw, scope, tag, stat) => {
        put(name, rebase ? Math.max(0, raw - (baseline.get(name) ?? 0)) : raw, scope, tag, stat);
      },
      gauge: (name, value, scope, tag, stat) => put(name, value, scope, tag, stat),
      table: (t) => {
        let ts = snap.tables.get(t.id);
        if (ts === undefined) {
          ts = newTableSnapshot(t);
          snap.tables.set(t.id, ts);
        }
        return new TableSnapshotWriter(ts, t, rebase ? (this.rowBaselines.get(t.id) ?? NO_ROWS) : undefined);
      },
    };
    for (const source of this.sources) {
      const it = source(sink);
      if (it !== undefined) while (it.next().done !== true) yield;
      yield;
    }
    for (const g of snap.groups.values()) {
      if (g.tags.length !== g.n) {
        g.tags.length = g.n;
        g.values.length = g.n;
      }
    }
    for (const t of snap.tables.values()) endTableSnapshot(t);
  }
}

/**
 * What one scrape read: stats with a family tag grouped by `scope|stat` (or stat), the rest by
 * name. `n` is the entries written by the scrape in progress (tags/values are cut to it at the end).
 */
export interface StatsSnapshot {
  readonly groups: Map<string, { tags: string[]; values: number[]; n: number }>;
  readonly byName: Map<string, number>;
  /** Per-owner tables (stats-table.ts) by StatsTable id. */
  readonly tables: Map<string, TableSnapshot>;
}

/** listener.<address>.*, listener_manager.total_listeners_active and server.total_connections. */
export function listenerStatsSource(listeners: { all(): readonly Listener[]; readonly activeConnections: number }): StatsSource {
  return ({ counter, gauge }) => {
    const all = listeners.all();
    for (const l of all) {
      const st = l.stats;
      const a = listenerStatName(l.config.address, l.boundPort);
      const p = `listener.${a}.`;
      for (const [stat, k] of LISTENER_COUNTERS) counter(p + stat, st[k], 'listener', a, stat);
      if (l.hasTls) for (const [stat, k] of SSL_COUNTERS) counter(p + stat, l.ssl[k], 'listener', a, stat);
      gauge(`${p}downstream_cx_active`, l.activeConnections, 'listener', a, 'downstream_cx_active');
    }
    gauge('server.total_connections', listeners.activeConnections);
    gauge('listener_manager.total_listeners_active', all.length);
  };
}

/** control_plane.connected_state and the per-type update counters (`read` is undefined without xDS). */
export function xdsStatsSource(read: () => XdsStats | undefined): StatsSource {
  return ({ counter, gauge }) => {
    const xds = read();
    gauge('control_plane.connected_state', xds?.connected ? 1 : 0);
    if (!xds) return;
    const byPrefix = new Map<string, { attempt: number; success: number; rejected: number }>();
    for (const [typeUrl, t] of Object.entries(xds.types)) {
      const prefix = XDS_PREFIX[typeUrl.slice(typeUrl.lastIndexOf('.') + 1)];
      if (!prefix) continue;
      const acc = byPrefix.get(prefix) ?? { attempt: 0, success: 0, rejected: 0 };
      acc.attempt += t.updateAttempt;
      acc.success += t.updateSuccess;
      acc.rejected += t.updateRejected;
      byPrefix.set(prefix, acc);
    }
    for (const [prefix, v] of byPrefix) {
      counter(`${prefix}.update_attempt`, v.attempt);
      counter(`${prefix}.update_success`, v.success);
      counter(`${prefix}.update_rejected`, v.rejected);
    }
  };
}

/** server.uptime, memory, state and live. */
export function serverStatsSource(server: { readonly startedAt: number; readonly state: string }): StatsSource {
  return ({ gauge }) => {
    const mem = process.memoryUsage();
    gauge('server.uptime', Math.floor((Date.now() - server.startedAt) / 1000));
    gauge('server.memory_allocated', mem.heapUsed);
    gauge('server.memory_heap_size', mem.heapTotal);
    gauge('server.memory_physical_size', mem.rss);
    gauge('server.state', SERVER_STATE[server.state] ?? 0);
    gauge('server.live', server.state === 'LIVE' ? 1 : 0);
  };
}

/** The counters HTTP and network filters keep, under Envoy's stat names. */
export interface FilterStatsReaders {
  readonly rbac: () => Iterable<RbacStats>;
  readonly localRateLimit: () => Iterable<LocalRateLimitStats>;
  readonly fault: FaultStats;
  /** ext_authz, ratelimit, jwt_authn, cache, TypeScript filters. */
  readonly gateway: () => Iterable<GatewayCounter>;
  readonly cors: () => Iterable<CorsStats>;
  readonly grpc: () => Iterable<GrpcMethodStats>;
  readonly csrf: () => Iterable<CsrfStats>;
}

export function filterStatsSource(f: FilterStatsReaders): StatsSource {
  return ({ counter, gauge }) => {
    // Filters share a counter when Envoy would (the same rules or shadow_rules stat prefix).
    const rbac = new Map<string, number>();
    const add = (kind: string, name: string, decision: string, n: number): void => {
      const k = `${kind}|${name}|${decision}`;
      rbac.set(k, (rbac.get(k) ?? 0) + n);
    };
    for (const r of f.rbac()) {
      add(r.kind, r.name, 'allowed', r.allowed);
      add(r.kind, r.name, 'denied', r.denied);
      add(r.kind, r.shadowName, 'shadow_allowed', r.shadowAllowed);
      add(r.kind, r.shadowName, 'shadow_denied', r.shadowDenied);
    }
    for (const [k, n] of rbac) {
      const [, name, decision] = k.split('|');
      counter(`${name!}${decision!}`, n, undefined, k, 'rbac');
    }
    for (const l of f.localRateLimit()) {
      const p = `${l.statPrefix}.http_local_rate_limit.`;
      counter(`${p}enabled`, l.enabled);
      counter(`${p}enforced`, l.enforced);
      counter(`${p}rate_limited`, l.rateLimited, undefined, l.statPrefix, 'local_rate_limited');
      counter(`${p}ok`, l.ok);
    }
    counter('fault.delays_injected', f.fault.delaysInjected);
    counter('fault.aborts_injected', f.fault.abortsInjected);
    counter('fault.faults_overflow', f.fault.faultsOverflow);
    gauge('fault.active_faults', f.fault.activeFaults);
    for (const g of f.gateway()) counter(g.name, g.value, undefined, g.name, 'gateway_filter');
    for (const c of f.cors()) {
      counter(`http.${c.statPrefix}.cors.origin_valid`, c.originValid, undefined, c.statPrefix, 'cors_origin_valid');
      counter(`http.${c.statPrefix}.cors.origin_invalid`, c.originInvalid, undefined, c.statPrefix, 'cors_origin_invalid');
    }
    for (const c of f.csrf()) {
      const p = `http.${c.statPrefix}.csrf.`;
      counter(`${p}missing_source_origin`, c.missingSourceOrigin, undefined, c.statPrefix, 'csrf_missing_source_origin');
      counter(`${p}request_invalid`, c.requestInvalid, undefined, c.statPrefix, 'csrf_request_invalid');
      counter(`${p}request_valid`, c.requestValid, undefined, c.statPrefix, 'csrf_request_valid');
    }
    for (const g of f.grpc()) {
      // cluster.<c>.grpc[.<service>.<method>].<stat>; the tag carries the three labels.
      const p = g.service === '' ? `cluster.${g.cluster}.grpc.` : `cluster.${g.cluster}.grpc.${g.service}.${g.method}.`;
      const tag = `${g.cluster}\u0000${g.service}\u0000${g.method}`;
      counter(`${p}success`, g.success, undefined, tag, 'grpc_success');
      counter(`${p}failure`, g.failure, undefined, tag, 'grpc_failure');
      counter(`${p}total`, g.total, undefined, tag, 'grpc_total');
      counter(`${p}request_message_count`, g.requestMessageCount, undefined, tag, 'grpc_request_message_count');
      counter(`${p}response_message_count`, g.responseMessageCount, undefined, tag, 'grpc_response_message_count');
      for (const [status, n] of g.byStatus) counter(p + status, n);
    }
  };
}

/** connection_limit.<stat_prefix>.limited_connections and .active_connections (Envoy's names). */
export function connectionLimitStatsSource(
  read: () => Iterable<{ readonly statPrefix: string; readonly limitedConnections: number; readonly activeConnections: number }>,
): StatsSource {
  return ({ counter, gauge }) => {
    for (const s of read()) {
      const p = `connection_limit.${s.statPrefix}.`;
      counter(`${p}limited_connections`, s.limitedConnections, undefined, s.statPrefix, 'connection_limit_limited');
      gauge(`${p}active_connections`, s.activeConnections, undefined, s.statPrefix, 'connection_limit_active');
    }
  };
}

/** Protocol detection (meshlet's own; Envoy has no standard name): outcomes and time spent. */
export function protocolDetectionStatsSource(pd: ProtocolDetectionStats): StatsSource {
  return ({ counter }) => {
    for (const [outcome, n] of Object.entries(pd.outcomes))
      counter(`protocol_detection.${outcome}`, n, undefined, outcome, 'protocol_detection');
    counter('protocol_detection.duration_ms_count', pd.count);
    counter('protocol_detection.duration_ms_sum', Math.round(pd.sumMs));
  };
}

const NO_ROWS: ReadonlyMap<string, Float64Array> = new Map();

/** Envoy's server.state gauge values. */
const SERVER_STATE: Readonly<Record<string, number>> = { LIVE: 0, DRAINING: 1, PRE_INITIALIZING: 2, INITIALIZING: 3 };

/** Envoy's listener stat name: the bound address ("127.0.0.1_15001"), or the pipe path. */
function listenerStatName(
  a: { kind: 'socket'; host: string; port: number } | { kind: 'pipe'; path: string },
  bound: number,
): string {
  return a.kind === 'pipe' ? a.path : `${a.host}_${bound || a.port}`;
}
