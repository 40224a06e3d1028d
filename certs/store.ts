/**
 * The certificate store: the workload identity (cert chain + key) and trust bundles, per secret
 * name (`default` and `ROOTCA`, as Istio names them), as the TLS layer consumes them.
 *
 * Owns validate-before-swap: `update(name, secret)` resolves the secret's DataSources, then checks
 * that the key matches the leaf, every certificate is inside its validity window, each link of the
 * chain is issued and signed by the next, and the chain ends at one of the trust bundle's roots.
 * On any failure it returns a readable error and keeps serving the current secret (a bad push never
 * takes identity away). Successful swaps emit `rotate`. Leans strict: an identity is only accepted
 * unverified when no trust bundle is known yet, and the result says so.
 */

import { createPrivateKey, type KeyObject, X509Certificate } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { readDataSourceAsync } from '../common/data-source';
import type { SecretConfig } from '../common/config-types';
import { splitSan } from './identity';

/** Istio's secret names. */
export const DEFAULT_IDENTITY_SECRET = 'default';
export const DEFAULT_TRUST_BUNDLE_SECRET = 'ROOTCA';

/** A validated workload identity. */
export interface IdentitySecret {
  readonly kind: 'identity';
  readonly name: string;
  readonly certChainPem: string;
  readonly privateKeyPem: string;
  readonly privateKey: KeyObject;
  /** Leaf first. */
  readonly chain: readonly X509Certificate[];
  /** Whether the chain was verified against a trust bundle (false only before one is known). */
  readonly verified: boolean;
}

/** A validated trust bundle. */
export interface TrustBundleSecret {
  readonly kind: 'trust_bundle';
  readonly name: string;
  readonly rootsPem: string;
  readonly roots: readonly X509Certificate[];
  /** The secret's own validation settings (SAN matchers etc.), as decoded. */
  readonly secret: SecretConfig;
}

export type StoredSecret = IdentitySecret | TrustBundleSecret;

/** Per-certificate details, for admin `/certs` and the expiry metric. */
export interface CertDetails {
  readonly secretName: string;
  readonly serialNumber: string;
  readonly subjectAltNames: readonly string[];
  readonly validFrom: string;
  readonly expirationTime: string;
  readonly daysUntilExpiration: number;
  readonly secondsUntilExpiration: number;
}

export type UpdateResult =
  | { readonly ok: true; readonly warning?: string }
  | { readonly ok: false; readonly error: string };

/** Emitted as `rotate` after a successful swap. */
export interface RotationEvent {
  readonly name: string;
  readonly kind: StoredSecret['kind'];
  readonly previousSerial?: string;
  readonly serial: string;
}

export interface CertStoreOptions {
  /** Which secret holds the roots identities are verified against. Default `ROOTCA`. */
  readonly trustBundleName?: string;
  /** Clock, for tests. */
  readonly now?: () => number;
}

const PEM_CERT_RE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** Split a PEM bundle into certificates; throws with a readable message on garbage. */
export function parseCertBundle(pem: string): X509Certificate[] {
  const blocks = pem.match(PEM_CERT_RE) ?? [];
  if (blocks.length === 0) throw new Error('no PEM certificate found');
  return blocks.map((b, i) => {
    try {
      return new X509Certificate(b);
    } catch (err) {
      throw new Error(`certificate #${i + 1} cannot be parsed: ${(err as Error).message}`);
    }
  });
}

/** Resolve an envoy.config.core.v3.DataSource to its text (the shared reader). */
export const resolveDataSource = readDataSourceAsync;

export class CertStore extends EventEmitter {
  private readonly secrets = new Map<string, StoredSecret>();
  private readonly trustBundleName: string;
  private readonly now: () => number;

  constructor(opts: CertStoreOptions = {}) {
    super();
    this.trustBundleName = opts.trustBundleName ?? DEFAULT_TRUST_BUNDLE_SECRET;
    this.now = opts.now ?? (() => Date.now());
  }

  get(name: string): StoredSecret | undefined {
    return this.secrets.get(name);
  }

