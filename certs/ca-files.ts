/**
 * The development CA's directory: the signing root in Istio's "plugged-in CA" names (`ca-cert.pem`,
 * `ca-key.pem`), the trust bundle workloads mount (`root-cert.pem`: every trusted root, the
 * signing one first), and the state of a root roll so a restart mid-roll continues:
 *  - `next-ca-cert.pem` + `next-ca-key.pem`: a new root published in the bundle, not signing yet
 *    (phase `trust`);
 *  - `previous-root-cert.pem`: the old root, still trusted, no longer signing (phase `sign`).
 * Files are replaced atomically (write to a temporary name, rename); the private keys are 0600.
 */
import { createPublicKey, X509Certificate } from 'node:crypto';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { MeshletError } from '../common/errors';

export const CA_FILES = {
  cert: 'ca-cert.pem',
  key: 'ca-key.pem',
  root: 'root-cert.pem',
  nextCert: 'next-ca-cert.pem',
  nextKey: 'next-ca-key.pem',
  previous: 'previous-root-cert.pem',
} as const;

export interface CaKeyPair {
  readonly keyPem: string;
  readonly certPem: string;
}

/** What a CA directory holds. */
export interface CaDirState {
  readonly signer: CaKeyPair;
  /** Phase `trust`: the new root, trusted but not signing yet. */
  readonly next?: CaKeyPair;
  /** Phase `sign`: the old root, still trusted. */
  readonly previousPem?: string;
}

async function readOpt(file: string): Promise<string | undefined> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

function checkPair(dir: string, names: string, p: CaKeyPair): void {
  const x = new X509Certificate(p.certPem);
  if (!x.publicKey.equals(createPublicKey(p.keyPem))) {
    throw new MeshletError('MESHLET_ERR_CONFIG', `${dir}: the key of ${names} does not match its certificate`);
  }
  if (!x.ca) throw new MeshletError('MESHLET_ERR_CONFIG', `${dir}: ${names} is not a CA certificate`);
}

/** Load a CA directory; undefined when it holds no CA yet. */
export async function loadCaDir(dir: string): Promise<CaDirState | undefined> {
  const [keyPem, certPem, nextKey, nextCert, previousPem] = await Promise.all(
    [CA_FILES.key, CA_FILES.cert, CA_FILES.nextKey, CA_FILES.nextCert, CA_FILES.previous].map((f) => readOpt(join(dir, f))),
  );
  if (keyPem === undefined || certPem === undefined) return undefined;
  const signer = { keyPem, certPem };
  checkPair(dir, `${CA_FILES.key}/${CA_FILES.cert}`, signer);
  let next: CaKeyPair | undefined;
  if (nextKey !== undefined && nextCert !== undefined) {
    next = { keyPem: nextKey, certPem: nextCert };
    checkPair(dir, `${CA_FILES.nextKey}/${CA_FILES.nextCert}`, next);
  }
  // A promotion cut short after the signer was replaced: the next root already signs.
  if (next && samePem(next.certPem, certPem)) return { signer, previousPem };
  // … or before: still phase `trust` (a stale previous root from an earlier roll is not kept).
  if (next) return { signer, next };
  return { signer, ...(previousPem !== undefined ? { previousPem } : {}) };
}

export function samePem(a: string, b: string): boolean {
  return a.trim() === b.trim();
}

async function put(dir: string, name: string, text: string, mode: number): Promise<void> {
  const tmp = join(dir, `.${name}.tmp`);
  await writeFile(tmp, text, { mode });
  await rename(tmp, join(dir, name));
}

/** The trust bundle of a state: the signing root first, then the other trusted one. */
export function bundleOf(s: CaDirState): string {
  const pems = [s.signer.certPem, s.next?.certPem ?? s.previousPem].filter((p): p is string => p !== undefined);
  return pems.map((p) => (p.endsWith('\n') ? p : `${p}\n`)).join('');
}

/**
 * Write `s` to `dir`. Order matters for a crash in between: the old root is saved as previous
 * before the signer is replaced, and the next files are removed last (see loadCaDir).
 */
export async function saveCaDir(dir: string, s: CaDirState): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  if (s.next) {
    await put(dir, CA_FILES.nextKey, s.next.keyPem, 0o600);
    await put(dir, CA_FILES.nextCert, s.next.certPem, 0o644);
  }
  if (s.previousPem !== undefined) await put(dir, CA_FILES.previous, s.previousPem, 0o644);
  else await rm(join(dir, CA_FILES.previous), { force: true });
  await put(dir, CA_FILES.key, s.signer.keyPem, 0o600);
  await put(dir, CA_FILES.cert, s.signer.certPem, 0o644);
  await put(dir, CA_FILES.root, bundleOf(s), 0o644);
  if (!s.next) {
    await rm(join(dir, CA_FILES.nextKey), { force: true });
    await rm(join(dir, CA_FILES.nextCert), { force: true });
  }
}
