/**
 * Downstream HTTP/1.1 codec: owns one accepted socket, turns its bytes into RequestSink calls and
 * writes responses through a per-request ResponseEncoder (Envoy's ServerConnectionImpl).
 *
 * Leans towards the hot path and safety: no IncomingMessage/ServerResponse, no streams or events
 * per request; one small stream object per request; pipelined requests are served strictly one at
 * a time (the parser stops at the end of each request; bytes of the next one are held, and the
 * socket paused, until the response is complete). Anything malformed is answered by the codec itself (400/408/414/431 with
 * `Connection: close`), reported through `onCodecError`, and the connection is closed without
 * anything reaching the sink. Requests get hop-by-hop headers removed (see parser.ts);
 * `Expect: 100-continue` is answered here with `100 Continue` and removed (Envoy's default).
 *
 * Usage (listener / connection manager):
 *   new H1ServerCodec(socket, callbacks, connectionInfo, h1ServerOptions(hcmConfig, onCodecError))
 */
import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { HcmConfig } from '../../config/types';
import type {
  CodecErrorReport,
  DownstreamConnectionInfo,
  HeaderList,
  HttpProtocol,
  RequestHead,
  ServerCodecCallbacks,
} from '../codec';
import { H1Parser, type H1ParserHandler } from './parser';
import { H1ServerStream, type H1ServerStreamOwner } from './server-stream';

export interface H1ServerCodecOptions {
  /** HcmConfig.maxRequestHeadersKb (Envoy default 60). */
  readonly maxRequestHeadersKb?: number;
  /** HcmConfig.maxHeadersCount (Envoy default 100). */
  readonly maxHeadersCount?: number;
  /** Longest accepted request line in bytes; longer → 414. Default 16 KiB. */
  readonly maxRequestLineBytes?: number;
  /** Close the connection after this long without an active request; 0 disables. */
  readonly idleTimeoutMs?: number;
  /** Time allowed from the first byte of a head to its end (408 after); 0 disables (Envoy default). */
  readonly requestHeadersTimeoutMs?: number;
  /** Called for every request the codec rejects itself (logs and metrics). */
  readonly onCodecError?: (report: CodecErrorReport) => void;
  /** Bytes already read from the socket (protocol detection), parsed before anything else. */
  readonly initialData?: Buffer;
  /** Scheme of requests on this connection; default 'https' for TLS sockets, else 'http'. */
  readonly scheme?: string;
}

/** Map an HcmConfig to codec options. */
export function h1ServerOptions(
  hcm: Pick<HcmConfig, 'maxRequestHeadersKb' | 'maxHeadersCount' | 'idleTimeoutMs' | 'requestHeadersTimeoutMs'>,
  onCodecError?: (report: CodecErrorReport) => void,
): H1ServerCodecOptions {
  return {
    maxRequestHeadersKb: hcm.maxRequestHeadersKb,
    maxHeadersCount: hcm.maxHeadersCount,
    idleTimeoutMs: hcm.idleTimeoutMs,
    requestHeadersTimeoutMs: hcm.requestHeadersTimeoutMs,
    onCodecError,
  };
}

const CONTINUE_100 = 'HTTP/1.1 100 Continue\r\n\r\n';

export class H1ServerCodec implements H1ParserHandler, H1ServerStreamOwner {
  private readonly parser: H1Parser;
  private stream: H1ServerStream | undefined = undefined;
  /** Bytes received after the current request, held until its response is complete. */
  private pendingInput: Buffer | undefined = undefined;
  private awaitingResponse = false;
  private userPaused = false;
  private reading = true;
  private executing = false;
  private closing = false;
  private closed = false;
  private tunneled = false;
  private draining = false;
  /** shutdownNotice() was called: close after the next response, never while idle. */
  private noticed = false;
  private resumeScheduled = false;
  private readonly scheme: string;
  private idleTimer: NodeJS.Timeout | undefined = undefined;
  private headersTimer: NodeJS.Timeout | undefined = undefined;
  private lingerTimer: NodeJS.Timeout | undefined = undefined;

