/**
 * The fault injection HTTP filter, `envoy.extensions.filters.http.fault.v3.HTTPFault` (Envoy's
 * envoy.filters.http.fault): a fixed delay and/or an abort (HTTP status or gRPC status), each
 * applied to a percentage of matching requests, so users can test their services' resilience
 * through the mesh.
 *
 * Envoy semantics: the delay comes first, then the abort. `header_delay` / `header_abort` take
 * the fault from the request (`x-envoy-fault-delay-request` ms, `x-envoy-fault-abort-request`
 * HTTP status, `x-envoy-fault-abort-grpc-request` gRPC status), still gated by the configured
 * percentage, which `x-envoy-fault-*-request-percentage` headers can only lower. An unset
 * percentage is 0 % (FractionalPercent's default), as in Envoy. `headers` and `upstream_cluster`
 * restrict which requests are eligible. `max_active_faults` bounds concurrent faults (overflow
 * counted, request untouched). Aborts answer with body `fault filter abort` and flag FI; delays
 * set DI. Per-route HTTPFault in typed_per_filter_config replaces the filter config.
 *
 * Leans towards never hurting the proxy: a delay holds one timer per delayed stream (cleared on
 * destroy); everything else is a few comparisons per request.
 *
 * Runtime (Envoy's keys, overridable with the `*_runtime` fields): `fault.http.delay.fixed_delay_percent`
 * and `fault.http.abort.abort_percent` (an integer numerator over the configured denominator, or
 * a FractionalPercent), `fault.http.delay.fixed_duration_ms`, `fault.http.abort.http_status`,
 * `fault.http.abort.grpc_status` and `fault.http.max_active_faults`, read per request.
 */
import { decodeFraction, NEVER, percentOf } from '../../config/envoy/runtime';
import type { RuntimeFraction } from '../../../common/runtime';
import { decodeHeaderMatcher } from '../../config/envoy/matchers';
import type { Reader } from '../../../common/reader';
import type { HeaderMatcher } from '../../config/types';
import type { RequestHead } from '../codec';
import { FilterStatus, type HttpFilter, type HttpFilterCallbacks, type HttpFilterFactory } from '../filter';
import { getHeader } from '../headers';
import { isGrpcRequest, matchHeaders } from '../route-matcher';

export const FAULT_TYPE_NAME = 'envoy.extensions.filters.http.fault.v3.HTTPFault';

export interface FaultDelayConfig {
  /** Fixed delay in ms; undefined with `fromHeader`. */
  readonly fixedDelayMs?: number;
  /** header_delay: the delay comes from x-envoy-fault-delay-request. */
  readonly fromHeader: boolean;
  /** 0–100. */
  readonly percent: number;
  /** The percentage as configured (numerator over its denominator), read under the runtime key. */
  readonly fraction: RuntimeFraction;
}

export interface FaultAbortConfig {
  readonly httpStatus?: number;
  readonly grpcStatus?: number;
  /** header_abort: the status comes from x-envoy-fault-abort-request / -grpc-request. */
  readonly fromHeader: boolean;
  /** 0–100. */
  readonly percent: number;
  readonly fraction: RuntimeFraction;
}

/** The runtime keys the filter reads (Envoy's defaults unless the config names others). */
export interface FaultRuntimeKeys {
  readonly delayPercent: string;
  readonly abortPercent: string;
  readonly delayDuration: string;
  readonly abortHttpStatus: string;
  readonly abortGrpcStatus: string;
  readonly maxActiveFaults: string;
}

export interface FaultConfig {
  readonly kind: 'fault';
  readonly delay?: FaultDelayConfig;
  readonly abort?: FaultAbortConfig;
  /** Only requests to this cluster are faulted (checked against the route's cluster). */
  readonly upstreamCluster?: string;
  readonly headers: readonly HeaderMatcher[];
  /** undefined = unlimited (Envoy default). */
  readonly maxActiveFaults?: number;
  readonly runtimeKeys: FaultRuntimeKeys;
}

