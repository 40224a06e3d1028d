/**
 * Upstream HTTP/1.1 codec: one connected socket to an upstream host carrying one request at a time
 * (no pipelining). Writes requests through a per-request RequestEncoder and parses the response
 * into ResponseSink calls (Envoy's ClientConnectionImpl).
 *
 * Leans towards never reusing a doubtful connection: a response that was not fully read, a
 * `Connection: close`, an HTTP/1.0 response without keep-alive, bytes after the response, a reset,
 * a protocol error or a request that was not completely written all make the connection single-use.
 * Malformed responses surface as `onUpstreamReset('protocol_error', detail)` and destroy the socket.
 * Informational 1xx responses other than 101 are swallowed (the downstream codec answers
 * `Expect: 100-continue` itself).
 */
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { HeaderList, RequestEncoder, RequestHead, ResetReason, ResponseSink, UpstreamInfo } from '../codec';
import { H1Parser, type H1ParserHandler, type H1ParserLimits } from './parser';
import { appendHeaders, headerScan, SKIP_HOST, SKIP_UPGRADE, writeFramed } from './writer';

/** Told about stream and connection lifecycle (the pool). */
export interface H1ClientConnectionOwner {
  /** The stream on `conn` is over (exactly once per stream); `reusable` = may carry another. */
  onStreamDone(conn: H1ClientConnection, reusable: boolean): void;
  /** The socket closed (exactly once), or was handed away as a tunnel. */
  onConnectionClosed(conn: H1ClientConnection): void;
}

/** Methods whose empty body is still announced with `content-length: 0` (as Node and Envoy do). */
function expectsBody(method: string): boolean {
  return method === 'POST' || method === 'PUT' || method === 'PATCH';
}

/** One request/response exchange on an upstream connection; the router's RequestEncoder. */
class H1UpstreamStream implements RequestEncoder {
  requestComplete = false;
  headersSent = false;
  responseComplete = false;
  detached = false;
  chunked = false;
  responseKeepAlive = true;
  /** Body bytes still owed for a Content-Length framed request; -1 when not length-framed. */
  remaining = -1;
  /** The request was cut short or over-long: the connection must not be reused. */
  framingBroken = false;
  pendingHead: string | undefined = undefined;

  constructor(
    readonly conn: H1ClientConnection,
    readonly sink: ResponseSink,
  ) {}

  writeHeaders(head: RequestHead, endStream: boolean): void {
    this.conn.writeHeaders(this, head, endStream);
  }
  writeData(chunk: Buffer, endStream: boolean): boolean {
    return this.conn.writeData(this, chunk, endStream);
  }
  writeTrailers(trailers: HeaderList): void {
    this.conn.writeTrailers(this, trailers);
  }
  reset(_reason: ResetReason): void {
    this.conn.resetStream(this);
  }
  pauseResponse(): void {
    if (!this.detached) this.conn.pauseReading();
  }
  resumeResponse(): void {
    if (!this.detached) this.conn.resumeReading();
  }
  takeTunnel(): Duplex {
    return this.conn.takeTunnel(this);
  }
}

export class H1ClientConnection implements H1ParserHandler {
  private readonly parser: H1Parser;
  private stream: H1UpstreamStream | undefined = undefined;
  /** Requests started on this connection. */
  requests = 0;
  closed = false;
  private tunneled = false;
  private tunnelPending = false;
  private executing = false;
  private skipInformational = false;
  /** Set when the response completed inside execute(); handled once execute returns. */
  private completedInExecute = false;
  private leftover: Buffer | undefined = undefined;
  private lastError = '';
  /** The current stream's sink paused reading (downstream above its watermark). */
  private readPaused = false;
  /** Pool-owned idle timer (created lazily, refreshed). */
  idleTimer: NodeJS.Timeout | undefined = undefined;

  private readonly onDataFn = (b: Buffer) => this.onData(b);
  private readonly onEndFn = () => this.onEnd();
  private readonly onCloseFn = () => this.onClose();
  private readonly onErrorFn = (e: Error) => {
    this.lastError = e.message;
  };
  private readonly onDrainFn = () => {
    const s = this.stream;
    if (s !== undefined && !s.detached) s.sink.onUpstreamWritable();
  };
  private readonly flushFn = () => this.flushPendingHead();

  constructor(
    readonly socket: Socket,
    private readonly owner: H1ClientConnectionOwner,
    readonly info: UpstreamInfo,
    limits?: H1ParserLimits,
  ) {
    this.parser = new H1Parser(false, this, limits);
    socket.setNoDelay(true);
    socket.on('data', this.onDataFn);
    socket.on('end', this.onEndFn);
    socket.on('close', this.onCloseFn);
    socket.on('error', this.onErrorFn);
    socket.on('drain', this.onDrainFn);
    socket.resume(); // a transport may hand over an explicitly paused socket
  }

  get busy(): boolean {
    return this.stream !== undefined;
  }

  /** Start an exchange; the connection must be idle. */
  newStream(sink: ResponseSink): RequestEncoder {
    const s = new H1UpstreamStream(this, sink);
    this.stream = s;
    this.requests++;
    this.parser.reset();
    this.skipInformational = false;
    return s;
  }

