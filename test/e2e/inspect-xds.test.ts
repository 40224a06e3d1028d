/**
 * The inspection commands against ADS-driven meshlets: `meshlet proxy-status` over CSDS against
 * the embedded control plane (every sidecar SYNCED at the versions it ACKed) and against a
 * meshlet's own CSDS (a NACKed listener shows NACKED with the reason the proxy sent), and
 * `meshlet proxy-config clusters|secrets|explain` on a sidecar configured by the control plane.
 */
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ExplainResult } from '../../proxy/admin/explain';
import { proxyClientConfig, serveCsds, type CsdsServer } from '../../proxy/dynamic/csds';
import { JsonAdsServer } from '../support/json-ads-server';
import { adsBootstrap, startMesh, type TestMesh } from '../support/mesh';
import { httpListener, routes, startMeshlet, stopAllMeshlets, type StartedMeshlet } from '../support/meshlet';

const run = promisify(execFile);
const BIN = path.join(__dirname, '../../bin/meshlet.js');
const cli = (...args: string[]) => run(process.execPath, [BIN, ...args], { timeout: 20_000, env: { ...process.env, NO_COLOR: '1' } });

const MESH = `
trust_domain: cluster.local
services:
  - name: shop
    namespace: default
    ports: [{ name: http, port: 9380, protocol: http, target_port: 19380 }]
  - name: stock
    namespace: default
    ports: [{ name: http, port: 9381, protocol: http, target_port: 19381 }]
workloads:
  - { name: shop-v1, namespace: default, service_account: shop, service: shop, version: v1, address: "127.0.0.91:19380", inbound_port: 15006, admin_port: 15000 }
  - { name: stock-v1, namespace: default, service_account: stock, service: stock, version: v1, address: "127.0.0.92:19381", inbound_port: 15006, admin_port: 15000 }
  - { name: stock-v2, namespace: default, service_account: stock, service: stock, version: v2, address: "127.0.0.93:19381", inbound_port: 15006, admin_port: 15000 }
`;

const LISTENER = 'type.googleapis.com/envoy.config.listener.v3.Listener';

let mesh: TestMesh;
let ads: JsonAdsServer;
let nacking: StartedMeshlet;
let csds: CsdsServer;
/** The spawned `meshlet proxy`, killed in afterAll too (a timed-out test may not reach its finally). */
let spawned: ReturnType<typeof spawn> | undefined;

beforeAll(async () => {
  mesh = await startMesh(MESH, ['shop-v1', 'stock-v1']);
  ads = new JsonAdsServer();
  await ads.start();
  ads.set(LISTENER, [httpListener('good', routes([{ match: { prefix: '/' }, direct_response: { status: 200 } }]))]);
  nacking = await startMeshlet(adsBootstrap('nacking', ads.port));
  await nacking.server.initialized;
  csds = await serveCsds('127.0.0.1', 0, () => proxyClientConfig(nacking.server.bootstrap.node, nacking.server.dynamic?.client.snapshot()));
}, 60_000);

afterAll(async () => {
  spawned?.kill('SIGKILL');
  await csds?.close();
  await mesh?.close();
  await stopAllMeshlets();
  await ads?.stop?.();
});

