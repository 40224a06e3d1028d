/**
 * The Envoy-style stats as Prometheus families (`envoy_cluster_upstream_rq_total{envoy_cluster_name=…}`,
 * listener, xDS, server, filter counters), rendered straight to exposition text from one
 * StatsSnapshot per scrape (recycled and refilled in place).
 *
 * Why not prom-client Counter/Gauge with collect callbacks (as before): each family re-scanned
 * every stat and re-created a label child per series on every scrape, which held the event loop
 * for 1–1.8 s at 1,000 clusters and 16 s at 10,000 (issue 18.2). Here the snapshot is gathered in
 * steps (stats sources yield between batches of clusters), each family writes its lines in steps,
 * label strings are built once per cluster/listener name and kept, and concurrent scrapes share
 * one rendering. bench/scrape.mjs measures it; bench/SCRAPE.md has the figures.
 */
import { SSL_COUNTERS } from '../upstream/ssl-stats';
import type { Metric, MetricObjectWithValues, MetricValue, Registry } from 'prom-client';
import { type ChunkWriter, drive, escapeHelp, escapeLabelValue, formatValue, type ScrapeScope, type SteppedFamily } from './exposition';
import { LineCache } from './line-cache';
import { CLUSTER_CLASSES, CLUSTER_COUNTERS, CLUSTER_SSL_TABLE, CLUSTER_TABLE } from './cluster-stats';
import { type EnvoyStats, LISTENER_COUNTERS, type StatsSnapshot, XDS_PREFIX } from './stats';
import { columnOf, type StatsTable } from './stats-table';

/** Series lines between pauses while rendering one family. */
const LINES_PER_STEP = 256;

/** One series source of a family: label string (with braces, or '') and value, in steps. */
type SeriesFn = (snap: StatsSnapshot, emit: (labels: string, value: number) => void) => Iterator<unknown> | void;

/** Memoised `{name="value"}` strings for one label name (bounded: rebuilt when it outgrows use). */
class LabelCache {
  private readonly map = new Map<string, string>();

  constructor(private readonly labelName: string) {}

  get(value: string): string {
    let s = this.map.get(value);
    if (s === undefined) {
      if (this.map.size > 50_000) this.map.clear();
      s = `{${this.labelName}="${escapeLabelValue(value)}"}`;
      this.map.set(value, s);
    }
    return s;
  }
}

/** Memoised label sets `{envoy_cluster_name="…",envoy_response_code_class="2"}` (one per class) by cluster name. */
class ClassLabelCache {
  private readonly map = new Map<string, string[]>();

  constructor(private readonly classes: readonly string[]) {}

  get(cluster: string): string[] {
    let s = this.map.get(cluster);
    if (s === undefined) {
      if (this.map.size > 50_000) this.map.clear();
      const tag = `envoy_cluster_name="${escapeLabelValue(cluster)}"`;
      s = this.classes.map((c) => `{${tag},envoy_response_code_class="${c}"}`);
      this.map.set(cluster, s);
    }
    return s;
  }
}

