/**
 * The HTTP connection manager (Envoy's `envoy.filters.network.http_connection_manager`).
 *
 * Owns: the per-connection codec (HTTP/1.1 or HTTP/2, picked from codec_type, ALPN and what the
 * listener sniffed), one ActiveStream per request that implements the codec's RequestSink, the
 * edge headers (x-forwarded-*, x-request-id, x-envoy-* sanitising, `server`), route selection
 * against the RouteConfiguration current when the request arrived (an RDS swap affects new
 * requests only), the decoder filter chain in order and encoder filters in reverse, local replies
 * in Envoy's format (gRPC-aware), the request and stream idle timeouts, and stream completion
 * reporting for access logs and metrics.
 *
 * Leans lean: ActiveStream is one class whose methods are the codec, filter and router callbacks
 * (no closures per request; timers get the stream as an argument); a chain holding only the router
 * creates no filter objects, and the router itself is allocated only when a request reaches it.
 * Never throws on traffic: a failure inside a stream becomes a 500 local reply or a reset.
 */
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { HcmConfig, RouteConfiguration } from '../config/types';
import { ConfigError, type FieldIssue, type ResponseFlag } from '../../common/errors';
import type { ConnectionHandler, Sniffed } from '../listeners/types';
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
import {
  FilterStatus,
  type HttpFilter,
  type HttpFilterCallbacks,
  type HttpFilterFactory,
  type HttpFilterRegistry,
} from './filter';
import { DEFAULT_ROUTER_CONFIG, type RouterConfig } from './filters/router-factory';
import { H1ServerCodec, h1ServerOptions } from './h1/server-codec';
import { H2ServerCodec, h2ServerOptionsFromHcm } from './h2/server-codec';
import {
  applyServerHeader,
  applyXfcc,
  type EdgeResult,
  getHeader,
  type HeaderFormatContext,
  mutateRequestHeaders,
  normalizeRequestPath,
  setHeader,
  stripHopByHop,
} from './headers';
import { type CompiledRoute, isGrpcRequest, routeTable } from './route-matcher';
import { RouterStream, type RouterStreamCallbacks } from './router';
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
  /** Called once per finished stream (access logs, metrics, tracing). */
  readonly onStreamComplete?: StreamCompleteListener;
  /** Starts a span per stream when this connection manager traces (telemetry/tracing.ts). */
  readonly tracer?: HttpTracer;
  /** Randomness for weighted clusters and retry jitter (tests may pin it). */
  readonly random?: () => number;
}

/** One resolved non-terminal filter of the chain. */
interface ChainEntry {
  readonly name: string;
  readonly factory: HttpFilterFactory;
  readonly config: unknown;
}

interface Codec {
  readonly activeStreams: number;
  drain(): void;
  destroy(): void;
}

/** Resolve http_filters against the registry: non-terminal filters, then the router's config. */
export function resolveFilterChain(
  cfg: HcmConfig,
  registry: HttpFilterRegistry,
): { chain: ChainEntry[]; router: RouterConfig } {
  const chain: ChainEntry[] = [];
  const issues: FieldIssue[] = [];
  let router: RouterConfig | undefined;
  cfg.httpFilters.forEach((f, i) => {
    if (f.disabled) return;
    const factory = registry.get(f.typeName);
    if (!factory) {
      if (!f.isOptional)
        issues.push({ path: `http_filters[${i}]`, message: `filter type ${f.typeName} is not supported by meshlet` });
      return;
    }
    if (factory.terminal) {
      if (i !== cfg.httpFilters.length - 1)
        issues.push({ path: `http_filters[${i}]`, message: 'the router must be the last filter' });
      router = { ...DEFAULT_ROUTER_CONFIG, ...((f.config as Partial<RouterConfig> | undefined) ?? {}) };
      return;
    }
    chain.push({ name: f.name, factory, config: f.config });
  });
  if (!router) issues.push({ path: 'http_filters', message: 'the chain must end with envoy.filters.http.router' });
  if (issues.length > 0) throw new ConfigError(`http_connection_manager ${cfg.statPrefix}`, issues);
  return { chain, router: router! };
}

export class HttpConnectionManager implements ConnectionHandler, ServerCodecCallbacks {
  readonly config: HcmConfig;
  readonly chain: readonly ChainEntry[];
  readonly routerConfig: RouterConfig;
  private readonly codecs = new Set<Codec>();
  /** AUTO connections still waiting for their first bytes. */
  private readonly undecided = new Set<Socket>();
  private draining = false;

