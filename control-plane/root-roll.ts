/**
 * Rolling the mesh root with an overlap, driven by the control plane (issue 18.7). The operator
 * starts a roll (`meshlet control-plane --roll-root`, which only writes the new root into the CA
 * directory, or `ControlPlaneServer.rollRoot()`); this module takes it to the end:
 *
 *  1. phase `trust`: the trust bundle (`ROOTCA`, and `root-cert.pem` in the CA directory) holds
 *     old + new, the old root still signs. Once every connected workload ACKed the new bundle
 *     (and `settleMs` passed, time for the sidecars to install it) …
 *  2. phase `sign`: the new root signs; the bundle is new + old, the new root first. A sidecar in
 *     CSR mode whose leaf was not issued by the first root of a changed bundle renews at once
 *     (certs/csr-provider.ts); in key hand-out mode the control plane re-issues and pushes. The
 *     control plane's own serving certificate is re-issued under the new root. Every leaf the CA
 *     signs in this phase is counted by (SPIFFE ID, peer host). Once each such pair has as many as
 *     it has connected streams holding secrets (and `settleMs` passed) …
 *  3. the old root leaves the bundle; the roll is over.
 *
 * Every step is saved in the CA directory before it takes effect (ca-files.ts), and so is the set
 * of renewed workloads (`roll-renewed.json`), so a restart mid-roll continues where it stopped.
 * Leans towards never cutting anyone off: a workload that stays connected without renewing holds
 * the roll in phase `sign` (the old root stays trusted; the status names who is waited for).
 * Workloads that are not connected are not waited for: one that comes back after the end with an
 * old leaf renews with the root it mounts (`root_cert_file`, which the CA directory keeps current).
 */
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { DevCa, RollPhase } from '../certs/dev-ca';

const RENEWED_FILE = 'roll-renewed.json';

/** A connected ADS stream, as the roll sees it. */
export interface RollStream {
  readonly spiffeId: string;
  /** The peer's address without its port (a pod's IP). */
  readonly host: string;
  /** Whether it subscribed to secrets (holds a leaf and the bundle). */
  readonly holdsSecrets: boolean;
  /** Whether it ACKed the last secrets it was sent. */
  readonly secretsAcked: boolean;
}

export interface RootRollOptions {
  readonly ca: DevCa;
  /** The CA directory (state is kept there); undefined = in memory. */
  readonly dir?: string;
  readonly streams: () => readonly RollStream[];
  /** Called when the signing root changed (re-issue what the control plane issues itself). */
  readonly onPromoted: () => void;
  /** How often the roll (and the CA directory) is looked at, ms. Default 1000. */
  readonly pollMs?: number;
  /** The least time each phase lasts, ms. Default 5000. */
  readonly settleMs?: number;
  readonly log: Logger;
}

export interface RootRollStatus {
  readonly phase: RollPhase;
  readonly since?: string;
  /** Connected workloads the current phase waits for (`spiffeId@host`). */
  readonly waitingFor: readonly string[];
}

/** Extract the host of a gRPC peer string (`1.2.3.4:5`, `[::1]:5`, `ipv4:1.2.3.4:5`). */
export function peerHost(peer: string): string {
  const p = peer.replace(/^ipv[46]:/, '');
  const m = /^\[([^\]]+)\](?::\d+)?$/.exec(p) ?? /^([^:]+)(?::\d+)?$/.exec(p);
  return m ? m[1]! : p;
}

export class RootRoll {
  /** New-root leaves signed per `spiffeId@host` in phase sign. */
  private renewed = new Map<string, number>();
  private phaseSince = Date.now();
  private timer?: NodeJS.Timeout;
  private ticking = false;
  private saving: Promise<void> = Promise.resolve();
  private readonly settleMs: number;

  constructor(private readonly opts: RootRollOptions) {
    this.settleMs = opts.settleMs ?? 5000;
  }

