/**
 * Per-host HTTP/1.1 upstream connection pool (Envoy's Http1::ConnPoolImpl): one request per
 * connection at a time, idle keep-alive connections reused last-in-first-out, requests queued while
 * connections are being established.
 *
 * Construction (by the cluster manager, one pool per host × protocol × TLS context):
 *
 *   new H1ConnectionPool(host, cluster, options?)
 *     host     Host                       the endpoint (address, counters)
 *     cluster  H1PoolCluster              { name, config, stats, resources, transport } — an
 *                                         UpstreamCluster satisfies it
 *     options  H1PoolOptions              alpn, response header limits
 *
 * Leans Envoy-faithful on circuit breaking, and splits the accounting with the router the way
 * meshlet's router expects: the router counts requests (`resources.requests`,
 * `stats.upstreamRqTotal/Active`, `host.activeRequests`, `host.stats.rqTotal`); the pool counts
 * pending requests (`resources.pendingRequests`) and connections (`resources.connections`,
 * `stats.upstreamCx*`, `host.activeConnections`, `host.stats.cxTotal/cxConnectFail`). A request
 * that needs a connection waits as pending; over max_pending_requests it fails at once with
 * `overflow` (`upstreamRqPendingOverflow`); over max_connections a connection is simply not created
 * (`upstreamCxOverflow`) and the request waits for one to free up. A connect failure fails the
 * pending requests that no other connection being established can serve, with the transport's
 * reason (`connect_failure`, `timeout`, `tls_failure`). An upgraded (101) or CONNECT connection
 * leaves the pool when its tunnel is taken: it no longer counts against max_connections.
 */
import type { ClusterConfig } from '../../config/types';
import type { Host } from '../../upstream/host';
import type { ClusterResources, ClusterStats, TransportConnection, TransportSocketFactory } from '../../upstream/types';
import type {
  Cancellable,
  ConnectionPool,
  HttpProtocol,
  PoolCallbacks,
  ResetReason,
  ResponseSink,
  UpstreamInfo,
} from '../codec';
import { H1ClientConnection, type H1ClientConnectionOwner } from './client-codec';
import type { H1ParserLimits } from './parser';

/** The parts of an UpstreamCluster the pool uses. */
export interface H1PoolCluster {
  readonly name: string;
  readonly config: Pick<ClusterConfig, 'connectTimeoutMs' | 'upstreamIdleTimeoutMs' | 'maxRequestsPerConnection'>;
  readonly stats: ClusterStats;
  readonly resources: ClusterResources;
  readonly transport: TransportSocketFactory;
  /** The host's own socket (transport_socket_matches); `transport` when absent. */
  transportFor?(host: Host): TransportSocketFactory;
}

export interface H1PoolOptions {
  /** ALPN offered on TLS connections (default ['http/1.1']). */
  readonly alpn?: readonly string[];
  /** Limit on upstream response heads, KiB (Envoy default 60). */
  readonly maxResponseHeadersKb?: number;
  /** Limit on upstream response header count (Envoy default 100). */
  readonly maxHeadersCount?: number;
}

const DEFAULT_ALPN: readonly string[] = Object.freeze(['http/1.1']);

class PendingRequest implements Cancellable {
  cancelled = false;
  constructor(
    private readonly pool: H1ConnectionPool,
    readonly sink: ResponseSink,
    readonly callbacks: PoolCallbacks,
  ) {}
  cancel(): void {
    if (this.cancelled) return;
    this.cancelled = true;
    this.pool.removePending(this);
  }
}

export class H1ConnectionPool implements ConnectionPool, H1ClientConnectionOwner {
  readonly protocol: HttpProtocol = 'HTTP/1.1';
  /** Idle connections; the most recently used is at the end (LIFO). */
  private readonly idle: H1ClientConnection[] = [];
  private readonly all = new Set<H1ClientConnection>();
  private readonly queue: PendingRequest[] = [];
  private connecting = 0;
  private busy = 0;
  private draining = false;
  private destroyed = false;
  private readonly limits: H1ParserLimits;
  private readonly alpn: readonly string[];
  /** Fixed for the pool's life: the cluster gives a host new pools when its socket choice changes. */
  private readonly transport: TransportSocketFactory;

  constructor(
    readonly host: Host,
    readonly cluster: H1PoolCluster,
    options: H1PoolOptions = {},
  ) {
    this.transport = cluster.transportFor?.(host) ?? cluster.transport;
    this.alpn = options.alpn ?? DEFAULT_ALPN;
    this.limits = {
      maxHeaderBytes: (options.maxResponseHeadersKb ?? 60) * 1024,
      maxHeadersCount: options.maxHeadersCount ?? 100,
      maxRequestLineBytes: 16 * 1024,
    };
  }

  get activeStreams(): number {
    return this.busy;
  }

  get connections(): number {
    return this.all.size + this.connecting;
  }

  get pending(): number {
    return this.queue.length;
  }

  /** Idle connections ready for reuse (for admin /clusters and tests). */
  get idleConnections(): number {
    return this.idle.length;
  }

  newStream(sink: ResponseSink, callbacks: PoolCallbacks): Cancellable | undefined {
    const { resources, stats } = this.cluster;
    if (this.destroyed || this.draining) {
      callbacks.onPoolFailure('local_reset', 'connection pool is draining');
      return undefined;
    }
    let conn = this.idle.pop();
    // Skip a connection the upstream already closed whose 'close' event has not run yet.
    while (conn !== undefined && (conn.socket.destroyed || conn.socket.readableEnded)) {
      conn.close();
      conn = this.idle.pop();
    }
    if (conn !== undefined) {
      this.attach(conn, sink, callbacks);
      return undefined;
    }
    if (!resources.pendingRequests.canCreate()) {
      stats.upstreamRqPendingOverflow++;
      callbacks.onPoolFailure('overflow', 'max pending requests circuit breaker open');
      return undefined;
    }
    const p = new PendingRequest(this, sink, callbacks);
    this.queue.push(p);
    resources.pendingRequests.inc();
    if (this.connecting < this.queue.length) this.tryConnect();
    return p;
  }