  constructor(readonly opts: HcmOptions) {
    this.config = opts.config;
    const { chain, router } = resolveFilterChain(opts.config, opts.filters);
    this.chain = chain;
    this.routerConfig = router;
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
    else if (info.tls !== undefined) h2 = info.tls.alpn === 'h2';
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
    if (this.draining) socket.end();
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
      codec = new H2ServerCodec(socket, info, this, { ...h2ServerOptionsFromHcm(cfg), onCodecError });
    } else {
      codec = new H1ServerCodec(socket, this, info, h1ServerOptions(cfg, onCodecError));
    }
    this.codecs.add(codec);
    socket.once('close', () => this.codecs.delete(codec));
    if (this.draining) codec.drain();
  }

  /** Graceful drain: Connection: close / GOAWAY on every live connection. */
  drain(): void {
    this.draining = true;
    for (const c of this.codecs) c.drain();
    for (const s of this.undecided) s.end();
  }

  /** Close every connection now. */
  destroy(): void {
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

/** Whether the first bytes of a connection can only be the HTTP/2 client preface. */
/** idle_timeout fired on a connection that never sent its first byte. */
function destroyUndecided(socket: Socket): void {
  socket.destroy();
}

export function isH2Preface(first: Buffer): boolean {
  const n = Math.min(first.length, PREFACE_START.length);
  return n > 0 && first.subarray(0, n).equals(PREFACE_START.subarray(0, n));
}

// ───────────────────────────── local replies ─────────────────────────────

/** Envoy's HTTP → gRPC status mapping for local replies to gRPC requests. */
export function httpToGrpcStatus(status: number): number {
  switch (status) {
    case 400:
      return 13; // INTERNAL
    case 401:
      return 16; // UNAUTHENTICATED
    case 403:
      return 7; // PERMISSION_DENIED
    case 404:
      return 12; // UNIMPLEMENTED
    case 429:
    case 502:
    case 503:
    case 504:
      return 14; // UNAVAILABLE
    default:
      return 2; // UNKNOWN
  }
}

/** gRPC's percent-encoding of grpc-message (printable ASCII except '%' stays as is). */
export function grpcPercentEncode(s: string): string {
  let simple = true;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c > 0x7e || c === 0x25) {
      simple = false;
      break;
    }
  }
  if (simple) return s;
  let out = '';
  for (const b of Buffer.from(s, 'utf8')) {
    out +=
      b < 0x20 || b > 0x7e || b === 0x25 ? `%${b.toString(16).toUpperCase().padStart(2, '0')}` : String.fromCharCode(b);
  }
  return out;
}

// ───────────────────────────── one request stream ─────────────────────────────

const NO_FILTERS: readonly HttpFilter[] = [];
/** Request bytes queued behind a stopped decoder filter before reading is paused. */
const HOLD_LIMIT_BYTES = 64 * 1024;
/** Body bytes one filter may keep with StopIterationAndBuffer (Envoy's default buffer limit). */
export const FILTER_BUFFER_LIMIT_BYTES = 1024 * 1024;
const PAUSE_ROUTER = 1;
const PAUSE_FILTER_HOLD = 2;
const EVENT_DATA = 0;
const EVENT_TRAILERS = 1;
const EVENT_HEADERS = 2;

/** A response event held while an encoder filter has stopped iteration. */
interface HeldEncode {
  readonly kind: typeof EVENT_DATA | typeof EVENT_TRAILERS | typeof EVENT_HEADERS;
  readonly head: ResponseHead | undefined;
  readonly chunk: Buffer | undefined;
  readonly trailers: HeaderList | undefined;
  readonly endStream: boolean;
  /** Replay from this filter (default: the first encoder filter). */
  readonly from?: number;
}

/** A decode event held while a filter has stopped iteration. */
interface HeldEvent {
  readonly kind: typeof EVENT_DATA | typeof EVENT_TRAILERS;
  readonly chunk: Buffer | undefined;
  readonly endStream: boolean;
  readonly trailers: HeaderList | undefined;
  /** Replay from this filter (default 0). */
  readonly from?: number;
}

function onStreamIdleTimeout(s: ActiveStream): void {
  s.onIdleTimeout();
}
function onRequestTimeout(s: ActiveStream): void {
  s.onRequestTimeout();
}
function onMaxDuration(s: ActiveStream): void {
  s.onMaxDurationReached();
}

// ───── StopIterationAndBuffer bookkeeping: slots exist only once a filter of the stream buffers ─────

