/**
 * Dynamic configuration: the seam between the xDS client and the running proxy. It registers the
 * resource types (with the same pure decoders the bootstrap uses), subscribes the way Envoy does
 * (wildcard LDS and CDS; RDS, EDS and SDS by name as listeners and clusters reference them, and
 * unsubscribed when nothing references them any more), and applies accepted resources to their
 * owners: clusters and endpoints to the cluster manager, listeners to the listener manager, route
 * tables to the RDS table, secrets to the certificate store — each through its narrow seam in
 * config-targets.ts, never through the server object.
 *
 * Leans make-before-break: a listener warms until its routes and secrets have arrived (or were
 * declared absent) before it is added or replaces the old one; EDS clusters warm inside the
 * cluster manager until their first assignment. start() resolves (and the server goes LIVE) once
 * the first CDS and LDS responses are applied and warm, or the initial fetch timeout passes
 * (Envoy's init manager). A NACK never touches what is serving.
 */
import { createPrivateKey, X509Certificate } from 'node:crypto';
import type { DecodeContext } from '../config/envoy/context';
import {
  decodeCluster,
  decodeClusterLoadAssignment,
  decodeListener,
  decodeRouteConfiguration,
  decodeSecret,
} from '../config/envoy/index';
import { readDataSource } from '../../common/data-source';
import type {
  Bootstrap,
  ClusterConfig,
  ClusterLoadAssignment,
  CommonTlsConfig,
  FilterChainConfig,
  ListenerConfig,
  RouteConfiguration,
  SecretConfig,
} from '../config/types';
import { bindProblem } from '../listeners/bind-check';
import type { XdsConfigTargets } from './config-targets';
import { logger } from '../../common/logger';
import { type ResolvedCluster, XdsClient, type XdsClientOptions, type XdsResourceError } from '../../xds-client/index';
import { TYPE_URLS } from '../../xds-client/protos';
import type { ResourceTypeDef } from '../../xds-client/resource-types';

const log = logger('xds-config');

/** A watched name with the set of resources that reference it; cancelled at zero references. */
interface RefWatch {
  readonly cancel: () => void;
  readonly refs: Set<string>;
}

/**
 * Watches by name, reference-counted by owner ("cluster:x", "listener:y"), with the reverse index
 * owner → names so re-pointing one owner costs its own references, not a scan of every watch
 * (1,000 clusters arriving in one CDS response would otherwise be quadratic).
 */
class RefTable {
  readonly watches = new Map<string, RefWatch>();
  private readonly byOwner = new Map<string, Set<string>>();

  /** Point `owner`'s references at exactly `names`; watch new names, cancel unreferenced ones. */
  retarget(owner: string, names: readonly string[], watch: (name: string) => () => void): void {
    const had = this.byOwner.get(owner);
    if (had === undefined && names.length === 0) return;
    const want = new Set(names);
    if (had !== undefined) {
      for (const n of had) {
        if (want.has(n)) continue;
        const w = this.watches.get(n);
        if (w === undefined) continue;
        w.refs.delete(owner);
        if (w.refs.size === 0) {
          w.cancel();
          this.watches.delete(n);
        }
      }
    }
    for (const n of want) {
      const w = this.watches.get(n);
      if (w) w.refs.add(owner);
      else this.watches.set(n, { cancel: watch(n), refs: new Set([owner]) });
    }
    if (want.size > 0) this.byOwner.set(owner, want);
    else this.byOwner.delete(owner);
  }

  /** Cancel every watch (close). */
  clear(): void {
    for (const w of this.watches.values()) w.cancel();
    this.watches.clear();
    this.byOwner.clear();
  }
}

/** What /config_dump shows for a dynamic listener. */
export interface DynamicListenerState {
  readonly name: string;
  active?: { version: string; lastUpdated: string; config: ListenerConfig };
  warming?: { version: string; lastUpdated: string; config: ListenerConfig };
  error?: { version: string; lastUpdateAttempt: string; details: string };
}

/** Names of SDS secrets (with an sds_config) a TLS context refers to. */
export function sdsNames(common: CommonTlsConfig | undefined): string[] {
  if (!common) return [];
  const out: string[] = [];
  for (const s of common.tlsCertificateSdsSecretConfigs) if (s.sdsConfig) out.push(s.name);
  const vc = common.validationContextSdsSecretConfig;
  if (vc?.sdsConfig) out.push(vc.name);
  return out;
}

