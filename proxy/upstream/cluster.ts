/**
 * The cluster: one upstream service as the data plane sees it. Owns the host list (diffed by
 * address so Host objects, their counters, health and pools survive updates), the priority set
 * and its per-priority balancers, the circuit breakers, the stats and the per-host HTTP pools.
 *
 * This file is the base class plus the two simplest types: STATIC (hosts from load_assignment,
 * initialized at once) and EDS (warming until the first `updateAssignment`). DNS types live in
 * dns-cluster.ts, ORIGINAL_DST in original-dst.ts; the manager picks the class.
 *
 * Leans towards keeping what works: an update never tears down a live host's pools, removed hosts
 * drain (no new streams, close once idle), and balancers are rebuilt only when membership or
 * health changes — never per request.
 */
import { type LocalClusterView, localityKey } from './locality';
import type { ClusterConfig, ClusterLoadAssignment, LbEndpoint, Locality } from '../config/types';
import { ConfigError } from '../../common/errors';
import type { ConnectionPool, HttpProtocol } from '../http/codec';
import { type ClusterDescription, describeCluster } from './describe';
import { Host } from './host';
import { DEFAULT_DECAY_MS, observeRtt } from './lb/peak-ewma';
import type { LbContext, LbRegistry, LoadBalancerFactory } from './lb/types';
import { HealthChecker } from './health/checker';
import { OutlierDetector } from './outlier';
import { PrioritySet } from './priority-set';
import type { ResolvedSocket, TransportSocketMatcher } from './transport-socket-match';
import { ClusterResourceManager } from './resources';
import { AlpnOverrideTransport, alpnKey } from './alpn-override';
import { ClusterStats, type TransportSocketFactory, type UpstreamCluster } from './types';

export type { ClusterDescription, HostDescription } from './describe';
export { healthFlags } from './describe';

/** Creates the HTTP pool for one host and protocol (wired to the codecs by the composition root). */
export type PoolFactory = (host: Host, cluster: UpstreamCluster, protocol: 'HTTP/1.1' | 'HTTP/2') => ConnectionPool;

/** Envoy's default overprovisioning factor, as a percentage (1.4). */
export const DEFAULT_OVERPROVISIONING_FACTOR = 140;

/** What a cluster needs from its surroundings; given by the cluster manager. */
export interface ClusterContext {
  readonly lbRegistry: LbRegistry;
  readonly poolFactory: PoolFactory;
  readonly transport: TransportSocketFactory;
  /** transport_socket_matches: the per-endpoint choice (undefined: every host uses `transport`). */
  readonly socketMatcher?: TransportSocketMatcher;
  /** true for clusters from CDS (admin /clusters shows added_via_api). */
  readonly addedViaApi: boolean;
  /** Called once when the cluster leaves warming (first assignment / first DNS answer). */
  readonly onInitialized?: (cluster: Cluster) => void;
  /** Source of randomness (tests may pin it); defaults to Math.random. */
  readonly random?: () => number;
  /** The local cluster (cluster_manager.local_cluster_name) for zone-aware routing. */
  readonly localCluster?: () => LocalClusterView | undefined;
}

/** Every rebuild of every cluster gets a new number (zone-aware routing watches its local cluster's). */
let rebuilds = 0;

/** Called after every membership change with the hosts added and removed. */
export type MembershipListener = (added: readonly Host[], removed: readonly Host[]) => void;

/** The identity key a Host would get for this endpoint (mirrors Host's constructor). */
export function endpointKey(e: LbEndpoint): string {
  const a = e.address;
  if (a.kind === 'pipe') return a.path;
  return a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}

interface HostPools {
  h1: ConnectionPool | undefined;
  h2: ConnectionPool | undefined;
  /** The socket these pools connect with: a host whose choice changes gets new pools. */
  socket: ResolvedSocket | undefined;
  /** istio.alpn: TLS pools per ALPN override list (joined), apart from the default ones. */
  byAlpn?: Map<string, { h1: ConnectionPool | undefined; h2: ConnectionPool | undefined }>;
}

/** A host's resolved socket and the metadata it was resolved from. */
interface HostSocket {
  readonly metadata: Host['metadata'];
  readonly localityMetadata: Host['localityMetadata'];
  readonly socket: ResolvedSocket;
}