describe('meshlet proxy-status', () => {
  it('against the embedded control plane: every sidecar, every type SYNCED at the version it ACKed', async () => {
    const { stdout } = await cli('proxy-status', '--xds', `127.0.0.1:${mesh.cp.port}`);
    const lines = stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^NAME\s+CDS\s+LDS\s+EDS\s+RDS\s+SDS\s+STREAM$/);
    const byNode = new Map(lines.slice(1).map((l) => [l.split(/\s{3,}/)[0]!, l.split(/\s{3,}/)]));
    expect([...byNode.keys()].sort()).toEqual(['shop-v1', 'stock-v1']);
    for (const [node, row] of byNode) {
      const status = mesh.cp.streamStatus().find((s) => s.nodeId === node)!;
      const acked = (suffix: string) => Object.entries(status.types).find(([t]) => t.endsWith(suffix))?.[1].ackedVersion;
      expect(row[1]).toBe(`SYNCED (${acked('.Cluster')})`);
      expect(row[2]).toBe(`SYNCED (${acked('.Listener')})`);
      expect(row[5]).toBe(`SYNCED (${acked('.Secret')})`);
      // The sidecar agrees: its own xDS status names the same versions.
      const m = mesh.sidecars.get(node)!;
      const snap = m.server.dynamic!.client.snapshot();
      expect(snap.types.find((t) => t.type_url.endsWith('.Listener'))!.version_info).toBe(acked('.Listener'));
    }
    const one = await cli('proxy-status', '--xds', `127.0.0.1:${mesh.cp.port}`, 'stock-v1', '-o', 'json');
    const res = JSON.parse(one.stdout) as { config: { node: { id: string }; generic_xds_configs: { config_status: string }[] }[] };
    expect(res.config.map((c) => c.node.id)).toEqual(['stock-v1']);
    expect(res.config[0]!.generic_xds_configs.every((g) => g.config_status === 'SYNCED')).toBe(true);
  });

  it("against a meshlet's own CSDS: a rejected listener is NACKED with the reason the proxy sent", async () => {
    ads.set(LISTENER, [
      httpListener('good', routes([{ match: { prefix: '/' }, direct_response: { status: 200 } }])),
      { name: 'broken', address: { socket_address: { address: '127.0.0.1', port_value: 0 } }, filter_chains: [{ filters: [] }] },
    ]);
    const deadline = Date.now() + 10_000;
    while (ads.nacks.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(ads.nacks.length).toBeGreaterThan(0);
    const { stdout } = await cli('proxy-status', '--xds', `127.0.0.1:${csds.port}`);
    const [header, row, , ...reasons] = stdout.trimEnd().split('\n');
    expect(header).toMatch(/^NAME\s+CDS/);
    const cells = row!.split(/\s{3,}/);
    expect(cells[0]).toBe('nacking');
    expect(cells[2]).toBe('NACKED (2)');
    const reason = reasons.find((l) => l.includes('LDS broken'))!;
    expect(reason).toContain('NACKED version 2');
    const detail = 'Listener "broken": filter_chains[0].filters: a filter chain needs a terminal filter';
    expect(reason).toContain(detail);
    expect(ads.nacks[0]!.message).toContain(detail);
    expect(await cli('proxy-status', '--xds', `127.0.0.1:${csds.port}`, 'someone-else').catch((e: { stdout: string }) => e.stdout)).toContain('no connected proxy with node id "someone-else"');
  });

  it('names a server that does not answer CSDS', async () => {
    await expect(cli('proxy-status', '--xds', `127.0.0.1:${ads.port}`, '--timeout', '5')).rejects.toMatchObject({ stderr: expect.stringContaining('the server does not answer CSDS') });
  });
});

