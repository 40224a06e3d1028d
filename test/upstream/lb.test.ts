import { describe, expect, it } from 'vitest';
import { Host } from '../../proxy/upstream/host';
import { hashString } from '../../proxy/upstream/lb/hash';
import { registerDefaultLbPolicies } from '../../proxy/upstream/lb/index';
import { LeastRequestLoadBalancer } from '../../proxy/upstream/lb/least-request';
import { MaglevLoadBalancer } from '../../proxy/upstream/lb/maglev';
import { observeRtt, PeakEwmaLoadBalancer } from '../../proxy/upstream/lb/peak-ewma';
import { RandomLoadBalancer } from '../../proxy/upstream/lb/random';
import { RingHashLoadBalancer } from '../../proxy/upstream/lb/ring-hash';
import { RoundRobinLoadBalancer } from '../../proxy/upstream/lb/round-robin';
import type { LbContext, LoadBalancer } from '../../proxy/upstream/lb/types';
import { LbRegistry } from '../../proxy/upstream/lb/types';
import { clusterConfig, tally } from './fixtures';

function hosts(weights: number[], base = 8000): Host[] {
  return weights.map((w, i) => new Host({ kind: 'socket', host: '10.0.0.1', port: base + i }, { weight: w }));
}

/** Deterministic PRNG (mulberry32-style) so distribution tests are reproducible. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function expectShares(counts: Map<string, number>, hs: Host[], total: number, tolerancePct: number): void {
  const wsum = hs.reduce((s, h) => s + h.weight, 0);
  for (const h of hs) {
    const got = ((counts.get(h.key) ?? 0) / total) * 100;
    const want = (h.weight / wsum) * 100;
    expect(Math.abs(got - want), `${h.key}: got ${got.toFixed(2)}% want ${want.toFixed(2)}%`).toBeLessThanOrEqual(
      tolerancePct,
    );
  }
}

describe('registry', () => {
  it('registers every built-in policy by its Envoy name', () => {
    const r = registerDefaultLbPolicies(new LbRegistry());
    expect(r.names().sort()).toEqual(['LEAST_REQUEST', 'MAGLEV', 'PEAK_EWMA', 'RANDOM', 'RING_HASH', 'ROUND_ROBIN']);
    const cfg = clusterConfig({ name: 'c' });
    for (const name of r.names()) {
      const lb = r.get(name)?.create(hosts([1, 1]), cfg);
      expect(lb?.pick(undefined), name).toBeInstanceOf(Host);
      expect(r.get(name)?.create([], cfg).pick(undefined), name).toBeUndefined();
    }
  });
});

describe('ROUND_ROBIN', () => {
  it('with equal weights rotates strictly: every host within 1 over N×k picks, in a fixed cycle', () => {
    const hs = hosts([1, 1, 1, 1, 1]);
    const lb = new RoundRobinLoadBalancer(hs);
    for (const n of [5 * 7, 5 * 7 + 3]) {
      const counts = tally(() => lb.pick(undefined), n);
      const v = hs.map((h) => counts.get(h.key) ?? 0);
      expect(Math.max(...v) - Math.min(...v)).toBeLessThanOrEqual(1);
    }
    const seq = Array.from({ length: 10 }, () => lb.pick(undefined)?.key);
    expect(seq.slice(5)).toEqual(seq.slice(0, 5));
    expect(new Set(seq.slice(0, 5)).size).toBe(5);
  });

  it('randomises the starting host per instance', () => {
    const hs = hosts([1, 1, 1, 1]);
    const starts = new Set<string | undefined>();
    for (let s = 0; s < 4; s++) starts.add(new RoundRobinLoadBalancer(hs, () => s / 4 + 0.01).pick(undefined)?.key);
    expect(starts.size).toBe(4);
  });

  it('with weights splits 10,000 picks within 1% and interleaves instead of bursting', () => {
    const hs = hosts([1, 2, 5]);
    const lb = new RoundRobinLoadBalancer(hs, prng(1));
    expectShares(
      tally(() => lb.pick(undefined), 10_000),
      hs,
      10_000,
      1,
    );
    // Smoothness: within every window of 8 picks (one full weight cycle) each host gets its weight ±1.
    const seq = Array.from({ length: 800 }, () => lb.pick(undefined));
    for (let i = 0; i + 8 <= seq.length; i += 8) {
      for (const h of hs) {
        const n = seq.slice(i, i + 8).filter((x) => x === h).length;
        expect(Math.abs(n - h.weight)).toBeLessThanOrEqual(1);
      }
    }
    let run = 0;
    let maxRun = 0;
    for (const h of seq) {
      run = h === hs[2] ? run + 1 : 0;
      maxRun = Math.max(maxRun, run);
    }
    expect(maxRun).toBeLessThanOrEqual(3);
  });
});

describe('RANDOM', () => {
  it('splits 10,000 weighted picks within 2%', () => {
    const hs = hosts([1, 3, 6]);
    const lb = new RandomLoadBalancer(hs, prng(7));
    expectShares(
      tally(() => lb.pick(undefined), 10_000),
      hs,
      10_000,
      2,
    );
  });
});

describe('LEAST_REQUEST', () => {
  it('splits 10,000 weighted picks within 2% when load is equal', () => {
    const hs = hosts([1, 2, 3]);
    const lb = new LeastRequestLoadBalancer(hs, 2, prng(3));
    expectShares(
      tally(() => lb.pick(undefined), 10_000),
      hs,
      10_000,
      2,
    );
  });

  it('splits equal-weight picks evenly within 2% when load is equal', () => {
    const hs = hosts([1, 1, 1, 1]);
    const lb = new LeastRequestLoadBalancer(hs, 2, prng(4));
    expectShares(
      tally(() => lb.pick(undefined), 10_000),
      hs,
      10_000,
      2,
    );
  });

  it('prefers the less loaded host', () => {
    const hs = hosts([1, 1, 1]);
    hs[0].activeRequests = 10;
    hs[1].activeRequests = 10;
    const lb = new LeastRequestLoadBalancer(hs, 2, prng(5));
    const counts = tally(() => lb.pick(undefined), 3000);
    // With two samples (with replacement) the idle host wins unless it is not sampled: 1 - (2/3)^2 = 5/9.
    expect(counts.get(hs[2].key) ?? 0).toBeGreaterThan(3000 * 0.5);
    const many = new LeastRequestLoadBalancer(hs, 10, prng(6));
    expect(tally(() => many.pick(undefined), 1000).get(hs[2].key) ?? 0).toBeGreaterThan(950);
  });

  it('weighted mode divides weight by (active + 1)', () => {
    const hs = hosts([2, 1]);
    hs[0].activeRequests = 3; // effective 2/4 = 0.5 vs 1/1
    const lb = new LeastRequestLoadBalancer(hs, 2, prng(8));
    const counts = tally(() => lb.pick(undefined), 3000);
    expect(counts.get(hs[1].key) ?? 0).toBeGreaterThan(counts.get(hs[0].key) ?? 0);
  });
});

describe('PEAK_EWMA', () => {
  it('prefers the faster host, and counts in-flight requests in the cost', () => {
    const hs = hosts([1, 1]);
    observeRtt(hs[0], 5, 10_000, 1000);
    observeRtt(hs[1], 80, 10_000, 1000);
    const lb = new PeakEwmaLoadBalancer(hs, 10_000, 30, prng(9), () => 1000);
    expect(tally(() => lb.pick(undefined), 200).get(hs[0].key)).toBe(200);
    hs[0].activeRequests = 20; // 5 × 21 = 105 > 80 × 1
    expect(tally(() => lb.pick(undefined), 200).get(hs[1].key)).toBe(200);
  });

  it('is peak-sensitive: a slow response replaces the estimate, fast ones blend in over the decay', () => {
    const h = hosts([1])[0];
    observeRtt(h, 10, 10_000, 1000);
    observeRtt(h, 200, 10_000, 1001);
    expect(h.ewmaRttMs).toBe(200);
    observeRtt(h, 10, 10_000, 1002);
    expect(h.ewmaRttMs).toBeGreaterThan(190);
    observeRtt(h, 10, 10_000, 1002 + 100_000);
    expect(h.ewmaRttMs).toBeLessThan(11);
  });

  it('gives unseen hosts the default RTT', () => {
    const hs = hosts([1, 1]);
    observeRtt(hs[0], 100, 10_000, 1000);
    const lb = new PeakEwmaLoadBalancer(hs, 10_000, 30, prng(10), () => 1000);
    expect(tally(() => lb.pick(undefined), 100).get(hs[1].key)).toBe(100);
  });
});

function keys(n: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(hashString(`request-${i}`));
  return out;
}

function mapping(lb: LoadBalancer, ks: number[]): string[] {
  const ctx: LbContext = {};
  return ks.map((k) => {
    ctx.hash = k;
    return lb.pick(ctx)?.key ?? 'none';
  });
}

describe.each([
  // Ring: ideal is 1/5 of keys, all to the new host; Envoy's ring sizing also shrinks every old
  // host's point count (1024/4 → 1025/5 points each), which moves roughly another tenth.
  ['RING_HASH', (hs: Host[]) => new RingHashLoadBalancer(hs), 0.35, 0.6],
  ['MAGLEV', (hs: Host[]) => new MaglevLoadBalancer(hs), 0.3, 0.9],
] as const)('%s', (_name, make, maxMoved, minToNew) => {
  it('maps the same key to the same host, across rebuilds and host order', () => {
    const hs = hosts([1, 1, 1, 1]);
    const ks = keys(2000);
    const a = mapping(make(hs), ks);
    const b = mapping(make([...hs].reverse()), ks);
    expect(b).toEqual(a);
    expect(new Set(a).size).toBe(4);
  });

  it('remaps only a bounded share of keys when a host is added', () => {
    const hs = hosts([1, 1, 1, 1]);
    const ks = keys(10_000);
    const before = mapping(make(hs), ks);
    const added = new Host({ kind: 'socket', host: '10.0.0.2', port: 9000 });
    const after = mapping(make([...hs, added]), ks);
    let moved = 0;
    let movedToNew = 0;
    for (let i = 0; i < ks.length; i++) {
      if (before[i] !== after[i]) {
        moved++;
        if (after[i] === added.key) movedToNew++;
      }
    }
    expect(moved / ks.length).toBeLessThan(maxMoved);
    expect(moved / ks.length).toBeGreaterThan(0.1);
    expect(movedToNew / moved).toBeGreaterThan(minToNew);
    // Every key the new host owns came from somewhere: its share is about 1/5.
    const owned = after.filter((k) => k === added.key).length / ks.length;
    expect(Math.abs(owned - 0.2)).toBeLessThan(0.05);
  });

  it('honours ctx.avoid when another host exists, and picks randomly without a hash', () => {
    const hs = hosts([1, 1, 1]);
    const lb = make(hs);
    const ctx: LbContext = { hash: 12345 };
    const first = lb.pick(ctx);
    ctx.avoid = first ? [first] : [];
    const second = lb.pick(ctx);
    expect(second).toBeDefined();
    expect(second).not.toBe(first);
    const counts = tally(() => lb.pick(undefined), 3000);
    expect(counts.size).toBe(3);
  });
});

describe('MAGLEV weights', () => {
  it('uses the next prime when table_size is not prime, and fills every slot', () => {
    const lb = new MaglevLoadBalancer(hosts([1, 1, 1]), 1000);
    expect(lb.tableSize).toBe(1009);
    expect(lb.table.every((i) => i >= 0)).toBe(true);
  });

  it('splits 10,000 hashed picks within 2% of the weights', () => {
    const hs = hosts([1, 2, 4]);
    const lb = new MaglevLoadBalancer(hs);
    const rnd = prng(11);
    const ctx: LbContext = {};
    const counts = tally(() => {
      ctx.hash = Math.floor(rnd() * 2 ** 32);
      return lb.pick(ctx);
    }, 10_000);
    expectShares(counts, hs, 10_000, 2);
    // The table itself follows the weights closely.
    const slots = new Map<number, number>();
    for (const i of lb.table) slots.set(i, (slots.get(i) ?? 0) + 1);
    expect(lb.table.length).toBe(65537);
    expect(lb.table.every((i) => i >= 0)).toBe(true);
    // Slot counts follow the weights 1:2:4 to within 0.5% of the table.
    const sorted = [...slots.values()].sort((a, b) => a - b);
    expect(sorted).toHaveLength(3);
    for (const [i, w] of [1, 2, 4].entries()) expect(Math.abs(sorted[i] / 65537 - w / 7)).toBeLessThan(0.005);
  });
});

describe('ctx.avoid', () => {
  it.each([
    ['ROUND_ROBIN', (hs: Host[]) => new RoundRobinLoadBalancer(hs)],
    ['RANDOM', (hs: Host[]) => new RandomLoadBalancer(hs)],
    ['LEAST_REQUEST', (hs: Host[]) => new LeastRequestLoadBalancer(hs)],
    [
      'LEAST_REQUEST weighted',
      (hs: Host[]) => new LeastRequestLoadBalancer([hs[0], new Host(hs[1].address, { weight: 5 })]),
    ],
    ['PEAK_EWMA', (hs: Host[]) => new PeakEwmaLoadBalancer(hs)],
  ] as const)('%s avoids previous hosts when it can, and still answers when it cannot', (_n, make) => {
    const hs = hosts([1, 1]);
    const lb = make(hs);
    const all = (lb as unknown as { hosts: Host[] }).hosts;
    const ctx: LbContext = { avoid: [all[0]] };
    for (let i = 0; i < 50; i++) expect(lb.pick(ctx)).toBe(all[1]);
    ctx.avoid = all;
    expect(lb.pick(ctx)).toBeDefined();
  });
});
