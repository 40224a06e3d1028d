/**
 * One request on a connection of the HTTP connection manager (Envoy's ConnectionManagerImpl::
 * ActiveStream): the codec's RequestSink and the filter manager's stream. It owns the edge
 * headers (x-forwarded-*, x-request-id, x-envoy-* sanitising, `server`, `date`), the route cache
 * against the RouteConfiguration current when the request arrived (an RDS swap affects new
 * requests only), the request, idle and max-duration timers, the writes towards the codec and
 * stream completion reporting for access logs and metrics. Filter iteration, holds and local
 * replies are the FilterManager's (filter-manager.ts), which reaches the stream only through
 * FilterManagerCallbacks. It sees its connection manager (connection-manager.ts) only as the
 * StreamOwner declared here.
 *
 * Leans lean: ActiveStream is one class whose methods are the codec and filter-manager callbacks
 * (no closures per request; timers get the stream as an argument). Never throws on traffic: a
 * failure inside a stream becomes a 500 local reply or a reset.
 */
import { EMPTY_RUNTIME, type RuntimeReader } from '../../common/runtime';
import type { Duplex } from 'node:stream';
import type { HcmConfig, NodeInfo, RouteConfiguration } from '../config/types';
import type { DrainDecision } from '../listeners/types';
import { logger } from '../../common/logger';
import type { ClusterLookup } from '../upstream/types';
import type {
  DownstreamConnectionInfo,
  HeaderList,
  HttpProtocol,
  RequestHead,
  RequestSink,
  ResetReason,
  ResponseEncoder,
  ResponseHead,
} from './codec';
import type { ResolvedChain } from './filter-chain';
import type { FilterManagerCallbacks } from './filter-callbacks';
import { FilterManager } from './filter-manager';
import {
  applyServerHeader,
  applyXfcc,
  type EdgeResult,
  mutateRequestHeaders,
  normalizeRequestPath,
} from './edge-headers';
import { getHeader, hasHeader, type HeaderFormatContext, setHeader, stripHopByHop } from './headers';
import { type CompiledRoute, isGrpcRequest, routeTable } from './route-matcher';
import { type HttpTracer, StreamInfo } from './stream-info';

const log = logger('hcm');

/** The part of the connection manager's options a stream reads (HcmOptions extends it). */
export interface StreamOptions {
  /**
   * The current route table: static, or the latest RDS resource. Called once per request, so a
   * swap affects new requests only. undefined = not yet received (requests get 404 NR).
   */
  readonly routes: () => RouteConfiguration | undefined;
  readonly clusters: ClusterLookup;
  /** The proxy's layered runtime (runtime_fraction, filter percentages); default: empty. */
  readonly runtime?: RuntimeReader;
  /** The proxy's node, for filters that speak for it (Istio's peer metadata exchange). */
  readonly localNode?: NodeInfo;
  /** Starts a span per stream when this connection manager traces (telemetry/tracing.ts). */
  readonly tracer?: HttpTracer;
  /** Randomness for weighted clusters and retry jitter (tests may pin it). */
  readonly random?: () => number;
}

/** What a stream sees of its connection manager (HttpConnectionManager implements it). */
export interface StreamOwner {
  readonly config: HcmConfig;
  /** http_filters resolved once: every stream's FilterManager instantiates it. */
  readonly chain: ResolvedChain;
  readonly opts: StreamOptions;
  /** Set while the listener drains: asked on every response whether to close after it. */
  readonly drainDecision: DrainDecision | undefined;
  /** Report a finished stream (access logs, metrics, tracing). */
  complete(info: StreamInfo): void;
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
    private readonly manager: StreamOwner,
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
    const tracer = this.manager.opts.tracer;
    if (tracer !== undefined) {
      // As Envoy: the route is chosen before the tracing decision (route tracing and decorator).
      this.resolveRoute();
      info.span = tracer.startSpan(head, info);
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
        this.info.route = r.route;
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
    info.span?.encodeHeaders(head.headers);
    // Envoy: the request's x-request-id goes back to the caller with always_set_request_id_in_response
    // or when the request was force-traced (a traced request: x-envoy-force-trace is only left on
    // internal ones; without tracing nothing is looked up); only when the request has one.
    const req = info.requestHeaders;
    if (
      info.requestId !== '' &&
      (this.hcm.alwaysSetRequestIdInResponse ||
        (info.span !== undefined && this.internal && req !== undefined && hasHeader(req, 'x-envoy-force-trace')))
    )
      setHeader(head.headers, 'x-request-id', info.requestId);
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