/** Envoy's fault filter stats: delays_injected, aborts_injected, active_faults, faults_overflow. */
export class FaultStats {
  delaysInjected = 0;
  abortsInjected = 0;
  activeFaults = 0;
  faultsOverflow = 0;
}
/** Process-wide fault filter counters (`fault.<stat_prefix>.*` in Envoy). */
export const faultStats = new FaultStats();

function decodeDelay(r: Reader): FaultDelayConfig | undefined {
  const which = r.oneof(['fixed_delay', 'header_delay'] as const);
  const fraction = decodeFraction(r, 'percentage', NEVER);
  const percent = percentOf(fraction);
  let out: FaultDelayConfig | undefined;
  if (which === undefined) r.issues.error(r.path, 'one of fixed_delay, header_delay must be set');
  else if (which === 'fixed_delay') {
    const ms = r.durationMs('fixed_delay', -1);
    if (ms < 0) r.error('fixed_delay', 'must be a non-negative duration');
    else out = { fixedDelayMs: ms, fromHeader: false, percent, fraction };
  } else {
    r.obj('header_delay')?.done();
    out = { fromHeader: true, percent, fraction };
  }
  r.done();
  return out;
}

function decodeAbort(r: Reader): FaultAbortConfig | undefined {
  const which = r.oneof(['http_status', 'grpc_status', 'header_abort'] as const);
  const fraction = decodeFraction(r, 'percentage', NEVER);
  const percent = percentOf(fraction);
  let out: FaultAbortConfig | undefined;
  if (which === undefined) r.issues.error(r.path, 'one of http_status, grpc_status, header_abort must be set');
  else if (which === 'http_status') {
    const s = r.int('http_status', 0, 0, 599);
    if (s < 200) r.error('http_status', 'must be between 200 and 599');
    else out = { httpStatus: s, fromHeader: false, percent, fraction };
  } else if (which === 'grpc_status') {
    out = { grpcStatus: r.int('grpc_status', 0, 0, 16), fromHeader: false, percent, fraction };
  } else {
    r.obj('header_abort')?.done();
    out = { fromHeader: true, percent, fraction };
  }
  r.done();
  return out;
}

export function decodeFault(r: Reader): FaultConfig {
  const d = r.obj('delay');
  const delay = d ? decodeDelay(d) : undefined;
  const a = r.obj('abort');
  const abort = a ? decodeAbort(a) : undefined;
  const upstreamCluster = r.str('upstream_cluster');
  const headers: HeaderMatcher[] = [];
  for (const h of r.arr('headers')) {
    const m = decodeHeaderMatcher(h);
    if (m) headers.push(m);
  }
  if (r.strList('downstream_nodes').length > 0) r.error('downstream_nodes', 'is not supported by meshlet');
  const maxActiveFaults = r.optInt('max_active_faults', 0, 0xffffffff);
  if (r.has('response_rate_limit'))
    r.error('response_rate_limit', 'response rate limiting is not supported by meshlet');
  r.raw('response_rate_limit');
  const key = (field: string, def: string): string => r.str(field, '') || def;
  const runtimeKeys: FaultRuntimeKeys = {
    delayPercent: key('delay_percent_runtime', 'fault.http.delay.fixed_delay_percent'),
    abortPercent: key('abort_percent_runtime', 'fault.http.abort.abort_percent'),
    delayDuration: key('delay_duration_runtime', 'fault.http.delay.fixed_duration_ms'),
    abortHttpStatus: key('abort_http_status_runtime', 'fault.http.abort.http_status'),
    abortGrpcStatus: key('abort_grpc_status_runtime', 'fault.http.abort.grpc_status'),
    maxActiveFaults: key('max_active_faults_runtime', 'fault.http.max_active_faults'),
  };
  r.ignore(
    // Response rate limiting is rejected above, so its runtime key has nothing to change.
    'response_rate_limit_percent_runtime',
    // meshlet keeps no per-downstream-cluster fault stats, so disabling them changes nothing.
    'disable_downstream_cluster_stats',
  );
  // filter_metadata (dynamic metadata emitted on an injected fault) is not written: done() warns.
  r.done();
  return {
    kind: 'fault',
    ...(delay ? { delay } : {}),
    ...(abort ? { abort } : {}),
    ...(upstreamCluster ? { upstreamCluster } : {}),
    headers,
    ...(maxActiveFaults !== undefined ? { maxActiveFaults } : {}),
    runtimeKeys,
  };
}