/**
 * After filter `i` handled `chunk`: when it buffers, keep the chunk and return undefined; when it
 * continues, return the chunk to pass on — prefixed with what it buffered before, if anything.
 */
function takeBuffered(
  slots: (Buffer[] | undefined)[] | undefined,
  i: number,
  chunk: Buffer,
  buffer: boolean,
): Buffer | undefined {
  if (slots === undefined) return chunk;
  const kept = slots[i];
  if (buffer) {
    if (kept === undefined) slots[i] = [chunk];
    else kept.push(chunk);
    return undefined;
  }
  if (kept === undefined) return chunk;
  slots[i] = undefined;
  kept.push(chunk);
  return Buffer.concat(kept);
}

function bufferedBytes(slots: (Buffer[] | undefined)[] | undefined, i: number): number {
  const kept = slots?.[i];
  if (kept === undefined) return 0;
  let n = 0;
  for (const b of kept) n += b.length;
  return n;
}

function concatBuffered(slots: (Buffer[] | undefined)[], i: number): Buffer {
  const kept = slots[i] ?? [];
  slots[i] = undefined;
  return kept.length === 1 ? kept[0]! : Buffer.concat(kept);
}

export class ActiveStream implements RequestSink, HttpFilterCallbacks, RouterStreamCallbacks, HeaderFormatContext {
  readonly info: StreamInfo;
  readonly hcm: HcmConfig;
  readonly connection: DownstreamConnectionInfo;
  private head: RequestHead | undefined;
  private rc: RouteConfiguration | undefined;
  private routeEntry: CompiledRoute | undefined;
  private routeResolved = false;
  private readonly edge: EdgeResult = { internal: false, trustedAddress: '' };
  private filters: readonly HttpFilter[] = NO_FILTERS;
  private router: RouterStream | undefined;

