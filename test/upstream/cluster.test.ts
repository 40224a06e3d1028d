import { afterEach, describe, expect, it, vi } from 'vitest';
import type { ClusterConfig } from '../../proxy/config/types';
import {
  type Cluster,
  type ClusterContext,
  EdsCluster,
  healthFlags,
  StaticCluster,
} from '../../proxy/upstream/cluster';
import { registerDefaultLbPolicies } from '../../proxy/upstream/lb/index';
import { LbRegistry } from '../../proxy/upstream/lb/types';
import { OriginalDstCluster } from '../../proxy/upstream/original-dst';
import { TcpTransportSocketFactory } from '../../proxy/upstream/transport';
import { assignment, clusterConfig, type EndpointSpec, recordingPoolFactory, tally } from './fixtures';

function ctx(extra: Partial<ClusterContext> = {}): ClusterContext {
  return {
    lbRegistry: registerDefaultLbPolicies(new LbRegistry()),
    poolFactory: recordingPoolFactory().factory,
    transport: new TcpTransportSocketFactory(),
    addedViaApi: false,
    ...extra,
  };
}

function staticCluster(eps: EndpointSpec[], over: Partial<ClusterConfig> = {}): StaticCluster {
  return new StaticCluster(clusterConfig({ name: 'c', loadAssignment: assignment('c', eps), ...over }), ctx());
}

const made: Cluster[] = [];
function track<T extends Cluster>(c: T): T {
  made.push(c);
  return c;
}

afterEach(() => {
  for (const c of made.splice(0)) c.destroy();
  vi.useRealTimers();
});