function listenerChains(l: ListenerConfig): FilterChainConfig[] {
  return l.defaultFilterChain ? [...l.filterChains, l.defaultFilterChain] : [...l.filterChains];
}

/** RDS names and SDS secret names a listener needs before it can serve. */
export function listenerDependencies(l: ListenerConfig): { routes: string[]; secrets: string[] } {
  const routes = new Set<string>();
  const secrets = new Set<string>();
  for (const c of listenerChains(l)) {
    for (const s of sdsNames(c.transportSocket?.common)) secrets.add(s);
    for (const f of c.filters) {
      if (f.kind === 'http_connection_manager' && f.hcm.routeSource.kind === 'rds') routes.add(f.hcm.routeSource.routeConfigName);
    }
  }
  return { routes: [...routes], secrets: [...secrets] };
}

/**
 * Validate a secret's own contents at decode time, so a bad one is NACKed rather than accepted and
 * then refused: PEMs parse, the key matches the certificate, the certificate is within its validity
 * window. Verification against the trust bundle happens in the certificate store on swap.
 */
export function checkSecretContents(s: SecretConfig): string | undefined {
  try {
    if (s.tlsCertificate) {
      const chain = readDataSource(s.tlsCertificate.certificateChain);
      const key = readDataSource(s.tlsCertificate.privateKey);
      const leaf = new X509Certificate(chain);
      if (!leaf.checkPrivateKey(createPrivateKey(key))) return 'tls_certificate.private_key does not match the certificate';
      const now = Date.now();
      if (Date.parse(leaf.validTo) <= now) return `tls_certificate.certificate_chain expired at ${leaf.validTo}`;
      if (Date.parse(leaf.validFrom) > now + 5 * 60_000) return `tls_certificate.certificate_chain is not valid before ${leaf.validFrom}`;
    }
    if (s.validationContext?.trustedCa) new X509Certificate(readDataSource(s.validationContext.trustedCa));
  } catch (e) {
    return (e as Error).message;
  }
  return undefined;
}

/**
 * What DynamicConfig needs from an xDS client: the real XdsClient, or (in a --concurrency worker)
 * the relay fed by the primary's single stream (proxy/runtime/xds-relay.ts).
 */
export type XdsClientLike = Pick<XdsClient, 'registerType' | 'watch' | 'start' | 'close' | 'snapshot' | 'stats'>;

/** Builds the xDS client DynamicConfig uses (default: a real XdsClient with its own ADS stream). */
export type XdsClientFactory = (opts: XdsClientOptions) => XdsClientLike;

/**
 * The five xDS resource types with meshlet's decoders: shared by the single-process client and
 * the --concurrency primary (proxy/runtime/xds-relay.ts), so both ACK and NACK the same way.
 */
export function resourceTypeDefs(ctx: DecodeContext): ResourceTypeDef<unknown>[] {
  const listener: ResourceTypeDef<ListenerConfig> = {
    typeUrl: TYPE_URLS.listener,
    wildcard: true,
    decode: (j) => decodeListener(j, ctx),
    name: (v) => v.name,
    // Envoy NACKs a listener it cannot bind (and applies the rest of the push).
    check: bindProblem,
  };
  const route: ResourceTypeDef<RouteConfiguration> = { typeUrl: TYPE_URLS.routeConfiguration, wildcard: false, decode: (j) => decodeRouteConfiguration(j, ctx), name: (v) => v.name };
  const cluster: ResourceTypeDef<ClusterConfig> = { typeUrl: TYPE_URLS.cluster, wildcard: true, decode: (j) => decodeCluster(j, ctx), name: (v) => v.name };
  const endpoints: ResourceTypeDef<ClusterLoadAssignment> = {
    typeUrl: TYPE_URLS.clusterLoadAssignment,
    wildcard: false,
    decode: (j) => decodeClusterLoadAssignment(j, ctx),
    name: (v) => v.clusterName,
  };
  const secret: ResourceTypeDef<SecretConfig> = {
    typeUrl: TYPE_URLS.secret,
    wildcard: false,
    decode: (j) => {
      const r = decodeSecret(j, ctx);
      if (!r.value) return r;
      const bad = checkSecretContents(r.value);
      return bad ? { errors: [{ path: '(secret)', message: bad }], warnings: r.warnings } : r;
    },
    name: (v) => v.name,
  };
  return [listener, route, cluster, endpoints, secret] as unknown as ResourceTypeDef<unknown>[];
}

