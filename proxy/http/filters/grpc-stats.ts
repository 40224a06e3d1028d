/**
 * The gRPC statistics filter, `envoy.extensions.filters.http.grpc_stats.v3.FilterConfig` (Envoy's
 * envoy.filters.http.grpc_stats; istiod puts it in every HCM): for each gRPC request
 * (content-type application/grpc[+…|;…]) whose route has a cluster, counters in that cluster's
 * scope, as Envoy's Grpc::Context charges them:
 *
 *   cluster.<cluster>.grpc[.<service>.<method>].<grpc-status>|success|failure|total
 *   cluster.<cluster>.grpc[.<service>.<method>].request_message_count|response_message_count
 *
 * The `<service>.<method>` part is there for every method with `stats_for_all_methods: true`, for
 * the listed ones with `individual_method_stats_allowlist`, and never otherwise (the default): then
 * all methods share the cluster-level counters. The status is charged from grpc-status in the
 * response headers (trailers-only) or trailers; messages are counted from the 5-byte gRPC frame
 * headers as they pass. `emit_filter_state` records the two message counts on the stream
 * (`envoy.filters.http.grpc_stats.request_message_count` / `response_message_count`).
 *
 * Leans cheap: a request that is not gRPC costs one header lookup; a gRPC request finds its
 * counters through two map lookups keyed by strings it already has (cluster name, path).
 */
import type { Reader } from '../../../common/reader';
import type { HeaderList, RequestHead, ResponseHead } from '../codec';
import { FilterStatus, type HttpFilter, type HttpFilterCallbacks, type HttpFilterFactory } from '../filter';
import { getHeader } from '../headers';

export const GRPC_STATS_TYPE_NAME = 'envoy.extensions.filters.http.grpc_stats.v3.FilterConfig';

export interface GrpcStatsConfig {
  readonly emitFilterState: boolean;
  readonly statsForAllMethods: boolean;
  /** individual_method_stats_allowlist: service → method names (undefined = not set). */
  readonly allowlist?: ReadonlyMap<string, ReadonlySet<string>>;
  readonly replaceDotsInServiceName: boolean;
}

/** The counters of one cluster and (optionally) one service/method. */
export class GrpcMethodStats {
  success = 0;
  failure = 0;
  total = 0;
  requestMessageCount = 0;
  responseMessageCount = 0;
  /** grpc-status value → count (Envoy's `.<status>` counters). */
  readonly byStatus = new Map<string, number>();
  constructor(
    readonly cluster: string,
    /** '' for the cluster-level counters. */
    readonly service: string,
    readonly method: string,
  ) {}
}

/** cluster → request path ("/svc/method", or "" for the cluster level) → counters. */
const statsByCluster = new Map<string, Map<string, GrpcMethodStats>>();

export function* allGrpcStats(): Generator<GrpcMethodStats> {
  for (const m of statsByCluster.values()) yield* m.values();
}

export function decodeGrpcStats(r: Reader): GrpcStatsConfig {
  const emitFilterState = r.bool('emit_filter_state', false);
  const which = r.oneof(['stats_for_all_methods', 'individual_method_stats_allowlist'] as const);
  const statsForAllMethods = which === 'stats_for_all_methods' ? r.bool('stats_for_all_methods', false) : false;
  let allowlist: Map<string, Set<string>> | undefined;
  const al = which === 'individual_method_stats_allowlist' ? r.obj('individual_method_stats_allowlist') : undefined;
  if (al) {
    allowlist = new Map();
    for (const svc of al.arr('services')) {
      const name = svc.requiredStr('name');
      const methods = svc.strList('method_names');
      svc.done();
      if (!name) continue;
      const set = allowlist.get(name) ?? new Set<string>();
      for (const m of methods) set.add(m);
      allowlist.set(name, set);
    }
    al.done();
  }
  const replaceDotsInServiceName = r.bool('replace_dots_in_grpc_service_name', false);
  if (r.bool('enable_upstream_stats', false))
    r.issues.warn(r.sub('enable_upstream_stats'), 'the upstream_rq_time histogram is not supported by meshlet, ignored');
  r.done();
  return { emitFilterState, statsForAllMethods, ...(allowlist ? { allowlist } : {}), replaceDotsInServiceName };
}

