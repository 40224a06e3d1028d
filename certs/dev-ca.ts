/**
 * The development certificate authority used by the embedded control plane.
 *
 * Owns: a self-signed root (created once, optionally kept on disk as PEM files in Istio's
 * "plugged-in CA" names `ca-cert.pem`, `ca-key.pem`, `root-cert.pem`; see ca-files.ts), signing
 * short-lived workload certificates carrying exactly one SPIFFE URI SAN, for server and client
 * auth, and the CA's side of a root roll: `beginRoll` adds a new root to the trust bundle (phase
 * `trust`), `promoteRoll` makes it the signer with the old one still trusted (phase `sign`),
 * `finishRoll` drops the old one. Each step is saved before it takes effect, and emits
 * `trust-bundle`; the control plane decides when to take the next one (control-plane/root-roll.ts).
 *
 * Leans towards speed and simplicity: RSA-2048 keys are generated with node:crypto's asynchronous
 * `generateKeyPair` (runs off the event loop; node-forge's pure-JS keygen would block it), and
 * node-forge is used only to build and sign X.509 structures (it cannot build EC certificates, so
 * workload keys are RSA); the signature itself is made natively (see signNative). Measured on the
 * 2-core dev box: RSA keygen ~100–300 ms off-thread (load dependent); building + signing ~2 ms
 * (forge's own pure-JS RSA sign took ~25 ms, blocking the event loop).
 * `notBefore` is backdated (default 5 min) to tolerate clock skew between peers.
 */
import {
  createPrivateKey,
  generateKeyPair,
  type KeyObject,
  randomBytes,
  sign,
  X509Certificate,
} from 'node:crypto';
import { EventEmitter } from 'node:events';
import forge from 'node-forge';
import { MeshletError } from '../common/errors';
import { bundleOf, type CaDirState, type CaKeyPair, loadCaDir, samePem, saveCaDir } from './ca-files';
import { parseCsr } from './csr';
import { formatSpiffeId, parseSpiffeId, uriSansOf } from './identity';

/** Options for {@link DevCa.create}. */
export interface DevCaOptions {
  /** SPIFFE trust domain the CA issues identities in (Istio default `cluster.local`). */
  readonly trustDomain: string;
  /** Directory to load the root from, or to create it in when absent. undefined = in memory only. */
  readonly dir?: string;
  /** Root certificate lifetime, ms. Default 10 years. */
  readonly rootLifetimeMs?: number;
  /** Default workload certificate lifetime, ms. Default 1 h. */
  readonly workloadLifetimeMs?: number;
  /** How far `notBefore` is backdated for clock skew, ms. Default 5 min. */
  readonly clockSkewMs?: number;
  /** Clock, for tests. */
  readonly now?: () => number;
}

/** A certificate the CA issued. PEM strings; `privateKeyPem` is absent for CSR-signed ones. */
export interface IssuedCertificate {
  /** Leaf followed by the issuing chain (for the dev CA: leaf + root). */
  readonly certChainPem: string;
  readonly privateKeyPem?: string;
  /** The trust bundle peers verify against (the root, PEM). */
  readonly rootCertPem: string;
  readonly spiffeId: string;
  /** Hex serial number, upper-case as node:crypto reports it. */
  readonly serial: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
}

/** Per-issuance options. */
export interface IssueOptions {
  readonly ns: string;
  readonly sa: string;
  /** Overrides the CA's default workload lifetime, ms. */
  readonly lifetimeMs?: number;
  /** Issue as if the current time were this (epoch ms); tests use it to make expired certs. */
  readonly at?: number;
  /** Extra DNS SANs (Istio does not add any by default). */
  readonly dnsNames?: readonly string[];
  /** A key pair generated ahead of time (see generateRsaKeyPair); default: a fresh one now. */
  readonly keyPair?: { readonly privateKeyPem: string; readonly publicKeyPem: string };
}

const DEFAULT_ROOT_LIFETIME_MS = 10 * 365 * 24 * 3600_000;
const DEFAULT_WORKLOAD_LIFETIME_MS = 3600_000;
const DEFAULT_SKEW_MS = 5 * 60_000;

/** Generate an RSA-2048 key pair off the event loop; PKCS#8 private key and SPKI public key in PEM. */
export function generateRsaKeyPair(): Promise<{ privateKeyPem: string; publicKeyPem: string }> {
  return new Promise((resolve, reject) => {
    generateKeyPair(
      'rsa',
      {
        modulusLength: 2048,
        publicKeyEncoding: { type: 'spki', format: 'pem' },
        privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
      },
      (err, publicKeyPem, privateKeyPem) => (err ? reject(err) : resolve({ privateKeyPem, publicKeyPem })),
    );
  });
}

