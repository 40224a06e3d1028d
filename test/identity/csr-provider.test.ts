/**
 * Keys that never leave the pod (issue 4 item 6): a meshlet with node.metadata
 * MESHLET_CERT_PROVIDER generates its own key, has the embedded control plane sign a CSR over
 * CreateCertificate (mTLS), serves that certificate on the wire (proved by the peer's XFCC Hash),
 * never serves the key pushed over SDS, and renews with a fresh key before half the lifetime.
 */
import { X509Certificate } from 'node:crypto';
import http from 'node:http';
import tls from 'node:tls';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { buildCsr, csrProviderConfigFromMetadata, renewalRatio } from '../../certs/csr-provider';
import { DEFAULT_ROOT_ROLL_JITTER_MS, rootRollRenewalDelayMs } from '../../certs/renewal-jitter';
import type { RotationEvent } from '../../certs/store';
import { parseMeshOrThrow } from '../../control-plane/mesh';
import { ControlPlaneServer } from '../../control-plane/server';
import { runProxy } from '../../proxy/cli/proxy';
import { decodeBootstrap } from '../../proxy/config/bootstrap';
import { ConfigError } from '../../common/errors';
import { createRegistries } from '../../proxy/registry';
import { adsBootstrap, INSECURE_DEV } from '../support/mesh';
import { startMeshlet, type StartedMeshlet, stopAllMeshlets } from '../support/meshlet';

const MESH = `
trust_domain: cluster.local
services:
  - name: keeper
    namespace: csr
    ports: [{ name: http, port: 9680, protocol: http, target_port: 19680 }]
  - name: target
    namespace: csr
    ports: [{ name: http, port: 9681, protocol: http, target_port: 19681 }]
workloads:
  - { name: keeper-v1, namespace: csr, service_account: keeper, service: keeper, address: "127.0.0.161:19680" }
  - { name: target-v1, namespace: csr, service_account: target, service: target, address: "127.0.0.162:19681" }
`;
const KEEPER_ID = 'spiffe://cluster.local/ns/csr/sa/keeper';

let cp: ControlPlaneServer;
let keeper: StartedMeshlet;
let app: http.Server;
const xfccs: string[] = [];

function keeperBootstrap(cpPort: number, csrPort: number): Record<string, unknown> {
  const b = adsBootstrap('keeper-v1', cpPort) as { node: Record<string, unknown> };
  b.node.metadata = {
    MESHLET_CERT_PROVIDER: { kind: 'istio_csr', ca_address: `127.0.0.1:${csrPort}`, validity: '10s', grace_period_ratio: 0.5 },
  };
  return b;
}

beforeAll(async () => {
  app = http.createServer((req, res) => {
    xfccs.push(String(req.headers['x-forwarded-client-cert'] ?? ''));
    res.end('target ok');
  });
  await new Promise<void>((r) => app.listen(19681, '127.0.0.162', r));
  const { mesh } = parseMeshOrThrow(MESH);
  // The control plane rotates what it pushes over SDS every 1.5 s: the keeper must ignore it.
  cp = await ControlPlaneServer.start({ mesh, port: 0, csrPort: 0, ...INSECURE_DEV, watchMeshFile: false, certLifetimeMs: 10 * 60_000, certRotateAfterMs: 1_500 });
  const target = await startMeshlet(adsBootstrap('target-v1', cp.port));
  keeper = await startMeshlet(keeperBootstrap(cp.port, cp.csrPort!));
  expect(keeper.warnings.filter((w) => w.path.startsWith('node'))).toEqual([]);
  await Promise.all([target.server.initialized, keeper.server.initialized]);
});

afterAll(async () => {
  await stopAllMeshlets();
  await cp?.close();
  app.closeAllConnections();
  await new Promise((r) => app.close(r));
});

function call(): Promise<number> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.161', port: 9681, path: '/', agent: false, headers: { host: 'target.csr.svc.cluster.local' } }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      })
      .on('error', reject);
  });
}

function keeperWorkload() {
  return cp.mesh.workloads.find((w) => w.name === 'keeper-v1')!;
}

