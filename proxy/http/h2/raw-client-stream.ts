/**
 * One upstream request stream on meshlet's own HTTP/2 framing (raw-client-session.ts): the
 * RequestEncoder the router writes through, and the RawStreamHandler that turns frames into
 * ResponseSink calls. Same contract and reset mapping as client-stream.ts (the node:http2 one):
 * REFUSED_STREAM and streams above a GOAWAY's last-stream-id are 'refused_stream', a dead
 * connection is 'connection_termination', any other RST_STREAM is 'remote_reset'.
 *
 * Not supported on this path yet: tunnels (CONNECT, upgrades); such a request fails with
 * protocol_error and a detail saying so (the node:http2 codec, the default, carries them).
 */
import type { Duplex } from 'node:stream';
import type { HeaderList, RequestEncoder, RequestHead, ResetReason, ResponseSink } from '../codec';
import { E_CANCEL, E_NO_ERROR } from './frames';
import { decodeResponseHead, decodeTrailers, requestFields, resetCode, trailerFields } from './headers';
import type { H2RawClientSession, RawStream, RawStreamHandler } from './raw-client-session';
import type { StreamOwner } from './client-stream';

/** What a raw stream needs from its pool connection. */
export interface RawStreamOwner extends Pick<StreamOwner, 'scheme' | 'streamDone'> {
  readonly raw: H2RawClientSession | undefined;
  /** :authority for a request that has none (the upstream host). */
  readonly authority: string;
}

function failLater(enc: RawClientStream, reason: ResetReason, detail: string): void {
  enc.fail(reason, detail);
}

export class RawClientStream implements RequestEncoder, RawStreamHandler {
  sink: ResponseSink | undefined;
  private s: RawStream | undefined = undefined;
  private session: H2RawClientSession | undefined = undefined;
  private headersSeen = false;
  private responseEnded = false;
  private done = false;
  private localReset = false;
  private needWritable = false;

  constructor(
    private readonly owner: RawStreamOwner,
    sink: ResponseSink,
  ) {
    this.sink = sink;
  }

  writeHeaders(head: RequestHead, endStream: boolean): void {
    if (this.done || this.s !== undefined) return;
    const session = this.owner.raw;
    if (head.method === 'CONNECT' || (head.upgrade !== undefined && head.upgrade !== 'h2c')) {
      return this.failEarly('protocol_error', "CONNECT and upgrades are not supported by meshlet's own HTTP/2 codec yet");
    }
    if (session === undefined || session.unusable) {
      return this.failEarly('connection_termination', 'upstream connection closed before the request started');
    }
    const fields = requestFields(head, this.owner.scheme, this.owner.authority);
    if (typeof fields === 'string') {
      return this.failEarly('protocol_error', `cannot send request headers upstream: ${fields}`);
    }
    const s = session.openStream(this, fields, endStream);
    if (typeof s === 'string') return this.failEarly('connection_termination', s);
    this.s = s;
    this.session = session;
  }

  writeData(chunk: Buffer, endStream: boolean): boolean {
    const s = this.s;
    if (s === undefined || this.done || this.localReset) return true;
    const ok = this.session!.sendData(s, chunk, endStream);
    if (!ok) this.needWritable = true;
    return ok;
  }

  writeTrailers(trailers: HeaderList): void {
    const s = this.s;
    if (s === undefined || this.done || this.localReset) return;
    const fields = trailerFields(trailers);
    this.session!.sendTrailers(s, typeof fields === 'string' ? [] : fields);
  }

  reset(reason: ResetReason): void {
    if (this.done || this.localReset) return;
    this.localReset = true;
    this.sink = undefined;
    const s = this.s;
    if (s !== undefined) this.session!.resetStream(s, resetCode(reason));
    this.finish();
  }

  pauseResponse(): void {
    if (this.s !== undefined) this.session!.pause(this.s);
  }

  resumeResponse(): void {
    if (this.s !== undefined) this.session!.resume(this.s);
  }

  takeTunnel(): Duplex {
    throw new Error("tunnels are not supported by meshlet's own HTTP/2 codec");
  }

  // ───────────── RawStreamHandler ─────────────

  onHeaders(fields: string[], endStream: boolean, oversize: boolean): void {
    const sink = this.sink;
    if (sink === undefined || this.responseEnded) return;
    if (oversize) {
      this.session!.resetStream(this.s!, E_CANCEL);
      this.finish();
      this.sink = undefined;
      sink.onUpstreamReset('protocol_error', 'upstream response headers too large');
      return;
    }
    if (this.headersSeen) {
      // Trailers (a second header block); without END_STREAM it is malformed.
      this.responseEnded = true;
      if (endStream) this.finish();
      sink.onResponseTrailers(decodeTrailers(fields));
      return;
    }
    const head = decodeResponseHead(fields, endStream);
    // 1xx informational responses are not forwarded (as with the node:http2 codec).
    if (head.status >= 100 && head.status < 200) return;
    this.headersSeen = true;
    if (endStream) {
      this.responseEnded = true;
      this.finish();
    }
    sink.onResponseHeaders(head, endStream);
  }

  onData(chunk: Buffer, endStream: boolean): void {
    const sink = this.sink;
    if (sink === undefined || this.responseEnded) return;
    if (endStream) {
      this.responseEnded = true;
      this.finish();
    }
    sink.onResponseData(chunk, endStream);
  }

  onReset(code: number, kind: 'remote' | 'refused' | 'gone'): void {
    this.finish();
    const sink = this.sink;
    this.sink = undefined;
    if (sink === undefined || this.responseEnded || this.localReset) return;
    const reason: ResetReason =
      kind === 'refused' ? 'refused_stream' : kind === 'gone' ? 'connection_termination' : 'remote_reset';
    // A NO_ERROR reset after a complete response is the server declining the rest of the request.
    if (code === E_NO_ERROR && kind === 'remote' && this.responseEnded) return;
    sink.onUpstreamReset(reason, `upstream stream closed (rst code ${kind === 'gone' ? 'none' : code})`);
  }

  onWritable(): void {
    if (!this.needWritable) return;
    this.needWritable = false;
    this.sink?.onUpstreamWritable();
  }

  /** @internal Report a failure that happened before the stream could be opened. */
  fail(reason: ResetReason, detail: string): void {
    const sink = this.sink;
    this.sink = undefined;
    if (sink !== undefined && !this.localReset) sink.onUpstreamReset(reason, detail);
  }

  private failEarly(reason: ResetReason, detail: string): void {
    this.finish();
    process.nextTick(failLater, this, reason, detail);
  }

  /** Frees the pool slot once (the response is complete, or the stream is gone). */
  private finish(): void {
    if (this.done) return;
    this.done = true;
    // The response is complete while the request is still being sent: stop the request side
    // (RFC 9113 §8.1; Envoy resets the upstream stream the same way).
    const s = this.s;
    if (s !== undefined && this.responseEnded && !s.localEnded) this.session!.resetStream(s, E_CANCEL);
    this.owner.streamDone();
  }
}
