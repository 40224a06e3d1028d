/**
 * Active health checking through a real meshlet: HTTP, TCP (send/receive) and gRPC
 * (grpc.health.v1 on a real @grpc/grpc-js server) checks flip hosts out of and back into
 * rotation; hosts start failed until their first successful check (Envoy); EDS health_status
 * UNHEALTHY / DRAINING endpoints get no requests; config validation of health checks.
 * Waits are bounded polls on host state, never timing assertions.
 */
import http from 'node:http';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import * as protobuf from 'protobufjs';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { decodeHealthCheck } from '../../proxy/config/envoy/health-check';
import { Issues, Reader } from '../../common/reader';
import type { ClusterLoadAssignment, HealthStatus } from '../../proxy/config/types';
import { HealthChecker } from '../../proxy/upstream/health/checker';
import { containsInOrder } from '../../proxy/upstream/health/probes';
import { Host } from '../../proxy/upstream/host';
import { TcpTransportSocketFactory } from '../../proxy/upstream/transport';
import { ClusterStats } from '../../proxy/upstream/types';
import {
  bootstrap,
  httpListener,
  routes,
  type StartedMeshlet,
  startMeshlet,
  staticCluster,
  stopAllMeshlets,
} from '../support/meshlet';
import { closeAll, closedPort, startHttpEcho, startTcpEcho } from '../support/upstreams';

afterEach(async () => {
  await stopAllMeshlets();
  await closeAll();
});

function get(port: number, path: string, agent: http.Agent): Promise<{ status: number; upstream: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, agent }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, upstream: String(res.headers['x-upstream'] ?? '') }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** Poll `cond` every 20 ms for at most `ms`; returns whether it became true. */
async function waitFor(cond: () => boolean, ms = 5_000): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (cond()) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return cond();
}

function hostsOf(m: StartedMeshlet, cluster: string): readonly Host[] {
  const c = m.server.clusters.get(cluster);
  if (!c) throw new Error(`no cluster ${cluster}`);
  return c.hosts;
}

function hostByPort(m: StartedMeshlet, cluster: string, port: number): Host {
  const h = hostsOf(m, cluster).find((x) => x.port === port);
  if (!h) throw new Error(`no host :${port}`);
  return h;
}

function config(raw: Record<string, unknown>) {
  const issues = new Issues();
  const c = decodeHealthCheck(new Reader(raw, 'hc', issues));
  expect(issues.errors).toEqual([]);
  return c!;
}

const FAST = {
  timeout: '0.5s',
  interval: '0.05s',
  no_traffic_interval: '0.05s',
  unhealthy_threshold: 2,
  healthy_threshold: 2,
};

async function distribution(port: number, n: number): Promise<Map<string, number>> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 2 });
  const counts = new Map<string, number>();
  try {
    for (let i = 0; i < n; i++) {
      const r = await get(port, '/', agent);
      expect(r.status).toBe(200);
      counts.set(r.upstream, (counts.get(r.upstream) ?? 0) + 1);
    }
  } finally {
    agent.destroy();
  }
  return counts;
}