  identity(name = DEFAULT_IDENTITY_SECRET): IdentitySecret | undefined {
    const s = this.secrets.get(name);
    return s?.kind === 'identity' ? s : undefined;
  }

  trustBundle(name = this.trustBundleName): TrustBundleSecret | undefined {
    const s = this.secrets.get(name);
    return s?.kind === 'trust_bundle' ? s : undefined;
  }

  names(): string[] {
    return [...this.secrets.keys()];
  }

  /**
   * Validate `secret` and, if valid, swap it in under `name`. Never throws for bad input; the
   * current secret stays in place on failure.
   */
  async update(name: string, secret: SecretConfig): Promise<UpdateResult> {
    let candidate: StoredSecret;
    let warning: string | undefined;
    try {
      if (secret.tlsCertificate) {
        const [chainPem, keyPem] = await Promise.all([
          resolveDataSource(secret.tlsCertificate.certificateChain),
          resolveDataSource(secret.tlsCertificate.privateKey),
        ]);
        const r = this.validateIdentity(name, chainPem, keyPem);
        candidate = r.secret;
        warning = r.warning;
      } else if (secret.validationContext?.trustedCa) {
        const rootsPem = await resolveDataSource(secret.validationContext.trustedCa);
        candidate = this.validateTrustBundle(name, rootsPem, secret);
      } else {
        return {
          ok: false,
          error: `secret "${name}": neither tls_certificate nor validation_context.trusted_ca is set`,
        };
      }
    } catch (err) {
      return { ok: false, error: `secret "${name}" rejected: ${(err as Error).message}` };
    }
    const previous = this.secrets.get(name);
    this.secrets.set(name, candidate);
    const ev: RotationEvent = {
      name,
      kind: candidate.kind,
      previousSerial: previous ? serialOf(previous) : undefined,
      serial: serialOf(candidate),
    };
    this.emit('rotate', ev);
    return warning ? { ok: true, warning } : { ok: true };
  }

  /** Remove a secret (e.g. the SDS resource was deleted). */
  delete(name: string): boolean {
    return this.secrets.delete(name);
  }

  private checkValidity(x: X509Certificate, what: string): void {
    const now = this.now();
    const from = Date.parse(x.validFrom);
    const to = Date.parse(x.validTo);
    if (now < from) throw new Error(`${what} (serial ${x.serialNumber}) is not yet valid (notBefore ${x.validFrom})`);
    if (now > to) throw new Error(`${what} (serial ${x.serialNumber}) has expired (notAfter ${x.validTo})`);
  }

  private validateIdentity(
    name: string,
    chainPem: string,
    keyPem: string,
  ): { secret: IdentitySecret; warning?: string } {
    const chain = parseCertBundle(chainPem);
    let privateKey: KeyObject;
    try {
      privateKey = createPrivateKey(keyPem);
    } catch (err) {
      throw new Error(`private key cannot be parsed: ${(err as Error).message}`);
    }
    const leaf = chain[0]!;
    if (!leaf.checkPrivateKey(privateKey)) {
      throw new Error(`private key does not match the certificate (serial ${leaf.serialNumber})`);
    }
    for (const [i, c] of chain.entries())
      this.checkValidity(c, i === 0 ? 'certificate' : `chain certificate #${i + 1}`);
    for (let i = 0; i + 1 < chain.length; i++) {
      const child = chain[i]!;
      const parent = chain[i + 1]!;
      if (!child.checkIssued(parent) || !child.verify(parent.publicKey)) {
        throw new Error(`chain is broken: certificate #${i + 1} is not signed by certificate #${i + 2}`);
      }
    }
    const bundle = this.trustBundle();
    let verified = false;
    let warning: string | undefined;
    if (bundle) {
      if (!chainEndsAtRoot(chain, bundle.roots)) {
        throw new Error(
          `certificate (serial ${leaf.serialNumber}) does not verify against the trust bundle "${bundle.name}" (issued by another CA?)`,
        );
      }
      verified = true;
    } else {
      warning = `no trust bundle "${this.trustBundleName}" yet; identity "${name}" accepted without root verification`;
    }
    return {
      secret: { kind: 'identity', name, certChainPem: chainPem, privateKeyPem: keyPem, privateKey, chain, verified },
      warning,
    };
  }

