/**
 * The agent port (Istio's 15020) in front of a real meshlet and a real app on loopback: an app
 * whose readiness probe fails and then passes (HTTP), TCP and gRPC probes, `/healthz/ready` from
 * meshlet's admin, and `/stats/prometheus` merging meshlet's metrics with the app's — scraped by a
 * real Prometheus server (Debian's package, scripts/install-test-deps.sh), queried back over its
 * HTTP API. Waits are bounded.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAppProbers } from '../../proxy/agent/app-probers';
import { parsePrometheusAnnotations, StatusServer } from '../../proxy/agent/status-server';
import { type StartedMeshlet, startMeshlet, stopAllMeshlets } from '../support/meshlet';
import { closedPort, getText } from '../support/upstreams';

let meshlet: StartedMeshlet;
let app: http.Server;
let appPort = 0;
let ready = false;
let grpcServer: grpc.Server;
let grpcPort = 0;
let serving = 2; // NOT_SERVING
let status: StatusServer;
let prom: ChildProcess | undefined;
const dir = mkdtempSync(join(tmpdir(), 'meshlet-status-'));


beforeAll(async () => {
  meshlet = await startMeshlet({
    node: { id: 'sidecar~127.0.0.1~app-1.shop~shop.svc.cluster.local', cluster: 'app.shop' },
    admin: { address: { socket_address: { address: '127.0.0.1', port_value: 0 } } },
  });
  app = http.createServer((req, res) => {
    if (req.url === '/ready') res.writeHead(ready ? 200 : 503).end();
    else if (req.url === '/metrics') res.writeHead(200, { 'content-type': 'text/plain' }).end('# TYPE app_orders_total counter\napp_orders_total{shop="main"} 42\n');
    else res.writeHead(404).end();
  });
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
  appPort = (app.address() as AddressInfo).port;
  grpcServer = new grpc.Server();
  grpcServer.addService(
    {
      Check: {
        path: '/grpc.health.v1.Health/Check',
        requestStream: false,
        responseStream: false,
        requestSerialize: (b: Buffer) => b,
        requestDeserialize: (b: Buffer) => b,
        responseSerialize: (n: number) => Buffer.from([0x08, n]),
        responseDeserialize: (b: Buffer) => b[1],
      },
    },
    { Check: (_call: grpc.ServerUnaryCall<Buffer, number>, cb: grpc.sendUnaryData<number>) => cb(null, serving) },
  );
  grpcPort = await new Promise<number>((resolve, reject) =>
    grpcServer.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
  );
  const closed = await closedPort();
  // What Istio's injector writes for an app container named "app" (the rewritten probes' originals).
  const probers = parseAppProbers(
    JSON.stringify({
      '/app-health/app/readyz': { httpGet: { path: '/ready', port: appPort, scheme: 'HTTP' }, timeoutSeconds: 1 },
      '/app-health/app/livez': { tcpSocket: { port: appPort }, timeoutSeconds: 1 },
      '/app-health/app/startupz': { grpc: { port: grpcPort, service: null }, timeoutSeconds: 1 },
      '/app-health/sidecar/livez': { tcpSocket: { port: closed }, timeoutSeconds: 1 },
    }),
  );
  status = new StatusServer({
    port: 0,
    host: '127.0.0.1',
    adminPort: meshlet.adminPort,
    probers,
    appMetrics: parsePrometheusAnnotations(JSON.stringify({ scrape: 'true', path: '/metrics', port: String(appPort) })),
  });
  await status.start();
});

afterAll(async () => {
  if (prom && prom.exitCode === null) {
    const exited = new Promise((r) => prom!.once('exit', r));
    prom.kill('SIGTERM');
    const t = setTimeout(() => prom?.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(t);
  }
  await status?.close();
  grpcServer?.forceShutdown();
  app?.close();
  await stopAllMeshlets();
  rmSync(dir, { recursive: true, force: true });
});

describe('agent port 15020', () => {
  it('answers an app readiness probe that fails, then passes', async () => {
    expect((await getText(status.port, '/app-health/app/readyz')).status).toBe(503);
    ready = true;
    expect((await getText(status.port, '/app-health/app/readyz')).status).toBe(200);
  });

  it('runs TCP and gRPC probes, and 404s an unknown path', async () => {
    expect((await getText(status.port, '/app-health/app/livez')).status).toBe(200);
    expect((await getText(status.port, '/app-health/sidecar/livez')).status).toBe(500);
    expect((await getText(status.port, '/app-health/app/startupz')).status).toBe(500);
    serving = 1; // SERVING
    expect((await getText(status.port, '/app-health/app/startupz')).status).toBe(200);
    expect((await getText(status.port, '/app-health/other/readyz')).status).toBe(404);
  });

  it("merges meshlet's in-process metrics stream with the app's when meshlet runs in this process (no admin round trip)", async () => {
    // The admin port given is closed: the scrape can only come from the stream handed over.
    const direct = new StatusServer({
      port: 0,
      host: '127.0.0.1',
      adminPort: await closedPort(),
      metrics: (write) => meshlet.server.telemetry.metrics.prometheusStream(write),
      probers: new Map(),
      appMetrics: parsePrometheusAnnotations(JSON.stringify({ scrape: 'true', path: '/metrics', port: String(appPort) })),
    });
    await direct.start();
    try {
      const merged = await getText(direct.port, '/stats/prometheus');
      expect(merged.status).toBe(200);
      expect(merged.body).toContain('# TYPE envoy_server_uptime');
      expect(merged.body.endsWith('\napp_orders_total{shop="main"} 42\n')).toBe(true);
      const zipped = await new Promise<string>((resolve, reject) => {
        http
          .get({ host: '127.0.0.1', port: direct.port, path: '/stats/prometheus', headers: { 'accept-encoding': 'gzip' }, agent: false }, (res) => {
            expect(res.headers['content-encoding']).toBe('gzip');
            const parts: Buffer[] = [];
            res.on('data', (c: Buffer) => parts.push(c));
            res.on('end', () => resolve(gunzipSync(Buffer.concat(parts)).toString('utf8')));
          })
          .on('error', reject);
      });
      expect(zipped).toContain('# TYPE envoy_server_uptime');
      expect(zipped.endsWith('\napp_orders_total{shop="main"} 42\n')).toBe(true);
    } finally {
      await direct.close();
    }
  });

  it("reports meshlet's readiness on /healthz/ready", async () => {
    expect((await getText(status.port, '/healthz/ready')).status).toBe(200);
  });

  it("merges meshlet's metrics with the app's, and a real Prometheus scrapes both", async () => {
    const merged = await getText(status.port, '/stats/prometheus');
    expect(merged.status).toBe(200);
    expect(merged.body).toContain('# TYPE envoy_server_uptime');
    expect(merged.body).toContain('app_orders_total{shop="main"} 42');
    // Streamed through, and gzip'ed for a scraper that asks (Prometheus sends Accept-Encoding: gzip).
    const zipped = await new Promise<{ encoding?: string; body: string }>((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port: status.port, path: '/stats/prometheus', headers: { 'accept-encoding': 'gzip' }, agent: false }, (res) => {
          const parts: Buffer[] = [];
          res.on('data', (c: Buffer) => parts.push(c));
          res.on('end', () => resolve({ encoding: res.headers['content-encoding'], body: gunzipSync(Buffer.concat(parts)).toString('utf8') }));
        })
        .on('error', reject);
    });
    expect(zipped.encoding).toBe('gzip');
    expect(zipped.body).toContain('# TYPE envoy_server_uptime');
    expect(zipped.body.endsWith('app_orders_total{shop="main"} 42\n')).toBe(true);
    expect(merged.body.endsWith('app_orders_total{shop="main"} 42\n')).toBe(true);

    const which = spawnSync('sh', ['-c', 'command -v prometheus'], { encoding: 'utf8' });
    const bin = which.stdout.trim();
    if (which.status !== 0 || !bin) throw new Error('prometheus is not installed: run `npm run test:deps` (scripts/install-test-deps.sh)');
    const webPort = await closedPort();
    const cfg = join(dir, 'prometheus.yml');
    writeFileSync(
      cfg,
      [
        'global:',
        '  scrape_interval: 1s',
        '  scrape_timeout: 1s',
        'scrape_configs:',
        '  - job_name: pod',
        '    metrics_path: /stats/prometheus',
        '    static_configs:',
        `      - targets: ['127.0.0.1:${status.port}']`,
        '',
      ].join('\n'),
    );
    let log = '';
    prom = spawn(bin, [`--config.file=${cfg}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${webPort}`], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    prom.stdout?.on('data', (d) => (log += d));
    prom.stderr?.on('data', (d) => (log += d));
    const query = async (q: string): Promise<{ metric: Record<string, string>; value: [number, string] }[]> => {
      const r = await getText(webPort, `/api/v1/query?query=${encodeURIComponent(q)}`).catch(() => ({ status: 0, body: '' }));
      if (r.status !== 200) return [];
      return (JSON.parse(r.body) as { data: { result: { metric: Record<string, string>; value: [number, string] }[] } }).data.result;
    };
    const deadline = Date.now() + 30_000;
    let appSeries: Awaited<ReturnType<typeof query>> = [];
    let meshletSeries: Awaited<ReturnType<typeof query>> = [];
    while (Date.now() < deadline) {
      appSeries = await query('app_orders_total');
      meshletSeries = await query('envoy_server_uptime');
      if (appSeries.length > 0 && meshletSeries.length > 0) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    expect(appSeries, log).toHaveLength(1);
    expect(appSeries[0]!.metric).toMatchObject({ job: 'pod', shop: 'main' });
    expect(appSeries[0]!.value[1]).toBe('42');
    expect(meshletSeries.length).toBeGreaterThan(0);
    const up = await query('up{job="pod"}');
    expect(up[0]?.value[1]).toBe('1');
  });
});