describe('HTTP health check', () => {
  it('takes a host failing /healthz out of rotation and brings it back after healthy_threshold passes', async () => {
    let bHealthy = true;
    let bChecks = 0;
    const seenHeaders = new Set<string>();
    const a = await startHttpEcho('a');
    const b = await startHttpEcho('b', (req, res) => {
      if (req.url !== '/healthz') return false;
      bChecks++;
      seenHeaders.add(`${req.headers.host}|${req.headers['user-agent']}`);
      res.writeHead(bHealthy ? 200 : 503);
      res.end();
      return true;
    });
    const m = await startMeshlet(
      bootstrap(
        [httpListener('http', routes([{ match: { prefix: '/' }, route: { cluster: 'svc' } }]))],
        [
          staticCluster('svc', [a.port, b.port], {
            health_checks: [
              {
                ...FAST,
                http_health_check: {
                  path: '/healthz',
                  host: 'svc.health',
                  expected_statuses: [{ start: 200, end: 300 }],
                },
              },
            ],
          }),
        ],
      ),
    );
    const hb = hostByPort(m, 'svc', b.port);
    expect(await waitFor(() => hostsOf(m, 'svc').every((h) => !h.failedActiveHealthCheck))).toBe(true);
    const port = m.listenerPort('http');
    const before = await distribution(port, 20);
    expect(before.get('a')).toBe(10);
    expect(before.get('b')).toBe(10);

    bHealthy = false;
    expect(await waitFor(() => hb.failedActiveHealthCheck)).toBe(true);
    const during = await distribution(port, 20);
    expect(during.get('a')).toBe(20);
    expect(during.get('b')).toBeUndefined();

    bHealthy = true;
    const checksAtRecovery = bChecks;
    expect(await waitFor(() => !hb.failedActiveHealthCheck)).toBe(true);
    // healthy_threshold 2: at least two passing checks after recovery before it is back.
    expect(bChecks - checksAtRecovery).toBeGreaterThanOrEqual(2);
    const after = await distribution(port, 20);
    expect(after.get('b')).toBe(10);
    expect([...seenHeaders]).toEqual(['svc.health|Envoy/HC']);
    const hc = m.server.clusters.get('svc')!.healthChecker!;
    expect(hc.stats.failure).toBeGreaterThanOrEqual(1);
    expect(hc.stats.success).toBeGreaterThan(hc.stats.failure);
  });

  it('a host never passing its first check gets no traffic while another host is healthy', async () => {
    const good = await startHttpEcho('good');
    const bad = await startHttpEcho('bad', (req, res) => {
      if (req.url !== '/healthz') return false;
      res.writeHead(500);
      res.end();
      return true;
    });
    const m = await startMeshlet(
      bootstrap(
        [httpListener('http', routes([{ match: { prefix: '/' }, route: { cluster: 'svc' } }]))],
        [
          staticCluster('svc', [good.port, bad.port], {
            health_checks: [{ ...FAST, unhealthy_threshold: 5, http_health_check: { path: '/healthz' } }],
          }),
        ],
      ),
    );
    expect(await waitFor(() => !hostByPort(m, 'svc', good.port).failedActiveHealthCheck)).toBe(true);
    expect(hostByPort(m, 'svc', bad.port).failedActiveHealthCheck).toBe(true);
    const d = await distribution(m.listenerPort('http'), 10);
    expect(d.get('good')).toBe(10);
    expect(bad.requests.every((r) => r.url === '/healthz')).toBe(true);
  });
});

describe('failure types (Envoy: wrong answers eject at once, network failures need unhealthy_threshold)', () => {
  it('an unexpected status fails a healthy host on the first failure; connect failures need the threshold', async () => {
    let mode: 'ok' | 'bad-status' = 'ok';
    const up = await startHttpEcho('u', (req, res) => {
      if (req.url !== '/hc') return false;
      res.writeHead(mode === 'ok' ? 200 : 500);
      res.end();
      return true;
    });
    const host = new Host({ kind: 'socket', host: '127.0.0.1', port: up.port });
    const results: { healthy: boolean; failedAfter: boolean }[] = [];
    const target = {
      name: 'unit',
      hosts: [host],
      transport: new TcpTransportSocketFactory(),
      stats: new ClusterStats(),
      healthChanged: () => {},
    };
    const cfg = config({ ...FAST, unhealthy_threshold: 3, healthy_threshold: 1, http_health_check: { path: '/hc' } });
    const checker = new HealthChecker(target, cfg, {
      onResult: (_h, healthy) => results.push({ healthy, failedAfter: host.failedActiveHealthCheck }),
    });
    try {
      checker.start();
      expect(host.failedActiveHealthCheck).toBe(true); // pending its first check
      expect(await waitFor(() => !host.failedActiveHealthCheck)).toBe(true);
      mode = 'bad-status';
      const at = results.length;
      expect(await waitFor(() => results.length > at && results.slice(at).some((r) => !r.healthy))).toBe(true);
      const firstFailure = results.slice(at).find((r) => !r.healthy)!;
      expect(firstFailure.failedAfter).toBe(true);

      mode = 'ok';
      expect(await waitFor(() => !host.failedActiveHealthCheck)).toBe(true);
      // Now refuse connections: network failures, three in a row before the host is failed.
      up.server.closeAllConnections();
      await new Promise((r) => up.server.close(r));
      const from = results.length;
      expect(await waitFor(() => host.failedActiveHealthCheck)).toBe(true);
      const failures = results.slice(from).filter((r) => !r.healthy);
      expect(failures.length).toBeGreaterThanOrEqual(3);
      expect(failures[0]!.failedAfter).toBe(false);
      expect(failures[1]!.failedAfter).toBe(false);
      expect(failures[2]!.failedAfter).toBe(true);
      expect(checker.stats.networkFailure).toBeGreaterThanOrEqual(3);
    } finally {
      checker.stop();
    }
  });
});

