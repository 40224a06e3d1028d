/**
 * Active health checking of one cluster (Envoy's HealthCheckerImplBase): a probe per host on its
 * own timer, with Envoy's thresholds and intervals, feeding `host.failedActiveHealthCheck` and the
 * cluster's `healthChanged()`.
 *
 * Envoy's rules, followed here:
 *  - A host added to an actively checked cluster starts as failed (FAILED_ACTIVE_HC, pending its
 *    first check), and is checked at once. The first success marks it healthy immediately — the
 *    healthy_threshold applies only after that — so hosts come into rotation within one probe.
 *    Until then they are out of the healthy set; if no host at all is healthy yet, the priority
 *    set's panic mode still spreads traffic over all of them, as Envoy's does.
 *  - A wrong answer (unexpected HTTP status, gRPC NOT_SERVING or error status) marks a healthy
 *    host failed at once, as Envoy's "active" failures do; network failures (connect failure,
 *    reset, timeout, TCP payload never received) need unhealthy_threshold in a row.
 *    healthy_threshold consecutive successes bring a failed host back.
 *  - Next check after: `no_traffic_interval` while the cluster has never carried traffic,
 *    otherwise `unhealthy_interval` (default: interval) for failed hosts and `interval` for
 *    healthy ones; plus `interval_jitter` (random 0..jitter) and `interval_jitter_percent` of the
 *    interval.
 *  - Only one health checker per cluster (Envoy refuses several).
 *
 * Leans towards keeping traffic flowing: a probe never touches the data-plane pools; all state
 * lives in a small per-host session object; stop() clears every timer and client.
 */
import type { HealthCheckConfig } from '../../config/types';
import { logger } from '../../../common/logger';
import type { Host } from '../host';
import type { ClusterStats, TransportSocketFactory } from '../types';
import { GrpcProber, probeHttp, probeTcp } from './probes';

const log = logger('health_check');

/** Envoy's health_check.* cluster counters. */
export class HealthCheckStats {
  attempt = 0;
  success = 0;
  failure = 0;
  networkFailure = 0;
  verifyCluster = 0;
  healthy = 0;
}

/** What the checker needs from its cluster. */
export interface HealthCheckTarget {
  readonly name: string;
  readonly hosts: readonly Host[];
  readonly transport: TransportSocketFactory;
  /** The host's own socket (transport_socket_matches); `transport` when absent. */
  transportFor?(host: Host): TransportSocketFactory;
  readonly stats: ClusterStats;
  healthChanged(): void;
}

export interface HealthCheckerOptions {
  readonly random?: () => number;
  /** Called after every probe (tests, event log). */
  readonly onResult?: (host: Host, healthy: boolean, detail: string) => void;
}

class HostSession {
  timer: NodeJS.Timeout | undefined;
  /** No probe has completed yet (Envoy's PENDING_ACTIVE_HC). */
  pending = true;
  consecutiveOk = 0;
  consecutiveFail = 0;
  inFlight = false;
  stopped = false;
  constructor(readonly host: Host) {}
}

function onTimer(c: HealthChecker, s: HostSession): void {
  c.runCheck(s);
}

export class HealthChecker {
  readonly stats = new HealthCheckStats();
  private readonly sessions = new Map<Host, HostSession>();
  private readonly grpc: GrpcProber | undefined;
  private running = false;
  private readonly random: () => number;

  constructor(
    private readonly target: HealthCheckTarget,
    readonly config: HealthCheckConfig,
    private readonly opts: HealthCheckerOptions = {},
  ) {
    this.random = opts.random ?? Math.random;
    this.grpc = config.check.kind === 'grpc' ? new GrpcProber() : undefined;
  }

  /** Begin checking every current host (each marked failed until its first success). */
  start(): void {
    if (this.running) return;
    this.running = true;
    this.hostsChanged(this.target.hosts, []);
  }

  /** Membership changed: start sessions for added hosts, stop those of removed ones. */
  hostsChanged(added: readonly Host[], removed: readonly Host[]): void {
    if (!this.running) return;
    let changed = false;
    for (const h of added) {
      if (this.sessions.has(h)) continue;
      const s = new HostSession(h);
      this.sessions.set(h, s);
      if (!h.failedActiveHealthCheck) {
        h.failedActiveHealthCheck = true;
        changed = true;
      }
      this.runCheck(s);
    }
    for (const h of removed) {
      const s = this.sessions.get(h);
      if (s === undefined) continue;
      this.stopSession(s);
      this.sessions.delete(h);
      this.grpc?.forget(h);
    }
    if (changed) this.target.healthChanged();
  }

