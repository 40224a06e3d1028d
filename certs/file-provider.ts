/**
 * File-based certificate provider: loads secrets from PEM files on disk into the CertStore and
 * reloads them when they change (cert-manager / Kubernetes secret volumes, Istio's
 * `/etc/certs/{cert-chain,key,root-cert}.pem`).
 *
 * Owns watching only; every reload goes through CertStore.update, so a half-written or mismatched
 * pair is rejected and the current identity kept. Leans robust over prompt: it watches the parent
 * directories (Kubernetes swaps a `..data` symlink, which a file watch would miss), debounces, and
 * also polls (default every 5 s) in case fs.watch is unreliable (network filesystems, containers).
 */
import { type FSWatcher, watch } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { SecretConfig } from '../common/config-types';
import type { CertStore, UpdateResult } from './store';

/** One secret assembled from files. Set the pair for an identity, or `trustedCaPath` for a bundle. */
export interface FileSecretSpec {
  /** Secret name in the store (`default`, `ROOTCA`, …). */
  readonly name: string;
  readonly certChainPath?: string;
  readonly privateKeyPath?: string;
  readonly trustedCaPath?: string;
}

export interface FileProviderOptions {
  /** Polling interval, ms; 0 disables polling. Default 5000. */
  readonly pollIntervalMs?: number;
  /** Debounce for watch events, ms. Default 100. */
  readonly debounceMs?: number;
  /** Called after each (re)load attempt with its result. */
  readonly onResult?: (name: string, result: UpdateResult) => void;
}

export class FileSecretProvider {
  private readonly watchers: FSWatcher[] = [];
  private pollTimer?: NodeJS.Timeout;
  private readonly debounceTimers = new Map<string, NodeJS.Timeout>();
  /** Last content loaded per secret, so polling only reloads on a real change. */
  private readonly lastContent = new Map<string, string>();
  private closed = false;

  constructor(
    private readonly store: CertStore,
    private readonly specs: readonly FileSecretSpec[],
    private readonly opts: FileProviderOptions = {},
  ) {
    for (const s of specs) {
      const pair = s.certChainPath !== undefined && s.privateKeyPath !== undefined;
      if (pair === (s.trustedCaPath !== undefined)) {
        throw new TypeError(`file secret "${s.name}": set certChainPath+privateKeyPath, or trustedCaPath`);
      }
    }
  }

  /** Load every secret once (trust bundles first, so identities verify), then start watching. */
  async start(): Promise<Map<string, UpdateResult>> {
    const results = new Map<string, UpdateResult>();
    const ordered = [...this.specs].sort((a, b) => Number(!!b.trustedCaPath) - Number(!!a.trustedCaPath));
    for (const s of ordered) results.set(s.name, await this.reload(s, true));
    this.startWatching();
    return results;
  }

  close(): void {
    this.closed = true;
    for (const w of this.watchers) w.close();
    this.watchers.length = 0;
    if (this.pollTimer) clearInterval(this.pollTimer);
    for (const t of this.debounceTimers.values()) clearTimeout(t);
    this.debounceTimers.clear();
  }

  private paths(s: FileSecretSpec): string[] {
    return [s.certChainPath, s.privateKeyPath, s.trustedCaPath].filter((p): p is string => p !== undefined);
  }

  private startWatching(): void {
    const dirs = new Map<string, FileSecretSpec[]>();
    for (const s of this.specs) {
      for (const p of this.paths(s)) {
        const d = dirname(p);
        const list = dirs.get(d) ?? [];
        if (!list.includes(s)) list.push(s);
        dirs.set(d, list);
      }
    }
    for (const [dir, specs] of dirs) {
      try {
        const w = watch(dir, { persistent: false }, () => {
          for (const s of specs) this.schedule(s);
        });
        w.on('error', () => w.close());
        this.watchers.push(w);
      } catch {
        // fs.watch unavailable for this directory: polling covers it.
      }
    }
    const interval = this.opts.pollIntervalMs ?? 5000;
    if (interval > 0) {
      this.pollTimer = setInterval(() => {
        for (const s of this.specs) void this.reload(s, false);
      }, interval);
      this.pollTimer.unref();
    }
  }

  private schedule(s: FileSecretSpec): void {
    if (this.closed) return;
    const prev = this.debounceTimers.get(s.name);
    if (prev) clearTimeout(prev);
    const t = setTimeout(() => {
      this.debounceTimers.delete(s.name);
      void this.reload(s, false);
    }, this.opts.debounceMs ?? 100);
    t.unref();
    this.debounceTimers.set(s.name, t);
  }

  /** Read the files and hand them to the store; `force` reloads even if the content is unchanged. */
  private async reload(s: FileSecretSpec, force: boolean): Promise<UpdateResult> {
    let contents: string[];
    try {
      contents = await Promise.all(this.paths(s).map((p) => readFile(p, 'utf8')));
    } catch (err) {
      const result: UpdateResult = { ok: false, error: `secret "${s.name}": ${(err as Error).message}` };
      if (force) this.opts.onResult?.(s.name, result);
      return result;
    }
    const joined = contents.join('\0');
    if (!force && this.lastContent.get(s.name) === joined) return { ok: true };
    this.lastContent.set(s.name, joined);
    const secret: SecretConfig = s.trustedCaPath
      ? {
          name: s.name,
          validationContext: {
            trustedCa: { kind: 'inline_string', value: contents[0]! },
            matchTypedSubjectAltNames: [],
            onlyVerifyLeafCertCrl: false,
          },
        }
      : {
          name: s.name,
          tlsCertificate: {
            certificateChain: { kind: 'inline_string', value: contents[0]! },
            privateKey: { kind: 'inline_string', value: contents[1]! },
          },
        };
    const result = await this.store.update(s.name, secret);
    if (!this.closed) this.opts.onResult?.(s.name, result);
    return result;
  }
}