  /** Stop handing out connections to new requests; close each connection once idle. */
  drain(): void {
    this.draining = true;
    while (this.idle.length > 0) this.idle.pop()!.close();
  }

  destroy(): void {
    this.destroyed = true;
    this.draining = true;
    const queued = this.queue.splice(0);
    for (const p of queued) {
      this.cluster.resources.pendingRequests.dec();
      if (!p.cancelled) p.callbacks.onPoolFailure('local_reset', 'connection pool destroyed');
    }
    this.idle.length = 0;
    for (const c of [...this.all]) c.close();
  }

  removePending(p: PendingRequest): void {
    const i = this.queue.indexOf(p);
    if (i === -1) return;
    this.queue.splice(i, 1);
    this.cluster.resources.pendingRequests.dec();
  }

  // ───────────────────────────── connections ─────────────────────────────

  private tryConnect(): void {
    const { resources, stats, config } = this.cluster;
    const transport = this.transport;
    if (!resources.connections.canCreate()) {
      stats.upstreamCxOverflow++;
      return;
    }
    resources.connections.inc();
    this.connecting++;
    stats.upstreamCxTotal++;
    stats.upstreamCxActive++;
    this.host.activeConnections++;
    this.host.stats.cxTotal++;
    transport.connect(this.host, { alpn: this.alpn, timeoutMs: config.connectTimeoutMs }, (err, tc) =>
      this.onConnected(err, tc),
    );
  }

  private onConnected(
    err: { reason: ResetReason; detail: string } | undefined,
    tc: TransportConnection | undefined,
  ): void {
    this.connecting--;
    if (err !== undefined || tc === undefined) {
      const { stats } = this.cluster;
      if (err?.reason === 'timeout') stats.upstreamCxConnectTimeout++;
      else stats.upstreamCxConnectFail++;
      this.host.stats.cxConnectFail++;
      this.connectionGone();
      const reason = err?.reason ?? 'connect_failure';
      const detail = err?.detail ?? 'connect failed';
      // Fail the requests that the connections still being established cannot serve.
      while (this.queue.length > this.connecting) {
        const p = this.queue.shift()!;
        this.cluster.resources.pendingRequests.dec();
        p.callbacks.onPoolFailure(reason, detail);
      }
      return;
    }
    const socket = tc.socket;
    if (this.destroyed || socket.destroyed) {
      socket.destroy();
      this.connectionGone();
      this.serveQueue();
      return;
    }
    const info: UpstreamInfo = {
      localAddress: socket.localAddress ?? '',
      localPort: socket.localPort ?? 0,
      protocol: 'HTTP/1.1',
      peerPrincipal: tc.peerPrincipal,
    };
    const conn = new H1ClientConnection(socket, this, info, this.limits);
    this.all.add(conn);
    this.available(conn);
  }

  /** Bookkeeping for a connection that no longer exists (failed connect or closed). */
  private connectionGone(): void {
    const { resources, stats } = this.cluster;
    resources.connections.dec();
    stats.upstreamCxActive--;
    stats.upstreamCxDestroy++;
    this.host.activeConnections--;
  }

  /** A connection is ready for a request: give it to the oldest waiter, else park it. */
  private available(conn: H1ClientConnection): void {
    while (this.queue.length > 0) {
      const p = this.queue.shift()!;
      this.cluster.resources.pendingRequests.dec();
      if (p.cancelled) continue;
      this.attach(conn, p.sink, p.callbacks);
      return;
    }
    if (this.draining) {
      conn.close();
      return;
    }
    const idleMs = this.cluster.config.upstreamIdleTimeoutMs;
    if (idleMs > 0) {
      if (conn.idleTimer === undefined) {
        conn.idleTimer = setTimeout(() => this.onIdleTimeout(conn), idleMs);
        conn.idleTimer.unref();
      } else {
        conn.idleTimer.refresh();
      }
    }
    this.idle.push(conn);
  }

  private onIdleTimeout(conn: H1ClientConnection): void {
    const i = this.idle.indexOf(conn);
    if (i === -1) return; // in use again; the timer is refreshed when it goes idle
    this.idle.splice(i, 1);
    conn.close();
  }

  private attach(conn: H1ClientConnection, sink: ResponseSink, callbacks: PoolCallbacks): void {
    this.busy++;
    const encoder = conn.newStream(sink);
    callbacks.onPoolReady(encoder, conn.info);
  }

  /** Create connections for waiters that no connecting connection will serve. */
  private serveQueue(): void {
    if (this.destroyed) return;
    let want = this.queue.length - this.connecting;
    while (want-- > 0) {
      const before = this.connecting;
      this.tryConnect();
      if (this.connecting === before) break; // max_connections reached
    }
  }

  // ───────────────────────── H1ClientConnectionOwner ─────────────────────────

  onStreamDone(conn: H1ClientConnection, reusable: boolean): void {
    this.busy--;
    const max = this.cluster.config.maxRequestsPerConnection;
    if (!reusable || (max > 0 && conn.requests >= max) || this.destroyed) {
      conn.close();
      return;
    }
    this.available(conn);
  }

  onConnectionClosed(conn: H1ClientConnection): void {
    if (!this.all.delete(conn)) return;
    const i = this.idle.indexOf(conn);
    if (i !== -1) this.idle.splice(i, 1);
    this.connectionGone();
    this.serveQueue();
  }
}
