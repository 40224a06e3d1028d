/**
 * The TCP proxy network filter (envoy.filters.network.tcp_proxy): opaque, full-duplex byte relay
 * with half-close, idle timeout, connect retries across hosts and byte counters.
 *
 * Leans towards simplicity on the hot path: once both sides are connected the bytes move through
 * Node's native pipe() with backpressure, and per-connection accounting is read from the sockets'
 * own counters at close instead of counting every chunk.
 */
import type { PeerMetadata } from '../http/peer-metadata';
import type { Socket } from 'node:net';
import type { TcpProxyConfig } from '../config/types';
import type { DownstreamConnectionInfo } from '../http/codec';
import type { ConnectionHandler, Sniffed } from '../listeners/types';
import { logger } from '../../common/logger';
import type { Host } from '../upstream/host';
import type { ClusterLookup, TransportConnection, UpstreamCluster } from '../upstream/types';

const log = logger('tcp');

/** Per-filter counters (Envoy's tcp.<stat_prefix>.*). */
export class TcpProxyStats {
  downstreamCxTotal = 0;
  downstreamCxActive = 0;
  downstreamCxRxBytesTotal = 0;
  downstreamCxTxBytesTotal = 0;
  upstreamConnectFail = 0;
  idleTimeout = 0;
  downstreamCxNoRoute = 0;
}

/** What one finished TCP session looked like: for access logs and istio_tcp_* metrics. */
export interface TcpSessionRecord {
  readonly info: DownstreamConnectionInfo;
  readonly cluster: string;
  readonly upstreamHost?: string;
  readonly upstreamPrincipal?: string;
  readonly bytesReceived: number;
  readonly bytesSent: number;
  readonly startTime: number;
  readonly durationMs: number;
  /** Envoy response flags: UF (connect failure), UH (no healthy host), UO (overflow), NC. */
  readonly flags: string;
  /** The upstream host's filter_metadata (Istio's endpoint `istio.workload`), once connected. */
  readonly upstreamHostMetadata?: Readonly<Record<string, unknown>>;
  /** The upstream peer's Istio metadata from the upstream TCP metadata exchange. */
  readonly upstreamPeer?: PeerMetadata;
  /** false in progress reports of a live session, true in the final one. */
  readonly ended: boolean;
}

export interface TcpProxyOptions {
  readonly clusters: ClusterLookup;
  readonly onSessionStart?: (info: DownstreamConnectionInfo, cluster: string) => void;
  readonly onSessionEnd?: (rec: TcpSessionRecord) => void;
  /** Called every `progressIntervalMs` on a connected session (Istio's tcp_reporting_duration). */
  readonly onSessionProgress?: (rec: TcpSessionRecord) => void;
  /** 0 or absent = no progress reports. */
  readonly progressIntervalMs?: number;
}

export class TcpProxy implements ConnectionHandler {
  readonly stats = new TcpProxyStats();
  private active = 0;

  constructor(
    readonly config: TcpProxyConfig,
    private readonly opts: TcpProxyOptions,
  ) {}

  get activeConnections(): number {
    return this.active;
  }

  handle(socket: Socket, info: DownstreamConnectionInfo, _sniffed: Sniffed | undefined): void {
    this.stats.downstreamCxTotal++;
    this.stats.downstreamCxActive++;
    this.active++;
    new TcpSession(this, socket, info).start();
  }

  /** @internal */
  sessionEnded(rec: TcpSessionRecord): void {
    this.active--;
    this.stats.downstreamCxActive--;
    this.stats.downstreamCxRxBytesTotal += rec.bytesReceived;
    this.stats.downstreamCxTxBytesTotal += rec.bytesSent;
    this.opts.onSessionEnd?.(rec);
  }

  /** @internal */
  pickCluster(): string {
    const c = this.config.cluster;
    if (c.kind === 'cluster') return c.name;
    let r = Math.random() * c.totalWeight;
    for (const w of c.clusters) {
      r -= w.weight;
      if (r < 0) return w.name;
    }
    return c.clusters[c.clusters.length - 1]!.name;
  }

  /** @internal */
  get clusters(): ClusterLookup {
    return this.opts.clusters;
  }
  /** @internal */
  get onSessionStart(): TcpProxyOptions['onSessionStart'] {
    return this.opts.onSessionStart;
  }
  /** @internal */
  get options(): TcpProxyOptions {
    return this.opts;
  }
}

