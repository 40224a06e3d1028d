/**
 * Meshlet's own downstream HTTP/2 connection (RFC 9113) over the accepted socket (h2c with prior
 * knowledge, h2c found by the preface sniff, or TLS with ALPN h2), without node:http2. The
 * default (MESHLET_H2_SERVER_CODEC=nghttp2 selects node:http2: server-settings.ts); it presents
 * the same surface to the connection manager as server-codec.ts.
 *
 * Owns: the client preface, the stream table and stream-id rules, frame dispatch, HPACK decoding,
 * opening request streams (RFC 9113 §8 validation through headers.ts), resets, graceful GOAWAY,
 * half-close, idle close, and applying every flood defence the node:http2 path had (premature/
 * rapid reset, SETTINGS/PING/CONTINUATION/PRIORITY/WINDOW_UPDATE/empty-frame floods, header list
 * size and count, max concurrent streams; counters in raw-server-guard.ts). Byte splitting is
 * frame-reader.ts, header blocks header-block.ts, control frames raw-server-control.ts, the
 * receive windows raw-server-recv.ts, the send side raw-server-send.ts, frame writing
 * frame-output.ts (the last four shared in shape or code with the upstream client).
 *
 * Leans towards doing little per request (one object per stream, DATA handed over as slices of
 * the socket's read buffer, every frame produced in one tick leaves in one writev) and towards
 * failing the connection with the RFC's error code on any protocol violation; nothing throws into
 * the connection manager.
 */
import type { Duplex } from 'node:stream';
import { logger } from '../../../common/logger';
import type { CodecErrorReport, DownstreamConnectionInfo, ServerCodecCallbacks } from '../codec';
import {
  DEFAULT_WINDOW,
  E_COMPRESSION_ERROR,
  E_ENHANCE_YOUR_CALM,
  E_FLOW_CONTROL_ERROR,
  E_FRAME_SIZE_ERROR,
  E_NO_ERROR,
  E_PROTOCOL_ERROR,
  E_REFUSED_STREAM,
  E_STREAM_CLOSED,
  F_ACK,
  F_END_HEADERS,
  F_END_STREAM,
  F_PADDED,
  F_PRIORITY,
  goawayFrame,
  PREFACE,
  rstStreamFrame,
  T_CONTINUATION,
  T_DATA,
  T_HEADERS,
  T_PUSH_PROMISE,
  T_SETTINGS,
  windowUpdateFrame,
} from './frames';
import { checkedRequestHead } from './headers';
import { HpackDecoder, HpackError } from './hpack';
import { FrameOutput } from './frame-output';
import { FrameReader, type FrameSink } from './frame-reader';
import { HeaderBlock } from './header-block';
import { onControlFrame, type RawServerControlled } from './raw-server-control';
import { RawServerGuard } from './raw-server-guard';
import { RawServerReceiver } from './raw-server-recv';
import { RawServerSender } from './raw-server-send';
import { RawServerStream } from './raw-server-stream';
import { clampWindow, type H2ServerCodecOptions, h2ServerAbuseStats, rawServerSettingsFrame } from './server-settings';

const log = logger('h2');

const kCodec = Symbol('meshlet.h2.rawServer');

type Tagged = Duplex & { [kCodec]?: H2RawServerCodec };

function onSocketData(this: Tagged, chunk: Buffer): void {
  this[kCodec]?.onBytes(chunk);
}

/** One downstream HTTP/2 connection on meshlet's own framing. */
export class H2RawServerCodec implements FrameSink, RawServerControlled {
  readonly streams = new Map<number, RawServerStream>();
  private readonly decoder = new HpackDecoder();
  readonly out: FrameOutput;
  readonly guard: RawServerGuard;
  readonly secure: boolean;
  /** max_request_headers_kb in bytes (HPACK accounting). */
  private readonly maxHeaderListSize: number;
  private readonly streamWindow: number;
  private readonly connWindow: number;
  // receive side
  private prefaceLeft = PREFACE.length;
  private sawSettings = false;
  /** Highest client stream id seen (streams ≤ it are open or closed, above it idle). */
  lastStreamId = 0;
  /** Streams we reset recently: frames the client had in flight on them are ignored. */
  private readonly resetIds = new Set<number>();
  private readonly block = new HeaderBlock();
  private readonly reader: FrameReader;
  /** Our SETTINGS were acknowledged: limits in them are binding on the client. */
  settingsAcked = false;
  /** Response HEADERS / DATA / trailers within the client's windows. */
  readonly tx: RawServerSender;
  /** Request DATA within our windows, held while paused. */
  private readonly rx: RawServerReceiver;
  // lifecycle
  private closing = false;
  private gone = false;
  private goawaySent = false;
  private peerEnded = false;
  private idleTimer: NodeJS.Timeout | undefined;
  /** Set when the connection was closed for too many premature resets. */
  prematureResetClose = false;

