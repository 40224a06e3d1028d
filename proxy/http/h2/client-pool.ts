/**
 * Upstream HTTP/2 connection pool for one host (Envoy's Http2 ConnPoolImpl): multiplexes request
 * streams over as few node:http2 client sessions as the peer's SETTINGS_MAX_CONCURRENT_STREAMS
 * (capped by the cluster's http2_protocol_options) allows, opening another connection only when
 * every usable one is full.
 *
 * Owns: sessions and their transport sockets (from the cluster's TransportSocketFactory, plain
 * TCP for h2c or TLS with ALPN h2), the pending queue, connection circuit breaking, GOAWAY and
 * idle handling, and the connection counters in ClusterStats / HostStats. What a pool takes from
 * its cluster (and the codec choice) is client-pool-settings.ts.
 *
 * Leans towards Envoy's behaviour: a connection takes streams as soon as it is connected, with
 * the configured limit (or the limit this origin's SETTINGS announced last time), and adjusts
 * when the peer's SETTINGS arrive; ALPN is not second-guessed (only an explicit http/1.1 fails
 * the connection); the `connections` circuit
 * breaker is honoured except that a pool with no connection at all may always open one; pending
 * requests are bounded by `pending_requests` (overflow → 'overflow'); a connect failure fails
 * every pending request (they are moved out first, so a retry that re-enters is not failed
 * inline); GOAWAY stops new streams on that session while its active streams finish.
 */
import { type ClientHttp2Session, connect as h2connect } from 'node:http2';
import { logger } from '../../../common/logger';
import type { Host } from '../../upstream/host';
import type {
  ClusterResources,
  ClusterStats,
  TransportConnection,
  TransportSocketFactory,
} from '../../upstream/types';
import type { Cancellable, ConnectionPool, PoolCallbacks, ResetReason, ResponseSink, UpstreamInfo } from '../codec';
import { H2ClientStream, type StreamOwner } from './client-stream';
import { H2RawClientSession } from './raw-client-session';
import { RawClientStream, type RawStreamOwner } from './raw-client-stream';
import {
  clampWindow,
  H2_ALPN,
  type H2PoolCluster,
  type H2PoolSettings,
  h2PoolSettings,
  RAW_MAX_RESPONSE_HEADERS,
} from './client-pool-settings';

export type { H2Codec, H2PoolSettings } from './client-pool-settings';

const log = logger('h2-pool');

interface Pending extends Cancellable {
  sink: ResponseSink;
  callbacks: PoolCallbacks;
  queued: boolean;
}

type ClientState = 'connecting' | 'ready' | 'draining' | 'closed';

/** One upstream HTTP/2 connection. */
class H2Client implements StreamOwner, RawStreamOwner {
  state: ClientState = 'connecting';
  session: ClientHttp2Session | undefined = undefined;
  /** The connection when the pool uses meshlet's own framing (then `session` stays unset). */
  raw: H2RawClientSession | undefined = undefined;
  authority = '';
  active = 0;
  total = 0;
  capacity: number;
  info: UpstreamInfo | undefined = undefined;
  idleTimer: NodeJS.Timeout | undefined = undefined;
  /** drain() happened while this connection was being set up. */
  drainWhenReady = false;
  readonly scheme: string;

  constructor(
    private readonly pool: H2ConnectionPool,
    readonly configuredMax: number,
    secure: boolean,
  ) {
    this.capacity = configuredMax;
    this.scheme = secure ? 'https' : 'http';
  }

  streamDone(): void {
    this.active--;
    this.pool.onStreamDone(this);
  }

  hasRoom(): boolean {
    return this.state === 'ready' && this.active < this.capacity && (this.raw === undefined || !this.raw.unusable);
  }
}

/** HTTP/2 ConnectionPool for one upstream host. */
export class H2ConnectionPool implements ConnectionPool {
  readonly protocol = 'HTTP/2' as const;
  private readonly clients: H2Client[] = [];
  private queue: Pending[] = [];
  private streams = 0;
  private destroyed = false;
  /** The peer's last SETTINGS_MAX_CONCURRENT_STREAMS; 0 = not learnt yet. */
  private peerMaxStreams = 0;
  private readonly settings: H2PoolSettings;
  private readonly stats: ClusterStats;
  private readonly resources: ClusterResources;
  private readonly transport: TransportSocketFactory;

