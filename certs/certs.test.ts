import { createPrivateKey, X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import forge from 'node-forge';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SecretConfig } from '../common/config-types';
import { DevCa, generateRsaKeyPair, type IssuedCertificate } from './dev-ca';
import { formatSpiffeId, parseSpiffeId, splitSan, uriSansOf } from './identity';
import { CertStore, type RotationEvent } from './store';

function identitySecret(name: string, c: { certChainPem: string; privateKeyPem?: string }, key?: string): SecretConfig {
  return {
    name,
    tlsCertificate: {
      certificateChain: { kind: 'inline_string', value: c.certChainPem },
      privateKey: { kind: 'inline_string', value: key ?? c.privateKeyPem! },
    },
  };
}
function rootSecret(pem: string): SecretConfig {
  return {
    name: 'ROOTCA',
    validationContext: {
      trustedCa: { kind: 'inline_bytes', value: Buffer.from(pem).toString('base64') },
      matchTypedSubjectAltNames: [],
      onlyVerifyLeafCertCrl: false,
    },
  };
}

describe('identity', () => {
  it('formats and parses Istio SPIFFE IDs', () => {
    const id = formatSpiffeId('cluster.local', 'shop', 'cart');
    expect(id).toBe('spiffe://cluster.local/ns/shop/sa/cart');
    expect(parseSpiffeId(id)).toMatchObject({ trustDomain: 'cluster.local', ns: 'shop', sa: 'cart' });
    expect(parseSpiffeId('spiffe://Bad.Domain/x')).toHaveProperty('error');
    expect(parseSpiffeId('https://x/y')).toHaveProperty('error');
    expect(parseSpiffeId('spiffe://td/a/../b')).toHaveProperty('error');
    expect(() => formatSpiffeId('td', 'a/b', 'c')).toThrow(/namespace/);
  });
  it('splits node subjectAltName strings including quoted entries', () => {
    expect(splitSan('URI:spiffe://td/ns/a/sa/b, DNS:x.y')).toEqual(['URI:spiffe://td/ns/a/sa/b', 'DNS:x.y']);
    expect(splitSan('DNS:"a, b", URI:u')).toEqual(['DNS:a, b', 'URI:u']);
    expect(uriSansOf('DNS:x, URI:spiffe://a/b')).toEqual(['spiffe://a/b']);
  });
});