  private validateTrustBundle(name: string, rootsPem: string, secret: SecretConfig): TrustBundleSecret {
    const roots = parseCertBundle(rootsPem);
    roots.forEach((r, i) => {
      this.checkValidity(r, `root #${i + 1}`);
      if (!r.ca) throw new Error(`root #${i + 1} (serial ${r.serialNumber}) is not a CA certificate`);
    });
    return { kind: 'trust_bundle', name, rootsPem, roots, secret };
  }

  /** Details of every certificate held, leaf/roots alike. */
  details(): CertDetails[] {
    const out: CertDetails[] = [];
    const now = this.now();
    for (const s of this.secrets.values()) {
      const certs = s.kind === 'identity' ? [s.chain[0]!] : s.roots;
      for (const x of certs) out.push(certDetails(s.name, x, now));
    }
    return out;
  }

  /** Seconds until the earliest expiry among identity leaves (for a gauge); undefined if none. */
  secondsUntilFirstExpiry(): number | undefined {
    let min: number | undefined;
    const now = this.now();
    for (const s of this.secrets.values()) {
      if (s.kind !== 'identity') continue;
      const secs = (Date.parse(s.chain[0]!.validTo) - now) / 1000;
      if (min === undefined || secs < min) min = secs;
    }
    return min;
  }

  /** Envoy's admin `/certs` JSON shape: one entry per identity, with the CA certs of the bundle. */
  adminCerts(): { certificates: { ca_cert: Record<string, unknown>[]; cert_chain: Record<string, unknown>[] }[] } {
    const now = this.now();
    const bundle = this.trustBundle();
    const ca = (bundle?.roots ?? []).map((x) => envoyCertJson(bundle!.name, x, now));
    const certificates = [];
    for (const s of this.secrets.values()) {
      if (s.kind === 'identity')
        certificates.push({ ca_cert: ca, cert_chain: [envoyCertJson(s.name, s.chain[0]!, now)] });
    }
    if (certificates.length === 0 && ca.length > 0) certificates.push({ ca_cert: ca, cert_chain: [] });
    return { certificates };
  }
}

function serialOf(s: StoredSecret): string {
  return s.kind === 'identity' ? s.chain[0]!.serialNumber : s.roots.map((r) => r.serialNumber).join(',');
}

function chainEndsAtRoot(chain: readonly X509Certificate[], roots: readonly X509Certificate[]): boolean {
  const last = chain[chain.length - 1]!;
  for (const r of roots) {
    if (r.fingerprint256 === last.fingerprint256) return true;
    if (last.checkIssued(r) && last.verify(r.publicKey)) return true;
  }
  return false;
}

function certDetails(secretName: string, x: X509Certificate, now: number): CertDetails {
  const to = Date.parse(x.validTo);
  const secs = Math.floor((to - now) / 1000);
  return {
    secretName,
    serialNumber: x.serialNumber,
    subjectAltNames: x.subjectAltName ? splitSan(x.subjectAltName) : [],
    validFrom: new Date(Date.parse(x.validFrom)).toISOString(),
    expirationTime: new Date(to).toISOString(),
    daysUntilExpiration: Math.floor(secs / 86400),
    secondsUntilExpiration: secs,
  };
}

function envoyCertJson(path: string, x: X509Certificate, now: number): Record<string, unknown> {
  const d = certDetails(path, x, now);
  return {
    path: `secret:${path}`,
    serial_number: d.serialNumber.toLowerCase(),
    subject_alt_names: d.subjectAltNames.map((s) => {
      const i = s.indexOf(':');
      const type = s.slice(0, i);
      const key =
        type === 'URI' ? 'uri' : type === 'DNS' ? 'dns' : type === 'IP Address' ? 'ip_address' : type.toLowerCase();
      return { [key]: s.slice(i + 1) };
    }),
    days_until_expiration: String(d.daysUntilExpiration),
    valid_from: d.validFrom,
    expiration_time: d.expirationTime,
  };
}
