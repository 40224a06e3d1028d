/**
 * The HTTP connection manager (Envoy's `envoy.filters.network.http_connection_manager`).
 *
 * Owns: the per-connection codec (HTTP/1.1 or HTTP/2, picked from codec_type, ALPN and what the
 * listener sniffed), and one ActiveStream per request that is the codec's RequestSink: the edge
 * headers (x-forwarded-*, x-request-id, x-envoy-* sanitising, `server`, `date`), the route cache
 * against the RouteConfiguration current when the request arrived (an RDS swap affects new
 * requests only), the request, idle and max-duration timers, and stream completion reporting for
 * access logs and metrics. Filter iteration, holds and local replies are the FilterManager's
 * (filter-manager.ts), which reaches the stream only through FilterManagerCallbacks; the router is
 * an ordinary terminal filter from the registry, so nothing here knows about upstreams.
 *
 * Leans lean: ActiveStream is one class whose methods are the codec and filter-manager callbacks
 * (no closures per request; timers get the stream as an argument). Never throws on traffic: a
 * failure inside a stream becomes a 500 local reply or a reset.
 */
import { EMPTY_RUNTIME, type RuntimeReader } from '../../common/runtime';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { HcmConfig, NodeInfo, RouteConfiguration } from '../config/types';
import type { ConnectionHandler, DrainDecision, Sniffed } from '../listeners/types';
import { logger } from '../../common/logger';
import type { ClusterLookup } from '../upstream/types';
import type {
  CodecErrorReport,
  DownstreamConnectionInfo,
  HeaderList,
  HttpProtocol,
  RequestHead,
  RequestSink,
  ResetReason,
  ResponseEncoder,
  ResponseHead,
  ServerCodecCallbacks,
} from './codec';
import type { HttpFilterRegistry } from './filter';
import { type ResolvedChain, resolveFilterChain } from './filter-chain';
import type { FilterManagerCallbacks } from './filter-callbacks';
import { FilterManager } from './filter-manager';
import { H1ServerCodec, h1ServerOptions } from './h1/server-codec';
import { H2ServerCodec, h2ServerOptionsFromHcm } from './h2/server-codec';
import { H2RawServerCodec } from './h2/raw-server-session';
import { h2ServerCodecKind } from './h2/server-settings';
import {
  applyServerHeader,
  applyXfcc,
  type EdgeResult,
  mutateRequestHeaders,
  normalizeRequestPath,
} from './edge-headers';
import { getHeader, type HeaderFormatContext, setHeader, stripHopByHop } from './headers';
import { type CompiledRoute, isGrpcRequest, routeTable } from './route-matcher';
import { type HttpTracer, type StreamCompleteListener, StreamInfo } from './stream-info';

const log = logger('hcm');

/** Everything a connection manager is built from (one per filter chain). */
export interface HcmOptions {
  readonly config: HcmConfig;
  /**
   * The current route table: static, or the latest RDS resource. Called once per request, so a
   * swap affects new requests only. undefined = not yet received (requests get 404 NR).
   */
  readonly routes: () => RouteConfiguration | undefined;
  /** Filter factories by typed_config type (registered from the composition root). */
  readonly filters: HttpFilterRegistry;
  readonly clusters: ClusterLookup;
  /** The proxy's layered runtime (runtime_fraction, filter percentages); default: empty. */
  readonly runtime?: RuntimeReader;
  /** The proxy's node, for filters that speak for it (Istio's peer metadata exchange). */
  readonly localNode?: NodeInfo;
  /** Called once per finished stream (access logs, metrics, tracing). */
  readonly onStreamComplete?: StreamCompleteListener;
  /** Starts a span per stream when this connection manager traces (telemetry/tracing.ts). */
  readonly tracer?: HttpTracer;
  /** Randomness for weighted clusters and retry jitter (tests may pin it). */
  readonly random?: () => number;
}

interface Codec {
  readonly activeStreams: number;
  drain(): void;
  destroy(): void;
}

/** Drain at once (a replaced chain, a listener drained without a drain time). */
const DRAIN_NOW: DrainDecision = { drainClose: () => true, noticeDelayMs: () => 0 };

