/**
 * Locality-aware balancing through the real cluster manager: locality_weighted_lb_config
 * (weights scaled by each locality's availability, unweighted localities unused) and zone-aware
 * routing against the local cluster named by cluster_manager.local_cluster_name (all local when
 * the upstream's local share covers ours, the residual split otherwise, and the cases where it
 * steps aside: min_cluster_size, routing_enabled). Distributions over 20,000 picks, with a few
 * points of tolerance; the config checks are decoded from Envoy-shaped input.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { Issues, Reader } from '../../common/reader';
import type { ClusterLoadAssignment, HealthStatus, Locality, ZoneAwareLbConfig } from '../../proxy/config/types';
import { decodeBootstrap } from '../../proxy/config/bootstrap';
import { decodeClusterR } from '../../proxy/config/envoy/cluster';
import { ctx } from '../config/helpers';
import { ClusterManager } from '../../proxy/upstream/cluster-manager';
import { bootstrap, httpListener, routes, socketAddress, startMeshlet, stopAllMeshlets } from '../support/meshlet';
import { closeAll, startHttpEcho } from '../support/upstreams';
import { request } from '../telemetry/helpers';
import { clusterConfig, endpoint, recordingPoolFactory, tally } from './fixtures';

const N = 20_000;

interface Group {
  zone: string;
  ports: number[];
  weight?: number;
  unhealthy?: number[];
}

function cla(name: string, groups: Group[]): ClusterLoadAssignment {
  return {
    clusterName: name,
    overprovisioningFactor: 140,
    endpoints: groups.map((g) => ({
      locality: { region: 'r', zone: g.zone, subZone: '' } satisfies Locality,
      priority: 0,
      ...(g.weight !== undefined ? { loadBalancingWeight: g.weight } : {}),
      lbEndpoints: g.ports.map((port) =>
        endpoint({ port, health: (g.unhealthy?.includes(port) ? 'UNHEALTHY' : 'HEALTHY') as HealthStatus }),
      ),
    })),
  };
}

function manager(localZone?: string): ClusterManager {
  return new ClusterManager({
    poolFactory: recordingPoolFactory().factory,
    ...(localZone !== undefined ? { localCluster: { name: 'local', locality: { region: 'r', zone: localZone, subZone: '' } } } : {}),
  });
}

/** Share of picks (percent) per zone; hosts' ports encode their zone through `zoneOf`. */
function sharesByZone(m: ClusterManager, cluster: string, zoneOf: (port: number) => string): Record<string, number> {
  const c = m.get(cluster)!;
  const counts = tally(() => c.chooseHost(undefined), N);
  const out: Record<string, number> = {};
  for (const [key, n] of counts) {
    const z = key === 'none' ? 'none' : zoneOf(Number(key.split(':')[1]));
    out[z] = (out[z] ?? 0) + (100 * n) / N;
  }
  return out;
}

function expectShares(got: Record<string, number>, want: Record<string, number>, tol = 2.5): void {
  for (const z of new Set([...Object.keys(got), ...Object.keys(want)])) {
    expect(Math.abs((got[z] ?? 0) - (want[z] ?? 0)), `${z}: got ${(got[z] ?? 0).toFixed(1)}% want ${want[z] ?? 0}%`).toBeLessThanOrEqual(tol);
  }
}

const zoneByPort = (p: number): string => (p < 2000 ? 'a' : p < 3000 ? 'b' : 'c');

describe('locality_weighted_lb_config', () => {
  it('chooses localities by load_balancing_weight; a locality without a weight gets nothing', () => {
    const m = manager();
    m.addOrUpdate(
      clusterConfig({
        name: 'svc',
        localityWeightedLb: true,
        loadAssignment: cla('svc', [
          { zone: 'a', ports: [1001, 1002], weight: 1 },
          { zone: 'b', ports: [2001], weight: 3 },
          { zone: 'c', ports: [3001] },
        ]),
      }),
    );
    expectShares(sharesByZone(m, 'svc', zoneByPort), { a: 25, b: 75 });
    // Inside a locality the policy (round robin) still spreads evenly.
    const c = m.get('svc')!;
    const inA = tally(() => c.chooseHost(undefined), N);
    expect(Math.abs((inA.get('127.0.0.1:1001') ?? 0) - (inA.get('127.0.0.1:1002') ?? 0))).toBeLessThan(N * 0.03);
  });

  it("scales a locality's weight by its availability (overprovisioning × healthy share, at most 1)", () => {
    const m = manager();
    m.addOrUpdate(
      clusterConfig({
        name: 'svc',
        localityWeightedLb: true,
        loadAssignment: cla('svc', [
          { zone: 'a', ports: [1001, 1002], weight: 1, unhealthy: [1002] },
          { zone: 'b', ports: [2001], weight: 1 },
        ]),
      }),
    );
    // a: 1 × min(1, 1.4 × 1/2) = 0.7; b: 1 → a 41 %, b 59 %; never the unhealthy host.
    const s = sharesByZone(m, 'svc', zoneByPort);
    expectShares(s, { a: (0.7 / 1.7) * 100, b: (1 / 1.7) * 100 });
  });
});