  /** Close the connection (idle timeout, drain, not reusable). */
  close(): void {
    if (!this.closed && !this.tunneled) this.socket.destroy();
  }

  /** Flow control from the stream's sink: stop reading the response. */
  pauseReading(): void {
    this.readPaused = true;
    this.socket.pause();
  }

  resumeReading(): void {
    if (!this.readPaused) return;
    this.readPaused = false;
    if (!this.tunnelPending) this.socket.resume();
  }

  // ───────────────────────────── request side ─────────────────────────────

  writeHeaders(s: H1UpstreamStream, head: RequestHead, endStream: boolean): void {
    if (s.detached || s.headersSent) return;
    s.headersSent = true;
    const method = head.method;
    const isConnect = method === 'CONNECT';
    const authority = head.authority !== '' ? head.authority : isConnect ? head.path : '';
    let str = appendHeaders(
      `${method} ${isConnect ? authority : head.path} HTTP/1.1\r\nhost: ${authority}\r\n`,
      head.headers,
      SKIP_HOST | SKIP_UPGRADE,
    );
    const declared = headerScan.contentLength;
    if (head.upgrade !== undefined && !isConnect) str += `connection: upgrade\r\nupgrade: ${head.upgrade}\r\n`;
    if (isConnect || (head.upgrade !== undefined && declared < 0)) {
      // a tunnel, or an upgrade request (no body; bytes after a 101 are the new protocol)
    } else if (declared >= 0) {
      s.remaining = declared; // framed by the given content-length
    } else if (endStream) {
      if (expectsBody(method)) str += 'content-length: 0\r\n';
    } else if (head.contentLength >= 0) {
      s.remaining = head.contentLength;
      str += `content-length: ${head.contentLength}\r\n`;
    } else {
      s.chunked = true;
      str += 'transfer-encoding: chunked\r\n';
    }
    str += '\r\n';
    this.parser.responseToHead = method === 'HEAD';
    this.parser.responseToConnect = isConnect;
    if (endStream) {
      s.requestComplete = true;
      if (s.remaining > 0) s.framingBroken = true;
      this.socket.write(str, 'latin1');
      return;
    }
    s.pendingHead = str;
    process.nextTick(this.flushFn);
  }

  private flushPendingHead(): void {
    const s = this.stream;
    if (s === undefined || s.pendingHead === undefined || this.closed) return;
    const h = s.pendingHead;
    s.pendingHead = undefined;
    this.socket.write(h, 'latin1');
  }

  writeData(s: H1UpstreamStream, chunk: Buffer, endStream: boolean): boolean {
    if (s.detached || s.requestComplete || this.closed) return true;
    const prefix = s.pendingHead ?? '';
    s.pendingHead = undefined;
    let ok: boolean;
    if (s.chunked) {
      if (chunk.length > 0) {
        ok = writeFramed(
          this.socket,
          `${prefix}${chunk.length.toString(16)}\r\n`,
          chunk,
          endStream ? '\r\n0\r\n\r\n' : '\r\n',
        );
      } else {
        ok = writeFramed(this.socket, prefix, undefined, endStream ? '0\r\n\r\n' : '');
      }
    } else {
      if (s.remaining >= 0) {
        if (chunk.length > s.remaining) {
          // Never send past the declared length: the upstream would read it as another request.
          chunk = chunk.subarray(0, s.remaining);
          s.framingBroken = true;
        }
        s.remaining -= chunk.length;
        if (endStream && s.remaining > 0) s.framingBroken = true;
      }
      ok = writeFramed(this.socket, prefix, chunk, '');
    }
    if (endStream) this.requestDone(s);
    return ok;
  }

  writeTrailers(s: H1UpstreamStream, trailers: HeaderList): void {
    if (s.detached || s.requestComplete || this.closed) return;
    const prefix = s.pendingHead ?? '';
    s.pendingHead = undefined;
    if (s.chunked)
      this.socket.write(`${appendHeaders(`${prefix}0\r\n`, trailers, SKIP_UPGRADE | SKIP_HOST)}\r\n`, 'latin1');
    else if (prefix.length > 0) this.socket.write(prefix, 'latin1');
    if (s.remaining > 0) s.framingBroken = true;
    this.requestDone(s);
  }

  private requestDone(s: H1UpstreamStream): void {
    s.requestComplete = true;
  }

  resetStream(s: H1UpstreamStream): void {
    if (s.detached) return;
    this.finishStream(s, false); // the pool closes non-reusable connections
    this.close();
  }

  takeTunnel(s: H1UpstreamStream): Duplex {
    const socket = this.socket;
    if (s !== this.stream || this.tunneled || this.closed) return socket;
    this.flushPendingHead();
    this.tunneled = true;
    s.detached = true;
    this.stream = undefined;
    this.parser.abort();
    socket.removeListener('data', this.onDataFn);
    socket.removeListener('end', this.onEndFn);
    socket.removeListener('close', this.onCloseFn);
    socket.removeListener('error', this.onErrorFn);
    socket.removeListener('drain', this.onDrainFn);
    socket.pause();
    const rest = this.leftover;
    this.leftover = undefined;
    if (rest !== undefined && rest.length > 0) socket.unshift(rest);
    this.owner.onStreamDone(this, false);
    this.owner.onConnectionClosed(this);
    return socket;
  }