export class HttpConnectionManager implements ConnectionHandler, ServerCodecCallbacks {
  readonly config: HcmConfig;
  /** http_filters resolved once: every stream's FilterManager instantiates it. */
  readonly chain: ResolvedChain;
  private readonly codecs = new Set<Codec>();
  /** AUTO connections still waiting for their first bytes. */
  private readonly undecided = new Set<Socket>();
  /**
   * Set once the listener drains (Envoy's drain decision): asked on every response whether to
   * close after it. undefined while not draining, so the hot path pays one check.
   */
  drainDecision: DrainDecision | undefined;
  /** Per connection while draining: the timer that starts its drain, then the one that closes it if idle. */
  private readonly drainTimers = new Map<Codec, NodeJS.Timeout>();

  constructor(readonly opts: HcmOptions) {
    this.config = opts.config;
    this.chain = resolveFilterChain(opts.config, opts.filters);
  }

  get activeConnections(): number {
    return this.codecs.size + this.undecided.size;
  }

  /** Streams in flight across all connections. */
  get activeStreams(): number {
    let n = 0;
    for (const c of this.codecs) n += c.activeStreams;
    return n;
  }

  /** Take an accepted connection: pick HTTP/1.1 or HTTP/2 and start serving it. */
  handle(socket: Socket, info: DownstreamConnectionInfo, sniffed: Sniffed | undefined): void {
    const cfg = this.config;
    let h2: boolean | undefined;
    if (cfg.codecType === 'HTTP2') h2 = true;
    else if (cfg.codecType === 'HTTP1') h2 = false;
    else if (sniffed?.application !== undefined) h2 = sniffed.application === 'h2';
    // TLS with a negotiated ALPN decides; without one (Istio's istio-h2 / istio-http/1.1 offers
    // meet h2 / http/1.1: nothing in common) the first bytes do, as Envoy's AUTO codec.
    else if (info.tls !== undefined && info.tls.alpn !== undefined) h2 = info.tls.alpn === 'h2';
    if (h2 !== undefined) {
      this.serve(socket, info, h2);
      return;
    }
    // AUTO on a connection nobody inspected: one read decides (the HTTP/2 preface starts "PRI ").
    this.undecided.add(socket);
    // A client that connects and never sends a byte is still subject to idle_timeout (Envoy arms
    // the connection idle timer before any codec exists), and one that half-closes before its
    // first byte is gone (listeners allow half-open sockets for tcp_proxy).
    const idleMs = cfg.idleTimeoutMs;
    const idle = idleMs > 0 ? setTimeout(destroyUndecided, idleMs, socket) : undefined;
    idle?.unref();
    const onEnd = (): void => {
      socket.destroy();
    };
    socket.once('end', onEnd);
    socket.once('close', () => {
      this.undecided.delete(socket);
      if (idle !== undefined) clearTimeout(idle);
    });
    socket.once('data', (first: Buffer) => {
      if (idle !== undefined) clearTimeout(idle);
      socket.removeListener('end', onEnd);
      this.undecided.delete(socket);
      socket.pause();
      socket.unshift(first);
      const h2 = isH2Preface(first);
      this.serve(socket, info, h2);
      // node:http2 drains the unshifted bytes itself; the HTTP/1 codec reads through 'data'.
      if (!h2) socket.resume();
    });
  }

  private serve(socket: Socket, info: DownstreamConnectionInfo, h2: boolean): void {
    const cfg = this.config;
    // One closure per connection (not per request): rejected requests are reported with their connection.
    const onCodecError = (r: CodecErrorReport): void => this.onCodecError(r, info, h2);
    let codec: Codec;
    if (h2) {
      const Codec = h2ServerCodecKind() === 'meshlet' ? H2RawServerCodec : H2ServerCodec;
      codec = new Codec(socket, info, this, { ...h2ServerOptionsFromHcm(cfg), onCodecError });
    } else {
      codec = new H1ServerCodec(socket, this, info, h1ServerOptions(cfg, onCodecError));
    }
    this.codecs.add(codec);
    socket.once('close', () => {
      this.codecs.delete(codec);
      const t = this.drainTimers.get(codec);
      if (t !== undefined) {
        clearTimeout(t);
        this.drainTimers.delete(codec);
      }
    });
    if (this.drainDecision !== undefined) this.scheduleDrain(codec, this.drainDecision);
  }

