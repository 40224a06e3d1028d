/**
 * The metrics output against real Prometheus tooling (Debian's `prometheus` package, installed by
 * scripts/install-test-deps.sh): `promtool check metrics` accepts the exposition, and a real
 * Prometheus server started here on loopback scrapes meshlet's 15090-style port; the values are
 * read back through Prometheus's HTTP API (/api/v1/query). Waits are bounded; the server is
 * stopped and its data directory removed. A missing binary fails the test with the fix.
 */
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import type http from 'node:http';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  bootstrap,
  httpListener,
  routes,
  type StartedMeshlet,
  startMeshlet,
  staticCluster,
  stopAllMeshlets,
} from '../support/meshlet';
import { closeAll, closedPort, startHttpEcho } from '../support/upstreams';
import { acceptsGzip } from '../../proxy/admin/admin-server';
import { request } from './helpers';

function requireBinary(name: string): string {
  const r = spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' });
  const path = r.stdout.trim();
  if (r.status !== 0 || !path) {
    throw new Error(
      `${name} is not installed: run \`npm run test:deps\` (scripts/install-test-deps.sh installs Debian's prometheus package)`,
    );
  }
  return path;
}

let m: StartedMeshlet;
let dir: string;
let prom: ChildProcess | undefined;
let promLog = '';

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'meshlet-prom-'));
  const app = await startHttpEcho('app', (req, res) => {
    if (req.url === '/boom') {
      res.writeHead(500).end();
      return true;
    }
  });
  m = await startMeshlet(
    bootstrap(
      [
        {
          ...httpListener(
            'outbound_app',
            routes([{ match: { prefix: '/' }, route: { cluster: 'outbound|80||app.default.svc.cluster.local' } }]),
          ),
          traffic_direction: 'OUTBOUND',
        },
      ],
      [staticCluster('outbound|80||app.default.svc.cluster.local', [app.port])],
      { node: { id: 'app-v1', cluster: 'app', metadata: { WORKLOAD_NAME: 'client-v1', NAMESPACE: 'default' } } },
    ),
    { telemetry: { statsPort: 0, portsHost: '127.0.0.1' } },
  );
  const port = m.listenerPort('outbound_app');
  for (let i = 0; i < 7; i++) expect((await request(port, `/ok/${i}`)).status).toBe(200);
  for (let i = 0; i < 2; i++) expect((await request(port, '/boom')).status).toBe(500);
});