describe('zone-aware routing (cluster_manager.local_cluster_name)', () => {
  function setup(local: Group[], upstream: Group[], zoneAware?: ZoneAwareLbConfig): ClusterManager {
    const m = manager('a');
    m.addOrUpdate(clusterConfig({ name: 'local', loadAssignment: cla('local', local) }));
    m.addOrUpdate(clusterConfig({ name: 'svc', loadAssignment: cla('svc', upstream), ...(zoneAware ? { zoneAware } : {}) }));
    return m;
  }
  const up = [
    { zone: 'a', ports: [1001, 1002, 1003] },
    { zone: 'b', ports: [2001, 2002, 2003] },
  ];

  it('keeps all traffic in the local zone when the upstream share there covers the local share', () => {
    const m = setup([{ zone: 'a', ports: [5001, 5002] }, { zone: 'b', ports: [5003, 5004] }], up);
    expectShares(sharesByZone(m, 'svc', zoneByPort), { a: 100 });
  });

  it('sends the residual to the other zones in proportion to their spare capacity', () => {
    // Local: 75 % in a, 25 % in b; upstream 50/50 → 50/75 = 2/3 stays in a, the rest goes to b.
    const m = setup([{ zone: 'a', ports: [5001, 5002, 5003] }, { zone: 'b', ports: [5004] }], up);
    expectShares(sharesByZone(m, 'svc', zoneByPort), { a: 66.7, b: 33.3 });
  });

  it('follows the local cluster when its hosts change', () => {
    const m = setup([{ zone: 'a', ports: [5001, 5002] }, { zone: 'b', ports: [5003, 5004] }], up);
    expectShares(sharesByZone(m, 'svc', zoneByPort), { a: 100 });
    m.addOrUpdate(clusterConfig({ name: 'local', loadAssignment: cla('local', [{ zone: 'a', ports: [5001, 5002, 5003] }, { zone: 'b', ports: [5004] }]) }));
    expectShares(sharesByZone(m, 'svc', zoneByPort), { a: 66.7, b: 33.3 });
  });

  it('steps aside below min_cluster_size and outside routing_enabled', () => {
    const local = [{ zone: 'a', ports: [5001] }, { zone: 'b', ports: [5002] }];
    const small = [
      { zone: 'a', ports: [1001, 1002] },
      { zone: 'b', ports: [2001, 2002, 2003] },
    ];
    // 5 upstream hosts < 6 (Envoy's default): every host alike, 40/60.
    expectShares(sharesByZone(setup(local, small), 'svc', zoneByPort), { a: 40, b: 60 });
    // With min_cluster_size 5 it routes: upstream a holds 40 % < local 50 %, so 40/50 stays in a.
    expectShares(sharesByZone(setup(local, small, { routingEnabledPercent: 100, minClusterSize: 5, failTrafficOnPanic: false }), 'svc', zoneByPort), {
      a: 80,
      b: 20,
    });
    // routing_enabled 25 %: a quarter zone-routed (all to a), the rest spread evenly (50/50).
    expectShares(sharesByZone(setup(local, up, { routingEnabledPercent: 25, minClusterSize: 6, failTrafficOnPanic: false }), 'svc', zoneByPort), {
      a: 25 + 37.5,
      b: 37.5,
    });
  });
});

describe('locality and zone-aware config', () => {
  it('decodes common_lb_config and rejects both kinds at once; local_cluster_name must be a static cluster', () => {
    const issues = new Issues();
    const c = decodeClusterR(
      Reader.of(
        {
          name: 'svc',
          type: 'STATIC',
          common_lb_config: { zone_aware_lb_config: { routing_enabled: { value: 40 }, min_cluster_size: '3', fail_traffic_on_panic: true } },
          load_assignment: { cluster_name: 'svc', endpoints: [] },
        },
        '',
        issues,
      )!,
      ctx(),
    );
    expect(issues.errors).toEqual([]);
    expect(c?.zoneAware).toEqual({ routingEnabledPercent: 40, minClusterSize: 3, failTrafficOnPanic: true });
    const i2 = new Issues();
    decodeClusterR(
      Reader.of(
        { name: 'svc', type: 'STATIC', common_lb_config: { zone_aware_lb_config: {}, locality_weighted_lb_config: {} } },
        '',
        i2,
      )!,
      ctx(),
    );
    expect(i2.errors.map((e) => e.path)).toContain('common_lb_config.locality_weighted_lb_config');
    expect(() => decodeBootstrap({ cluster_manager: { local_cluster_name: 'nope' } }, ctx())).toThrow(
      /cluster_manager\.local_cluster_name: unknown cluster "nope"/,
    );
  });
});

describe('zone-aware routing through a running meshlet', () => {
  afterAll(async () => {
    await stopAllMeshlets();
    await closeAll();
  });

  it('keeps requests in the node\'s zone with a bootstrap local cluster', async () => {
    const a = await Promise.all([0, 1, 2].map((i) => startHttpEcho(`a${i}`)));
    const b = await Promise.all([0, 1, 2].map((i) => startHttpEcho(`b${i}`)));
    const group = (zone: string, ports: number[]) => ({
      locality: { region: 'r', zone },
      lb_endpoints: ports.map((port) => ({ endpoint: { address: socketAddress(port) } })),
    });
    const staticWith = (name: string, groups: unknown[]) => ({ name, type: 'STATIC', load_assignment: { cluster_name: name, endpoints: groups } });
    const m = await startMeshlet(
      bootstrap(
        [httpListener('out', routes([{ match: { prefix: '/' }, route: { cluster: 'svc' } }]))],
        [
          staticWith('local', [group('a', [a[0]!.port]), group('b', [b[0]!.port])]),
          staticWith('svc', [group('a', a.map((e) => e.port)), group('b', b.map((e) => e.port))]),
        ],
        {
          node: { id: 'n', cluster: 'local', locality: { region: 'r', zone: 'a' } },
          cluster_manager: { local_cluster_name: 'local' },
        },
      ),
    );
    const seen = new Set<string>();
    for (let i = 0; i < 30; i++) seen.add(String((await request(m.listenerPort('out'), '/')).headers['x-upstream']));
    expect([...seen].sort()).toEqual(['a0', 'a1', 'a2']);
  });
});