export class Cluster implements UpstreamCluster {
  readonly name: string;
  readonly stats = new ClusterStats();
  readonly resources: ClusterResourceManager;
  readonly transport: TransportSocketFactory;
  hosts: readonly Host[] = [];
  initialized = false;
  /** Changes on each rebuild (membership, weights or health). */
  lbVersion = 0;
  /** The last assignment applied (EDS: what the next cluster object for this name is seeded with). */
  lastAssignment: ClusterLoadAssignment | undefined;

  protected readonly prioritySet: PrioritySet;
  protected readonly byKey = new Map<string, Host>();
  private readonly pools = new Map<Host, HostPools>();
  private readonly socketMatcher: TransportSocketMatcher | undefined;
  private readonly hostSockets = new Map<Host, HostSocket>();
  /** Pools of removed hosts (and of this cluster once draining) that are waiting to go idle. */
  private readonly drainingPools = new Set<ConnectionPool>();
  private readonly membershipListeners: MembershipListener[] = [];
  private overprovisioningFactor = DEFAULT_OVERPROVISIONING_FACTOR;
  private drainTimer: NodeJS.Timeout | undefined;
  private destroyed = false;
  private readonly decayMs: number;
  /** Passive health (outlier_detection); undefined when the cluster has none. */
  readonly outlier: OutlierDetector | undefined;
  /** Active health checking (health_checks); undefined when the cluster has none. */
  readonly healthChecker: HealthChecker | undefined;

  constructor(
    readonly config: ClusterConfig,
    protected readonly ctx: ClusterContext,
  ) {
    this.name = config.name;
    this.transport = ctx.transport;
    this.socketMatcher = ctx.socketMatcher;
    this.resources = new ClusterResourceManager(config.circuitBreakers, this.stats);
    this.prioritySet = new PrioritySet(Cluster.lbFactory(config, ctx.lbRegistry), config, this.stats, ctx.random, ctx.localCluster);
    this.decayMs = config.lbConfig.peakEwma?.decayMs ?? DEFAULT_DECAY_MS;
    // Health checking and outlier detection follow membership through the listener below; hosts
    // of the first assignment arrive after this constructor (subclasses apply it).
    if (config.healthChecks.length > 1) {
      throw new ConfigError(`cluster ${config.name}`, [
        { path: 'health_checks', message: 'multiple health checks are not supported (as in Envoy)' },
      ]);
    }
    const od = config.outlierDetection;
    this.outlier = od !== undefined ? new OutlierDetector(this, od, { random: ctx.random }) : undefined;
    const hc = config.healthChecks[0];
    this.healthChecker = hc !== undefined ? new HealthChecker(this, hc, { random: ctx.random }) : undefined;
    if (this.outlier !== undefined || this.healthChecker !== undefined) {
      this.addMembershipListener((added, removed) => {
        this.outlier?.hostsChanged(added, removed);
        this.healthChecker?.hostsChanged(added, removed);
      });
      this.outlier?.start();
      this.healthChecker?.start();
    }
  }

  private static lbFactory(config: ClusterConfig, registry: LbRegistry): LoadBalancerFactory {
    // CLUSTER_PROVIDED is only meaningful for ORIGINAL_DST, whose hosts are chosen by address;
    // its priority set still needs a balancer for the hosts it tracks.
    const name = config.lbPolicy === 'CLUSTER_PROVIDED' ? 'ROUND_ROBIN' : config.lbPolicy;
    const f = registry.get(name);
    if (f === undefined) {
      throw new ConfigError(`cluster ${config.name}`, [
        {
          path: 'lb_policy',
          message: `load-balancing policy ${name} is not registered (have: ${registry.names().join(', ')})`,
        },
      ]);
    }
    return f;
  }

  // ─────────────── data plane ───────────────

  /**
   * Pick a host (priorities, health, panic threshold, the policy). undefined = nothing usable; the
   * caller answers 503 UH and counts upstream_cx_none_healthy, as Envoy's router and tcp_proxy do.
   * Counts lb_healthy_panic when the chosen level is in panic.
   */
  chooseHost(ctx: LbContext | undefined): Host | undefined {
    return this.prioritySet.choose(ctx);
  }