export class DynamicConfig {
  readonly client: XdsClientLike;
  readonly listenerStates = new Map<string, DynamicListenerState>();
  private readonly eds = new RefTable();
  private readonly rds = new RefTable();
  private readonly sds = new RefTable();
  /** Secret names known to be missing (does-not-exist): they do not hold warming forever. */
  private readonly absent = new Set<string>();
  private readonly pendingListeners = new Map<string, { config: ListenerConfig; version: string }>();
  private cdsInitialized = false;
  private ldsInitialized = false;
  private initTimer: NodeJS.Timeout | undefined;
  /** Listener binds in progress (init waits for them). */
  private binding = 0;
  private readonly cancels: (() => void)[] = [];

  constructor(
    private readonly targets: XdsConfigTargets,
    private readonly bootstrap: Bootstrap,
    private readonly ctx: DecodeContext,
    clientFactory: XdsClientFactory = (o) => new XdsClient(o),
  ) {
    const dyn = bootstrap.dynamicResources!;
    this.client = clientFactory({
      node: bootstrap.node,
      dynamicResources: dyn,
      resolveCluster: (name) => this.resolveStaticCluster(name),
    });
    for (const def of resourceTypeDefs(this.ctx)) this.client.registerType(def);
    this.cdsInitialized = !dyn.cdsConfig;
    this.ldsInitialized = !dyn.ldsConfig;
    // Secrets installed outside SDS (the CSR provider) also unblock warming listeners.
    this.targets.secrets.on('rotate', this.onStoreRotate);
    // A cluster that warms on its own (DNS resolution) completes the initial fetch when it is done.
    this.cancels.push(this.targets.clusters.onUpdate(() => this.checkInitialized()));
  }

  private readonly onStoreRotate = (): void => this.promotePending();

  /** Open the stream and subscribe. Resolves once the initial config is applied or timed out. */
  start(): Promise<void> {
    const dyn = this.bootstrap.dynamicResources!;
    const ready = new Promise<void>((resolve) => {
      this.onInitialized = resolve;
    });
    this.client.start();
    if (dyn.cdsConfig) this.cancels.push(this.client.watch<ClusterConfig>(TYPE_URLS.cluster, '*', this.cdsWatcher));
    if (dyn.ldsConfig) this.cancels.push(this.client.watch<ListenerConfig>(TYPE_URLS.listener, '*', this.ldsWatcher));
    // Envoy's init manager: initial_fetch_timeout bounds how long start-up waits.
    this.initTimer = setTimeout(() => {
      if (!this.cdsInitialized || !this.ldsInitialized) log.warn('initial configuration not complete within initial_fetch_timeout; going live');
      this.cdsInitialized = this.ldsInitialized = true;
      this.checkInitialized();
    }, dyn.initialFetchTimeoutMs || 15_000);
    this.initTimer.unref();
    this.checkInitialized();
    return ready;
  }

  private onInitialized: (() => void) | undefined;

  private checkInitialized(): void {
    if (!this.onInitialized) return;
    if (!this.cdsInitialized || !this.ldsInitialized) return;
    if (this.targets.clusters.warmingCount > 0 && this.initTimer) return;
    if ((this.pendingListeners.size > 0 || this.binding > 0) && this.initTimer) return;
    clearTimeout(this.initTimer);
    this.initTimer = undefined;
    const done = this.onInitialized;
    this.onInitialized = undefined;
    done();
  }

  // Per-resource rejections are logged at debug: the stream logs one warn line per NACKed
  // response (with the capped error_detail), so a hostile push of 50,000 bad resources cannot
  // flood the log.

  // ───────────── CDS / EDS ─────────────