describe('HTTP/2 health check', () => {
  it('checks over h2c when codec_client_type is HTTP2', async () => {
    let status = 200;
    const paths: string[] = [];
    const h2 = http2.createServer((req, res) => {
      paths.push(`${req.httpVersion} ${req.url}`);
      res.writeHead(status);
      res.end();
    });
    await new Promise<void>((r) => h2.listen(0, '127.0.0.1', r));
    const port = (h2.address() as AddressInfo).port;
    try {
      const m = await startMeshlet(
        bootstrap(
          [],
          [
            staticCluster('h2svc', [port], {
              health_checks: [{ ...FAST, http_health_check: { path: '/ready', codec_client_type: 'HTTP2' } }],
            }),
          ],
        ),
      );
      const h = hostByPort(m, 'h2svc', port);
      expect(await waitFor(() => !h.failedActiveHealthCheck)).toBe(true);
      expect(paths[0]).toBe('2.0 /ready');
      status = 500;
      expect(await waitFor(() => h.failedActiveHealthCheck)).toBe(true);
    } finally {
      await stopAllMeshlets();
      await new Promise((r) => h2.close(r));
    }
  });
});

describe('TCP health check', () => {
  it('connect-only, send/receive in order, and a payload that never arrives', async () => {
    const echo = await startTcpEcho();
    const dead = await closedPort();
    const m = await startMeshlet(
      bootstrap(
        [],
        [
          staticCluster('connect', [echo.port, dead], { health_checks: [{ ...FAST, tcp_health_check: {} }] }),
          staticCluster('payload', [echo.port], {
            health_checks: [
              {
                ...FAST,
                tcp_health_check: { send: { text: '70696e67' }, receive: [{ text: '7069' }, { text: '6e67' }] },
              },
            ],
          }),
          staticCluster('wrong', [echo.port], {
            health_checks: [
              {
                ...FAST,
                timeout: '0.2s',
                tcp_health_check: { send: { text: '70696e67' }, receive: [{ text: '706f6e67' }] },
              },
            ],
          }),
        ],
      ),
    );
    expect(await waitFor(() => !hostByPort(m, 'connect', echo.port).failedActiveHealthCheck)).toBe(true);
    expect(await waitFor(() => !hostByPort(m, 'payload', echo.port).failedActiveHealthCheck)).toBe(true);
    const wrong = m.server.clusters.get('wrong')!.healthChecker!;
    expect(await waitFor(() => wrong.stats.failure >= 2)).toBe(true);
    expect(hostByPort(m, 'wrong', echo.port).failedActiveHealthCheck).toBe(true);
    expect(hostByPort(m, 'connect', dead).failedActiveHealthCheck).toBe(true);
    expect(echo.received).toBeGreaterThan(0);
  });

  it('matches receive payloads in order, not necessarily contiguous', () => {
    const hay = Buffer.from('xxpingyyPONG');
    expect(containsInOrder(hay, [Buffer.from('ping'), Buffer.from('PONG')])).toBe(true);
    expect(containsInOrder(hay, [Buffer.from('PONG'), Buffer.from('ping')])).toBe(false);
  });
});

// grpc.health.v1 messages for the test server (the proxy side lives in probes.ts).
function decodeRequest(b: Buffer): string {
  const r = protobuf.Reader.create(b);
  let service = '';
  while (r.pos < r.len) {
    const tag = r.uint32();
    if (tag >>> 3 === 1) service = r.string();
    else r.skipType(tag & 7);
  }
  return service;
}
function encodeResponse(status: number): Buffer {
  return Buffer.from(protobuf.Writer.create().uint32(8).int32(status).finish());
}