  constructor(
    readonly socket: Duplex,
    readonly connection: DownstreamConnectionInfo,
    readonly callbacks: ServerCodecCallbacks,
    private readonly options: H2ServerCodecOptions,
    preface?: Buffer,
  ) {
    this.secure = (socket as { encrypted?: boolean }).encrypted === true;
    this.maxHeaderListSize = Math.max(1024, Math.floor(options.maxRequestHeadersKb * 1024));
    this.streamWindow = clampWindow(options.http2.initialStreamWindowSize);
    this.connWindow = clampWindow(options.http2.initialConnectionWindowSize);
    this.out = new FrameOutput(socket, () => this.onSocketDrain());
    this.guard = new RawServerGuard();
    this.reader = new FrameReader(this);
    this.tx = new RawServerSender(this.out, this.guard, (s) => this.maybeClosed(s));
    this.rx = new RawServerReceiver(this.out, this.connWindow, this.streamWindow, (s) => this.maybeClosed(s));
    (socket as Tagged)[kCodec] = this;
    socket.on('data', onSocketData);
    socket.on('error', () => {});
    socket.once('end', () => this.onPeerEnd());
    socket.once('close', () => this.onSocketClose());
    this.out.queue(rawServerSettingsFrame(options, this.streamWindow, this.maxHeaderListSize));
    if (this.connWindow > DEFAULT_WINDOW) this.out.queue(windowUpdateFrame(0, this.connWindow - DEFAULT_WINDOW));
    this.armIdle();
    if (preface !== undefined && preface.length > 0) this.onBytes(preface);
    if ((socket as { isPaused?: () => boolean }).isPaused?.() === true) socket.resume();
  }

  get activeStreams(): number {
    return this.streams.size;
  }

  isClosing(): boolean {
    return this.closing || this.gone;
  }

  transportGone(): boolean {
    return this.gone || this.socket.destroyed;
  }

  /** Graceful close: GOAWAY now, let active streams finish, then close the connection. */
  drain(): void {
    if (this.closing || this.gone) return;
    this.closing = true;
    this.sendGoaway(E_NO_ERROR);
    if (this.streams.size === 0) this.finish();
  }

  /** Close now; active streams see onDownstreamReset('connection_termination'). */
  destroy(): void {
    if (this.gone) return;
    this.closing = true;
    this.socket.destroy();
  }

  reportError(status: number, flag: CodecErrorReport['flag'], detail: string): void {
    this.options.onCodecError?.({ status, flag, detail });
  }

  // ───────────── sending (called by RawServerStream / RawServerTunnel) ─────────────

  /** Local reset: RST_STREAM and forget the stream (its sink is not called). */
  resetStream(s: RawServerStream, code: number): void {
    if (s.gone) return;
    s.localReset = true;
    this.rememberReset(s.id);
    this.out.queue(rstStreamFrame(s.id, code));
    this.guard.onControlSent(this.out.full());
    this.removeStream(s, false);
  }

  resumeStream(s: RawServerStream): void {
    this.rx.resume(s);
  }

  private onSocketDrain(): void {
    this.guard.onDrain();
    this.tx.drainQueues();
  }

  // ───────────── receiving ─────────────

  /** @internal Bytes from the socket. */
  onBytes(buf: Buffer): void {
    if (this.gone) return;
    let pos = 0;
    if (this.prefaceLeft > 0) {
      const n = Math.min(this.prefaceLeft, buf.length);
      const off = PREFACE.length - this.prefaceLeft;
      if (buf.compare(PREFACE, off, off + n, 0, n) !== 0) return this.fail(E_PROTOCOL_ERROR, 'invalid connection preface');
      this.prefaceLeft -= n;
      pos = n;
    }
    this.reader.push(buf, pos);
  }

  /** @internal FrameSink */
  readStopped(): boolean {
    return this.gone;
  }

