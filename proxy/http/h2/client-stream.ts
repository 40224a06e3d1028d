/**
 * One upstream HTTP/2 request stream: the RequestEncoder the router writes through, and the glue
 * that turns node:http2 client stream events into ResponseSink calls.
 *
 * Leans lean: the node:http2 stream is opened on writeHeaders (the pool only reserved a slot);
 * listeners are module-level functions that find this object through a symbol on the stream, so
 * there is no closure per request or per chunk. Peer resets map to ResetReason the way Envoy's
 * codec does: REFUSED_STREAM (including streams above a GOAWAY's last-stream-id) is
 * 'refused_stream' (safe to retry), a dead connection is 'connection_termination', any other
 * RST_STREAM is 'remote_reset'. Nothing here throws into the router.
 */
import type { ClientHttp2Session, ClientHttp2Stream, OutgoingHttpHeaders } from 'node:http2';
import { constants as h2c } from 'node:http2';
import type { Duplex } from 'node:stream';
import type { HeaderList, RequestEncoder, RequestHead, ResetReason, ResponseSink } from '../codec';
import {
  decodeResponseHead,
  decodeTrailers,
  EMPTY,
  encodeRequestHeaders,
  encodeTrailers,
  reasonForCode,
  resetCode,
} from './headers';

/** What a stream needs from the connection that carries it. */
export interface StreamOwner {
  readonly session: ClientHttp2Session | undefined;
  /** 'http' or 'https' by the upstream transport. */
  readonly scheme: string;
  /** The stream finished (closed, reset, or never opened); frees its slot. */
  streamDone(): void;
}

const kEncoder = Symbol('meshlet.h2.upstream');
type TaggedStream = ClientHttp2Stream & { [kEncoder]?: H2ClientStream };

const REQUEST_END = Object.freeze({ endStream: true });
const REQUEST_MORE = Object.freeze({ endStream: false, waitForTrailers: true });

function noop(): void {}

function onResponse(this: TaggedStream, _h: unknown, flags: number, raw: string[]): void {
  const enc = this[kEncoder];
  if (enc === undefined || enc.sink === undefined) return;
  const endStream = (flags & h2c.NGHTTP2_FLAG_END_STREAM) !== 0;
  const head = decodeResponseHead(raw, endStream);
  // RFC 8441: 200 to an extended CONNECT is the h2 form of HTTP/1.1's 101; give it back its
  // upgrade token (Envoy's transformUpgradeResponseFromH2toH1).
  if (enc.upgrade !== undefined && head.status === 200) {
    head.status = 101;
    head.headers.push('upgrade', enc.upgrade);
  }
  if (endStream) enc.responseEnded = true;
  enc.sink.onResponseHeaders(head, endStream);
}

function onData(this: TaggedStream, chunk: Buffer): void {
  const enc = this[kEncoder];
  if (enc !== undefined && enc.sink !== undefined && !enc.responseEnded) enc.sink.onResponseData(chunk, false);
}

function onTrailers(this: TaggedStream, _t: unknown, _flags: number, raw: string[]): void {
  const enc = this[kEncoder];
  if (enc === undefined || enc.sink === undefined || enc.responseEnded) return;
  // node emits 'trailers' when the frame arrives, even while the response is paused with data
  // still buffered: they go on at 'end', after that data, or the data would be lost.
  enc.pendingTrailers = decodeTrailers(raw);
}

function onEnd(this: TaggedStream): void {
  const enc = this[kEncoder];
  if (enc === undefined || enc.sink === undefined || enc.responseEnded) return;
  // node also ends the readable side when the stream is reset or the connection dies; only an
  // end without an error code is the peer's END_STREAM. The 'close' listener reports the rest.
  if (abnormal(this.rstCode)) return;
  enc.responseEnded = true;
  const t = enc.pendingTrailers;
  if (t !== undefined) {
    enc.pendingTrailers = undefined;
    enc.sink.onResponseTrailers(t);
  } else enc.sink.onResponseData(EMPTY, true);
}

function onDrain(this: TaggedStream): void {
  const enc = this[kEncoder];
  if (enc !== undefined && enc.sink !== undefined) enc.sink.onUpstreamWritable();
}

function onWantTrailers(this: TaggedStream): void {
  const enc = this[kEncoder];
  if (!this.destroyed) this.sendTrailers(enc?.trailers ?? {});
}

function onClose(this: TaggedStream): void {
  const enc = this[kEncoder];
  if (enc !== undefined) enc.closed(this.rstCode);
}

function abnormal(rstCode: number | undefined): boolean {
  return rstCode !== undefined && rstCode !== h2c.NGHTTP2_NO_ERROR;
}

function failLater(enc: H2ClientStream, reason: ResetReason, detail: string): void {
  enc.fail(reason, detail);
}

