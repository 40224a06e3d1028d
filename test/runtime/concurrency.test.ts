/**
 * `meshlet proxy --concurrency 2` as a user runs it (the built CLI; MESHLET_BIN overrides the
 * launcher): two worker processes share the listener and both serve traffic; the primary's admin
 * reports ready only with every worker ready, sums /stats and replaces a killed worker; over ADS
 * there is ONE stream for the proxy and a pushed update reaches both workers; SIGTERM drains both
 * and the whole tree exits 0.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { JsonAdsServer } from '../support/json-ads-server';
import { adsBootstrap } from '../support/mesh';
import { bootstrap, httpListener, routes, socketAddress, staticCluster } from '../support/meshlet';
import { closeAll, closedPort, type HttpEcho, startHttpEcho } from '../support/upstreams';

const BIN = process.env.MESHLET_BIN ?? join(__dirname, '../../bin/meshlet.js');
const dir = mkdtempSync(join(tmpdir(), 'meshlet-concurrency-'));
const procs: ChildProcess[] = [];
const servers: JsonAdsServer[] = [];

afterEach(async () => {
  for (const p of procs.splice(0)) {
    if (p.exitCode === null && p.signalCode === null) {
      try {
        process.kill(-p.pid!, 'SIGKILL');
      } catch {
        p.kill('SIGKILL');
      }
    }
  }
  for (const s of servers.splice(0)) await s.stop();
});
afterAll(closeAll);

type Answer = { status: number; body: string; headers: http.IncomingHttpHeaders };

function request(port: number, path: string, method = 'GET'): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request({ port, host: '127.0.0.1', path, method, agent: false }, (res) => {
      let body = '';
      res.on('data', (c) => {
        body += c;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
    });
    req.on('error', reject);
    req.end();
  });
}

async function until(cond: () => Promise<boolean>, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    try {
      if (await cond()) return;
    } catch {}
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 50));
  }
}

function start(boot: Record<string, unknown>, name: string): ChildProcess {
  const file = join(dir, `${name}.json`);
  writeFileSync(file, JSON.stringify(boot));
  const p = spawn(process.execPath, [BIN, 'proxy', '--bootstrap', file, '--concurrency', '2', '--log-level', 'warn', '--drain-time-s', '1'], {
    stdio: ['ignore', 'ignore', 'pipe'],
    detached: true,
  });
  p.stderr!.resume();
  procs.push(p);
  return p;
}

interface WorkerInfo {
  id: number;
  pid: number;
  admin_port: number;
  alive: boolean;
}

async function workers(adminPort: number): Promise<WorkerInfo[]> {
  return (JSON.parse((await request(adminPort, '/workers')).body) as { workers: WorkerInfo[] }).workers;
}

/** A worker's own listener downstream_cx_total (from its private admin). */
async function workerConnections(w: WorkerInfo): Promise<number> {
  const stats = (await request(w.admin_port, '/stats')).body;
  let n = 0;
  for (const m of stats.matchAll(/^listener\.[^\n]*\.downstream_cx_total: (\d+)$/gm)) n += Number(m[1]);
  return n;
}

