/**
 * One xDS stream for all --concurrency workers. The primary runs the only XdsClient (one ADS
 * stream, as Envoy has one per process) and decides ACK/NACK with the same pure decoders the
 * workers use; it subscribes the way a worker's DynamicConfig does (wildcard LDS/CDS; RDS, EDS
 * and SDS by name while something references them) and forwards every watcher event to the
 * workers over IPC, carrying each accepted resource as its proto3 JSON. A worker's
 * RelayedXdsClient decodes that JSON again (deterministic, so the result equals what the primary
 * accepted) and hands it to its DynamicConfig through the XdsClient watch API, so the worker's
 * make-before-break apply path is exactly the single-process one.
 *
 * Leans towards simple replay over clever diffing: the primary keeps the last event per
 * resource and replays them all to a worker that says hello (a new or restarted worker).
 */
import type { DecodeContext } from '../config/envoy/context';
import type { Bootstrap, ClusterConfig, ListenerConfig } from '../config/types';
import { listenerDependencies, resolveStaticCluster, resourceTypeDefs, sdsNames, type XdsClientLike } from '../dynamic/xds-config';
import { logger } from '../../common/logger';
import { XdsClient, type XdsClientOptions, type XdsResourceError, type XdsStats } from '../../xds-client/index';
import { TYPE_URLS } from '../../xds-client/protos';
import type { ResourceTypeDef, XdsWatcher } from '../../xds-client/resource-types';
import type { XdsSnapshot, XdsTypeSnapshot } from '../../xds-client/snapshot';

const log = logger('xds-relay');

/** One watcher event, primary → workers. */
export type RelayEvent =
  | { readonly t: 'changed'; readonly typeUrl: string; readonly name: string; readonly json: unknown; readonly version: string }
  | { readonly t: 'removed' | 'absent'; readonly typeUrl: string; readonly name: string }
  | { readonly t: 'error'; readonly typeUrl: string; readonly name: string; readonly version: string; readonly message: string; readonly issues: XdsResourceError['issues'] };

/** IPC envelope for relay traffic (both directions). */
export type RelayMessage =
  | { readonly meshlet: 'xds'; readonly events: readonly RelayEvent[]; readonly stats: XdsStats }
  | { readonly meshlet: 'xds-hello' };

export function isRelayMessage(m: unknown): m is RelayMessage {
  return typeof m === 'object' && m !== null && ((m as { meshlet?: unknown }).meshlet === 'xds' || (m as { meshlet?: unknown }).meshlet === 'xds-hello');
}

/** Decoders per type URL, shared by the primary (ACK/NACK) and the workers (apply). */
function decoders(ctx: DecodeContext): Map<string, ResourceTypeDef<unknown>> {
  return new Map(resourceTypeDefs(ctx).map((d) => [d.typeUrl, d]));
}

/**
 * The primary's side: the single XdsClient, subscriptions that mirror a worker's, and the event
 * log replayed to workers. `send` delivers one message to every live worker.
 */
export class XdsRelay {
  readonly client: XdsClient;
  /** Last proto3 JSON decoded per type and name (what a later onChanged forwards). */
  private readonly lastJson = new Map<string, unknown>();
  /** Last event per resource, replayed to a worker that says hello. */
  private readonly state = new Map<string, RelayEvent>();
  private readonly refs = new Map<string, { cancel: () => void; owners: Set<string> }>();
  private pending: RelayEvent[] = [];
  private flushQueued = false;
  private readonly cancels: (() => void)[] = [];

  constructor(
    bootstrap: Bootstrap,
    ctx: DecodeContext,
    private readonly send: (m: RelayMessage) => void,
  ) {
    const dyn = bootstrap.dynamicResources!;
    this.client = new XdsClient({ node: bootstrap.node, dynamicResources: dyn, resolveCluster: (n) => resolveStaticCluster(bootstrap, n) });
    for (const def of decoders(ctx).values()) {
      this.client.registerType({
        ...def,
        decode: (j) => {
          const r = def.decode(j);
          if (r.value !== undefined) this.lastJson.set(`${def.typeUrl}\u0000${def.name(r.value)}`, j);
          return r;
        },
      });
    }
    if (dyn.cdsConfig) this.cancels.push(this.client.watch<ClusterConfig>(TYPE_URLS.cluster, '*', this.watcher(TYPE_URLS.cluster)));
    if (dyn.ldsConfig) this.cancels.push(this.client.watch<ListenerConfig>(TYPE_URLS.listener, '*', this.watcher(TYPE_URLS.listener)));
  }

  start(): void {
    this.client.start();
  }

