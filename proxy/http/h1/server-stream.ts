/**
 * One downstream HTTP/1.1 request/response exchange: the ResponseEncoder the connection manager
 * writes through. Owns response serialisation and framing; the connection-level state (parsing,
 * pipelining, keep-alive, timers, tunnels) stays in H1ServerCodec (server-codec.ts).
 *
 * Leans towards one write per response and never desynchronising the client: the head is held
 * until the first body chunk (or the next tick) so both go out in one write; Content-Length is
 * kept when known and enforced (never more bytes than declared, a short body closes the
 * connection); otherwise chunked for HTTP/1.1 (with trailers) or close-delimited for HTTP/1.0.
 */
import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
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
import { appendHeaders, headerScan, SKIP_UPGRADE, writeFramed } from './writer';

/** What a stream needs from its connection (implemented by H1ServerCodec). */
export interface H1ServerStreamOwner {
  readonly socket: Socket;
  /** The connection is draining: every response gets `connection: close`. */
  readonly isDraining: boolean;
  readonly isClosed: boolean;
  /** The response (headers with endStream, last data, or trailers) has been written. */
  endResponse(s: H1ServerStream): void;
  resetStream(s: H1ServerStream): void;
  setUserPaused(s: H1ServerStream, paused: boolean): void;
  takeTunnel(s: H1ServerStream): Duplex;
}

function flushStream(s: H1ServerStream): void {
  s.flushPendingHead();
}

/** Per-request state and the ResponseEncoder handed to the connection manager. */
export class H1ServerStream implements ResponseEncoder {
  sink: RequestSink | undefined = undefined;
  requestComplete = false;
  headersSent = false;
  responseComplete = false;
  /** No more calls either way (reset, tunnel taken, or finished). */
  detached = false;
  chunked = false;
  noBody = false;
  closeAfter = false;
  tunnelResponse = false;
  /** Body bytes still owed for a Content-Length framed response; -1 when not length-framed. */
  remaining = -1;
  /** Response head serialised but not yet written (coalesced with the first body chunk). */
  pendingHead: string | undefined = undefined;

  constructor(
    private readonly owner: H1ServerStreamOwner,
    readonly protocol: HttpProtocol,
    readonly connection: DownstreamConnectionInfo,
    readonly isHead: boolean,
    readonly isConnect: boolean,
    readonly keepAlive: boolean,
  ) {}

  writeHeaders(head: ResponseHead, endStream: boolean): void {
    if (this.detached || this.headersSent || this.owner.isClosed) return;
    const status = head.status;
    const socket = this.owner.socket;
    if (status < 200 && status !== 101) {
      // Informational (103 Early Hints…): not final, no framing; HTTP/1.0 clients never see one.
      if (this.protocol === 'HTTP/1.1') {
        socket.write(
          `${appendHeaders(`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\n`, head.headers, SKIP_UPGRADE)}\r\n`,
          'latin1',
        );
      }
      return;
    }
    this.headersSent = true;
    let str = appendHeaders(
      `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Unknown'}\r\n`,
      head.headers,
      status !== 101 ? SKIP_UPGRADE : 0,
    );
    const declared = headerScan.contentLength;
    if (status === 101 || (this.isConnect && status >= 200 && status < 300)) {
      this.tunnelResponse = true;
      this.noBody = true;
      if (status === 101) str += 'connection: upgrade\r\n';
    } else {
      if (this.isConnect) this.closeAfter = true; // a refused CONNECT: the rest of the input is not HTTP
      if (this.isHead || status === 204 || status === 304) {
        this.noBody = true;
        if (declared === -1 && this.isHead && head.contentLength >= 0 && status !== 204 && status !== 304) {
          str += `content-length: ${head.contentLength}\r\n`;
        }
      } else if (declared >= 0) {
        this.remaining = declared; // framed by the given content-length
      } else if (head.contentLength >= 0 && !endStream) {
        this.remaining = head.contentLength;
        str += `content-length: ${head.contentLength}\r\n`;
      } else if (endStream) {
        this.remaining = 0;
        str += 'content-length: 0\r\n';
      } else if (this.protocol === 'HTTP/1.1') {
        this.chunked = true;
        str += 'transfer-encoding: chunked\r\n';
      } else {
        this.closeAfter = true; // HTTP/1.0 without a length: close-delimited
      }
      // A body shorter than its declared length can only be signalled by closing the connection.
      if (endStream && this.remaining > 0) this.closeAfter = true;
      // Answering before the request is complete (early 4xx…): the connection cannot be reused.
      if (!this.requestComplete || !this.keepAlive || this.owner.isDraining) this.closeAfter = true;
      if (this.closeAfter) str += 'connection: close\r\n';
      else if (this.protocol === 'HTTP/1.0') str += 'connection: keep-alive\r\n';
    }
    str += '\r\n';
    if (endStream) {
      socket.write(str, 'latin1');
      this.owner.endResponse(this);
      return;
    }
    this.pendingHead = str;
    process.nextTick(flushStream, this);
  }

  /** Write a head still held for coalescing (next tick, or before a tunnel is handed over). */
  flushPendingHead(): void {
    const h = this.pendingHead;
    if (h === undefined || this.owner.isClosed) return;
    this.pendingHead = undefined;
    this.owner.socket.write(h, 'latin1');
  }

  writeData(chunk: Buffer, endStream: boolean): boolean {
    if (this.detached || this.responseComplete || this.owner.isClosed) return true;
    const socket = this.owner.socket;
    const prefix = this.pendingHead ?? '';
    this.pendingHead = undefined;
    let ok: boolean;
    if (this.noBody) {
      ok = writeFramed(socket, prefix, undefined, '');
    } else if (this.chunked) {
      if (chunk.length > 0) {
        ok = writeFramed(
          socket,
          `${prefix}${chunk.length.toString(16)}\r\n`,
          chunk,
          endStream ? '\r\n0\r\n\r\n' : '\r\n',
        );
      } else {
        ok = writeFramed(socket, prefix, undefined, endStream ? '0\r\n\r\n' : '');
      }
    } else {
      if (this.remaining >= 0) {
        if (chunk.length > this.remaining) {
          // Never write past the declared length: the excess would be read as the next response.
          chunk = chunk.subarray(0, this.remaining);
          this.closeAfter = true;
        }
        this.remaining -= chunk.length;
        if (endStream && this.remaining > 0) this.closeAfter = true;
      }
      ok = writeFramed(socket, prefix, chunk, '');
    }
    if (endStream) this.owner.endResponse(this);
    return ok;
  }

  writeTrailers(trailers: HeaderList): void {
    if (this.detached || this.responseComplete || this.owner.isClosed) return;
    const socket = this.owner.socket;
    const prefix = this.pendingHead ?? '';
    this.pendingHead = undefined;
    if (this.chunked) {
      socket.write(`${appendHeaders(`${prefix}0\r\n`, trailers, SKIP_UPGRADE)}\r\n`, 'latin1');
    } else if (prefix.length > 0) {
      socket.write(prefix, 'latin1');
    }
    if (this.remaining > 0) this.closeAfter = true;
    this.owner.endResponse(this);
  }

  reset(_reason: ResetReason): void {
    this.pendingHead = undefined;
    this.owner.resetStream(this);
  }
  pauseRequest(): void {
    this.owner.setUserPaused(this, true);
  }
  resumeRequest(): void {
    this.owner.setUserPaused(this, false);
  }
  takeTunnel(): Duplex {
    return this.owner.takeTunnel(this);
  }
  closeAfterResponse(): void {
    this.closeAfter = true;
  }
}
