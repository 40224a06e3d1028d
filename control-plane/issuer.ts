/**
 * Workload certificate issuance and rotation for the embedded control plane.
 *
 * Owns one current certificate per workload (keyed by namespace/name): issued on first demand,
 * re-issued when `rotateAfterMs` of its lifetime has passed (default half, like Istio's
 * SECRET_GRACE_PERIOD_RATIO 0.5) or when the workload's SPIFFE ID changes. Rotation timers run only
 * for workloads someone holds (`acquire`/`release`, refcounted by the ADS streams), and each new
 * certificate is announced with an `issued` event so the server can push the `default` secret.
 * Rotations keep their period (measured from when each issuance started, so key generation does
 * not make the schedule drift), and the next key pair of a held workload is generated right after
 * an issuance, off the event loop, so a rotation only has to sign (~2 ms).
 * Leans towards never serving an expired identity: a failed re-issue is retried with backoff while
 * the previous certificate (still valid) keeps being served.
 */
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import { type DevCa, generateRsaKeyPair, type IssuedCertificate } from '../certs/dev-ca';
import type { MeshWorkload } from './mesh';

export interface IssuerOptions {
  /** Workload certificate lifetime, ms. Default 1 h. */
  readonly lifetimeMs?: number;
  /** Re-issue this long after issuance, ms. Default lifetimeMs / 2. Must be < lifetimeMs. */
  readonly rotateAfterMs?: number;
  readonly log?: Logger;
}

interface Entry {
  workload: MeshWorkload;
  cert?: IssuedCertificate;
  issuedAt: number;
  pending?: Promise<IssuedCertificate>;
  timer?: NodeJS.Timeout;
  holders: number;
  failures: number;
  /** Key pair generated ahead for the next rotation (held workloads only). */
  nextKey?: Promise<{ privateKeyPem: string; publicKeyPem: string } | undefined>;
}

/** Emitted as `issued` with (key, workload, cert). */
export type IssuedListener = (key: string, workload: MeshWorkload, cert: IssuedCertificate) => void;

export function workloadKey(w: Pick<MeshWorkload, 'namespace' | 'name'>): string {
  return `${w.namespace}/${w.name}`;
}

export class CertIssuer extends EventEmitter {
  private readonly entries = new Map<string, Entry>();
  readonly lifetimeMs: number;
  readonly rotateAfterMs: number;
  private closed = false;

  constructor(
    private readonly ca: DevCa,
    private readonly opts: IssuerOptions = {},
  ) {
    super();
    this.lifetimeMs = opts.lifetimeMs ?? 3600_000;
    this.rotateAfterMs = opts.rotateAfterMs ?? this.lifetimeMs / 2;
    if (!(this.rotateAfterMs > 0 && this.rotateAfterMs < this.lifetimeMs)) {
      throw new RangeError(
        `rotateAfterMs (${this.rotateAfterMs}) must be between 0 and lifetimeMs (${this.lifetimeMs})`,
      );
    }
  }

  get rootCertPem(): string {
    return this.ca.rootCertPem;
  }

  /** Every root workloads must trust now (more than one while a root is being rolled). */
  get trustBundlePem(): string {
    return this.ca.trustBundlePem;
  }

  /** Start rotating `w`'s certificate while held (an ADS stream subscribed to its secrets). */
  acquire(w: MeshWorkload): void {
    const e = this.entry(w);
    e.holders++;
    if (e.cert && !e.timer) this.schedule(workloadKey(w), e);
  }

  release(w: MeshWorkload): void {
    const e = this.entries.get(workloadKey(w));
    if (!e) return;
    e.holders = Math.max(0, e.holders - 1);
    if (e.holders === 0) {
      if (e.timer) clearTimeout(e.timer);
      e.timer = undefined;
      e.nextKey = undefined;
    }
  }

  /** The current certificate for `w`, issuing one if none, it is due, or the identity changed. */
  async current(w: MeshWorkload): Promise<IssuedCertificate> {
    const key = workloadKey(w);
    const e = this.entry(w);
    e.workload = w;
    if (e.pending) return e.pending;
    if (e.cert && e.cert.spiffeId === w.spiffeId && Date.now() - e.issuedAt < this.rotateAfterMs) return e.cert;
    return this.issue(key, e);
  }

  /** The certificate held for `w`, if any, without issuing. */
  peek(w: MeshWorkload): IssuedCertificate | undefined {
    return this.entries.get(workloadKey(w))?.cert;
  }

  /**
   * The signing root changed (a root roll): every certificate is due. Held workloads are re-issued
   * now (and pushed through `issued`); the others at their next `current`.
   */
  reissueAll(): void {
    for (const [key, e] of this.entries) {
      e.issuedAt = Number.NEGATIVE_INFINITY;
      e.nextKey = undefined;
      if (e.holders > 0 && !e.pending && e.cert) this.issue(key, e).catch(() => undefined);
    }
  }

  close(): void {
    this.closed = true;
    for (const e of this.entries.values()) if (e.timer) clearTimeout(e.timer);
    this.entries.clear();
  }

  private entry(w: MeshWorkload): Entry {
    const key = workloadKey(w);
    let e = this.entries.get(key);
    if (!e) {
      e = { workload: w, issuedAt: 0, holders: 0, failures: 0 };
      this.entries.set(key, e);
    }
    return e;
  }

  private issue(key: string, e: Entry): Promise<IssuedCertificate> {
    const w = e.workload;
    const startedAt = Date.now();
    const spare = e.nextKey;
    e.nextKey = undefined;
    const p = (spare ?? Promise.resolve(undefined))
      .then((keyPair) =>
        this.ca.issueWorkload({ ns: w.namespace, sa: w.serviceAccount, lifetimeMs: this.lifetimeMs, keyPair }),
      )
      .then((cert) => {
        e.pending = undefined;
        e.failures = 0;
        if (this.closed) return cert;
        e.cert = cert;
        e.issuedAt = startedAt;
        if (e.holders > 0) e.nextKey = generateRsaKeyPair().catch(() => undefined);
        this.opts.log?.info(
          { workload: key, serial: cert.serial, spiffeId: cert.spiffeId, notAfter: cert.notAfter.toISOString() },
          'issued workload certificate',
        );
        if (e.holders > 0) this.schedule(key, e);
        this.emit('issued', key, w, cert);
        return cert;
      })
      .catch((err: unknown) => {
        e.pending = undefined;
        e.failures++;
        this.opts.log?.error({ workload: key, err }, 'workload certificate issuance failed');
        if (e.holders > 0 && !this.closed) {
          const backoff = Math.min(1000 * 2 ** e.failures, this.rotateAfterMs / 4);
          if (e.timer) clearTimeout(e.timer);
          e.timer = setTimeout(() => this.rotate(key), backoff);
          e.timer.unref();
        }
        throw err;
      });
    e.pending = p;
    return p;
  }

  private schedule(key: string, e: Entry): void {
    if (e.timer) clearTimeout(e.timer);
    const delay = Math.max(0, e.issuedAt + this.rotateAfterMs - Date.now());
    e.timer = setTimeout(() => this.rotate(key), delay);
    e.timer.unref();
  }

  private rotate(key: string): void {
    const e = this.entries.get(key);
    if (!e || this.closed) return;
    e.timer = undefined;
    if (e.holders === 0 || e.pending) return;
    this.issue(key, e).catch(() => undefined);
  }
}
