/**
 * Reconnect backoff for the ADS stream: exponential with jitter ("equal jitter"), capped, reset once a stream
 * has received a response (Envoy's JitteredExponentialBackOffStrategy, gRPC's connection backoff).
 *
 * Leans towards spreading load: every delay is uniformly random in [base·2^n / 2, base·2^n], so a
 * fleet of sidecars that lost the control plane together does not reconnect together.
 */

import { MeshletError } from '../common/errors';

export interface BackoffOptions {
  /** First delay ceiling in ms (default 1000). */
  readonly baseMs?: number;
  /** Maximum delay in ms (default 30000). */
  readonly maxMs?: number;
  /** Random source in [0, 1) (default Math.random); injectable for tests. */
  readonly random?: () => number;
}

export class ExponentialBackoff {
  private readonly baseMs: number;
  private readonly maxMs: number;
  private readonly random: () => number;
  private attempt = 0;

  constructor(opts: BackoffOptions = {}) {
    this.baseMs = opts.baseMs ?? 1000;
    this.maxMs = opts.maxMs ?? 30_000;
    this.random = opts.random ?? Math.random;
    if (!(this.baseMs > 0) || !(this.maxMs >= this.baseMs)) {
      throw new MeshletError(
        'MESHLET_ERR_CONFIG',
        `backoff: need 0 < baseMs <= maxMs (got ${this.baseMs}, ${this.maxMs})`,
      );
    }
  }

  /** The next delay in ms; each call doubles the ceiling up to maxMs. */
  next(): number {
    const ceiling = Math.min(this.maxMs, this.baseMs * 2 ** Math.min(this.attempt, 30));
    this.attempt++;
    return Math.round(ceiling / 2 + this.random() * (ceiling / 2));
  }

  /** Start over from baseMs (after a stream proved healthy). */
  reset(): void {
    this.attempt = 0;
  }

  /** Number of delays handed out since the last reset. */
  get attempts(): number {
    return this.attempt;
  }
}
