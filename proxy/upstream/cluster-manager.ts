/**
 * The cluster manager: the set of upstream clusters by name (Envoy's ClusterManager), and the
 * only place clusters are created, replaced and destroyed.
 *
 * Leans make-before-break: `addOrUpdate` with an identical config is a no-op; a changed config
 * builds a new cluster object, which replaces the old one once it is initialized (warming: an EDS
 * cluster before its first assignment, a DNS cluster before its first lookup), and the old one
 * then drains its pools and is destroyed once idle. Live requests keep the cluster and host
 * objects they hold. An EDS cluster replaced for a config change is seeded with the last
 * assignment so it does not have to warm again.
 *
 * Codecs and TLS are injected (PoolFactory, transport provider) so this module imports neither.
 */
import { type LocalClusterView, localityKey } from './locality';
import type { Locality } from '../config/types';
import type { ClusterConfig, ClusterLoadAssignment, UpstreamTlsConfig } from '../config/types';
import { ConfigError } from '../../common/errors';
import {
  type Cluster,
  type ClusterContext,
  type ClusterDescription,
  EdsCluster,
  type PoolFactory,
  StaticCluster,
} from './cluster';
import { type DnsLookup, LogicalDnsCluster, StrictDnsCluster } from './dns-cluster';
import { registerDefaultLbPolicies } from './lb/index';
import { LbRegistry } from './lb/types';
import { OriginalDstCluster } from './original-dst';
import { TcpTransportSocketFactory } from './transport';
import { TransportSocketMatcher } from './transport-socket-match';
import type { ClusterLookup, TransportSocketFactory } from './types';

export type { PoolFactory } from './cluster';

/**
 * Gives a cluster a transport for one socket config: plain TCP, or TLS for an UpstreamTlsConfig.
 * Called with the cluster's transport_socket and once per transport_socket_matches entry.
 */
export type TransportProvider = (config: ClusterConfig, socket: UpstreamTlsConfig | undefined) => TransportSocketFactory;

export type ClusterUpdateKind = 'added' | 'updated' | 'removed';

/** What onUpdate listeners hear: a cluster became active, was replaced, or was removed. */
export interface ClusterUpdateEvent {
  readonly kind: ClusterUpdateKind;
  readonly name: string;
  /** The now-active cluster (undefined for 'removed'). */
  readonly cluster: Cluster | undefined;
}

export type ClusterUpdateListener = (e: ClusterUpdateEvent) => void;

export interface ClusterManagerOptions {
  /** Creates per-host HTTP pools (the composition root wires the HTTP/1.1 and HTTP/2 codecs). */
  readonly poolFactory: PoolFactory;
  /** LB policies; defaults to a registry with the built-in ones. */
  readonly lbRegistry?: LbRegistry;
  /**
   * Transport per cluster. Default: plain TCP, and a ConfigError for a cluster with a
   * transport_socket (never silently downgrade TLS to plaintext).
   */
  readonly transportProvider?: TransportProvider;
  /** DNS lookup for STRICT_DNS / LOGICAL_DNS clusters (defaults to dns.promises.lookup). */
  readonly dnsLookup?: DnsLookup;
  /** How often a draining cluster checks whether its pools are idle (default 1 s). */
  readonly drainCheckMs?: number;
  /** Longest a replaced cluster may drain before it is destroyed anyway (default 10 min). */
  readonly drainMaxMs?: number;
  /**
   * cluster_manager.local_cluster_name and the proxy's locality (node.locality): the clusters'
   * zone-aware routing compares their localities with this cluster's.
   */
  readonly localCluster?: { readonly name: string; readonly locality: Locality | undefined };
}

const TCP = new TcpTransportSocketFactory();

export class ClusterManager implements ClusterLookup {
  private readonly active = new Map<string, Cluster>();
  private readonly warming = new Map<string, Cluster>();
  private readonly draining = new Set<Cluster>();
  /**
   * EDS clusters (warming or active) by the EDS resource they watch (eds_service_name, else the
   * cluster name): an assignment finds its clusters without scanning all of them.
   */
  private readonly edsByService = new Map<string, Set<Cluster>>();
  private readonly listeners: ClusterUpdateListener[] = [];
  private readonly registry: LbRegistry;
  private readonly localView: (() => LocalClusterView | undefined) | undefined;
  private readonly transportProvider: TransportProvider;

  constructor(private readonly opts: ClusterManagerOptions) {
    this.registry = opts.lbRegistry ?? registerDefaultLbPolicies(new LbRegistry());
    const lc = opts.localCluster;
    if (lc !== undefined) {
      // One view object for the manager's life: the local cluster is looked up by name each time,
      // so a CDS replacement of it is followed (its lbVersion numbers are never reused).
      const local = (): Cluster | undefined => this.get(lc.name);
      const view: LocalClusterView = {
        localityKey: localityKey(lc.locality),
        get version(): number {
          return local()?.lbVersion ?? -2;
        },
        healthyByLocality(): ReadonlyMap<string, number> {
          const m = new Map<string, number>();
          for (const h of local()?.hosts ?? []) {
            if (!h.healthy) continue;
            const k = localityKey(h.locality);
            m.set(k, (m.get(k) ?? 0) + 1);
          }
          return m;
        },
      };
      this.localView = () => (local() !== undefined ? view : undefined);
    }
    this.transportProvider =
      opts.transportProvider ??
      ((config, socket) => {
        if (socket !== undefined) {
          throw new ConfigError(`cluster ${config.name}`, [
            {
              path: 'transport_socket',
              message: 'TLS transport requested but no TLS transport provider is configured',
            },
          ]);
        }
        return TCP;
      });
  }