  constructor(
    readonly host: Host,
    cluster: H2PoolCluster,
    settings?: Partial<H2PoolSettings>,
  ) {
    this.settings = { ...h2PoolSettings(cluster), ...settings };
    this.stats = cluster.stats;
    this.resources = cluster.resources;
    // Fixed for the pool's life: the cluster gives a host new pools when its socket choice changes.
    this.transport = cluster.transportFor?.(host) ?? cluster.transport;
  }

  get activeStreams(): number {
    return this.streams;
  }

  get connections(): number {
    return this.clients.length;
  }

  get pending(): number {
    return this.queue.length;
  }

  newStream(sink: ResponseSink, callbacks: PoolCallbacks): Cancellable | undefined {
    if (this.destroyed) {
      callbacks.onPoolFailure('local_reset', 'connection pool destroyed');
      return undefined;
    }
    const ready = this.pickReady();
    if (ready !== undefined) {
      this.attach(ready, sink, callbacks);
      return undefined;
    }
    if (!this.resources.pendingRequests.canCreate()) {
      this.stats.upstreamRqPendingOverflow++;
      callbacks.onPoolFailure('overflow', 'upstream pending requests circuit breaker open');
      return undefined;
    }
    const p: Pending = { sink, callbacks, queued: true, cancel: () => this.cancel(p) };
    this.queue.push(p);
    this.resources.pendingRequests.inc();
    this.growIfNeeded();
    return p.queued ? p : undefined;
  }

