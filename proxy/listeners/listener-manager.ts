/**
 * Owns every listener, static or from LDS: add, update in place (make-before-break), remove with
 * drain, and the original-destination hand-over between listeners (Envoy's use_original_dst:
 * the 15001/15006 catch-all listeners pass a redirected connection to the listener configured for
 * its original destination, including virtual listeners with bind_to_port: false).
 */
import type { ListenerConfig } from '../config/types';
import { logger } from '../../common/logger';
import { DrainSequence, type DrainStrategy } from './drain';
import { type ChainBuilder, Listener, type OriginalDstResolver } from './listener';
import type { DrainDecision } from './types';

const log = logger('listener-manager');

export function sameAddress(a: ListenerConfig['address'], b: ListenerConfig['address']): boolean {
  if (a.kind === 'pipe' || b.kind === 'pipe') return a.kind === b.kind && JSON.stringify(a) === JSON.stringify(b);
  return a.host === b.host && a.port === b.port;
}

export class ListenerManager {
  private readonly listeners = new Map<string, Listener>();
  /** Listeners removed or replaced and still draining connections. */
  private readonly draining = new Set<Listener>();

  constructor(
    private readonly build: ChainBuilder,
    private readonly originalDst?: OriginalDstResolver,
    private readonly drainTimeoutMs = 5_000,
    private readonly drainStrategy: DrainStrategy = 'gradual',
  ) {}

  get(name: string): Listener | undefined {
    return this.listeners.get(name);
  }

  all(): Listener[] {
    return [...this.listeners.values()];
  }

  /** Add or update a listener. Rejects (and keeps the old one) if a new address cannot be bound. */
  async addOrUpdate(config: ListenerConfig): Promise<void> {
    const existing = this.listeners.get(config.name);
    if (existing && sameAddress(existing.config.address, config.address) && existing.config.bindToPort === config.bindToPort) {
      existing.update(config);
      log.info({ listener: config.name }, 'listener updated in place');
      return;
    }
    const l = new Listener(config, this.build, this.originalDst, (od) => this.findByOriginalDst(od));
    await l.listen();
    this.listeners.set(config.name, l);
    if (existing) this.retire(existing);
    log.info(
      { listener: config.name, address: config.address.kind === 'socket' ? `${config.address.host}:${l.boundPort || config.address.port}` : config.address.path },
      existing ? 'listener replaced' : 'listener added',
    );
  }

  remove(name: string): void {
    const l = this.listeners.get(name);
    if (!l) return;
    this.listeners.delete(name);
    this.retire(l);
    log.info({ listener: name }, 'listener removed');
  }

  /** A removed or replaced listener stops accepting and drains over the drain time, then closes (Envoy). */
  private retire(l: Listener): void {
    l.drain(new DrainSequence(this.drainTimeoutMs, this.drainStrategy));
    this.draining.add(l);
    const t = setTimeout(() => {
      this.draining.delete(l);
      void l.close();
    }, this.drainTimeoutMs);
    t.unref();
  }

  /** Listener whose address equals the original destination (exact IP first, then wildcard). */
  findByOriginalDst(od: { address: string; port: number }): Listener | undefined {
    let wildcard: Listener | undefined;
    for (const l of this.listeners.values()) {
      const a = l.config.address;
      if (a.kind !== 'socket' || a.port !== od.port) continue;
      if (a.host === od.address) return l;
      if (a.host === '0.0.0.0' || a.host === '::') wildcard = l;
    }
    return wildcard;
  }

  /** Stop accepting on every listener (or those `filter` selects) and drain live connections. */
  drainAll(filter?: (l: Listener) => boolean, decision?: DrainDecision): void {
    for (const l of this.listeners.values()) if (!filter || filter(l)) l.drain(decision);
  }

  /**
   * Envoy's graceful drain: the selected listeners keep accepting while every connection drains
   * by `decision` (Connection: close / GOAWAY); stopAccepting() ends it.
   */
  drainGracefully(filter: ((l: Listener) => boolean) | undefined, decision: DrainDecision): void {
    for (const l of this.listeners.values()) if (!filter || filter(l)) l.drainGracefully(decision);
  }

  /** Refuse new connections on the selected listeners (the end of a graceful drain). */
  stopAccepting(filter?: (l: Listener) => boolean): void {
    for (const l of this.listeners.values()) if (!filter || filter(l)) l.stopAccepting();
  }

  get activeConnections(): number {
    let n = 0;
    for (const l of this.listeners.values()) n += l.activeConnections;
    for (const l of this.draining) n += l.activeConnections;
    return n;
  }

  async close(): Promise<void> {
    const all = [...this.listeners.values(), ...this.draining];
    this.listeners.clear();
    this.draining.clear();
    await Promise.all(all.map((l) => l.close()));
  }
}