  /** Load the saved renewals (a restart in phase `sign`) and start watching. */
  async start(): Promise<void> {
    if (this.opts.dir && this.opts.ca.rollPhase === 'sign') {
      try {
        const saved = JSON.parse(await readFile(join(this.opts.dir, RENEWED_FILE), 'utf8')) as { renewed?: Record<string, unknown> };
        const r = saved.renewed;
        if (r && typeof r === 'object' && !Array.isArray(r)) {
          for (const [k, n] of Object.entries(r)) if (typeof n === 'number') this.renewed.set(k, n);
        }
      } catch {
        // none saved: every connected workload is waited for
      }
    }
    if (this.opts.ca.rollPhase !== 'none') this.opts.log.info({ phase: this.opts.ca.rollPhase }, 'root roll in progress: continuing');
    this.timer = setInterval(() => void this.tick(), this.opts.pollMs ?? 1000);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  /** Start a roll now (phase none → trust). */
  async begin(): Promise<void> {
    await this.opts.ca.beginRoll();
    this.entered('trust');
  }

  /** A leaf was signed for `spiffeId` by a caller at `host`: counts once the new root signs. */
  noteLeaf(spiffeId: string, host: string): void {
    if (this.opts.ca.rollPhase !== 'sign') return;
    const k = `${spiffeId}@${host}`;
    this.renewed.set(k, (this.renewed.get(k) ?? 0) + 1);
    void this.saveRenewed();
  }

  status(): RootRollStatus {
    const phase = this.opts.ca.rollPhase;
    if (phase === 'none') return { phase, waitingFor: [] };
    return { phase, since: new Date(this.phaseSince).toISOString(), waitingFor: this.waitingFor(phase) };
  }

  /**
   * Phase trust: streams that have not ACKed the bundle. Phase sign: `spiffeId@host` keys with
   * fewer new-root leaves than connected streams (replicas sharing a host, e.g. on loopback, must
   * each have renewed).
   */
  private waitingFor(phase: RollPhase): string[] {
    const out = new Set<string>();
    const streams = new Map<string, number>();
    for (const s of this.opts.streams()) {
      if (!s.holdsSecrets) continue;
      const k = `${s.spiffeId}@${s.host}`;
      if (phase === 'trust' && !s.secretsAcked) out.add(k);
      streams.set(k, (streams.get(k) ?? 0) + 1);
    }
    if (phase === 'sign') for (const [k, n] of streams) if ((this.renewed.get(k) ?? 0) < n) out.add(k);
    return [...out].sort();
  }

  /** Look at the roll once: pick up a roll begun on disk, take the next step when it is due. */
  async tick(): Promise<void> {
    if (this.ticking) return;
    this.ticking = true;
    try {
      const before = this.opts.ca.rollPhase;
      if (await this.opts.ca.reload()) {
        this.opts.log.info({ from: before, to: this.opts.ca.rollPhase }, 'root roll: CA directory changed');
        this.entered(this.opts.ca.rollPhase);
      }
      const phase = this.opts.ca.rollPhase;
      if (phase === 'none' || Date.now() - this.phaseSince < this.settleMs) return;
      const waiting = this.waitingFor(phase);
      if (waiting.length > 0) return;
      if (phase === 'trust') {
        this.renewed.clear();
        await this.saveRenewed();
        await this.opts.ca.promoteRoll();
        this.entered('sign');
        this.opts.onPromoted();
      } else {
        await this.opts.ca.finishRoll();
        this.entered('none');
        if (this.opts.dir) await rm(join(this.opts.dir, RENEWED_FILE), { force: true });
      }
    } catch (err) {
      this.opts.log.error({ err: (err as Error).message }, 'root roll step failed; retrying');
    } finally {
      this.ticking = false;
    }
  }

  private entered(phase: RollPhase): void {
    this.phaseSince = Date.now();
    const what =
      phase === 'trust'
        ? 'root roll: new root published in the trust bundle (old root still signs); waiting for every workload to ACK it'
        : phase === 'sign'
          ? 'root roll: new root signs; waiting for every connected workload to renew'
          : 'root roll: done, old root dropped from the trust bundle';
    this.opts.log.info({ phase }, what);
  }

  private saveRenewed(): Promise<void> {
    const dir = this.opts.dir;
    if (!dir) return Promise.resolve();
    // One write at a time, each with the counts as they are then.
    this.saving = this.saving.then(() => this.writeRenewed(dir));
    return this.saving;
  }

  private async writeRenewed(dir: string): Promise<void> {
    await writeFile(join(dir, RENEWED_FILE), `${JSON.stringify({ renewed: Object.fromEntries(this.renewed) })}\n`, { mode: 0o644 }).catch((err: Error) =>
      this.opts.log.warn({ err: err.message }, 'root roll: cannot save renewals'),
    );
  }
}
