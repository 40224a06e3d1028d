/**
 * SDS certificate provider: subscribes to the workload's secrets (`default`, `ROOTCA`) through the
 * xDS client and hands every update to the CertStore, which validates before swapping.
 *
 * Owns only the glue. Leans safe: trust bundles are applied before identities (an identity that
 * arrives first is held until its roots are known, so it is always verified), updates of one
 * secret are applied in order, and a rejected secret is logged while the current one keeps being
 * served (the xDS layer has already ACKed the well-formed resource; validity against the roots
 * and the clock is the store's judgement, as in Envoy's SDS secret update path).
 */
import type { Logger } from 'pino';
import type { SecretConfig } from '../common/config-types';
import { type CertStore, DEFAULT_IDENTITY_SECRET, DEFAULT_TRUST_BUNDLE_SECRET, type UpdateResult } from './store';

const SECRET_TYPE_URL = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret';

/** The part of XdsClient this provider uses. */
export interface SecretWatchSource {
  watch<T>(
    typeUrl: string,
    name: string,
    watcher: {
      onChanged(name: string, value: T, version: string): void;
      onRemoved(name: string): void;
      onDoesNotExist(name: string): void;
    },
  ): () => void;
}

export interface SdsProviderOptions {
  /** Identity secret names (default [`default`]). */
  readonly identities?: readonly string[];
  /** Trust bundle secret names (default [`ROOTCA`]). */
  readonly trustBundles?: readonly string[];
  readonly log?: Logger;
  /** Called after every apply attempt. */
  readonly onResult?: (name: string, result: UpdateResult) => void;
}

export class SdsSecretProvider {
  private readonly cancels: (() => void)[] = [];
  /** Identities received before any trust bundle: applied once one is in the store. */
  private readonly held = new Map<string, SecretConfig>();
  private chain: Promise<void> = Promise.resolve();
  private closed = false;

  constructor(
    private readonly source: SecretWatchSource,
    private readonly store: CertStore,
    private readonly opts: SdsProviderOptions = {},
  ) {}

  start(): void {
    const bundles = this.opts.trustBundles ?? [DEFAULT_TRUST_BUNDLE_SECRET];
    const identities = this.opts.identities ?? [DEFAULT_IDENTITY_SECRET];
    for (const name of [...bundles, ...identities]) {
      const isBundle = bundles.includes(name);
      this.cancels.push(
        this.source.watch<SecretConfig>(SECRET_TYPE_URL, name, {
          onChanged: (n, value) => this.enqueue(n, value, isBundle),
          onRemoved: (n) =>
            this.opts.log?.warn({ secret: n }, 'SDS secret removed by the control plane; keeping the current one'),
          onDoesNotExist: (n) => this.opts.log?.warn({ secret: n }, 'SDS secret does not exist (yet)'),
        }),
      );
    }
  }

  close(): void {
    this.closed = true;
    for (const c of this.cancels.splice(0)) c();
    this.held.clear();
  }

  private enqueue(name: string, value: SecretConfig, isBundle: boolean): void {
    this.chain = this.chain.then(() => this.apply(name, value, isBundle));
  }

  private async apply(name: string, value: SecretConfig, isBundle: boolean): Promise<void> {
    if (this.closed) return;
    if (!isBundle && !this.store.trustBundle()) {
      this.held.set(name, value);
      return;
    }
    await this.applyOne(name, value);
    if (isBundle && this.store.trustBundle()) {
      for (const [n, v] of [...this.held]) {
        this.held.delete(n);
        await this.applyOne(n, v);
      }
    }
  }

  private async applyOne(name: string, value: SecretConfig): Promise<void> {
    const r = await this.store.update(name, value);
    if (this.closed) return;
    if (!r.ok) this.opts.log?.warn({ secret: name, error: r.error }, 'SDS secret rejected; keeping the current one');
    this.opts.onResult?.(name, r);
  }
}