afterAll(async () => {
  if (prom && prom.exitCode === null) {
    const exited = new Promise((r) => prom!.once('exit', r));
    prom.kill('SIGTERM');
    const t = setTimeout(() => prom?.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(t);
  }
  await stopAllMeshlets();
  await closeAll();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('Prometheus tooling', () => {
  it('promtool check metrics accepts the exposition', async () => {
    const promtool = requireBinary('promtool');
    const body = (await request(m.server.telemetry.statsPort, '/stats/prometheus')).body;
    expect(body).toContain('istio_requests_total{');
    const r = spawnSync(promtool, ['check', 'metrics'], { input: body, encoding: 'utf8', timeout: 20_000 });
    // promtool exits 1 when it cannot parse the exposition and 3 for lint findings. The one
    // finding allowed is the unit of Istio's standard metric name, which Istio fixes (dashboards
    // and alerts query istio_request_duration_milliseconds); everything else must be clean.
    const findings = `${r.stdout}${r.stderr}`.split('\n').filter((l) => l.trim() !== '');
    expect(
      findings.filter(
        (l) => l !== 'istio_request_duration_milliseconds use base unit "seconds" instead of "milliseconds"',
      ),
    ).toEqual([]);
    expect(r.status === 0 || (r.status === 3 && findings.length === 1)).toBe(true);
    // Without that fixed name the output passes outright.
    const withoutIstioDuration = body
      .split('\n')
      .filter((l) => !l.includes('istio_request_duration_milliseconds'))
      .join('\n');
    const clean = spawnSync(promtool, ['check', 'metrics'], {
      input: withoutIstioDuration,
      encoding: 'utf8',
      timeout: 20_000,
    });
    expect(`${clean.stdout}${clean.stderr}`.trim()).toBe('');
    expect(clean.status).toBe(0);
  });

  it('a real Prometheus server scrapes meshlet and answers queries over its HTTP API', async () => {
    const bin = requireBinary('prometheus');
    const webPort = await closedPort();
    const cfg = join(dir, 'prometheus.yml');
    writeFileSync(
      cfg,
      [
        'global:',
        '  scrape_interval: 1s',
        '  scrape_timeout: 1s',
        'scrape_configs:',
        '  - job_name: meshlet',
        '    metrics_path: /stats/prometheus',
        '    static_configs:',
        `      - targets: ['127.0.0.1:${m.server.telemetry.statsPort}']`,
        '',
      ].join('\n'),
    );
    expect(execFileSync(requireBinary('promtool'), ['check', 'config', cfg], { encoding: 'utf8' })).toContain(
      'SUCCESS',
    );
    // What Prometheus asks for: it sends Accept-Encoding: gzip, so it reads meshlet's gzip'ed body.
    const encodings: (string | undefined)[] = [];
    (m.server.telemetry as unknown as { statsServer: http.Server }).statsServer.prependListener('request', (req: http.IncomingMessage) =>
      encodings.push(req.headers['accept-encoding']),
    );
    prom = spawn(
      bin,
      [`--config.file=${cfg}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${webPort}`],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    prom.stdout?.on('data', (d) => {
      promLog += d;
    });
    prom.stderr?.on('data', (d) => {
      promLog += d;
    });

    const query = async (q: string): Promise<{ metric: Record<string, string>; value: [number, string] }[]> => {
      const r = await request(webPort, `/api/v1/query?query=${encodeURIComponent(q)}`);
      if (r.status !== 200) throw new Error(`query ${q}: HTTP ${r.status} ${r.body}`);
      const j = JSON.parse(r.body) as {
        status: string;
        data: { result: { metric: Record<string, string>; value: [number, string] }[] };
      };
      return j.data.result;
    };
    // Bounded wait: Prometheus starts, then scrapes once per second.
    const deadline = Date.now() + 30_000;
    let ok: Awaited<ReturnType<typeof query>> = [];
    while (Date.now() < deadline) {
      if (prom.exitCode !== null) throw new Error(`prometheus exited with ${prom.exitCode}:\n${promLog.slice(-2000)}`);
      try {
        ok = await query('istio_requests_total{job="meshlet",reporter="source",response_code="200"}');
        if (ok.length > 0) break;
      } catch {
        // not listening yet
      }
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(ok, `no samples scraped in 30 s; prometheus log:\n${promLog.slice(-2000)}`).toHaveLength(1);
    expect(ok[0]!.value[1]).toBe('7');
    expect(ok[0]!.metric).toMatchObject({
      source_workload: 'client-v1',
      destination_service: 'app.default.svc.cluster.local',
      response_flags: '-',
    });
    const failed = await query('sum(istio_requests_total{job="meshlet",response_code="500"})');
    expect(failed[0]!.value[1]).toBe('2');
    const up = await query('up{job="meshlet"}');
    expect(up[0]!.value[1]).toBe('1');
    const rq = await query(
      'envoy_cluster_upstream_rq_total{envoy_cluster_name="outbound|80||app.default.svc.cluster.local"}',
    );
    expect(rq[0]!.value[1]).toBe('9');
    const hist = await query('sum(istio_request_duration_milliseconds_count{job="meshlet"})');
    expect(hist[0]!.value[1]).toBe('9');
    expect(encodings.length).toBeGreaterThan(0);
    expect(encodings.every((e) => acceptsGzip(e))).toBe(true);
  });
});