  /** @internal FrameSink */
  onOversizeFrame(len: number): void {
    this.fail(E_FRAME_SIZE_ERROR, `frame of ${len} octets`);
  }

  /** @internal FrameSink: one frame (payload buf[start, end)). */
  onFrame(type: number, flags: number, id: number, buf: Buffer, start: number, end: number): void {
    if (!this.sawSettings) {
      if (type !== T_SETTINGS || (flags & F_ACK) !== 0) return this.fail(E_PROTOCOL_ERROR, 'first frame is not SETTINGS');
      this.sawSettings = true;
    }
    if (this.block.stream !== 0 && type !== T_CONTINUATION) return this.fail(E_PROTOCOL_ERROR, 'frame inside a header block');
    const g = this.guard;
    if (end > start) g.nonEmpty();
    switch (type) {
      case T_DATA:
        if (end === start && (flags & F_END_STREAM) === 0 && g.emptyFrame()) return this.flood('empty frame flood');
        return this.onDataFrame(flags, id, buf, start, end);
      case T_HEADERS:
        if (end === start && g.emptyFrame()) return this.flood('empty frame flood');
        return this.onHeadersFrame(flags, id, buf, start, end);
      case T_CONTINUATION:
        if (id === 0 || id !== this.block.stream) return this.fail(E_PROTOCOL_ERROR, 'unexpected CONTINUATION');
        if (end === start && (flags & F_END_HEADERS) === 0 && g.emptyFrame()) return this.flood('empty frame flood');
        return this.addFragment(flags, buf.subarray(start, end));
      case T_PUSH_PROMISE:
        return this.fail(E_PROTOCOL_ERROR, 'PUSH_PROMISE from a client');
      default:
        return onControlFrame(this, type, flags, id, buf, start, end);
    }
  }

  private onDataFrame(flags: number, id: number, buf: Buffer, start: number, end: number): void {
    if (id === 0) return this.fail(E_PROTOCOL_ERROR, 'DATA on stream 0');
    const flowLen = end - start;
    if (!this.rx.take(flowLen)) return this.fail(E_FLOW_CONTROL_ERROR, 'connection receive window exceeded');
    if ((flags & F_PADDED) !== 0) {
      if (start >= end) return this.fail(E_PROTOCOL_ERROR, 'bad padding');
      const pad = buf[start]!;
      start++;
      if (pad > end - start) return this.fail(E_PROTOCOL_ERROR, 'bad padding');
      end -= pad;
    }
    const s = this.streams.get(id);
    if (s === undefined) {
      if (id > this.lastStreamId) return this.fail(E_PROTOCOL_ERROR, 'DATA on an idle stream');
      // Frames in flight on a stream we reset are ignored (RFC 9113 §5.4.2).
      if (this.resetIds.has(id)) return;
      return this.streamError(id, E_STREAM_CLOSED);
    }
    if (s.remoteEnded) return this.streamError(id, E_STREAM_CLOSED);
    this.rx.onData(s, flags, flowLen, buf, start, end);
  }

  private onHeadersFrame(flags: number, id: number, buf: Buffer, start: number, end: number): void {
    if (id === 0) return this.fail(E_PROTOCOL_ERROR, 'HEADERS on stream 0');
    if ((id & 1) === 0) return this.fail(E_PROTOCOL_ERROR, 'HEADERS on an even stream id');
    if ((flags & F_PADDED) !== 0) {
      if (start >= end) return this.fail(E_PROTOCOL_ERROR, 'bad padding');
      const pad = buf[start]!;
      start++;
      if (pad > end - start) return this.fail(E_PROTOCOL_ERROR, 'bad padding');
      end -= pad;
    }
    if ((flags & F_PRIORITY) !== 0) {
      if (end - start < 5) return this.fail(E_FRAME_SIZE_ERROR, 'short HEADERS priority');
      if ((buf.readUInt32BE(start) & 0x7fffffff) === id) return this.streamError(id, E_PROTOCOL_ERROR);
      start += 5;
    }
    if (id <= this.lastStreamId && !this.streams.has(id) && !this.resetIds.has(id)) {
      // The newest stream id was open (closed now); a lower one may never have been used.
      return this.fail(id === this.lastStreamId ? E_STREAM_CLOSED : E_PROTOCOL_ERROR, 'HEADERS on a closed stream');
    }
    if ((flags & F_END_HEADERS) !== 0) return this.onHeaderBlock(id, flags, buf, start, end);
    this.block.begin(id, flags);
    this.addFragment(0, buf.subarray(start, end));
  }

