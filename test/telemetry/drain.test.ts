/**
 * Shutdown ordering for sidecars: when shutdown starts (what SIGTERM does), requests in flight on
 * the inbound side complete, new inbound connections are still served during the drain but told
 * to close (Envoy's graceful drain, as pilot-agent asks for it), and the app's outbound calls
 * keep working. By default the outbound side stays up for the whole drain time
 * (the app may still be finishing); with exit-on-zero-active-connections, or a /quitquitquit
 * during the drain, the proxy stops as soon as no connection is left. Drain times are long (60 s)
 * so that finishing early can only come from the zero-connection rule, never from a timer.
 * The last test sends a real SIGTERM to `bin/meshlet.js proxy` (needs `npm run build`).
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  bootstrap,
  httpListener,
  routes,
  type StartedMeshlet,
  startMeshlet,
  staticCluster,
  stopAllMeshlets,
} from '../support/meshlet';
import { closeAll, closedPort, type HttpEcho, startHttpEcho } from '../support/upstreams';
import { request } from './helpers';

/** An app whose /hold requests wait until the test releases them. */
interface HeldApp {
  echo: HttpEcho;
  held: http.ServerResponse[];
  release(): void;
}

async function heldApp(name: string): Promise<HeldApp> {
  const held: http.ServerResponse[] = [];
  const echo = await startHttpEcho(name, (req, res) => {
    if (req.url === '/hold') {
      held.push(res);
      return true;
    }
  });
  return {
    echo,
    held,
    release: () => {
      for (const r of held.splice(0)) r.writeHead(200, { 'content-type': 'text/plain' }).end(`${name} done`);
    },
  };
}

async function until(cond: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function connectError(port: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(undefined);
    });
    s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code));
  });
}

async function sidecar(
  inboundApp: HeldApp,
  remote: HeldApp,
  opts: { exitOnZero?: boolean } = {},
): Promise<StartedMeshlet> {
  return startMeshlet(
    bootstrap(
      [
        {
          ...httpListener('inbound_app', routes([{ match: { prefix: '/' }, route: { cluster: 'inbound|80||' } }])),
          traffic_direction: 'INBOUND',
        },
        {
          ...httpListener(
            'outbound_remote',
            routes([{ match: { prefix: '/' }, route: { cluster: 'outbound|80||remote' } }]),
          ),
          traffic_direction: 'OUTBOUND',
        },
      ],
      [staticCluster('inbound|80||', [inboundApp.echo.port]), staticCluster('outbound|80||remote', [remote.echo.port])],
    ),
    { drainTimeoutMs: 60_000, drainStrategy: 'immediate', exitOnZeroActiveConnections: opts.exitOnZero ?? false },
  );
}

afterEach(async () => {
  await stopAllMeshlets();
  await closeAll();
});

