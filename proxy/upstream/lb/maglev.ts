/**
 * MAGLEV: Google's Maglev consistent hashing (Eisenbud et al., NSDI 2016) with Envoy's weighted
 * extension. Each host walks its own permutation of the table (`offset + n × skip mod M`, with
 * offset and skip from two independent hashes of its address) and the hosts take turns claiming
 * their next free slot until the table is full. Weights: on each turn a host earns
 * `weight / max_weight` of a claim and claims a slot only when it has a whole one, so slot counts
 * follow weights. Table size M must be prime (default 65537, Envoy's).
 *
 * Lookups are one array index (`hash mod M`); rebuilds are O(M). Adding a host moves about its
 * fair share of slots and only a little more. Without a request hash a host is picked at random.
 * meshlet's 32-bit hash is used instead of Envoy's xxHash (see hash.ts). `pick` does not allocate.
 */
import type { ClusterConfig } from '../../config/types';
import type { Host } from '../host';
import { firstNotAvoided, hashString, isAvoided } from './hash';
import { hostWeight } from './round-robin';
import type { LbContext, LoadBalancer, LoadBalancerFactory } from './types';

export const DEFAULT_MAGLEV_TABLE_SIZE = 65537;

const OFFSET_SEED = 0x4d41474c; // "MAGL"
const SKIP_SEED = 0x45563031; // "EV01"

function isPrime(n: number): boolean {
  if (n < 2) return false;
  if (n % 2 === 0) return n === 2;
  for (let d = 3; d * d <= n; d += 2) if (n % d === 0) return false;
  return true;
}

/**
 * The table size actually used: `requested` when prime, else the next prime above it. Envoy
 * rejects a non-prime table_size in config; here a non-prime size would make some permutations
 * skip slots and the fill loop never end, so the balancer is defensive rather than trusting input.
 */
export function maglevTableSize(requested: number): number {
  let n = Math.max(3, Math.floor(requested));
  while (!isPrime(n)) n++;
  return n;
}

export class MaglevLoadBalancer implements LoadBalancer {
  private readonly hosts: readonly Host[];
  /** Slot → host index. */
  readonly table: Int32Array;
  readonly tableSize: number;

  constructor(
    hosts: readonly Host[],
    tableSize = DEFAULT_MAGLEV_TABLE_SIZE,
    private readonly random: () => number = Math.random,
  ) {
    this.tableSize = maglevTableSize(tableSize);
    // Build in a host order that does not depend on the order hosts arrived in.
    this.hosts = hosts.slice().sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    const n = this.hosts.length;
    const m = this.tableSize;
    this.table = new Int32Array(n === 0 ? 0 : m).fill(-1);
    if (n === 0) return;
    const offset = new Float64Array(n);
    const skip = new Float64Array(n);
    const next = new Float64Array(n);
    const share = new Float64Array(n);
    const credit = new Float64Array(n);
    let maxW = 0;
    for (const h of this.hosts) maxW = Math.max(maxW, hostWeight(h));
    for (let i = 0; i < n; i++) {
      const key = this.hosts[i].key;
      offset[i] = hashString(key, OFFSET_SEED) % m;
      skip[i] = (hashString(key, SKIP_SEED) % (m - 1)) + 1;
      share[i] = hostWeight(this.hosts[i]) / maxW;
    }
    let filled = 0;
    while (filled < m) {
      for (let i = 0; i < n && filled < m; i++) {
        credit[i] += share[i];
        if (credit[i] < 1) continue;
        credit[i] -= 1;
        let slot = (offset[i] + skip[i] * next[i]) % m;
        while (this.table[slot] !== -1) {
          next[i]++;
          slot = (offset[i] + skip[i] * next[i]) % m;
        }
        this.table[slot] = i;
        next[i]++;
        filled++;
      }
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
    const m = this.tableSize;
    const slot = (hash >>> 0) % m;
    const chosen = this.hosts[this.table[slot]];
    if (avoid === undefined || !isAvoided(chosen, avoid)) return chosen;
    for (let k = 1; k < m; k++) {
      const h = this.hosts[this.table[(slot + k) % m]];
      if (!isAvoided(h, avoid)) return h;
    }
    return chosen;
  }
}

export const maglevFactory: LoadBalancerFactory = {
  name: 'MAGLEV',
  create(hosts: readonly Host[], config: ClusterConfig): LoadBalancer {
    return new MaglevLoadBalancer(hosts, config.lbConfig.maglev?.tableSize ?? DEFAULT_MAGLEV_TABLE_SIZE);
  },
};
