/**
 * A root roll's state survives restarts (issue 18.7): every step is in the CA directory, so a CA
 * created again from it is in the same phase with the same signer and bundle, and the control
 * plane's record of who renewed is kept too (control-plane/root-roll.ts). In key hand-out mode
 * (local development) the control plane re-issues and pushes every held certificate itself.
 */
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { parseMeshOrThrow } from '../../control-plane/mesh';
import { RootRoll } from '../../control-plane/root-roll';
import { ControlPlaneServer } from '../../control-plane/server';
import { decodeAny } from '../../control-plane/snapshot';
import { adsServiceDefinition, type DiscoveryRequestProto, type DiscoveryResponseProto, TYPE_URLS } from '../../xds-client/protos';
import { INSECURE_DEV } from '../support/mesh';
import { DevCa } from '../../certs/dev-ca';

const dir = mkdtempSync(join(tmpdir(), 'meshlet-ca-roll-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const certsIn = (pem: string) => (pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []).map((b) => new X509Certificate(b));
const opts = { trustDomain: 'cluster.local', dir };
const log = pino({ level: 'silent' });

describe('root roll state on disk', () => {
  it('continues a roll after a restart in each phase, and keeps who renewed', async () => {
    const ca = await DevCa.create(opts);
    const oldRoot = new X509Certificate(ca.rootCertPem);
    await ca.beginRoll();
    await expect(ca.beginRoll()).rejects.toThrow(/already in progress/);

    // Restart in phase trust: the old root still signs, the bundle holds both, old first.
    const ca2 = await DevCa.create(opts);
    expect(ca2.rollPhase).toBe('trust');
    expect(ca2.rootCertPem).toBe(ca.rootCertPem);
    const trustBundle = certsIn(ca2.trustBundlePem);
    expect(trustBundle).toHaveLength(2);
    expect(trustBundle[0]!.fingerprint256).toBe(oldRoot.fingerprint256);
    expect(readFileSync(join(dir, 'root-cert.pem'), 'utf8')).toBe(ca2.trustBundlePem);
    const leaf1 = await ca2.issueWorkload({ ns: 'a', sa: 'b' });
    expect(new X509Certificate(leaf1.certChainPem).verify(oldRoot.publicKey)).toBe(true);

    // Restart in phase sign: the new root signs, the old one is still trusted (second).
    await ca2.promoteRoll();
    const ca3 = await DevCa.create(opts);
    expect(ca3.rollPhase).toBe('sign');
    const newRoot = trustBundle[1]!;
    expect(new X509Certificate(ca3.rootCertPem).fingerprint256).toBe(newRoot.fingerprint256);
    expect(certsIn(ca3.trustBundlePem).map((c) => c.fingerprint256)).toEqual([newRoot.fingerprint256, oldRoot.fingerprint256]);
    const leaf2 = await ca3.issueWorkload({ ns: 'a', sa: 'b' });
    expect(new X509Certificate(leaf2.certChainPem).verify(newRoot.publicKey)).toBe(true);

    // The control plane records renewals; a restarted one still knows them and finishes the roll.
    const stream = { spiffeId: 'spiffe://cluster.local/ns/a/sa/b', host: '10.0.0.7', holdsSecrets: true, secretsAcked: true };
    const roll = new RootRoll({ ca: ca3, dir, streams: () => [stream], onPromoted: () => undefined, settleMs: 0, pollMs: 60_000, log });
    await roll.start();
    await roll.tick();
    expect(roll.status()).toMatchObject({ phase: 'sign', waitingFor: ['spiffe://cluster.local/ns/a/sa/b@10.0.0.7'] });
    roll.noteLeaf(stream.spiffeId, stream.host);
    roll.stop();
    await new Promise((r) => setTimeout(r, 100));

    const ca4 = await DevCa.create(opts);
    const roll2 = new RootRoll({ ca: ca4, dir, streams: () => [stream], onPromoted: () => undefined, settleMs: 0, pollMs: 60_000, log });
    await roll2.start();
    await roll2.tick();
    roll2.stop();
    expect(ca4.rollPhase).toBe('none');
    expect(certsIn(readFileSync(join(dir, 'root-cert.pem'), 'utf8')).map((c) => c.fingerprint256)).toEqual([newRoot.fingerprint256]);
    expect((await DevCa.create(opts)).rollPhase).toBe('none');
  });

  it('a roll begun by another process is picked up by reload', async () => {
    const d = mkdtempSync(join(dir, 'reload-'));
    const running = await DevCa.create({ ...opts, dir: d });
    const bundles: string[] = [];
    running.on('trust-bundle', (b: string) => bundles.push(b));
    await (await DevCa.create({ ...opts, dir: d })).beginRoll();
    expect(await running.reload()).toBe(true);
    expect(running.rollPhase).toBe('trust');
    expect(bundles).toHaveLength(1);
    expect(certsIn(bundles[0]!)).toHaveLength(2);
    expect(await running.reload()).toBe(false);
  });
});

describe('root roll with keys handed out over SDS (local development mode)', () => {
  it('re-issues and pushes every held certificate under the new root, then drops the old one', { timeout: 60_000 }, async () => {
    const mesh = parseMeshOrThrow(readFileSync(join(__dirname, '../../control-plane/examples/bookinfo.yaml'), 'utf8')).mesh;
    const cp = await ControlPlaneServer.start({ mesh, port: 0, watchMeshFile: false, caDir: join(dir, 'sds'), rollPollMs: 100, rollSettleMs: 300, log, ...INSECURE_DEV });
    const Client = grpc.makeGenericClientConstructor(adsServiceDefinition(), 'AggregatedDiscoveryService');
    const client = new Client(`127.0.0.1:${cp.port}`, grpc.credentials.createInsecure());
    const call = (client as unknown as { StreamAggregatedResources(): grpc.ClientDuplexStream<DiscoveryRequestProto, DiscoveryResponseProto> }).StreamAggregatedResources();
    let secrets: Record<string, unknown>[] = [];
    call.on('data', (r: DiscoveryResponseProto) => {
      secrets = (r.resources ?? []).map((a) => decodeAny(a));
      call.write({ type_url: TYPE_URLS.secret, resource_names: ['default', 'ROOTCA'], version_info: r.version_info, response_nonce: r.nonce } as DiscoveryRequestProto);
    });
    call.on('error', () => undefined);
    call.write({ node: { id: 'reviews-v1' }, type_url: TYPE_URLS.secret, resource_names: ['default', 'ROOTCA'] } as DiscoveryRequestProto);
    const leafOf = () => {
      const d = secrets.find((x) => x.name === 'default') as { tls_certificate?: { certificate_chain?: { inline_string?: string } } } | undefined;
      const pem = d?.tls_certificate?.certificate_chain?.inline_string;
      return pem ? certsIn(pem)[0] : undefined;
    };
    const rootsOf = () => {
      const r = secrets.find((x) => x.name === 'ROOTCA') as { validation_context?: { trusted_ca?: { inline_string?: string } } } | undefined;
      return certsIn(r?.validation_context?.trusted_ca?.inline_string ?? '');
    };
    const wait = async (what: string, ok: () => boolean) => {
      const end = Date.now() + 20_000;
      while (!ok()) {
        if (Date.now() > end) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(cp.rootRollStatus())}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    };
    try {
      await wait('the first certificate', () => leafOf() !== undefined);
      const oldRoot = new X509Certificate(cp.ca.rootCertPem);
      await cp.rollRoot();
      await wait('ROOTCA with both roots', () => rootsOf().length === 2);
      await wait('the roll to finish', () => cp.rootRollStatus().phase === 'none');
      const newRoot = new X509Certificate(cp.ca.rootCertPem);
      expect(newRoot.fingerprint256).not.toBe(oldRoot.fingerprint256);
      await wait('ROOTCA with the new root only', () => rootsOf().length === 1);
      expect(rootsOf()[0]!.fingerprint256).toBe(newRoot.fingerprint256);
      expect(leafOf()!.verify(newRoot.publicKey)).toBe(true);
    } finally {
      call.cancel();
      client.close();
      await cp.close();
    }
  });
});
