/**
 * `meshlet wait` as users run it (bin/meshlet.js, built by `npm run build`): it returns 0 once
 * the proxy's /ready answers 200 — including a proxy that starts after the command — and 1 with
 * a clear message naming the last answer when the timeout passes. Also the 15021-style
 * /healthz/ready port that Kubernetes probes.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  bootstrap,
  httpListener,
  routes,
  socketAddress,
  startMeshlet,
  staticCluster,
  stopAllMeshlets,
} from '../support/meshlet';
import { closeAll, closedPort, startHttpEcho } from '../support/upstreams';
import { request } from './helpers';

const ROOT = join(__dirname, '..', '..');
const BIN = join(ROOT, 'bin', 'meshlet.js');
const procs: ChildProcess[] = [];

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function runWait(args: string[], onStdout?: (text: string) => void): { proc: ChildProcess; done: Promise<Run> } {
  if (!existsSync(join(ROOT, 'dist', 'proxy', 'cli', 'wait.js'))) {
    throw new Error('dist/ has no cli/wait.js: run `npm run build` before this test (npm test does)');
  }
  const proc = spawn(process.execPath, [BIN, 'wait', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  procs.push(proc);
  let stdout = '';
  let stderr = '';
  proc.stdout!.on('data', (d) => {
    stdout += d;
    onStdout?.(stdout);
  });
  proc.stderr!.on('data', (d) => {
    stderr += d;
  });
  const done = new Promise<Run>((resolve) => proc.on('exit', (code) => resolve({ code, stdout, stderr })));
  return { proc, done };
}

async function proxyOn(adminPort: number, healthPort?: number) {
  const app = await startHttpEcho('app');
  return startMeshlet(
    bootstrap(
      [httpListener('l', routes([{ match: { prefix: '/' }, route: { cluster: 'app' } }]))],
      [staticCluster('app', [app.port])],
      {
        admin: { address: socketAddress(adminPort) },
      },
    ),
    healthPort === undefined ? {} : { telemetry: { healthPort, portsHost: '127.0.0.1' } },
  );
}

afterEach(async () => {
  for (const p of procs.splice(0)) if (p.exitCode === null) p.kill('SIGKILL');
  await stopAllMeshlets();
  await closeAll();
});

describe('meshlet wait', () => {
  it('exits 0 at once when the proxy is ready', async () => {
    const m = await proxyOn(0);
    const r = await runWait(['--admin', `http://127.0.0.1:${m.adminPort}`, '--timeout', '20']).done;
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('meshlet wait: proxy ready');
  });

  it('holds until a proxy that starts later is ready', async () => {
    const adminPort = await closedPort();
    let sawNotReady!: () => void;
    const notReady = new Promise<void>((r) => {
      sawNotReady = r;
    });
    const w = runWait(['--admin', `http://127.0.0.1:${adminPort}`, '--timeout', '25', '--period', '50'], (out) => {
      if (out.includes('not ready yet')) sawNotReady();
    });
    await notReady;
    expect(w.proc.exitCode).toBeNull();
    await proxyOn(adminPort);
    const r = await w.done;
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('not ready yet (ECONNREFUSED)');
    expect(r.stdout).toMatch(/proxy ready .* after \d+ attempts/);
  });

  it('exits 1 with the last answer when the timeout passes', async () => {
    const m = await proxyOn(0);
    expect((await request(m.adminPort, '/healthcheck/fail', { method: 'POST' })).status).toBe(200);
    const r = await runWait(['--admin', `http://127.0.0.1:${m.adminPort}`, '--timeout', '4', '--period', '100']).done;
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('meshlet wait: proxy not ready after 4s');
    expect(r.stderr).toContain('last answer: HTTP 503');
    const refused = await runWait(['--admin', `http://127.0.0.1:${await closedPort()}`, '--timeout', '2']).done;
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('last answer: ECONNREFUSED');
  });
});

describe('/healthz/ready (Istio 15021)', () => {
  it('follows readiness, and meshlet wait can use it', async () => {
    const m = await proxyOn(0, 0);
    const port = m.server.telemetry.healthPort;
    expect(port).toBeGreaterThan(0);
    expect((await request(port, '/healthz/ready')).status).toBe(200);
    expect((await request(port, '/other')).status).toBe(404);
    const w = await runWait(['--admin', `http://127.0.0.1:${port}/healthz/ready`, '--timeout', '10']).done;
    expect(w.code).toBe(0);
    await request(m.adminPort, '/healthcheck/fail', { method: 'POST' });
    expect((await request(port, '/healthz/ready')).status).toBe(503);
  });
});