function randomSerialHex(): string {
  const b = randomBytes(16);
  b[0] = (b[0]! & 0x7f) | 0x40; // positive, no leading zero byte
  return b.toString('hex');
}

/** Where a root roll stands: none, new root trusted (`trust`), new root signing (`sign`). */
export type RollPhase = 'none' | 'trust' | 'sign';

interface Signer {
  readonly key: KeyObject;
  readonly cert: forge.pki.Certificate;
  readonly pem: string;
}

function signerOf(p: CaKeyPair): Signer {
  const pem = p.certPem.endsWith('\n') ? p.certPem : `${p.certPem}\n`;
  return { key: createPrivateKey(p.keyPem), cert: forge.pki.certificateFromPem(pem), pem };
}

/** Emits `trust-bundle` when the set of trusted roots changes, `signer` when the signing root does. */
export class DevCa extends EventEmitter {
  private state: CaDirState;
  private signer: Signer;
  readonly trustDomain: string;
  private readonly workloadLifetimeMs: number;
  private readonly clockSkewMs: number;
  private readonly now: () => number;
  private readonly dir?: string;
  private readonly opts: DevCaOptions;
  private stepping: Promise<unknown> = Promise.resolve();

  private constructor(opts: DevCaOptions, state: CaDirState) {
    super();
    this.opts = opts;
    this.trustDomain = opts.trustDomain;
    this.dir = opts.dir;
    this.workloadLifetimeMs = opts.workloadLifetimeMs ?? DEFAULT_WORKLOAD_LIFETIME_MS;
    this.clockSkewMs = opts.clockSkewMs ?? DEFAULT_SKEW_MS;
    this.now = opts.now ?? (() => Date.now());
    this.state = state;
    this.signer = signerOf(state.signer);
  }

  /** Load the root (and any roll in progress) from `opts.dir` if it holds one, otherwise create it (and save it there). */
  static async create(opts: DevCaOptions): Promise<DevCa> {
    parseTrustDomainOrThrow(opts.trustDomain);
    if (opts.dir) {
      const loaded = await loadCaDir(opts.dir);
      if (loaded) return new DevCa(opts, loaded);
    }
    const state = { signer: await createRoot(opts) };
    if (opts.dir) await saveCaDir(opts.dir, state);
    return new DevCa(opts, state);
  }

  /** The signing root (PEM). */
  get rootCertPem(): string {
    return this.signer.pem;
  }

  /** The roots workloads must trust: the signing root first, plus the other one while rolling. */
  get trustBundlePem(): string {
    return bundleOf(this.state);
  }

  get rollPhase(): RollPhase {
    return this.state.next ? 'trust' : this.state.previousPem !== undefined ? 'sign' : 'none';
  }

  /** Phase none → trust: create a new root and add it to the trust bundle (it does not sign yet). */
  beginRoll(): Promise<void> {
    return this.step(async () => {
      if (this.rollPhase !== 'none') throw new MeshletError('MESHLET_ERR_CONFIG', `a root roll is already in progress (phase ${this.rollPhase})`);
      // A distinct name as well as a distinct key, so the two roots are told apart in logs and tools.
      const next = await createRoot(this.opts, ` ${new Date(this.now()).toISOString().slice(0, 16)}Z`);
      await this.apply({ signer: this.state.signer, next });
    });
  }

  /** Phase trust → sign: the new root signs from now on; the old one stays in the bundle. */
  promoteRoll(): Promise<void> {
    return this.step(async () => {
      const next = this.state.next;
      if (!next) throw new MeshletError('MESHLET_ERR_CONFIG', `no new root to promote (phase ${this.rollPhase})`);
      await this.apply({ signer: next, previousPem: this.state.signer.certPem });
    });
  }

  /** Phase sign → none: drop the old root from the trust bundle. */
  finishRoll(): Promise<void> {
    return this.step(async () => {
      if (this.rollPhase !== 'sign') throw new MeshletError('MESHLET_ERR_CONFIG', `no old root to drop (phase ${this.rollPhase})`);
      await this.apply({ signer: this.state.signer });
    });
  }

