/**
 * Transparent interception end to end, in real network namespaces: two "pods" joined by a veth
 * pair, `meshlet iptables` applied in both, a meshlet in each running as UID 1337 (setpriv), an
 * application in the client pod calling the server pod by its plain address. The connection is
 * captured by the client sidecar (SO_ORIGINAL_DST → the per-service virtual listener), sent with
 * mTLS to the server pod, captured there into 15006, authorised by SPIFFE identity, and delivered
 * to the application from 127.0.0.6. HTTP/1.1 (node and curl), HTTP/2, raw TCP and a server-first
 * protocol; PassthroughCluster for unknown destinations and BlackHoleCluster refusal; a UID 1337
 * process is not captured; running the rules twice keeps one copy; --cleanup restores the nat
 * tables exactly (iptables-save before/after).
 *
 * Runs the built CLI (bin/meshlet.js → dist/, as `npm test` builds it) and the native addon (built
 * by `npm ci`). Skips, with the reason printed, where namespaces cannot be created.
 */
import { type ChildProcess, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DevCa } from '../../certs/dev-ca';
import { createPodPair, destroyAll, natTables, netnsSupport, type Pod, runIn, spawnIn } from './netns';
import { APP_PORTS, CLIENT_APP, SERVER_APP } from './pod-apps';
import { type Identity, inboundBootstrap, outboundBootstrap } from './pod-config';

const ROOT = resolve(__dirname, '../..');
const BIN = join(ROOT, 'bin/meshlet.js');
const ADDON = join(ROOT, 'build/Release/original_dst.node');
const support = netnsSupport();
if (!support.ok) console.warn(`[skipped] interception namespace tests: ${support.reason}`);
const skip = !support.ok;

const CLIENT_ID = 'spiffe://cluster.local/ns/default/sa/client';
const SERVER_ID = 'spiffe://cluster.local/ns/default/sa/server';
const EXCLUDE_INBOUND = `15090,15021,15020,${APP_PORTS.direct},${APP_PORTS.passthrough}`;

let dir = '';
let a: Pod;
let b: Pod;
const before = new Map<string, string>();
const afterInstall = new Map<string, string>();
const logs: Record<string, string> = { a: '', b: '' };
let clientJs = '';

async function client(pod: Pod, args: string[], asUid?: number): Promise<Record<string, unknown>> {
  const r = await runIn(pod, [process.execPath, clientJs, ...args], asUid);
  const line = r.stdout.trim().split('\n').pop() ?? '';
  try {
    return JSON.parse(line) as Record<string, unknown>;
  } catch {
    throw new Error(`client ${args.join(' ')} printed ${JSON.stringify(r.stdout)} (stderr ${r.stderr}, exit ${r.code})`);
  }
}

async function meshlet(pod: Pod, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return runIn(pod, [process.execPath, BIN, ...args]);
}

function waitForLine(p: ChildProcess, what: RegExp, ms: number): Promise<void> {
  return new Promise((resolveP, reject) => {
    let buf = '';
    const t = setTimeout(() => reject(new Error(`timed out waiting for ${what}: ${buf}`)), ms);
    p.stdout!.on('data', (c) => {
      buf += c;
      if (what.test(buf)) {
        clearTimeout(t);
        resolveP();
      }
    });
    p.on('exit', (code) => reject(new Error(`exited ${code} before ${what}: ${buf}`)));
  });
}

async function waitReady(pod: Pod): Promise<void> {
  const end = Date.now() + 20_000;
  for (;;) {
    const r = await client(pod, ['h1', '127.0.0.1', '15000', '/ready']).catch(() => ({ status: 0 }));
    if (r.status === 200) return;
    if (Date.now() > end) throw new Error(`sidecar in ${pod.ns} not ready: ${JSON.stringify(r)}\n${logs.a}\n${logs.b}`);
    await new Promise((r2) => setTimeout(r2, 200));
  }
}

function identity(issued: { certChainPem: string; privateKeyPem?: string; rootCertPem: string; spiffeId: string }): Identity {
  return { certChainPem: issued.certChainPem, privateKeyPem: issued.privateKeyPem!, rootCertPem: issued.rootCertPem, spiffeId: issued.spiffeId };
}