  private readonly cdsWatcher = {
    onChanged: (name: string, cfg: ClusterConfig, version: string): void => {
      try {
        this.targets.clusters.addOrUpdate(cfg, { addedViaApi: true });
      } catch (e) {
        log.warn({ cluster: name, version, err: (e as Error).message }, 'cluster rejected by the cluster manager');
        return;
      }
      const service = cfg.type === 'EDS' ? (cfg.edsServiceName ?? name) : undefined;
      this.retarget(this.eds, `cluster:${name}`, service ? [service] : [], (svc) =>
        this.client.watch<ClusterLoadAssignment>(TYPE_URLS.clusterLoadAssignment, svc, this.edsWatcher),
      );
      this.retarget(this.sds, `cluster:${name}`, sdsNames(cfg.transportSocket?.common), (s) => this.watchSecret(s));
      this.cdsInitialized = true;
      this.checkInitialized();
    },
    onRemoved: (name: string): void => {
      this.targets.clusters.remove(name);
      this.retarget(this.eds, `cluster:${name}`, [], () => () => {});
      this.retarget(this.sds, `cluster:${name}`, [], () => () => {});
    },
    onDoesNotExist: (name: string): void => {
      if (name === '*') {
        this.cdsInitialized = true;
        this.checkInitialized();
      } else this.cdsWatcher.onRemoved(name);
    },
    onError: (err: XdsResourceError): void => {
      log.debug({ cluster: err.name, version: err.version }, `CDS update rejected: ${err.message}`);
    },
  };

  private readonly edsWatcher = {
    onChanged: (name: string, cla: ClusterLoadAssignment): void => {
      this.targets.clusters.updateEdsService(name, cla);
      this.checkInitialized();
    },
    onRemoved: (name: string): void => {
      // Envoy keeps the last assignment when an EDS resource is removed from a SotW response.
      log.info({ service: name }, 'EDS resource removed; keeping last endpoints');
    },
    onDoesNotExist: (name: string): void => {
      this.targets.clusters.updateEdsService(name, { clusterName: name, endpoints: [], overprovisioningFactor: 140 });
      this.checkInitialized();
    },
    onError: (err: XdsResourceError): void => {
      log.debug({ service: err.name, version: err.version }, `EDS update rejected: ${err.message}`);
    },
  };

  // ───────────── SDS ─────────────

  private watchSecret(name: string): () => void {
    return this.client.watch<SecretConfig>(TYPE_URLS.secret, name, {
      onChanged: (n, secret, version) => {
        this.absent.delete(n);
        // A local CSR provider owns this secret: the pushed one is only its provisioning
        // credential; listeners warm once the provider's own certificate is in the store.
        const provider = this.targets.secretOwner;
        if (provider?.owns(n)) {
          log.info({ secret: n, version }, 'secret owned by the local certificate provider; not served');
          void provider.offerSdsSecret(secret);
          return;
        }
        void this.targets.secrets.update(n, secret).then((r) => {
          if (!r.ok) log.warn({ secret: n, version }, `secret not applied: ${r.error}`);
          else log.info({ secret: n, version }, 'secret applied');
          this.promotePending();
        });
      },
      onRemoved: (n) => log.info({ secret: n }, 'SDS secret removed; keeping the current one'),
      onDoesNotExist: (n) => {
        this.absent.add(n);
        this.promotePending();
      },
      onError: (err) => log.debug({ secret: err.name, version: err.version }, `SDS update rejected: ${err.message}`),
    });
  }

  // ───────────── LDS / RDS ─────────────

  private readonly ldsWatcher = {
    onChanged: (name: string, cfg: ListenerConfig, version: string): void => {
      const deps = listenerDependencies(cfg);
      this.retarget(this.rds, `listener:${name}`, deps.routes, (r) => this.watchRoute(r));
      this.retarget(this.sds, `listener:${name}`, deps.secrets, (s) => this.watchSecret(s));
      const st = this.state(name);
      st.warming = { version, lastUpdated: new Date().toISOString(), config: cfg };
      this.pendingListeners.set(name, { config: cfg, version });
      this.promotePending();
      this.ldsInitialized = true;
      this.checkInitialized();
    },
    onRemoved: (name: string): void => {
      this.pendingListeners.delete(name);
      this.listenerStates.delete(name);
      this.targets.listeners.remove(name);
      this.retarget(this.rds, `listener:${name}`, [], () => () => {});
      this.retarget(this.sds, `listener:${name}`, [], () => () => {});
    },
    onDoesNotExist: (name: string): void => {
      if (name === '*') {
        this.ldsInitialized = true;
        this.checkInitialized();
      } else this.ldsWatcher.onRemoved(name);
    },
    onError: (err: XdsResourceError): void => {
      const st = this.state(err.name);
      st.error = { version: err.version, lastUpdateAttempt: new Date().toISOString(), details: err.message };
      log.debug({ listener: err.name, version: err.version }, `LDS update rejected: ${err.message}`);
    },
  };