  /**
   * Re-read the CA directory (a roll begun by another process, `meshlet control-plane --roll-root`).
   * Returns whether anything changed.
   */
  reload(): Promise<boolean> {
    return this.step(async () => {
      if (!this.dir) return false;
      const s = await loadCaDir(this.dir);
      if (!s || bundleOf(s) === bundleOf(this.state)) return false;
      this.adopt(s);
      return true;
    });
  }

  private step<T>(f: () => Promise<T>): Promise<T> {
    const p = this.stepping.then(f);
    this.stepping = p.catch(() => undefined);
    return p;
  }

  private async apply(s: CaDirState): Promise<void> {
    if (this.dir) await saveCaDir(this.dir, s);
    this.adopt(s);
  }

  private adopt(s: CaDirState): void {
    const signerChanged = !samePem(s.signer.certPem, this.state.signer.certPem);
    this.state = s;
    if (signerChanged) this.signer = signerOf(s.signer);
    this.emit('trust-bundle', this.trustBundlePem);
    if (signerChanged) this.emit('signer', this.rootCertPem);
  }

  /** Generate a key pair and sign a workload certificate for `spiffe://<td>/ns/<ns>/sa/<sa>`. */
  async issueWorkload(opts: IssueOptions): Promise<IssuedCertificate> {
    const spiffeId = formatSpiffeId(this.trustDomain, opts.ns, opts.sa);
    const { privateKeyPem, publicKeyPem } = opts.keyPair ?? (await generateRsaKeyPair());
    const pub = forge.pki.publicKeyFromPem(publicKeyPem);
    const issued = this.signLeaf(pub, spiffeId, opts.lifetimeMs, opts.at, opts.dnsNames ?? []);
    return { ...issued, privateKeyPem };
  }

  /**
   * Sign a PKCS#10 CSR. The CSR must carry exactly one URI SAN, a SPIFFE ID in this trust domain
   * that `isAllowed` accepts (the caller's authenticated identity decides what it may request).
   * Throws MeshletError(MESHLET_ERR_DENIED) when the requested identity is not allowed.
   */
  signCsr(csrPem: string, isAllowed: (spiffeId: string) => boolean, lifetimeMs?: number): IssuedCertificate & { keyDescription: string } {
    const csr = parseCsr(csrPem);
    const uris = csr.uriSans;
    if (uris.length !== 1) {
      throw new MeshletError('MESHLET_ERR_DENIED', `CSR must request exactly one URI SAN, got ${uris.length}`);
    }
    const requested = uris[0]!;
    const parsed = parseSpiffeId(requested);
    if ('error' in parsed) throw new MeshletError('MESHLET_ERR_DENIED', parsed.error);
    if (parsed.trustDomain !== this.trustDomain) {
      throw new MeshletError(
        'MESHLET_ERR_DENIED',
        `CSR requests trust domain "${parsed.trustDomain}", this CA issues "${this.trustDomain}"`,
      );
    }
    if (!isAllowed(requested)) {
      throw new MeshletError('MESHLET_ERR_DENIED', `caller is not allowed to request identity ${requested}`);
    }
    const key = { spkiDer: csr.spkiDer, ec: csr.keyType === 'ec' };
    return { ...this.signLeaf(key, requested, lifetimeMs, undefined, []), keyDescription: csr.keyDescription };
  }

