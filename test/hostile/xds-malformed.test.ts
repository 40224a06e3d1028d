/**
 * Malformed xDS against an in-process meshlet configured only over ADS: resources that fail
 * validation, a wrong resource type inside a response, unknown typed_config types, undecodable
 * protobuf bytes in an Any, duplicate names, a response of 50,000 clusters and a single resource
 * of several MiB. Each is NACKed with a readable reason (bounded in size), the last good config
 * keeps serving a well-behaved client throughout, and a good push afterwards is ACKed again.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';

vi.setConfig({ testTimeout: 90_000 });
import { jsonToAny } from '../../xds-client/proto-json';
import { adsBootstrap } from '../support/mesh';
import { socketAddress, startMeshlet, type StartedMeshlet, stopAllMeshlets } from '../support/meshlet';
import { closeAll, closedPort, type HttpEcho, startHttpEcho } from '../support/upstreams';
import { goodClient, until } from './harness';
import { RawAdsServer } from './raw-ads-server';

const T = {
  listener: 'type.googleapis.com/envoy.config.listener.v3.Listener',
  route: 'type.googleapis.com/envoy.config.route.v3.RouteConfiguration',
  cluster: 'type.googleapis.com/envoy.config.cluster.v3.Cluster',
  cla: 'type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment',
};
const HCM = 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager';
const ROUTER = 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router';

let ads: RawAdsServer;
let m: StartedMeshlet;
let echo: HttpEcho;
let port = 0;

function cluster(name = 'svc', extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { name, type: 'EDS', connect_timeout: '1s', eds_cluster_config: { eds_config: { ads: {}, resource_api_version: 'V3' } }, ...extra };
}

function listener(name = 'http', extra: Record<string, unknown> = {}, filterExtra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    name,
    address: socketAddress(port),
    filter_chains: [
      {
        filters: [
          {
            name: 'envoy.filters.network.http_connection_manager',
            typed_config: {
              '@type': HCM,
              stat_prefix: 'http',
              rds: { route_config_name: 'r1', config_source: { ads: {}, resource_api_version: 'V3' } },
              http_filters: [{ name: 'envoy.filters.http.router', typed_config: { '@type': ROUTER } }],
              ...filterExtra,
            },
          },
        ],
      },
    ],
    ...extra,
  };
}

/** Deterministic "random" bytes (a fixed LCG), so a garbage case never happens to be valid. */
function lcgBytes(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  let x = seed;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

const GOOD_CLUSTERS = (): Record<string, unknown>[] => [cluster()];

beforeAll(async () => {
  echo = await startHttpEcho('svc');
  port = await closedPort();
  ads = new RawAdsServer();
  await ads.start();
  ads.set(T.cluster, GOOD_CLUSTERS());
  ads.set(T.cla, [{ cluster_name: 'svc', endpoints: [{ lb_endpoints: [{ endpoint: { address: socketAddress(echo.port) } }] }] }]);
  ads.set(T.route, [{ name: 'r1', virtual_hosts: [{ name: 'all', domains: ['*'], routes: [{ match: { prefix: '/' }, route: { cluster: 'svc' } }] }] }]);
  ads.set(T.listener, [listener()]);
  m = await startMeshlet(adsBootstrap('hostile-node', ads.port));
  await m.server.initialized;
  await until(() => ads.acks(T.listener).length > 0 && ads.acks(T.cluster).length > 0, 20_000, 'initial ACKs');
});

afterAll(async () => {
  await stopAllMeshlets();
  await ads.stop();
  await closeAll();
});

/**
 * Push a bad response while a good client runs; wait for its NACK; check the client was served
 * throughout; then restore the good resources and wait for the ACK. Returns the NACK message.
 */
async function expectNack(typeUrl: string, push: () => void, restore: () => void): Promise<string> {
  const good = goodClient(port);
  await until(() => echo.requests.length > 0, 10_000, 'good traffic');
  const before = ads.nacks(typeUrl).length;
  push();
  await until(() => ads.nacks(typeUrl).length > before, 60_000, `NACK for ${typeUrl}`);
  const nack = ads.nacks(typeUrl).at(-1)!;
  // Keep the client going a little after the NACK (the old config still serves).
  const n = echo.requests.length;
  await until(() => echo.requests.length > n + 20, 20_000, 'traffic after NACK');
  const acksBefore = ads.acks(typeUrl).length;
  restore();
  await until(() => ads.acks(typeUrl).length > acksBefore, 60_000, `ACK for ${typeUrl} after restore`);
  const results = await good.stop();
  expect(results.length).toBeGreaterThan(0);
  expect(results.filter((r) => !r.ok)).toEqual([]);
  return nack.nack!;
}

const restoreClusters = (): void => void ads.set(T.cluster, GOOD_CLUSTERS());
const restoreListeners = (): void => void ads.set(T.listener, [listener()]);

describe('malformed xDS', () => {
  it('a cluster failing validation is NACKed with the resource and field in the reason', async () => {
    const msg = await expectNack(T.cluster, () => ads.set(T.cluster, [cluster('svc', { connect_timeout: '-1s' })]), restoreClusters);
    expect(msg).toContain('svc');
    expect(msg).toContain('connect_timeout');
  });

  it('a listener failing validation is NACKed; the old listener keeps its port and serves', async () => {
    const msg = await expectNack(T.listener, () => ads.set(T.listener, [listener('http', { address: { socket_address: { address: '127.0.0.1', port_value: 70000 } } })]), restoreListeners);
    expect(msg).toContain('http');
    expect(msg).toMatch(/port/);
  });

  it('a resource of the wrong type inside a CDS response is NACKed', async () => {
    const wrong = jsonToAny({ '@type': T.route, name: 'svc', virtual_hosts: [] });
    const msg = await expectNack(T.cluster, () => ads.setRaw(T.cluster, [wrong]), restoreClusters);
    expect(msg).toMatch(/RouteConfiguration|type/i);
  });

  it('an unknown resource type URL inside a response is NACKed', async () => {
    const unknown = { type_url: 'type.googleapis.com/envoy.config.nonexistent.v3.Thing', value: Buffer.from([0x0a, 0x03, 0x73, 0x76, 0x63]) };
    const msg = await expectNack(T.cluster, () => ads.setRaw(T.cluster, [unknown]), restoreClusters);
    expect(msg).toMatch(/nonexistent|type/i);
  });

  it('a response of a type nobody subscribed to (unknown type URL) changes nothing; later pushes are still ACKed', async () => {
    const good = goodClient(port);
    const thing = 'type.googleapis.com/envoy.config.nonexistent.v3.Thing';
    ads.setRaw(thing, [{ type_url: thing, value: Buffer.from([0x0a, 0x01, 0x78, 0xff, 0xff]) }]);
    ads.setRaw(T.listener, [jsonToAny({ '@type': 'type.googleapis.com/envoy.config.listener.v3.Listener', ...listener() })]);
    const acks = ads.acks(T.cluster).length;
    ads.set(T.cluster, GOOD_CLUSTERS());
    await until(() => ads.acks(T.cluster).length > acks, 30_000, 'CDS ACK after the unknown type');
    const n = echo.requests.length;
    await until(() => echo.requests.length > n + 20, 20_000, 'traffic after the unknown type');
    const results = await good.stop();
    expect(results.filter((r) => !r.ok)).toEqual([]);
    // Whatever meshlet answered for the unknown type, it was never an ACK.
    expect(ads.acks(thing)).toEqual([]);
  });

  it('an unknown typed_config type (required HTTP filter) is NACKed', async () => {
    const bad = listener('http', {}, {
      http_filters: [
        { name: 'evil', typed_config: { '@type': 'type.googleapis.com/google.protobuf.Struct', value: {} } },
        { name: 'envoy.filters.http.router', typed_config: { '@type': ROUTER } },
      ],
    });
    const msg = await expectNack(T.listener, () => ads.set(T.listener, [bad]), restoreListeners);
    expect(msg).toMatch(/evil|Struct|unsupported|unknown/i);
  });

  it.each([
    ['a length running past the end', Buffer.concat([Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]), lcgBytes(64, 1)])],
    ['pseudo-random bytes', Buffer.concat([Buffer.from([0x0a, 0x05, 0x62, 0x75, 0x6c, 0x6b, 0x31]), lcgBytes(256, 7)])],
    ['a truncated valid cluster', jsonToAny({ '@type': T.cluster, ...cluster('trunc', { connect_timeout: '2s' }) }).value.subarray(0, 12)],
    ['invalid UTF-8 in the name', Buffer.from([0x0a, 0x03, 0xff, 0xfe, 0xfd])],
    ['an unsupported wire type', Buffer.from([0x0f, 0x01])],
  ])('garbage bytes in an Any (%s) are NACKed, never ACKed as a cluster', async (_what, value) => {
    const garbage = { type_url: T.cluster, value };
    const msg = await expectNack(T.cluster, () => ads.setRaw(T.cluster, [garbage, jsonToAny({ '@type': T.cluster, ...cluster() })]), restoreClusters);
    expect(msg).toMatch(/invalid Cluster/);
  });

  it('duplicate resource names in one response are NACKed', async () => {
    const msg = await expectNack(T.cluster, () => ads.set(T.cluster, [cluster('svc'), cluster('svc', { connect_timeout: '2s' })]), restoreClusters);
    expect(msg).toMatch(/duplicate/i);
    expect(msg).toContain('svc');
  });

  it('a response of 50,000 clusters (many invalid) is NACKed with a bounded reason, nothing crashes', async () => {
    // Encoded up front: the test's own encoding must not stall the (same-process) meshlet.
    const many = GOOD_CLUSTERS().map((c) => jsonToAny({ '@type': T.cluster, ...c }));
    for (let i = 0; i < 50_000; i++) many.push(jsonToAny({ '@type': T.cluster, ...cluster(`bulk-${i}`, { connect_timeout: '-1s' }) }));
    const msg = await expectNack(T.cluster, () => ads.setRaw(T.cluster, many), restoreClusters);
    expect(msg).toContain('bulk-0');
    // Envoy truncates error_detail to 4 KiB; meshlet must not echo 50,000 errors back.
    expect(msg.length).toBeLessThanOrEqual(16 * 1024);
  });

  it('one cluster of several MiB (an invalid huge name) is NACKed, nothing crashes', async () => {
    const huge = jsonToAny({ '@type': T.cluster, ...cluster(`x${'y'.repeat(6 * 1024 * 1024)}`, { connect_timeout: '-1s' }) });
    const anys = [...GOOD_CLUSTERS().map((c) => jsonToAny({ '@type': T.cluster, ...c })), huge];
    const msg = await expectNack(T.cluster, () => ads.setRaw(T.cluster, anys), restoreClusters);
    expect(msg).toContain('connect_timeout');
    expect(msg.length).toBeLessThanOrEqual(16 * 1024);
  });
});