/**
 * The fraction a request is faulted with: the configured one, lowered by its percentage header
 * (a numerator over the configured denominator, capped by the configured numerator, as Envoy),
 * read under `runtimeKey`.
 */
function effectiveFraction(configured: RuntimeFraction, head: RequestHead, header: string, runtimeKey: string): RuntimeFraction {
  const v = getHeader(head.headers, header);
  const numerator = v === undefined || !/^\d+$/.test(v) ? configured.numerator : Math.min(configured.numerator, Number(v));
  return { numerator, denominator: configured.denominator, runtimeKey };
}

/** The HTTP status local-reply.ts maps to gRPC status `code` (500 → UNKNOWN otherwise). */
function httpStatusForGrpc(code: number): number {
  switch (code) {
    case 13:
      return 400;
    case 16:
      return 401;
    case 7:
      return 403;
    case 12:
      return 404;
    case 14:
      return 503;
    default:
      return 500;
  }
}

function onDelayDone(f: FaultFilter): void {
  f.afterDelay();
}

class FaultFilter implements HttpFilter {
  private timer: NodeJS.Timeout | undefined;
  private active = false;
  private cfg!: FaultConfig;
  private head!: RequestHead;

  constructor(
    private readonly config: FaultConfig,
    private readonly cb: HttpFilterCallbacks,
    private readonly random: () => number,
  ) {}

  decodeHeaders(head: RequestHead): FilterStatus {
    const per = this.cb.perRouteConfig() as FaultConfig | undefined;
    const cfg = per !== undefined && per.kind === 'fault' ? per : this.config;
    if (cfg.delay === undefined && cfg.abort === undefined) return FilterStatus.Continue;
    if (cfg.headers.length > 0 && !matchHeaders(cfg.headers, head)) return FilterStatus.Continue;
    if (cfg.upstreamCluster !== undefined) {
      const a = this.cb.route()?.action;
      if (
        a === undefined ||
        a.kind !== 'route' ||
        a.cluster.kind !== 'cluster' ||
        a.cluster.name !== cfg.upstreamCluster
      ) {
        return FilterStatus.Continue;
      }
    }
    this.cfg = cfg;
    this.head = head;
    const delayMs = this.delayMs(cfg, head);
    const abort = delayMs === undefined ? this.abortStatus(cfg, head) : undefined;
    if (delayMs === undefined && abort === undefined) return FilterStatus.Continue;
    const maxActive = this.cb.runtime.getInteger(cfg.runtimeKeys.maxActiveFaults, cfg.maxActiveFaults ?? -1);
    if (maxActive >= 0 && faultStats.activeFaults >= maxActive) {
      faultStats.faultsOverflow++;
      return FilterStatus.Continue;
    }
    this.active = true;
    faultStats.activeFaults++;
    if (delayMs !== undefined) {
      faultStats.delaysInjected++;
      this.cb.setResponseFlag('DI');
      this.timer = setTimeout(onDelayDone, delayMs, this);
      return FilterStatus.StopIteration;
    }
    return this.doAbort(abort!);
  }

  afterDelay(): void {
    this.timer = undefined;
    // The abort decision is taken after the delay, as in Envoy.
    const abort = this.abortStatus(this.cfg, this.head);
    if (abort !== undefined) {
      this.doAbort(abort);
      return;
    }
    this.release();
    this.cb.continueDecoding();
  }