describe('meshlet proxy-config on a sidecar configured by the control plane', () => {
  it('clusters come from CDS with their Istio names parsed', async () => {
    const admin = `http://127.0.0.1:${mesh.sidecars.get('shop-v1')!.adminPort}`;
    const { stdout } = await cli('proxy-config', 'clusters', '--admin', admin, '--fqdn', 'stock.default.svc.cluster.local', '--direction', 'outbound');
    const rows = stdout.trimEnd().split('\n').slice(1).map((l) => l.split(/\s{3,}/));
    expect(rows).toContainEqual(['stock.default.svc.cluster.local', '9381', '-', 'outbound', 'EDS', '-']);
    const names = mesh.sidecars.get('shop-v1')!.server.clusters.describe().map((c) => c.name);
    expect(names).toContain('outbound|9381||stock.default.svc.cluster.local');
  });

  it('secrets: the SPIFFE ID, serial and validity of the issued certificate, never key material', async () => {
    const m = mesh.sidecars.get('shop-v1')!;
    const admin = `http://127.0.0.1:${m.adminPort}`;
    const { stdout } = await cli('proxy-config', 'secrets', '--admin', admin, '-o', 'json');
    expect(stdout).not.toMatch(/PRIVATE KEY/);
    const secrets = JSON.parse(stdout) as { secret: string; type: string; spiffeId?: string; serialNumber?: string; issuer?: string; secondsToExpiry?: number }[];
    const id = secrets.find((s) => s.type === 'Cert Chain')!;
    expect(id.spiffeId).toBe('spiffe://cluster.local/ns/default/sa/shop');
    const certs = JSON.parse(await (await fetch(`${admin}/certs`)).text()) as { certificates: { cert_chain: { serial_number: string }[] }[] };
    expect(id.serialNumber).toBe(certs.certificates[0]!.cert_chain[0]!.serial_number);
    expect(id.issuer).toBeTruthy();
    expect(id.secondsToExpiry).toBeGreaterThan(60);
    const table = await cli('proxy-config', 'secrets', '--admin', admin);
    expect(table.stdout.split('\n')[0]).toMatch(/^RESOURCE NAME\s+TYPE\s+STATUS\s+VALID CERT\s+SPIFFE ID\s+SERIAL NUMBER\s+ISSUER\s+NOT BEFORE\s+NOT AFTER\s+EXPIRES IN$/);
    expect(table.stdout).toContain('spiffe://cluster.local/ns/default/sa/shop');
  });

  it('explain follows the outbound route to the service, with the mTLS SAN expected of it', async () => {
    const m = mesh.sidecars.get('shop-v1')!;
    const { stdout } = await cli('proxy-config', 'explain', 'http://stock.default.svc.cluster.local:9381/items', '--admin', `http://127.0.0.1:${m.adminPort}`, '-o', 'json');
    const e = JSON.parse(stdout) as ExplainResult;
    expect(e.clusters).toEqual([{ name: 'outbound|9381||stock.default.svc.cluster.local' }]);
    // Sidecar to sidecar: the endpoint is stock's inbound port (mTLS), not the app's port.
    expect(e.upstream[0]!.endpoints.map((x) => x.address).sort()).toEqual(['127.0.0.92:15006', '127.0.0.93:15006']);
    expect(e.upstream[0]!.tls?.expectedSans.join(' ')).toContain('spiffe://cluster.local/ns/default/sa/stock');
  });
});

describe('meshlet proxy --csds-port', () => {
  it('the real command answers CSDS with what it runs (an ADS-driven proxy, every type SYNCED)', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'meshlet-csds-'));
    const file = path.join(dir, 'bootstrap.json');
    writeFileSync(file, JSON.stringify(adsBootstrap('stock-v2', mesh.cp.port)));
    const child = (spawned = spawn(process.execPath, [BIN, 'proxy', '--bootstrap', file, '--csds-port', '0', '--log-level', 'info'], { stdio: ['ignore', 'pipe', 'pipe'] }));
    try {
      const port = await new Promise<number>((resolve, reject) => {
        let out = '';
        const t = setTimeout(() => reject(new Error(`no "serving CSDS" line: ${out}`)), 15_000);
        child.stdout!.on('data', (c: Buffer) => {
          out += c.toString();
          const m = /"address":"127\.0\.0\.1:(\d+)","msg":"serving CSDS"/.exec(out);
          if (m) {
            clearTimeout(t);
            resolve(Number(m[1]));
          }
        });
        child.on('exit', (code) => reject(new Error(`meshlet proxy exited ${code}: ${out}`)));
      });
      // The first status may come before every xDS type is ACKed (a type in flight reads
      // STALE, which is the truth): poll until all five are SYNCED or the deadline passes.
      let row: string[] = [];
      const allSynced = (): boolean => [1, 2, 3, 4, 5].every((i) => (row[i] ?? '').startsWith('SYNCED'));
      const until = Date.now() + 25_000;
      while (Date.now() < until && !allSynced()) {
        const { stdout } = await cli('proxy-status', '--xds', `127.0.0.1:${port}`);
        row = stdout.trimEnd().split('\n')[1]!.split(/\s{3,}/);
        if (!allSynced()) await new Promise((r) => setTimeout(r, 250));
      }
      expect(row[0]).toBe('stock-v2');
      for (const c of [row[1], row[2], row[3], row[4], row[5]]) expect(c).toMatch(/^SYNCED \(.+\)$/);
      expect(row[6]).toBe('connected');
    } finally {
      child.kill('SIGKILL');
    }
  }, 60_000);
});
