// The xDS apply path was made linear for 1,000-cluster pushes (bench/xds-scale.mjs, bench/MEMORY.md):
// the cluster manager finds EDS clusters through an index by EDS service name instead of scanning
// every cluster, and DynamicConfig keeps an owner → names index of its EDS/SDS/RDS watches instead
// of scanning every watch. These tests pin the behaviour those indexes must keep: which clusters an
// assignment reaches (shared and renamed eds_service_name, warming vs active, removed and replaced
// clusters), and exactly which watches are opened and cancelled as clusters come and go.
import { afterEach, describe, expect, it } from 'vitest';
import { decodeCluster, decodeClusterLoadAssignment } from '../../proxy/config/envoy/index';
import type { ClusterConfig, ClusterLoadAssignment } from '../../proxy/config/types';
import type { XdsClientLike } from '../../proxy/dynamic/xds-config';
import { createRegistries } from '../../proxy/registry';
import { MeshletServer } from '../../proxy/server';
import { ClusterManager } from '../../proxy/upstream/cluster-manager';
import { decodeBootstrap } from '../../proxy/config/bootstrap';
import { TYPE_URLS } from '../../xds-client/protos';
import type { XdsWatcher } from '../../xds-client/resource-types';

const registries = createRegistries();
const ctx = { httpFilters: registries.httpFilters };

function eds(name: string, service?: string, timeout = '1s'): ClusterConfig {
  const r = decodeCluster(
    {
      name,
      type: 'EDS',
      connect_timeout: timeout,
      eds_cluster_config: { eds_config: { ads: {} }, ...(service ? { service_name: service } : {}) },
    },
    ctx,
  );
  if (!r.value) throw new Error(JSON.stringify(r.errors));
  return r.value;
}

function cla(name: string, ...ports: number[]): ClusterLoadAssignment {
  const r = decodeClusterLoadAssignment(
    {
      cluster_name: name,
      endpoints: [{ lb_endpoints: ports.map((port) => ({ endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: port } } } })) }],
    },
    ctx,
  );
  if (!r.value) throw new Error(JSON.stringify(r.errors));
  return r.value;
}

const ports = (cm: ClusterManager, name: string): number[] =>
  (cm.get(name)?.describe().hosts ?? []).map((h) => Number(String(h.address).split(':').pop())).sort();

describe('cluster manager: EDS assignments reach exactly the clusters watching that service', () => {
  let cm: ClusterManager;
  afterEach(() => cm?.destroy());

  it('shared and default service names, warming count, replaced and removed clusters', () => {
    cm = new ClusterManager({ poolFactory: () => { throw new Error('no traffic in this test'); } });
    cm.addOrUpdate(eds('a', 'shared'));
    cm.addOrUpdate(eds('b', 'shared'));
    cm.addOrUpdate(eds('c'));
    expect(cm.warmingCount).toBe(3);
    expect(cm.updateEdsService('shared', cla('shared', 1001, 1002))).toBe(2);
    expect(cm.warmingCount).toBe(1);
    expect(ports(cm, 'a')).toEqual([1001, 1002]);
    expect(ports(cm, 'b')).toEqual([1001, 1002]);
    // 'c' watches its own name, not 'shared'.
    expect(cm.updateEdsService('c', cla('c', 2001))).toBe(1);
    expect(cm.warmingCount).toBe(0);
    expect(ports(cm, 'c')).toEqual([2001]);
    expect(cm.updateEdsService('nobody', cla('nobody', 9))).toBe(0);

    // 'b' moves to another service. The replacement warms (new service, no seed); until it is
    // promoted, the active 'b' still watches 'shared' and keeps taking its assignments.
    cm.addOrUpdate(eds('b', 'other'));
    expect(cm.updateEdsService('shared', cla('shared', 1003))).toBe(2);
    expect(ports(cm, 'a')).toEqual([1003]);
    expect(ports(cm, 'b')).toEqual([1003]);
    expect(cm.updateEdsService('other', cla('other', 3001))).toBe(1);
    expect(ports(cm, 'b')).toEqual([3001]);
    // The replaced 'b' (retired) is no longer fed.
    expect(cm.updateEdsService('shared', cla('shared', 1004))).toBe(1);

    // A config change with the same service is seeded and promoted at once; the index follows it.
    cm.addOrUpdate(eds('a', 'shared', '2s'));
    expect(cm.get('a')?.config.connectTimeoutMs).toBe(2000);
    expect(ports(cm, 'a')).toEqual([1004]);
    expect(cm.updateEdsService('shared', cla('shared', 1005))).toBe(1);
    expect(ports(cm, 'a')).toEqual([1005]);

    cm.remove('a');
    expect(cm.updateEdsService('shared', cla('shared', 1006))).toBe(0);
    expect(cm.get('a')).toBeUndefined();
    // Re-adding the name starts a fresh warming cluster that is fed again.
    cm.addOrUpdate(eds('a', 'shared'));
    expect(cm.warmingCount).toBe(1);
    expect(cm.updateEdsService('shared', cla('shared', 1007))).toBe(1);
    expect(ports(cm, 'a')).toEqual([1007]);
  });

  it('a warming replacement and the active cluster both take the assignment, warming first', () => {
    cm = new ClusterManager({ poolFactory: () => { throw new Error('no traffic in this test'); } });
    cm.addOrUpdate(eds('x', 's1'));
    cm.updateEdsService('s1', cla('s1', 1));
    // Same cluster, now watching s2: the replacement warms while the active one (on s1) serves.
    cm.addOrUpdate(eds('x', 's2'));
    expect(cm.warmingCount).toBe(1);
    expect(cm.updateEdsService('s1', cla('s1', 2))).toBe(1);
    expect(ports(cm, 'x')).toEqual([2]);
    expect(cm.updateEdsService('s2', cla('s2', 3))).toBe(1);
    expect(cm.warmingCount).toBe(0);
    expect(ports(cm, 'x')).toEqual([3]);
  });
});