/** A family rendered from the current scrape's snapshot; registered in prom-client's registry for its order. */
class SnapshotFamily implements SteppedFamily {
  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: 'counter' | 'gauge',
    protected readonly current: (scope?: ScrapeScope) => StatsSnapshot,
    private readonly series: SeriesFn,
  ) {
    this.cache = new LineCache(name);
  }

  /** Rendered lines kept between scrapes (line-cache.ts); used by one rendering at a time. */
  readonly cache: LineCache;

  *render(out: ChunkWriter, scope: ScrapeScope): Generator<void> {
    out.write(`# HELP ${this.name} ${escapeHelp(this.help)}\n# TYPE ${this.name} ${this.type}`);
    const name = this.name;
    let n = 0;
    let pause = false;
    // A scrape running beside another renders this family without the cache (rare: its state
    // is one rendering's).
    const cache = this.cache.busy ? undefined : this.cache;
    const emit =
      cache !== undefined
        ? (labels: string, value: number): void => {
            cache.emit(labels, value);
            if (++n % LINES_PER_STEP === 0) pause = true;
          }
        : (labels: string, value: number): void => {
            out.write(`\n${name}${labels} ${formatValue(value)}`);
            if (++n % LINES_PER_STEP === 0) pause = true;
          };
    // Before series(): a plain-function series emits right away.
    cache?.begin(out);
    let ended = false;
    try {
      const it = this.series(this.current(scope), emit);
      if (it !== undefined) {
        while (it.next().done !== true) {
          if (pause) {
            pause = false;
            yield;
          }
        }
      }
      cache?.end();
      ended = true;
    } finally {
      if (!ended) cache?.abort();
    }
  }

  /** prom-client's JSON shape (Registry#getMetricsAsJSON); not on the scrape path. */
  get(): Promise<MetricObjectWithValues<MetricValue<string>>> {
    const values: MetricValue<string>[] = [];
    // A block body: a series written as `(s, emit) => emit(…)` returns what emit returns.
    const it = this.series(this.current(), (labels, value) => {
      values.push({ value, labels: parseLabels(labels) });
    });
    if (it !== undefined) while (it.next().done !== true);
    return Promise.resolve({ name: this.name, help: this.help, type: this.type, values, aggregator: 'sum' } as unknown as MetricObjectWithValues<MetricValue<string>>);
  }

  reset(): void {
    // Values are read from the components at scrape time; reset_counters rebases them in EnvoyStats.
  }
}

/**
 * Columns of a table as a family's series: n rows, each one line per column; the label strings
 * are row-major (`labels[i * columns.length + c]` for row i, column c).
 */
interface ColumnSeries {
  readonly labels: readonly string[];
  readonly columns: readonly Float64Array[];
  readonly n: number;
}

/**
 * A family over columns of a per-cluster table: rendered a range of rows at a time
 * (LineCache.emitRows) rather than through a call per line, with label strings kept by row
 * (refreshed once per scrape, not looked up per line).
 */
class ColumnFamily extends SnapshotFamily {
  constructor(
    name: string,
    help: string,
    type: 'counter' | 'gauge',
    current: (scope?: ScrapeScope) => StatsSnapshot,
    private readonly column: (snap: StatsSnapshot) => ColumnSeries | undefined,
  ) {
    super(name, help, type, current, (snap, emit) => {
      const c = column(snap);
      if (c === undefined) return;
      const w = c.columns.length;
      for (let i = 0; i < c.n; i++) for (let k = 0; k < w; k++) emit(c.labels[i * w + k]!, c.columns[k]![i]!);
    });
  }

  override *render(out: ChunkWriter, scope: ScrapeScope): Generator<void> {
    out.write(`# HELP ${this.name} ${escapeHelp(this.help)}\n# TYPE ${this.name} ${this.type}`);
    const c = this.column(this.current(scope));
    if (c === undefined) return;
    const { labels, columns, n } = c;
    const w = columns.length;
    const rowsPerStep = Math.max(1, Math.floor(LINES_PER_STEP / w));
    const cache = this.cache.busy ? undefined : this.cache;
    if (cache === undefined) {
      // Beside another scrape: without the cache, as SnapshotFamily.
      for (let i = 0; i < n; i++) {
        for (let k = 0; k < w; k++) out.write(`\n${this.name}${labels[i * w + k]!} ${formatValue(columns[k]![i]!)}`);
        if ((i + 1) % rowsPerStep === 0) yield;
      }
      return;
    }
    cache.begin(out);
    let ended = false;
    try {
      for (let from = 0; from < n; from += rowsPerStep) {
        if (from > 0) yield;
        cache.emitRows(labels, columns, from, Math.min(n, from + rowsPerStep));
      }
      cache.end();
      ended = true;
    } finally {
      if (!ended) cache.abort();
    }
  }
}

function parseLabels(s: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of s.matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) out[m[1]!] = m[2]!.replace(/\\n/g, '\n').replace(/\\(.)/g, '$1');
  return out;
}

/** Sum series that share a label set (several filters or listeners may share a name). */
function summed(tags: readonly string[], values: readonly number[]): Map<string, number> {
  const m = new Map<string, number>();
  for (let i = 0; i < tags.length; i++) m.set(tags[i]!, (m.get(tags[i]!) ?? 0) + values[i]!);
  return m;
}