describe('meshlet proxy --concurrency 2', () => {
  it('serves a static bootstrap from both workers; admin aggregates readiness and stats; SIGTERM drains all', async () => {
    const echo: HttpEcho = await startHttpEcho('app');
    const [port, adminPort] = [await closedPort(), await closedPort()];
    const boot = bootstrap(
      [httpListener('http', routes([{ match: { prefix: '/' }, route: { cluster: 'app' } }]), {}, port)],
      [staticCluster('app', [echo.port])],
      { admin: { address: socketAddress(adminPort) } },
    );
    const p = start(boot, 'static');
    await until(async () => (await request(adminPort, '/ready')).status === 200);
    const ws = await workers(adminPort);
    expect(ws).toHaveLength(2);
    expect(new Set(ws.map((w) => w.pid)).size).toBe(2);
    expect(ws.every((w) => w.alive && w.admin_port > 0 && w.pid !== p.pid)).toBe(true);

    // Fresh connections until the kernel has handed some to each worker (bounded: 2,000).
    let sent = 0;
    const ok: number[] = [];
    while (sent < 2000) {
      const batch = await Promise.all(Array.from({ length: 20 }, () => request(port, '/hello')));
      sent += batch.length;
      for (const a of batch) ok.push(a.status);
      const counts = await Promise.all(ws.map(workerConnections));
      if (counts.every((c) => c > 0)) break;
    }
    expect(ok.every((s) => s === 200)).toBe(true);
    const counts = await Promise.all(ws.map(workerConnections));
    expect(counts.every((c) => c > 0)).toBe(true);

    // The primary's /stats is the sum of the workers'.
    const total = (await request(adminPort, '/stats')).body.match(/^listener\.[^\n]*\.downstream_cx_total: (\d+)$/m);
    expect(Number(total?.[1])).toBe(counts[0]! + counts[1]!);
    expect(echo.requests.length).toBe(sent);

    // One worker killed: readiness drops until the primary has replaced it.
    process.kill(ws[0]!.pid, 'SIGKILL');
    await until(async () => {
      const now = await workers(adminPort);
      return now.every((w) => w.alive && w.admin_port > 0) && !now.some((w) => w.pid === ws[0]!.pid);
    });
    await until(async () => (await request(adminPort, '/ready')).status === 200);
    expect((await request(port, '/again')).status).toBe(200);

    const exited = new Promise<number | null>((r) => p.once('exit', (code) => r(code)));
    p.kill('SIGTERM');
    expect(await exited).toBe(0);
    const after = await workers(adminPort).catch(() => 'gone');
    expect(after).toBe('gone');
  }, 60_000);

  it('refuses --status-port with --concurrency > 1 (the agent port is served beside a single process only) instead of starting without it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'meshlet-conc-status-'));
    const file = join(dir, 'bootstrap.json');
    writeFileSync(file, JSON.stringify(bootstrap([], [], { admin: { address: socketAddress(await closedPort()) } })));
    const r = spawnSync(process.execPath, [BIN, 'proxy', '--bootstrap', file, '--concurrency', '2', '--status-port', String(await closedPort())], {
      encoding: 'utf8',
      timeout: 20_000,
    });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('--status-port is not supported with --concurrency > 1');
  });

  it('exits 1 when the workers cannot bind the listener, as a single process would', async () => {
    const busy = http.createServer();
    await new Promise<void>((r) => busy.listen(0, '127.0.0.1', r));
    const port = (busy.address() as { port: number }).port;
    try {
      const boot = bootstrap([httpListener('http', routes([{ match: { prefix: '/' }, direct_response: { status: 200 } }]), {}, port)], [], {
        admin: { address: socketAddress(await closedPort()) },
      });
      const p = start(boot, 'busy');
      const code = await new Promise<number | null>((r) => p.once('exit', (c) => r(c)));
      expect(code).toBe(1);
    } finally {
      await new Promise((r) => busy.close(r));
    }
  }, 30_000);

  it('holds one ADS stream for both workers and applies a pushed update in each', async () => {
    const a = await startHttpEcho('a');
    const b = await startHttpEcho('b');
    const ads = new JsonAdsServer();
    await ads.start();
    servers.push(ads);
    const T = {
      listener: 'type.googleapis.com/envoy.config.listener.v3.Listener',
      route: 'type.googleapis.com/envoy.config.route.v3.RouteConfiguration',
      cluster: 'type.googleapis.com/envoy.config.cluster.v3.Cluster',
      cla: 'type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment',
    };
    const [port, adminPort] = [await closedPort(), await closedPort()];
    const cla = (p: number) => ({ cluster_name: 'svc', endpoints: [{ lb_endpoints: [{ endpoint: { address: socketAddress(p) } }] }] });
    ads.set(T.cluster, [{ name: 'svc', type: 'EDS', connect_timeout: '1s', eds_cluster_config: { eds_config: { ads: {}, resource_api_version: 'V3' } } }]);
    ads.set(T.cla, [cla(a.port)]);
    ads.set(T.route, [{ name: 'r1', virtual_hosts: [{ name: 'all', domains: ['*'], routes: [{ match: { prefix: '/' }, route: { cluster: 'svc' } }] }] }]);
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
    const boot = { ...adsBootstrap('conc-node', ads.port), admin: { address: socketAddress(adminPort) } };
    start(boot, 'ads');
    await until(async () => (await request(adminPort, '/ready')).status === 200);
    expect((await request(port, '/')).headers['x-upstream']).toBe('a');
    const ws = await workers(adminPort);
    expect(ws).toHaveLength(2);

    // Each worker's own config dump has the first endpoint; then push a new one.
    const edsPort = async (w: WorkerInfo): Promise<string> => (await request(w.admin_port, '/config_dump?include_eds')).body;
    for (const w of ws) expect(await edsPort(w)).toContain(`"port_value": ${a.port}`);
    const acksBefore = ads.acks.filter((x) => x.typeUrl === T.cla).length;
    ads.set(T.cla, [cla(b.port)]);
    for (const w of ws) await until(async () => (await edsPort(w)).includes(`"port_value": ${b.port}`));
    await until(async () => ads.acks.filter((x) => x.typeUrl === T.cla).length > acksBefore);

    // One stream for the whole proxy (the server's open ADS calls), and the update was ACKed on it.
    expect((ads as unknown as { calls: Set<unknown> }).calls.size).toBe(1);
    expect(ads.acks.some((x) => x.typeUrl === T.cla && x.version === '2')).toBe(true);
    expect(ads.nacks).toEqual([]);

    // Traffic on fresh connections (either worker) now reaches b only.
    const answers = await Promise.all(Array.from({ length: 20 }, () => request(port, '/')));
    expect(answers.map((x) => x.headers['x-upstream'])).toEqual(Array(20).fill('b'));
  }, 60_000);
});
