/**
 * Global rate limiting, `envoy.extensions.filters.http.ratelimit.v3.RateLimit` (Envoy's
 * envoy.filters.http.ratelimit), against Envoy's rate limit service API
 * (`envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`).
 *
 * On request headers the filter builds descriptors from the selected route's `rate_limits` whose
 * stage equals the filter's (actions: request_headers, remote_address, generic_key,
 * header_value_match, destination_cluster — a descriptor whose action does not
 * apply is dropped, as in Envoy) and, when there is at least one, asks the service. OVER_LIMIT
 * answers 429 (`rate_limited_status`) with `x-envoy-ratelimited: true` and response flag RL.
 * A failing or slow service (`timeout`, Envoy default 20 ms) lets the request through unless
 * `failure_mode_deny`, which answers 500 with flag RLSE. Headers the service returns
 * (response_headers_to_add / request_headers_to_add) are applied; DRAFT_VERSION_03 adds
 * x-ratelimit-limit / -remaining / -reset from the first status.
 *
 * The local limiter (local-ratelimit.ts) stays for per-proxy limits; this one is per mesh.
 */
import type { Reader } from '../../../common/reader';
import type { RateLimitPolicy } from '../../config/types';
import type { HeaderList, RequestHead, ResponseHead } from '../codec';
import { FilterStatus, type HttpFilter, type HttpFilterCallbacks, type HttpFilterFactory } from '../filter';
import { addHeader, getHeader, setHeader } from '../headers';
import { matchHeaders } from '../route-matcher';
import { decodeGrpcTarget, type GrpcTarget } from '../../config/filters/grpc-service';
import { unaryCall } from './service-client';

export const RATELIMIT_TYPE_NAME = 'envoy.extensions.filters.http.ratelimit.v3.RateLimit';

export interface RateLimitFilterConfig {
  readonly kind: 'ratelimit';
  /** The rate limit service domain (required). */
  readonly domain: string;
  readonly stage: number;
  /** internal | external | both (Envoy default both). */
  readonly requestType: 'internal' | 'external' | 'both';
  /** Deadline of the ShouldRateLimit call (Envoy default 20 ms). */
  readonly timeoutMs: number;
  /** Reject (500, RLSE) when the service fails, instead of letting the request through. */
  readonly failureModeDeny: boolean;
  /** Answer gRPC requests RESOURCE_EXHAUSTED instead of UNAVAILABLE (status stays 429). */
  readonly rateLimitedAsResourceExhausted: boolean;
  readonly service: GrpcTarget;
  readonly xRateLimitHeaders: 'OFF' | 'DRAFT_VERSION_03';
  readonly disableXEnvoyRatelimitedHeader: boolean;
  /** rate_limited_status (Envoy default 429; values < 400 fall back to 429). */
  readonly rateLimitedStatus: number;
  /** status_on_error: the answer under failure_mode_deny (Envoy default 500). */
  readonly statusOnError: number;
  readonly statPrefix: string;
}

/** Envoy's ratelimit stats: ok, over_limit, error, failure_mode_allowed. */
export class RateLimitStats {
  ok = 0;
  overLimit = 0;
  error = 0;
  failureModeAllowed = 0;
  constructor(readonly domain: string) {}
}
const statsByDomain = new Map<string, RateLimitStats>();
export function rateLimitStats(domain: string): RateLimitStats {
  let s = statsByDomain.get(domain);
  if (s === undefined) {
    s = new RateLimitStats(domain);
    statsByDomain.set(domain, s);
  }
  return s;
}
export function allRateLimitStats(): readonly RateLimitStats[] {
  return [...statsByDomain.values()];
}