  /**
   * Graceful drain (Envoy's listener drain): every response may now close its connection (see
   * ActiveStream.writeHeaders), and each live connection — and each one accepted while draining —
   * starts draining on its own after the decision's delay. A connection that has not sent its
   * first byte yet (AUTO, undecided) is left alone: closing it could race the request its client
   * is writing; it drains once it has a codec.
   */
  drain(decision: DrainDecision = DRAIN_NOW): void {
    if (this.drainDecision !== undefined && decision !== DRAIN_NOW) return;
    this.drainDecision = decision;
    for (const c of this.codecs) this.scheduleDrain(c, decision);
  }

  private scheduleDrain(codec: Codec, decision: DrainDecision): void {
    const old = this.drainTimers.get(codec);
    if (old !== undefined) clearTimeout(old);
    const delay = decision.noticeDelayMs();
    if (delay <= 0) {
      this.startDrainSequence(codec);
      return;
    }
    const t = setTimeout(() => this.startDrainSequence(codec), delay);
    t.unref();
    this.drainTimers.set(codec, t);
  }

  /**
   * Envoy's startDrainSequence for one connection. HTTP/2: GOAWAY now (node can only send the
   * final GOAWAY — last stream id = last processed — not nghttp2's shutdown notice, after which
   * nghttp2 would silently ignore new streams; clients retry streams above the last id), and the
   * connection closes once its streams end. HTTP/1.1: the next response says `Connection: close`
   * and the connection closes after it; one that stays idle for drain_timeout is closed then
   * (Envoy's onDrainTimeout) — an idle HTTP/1.1 connection cannot be told anything else.
   */
  private startDrainSequence(codec: Codec): void {
    this.drainTimers.delete(codec);
    if (!(codec instanceof H1ServerCodec)) {
      codec.drain();
      return;
    }
    codec.shutdownNotice();
    const t = setTimeout(() => {
      this.drainTimers.delete(codec);
      codec.drain();
    }, this.config.drainTimeoutMs);
    t.unref();
    this.drainTimers.set(codec, t);
  }

  /** Close every connection now. */
  destroy(): void {
    for (const t of this.drainTimers.values()) clearTimeout(t);
    this.drainTimers.clear();
    for (const c of this.codecs) c.destroy();
    this.codecs.clear();
    for (const s of this.undecided) s.destroy();
    this.undecided.clear();
  }

  newStream(encoder: ResponseEncoder): RequestSink {
    return new ActiveStream(this, encoder);
  }

  /** A request the codec answered itself (400/408/413/431…): reported like a finished stream. */
  private onCodecError(r: CodecErrorReport, conn: DownstreamConnectionInfo, h2: boolean): void {
    if (!this.opts.onStreamComplete) return;
    const info = new StreamInfo(conn, h2 ? 'HTTP/2' : 'HTTP/1.1');
    info.responseCode = r.status;
    info.responseCodeDetails = r.detail;
    info.setResponseFlag(r.flag);
    this.complete(info);
  }

  /** Report a finished stream; a failing listener never breaks the data plane. */
  complete(info: StreamInfo): void {
    const l = this.opts.onStreamComplete;
    if (!l) return;
    try {
      l(info);
    } catch (err) {
      log.warn({ err }, 'stream completion listener failed');
    }
  }
}

let dateSecond = -1;
let dateValue = '';

/** The IMF-fixdate for now, rebuilt at most once per second. */
export function httpDate(): string {
  const now = Date.now();
  const sec = Math.floor(now / 1000);
  if (sec !== dateSecond) {
    dateSecond = sec;
    dateValue = new Date(now).toUTCString();
  }
  return dateValue;
}

const PREFACE_START = Buffer.from('PRI ', 'latin1');

/** idle_timeout fired on a connection that never sent its first byte. */
function destroyUndecided(socket: Socket): void {
  socket.destroy();
}

