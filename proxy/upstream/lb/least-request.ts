/**
 * LEAST_REQUEST, as Envoy does it. Equal weights: sample `choice_count` hosts at random (default
 * 2, "power of two choices", with replacement like Envoy) and take the one with the fewest
 * active requests. Unequal weights: an EDF schedule where each host's weight is re-evaluated as
 * `weight / (active_requests + 1)^bias` every time it is queued again (active_request_bias is 1,
 * Envoy's default; meshlet's config does not expose it).
 *
 * Reads `Host.activeRequests`, which the router maintains. `pick` does not allocate.
 */
import type { ClusterConfig } from '../../config/types';
import type { Host } from '../host';
import { firstNotAvoided, isAvoided } from './hash';
import { EdfScheduler, equalWeights, hostWeight } from './round-robin';
import type { LbContext, LoadBalancer, LoadBalancerFactory } from './types';

/** Envoy's default choice_count. */
export const DEFAULT_CHOICE_COUNT = 2;

export class LeastRequestLoadBalancer implements LoadBalancer {
  private readonly hosts: readonly Host[];
  private readonly edf: EdfScheduler | undefined;

  constructor(
    hosts: readonly Host[],
    private readonly choiceCount: number = DEFAULT_CHOICE_COUNT,
    private readonly random: () => number = Math.random,
  ) {
    this.hosts = hosts.slice();
    if (this.hosts.length > 1 && !equalWeights(this.hosts)) {
      const list = this.hosts;
      this.edf = new EdfScheduler(list.length, (i) => hostWeight(list[i]) / (list[i].activeRequests + 1));
    }
  }

  pick(ctx: LbContext | undefined): Host | undefined {
    const n = this.hosts.length;
    if (n === 0) return undefined;
    if (n === 1) return this.hosts[0];
    const avoid = ctx?.avoid;
    let h = this.pickOne(avoid);
    for (let attempt = 1; attempt < n && isAvoided(h, avoid); attempt++) h = this.pickOne(avoid);
    return isAvoided(h, avoid) ? firstNotAvoided(this.hosts, avoid, Math.floor(this.random() * n), h) : h;
  }

  private pickOne(avoid: readonly Host[] | undefined): Host {
    if (this.edf !== undefined) return this.hosts[this.edf.pick()];
    const hosts = this.hosts;
    const n = hosts.length;
    let best: Host | undefined;
    for (let c = 0; c < this.choiceCount; c++) {
      const s = hosts[Math.floor(this.random() * n)];
      if (
        best === undefined ||
        (isAvoided(best, avoid) && !isAvoided(s, avoid)) ||
        (s.activeRequests < best.activeRequests && !isAvoided(s, avoid))
      ) {
        best = s;
      }
    }
    return best as Host;
  }
}

export const leastRequestFactory: LoadBalancerFactory = {
  name: 'LEAST_REQUEST',
  create(hosts: readonly Host[], config: ClusterConfig): LoadBalancer {
    const cc = config.lbConfig.leastRequest?.choiceCount;
    return new LeastRequestLoadBalancer(hosts, cc !== undefined && cc >= 2 ? cc : DEFAULT_CHOICE_COUNT);
  },
};