/** A recording stand-in for the xDS client: DynamicConfig's injected seam (XdsClientFactory). */
class RecordingClient {
  readonly opened: string[] = [];
  readonly cancelled: string[] = [];
  readonly watchers = new Map<string, XdsWatcher<unknown>[]>();
  registerType(): void {}
  start(): void {}
  close(): void {}
  snapshot(): never {
    throw new Error('not used');
  }
  stats(): never {
    throw new Error('not used');
  }
  watch<T>(typeUrl: string, name: string, w: XdsWatcher<T>): () => void {
    const key = `${short(typeUrl)}:${name}`;
    this.opened.push(key);
    const list = this.watchers.get(key) ?? [];
    list.push(w as XdsWatcher<unknown>);
    this.watchers.set(key, list);
    return () => this.cancelled.push(key);
  }
  cds(): XdsWatcher<ClusterConfig> {
    return this.watchers.get('Cluster:*')![0] as XdsWatcher<ClusterConfig>;
  }
}
const short = (url: string): string => url.slice(url.lastIndexOf('.') + 1);

describe('DynamicConfig: EDS watches follow the clusters that reference them', () => {
  let server: MeshletServer | undefined;
  afterEach(async () => {
    await server?.close();
    server = undefined;
  });

  it('opens one watch per referenced service and cancels it when the last reference goes', async () => {
    const raw = {
      node: { id: 'n', cluster: 'c' },
      dynamic_resources: {
        ads_config: { api_type: 'GRPC', grpc_services: [{ envoy_grpc: { cluster_name: 'xds' } }] },
        cds_config: { ads: {} },
      },
      static_resources: {
        clusters: [
          {
            name: 'xds',
            type: 'STATIC',
            load_assignment: { cluster_name: 'xds', endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: 1 } } } }] }] },
          },
        ],
      },
    };
    const { bootstrap } = decodeBootstrap(raw, ctx, 'test bootstrap');
    const client = new RecordingClient();
    server = new MeshletServer({ bootstrap, registries, xdsClientFactory: () => client as unknown as XdsClientLike });
    await server.start();
    expect(client.opened).toEqual(['Cluster:*']);
    const cds = client.cds();
    const edsUrl = short(TYPE_URLS.clusterLoadAssignment);

    cds.onChanged('a', eds('a', 's1'), '1');
    cds.onChanged('b', eds('b', 's1'), '1');
    cds.onChanged('c', eds('c'), '1');
    expect(client.opened).toEqual(['Cluster:*', `${edsUrl}:s1`, `${edsUrl}:c`]);
    // Re-applying the same reference opens nothing new.
    cds.onChanged('a', eds('a', 's1', '2s'), '2');
    expect(client.opened).toHaveLength(3);
    // 'a' moves to s2: s1 is still referenced by 'b'.
    cds.onChanged('a', eds('a', 's2'), '3');
    expect(client.opened.at(-1)).toBe(`${edsUrl}:s2`);
    expect(client.cancelled).toEqual([]);
    // 'b' goes: s1 has no reference left.
    cds.onRemoved('b');
    expect(client.cancelled).toEqual([`${edsUrl}:s1`]);
    // Removing the last clusters cancels their services.
    cds.onRemoved('c');
    cds.onRemoved('a');
    expect(client.cancelled.sort()).toEqual([`${edsUrl}:c`, `${edsUrl}:s1`, `${edsUrl}:s2`].sort());
    // The assignment for a watched service reaches its cluster through the index.
    cds.onChanged('d', eds('d', 's3'), '4');
    const edsWatch = client.watchers.get(`${edsUrl}:s3`)![0] as XdsWatcher<ClusterLoadAssignment>;
    expect(server.clusters.warmingCount).toBe(1);
    edsWatch.onChanged('s3', cla('s3', 4001), '4');
    expect(server.clusters.warmingCount).toBe(0);
    expect(ports(server.clusters, 'd')).toEqual([4001]);
  });
});