describe('priorities and panic', () => {
  it('sends everything to priority 0 while it is healthy', () => {
    const c = track(staticCluster([{ port: 1 }, { port: 2 }, { port: 3, priority: 1 }]));
    expect(c.priorityLevels.map((l) => l.load)).toEqual([100, 0]);
    const counts = tally(() => c.chooseHost(undefined), 400);
    expect(counts.get('127.0.0.1:3')).toBeUndefined();
  });

  it('fails over to priority 1 when priority 0 is unhealthy', () => {
    const c = track(
      staticCluster([
        { port: 1, health: 'UNHEALTHY' },
        { port: 2, health: 'UNHEALTHY' },
        { port: 3, priority: 1 },
      ]),
    );
    expect(c.priorityLevels.map((l) => l.load)).toEqual([0, 100]);
    const counts = tally(() => c.chooseHost(undefined), 200);
    expect(counts.get('127.0.0.1:3')).toBe(200);
    expect(c.stats.lbHealthyPanic).toBe(0);
  });

  it('spills the unhealthy share of priority 0 to priority 1 using the 1.4 overprovisioning factor', () => {
    // P0: 1 of 3 healthy → health = floor(140 × 1/3) = 46; P1 healthy → gets the other 54.
    const c = track(
      staticCluster([
        { port: 1 },
        { port: 2, health: 'UNHEALTHY' },
        { port: 3, health: 'UNHEALTHY' },
        { port: 4, priority: 1 },
      ]),
    );
    expect(c.priorityLevels.map((l) => l.load)).toEqual([46, 54]);
    // Normalized total health is 100, so no level panics: P0 traffic only goes to its healthy host.
    expect(c.priorityLevels.map((l) => l.panic)).toEqual([false, false]);
    const counts = tally(() => c.chooseHost(undefined), 10_000);
    expect(counts.get('127.0.0.1:2')).toBeUndefined();
    expect(counts.get('127.0.0.1:3')).toBeUndefined();
    expect(Math.abs((counts.get('127.0.0.1:1') ?? 0) / 100 - 46)).toBeLessThan(2.5);
  });

  it('panics below healthy_panic_threshold: balances across all hosts except DRAINING ones', () => {
    const c = track(
      staticCluster([
        { port: 1 },
        { port: 2, health: 'UNHEALTHY' },
        { port: 3, health: 'UNHEALTHY' },
        { port: 4, health: 'DRAINING' },
      ]),
    );
    expect(c.priorityLevels[0].panic).toBe(true);
    const counts = tally(() => c.chooseHost(undefined), 300);
    expect(counts.get('127.0.0.1:1')).toBe(100);
    expect(counts.get('127.0.0.1:2')).toBe(100);
    expect(counts.get('127.0.0.1:3')).toBe(100);
    expect(counts.get('127.0.0.1:4')).toBeUndefined();
    expect(c.stats.lbHealthyPanic).toBe(300);
  });

  it('does not panic at or above the threshold, and excludes DRAINING hosts', () => {
    const c = track(
      staticCluster([{ port: 1 }, { port: 2 }, { port: 3, health: 'DRAINING' }, { port: 4, health: 'UNHEALTHY' }]),
    );
    expect(c.priorityLevels[0].panic).toBe(false);
    const counts = tally(() => c.chooseHost(undefined), 200);
    expect([...counts.keys()].sort()).toEqual(['127.0.0.1:1', '127.0.0.1:2']);
  });

  it('with panic disabled (threshold 0) and no healthy host, chooses nothing (503 UH)', () => {
    const c = track(staticCluster([{ port: 1, health: 'UNHEALTHY' }], { healthyPanicThresholdPercent: 0 }));
    expect(c.chooseHost(undefined)).toBeUndefined();
    expect(c.priorityLevels[0].panic).toBe(false);
  });

  it('with no hosts, or only DRAINING ones, chooses nothing', () => {
    const empty = track(staticCluster([]));
    expect(empty.chooseHost(undefined)).toBeUndefined();
    const draining = track(staticCluster([{ port: 1, health: 'DRAINING' }]));
    expect(draining.chooseHost(undefined)).toBeUndefined();
    expect(draining.stats.lbHealthyPanic).toBe(0);
  });

  it('total panic (nothing healthy anywhere) spreads load by host count, as Envoy does', () => {
    const c = track(
      staticCluster([
        { port: 1, health: 'UNHEALTHY' },
        { port: 2, priority: 1, health: 'UNHEALTHY' },
      ]),
    );
    expect(c.priorityLevels.map((l) => l.load)).toEqual([50, 50]);
    expect(c.priorityLevels.every((l) => l.panic)).toBe(true);
    expect(tally(() => c.chooseHost(undefined), 1000).size).toBe(2);
  });

  it('healthChanged() rebuilds after active health checking / outlier detection flips a host', () => {
    const c = track(staticCluster([{ port: 1 }, { port: 2 }, { port: 3 }, { port: 4, priority: 1 }]));
    const [a, b, d] = c.hosts;
    a.failedActiveHealthCheck = true;
    b.outlierEjected = true;
    // Not yet visible: balancers are only rebuilt on a health change notification.
    expect(c.priorityLevels[0].lbHosts).toHaveLength(3);
    c.healthChanged();
    expect(c.priorityLevels[0].lbHosts).toEqual([d]);
    expect(c.priorityLevels.map((l) => l.load)).toEqual([46, 54]);
    expect(healthFlags(a)).toBe('/failed_active_hc');
    expect(healthFlags(b)).toBe('/failed_outlier_check');
  });
});