beforeAll(async () => {
  if (skip) return;
  if (!existsSync(join(ROOT, 'dist/proxy/main.js'))) throw new Error('dist/ is missing: run `npm run build` (npm test does)');
  if (!existsSync(ADDON)) spawnSync(process.execPath, [join(ROOT, 'scripts/build-native.js')], { stdio: 'inherit' });
  if (!existsSync(ADDON)) throw new Error(`the SO_ORIGINAL_DST addon could not be built (${ADDON})`);
  dir = mkdtempSync(join(tmpdir(), 'meshlet-netns-'));
  chmodSync(dir, 0o755); // the sidecars run as UID 1337 and read their bootstrap here
  const write = (name: string, text: string): string => {
    const p = join(dir, name);
    writeFileSync(p, text, { mode: 0o644 });
    return p;
  };
  clientJs = write('client.js', CLIENT_APP);
  const serverJs = write('server.js', SERVER_APP);
  const ca = await DevCa.create({ trustDomain: 'cluster.local' });
  const clientId = identity(await ca.issueWorkload({ ns: 'default', sa: 'client' }));
  const serverId = identity(await ca.issueWorkload({ ns: 'default', sa: 'server' }));
  ({ a, b } = createPodPair());
  before.set('a', natTables(a));
  before.set('b', natTables(b));
  for (const [pod, extra] of [
    [a, []],
    [b, ['--exclude-inbound-ports', EXCLUDE_INBOUND]],
  ] as const) {
    const r = await meshlet(pod, ['iptables', ...extra]);
    if (r.code !== 0) throw new Error(`meshlet iptables in ${pod.ns} failed: ${r.stderr}${r.stdout}`);
  }
  afterInstall.set('a', natTables(a));
  afterInstall.set('b', natTables(b));

  const app = spawnIn(b, [process.execPath, serverJs]);
  await waitForLine(app, /ready/, 10_000);
  const fa = write('sidecar-a.json', JSON.stringify(outboundBootstrap(clientId, b.ip, SERVER_ID)));
  const fb = write('sidecar-b.json', JSON.stringify(inboundBootstrap(serverId, CLIENT_ID)));
  for (const [key, pod, file] of [
    ['a', a, fa],
    ['b', b, fb],
  ] as const) {
    const p = spawnIn(pod, [process.execPath, BIN, 'proxy', '-c', file], 1337);
    p.stdout!.on('data', (c) => (logs[key] += c));
    p.stderr!.on('data', (c) => (logs[key] += c));
  }
  await waitReady(a);
  await waitReady(b);
}, 120_000);