  /**
   * The socket for `host`: with transport_socket_matches the host's own choice (resolved again
   * only when its metadata changed), else the cluster's.
   */
  socketFor(host: Host): ResolvedSocket | undefined {
    const m = this.socketMatcher;
    if (m === undefined) return undefined;
    const known = this.hostSockets.get(host);
    if (known !== undefined && known.metadata === host.metadata && known.localityMetadata === host.localityMetadata) {
      return known.socket;
    }
    const socket = m.resolve(host.metadata, host.localityMetadata);
    this.hostSockets.set(host, { metadata: host.metadata, localityMetadata: host.localityMetadata, socket });
    return socket;
  }

  /** What connections to `host` are made with (pools, the TCP proxy, CONNECT, health checks). */
  transportFor(host: Host): TransportSocketFactory {
    return this.socketMatcher === undefined ? this.transport : this.socketFor(host)!.factory;
  }

  httpPool(host: Host, downstream: HttpProtocol, alpnOverride?: readonly string[]): ConnectionPool {
    const up = this.config.upstreamProtocol;
    const h2 = up === 'http2' || (up === 'downstream' && downstream === 'HTTP/2');
    let entry = this.pools.get(host);
    const socket = this.socketMatcher === undefined ? undefined : this.socketFor(host);
    if (entry !== undefined && entry.socket !== socket) {
      // The endpoint's metadata now selects another socket: never reuse connections made with the
      // old one (plaintext where mTLS is now meant, or the reverse); they drain.
      this.drainHostPools(host);
      entry = undefined;
    }
    if (entry === undefined) {
      entry = { h1: undefined, h2: undefined, socket };
      this.pools.set(host, entry);
    }
    // Envoy keys pools by the transport socket options, the ALPN override among them; only TLS
    // connections offer ALPN, so plaintext hosts keep one set of pools.
    if (alpnOverride !== undefined && alpnOverride.length > 0) {
      const transport = socket?.factory ?? this.transport;
      if (transport.clientTls !== undefined) return this.alpnPool(host, entry, transport, alpnOverride, h2);
    }
    if (h2) {
      if (entry.h2 === undefined) entry.h2 = this.ctx.poolFactory(host, this, 'HTTP/2');
      return entry.h2;
    }
    if (entry.h1 === undefined) entry.h1 = this.ctx.poolFactory(host, this, 'HTTP/1.1');
    return entry.h1;
  }

  /** The pool of `host` whose TLS connections offer `alpn` (istio.alpn). */
  private alpnPool(host: Host, entry: HostPools, transport: TransportSocketFactory, alpn: readonly string[], h2: boolean): ConnectionPool {
    const key = alpnKey(alpn);
    const byAlpn = (entry.byAlpn ??= new Map());
    let e = byAlpn.get(key);
    if (e === undefined) {
      e = { h1: undefined, h2: undefined };
      byAlpn.set(key, e);
    }
    const make = (protocol: 'HTTP/1.1' | 'HTTP/2'): ConnectionPool => {
      const t = new AlpnOverrideTransport(transport, alpn);
      // The pool sees this cluster with the overriding transport (pools take `transportFor(host)`).
      const view = Object.create(this, { transport: { value: t }, transportFor: { value: () => t } }) as Cluster;
      return this.ctx.poolFactory(host, view, protocol);
    };
    if (h2) return (e.h2 ??= make('HTTP/2'));
    return (e.h1 ??= make('HTTP/1.1'));
  }

  /**
   * Outlier detection feedback: the result of one upstream attempt to `host` (its HTTP status,
   * or 503 for a connect failure / reset and 504 for a timeout). Hot path; no-op without
   * outlier_detection.
   */
  reportResult(host: Host, status: number): void {
    const o = this.outlier;
    if (o !== undefined) o.report(host, status);
  }

  /** Peak-EWMA feedback: the router reports each response's round-trip time for `host`. */
  observeRtt(host: Host, rttMs: number): void {
    observeRtt(host, rttMs, this.decayMs);
  }

  // ─────────────── control plane ───────────────