/** Prometheus name for a counter: Envoy's name with `_total` appended when missing. */
function promCounter(name: string): string {
  return name.endsWith('_total') ? name : `${name}_total`;
}

/**
 * Register the Envoy-style families in `registry` (in the order the exposition has always had)
 * and return what must run before each rendering: the snapshot, gathered in steps.
 */
export function registerEnvoyFamilies(stats: EnvoyStats, registry: Registry): (scope: ScrapeScope) => Promise<() => void> {
  // Each scrape renders from its own snapshot (in its scope). Snapshots are recycled: scrapes one
  // after another reuse the same object, refilled in place (see EnvoyStats.snapshot), so its
  // arrays stay in the old generation; a scrape running beside another takes a second one.
  const key = {};
  const spare: StatsSnapshot[] = [];
  let last: StatsSnapshot = { groups: new Map(), byName: new Map(), tables: new Map() };
  const current = (scope?: ScrapeScope): StatsSnapshot => (scope?.get(key) as StatsSnapshot | undefined) ?? last;
  const add = (name: string, help: string, type: 'counter' | 'gauge', series: SeriesFn): void => {
    registry.registerMetric(new SnapshotFamily(name, help, type, current, series) as unknown as Metric);
  };

  const clusterLabels = new LabelCache('envoy_cluster_name');
  const classes = ['2', '3', '4', '5'];
  const classLabels = new ClassLabelCache(classes);
  /**
   * The label strings of each row of the per-cluster tables (and, for CLUSTER_TABLE, its four
   * status-class label sets, row-major), kept per snapshot (so per concurrent scrape) and brought
   * up to date once the snapshot is gathered: every cluster family of the scrape reads the same
   * arrays, and only rows whose cluster changed since that snapshot's last scrape are looked up
   * again (at 10,000 clusters, one lookup per line was ~300,000 a scrape).
   */
  interface RowLabels {
    readonly tags: string[];
    readonly labels: string[];
    readonly classes: string[];
  }
  const rowLabels = new WeakMap<StatsSnapshot, Map<string, RowLabels>>();
  function* refreshRowLabels(snap: StatsSnapshot): Generator<void> {
    let bySnap = rowLabels.get(snap);
    if (bySnap === undefined) {
      bySnap = new Map();
      rowLabels.set(snap, bySnap);
    }
    for (const { id } of [CLUSTER_TABLE, CLUSTER_SSL_TABLE]) {
      const t = snap.tables.get(id);
      if (t === undefined) continue;
      let r = bySnap.get(id);
      if (r === undefined) {
        r = { tags: [], labels: [], classes: [] };
        bySnap.set(id, r);
      }
      const withClasses = id === CLUSTER_TABLE.id;
      for (let i = 0; i < t.n; i++) {
        const tag = t.tags[i]!;
        if (r.tags[i] !== tag) {
          r.tags[i] = tag;
          r.labels[i] = clusterLabels.get(tag);
          if (withClasses) {
            const ls = classLabels.get(tag);
            for (let c = 0; c < classes.length; c++) r.classes[i * classes.length + c] = ls[c]!;
          }
        }
        if ((i & 1023) === 1023) yield;
      }
      if (r.tags.length > t.n) {
        r.tags.length = t.n;
        r.labels.length = t.n;
        if (withClasses) r.classes.length = t.n * classes.length;
      }
    }
  }
  const columnFamily = (name: string, help: string, type: 'counter' | 'gauge', column: (s: StatsSnapshot) => ColumnSeries | undefined): void => {
    registry.registerMetric(new ColumnFamily(name, help, type, current, column) as unknown as Metric);
  };
  /** A family over one column of a per-cluster table: one series per row. */
  const clusterFamily = (table: StatsTable, stat: string, type: 'counter' | 'gauge', help: string): void => {
    const j = columnOf(table, stat);
    const name = `envoy_cluster_${stat.replace(/\./g, '_')}`;
    columnFamily(type === 'counter' ? promCounter(name) : name, help, type, (s) => {
      const t = s.tables.get(table.id);
      if (t === undefined) return undefined;
      const labels = rowLabels.get(s)?.get(table.id)?.labels ?? t.tags.slice(0, t.n).map((tag) => clusterLabels.get(tag));
      return { labels, columns: [t.columns[j]!], n: t.n };
    });
  };
  for (const [n] of CLUSTER_COUNTERS) clusterFamily(CLUSTER_TABLE, n, 'counter', `Envoy cluster.${n}`);
  for (const [n] of SSL_COUNTERS) clusterFamily(CLUSTER_SSL_TABLE, n, 'counter', `Envoy cluster.${n} (upstream TLS)`);
  clusterFamily(CLUSTER_TABLE, 'upstream_rq_active', 'gauge', 'Active requests to the cluster');
  clusterFamily(CLUSTER_TABLE, 'upstream_cx_active', 'gauge', 'Active connections to the cluster');
  clusterFamily(CLUSTER_TABLE, 'membership_healthy', 'gauge', 'Healthy hosts in the cluster');
  // cluster.<name>.membership_total stays in /stats only: a gauge named *_total breaks
  // Prometheus naming (promtool rejects it), and Istio dashboards read membership_healthy.
  const classColumns = CLUSTER_CLASSES.map(([stat]) => columnOf(CLUSTER_TABLE, stat));
  columnFamily('envoy_cluster_upstream_rq_xx_total', 'Upstream responses by status class', 'counter', (s) => {
    const t = s.tables.get(CLUSTER_TABLE.id);
    if (t === undefined) return undefined;
    const labels = rowLabels.get(s)?.get(CLUSTER_TABLE.id)?.classes ?? t.tags.slice(0, t.n).flatMap((tag) => classLabels.get(tag));
    return { labels, columns: classColumns.map((j) => t.columns[j]!), n: t.n };
  });

  const listenerLabels = new LabelCache('envoy_listener_address');
  const listenerFamily = (stat: string, type: 'counter' | 'gauge', help: string): void => {
    const key = `listener|${stat}`;
    const name = `envoy_listener_${stat.replace(/\./g, '_')}`;
    add(type === 'counter' ? promCounter(name) : name, help, type, (s, emit) => {
      const g = s.groups.get(key);
      if (g === undefined) return;
      for (const [tag, v] of summed(g.tags, g.values)) emit(listenerLabels.get(tag), v);
    });
  };
  for (const [n] of LISTENER_COUNTERS) listenerFamily(n, 'counter', `Envoy listener.${n}`);
  for (const [n] of SSL_COUNTERS) listenerFamily(n, 'counter', `Envoy listener.${n} (downstream TLS)`);
  listenerFamily('downstream_cx_active', 'gauge', 'Active downstream connections');

  const single = (stat: string, type: 'counter' | 'gauge', help: string, scale = 1, name?: string): void => {
    const n = name ?? `envoy_${stat.replace(/\./g, '_')}`;
    add(type === 'counter' ? promCounter(n) : n, help, type, (s, emit) => emit('', (s.byName.get(stat) ?? 0) * scale));
  };
  /** A family over one tagged group, label sets summed, labels from the tag. */
  const tagged = (name: string, help: string, key: string, labels: (tag: string) => string): void => {
    add(name, help, 'counter', (s, emit) => {
      const g = s.groups.get(key);
      if (g === undefined) return;
      for (const [tag, v] of summed(g.tags, g.values)) emit(labels(tag), v);
    });
  };

  single('control_plane.connected_state', 'gauge', '1 while the ADS stream to the control plane is up');
  for (const prefix of Object.values(XDS_PREFIX)) {
    single(`${prefix}.update_attempt`, 'counter', `xDS ${prefix} updates received`);
    single(`${prefix}.update_success`, 'counter', `xDS ${prefix} updates accepted`);
    single(`${prefix}.update_rejected`, 'counter', `xDS ${prefix} updates rejected (NACK)`);
  }
  tagged(
    'meshlet_protocol_detection_total',
    'Protocol detections by outcome (tls, h2, http1, opaque, timeout, closed, skipped)',
    'protocol_detection',
    (t) => `{outcome="${escapeLabelValue(t)}"}`,
  );
  tagged('meshlet_rbac_total', 'RBAC filter decisions (Envoy rbac.allowed/denied/shadow_*)', 'rbac', (t) => {
    const [kind, filter, decision] = t.split('|');
    return `{kind="${escapeLabelValue(kind!)}",filter="${escapeLabelValue(filter!.replace(/\.$/, ''))}",decision="${escapeLabelValue(decision!)}"}`;
  });
  tagged(
    'meshlet_gateway_filter_total',
    'Gateway filter counters by Envoy stat name (ext_authz, ratelimit, jwt_authn, cache, typescript_filter)',
    'gateway_filter',
    (t) => `{stat="${escapeLabelValue(t)}"}`,
  );
  tagged(
    'meshlet_local_rate_limited_total',
    'Requests answered 429 by the local rate limit filter',
    'local_rate_limited',
    (t) => `{stat_prefix="${escapeLabelValue(t)}"}`,
  );
  tagged(
    'envoy_connection_limit_limited_connections_total',
    'Connections refused by the connection_limit filter (Envoy connection_limit.<stat_prefix>.limited_connections)',
    'connection_limit_limited',
    (t) => `{stat_prefix="${escapeLabelValue(t)}"}`,
  );
  const hcmPrefix = (t: string): string => `{envoy_http_conn_manager_prefix="${escapeLabelValue(t)}"}`;
  tagged('envoy_http_cors_origin_valid_total', 'Requests with an allowed Origin (Envoy http.<stat_prefix>.cors.origin_valid)', 'cors_origin_valid', hcmPrefix);
  tagged('envoy_http_cors_origin_invalid_total', 'Requests with a disallowed Origin (Envoy http.<stat_prefix>.cors.origin_invalid)', 'cors_origin_invalid', hcmPrefix);
  for (const stat of ['missing_source_origin', 'request_invalid', 'request_valid'])
    tagged(`envoy_http_csrf_${stat}_total`, `CSRF filter: Envoy http.<stat_prefix>.csrf.${stat}`, `csrf_${stat}`, hcmPrefix);
  // grpc_stats: Envoy's tag extraction names the service and method labels envoy_grpc_bridge_*.
  const grpcLabels = (t: string): string => {
    const [cluster, service, method] = t.split('\u0000');
    const c = `envoy_cluster_name="${escapeLabelValue(cluster!)}"`;
    return service === ''
      ? `{${c}}`
      : `{${c},envoy_grpc_bridge_service="${escapeLabelValue(service!)}",envoy_grpc_bridge_method="${escapeLabelValue(method!)}"}`;
  };
  for (const stat of ['success', 'failure', 'total', 'request_message_count', 'response_message_count'])
    tagged(promCounter(`envoy_cluster_grpc_${stat}`), `gRPC calls per cluster (and method): Envoy cluster.<name>.grpc.[<service>.<method>.]${stat}`, `grpc_${stat}`, grpcLabels);
  // Detection time as a summary-style pair in base units (promtool rejects "ms" in names).
  single('protocol_detection.duration_ms_count', 'counter', 'Protocol detections that read bytes', 1, 'meshlet_protocol_detection_reads_total');
  single('protocol_detection.duration_ms_sum', 'counter', 'Seconds spent waiting for the first bytes, summed', 1 / 1000, 'meshlet_protocol_detection_seconds_total');
  single('server.uptime', 'gauge', 'Seconds since the server started');
  single('server.memory_allocated', 'gauge', 'Heap bytes in use');
  single('server.memory_heap_size', 'gauge', 'Heap bytes reserved');
  single('server.memory_physical_size', 'gauge', 'Resident set size in bytes');
  single('server.state', 'gauge', 'Server state: 0 LIVE, 1 DRAINING, 2 PRE_INITIALIZING, 3 INITIALIZING (as Envoy)');
  single('server.live', 'gauge', '1 when the server is LIVE');
  single('server.total_connections', 'gauge', 'Active downstream connections across listeners');
  single('cluster_manager.active_clusters', 'gauge', 'Clusters in the cluster manager');
  single('listener_manager.total_listeners_active', 'gauge', 'Active listeners');

  // The snapshot every family above reads, gathered in steps before the registry renders.
  return async (scope) => {
    const snap = spare.pop() ?? { groups: new Map(), byName: new Map(), tables: new Map() };
    await drive(stats.snapshot(snap));
    await drive(refreshRowLabels(snap));
    scope.set(key, snap);
    last = snap;
    return () => {
      if (spare.length < 2) spare.push(snap);
    };
  };
}
