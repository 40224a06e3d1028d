/**
 * CSR certificate provider: keys that never leave the pod (issue 4 item 6), as Istio's agent does
 * it (security/pkg/nodeagent: generate the key locally, send only a PKCS#10 CSR to the CA, rotate
 * at SECRET_GRACE_PERIOD_RATIO 0.5 of the lifetime).
 *
 * Owns the identity secret it is configured for (`default`): it generates an RSA-2048 key with
 * node:crypto, builds a CSR for its SPIFFE ID with node-forge, has the CA sign it over Istio's
 * `istio.v1.auth.IstioCertificateService/CreateCertificate` (TLS; see control-plane/csr-service.ts),
 * installs key + chain in the CertStore (which validates against the trust bundle before the swap),
 * and re-issues when half the lifetime has passed (with a new key each time). A failed renewal is
 * retried with backoff while the current certificate keeps being served.
 *
 * Authentication, as istio-agent does it: every call carries the pod's service-account token
 * (`token_file`, re-read on every call because the kubelet rotates it) as
 * `authorization: Bearer <token>` metadata; that is how the FIRST certificate is obtained. Once the
 * provider holds a certificate, calls also present it as the TLS client certificate. The CA's
 * serving certificate is verified against the trust bundle secret (`ROOTCA`).
 *
 * The trust bundle: the roots pushed over SDS as `ROOTCA` are installed, and with `root_cert_file`
 * (Istio mounts the mesh root at /var/run/secrets/istio/root-cert.pem) the file's roots are
 * trusted too, as extra anchors next to the pushed ones (re-read at every renewal and push); with
 * `keep_root_cert_file: false` the file only serves until the first `ROOTCA` arrives. So a root
 * roll the control plane publishes reaches the sidecar. When the bundle changes and the current
 * certificate was not issued by its first root (the control plane lists the root that signs
 * first), the provider renews after a random wait of at most `root_roll_jitter` (renewal-jitter.ts):
 * that is how a root roll gets every workload a new leaf without every CSR arriving at once.
 * Without a token the provider falls back to a provisioning certificate pushed over SDS (only a
 * control plane in insecure key hand-out mode sends one).
 *
 * Selected in the bootstrap through `node.metadata` — Envoy passes node metadata through without
 * interpreting it (Istio puts its agent settings there too), so an Envoy user recognises it as a
 * non-Envoy extension and the bootstrap decoder has nothing to warn about:
 *
 *   node:
 *     id: front-v1
 *     metadata:
 *       MESHLET_CERT_PROVIDER:
 *         kind: istio_csr               # the only kind
 *         ca_address: 127.0.0.1:15012   # Istio's CA_ADDR: where CreateCertificate is served (TLS)
 *         ca_server_name: istiod.istio-system.svc   # name the CA's certificate is checked against (default)
 *         token_file: /var/run/secrets/tokens/istio-token   # the projected service-account token
 *         root_cert_file: /var/run/secrets/istio/root-cert.pem   # roots trusted before and besides ROOTCA
 *         keep_root_cert_file: true     # false: the file's roots only until ROOTCA arrives
 *         trust_domain: cluster.local   # with a token: the SPIFFE ID is spiffe://<td>/ns/<ns>/sa/<sa> from its sub
 *         secret_name: default          # the identity secret this provider owns (default)
 *         trust_bundle: ROOTCA          # roots the CA's certificate is verified against (default)
 *         spiffe_id: spiffe://cluster.local/ns/default/sa/front   # default: from the token or provisioning cert
 *         validity: 3600s               # requested lifetime (0s/absent = the CA's; the CA may shorten it)
 *         grace_period_ratio: 0.5       # re-issue after this fraction of the lifetime (Istio's default)
 *         root_roll_jitter: 10s         # root roll renewal waits up to this (and 10% of the leaf's life); 0s: at once
 *
 * The key that terminates and originates mesh traffic is generated here and never sent anywhere.
 *
 * Leans safe: a certificate from the CA goes through the same store validation as an SDS push; a
 * renewal that fails leaves the current identity in place; the lifetime used for scheduling is
 * measured from when the certificate arrived (the dev CA backdates notBefore for clock skew).
 */