/** Whether the first bytes of a connection can only be the HTTP/2 client preface. */
export function isH2Preface(first: Buffer): boolean {
  const n = Math.min(first.length, PREFACE_START.length);
  return n > 0 && first.subarray(0, n).equals(PREFACE_START.subarray(0, n));
}

// ───────────────────────────── one request stream ─────────────────────────────

function onStreamIdleTimeout(s: ActiveStream): void {
  s.onIdleTimeout();
}
function onRequestTimeout(s: ActiveStream): void {
  s.onRequestTimeout();
}
function onMaxDuration(s: ActiveStream): void {
  s.onMaxDurationReached();
}

/**
 * One request: the codec's sink and the filter manager's stream. It is also the EdgeResult the
 * edge header logic fills in (`internal`, `trustedAddress`), so that no extra object is needed.
 */
export class ActiveStream implements RequestSink, FilterManagerCallbacks, HeaderFormatContext, EdgeResult {
  readonly info: StreamInfo;
  readonly hcm: HcmConfig;
  readonly connection: DownstreamConnectionInfo;
  /** EdgeResult: whether the request comes from an internal (trusted) client. */
  internal = false;
  /** EdgeResult: the trusted client address ("" when unknown). */
  trustedAddress = '';
  private head: RequestHead | undefined;
  private rc: RouteConfiguration | undefined;
  private routeEntry: CompiledRoute | undefined;
  private routeResolved = false;
  private readonly fm: FilterManager;

  private requestComplete = false;
  private responseComplete = false;
  private destroyed = false;

