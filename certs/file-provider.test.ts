import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DevCa } from './dev-ca';
import { FileSecretProvider } from './file-provider';
import { CertStore, type UpdateResult } from './store';

describe('FileSecretProvider', () => {
  let ca: DevCa;
  let dir: string;
  let provider: FileSecretProvider | undefined;
  beforeAll(async () => {
    ca = await DevCa.create({ trustDomain: 'cluster.local' });
  });
  afterEach(async () => {
    provider?.close();
    provider = undefined;
    await rm(dir, { recursive: true, force: true });
  });

  function waitFor(results: [string, UpdateResult][], n: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const deadline = Date.now() + 10_000;
      const tick = () => {
        if (results.length >= n) resolve();
        else if (Date.now() > deadline) reject(new Error(`only ${results.length} reload results`));
        else setTimeout(tick, 20);
      };
      tick();
    });
  }

  it('loads identity and roots from files, reloads on change and rejects a mismatched pair', async () => {
    dir = await mkdtemp(join(tmpdir(), 'meshlet-files-'));
    const first = await ca.issueWorkload({ ns: 'a', sa: 'b' });
    const paths = { chain: join(dir, 'cert-chain.pem'), key: join(dir, 'key.pem'), root: join(dir, 'root-cert.pem') };
    await writeFile(paths.chain, first.certChainPem);
    await writeFile(paths.key, first.privateKeyPem!);
    await writeFile(paths.root, ca.rootCertPem);
    const store = new CertStore();
    const results: [string, UpdateResult][] = [];
    provider = new FileSecretProvider(
      store,
      [
        { name: 'default', certChainPath: paths.chain, privateKeyPath: paths.key },
        { name: 'ROOTCA', trustedCaPath: paths.root },
      ],
      { pollIntervalMs: 100, debounceMs: 20, onResult: (n, r) => results.push([n, r]) },
    );
    const initial = await provider.start();
    expect(initial.get('default')).toEqual({ ok: true });
    expect(initial.get('ROOTCA')).toEqual({ ok: true });
    expect(store.identity()!.verified).toBe(true);
    expect(store.identity()!.chain[0]!.serialNumber).toBe(first.serial);

    results.length = 0;
    const second = await ca.issueWorkload({ ns: 'a', sa: 'b' });
    // Key first: a moment where chain and key disagree must not replace the current identity.
    await writeFile(paths.key, second.privateKeyPem!);
    await waitFor(results, 1);
    await writeFile(paths.chain, second.certChainPem);
    const deadline = Date.now() + 10_000;
    while (store.identity()!.chain[0]!.serialNumber !== second.serial && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(store.identity()!.chain[0]!.serialNumber).toBe(second.serial);
    const rejected = results.filter(([, r]) => !r.ok);
    expect(rejected.length).toBeGreaterThanOrEqual(1);
    expect(rejected[0]![1]).toMatchObject({ ok: false, error: expect.stringMatching(/private key does not match/) });
  });

  it('requires either a pair or a trust bundle path', () => {
    dir = '/nonexistent-meshlet';
    expect(() => new FileSecretProvider(new CertStore(), [{ name: 'x', certChainPath: '/a' }])).toThrow(
      /set certChainPath/,
    );
  });
});