afterAll(async () => {
  await destroyAll();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('transparent interception in network namespaces', () => {
  it.skipIf(skip)('install added Istio chains; the sidecars found SO_ORIGINAL_DST', () => {
    const nat = afterInstall.get('a')!;
    expect(nat).toContain('-A OUTPUT -p tcp -j ISTIO_OUTPUT');
    expect(nat).toContain('-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001');
    expect(nat).toContain('-A ISTIO_OUTPUT -s 127.0.0.6/32 -o lo -j RETURN');
    expect(afterInstall.get('b')!).toContain(`-A ISTIO_INBOUND -p tcp -m tcp --dport ${APP_PORTS.direct} -j RETURN`);
    expect(logs.a).not.toMatch(/original destination unavailable/);
    expect(logs.b).not.toMatch(/original destination unavailable/);
  });

  it.skipIf(skip)('HTTP/1.1: captured, mTLS to the peer sidecar, delivered from 127.0.0.6 with the client identity', async () => {
    const r = await client(a, ['h1', b.ip, String(APP_PORTS.http1), '/hello?x=1']);
    expect(r.status, JSON.stringify(r)).toBe(200);
    const seen = JSON.parse(r.body as string);
    expect(seen.app).toBe('h1');
    expect(seen.url).toBe('/hello?x=1');
    expect(seen.peer).toBe('127.0.0.6');
    expect(seen.headers['x-forwarded-client-cert']).toContain(`URI=${CLIENT_ID}`);
  });

  it.skipIf(skip)('HTTP/1.1 with curl as the application', async () => {
    const r = await runIn(a, ['curl', '-sS', '--max-time', '5', `http://${b.ip}:${APP_PORTS.http1}/curl`]);
    expect(r.code, r.stderr).toBe(0);
    const seen = JSON.parse(r.stdout);
    expect(seen.url).toBe('/curl');
    expect(seen.peer).toBe('127.0.0.6');
    expect(seen.headers['user-agent']).toMatch(/^curl\//);
  });

  it.skipIf(skip)('HTTP/2 (prior knowledge): captured and delivered as HTTP/2', async () => {
    const r = await client(a, ['h2', b.ip, String(APP_PORTS.http2), '/h2']);
    expect(r.status, JSON.stringify(r)).toBe(200);
    const seen = JSON.parse(r.body as string);
    expect(seen.app).toBe('h2');
    expect(seen.httpVersion).toBe('2.0');
    expect(seen.peer).toBe('127.0.0.6');
    expect(seen.headers['x-forwarded-client-cert']).toContain(`URI=${CLIENT_ID}`);
  });

  it.skipIf(skip)('raw TCP: captured, mTLS, delivered to the original destination from 127.0.0.6', async () => {
    const r = await client(a, ['tcp', b.ip, String(APP_PORTS.tcpEcho), 'hello-tcp']);
    expect(r.data, JSON.stringify(r)).toBe('[127.0.0.6]hello-tcp');
  });

  it.skipIf(skip)('plaintext that reaches the server pod uncaptured by a sidecar is refused by 15006, never delivered', async () => {
    // UID 1337 is not captured in the client pod, so no mTLS is added; the server pod still
    // captures it into 15006, whose chains require mTLS from an authorised identity.
    const r = await client(a, ['send', b.ip, String(APP_PORTS.tcpEcho), 'plain-hello'], 1337);
    expect(r, JSON.stringify(r)).toEqual({ data: '', closed: true });
  });

  it.skipIf(skip)('server-first protocol: the greeting arrives without the client speaking first', async () => {
    const r = await client(a, ['greet', b.ip, String(APP_PORTS.greeter)]);
    expect(r.greeting, JSON.stringify(r)).toBe('220 greeter ready; you are 127.0.0.6\r\n');
    expect(r.echo).toBe('echo:ping');
  });

  it.skipIf(skip)('an unknown destination goes through PassthroughCluster (ALLOW_ANY), not recaptured', async () => {
    const r = await client(a, ['read', b.ip, String(APP_PORTS.passthrough)]);
    expect(r.data, JSON.stringify(r)).toBe(`passthrough ${a.ip}\n`);
    const clusters = await client(a, ['h1', '127.0.0.1', '15000', '/clusters']);
    expect(clusters.body).toContain(`PassthroughCluster::${b.ip}:${APP_PORTS.passthrough}`);
  });

  it.skipIf(skip)('IPv6: ip6tables captures, IP6T_SO_ORIGINAL_DST finds the destination, passthrough delivers', async () => {
    const r = await client(a, ['read', b.ip6, String(APP_PORTS.passthrough)]);
    expect(r.data, JSON.stringify(r)).toBe(`passthrough ${a.ip6}\n`);
    // Captured: the sidecar's passthrough cluster now has the IPv6 destination as a host.
    const clusters = await client(a, ['h1', '127.0.0.1', '15000', '/clusters']);
    expect(clusters.body).toContain(`PassthroughCluster::[${b.ip6}]:${APP_PORTS.passthrough}`);
  });

  it.skipIf(skip)('BlackHoleCluster refuses a captured connection; the same call as UID 1337 is not captured', async () => {
    const refused = await client(a, ['read', b.ip, String(APP_PORTS.direct)]);
    expect(refused).toEqual({ data: '', closed: true });
    const direct = await client(a, ['read', b.ip, String(APP_PORTS.direct)], 1337);
    expect(direct).toEqual({ data: `direct ${a.ip}\n`, closed: true });
  });

  it.skipIf(skip)('running meshlet iptables again leaves exactly one copy', async () => {
    const r = await meshlet(a, ['iptables']);
    expect(r.code, r.stderr).toBe(0);
    expect(natTables(a)).toBe(afterInstall.get('a'));
    const dry = await meshlet(a, ['iptables', '--dry-run']);
    expect(dry.code).toBe(0);
    expect(dry.stdout).toContain('iptables -t nat -A ISTIO_OUTPUT -j ISTIO_REDIRECT');
    expect(natTables(a)).toBe(afterInstall.get('a'));
  });

  it.skipIf(skip)('--cleanup restores both pods\' nat tables exactly', async () => {
    for (const [key, pod] of [
      ['a', a],
      ['b', b],
    ] as const) {
      const r = await meshlet(pod, ['iptables', '--cleanup']);
      expect(r.code, r.stderr).toBe(0);
      expect(natTables(pod)).toBe(before.get(key));
      expect(natTables(pod)).not.toContain('ISTIO');
    }
    // Without capture, the application reaches the server pod's app directly.
    const r = await client(a, ['read', b.ip, String(APP_PORTS.direct)]);
    expect(r.data).toBe(`direct ${a.ip}\n`);
  });
});
