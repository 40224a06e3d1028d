/**
 * ROUND_ROBIN, as Envoy does it: equal weights rotate strictly through the hosts; unequal weights
 * use an earliest-deadline-first schedule (each host's next deadline is `now + 1/weight`), which
 * interleaves picks smoothly instead of sending a heavy host its whole share in a burst. The start
 * point is randomised per balancer instance so that many proxies do not all hit host 0 first.
 *
 * The EDF scheduler lives here and is reused by LEAST_REQUEST's weighted mode. It works over
 * typed arrays built once per rebuild; `pick` does not allocate.
 */
import type { ClusterConfig } from '../../config/types';
import type { Host } from '../host';
import { firstNotAvoided, isAvoided } from './hash';
import type { LbContext, LoadBalancer, LoadBalancerFactory } from './types';

/** Effective weight of a host: Envoy requires weight ≥ 1; be defensive about 0 anyway. */
export function hostWeight(h: Host): number {
  return h.weight > 0 ? h.weight : 1;
}

/** true when every host has the same weight (then strict rotation / plain P2C apply). */
export function equalWeights(hosts: readonly Host[]): boolean {
  for (let i = 1; i < hosts.length; i++) if (hostWeight(hosts[i]) !== hostWeight(hosts[0])) return false;
  return true;
}

/**
 * Earliest-deadline-first scheduler over host indices 0..n-1. `weightOf(i)` is asked each time an
 * index is re-queued, so dynamic weights (least-request's weight / (active+1)) take effect on the
 * next round without a rebuild. Ties go to the entry queued first, as in Envoy.
 */
export class EdfScheduler {
  private readonly heap: Int32Array;
  private readonly deadline: Float64Array;
  private readonly order: Float64Array;
  private seq = 0;
  private current = 0;

  constructor(
    private readonly n: number,
    private readonly weightOf: (i: number) => number,
  ) {
    this.heap = new Int32Array(n);
    this.deadline = new Float64Array(n);
    this.order = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      this.deadline[i] = 1 / weightOf(i);
      this.order[i] = this.seq++;
      this.heap[i] = i;
    }
    for (let i = (n >> 1) - 1; i >= 0; i--) this.siftDown(i);
  }

  /** The index with the earliest deadline; it is re-queued at `deadline + 1/weight`. */
  pick(): number {
    const i = this.heap[0];
    this.current = this.deadline[i];
    this.deadline[i] = this.current + 1 / this.weightOf(i);
    this.order[i] = this.seq++;
    this.siftDown(0);
    return i;
  }

  /** The index `pick` would return, without consuming it. */
  peek(): number {
    return this.heap[0];
  }

  private less(a: number, b: number): boolean {
    const da = this.deadline[a];
    const db = this.deadline[b];
    return da < db || (da === db && this.order[a] < this.order[b]);
  }

  private siftDown(pos: number): void {
    const heap = this.heap;
    const n = this.n;
    let p = pos;
    for (;;) {
      const l = 2 * p + 1;
      if (l >= n) return;
      const r = l + 1;
      const c = r < n && this.less(heap[r], heap[l]) ? r : l;
      if (!this.less(heap[c], heap[p])) return;
      const t = heap[p];
      heap[p] = heap[c];
      heap[c] = t;
      p = c;
    }
  }
}

export class RoundRobinLoadBalancer implements LoadBalancer {
  private readonly hosts: readonly Host[];
  private next: number;
  private readonly edf: EdfScheduler | undefined;

  constructor(hosts: readonly Host[], random: () => number = Math.random) {
    this.hosts = hosts.slice();
    const n = this.hosts.length;
    this.next = n > 0 ? Math.floor(random() * n) : 0;
    if (n > 1 && !equalWeights(this.hosts)) {
      const list = this.hosts;
      this.edf = new EdfScheduler(n, (i) => hostWeight(list[i]));
      // Randomise the start point like Envoy: consume a random number of picks up front.
      for (let k = this.next; k > 0; k--) this.edf.pick();
    }
  }

  pick(ctx: LbContext | undefined): Host | undefined {
    const n = this.hosts.length;
    if (n === 0) return undefined;
    const avoid = ctx?.avoid;
    let h = this.pickOne();
    for (let attempt = 1; attempt < n && isAvoided(h, avoid); attempt++) h = this.pickOne();
    return isAvoided(h, avoid) ? firstNotAvoided(this.hosts, avoid, this.next, h) : h;
  }

  private pickOne(): Host {
    if (this.edf !== undefined) return this.hosts[this.edf.pick()];
    const i = this.next;
    this.next = i + 1 === this.hosts.length ? 0 : i + 1;
    return this.hosts[i];
  }
}

export const roundRobinFactory: LoadBalancerFactory = {
  name: 'ROUND_ROBIN',
  create(hosts: readonly Host[], _config: ClusterConfig): LoadBalancer {
    return new RoundRobinLoadBalancer(hosts);
  },
};