describe('drain ordering on shutdown', () => {
  it('finishes inbound in-flight requests, serves new inbound connections with Connection: close, keeps outbound working', async () => {
    const app = await heldApp('app');
    const remote = await heldApp('remote');
    const m = await sidecar(app, remote);
    const inPort = m.listenerPort('inbound_app');
    const outPort = m.listenerPort('outbound_remote');

    const inFlight = request(inPort, '/hold');
    await until(() => app.held.length === 1, 'the inbound request to reach the app');
    let settled = false;
    const done = m.server.shutdown().then(() => {
      settled = true;
    });
    expect(m.server.state).toBe('DRAINING');
    expect(m.server.ready).toBe(false);

    // A peer that has not heard of the drain yet is still served, and told to close.
    const late = await request(inPort, '/late-peer');
    expect(late.status).toBe(200);
    expect(late.headers.connection).toBe('close');
    // The app's outbound calls still work, new connections included.
    const out = await request(outPort, '/call-during-drain');
    expect(out.status).toBe(200);
    expect(JSON.parse(out.body).upstream).toBe('remote');

    // The request in flight at shutdown completes.
    app.release();
    const r = await inFlight;
    expect(r.status).toBe(200);
    expect(r.body).toBe('app done');

    // No connection is left, but the outbound side stays for the drain time (the app may still
    // be shutting down and calling out).
    await until(() => m.server.listeners.activeConnections === 0, 'connections to close');
    expect((await request(outPort, '/still-open')).status).toBe(200);
    expect(settled).toBe(false);

    // A job's /quitquitquit during the drain ends it once nothing is left.
    expect((await request(m.adminPort, '/quitquitquit', { method: 'POST' })).status).toBe(200);
    await done;
    expect(await connectError(outPort)).toBe('ECONNREFUSED');
  });

  it('with exit-on-zero-active-connections, stops as soon as the last connection closes', async () => {
    const app = await heldApp('app');
    const remote = await heldApp('remote');
    const m = await sidecar(app, remote, { exitOnZero: true });
    const outPort = m.listenerPort('outbound_remote');

    // The app is finishing a call to a remote service when the pod is told to stop.
    const outCall = request(outPort, '/hold');
    await until(() => remote.held.length === 1, 'the outbound call to reach the remote');
    let settled = false;
    const done = m.server.shutdown().then(() => {
      settled = true;
    });
    // One connection is still active: the drain goes on.
    await new Promise((r) => setImmediate(r));
    expect(settled).toBe(false);
    remote.release();
    expect((await outCall).status).toBe(200);
    // 60 s drain time and a 30 s test timeout: only the zero-connection rule can end it here.
    await done;
    expect(m.server.listeners.activeConnections).toBe(0);
  });
});

describe('POST /drain_listeners?graceful', () => {
  it('keeps accepting for the drain time while telling connections to close, then refuses', async () => {
    const app = await heldApp('app');
    const remote = await heldApp('remote');
    const m = await startMeshlet(
      bootstrap(
        [
          { ...httpListener('inbound_app', routes([{ match: { prefix: '/' }, route: { cluster: 'in' } }])), traffic_direction: 'INBOUND' },
          { ...httpListener('outbound_remote', routes([{ match: { prefix: '/' }, route: { cluster: 'out' } }])), traffic_direction: 'OUTBOUND' },
        ],
        [staticCluster('in', [app.echo.port]), staticCluster('out', [remote.echo.port])],
      ),
      { drainTimeoutMs: 1_500, drainStrategy: 'immediate' },
    );
    const inPort = m.listenerPort('inbound_app');
    const outPort = m.listenerPort('outbound_remote');
    // (The helper's client has no agent: it asks for keep-alive explicitly so that a close is ours.)
    const keepAlive = { headers: { connection: 'keep-alive' } };
    expect((await request(inPort, '/before', keepAlive)).headers.connection).not.toBe('close');
    const drainedAt = Date.now();
    expect((await request(m.adminPort, '/drain_listeners?graceful&inboundonly', { method: 'POST' })).status).toBe(200);
    expect(m.server.ready).toBe(false);
    // During the drain time: still served, told to close. Outbound untouched.
    const during = await request(inPort, '/during', keepAlive);
    expect(during.status).toBe(200);
    expect(during.headers.connection).toBe('close');
    expect((await request(outPort, '/out', keepAlive)).headers.connection).not.toBe('close');
    // After it: refused (bounded wait).
    await until(() => Date.now() - drainedAt > 1_500, 'the drain time');
    const refusedBy = Date.now() + 5_000;
    while ((await connectError(inPort)) !== 'ECONNREFUSED') {
      if (Date.now() > refusedBy) throw new Error('inbound still accepting after the drain time');
      await new Promise((r) => setTimeout(r, 20));
    }
    expect((await request(outPort, '/out-after')).status).toBe(200);
  });
});

