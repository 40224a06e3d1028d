/**
 * The local rate limit HTTP filter, `envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit`
 * (Envoy's envoy.filters.http.local_ratelimit): a token bucket per filter config — the listener's
 * config shared by every route, and a separate bucket for each route whose
 * typed_per_filter_config carries its own LocalRateLimit — or per downstream connection with
 * `local_rate_limit_per_downstream_connection`.
 *
 * Envoy semantics: `filter_enabled` and `filter_enforced` default to 0 % (the filter does nothing
 * until enabled); an enabled request takes a token or is rate limited; an enforced limit answers
 * `status` (default 429) with body `local_rate_limited`, `x-envoy-ratelimited: true`, the
 * configured response headers and response flag RL; an unenforced one only adds
 * `request_headers_to_add_when_not_enforced`. With `enable_x_ratelimit_headers: DRAFT_VERSION_03`
 * responses carry x-ratelimit-limit / -remaining / -reset. No token_bucket = never limited.
 * Both fractions are read under their `runtime_key` in the layered runtime per request.
 *
 * Leans cheap: the bucket refills lazily from the clock on each take (no timer per bucket), so
 * an idle listener costs nothing and fake timers drive it in tests.
 */
import { decodeRuntimeFraction, NEVER, percentOf } from '../../config/envoy/runtime';
import type { RuntimeFraction } from '../../../common/runtime';
import { decodeHeadersToAdd } from '../../config/envoy/headers';
import type { Reader } from '../../../common/reader';
import type { HeaderValueOption } from '../../config/types';
import type { DownstreamConnectionInfo, HeaderList, RequestHead, ResponseHead } from '../codec';
import { FilterStatus, type HttpFilter, type HttpFilterCallbacks, type HttpFilterFactory } from '../filter';
import { addHeader, setHeader } from '../headers';

export const LOCAL_RATELIMIT_TYPE_NAME = 'envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit';

/** Envoy refuses fill intervals shorter than this (token_bucket.fill_interval). */
export const MIN_FILL_INTERVAL_MS = 50;

export interface TokenBucketConfig {
  /** Bucket size and initial fill (required, > 0). */
  readonly maxTokens: number;
  /** Tokens added every fill interval (Envoy default 1). */
  readonly tokensPerFill: number;
  /** Refill period in ms (required, ≥ 50 ms). */
  readonly fillIntervalMs: number;
}

/** Decoded LocalRateLimit (listener-level or per-route). */
export interface LocalRateLimitConfig {
  readonly kind: 'local_ratelimit';
  readonly statPrefix: string;
  /** HTTP status of the rate-limited response (Envoy: 429; values < 400 fall back to 429). */
  readonly status: number;
  /** undefined = no bucket: requests are never limited. */
  readonly tokenBucket?: TokenBucketConfig;
  /** filter_enabled.default_value as a percentage 0–100 (Envoy default 0). */
  readonly enabledPercent: number;
  /** filter_enabled as configured (numerator, denominator, runtime_key). */
  readonly enabled: RuntimeFraction;
  /** filter_enforced.default_value as a percentage 0–100 (Envoy default 0). */
  readonly enforcedPercent: number;
  readonly enforced: RuntimeFraction;
  readonly requestHeadersToAddWhenNotEnforced: readonly HeaderValueOption[];
  readonly responseHeadersToAdd: readonly HeaderValueOption[];
  readonly xRateLimitHeaders: 'OFF' | 'DRAFT_VERSION_03';
  /** local_rate_limit_per_downstream_connection: one bucket per connection instead of per process. */
  readonly perConnection: boolean;
}

/** Envoy's http_local_rate_limit stats: enabled, enforced, rate_limited, ok. */
export class LocalRateLimitStats {
  enabled = 0;
  enforced = 0;
  rateLimited = 0;
  ok = 0;
  constructor(readonly statPrefix: string) {}
}

const statsByPrefix = new Map<string, LocalRateLimitStats>();
/** Counters for telemetry: `<stat_prefix>.http_local_rate_limit.*`. */
export function allLocalRateLimitStats(): readonly LocalRateLimitStats[] {
  return [...statsByPrefix.values()];
}
export function localRateLimitStats(prefix: string): LocalRateLimitStats {
  let s = statsByPrefix.get(prefix);
  if (s === undefined) {
    s = new LocalRateLimitStats(prefix);
    statsByPrefix.set(prefix, s);
  }
  return s;
}