  private addFragment(flags: number, part: Buffer): void {
    const b = this.block;
    const id = b.stream;
    // CONTINUATION flood: a header block may not grow past twice the list limit.
    const block = b.add(part, (flags & F_END_HEADERS) !== 0, this.maxHeaderListSize * 2);
    if (block === null) {
      h2ServerAbuseStats.headerOverflow++;
      return this.flood('header block too large (CONTINUATION flood)');
    }
    if (block !== undefined) this.onHeaderBlock(id, b.flags, block, 0, block.length);
  }

  private onHeaderBlock(id: number, flags: number, buf: Buffer, start: number, end: number): void {
    let fields: string[];
    let oversize: boolean;
    try {
      const r = this.decoder.decode(buf, start, end, this.maxHeaderListSize);
      fields = r.fields;
      oversize = r.oversize;
    } catch (err) {
      if (err instanceof HpackError) return this.fail(E_COMPRESSION_ERROR, err.message);
      throw err;
    }
    const endStream = (flags & F_END_STREAM) !== 0;
    const s = this.streams.get(id);
    if (s !== undefined) return this.onTrailers(s, fields, endStream);
    // A stream we reset: the block was decoded only to keep the HPACK table in step.
    if (id <= this.lastStreamId) return;
    this.lastStreamId = id;
    // After GOAWAY, streams above its last id are ignored (the client retries them elsewhere).
    if (this.goawaySent) return;
    if (this.streams.size >= this.options.http2.maxConcurrentStreams) {
      if (this.settingsAcked) return this.fail(E_PROTOCOL_ERROR, 'SETTINGS_MAX_CONCURRENT_STREAMS exceeded');
      return this.refuse(id, E_REFUSED_STREAM);
    }
    this.guard.streamsOpened++;
    if (oversize || fields.length > (this.options.maxHeadersCount + 5) * 2) {
      h2ServerAbuseStats.headerOverflow++;
      this.reportError(431, 'DPE', 'request headers too large');
      return this.refuse(id, E_ENHANCE_YOUR_CALM);
    }
    const head = checkedRequestHead(fields, endStream, this.secure, this.options.allowConnect === true);
    if (typeof head === 'string') {
      this.reportError(400, 'DPE', head);
      if (this.guard.malformed()) return this.flood('malformed request flood');
      return this.refuse(id, E_PROTOCOL_ERROR);
    }
    const s2 = new RawServerStream(id, this, this.tx.peerInitialWindow, this.streamWindow);
    s2.remoteEnded = endStream;
    s2.head = head.method === 'HEAD';
    s2.upgrade = head.upgrade !== undefined || head.method === 'CONNECT';
    if (!endStream && head.contentLength >= 0 && head.method !== 'CONNECT') s2.remaining = head.contentLength;
    this.streams.set(id, s2);
    try {
      s2.sink = this.callbacks.newStream(s2);
      s2.sink.onRequestHeaders(head, endStream);
    } catch {
      // The connection manager must not throw; if it does, only this stream is lost.
      s2.sink = undefined;
      s2.reset('local_reset');
    }
  }

  private onTrailers(s: RawServerStream, fields: string[], endStream: boolean): void {
    if (s.remoteEnded) return this.streamError(s.id, E_STREAM_CLOSED);
    if (!endStream || s.remaining > 0) return s.fail(E_PROTOCOL_ERROR);
    this.rx.onTrailers(s, fields);
  }

  /** A stream refused before it reached the connection manager (it still counts as closed). */
  private refuse(id: number, code: number): void {
    this.rememberReset(id);
    this.out.queue(rstStreamFrame(id, code));
    if (this.guard.onControlSent(this.out.full())) return this.flood('outbound control frame flood');
    this.afterStreamGone();
  }

  /** @internal RST_STREAM from the client on an open stream (RawServerControlled). */
  onPeerReset(s: RawServerStream, code: number): void {
    // Envoy's premature reset: reset by the peer before we answered, within a second of its start.
    const premature = !s.responseEnded && Date.now() - s.openedAt < this.guard.prematureMs;
    const sink = s.sink;
    s.sink = undefined;
    this.removeStream(s, premature);
    if (s.tunnel !== undefined) s.tunnel.onPeerReset();
    else sink?.onDownstreamReset(code === E_REFUSED_STREAM ? 'refused_stream' : 'remote_reset');
  }