  stop(): void {
    this.running = false;
    for (const s of this.sessions.values()) this.stopSession(s);
    this.sessions.clear();
    this.grpc?.close();
  }

  private stopSession(s: HostSession): void {
    s.stopped = true;
    if (s.timer !== undefined) clearTimeout(s.timer);
    s.timer = undefined;
  }

  /** Run one probe for a host now (timer callback). */
  runCheck(s: HostSession): void {
    s.timer = undefined;
    if (s.stopped || s.inFlight) return;
    s.inFlight = true;
    this.stats.attempt++;
    const cfg = this.config;
    const check = cfg.check;
    let reported = false;
    const cb = (healthy: boolean, detail: string, active?: boolean): void => {
      if (reported) return;
      reported = true;
      this.onResult(s, healthy, detail, active === true);
    };
    try {
      switch (check.kind) {
        case 'tcp':
          probeTcp(this.target.transportFor?.(s.host) ?? this.target.transport, s.host, check, cfg.timeoutMs, cb);
          break;
        case 'http':
          probeHttp(this.target.transportFor?.(s.host) ?? this.target.transport, s.host, check, this.target.name, cfg.timeoutMs, cb);
          break;
        case 'grpc':
          this.grpc!.probe(s.host, check, cfg.timeoutMs, cb, this.target.transportFor?.(s.host) ?? this.target.transport);
          break;
      }
    } catch (err) {
      // A probe that cannot even start (bad target, socket error thrown synchronously) is a
      // failed check, never a crash of the data plane.
      cb(false, `probe error: ${(err as Error).message}`);
    }
  }

  private onResult(s: HostSession, healthy: boolean, detail: string, active: boolean): void {
    s.inFlight = false;
    if (s.stopped) return;
    const h = s.host;
    const cfg = this.config;
    let changed = false;
    if (healthy) {
      this.stats.success++;
      s.consecutiveFail = 0;
      s.consecutiveOk++;
      if (h.failedActiveHealthCheck && (s.pending || s.consecutiveOk >= Math.max(1, cfg.healthyThreshold))) {
        h.failedActiveHealthCheck = false;
        changed = true;
      }
    } else {
      this.stats.failure++;
      if (!active) this.stats.networkFailure++;
      s.consecutiveOk = 0;
      s.consecutiveFail++;
      // Envoy: a wrong answer (active failure) marks the host unhealthy at once; network
      // failures need unhealthy_threshold in a row.
      if (!h.failedActiveHealthCheck && (active || s.consecutiveFail >= Math.max(1, cfg.unhealthyThreshold))) {
        h.failedActiveHealthCheck = true;
        changed = true;
      }
    }
    s.pending = false;
    this.opts.onResult?.(h, healthy, detail);
    if (changed) {
      if (log.isLevelEnabled('info')) {
        log.info(
          { cluster: this.target.name, host: h.key, healthy: !h.failedActiveHealthCheck, detail },
          'health check changed host health',
        );
      }
      this.target.healthChanged();
    }
    if (this.running && !s.stopped) s.timer = setTimeout(onTimer, this.nextIntervalMs(h), this, s);
  }

  /** Envoy's interval choice plus jitter. */
  nextIntervalMs(h: Host): number {
    const cfg = this.config;
    const st = this.target.stats;
    let base: number;
    if (st.upstreamCxTotal === 0 && st.upstreamRqTotal === 0) base = cfg.noTrafficIntervalMs;
    else if (h.failedActiveHealthCheck) base = cfg.unhealthyIntervalMs ?? cfg.intervalMs;
    else base = cfg.intervalMs;
    let jitter = 0;
    if (cfg.intervalJitterMs > 0) jitter += Math.floor(this.random() * cfg.intervalJitterMs);
    if (cfg.intervalJitterPercent > 0) jitter += Math.floor((this.random() * cfg.intervalJitterPercent * base) / 100);
    return base + jitter;
  }

  /** Hosts currently tracked (tests, admin). */
  get hostCount(): number {
    return this.sessions.size;
  }
}