/** A token bucket refilled lazily: `tokensPerFill` every whole `fillIntervalMs` elapsed. */
export class TokenBucket {
  tokens: number;
  private lastFill: number;
  constructor(
    readonly cfg: TokenBucketConfig,
    now: number = Date.now(),
  ) {
    this.tokens = cfg.maxTokens;
    this.lastFill = now;
  }
  private refill(now: number): void {
    const periods = Math.floor((now - this.lastFill) / this.cfg.fillIntervalMs);
    if (periods > 0) {
      this.tokens = Math.min(this.cfg.maxTokens, this.tokens + periods * this.cfg.tokensPerFill);
      this.lastFill += periods * this.cfg.fillIntervalMs;
    } else if (periods < 0) this.lastFill = now; // the clock went backwards
  }
  /** Take one token; false when the bucket is empty. */
  consume(now: number = Date.now()): boolean {
    this.refill(now);
    if (this.tokens <= 0) return false;
    this.tokens--;
    return true;
  }
  /** Whole seconds until the next fill (x-ratelimit-reset), at least 0. */
  secondsToNextFill(now: number = Date.now()): number {
    this.refill(now);
    return Math.max(0, Math.ceil((this.lastFill + this.cfg.fillIntervalMs - now) / 1000));
  }
}

function decodeTokenBucket(r: Reader): TokenBucketConfig | undefined {
  if (!r.has('max_tokens')) r.error('max_tokens', 'is required');
  const maxTokens = r.int('max_tokens', 0, 0, 0xffffffff);
  if (r.has('max_tokens') && maxTokens === 0) r.error('max_tokens', 'must be greater than 0');
  const tokensPerFill = r.int('tokens_per_fill', 1, 1, 0xffffffff);
  let fillIntervalMs = 0;
  if (!r.has('fill_interval')) r.error('fill_interval', 'is required');
  else {
    fillIntervalMs = r.durationMs('fill_interval', 0);
    if (fillIntervalMs < MIN_FILL_INTERVAL_MS) r.error('fill_interval', `must be at least ${MIN_FILL_INTERVAL_MS}ms`);
  }
  r.done();
  if (maxTokens <= 0 || fillIntervalMs < MIN_FILL_INTERVAL_MS) return undefined;
  return { maxTokens, tokensPerFill, fillIntervalMs };
}


export function decodeLocalRateLimit(r: Reader): LocalRateLimitConfig {
  const statPrefix = r.requiredStr('stat_prefix');
  let status = 429;
  const st = r.obj('status');
  if (st) {
    const code = st.int('code', 429, 0, 599);
    status = code >= 400 ? code : 429;
    st.done();
  }
  const tb = r.obj('token_bucket');
  const tokenBucket = tb ? decodeTokenBucket(tb) : undefined;
  const enabled = decodeRuntimeFraction(r, 'filter_enabled', NEVER);
  const enforced = decodeRuntimeFraction(r, 'filter_enforced', NEVER);
  const enabledPercent = percentOf(enabled);
  const enforcedPercent = percentOf(enforced);
  const requestHeadersToAddWhenNotEnforced = decodeHeadersToAdd(r, 'request_headers_to_add_when_not_enforced');
  const responseHeadersToAdd = decodeHeadersToAdd(r, 'response_headers_to_add');
  const xRateLimitHeaders = r.enumOf('enable_x_ratelimit_headers', ['OFF', 'DRAFT_VERSION_03'] as const, 'OFF');
  const perConnection = r.bool('local_rate_limit_per_downstream_connection', false);
  if (r.list('descriptors').length > 0) r.error('descriptors', 'rate limit descriptors are not supported by meshlet');
  const stage = r.int('stage', 0, 0, 10);
  if (stage !== 0) r.error('stage', 'only stage 0 is supported by meshlet');
  r.done();
  return {
    kind: 'local_ratelimit',
    statPrefix,
    status,
    ...(tokenBucket ? { tokenBucket } : {}),
    enabledPercent,
    enforcedPercent,
    enabled,
    enforced,
    requestHeadersToAddWhenNotEnforced,
    responseHeadersToAdd,
    xRateLimitHeaders,
    perConnection,
  };
}

