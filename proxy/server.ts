/**
 * MeshletServer: the running proxy assembled from a validated Bootstrap — certificate store and
 * TLS contexts, cluster manager (with HTTP/1.1 and HTTP/2 pools and TLS transports), listener
 * manager (with HTTP connection managers and TCP proxies as terminal filters), and admin.
 *
 * It owns lifecycle: start in dependency order (secrets → clusters → listeners → admin), and a
 * graceful shutdown that stops accepting, lets in-flight requests finish within a bound, then
 * closes everything.
 *
 * It is the composition (the top of the layers in docs/architecture.md): the parts below never
 * import it. Each sees only the seam it declares — telemetry a TelemetryHost and registered stats
 * sources, the xDS side XdsConfigTargets (dynamic/config-targets.ts), admin an AdminTarget,
 * network filters a NetworkFilterContext — and the strategies come from proxy/registry.ts.
 */
import { DEFAULT_RUNTIME_LAYERS, Runtime } from '../common/runtime';
import { CsrCertificateProvider, csrProviderConfigFromMetadata } from '../certs/csr-provider';
import { CertStore } from '../certs/store';
import { registerCoreEndpoints } from './admin/endpoints';
import { registerInspectEndpoints } from './admin/inspect-endpoints';
import { registerRuntimeEndpoints } from './admin/runtime-endpoints';
import { allRbacStats } from './authz/stats';
import { allConnectionLimitStats } from './listeners/connection-limit-stats';
import { protocolDetection } from './detect/stats';
import { AdminServer } from './admin/admin-server';
import type {
  Bootstrap,
  ClusterConfig,
  FilterChainConfig,
  ListenerConfig,
  RouteConfiguration,
} from './config/types';
import type { DynamicConfig, XdsClientFactory } from './dynamic/xds-config';
import { H1ConnectionPool } from './http/h1/pool';
import { H2ConnectionPool } from './http/h2/client-pool';
import { faultStats } from './http/filters/fault';
import { gatewayFilterCounters } from './http/filters/gateway-stats';
import { allCorsStats } from './http/filters/cors';
import { allCsrfStats } from './http/filters/csrf';
import { allGrpcStats } from './http/filters/grpc-stats';
import { allLocalRateLimitStats } from './http/filters/local-ratelimit';
import type { StreamInfo } from './http/stream-info';
import type { BuiltChain, OriginalDstResolver } from './listeners/listener';
import { ListenerManager } from './listeners/listener-manager';
import { DrainSequence, type DrainStrategy } from './listeners/drain';
import { buildNetworkFilters } from './listeners/network-filter';
import { createRegistries, type Registries } from './registry';
import type { TcpSessionRecord } from './tcp/tcp-proxy';
import { hasDynamicSources } from '../common/config-types';
import { logger } from '../common/logger';
import { clusterStatsSource } from './telemetry/cluster-stats';
import {
  connectionLimitStatsSource,
  filterStatsSource,
  listenerStatsSource,
  protocolDetectionStatsSource,
  serverStatsSource,
  xdsStatsSource,
} from './telemetry/stats';
import { Telemetry, type TelemetryOptions } from './telemetry/telemetry';
import { TlsContextManager } from './tls/context-manager';
import { terminateDownstreamTls } from './tls/downstream';
import { TlsTransportSocketFactory } from './tls/upstream';
import { ClusterManager } from './upstream/cluster-manager';
import { withMetadataExchange } from './upstream/metadata-exchange';
import { TcpTransportSocketFactory } from './upstream/transport';
import type { TransportSocketFactory } from './upstream/types';

const log = logger('server');

export type ServerState = 'PRE_INITIALIZING' | 'INITIALIZING' | 'LIVE' | 'DRAINING';

