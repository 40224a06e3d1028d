/**
 * Issue 3's end-to-end: traffic through a meshlet configured only over ADS keeps flowing while the
 * control plane pushes new endpoints, pushes an invalid cluster (NACKed with a readable reason,
 * the old config keeps serving, the reason visible in /config_dump), and is killed and restarted.
 */
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JsonAdsServer } from '../support/json-ads-server';
import { adsBootstrap } from '../support/mesh';
import { socketAddress, startMeshlet, stopAllMeshlets, type StartedMeshlet } from '../support/meshlet';
import { closeAll, closedPort, startHttpEcho, type HttpEcho } from '../support/upstreams';

const T = {
  listener: 'type.googleapis.com/envoy.config.listener.v3.Listener',
  route: 'type.googleapis.com/envoy.config.route.v3.RouteConfiguration',
  cluster: 'type.googleapis.com/envoy.config.cluster.v3.Cluster',
  cla: 'type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment',
};

let ads: JsonAdsServer;
let m: StartedMeshlet;
let a: HttpEcho;
let b: HttpEcho;
let port = 0;

function cluster(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { name: 'svc', type: 'EDS', connect_timeout: '1s', eds_cluster_config: { eds_config: { ads: {}, resource_api_version: 'V3' } }, ...extra };
}
function cla(ports: number[]): Record<string, unknown> {
  return { cluster_name: 'svc', endpoints: [{ lb_endpoints: ports.map((p) => ({ endpoint: { address: socketAddress(p) } })) }] };
}

beforeAll(async () => {
  a = await startHttpEcho('a');
  b = await startHttpEcho('b');
  port = await closedPort();
  ads = new JsonAdsServer();
  await ads.start();
  ads.set(T.cluster, [cluster()]);
  ads.set(T.cla, [cla([a.port])]);
  ads.set(T.route, [{ name: 'r1', virtual_hosts: [{ name: 'all', domains: ['*'], routes: [{ match: { prefix: '/' }, route: { cluster: 'svc', retry_policy: { retry_on: 'connect-failure,reset', num_retries: 2 } } }] }] }]);
  ads.set(T.listener, [
    {
      name: 'http',
      address: socketAddress(port),
      filter_chains: [
        {
          filters: [
            {
              name: 'envoy.filters.network.http_connection_manager',
              typed_config: {
                '@type': 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
                stat_prefix: 'http',
                rds: { route_config_name: 'r1', config_source: { ads: {}, resource_api_version: 'V3' } },
                http_filters: [{ name: 'envoy.filters.http.router', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router' } }],
              },
            },
          ],
        },
      ],
    },
  ]);
  const boot = adsBootstrap('dyn-node', ads.port);
  m = await startMeshlet(boot);
  await m.server.initialized;
});

afterAll(async () => {
  await stopAllMeshlets();
  await ads.stop();
  await closeAll();
});

const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
function get(): Promise<{ status: number; upstream: string }> {
  return new Promise((resolve) => {
    http
      .get({ host: '127.0.0.1', port, path: '/', agent }, (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode ?? 0, upstream: String(res.headers['x-upstream'] ?? '') }));
      })
      .on('error', () => resolve({ status: 0, upstream: '' }));
  });
}

async function dumpOf(): Promise<{ configs: Record<string, unknown>[] }> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port: m.adminPort, path: '/config_dump?include_eds' }, (res) => {
        let s = '';
        res.on('data', (c) => {
          s += c;
        });
        res.on('end', () => resolve(JSON.parse(s)));
      })
      .on('error', reject);
  });
}

async function until(cond: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('xDS-driven meshlet under control plane changes', () => {
  it('keeps serving through endpoint pushes, an invalid cluster, and a control plane restart', async () => {
    const results: { status: number; upstream: string }[] = [];
    let phase = 'start';
    let stop = false;
    // Continuous traffic, bounded in count; every response is recorded.
    const driver = (async () => {
      for (let i = 0; i < 20_000 && !stop; i++) results.push(await get());
    })();
    await until(() => results.length > 50);
    expect(new Set(results.map((r) => r.upstream))).toEqual(new Set(['a']));

    phase = 'new endpoints';
    ads.set(T.cla, [cla([a.port, b.port])]);
    await until(() => results.slice(-50).some((r) => r.upstream === 'b'));

    phase = 'invalid cluster';
    const nacksBefore = ads.nacks.length;
    ads.set(T.cluster, [cluster({ connect_timeout: '-1s' })]);
    await until(() => ads.nacks.length > nacksBefore);
    const nack = ads.nacks[ads.nacks.length - 1]!;
    expect(nack.typeUrl).toBe(T.cluster);
    expect(nack.message).toContain('svc');
    expect(nack.message).toContain('connect_timeout');
    const n = results.length;
    await until(() => results.length > n + 50);
    const dump = await dumpOf();
    const clusters = dump.configs.find((c) => String(c['@type']).endsWith('ClustersConfigDump')) as { dynamic_active_clusters: { cluster: { name: string }; error_state?: { details: string } }[] };
    const svc = clusters.dynamic_active_clusters.find((c) => c.cluster.name === 'svc')!;
    expect(svc.error_state?.details).toContain('connect_timeout');
    const eds = dump.configs.find((c) => String(c['@type']).endsWith('EndpointsConfigDump'));
    expect(JSON.stringify(eds)).toContain(String(b.port));

    phase = 'control plane down';
    const adsPort = ads.port;
    await ads.stop();
    const m1 = results.length;
    await until(() => results.length > m1 + 100);

    phase = 'control plane back';
    ads = new JsonAdsServer();
    await ads.start(adsPort);
    ads.set(T.cluster, [cluster()]);
    ads.set(T.cla, [cla([b.port])]);
    ads.set(T.route, [{ name: 'r1', virtual_hosts: [{ name: 'all', domains: ['*'], routes: [{ match: { prefix: '/' }, route: { cluster: 'svc' } }] }] }]);
    await until(() => ads.acks.some((x) => x.typeUrl === T.cla), 40_000);
    await until(() => results.slice(-30).every((r) => r.upstream === 'b'));
    stop = true;
    await driver;
    const failed = results.filter((r) => r.status !== 200);
    expect(phase).toBe('control plane back');
    expect(results.length).toBeGreaterThan(300);
    expect(failed, `failed requests out of ${results.length}`).toEqual([]);
  }, 60_000);
});