  /** The cluster the data plane should use: the active one, else a first-time cluster still warming. */
  get(name: string): Cluster | undefined {
    return this.active.get(name) ?? this.warming.get(name);
  }

  /** Active clusters, plus first-time clusters still warming. */
  all(): Cluster[] {
    const out = [...this.active.values()];
    for (const [name, c] of this.warming) if (!this.active.has(name)) out.push(c);
    return out;
  }

  /** Names of clusters that are warming (for /ready and the xDS client's initialization). */
  warmingNames(): string[] {
    return [...this.warming.keys()];
  }

  /** How many clusters are warming (no allocation: checked after every xDS update). */
  get warmingCount(): number {
    return this.warming.size;
  }

  /** Subscribe to cluster changes; returns the unsubscribe function. */
  onUpdate(listener: ClusterUpdateListener): () => void {
    this.listeners.push(listener);
    return () => {
      const i = this.listeners.indexOf(listener);
      if (i >= 0) this.listeners.splice(i, 1);
    };
  }

  /**
   * Add a cluster or apply a new config for it. Throws ConfigError (control plane) when the config
   * cannot be built (unknown lb policy, TLS without a provider). Returns what happened.
   */
  addOrUpdate(config: ClusterConfig, opts: { readonly addedViaApi?: boolean } = {}): 'added' | 'updated' | 'unchanged' {
    const name = config.name;
    const current = this.warming.get(name) ?? this.active.get(name);
    if (current !== undefined && deepEqual(current.config, config)) return 'unchanged';
    const previous = this.active.get(name);
    const seed =
      previous !== undefined &&
      config.type === 'EDS' &&
      previous.config.type === 'EDS' &&
      (previous.config.edsServiceName ?? name) === (config.edsServiceName ?? name)
        ? previous.lastAssignment
        : undefined;

    let constructed = false;
    const transport = this.transportProvider(config, config.transportSocket);
    const matches = config.transportSocketMatches;
    const ctx: ClusterContext = {
      lbRegistry: this.registry,
      poolFactory: this.opts.poolFactory,
      transport,
      ...(matches !== undefined
        ? { socketMatcher: new TransportSocketMatcher(matches, (m) => this.transportProvider(config, m.transportSocket), transport) }
        : {}),
      addedViaApi: opts.addedViaApi ?? false,
      ...(this.localView !== undefined ? { localCluster: this.localView } : {}),
      onInitialized: (c) => {
        if (constructed && this.warming.get(name) === c) this.promote(c);
      },
    };
    const cluster = this.create(config, ctx, seed);
    constructed = true;

    const oldWarming = this.warming.get(name);
    if (oldWarming !== undefined) {
      this.warming.delete(name);
      this.untrack(oldWarming);
      oldWarming.destroy();
    }
    this.track(cluster);
    if (cluster.initialized) this.promote(cluster);
    else this.warming.set(name, cluster);
    return previous === undefined ? 'added' : 'updated';
  }

  /** Remove a cluster: it drains and is destroyed once idle. Returns false if unknown. */
  remove(name: string): boolean {
    const w = this.warming.get(name);
    const a = this.active.get(name);
    if (w === undefined && a === undefined) return false;
    this.warming.delete(name);
    this.active.delete(name);
    if (w !== undefined) {
      this.untrack(w);
      w.destroy();
    }
    if (a !== undefined) this.retire(a);
    this.emit({ kind: 'removed', name, cluster: undefined });
    return true;
  }

  /** Feed an EDS assignment for cluster `name` (to the warming cluster and the active one). */
  updateAssignment(name: string, cla: ClusterLoadAssignment): boolean {
    const a = this.active.get(name);
    const w = this.warming.get(name);
    if (a === undefined && w === undefined) return false;
    if (a !== undefined && a.config.type === 'EDS') a.updateAssignment(cla);
    if (w !== undefined) w.updateAssignment(cla);
    return true;
  }

  /**
   * Feed an EDS resource by its name (a cluster's eds_service_name, or the cluster name when that
   * is unset) to every EDS cluster that watches it. Returns how many clusters took it.
   */
  updateEdsService(serviceName: string, cla: ClusterLoadAssignment): number {
    const set = this.edsByService.get(serviceName);
    if (set === undefined) return 0;
    // Collect first (warming clusters, then active ones): an update can promote a warming
    // cluster, which moves it between the maps and retires the one it replaces.
    const targets: Cluster[] = [];
    for (const c of set) if (this.warming.get(c.name) === c) targets.push(c);
    for (const c of set) if (this.warming.get(c.name) !== c) targets.push(c);
    for (const c of targets) c.updateAssignment(cla);
    return targets.length;
  }