/** One proxied connection. A class so its callbacks are methods, not per-connection closures. */
class TcpSession {
  private upstream: Socket | undefined;
  private conn: TransportConnection | undefined;
  private host: Host | undefined;
  private cluster: UpstreamCluster | undefined;
  private clusterName = '';
  private attempts = 0;
  private readonly tried: Host[] = [];
  private flags = '';
  private done = false;
  private countedConnection = false;
  private readonly startTime = Date.now();
  private idleTimer: NodeJS.Timeout | undefined;
  private progressTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly proxy: TcpProxy,
    private readonly down: Socket,
    private readonly info: DownstreamConnectionInfo,
  ) {}

  start(): void {
    const down = this.down;
    down.pause();
    down.on('error', this.onDownError);
    down.on('close', this.onDownClose);
    this.clusterName = this.proxy.pickCluster();
    this.proxy.onSessionStart?.(this.info, this.clusterName);
    const cluster = this.proxy.clusters.get(this.clusterName);
    if (!cluster) {
      this.proxy.stats.downstreamCxNoRoute++;
      this.fail('NC', `cluster "${this.clusterName}" not found`);
      return;
    }
    this.cluster = cluster;
    if (!cluster.resources.connections.canCreate()) {
      cluster.stats.upstreamCxOverflow++;
      this.fail('UO', 'connection circuit breaker open');
      return;
    }
    cluster.resources.connections.inc();
    this.countedConnection = true;
    this.connect();
  }

  private connect(): void {
    const cluster = this.cluster!;
    let host: Host | undefined;
    const od = this.info.originalDst;
    if (cluster.config.type === 'ORIGINAL_DST' && cluster.hostForOriginalDst) {
      host = od ? cluster.hostForOriginalDst(od.address, od.port) : undefined;
    } else {
      host = cluster.chooseHost(this.tried.length > 0 ? { avoid: this.tried } : undefined);
    }
    if (!host) {
      cluster.stats.upstreamCxNoneHealthy++;
      this.fail('UH', 'no healthy upstream');
      return;
    }
    this.host = host;
    this.tried.push(host);
    this.attempts++;
    cluster.stats.upstreamCxTotal++;
    host.stats.cxTotal++;
    (cluster.transportFor?.(host) ?? cluster.transport).connect(host, { timeoutMs: cluster.config.connectTimeoutMs }, this.onConnected);
  }

  private readonly onConnected = (
    err: { reason: string; detail: string } | undefined,
    conn: TransportConnection | undefined,
  ): void => {
    const cluster = this.cluster!;
    if (this.done) {
      conn?.socket.destroy();
      return;
    }
    if (err || !conn) {
      cluster.stats.upstreamCxConnectFail++;
      if (err?.reason === 'timeout') cluster.stats.upstreamCxConnectTimeout++;
      this.host!.stats.cxConnectFail++;
      this.proxy.stats.upstreamConnectFail++;
      if (this.attempts < this.proxy.config.maxConnectAttempts) {
        this.connect();
        return;
      }
      this.fail('UF', err?.detail ?? 'connect failed');
      return;
    }
    this.conn = conn;
    const up = conn.socket;
    this.upstream = up;
    cluster.stats.upstreamCxActive++;
    this.host!.activeConnections++;
    up.on('error', this.onUpError);
    up.on('close', this.onUpClose);
    // Half-close: an end from one side becomes a FIN towards the other, the other direction stays open.
    this.down.pipe(up);
    up.pipe(this.down);
    const idle = this.proxy.config.idleTimeoutMs;
    if (idle > 0) {
      this.down.setTimeout(idle, this.onIdle);
      up.setTimeout(idle, this.onIdle);
    }
    const opts = this.proxy.options;
    if (opts.onSessionProgress !== undefined && (opts.progressIntervalMs ?? 0) > 0) {
      this.progressTimer = setInterval(this.onProgress, opts.progressIntervalMs);
      this.progressTimer.unref();
    }
    this.down.resume();
  };

  private readonly onProgress = (): void => {
    if (!this.done) this.proxy.options.onSessionProgress?.(this.record(false));
  };

  private record(ended: boolean): TcpSessionRecord {
    const up = this.upstream;
    const down = this.down;
    return {
      info: this.info,
      cluster: this.clusterName,
      upstreamHost: up ? this.host?.key : undefined,
      upstreamPrincipal: this.conn?.peerPrincipal,
      bytesReceived: down.bytesRead,
      bytesSent: down.bytesWritten,
      startTime: this.startTime,
      durationMs: Date.now() - this.startTime,
      flags: this.flags,
      ...(up && this.host ? { upstreamHostMetadata: this.host.metadata } : {}),
      ...(this.conn?.peer !== undefined ? { upstreamPeer: this.conn.peer } : {}),
      ended,
    };
  }

  private readonly onIdle = (): void => {
    // Idle means neither side moved bytes for the whole period: both sockets' timers fire.
    if (this.done) return;
    this.proxy.stats.idleTimeout++;
    log.debug({ conn: this.info.id }, 'tcp proxy idle timeout');
    this.finish();
  };

  private readonly onDownError = (e: Error): void => {
    log.debug({ conn: this.info.id, err: e.message }, 'downstream error');
    this.finish();
  };
  private readonly onUpError = (e: Error): void => {
    log.debug({ conn: this.info.id, err: e.message }, 'upstream error');
    this.finish();
  };
  private readonly onDownClose = (): void => {
    // Downstream fully closed: let upstream flush what it has, then close it.
    if (this.upstream && !this.upstream.destroyed) this.upstream.end();
    this.maybeDone();
  };
  private readonly onUpClose = (): void => {
    if (!this.down.destroyed) this.down.end();
    this.maybeDone();
  };

  private maybeDone(): void {
    if (this.down.destroyed && (!this.upstream || this.upstream.destroyed)) this.finish();
  }

  private fail(flag: string, detail: string): void {
    this.flags = flag;
    log.debug({ conn: this.info.id, cluster: this.clusterName, flag, detail }, 'tcp proxy could not connect upstream');
    this.finish();
  }

  private finish(): void {
    if (this.done) return;
    this.done = true;
    const down = this.down;
    const up = this.upstream;
    if (!down.destroyed) down.destroy();
    if (up && !up.destroyed) up.destroy();
    if (this.cluster) {
      if (this.countedConnection) this.cluster.resources.connections.dec();
      if (up) {
        this.cluster.stats.upstreamCxActive--;
        this.host!.activeConnections--;
      }
    }
    if (this.progressTimer !== undefined) clearInterval(this.progressTimer);
    this.proxy.sessionEnded(this.record(true));
  }
}