/** A request stream on one upstream HTTP/2 connection. */
export class H2ClientStream implements RequestEncoder {
  sink: ResponseSink | undefined;
  stream: TaggedStream | undefined = undefined;
  /** Upgrade token of an extended CONNECT request (RFC 8441), else undefined. */
  upgrade: string | undefined = undefined;
  responseEnded = false;
  requestEnded = false;
  /** Trailers received, delivered once the data before them has been read ('end'). */
  pendingTrailers: HeaderList | undefined = undefined;
  private drainHooked = false;
  /** CONNECT or upgrade: the request side stays open for takeTunnel(). */
  private tunnel = false;
  trailers: OutgoingHttpHeaders | undefined = undefined;
  private done = false;
  private localReset = false;

  constructor(
    private readonly owner: StreamOwner,
    sink: ResponseSink,
  ) {
    this.sink = sink;
  }

  writeHeaders(head: RequestHead, endStream: boolean): void {
    if (this.done || this.stream !== undefined) return;
    const session = this.owner.session;
    if (session === undefined || session.destroyed || session.closed) {
      this.done = true;
      this.owner.streamDone();
      process.nextTick(
        failLater,
        this,
        'connection_termination',
        'upstream connection closed before the request started',
      );
      return;
    }
    // An upgrade or CONNECT keeps its stream open for the tunnel even when the HTTP/1.1 request
    // itself had no body (Envoy's codec does the same).
    const tunnel = head.method === 'CONNECT' || (head.upgrade !== undefined && head.upgrade !== 'h2c');
    if (tunnel) endStream = false;
    let s: TaggedStream;
    try {
      s = session.request(encodeRequestHeaders(head, this.owner.scheme), endStream ? REQUEST_END : REQUEST_MORE);
    } catch (err) {
      // Invalid header from downstream/filters, or extended CONNECT the peer did not enable.
      this.done = true;
      this.owner.streamDone();
      process.nextTick(
        failLater,
        this,
        'protocol_error',
        `cannot send request headers upstream: ${(err as Error).message}`,
      );
      return;
    }
    this.stream = s;
    this.upgrade = tunnel && head.method !== 'CONNECT' ? head.upgrade : undefined;
    this.tunnel = tunnel;
    this.requestEnded = endStream;
    s[kEncoder] = this;
    s.on('error', noop);
    s.on('response', onResponse);
    s.on('data', onData);
    s.on('trailers', onTrailers);
    s.on('end', onEnd);
    s.on('close', onClose);
    if (!endStream) s.on('wantTrailers', onWantTrailers);
  }

  writeData(chunk: Buffer, endStream: boolean): boolean {
    const s = this.stream;
    if (s === undefined || this.requestEnded || this.done) return true;
    if (endStream && this.tunnel && chunk.length === 0) return true;
    if (endStream) {
      this.requestEnded = true;
      if (chunk.length > 0) s.end(chunk);
      else s.end();
      return true;
    }
    if (s.write(chunk)) return true;
    // Listen for 'drain' only once a write actually hit the high watermark.
    if (!this.drainHooked) {
      this.drainHooked = true;
      s.on('drain', onDrain);
    }
    return false;
  }

  writeTrailers(trailers: HeaderList): void {
    const s = this.stream;
    if (s === undefined || this.requestEnded || this.done) return;
    this.requestEnded = true;
    this.trailers = encodeTrailers(trailers);
    s.end();
  }

  reset(reason: ResetReason): void {
    if (this.done || this.localReset) return;
    this.localReset = true;
    this.sink = undefined;
    const s = this.stream;
    if (s === undefined) {
      // Never opened: just give the slot back.
      this.done = true;
      this.owner.streamDone();
      return;
    }
    if (!s.destroyed) s.close(resetCode(reason));
  }

  pauseResponse(): void {
    this.stream?.pause();
  }

  resumeResponse(): void {
    this.stream?.resume();
  }

  takeTunnel(): Duplex {
    const s = this.stream;
    if (s === undefined) throw new Error('takeTunnel before writeHeaders');
    s.removeListener('data', onData);
    s.removeListener('end', onEnd);
    s.removeListener('trailers', onTrailers);
    s.removeListener('drain', onDrain);
    // Without our 'data' listener a flowing stream would drop bytes until the taker reads.
    s.pause();
    this.responseEnded = true;
    this.requestEnded = true;
    return s;
  }

  /** @internal The node stream closed: free the slot and report an abnormal end. */
  closed(rstCode: number | undefined): void {
    if (this.done) return;
    this.done = true;
    this.owner.streamDone();
    const sink = this.sink;
    this.sink = undefined;
    if (sink === undefined || this.responseEnded || this.localReset) return;
    const session = this.owner.session;
    const gone = session === undefined || session.destroyed || session.socket === undefined || session.socket.destroyed;
    const reason: ResetReason =
      rstCode === h2c.NGHTTP2_REFUSED_STREAM
        ? 'refused_stream'
        : gone
          ? 'connection_termination'
          : reasonForCode(rstCode);
    sink.onUpstreamReset(reason, `upstream stream closed (rst code ${rstCode ?? 'none'})`);
  }

  /** @internal Report a failure that happened before the stream could be opened. */
  fail(reason: ResetReason, detail: string): void {
    const sink = this.sink;
    this.sink = undefined;
    if (sink !== undefined && !this.localReset) sink.onUpstreamReset(reason, detail);
  }
}