  private signLeaf(
    pub: forge.pki.PublicKey | { readonly spkiDer: Buffer; readonly ec: boolean },
    spiffeId: string,
    lifetimeMs: number | undefined,
    at: number | undefined,
    dnsNames: readonly string[],
  ): IssuedCertificate {
    const now = at ?? this.now();
    const notBefore = new Date(Math.floor((now - this.clockSkewMs) / 1000) * 1000);
    const notAfter = new Date(Math.floor((now + (lifetimeMs ?? this.workloadLifetimeMs)) / 1000) * 1000);
    const cert = forge.pki.createCertificate();
    // forge lays out RSA keys only: a CSR's key (RSA or EC) is spliced into the TBSCertificate below.
    const raw = 'spkiDer' in pub ? pub : undefined;
    cert.publicKey = raw ? this.signer.cert.publicKey : (pub as forge.pki.PublicKey);
    cert.serialNumber = randomSerialHex();
    cert.validity.notBefore = notBefore;
    cert.validity.notAfter = notAfter;
    // Istio leaves the subject empty; the identity is the (then critical) URI SAN.
    cert.setSubject([]);
    cert.setIssuer(this.signer.cert.subject.attributes);
    const altNames: { type: number; value: string }[] = [{ type: 6, value: spiffeId }];
    for (const d of dnsNames) altNames.push({ type: 2, value: d });
    cert.setExtensions([
      { name: 'basicConstraints', cA: false, critical: true },
      // keyEncipherment is for RSA key transport; an EC key only signs (RFC 5480 section 3).
      { name: 'keyUsage', critical: true, digitalSignature: true, keyEncipherment: !raw?.ec },
      { name: 'extKeyUsage', serverAuth: true, clientAuth: true },
      { name: 'authorityKeyIdentifier', keyIdentifier: this.signer.cert.generateSubjectKeyIdentifier().getBytes() },
      { name: 'subjectAltName', critical: true, altNames },
    ]);
    signNative(cert, this.signer.key, raw?.spkiDer);
    const leafPem = forge.pki.certificateToPem(cert).replace(/\r\n/g, '\n');
    const x = new X509Certificate(leafPem);
    return {
      certChainPem: leafPem + this.signer.pem,
      rootCertPem: this.signer.pem,
      spiffeId,
      serial: x.serialNumber,
      notBefore,
      notAfter,
    };
  }
}

/**
 * Sign a forge-built certificate with node:crypto (sha256WithRSAEncryption): forge lays out the
 * TBSCertificate, the native RSA signature is ~1 ms where forge's pure-JS one is ~25 ms on the loop.
 */
function signNative(cert: forge.pki.Certificate, key: KeyObject, spkiDer?: Buffer): void {
  const oid = forge.pki.oids.sha256WithRSAEncryption;
  const c = cert as forge.pki.Certificate & {
    signatureOid: string;
    siginfo: { algorithmOid: string };
    tbsCertificate: forge.asn1.Asn1;
    signature: string;
  };
  c.signatureOid = oid;
  c.siginfo.algorithmOid = oid;
  // getTBSCertificate is public in node-forge but missing from @types/node-forge.
  c.tbsCertificate = (
    forge.pki as unknown as { getTBSCertificate(c: forge.pki.Certificate): forge.asn1.Asn1 }
  ).getTBSCertificate(cert);
  // TBSCertificate: version, serial, signature, issuer, validity, subject, subjectPublicKeyInfo, …
  if (spkiDer) (c.tbsCertificate.value as forge.asn1.Asn1[])[6] = forge.asn1.fromDer(spkiDer.toString('binary'));
  const tbs = Buffer.from(forge.asn1.toDer(c.tbsCertificate).getBytes(), 'binary');
  c.signature = sign('sha256', tbs, key).toString('binary');
}

function parseTrustDomainOrThrow(td: string): void {
  const p = parseSpiffeId(`spiffe://${td}`);
  if ('error' in p) throw new MeshletError('MESHLET_ERR_CONFIG', `invalid trust domain: ${p.error}`);
}

async function createRoot(opts: DevCaOptions, nameSuffix = ''): Promise<CaKeyPair> {
  const { privateKeyPem, publicKeyPem } = await generateRsaKeyPair();
  const now = opts.now ? opts.now() : Date.now();
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.publicKeyFromPem(publicKeyPem);
  cert.serialNumber = randomSerialHex();
  cert.validity.notBefore = new Date(now - (opts.clockSkewMs ?? DEFAULT_SKEW_MS));
  cert.validity.notAfter = new Date(now + (opts.rootLifetimeMs ?? DEFAULT_ROOT_LIFETIME_MS));
  const attrs = [
    { name: 'organizationName', value: opts.trustDomain },
    { name: 'commonName', value: `meshlet development root CA${nameSuffix}` },
  ];
  cert.setSubject(attrs);
  cert.setIssuer(attrs);
  cert.setExtensions([
    { name: 'basicConstraints', cA: true, critical: true },
    { name: 'keyUsage', critical: true, keyCertSign: true, cRLSign: true, digitalSignature: true },
    { name: 'subjectKeyIdentifier' },
  ]);
  signNative(cert, createPrivateKey(privateKeyPem));
  return { keyPem: privateKeyPem, certPem: forge.pki.certificateToPem(cert).replace(/\r\n/g, '\n') };
}

/** Convenience for tests and the control plane: the SPIFFE URI SANs of a PEM certificate. */
export function spiffeIdsOf(certPem: string): string[] {
  return uriSansOf(new X509Certificate(certPem).subjectAltName);
}
