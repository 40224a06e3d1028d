/**
 * Decoder of Istio's stats filter config, `stats.PluginConfig` — the `istio.stats` HTTP and
 * network filters istiod puts into every sidecar listener (natively, as a TypedStruct, or in older
 * Istio as a Wasm plugin whose JSON configuration has the same fields). The runtime side is
 * meshlet's Istio metrics (proxy/telemetry/istio.ts), which this config drives per connection
 * manager / TCP proxy: reporter side, the Host header fallback for destination_service, metric
 * and dimension overrides, and the TCP reporting interval.
 *
 * Istio's defaults: reporter from the listener direction, Host fallback on, TCP metrics reported
 * every 5 s on long connections.
 */
import type { Reader } from '../../../common/reader';
import { compileIstioExpr, type IstioExpr, SUPPORTED_EXPRESSIONS } from './istio-expr';

export const ISTIO_STATS_TYPE_NAME = 'stats.PluginConfig';

/** Istio's standard metrics, by the short names PluginConfig uses (the exported name adds `istio_`). */
export const ISTIO_METRICS = [
  'requests_total',
  'request_duration_milliseconds',
  'request_bytes',
  'response_bytes',
  'request_messages_total',
  'response_messages_total',
  'tcp_connections_opened_total',
  'tcp_connections_closed_total',
  'tcp_sent_bytes_total',
  'tcp_received_bytes_total',
] as const;
export type IstioMetricName = (typeof ISTIO_METRICS)[number];

/** Istio's dimensions shared by its HTTP and TCP metrics, in the order istio-proxy emits them. */
export const ISTIO_PEER_TAGS = [
  'reporter',
  'source_workload',
  'source_workload_namespace',
  'source_principal',
  'source_app',
  'source_version',
  'source_canonical_service',
  'source_canonical_revision',
  'source_cluster',
  'destination_workload',
  'destination_workload_namespace',
  'destination_principal',
  'destination_app',
  'destination_version',
  'destination_canonical_service',
  'destination_canonical_revision',
  'destination_cluster',
  'destination_service',
  'destination_service_name',
  'destination_service_namespace',
  'request_protocol',
  'response_flags',
  'connection_security_policy',
] as const;

/** Istio's standard dimensions (tags) of the HTTP metrics, in the order istio-proxy emits them. */
export const ISTIO_TAGS = [...ISTIO_PEER_TAGS, 'response_code', 'grpc_response_status'] as const;
const STANDARD_TAGS: ReadonlySet<string> = new Set(ISTIO_TAGS);
const STANDARD_METRICS: ReadonlySet<string> = new Set(ISTIO_METRICS);

/** The dimension changes of one metric, after every `metrics` entry was applied in order. */
export interface IstioMetricOverride {
  /** Standard tags not emitted. */
  readonly removed: ReadonlySet<string>;
  /** Standard tags whose value comes from an expression instead. */
  readonly replaced: ReadonlyMap<string, IstioExpr>;
  /** New tags appended after the standard ones (sorted by name within each entry, as Istio). */
  readonly added: readonly (readonly [string, IstioExpr])[];
}

export interface IstioStatsConfig {
  readonly kind: 'istio_stats';
  /** Do not use the Host header as destination_service when the cluster does not name one. */
  readonly disableHostHeaderFallback: boolean;
  /** How often a long TCP connection reports its bytes (Istio default 5 s; 0 = only at close). */
  readonly tcpReportingDurationMs: number;
  /** UNSPECIFIED = from the listener's direction (client or server sidecar). */
  readonly reporter: 'UNSPECIFIED' | 'SERVER_GATEWAY';
  /** Metrics not reported at all (`drop: true`). */
  readonly dropped: ReadonlySet<IstioMetricName>;
  /** Metrics whose dimensions differ from the standard set. */
  readonly overrides: ReadonlyMap<IstioMetricName, IstioMetricOverride>;
}

interface MutableOverride {
  removed: Set<string>;
  replaced: Map<string, IstioExpr>;
  added: Map<string, IstioExpr>;
}

