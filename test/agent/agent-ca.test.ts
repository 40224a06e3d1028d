/**
 * `meshlet agent` against the embedded control plane playing istiod (token-authenticated ADS and
 * CreateCertificate over TLS, tokens checked against a JWKS): with nothing but Istio's
 * environment, a projected token file and the mesh root, the agent gets its configuration over a
 * token-authenticated TLS ADS stream and its first workload certificate by CSR (key made in the
 * process), served as the identity secret `default`.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { DevCa } from '../../certs/dev-ca';
import { createDevTokenIssuer } from '../../control-plane/dev-tokens';
import { parseMeshOrThrow } from '../../control-plane/mesh';
import { ControlPlaneServer } from '../../control-plane/server';
import { closedPort, getText } from '../support/upstreams';

const BIN = join(__dirname, '../../bin/meshlet.js');
const EXAMPLE = readFileSync(join(__dirname, '../../control-plane/examples/bookinfo.yaml'), 'utf8');
const dir = mkdtempSync(join(tmpdir(), 'meshlet-agent-ca-'));
let child: ChildProcess | undefined;
let cp: ControlPlaneServer | undefined;
let app: http.Server | undefined;

afterAll(async () => {
  child?.kill('SIGKILL');
  await cp?.close();
  app?.closeAllConnections();
  await new Promise((r) => (app ? app.close(r) : r(undefined)));
  rmSync(dir, { recursive: true, force: true });
});


describe('meshlet agent and the mesh CA', () => {
  it('gets its configuration and its first certificate with nothing but the env, the token and the root, then renews under load with zero failed requests', async () => {
    // productpage's app (bookinfo: 127.0.0.10:19080), behind the agent's inbound listener.
    app = http.createServer((_req, res) => res.end('productpage ok'));
    await new Promise<void>((r) => app!.listen(19080, '127.0.0.10', r));
    const tokens = await createDevTokenIssuer(join(dir, 'jwks.json'));
    const ca = await DevCa.create({ trustDomain: 'cluster.local' });
    cp = await ControlPlaneServer.start({
      mesh: parseMeshOrThrow(EXAMPLE).mesh,
      port: 0,
      csrPort: 0,
      ca,
      // Short, so the agent renews (at about half the lifetime) while the test sends load.
      certLifetimeMs: 6_000,
      tokenAuth: { jwksFile: tokens.jwksFile, issuer: tokens.issuer },
      log: pino({ level: 'silent' }),
    });
    const root = join(dir, 'root-cert.pem');
    const token = join(dir, 'istio-token');
    writeFileSync(root, ca.rootCertPem);
    writeFileSync(token, await tokens.mint('default', 'productpage'));
    const adminPort = await closedPort();
    let out = '';
    child = spawn('node', [BIN, 'agent', '--token', token, '--root-cert', root, '--status-port', 'off', '--', '--stats-port', 'off', '--health-port', 'off'], {
      env: {
        PATH: process.env.PATH,
        POD_NAME: 'productpage-v1',
        POD_NAMESPACE: 'default',
        INSTANCE_IP: '127.0.0.10',
        SERVICE_ACCOUNT: 'productpage',
        TRUST_DOMAIN: 'cluster.local',
        PROXY_CONFIG: JSON.stringify({ proxyAdminPort: adminPort }),
        CA_ADDR: `localhost:${cp.csrPort}`,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout?.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr?.on('data', (b: Buffer) => (out += b.toString()));
    // Bounded wait for the certificate from the CA to be served.
    const deadline = Date.now() + 20_000;
    let certs = '';
    while (Date.now() < deadline) {
      const r = await getText(adminPort, '/certs').catch(() => ({ status: 0, body: '' }));
      if (r.status === 200 && r.body.includes('spiffe://cluster.local/ns/default/sa/productpage')) {
        certs = r.body;
        break;
      }
      await new Promise((res) => setTimeout(res, 200));
    }
    expect(certs, out.slice(-3000)).toContain('spiffe://cluster.local/ns/default/sa/productpage');
    // The configuration came over the token-authenticated TLS ADS stream: the workload's clusters.
    const clusters = await getText(adminPort, '/clusters');
    expect(clusters.body).toContain('reviews');

    // Load through the agent's inbound mTLS listener across renewals: a peer workload (reviews)
    // calls productpage with a certificate from the same CA, half on fresh connections (each
    // handshake sees the current certificate), half on one keep-alive connection.
    const peer = await ca.issueWorkload({ ns: 'default', sa: 'reviews' });
    const keepAlive = new https.Agent({ keepAlive: true, maxSockets: 1 });
    const served = new Set<string>();
    const failures: string[] = [];
    let ok = 0;
    const call = (fresh: boolean): Promise<void> =>
      new Promise((resolve) => {
        const req = https.request(
          {
            host: '127.0.0.10',
            port: 15006,
            path: '/',
            headers: { host: 'productpage.default.svc.cluster.local:9080' },
            ca: ca.rootCertPem,
            cert: peer.certChainPem,
            key: peer.privateKeyPem,
            checkServerIdentity: () => undefined,
            agent: fresh ? false : keepAlive,
          },
          (res) => {
            const sock = res.socket as import('node:tls').TLSSocket;
            const serial = sock.getPeerCertificate?.().serialNumber;
            if (serial) served.add(serial);
            res.resume();
            res.on('end', () => {
              if (res.statusCode === 200) ok++;
              else failures.push(`status ${res.statusCode}`);
              resolve();
            });
          },
        );
        req.on('error', (e) => {
          failures.push(e.message);
          resolve();
        });
        req.end();
      });
    const issuedBefore = served.size;
    const loadUntil = Date.now() + 9_000;
    let n = 0;
    while (Date.now() < loadUntil && n < 4_000) {
      await Promise.all([call(true), call(false)]);
      n += 2;
    }
    keepAlive.destroy();
    expect(failures, out.slice(-3000)).toEqual([]);
    expect(ok).toBe(n);
    expect(ok).toBeGreaterThan(20);
    // At least one renewal was served on new handshakes during the load (6 s lifetime, 9 s of load).
    expect(served.size - issuedBefore, out.slice(-3000)).toBeGreaterThanOrEqual(2);
  }, 60_000);
});