describe('EDS updates', () => {
  it('diffs by address: surviving Host objects keep counters and pools; removed hosts drain', () => {
    const { factory, pools } = recordingPoolFactory();
    let initialized = 0;
    const c = track(
      new EdsCluster(
        clusterConfig({ name: 'e', type: 'EDS' }),
        ctx({ poolFactory: factory, onInitialized: () => initialized++ }),
      ),
    );
    expect(c.initialized).toBe(false);
    c.updateAssignment(assignment('e', [{ port: 1 }, { port: 2 }]));
    expect(c.initialized).toBe(true);
    expect(initialized).toBe(1);
    const [h1, h2] = c.hosts;
    h1.stats.rqTotal = 42;
    const p1 = c.httpPool(h1, 'HTTP/1.1');
    c.httpPool(h2, 'HTTP/1.1');
    const membership = c.stats.membershipChange;

    c.updateAssignment(assignment('e', [{ port: 1, weight: 5, health: 'HEALTHY' }, { port: 3 }]));
    expect(initialized).toBe(1);
    expect(c.hosts[0]).toBe(h1);
    expect(h1.stats.rqTotal).toBe(42);
    expect(h1.weight).toBe(5);
    expect(h1.edsHealth).toBe('HEALTHY');
    expect(c.httpPool(h1, 'HTTP/1.1')).toBe(p1);
    expect(c.hosts.map((h) => h.key)).toEqual(['127.0.0.1:1', '127.0.0.1:3']);
    expect(c.stats.membershipChange).toBe(membership + 1);
    const removedPool = pools.find((p) => p.host === h2);
    expect(removedPool?.drained).toBe(true);
    expect(removedPool?.destroyed).toBe(true); // idle, so closed at once
    expect(pools.find((p) => p.host === h1)?.drained).toBe(false);

    // Same assignment again: no membership change, and the balancers are not rebuilt.
    const levels = c.priorityLevels;
    c.updateAssignment(assignment('e', [{ port: 1, weight: 5, health: 'HEALTHY' }, { port: 3 }]));
    expect(c.stats.membershipChange).toBe(membership + 1);
    expect(c.priorityLevels).toBe(levels);
    // A health change alone rebuilds without counting a membership change.
    c.updateAssignment(assignment('e', [{ port: 1, weight: 5, health: 'UNHEALTHY' }, { port: 3 }]));
    expect(c.priorityLevels).not.toBe(levels);
    expect(c.priorityLevels[0].lbHosts.map((h) => h.key)).toEqual(['127.0.0.1:3']);
    expect(c.stats.membershipChange).toBe(membership + 1);
  });

  it('tells membership listeners which hosts came and went', () => {
    const c = track(new EdsCluster(clusterConfig({ name: 'e', type: 'EDS' }), ctx()));
    const seen: string[] = [];
    c.addMembershipListener((added, removed) => seen.push(`+${added.map((h) => h.key)} -${removed.map((h) => h.key)}`));
    c.updateAssignment(assignment('e', [{ port: 1 }]));
    c.updateAssignment(assignment('e', [{ port: 2 }]));
    expect(seen).toEqual(['+127.0.0.1:1 -', '+127.0.0.1:2 -127.0.0.1:1']);
  });

  it('uses the assignment overprovisioning factor', () => {
    const c = track(new EdsCluster(clusterConfig({ name: 'e', type: 'EDS' }), ctx()));
    c.updateAssignment(assignment('e', [{ port: 1 }, { port: 2, health: 'UNHEALTHY' }, { port: 3, priority: 1 }], 100));
    expect(c.priorityLevels.map((l) => l.load)).toEqual([50, 50]);
  });
});

describe('ORIGINAL_DST', () => {
  it('creates hosts on demand and cleans up unused ones after cleanup_interval', () => {
    vi.useFakeTimers();
    const c = track(
      new OriginalDstCluster(
        clusterConfig({
          name: 'passthrough',
          type: 'ORIGINAL_DST',
          lbPolicy: 'CLUSTER_PROVIDED',
          cleanupIntervalMs: 1000,
        }),
        ctx(),
      ),
    );
    expect(c.initialized).toBe(true);
    const a = c.hostForOriginalDst('10.1.2.3', 8080);
    expect(a.key).toBe('10.1.2.3:8080');
    expect(c.hostForOriginalDst('10.1.2.3', 8080)).toBe(a);
    const b = c.hostForOriginalDst('::1', 9090);
    expect(b.key).toBe('[::1]:9090');
    expect(c.hosts).toHaveLength(2);
    expect(c.chooseHost(undefined)).toBeUndefined();

    // First pass clears the "used" marks; a host untouched for a whole interval goes on the next.
    vi.advanceTimersByTime(1000);
    expect(c.hosts).toHaveLength(2);
    c.hostForOriginalDst('10.1.2.3', 8080); // a used again
    b.activeRequests = 1; // b busy
    vi.advanceTimersByTime(1000);
    expect(c.hosts).toHaveLength(2);
    b.activeRequests = 0;
    vi.advanceTimersByTime(2000);
    expect(c.hosts).toHaveLength(0);
    // A new request for a cleaned destination gets a fresh host.
    expect(c.hostForOriginalDst('10.1.2.3', 8080)).not.toBe(a);
  });
});