  private idleTimer: NodeJS.Timeout | undefined;
  private requestTimer: NodeJS.Timeout | undefined;
  private durationTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly manager: HttpConnectionManager,
    private readonly encoder: ResponseEncoder,
  ) {
    this.hcm = manager.config;
    this.connection = encoder.connection;
    this.info = new StreamInfo(encoder.connection, encoder.protocol);
    this.fm = new FilterManager(this, manager.chain);
    const idle = this.hcm.streamIdleTimeoutMs;
    if (idle > 0) this.idleTimer = setTimeout(onStreamIdleTimeout, idle, this);
  }

  // ─────────────── HeaderFormatContext / FilterManagerCallbacks ───────────────

  get request(): RequestHead | undefined {
    return this.head;
  }
  get upstreamHost(): string | undefined {
    return this.info.upstreamHost || undefined;
  }
  get formatContext(): HeaderFormatContext {
    return this;
  }
  /** HeaderFormatContext.upstreamMetadata: the chosen host's filter_metadata. */
  get upstreamMetadata(): Readonly<Record<string, unknown>> | undefined {
    return this.info.upstreamHostMetadata;
  }
  get downstreamProtocol(): HttpProtocol {
    return this.encoder.protocol;
  }
  /** The client address the edge logic settled on. */
  get trustedRemoteAddress(): string {
    return this.trustedAddress;
  }
  get random(): () => number {
    return this.manager.opts.random ?? Math.random;
  }
  /** For filters that call services through a cluster. */
  get runtime(): RuntimeReader {
    return this.manager.opts.runtime ?? EMPTY_RUNTIME;
  }
  get clusters(): ClusterLookup {
    return this.manager.opts.clusters;
  }
  get localNode(): NodeInfo | undefined {
    return this.manager.opts.localNode;
  }

  // ─────────────── RequestSink (called by the codec) ───────────────

  onRequestHeaders(head: RequestHead, endStream: boolean): void {
    try {
      this.decodeHeadersImpl(head, endStream);
    } catch (err) {
      this.onFilterError(err);
    }
  }

  private decodeHeadersImpl(head: RequestHead, endStream: boolean): void {
    const info = this.info;
    this.head = head;
    this.requestComplete = endStream;
    info.method = head.method;
    info.path = head.path;
    info.authority = head.authority;
    info.protocol = head.protocol;
    stripHopByHop(head.headers); // codecs already do; a no-op scan when clean
    mutateRequestHeaders(head, this.connection, this.hcm, this);
    applyXfcc(head.headers, this.connection, this.hcm);
    info.internal = this.internal;
    info.requestId = getHeader(head.headers, 'x-request-id') ?? '';
    info.userAgent = getHeader(head.headers, 'user-agent') ?? '';
    info.grpc = isGrpcRequest(head);
    info.requestHeaders = head.headers;
    const tracer = this.manager.opts.tracer;
    if (tracer !== undefined) info.span = tracer.startSpan(head, info);
    if (endStream) info.lastDownstreamRxByteMs = info.now();
    else if (this.hcm.requestTimeoutMs > 0)
      this.requestTimer = setTimeout(onRequestTimeout, this.hcm.requestTimeoutMs, this);
    this.rc = this.manager.opts.routes();
    if ((this.hcm.normalizePath || this.hcm.mergeSlashes) && head.method !== 'CONNECT') {
      const p = normalizeRequestPath(head.path, this.hcm.normalizePath, this.hcm.mergeSlashes);
      if (p === undefined) {
        this.fm.sendLocalReply(400, '', undefined, 'DPE', 'path_normalization_failed');
        return;
      }
      head.path = p;
    }
    this.fm.decodeHeaders(head, endStream);
  }

  onRequestData(chunk: Buffer, endStream: boolean): void {
    if (this.destroyed || this.fm.replied) return;
    this.info.bytesReceived += chunk.length;
    this.idleTimer?.refresh();
    if (endStream) this.onRequestEnd();
    try {
      this.fm.decodeData(chunk, endStream);
    } catch (err) {
      this.onFilterError(err);
    }
  }

  onRequestTrailers(trailers: HeaderList): void {
    if (this.destroyed || this.fm.replied) return;
    this.onRequestEnd();
    try {
      this.fm.decodeTrailers(trailers);
    } catch (err) {
      this.onFilterError(err);
    }
  }

  onDownstreamReset(_reason: ResetReason): void {
    if (this.destroyed) return;
    if (!this.responseComplete) this.info.setResponseFlag('DC');
    this.finalize();
  }

  onDownstreamWritable(): void {
    this.fm.onDownstreamWritable();
  }

  private onRequestEnd(): void {
    this.requestComplete = true;
    this.info.lastDownstreamRxByteMs = this.info.now();
    if (this.requestTimer !== undefined) {
      clearTimeout(this.requestTimer);
      this.requestTimer = undefined;
    }
  }

  // ─────────────── route cache ───────────────

  resolveRoute(): CompiledRoute | undefined {
    if (!this.routeResolved) {
      this.routeResolved = true;
      this.routeEntry = this.rc && this.head ? routeTable(this.rc).route(this.head, this.runtime, this.random) : undefined;
      const r = this.routeEntry;
      if (r) {
        this.info.routeName = r.route.name;
        this.info.virtualHostName = r.vhost.name;
        const a = r.route.action;
        if (a.kind === 'route' && !this.destroyed) {
          // The route's idle_timeout overrides stream_idle_timeout (also when that is disabled).
          if (a.idleTimeoutMs > 0) {
            if (this.idleTimer !== undefined) clearTimeout(this.idleTimer);
            this.idleTimer = setTimeout(onStreamIdleTimeout, a.idleTimeoutMs, this);
          }
          // max_stream_duration counts from the start of the stream.
          const max = a.maxStreamDurationMs ?? 0;
          if (max > 0 && this.durationTimer === undefined) {
            this.durationTimer = setTimeout(onMaxDuration, Math.max(1, max - this.info.now()), this);
          }
        }
      }
    }
    return this.routeEntry;
  }

  routeConfig(): RouteConfiguration | undefined {
    return this.rc;
  }

  clearRouteCache(): void {
    this.routeResolved = false;
    this.routeEntry = undefined;
  }

  // ─────────────── response towards the codec ───────────────

  onResponseStarted(): void {
    // Envoy disarms request_timeout once the response starts.
    if (this.requestTimer !== undefined) {
      clearTimeout(this.requestTimer);
      this.requestTimer = undefined;
    }
    this.idleTimer?.refresh();
  }

  refreshIdleTimer(): void {
    this.idleTimer?.refresh();
  }

  writeHeaders(head: ResponseHead, endStream: boolean): void {
    applyServerHeader(head.headers, this.hcm);
    // Envoy's date provider stamps every response (upstream date headers are replaced).
    setHeader(head.headers, 'date', httpDate());
    const info = this.info;
    info.responseCode = head.status;
    info.firstDownstreamTxByteMs = info.now();
    // Draining: this response may close its connection (not an upgrade or CONNECT: the bytes
    // after it are no longer HTTP).
    const drain = this.manager.drainDecision;
    if (drain !== undefined && head.status !== 101 && this.head?.method !== 'CONNECT' && drain.drainClose()) {
      this.encoder.closeAfterResponse();
    }
    this.encoder.writeHeaders(head, endStream);
    if (endStream) this.onResponseEnd();
  }

  writeData(chunk: Buffer, endStream: boolean): boolean {
    this.info.bytesSent += chunk.length;
    const ok = this.encoder.writeData(chunk, endStream);
    if (endStream) this.onResponseEnd();
    return ok;
  }

  writeTrailers(trailers: HeaderList): void {
    this.encoder.writeTrailers(trailers);
    this.onResponseEnd();
  }

  setReadDisabled(disabled: boolean): void {
    if (disabled) this.encoder.pauseRequest();
    else if (!this.destroyed) this.encoder.resumeRequest();
  }

  resetStream(reason: ResetReason): void {
    if (this.destroyed) return;
    // Finalize first: a codec that reports the reset back synchronously must not add DC.
    this.finalize();
    this.encoder.reset(reason);
  }

  takeDownstreamTunnel(): Duplex {
    this.clearTimers();
    return this.encoder.takeTunnel();
  }

  onTunnelDone(bytesUp: number, bytesDown: number): void {
    this.info.bytesReceived += bytesUp;
    this.info.bytesSent += bytesDown;
    this.responseComplete = true;
    this.finalize();
  }

  // ─────────────── timeouts and completion ───────────────

  onIdleTimeout(): void {
    this.idleTimer = undefined;
    if (this.destroyed) return;
    this.info.setResponseFlag('SI');
    this.fm.failStream(408, 'stream timeout', 'SI', 'stream_idle_timeout', 'timeout');
  }

  onRequestTimeout(): void {
    this.requestTimer = undefined;
    if (this.destroyed || this.requestComplete) return;
    this.fm.failStream(408, 'request timeout', undefined, 'request_overall_timeout', 'timeout');
  }

  /** The route's max_stream_duration elapsed (Envoy: 408 "downstream duration timeout" or a reset). */
  onMaxDurationReached(): void {
    this.durationTimer = undefined;
    if (this.destroyed) return;
    this.fm.failStream(408, 'downstream duration timeout', undefined, 'max_duration_timeout', 'timeout');
  }

  private onResponseEnd(): void {
    this.responseComplete = true;
    this.info.lastDownstreamTxByteMs = this.info.now();
    this.finalize();
  }

  onFilterError(err: unknown): void {
    log.error({ err }, 'stream failed inside the connection manager');
    if (this.destroyed) return;
    if (this.fm.responseHeadersWritten) this.resetStream('local_reset');
    else this.fm.sendLocalReply(500, 'internal error', undefined, undefined, 'internal_error');
  }

  private clearTimers(): void {
    if (this.idleTimer !== undefined) {
      clearTimeout(this.idleTimer);
      this.idleTimer = undefined;
    }
    if (this.requestTimer !== undefined) {
      clearTimeout(this.requestTimer);
      this.requestTimer = undefined;
    }
    if (this.durationTimer !== undefined) {
      clearTimeout(this.durationTimer);
      this.durationTimer = undefined;
    }
  }

  /** The stream is over (response complete, reset, or tunnel closed): release and report once. */
  private finalize(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.clearTimers();
    this.fm.destroy(onFilterDestroyError);
    this.manager.complete(this.info);
  }
}

function onFilterDestroyError(err: unknown): void {
  log.warn({ err }, 'filter onDestroy failed');
}
