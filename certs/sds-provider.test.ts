import { beforeAll, describe, expect, it } from 'vitest';
import type { SecretConfig } from '../common/config-types';
import { DevCa, type IssuedCertificate } from './dev-ca';
import { SdsSecretProvider, type SecretWatchSource } from './sds-provider';
import { CertStore, type UpdateResult } from './store';

type W = Parameters<SecretWatchSource['watch']>[2];

/** A source the test drives by hand: it records watches and delivers values when told to. */
class ManualSource implements SecretWatchSource {
  readonly watchers = new Map<string, W>();
  watch<T>(_typeUrl: string, name: string, watcher: W): () => void {
    this.watchers.set(name, watcher as W);
    return () => this.watchers.delete(name);
  }
  deliver(name: string, value: SecretConfig): void {
    this.watchers.get(name)!.onChanged(name, value as never, 'v');
  }
}

const identity = (c: IssuedCertificate): SecretConfig => ({
  name: 'default',
  tlsCertificate: {
    certificateChain: { kind: 'inline_string', value: c.certChainPem },
    privateKey: { kind: 'inline_string', value: c.privateKeyPem! },
  },
});
const roots = (pem: string): SecretConfig => ({
  name: 'ROOTCA',
  validationContext: {
    trustedCa: { kind: 'inline_string', value: pem },
    matchTypedSubjectAltNames: [],
    onlyVerifyLeafCertCrl: false,
  },
});

describe('SdsSecretProvider', () => {
  let ca: DevCa;
  let other: DevCa;
  beforeAll(async () => {
    ca = await DevCa.create({ trustDomain: 'cluster.local' });
    other = await DevCa.create({ trustDomain: 'cluster.local' });
  });

  async function settle(results: unknown[], n: number): Promise<void> {
    const deadline = Date.now() + 5000;
    while (results.length < n && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  }

  it('holds an identity that arrives before its trust bundle, then applies it verified', async () => {
    const source = new ManualSource();
    const store = new CertStore();
    const results: [string, UpdateResult][] = [];
    const p = new SdsSecretProvider(source, store, { onResult: (n, r) => results.push([n, r]) });
    p.start();
    expect([...source.watchers.keys()].sort()).toEqual(['ROOTCA', 'default']);
    source.deliver('default', identity(await ca.issueWorkload({ ns: 'a', sa: 'b' })));
    source.deliver('ROOTCA', roots(ca.rootCertPem));
    await settle(results, 2);
    expect(results.map(([n, r]) => [n, r.ok])).toEqual([
      ['ROOTCA', true],
      ['default', true],
    ]);
    expect(store.identity()!.verified).toBe(true);
    p.close();
    expect(source.watchers.size).toBe(0);
  });

  it('keeps the current identity when an update is rejected', async () => {
    const source = new ManualSource();
    const store = new CertStore();
    const results: [string, UpdateResult][] = [];
    const p = new SdsSecretProvider(source, store, { onResult: (n, r) => results.push([n, r]) });
    p.start();
    const good = await ca.issueWorkload({ ns: 'a', sa: 'b' });
    source.deliver('ROOTCA', roots(ca.rootCertPem));
    source.deliver('default', identity(good));
    source.deliver('default', identity(await other.issueWorkload({ ns: 'a', sa: 'b' })));
    await settle(results, 3);
    expect(results[2]![1]).toMatchObject({
      ok: false,
      error: expect.stringMatching(/does not verify against the trust bundle/),
    });
    expect(store.identity()!.chain[0]!.serialNumber).toBe(good.serial);
    p.close();
  });
});
