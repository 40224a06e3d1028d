/**
 * The CSR provider against a real CreateCertificate server (control-plane/csr-service.ts over
 * mTLS) when things go wrong: an unreachable CA and a CA that refuses the identity each count a
 * failure, schedule a retry, and leave the current certificate in place; nothing is installed
 * without a provisioning credential and a trust bundle. A root roll's early renewal waits out its
 * random delay (root_roll_jitter; fake timers, injected random).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { CsrCertificateProvider, type CsrProviderConfig } from '../../certs/csr-provider';
import { DevCa } from '../../certs/dev-ca';
import { CertStore } from '../../certs/store';
import { csrServiceDefinition } from '../../certs/csr-wire';
import { createCertificateHandler, secureServerCredentials } from '../../control-plane/csr-service';
import type { SecretConfig } from '../../proxy/config/types';
import { closedPort } from '../support/upstreams';

const ID = 'spiffe://cluster.local/ns/fail/sa/worker';
let ca: DevCa;
let server: grpc.Server;
let port = 0;
let allowed = true;
const providers: CsrCertificateProvider[] = [];

beforeAll(async () => {
  ca = await DevCa.create({ trustDomain: 'cluster.local' });
  server = new grpc.Server();
  server.addService(csrServiceDefinition(), {
    CreateCertificate: createCertificateHandler({ ca, isKnownIdentity: (id) => allowed && id === ID, lifetimeMs: 3600_000 }),
  });
  const creds = await secureServerCredentials(ca);
  port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', creds, (e, p) => (e ? reject(e) : resolve(p))));
});

afterAll(() => {
  for (const p of providers) p.close();
  server?.forceShutdown();
});

function config(caAddress: string): CsrProviderConfig {
  return { caAddress, caServerName: 'istiod.istio-system.svc', secretName: 'default', trustBundle: 'ROOTCA', validityMs: 0, gracePeriodRatio: 0.5, gracePeriodRatioJitter: 0.01, rootRollJitterMs: 0 };
}

async function storeWithRoots(): Promise<CertStore> {
  const store = new CertStore();
  const r = await store.update('ROOTCA', {
    name: 'ROOTCA',
    validationContext: { trustedCa: { kind: 'inline_string', value: ca.rootCertPem }, matchTypedSubjectAltNames: [], onlyVerifyLeafCertCrl: false },
  } as SecretConfig);
  expect(r.ok).toBe(true);
  return store;
}

async function provisioning(): Promise<SecretConfig> {
  const c = await ca.issueWorkload({ ns: 'fail', sa: 'worker' });
  return {
    name: 'default',
    tlsCertificate: { certificateChain: { kind: 'inline_string', value: c.certChainPem }, privateKey: { kind: 'inline_string', value: c.privateKeyPem! } },
  } as SecretConfig;
}

function provider(store: CertStore, caAddress: string, over: Partial<CsrProviderConfig> = {}, random?: () => number): CsrCertificateProvider {
  const p = new CsrCertificateProvider(store, { ...config(caAddress), ...over }, random ? { random } : {});
  providers.push(p);
  return p;
}

describe('CSR provider failures', () => {
  it('installs a CA-signed certificate for its own key, then keeps it when the CA refuses a renewal', async () => {
    allowed = true;
    const store = await storeWithRoots();
    const p = provider(store, `127.0.0.1:${port}`);
    const prov = await provisioning();
    await p.offerSdsSecret(prov);
    expect(p.stats.issued).toBe(1);
    const id = store.identity()!;
    expect(id.verified).toBe(true);
    expect(id.privateKeyPem).not.toBe(prov.tlsCertificate!.privateKey.kind === 'inline_string' ? prov.tlsCertificate!.privateKey.value : '');
    const serial = id.chain[0]!.serialNumber;
    expect(p.currentSerial).toBe(serial);

    allowed = false; // the workload left the mesh: the CA says PERMISSION_DENIED
    expect(await p.refresh()).toBe(false);
    expect(p.stats.failures).toBe(1);
    expect(store.identity()!.chain[0]!.serialNumber).toBe(serial);
    allowed = true;
    expect(await p.refresh()).toBe(true);
    expect(store.identity()!.chain[0]!.serialNumber).not.toBe(serial);
  });

  it('counts a failure and keeps nothing half-installed when the CA is unreachable', async () => {
    const store = await storeWithRoots();
    const p = provider(store, `127.0.0.1:${await closedPort()}`);
    await p.offerSdsSecret(await provisioning());
    expect(p.stats.issued).toBe(0);
    expect(p.stats.failures).toBe(1);
    expect(store.identity()).toBeUndefined();
  });

  it('waits for the trust bundle, then requests the first certificate', async () => {
    allowed = true;
    const store = new CertStore();
    const p = provider(store, `127.0.0.1:${port}`);
    await p.offerSdsSecret(await provisioning());
    expect(p.stats.issued).toBe(0);
    expect(p.stats.failures).toBe(0);
    const installed = new Promise<void>((resolve) => store.on('rotate', (e: { name: string }) => e.name === 'default' && resolve()));
    await store.update('ROOTCA', {
      name: 'ROOTCA',
      validationContext: { trustedCa: { kind: 'inline_string', value: ca.rootCertPem }, matchTypedSubjectAltNames: [], onlyVerifyLeafCertCrl: false },
    } as SecretConfig);
    await installed;
    // The provider counts the issuance right after the store's swap.
    for (let i = 0; i < 100 && p.stats.issued === 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(p.stats.issued).toBe(1);
    expect(store.identity()!.chain[0]!.subjectAltName).toBe(`URI:${ID}`);
  });

  it('with a local root file (the Istio agent) owns ROOTCA too: installs the file as the trust bundle and uses it for the CA', async () => {
    allowed = true;
    const dir = mkdtempSync(join(tmpdir(), 'meshlet-rootca-'));
    try {
      const rootFile = join(dir, 'root-cert.pem');
      writeFileSync(rootFile, ca.rootCertPem);
      const store = new CertStore();
      const p = new CsrCertificateProvider(store, { ...config(`127.0.0.1:${port}`), rootCertFile: rootFile });
      providers.push(p);
      expect(p.owns('default')).toBe(true);
      expect(p.owns('ROOTCA')).toBe(true);
      expect(p.owns('other')).toBe(false);
      // Without a root file the control plane still serves the trust bundle.
      expect(provider(new CertStore(), `127.0.0.1:${port}`).owns('ROOTCA')).toBe(false);
      await p.offerSdsSecret(await provisioning());
      expect(p.stats.issued).toBe(1);
      expect(store.trustBundle('ROOTCA')?.rootsPem).toBe(ca.rootCertPem);
      expect(store.identity()!.chain[0]!.subjectAltName).toBe(`URI:${ID}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('renews for a root roll after a random wait bounded by root_roll_jitter (0: at once), only when the first root did not issue the leaf', async () => {
    allowed = true;
    const other = await DevCa.create({ trustDomain: 'cluster.local' });
    const bundle = (roots: string) =>
      ({ name: 'ROOTCA', validationContext: { trustedCa: { kind: 'inline_string', value: roots }, matchTypedSubjectAltNames: [], onlyVerifyLeafCertCrl: false } }) as SecretConfig;
    const run = async (jitterMs: number, firstRoot: string, secondRoot: string) => {
      const store = await storeWithRoots();
      const p = provider(store, `127.0.0.1:${port}`, { rootRollJitterMs: jitterMs }, () => 0.5);
      await p.offerSdsSecret(await provisioning());
      expect(p.stats.issued).toBe(1);
      const refresh = vi.spyOn(p, 'refresh').mockResolvedValue(true);
      vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
      try {
        expect((await store.update('ROOTCA', bundle(firstRoot + secondRoot))).ok).toBe(true);
        const atOnce = refresh.mock.calls.length;
        vi.advanceTimersByTime(Math.max(0, jitterMs / 2 - 1));
        const beforeWait = refresh.mock.calls.length;
        // Another bundle change during the wait keeps the wait (no second timer).
        expect((await store.update('ROOTCA', bundle(firstRoot + secondRoot + ca.rootCertPem))).ok).toBe(true);
        vi.advanceTimersByTime(1);
        return { atOnce, beforeWait, after: refresh.mock.calls.length };
      } finally {
        vi.useRealTimers();
        p.close();
      }
    };
    // The new root first (phase sign): 10 s × random 0.5 = 5 s, then exactly one renewal.
    expect(await run(10_000, other.rootCertPem, ca.rootCertPem)).toEqual({ atOnce: 0, beforeWait: 0, after: 1 });
    // root_roll_jitter 0: at once, as before.
    expect((await run(0, other.rootCertPem, ca.rootCertPem)).atOnce).toBe(1);
    // The leaf's issuer still first (phase trust): no renewal at all.
    expect(await run(10_000, ca.rootCertPem, other.rootCertPem)).toEqual({ atOnce: 0, beforeWait: 0, after: 0 });
  });
});