/** application/grpc, application/grpc+proto, application/grpc;… (not grpc-web). */
export function isGrpcContentType(ct: string | undefined): boolean {
  if (ct === undefined || !ct.startsWith('application/grpc')) return false;
  if (ct.length === 16) return true;
  const c = ct.charCodeAt(16);
  return c === 43 /* + */ || c === 59 /* ; */;
}

/**
 * Counts gRPC frames as their 5-byte headers pass (Envoy's Grpc::FrameInspector): a frame counts
 * when its flags byte is seen; a flags byte with unknown bits stops the counting for good.
 */
export class FrameCounter {
  count = 0;
  /** 0 = at a flags byte, 1–4 = length bytes still to read, 5 = in the payload. */
  private state = 0;
  private length = 0;
  private remaining = 0;
  private invalid = false;

  /** Frames started in `chunk`. */
  inspect(chunk: Buffer): number {
    if (this.invalid) return 0;
    let delta = 0;
    let i = 0;
    const n = chunk.length;
    while (i < n) {
      if (this.state === 5) {
        const take = Math.min(this.remaining, n - i);
        this.remaining -= take;
        i += take;
        if (this.remaining === 0) this.state = 0;
        continue;
      }
      const b = chunk[i++]!;
      if (this.state === 0) {
        if ((b & ~1) !== 0) {
          this.invalid = true;
          break;
        }
        delta++;
        this.state = 1;
        this.length = 0;
      } else {
        this.length = this.length * 256 + b;
        if (this.state === 4) {
          this.remaining = this.length;
          this.state = this.remaining > 0 ? 5 : 0;
        } else this.state++;
      }
    }
    this.count += delta;
    return delta;
  }
}

class GrpcStatsFilter implements HttpFilter {
  private stats: GrpcMethodStats | undefined;
  /** The request is gRPC with a "/service/method" path and its route has a cluster. */
  private tracking = false;
  /** The route's cluster; '' = a weighted route, known once the router has picked. */
  private cluster = '';
  /** Key of the counters under the cluster: the path for per-method counters, else ''. */
  private key = '';
  private grpcResponse = false;
  private requestFrames: FrameCounter | undefined;
  private responseFrames: FrameCounter | undefined;

  constructor(
    private readonly cfg: GrpcStatsConfig,
    private readonly cb: HttpFilterCallbacks,
  ) {}

  decodeHeaders(head: RequestHead): FilterStatus {
    if (!isGrpcContentType(getHeader(head.headers, 'content-type'))) return FilterStatus.Continue;
    this.requestFrames = new FrameCounter();
    const entry = this.cb.routeEntry();
    if (entry === undefined || entry.route.action.kind !== 'route') return FilterStatus.Continue;
    const c = entry.route.action.cluster;
    if (c.kind !== 'weighted') {
      const name = c.kind === 'cluster' ? c.name : getHeader(head.headers, c.header);
      // Envoy's clusterInfo(): no stats for a cluster that does not exist.
      if (name === undefined || this.cb.clusters.get(name) === undefined) return FilterStatus.Continue;
      this.cluster = name;
    }
    const q = head.path.indexOf('?');
    const path = q >= 0 ? head.path.slice(0, q) : head.path;
    if (!splitServiceMethod(path, SPLIT)) return FilterStatus.Continue;
    this.tracking = true;
    const cfg = this.cfg;
    let perMethod = cfg.statsForAllMethods;
    if (!perMethod && cfg.allowlist !== undefined) {
      const methods = cfg.allowlist.get(path.slice(SPLIT[0], SPLIT[1]));
      perMethod = methods !== undefined && methods.has(path.slice(SPLIT[2], SPLIT[3]));
    }
    if (perMethod) this.key = path;
    return FilterStatus.Continue;
  }

  decodeData(chunk: Buffer): FilterStatus {
    const f = this.requestFrames;
    if (f === undefined) return FilterStatus.Continue;
    const delta = f.inspect(chunk);
    if (delta > 0) {
      this.writeFilterState();
      const s = this.resolved();
      if (s !== undefined) s.requestMessageCount += delta;
    }
    return FilterStatus.Continue;
  }