  drain(): void {
    for (const c of [...this.clients]) {
      if (c.state === 'connecting') {
        // Still being set up: it serves what is queued for it, then retires like the others.
        c.drainWhenReady = true;
        continue;
      }
      if (c.state !== 'ready' && c.state !== 'draining') continue;
      c.state = 'draining';
      if (c.active === 0) this.closeClient(c);
    }
  }

  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    const failed = this.takeQueue();
    for (const c of [...this.clients]) {
      c.state = 'draining';
      if (c.session !== undefined) c.session.destroy();
      else if (c.raw !== undefined) c.raw.destroy();
      else this.clientGone(c);
    }
    for (const p of failed) p.callbacks.onPoolFailure('local_reset', 'connection pool destroyed');
  }

  // ───────────── internals ─────────────

  private pickReady(): H2Client | undefined {
    const clients = this.clients;
    for (let i = 0; i < clients.length; i++) {
      const c = clients[i] as H2Client;
      if (c.hasRoom()) return c;
    }
    return undefined;
  }

  private attach(c: H2Client, sink: ResponseSink, callbacks: PoolCallbacks): void {
    c.active++;
    c.total++;
    this.streams++;
    const max = this.settings.maxRequestsPerConnection;
    if (max > 0 && c.total >= max) c.state = 'draining';
    callbacks.onPoolReady(c.raw !== undefined ? new RawClientStream(c, sink) : new H2ClientStream(c, sink), c.info as UpstreamInfo);
  }

  private cancel(p: Pending): void {
    if (!p.queued) return;
    p.queued = false;
    const i = this.queue.indexOf(p);
    if (i >= 0) this.queue.splice(i, 1);
    this.resources.pendingRequests.dec();
  }

  private takeQueue(): Pending[] {
    const q = this.queue;
    this.queue = [];
    for (const p of q) {
      p.queued = false;
      this.resources.pendingRequests.dec();
    }
    return q;
  }

  /** Serve queued requests from connections with room, then open connections for the rest. */
  private processQueue(): void {
    while (this.queue.length > 0) {
      const c = this.pickReady();
      if (c === undefined) break;
      const p = this.queue.shift() as Pending;
      p.queued = false;
      this.resources.pendingRequests.dec();
      this.attach(c, p.sink, p.callbacks);
    }
    this.growIfNeeded();
  }

  private connectingCapacity(): number {
    let n = 0;
    for (const c of this.clients) if (c.state === 'connecting') n += c.capacity;
    return n;
  }

  private growIfNeeded(): void {
    let attempts = this.queue.length;
    while (!this.destroyed && attempts-- > 0 && this.queue.length > this.connectingCapacity()) {
      if (!this.openConnection()) break;
    }
  }

  /** Open one connection; false when the circuit breaker forbids it. */
  private openConnection(): boolean {
    const cx = this.resources.connections;
    if (!cx.canCreate()) {
      this.stats.upstreamCxOverflow++;
      // Envoy: a pool with no connection at all may always open one, or it would never drain.
      if (this.clients.length > 0) return false;
    }
    const max = Math.max(1, this.settings.http2.maxConcurrentStreams);
    const c = new H2Client(this, max, this.settings.secure);
    // Start from what this origin's SETTINGS said last time (Envoy caches the concurrent stream
    // limit per origin), so a burst does not overrun a fresh connection before SETTINGS arrive.
    if (this.peerMaxStreams > 0 && this.peerMaxStreams < max) c.capacity = this.peerMaxStreams;
    this.clients.push(c);
    cx.inc();
    this.stats.upstreamCxTotal++;
    this.stats.upstreamCxActive++;
    this.host.activeConnections++;
    this.host.stats.cxTotal++;
    this.transport.connect(
      this.host,
      { alpn: this.settings.secure ? H2_ALPN : undefined, timeoutMs: this.settings.connectTimeoutMs },
      (err, conn) => this.onTransport(c, err, conn),
    );
    return true;
  }

  private onTransport(
    c: H2Client,
    err: { reason: ResetReason; detail: string } | undefined,
    conn: TransportConnection | undefined,
  ): void {
    if (err !== undefined || conn === undefined) {
      this.stats.upstreamCxConnectFail++;
      if (err?.reason === 'timeout') this.stats.upstreamCxConnectTimeout++;
      this.host.stats.cxConnectFail++;
      this.connectFailed(c, err?.reason ?? 'connect_failure', err?.detail ?? 'upstream connect failed');
      return;
    }
    const socket = conn.socket;
    if (c.state === 'closed' || this.destroyed) {
      socket.destroy();
      this.clientGone(c);
      return;
    }
    // Like Envoy with an explicit HTTP/2 cluster, speak h2 whatever ALPN said (Istio offers
    // "istio-peer-exchange"/"istio" first); only a peer that explicitly chose HTTP/1.1 is
    // failed here, with a clear reason instead of a protocol error later.
    if (conn.alpn === 'http/1.1') {
      socket.destroy();
      this.stats.upstreamCxConnectFail++;
      this.host.stats.cxConnectFail++;
      this.connectFailed(
        c,
        'protocol_error',
        `upstream ${this.host.key} negotiated ALPN http/1.1 on an HTTP/2 cluster`,
      );
      return;
    }
    c.info = {
      localAddress: socket.localAddress ?? '',
      localPort: socket.localPort ?? 0,
      protocol: 'HTTP/2',
      peerPrincipal: conn.peerPrincipal,
    };
    const h = this.settings.http2;
    if (this.settings.codec === 'meshlet') {
      this.startRaw(c, socket);
      return;
    }
    let session: ClientHttp2Session;
    try {
      // The URL only supplies node's default :authority (used when a request has none).
      session = h2connect(
        `${this.settings.secure ? 'https' : 'http'}://${this.host.address.kind === 'socket' ? this.host.key : 'localhost'}`,
        {
          createConnection: () => socket,
          settings: {
            enablePush: false,
            initialWindowSize: clampWindow(h.initialStreamWindowSize),
          },
          maxSessionMemory: 64,
        },
      );
    } catch (e) {
      socket.destroy();
      this.connectFailed(c, 'protocol_error', `cannot start HTTP/2 session: ${(e as Error).message}`);
      return;
    }
    c.session = session;
    session.on('error', (e: Error) => {
      if (log.isLevelEnabled('debug'))
        log.debug({ host: this.host.key, err: e.message }, 'upstream HTTP/2 session error');
    });
    session.once('connect', () => this.onConnected(c));
    session.on('remoteSettings', () => this.onRemoteSettings(c));
    session.on('goaway', () => this.onGoaway(c));
    session.once('close', () => this.onSessionClose(c));
  }

  /** Meshlet's own framing on the connected socket; ready at once, like node's 'connect'. */
  private startRaw(c: H2Client, socket: TransportConnection['socket']): void {
    const h = this.settings.http2;
    c.authority = this.host.address.kind === 'socket' ? this.host.key : 'localhost';
    const raw = new H2RawClientSession(
      socket,
      {
        streamWindow: clampWindow(h.initialStreamWindowSize),
        connectionWindow: clampWindow(h.initialConnectionWindowSize),
        maxHeaderListSize: RAW_MAX_RESPONSE_HEADERS,
      },
      {
        onRemoteSettings: () => this.onRemoteSettings(c),
        onGoaway: () => this.onGoaway(c),
        onClose: () => this.onSessionClose(c),
      },
    );
    c.raw = raw;
    process.nextTick(() => this.onConnected(c));
  }

  private onConnected(c: H2Client): void {
    if (c.state === 'closed') return;
    if (c.raw !== undefined) {
      if (c.raw.destroyed) return;
      if (c.state === 'connecting') c.state = 'ready';
      this.afterConnected(c);
      return;
    }
    const s = c.session;
    if (s === undefined || s.destroyed) return;
    const win = this.settings.http2.initialConnectionWindowSize;
    if (win > 65535) {
      try {
        s.setLocalWindowSize(clampWindow(win));
      } catch {
        // Session torn down meanwhile: its close handler cleans up.
      }
    }
    if (c.state === 'connecting') c.state = 'ready';
    this.afterConnected(c);
  }

  private afterConnected(c: H2Client): void {
    this.processQueue();
    if (c.drainWhenReady && c.state === 'ready') {
      c.state = 'draining';
      if (c.active === 0) this.closeClient(c);
      return;
    }
    this.maybeIdle(c);
  }

  private onRemoteSettings(c: H2Client): void {
    const peer = c.raw !== undefined ? c.raw.remoteMaxConcurrentStreams : c.session?.remoteSettings.maxConcurrentStreams;
    if (peer === undefined) return;
    this.peerMaxStreams = Math.max(1, Math.min(peer, 2 ** 31 - 1));
    const cap = Math.max(1, Math.min(c.configuredMax, peer));
    const grew = cap > c.capacity;
    c.capacity = cap;
    if (grew || this.queue.length > 0) this.processQueue();
  }

  private onGoaway(c: H2Client): void {
    // No new streams on this session; node closes it once its active streams finish.
    if (c.state !== 'closed') c.state = 'draining';
    if (this.queue.length > 0) this.processQueue();
  }

  private onSessionClose(c: H2Client): void {
    const wasConnecting = c.state === 'connecting';
    this.clientGone(c);
    if (wasConnecting) {
      this.failQueue('connect_failure', 'upstream closed the HTTP/2 connection before it was ready');
    } else if (this.queue.length > 0) {
      this.processQueue();
    }
  }

  private connectFailed(c: H2Client, reason: ResetReason, detail: string): void {
    this.clientGone(c);
    this.failQueue(reason, detail);
  }

  private failQueue(reason: ResetReason, detail: string): void {
    // Envoy purges all pending streams on a connect failure; moved out first so a retry that
    // calls newStream from onPoolFailure is queued afresh rather than failed inline.
    const failed = this.takeQueue();
    for (const p of failed) p.callbacks.onPoolFailure(reason, detail);
  }

  private clientGone(c: H2Client): void {
    if (c.state === 'closed') return;
    c.state = 'closed';
    if (c.idleTimer !== undefined) clearTimeout(c.idleTimer);
    const i = this.clients.indexOf(c);
    if (i >= 0) this.clients.splice(i, 1);
    this.resources.connections.dec();
    this.stats.upstreamCxActive--;
    this.stats.upstreamCxDestroy++;
    this.host.activeConnections--;
  }

  /** @internal A stream on `c` finished. */
  onStreamDone(c: H2Client): void {
    this.streams--;
    if (c.state === 'ready') {
      if (this.queue.length > 0) this.processQueue();
      this.maybeIdle(c);
    } else if (c.state === 'draining' && c.active === 0) {
      this.closeClient(c);
    }
  }

  private maybeIdle(c: H2Client): void {
    const ms = this.settings.idleTimeoutMs;
    if (ms <= 0 || c.active > 0 || c.state !== 'ready') return;
    if (c.idleTimer === undefined) {
      c.idleTimer = setTimeout(() => {
        if (c.active === 0 && c.state === 'ready') {
          c.state = 'draining';
          this.closeClient(c);
        }
      }, ms);
      c.idleTimer.unref();
    } else {
      c.idleTimer.refresh();
    }
  }

  private closeClient(c: H2Client): void {
    if (c.raw !== undefined) {
      c.raw.close();
      return;
    }
    const s = c.session;
    if (s === undefined) {
      // Still connecting at the transport level: onTransport destroys the socket.
      if (c.state !== 'closed') c.state = 'draining';
      return;
    }
    if (!s.closed && !s.destroyed) s.close();
  }
}