describe('CSR certificate provider', () => {
  it('serves a certificate for a locally generated key, never the key pushed over SDS', async () => {
    const id = keeper.server.certs.identity()!;
    expect(id.verified).toBe(true);
    const leaf = id.chain[0]!;
    expect(leaf.subjectAltName).toBe(`URI:${KEEPER_ID}`);
    const pushed = cp.issuer.peek(keeperWorkload())!;
    expect(pushed.spiffeId).toBe(KEEPER_ID);
    expect(leaf.serialNumber).not.toBe(pushed.serial);
    expect(id.privateKeyPem).not.toBe(pushed.privateKeyPem);
    expect(leaf.checkPrivateKey(id.privateKey)).toBe(true);
    expect(keeper.server.certProvider!.stats.sdsIgnored).toBeGreaterThanOrEqual(1);

    expect(await call()).toBe(200);
    const xfcc = xfccs[xfccs.length - 1]!;
    expect(xfcc).toContain(`URI=${KEEPER_ID}`);
    // The certificate the target's sidecar saw on the wire is the CSR-signed one.
    expect(xfcc).toContain(`Hash=${leaf.fingerprint256.replace(/:/g, '').toLowerCase()}`);
  });

  it('renews with a new key before half the lifetime; SDS pushes in between are not served', async () => {
    const before = keeper.server.certs.identity()!;
    const beforeSerial = before.chain[0]!.serialNumber;
    const pushedBefore = cp.issuer.peek(keeperWorkload())!.serial;
    const swaps: RotationEvent[] = [];
    let swappedAt = 0;
    const onRotate = (e: RotationEvent): void => {
      if (e.name !== 'default') return;
      swappedAt ||= Date.now();
      swaps.push(e);
    };
    keeper.server.certs.on('rotate', onRotate);
    try {
      const deadline = Date.now() + 20_000;
      while (swaps.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    } finally {
      keeper.server.certs.off('rotate', onRotate);
    }
    expect(swaps.length).toBeGreaterThan(0);
    const after = keeper.server.certs.identity()!;
    const leaf = after.chain[0]!;
    expect(leaf.serialNumber).not.toBe(beforeSerial);
    expect(after.privateKeyPem).not.toBe(before.privateKeyPem);
    // Renewed at about half of a 10 s lifetime: the old certificate had not expired yet.
    expect(swaps[0]!.previousSerial).toBe(beforeSerial);
    expect(swappedAt).toBeLessThan(Date.parse(before.chain[0]!.validTo));
    // Meanwhile the control plane rotated (and pushed) its own certificate for the keeper.
    expect(cp.issuer.peek(keeperWorkload())!.serial).not.toBe(pushedBefore);
    expect([...new Set(swaps.map((s) => s.serial))].every((s) => s !== cp.issuer.peek(keeperWorkload())!.serial)).toBe(true);
    expect(keeper.server.certProvider!.stats.issued).toBeGreaterThanOrEqual(2);

    // Connections already open keep their certificate; a new handshake with the keeper's inbound
    // port presents the renewed one.
    expect(await call()).toBe(200);
    const peer = await cp.ca.issueWorkload({ ns: 'csr', sa: 'target' });
    const served = await new Promise<string>((resolve, reject) => {
      const s = tls.connect(
        { host: '127.0.0.161', port: 15006, ca: cp.ca.rootCertPem, cert: peer.certChainPem, key: peer.privateKeyPem, ALPNProtocols: ['http/1.1'], checkServerIdentity: () => undefined },
        () => {
          resolve(s.getPeerCertificate().serialNumber);
          s.destroy();
        },
      );
      s.on('error', reject);
    });
    expect(served).toBe(keeper.server.certs.identity()!.chain[0]!.serialNumber);
    expect(served).not.toBe(beforeSerial);
  }, 45_000);
});

describe('MESHLET_CERT_PROVIDER configuration', () => {
  it('is a node.metadata block the bootstrap decoder does not warn about', () => {
    const { warnings, bootstrap } = decodeBootstrap(keeperBootstrap(15010, 15012), { httpFilters: createRegistries().httpFilters });
    expect(warnings.filter((w) => w.path.startsWith('node'))).toEqual([]);
    expect(bootstrap.node.metadata).toHaveProperty('MESHLET_CERT_PROVIDER');
    const cfg = csrProviderConfigFromMetadata(bootstrap.node.metadata)!;
    expect(cfg).toMatchObject({ caAddress: '127.0.0.1:15012', secretName: 'default', trustBundle: 'ROOTCA', validityMs: 10000, gracePeriodRatio: 0.5, gracePeriodRatioJitter: 0.01 });
  });

  it("renews at grace_period_ratio moved by at most Istio's jitter, in both directions", () => {
    const cfg = csrProviderConfigFromMetadata({ MESHLET_CERT_PROVIDER: { kind: 'istio_csr', ca_address: 'ca:15012', grace_period_ratio: 0.5, grace_period_ratio_jitter: 0.1 } })!;
    expect(cfg.gracePeriodRatioJitter).toBe(0.1);
    expect(renewalRatio(cfg, 0)).toBeCloseTo(0.4, 10);
    expect(renewalRatio(cfg, 0.5)).toBeCloseTo(0.5, 10);
    expect(renewalRatio(cfg, 0.999999)).toBeCloseTo(0.6, 5);
    const seen = Array.from({ length: 200 }, () => renewalRatio(cfg, Math.random()));
    expect(Math.min(...seen)).toBeGreaterThanOrEqual(0.4);
    expect(Math.max(...seen)).toBeLessThan(0.6);
    expect(new Set(seen).size).toBeGreaterThan(1);
    // A jitter that could push the ratio to 0 or 1 is refused with its path.
    expect(() => csrProviderConfigFromMetadata({ MESHLET_CERT_PROVIDER: { kind: 'istio_csr', ca_address: 'ca:15012', grace_period_ratio: 0.9, grace_period_ratio_jitter: 0.2 } })).toThrow(
      /MESHLET_CERT_PROVIDER\.grace_period_ratio_jitter/,
    );
  });

  it('spreads a root roll renewal over [0, min(root_roll_jitter, 10% of the remaining life)], 0 renewing at once', () => {
    const base = { kind: 'istio_csr', ca_address: 'ca:15012' };
    expect(csrProviderConfigFromMetadata({ MESHLET_CERT_PROVIDER: base })!.rootRollJitterMs).toBe(DEFAULT_ROOT_ROLL_JITTER_MS);
    expect(DEFAULT_ROOT_ROLL_JITTER_MS).toBe(10_000);
    expect(csrProviderConfigFromMetadata({ MESHLET_CERT_PROVIDER: { ...base, root_roll_jitter: '2.5s' } })!.rootRollJitterMs).toBe(2500);
    expect(csrProviderConfigFromMetadata({ MESHLET_CERT_PROVIDER: { ...base, root_roll_jitter: '0s' } })!.rootRollJitterMs).toBe(0);
    expect(() => csrProviderConfigFromMetadata({ MESHLET_CERT_PROVIDER: { ...base, root_roll_jitter: 'soon' } })).toThrow(/MESHLET_CERT_PROVIDER\.root_roll_jitter/);
    const now = 1_000_000;
    const hour = 3600_000;
    // A long-lived leaf: the bound is root_roll_jitter; random scales it.
    expect(rootRollRenewalDelayMs(10_000, now + hour, now, 0)).toBe(0);
    expect(rootRollRenewalDelayMs(10_000, now + hour, now, 0.5)).toBe(5000);
    expect(rootRollRenewalDelayMs(10_000, now + hour, now, 0.999999)).toBeLessThan(10_000);
    expect(rootRollRenewalDelayMs(10_000, now + hour, now, 0.999999)).toBeGreaterThan(9990);
    // A leaf with 20 s left waits at most 10% of it (2 s); an expired one does not wait.
    expect(rootRollRenewalDelayMs(10_000, now + 20_000, now, 0.999999)).toBeLessThan(2000);
    expect(rootRollRenewalDelayMs(10_000, now + 20_000, now, 0.5)).toBe(1000);
    expect(rootRollRenewalDelayMs(10_000, now - 1, now, 0.5)).toBe(0);
    // 0 disables the wait whatever the random value.
    expect(rootRollRenewalDelayMs(0, now + hour, now, 0.9)).toBe(0);
    const seen = Array.from({ length: 500 }, () => rootRollRenewalDelayMs(10_000, now + hour, now, Math.random()));
    expect(Math.min(...seen)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...seen)).toBeLessThan(10_000);
    expect(new Set(seen).size).toBeGreaterThan(100);
  });

  it('reports every bad field with its path', () => {
    let err: unknown;
    try {
      csrProviderConfigFromMetadata({
        MESHLET_CERT_PROVIDER: { kind: 'vault', ca_address: 'nowhere', grace_period_ratio: 1, spiffe_id: 'http://x', colour: 'blue' },
      });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const paths = (err as ConfigError).issues.map((i) => i.path).sort();
    const p = 'node.metadata.MESHLET_CERT_PROVIDER';
    expect(paths).toEqual([`${p}.ca_address`, `${p}.colour`, `${p}.grace_period_ratio`, `${p}.kind`, `${p}.spiffe_id`]);
    expect(csrProviderConfigFromMetadata({ ISTIO_VERSION: '1.22' })).toBeUndefined();
  });

  it('meshlet proxy --validate reports a bad block with its path and exits 1', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'meshlet-csr-'));
    const file = join(dir, 'bootstrap.json');
    const b = keeperBootstrap(15010, 15012) as { node: { metadata: Record<string, Record<string, unknown>> } };
    b.node.metadata.MESHLET_CERT_PROVIDER!.ca_address = 'no-port';
    writeFileSync(file, JSON.stringify(b));
    const written: string[] = [];
    const spy = vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
      written.push(String(chunk));
      return true;
    });
    try {
      expect(await runProxy(['--bootstrap', file, '--validate'])).toBe(1);
    } finally {
      spy.mockRestore();
      rmSync(dir, { recursive: true, force: true });
    }
    expect(written.join('')).toContain('node.metadata.MESHLET_CERT_PROVIDER.ca_address: expected "host:port", got "no-port"');
  });

  it('builds a CSR carrying exactly the SPIFFE ID the CA signs', async () => {
    const { generateKeyPairSync } = await import('node:crypto');
    const k = generateKeyPairSync('rsa', { modulusLength: 2048, publicKeyEncoding: { type: 'spki', format: 'pem' }, privateKeyEncoding: { type: 'pkcs1', format: 'pem' } });
    const csr = buildCsr(KEEPER_ID, { privateKeyPem: k.privateKey, publicKeyPem: k.publicKey });
    const issued = cp.ca.signCsr(csr, (id) => id === KEEPER_ID, 60_000);
    const leaf = new X509Certificate(issued.certChainPem);
    expect(leaf.subjectAltName).toBe(`URI:${KEEPER_ID}`);
    expect(leaf.publicKey.export({ type: 'spki', format: 'pem' })).toBe(k.publicKey);
    expect(() => cp.ca.signCsr(csr, () => false)).toThrow(/not allowed/);
  });
});
