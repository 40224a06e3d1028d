/**
 * Retry policy evaluation (Envoy's RetryStateImpl reduced to what meshlet supports), against the
 * one list of retry_on conditions (RETRY_ON in config/model/route.ts, which the route decoder
 * accepts too): which failures are retriable, how many retries remain, the retries circuit breaker, the
 * jittered exponential back-off, and the x-envoy-* request headers that adjust the policy.
 */
import { type HeaderMatcher, RETRY_ON, type RetryOn, type RetryPolicy } from '../../config/types';
import type { UpstreamCluster } from '../../upstream/types';
import type { HeaderList, ResetReason } from '../codec';
import { getHeader, getHeaderJoined } from '../headers';
import { matchHeaderValue } from '../route-matcher';

const RETRY_ON_SET: ReadonlySet<string> = new Set(RETRY_ON);

/** Outcome of asking the retry state whether to retry. */
export const RetryDecision = { No: 0, Yes: 1, NoLimitExceeded: 2, NoOverflow: 3 } as const;
export type RetryDecision = (typeof RetryDecision)[keyof typeof RetryDecision];

/**
 * One stream's retry state: which failures are retriable under retry_on, how many retries
 * remain, and the back-off (`random(0, min(base × 2^n, max))`, defaults 25 ms / 250 ms).
 */
export class RetryState {
  retriesUsed = 0;

  constructor(
    readonly policy: RetryPolicy,
    private readonly random: () => number = Math.random,
  ) {}

  /**
   * Would a response be retried under retry_on: its `status`, the grpc-status from its headers
   * (-1 = none), and for retriable-headers its headers against retriable_headers?
   */
  retriableStatus(status: number, grpcStatus: number, headers?: HeaderList): boolean {
    const on = this.policy.retryOn;
    if (headers !== undefined && on.has('retriable-headers') && matchesAny(this.policy.retriableHeaders, status, headers))
      return true;
    if (on.has('5xx') && status >= 500) return true;
    if (on.has('gateway-error') && (status === 502 || status === 503 || status === 504)) return true;
    if (on.has('retriable-4xx') && status === 409) return true;
    if (on.has('retriable-status-codes') && this.policy.retriableStatusCodes.includes(status)) return true;
    if (grpcStatus >= 0) {
      if (on.has('cancelled') && grpcStatus === 1) return true;
      if (on.has('deadline-exceeded') && grpcStatus === 4) return true;
      if (on.has('resource-exhausted') && grpcStatus === 8) return true;
      if (on.has('internal') && grpcStatus === 13) return true;
      if (on.has('unavailable') && grpcStatus === 14) return true;
    }
    return false;
  }

  /** Would a reset/connect failure of this kind be retried under retry_on? Overflow never is. */
  retriableReset(reason: ResetReason): boolean {
    if (reason === 'overflow') return false;
    const on = this.policy.retryOn;
    if (on.has('5xx') || on.has('gateway-error') || on.has('reset')) return true;
    if (on.has('connect-failure') && (reason === 'connect_failure' || reason === 'timeout' || reason === 'tls_failure'))
      return true;
    if (on.has('refused-stream') && reason === 'refused_stream') return true;
    return false;
  }

  /** A per-try timeout counts as a 504-like failure (Envoy retries it under 5xx/gateway-error/reset). */
  retriableTimeout(): boolean {
    const on = this.policy.retryOn;
    return on.has('5xx') || on.has('gateway-error') || on.has('reset');
  }

  /** Given a retriable failure: may we retry (retry count, then the cluster's retry resource)? */
  decide(cluster: UpstreamCluster): RetryDecision {
    if (this.retriesUsed >= this.policy.numRetries) return RetryDecision.NoLimitExceeded;
    if (!cluster.resources.retries.canCreate()) {
      cluster.stats.upstreamRqRetryOverflow++;
      return RetryDecision.NoOverflow;
    }
    this.retriesUsed++;
    return RetryDecision.Yes;
  }

  /** Jittered exponential back-off before retry number `retriesUsed` (1-based). */
  backOffMs(): number {
    const base = this.policy.backOffBaseMs > 0 ? this.policy.backOffBaseMs : 25;
    const max = this.policy.backOffMaxMs > 0 ? this.policy.backOffMaxMs : base * 10;
    const ceiling = Math.min(base * 2 ** Math.max(0, this.retriesUsed - 1), max);
    return Math.floor(this.random() * ceiling);
  }
}

