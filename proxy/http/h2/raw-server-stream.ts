/**
 * One request stream of meshlet's own downstream HTTP/2 framing (raw-server-session.ts): its
 * flow-control and lifecycle state, and the ResponseEncoder the connection manager writes the
 * response through (proxy/http/codec.ts).
 *
 * Owns: the translation of ResponseHead / body / trailers into calls on the session, the request
 * side's delivery state (paused reads hold DATA and withhold its window), and reporting the
 * stream's end to its sink exactly once.
 *
 * Leans towards one plain object per stream (no EventEmitter, no Duplex unless a CONNECT tunnel
 * takes it) and never throwing into the connection manager: a response that cannot be encoded
 * resets the stream and the sink hears about it on the next tick.
 */
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
import { E_INTERNAL_ERROR, E_NO_ERROR, E_REFUSED_STREAM } from './frames';
import { responseFields, trailerFields } from './headers';
import { RawServerTunnel, type TunnelOwner } from './raw-server-tunnel';

/** What a stream needs from its connection (raw-server-session.ts implements it). */
export interface RawServerConnection {
  readonly connection: DownstreamConnectionInfo;
  readonly tx: {
    sendHeaders(s: RawServerStream, fields: readonly string[], endStream: boolean): void;
    sendData(s: RawServerStream, chunk: Buffer, end: boolean): boolean;
    sendTrailers(s: RawServerStream, fields: string[]): void;
  };
  reportError(status: number, flag: 'UPE', detail: string): void;
  resetStream(s: RawServerStream, code: number): void;
  resumeStream(s: RawServerStream): void;
  drain(): void;
}

export class RawServerStream implements ResponseEncoder, TunnelOwner {
  readonly protocol: HttpProtocol = 'HTTP/2';
  sink: RequestSink | undefined = undefined;
  // send side
  sendWindow: number;
  /** Response data waiting for flow-control window; END_STREAM / trailers after it. */
  queued: Buffer[] | undefined = undefined;
  queuedBytes = 0;
  queuedEnd = false;
  queuedTrailers: string[] | undefined = undefined;
  blocked = false;
  /** The sink was told "not writable" and waits for onDownstreamWritable. */
  wantWritable = false;
  localEnded = false;
  headersSent = false;
  responseEnded = false;
  // receive side
  recvWindow: number;
  recvUnacked = 0;
  remoteEnded = false;
  /** Declared content-length still expected (-1: none declared). */
  remaining = -1;
  paused = false;
  held: Buffer[] | undefined = undefined;
  heldEnd = false;
  heldTrailers: HeaderList | undefined = undefined;
  // lifecycle
  /** Removed from the session (closed or reset). */
  gone = false;
  localReset = false;
  /** HEAD request: the response never has a body. */
  head = false;
  /** Extended CONNECT / CONNECT: a 101 from an HTTP/1 upstream is answered as 200. */
  upgrade = false;
  tunnel: RawServerTunnel | undefined = undefined;
  readonly openedAt = Date.now();

  constructor(
    readonly id: number,
    readonly codec: RawServerConnection,
    sendWindow: number,
    recvWindow: number,
  ) {
    this.sendWindow = sendWindow;
    this.recvWindow = recvWindow;
  }

  get connection(): DownstreamConnectionInfo {
    return this.codec.connection;
  }

  writeHeaders(head: ResponseHead, endStream: boolean): void {
    if (this.headersSent || this.responseEnded || this.gone) return;
    // 1xx other than an upgrade's 101 are not forwarded (Envoy drops 100-continue by default).
    if (head.status < 200 && !(this.upgrade && head.status === 101)) return;
    const fields = responseFields(head, this.upgrade);
    if (typeof fields === 'string') {
      this.codec.reportError(502, 'UPE', `invalid response headers: ${fields}`);
      this.fail(E_INTERNAL_ERROR);
      return;
    }
    this.headersSent = true;
    const end = endStream || this.head || head.status === 204 || head.status === 304;
    if (end) this.responseEnded = true;
    this.codec.tx.sendHeaders(this, fields, end);
  }

  writeData(chunk: Buffer, endStream: boolean): boolean {
    if (this.responseEnded || this.gone) return true;
    if (endStream) this.responseEnded = true;
    return this.codec.tx.sendData(this, chunk, endStream);
  }

  writeTrailers(trailers: HeaderList): void {
    if (this.responseEnded || this.gone) return;
    this.responseEnded = true;
    const fields = trailerFields(trailers);
    if (typeof fields === 'string' || fields.length === 0) this.codec.tx.sendData(this, EMPTY, true);
    else this.codec.tx.sendTrailers(this, fields);
  }

  reset(reason: ResetReason): void {
    if (this.gone) return;
    this.sink = undefined;
    this.localReset = true;
    this.codec.resetStream(this, reason === 'refused_stream' ? E_REFUSED_STREAM : E_NO_ERROR);
  }

  pauseRequest(): void {
    this.paused = true;
  }

  resumeRequest(): void {
    this.codec.resumeStream(this);
  }

  takeTunnel(): Duplex {
    // From now on the tunnel owner reads and writes the stream; it is no longer "our" response.
    const t = new RawServerTunnel(this);
    this.tunnel = t;
    this.sink = undefined;
    this.responseEnded = true;
    return t;
  }

  closeAfterResponse(): void {
    this.codec.drain();
  }

  // ───────────── TunnelOwner ─────────────

  tunnelWrite(chunk: Buffer, end: boolean): boolean {
    return this.codec.tx.sendData(this, chunk, end);
  }

  tunnelRead(): void {
    this.codec.resumeStream(this);
  }

  tunnelReset(code: number): void {
    this.codec.resetStream(this, code);
  }

  /** The codec itself resets the stream; the sink is told on the next tick (never re-entrantly). */
  fail(code: number): void {
    const sink = this.sink;
    this.sink = undefined;
    this.responseEnded = true;
    this.codec.resetStream(this, code);
    if (sink !== undefined) process.nextTick(tellReset, sink, 'protocol_error');
  }
}

const EMPTY = Buffer.alloc(0);

function tellReset(sink: RequestSink, reason: ResetReason): void {
  sink.onDownstreamReset(reason);
}
