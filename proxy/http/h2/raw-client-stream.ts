/**
 * One upstream request stream on meshlet's own HTTP/2 framing (raw-client-session.ts): the
 * RequestEncoder the router writes through, and the RawStreamHandler that turns frames into
 * ResponseSink calls. Same contract and reset mapping as client-stream.ts (the node:http2 one):
 * REFUSED_STREAM and streams above a GOAWAY's last-stream-id are 'refused_stream', a dead
 * connection is 'connection_termination', any other RST_STREAM is 'remote_reset'.
 *
 * Tunnels: CONNECT and upgrades (sent as RFC 8441 extended CONNECT) keep the request side open;
 * a 2xx to CONNECT or a 200 to an extended CONNECT (reported as 101 with its upgrade token, like
 * client-stream.ts) turns the stream into a RawTunnel (raw-tunnel.ts) that takeTunnel() returns.
 * An extended CONNECT waits for the peer's first SETTINGS and fails with protocol_error when the
 * peer did not enable it (RFC 8441 §3), as node:http2 does.
 */
import type { Duplex } from 'node:stream';
import type { HeaderList, RequestEncoder, RequestHead, ResetReason, ResponseSink } from '../codec';
import { E_CANCEL, E_NO_ERROR } from './frames';
import { decodeResponseHead, decodeTrailers, requestFields, resetCode, trailerFields } from './headers';
import type { H2RawClientSession } from './raw-client-session';
import type { RawStream, RawStreamHandler } from './raw-client-types';
import type { StreamOwner } from './client-stream';
import { RawTunnel } from './raw-tunnel';

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
  /** CONNECT or upgrade request: the request side stays open for a tunnel. */
  private tunnelRequest = false;
  /** Upgrade token of an extended CONNECT (RFC 8441). */
  private upgrade: string | undefined = undefined;
  private tunnel: RawTunnel | undefined = undefined;

  constructor(
    private readonly owner: RawStreamOwner,
    sink: ResponseSink,
  ) {
    this.sink = sink;
  }

  writeHeaders(head: RequestHead, endStream: boolean): void {
    if (this.done || this.s !== undefined) return;
    const session = this.owner.raw;
    if (session === undefined || session.unusable) {
      return this.failEarly('connection_termination', 'upstream connection closed before the request started');
    }
    const fields = requestFields(head, this.owner.scheme, this.owner.authority);
    if (typeof fields === 'string') {
      return this.failEarly('protocol_error', `cannot send request headers upstream: ${fields}`);
    }
    // An upgrade or CONNECT keeps its stream open for the tunnel even when the HTTP/1.1 request
    // itself had no body (as Envoy's codec and client-stream.ts do).
    const connect = head.method === 'CONNECT' && head.upgrade === undefined;
    const upgrade = head.upgrade !== undefined && head.upgrade !== 'h2c' ? head.upgrade : undefined;
    if (connect || upgrade !== undefined) {
      this.tunnelRequest = true;
      this.upgrade = upgrade;
      endStream = false;
      if (upgrade !== undefined && !session.settingsSeen) {
        // RFC 8441 §3: no :protocol before the peer's SETTINGS_ENABLE_CONNECT_PROTOCOL.
        session.whenSettings(() => this.open(session, fields, false));
        return;
      }
    }
    this.open(session, fields, endStream);
  }

  private open(session: H2RawClientSession, fields: string[], endStream: boolean): void {
    if (this.done || this.localReset) return;
    if (session.unusable) {
      return this.failEarly('connection_termination', 'upstream connection closed before the request started');
    }
    if (this.upgrade !== undefined && !session.peerConnectProtocol) {
      return this.failEarly('protocol_error', 'upstream did not enable extended CONNECT (SETTINGS_ENABLE_CONNECT_PROTOCOL)');
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
    if (this.tunnel !== undefined) {
      this.sink = undefined;
      this.tunnel.destroy();
      return;
    }
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
    const t = this.tunnel;
    if (t === undefined) throw new Error('takeTunnel without a tunnel response');
    this.sink = undefined;
    return t;
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
    if (this.tunnelRequest && !endStream && head.status >= 200 && head.status < 300) {
      if (this.upgrade !== undefined) {
        if (head.status !== 200) return this.abortTunnel(sink, head.status);
        // RFC 8441: 200 to an extended CONNECT is HTTP/1.1's 101 (Envoy's transformUpgradeResponseFromH2toH1).
        head.status = 101;
        head.headers.push('upgrade', this.upgrade);
      }
      // Data that follows the headers waits in the tunnel until the router takes it.
      this.tunnel = new RawTunnel(this.session!, this.s!, () => this.finish());
      sink.onResponseHeaders(head, false);
      return;
    }
    if (endStream) {
      this.responseEnded = true;
      this.finish();
    }
    sink.onResponseHeaders(head, endStream);
  }

  onData(chunk: Buffer, endStream: boolean): void {
    if (this.tunnel !== undefined) return this.tunnel.onPeerData(chunk, endStream);
    const sink = this.sink;
    if (sink === undefined || this.responseEnded) return;
    if (endStream) {
      this.responseEnded = true;
      this.finish();
    }
    sink.onResponseData(chunk, endStream);
  }

  onReset(code: number, kind: 'remote' | 'refused' | 'gone'): void {
    if (this.tunnel !== undefined) {
      this.tunnel.onPeerReset(`upstream tunnel stream closed (rst code ${kind === 'gone' ? 'none' : code})`);
      return;
    }
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
    if (this.tunnel !== undefined) return this.tunnel.onWritable();
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

  /** A 2xx other than 200 to an extended CONNECT is not an upgrade: fail it (the router answers 502). */
  private abortTunnel(sink: ResponseSink, status: number): void {
    this.sink = undefined;
    this.session!.resetStream(this.s!, E_CANCEL);
    this.finish();
    sink.onUpstreamReset('protocol_error', `upstream answered extended CONNECT with ${status}`);
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