  // ───────────────────────────── response side ─────────────────────────────

  private onData(buf: Buffer): void {
    if (this.tunnelPending) {
      // A 101 / CONNECT 2xx arrived; hold everything for takeTunnel().
      this.leftover = this.leftover === undefined ? buf : Buffer.concat([this.leftover, buf]);
      return;
    }
    const s = this.stream;
    if (s === undefined || s.responseComplete) {
      // Unsolicited bytes on an idle connection (or after a complete response): not HTTP we can use.
      this.close();
      return;
    }
    this.executing = true;
    const pos = this.parser.execute(buf);
    this.executing = false;
    if (this.tunneled) {
      // takeTunnel() ran inside a callback: give back what followed the response head.
      if (pos < buf.length) this.socket.unshift(buf.subarray(pos));
      return;
    }
    if (this.closed || this.parser.failed) return;
    if (this.completedInExecute) {
      this.completedInExecute = false;
      const cur = this.stream;
      if (cur === undefined || cur.detached) return;
      if (this.parser.tunnel) {
        // 101 / CONNECT 2xx: keep what followed the head for takeTunnel(); read nothing more.
        this.tunnelPending = true;
        this.socket.pause();
        if (pos < buf.length) this.leftover = buf.subarray(pos);
        return;
      }
      // Bytes after a complete response: the upstream is pipelining garbage; never reuse.
      const clean = pos >= buf.length;
      // A response that finished before its request was fully written ends the exchange; the
      // connection is not reused (Envoy resets the upstream stream in that case).
      this.finishStream(cur, clean && cur.requestComplete && cur.responseKeepAlive && !cur.framingBroken);
    }
  }

  onMessageHead(p: H1Parser): void {
    const s = this.stream;
    if (s === undefined || s.detached) return;
    const status = p.status;
    if (status < 200 && status !== 101) {
      this.skipInformational = true;
      return;
    }
    s.responseKeepAlive = p.keepAlive;
    const endStream = p.bodyKind === 'none' && !p.tunnel;
    s.sink.onResponseHeaders({ status, headers: p.headers, contentLength: p.contentLength }, endStream);
  }

  onMessageBody(chunk: Buffer, end: boolean): void {
    const s = this.stream;
    if (s === undefined || s.detached) return;
    s.sink.onResponseData(chunk, end);
  }

  onMessageTrailers(trailers: HeaderList): void {
    const s = this.stream;
    if (s === undefined || s.detached) return;
    s.sink.onResponseTrailers(trailers);
  }

  onMessageComplete(): boolean {
    if (this.skipInformational) {
      this.skipInformational = false;
      return true; // parse the final response next
    }
    const s = this.stream;
    if (s !== undefined) s.responseComplete = true;
    if (this.executing) this.completedInExecute = true;
    else if (s !== undefined && !s.detached && !this.parser.tunnel) {
      // Completed by EOF (close-delimited body): the connection is finished anyway.
      this.finishStream(s, false);
    }
    return false; // no pipelining: nothing may follow a response
  }

  onParseError(_status: number, detail: string): void {
    const s = this.stream;
    if (s !== undefined && !s.detached) {
      this.finishStream(s, false);
      s.sink.onUpstreamReset('protocol_error', detail);
    }
    this.close();
  }

  private onEnd(): void {
    if (this.closed) return;
    const s = this.stream;
    if (s !== undefined && !s.detached && !s.responseComplete) {
      this.executing = true;
      this.parser.finish();
      this.executing = false;
      if (s.responseComplete) {
        // close-delimited body completed by EOF
        this.completedInExecute = false;
        this.finishStream(s, false);
      }
    }
    this.close();
  }

  private onClose(): void {
    this.closed = true;
    if (this.idleTimer !== undefined) clearTimeout(this.idleTimer);
    if (this.tunneled) return;
    this.parser.abort();
    const s = this.stream;
    if (s !== undefined && !s.detached) {
      const complete = s.responseComplete;
      this.finishStream(s, false);
      if (!complete) {
        s.sink.onUpstreamReset(
          'connection_termination',
          this.lastError === '' ? 'upstream closed the connection' : this.lastError,
        );
      }
    }
    this.owner.onConnectionClosed(this);
  }

  /** End the current exchange exactly once and tell the pool. */
  private finishStream(s: H1UpstreamStream, reusable: boolean): void {
    if (s.detached) return;
    s.detached = true;
    if (this.stream === s) this.stream = undefined;
    // A response can complete inside the read that made its sink pause (the last chunk and the
    // terminating one arrive together): an idle connection must read again, or the next request
    // on it would wait for a response already sitting in the socket (issue 15, bug 1).
    if (this.readPaused) this.resumeReading();
    this.owner.onStreamDone(this, reusable && !this.closed);
  }
}
