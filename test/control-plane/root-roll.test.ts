/**
 * Issue 18.7: rolling the mesh root with an overlap loses no request. The control plane runs
 * in-process on loopback (real gRPC ADS and CreateCertificate over TLS, tokens against a JWKS, the
 * CA kept in a directory); three real sidecar processes (`meshlet proxy`, CSR mode with
 * `root_cert_file`, as `meshlet inject` writes them) carry steady traffic over mTLS from front:
 * HTTP to web on a kept-alive pool, and TCP to back where every request is a new connection, so a
 * new mTLS handshake between sidecars. The roll is started the operator's way (`meshlet
 * control-plane --roll-root`, a separate process writing the CA directory); the control plane
 * promotes the new root once every sidecar ACKed the bundle, all renew early, the old root is
 * dropped, and no request fails in any phase. At the end every sidecar serves a leaf of the new
 * root and trusts only it, and a control plane restarted after the roll is reached again by every
 * ADS stream (the TLS channel is rebuilt from the rolled root file, not reused with the old
 * roots). Before the fix the sidecars ignored the pushed bundle (root_cert_file won) and never
 * renewed early, so the roll could not finish; and the ADS channel kept the old roots.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { createDevTokenIssuer } from '../../control-plane/dev-tokens';
import { ControlPlaneServer } from '../../control-plane/server';
import { sidecarBootstrapYaml } from '../../proxy/inject/bootstrap-template';
import { httpGet } from '../../proxy/cli/demo';

const BIN = join(__dirname, '../../bin/meshlet.js');
const FRONT = '127.0.0.181';
const BACK = '127.0.0.182';
const WEB = '127.0.0.183';
const dir = mkdtempSync(join(tmpdir(), 'meshlet-root-roll-'));
const caDir = join(dir, 'ca');
const meshFile = join(dir, 'mesh.yaml');
const children: ChildProcess[] = [];
let stderr = '';
const servers: net.Server[] = [];
let cp: ControlPlaneServer | undefined;

afterAll(async () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  for (const s of servers) s.close();
  await cp?.close();
  rmSync(dir, { recursive: true, force: true });
});

const MESH = `trust_domain: cluster.local
services:
  - { name: front, namespace: roll, ports: [{ name: http, port: 9190, protocol: http, target_port: 18190 }] }
  - { name: back, namespace: roll, ports: [{ name: tcp, port: 9192, protocol: tcp, target_port: 18192 }] }
  - { name: web, namespace: roll, ports: [{ name: http, port: 9191, protocol: http, target_port: 18191 }] }
workloads:
  - { name: front, namespace: roll, service_account: front, service: front, version: v1, address: "${FRONT}:18190", inbound_port: 15006, admin_port: 15000 }
  - { name: back, namespace: roll, service_account: back, service: back, version: v1, address: "${BACK}:18192", inbound_port: 15006, admin_port: 15000 }
  - { name: web, namespace: roll, service_account: back, service: web, version: v1, address: "${WEB}:18191", inbound_port: 15006, admin_port: 15000 }
`;

/** One TCP request through the front sidecar: a new connection (a new mTLS handshake between the sidecars). */
function tcpPing(n: number): Promise<string> {
  const t0 = Date.now();
  return new Promise((resolve) => {
    const s = net.connect({ host: FRONT, port: 9192 });
    let got = '';
    const t = setTimeout(() => s.destroy(new Error('timeout')), 5000);
    s.on('connect', () => s.write(`ping ${n}\n`));
    s.on('data', (c) => {
      got += c.toString();
    });
    s.on('close', () => {
      clearTimeout(t);
      resolve(got === `pong ${n}\n` ? 'ok' : `got ${JSON.stringify(got)} after ${Date.now() - t0} ms`);
    });
    s.on('error', () => undefined);
  });
}