describe('circuit breakers', () => {
  it('uses Envoy defaults and counts overflows', () => {
    const c = track(staticCluster([{ port: 1 }]));
    const r = c.resources;
    expect([r.connections.max, r.pendingRequests.max, r.requests.max, r.retries.max]).toEqual([1024, 1024, 1024, 3]);
    for (let i = 0; i < 3; i++) expect(r.retries.tryInc()).toBe(true);
    expect(r.canRetry()).toBe(false);
    expect(r.retries.tryInc()).toBe(false);
    expect(c.stats.upstreamRqRetryOverflow).toBe(2);
    r.retries.dec();
    expect(r.canRetry()).toBe(true);
  });

  it('reads DEFAULT thresholds and sizes the retry budget from active requests', () => {
    const c = track(
      staticCluster([{ port: 1 }], {
        circuitBreakers: [
          { priority: 'HIGH', maxConnections: 1, maxPendingRequests: 1, maxRequests: 1, maxRetries: 1 },
          {
            priority: 'DEFAULT',
            maxConnections: 2,
            maxPendingRequests: 5,
            maxRequests: 100,
            maxRetries: 0,
            retryBudget: { budgetPercent: 20, minRetryConcurrency: 3 },
          },
        ],
      }),
    );
    const r = c.resources;
    expect(r.connections.max).toBe(2);
    expect(r.connections.tryInc() && r.connections.tryInc()).toBe(true);
    expect(r.connections.tryInc()).toBe(false);
    expect(c.stats.upstreamCxOverflow).toBe(1);
    expect(r.retries.max).toBe(3); // min_retry_concurrency with no load
    for (let i = 0; i < 50; i++) r.requests.inc();
    expect(r.retries.max).toBe(10); // 20% of 50 active
    expect(c.describe().circuitBreakers.default.maxRetries).toBe(10);
  });
});

describe('describe()', () => {
  it('reports hosts the way admin /clusters needs them', () => {
    const c = track(
      staticCluster([
        { port: 1, weight: 3 },
        { port: 2, health: 'UNHEALTHY', priority: 1 },
      ]),
    );
    const [h1] = c.hosts;
    h1.activeRequests = 2;
    h1.activeConnections = 1;
    h1.stats.rqTotal = 10;
    h1.stats.rqSuccess = 9;
    h1.stats.rqError = 1;
    const d = c.describe();
    expect(d.name).toBe('c');
    expect(d.hosts[0]).toMatchObject({ address: '127.0.0.1:1', weight: 3, priority: 0, healthFlags: 'healthy' });
    expect(d.hosts[0].stats).toMatchObject({ cx_active: 1, rq_active: 2, rq_total: 10, rq_success: 9, rq_error: 1 });
    expect(d.hosts[1]).toMatchObject({ address: '127.0.0.1:2', priority: 1, healthFlags: '/failed_eds_health' });
  });
});

describe('hash affinity through the cluster', () => {
  it('RING_HASH picks the same host for the same hash across priority selection', () => {
    const c = track(staticCluster([{ port: 1 }, { port: 2 }, { port: 3 }], { lbPolicy: 'RING_HASH' }));
    const ctxA = { hash: 0xdeadbeef };
    const first = c.chooseHost(ctxA);
    for (let i = 0; i < 20; i++) expect(c.chooseHost(ctxA)).toBe(first);
  });

  it('PEAK_EWMA feedback goes through observeRtt', () => {
    const c = track(staticCluster([{ port: 1 }, { port: 2 }], { lbPolicy: 'PEAK_EWMA' }));
    const [fast, slow] = c.hosts;
    c.observeRtt(fast, 2);
    c.observeRtt(slow, 200);
    expect(tally(() => c.chooseHost(undefined), 100).get(fast.key)).toBe(100);
  });
});
