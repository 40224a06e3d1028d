/**
 * One drain sequence, Envoy's DrainManagerImpl: started at a moment, over the drain time
 * (--drain-time-s), with a strategy (--drain-strategy). The connection manager asks it on every
 * response whether to close the connection after it (Envoy's `drainClose()`), and when to start a
 * live connection's drain on its own (Envoy's on-drain callbacks: HTTP/2 sends GOAWAY, HTTP/1.1
 * answers its next request with `Connection: close`).
 *
 * - `immediate`: every response closes; every connection starts draining at once.
 * - `gradual` (Envoy's default): the chance that a response closes grows linearly from 0 at the
 *   start to 1 at the deadline, and connections start draining at random moments in the first
 *   quarter of what is left, so that clients do not all reconnect in the same instant.
 */
import type { DrainDecision } from './types';

export type DrainStrategy = 'gradual' | 'immediate';

export class DrainSequence implements DrainDecision {
  readonly startedAt: number;
  readonly deadline: number;

  constructor(
    readonly drainTimeMs: number,
    readonly strategy: DrainStrategy = 'gradual',
    private readonly random: () => number = Math.random,
    private readonly now: () => number = Date.now,
  ) {
    this.startedAt = now();
    this.deadline = this.startedAt + Math.max(0, drainTimeMs);
  }

  drainClose(): boolean {
    if (this.strategy === 'immediate' || this.drainTimeMs <= 0) return true;
    const elapsed = this.now() - this.startedAt;
    if (elapsed >= this.drainTimeMs) return true;
    // P(close) = elapsed / drain time.
    return elapsed > this.random() * this.drainTimeMs;
  }

  noticeDelayMs(): number {
    if (this.strategy === 'immediate') return 0;
    const left = this.deadline - this.now();
    return left <= 0 ? 0 : Math.floor((this.random() * left) / 4);
  }
}

/** Drain now: the decision for a listener that is removed, a chain that is replaced, or a drain without a time. */
export const DRAIN_NOW: DrainDecision = {
  drainClose: () => true,
  noticeDelayMs: () => 0,
};
