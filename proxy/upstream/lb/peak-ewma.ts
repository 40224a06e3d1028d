/**
 * PEAK_EWMA, linkerd2-proxy's default balancer: power of two choices comparing
 * `cost = rtt_estimate × (active_requests + 1)`.
 *
 * The RTT estimate is peak-sensitive: a slower observation replaces the estimate at once, a faster
 * one is blended in with weight `1 - e^(-elapsed/decay)` (decay default 10 s). When reading the
 * cost the estimate is decayed towards zero by the time since its last update, so a host that was
 * slow a while ago is tried again. Hosts never observed cost `default_rtt` (30 ms, linkerd's
 * default). State lives on the Host (`ewmaRttMs`, `ewmaStamp`), so it survives balancer rebuilds;
 * the router feeds it through `UpstreamCluster.observeRtt`. `pick` does not allocate.
 */
import { performance } from 'node:perf_hooks';
import type { ClusterConfig } from '../../config/types';
import type { Host } from '../host';
import { isAvoided } from './hash';
import type { LbContext, LoadBalancer, LoadBalancerFactory } from './types';

export const DEFAULT_DECAY_MS = 10_000;
export const DEFAULT_RTT_MS = 30;

/** Fold one round-trip observation into the host's peak-EWMA estimate. */
export function observeRtt(
  host: Host,
  rttMs: number,
  decayMs: number = DEFAULT_DECAY_MS,
  now: number = performance.now(),
): void {
  const rtt = Math.max(rttMs, 0);
  const prev = host.ewmaRttMs;
  if (host.ewmaStamp === 0 && prev === 0) {
    host.ewmaRttMs = rtt;
  } else if (rtt > prev) {
    host.ewmaRttMs = rtt;
  } else {
    const elapsed = now > host.ewmaStamp ? now - host.ewmaStamp : 0;
    const w = Math.exp(-elapsed / decayMs);
    host.ewmaRttMs = prev * w + rtt * (1 - w);
  }
  host.ewmaStamp = now > 0 ? now : Number.MIN_VALUE;
}

/** The host's current cost: decayed RTT estimate × (active requests + 1). */
export function peakEwmaCost(host: Host, now: number, decayMs: number, defaultRttMs: number): number {
  let rtt: number;
  if (host.ewmaStamp === 0) rtt = defaultRttMs;
  else {
    const elapsed = now > host.ewmaStamp ? now - host.ewmaStamp : 0;
    rtt = host.ewmaRttMs * Math.exp(-elapsed / decayMs);
  }
  return rtt * (host.activeRequests + 1);
}

export class PeakEwmaLoadBalancer implements LoadBalancer {
  private readonly hosts: readonly Host[];

  constructor(
    hosts: readonly Host[],
    private readonly decayMs: number = DEFAULT_DECAY_MS,
    private readonly defaultRttMs: number = DEFAULT_RTT_MS,
    private readonly random: () => number = Math.random,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.hosts = hosts.slice();
  }

  pick(ctx: LbContext | undefined): Host | undefined {
    const hosts = this.hosts;
    const n = hosts.length;
    if (n === 0) return undefined;
    if (n === 1) return hosts[0];
    const avoid = ctx?.avoid;
    const i = Math.floor(this.random() * n);
    let j = Math.floor(this.random() * (n - 1));
    if (j >= i) j++;
    const a = hosts[i];
    const b = hosts[j];
    const aAvoid = isAvoided(a, avoid);
    const bAvoid = isAvoided(b, avoid);
    if (aAvoid !== bAvoid) return aAvoid ? b : a;
    if (aAvoid) {
      // Both sampled hosts are to be avoided: take the first other host that is not.
      for (let k = 0; k < n; k++) {
        const h = hosts[(i + k) % n];
        if (!isAvoided(h, avoid)) return h;
      }
      return a;
    }
    const now = this.now();
    const ca = peakEwmaCost(a, now, this.decayMs, this.defaultRttMs);
    const cb = peakEwmaCost(b, now, this.decayMs, this.defaultRttMs);
    return cb < ca ? b : a;
  }
}

export const peakEwmaFactory: LoadBalancerFactory = {
  name: 'PEAK_EWMA',
  create(hosts: readonly Host[], config: ClusterConfig): LoadBalancer {
    const pe = config.lbConfig.peakEwma;
    return new PeakEwmaLoadBalancer(hosts, pe?.decayMs ?? DEFAULT_DECAY_MS, pe?.defaultRttMs ?? DEFAULT_RTT_MS);
  },
};
