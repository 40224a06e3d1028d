/**
 * `meshlet iptables --native-nftables` in network namespaces: the capture as one nftables table
 * (inet istio-proxy-nat). Traffic: an application's connections are redirected to the sidecar
 * (SO_ORIGINAL_DST / IP6T_SO_ORIGINAL_DST work with nft redirect too) — passthrough for IPv4 and
 * IPv6, BlackHoleCluster refusal — while the same call as UID 1337 is not captured. Rules: install
 * twice leaves one copy, and --cleanup leaves `nft list ruleset` exactly as before. Skips, with the
 * reason printed, where namespaces or nft are unavailable.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DevCa } from '../../certs/dev-ca';
import { createPodPair, destroyAll, netnsSupport, type Pod, runIn, sh, spawnIn } from './netns';
import { APP_PORTS, CLIENT_APP, SERVER_APP } from './pod-apps';
import { outboundBootstrap } from './pod-config';

const ROOT = resolve(__dirname, '../..');
const BIN = join(ROOT, 'bin/meshlet.js');
const support = netnsSupport();
const haveNft = spawnSync('sh', ['-c', 'command -v nft']).status === 0;
const ready = existsSync(join(ROOT, 'dist/proxy/main.js')) && existsSync(join(ROOT, 'build/Release/original_dst.node'));
const reason = !support.ok ? support.reason : !haveNft ? 'nft is not installed (scripts/install-test-deps.sh installs nftables)' : !ready ? 'dist/ or the SO_ORIGINAL_DST addon is not built' : '';
if (reason) console.warn(`[skipped] native nftables namespace tests: ${reason}`);
const skip = reason !== '';

let dir = '';
let a: Pod;
let b: Pod;
let clientJs = '';
let rulesetBefore = '';
let rulesetInstalled = '';
let log = '';

const ruleset = (pod: Pod): string => sh('ip', ['netns', 'exec', pod.ns, 'nft', 'list', 'ruleset']);

async function client(args: string[], asUid?: number): Promise<Record<string, unknown>> {
  const r = await runIn(a, [process.execPath, clientJs, ...args], asUid);
  const line = r.stdout.trim().split('\n').pop() ?? '';
  try {
    return JSON.parse(line) as Record<string, unknown>;
  } catch {
    throw new Error(`client ${args.join(' ')} printed ${JSON.stringify(r.stdout)} (stderr ${r.stderr})`);
  }
}

beforeAll(async () => {
  if (skip) return;
  dir = mkdtempSync(join(tmpdir(), 'meshlet-nft-'));
  chmodSync(dir, 0o755);
  const write = (name: string, text: string): string => {
    const p = join(dir, name);
    writeFileSync(p, text, { mode: 0o644 });
    return p;
  };
  clientJs = write('client.js', CLIENT_APP);
  const serverJs = write('server.js', SERVER_APP);
  const ca = await DevCa.create({ trustDomain: 'cluster.local' });
  const id = await ca.issueWorkload({ ns: 'default', sa: 'client' });
  ({ a, b } = createPodPair());
  rulesetBefore = ruleset(a);
  const r = await runIn(a, [process.execPath, BIN, 'iptables', '--native-nftables']);
  if (r.code !== 0) throw new Error(`meshlet iptables --native-nftables: ${r.stderr}${r.stdout}`);
  rulesetInstalled = ruleset(a);
  const app = spawnIn(b, [process.execPath, serverJs]);
  await new Promise<void>((res, rej) => {
    const t = setTimeout(() => rej(new Error('server app did not start')), 10_000);
    app.stdout!.on('data', (c) => {
      if (String(c).includes('ready')) {
        clearTimeout(t);
        res();
      }
    });
  });
  const boot = outboundBootstrap(
    { certChainPem: id.certChainPem, privateKeyPem: id.privateKeyPem!, rootCertPem: id.rootCertPem, spiffeId: id.spiffeId },
    b.ip,
    'spiffe://cluster.local/ns/default/sa/server',
  );
  const sidecar = spawnIn(a, [process.execPath, BIN, 'proxy', '-c', write('sidecar.json', JSON.stringify(boot))], 1337);
  sidecar.stdout!.on('data', (c) => (log += c));
  sidecar.stderr!.on('data', (c) => (log += c));
  const end = Date.now() + 20_000;
  for (;;) {
    const s = await client(['h1', '127.0.0.1', '15000', '/ready']).catch(() => ({ status: 0 }));
    if (s.status === 200) break;
    if (Date.now() > end) throw new Error(`sidecar not ready: ${log}`);
    await new Promise((r2) => setTimeout(r2, 200));
  }
}, 120_000);

afterAll(async () => {
  await destroyAll();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('native nftables capture', () => {
  it.skipIf(skip)('installs one inet table with Istio-named chains', () => {
    expect(rulesetInstalled).toContain('table inet istio-proxy-nat');
    expect(rulesetInstalled).toMatch(/chain istio-output \{[\s\S]*oifname "lo" ip saddr 127\.0\.0\.6 return/);
    expect(rulesetInstalled).toMatch(/redirect to :15001/);
  });

  it.skipIf(skip)('IPv4 and IPv6 connections are captured and passed through to their original destination', async () => {
    const v4 = await client(['read', b.ip, String(APP_PORTS.passthrough)]);
    expect(v4.data, JSON.stringify(v4)).toBe(`passthrough ${a.ip}\n`);
    const v6 = await client(['read', b.ip6, String(APP_PORTS.passthrough)]);
    expect(v6.data, JSON.stringify(v6)).toBe(`passthrough ${a.ip6}\n`);
    const clusters = await client(['h1', '127.0.0.1', '15000', '/clusters']);
    expect(clusters.body).toContain(`PassthroughCluster::${b.ip}:${APP_PORTS.passthrough}`);
    expect(clusters.body).toContain(`PassthroughCluster::[${b.ip6}]:${APP_PORTS.passthrough}`);
  });

  it.skipIf(skip)('a captured connection to a blackholed destination is refused; UID 1337 is not captured', async () => {
    expect(await client(['read', b.ip, String(APP_PORTS.direct)])).toEqual({ data: '', closed: true });
    expect(await client(['read', b.ip, String(APP_PORTS.direct)], 1337)).toEqual({ data: `direct ${a.ip}\n`, closed: true });
  });

  it.skipIf(skip)('install twice leaves one copy; --cleanup restores the ruleset exactly', async () => {
    const again = await runIn(a, [process.execPath, BIN, 'iptables', '--native-nftables']);
    expect(again.code, again.stderr).toBe(0);
    expect(ruleset(a)).toBe(rulesetInstalled);
    for (let i = 0; i < 2; i++) {
      const c = await runIn(a, [process.execPath, BIN, 'iptables', '--native-nftables', '--cleanup']);
      expect(c.code, c.stderr).toBe(0);
      expect(ruleset(a)).toBe(rulesetBefore);
    }
  });
});