async function until(what: string, ok: () => boolean | Promise<boolean>, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await ok())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The leaf a sidecar's inbound listener serves (no client certificate needed to see it). */
function servedLeaf(host: string): Promise<X509Certificate> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host, port: 15006, rejectUnauthorized: false, ALPNProtocols: ['istio-peer-exchange', 'istio', 'h2', 'http/1.1'] }, () => {
      const raw = s.getPeerCertificate().raw;
      s.destroy();
      resolve(new X509Certificate(raw));
    });
    s.on('error', reject);
  });
}

describe('root roll (issue 18.7)', () => {
  it('rolls the root under steady mTLS traffic between sidecars without losing a request, and a restarted control plane is reached under the new root', { timeout: 150_000 }, async () => {
    // The back app: HTTP, and a TCP line echo.
    const app = http.createServer((_req, res) => res.end('ok'));
    await new Promise<void>((r) => app.listen(18191, WEB, r));
    const echo = net.createServer((s) => {
      s.on('error', () => undefined);
      s.once('data', (c) => s.end(c.toString().replace('ping', 'pong')));
    });
    await new Promise<void>((r) => echo.listen(18192, BACK, r));
    servers.push(app, echo);

    writeFileSync(meshFile, MESH);
    const tokens = await createDevTokenIssuer(join(dir, 'jwks.json'));
    cp = await ControlPlaneServer.start({
      meshFile,
      port: 0,
      csrPort: 0,
      caDir,
      tokenAuth: { jwksFile: tokens.jwksFile, issuer: tokens.issuer },
      rollPollMs: 200,
      rollSettleMs: 1500,
      log: pino({ level: 'warn' }),
    });
    const oldRoot = new X509Certificate(readFileSync(join(caDir, 'ca-cert.pem')));
    for (const [name, ip, sa] of [['front', FRONT, 'front'], ['back', BACK, 'back'], ['web', WEB, 'back']] as const) {
      const tokenFile = join(dir, `${name}.token`);
      writeFileSync(tokenFile, await tokens.mint('roll', sa), { mode: 0o600 });
      const bootstrap = join(dir, `${name}.yaml`);
      writeFileSync(
        bootstrap,
        sidecarBootstrapYaml({
          nodeId: `${name}.roll`,
          cluster: name,
          namespace: 'roll',
          workloadName: name,
          labels: { app: name, version: 'v1' },
          controlPlane: `127.0.0.1:${cp.port}`,
          adminAddress: ip,
          secure: { address: `localhost:${cp.csrPort}`, tokenFile, rootCertFile: join(caDir, 'root-cert.pem') },
        }).replace(/\n( +)root_cert_file: .*/, (line, indent: string) => `${line}\n${indent}root_roll_jitter: 2s`), // spread, but short
      );
      const child = spawn(process.execPath, [BIN, 'proxy', '--bootstrap', bootstrap, '--log-level', 'warn'], { stdio: ['ignore', 'pipe', 'pipe'] });
      child.stdout!.on('data', (c: Buffer) => {
        stderr += c.toString();
      });
      child.stderr!.on('data', (c: Buffer) => {
        stderr += c.toString();
      });
      children.push(child);
    }
    const ready = new Set<string>();
    await until('the sidecars ready', async () => {
      for (const ip of [FRONT, BACK, WEB]) if ((await httpGet(ip, 15000, '/ready')).status === 200) ready.add(ip);
      return [FRONT, BACK, WEB].every((ip) => ready.has(ip));
    });
    const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
    let last = '';
    await until('traffic through both sidecars', async () => {
      const h = await httpGet(FRONT, 9191, '/', 'web.roll.svc.cluster.local', agent);
      const t = await tcpPing(0);
      last = `http ${h.status} ${h.body.slice(0, 200)}; tcp ${t}`;
      return h.status === 200 && t === 'ok';
    }).catch((e: Error) => {
      throw new Error(`${e.message}: ${last}`);
    });

    // Steady load: one HTTP request and one new TCP connection every 20 ms, until told to stop.
    const byPhase: Record<string, { ok: number; failed: string[] }> = {};
    let rolled = false;
    const tally = (what: string, result: string) => {
      const phase = rolled ? 'after' : cp!.rootRollStatus().phase;
      const p = (byPhase[`${phase}`] ??= { ok: 0, failed: [] });
      if (result === 'ok') p.ok++;
      else p.failed.push(`${what}: ${result}`);
    };
    let stop = false;
    let sent = 0;
    const load = (async () => {
      const inflight = new Set<Promise<void>>();
      while (!stop && sent < 20_000) {
        const n = ++sent;
        const h = httpGet(FRONT, 9191, '/', 'web.roll.svc.cluster.local', agent).then((r) => tally('http', r.status === 200 ? 'ok' : `${r.status} ${r.body}`));
        const t = tcpPing(n).then((r) => tally('tcp', r));
        for (const p of [h, t]) {
          inflight.add(p);
          void p.finally(() => inflight.delete(p));
        }
        await new Promise((r) => setTimeout(r, 20));
      }
      await Promise.all(inflight);
    })();
    await new Promise((r) => setTimeout(r, 1000));

    // The operator starts the roll from another process; the control plane picks it up.
    const roll = spawnSync(process.execPath, [BIN, 'control-plane', '--mesh', meshFile, '--ca-dir', caDir, '--roll-root'], { encoding: 'utf8' });
    expect(roll.status, roll.stderr).toBe(0);
    await until('phase trust', () => cp!.rootRollStatus().phase === 'trust', 10_000);
    await until('phase sign', () => cp!.rootRollStatus().phase === 'sign', 30_000);
    await until('the roll to finish', () => cp!.rootRollStatus().phase === 'none', 30_000);
    rolled = true;
    await new Promise((r) => setTimeout(r, 2000));
    stop = true;
    await load;
    agent.destroy();

    process.stdout.write(`root roll load: ${JSON.stringify(Object.fromEntries(Object.entries(byPhase).map(([k, v]) => [k, { ok: v.ok, failed: v.failed.length, first: v.failed.slice(0, 3) }])))}\n`);
    const newRoot = new X509Certificate(readFileSync(join(caDir, 'ca-cert.pem')));
    expect(newRoot.fingerprint256).not.toBe(oldRoot.fingerprint256);
    for (const phase of ['none', 'trust', 'sign', 'after']) {
      expect(byPhase[phase]?.failed ?? [], `failures in phase ${phase}`).toEqual([]);
      expect(byPhase[phase]?.ok ?? 0, `requests in phase ${phase}`).toBeGreaterThan(20);
    }
    // Both sidecars now serve leaves of the new root, and the bundle holds the new root only.
    for (const ip of [FRONT, BACK, WEB]) expect((await servedLeaf(ip)).verify(newRoot.publicKey)).toBe(true);
    const bundle = readFileSync(join(caDir, 'root-cert.pem'), 'utf8');
    expect(bundle.match(/BEGIN CERTIFICATE/g)).toHaveLength(1);
    expect(new X509Certificate(bundle).fingerprint256).toBe(newRoot.fingerprint256);
    const certs = JSON.parse((await httpGet(FRONT, 15000, '/certs')).body) as { certificates: { ca_cert: { serial_number: string }[] }[] };
    const trusted = new Set(certs.certificates.flatMap((c) => c.ca_cert.map((x) => x.serial_number.toUpperCase())));
    expect([...trusted]).toEqual([newRoot.serialNumber.toUpperCase()]);

    // A control plane restarted after the roll serves under the new root: every sidecar's ADS
    // stream (TLS, verified with root_cert_file) comes back, and traffic still flows.
    const ports = { port: cp.port, csrPort: cp.csrPort };
    await cp.close();
    cp = await ControlPlaneServer.start({ meshFile, ...ports, caDir, tokenAuth: { jwksFile: tokens.jwksFile, issuer: tokens.issuer }, log: pino({ level: 'warn' }) });
    expect(new X509Certificate(cp.ca.rootCertPem).fingerprint256).toBe(newRoot.fingerprint256);
    await until('three ADS streams back', () => cp!.streamStatus().filter((st) => st.workload).length === 3, 30_000).catch((e: Error) => {
      throw new Error(`${e.message}\n${stderr.slice(-3000)}`);
    });
    expect(await tcpPing(1)).toBe('ok');
  });
});
