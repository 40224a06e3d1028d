/**
 * `meshlet demo`: a whole mesh on loopback, as README's main command runs it. It starts the
 * embedded control plane and one meshlet process per workload (explicit mode: each app calls its
 * own sidecar's outbound port), a frontend that calls a backend split 90/10 between v1 and v2 and
 * an audit service the authorization rules forbid it to call; drives traffic with a progress bar,
 * then prints what happened in terms a newcomer understands, and the admin URLs to look at.
 *
 * Leans towards honesty over polish: every number printed is measured from real requests through
 * real sidecars with mTLS; nothing is simulated.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createWriteStream, mkdtempSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseCommandArgs } from './args';
import { packageRoot } from '../../common/version';
import { DEMO_WORKLOADS, demoBootstrap, demoMeshYaml } from './demo-mesh';

const USAGE = `meshlet demo [--duration SECONDS] [--rps N]

  Starts the embedded control plane and four sidecars on 127.0.0.61-64, drives traffic
  frontend → backend (split 90/10 between v1 and v2) and frontend → audit (forbidden),
  prints a summary, then keeps running for inspection until Ctrl-C.

      --duration SECONDS   drive traffic this long, print the summary and exit (default: 5 s of
                           traffic, then keep running until Ctrl-C)
      --rps N              request rate (default 200)`;

interface Child {
  readonly name: string;
  readonly proc: ChildProcess;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

export function httpGet(host: string, port: number, path: string, hostHeader?: string, agent?: http.Agent): Promise<{ status: number; body: string }> {
  return new Promise((resolve) => {
    const req = http.get({ host, port, path, agent: agent ?? false, headers: hostHeader ? { host: hostHeader } : {}, timeout: 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => {
        body += c;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (e) => resolve({ status: 0, body: e.message }));
  });
}

async function waitReady(host: string, port: number, what: string, ms = 60_000): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    const r = await httpGet(host, port, '/ready');
    if (r.status === 200) return;
    if (Date.now() > end) throw new Error(`${what} did not become ready on http://${host}:${port}/ready (${r.status || r.body})`);
    await new Promise((res) => setTimeout(res, 100));
  }
}

/** Wait until something accepts TCP connections on host:port. */
async function waitListening(host: string, port: number, what: string, ms = 60_000): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ host, port }, () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > end) throw new Error(`${what} is not listening on ${host}:${port}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function progress(done: number, total: number, label: string): void {
  if (!process.stdout.isTTY) return;
  const width = 30;
  const filled = Math.round((done / total) * width);
  process.stdout.write(`\r  ${label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${Math.round((done / total) * 100)}%`);
}

function pct(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

export async function runDemo(argv: string[]): Promise<number> {
  const args = parseCommandArgs(argv, USAGE, { duration: { type: 'string' }, rps: { type: 'string' } });
  if (!args) return 0;
  const duration = args.duration === undefined ? undefined : Number(args.duration);
  if (duration !== undefined && (!Number.isFinite(duration) || duration <= 0)) {
    process.stderr.write('meshlet demo: --duration must be a positive number of seconds\n');
    return 1;
  }
  const rps = args.rps === undefined ? 200 : Number(args.rps);
  if (!Number.isFinite(rps) || rps <= 0 || rps > 5000) {
    process.stderr.write('meshlet demo: --rps must be between 1 and 5000\n');
    return 1;
  }
  const trafficSeconds = duration ?? 5;
  const dir = mkdtempSync(join(tmpdir(), 'meshlet-demo-'));
  const bin = join(packageRoot(), 'bin', 'meshlet.js');
  const children: Child[] = [];
  const servers: http.Server[] = [];
  let stopping = false;
  const stopAll = async (): Promise<void> => {
    if (stopping) return;
    stopping = true;
    for (const c of children) c.proc.kill('SIGTERM');
    await Promise.all(
      children.map((c) => new Promise<void>((r) => (c.proc.exitCode !== null ? r() : c.proc.once('exit', () => r())))),
    );
    for (const s of servers) {
      s.closeAllConnections();
      s.close();
    }
  };
  const startChild = (name: string, cmd: string[]): ChildProcess => {
    const log = createWriteStream(join(dir, `${name}.log`));
    const proc = spawn(process.execPath, [bin, ...cmd], { stdio: ['ignore', 'pipe', 'pipe'] });
    proc.stdout!.pipe(log);
    proc.stderr!.pipe(log);
    children.push({ name, proc });
    proc.once('exit', (code) => {
      if (!stopping) process.stderr.write(`\nmeshlet demo: ${name} exited unexpectedly (code ${code}); see ${join(dir, `${name}.log`)}\n`);
    });
    return proc;
  };

  process.stdout.write('meshlet demo: a service mesh on loopback — embedded control plane, four sidecars, mTLS everywhere\n\n');
  try {
    // 1. The applications (what would run in each pod).
    const seen = { backendCaller: new Set<string>(), backendSelf: new Set<string>(), auditReached: 0 };
    for (const w of DEMO_WORKLOADS) {
      if (w.name === 'frontend') continue;
      const server = http.createServer((req, res) => {
        const xfcc = String(req.headers['x-forwarded-client-cert'] ?? '');
        const uri = /URI=([^;,]+)/.exec(xfcc)?.[1];
        const by = /By=([^;,]+)/.exec(xfcc)?.[1];
        if (w.service === 'backend') {
          if (uri) seen.backendCaller.add(uri);
          if (by) seen.backendSelf.add(by);
        } else seen.auditReached++;
        const body = JSON.stringify({ service: w.service, version: w.version, caller: uri ?? null });
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
        res.end(body);
      });
      await new Promise<void>((resolve, reject) => {
        server.once('error', (e) => reject(new Error(`cannot start the ${w.name} app on ${w.ip}:${w.appPort}: ${e.message}`)));
        server.listen(w.appPort, w.ip, resolve);
      });
      servers.push(server);
    }

    // 2. The control plane, with a stand-in for the Kubernetes token issuer: it verifies tokens
    //    against the demo's JWKS and sends no private keys; each sidecar gets a token file as a
    //    projected service-account token would be mounted in its pod.
    const cpPort = await freePort();
    const tlsPort = await freePort();
    const meshFile = join(dir, 'mesh.yaml');
    const caDir = join(dir, 'ca');
    writeFileSync(meshFile, demoMeshYaml());
    const { createDevTokenIssuer } = await import('../../control-plane/dev-tokens');
    const tokens = await createDevTokenIssuer(join(dir, 'jwks.json'));
    startChild('control-plane', [
      'control-plane', '--mesh', meshFile, '--port', String(cpPort), '--tls-port', String(tlsPort),
      '--ca-dir', caDir, '--jwks-file', tokens.jwksFile, '--token-issuer', tokens.issuer, '--log-level', 'warn',
    ]);
    await waitListening('127.0.0.1', tlsPort, 'the control plane');
    process.stdout.write(`  control plane     ADS on 127.0.0.1:${cpPort}, ADS + certificates over TLS on ${tlsPort}   mesh file ${meshFile}\n`);

    // 3. One sidecar per workload: its token, the mesh root, and the bootstrap.
    for (const w of DEMO_WORKLOADS) {
      const tokenFile = join(dir, `${w.name}.token`);
      writeFileSync(tokenFile, await tokens.mint('demo', w.serviceAccount), { mode: 0o600 });
      const file = join(dir, `${w.name}.bootstrap.yaml`);
      writeFileSync(file, demoBootstrap(w, cpPort, { tlsPort, tokenFile, rootCertFile: join(caDir, 'root-cert.pem') }));
      startChild(`sidecar-${w.name}`, ['proxy', '--bootstrap', file, '--log-level', 'warn', '--drain-time-s', '1']);
    }
    for (const w of DEMO_WORKLOADS) {
      await waitReady(w.ip, w.adminPort, `the ${w.name} sidecar`);
      process.stdout.write(`  sidecar ${w.name.padEnd(10)} ready   admin http://${w.ip}:${w.adminPort}/\n`);
    }
    process.stdout.write('\n');

    // 4. Traffic: the frontend app calls backend and audit through its own sidecar.
    const fe = DEMO_WORKLOADS.find((w) => w.name === 'frontend')!;
    const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
    const versions = new Map<string, number>();
    const latencies: number[] = [];
    let denied = 0;
    let auditCalls = 0;
    let failed = 0;
    const failures = new Map<string, number>();
    const fail = (what: string): void => {
      failed++;
      failures.set(what, (failures.get(what) ?? 0) + 1);
    };
    // Warm-up, not measured: the first requests through freshly started processes pay for JIT
    // compilation, connection pools and TLS handshakes (first p99s of 150 ms, issue 18.11).
    const warmup = Math.min(400, Math.max(50, Math.round(rps)));
    for (let i = 0; i < warmup; i += 8) {
      await Promise.all(
        Array.from({ length: 8 }, () => httpGet(fe.ip, 9091, '/items', 'backend.demo.svc.cluster.local', agent)),
      );
    }
    const total = Math.max(1, Math.round(trafficSeconds * rps));
    const start = performance.now();
    const inflight = new Set<Promise<void>>();
    for (let i = 0; i < total; i++) {
      const due = start + (i * 1000) / rps;
      const wait = due - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      const toAudit = i % 10 === 9;
      const p = (async () => {
        const t0 = performance.now();
        const r = toAudit
          ? await httpGet(fe.ip, 9092, '/records', 'audit.demo.svc.cluster.local', agent)
          : await httpGet(fe.ip, 9091, '/items', 'backend.demo.svc.cluster.local', agent);
        const ms = performance.now() - t0;
        if (toAudit) {
          auditCalls++;
          if (r.status === 403) denied++;
          else fail(`audit ${r.status || r.body}`);
          return;
        }
        if (r.status !== 200) {
          fail(`backend ${r.status || r.body}`);
          return;
        }
        latencies.push(ms);
        const v = (JSON.parse(r.body) as { version: string }).version;
        versions.set(v, (versions.get(v) ?? 0) + 1);
      })();
      inflight.add(p);
      void p.finally(() => inflight.delete(p));
      if (i % 20 === 0) progress(i, total, 'driving traffic');
    }
    await Promise.all(inflight);
    progress(total, total, 'driving traffic');
    if (process.stdout.isTTY) process.stdout.write('\n\n');
    agent.destroy();

    // 5. What happened.
    const ok = [...versions.values()].reduce((a, b) => a + b, 0);
    const sorted = latencies.sort((a, b) => a - b);
    const f = (n: number) => n.toFixed(2);
    const lines = [
      'What happened',
      `  frontend → backend   ${ok} requests answered: ${[...versions]
        .sort()
        .map(([v, n]) => `${v} ${n} (${((100 * n) / Math.max(ok, 1)).toFixed(1)}%)`)
        .join(', ')}   [mesh rule: 90/10]`,
      `  frontend → audit     ${denied} of ${auditCalls} calls denied with 403 "RBAC: access denied" by audit's sidecar [mesh rule: only ops may call audit]; audit app reached ${seen.auditReached} times`,
      `  failed requests      ${failed}${failed > 0 ? `  (${[...failures].map(([k, n]) => `${k}: ${n}`).join(', ')})` : ''}`,
      '',
      'Identities (every hop is mutual TLS; each sidecar generated its key and had the control plane sign it, authenticated by its service-account token)',
      `  backend saw the caller as   ${[...seen.backendCaller].join(', ') || '(none)'}`,
      `  backend's own identity      ${[...seen.backendSelf].join(', ') || '(none)'}`,
      '',
      `Latency frontend → backend through two sidecars, ms:  p50 ${f(pct(sorted, 50))}  p90 ${f(pct(sorted, 90))}  p99 ${f(pct(sorted, 99))}  max ${f(sorted[sorted.length - 1] ?? 0)}`,
      `  (${sorted.length} requests at ${rps}/s after ${warmup} warm-up requests; measured by the demo's HTTP client, so it`,
      '   includes Node.js client time and the four sidecars, the control plane and the apps sharing this machine;',
      '   the added latency of one sidecar pair is measured by `npm run bench`)',
      '',
      'Look around (Envoy admin paths)',
      ...DEMO_WORKLOADS.map((w) => `  ${w.name.padEnd(10)} http://${w.ip}:${w.adminPort}/   /config_dump /clusters /listeners /certs /stats/prometheus`),
      `  logs and generated config: ${dir}`,
    ];
    process.stdout.write(`${lines.join('\n')}\n\n`);
    if (failed > 0) process.stdout.write(`meshlet demo: ${failed} requests failed; see the logs in ${dir}\n`);

    if (duration !== undefined) {
      await stopAll();
      return failed > 0 ? 1 : 0;
    }
    process.stdout.write('The mesh keeps running for inspection. Press Ctrl-C to stop.\n');
    await new Promise<void>((resolve) => {
      process.once('SIGINT', resolve);
      process.once('SIGTERM', resolve);
    });
    process.stdout.write('\nstopping…\n');
    await stopAll();
    return 0;
  } catch (err) {
    process.stderr.write(`meshlet demo: ${(err as Error).message}\n  logs: ${dir}\n`);
    await stopAll();
    return 1;
  }
}
