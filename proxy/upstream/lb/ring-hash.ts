/**
 * RING_HASH: Envoy's ketama-style consistent hash ring. Each host gets a number of ring points in
 * proportion to its weight, hashed from "<address>_<n>"; the ring size follows Envoy's rule
 * (scale so the lightest host gets enough points for `minimum_ring_size`, capped at
 * `maximum_ring_size`; defaults 1024 and 8M). A request hash maps to the first point at or after
 * it, wrapping around. Adding a host moves the keys that land on its new points, plus (as in
 * Envoy) the keys of points the other hosts give up when the per-host point count shrinks to keep
 * the ring near `minimum_ring_size` (4 → 5 equal hosts: about 30% of keys move, 20% to the new
 * host). The sizing is kept stateless on purpose so every proxy builds the same ring.
 *
 * Hashing is meshlet's own 32-bit hash (see hash.ts), not Envoy's 64-bit xxHash: rings are stable
 * across rebuilds and restarts of meshlet, but not identical to Envoy's. Without a request hash a
 * host is picked at random. `pick` does not allocate.
 */
import type { ClusterConfig } from '../../config/types';
import type { Host } from '../host';
import { firstNotAvoided, hashString, isAvoided } from './hash';
import { hostWeight } from './round-robin';
import type { LbContext, LoadBalancer, LoadBalancerFactory } from './types';

export const DEFAULT_MIN_RING_SIZE = 1024;
export const DEFAULT_MAX_RING_SIZE = 8 * 1024 * 1024;

export class RingHashLoadBalancer implements LoadBalancer {
  private readonly hosts: readonly Host[];
  /** Sorted point hashes and, in parallel, the index of the host owning each point. */
  readonly ringHashes: Uint32Array;
  private readonly ringHosts: Int32Array;

  constructor(
    hosts: readonly Host[],
    minRingSize = DEFAULT_MIN_RING_SIZE,
    maxRingSize = DEFAULT_MAX_RING_SIZE,
    private readonly random: () => number = Math.random,
  ) {
    this.hosts = hosts.slice();
    const n = this.hosts.length;
    if (n === 0) {
      this.ringHashes = new Uint32Array(0);
      this.ringHosts = new Int32Array(0);
      return;
    }
    let total = 0;
    for (const h of this.hosts) total += hostWeight(h);
    let minNorm = 1;
    for (const h of this.hosts) minNorm = Math.min(minNorm, hostWeight(h) / total);
    const scale = Math.min(Math.ceil(minNorm * minRingSize) / minNorm, maxRingSize);
    const size = Math.max(n, Math.ceil(scale));
    const hashes: number[] = [];
    const owners: number[] = [];
    let target = 0;
    let current = 0;
    for (let i = 0; i < n && current < size + n; i++) {
      const h = this.hosts[i];
      target += (scale * hostWeight(h)) / total;
      let k = 0;
      // Every host gets at least one point, even under a tiny maximum ring size.
      while (current < target || k === 0) {
        hashes.push(hashString(`${h.key}_${k}`));
        owners.push(i);
        k++;
        current++;
      }
    }
    const order = hashes.map((_, i) => i);
    // Sort by hash; equal hashes (rare) by host key so the ring does not depend on host order.
    order.sort((a, b) => hashes[a] - hashes[b] || (this.hosts[owners[a]].key < this.hosts[owners[b]].key ? -1 : 1));
    this.ringHashes = new Uint32Array(order.length);
    this.ringHosts = new Int32Array(order.length);
    for (let i = 0; i < order.length; i++) {
      this.ringHashes[i] = hashes[order[i]];
      this.ringHosts[i] = owners[order[i]];
    }
  }

  pick(ctx: LbContext | undefined): Host | undefined {
    const n = this.hosts.length;
    if (n === 0) return undefined;
    const avoid = ctx?.avoid;
    const hash = ctx?.hash;
    if (hash === undefined) {
      // No affinity requested: a random host, honouring ctx.avoid.
      const start = Math.floor(this.random() * n);
      return firstNotAvoided(this.hosts, avoid, start, this.hosts[start]!);
    }
    const ring = this.ringHashes;
    const size = ring.length;
    const target = hash >>> 0;
    let lo = 0;
    let hi = size;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (ring[mid] < target) lo = mid + 1;
      else hi = mid;
    }
    const first = lo === size ? 0 : lo;
    const chosen = this.hosts[this.ringHosts[first]];
    if (avoid === undefined || !isAvoided(chosen, avoid)) return chosen;
    // Walk the ring to the next point owned by a host we are not avoiding.
    for (let k = 1; k < size; k++) {
      const h = this.hosts[this.ringHosts[(first + k) % size]];
      if (!isAvoided(h, avoid)) return h;
    }
    return chosen;
  }
}

export const ringHashFactory: LoadBalancerFactory = {
  name: 'RING_HASH',
  create(hosts: readonly Host[], config: ClusterConfig): LoadBalancer {
    const rh = config.lbConfig.ringHash;
    return new RingHashLoadBalancer(
      hosts,
      rh?.minRingSize ?? DEFAULT_MIN_RING_SIZE,
      rh?.maxRingSize ?? DEFAULT_MAX_RING_SIZE,
    );
  },
};