  /** Health checking / outlier detection changed some host's health: rebuild the balancers. */
  healthChanged(): void {
    this.rebuild();
  }

  /** Be told about hosts added and removed (health checking, outlier detection). */
  addMembershipListener(l: MembershipListener): void {
    this.membershipListeners.push(l);
  }

  updateAssignment(cla: ClusterLoadAssignment): void {
    this.lastAssignment = cla;
    const factor = cla.overprovisioningFactor > 0 ? cla.overprovisioningFactor : DEFAULT_OVERPROVISIONING_FACTOR;
    // Anything the balancers depend on (weights, priorities, health, order, factor) changed?
    let lbInputsChanged = factor !== this.overprovisioningFactor || !this.initialized;
    this.overprovisioningFactor = factor;
    const next: Host[] = [];
    const seen = new Set<string>();
    const added: Host[] = [];
    for (const group of cla.endpoints) {
      for (const e of group.lbEndpoints) {
        const key = endpointKey(e);
        if (seen.has(key)) continue; // Envoy keeps the first of duplicate addresses
        seen.add(key);
        let h = this.byKey.get(key);
        if (h === undefined) {
          h = this.makeHost(e, group.priority, group.locality, group.metadata);
          h.localityWeight = group.loadBalancingWeight;
          added.push(h);
        } else {
          if (
            h.weight !== e.weight ||
            h.priority !== group.priority ||
            h.edsHealth !== e.healthStatus ||
            h.localityWeight !== group.loadBalancingWeight ||
            localityKey(h.locality) !== localityKey(group.locality)
          ) {
            lbInputsChanged = true;
          }
          h.localityWeight = group.loadBalancingWeight;
          h.weight = e.weight;
          h.priority = group.priority;
          h.locality = group.locality;
          h.hostname = e.hostname;
          h.metadata = e.metadata;
          h.localityMetadata = group.metadata;
          h.edsHealth = e.healthStatus;
        }
        if (this.hosts[next.length] !== h) lbInputsChanged = true;
        next.push(h);
      }
    }
    if (next.length !== this.hosts.length) lbInputsChanged = true;
    // An identical push (EDS resends, DNS answers that did not change) keeps the balancers as they are.
    if (lbInputsChanged) this.replaceHosts(next, added);
    this.markInitialized();
  }

  /** Build a Host for an endpoint (DNS clusters override the address). */
  protected makeHost(
    e: LbEndpoint,
    priority: number,
    locality: Locality | undefined,
    localityMetadata?: Readonly<Record<string, unknown>>,
  ): Host {
    return new Host(e.address, {
      weight: e.weight,
      priority,
      locality,
      hostname: e.hostname,
      metadata: e.metadata,
      localityMetadata,
      health: e.healthStatus,
    });
  }

  /** Swap in a new host list; hosts not in it have their pools drained. */
  protected replaceHosts(next: Host[], added: readonly Host[]): void {
    const removed: Host[] = [];
    const nextSet = new Set(next);
    for (const h of this.hosts) if (!nextSet.has(h)) removed.push(h);
    for (const h of added) this.byKey.set(h.key, h);
    for (const h of removed) {
      if (this.byKey.get(h.key) === h) this.byKey.delete(h.key);
      this.drainHostPools(h);
      this.hostSockets.delete(h);
    }
    this.hosts = next;
    if (added.length > 0 || removed.length > 0) {
      this.stats.membershipChange++;
    }
    this.rebuild();
    if (added.length > 0 || removed.length > 0) {
      for (const l of this.membershipListeners) l(added, removed);
    }
  }

  protected rebuild(): void {
    this.lbVersion = ++rebuilds;
    this.prioritySet.rebuild(this.hosts, this.overprovisioningFactor, this.config.healthyPanicThresholdPercent);
  }

  protected markInitialized(): void {
    if (this.initialized) return;
    this.initialized = true;
    this.ctx.onInitialized?.(this);
  }

  /** Pool-level drain for one host (removed from membership). */
  protected drainHostPools(h: Host): void {
    const entry = this.pools.get(h);
    if (entry === undefined) return;
    this.pools.delete(h);
    const all = [entry.h1, entry.h2];
    if (entry.byAlpn !== undefined) for (const e of entry.byAlpn.values()) all.push(e.h1, e.h2);
    for (const p of all) {
      if (p === undefined) continue;
      p.drain();
      if (p.activeStreams + p.pending === 0) p.destroy();
      else this.drainingPools.add(p);
    }
  }

