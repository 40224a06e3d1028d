/**
 * istio.stats metric overrides at run time: which metrics are dropped, and for the others the
 * final label set — standard tags minus `tags_to_remove`, replaced values and added dimensions
 * from the config's expressions (proxy/config/filters/istio-expr.ts), in istio-proxy's order
 * (standard tags in place, additions after them).
 *
 * Expressions are evaluated once per finished stream/session into a small array; the reporters
 * add the joined values to their label cache key only when some expression depends on the
 * stream (literals and node metadata are constant), so a config without per-request dimensions
 * costs nothing per request.
 */
import type { NodeInfo } from '../config/types';
import type { IstioExpr } from '../config/filters/istio-expr';
import type { IstioMetricName, IstioStatsConfig } from '../config/filters/istio-stats';
import { getHeader } from '../http/headers';
import type { StreamInfo } from '../http/stream-info';
import type { TcpSessionRecord } from '../tcp/tcp-proxy';

const UNKNOWN = 'unknown';

/** What an expression may read: an HTTP stream, or a TCP session (request attributes are unknown). */
export type ExprSubject = { readonly http: StreamInfo } | { readonly tcp: TcpSessionRecord };

type Slot = { readonly tag: string; readonly std: true } | { readonly tag: string; readonly std: false; readonly expr: number };

interface MetricPlan {
  /** Standard tags minus removed ones, in order, with replaced ones pointing at an expression. */
  readonly slots: readonly Slot[];
}

function constantExpr(e: IstioExpr): boolean {
  return e.kind === 'literal' || e.kind === 'node_metadata' || e.kind === 'unsupported';
}

export class IstioOverrides {
  /** Distinct expressions, evaluated in this order. */
  private readonly exprs: IstioExpr[] = [];
  private readonly plans = new Map<IstioMetricName, MetricPlan>();
  /** Whether some expression reads the stream (then its values join the label cache key). */
  readonly perStream: boolean;
  private readonly constants: string[] | undefined;

  constructor(
    private readonly cfg: IstioStatsConfig,
    private readonly node: NodeInfo,
    standardTags: readonly string[],
  ) {
    const index = new Map<IstioExpr, number>();
    const idOf = (e: IstioExpr): number => {
      let i = index.get(e);
      if (i === undefined) {
        i = this.exprs.length;
        this.exprs.push(e);
        index.set(e, i);
      }
      return i;
    };
    for (const [metric, o] of cfg.overrides) {
      const slots: Slot[] = [];
      for (const tag of standardTags) {
        if (o.removed.has(tag)) continue;
        const r = o.replaced.get(tag);
        slots.push(r === undefined ? { tag, std: true } : { tag, std: false, expr: idOf(r) });
      }
      for (const [tag, e] of o.added) slots.push({ tag, std: false, expr: idOf(e) });
      this.plans.set(metric, { slots });
    }
    this.perStream = this.exprs.some((e) => !constantExpr(e));
    this.constants = this.perStream ? undefined : this.exprs.map((e) => this.evalOne(e, undefined));
  }

  get hasPlans(): boolean {
    return this.plans.size > 0;
  }

  dropped(metric: IstioMetricName): boolean {
    return this.cfg.dropped.has(metric);
  }

  /** The expression values for one stream/session (shared constants when nothing reads it). */
  evaluate(subject: ExprSubject): string[] {
    if (this.constants !== undefined) return this.constants;
    const out = new Array<string>(this.exprs.length);
    for (let i = 0; i < this.exprs.length; i++) out[i] = this.evalOne(this.exprs[i]!, subject);
    return out;
  }

  /** The label set of `metric` from the standard labels and the expression values. */
  labels(metric: IstioMetricName, std: Readonly<Record<string, string>>, values: readonly string[]): Readonly<Record<string, string>> {
    const plan = this.plans.get(metric);
    if (plan === undefined) return std;
    const out: Record<string, string> = {};
    for (const s of plan.slots) out[s.tag] = s.std ? std[s.tag]! : values[s.expr]!;
    return out;
  }

  /** Whether `metric` keeps the standard label set (no plan). */
  standard(metric: IstioMetricName): boolean {
    return !this.plans.has(metric);
  }

  private evalOne(e: IstioExpr, subject: ExprSubject | undefined): string {
    switch (e.kind) {
      case 'literal':
        return e.value;
      case 'unsupported':
        return UNKNOWN;
      case 'node_metadata': {
        const v = this.node.metadata?.[e.key];
        return typeof v === 'string' ? v : v === undefined ? UNKNOWN : JSON.stringify(v);
      }
      case 'header': {
        if (subject === undefined || !('http' in subject)) return UNKNOWN;
        const h = subject.http.requestHeaders;
        return (h !== undefined ? getHeader(h, e.name) : undefined) ?? UNKNOWN;
      }
      case 'attr':
        return subject === undefined ? UNKNOWN : attr(e.name, subject);
    }
  }
}

function attr(name: Extract<IstioExpr, { kind: 'attr' }>['name'], subject: ExprSubject): string {
  if ('tcp' in subject) {
    const rec = subject.tcp;
    switch (name) {
      case 'xds.cluster_name':
        return rec.cluster || UNKNOWN;
      case 'destination.port':
        return String(rec.info.originalDst?.port ?? rec.info.localPort);
      case 'connection.mtls':
        return String(rec.info.tls?.peerPrincipal !== undefined);
      default:
        return UNKNOWN;
    }
  }
  const info = subject.http;
  switch (name) {
    case 'request.host':
      return info.authority || UNKNOWN;
    case 'request.method':
      return info.method || UNKNOWN;
    case 'request.protocol':
      return info.protocol;
    case 'request.useragent':
      return info.userAgent || UNKNOWN;
    case 'request.id':
      return info.requestId || UNKNOWN;
    case 'response.code':
      return String(info.responseCode);
    case 'xds.cluster_name':
      return info.clusterName || UNKNOWN;
    case 'xds.route_name':
      return info.routeName || UNKNOWN;
    case 'destination.port':
      return String(info.connection.originalDst?.port ?? info.connection.localPort);
    case 'connection.mtls':
      return String(info.connection.tls?.peerPrincipal !== undefined);
  }
}