import { generateKeyPair, X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type * as grpc from '@grpc/grpc-js';
import type forgeNs from 'node-forge';
import type { Logger } from 'pino';
import { csrServiceDefinition, type CsrRequest, type CsrResponse } from './csr-wire';
import { Issues, Reader } from '../common/reader';
import type { SecretConfig } from '../common/config-types';
import { ConfigError } from '../common/errors';
import { DEFAULT_ROOT_ROLL_JITTER_MS, renewalRatio, rootRollRenewalDelayMs } from './renewal-jitter';
import { formatSpiffeId, isValidTrustDomain, parseSpiffeId, uriSansOf } from './identity';
import { type CertStore, DEFAULT_IDENTITY_SECRET, type RotationEvent, DEFAULT_TRUST_BUNDLE_SECRET, resolveDataSource } from './store';

/** The node.metadata key that selects this provider. */
export const CERT_PROVIDER_METADATA_KEY = 'MESHLET_CERT_PROVIDER';

/** Validated provider settings (see the module header for the YAML). */
export interface CsrProviderConfig {
  /** `host:port` of the CreateCertificate service. */
  readonly caAddress: string;
  /** Name the CA's serving certificate must carry (TLS server name check). Default `istiod.istio-system.svc`. */
  readonly caServerName: string;
  /** Identity secret owned by the provider. Default `default`. */
  readonly secretName: string;
  /** Trust bundle secret the CA's certificate is verified against. Default `ROOTCA`. */
  readonly trustBundle: string;
  /** SPIFFE ID to request; default from the token's subject, else the provisioning certificate's URI SAN. */
  readonly spiffeId?: string;
  /** Service-account token file sent as `authorization: Bearer …` (re-read per call). */
  readonly tokenFile?: string;
  /** PEM roots trusted before the trust bundle secret arrives, and (keepRootCertFile) besides it. */
  readonly rootCertFile?: string;
  /** Whether rootCertFile's roots stay trusted next to the pushed bundle (default true). */
  readonly keepRootCertFile?: boolean;
  /** Trust domain of the SPIFFE ID derived from the token. Default `cluster.local`. */
  readonly trustDomain?: string;
  /** Requested validity, ms; 0 = the CA's default. */
  readonly validityMs: number;
  /** Fraction of the lifetime after which the certificate is re-issued (0 < r < 1). Default 0.5. */
  readonly gracePeriodRatio: number;
  /**
   * Istio's SECRET_GRACE_PERIOD_RATIO_JITTER (default 0.01): each renewal moves the ratio by a
   * random amount in [-jitter, +jitter], so sidecars started together do not renew together.
   */
  readonly gracePeriodRatioJitter: number;
  /** Upper bound of the random wait before a root roll's early renewal, ms; 0 = at once. Default 10 s. */
  readonly rootRollJitterMs: number;
}

/**
 * Read the provider settings from `node.metadata`, if present. Throws ConfigError listing every
 * problem (control-plane-side validation: it runs before anything binds).
 */
export function csrProviderConfigFromMetadata(metadata: Readonly<Record<string, unknown>> | undefined): CsrProviderConfig | undefined {
  const raw = metadata?.[CERT_PROVIDER_METADATA_KEY];
  if (raw === undefined) return undefined;
  const issues = new Issues();
  const path = `node.metadata.${CERT_PROVIDER_METADATA_KEY}`;
  const r = Reader.of(raw, path, issues);
  let cfg: CsrProviderConfig | undefined;
  if (r) {
    const kind = r.requiredStr('kind');
    if (kind !== '' && kind !== 'istio_csr') r.error('kind', `unknown certificate provider "${kind}" (supported: istio_csr)`);
    const caAddress = r.requiredStr('ca_address');
    if (caAddress !== '' && !/^[^:\s]+:\d{1,5}$/.test(caAddress)) r.error('ca_address', `expected "host:port", got "${caAddress}"`);
    const spiffeId = r.str('spiffe_id');
    if (spiffeId !== undefined) {
      const p = parseSpiffeId(spiffeId);
      if ('error' in p) r.error('spiffe_id', p.error);
    }
    const tokenFile = r.str('token_file');
    const rootCertFile = r.str('root_cert_file');
    const trustDomain = r.str('trust_domain');
    if (trustDomain !== undefined && !isValidTrustDomain(trustDomain)) r.error('trust_domain', `"${trustDomain}" is not a valid SPIFFE trust domain`);
    const gracePeriodRatio = r.num('grace_period_ratio', 0.5, 0, 1);
    if (gracePeriodRatio <= 0 || gracePeriodRatio >= 1) r.error('grace_period_ratio', 'must be strictly between 0 and 1');
    const gracePeriodRatioJitter = r.num('grace_period_ratio_jitter', 0.01, 0, 1);
    const ratioOk = gracePeriodRatio > 0 && gracePeriodRatio < 1;
    if (ratioOk && (gracePeriodRatioJitter < 0 || gracePeriodRatioJitter >= Math.min(gracePeriodRatio, 1 - gracePeriodRatio))) {
      r.error('grace_period_ratio_jitter', 'must be at least 0 and smaller than grace_period_ratio and 1 - grace_period_ratio');
    }
    const rootRollJitterMs = r.durationMs('root_roll_jitter', DEFAULT_ROOT_ROLL_JITTER_MS);
    if (rootRollJitterMs < 0) r.error('root_roll_jitter', 'must not be negative');
    cfg = {
      caAddress,
      caServerName: r.str('ca_server_name', 'istiod.istio-system.svc'),
      secretName: r.str('secret_name', DEFAULT_IDENTITY_SECRET),
      trustBundle: r.str('trust_bundle', DEFAULT_TRUST_BUNDLE_SECRET),
      ...(spiffeId !== undefined ? { spiffeId } : {}),
      ...(tokenFile !== undefined ? { tokenFile } : {}),
      ...(rootCertFile !== undefined ? { rootCertFile } : {}),
      keepRootCertFile: r.bool('keep_root_cert_file', true),
      ...(trustDomain !== undefined ? { trustDomain } : {}),
      validityMs: r.durationMs('validity', 0),
      gracePeriodRatio,
      gracePeriodRatioJitter,
      rootRollJitterMs: Math.max(0, rootRollJitterMs),
    };
    r.done();
  }
  // This block is meshlet's own: an unknown key is a typo, not an Envoy field to skip.
  const problems = [...issues.errors, ...issues.warnings.map((w) => ({ path: w.path, message: 'unknown field' }))];
  if (problems.length > 0) throw new ConfigError('certificate provider', problems);
  return cfg;
}

export { renewalRatio } from './renewal-jitter';

/** A certificate and key this provider can authenticate to the CA with. */
interface Credential {
  readonly certChainPem: string;
  readonly privateKeyPem: string;
}

export interface CsrProviderStats {
  issued: number;
  failures: number;
  /** SDS pushes of the owned secret that were not served (used only as provisioning credential). */
  sdsIgnored: number;
}

export interface CsrProviderOptions {
  readonly log?: Logger;
  /** Clock, for tests. */
  readonly now?: () => number;
  /** Random source in [0, 1), for tests (renewal and root roll jitter). */
  readonly random?: () => number;
}

/** Generate an RSA-2048 key pair off the event loop (PKCS#1 private key, SPKI public key, PEM). */
function rsaKeyPair(): Promise<{ privateKeyPem: string; publicKeyPem: string }> {
  return new Promise((resolve, reject) => {
    generateKeyPair(
      'rsa',
      { modulusLength: 2048, publicKeyEncoding: { type: 'spki', format: 'pem' }, privateKeyEncoding: { type: 'pkcs1', format: 'pem' } },
      (err, publicKeyPem, privateKeyPem) => (err ? reject(err) : resolve({ privateKeyPem, publicKeyPem })),
    );
  });
}

/** A PEM PKCS#10 CSR for `spiffeId` (one URI SAN, as Istio's agent sends). */
export function buildCsr(spiffeId: string, key: { privateKeyPem: string; publicKeyPem: string }): string {
  // node-forge (and gRPC below) load only when a CSR provider actually signs: not at start-up.
  const forge = require('node-forge') as typeof forgeNs;
  const csr = forge.pki.createCertificationRequest();
  csr.publicKey = forge.pki.publicKeyFromPem(key.publicKeyPem);
  csr.setSubject([]);
  csr.setAttributes([
    { name: 'extensionRequest', extensions: [{ name: 'subjectAltName', altNames: [{ type: 6, value: spiffeId }] }] },
  ]);
  csr.sign(forge.pki.privateKeyFromPem(key.privateKeyPem) as forgeNs.pki.rsa.PrivateKey, forge.md.sha256.create());
  return forge.pki.certificationRequestToPem(csr);
}

/**
 * The SPIFFE ID a Kubernetes service-account token stands for (its unverified `sub`,
 * `system:serviceaccount:<ns>:<sa>`): the CA verifies the token and signs only that identity.
 */
export function spiffeIdFromToken(token: string, trustDomain: string): string | undefined {
  const payload = token.split('.')[1];
  if (!payload) return undefined;
  try {
    const sub = (JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as { sub?: unknown }).sub;
    const m = typeof sub === 'string' ? /^system:serviceaccount:([^:]+):([^:]+)$/.exec(sub) : null;
    return m ? formatSpiffeId(trustDomain, m[1]!, m[2]!) : undefined;
  } catch {
    return undefined;
  }
}

type CreateCertificateFn = (
  req: CsrRequest,
  md: grpc.Metadata,
  opts: grpc.CallOptions,
  cb: (err: grpc.ServiceError | null, res?: CsrResponse) => void,
) => void;

export class CsrCertificateProvider {
  readonly stats: CsrProviderStats = { issued: 0, failures: 0, sdsIgnored: 0 };
  private provisioning: Credential | undefined;
  private own: (Credential & { notAfter: number }) | undefined;
  private inFlight: Promise<boolean> | undefined;
  /** The trust bundle changed while a request was in flight: check the result against it. */
  private recheck = false;
  /** The roots last pushed as the trust bundle, and those of root_cert_file. */
  private pushedRoots: string | undefined;
  private fileRoots: string | undefined;
  private timer: NodeJS.Timeout | undefined;
  /** The root roll renewal waiting out its jitter (the regular renewal timer stays armed). */
  private rollTimer: NodeJS.Timeout | undefined;
  private failuresInARow = 0;
  private closed = false;
  private readonly now: () => number;

  constructor(
    private readonly store: CertStore,
    readonly config: CsrProviderConfig,
    private readonly opts: CsrProviderOptions = {},
  ) {
    this.now = opts.now ?? (() => Date.now());
    store.on('rotate', this.onStoreRotate);
  }

  /**
   * The trust bundle changed: it unblocks the first request (waiting for roots), and a certificate
   * not issued by the bundle's first root is renewed at once (a root roll, see the header).
   */
  private readonly onStoreRotate = (e: RotationEvent): void => {
    if (e.name !== this.config.trustBundle || this.closed) return;
    if (!this.own) {
      if (this.provisioning || this.config.tokenFile) void this.refresh();
      return;
    }
    if (this.inFlight) {
      this.recheck = true;
      return;
    }
    this.renewForRoll();
  };

  /** Not issued by the bundle's first root: renew after the jittered wait (a running wait is kept). */
  private renewForRoll(): void {
    if (this.rollTimer || this.closed || !this.own || this.issuedByFirstRoot()) return;
    const delay = rootRollRenewalDelayMs(this.config.rootRollJitterMs, this.own.notAfter, this.now(), (this.opts.random ?? Math.random)());
    this.opts.log?.info({ serial: this.currentSerial, renewInMs: delay }, 'trust bundle changed and the certificate is not issued by its first root: renewing');
    if (delay === 0) {
      void this.refresh();
      return;
    }
    this.rollTimer = setTimeout(() => {
      this.rollTimer = undefined;
      if (!this.closed && this.own && !this.issuedByFirstRoot()) void this.refresh();
    }, delay);
    this.rollTimer.unref();
  }

  /** Whether the current certificate was issued by the first root of the trust bundle. */
  private issuedByFirstRoot(): boolean {
    const first = this.store.trustBundle(this.config.trustBundle)?.roots[0];
    if (!first || !this.own) return true;
    const leaf = new X509Certificate(this.own.certChainPem);
    try {
      return leaf.checkIssued(first) && leaf.verify(first.publicKey);
    } catch {
      return false;
    }
  }

  /** Whether this provider owns secret `name` (SDS pushes of it are not served). */
  owns(name: string): boolean {
    // With a local root file the trust bundle is installed here: the pushed roots plus the file's.
    return name === this.config.secretName || (this.config.rootCertFile !== undefined && name === this.config.trustBundle);
  }

  /**
   * Install the trust bundle: the pushed roots (`ROOTCA`) first, then the root file's that are not
   * among them (all of them before a push; none after one with keepRootCertFile false). Returns
   * the roots installed.
   */
  private async installRoots(): Promise<string | undefined> {
    const blocks: string[] = [];
    const add = (pem: string | undefined) => {
      for (const b of pem?.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []) if (!blocks.includes(b)) blocks.push(b);
    };
    add(this.pushedRoots);
    if (this.pushedRoots === undefined || this.config.keepRootCertFile !== false) add(this.fileRoots);
    if (blocks.length === 0) return undefined;
    const rootsPem = blocks.map((b) => `${b}\n`).join('');
    if (this.store.trustBundle(this.config.trustBundle)?.rootsPem !== rootsPem) {
      const r = await this.store.update(this.config.trustBundle, {
        name: this.config.trustBundle,
        validationContext: { trustedCa: { kind: 'inline_string', value: rootsPem }, matchTypedSubjectAltNames: [], onlyVerifyLeafCertCrl: false },
      });
      if (!r.ok) throw new Error(`trust bundle not usable: ${r.error}`);
    }
    return rootsPem;
  }

  /** The trust bundle pushed over SDS (only routed here with root_cert_file): merged with the file's roots. */
  private async offerTrustBundle(secret: SecretConfig): Promise<void> {
    const ca = secret.validationContext?.trustedCa;
    if (!ca) return;
    try {
      const previous = this.pushedRoots;
      this.pushedRoots = await resolveDataSource(ca);
      // The file may have changed with the bundle (the CA directory's root-cert.pem does).
      if (this.config.rootCertFile) this.fileRoots = await readFile(this.config.rootCertFile, 'utf8').catch(() => this.fileRoots);
      if (this.pushedRoots !== previous) this.opts.log?.info({ secret: secret.name }, 'trust bundle pushed over SDS installed (with the roots of root_cert_file)');
      await this.installRoots();
    } catch (err) {
      this.opts.log?.warn({ secret: secret.name, err: (err as Error).message }, 'pushed trust bundle not applied; keeping the current one');
    }
  }

  /** Serial of the certificate this provider installed last, if any. */
  get currentSerial(): string | undefined {
    return this.own ? new X509Certificate(this.own.certChainPem).serialNumber : undefined;
  }

  /**
   * The owned secret arrived over SDS: never served; kept as the provisioning credential, and the
   * first certificate is requested with it if there is none yet. Resolves once an own certificate
   * is installed (or the attempt failed; a retry is scheduled).
   */
  async offerSdsSecret(secret: SecretConfig): Promise<void> {
    if (secret.name === this.config.trustBundle && this.config.rootCertFile !== undefined) return this.offerTrustBundle(secret);
    this.stats.sdsIgnored++;
    const tc = secret.tlsCertificate;
    if (!tc) return;
    try {
      const [certChainPem, privateKeyPem] = await Promise.all([resolveDataSource(tc.certificateChain), resolveDataSource(tc.privateKey)]);
      this.provisioning = { certChainPem, privateKeyPem };
    } catch (err) {
      this.opts.log?.warn({ err: (err as Error).message }, 'provisioning credential from SDS cannot be read');
      return;
    }
    if (this.own && this.own.notAfter > this.now()) return;
    await this.refresh();
  }

  /**
   * With a token the first certificate needs nothing from the control plane but the CA itself:
   * request it now. Without one, the provider waits for a provisioning credential over SDS.
   */
  start(): void {
    if (this.config.tokenFile && !this.own) void this.refresh();
  }

  /** Request a new certificate now (coalesced with one in flight). True when one was installed. */
  refresh(): Promise<boolean> {
    this.inFlight ??= this.issue().finally(() => {
      this.inFlight = undefined;
      if (this.recheck) {
        this.recheck = false;
        this.renewForRoll();
      }
    });
    return this.inFlight;
  }

  close(): void {
    this.closed = true;
    this.store.off('rotate', this.onStoreRotate);
    if (this.timer) clearTimeout(this.timer);
    if (this.rollTimer) clearTimeout(this.rollTimer);
    this.timer = this.rollTimer = undefined;
  }

  private credential(): Credential | undefined {
    if (this.own && this.own.notAfter > this.now()) return this.own;
    return this.provisioning;
  }

  private async issue(): Promise<boolean> {
    if (this.closed) return false;
    const cred = this.credential();
    let token: string | undefined;
    let rootsPem = this.store.trustBundle(this.config.trustBundle)?.rootsPem;
    try {
      if (this.config.tokenFile) token = (await readFile(this.config.tokenFile, 'utf8')).trim();
      if (this.config.rootCertFile) {
        this.fileRoots = await readFile(this.config.rootCertFile, 'utf8');
        rootsPem = await this.installRoots();
      }
    } catch (err) {
      this.fail(`cannot use ${token === undefined && this.config.tokenFile ? 'token_file' : 'root_cert_file'}: ${(err as Error).message}`);
      return false;
    }
    if ((!cred && !token) || !rootsPem) {
      this.opts.log?.info({ haveCredential: !!cred, haveRoots: !!rootsPem }, 'CSR provider waiting for a credential (token or provisioning certificate) and the CA roots');
      return false;
    }
    const spiffeId =
      this.config.spiffeId ??
      (cred ? uriSansOf(new X509Certificate(cred.certChainPem).subjectAltName)[0] : undefined) ??
      (token ? spiffeIdFromToken(token, this.config.trustDomain ?? 'cluster.local') : undefined);
    if (!spiffeId) {
      this.fail('no SPIFFE ID to request: set spiffe_id, or provide a service-account token or a provisioning certificate');
      return false;
    }
    try {
      const key = await rsaKeyPair();
      const csr = buildCsr(spiffeId, key);
      const receivedAt = this.now();
      const chain = await this.call(cred, token, rootsPem, { csr, validity_duration: Math.round(this.config.validityMs / 1000) });
      if (this.closed) return false;
      const certChainPem = chain.map((c) => (c.endsWith('\n') ? c : `${c}\n`)).join('');
      const r = await this.store.update(this.config.secretName, {
        name: this.config.secretName,
        tlsCertificate: {
          certificateChain: { kind: 'inline_string', value: certChainPem },
          privateKey: { kind: 'inline_string', value: key.privateKeyPem },
        },
      });
      if (!r.ok) throw new Error(`CA returned a certificate the store refused: ${r.error}`);
      const leaf = new X509Certificate(certChainPem);
      const notAfter = Date.parse(leaf.validTo);
      this.own = { certChainPem, privateKeyPem: key.privateKeyPem, notAfter };
      this.stats.issued++;
      const start = Math.max(Date.parse(leaf.validFrom), receivedAt);
      const delay = Math.max(0, (notAfter - start) * renewalRatio(this.config, (this.opts.random ?? Math.random)()) - (this.now() - start));
      this.schedule(delay, 0);
      this.opts.log?.info({ serial: leaf.serialNumber, spiffeId, notAfter: new Date(notAfter).toISOString(), renewInMs: Math.round(delay) }, 'workload certificate issued for a locally generated key');
      return true;
    } catch (err) {
      this.fail((err as Error).message);
      return false;
    }
  }

  private fail(message: string): void {
    this.stats.failures++;
    this.failuresInARow++;
    this.opts.log?.warn({ err: message, attempt: this.failuresInARow }, 'CSR signing failed; keeping the current certificate');
    // Back off 1 s, 2 s, 4 s … up to 30 s, but never past what is left of the current certificate.
    const left = this.own ? this.own.notAfter - this.now() : Infinity;
    this.schedule(Math.min(1000 * 2 ** (this.failuresInARow - 1), 30_000, Math.max(1000, left / 2)), this.failuresInARow);
  }

  private schedule(delayMs: number, failures: number): void {
    if (this.closed) return;
    if (failures === 0) this.failuresInARow = 0;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.refresh();
    }, Math.min(delayMs, 2 ** 31 - 1));
    this.timer.unref();
  }

  private call(cred: Credential | undefined, token: string | undefined, rootsPem: string, req: CsrRequest): Promise<string[]> {
    const grpc = require('@grpc/grpc-js') as typeof import('@grpc/grpc-js');
    const Client = grpc.makeGenericClientConstructor(csrServiceDefinition(), 'IstioCertificateService');
    const creds = cred
      ? grpc.credentials.createSsl(Buffer.from(rootsPem), Buffer.from(cred.privateKeyPem), Buffer.from(cred.certChainPem))
      : grpc.credentials.createSsl(Buffer.from(rootsPem));
    const client = new Client(this.config.caAddress, creds, { 'grpc.ssl_target_name_override': this.config.caServerName });
    const md = new grpc.Metadata();
    if (token) md.set('authorization', `Bearer ${token}`);
    return new Promise<string[]>((resolve, reject) => {
      const deadline = new Date(this.now() + 10_000);
      const createCertificate = (client as unknown as { CreateCertificate: CreateCertificateFn }).CreateCertificate.bind(client);
      createCertificate(
        req,
        md,
        { deadline },
        (err: grpc.ServiceError | null, res?: CsrResponse) => {
          client.close();
          if (err) reject(new Error(`CreateCertificate at ${this.config.caAddress}: ${err.details || err.message}`));
          else if (!res || res.cert_chain.length === 0) reject(new Error('CreateCertificate returned an empty chain'));
          else resolve(res.cert_chain);
        },
      );
    });
  }
}