  /** Priority levels as last rebuilt (tests, admin). */
  get priorityLevels() {
    return this.prioritySet.levels;
  }

  /** Number of pools still open (live plus draining). */
  get openPools(): number {
    let n = this.drainingPools.size;
    for (const e of this.pools.values()) {
      n += (e.h1 ? 1 : 0) + (e.h2 ? 1 : 0);
      if (e.byAlpn !== undefined) for (const a of e.byAlpn.values()) n += (a.h1 ? 1 : 0) + (a.h2 ? 1 : 0);
    }
    return n;
  }

  /**
   * Make-before-break: stop using this cluster's connections, close each pool once it has no
   * streams, then destroy. `onIdle` runs when everything is closed (or at `maxMs`).
   */
  drainAndDestroy(onIdle?: () => void, checkMs = 1000, maxMs = 600_000): void {
    this.stopTimers();
    this.stopHealth();
    const started = Date.now();
    const check = (): void => {
      // Also catches pools created after the drain began (a request that still held this cluster).
      for (const h of [...this.pools.keys()]) this.drainHostPools(h);
      for (const p of this.drainingPools) {
        if (p.activeStreams + p.pending === 0) {
          p.destroy();
          this.drainingPools.delete(p);
        }
      }
      if (this.drainingPools.size === 0 || Date.now() - started >= maxMs) {
        if (this.drainTimer !== undefined) clearInterval(this.drainTimer);
        this.drainTimer = undefined;
        this.destroy();
        onIdle?.();
      }
    };
    check();
    if (!this.destroyed) {
      this.drainTimer = setInterval(check, checkMs);
      this.drainTimer.unref();
    }
  }

  /** Close every pool now and stop all timers. */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    if (this.drainTimer !== undefined) clearInterval(this.drainTimer);
    this.drainTimer = undefined;
    this.stopTimers();
    this.stopHealth();
    for (const e of this.pools.values()) {
      e.h1?.destroy();
      e.h2?.destroy();
      if (e.byAlpn !== undefined) {
        for (const a of e.byAlpn.values()) {
          a.h1?.destroy();
          a.h2?.destroy();
        }
      }
    }
    this.pools.clear();
    for (const p of this.drainingPools) p.destroy();
    this.drainingPools.clear();
  }

  get isDestroyed(): boolean {
    return this.destroyed;
  }

  /** Stop active health checking and outlier detection timers (destroy / drain). */
  private stopHealth(): void {
    this.healthChecker?.stop();
    this.outlier?.stop();
  }

  /** Subclasses with timers (DNS refresh, ORIGINAL_DST cleanup) stop them here. */
  protected stopTimers(): void {}

  /** What admin /clusters shows for this cluster. */
  describe(): ClusterDescription {
    return describeCluster(
      this,
      this.ctx.addedViaApi,
      this.socketMatcher === undefined ? undefined : (h) => this.socketFor(h)!.name,
    );
  }
}

/** STATIC: hosts come from the cluster's load_assignment; ready at once. */
export class StaticCluster extends Cluster {
  constructor(config: ClusterConfig, ctx: ClusterContext) {
    super(config, ctx);
    this.updateAssignment(
      config.loadAssignment ?? {
        clusterName: config.name,
        endpoints: [],
        overprovisioningFactor: DEFAULT_OVERPROVISIONING_FACTOR,
      },
    );
  }
}

/**
 * EDS: hosts arrive through `updateAssignment` (fed by the xDS client through the manager). The
 * cluster is warming (`initialized === false`) until the first assignment; `seed` lets the manager
 * carry the last assignment over when the cluster object is replaced for a config change.
 */
export class EdsCluster extends Cluster {
  constructor(config: ClusterConfig, ctx: ClusterContext, seed?: ClusterLoadAssignment) {
    super(config, ctx);
    if (seed !== undefined) this.updateAssignment(seed);
    else this.rebuild();
  }
}