  /** admin /clusters: every cluster's hosts, health flags and counters. */
  describe(): ClusterDescription[] {
    return this.all().map((c) => c.describe());
  }

  /** Close everything now (process shutdown). */
  destroy(): void {
    for (const c of this.warming.values()) c.destroy();
    for (const c of this.active.values()) c.destroy();
    for (const c of this.draining) c.destroy();
    this.warming.clear();
    this.active.clear();
    this.draining.clear();
    this.edsByService.clear();
  }

  /** Clusters replaced or removed that are still draining (tests, admin). */
  get drainingCount(): number {
    return this.draining.size;
  }

  private create(config: ClusterConfig, ctx: ClusterContext, seed: ClusterLoadAssignment | undefined): Cluster {
    switch (config.type) {
      case 'STATIC':
        return new StaticCluster(config, ctx);
      case 'EDS':
        return new EdsCluster(config, ctx, seed);
      case 'STRICT_DNS':
        return new StrictDnsCluster(config, ctx, { lookup: this.opts.dnsLookup });
      case 'LOGICAL_DNS':
        return new LogicalDnsCluster(config, ctx, { lookup: this.opts.dnsLookup });
      case 'ORIGINAL_DST':
        return new OriginalDstCluster(config, ctx);
      default:
        throw new ConfigError(`cluster ${config.name}`, [
          { path: 'type', message: `unsupported cluster type ${String(config.type)}` },
        ]);
    }
  }

  private promote(c: Cluster): void {
    const name = c.name;
    if (this.warming.get(name) === c) this.warming.delete(name);
    const old = this.active.get(name);
    this.active.set(name, c);
    if (old !== undefined && old !== c) this.retire(old);
    this.emit({ kind: old === undefined ? 'added' : 'updated', name, cluster: c });
  }

  /** The EDS resource a cluster watches, or undefined for other cluster types. */
  private static edsService(c: Cluster): string | undefined {
    return c.config.type === 'EDS' ? (c.config.edsServiceName ?? c.name) : undefined;
  }

  /** Index a cluster that is entering the warming or active map. */
  private track(c: Cluster): void {
    const svc = ClusterManager.edsService(c);
    if (svc === undefined) return;
    let set = this.edsByService.get(svc);
    if (set === undefined) {
      set = new Set();
      this.edsByService.set(svc, set);
    }
    set.add(c);
  }

  /** Forget a cluster that left both maps (destroyed, or retired to drain). */
  private untrack(c: Cluster): void {
    const svc = ClusterManager.edsService(c);
    if (svc === undefined) return;
    const set = this.edsByService.get(svc);
    if (set === undefined) return;
    set.delete(c);
    if (set.size === 0) this.edsByService.delete(svc);
  }

  private retire(c: Cluster): void {
    this.untrack(c);
    this.draining.add(c);
    c.drainAndDestroy(() => this.draining.delete(c), this.opts.drainCheckMs ?? 1000, this.opts.drainMaxMs ?? 600_000);
  }

  private emit(e: ClusterUpdateEvent): void {
    for (const l of this.listeners.slice()) l(e);
  }
}

/** Structural equality for frozen config trees (plain objects, arrays, Buffers, RegExps, Sets, Maps). */
export function deepEqual(a: unknown, b: unknown): boolean {
  if (Object.is(a, b)) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Buffer.isBuffer(a) || Buffer.isBuffer(b)) return Buffer.isBuffer(a) && Buffer.isBuffer(b) && a.equals(b);
  if (a instanceof RegExp || b instanceof RegExp)
    return a instanceof RegExp && b instanceof RegExp && a.source === b.source && a.flags === b.flags;
  if (Array.isArray(a) || Array.isArray(b)) {
    if (!Array.isArray(a) || !Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!deepEqual(a[i], b[i])) return false;
    return true;
  }
  if (a instanceof Set || b instanceof Set) {
    if (!(a instanceof Set) || !(b instanceof Set) || a.size !== b.size) return false;
    for (const v of a) if (!b.has(v)) return false;
    return true;
  }
  if (a instanceof Map || b instanceof Map) {
    if (!(a instanceof Map) || !(b instanceof Map) || a.size !== b.size) return false;
    for (const [k, v] of a) if (!b.has(k) || !deepEqual(v, b.get(k))) return false;
    return true;
  }
  // Keys whose value is undefined count as absent. No filtered key arrays: this runs for every
  // cluster of a CDS push (a control plane whose bytes change while the config does not).
  const ra = a as Record<string, unknown>;
  const rb = b as Record<string, unknown>;
  let na = 0;
  for (const k of Object.keys(ra)) {
    const va = ra[k];
    if (va === undefined) continue;
    na++;
    if (!deepEqual(va, rb[k])) return false;
  }
  let nb = 0;
  for (const k of Object.keys(rb)) if (rb[k] !== undefined) nb++;
  return na === nb;
}