describe('SIGTERM to a meshlet process', () => {
  it('drains inbound with Connection: close, keeps outbound, reports not ready on 15021, and exits 0 when the last connection closes', async () => {
    const root = join(__dirname, '..', '..');
    if (!existsSync(join(root, 'dist', 'proxy', 'telemetry', 'telemetry.js'))) {
      throw new Error('dist/ is not built with telemetry: run `npm run build` before this test (npm test does)');
    }
    const app = await heldApp('app');
    const remote = await heldApp('remote');
    const [inPort, outPort, adminPort, healthPort] = [
      await closedPort(),
      await closedPort(),
      await closedPort(),
      await closedPort(),
    ];
    const dir = mkdtempSync(join(tmpdir(), 'meshlet-drain-'));
    const listener = (name: string, port: number, direction: string, cluster: string) => ({
      name,
      address: { socket_address: { address: '127.0.0.1', port_value: port } },
      traffic_direction: direction,
      filter_chains: [
        {
          filters: [
            {
              name: 'envoy.filters.network.http_connection_manager',
              typed_config: {
                '@type':
                  'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
                stat_prefix: name,
                route_config: {
                  virtual_hosts: [
                    { name: 'all', domains: ['*'], routes: [{ match: { prefix: '/' }, route: { cluster } }] },
                  ],
                },
                http_filters: [
                  {
                    name: 'envoy.filters.http.router',
                    typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router' },
                  },
                ],
              },
            },
          ],
        },
      ],
    });
    const file = join(dir, 'bootstrap.json');
    writeFileSync(
      file,
      JSON.stringify({
        node: { id: 'drain-test', cluster: 'test' },
        admin: { address: { socket_address: { address: '127.0.0.1', port_value: adminPort } } },
        static_resources: {
          listeners: [
            listener('inbound', inPort, 'INBOUND', 'app'),
            listener('outbound', outPort, 'OUTBOUND', 'remote'),
          ],
          clusters: [staticCluster('app', [app.echo.port]), staticCluster('remote', [remote.echo.port])],
        },
      }),
    );
    const p = spawn(
      process.execPath,
      [
        join(root, 'bin', 'meshlet.js'),
        'proxy',
        '-c',
        file,
        '--drain-time-s',
        '60',
        '--exit-on-zero-active-connections',
        '--drain-strategy',
        'immediate',
        '--health-port',
        String(healthPort),
        '--log-level',
        'warn',
      ],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let stderr = '';
    p.stderr!.on('data', (d) => {
      stderr += d;
    });
    const exited = new Promise<number | null>((resolve) => p.on('exit', (code) => resolve(code)));
    try {
      // Ready (bounded): the health port answers 200.
      const deadline = Date.now() + 20_000;
      for (;;) {
        const ok = await request(healthPort, '/healthz/ready').then(
          (r) => r.status === 200,
          () => false,
        );
        if (ok) break;
        if (Date.now() > deadline || p.exitCode !== null) throw new Error(`meshlet did not become ready: ${stderr}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      const inFlight = request(inPort, '/hold');
      await until(() => app.held.length === 1, 'the inbound request to reach the app');
      p.kill('SIGTERM');
      // Readiness fails once the signal is handled (bounded wait).
      const notReadyBy = Date.now() + 10_000;
      while ((await request(healthPort, '/healthz/ready')).status !== 503) {
        if (Date.now() > notReadyBy) throw new Error('still ready 10 s after SIGTERM');
        await new Promise((r) => setTimeout(r, 20));
      }
      // Inbound still serves a late peer, telling it to close.
      const late = await request(inPort, '/late-peer');
      expect(late.status).toBe(200);
      expect(late.headers.connection).toBe('close');
      const out = await request(outPort, '/during-drain');
      expect(out.status).toBe(200);
      expect(p.exitCode).toBeNull();
      app.release();
      const r = await inFlight;
      expect(r.status).toBe(200);
      expect(r.body).toBe('app done');
      // 60 s drain time: exiting now can only come from the zero-connection rule.
      expect(await exited).toBe(0);
      expect(stderr).toBe('');
    } finally {
      if (p.exitCode === null) p.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