  // Listeners bound once per connection (no closures per request).
  private readonly onDataFn = (b: Buffer) => this.onData(b);
  private readonly onEndFn = () => this.onEnd();
  private readonly onCloseFn = () => this.onClose();
  private readonly onErrorFn = () => {};
  private readonly onDrainFn = () => this.onDrain();
  private readonly resumeFn = () => this.resumeParsing();

  constructor(
    readonly socket: Socket,
    private readonly callbacks: ServerCodecCallbacks,
    readonly connection: DownstreamConnectionInfo,
    private readonly options: H1ServerCodecOptions = {},
  ) {
    this.parser = new H1Parser(true, this, {
      maxHeaderBytes: (options.maxRequestHeadersKb ?? 60) * 1024,
      maxHeadersCount: options.maxHeadersCount ?? 100,
      maxRequestLineBytes: options.maxRequestLineBytes ?? 16 * 1024,
    });
    this.scheme = options.scheme ?? ((socket as { encrypted?: boolean }).encrypted ? 'https' : 'http');
    socket.setNoDelay(true);
    socket.on('data', this.onDataFn);
    socket.on('end', this.onEndFn);
    socket.on('close', this.onCloseFn);
    socket.on('error', this.onErrorFn);
    socket.on('drain', this.onDrainFn);
    if ((options.idleTimeoutMs ?? 0) > 0) {
      this.idleTimer = setTimeout(() => this.onIdleTimeout(), options.idleTimeoutMs);
      this.idleTimer.unref();
    }
    if (options.initialData !== undefined && options.initialData.length > 0) this.onData(options.initialData);
    // Protocol detection leaves sockets explicitly paused (bytes unshifted); a 'data' listener
    // alone does not restart an explicitly paused stream.
    if (this.reading && !this.closing) socket.resume();
  }