describe('gRPC health check', () => {
  let server: grpc.Server | undefined;
  afterAll(() => server?.forceShutdown());

  it('follows grpc.health.v1 SERVING / NOT_SERVING for the configured service', async () => {
    let status = 1; // SERVING
    const asked: string[] = [];
    server = new grpc.Server();
    server.addService(
      {
        Check: {
          path: '/grpc.health.v1.Health/Check',
          requestStream: false,
          responseStream: false,
          requestSerialize: (s: string) => Buffer.from(s),
          requestDeserialize: decodeRequest,
          responseSerialize: encodeResponse,
          responseDeserialize: () => 0,
        },
      },
      {
        Check: (call: grpc.ServerUnaryCall<string, number>, cb: grpc.sendUnaryData<number>) => {
          asked.push(call.request);
          cb(null, status);
        },
      },
    );
    const port = await new Promise<number>((resolve, reject) =>
      server!.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
    );
    const m = await startMeshlet(
      bootstrap(
        [],
        [
          staticCluster('grpc-svc', [port], {
            health_checks: [{ ...FAST, grpc_health_check: { service_name: 'reviews.v1' } }],
          }),
        ],
      ),
    );
    const h = hostByPort(m, 'grpc-svc', port);
    expect(await waitFor(() => !h.failedActiveHealthCheck)).toBe(true);
    expect(asked[0]).toBe('reviews.v1');
    status = 2; // NOT_SERVING
    expect(await waitFor(() => h.failedActiveHealthCheck)).toBe(true);
    status = 1;
    expect(await waitFor(() => !h.failedActiveHealthCheck)).toBe(true);
  });
});

describe('EDS health_status', () => {
  it('sends nothing to UNHEALTHY or DRAINING endpoints', async () => {
    const ups = await Promise.all(['healthy', 'unknown', 'unhealthy', 'draining'].map((n) => startHttpEcho(n)));
    const m = await startMeshlet(
      bootstrap(
        [httpListener('http', routes([{ match: { prefix: '/' }, route: { cluster: 'svc' } }]))],
        [staticCluster('svc', [ups[0]!.port])],
      ),
    );
    // Replace the static cluster by an EDS one, fed as the xDS client would.
    const base = m.server.clusters.get('svc')!.config;
    m.server.clusters.addOrUpdate({ ...base, type: 'EDS', loadAssignment: undefined }, { addedViaApi: true });
    const statuses: HealthStatus[] = ['HEALTHY', 'UNKNOWN', 'UNHEALTHY', 'DRAINING'];
    const cla: ClusterLoadAssignment = {
      clusterName: 'svc',
      overprovisioningFactor: 140,
      endpoints: [
        {
          priority: 0,
          lbEndpoints: ups.map((u, i) => ({
            address: { kind: 'socket', host: '127.0.0.1', port: u.port },
            hostname: '',
            healthStatus: statuses[i]!,
            weight: 1,
            metadata: {},
          })),
        },
      ],
    };
    expect(m.server.clusters.updateAssignment('svc', cla)).toBe(true);
    expect(m.server.clusters.get('svc')!.config.type).toBe('EDS');
    const d = await distribution(m.listenerPort('http'), 40);
    expect(d.get('healthy')).toBe(20);
    expect(d.get('unknown')).toBe(20);
    expect(d.has('unhealthy')).toBe(false);
    expect(d.has('draining')).toBe(false);
  });
});

describe('health check config validation', () => {
  it('reports missing and invalid fields', () => {
    const issues = new Issues();
    decodeHealthCheck(
      new Reader(
        { interval: '0s', http_health_check: { expected_statuses: [{ start: 300, end: 200 }] }, tcp_health_check: {} },
        'hc',
        issues,
      ),
    );
    expect(issues.errors.map((e) => e.path)).toEqual(
      expect.arrayContaining([
        'hc.timeout',
        'hc.interval',
        'hc.unhealthy_threshold',
        'hc.healthy_threshold',
        'hc.tcp_health_check',
      ]),
    );
  });

  it('a cluster with two health checkers is refused, as in Envoy', async () => {
    const up = await startHttpEcho('x');
    const hc = { ...FAST, tcp_health_check: {} };
    await expect(
      startMeshlet(bootstrap([], [staticCluster('two', [up.port], { health_checks: [hc, hc] })])),
    ).rejects.toThrow(/multiple health checks/);
  });
});
