/**
 * Issue 18.6: a SIGTERM under steady keep-alive load loses nothing. A real `meshlet proxy`
 * process with an inbound and an outbound listener takes HTTP/1.1 and HTTP/2 (h2c), GET and POST,
 * from real clients (node:http keep-alive Agent, node:http2), which retry only what real clients
 * may retry (test/support/keepalive-load.ts). It is sent SIGTERM mid-load; the load goes on for
 * half the drain time (as peers keep sending until the endpoint update reaches them), then stops.
 * Every request must be answered 200; the drain must have told clients to go (Connection: close,
 * GOAWAY) and served requests after the signal on both listeners; the process exits 0 after the
 * drain time. Needs `npm run build` (spawns bin/meshlet.js).
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, expect, it } from 'vitest';
import { type LoadResult, runLoad } from '../support/keepalive-load';
import { staticCluster } from '../support/meshlet';
import { closeAll, closedPort, getText, startHttpEcho } from '../support/upstreams';

afterEach(closeAll);

const root = join(__dirname, '..', '..');

function listener(name: string, port: number, direction: string, cluster: string): Record<string, unknown> {
  return {
    name,
    address: { socket_address: { address: '127.0.0.1', port_value: port } },
    traffic_direction: direction,
    filter_chains: [
      {
        filters: [
          {
            name: 'envoy.filters.network.http_connection_manager',
            typed_config: {
              '@type': 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
              stat_prefix: name,
              route_config: { virtual_hosts: [{ name: 'all', domains: ['*'], routes: [{ match: { prefix: '/' }, route: { cluster } }] }] },
              http_filters: [{ name: 'envoy.filters.http.router', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router' } }],
            },
          },
        ],
      },
    ],
  };
}

it('SIGTERM under keep-alive load (h1 + h2, GET + POST, inbound + outbound) loses zero requests', async () => {
  if (!existsSync(join(root, 'dist', 'proxy', 'cli', 'proxy.js'))) throw new Error('dist/ is not built: run `npm run build` first');
  const app = await startHttpEcho('app', (_req, res, body) => {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': String(body.length).length });
    res.end(String(body.length));
    return true;
  });
  const [inPort, outPort, adminPort] = [await closedPort(), await closedPort(), await closedPort()];
  const dir = mkdtempSync(join(tmpdir(), 'meshlet-drain-load-'));
  const file = join(dir, 'bootstrap.json');
  writeFileSync(
    file,
    JSON.stringify({
      node: { id: 'drain-load', cluster: 'test' },
      admin: { address: { socket_address: { address: '127.0.0.1', port_value: adminPort } } },
      static_resources: {
        listeners: [listener('inbound', inPort, 'INBOUND', 'app'), listener('outbound', outPort, 'OUTBOUND', 'app')],
        clusters: [staticCluster('app', [app.port])],
      },
    }),
  );
  const drainS = 3;
  const p = spawn(process.execPath, [join(root, 'bin', 'meshlet.js'), 'proxy', '-c', file, '--drain-time-s', String(drainS), '--log-level', 'error'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  p.stderr!.on('data', (d) => {
    stderr += d;
  });
  const exited = new Promise<number | null>((resolve) => p.on('exit', (code) => resolve(code)));
  try {
    const readyBy = Date.now() + 20_000;
    while (!(await getText(adminPort, '/ready').then((r) => r.status === 200, () => false))) {
      if (Date.now() > readyBy || p.exitCode !== null) throw new Error(`meshlet did not become ready: ${stderr}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    let signalled = false;
    let stopped = false;
    const started = Date.now();
    const targets = [inPort, outPort].flatMap((port) =>
      (['h1', 'h2'] as const).flatMap((protocol) => (['GET', 'POST'] as const).map((method) => ({ port, protocol, method }))),
    );
    const loads = targets.map((t) =>
      runLoad(t, { concurrency: 2, maxRequests: 3_000, stop: () => stopped || Date.now() - started > 15_000, marker: () => signalled }),
    );
    await new Promise((r) => setTimeout(r, 700));
    p.kill('SIGTERM');
    signalled = true;
    // Peers keep sending for a while after the pod is told to stop.
    await new Promise((r) => setTimeout(r, (drainS * 1000) / 2));
    stopped = true;
    const results: LoadResult[] = await Promise.all(loads);
    const summary = results.map((r) => `${r.target} ok=${r.ok} after=${r.okAfterMarker} retried=${r.retried} close=${r.closeHeaders} goaway=${r.goaways}`).join('\n');
    const lost = results.flatMap((r) => r.lost.map((l) => `${r.target}: ${l}`));
    expect(lost, `lost requests:\n${lost.slice(0, 20).join('\n')}`).toEqual([]);
    // (Counts are modest on a shared 2-core machine; what matters is that nothing is lost.)
    for (const r of results) {
      // Served during the drain, on both listeners, and the drain told clients to go:
      // Connection: close on HTTP/1.1, GOAWAY on HTTP/2.
      expect(r.okAfterMarker, summary).toBeGreaterThan(2);
      if (r.target.startsWith('h1')) expect(r.closeHeaders, summary).toBeGreaterThan(0);
      else expect(r.goaways, summary).toBeGreaterThan(0);
    }
    const code = await Promise.race([exited, new Promise((r) => setTimeout(() => r('still running'), 15_000))]);
    expect(code).toBe(0);
  } finally {
    if (p.exitCode === null) p.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
}, 60_000);