  private doAbort(abort: { http: number; grpc: number }): FilterStatus {
    faultStats.abortsInjected++;
    this.release();
    if (abort.grpc >= 0) {
      if (isGrpcRequest(this.head)) {
        // The local reply builder turns a local reply to a gRPC request into grpc-status from the
        // HTTP status; pick the HTTP status that maps to the configured code (UNKNOWN otherwise).
        this.cb.sendLocalReply(
          httpStatusForGrpc(abort.grpc),
          'fault filter abort',
          undefined,
          'FI',
          'fault_filter_abort',
        );
      } else {
        this.cb.sendLocalReply(
          200,
          '',
          ['grpc-status', String(abort.grpc), 'grpc-message', 'fault filter abort'],
          'FI',
          'fault_filter_abort',
        );
      }
    } else {
      this.cb.sendLocalReply(abort.http, 'fault filter abort', undefined, 'FI', 'fault_filter_abort');
    }
    return FilterStatus.StopIteration;
  }

  private delayMs(cfg: FaultConfig, head: RequestHead): number | undefined {
    const d = cfg.delay;
    if (d === undefined) return undefined;
    let ms = d.fixedDelayMs;
    if (d.fromHeader) {
      const v = getHeader(head.headers, 'x-envoy-fault-delay-request');
      if (v === undefined || !/^\d+$/.test(v)) return undefined;
      ms = Number(v);
    } else if (ms !== undefined) ms = this.cb.runtime.getInteger(cfg.runtimeKeys.delayDuration, ms);
    if (ms === undefined) return undefined;
    const f = effectiveFraction(d.fraction, head, 'x-envoy-fault-delay-request-percentage', cfg.runtimeKeys.delayPercent);
    return this.cb.runtime.fractionEnabled(f, this.random()) ? ms : undefined;
  }

  private abortStatus(cfg: FaultConfig, head: RequestHead): { http: number; grpc: number } | undefined {
    const a = cfg.abort;
    if (a === undefined) return undefined;
    let http = a.httpStatus ?? -1;
    let grpc = a.grpcStatus ?? -1;
    if (a.fromHeader) {
      const hv = getHeader(head.headers, 'x-envoy-fault-abort-request');
      const gv = getHeader(head.headers, 'x-envoy-fault-abort-grpc-request');
      if (hv !== undefined && /^\d+$/.test(hv) && Number(hv) >= 200 && Number(hv) < 600) http = Number(hv);
      else if (gv !== undefined && /^\d+$/.test(gv) && Number(gv) <= 16) grpc = Number(gv);
      else return undefined;
    } else if (http >= 0) {
      const rt = this.cb.runtime.getInteger(cfg.runtimeKeys.abortHttpStatus, http);
      if (rt >= 200 && rt < 600) http = rt;
    } else if (grpc >= 0) {
      const rt = this.cb.runtime.getInteger(cfg.runtimeKeys.abortGrpcStatus, grpc);
      if (rt <= 16) grpc = rt;
    }
    const f = effectiveFraction(a.fraction, head, 'x-envoy-fault-abort-request-percentage', cfg.runtimeKeys.abortPercent);
    if (!this.cb.runtime.fractionEnabled(f, this.random())) return undefined;
    return { http: http < 0 ? 503 : http, grpc };
  }

  private release(): void {
    if (this.active) {
      this.active = false;
      if (faultStats.activeFaults > 0) faultStats.activeFaults--;
    }
  }

  onDestroy(): void {
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    this.release();
  }
}

export function faultFilterFactory(random: () => number = Math.random): HttpFilterFactory<FaultConfig> {
  return {
    typeName: FAULT_TYPE_NAME,
    decode: decodeFault,
    decodePerRoute: decodeFault,
    create(config: FaultConfig, callbacks: HttpFilterCallbacks): HttpFilter {
      return new FaultFilter(config, callbacks, random);
    },
  };
}
