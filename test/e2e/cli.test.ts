/**
 * The `meshlet` binary as a user runs it (built by `npm test` / `npm ci`): --help, a bad
 * bootstrap reported field by field with exit 1, an Envoy YAML bootstrap serving traffic, and
 * graceful SIGTERM (in-flight requests finish, exit 0).
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { closeAll, closedPort, startHttpEcho } from '../support/upstreams';

const BIN = join(__dirname, '../../bin/meshlet.js');
const dir = mkdtempSync(join(tmpdir(), 'meshlet-cli-'));
const procs: ChildProcess[] = [];

afterAll(async () => {
  for (const p of procs) p.kill('SIGKILL');
  await closeAll();
});

function get(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get({ port, host: '127.0.0.1', path, agent: false }, (res) => {
        let body = '';
        res.on('data', (c) => {
          body += c;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      })
      .on('error', reject);
  });
}

async function waitReady(adminPort: number): Promise<void> {
  const end = Date.now() + 15_000;
  for (;;) {
    try {
      if ((await get(adminPort, '/ready')).status === 200) return;
    } catch {}
    if (Date.now() > end) throw new Error('meshlet did not become ready');
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('meshlet CLI', () => {
  it('prints help for the top level and for proxy', () => {
    const top = spawnSync('node', [BIN, '--help'], { encoding: 'utf8' });
    expect(top.status).toBe(0);
    expect(top.stdout).toContain('proxy');
    expect(top.stdout).toContain('control-plane');
    const sub = spawnSync('node', [BIN, 'proxy', '--help'], { encoding: 'utf8' });
    expect(sub.status).toBe(0);
    expect(sub.stdout).toContain('--bootstrap');
  });

  it('rejects a bad bootstrap with one line per bad field and exit code 1, binding nothing', async () => {
    const port = await closedPort();
    const file = join(dir, 'bad.yaml');
    writeFileSync(
      file,
      `static_resources:
  listeners:
  - name: l1
    address: { socket_address: { address: 127.0.0.1, port_value: ${port} } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: t
          cluster: nowhere
  clusters:
  - name: c0
    type: STATIC
    connect_timeout: 1s
  - name: c1
    connect_timeout: forever
    type: STATIC
    lb_policy: ROUND_ROBBIN
`,
    );
    const r = spawnSync('node', [BIN, 'proxy', '--bootstrap', file], { encoding: 'utf8' });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('static_resources.clusters[1].lb_policy: unknown value "ROUND_ROBBIN"');
    expect(r.stderr).toContain('static_resources.clusters[1].connect_timeout');
    expect(r.stderr).toMatch(/nowhere/);
    // Nothing was bound: the port is still free.
    await new Promise<void>((resolve, reject) => {
      const s = http.createServer().listen(port, '127.0.0.1', () => s.close(() => resolve()));
      s.on('error', reject);
    });
  });

  it('serves an Envoy YAML bootstrap and drains in-flight requests on SIGTERM', async () => {
    const slow = await startHttpEcho('slow', (req, res) => {
      if (req.url === '/slow') {
        setTimeout(() => {
          res.writeHead(200, { 'content-type': 'text/plain' });
          res.end('finished');
        }, 600);
        return true;
      }
    });
    const listenPort = await closedPort();
    const adminPort = await closedPort();
    const file = join(dir, 'envoy.yaml');
    writeFileSync(
      file,
      `node: { id: cli-test, cluster: test }
admin:
  address: { socket_address: { address: 127.0.0.1, port_value: ${adminPort} } }
static_resources:
  listeners:
  - name: listener_0
    address: { socket_address: { address: 127.0.0.1, port_value: ${listenPort} } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress_http
          codec_type: AUTO
          route_config:
            name: local_route
            virtual_hosts:
            - name: local_service
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                route: { cluster: service_slow }
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: service_slow
    connect_timeout: 0.25s
    type: STATIC
    lb_policy: ROUND_ROBIN
    load_assignment:
      cluster_name: service_slow
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: { address: 127.0.0.1, port_value: ${slow.port} }
`,
    );
    const p = spawn('node', [BIN, 'proxy', '--bootstrap', file, '--drain-time-s', '5'], { stdio: ['ignore', 'pipe', 'pipe'] });
    procs.push(p);
    let stderr = '';
    p.stderr.on('data', (d) => {
      stderr += d;
    });
    await waitReady(adminPort);
    expect((await get(listenPort, '/fast')).status).toBe(200);
    const inFlight = get(listenPort, '/slow');
    await new Promise((r) => setTimeout(r, 150));
    const exited = new Promise<number | null>((resolve) => p.on('exit', (code) => resolve(code)));
    p.kill('SIGTERM');
    const r = await inFlight;
    expect(r.status).toBe(200);
    expect(r.body).toBe('finished');
    expect(await exited).toBe(0);
    expect(stderr).toBe('');
  });
});