/** Whether any matcher matches the response (`:status` is the status code, as in Envoy). */
function matchesAny(ms: readonly HeaderMatcher[], status: number, h: HeaderList): boolean {
  for (let i = 0; i < ms.length; i++) {
    const m = ms[i]!;
    if (matchHeaderValue(m, m.name === ':status' ? String(status) : getHeaderJoined(h, m.name))) return true;
  }
  return false;
}

const DIGITS = /^\d+$/;

/** Whether `s` is a plain decimal number (x-envoy-* timeout and count headers). */
export function isDigits(s: string): boolean {
  return DIGITS.test(s);
}

/** Control headers the router consumes and never forwards (Envoy removes them too). */
export const ENVOY_REQUEST_CONTROL_HEADERS: readonly string[] = [
  'x-envoy-upstream-rq-timeout-ms',
  'x-envoy-upstream-rq-per-try-timeout-ms',
  'x-envoy-retry-on',
  'x-envoy-retry-grpc-on',
  'x-envoy-max-retries',
  'x-envoy-retriable-status-codes',
  'x-envoy-retriable-header-names',
];

/**
 * Envoy's request-header retry controls from trusted clients: x-envoy-retry-on and
 * x-envoy-retry-grpc-on add conditions, x-envoy-retriable-status-codes and
 * x-envoy-retriable-header-names add to the lists, x-envoy-max-retries and
 * x-envoy-upstream-rq-per-try-timeout-ms override. Allocates only when such a header is present.
 */
export function retryPolicyFromHeaders(h: HeaderList, base: RetryPolicy | undefined): RetryPolicy | undefined {
  const on = getHeader(h, 'x-envoy-retry-on');
  const grpcOn = getHeader(h, 'x-envoy-retry-grpc-on');
  const max = getHeader(h, 'x-envoy-max-retries');
  const codes = getHeader(h, 'x-envoy-retriable-status-codes');
  const perTry = getHeader(h, 'x-envoy-upstream-rq-per-try-timeout-ms');
  const names = getHeader(h, 'x-envoy-retriable-header-names');
  if (
    on === undefined &&
    grpcOn === undefined &&
    max === undefined &&
    codes === undefined &&
    perTry === undefined &&
    names === undefined
  )
    return base;
  const retryOn = new Set<RetryOn>(base?.retryOn ?? []);
  for (const list of [on, grpcOn]) {
    if (list === undefined) continue;
    for (const raw of list.split(',')) {
      const c = raw.trim();
      if (RETRY_ON_SET.has(c)) retryOn.add(c as RetryOn);
    }
  }
  if (retryOn.size === 0) return base;
  const retriableStatusCodes = [...(base?.retriableStatusCodes ?? [])];
  if (codes !== undefined) {
    for (const raw of codes.split(',')) {
      const n = Number(raw.trim());
      if (Number.isInteger(n) && n >= 100 && n <= 599) retriableStatusCodes.push(n);
    }
  }
  const retriableHeaders = [...(base?.retriableHeaders ?? [])];
  if (names !== undefined) {
    // Envoy: each name listed in x-envoy-retriable-header-names retries a response carrying it.
    for (const raw of names.split(',')) {
      const name = raw.trim().toLowerCase();
      if (name !== '') retriableHeaders.push(presentMatcher(name));
    }
  }
  return {
    retryOn,
    // Envoy: a retry policy from headers alone defaults to one retry.
    numRetries: max !== undefined && DIGITS.test(max) ? Number(max) : (base?.numRetries ?? 1),
    perTryTimeoutMs: perTry !== undefined && DIGITS.test(perTry) ? Number(perTry) : (base?.perTryTimeoutMs ?? 0),
    retriableStatusCodes,
    retriableHeaders,
    avoidPreviousHosts: base?.avoidPreviousHosts ?? false,
    hostSelectionRetryMaxAttempts: base?.hostSelectionRetryMaxAttempts ?? 1,
    backOffBaseMs: base?.backOffBaseMs ?? 25,
    backOffMaxMs: base?.backOffMaxMs ?? 250,
  };
}

function presentMatcher(name: string): HeaderMatcher {
  return { name, match: { kind: 'present', present: true }, invert: false, treatMissingAsEmpty: false };
}