export interface MeshletServerOptions {
  readonly bootstrap: Bootstrap;
  /** The bootstrap as the user wrote it (proto3 JSON), for /config_dump. */
  readonly rawBootstrap?: unknown;
  readonly registries?: Registries;
  readonly originalDst?: OriginalDstResolver;
  /** How long graceful shutdown waits for in-flight work (Envoy's --drain-time-s; default 5 s). */
  readonly drainTimeoutMs?: number;
  /** Envoy's --drain-strategy: how connections are told to go during a drain (default gradual). */
  readonly drainStrategy?: DrainStrategy;
  readonly certStore?: CertStore;
  /** Called for every finished HTTP stream (access log, metrics, tracing). */
  readonly onHttpStream?: (info: StreamInfo) => void;
  /** Called for every finished TCP proxy session. */
  readonly onTcpSession?: (rec: TcpSessionRecord) => void;
  /** Istio ports served by meshlet (15090 metrics, 15021 readiness) and tracing export pace. */
  readonly telemetry?: TelemetryOptions;
  /**
   * Istio's EXIT_ON_ZERO_ACTIVE_CONNECTIONS: during shutdown, stop as soon as no connection is
   * left instead of keeping outbound listeners open for the whole drain time.
   */
  readonly exitOnZeroActiveConnections?: boolean;
  /**
   * The xDS client for dynamic_resources (default: a real XdsClient with its own ADS stream). A
   * --concurrency worker passes the relay fed by the primary's single stream (runtime/xds-relay.ts).
   */
  readonly xdsClientFactory?: XdsClientFactory;
  /**
   * Bind admin only in this process (a --concurrency worker's private admin on port 0), not
   * through node:cluster's shared listening sockets.
   */
  readonly adminExclusive?: boolean;
}

export class MeshletServer {
  readonly registries: Registries;
  readonly certs: CertStore;
  readonly tls: TlsContextManager;
  readonly clusters: ClusterManager;
  readonly listeners: ListenerManager;
  readonly admin = new AdminServer();
  /** The layered runtime (bootstrap layered_runtime; admin /runtime_modify writes its admin layer). */
  readonly runtime: Runtime;
  /** Metrics, access logs, tracing and the Istio telemetry ports. */
  readonly telemetry: Telemetry;
  readonly startedAt = Date.now();
  state: ServerState = 'PRE_INITIALIZING';
  /** POST /healthcheck/fail sets this: readiness reports not ready, traffic keeps flowing. */
  healthCheckFailed = false;
  /** POST /drain_listeners was called: listeners refuse new connections, readiness fails. */
  listenersDrained = false;
  /** RDS route tables by name (filled by the xDS client). */
  readonly routeTables = new Map<string, RouteConfiguration>();
  private readonly tcp = new TcpTransportSocketFactory();
  private shuttingDown: Promise<void> | undefined;
  /** Set by shutdown(…, exitOnZero): the running drain ends once no connection is left. */
  private drainExitOnZero = false;
  /** The xDS side, when the bootstrap has dynamic_resources.ads_config. */
  dynamic: DynamicConfig | undefined;
  /**
   * Keys that never leave the pod: the CSR provider selected by node.metadata.MESHLET_CERT_PROVIDER
   * (certs/csr-provider.ts) owns the identity secret; SDS pushes of it are not served.
   */
  readonly certProvider: CsrCertificateProvider | undefined;
  /** Resolves when the initial configuration is applied (immediately for static bootstraps). */
  initialized: Promise<void> = Promise.resolve();

  constructor(readonly opts: MeshletServerOptions) {
    this.registries = opts.registries ?? createRegistries();
    this.runtime = new Runtime(opts.bootstrap.layeredRuntime ?? DEFAULT_RUNTIME_LAYERS);
    this.certs = opts.certStore ?? new CertStore();
    this.tls = new TlsContextManager(this.certs);
    const csr = csrProviderConfigFromMetadata(opts.bootstrap.node.metadata);
    this.certProvider = csr ? new CsrCertificateProvider(this.certs, csr, { log: logger('csr-provider') }) : undefined;
    this.clusters = new ClusterManager({
      lbRegistry: this.registries.lbPolicies,
      poolFactory: (host, cluster, protocol) =>
        protocol === 'HTTP/2' ? new H2ConnectionPool(host, cluster) : new H1ConnectionPool(host, cluster),
      transportProvider: (cfg, socket) =>
        withMetadataExchange(this.transportFor(socket, cfg.upstreamBindConfig), cfg.upstreamMetadataExchange, opts.bootstrap.node),
      ...(opts.bootstrap.localClusterName
        ? { localCluster: { name: opts.bootstrap.localClusterName, locality: opts.bootstrap.node.locality } }
        : {}),
    });
    this.listeners = new ListenerManager(
      (chain, listener) => this.buildChain(chain, listener),
      opts.originalDst,
      opts.drainTimeoutMs ?? 5_000,
      opts.drainStrategy ?? 'gradual',
    );
    this.telemetry = new Telemetry(
      {
        node: opts.bootstrap.node,
        tracing: opts.bootstrap.tracing,
        localCertificate: () => this.certs.identity()?.chain[0],
        resolveCluster: (name) => this.clusters.get(name)?.hosts[0]?.key,
        clusterMetadata: (name) => this.clusters.get(name)?.config.metadata,
        readiness: () => (this.ready ? undefined : this.reportedState),
        onHttpStream: opts.onHttpStream,
        onTcpSession: opts.onTcpSession,
      },
      opts.telemetry,
    );
    this.registerStats();
  }