  encodeHeaders(head: ResponseHead, endStream: boolean): FilterStatus {
    if (this.requestFrames === undefined) return FilterStatus.Continue;
    const status = getHeader(head.headers, 'grpc-status');
    this.grpcResponse = endStream ? status !== undefined : head.status === 200 && isGrpcContentType(getHeader(head.headers, 'content-type'));
    if (status !== undefined) this.charge(status);
    return FilterStatus.Continue;
  }

  encodeData(chunk: Buffer): FilterStatus {
    if (!this.grpcResponse) return FilterStatus.Continue;
    if (this.responseFrames === undefined) this.responseFrames = new FrameCounter();
    const delta = this.responseFrames.inspect(chunk);
    if (delta > 0) {
      this.writeFilterState();
      const s = this.resolved();
      if (s !== undefined) s.responseMessageCount += delta;
    }
    return FilterStatus.Continue;
  }

  encodeTrailers(trailers: HeaderList): FilterStatus {
    if (this.requestFrames === undefined) return FilterStatus.Continue;
    const status = getHeader(trailers, 'grpc-status');
    if (status !== undefined) this.charge(status);
    return FilterStatus.Continue;
  }

  private charge(status: string): void {
    const s = this.resolved();
    if (s === undefined) return;
    s.byStatus.set(status, (s.byStatus.get(status) ?? 0) + 1);
    if (status === '0') s.success++;
    else s.failure++;
    s.total++;
  }

  /** This request's counters (created on first use; a weighted route's once the router picked). */
  private resolved(): GrpcMethodStats | undefined {
    if (this.stats !== undefined || !this.tracking) return this.stats;
    let cluster = this.cluster;
    if (cluster === '') {
      cluster = this.cb.streamInfo.clusterName;
      if (cluster === '' || this.cb.clusters.get(cluster) === undefined) return undefined;
    }
    let byPath = statsByCluster.get(cluster);
    if (byPath === undefined) {
      byPath = new Map();
      statsByCluster.set(cluster, byPath);
    }
    const key = this.key;
    let s = byPath.get(key);
    if (s === undefined) {
      let service = '';
      let method = '';
      if (key !== '' && splitServiceMethod(key, SPLIT)) {
        service = key.slice(SPLIT[0], SPLIT[1]);
        if (this.cfg.replaceDotsInServiceName) service = service.replace(/\./g, '_');
        method = key.slice(SPLIT[2], SPLIT[3]);
      }
      s = new GrpcMethodStats(cluster, service, method);
      byPath.set(key, s);
    }
    this.stats = s;
    return s;
  }

  private writeFilterState(): void {
    if (!this.cfg.emitFilterState) return;
    this.cb.setMetadata('envoy.filters.http.grpc_stats.request_message_count', String(this.requestFrames?.count ?? 0));
    this.cb.setMetadata('envoy.filters.http.grpc_stats.response_message_count', String(this.responseFrames?.count ?? 0));
  }
}

/** Scratch for splitServiceMethod (the event loop is single-threaded; read right after the call). */
const SPLIT = [0, 0, 0, 0];

/**
 * Envoy's Grpc::Common::resolveServiceAndMethod: the path split on "/" with empty pieces dropped
 * must give exactly two, the service and the method. Writes their [start, end) bounds to `out`.
 */
export function splitServiceMethod(path: string, out: number[]): boolean {
  let tokens = 0;
  let i = 0;
  const n = path.length;
  while (i < n) {
    if (path.charCodeAt(i) === 47) {
      i++;
      continue;
    }
    let j = i + 1;
    while (j < n && path.charCodeAt(j) !== 47) j++;
    if (tokens === 2) return false;
    out[tokens * 2] = i;
    out[tokens * 2 + 1] = j;
    tokens++;
    i = j;
  }
  return tokens === 2;
}

export const grpcStatsFilterFactory: HttpFilterFactory<GrpcStatsConfig> = {
  typeName: GRPC_STATS_TYPE_NAME,
  decode: decodeGrpcStats,
  create(config: GrpcStatsConfig, callbacks: HttpFilterCallbacks): HttpFilter {
    return new GrpcStatsFilter(config, callbacks);
  },
};
