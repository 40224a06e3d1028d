/**
 * Outlier detection (Envoy's `outlier_detection`, DetectorImpl): passive health from the results
 * the router reports for every upstream attempt.
 *
 *  - consecutive_5xx: N 5xx results in a row (gateway failures and connect failures included)
 *    eject the host, enforced for `enforcing_consecutive_5xx` % of detections (default 100).
 *  - consecutive_gateway_failure: N 502/503/504 or local-origin failures (connect failure, reset,
 *    timeout) in a row, enforced for `enforcing_consecutive_gateway_failure` % (Envoy default 0:
 *    detected and counted, not enforced).
 *  - success rate, on every `interval`: among hosts with at least `success_rate_request_volume`
 *    requests in the interval, when there are at least `success_rate_minimum_hosts` of them, a
 *    host below `mean − stdev × success_rate_stdev_factor / 1000` is ejected
 *    (`enforcing_success_rate` %, default 100).
 *  - An ejection lasts `base_ejection_time × times ejected`, capped at `max_ejection_time`, and
 *    is lifted on the first interval tick after it elapsed; every interval a host spends
 *    un-ejected lowers its ejection count by one (Envoy ≥ 1.20).
 *  - At most `max_ejection_percent` of the hosts are ejected at once, but one host may always
 *    be ejected (Envoy's documented rule); refusals count as ejections_overflow.
 *
 * Without split_external_local_origin_errors (the only mode meshlet implements) local-origin
 * failures are folded into the 5xx stream as Envoy does: connect failure / reset → 503,
 * timeout → 504. The panic threshold lives in the priority set: if too many hosts are out, the
 * level balances over all of them again.
 *
 * Leans cheap on the hot path: `report` is one Map lookup and a few integer updates; all
 * statistics work happens on the interval timer.
 */
import type { OutlierDetectionConfig } from '../config/types';
import type { Host } from './host';

/** Envoy's outlier_detection.* counters. */
export class OutlierStats {
  ejectionsActive = 0;
  ejectionsTotal = 0;
  ejectionsOverflow = 0;
  ejectionsDetectedConsecutive5xx = 0;
  ejectionsEnforcedConsecutive5xx = 0;
  ejectionsDetectedConsecutiveGatewayFailure = 0;
  ejectionsEnforcedConsecutiveGatewayFailure = 0;
  ejectionsDetectedSuccessRate = 0;
  ejectionsEnforcedSuccessRate = 0;
}

/** Per-host detector state. */
class HostMonitor {
  consecutive5xx = 0;
  consecutiveGateway = 0;
  /** Requests and successes in the current interval (success-rate ejection). */
  total = 0;
  success = 0;
  /** How many times ejected (ejection time multiplier). */
  numEjections = 0;
  /** When the current ejection started (ms); 0 = not ejected. */
  ejectedAt = 0;
  constructor(readonly host: Host) {}
}

/** What the detector needs from its cluster. */
export interface OutlierTarget {
  readonly hosts: readonly Host[];
  /** Host health changed: rebuild the balancers. */
  healthChanged(): void;
}

export type EjectionType = 'consecutive_5xx' | 'consecutive_gateway_failure' | 'success_rate';

export interface OutlierOptions {
  readonly random?: () => number;
  readonly now?: () => number;
  /** Called on every ejection / un-ejection (event log, tests). */
  readonly onEvent?: (e: {
    readonly kind: 'eject' | 'uneject';
    readonly host: Host;
    readonly type?: EjectionType;
  }) => void;
}

export class OutlierDetector {
  readonly stats = new OutlierStats();
  private readonly monitors = new Map<Host, HostMonitor>();
  private timer: NodeJS.Timeout | undefined;
  private readonly random: () => number;
  private readonly now: () => number;

  constructor(
    private readonly target: OutlierTarget,
    readonly config: OutlierDetectionConfig,
    private readonly opts: OutlierOptions = {},
  ) {
    this.random = opts.random ?? Math.random;
    this.now = opts.now ?? Date.now;
    for (const h of target.hosts) this.monitors.set(h, new HostMonitor(h));
  }