  private requestComplete = false;
  /** The response entered the encoder chain (the router may no longer send a local reply). */
  private started = false;
  /** Response headers were handed to the codec. */
  private headersWritten = false;
  private responseComplete = false;
  private destroyed = false;
  private localReplied = false;
  private decodeStoppedAt = -1;
  private decodeStoppedKind = -1;
  private held: HeldEvent[] | undefined;
  private heldBytes = 0;
  private heldEncodeBytes = 0;
  /** Why reading the request is paused (bit set of PAUSE_*). */
  private pauseReasons = 0;
  /** Index of the filter that asked to buffer the request body (setDecoderBufferLimit), or -1. */
  private bufferingFilter = -1;
  private decoderBufferLimit = 0;
  private heldHeadersEnd = false;
  private encodeStoppedAt = -1;
  private encodeStoppedEvent: HeldEncode | undefined;
  private heldEncode: HeldEncode[] | undefined;
  /** Index of the filter being called (perRouteConfig of that filter). */
  private current = -1;
  /** Chunks kept by filters that returned StopIterationAndBuffer, by filter index (rare). */
  private decodeBuffered: (Buffer[] | undefined)[] | undefined;
  private encodeBuffered: (Buffer[] | undefined)[] | undefined;

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
    const idle = this.hcm.streamIdleTimeoutMs;
    if (idle > 0) this.idleTimer = setTimeout(onStreamIdleTimeout, idle, this);
  }

  // ─────────────── HeaderFormatContext / RouterStreamCallbacks ───────────────

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
  get internal(): boolean {
    return this.edge.internal;
  }
  /** HttpFilterCallbacks.trustedRemoteAddress: the client address the edge logic settled on. */
  get trustedRemoteAddress(): string {
    return this.edge.trustedAddress;
  }
  get responseStarted(): boolean {
    return this.started;
  }
  /** HttpFilterCallbacks.clusters: for filters that call services through a cluster. */
  get clusters(): ClusterLookup {
    return this.manager.opts.clusters;
  }

  // ─────────────── RequestSink (called by the codec) ───────────────

  onRequestHeaders(head: RequestHead, endStream: boolean): void {
    try {
      this.decodeHeadersImpl(head, endStream);
    } catch (err) {
      this.internalError(err);
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
    mutateRequestHeaders(head, this.connection, this.hcm, this.edge);
    applyXfcc(head.headers, this.connection, this.hcm);
    info.internal = this.edge.internal;
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
        this.sendLocalReply(400, '', undefined, 'DPE', 'path_normalization_failed');
        return;
      }
      head.path = p;
    }

    const chain = this.manager.chain;
    if (chain.length > 0) {
      const fs: HttpFilter[] = new Array(chain.length);
      for (let i = 0; i < chain.length; i++) {
        this.current = i;
        fs[i] = chain[i]!.factory.create(chain[i]!.config, this);
      }
      this.filters = fs;
      this.runDecodeHeaders(0, endStream);
    } else {
      this.routeToUpstream(endStream);
    }
  }

  onRequestData(chunk: Buffer, endStream: boolean): void {
    if (this.destroyed || this.localReplied) return;
    this.info.bytesReceived += chunk.length;
    this.idleTimer?.refresh();
    if (endStream) this.onRequestEnd();
    try {
      if (this.decodeStoppedAt >= 0) this.hold({ kind: EVENT_DATA, chunk, endStream, trailers: undefined });
      else this.runDecodeData(0, chunk, endStream);
    } catch (err) {
      this.internalError(err);
    }
  }

  onRequestTrailers(trailers: HeaderList): void {
    if (this.destroyed || this.localReplied) return;
    this.onRequestEnd();
    try {
      if (this.decodeStoppedAt >= 0) this.hold({ kind: EVENT_TRAILERS, chunk: undefined, endStream: true, trailers });
      else this.runDecodeTrailers(0, trailers);
    } catch (err) {
      this.internalError(err);
    }
  }

  onDownstreamReset(_reason: ResetReason): void {
    if (this.destroyed) return;
    if (!this.responseComplete) this.info.setResponseFlag('DC');
    this.finalize();
  }

  onDownstreamWritable(): void {
    this.router?.onDownstreamWritable();
  }

  private onRequestEnd(): void {
    this.requestComplete = true;
    this.info.lastDownstreamRxByteMs = this.info.now();
    if (this.requestTimer !== undefined) {
      clearTimeout(this.requestTimer);
      this.requestTimer = undefined;
    }
  }

  // ─────────────── decoder chain ───────────────

  /** Queue a decode event while a filter has stopped; stop reading once too much is queued. */
  private hold(e: HeldEvent): void {
    if (this.held === undefined) this.held = [];
    this.held.push(e);
    if (e.chunk !== undefined) {
      this.heldBytes += e.chunk.length;
      if (this.bufferingFilter >= 0 && this.decodeStoppedAt === this.bufferingFilter) {
        // A buffering filter (setDecoderBufferLimit): hold everything up to its limit, then 413.
        if (this.heldBytes > this.decoderBufferLimit) {
          this.held = undefined;
          this.sendLocalReply(413, 'Payload Too Large', undefined, undefined, 'request_payload_too_large');
          return;
        }
      } else if (this.heldBytes > HOLD_LIMIT_BYTES) this.setPaused(PAUSE_FILTER_HOLD, true);
    }
    // The buffered request is complete: the buffering filter's wait is over.
    if (e.endStream && this.bufferingFilter >= 0 && this.decodeStoppedAt === this.bufferingFilter && this.decodeStoppedKind === -2) {
      this.bufferingFilter = -1;
      this.continueDecoding();
    }
  }

  setDecoderBufferLimit(bytes: number): void {
    this.bufferingFilter = this.current;
    this.decoderBufferLimit = bytes;
  }

  private runDecodeHeaders(from: number, endStream: boolean): void {
    const fs = this.filters;
    for (let i = from; i < fs.length; i++) {
      const f = fs[i]!;
      if (f.decodeHeaders === undefined) continue;
      this.current = i;
      const st = f.decodeHeaders(this.head!, endStream);
      if (this.localReplied || this.destroyed) return;
      if (st === FilterStatus.StopIteration) {
        this.decodeStoppedAt = i;
        this.decodeStoppedKind = -2;
        this.heldHeadersEnd = endStream;
        return;
      }
    }
    this.routeToUpstream(endStream);
  }

  private runDecodeData(from: number, chunk: Buffer, endStream: boolean): void {
    const fs = this.filters;
    for (let i = from; i < fs.length; i++) {
      const f = fs[i]!;
      if (f.decodeData === undefined) continue;
      this.current = i;
      const st = f.decodeData(chunk, endStream);
      if (this.localReplied || this.destroyed) return;
      if (this.decodeBuffered !== undefined || st === FilterStatus.StopIterationAndBuffer) {
        if (this.decodeBuffered === undefined) this.decodeBuffered = new Array(fs.length);
        const kept = takeBuffered(this.decodeBuffered, i, chunk, st === FilterStatus.StopIterationAndBuffer);
        if (kept === undefined) {
          if (bufferedBytes(this.decodeBuffered, i) > FILTER_BUFFER_LIMIT_BYTES) {
            this.sendLocalReply(413, 'Payload Too Large', undefined, undefined, 'request_payload_too_large');
            return;
          }
          if (!endStream) return;
          chunk = concatBuffered(this.decodeBuffered!, i);
          this.decodeStoppedAt = i;
          this.decodeStoppedKind = EVENT_DATA;
          this.held = [{ kind: EVENT_DATA, chunk, endStream, trailers: undefined }, ...(this.held ?? [])];
          return;
        }
        chunk = kept;
      }
      if (st === FilterStatus.StopIteration) {
        this.decodeStoppedAt = i;
        this.decodeStoppedKind = EVENT_DATA;
        this.held = [{ kind: EVENT_DATA, chunk, endStream, trailers: undefined }, ...(this.held ?? [])];
        return;
      }
    }
    this.router?.decodeData(chunk, endStream);
  }

  private runDecodeTrailers(from: number, trailers: HeaderList): void {
    const fs = this.filters;
    for (let i = from; i < fs.length; i++) {
      const f = fs[i]!;
      if (this.decodeBuffered !== undefined && this.decodeBuffered[i] !== undefined) {
        // Trailers end the body: what filter i held with StopIterationAndBuffer goes on first.
        this.runDecodeData(i + 1, concatBuffered(this.decodeBuffered, i), false);
        if (this.localReplied || this.destroyed) return;
        if (this.decodeStoppedAt >= 0) {
          (this.held ??= []).push({ kind: EVENT_TRAILERS, chunk: undefined, endStream: true, trailers, from: i });
          return;
        }
      }
      if (f.decodeTrailers === undefined) continue;
      this.current = i;
      const st = f.decodeTrailers(trailers);
      if (this.localReplied || this.destroyed) return;
      if (st === FilterStatus.StopIteration) {
        this.decodeStoppedAt = i;
        this.decodeStoppedKind = EVENT_TRAILERS;
        this.held = [{ kind: EVENT_TRAILERS, chunk: undefined, endStream: true, trailers }, ...(this.held ?? [])];
        return;
      }
    }
    this.router?.decodeTrailers(trailers);
  }

  continueDecoding(): void {
    const at = this.decodeStoppedAt;
    if (at < 0 || this.destroyed || this.localReplied) return;
    this.decodeStoppedAt = -1;
    try {
      if (this.decodeStoppedKind === -2) {
        this.runDecodeHeaders(at + 1, this.heldHeadersEnd);
      } else {
        const e = this.held!.shift()!;
        if (e.kind === EVENT_DATA) this.runDecodeData(at + 1, e.chunk!, e.endStream);
        else this.runDecodeTrailers(at + 1, e.trailers!);
      }
      while (
        this.decodeStoppedAt < 0 &&
        this.held !== undefined &&
        this.held.length > 0 &&
        !this.localReplied &&
        !this.destroyed
      ) {
        const e = this.held.shift()!;
        if (e.kind === EVENT_DATA) this.runDecodeData(e.from ?? 0, e.chunk!, e.endStream);
        else this.runDecodeTrailers(e.from ?? 0, e.trailers!);
      }
      if (this.decodeStoppedAt < 0) {
        this.heldBytes = 0;
        this.setPaused(PAUSE_FILTER_HOLD, false);
      }
    } catch (err) {
      this.internalError(err);
    }
  }

  // ─────────────── routing ───────────────

  route(): CompiledRoute['route'] | undefined {
    return this.resolveRoute()?.route;
  }

  private resolveRoute(): CompiledRoute | undefined {
    if (!this.routeResolved) {
      this.routeResolved = true;
      this.routeEntry = this.rc && this.head ? routeTable(this.rc).route(this.head) : undefined;
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

  clearRouteCache(): void {
    this.routeResolved = false;
    this.routeEntry = undefined;
  }

  perRouteConfig(): unknown {
    const r = this.resolveRoute();
    const entry = this.manager.chain[this.current];
    if (!r || !entry) return undefined;
    return r.route.typedPerFilterConfig[entry.name] ?? r.vhost.typedPerFilterConfig[entry.name];
  }

  private routeToUpstream(endStream: boolean): void {
    const r = this.resolveRoute();
    if (!r || !this.rc) {
      this.sendLocalReply(404, '', undefined, 'NR', 'route_not_found');
      return;
    }
    const router = new RouterStream(
      this,
      this.manager.routerConfig,
      this.manager.opts.clusters,
      this.manager.opts.random,
    );
    this.router = router;
    router.decodeHeaders(this.head!, endStream, r, this.rc);
  }

  // ─────────────── encoder chain (called by the router) ───────────────

  encodeHeaders(head: ResponseHead, endStream: boolean): void {
    if (this.destroyed) return;
    this.started = true;
    // Envoy disarms request_timeout once the response starts.
    if (this.requestTimer !== undefined) {
      clearTimeout(this.requestTimer);
      this.requestTimer = undefined;
    }
    this.idleTimer?.refresh();
    if (this.encodeStoppedAt >= 0)
      this.holdEncode({ kind: EVENT_HEADERS, head, chunk: undefined, trailers: undefined, endStream });
    else this.runEncodeHeaders(this.filters.length - 1, head, endStream);
  }

  encodeData(chunk: Buffer, endStream: boolean): boolean {
    if (this.destroyed) return true;
    this.idleTimer?.refresh();
    if (this.encodeStoppedAt >= 0) {
      this.holdEncode({ kind: EVENT_DATA, head: undefined, chunk, trailers: undefined, endStream });
      // Past the bound, ask the router to pause the upstream until continueEncoding drains.
      this.heldEncodeBytes += chunk.length;
      return this.heldEncodeBytes <= HOLD_LIMIT_BYTES;
    }
    return this.runEncodeData(this.filters.length - 1, chunk, endStream);
  }

  encodeTrailers(trailers: HeaderList): void {
    if (this.destroyed) return;
    if (this.encodeStoppedAt >= 0)
      this.holdEncode({ kind: EVENT_TRAILERS, head: undefined, chunk: undefined, trailers, endStream: true });
    else this.runEncodeTrailers(this.filters.length - 1, trailers);
  }

  private holdEncode(e: HeldEncode): void {
    if (this.heldEncode === undefined) this.heldEncode = [];
    this.heldEncode.push(e);
  }

  private runEncodeHeaders(from: number, head: ResponseHead, endStream: boolean): void {
    const fs = this.filters;
    for (let i = from; i >= 0; i--) {
      const f = fs[i]!;
      if (f.encodeHeaders === undefined) continue;
      this.current = i;
      const st = f.encodeHeaders(head, endStream);
      if (this.destroyed) return;
      if (st === FilterStatus.StopIteration) {
        this.encodeStopped(i, { kind: EVENT_HEADERS, head, chunk: undefined, trailers: undefined, endStream });
        return;
      }
    }
    this.writeHeaders(head, endStream);
  }

  private runEncodeData(from: number, chunk: Buffer, endStream: boolean): boolean {
    const fs = this.filters;
    for (let i = from; i >= 0; i--) {
      const f = fs[i]!;
      if (f.encodeData === undefined) continue;
      this.current = i;
      const st = f.encodeData(chunk, endStream);
      if (this.destroyed) return true;
      if (this.encodeBuffered !== undefined || st === FilterStatus.StopIterationAndBuffer) {
        if (this.encodeBuffered === undefined) this.encodeBuffered = new Array(fs.length);
        const kept = takeBuffered(this.encodeBuffered, i, chunk, st === FilterStatus.StopIterationAndBuffer);
        if (kept === undefined) {
          if (bufferedBytes(this.encodeBuffered, i) > FILTER_BUFFER_LIMIT_BYTES) {
            this.sendLocalReply(500, 'Internal Server Error', undefined, undefined, 'response_payload_too_large');
            return true;
          }
          if (!endStream) return true;
          chunk = concatBuffered(this.encodeBuffered!, i);
          this.encodeStopped(i, { kind: EVENT_DATA, head: undefined, chunk, trailers: undefined, endStream });
          return true;
        }
        chunk = kept;
      }
      if (st === FilterStatus.StopIteration) {
        this.encodeStopped(i, { kind: EVENT_DATA, head: undefined, chunk, trailers: undefined, endStream });
        return true;
      }
    }
    this.info.bytesSent += chunk.length;
    const ok = this.encoder.writeData(chunk, endStream);
    if (endStream) this.onResponseEnd();
    return ok;
  }

  private runEncodeTrailers(from: number, trailers: HeaderList): void {
    const fs = this.filters;
    for (let i = from; i >= 0; i--) {
      const f = fs[i]!;
      if (this.encodeBuffered !== undefined && this.encodeBuffered[i] !== undefined) {
        // Trailers end the body: what filter i held with StopIterationAndBuffer goes on first.
        this.runEncodeData(i - 1, concatBuffered(this.encodeBuffered, i), false);
        if (this.destroyed) return;
        if (this.encodeStoppedAt >= 0) {
          this.holdEncode({ kind: EVENT_TRAILERS, head: undefined, chunk: undefined, trailers, endStream: true, from: i });
          return;
        }
      }
      if (f.encodeTrailers === undefined) continue;
      this.current = i;
      const st = f.encodeTrailers(trailers);
      if (this.destroyed) return;
      if (st === FilterStatus.StopIteration) {
        this.encodeStopped(i, { kind: EVENT_TRAILERS, head: undefined, chunk: undefined, trailers, endStream: true });
        return;
      }
    }
    this.encoder.writeTrailers(trailers);
    this.onResponseEnd();
  }

  private encodeStopped(at: number, e: HeldEncode): void {
    this.encodeStoppedAt = at;
    this.encodeStoppedEvent = e;
  }

  private writeHeaders(head: ResponseHead, endStream: boolean): void {
    this.headersWritten = true;
    applyServerHeader(head.headers, this.hcm);
    // Envoy's date provider stamps every response (upstream date headers are replaced).
    setHeader(head.headers, 'date', httpDate());
    const info = this.info;
    info.responseCode = head.status;
    info.firstDownstreamTxByteMs = info.now();
    this.encoder.writeHeaders(head, endStream);
    if (endStream) this.onResponseEnd();
  }

  continueEncoding(): void {
    const at = this.encodeStoppedAt;
    const e = this.encodeStoppedEvent;
    if (at < 0 || !e || this.destroyed) return;
    this.encodeStoppedAt = -1;
    this.encodeStoppedEvent = undefined;
    try {
      this.runEncodeEvent(at - 1, e);
      const q = this.heldEncode;
      while (this.encodeStoppedAt < 0 && q !== undefined && q.length > 0 && !this.destroyed) {
        const e = q.shift()!;
        this.runEncodeEvent(e.from ?? this.filters.length - 1, e);
      }
      if (this.encodeStoppedAt < 0) {
        this.heldEncodeBytes = 0;
        this.router?.onDownstreamWritable();
      }
    } catch (err) {
      this.internalError(err);
    }
  }

  private runEncodeEvent(from: number, e: HeldEncode): void {
    if (e.kind === EVENT_HEADERS) this.runEncodeHeaders(from, e.head!, e.endStream);
    else if (e.kind === EVENT_DATA) this.runEncodeData(from, e.chunk!, e.endStream);
    else this.runEncodeTrailers(from, e.trailers!);
  }

  // ─────────────── local replies ───────────────

  sendLocalReply(status: number, body: string, headers?: HeaderList, flag?: ResponseFlag, details?: string): void {
    if (this.destroyed) return;
    const info = this.info;
    if (flag !== undefined) info.setResponseFlag(flag);
    info.responseCodeDetails = details ?? 'local_reply';
    if (this.headersWritten) {
      // Headers are already on the wire: the only honest signal left is a reset.
      this.resetDownstream('local_reset');
      return;
    }
    this.localReplied = true;
    this.router?.onDestroy();
    let head: ResponseHead;
    let data: Buffer | undefined;
    if (info.grpc) {
      const h: HeaderList = ['content-type', 'application/grpc', 'grpc-status', String(httpToGrpcStatus(status))];
      if (body !== '') h.push('grpc-message', grpcPercentEncode(body));
      if (headers) h.push(...headers);
      head = { status: 200, headers: h, contentLength: 0 };
      info.grpcStatus = httpToGrpcStatus(status);
    } else {
      data = body === '' ? undefined : Buffer.from(body, 'utf8');
      const len = data?.length ?? 0;
      const h: HeaderList = [];
      if (len > 0) h.push('content-type', 'text/plain');
      h.push('content-length', String(len));
      if (headers) h.push(...headers);
      head = { status, headers: h, contentLength: len };
      if (this.head?.method === 'HEAD') data = undefined;
    }
    if (this.started) {
      // Raised from (or after) the encoder filters: replace whatever they hold and skip them,
      // as Envoy does for local replies sent while encoding.
      this.encodeStoppedAt = -1;
      this.encodeStoppedEvent = undefined;
      this.heldEncode = undefined;
      this.writeHeaders(head, data === undefined);
      if (data !== undefined && !this.destroyed) {
        this.info.bytesSent += data.length;
        this.encoder.writeData(data, true);
        this.onResponseEnd();
      }
      return;
    }
    this.encodeHeaders(head, data === undefined);
    if (data !== undefined) this.encodeData(data, true);
  }

  /**
   * HttpFilterCallbacks.sendResponse: a complete response built by a filter (a cache hit). Before
   * the response started it goes through the encoder filters like any response; once started
   * (raised from an encoder filter) it replaces what they hold, as a local reply does.
   */
  sendResponse(head: ResponseHead, body: Buffer | undefined, details?: string): void {
    if (this.destroyed) return;
    this.info.responseCodeDetails = details ?? 'filter_response';
    if (this.headersWritten) {
      this.resetDownstream('local_reset');
      return;
    }
    this.localReplied = true;
    this.router?.onDestroy();
    if (this.head?.method === 'HEAD') body = undefined;
    if (this.started) {
      this.encodeStoppedAt = -1;
      this.encodeStoppedEvent = undefined;
      this.heldEncode = undefined;
      this.writeHeaders(head, body === undefined);
      if (body !== undefined && !this.destroyed) {
        this.info.bytesSent += body.length;
        this.encoder.writeData(body, true);
        this.onResponseEnd();
      }
      return;
    }
    this.encodeHeaders(head, body === undefined);
    if (body !== undefined) this.encodeData(body, true);
  }

  resetDownstream(reason: ResetReason): void {
    if (this.destroyed) return;
    // Finalize first: a codec that reports the reset back synchronously must not add DC.
    this.finalize();
    this.encoder.reset(reason);
  }

  /** Router backpressure (upstream above its watermark, or the upstream not ready yet). */
  pauseRequest(): void {
    this.setPaused(PAUSE_ROUTER, true);
  }

  resumeRequest(): void {
    this.setPaused(PAUSE_ROUTER, false);
  }

  /** Reading stops while any reason holds and resumes once none does. */
  private setPaused(reason: number, on: boolean): void {
    const before = this.pauseReasons;
    this.pauseReasons = on ? before | reason : before & ~reason;
    if (before === 0 && this.pauseReasons !== 0) this.encoder.pauseRequest();
    else if (before !== 0 && this.pauseReasons === 0 && !this.destroyed) this.encoder.resumeRequest();
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

  setResponseFlag(flag: ResponseFlag): void {
    this.info.setResponseFlag(flag);
  }

  setMetadata(key: string, value: string): void {
    this.info.setMetadata(key, value);
  }

  // ─────────────── timeouts and completion ───────────────

  onIdleTimeout(): void {
    this.idleTimer = undefined;
    if (this.destroyed) return;
    this.info.setResponseFlag('SI');
    this.router?.onDestroy();
    if (this.headersWritten) this.resetDownstream('timeout');
    else this.sendLocalReply(408, 'stream timeout', undefined, 'SI', 'stream_idle_timeout');
  }

  onRequestTimeout(): void {
    this.requestTimer = undefined;
    if (this.destroyed || this.requestComplete) return;
    this.router?.onDestroy();
    if (this.headersWritten) this.resetDownstream('timeout');
    else this.sendLocalReply(408, 'request timeout', undefined, undefined, 'request_overall_timeout');
  }

  /** The route's max_stream_duration elapsed (Envoy: 408 "downstream duration timeout" or a reset). */
  onMaxDurationReached(): void {
    this.durationTimer = undefined;
    if (this.destroyed) return;
    this.router?.onDestroy();
    if (this.headersWritten) this.resetDownstream('timeout');
    else this.sendLocalReply(408, 'downstream duration timeout', undefined, undefined, 'max_duration_timeout');
  }

  private onResponseEnd(): void {
    this.responseComplete = true;
    this.info.lastDownstreamTxByteMs = this.info.now();
    this.finalize();
  }

  private internalError(err: unknown): void {
    log.error({ err }, 'stream failed inside the connection manager');
    if (this.destroyed) return;
    if (this.headersWritten) this.resetDownstream('local_reset');
    else this.sendLocalReply(500, 'internal error', undefined, undefined, 'internal_error');
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
    this.router?.onDestroy();
    const fs = this.filters;
    for (let i = 0; i < fs.length; i++) {
      const f = fs[i]!;
      if (f.onDestroy === undefined) continue;
      try {
        f.onDestroy();
      } catch (err) {
        log.warn({ err }, 'filter onDestroy failed');
      }
    }
    this.held = undefined;
    this.heldEncode = undefined;
    this.manager.complete(this.info);
  }
}