  /** Each component's counters, read by /stats and the Prometheus families at scrape time. */
  private registerStats(): void {
    const stats = this.telemetry.stats;
    // eslint-disable-next-line @typescript-eslint/no-this-alias -- getters below read the live server
    const self = this;
    stats.addSource(
      serverStatsSource({
        get startedAt() {
          return self.startedAt;
        },
        get state() {
          return self.reportedState;
        },
      }),
    );
    stats.addSource(clusterStatsSource(this.clusters));
    stats.addSource(listenerStatsSource(this.listeners));
    stats.addSource(xdsStatsSource(() => this.dynamic?.client.stats()));
    stats.addSource(
      filterStatsSource({
        rbac: allRbacStats,
        localRateLimit: allLocalRateLimitStats,
        fault: faultStats,
        gateway: gatewayFilterCounters,
        cors: allCorsStats,
        grpc: allGrpcStats,
        csrf: allCsrfStats,
      }),
    );
    stats.addSource(protocolDetectionStatsSource(protocolDetection));
    stats.addSource(connectionLimitStatsSource(allConnectionLimitStats));
  }

  get bootstrap(): Bootstrap {
    return this.opts.bootstrap;
  }

  private transportFor(
    tlsCfg: ClusterConfig['transportSocket'],
    bind: ClusterConfig['upstreamBindConfig'],
  ): TransportSocketFactory {
    // upstream_bind_config (e.g. Istio's 127.0.0.6 for inbound delivery) needs its own raw transport.
    const tcp = bind ? new TcpTransportSocketFactory(bind.sourceAddresses) : this.tcp;
    return tlsCfg ? new TlsTransportSocketFactory(tcp, tlsCfg, this.tls) : tcp;
  }

  /** Build what runs on connections matched to one filter chain (each filter through its factory). */
  private buildChain(chain: FilterChainConfig, listener: ListenerConfig): BuiltChain {
    const { filters, handler } = buildNetworkFilters(this.registries.networkFilters, chain.filters, {
      listener,
      clusters: this.clusters,
      runtime: this.runtime,
      node: this.opts.bootstrap.node,
      httpFilters: this.registries.httpFilters,
      routeTable: (name) => this.routeTables.get(name),
      forHcm: (hcm, l) => this.telemetry.forHcm(hcm, l),
      forTcp: (tcp, l, stats) => this.telemetry.forTcp(tcp, l, stats),
    });
    if (!handler) throw new Error(`filter chain "${chain.name}" has no terminal filter`);
    const ts = chain.transportSocket;
    return {
      config: chain,
      filters,
      handler,
      terminateTls: ts ? (socket, info, cb, ssl, offered) => terminateDownstreamTls(this.tls, ts, socket, info, cb, ssl, offered) : undefined,
    };
  }

  /** Start in dependency order. Rejects (after cleaning up) if a listener cannot bind. */
  async start(): Promise<void> {
    this.state = 'INITIALIZING';
    const b = this.opts.bootstrap;
    for (const s of b.staticResources.secrets) {
      const r = await this.certs.update(s.name, s);
      if (!r.ok) throw new Error(`static secret "${s.name}": ${r.error}`);
    }
    for (const c of b.staticResources.clusters) this.clusters.addOrUpdate(c);
    try {
      for (const l of b.staticResources.listeners) await this.listeners.addOrUpdate(l);
      registerCoreEndpoints(this.admin, this);
      registerInspectEndpoints(this.admin, this);
      registerRuntimeEndpoints(this.admin, this.runtime);
      this.telemetry.registerAdmin(this.admin);
      if (b.admin) await this.admin.listen(b.admin.address, { exclusive: this.opts.adminExclusive === true });
      await this.telemetry.listen();
    } catch (err) {
      await this.close();
      throw err;
    }
    this.certProvider?.start();
    if (hasDynamicSources(b.dynamicResources)) {
      // The xDS side (and with it gRPC and the Envoy protos) loads only for dynamic bootstraps.
      const { DynamicConfig } = await import('./dynamic/xds-config');
      this.dynamic = new DynamicConfig(
        {
          clusters: this.clusters,
          listeners: this.listeners,
          routes: this.routeTables,
          secrets: this.certs,
          secretOwner: this.certProvider,
        },
        b,
        { httpFilters: this.registries.httpFilters },
        this.opts.xdsClientFactory,
      );
      this.initialized = this.dynamic.start().then(() => {
        if (this.state === 'INITIALIZING') this.state = 'LIVE';
        log.info({ listeners: this.listeners.all().length, clusters: this.clusters.all().length }, 'initial dynamic configuration applied');
      });
    } else this.state = 'LIVE';
    log.info(
      { listeners: b.staticResources.listeners.length, clusters: b.staticResources.clusters.length, admin: this.admin.port || undefined },
      'meshlet started',
    );
  }