export function decodeRateLimit(r: Reader): RateLimitFilterConfig {
  const domain = r.requiredStr('domain');
  const stage = r.int('stage', 0, 0, 10);
  const requestType = r.enumOf('request_type', ['both', 'internal', 'external'] as const, 'both');
  const timeoutMs = r.durationMs('timeout', 20);
  const failureModeDeny = r.bool('failure_mode_deny', false);
  const rateLimitedAsResourceExhausted = r.bool('rate_limited_as_resource_exhausted', false);
  if (rateLimitedAsResourceExhausted)
    r.error('rate_limited_as_resource_exhausted', 'is not supported by meshlet (gRPC callers get UNAVAILABLE)');
  let service: GrpcTarget | undefined;
  const rls = r.obj('rate_limit_service');
  if (!rls) r.error('rate_limit_service', 'is required');
  else {
    const g = rls.obj('grpc_service');
    if (!g) rls.error('grpc_service', 'is required');
    else service = decodeGrpcTarget(g, timeoutMs);
    const v = rls.enumOf('transport_api_version', ['AUTO', 'V2', 'V3'] as const, 'AUTO');
    if (v === 'V2') rls.error('transport_api_version', 'only V3 is supported');
    rls.done();
  }
  const xRateLimitHeaders = r.enumOf('enable_x_ratelimit_headers', ['OFF', 'DRAFT_VERSION_03'] as const, 'OFF');
  const disableXEnvoyRatelimitedHeader = r.bool('disable_x_envoy_ratelimited_header', false);
  let rateLimitedStatus = 429;
  const st = r.obj('rate_limited_status');
  if (st) {
    const code = st.int('code', 429, 0, 599);
    rateLimitedStatus = code >= 400 ? code : 429;
    st.done();
  }
  const statPrefix = r.str('stat_prefix', '');
  if (r.has('descriptors') || r.has('vh_rate_limits'))
    r.error(r.has('descriptors') ? 'descriptors' : 'vh_rate_limits', 'is not supported by meshlet');
  r.raw('descriptors');
  r.raw('vh_rate_limits');
  let statusOnError = 500;
  const se = r.obj('status_on_error');
  if (se) {
    statusOnError = se.int('code', 500, 100, 599);
    se.done();
  }
  r.done();
  rateLimitStats(domain);
  return {
    kind: 'ratelimit',
    domain,
    stage,
    requestType,
    timeoutMs,
    failureModeDeny,
    rateLimitedAsResourceExhausted,
    // A missing service is a config error above; the placeholder is never used.
    service: service ?? { clusterName: '', authority: '', timeoutMs, initialMetadata: [] },
    xRateLimitHeaders,
    disableXEnvoyRatelimitedHeader,
    rateLimitedStatus,
    statusOnError,
    statPrefix,
  };
}

/** One RateLimitDescriptor in proto-loader object form. */
interface Descriptor {
  entries: { key: string; value: string }[];
}

/**
 * The descriptors of `policies` at `stage` for this request (Envoy's RateLimitPolicyEntry):
 * a descriptor is dropped when one of its actions produces nothing.
 */
export function buildDescriptors(
  policies: readonly RateLimitPolicy[],
  stage: number,
  head: RequestHead,
  remoteAddress: string,
  clusterName: string,
): Descriptor[] {
  const out: Descriptor[] = [];
  for (const p of policies) {
    if (p.stage !== stage) continue;
    const entries: { key: string; value: string }[] = [];
    let ok = true;
    for (const a of p.actions) {
      switch (a.kind) {
        case 'request_headers': {
          const v = getHeader(head.headers, a.headerName) ?? pseudo(head, a.headerName);
          if (v === undefined) ok = a.skipIfAbsent;
          else entries.push({ key: a.descriptorKey, value: v });
          break;
        }
        case 'remote_address':
          if (remoteAddress === '') ok = false;
          else entries.push({ key: 'remote_address', value: remoteAddress });
          break;
        case 'generic_key':
          entries.push({ key: a.descriptorKey, value: a.descriptorValue });
          break;
        case 'header_value_match':
          if (matchHeaders(a.headers, head) === a.expectMatch) entries.push({ key: a.descriptorKey, value: a.descriptorValue });
          else ok = false;
          break;
        case 'destination_cluster':
          if (clusterName === '') ok = false;
          else entries.push({ key: 'destination_cluster', value: clusterName });
          break;
      }
      if (!ok) break;
    }
    if (ok && entries.length > 0) out.push({ entries });
  }
  return out;
}

function pseudo(head: RequestHead, name: string): string | undefined {
  switch (name) {
    case ':path':
      return head.path;
    case ':method':
      return head.method;
    case ':authority':
      return head.authority || undefined;
    case ':scheme':
      return head.scheme;
  }
  return undefined;
}

/** Apply envoy.config.core.v3.HeaderValue / HeaderValueOption lists returned by the service. */
function applyServiceHeaders(target: HeaderList, list: unknown, overwrite: boolean): void {
  if (!Array.isArray(list)) return;
  for (const o of list as { key?: string; value?: string; header?: { key?: string; value?: string } }[]) {
    const h = o.header ?? o;
    const key = h.key?.toLowerCase();
    if (!key) continue;
    if (overwrite) setHeader(target, key, h.value ?? '');
    else addHeader(target, key, h.value ?? '');
  }
}

class RateLimitFilter implements HttpFilter {
  private pending = false;
  private done = false;
  private head: RequestHead | undefined;
  private responseHeaders: HeaderList | undefined;
  private syncResult: FilterStatus = FilterStatus.Continue;

