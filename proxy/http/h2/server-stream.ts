/**
 * One request stream of the node:http2 downstream codec (server-codec.ts): the ResponseEncoder
 * the connection manager writes the response through, and the per-stream node:http2 listeners
 * (module-level functions that find their state through a symbol on the stream: no closures per
 * stream or per chunk) that turn request data, trailers, end, drain, PRIORITY and close into calls
 * on the stream's RequestSink and on its connection (premature-reset accounting).
 */
import { constants as h2c, type OutgoingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import type { Duplex } from 'node:stream';
import type {
  DownstreamConnectionInfo,
  HeaderList,
  HttpProtocol,
  RequestSink,
  ResetReason,
  ResponseEncoder,
  ResponseHead,
} from '../codec';
import { decodeTrailers, EMPTY, encodeResponseHeaders, encodeTrailers, reasonForCode, resetCode } from './headers';
import { PREMATURE_RESET_MIN_LIFETIME_MS } from './server-settings';

/** What a stream needs from its connection (server-codec.ts implements it). */
export interface H2ServerStreamOwner {
  readonly connection: DownstreamConnectionInfo;
  reportError(status: number, flag: 'UPE', detail: string): void;
  transportGone(): boolean;
  streamClosed(premature: boolean): void;
  onPriorityFrame(): void;
  drain(): void;
}

export const kEncoder = Symbol('meshlet.h2.encoder');
export type TaggedStream = ServerHttp2Stream & { [kEncoder]?: H2ServerStream };

/** Shared respond() options; node:http2 copies them, so sharing is safe. */
export const RESPOND_END = Object.freeze({ endStream: true, sendDate: false });
const RESPOND_MORE = Object.freeze({ endStream: false, waitForTrailers: true, sendDate: false });

export function onStreamData(this: TaggedStream, chunk: Buffer): void {
  const enc = this[kEncoder];
  if (enc !== undefined && enc.sink !== undefined) enc.sink.onRequestData(chunk, false);
}

export function onStreamTrailers(this: TaggedStream, _t: unknown, _flags: number, raw: string[]): void {
  const enc = this[kEncoder];
  if (enc === undefined || enc.sink === undefined || enc.requestEnded) return;
  // node emits 'trailers' when the frame arrives, even while reading is paused with data still
  // buffered: they go on at 'end', after that data.
  enc.pendingTrailers = decodeTrailers(raw);
}

export function onStreamEnd(this: TaggedStream): void {
  const enc = this[kEncoder];
  if (enc === undefined || enc.sink === undefined || enc.requestEnded) return;
  // node ends the readable side on RST_STREAM / connection loss too; only an end without an
  // error code is the client's END_STREAM. The 'close' listener reports resets.
  const rst = this.rstCode;
  if (rst !== undefined && rst !== h2c.NGHTTP2_NO_ERROR) return;
  enc.requestEnded = true;
  const t = enc.pendingTrailers;
  if (t !== undefined) {
    enc.pendingTrailers = undefined;
    enc.sink.onRequestTrailers(t);
  } else enc.sink.onRequestData(EMPTY, true);
}

function onStreamDrain(this: TaggedStream): void {
  const enc = this[kEncoder];
  if (enc !== undefined && enc.sink !== undefined && !enc.responseEnded) enc.sink.onDownstreamWritable();
}

function onWantTrailers(this: TaggedStream): void {
  const enc = this[kEncoder];
  const trailers = enc?.trailers;
  // An empty trailer set makes node send an empty DATA frame with END_STREAM.
  if (!this.destroyed) this.sendTrailers(trailers ?? {});
}

/** PRIORITY frames on an open stream (node emits them on the session otherwise). */
export function onStreamPriority(this: TaggedStream): void {
  this[kEncoder]?.codec.onPriorityFrame();
}

export function onStreamClose(this: TaggedStream): void {
  const enc = this[kEncoder];
  if (enc === undefined) return;
  enc.closed = true;
  const codec = enc.codec;
  // Envoy's premature reset: the peer reset the stream before we finished answering it, within
  // PREMATURE_RESET_MIN_LIFETIME_MS of its start (rapid reset, CVE-2023-44487).
  const rst = this.rstCode;
  const premature =
    !enc.localReset &&
    !enc.responseEnded &&
    rst !== undefined &&
    rst !== h2c.NGHTTP2_NO_ERROR &&
    !codec.transportGone() &&
    Date.now() - enc.openedAt < PREMATURE_RESET_MIN_LIFETIME_MS;
  codec.streamClosed(premature);
  const sink = enc.sink;
  enc.sink = undefined;
  if (sink === undefined || enc.localReset) return;
  if (enc.failReason !== undefined) sink.onDownstreamReset(enc.failReason);
  else if (!enc.responseEnded)
    sink.onDownstreamReset(codec.transportGone() ? 'connection_termination' : reasonForCode(this.rstCode));
}

// ───────────── the stream: ResponseEncoder ─────────────

/** One HTTP/2 request stream as seen by the connection manager. */
export class H2ServerStream implements ResponseEncoder {
  readonly protocol: HttpProtocol = 'HTTP/2';
  sink: RequestSink | undefined = undefined;
  requestEnded = false;
  responseEnded = false;
  /** Trailers received, delivered once the data before them has been read ('end'). */
  pendingTrailers: HeaderList | undefined = undefined;
  localReset = false;
  closed = false;
  /** Extended CONNECT: a 101 from an HTTP/1 upstream is answered as 200. */
  upgrade = false;
  trailers: OutgoingHttpHeaders | undefined = undefined;
  /** The 'drain' listener is attached (lazily, on the first write above the watermark). */
  drainHooked = false;
  /** Set when the codec itself had to reset the stream (the sink is told on close). */
  failReason: ResetReason | undefined = undefined;
  /** Date.now() when the stream opened (premature reset accounting). */
  readonly openedAt = Date.now();

  constructor(
    readonly codec: H2ServerStreamOwner,
    readonly stream: TaggedStream,
  ) {}

  get connection(): DownstreamConnectionInfo {
    return this.codec.connection;
  }

  writeHeaders(head: ResponseHead, endStream: boolean): void {
    const s = this.stream;
    if (this.responseEnded || this.closed || s.headersSent || s.destroyed) return;
    // 1xx other than an upgrade's 101 are not forwarded (Envoy drops 100-continue by default).
    if (head.status < 200 && !(this.upgrade && head.status === 101)) return;
    try {
      s.respond(encodeResponseHeaders(head, this.upgrade), endStream ? RESPOND_END : RESPOND_MORE);
      if (!endStream) s.on('wantTrailers', onWantTrailers);
    } catch (err) {
      // Invalid header name/value from upstream or filters: the stream cannot be answered. Reset
      // it; the sink hears about it from the 'close' listener (never re-entrantly from here).
      this.codec.reportError(502, 'UPE', `invalid response headers: ${(err as Error).message}`);
      this.failReason = 'protocol_error';
      this.responseEnded = true;
      this.stream.close(h2c.NGHTTP2_INTERNAL_ERROR);
      return;
    }
    // node ends the stream itself for HEAD, 204 and 304.
    if (endStream || s.writableEnded) this.responseEnded = true;
  }

  writeData(chunk: Buffer, endStream: boolean): boolean {
    const s = this.stream;
    if (this.responseEnded || this.closed || s.destroyed) return true;
    if (endStream) {
      this.responseEnded = true;
      if (chunk.length > 0) s.end(chunk);
      else s.end();
      return true;
    }
    if (s.write(chunk)) return true;
    // Listen for 'drain' only once a write actually hit the high watermark.
    if (!this.drainHooked) {
      this.drainHooked = true;
      s.on('drain', onStreamDrain);
    }
    return false;
  }

  writeTrailers(trailers: HeaderList): void {
    if (this.responseEnded || this.closed) return;
    this.responseEnded = true;
    this.trailers = encodeTrailers(trailers);
    this.stream.end();
  }

  reset(reason: ResetReason): void {
    if (this.closed || this.localReset) return;
    this.localReset = true;
    this.sink = undefined;
    this.stream.close(resetCode(reason));
  }

  pauseRequest(): void {
    this.stream.pause();
  }

  resumeRequest(): void {
    this.stream.resume();
  }

  takeTunnel(): Duplex {
    const s = this.stream;
    s.removeListener('data', onStreamData);
    s.removeListener('end', onStreamEnd);
    s.removeListener('trailers', onStreamTrailers);
    s.removeListener('drain', onStreamDrain);
    // From now on the tunnel owner reads and writes the stream; it is no longer "our" response.
    this.responseEnded = true;
    this.requestEnded = true;
    return s;
  }

  closeAfterResponse(): void {
    this.codec.drain();
  }
}
