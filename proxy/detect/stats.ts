/**
 * Protocol detection numbers: how long the one-read detection took (a histogram in ms) and what it
 * decided (TLS, HTTP/2, HTTP/1.x, opaque, timed out, closed, or skipped because the inspectors are
 * disabled for the port). Kept per listener and process-wide; plain counters that the telemetry
 * module exports (Envoy has no standard name for these; meshlet's Prometheus names are suggested
 * in `PROMETHEUS_NAMES`).
 *
 * Leans towards the hot path: observe() is a few array writes, no allocation, no labels built.
 */
import type { Sniffed } from '../listeners/types';

/** Histogram bucket upper bounds, ms (Envoy's default histogram buckets, in ms). */
export const DETECTION_BUCKETS_MS: readonly number[] = [0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000];

export type DetectionOutcome = 'tls' | 'h2' | 'http1' | 'opaque' | 'timeout' | 'closed' | 'skipped';

/** Suggested metric names for the telemetry exporter. */
export const PROMETHEUS_NAMES = {
  duration: 'meshlet_protocol_detection_duration_milliseconds',
  total: 'meshlet_protocol_detection_total',
} as const;

export class ProtocolDetectionStats {
  /** Per-bucket (not cumulative) counts; the last slot is +Inf. */
  readonly buckets: number[] = new Array(DETECTION_BUCKETS_MS.length + 1).fill(0);
  sumMs = 0;
  count = 0;
  readonly outcomes: Record<DetectionOutcome, number> = { tls: 0, h2: 0, http1: 0, opaque: 0, timeout: 0, closed: 0, skipped: 0 };

  constructor(private readonly parent?: ProtocolDetectionStats) {}

  /** A finished detection: how long it took and what it found. */
  observe(ms: number, outcome: DetectionOutcome): void {
    let i = 0;
    const n = DETECTION_BUCKETS_MS.length;
    while (i < n && ms > DETECTION_BUCKETS_MS[i]!) i++;
    this.buckets[i]!++;
    this.sumMs += ms;
    this.count++;
    this.outcomes[outcome]++;
    this.parent?.observe(ms, outcome);
  }

  /** Detection did not run: the inspectors are disabled for this destination port. */
  skipped(): void {
    this.outcomes.skipped++;
    this.parent?.skipped();
  }

  /** Cumulative buckets as Prometheus wants them: [le, count] pairs, +Inf last. */
  cumulative(): [number, number][] {
    const out: [number, number][] = [];
    let acc = 0;
    for (let i = 0; i < this.buckets.length; i++) {
      acc += this.buckets[i]!;
      out.push([i < DETECTION_BUCKETS_MS.length ? DETECTION_BUCKETS_MS[i]! : Number.POSITIVE_INFINITY, acc]);
    }
    return out;
  }
}

/** Outcome of a detection from what sniff() reported. */
export function outcomeOf(s: Sniffed | undefined, timedOut: boolean): DetectionOutcome {
  if (s === undefined) return timedOut ? 'timeout' : 'closed';
  if (s.transport === 'tls') return 'tls';
  if (s.application === 'h2') return 'h2';
  if (s.application !== undefined) return 'http1';
  return 'opaque';
}

/** Process-wide totals across listeners. */
export const protocolDetection = new ProtocolDetectionStats();