  constructor(
    private readonly config: RateLimitFilterConfig,
    private readonly cb: HttpFilterCallbacks,
  ) {}

  decodeHeaders(head: RequestHead): FilterStatus {
    const cfg = this.config;
    const internal = getHeader(head.headers, 'x-envoy-internal') === 'true';
    if ((cfg.requestType === 'internal' && !internal) || (cfg.requestType === 'external' && internal))
      return FilterStatus.Continue;
    const route = this.cb.route();
    const action = route?.action;
    if (action === undefined || action.kind !== 'route' || action.rateLimits === undefined) return FilterStatus.Continue;
    const cluster = action.cluster.kind === 'cluster' ? action.cluster.name : '';
    const remote = this.cb.trustedRemoteAddress || this.cb.connection.remoteAddress;
    const descriptors = buildDescriptors(action.rateLimits, cfg.stage, head, remote, cluster);
    if (descriptors.length === 0) return FilterStatus.Continue;
    this.head = head;
    this.pending = true;
    unaryCall(
      this.cb.clusters,
      cfg.service,
      'ratelimit',
      'ShouldRateLimit',
      { domain: cfg.domain, descriptors, hits_addend: 1 },
      (err, res) => this.onResult(err, res),
    );
    return this.pending ? FilterStatus.StopIteration : this.syncResult;
  }

  encodeHeaders(head: ResponseHead): FilterStatus {
    const add = this.responseHeaders;
    if (add !== undefined) for (let i = 0; i < add.length; i += 2) setHeader(head.headers, add[i]!, add[i + 1]!);
    return FilterStatus.Continue;
  }

  onDestroy(): void {
    this.done = true;
  }

  private proceed(): void {
    const wasPending = this.pending;
    this.pending = false;
    this.syncResult = FilterStatus.Continue;
    if (wasPending) this.cb.continueDecoding();
  }

  private reply(status: number, body: string, headers: HeaderList, flag: 'RL' | 'RLSE', details: string): void {
    this.pending = false;
    this.syncResult = FilterStatus.StopIteration;
    this.cb.sendLocalReply(status, body, headers, flag, details);
  }

  private onResult(err: Error | undefined, res: Record<string, unknown> | undefined): void {
    if (this.done) return;
    const cfg = this.config;
    const stats = rateLimitStats(cfg.domain);
    if (err !== undefined || res === undefined || res.overall_code === 'UNKNOWN') {
      stats.error++;
      this.cb.setMetadata('ratelimit_error', (err?.message ?? 'UNKNOWN').slice(0, 200));
      if (cfg.failureModeDeny) {
        this.reply(cfg.statusOnError, '', [], 'RLSE', 'rate_limiter_error');
        return;
      }
      stats.failureModeAllowed++;
      this.proceed();
      return;
    }
    const resp: HeaderList = [];
    applyServiceHeaders(resp, res.response_headers_to_add, true);
    if (cfg.xRateLimitHeaders === 'DRAFT_VERSION_03') this.addDraftHeaders(resp, res.statuses);
    if (res.overall_code === 'OVER_LIMIT') {
      stats.overLimit++;
      if (!cfg.disableXEnvoyRatelimitedHeader) resp.push('x-envoy-ratelimited', 'true');
      this.reply(cfg.rateLimitedStatus, '', resp, 'RL', 'request_rate_limited');
      return;
    }
    stats.ok++;
    if (this.head) applyServiceHeaders(this.head.headers, res.request_headers_to_add, true);
    if (resp.length > 0) this.responseHeaders = resp;
    this.proceed();
  }

  private addDraftHeaders(h: HeaderList, statuses: unknown): void {
    if (!Array.isArray(statuses) || statuses.length === 0) return;
    const s = statuses[0] as {
      current_limit?: { requests_per_unit?: number; unit?: string };
      limit_remaining?: number;
      duration_until_reset?: { seconds?: string | number };
    };
    if (s.current_limit?.requests_per_unit !== undefined) {
      h.push('x-ratelimit-limit', String(s.current_limit.requests_per_unit));
    }
    if (s.limit_remaining !== undefined) h.push('x-ratelimit-remaining', String(s.limit_remaining));
    if (s.duration_until_reset?.seconds !== undefined) h.push('x-ratelimit-reset', String(s.duration_until_reset.seconds));
  }
}

export const rateLimitFilterFactory: HttpFilterFactory<RateLimitFilterConfig> = {
  typeName: RATELIMIT_TYPE_NAME,
  decode: decodeRateLimit,
  create(config: RateLimitFilterConfig, callbacks: HttpFilterCallbacks): HttpFilter {
    return new RateLimitFilter(config, callbacks);
  },
};