  /** Everything current, for a new or restarted worker. */
  replay(): RelayMessage {
    return { meshlet: 'xds', events: [...this.state.values()], stats: this.client.stats() };
  }

  close(): void {
    for (const c of this.cancels) c();
    for (const r of this.refs.values()) r.cancel();
    this.refs.clear();
    this.client.close();
  }

  private watcher(typeUrl: string): XdsWatcher<unknown> {
    return {
      onChanged: (name, value, version) => {
        const json = this.lastJson.get(`${typeUrl}\u0000${name}`);
        this.emit({ t: 'changed', typeUrl, name, json, version });
        this.follow(typeUrl, name, value);
      },
      onRemoved: (name) => {
        this.lastJson.delete(`${typeUrl}\u0000${name}`);
        this.emit({ t: 'removed', typeUrl, name });
        this.follow(typeUrl, name, undefined);
      },
      onDoesNotExist: (name) => {
        this.lastJson.delete(`${typeUrl}\u0000${name}`);
        this.emit({ t: 'absent', typeUrl, name });
        if (name !== '*') this.follow(typeUrl, name, undefined);
      },
      onError: (err: XdsResourceError) => {
        this.emit({ t: 'error', typeUrl, name: err.name, version: err.version, message: err.message, issues: err.issues });
      },
    };
  }

  /** Subscribe to what a listener or cluster references, as the workers' DynamicConfig will. */
  private follow(typeUrl: string, name: string, value: unknown): void {
    const owner = `${typeUrl}\u0000${name}`;
    const want: [string, string][] = [];
    if (typeUrl === TYPE_URLS.listener && value) {
      const deps = listenerDependencies(value as ListenerConfig);
      for (const r of deps.routes) want.push([TYPE_URLS.routeConfiguration, r]);
      for (const s of deps.secrets) want.push([TYPE_URLS.secret, s]);
    } else if (typeUrl === TYPE_URLS.cluster && value) {
      const c = value as ClusterConfig;
      if (c.type === 'EDS') want.push([TYPE_URLS.clusterLoadAssignment, c.edsServiceName ?? c.name]);
      for (const s of sdsNames(c.transportSocket?.common)) want.push([TYPE_URLS.secret, s]);
    } else if (typeUrl !== TYPE_URLS.listener && typeUrl !== TYPE_URLS.cluster) return;
    const keys = new Set(want.map(([t, n]) => `${t}\u0000${n}`));
    for (const [k, r] of this.refs) {
      if (r.owners.has(owner) && !keys.has(k)) {
        r.owners.delete(owner);
        if (r.owners.size === 0) {
          r.cancel();
          this.refs.delete(k);
          this.state.delete(k); // nothing references it: a worker starting later need not see it
          this.lastJson.delete(k);
        }
      }
    }
    for (const [t, n] of want) {
      const k = `${t}\u0000${n}`;
      const r = this.refs.get(k);
      if (r) r.owners.add(owner);
      else this.refs.set(k, { cancel: this.client.watch(t, n, this.watcher(t)), owners: new Set([owner]) });
    }
  }

  private emit(e: RelayEvent): void {
    const key = `${e.typeUrl}\u0000${e.name}`;
    if (e.t === 'changed' || e.t === 'absent') this.state.set(key, e);
    else if (e.t === 'removed') this.state.delete(key);
    this.pending.push(e);
    // Batch the events of one response (delivered synchronously or in one microtask burst).
    if (!this.flushQueued) {
      this.flushQueued = true;
      setImmediate(() => {
        this.flushQueued = false;
        const events = this.pending;
        this.pending = [];
        this.send({ meshlet: 'xds', events, stats: this.client.stats() });
      });
    }
  }
}

interface Cached {
  value: unknown;
  json: unknown;
  version: string;
  at: string;
}

/**
 * A worker's stand-in for XdsClient: same registerType/watch API, fed by the primary's events.
 * `send` reaches the primary (hello on start). Values are decoded here with the registered types.
 */
export class RelayedXdsClient implements XdsClientLike {
  private readonly defs = new Map<string, ResourceTypeDef<unknown>>();
  private readonly cache = new Map<string, Map<string, Cached>>();
  private readonly errors = new Map<string, { version: string; message: string; at: string }>();
  private readonly watchers = new Map<string, Map<string, Set<XdsWatcher<unknown>>>>();
  private lastStats: XdsStats = { connected: false, streamsStarted: 0, types: {} };
  private closed = false;
  private readonly onMessage = (m: unknown): void => {
    if (isRelayMessage(m) && m.meshlet === 'xds' && !this.closed) this.apply(m);
  };