/** Decode a PluginConfig in its JSON form (native typed_config, TypedStruct value, Wasm configuration). */
export function decodeIstioStats(r: Reader): IstioStatsConfig {
  const disableHostHeaderFallback = r.bool('disable_host_header_fallback', false);
  const tcpReportingDurationMs = r.durationMs('tcp_reporting_duration', 5000);
  if (tcpReportingDurationMs < 0) r.error('tcp_reporting_duration', 'must not be negative');
  const reporter = r.enumOf('reporter', ['UNSPECIFIED', 'SERVER_GATEWAY'] as const, 'UNSPECIFIED');
  const dropped = new Set<IstioMetricName>();
  const work = new Map<IstioMetricName, MutableOverride>();
  const of = (m: IstioMetricName): MutableOverride => {
    let o = work.get(m);
    if (!o) {
      o = { removed: new Set(), replaced: new Map(), added: new Map() };
      work.set(m, o);
    }
    return o;
  };
  for (const d of r.arr('definitions')) {
    // Custom metrics need Istio's CEL value expressions: not evaluated by meshlet.
    d.issues.warn(d.path, `custom metric ${JSON.stringify(d.str('name', ''))} is not supported by meshlet, ignored (standard metrics and dimension overrides are)`);
    d.ignore('value', 'type');
    d.done();
  }
  for (const m of r.arr('metrics')) {
    const name = m.str('name', '');
    if (name && !STANDARD_METRICS.has(name)) {
      m.issues.warn(m.sub('name'), `${JSON.stringify(name)} is not one of Istio's standard metrics (${ISTIO_METRICS.join(', ')}); this entry changes nothing`);
    }
    const targets: IstioMetricName[] = name ? (STANDARD_METRICS.has(name) ? [name as IstioMetricName] : []) : [...ISTIO_METRICS];
    if (m.has('match')) m.issues.warn(m.sub('match'), 'is not implemented by Istio either, ignored');
    m.ignore('match');
    if (m.bool('drop', false)) {
      // Istio applies drop only to a named metric and skips the rest of the entry.
      if (name) for (const t of targets) dropped.add(t);
      else m.issues.warn(m.sub('drop'), 'needs a metric name (Istio ignores drop without one)');
      m.ignore('tags_to_remove', 'dimensions');
      m.done();
      continue;
    }
    for (const [i, tag] of m.strList('tags_to_remove').entries()) {
      if (!STANDARD_TAGS.has(tag)) {
        m.issues.warn(`${m.sub('tags_to_remove')}[${i}]`, `${JSON.stringify(tag)} is not a standard tag, nothing removed`);
        continue;
      }
      for (const t of targets) {
        of(t).removed.add(tag);
        of(t).replaced.delete(tag);
      }
    }
    const dims = m.map('dimensions') ?? {};
    for (const tag of Object.keys(dims).sort()) {
      const text = dims[tag];
      const path = `${m.sub('dimensions')}.${tag}`;
      if (typeof text !== 'string') {
        m.issues.error(path, 'expected an expression string');
        continue;
      }
      if (!/^[a-zA-Z_][a-zA-Z0-9_]*$/.test(tag)) {
        m.issues.error(path, `${JSON.stringify(tag)} is not a valid Prometheus label name`);
        continue;
      }
      const expr = compileIstioExpr(text);
      if (expr.kind === 'unsupported') {
        m.issues.warn(path, `expression ${JSON.stringify(text)} is not supported by meshlet, the dimension reads "unknown" (supported: ${SUPPORTED_EXPRESSIONS})`);
      }
      for (const t of targets) {
        const o = of(t);
        if (STANDARD_TAGS.has(tag)) {
          o.replaced.set(tag, expr);
          o.removed.delete(tag);
        } else {
          o.added.delete(tag);
          o.added.set(tag, expr);
        }
      }
    }
    m.done();
  }
  if (['rotation_interval', 'graceful_deletion_interval', 'rescoping_duration', 'scope_grace_period_duration'].some((k) => r.has(k))) {
    r.issues.warn(r.path, 'rotation_interval / graceful_deletion_interval / rescoping_duration / scope_grace_period_duration: meshlet bounds label sets per reporter instead (meshlet_metric_label_overflow_total), ignored');
  }
  r.ignore('rotation_interval', 'graceful_deletion_interval', 'rescoping_duration', 'scope_grace_period_duration');
  r.done();
  const overrides = new Map<IstioMetricName, IstioMetricOverride>();
  for (const [m, o] of work) {
    if (o.removed.size === 0 && o.replaced.size === 0 && o.added.size === 0) continue;
    overrides.set(m, { removed: o.removed, replaced: o.replaced, added: [...o.added] });
  }
  return { kind: 'istio_stats', disableHostHeaderFallback, tcpReportingDurationMs, reporter, dropped, overrides };
}

/** Istio's defaults (what a sidecar without any stats config would report). */
export const DEFAULT_ISTIO_STATS: IstioStatsConfig = Object.freeze({
  kind: 'istio_stats',
  disableHostHeaderFallback: false,
  tcpReportingDurationMs: 5000,
  reporter: 'UNSPECIFIED',
  dropped: new Set<IstioMetricName>(),
  overrides: new Map<IstioMetricName, IstioMetricOverride>(),
}) as IstioStatsConfig;
