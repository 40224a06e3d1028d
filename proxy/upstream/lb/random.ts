/**
 * RANDOM: pick a host uniformly, or in proportion to weight when weights differ (cumulative
 * weights + binary search). Cheapest policy there is; no per-host state. The cumulative table is
 * built once per rebuild; `pick` does not allocate.
 */
import type { ClusterConfig } from '../../config/types';
import type { Host } from '../host';
import { firstNotAvoided, isAvoided } from './hash';
import { equalWeights, hostWeight } from './round-robin';
import type { LbContext, LoadBalancer, LoadBalancerFactory } from './types';

export class RandomLoadBalancer implements LoadBalancer {
  private readonly hosts: readonly Host[];
  /** Cumulative weights, or undefined when all weights are equal. */
  private readonly cumulative: Float64Array | undefined;

  constructor(
    hosts: readonly Host[],
    private readonly random: () => number = Math.random,
  ) {
    this.hosts = hosts.slice();
    if (this.hosts.length > 1 && !equalWeights(this.hosts)) {
      const c = new Float64Array(this.hosts.length);
      let acc = 0;
      for (let i = 0; i < this.hosts.length; i++) {
        acc += hostWeight(this.hosts[i]);
        c[i] = acc;
      }
      this.cumulative = c;
    }
  }

  pick(ctx: LbContext | undefined): Host | undefined {
    const n = this.hosts.length;
    if (n === 0) return undefined;
    const avoid = ctx?.avoid;
    let h = this.hosts[this.index()];
    for (let attempt = 1; attempt < n && isAvoided(h, avoid); attempt++) h = this.hosts[this.index()];
    return isAvoided(h, avoid) ? firstNotAvoided(this.hosts, avoid, Math.floor(this.random() * n), h) : h;
  }

  private index(): number {
    const c = this.cumulative;
    if (c === undefined) return Math.floor(this.random() * this.hosts.length);
    const target = this.random() * c[c.length - 1];
    let lo = 0;
    let hi = c.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (c[mid] > target) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  }
}

export const randomFactory: LoadBalancerFactory = {
  name: 'RANDOM',
  create(hosts: readonly Host[], _config: ClusterConfig): LoadBalancer {
    return new RandomLoadBalancer(hosts);
  },
};