  constructor(
    private readonly ipc: { on(e: 'message', f: (m: unknown) => void): unknown; off(e: 'message', f: (m: unknown) => void): unknown },
    private readonly send: (m: RelayMessage) => void,
  ) {}

  /** Factory for MeshletServerOptions.xdsClientFactory. */
  static factory(ipc: RelayedXdsClient['ipc'], send: (m: RelayMessage) => void): (o: XdsClientOptions) => XdsClientLike {
    return () => new RelayedXdsClient(ipc, send);
  }

  registerType<T>(def: ResourceTypeDef<T>): void {
    this.defs.set(def.typeUrl, def as ResourceTypeDef<unknown>);
  }

  watch<T>(typeUrl: string, name: string, watcher: XdsWatcher<T>): () => void {
    const w = watcher as XdsWatcher<unknown>;
    let byName = this.watchers.get(typeUrl);
    if (!byName) this.watchers.set(typeUrl, (byName = new Map()));
    let set = byName.get(name);
    if (!set) byName.set(name, (set = new Set()));
    set.add(w);
    const cached = this.cache.get(typeUrl);
    if (cached) {
      queueMicrotask(() => {
        if (!set.has(w)) return;
        if (name === '*') for (const [n, c] of cached) w.onChanged(n, c.value, c.version);
        else {
          const c = cached.get(name);
          if (c) w.onChanged(name, c.value, c.version);
        }
      });
    }
    return () => set.delete(w);
  }

  start(): void {
    this.ipc.on('message', this.onMessage);
    this.send({ meshlet: 'xds-hello' });
  }

  close(): void {
    this.closed = true;
    this.ipc.off('message', this.onMessage);
  }

  stats(): XdsStats {
    return this.lastStats;
  }

  /** What this worker holds, in the shape of XdsClient.snapshot() (accepted values; NACK details). */
  snapshot(): XdsSnapshot {
    const types: XdsTypeSnapshot[] = [];
    for (const [typeUrl, byName] of this.cache) {
      const st = this.lastStats.types[typeUrl];
      types.push({
        type_url: typeUrl,
        version_info: st?.version ?? '',
        resources: [...byName.keys()].sort().map((name) => {
          const c = byName.get(name)!;
          const err = this.errors.get(`${typeUrl}\u0000${name}`);
          return {
            name,
            version_info: c.version,
            last_updated: c.at,
            client_status: err ? 'NACKED' : 'ACKED',
            resource: { '@type': typeUrl, ...(c.json as Record<string, unknown>) },
            ...(err ? { error_state: { last_update_attempt: err.at, details: err.message, version_info: err.version } } : {}),
          };
        }),
      });
    }
    return { connected: this.lastStats.connected, types };
  }

  private apply(m: Extract<RelayMessage, { meshlet: 'xds' }>): void {
    this.lastStats = m.stats;
    for (const e of m.events) {
      const all = this.watchers.get(e.typeUrl);
      const named = [...(all?.get(e.name) ?? [])];
      const wild = e.name === '*' ? [] : [...(all?.get('*') ?? [])];
      switch (e.t) {
        case 'changed': {
          const def = this.defs.get(e.typeUrl);
          const r = def?.decode(e.json);
          if (!def || !r || r.value === undefined) {
            // Same decoder as the primary's, so this means a build mismatch: keep the last value.
            log.error({ typeUrl: e.typeUrl, name: e.name }, 'relayed resource did not decode in the worker; keeping the last value');
            continue;
          }
          let byName = this.cache.get(e.typeUrl);
          if (!byName) this.cache.set(e.typeUrl, (byName = new Map()));
          byName.set(e.name, { value: r.value, json: e.json, version: e.version, at: new Date().toISOString() });
          this.errors.delete(`${e.typeUrl}\u0000${e.name}`);
          for (const w of [...named, ...wild]) w.onChanged(e.name, r.value, e.version);
          break;
        }
        case 'removed':
          this.cache.get(e.typeUrl)?.delete(e.name);
          for (const w of [...named, ...wild]) w.onRemoved(e.name);
          break;
        case 'absent':
          if (e.name !== '*') this.cache.get(e.typeUrl)?.delete(e.name);
          for (const w of [...named, ...wild]) w.onDoesNotExist(e.name);
          break;
        case 'error':
          this.errors.set(`${e.typeUrl}\u0000${e.name}`, { version: e.version, message: e.message, at: new Date().toISOString() });
          for (const w of [...named, ...wild]) w.onError?.({ typeUrl: e.typeUrl, name: e.name, version: e.version, message: e.message, issues: e.issues });
          break;
      }
    }
  }
}