  /** @internal The client sent GOAWAY: finish what is open, then close (RawServerControlled). */
  onPeerGoaway(): void {
    this.peerEnded = true;
    if (this.streams.size === 0) this.drain();
  }

  /** @internal Stream error on a stream id (open or not): RST_STREAM; an open stream's sink is told. */
  streamError(id: number, code: number): void {
    const s = this.streams.get(id);
    if (s !== undefined) return s.fail(code);
    this.out.queue(rstStreamFrame(id, code));
    if (this.guard.onControlSent(this.out.full())) this.flood('outbound control frame flood');
  }

  private rememberReset(id: number): void {
    // Bounded: frames in flight arrive within a round trip, long before 256 more resets.
    if (this.resetIds.size >= 256) this.resetIds.clear();
    this.resetIds.add(id);
  }

  /** @internal A flood rule tripped: GOAWAY ENHANCE_YOUR_CALM and close. */
  flood(why: string): void {
    log.warn({ connection: this.connection.id, why }, 'closing HTTP/2 connection');
    this.fail(E_ENHANCE_YOUR_CALM, why);
  }

  /** @internal Connection error: GOAWAY with the code, then close. */
  fail(code: number, why: string): void {
    if (this.gone) return;
    if (log.isLevelEnabled('debug')) log.debug({ connection: this.connection.id, code, err: why }, 'downstream HTTP/2 connection error');
    this.closing = true;
    this.goawaySent = false;
    this.sendGoaway(code);
    this.out.flush();
    this.gone = true;
    this.socket.end();
    // Bytes the client still sends are not read; the socket closes once both sides are done.
    setTimeout(destroySocket, 1000, this.socket).unref();
  }

  private sendGoaway(code: number): void {
    if (this.goawaySent) return;
    this.goawaySent = true;
    this.out.queue(goawayFrame(this.lastStreamId, code));
  }

  private maybeClosed(s: RawServerStream): void {
    if (!s.localEnded || !s.remoteEnded || s.queued !== undefined || s.gone) return;
    this.removeStream(s, false);
  }

  private removeStream(s: RawServerStream, premature: boolean): void {
    if (s.gone) return;
    s.gone = true;
    this.streams.delete(s.id);
    if (this.guard.streamClosed(premature) && !this.gone) {
      h2ServerAbuseStats.tooManyPrematureResets++;
      this.prematureResetClose = true;
      this.flood('too many premature stream resets');
      return;
    }
    this.afterStreamGone();
  }

  private afterStreamGone(): void {
    if (this.streams.size !== 0) return;
    if (this.peerEnded || this.closing) this.finish();
    else this.armIdle();
  }

  /** The peer sent FIN: nothing more can arrive, so no new stream; close when the last ends. */
  private onPeerEnd(): void {
    this.peerEnded = true;
    if (this.streams.size === 0) this.drain();
  }

  private finish(): void {
    if (this.gone) return;
    this.sendGoaway(E_NO_ERROR);
    this.out.flush();
    this.gone = true;
    this.closing = true;
    this.socket.end();
    setTimeout(destroySocket, 5000, this.socket).unref();
  }

  private armIdle(): void {
    const ms = this.options.idleTimeoutMs ?? 0;
    if (ms <= 0 || this.closing || this.gone) return;
    if (this.idleTimer === undefined) {
      this.idleTimer = setTimeout(() => {
        if (this.streams.size === 0) this.drain();
      }, ms);
      this.idleTimer.unref();
    } else {
      this.idleTimer.refresh();
    }
  }

  private onSocketClose(): void {
    this.gone = true;
    this.closing = true;
    if (this.idleTimer !== undefined) clearTimeout(this.idleTimer);
    const streams = [...this.streams.values()];
    this.streams.clear();
    for (const s of streams) {
      s.gone = true;
      const sink = s.sink;
      s.sink = undefined;
      if (s.tunnel !== undefined) s.tunnel.onPeerReset();
      else sink?.onDownstreamReset('connection_termination');
    }
    this.options.onClose?.();
  }
}

function destroySocket(socket: Duplex): void {
  socket.destroy();
}