  /** Start the interval timer (success rate, un-ejection). */
  start(): void {
    if (this.timer !== undefined) return;
    this.timer = setInterval(onInterval, this.config.intervalMs, this);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Membership changed: track new hosts, forget removed ones. */
  hostsChanged(added: readonly Host[], removed: readonly Host[]): void {
    for (const h of added) if (!this.monitors.has(h)) this.monitors.set(h, new HostMonitor(h));
    for (const h of removed) {
      const m = this.monitors.get(h);
      if (m === undefined) continue;
      if (m.ejectedAt !== 0 && this.stats.ejectionsActive > 0) this.stats.ejectionsActive--;
      this.monitors.delete(h);
    }
  }

  /**
   * The result of one upstream attempt to `host`: the HTTP status it answered, or the status a
   * local-origin failure maps to (503 connect failure / reset, 504 timeout). Hot path.
   */
  report(host: Host, status: number): void {
    const m = this.monitors.get(host);
    if (m === undefined) return;
    m.total++;
    if (status < 500) {
      m.success++;
      m.consecutive5xx = 0;
      m.consecutiveGateway = 0;
      return;
    }
    const cfg = this.config;
    if (status === 502 || status === 503 || status === 504) {
      m.consecutiveGateway++;
      if (cfg.consecutiveGatewayFailure > 0 && m.consecutiveGateway === cfg.consecutiveGatewayFailure) {
        this.stats.ejectionsDetectedConsecutiveGatewayFailure++;
        if (m.ejectedAt === 0 && this.roll(cfg.enforcingConsecutiveGatewayFailure)) {
          this.eject(m, 'consecutive_gateway_failure');
        }
      }
    } else {
      m.consecutiveGateway = 0;
    }
    m.consecutive5xx++;
    if (cfg.consecutive5xx > 0 && m.consecutive5xx === cfg.consecutive5xx) {
      this.stats.ejectionsDetectedConsecutive5xx++;
      if (m.ejectedAt === 0 && this.roll(cfg.enforcingConsecutive5xx)) this.eject(m, 'consecutive_5xx');
    }
  }

  /** Whether `host` is currently ejected by this detector. */
  isEjected(host: Host): boolean {
    return (this.monitors.get(host)?.ejectedAt ?? 0) !== 0;
  }

  /** Times `host` has been ejected (decays while healthy). */
  ejectionCount(host: Host): number {
    return this.monitors.get(host)?.numEjections ?? 0;
  }

  private roll(percent: number): boolean {
    if (percent >= 100) return true;
    if (percent <= 0) return false;
    return this.random() * 100 < percent;
  }

  private eject(m: HostMonitor, type: EjectionType): boolean {
    const total = this.monitors.size;
    const active = this.stats.ejectionsActive;
    if (active > 0 && ((active + 1) * 100) / total > this.config.maxEjectionPercent) {
      this.stats.ejectionsOverflow++;
      return false;
    }
    m.numEjections++;
    m.ejectedAt = this.now();
    m.consecutive5xx = 0;
    m.consecutiveGateway = 0;
    m.host.outlierEjected = true;
    this.stats.ejectionsActive++;
    this.stats.ejectionsTotal++;
    if (type === 'consecutive_5xx') this.stats.ejectionsEnforcedConsecutive5xx++;
    else if (type === 'consecutive_gateway_failure') this.stats.ejectionsEnforcedConsecutiveGatewayFailure++;
    else this.stats.ejectionsEnforcedSuccessRate++;
    this.opts.onEvent?.({ kind: 'eject', host: m.host, type });
    this.target.healthChanged();
    return true;
  }

  /** Ejection duration for a host ejected `n` times. */
  ejectionTimeMs(n: number): number {
    return Math.min(
      this.config.baseEjectionTimeMs * Math.max(1, n),
      Math.max(this.config.maxEjectionTimeMs, this.config.baseEjectionTimeMs),
    );
  }

  /** One interval tick: lift expired ejections, decay counts, run success-rate ejection. */
  onInterval(): void {
    const now = this.now();
    let changed = false;
    for (const m of this.monitors.values()) {
      if (m.ejectedAt !== 0) {
        if (now - m.ejectedAt >= this.ejectionTimeMs(m.numEjections)) {
          m.ejectedAt = 0;
          m.host.outlierEjected = false;
          if (this.stats.ejectionsActive > 0) this.stats.ejectionsActive--;
          changed = true;
          this.opts.onEvent?.({ kind: 'uneject', host: m.host });
        }
      } else if (m.numEjections > 0) {
        m.numEjections--;
      }
    }
    if (changed) this.target.healthChanged();
    this.successRate();
    for (const m of this.monitors.values()) {
      m.total = 0;
      m.success = 0;
    }
  }

  private successRate(): void {
    const cfg = this.config;
    const volume = cfg.successRateRequestVolume;
    let n = 0;
    let sum = 0;
    for (const m of this.monitors.values()) {
      if (m.ejectedAt === 0 && m.total >= volume && m.total > 0) {
        n++;
        sum += (m.success * 100) / m.total;
      }
    }
    if (n === 0 || n < cfg.successRateMinimumHosts) return;
    const mean = sum / n;
    let variance = 0;
    for (const m of this.monitors.values()) {
      if (m.ejectedAt === 0 && m.total >= volume && m.total > 0) {
        const d = (m.success * 100) / m.total - mean;
        variance += d * d;
      }
    }
    const stdev = Math.sqrt(variance / n);
    const threshold = mean - (stdev * cfg.successRateStdevFactor) / 1000;
    for (const m of this.monitors.values()) {
      if (m.ejectedAt !== 0 || m.total < volume || m.total === 0) continue;
      if ((m.success * 100) / m.total < threshold) {
        this.stats.ejectionsDetectedSuccessRate++;
        if (this.roll(cfg.enforcingSuccessRate)) this.eject(m, 'success_rate');
      }
    }
  }
}

function onInterval(d: OutlierDetector): void {
  d.onInterval();
}