/** One process-wide bucket per decoded config; per-connection buckets hang off the connection. */
const sharedBuckets = new WeakMap<LocalRateLimitConfig, TokenBucket>();
const connectionBuckets = new WeakMap<LocalRateLimitConfig, WeakMap<DownstreamConnectionInfo, TokenBucket>>();

export function bucketFor(cfg: LocalRateLimitConfig, conn: DownstreamConnectionInfo): TokenBucket | undefined {
  const tb = cfg.tokenBucket;
  if (tb === undefined) return undefined;
  if (cfg.perConnection) {
    let m = connectionBuckets.get(cfg);
    if (m === undefined) {
      m = new WeakMap();
      connectionBuckets.set(cfg, m);
    }
    let b = m.get(conn);
    if (b === undefined) {
      b = new TokenBucket(tb);
      m.set(conn, b);
    }
    return b;
  }
  let b = sharedBuckets.get(cfg);
  if (b === undefined) {
    b = new TokenBucket(tb);
    sharedBuckets.set(cfg, b);
  }
  return b;
}

/** Literal header additions (no %FORMAT% substitution in this filter). */
function addOptions(h: HeaderList, opts: readonly HeaderValueOption[]): void {
  for (let i = 0; i < opts.length; i++) {
    const o = opts[i]!;
    if (o.value === '' && !o.keepEmptyValue) continue;
    if (o.appendAction === 'APPEND_IF_EXISTS_OR_ADD') addHeader(h, o.key, o.value);
    else setHeader(h, o.key, o.value);
  }
}


class LocalRateLimitFilter implements HttpFilter {
  /** The bucket this request was checked against (for x-ratelimit-* headers). */
  private bucket: TokenBucket | undefined;
  private cfg: LocalRateLimitConfig | undefined;

  constructor(
    private readonly config: LocalRateLimitConfig,
    private readonly cb: HttpFilterCallbacks,
    private readonly random: () => number,
  ) {}

  decodeHeaders(head: RequestHead): FilterStatus {
    const per = this.cb.perRouteConfig() as LocalRateLimitConfig | undefined;
    const cfg = per !== undefined && per.kind === 'local_ratelimit' ? per : this.config;
    if (!this.cb.runtime.fractionEnabled(cfg.enabled, this.random())) return FilterStatus.Continue;
    const stats = localRateLimitStats(cfg.statPrefix);
    stats.enabled++;
    const bucket = bucketFor(cfg, this.cb.connection);
    if (bucket === undefined) return FilterStatus.Continue;
    this.cfg = cfg;
    this.bucket = bucket;
    if (bucket.consume()) {
      stats.ok++;
      return FilterStatus.Continue;
    }
    stats.rateLimited++;
    if (!this.cb.runtime.fractionEnabled(cfg.enforced, this.random())) {
      addOptions(head.headers, cfg.requestHeadersToAddWhenNotEnforced);
      return FilterStatus.Continue;
    }
    stats.enforced++;
    const h: HeaderList = ['x-envoy-ratelimited', 'true'];
    addOptions(h, cfg.responseHeadersToAdd);
    this.addRateLimitHeaders(h);
    this.cb.sendLocalReply(cfg.status, 'local_rate_limited', h, 'RL', 'local_rate_limited');
    return FilterStatus.StopIteration;
  }

  encodeHeaders(head: ResponseHead): FilterStatus {
    this.addRateLimitHeaders(head.headers);
    return FilterStatus.Continue;
  }

  private addRateLimitHeaders(h: HeaderList): void {
    const cfg = this.cfg;
    const b = this.bucket;
    if (cfg === undefined || b === undefined || cfg.xRateLimitHeaders !== 'DRAFT_VERSION_03') return;
    setHeader(h, 'x-ratelimit-limit', String(b.cfg.maxTokens));
    setHeader(h, 'x-ratelimit-remaining', String(b.tokens));
    setHeader(h, 'x-ratelimit-reset', String(b.secondsToNextFill()));
  }
}

export function localRateLimitFactory(random: () => number = Math.random): HttpFilterFactory<LocalRateLimitConfig> {
  return {
    typeName: LOCAL_RATELIMIT_TYPE_NAME,
    decode: decodeLocalRateLimit,
    decodePerRoute: decodeLocalRateLimit,
    create(config: LocalRateLimitConfig, callbacks: HttpFilterCallbacks): HttpFilter {
      return new LocalRateLimitFilter(config, callbacks, random);
    },
  };
}