  private watchRoute(name: string): () => void {
    return this.client.watch<RouteConfiguration>(TYPE_URLS.routeConfiguration, name, {
      onChanged: (n, rc) => {
        this.targets.routes.set(n, rc);
        this.promotePending();
      },
      onRemoved: (n) => log.info({ route: n }, 'RDS resource removed; keeping the last routes'),
      onDoesNotExist: (n) => {
        this.absent.add(`route:${n}`);
        this.promotePending();
      },
      onError: (err) => log.debug({ route: err.name, version: err.version }, `RDS update rejected: ${err.message}`),
    });
  }

  private state(name: string): DynamicListenerState {
    let st = this.listenerStates.get(name);
    if (!st) {
      st = { name };
      this.listenerStates.set(name, st);
    }
    return st;
  }

  /** Add every warming listener whose routes and secrets are now available (or known absent). */
  private promotePending(): void {
    for (const [name, p] of [...this.pendingListeners]) {
      const deps = listenerDependencies(p.config);
      const routesReady = deps.routes.every((r) => this.targets.routes.has(r) || this.absent.has(`route:${r}`));
      // A secret the local CSR provider owns is ready only once the provider installed it: the
      // control plane does not send it (no keys over SDS), so "absent" says nothing about it.
      const owned = (s: string) => this.targets.secretOwner?.owns(s) === true;
      const secretsReady = deps.secrets.every((s) => this.targets.secrets.get(s) !== undefined || (this.absent.has(s) && !owned(s)));
      if (!routesReady || !secretsReady) continue;
      this.pendingListeners.delete(name);
      const st = this.state(name);
      this.binding++;
      this.targets.listeners.addOrUpdate(p.config).then(
        () => {
          this.binding--;
          st.active = { version: p.version, lastUpdated: new Date().toISOString(), config: p.config };
          if (st.warming?.config === p.config) st.warming = undefined;
          st.error = undefined;
          this.checkInitialized();
        },
        (e: Error) => {
          this.binding--;
          st.error = { version: p.version, lastUpdateAttempt: new Date().toISOString(), details: `cannot bind: ${e.message}` };
          st.warming = undefined;
          log.error({ listener: name, err: e.message }, 'dynamic listener could not be added');
          this.checkInitialized();
        },
      );
    }
  }

  /** Point `owner`'s references in `table` at exactly `names` (see RefTable). */
  private retarget(table: RefTable, owner: string, names: readonly string[], watch: (name: string) => () => void): void {
    table.retarget(owner, names, watch);
  }

  /** envoy_grpc.cluster_name → the static cluster's first endpoint and its TLS settings. */
  private resolveStaticCluster(name: string): ResolvedCluster | undefined {
    return resolveStaticCluster(this.bootstrap, name);
  }

  close(): void {
    this.targets.secrets.off('rotate', this.onStoreRotate);
    clearTimeout(this.initTimer);
    for (const c of this.cancels.splice(0)) c();
    for (const t of [this.eds, this.rds, this.sds]) t.clear();
    this.client.close();
  }
}

/** envoy_grpc.cluster_name → the bootstrap's static cluster's first endpoint and its TLS settings. */
export function resolveStaticCluster(bootstrap: Bootstrap, name: string): ResolvedCluster | undefined {
  const cfg = bootstrap.staticResources.clusters.find((c) => c.name === name);
  const ep = cfg?.loadAssignment?.endpoints[0]?.lbEndpoints[0];
  if (!cfg || !ep) return undefined;
  const where =
    ep.address.kind === 'pipe'
      ? { address: '', port: 0, path: ep.address.path }
      : { address: ep.address.host, port: ep.address.port };
  const ts = cfg.transportSocket;
  if (!ts) return where;
  const cert = ts.common.tlsCertificates[0];
  const vc = ts.common.validationContext ?? ts.common.combinedDefaultValidationContext;
  return {
    ...where,
    tls: {
      rootCerts: vc?.trustedCa ? readDataSource(vc.trustedCa) : undefined,
      certChain: cert ? readDataSource(cert.certificateChain) : undefined,
      privateKey: cert ? readDataSource(cert.privateKey) : undefined,
      servername: ts.sni,
    },
  };
}