describe('DevCa', () => {
  let dir: string;
  let ca: DevCa;
  let otherCa: DevCa;
  let issued: IssuedCertificate;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'meshlet-ca-'));
    ca = await DevCa.create({ trustDomain: 'cluster.local', dir });
    otherCa = await DevCa.create({ trustDomain: 'cluster.local' });
    issued = await ca.issueWorkload({ ns: 'shop', sa: 'cart' });
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('issues a workload certificate that verifies against the root and carries the SPIFFE SAN', () => {
    const [leafPem] = issued.certChainPem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)!;
    const leaf = new X509Certificate(leafPem!);
    const root = new X509Certificate(ca.rootCertPem);
    expect(leaf.checkIssued(root)).toBe(true);
    expect(leaf.verify(root.publicKey)).toBe(true);
    expect(leaf.verify(new X509Certificate(otherCa.rootCertPem).publicKey)).toBe(false);
    expect(leaf.subjectAltName).toBe('URI:spiffe://cluster.local/ns/shop/sa/cart');
    expect(leaf.ca).toBe(false);
    expect(leaf.checkPrivateKey(createPrivateKey(issued.privateKeyPem!))).toBe(true);
    expect(leaf.keyUsage).toEqual(expect.arrayContaining(['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2']));
    expect(leaf.serialNumber).toBe(issued.serial);
    // 1 h default lifetime with 5 min backdating
    const life = Date.parse(leaf.validTo) - Date.parse(leaf.validFrom);
    expect(life).toBeGreaterThanOrEqual(65 * 60_000 - 2000);
    expect(life).toBeLessThanOrEqual(65 * 60_000 + 2000);
    expect(Date.parse(leaf.validFrom)).toBeLessThan(Date.now() - 4 * 60_000);
  });

  it('persists the root in the directory and reloads the same one', async () => {
    const again = await DevCa.create({ trustDomain: 'cluster.local', dir });
    expect(again.rootCertPem).toBe(ca.rootCertPem);
    expect(await readFile(join(dir, 'root-cert.pem'), 'utf8')).toBe(ca.rootCertPem);
    const root = new X509Certificate(ca.rootCertPem);
    expect(root.ca).toBe(true);
  });

  it('gives each issuance a fresh serial and key', async () => {
    const second = await ca.issueWorkload({ ns: 'shop', sa: 'cart' });
    expect(second.serial).not.toBe(issued.serial);
    expect(second.privateKeyPem).not.toBe(issued.privateKeyPem);
  });

  async function csrFor(uri: string): Promise<string> {
    const kp = await generateRsaKeyPair();
    const csr = forge.pki.createCertificationRequest();
    csr.publicKey = forge.pki.publicKeyFromPem(kp.publicKeyPem);
    csr.setAttributes([
      { name: 'extensionRequest', extensions: [{ name: 'subjectAltName', altNames: [{ type: 6, value: uri }] }] },
    ]);
    csr.sign(forge.pki.privateKeyFromPem(kp.privateKeyPem) as forge.pki.rsa.PrivateKey, forge.md.sha256.create());
    return forge.pki.certificationRequestToPem(csr);
  }

  it('signs a CSR for an allowed SPIFFE ID and refuses others', async () => {
    const want = 'spiffe://cluster.local/ns/shop/sa/cart';
    const allowed = (id: string) => id === want;
    const signed = ca.signCsr(await csrFor(want), allowed);
    expect(uriSansOf(new X509Certificate(signed.certChainPem).subjectAltName)).toEqual([want]);
    expect(signed.privateKeyPem).toBeUndefined();
    await expect(csrFor('spiffe://cluster.local/ns/shop/sa/admin').then((c) => ca.signCsr(c, allowed))).rejects.toThrow(
      /not allowed/,
    );
    await expect(csrFor('spiffe://evil.org/ns/shop/sa/cart').then((c) => ca.signCsr(c, () => true))).rejects.toThrow(
      /trust domain/,
    );
    expect(() => ca.signCsr('garbage', allowed)).toThrow(/CSR/);
  });

  describe('CertStore', () => {
    it('accepts a valid identity after its trust bundle and emits rotation', async () => {
      const store = new CertStore();
      const events: RotationEvent[] = [];
      store.on('rotate', (e: RotationEvent) => events.push(e));
      expect(await store.update('ROOTCA', rootSecret(ca.rootCertPem))).toEqual({ ok: true });
      expect(await store.update('default', identitySecret('default', issued))).toEqual({ ok: true });
      expect(store.identity()?.verified).toBe(true);
      const next = await ca.issueWorkload({ ns: 'shop', sa: 'cart' });
      expect((await store.update('default', identitySecret('default', next))).ok).toBe(true);
      expect(events.map((e) => [e.name, e.previousSerial, e.serial])).toEqual([
        ['ROOTCA', undefined, new X509Certificate(ca.rootCertPem).serialNumber],
        ['default', undefined, issued.serial],
        ['default', issued.serial, next.serial],
      ]);
      const details = store.details().find((d) => d.secretName === 'default')!;
      expect(details.serialNumber).toBe(next.serial);
      expect(details.subjectAltNames).toEqual(['URI:spiffe://cluster.local/ns/shop/sa/cart']);
      expect(details.daysUntilExpiration).toBe(0);
      expect(store.secondsUntilFirstExpiry()).toBeGreaterThan(3000);
      const admin = store.adminCerts();
      expect(admin.certificates[0]!.cert_chain[0]).toMatchObject({
        subject_alt_names: [{ uri: 'spiffe://cluster.local/ns/shop/sa/cart' }],
      });
      expect(admin.certificates[0]!.ca_cert).toHaveLength(1);
    });

    it('rejects an expired certificate and keeps the current one', async () => {
      const store = new CertStore();
      await store.update('ROOTCA', rootSecret(ca.rootCertPem));
      await store.update('default', identitySecret('default', issued));
      const expired = await ca.issueWorkload({ ns: 'shop', sa: 'cart', at: Date.now() - 3 * 3600_000 });
      const r = await store.update('default', identitySecret('default', expired));
      expect(r.ok).toBe(false);
      expect(!r.ok && r.error).toMatch(/has expired/);
      expect(store.identity()!.chain[0]!.serialNumber).toBe(issued.serial);
    });

    it('rejects a certificate that is not yet valid', async () => {
      const store = new CertStore({ now: () => Date.now() - 2 * 3600_000 });
      await store.update('ROOTCA', rootSecret(ca.rootCertPem));
      const r = await store.update('default', identitySecret('default', issued));
      expect(!r.ok && r.error).toMatch(/not yet valid/);
      expect(store.identity()).toBeUndefined();
    });

    it('rejects a key that does not match the certificate', async () => {
      const store = new CertStore();
      await store.update('ROOTCA', rootSecret(ca.rootCertPem));
      const other = await generateRsaKeyPair();
      const r = await store.update('default', identitySecret('default', issued, other.privateKeyPem));
      expect(!r.ok && r.error).toMatch(/private key does not match/);
      expect(store.identity()).toBeUndefined();
    });

    it('rejects a certificate from another CA', async () => {
      const store = new CertStore();
      await store.update('ROOTCA', rootSecret(ca.rootCertPem));
      await store.update('default', identitySecret('default', issued));
      const foreign = await otherCa.issueWorkload({ ns: 'shop', sa: 'cart' });
      const r = await store.update('default', identitySecret('default', foreign));
      expect(!r.ok && r.error).toMatch(/does not verify against the trust bundle/);
      expect(store.identity()!.chain[0]!.serialNumber).toBe(issued.serial);
    });

    it('rejects garbage and a broken chain with readable errors', async () => {
      const store = new CertStore();
      const r1 = await store.update(
        'default',
        identitySecret('default', { certChainPem: 'nope', privateKeyPem: 'nope' }),
      );
      expect(!r1.ok && r1.error).toMatch(/no PEM certificate/);
      const leaf = issued.certChainPem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/)![0];
      const r2 = await store.update(
        'default',
        identitySecret('default', { certChainPem: leaf + otherCa.rootCertPem }, issued.privateKeyPem),
      );
      expect(!r2.ok && r2.error).toMatch(/chain is broken/);
      const r3 = await store.update('ROOTCA', rootSecret(leaf));
      expect(!r3.ok && r3.error).toMatch(/not a CA/);
    });

    it('accepts an identity before any trust bundle, flagged as unverified', async () => {
      const store = new CertStore();
      const r = await store.update('default', identitySecret('default', issued));
      expect(r).toMatchObject({ ok: true, warning: expect.stringMatching(/without root verification/) });
      expect(store.identity()!.verified).toBe(false);
    });
  });
});