  /** Responses say `Connection: close` (a drain notice or a drain). */
  get isDraining(): boolean {
    return this.draining || this.noticed;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Requests in flight on this connection (0 or 1). */
  get activeStreams(): number {
    return this.stream === undefined ? 0 : 1;
  }

  /**
   * Drain notice: the next response head says `Connection: close` and the connection closes
   * after it. Unlike drain(), an idle connection stays open: closing it now could race a request
   * its client is already sending, and that request (a POST) could not be retried safely.
   */
  shutdownNotice(): void {
    this.noticed = true;
  }

  /** Graceful close: finish the current response (with Connection: close), then close. */
  drain(): void {
    this.draining = true;
    if (this.stream === undefined) this.closeGracefully();
    else this.stream.closeAfter = true;
  }

  /** Close now; an active stream is reset with connection_termination. */
  destroy(): void {
    this.socket.destroy();
  }

  // ───────────────────────────── input ─────────────────────────────

  private onData(buf: Buffer): void {
    if (this.closing) return; // discarding after an error / close
    if (this.awaitingResponse || this.pendingInput !== undefined) {
      this.pendingInput = this.pendingInput === undefined ? buf : Buffer.concat([this.pendingInput, buf]);
      this.updateReading();
      return;
    }
    this.feed(buf);
  }

  private feed(buf: Buffer): void {
    this.executing = true;
    const pos = this.parser.execute(buf);
    this.executing = false;
    if (this.tunneled) {
      // takeTunnel() ran inside a callback: give back what followed the request head.
      if (pos < buf.length) this.socket.unshift(buf.subarray(pos));
      return;
    }
    if (this.closing || this.closed || this.parser.failed) return;
    if (pos < buf.length) {
      this.pendingInput = buf.subarray(pos);
      this.updateReading();
    }
    const ht = this.options.requestHeadersTimeoutMs ?? 0;
    if (ht > 0 && this.headersTimer === undefined && this.parser.inHead) {
      this.headersTimer = setTimeout(() => this.onHeadersTimeout(), ht);
      this.headersTimer.unref();
    }
  }

  onMessageHead(p: H1Parser): void {
    if (this.headersTimer !== undefined) {
      clearTimeout(this.headersTimer);
      this.headersTimer = undefined;
    }
    const protocol: HttpProtocol = p.versionMinor === 1 ? 'HTTP/1.1' : 'HTTP/1.0';
    const stream = new H1ServerStream(
      this,
      protocol,
      this.connection,
      p.method === 'HEAD',
      p.tunnel,
      p.keepAlive && !this.draining && !this.noticed,
    );
    const endStream = p.bodyKind === 'none' && !p.tunnel;
    stream.requestComplete = endStream;
    this.stream = stream;
    const head: RequestHead = {
      method: p.method,
      path: p.path,
      authority: p.authority,
      scheme: p.scheme === '' ? this.scheme : p.scheme,
      protocol,
      headers: p.headers,
      upgrade: p.upgrade,
      contentLength: p.contentLength,
    };
    if (p.expectContinue && p.versionMinor === 1 && p.bodyKind !== 'none') this.socket.write(CONTINUE_100, 'latin1');
    const sink = this.callbacks.newStream(stream);
    stream.sink = sink;
    sink.onRequestHeaders(head, endStream);
  }

  onMessageBody(chunk: Buffer, end: boolean): void {
    const s = this.stream;
    if (s === undefined || s.detached) return;
    if (end) s.requestComplete = true;
    s.sink!.onRequestData(chunk, end);
  }

  onMessageTrailers(trailers: HeaderList): void {
    const s = this.stream;
    if (s === undefined || s.detached) return;
    s.requestComplete = true;
    s.sink!.onRequestTrailers(trailers);
  }

  onMessageComplete(): boolean {
    const s = this.stream;
    if (s === undefined) return !this.closing;
    s.requestComplete = true;
    if (s.isConnect) {
      // Everything after a CONNECT head is tunnel payload: stop until takeTunnel().
      this.awaitingResponse = true;
      this.updateReading();
      return false;
    }
    if (s.responseComplete) {
      s.detached = true;
      this.stream = undefined;
      this.streamFinished();
      return !this.closing;
    }
    this.awaitingResponse = true;
    this.updateReading();
    return false;
  }

  onParseError(status: number, detail: string): void {
    this.options.onCodecError?.({ status, flag: 'DPE', detail });
    const s = this.stream;
    this.stream = undefined;
    if (s !== undefined && !s.detached) {
      s.detached = true;
      if (!s.headersSent) this.sendLocalError(status);
      s.sink?.onDownstreamReset('protocol_error');
      if (s.headersSent) {
        this.socket.destroy();
        return;
      }
    } else {
      this.sendLocalError(status);
    }
    this.closeGracefully();
  }

  private sendLocalError(status: number): void {
    const reason = STATUS_CODES[status] ?? 'Error';
    this.socket.write(
      `HTTP/1.1 ${status} ${reason}\r\ncontent-length: ${reason.length}\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\n${reason}`,
      'latin1',
    );
  }

  private onEnd(): void {
    // Already closing (our end() is queued behind any unflushed response): let it finish.
    if (this.closed || this.tunneled || this.closing) return;
    const complete = this.parser.finish();
    const s = this.stream;
    if (s !== undefined && !s.detached) {
      // Half-close with a request in flight: Envoy treats the downstream as gone.
      this.stream = undefined;
      s.detached = true;
      s.sink!.onDownstreamReset('connection_termination');
      this.socket.destroy();
      return;
    }
    if (!complete) {
      this.socket.destroy();
      return;
    }
    this.closeGracefully();
  }

  private onClose(): void {
    this.closed = true;
    this.clearTimers();
    if (this.tunneled) return;
    this.parser.abort();
    const s = this.stream;
    this.stream = undefined;
    if (s !== undefined && !s.detached) {
      s.detached = true;
      if (!(s.requestComplete && s.responseComplete)) s.sink?.onDownstreamReset('connection_termination');
    }
  }

  private onDrain(): void {
    const s = this.stream;
    if (s !== undefined && !s.detached && s.sink !== undefined) s.sink.onDownstreamWritable();
  }

  private onIdleTimeout(): void {
    if (this.closed || this.tunneled) return;
    if (this.stream !== undefined || this.awaitingResponse) {
      this.idleTimer!.refresh();
      return;
    }
    this.closeGracefully();
  }

  private onHeadersTimeout(): void {
    this.headersTimer = undefined;
    if (this.closed || this.closing || this.stream !== undefined || this.tunneled) return;
    this.parser.abort();
    this.options.onCodecError?.({ status: 408, flag: 'DPE', detail: 'request headers timeout' });
    this.sendLocalError(408);
    this.closeGracefully();
  }

  private clearTimers(): void {
    if (this.idleTimer !== undefined) clearTimeout(this.idleTimer);
    if (this.headersTimer !== undefined) clearTimeout(this.headersTimer);
    if (this.lingerTimer !== undefined) clearTimeout(this.lingerTimer);
    this.idleTimer = this.headersTimer = this.lingerTimer = undefined;
  }

  /** End our side, keep reading (and discarding) so the peer sees a FIN rather than a RST. */
  private closeGracefully(): void {
    if (this.closing || this.closed) return;
    this.closing = true;
    this.pendingInput = undefined;
    this.parser.abort();
    this.socket.end();
    if (!this.reading) {
      this.reading = true;
      this.socket.resume();
    }
    this.lingerTimer = setTimeout(() => this.socket.destroy(), 5000);
    this.lingerTimer.unref();
  }

  /**
   * Read from the socket unless the stream asked for a pause or pipelined input is already held.
   * Waiting for a response does not pause by itself (pause/resume costs two syscalls per request):
   * the socket is paused only once bytes of a next request actually arrive early.
   */
  private updateReading(): void {
    const want = !this.userPaused && this.pendingInput === undefined;
    if (want === this.reading || this.closing) return;
    this.reading = want;
    if (want) this.socket.resume();
    else this.socket.pause();
  }

  setUserPaused(s: H1ServerStream, paused: boolean): void {
    if (s !== this.stream || s.detached) return;
    this.userPaused = paused;
    this.updateReading();
  }

  /** Both halves of the current exchange are done. */
  private streamFinished(): void {
    if (this.userPaused) {
      this.userPaused = false;
      this.updateReading();
    }
    if (this.idleTimer !== undefined) this.idleTimer.refresh();
    if (this.draining) this.closeGracefully();
  }

  private resumeParsing(): void {
    this.resumeScheduled = false;
    if (this.closing || this.closed || this.tunneled) return;
    this.awaitingResponse = false;
    this.parser.reset();
    const buf = this.pendingInput;
    this.pendingInput = undefined;
    if (buf !== undefined) this.feed(buf);
    this.updateReading();
  }

  endResponse(s: H1ServerStream): void {
    s.responseComplete = true;
    if (s.tunnelResponse) return; // the connection manager takes the tunnel next
    if (s.closeAfter || !s.requestComplete) {
      s.detached = true;
      this.stream = undefined;
      this.closeGracefully();
      return;
    }
    if (this.executing) return; // onMessageComplete picks it up
    // The parser stopped at the end of this request.
    s.detached = true;
    this.stream = undefined;
    this.streamFinished();
    if (this.closing) return;
    if (this.pendingInput === undefined) {
      // Common case (no pipelining): ready for the next request at once, no tick, no syscalls.
      this.awaitingResponse = false;
      this.parser.reset();
      this.updateReading();
    } else if (!this.resumeScheduled) {
      // Pipelined input waits: parse it on the next tick, outside the caller's stack.
      this.resumeScheduled = true;
      process.nextTick(this.resumeFn);
    }
  }

  resetStream(s: H1ServerStream): void {
    if (s.detached) return;
    s.detached = true;
    if (this.stream === s) this.stream = undefined;
    this.closing = true;
    this.parser.abort();
    this.socket.destroy();
  }

  takeTunnel(s: H1ServerStream): Duplex {
    const socket = this.socket;
    if (s !== this.stream || this.tunneled) return socket;
    s.flushPendingHead();
    this.tunneled = true;
    s.detached = true;
    this.stream = undefined;
    this.clearTimers();
    this.parser.abort();
    socket.removeListener('data', this.onDataFn);
    socket.removeListener('end', this.onEndFn);
    socket.removeListener('close', this.onCloseFn);
    socket.removeListener('error', this.onErrorFn);
    socket.removeListener('drain', this.onDrainFn);
    socket.pause();
    const rest = this.pendingInput;
    this.pendingInput = undefined;
    if (rest !== undefined && rest.length > 0) socket.unshift(rest);
    return socket;
  }
}