  /** Whether the proxy is ready for traffic (Envoy's /ready: LIVE and not failed by admin). */
  get ready(): boolean {
    return this.state === 'LIVE' && !this.healthCheckFailed && !this.listenersDrained;
  }

  /**
   * The state admin and metrics report (Envoy's serverState): DRAINING once /healthcheck/fail or
   * /drain_listeners was called (listeners refuse or are about to), or during shutdown.
   */
  get reportedState(): ServerState {
    return this.state === 'LIVE' && (this.healthCheckFailed || this.listenersDrained) ? 'DRAINING' : this.state;
  }

  /**
   * Envoy's graceful listener drain (POST /drain_listeners?graceful, and the first half of
   * shutdown): the selected listeners keep accepting for the drain time while every connection is
   * told to go — `Connection: close` on HTTP/1.1 responses, GOAWAY on HTTP/2 — as the drain
   * strategy says; then they stop accepting (unless `skipStop`). A second call while one runs
   * only widens the set of listeners. Returns the drain sequence (its deadline).
   */
  drainListeners(filter: ((l: { config: ListenerConfig }) => boolean) | undefined, skipStop = false): DrainSequence {
    const seq = new DrainSequence(this.opts.drainTimeoutMs ?? 5_000, this.opts.drainStrategy ?? 'gradual');
    this.listeners.drainGracefully(filter, seq);
    if (!skipStop) {
      const t = setTimeout(() => this.listeners.stopAccepting(filter), seq.drainTimeMs);
      t.unref();
    }
    return seq;
  }

  /**
   * Graceful shutdown (SIGTERM). Every listener, inbound and outbound, keeps accepting and drains
   * its connections as Envoy does under pilot-agent's drain (`Connection: close` on the next
   * HTTP/1.1 response, GOAWAY on HTTP/2, idle HTTP/1.1 connections closed after drain_timeout):
   * nothing is closed under a request a client may be sending, and a client that connects during
   * the drain is still served. OUTBOUND listeners keep the app's path to other services for the
   * whole drain time (it may still be finishing work). With `exitOnZero` (Istio's
   * EXIT_ON_ZERO_ACTIVE_CONNECTIONS, and /quitquitquit) — or without outbound listeners — it stops
   * as soon as no connection is left; calling it again with `exitOnZero` during a drain (a job's
   * /quitquitquit) cuts the wait short the same way. Then every listener stops and everything closes.
   */
  shutdown(drainTimeoutMs = this.opts.drainTimeoutMs ?? 5_000, exitOnZero = this.opts.exitOnZeroActiveConnections ?? false): Promise<void> {
    if (exitOnZero) this.drainExitOnZero = true;
    this.shuttingDown ??= (async () => {
      this.state = 'DRAINING';
      const isOutbound = (l: { config: ListenerConfig }) => l.config.trafficDirection === 'OUTBOUND';
      const seq = new DrainSequence(drainTimeoutMs, this.opts.drainStrategy ?? 'gradual');
      this.listeners.drainGracefully(undefined, seq);
      const hasOutbound = this.listeners.all().some(isOutbound);
      log.info(
        { drainMs: drainTimeoutMs, strategy: seq.strategy, outboundOpen: hasOutbound, exitOnZero },
        'draining: connections are told to close (Connection: close / GOAWAY)',
      );
      // Without outbound listeners (a front proxy) or with exitOnZero, zero connections ends the
      // drain; otherwise the app keeps its outbound path for the whole drain time.
      while (Date.now() < seq.deadline && !((this.drainExitOnZero || !hasOutbound) && this.listeners.activeConnections === 0)) {
        await new Promise((r) => setTimeout(r, 25));
      }
      this.listeners.stopAccepting();
      const left = this.listeners.activeConnections;
      if (left > 0) log.warn({ connections: left }, 'drain time passed; closing remaining connections');
      await this.close();
    })();
    return this.shuttingDown;
  }

  /** Close everything now. */
  async close(): Promise<void> {
    this.dynamic?.close();
    this.certProvider?.close();
    await this.listeners.close();
    this.clusters.destroy();
    await this.admin.close();
    await this.telemetry.close();
  }
}

