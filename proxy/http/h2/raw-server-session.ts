/**
 * Meshlet's own downstream HTTP/2 connection (RFC 9113) over the accepted socket (h2c with prior
 * knowledge, h2c found by the preface sniff, or TLS with ALPN h2), without node:http2. The
 * default (MESHLET_H2_SERVER_CODEC=nghttp2 selects node:http2: server-settings.ts); it presents
 * the same surface to the connection manager as server-codec.ts.
 *
 * Owns: the client preface and SETTINGS exchange, frame parsing and writing, HPACK state, request
 * validation (RFC 9113 §8), flow control both ways (send windows with per-stream queues; receive
 * windows credited as the connection manager consumes data, withheld while it pauses), resets,
 * graceful GOAWAY, half-close, idle close, and every flood defence the node:http2 path had
 * (premature/rapid reset, SETTINGS/PING/CONTINUATION/PRIORITY/WINDOW_UPDATE/empty-frame floods,
 * header list size and count, max concurrent streams): raw-server-guard.ts.
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
  DEFAULT_MAX_FRAME,
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
  FRAME_HEADER,
  goawayFrame,
  MAX_WINDOW,
  pingAckFrame,
  PREFACE,
  rstStreamFrame,
  S_ENABLE_CONNECT_PROTOCOL,
  S_ENABLE_PUSH,
  S_INITIAL_WINDOW_SIZE,
  S_MAX_CONCURRENT_STREAMS,
  S_MAX_FRAME_SIZE,
  S_MAX_HEADER_LIST_SIZE,
  settingsFrame,
  T_CONTINUATION,
  T_DATA,
  T_GOAWAY,
  T_HEADERS,
  T_PING,
  T_PRIORITY,
  T_PUSH_PROMISE,
  T_RST_STREAM,
  T_SETTINGS,
  T_WINDOW_UPDATE,
  windowUpdateFrame,
} from './frames';
import { decodeRequestHead, decodeTrailers, EMPTY, malformedRequest } from './headers';
import { HpackDecoder, HpackError } from './hpack';
import { FrameOutput } from './frame-output';
import { RawServerGuard } from './raw-server-guard';
import { RawServerSender } from './raw-server-send';
import { RawServerStream } from './raw-server-stream';
import { clampWindow, type H2ServerCodecOptions, h2ServerAbuseStats } from './server-settings';

const log = logger('h2');

const kCodec = Symbol('meshlet.h2.rawServer');
type Tagged = Duplex & { [kCodec]?: H2RawServerCodec };

function onSocketData(this: Tagged, chunk: Buffer): void {
  this[kCodec]?.onBytes(chunk);
}

/** One downstream HTTP/2 connection on meshlet's own framing. */
export class H2RawServerCodec {
  private readonly streams = new Map<number, RawServerStream>();
  private readonly decoder = new HpackDecoder();
  private readonly out: FrameOutput;
  private readonly guard: RawServerGuard;
  readonly secure: boolean;
  /** max_request_headers_kb in bytes (HPACK accounting). */
  private readonly maxHeaderListSize: number;
  private readonly streamWindow: number;
  private readonly connWindow: number;
  // receive side
  private prefaceLeft = PREFACE.length;
  private sawSettings = false;
  private pending: Buffer | undefined = undefined;
  private recvWindow: number;
  private recvUnacked = 0;
  /** Highest client stream id seen (streams ≤ it are open or closed, above it idle). */
  private lastStreamId = 0;
  /** Streams we reset recently: frames the client had in flight on them are ignored. */
  private readonly resetIds = new Set<number>();
  private blockStream = 0;
  private blockFlags = 0;
  private blockParts: Buffer[] = [];
  private blockBytes = 0;
  /** Our SETTINGS were acknowledged: limits in them are binding on the client. */
  private settingsAcked = false;
  /** Response HEADERS / DATA / trailers within the client's windows. */
  readonly tx: RawServerSender;
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
    this.recvWindow = this.connWindow;
    this.out = new FrameOutput(socket, () => this.onSocketDrain());
    this.guard = new RawServerGuard();
    this.tx = new RawServerSender(this.out, this.guard, (s) => this.maybeClosed(s));
    (socket as Tagged)[kCodec] = this;
    socket.on('data', onSocketData);
    socket.on('error', () => {});
    socket.once('end', () => this.onPeerEnd());
    socket.once('close', () => this.onSocketClose());
    const settings: [number, number][] = [
      [S_MAX_CONCURRENT_STREAMS, options.http2.maxConcurrentStreams],
      [S_INITIAL_WINDOW_SIZE, this.streamWindow],
      [S_MAX_HEADER_LIST_SIZE, this.maxHeaderListSize],
    ];
    if (options.allowConnect === true) settings.push([S_ENABLE_CONNECT_PROTOCOL, 1]);
    this.out.queue(settingsFrame(settings));
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
    if (!s.paused) return;
    s.paused = false;
    const held = s.held;
    if (held === undefined) return;
    s.held = undefined;
    const end = s.heldEnd;
    s.heldEnd = false;
    for (let i = 0; i < held.length; i++) {
      const last = i === held.length - 1;
      this.deliver(s, held[i]!, end && last && s.heldTrailers === undefined);
      if (s.gone) return;
      if (s.paused && !last) {
        s.held = held.slice(i + 1);
        s.heldEnd = end;
        return;
      }
    }
    if (s.paused) return;
    const t = s.heldTrailers;
    if (t !== undefined) {
      s.heldTrailers = undefined;
      s.sink?.onRequestTrailers(t);
    } else if (held.length === 0 && end) this.deliver(s, EMPTY, true);
  }

  private onSocketDrain(): void {
    this.guard.onDrain();
    this.tx.drainQueues();
  }

  // ───────────── receiving ─────────────

  /** @internal Bytes from the socket. */
  onBytes(chunk: Buffer): void {
    if (this.gone) return;
    let buf = chunk;
    if (this.pending !== undefined) {
      buf = Buffer.concat([this.pending, chunk]);
      this.pending = undefined;
    }
    let pos = 0;
    const total = buf.length;
    if (this.prefaceLeft > 0) {
      const n = Math.min(this.prefaceLeft, total);
      const off = PREFACE.length - this.prefaceLeft;
      if (buf.compare(PREFACE, off, off + n, 0, n) !== 0) return this.fail(E_PROTOCOL_ERROR, 'invalid connection preface');
      this.prefaceLeft -= n;
      pos = n;
    }
    while (total - pos >= FRAME_HEADER) {
      const len = (buf[pos]! << 16) | (buf[pos + 1]! << 8) | buf[pos + 2]!;
      const type = buf[pos + 3]!;
      if (len > DEFAULT_MAX_FRAME) return this.fail(E_FRAME_SIZE_ERROR, `frame of ${len} octets`);
      if (total - pos < FRAME_HEADER + len) break;
      const flags = buf[pos + 4]!;
      const id = buf.readUInt32BE(pos + 5) & 0x7fffffff;
      const start = pos + FRAME_HEADER;
      pos = start + len;
      if (!this.sawSettings) {
        if (type !== T_SETTINGS || (flags & F_ACK) !== 0) return this.fail(E_PROTOCOL_ERROR, 'first frame is not SETTINGS');
        this.sawSettings = true;
      }
      this.onFrame(type, flags, id, buf, start, pos);
      if (this.gone) return;
    }
    if (pos < total) this.pending = buf.subarray(pos);
  }

  private onFrame(type: number, flags: number, id: number, buf: Buffer, start: number, end: number): void {
    if (this.blockStream !== 0 && type !== T_CONTINUATION) return this.fail(E_PROTOCOL_ERROR, 'frame inside a header block');
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
        if (id === 0 || id !== this.blockStream) return this.fail(E_PROTOCOL_ERROR, 'unexpected CONTINUATION');
        if (end === start && (flags & F_END_HEADERS) === 0 && g.emptyFrame()) return this.flood('empty frame flood');
        return this.addFragment(flags, buf.subarray(start, end));
      case T_PRIORITY:
        if (id === 0) return this.fail(E_PROTOCOL_ERROR, 'PRIORITY on stream 0');
        if (g.priority()) {
          h2ServerAbuseStats.inboundPriorityFramesFlood++;
          return this.flood('PRIORITY frame flood');
        }
        if (end - start !== 5) return this.streamError(id, E_FRAME_SIZE_ERROR);
        if ((buf.readUInt32BE(start) & 0x7fffffff) === id) return this.streamError(id, E_PROTOCOL_ERROR);
        return;
      case T_RST_STREAM:
        return this.onRstStream(id, buf, start, end);
      case T_SETTINGS:
        return this.onSettings(flags, id, buf, start, end);
      case T_PING:
        if (id !== 0) return this.fail(E_PROTOCOL_ERROR, 'PING on a stream');
        if (end - start !== 8) return this.fail(E_FRAME_SIZE_ERROR, 'PING length');
        if ((flags & F_ACK) !== 0) return;
        if (g.control()) return this.flood('PING flood');
        this.out.queue(pingAckFrame(buf.subarray(start, end)));
        if (g.onControlSent(this.out.full())) return this.flood('outbound control frame flood');
        return;
      case T_GOAWAY:
        if (id !== 0) return this.fail(E_PROTOCOL_ERROR, 'GOAWAY on a stream');
        if (end - start < 8) return this.fail(E_FRAME_SIZE_ERROR, 'GOAWAY length');
        // The client opens no more streams: finish what is open, then close.
        this.peerEnded = true;
        if (this.streams.size === 0) this.drain();
        return;
      case T_WINDOW_UPDATE:
        return this.onWindowUpdate(id, buf, start, end);
      case T_PUSH_PROMISE:
        return this.fail(E_PROTOCOL_ERROR, 'PUSH_PROMISE from a client');
      default:
        // Unknown frame types are ignored (RFC 9113 §4.1, §5.5).
        return;
    }
  }

  private onDataFrame(flags: number, id: number, buf: Buffer, start: number, end: number): void {
    if (id === 0) return this.fail(E_PROTOCOL_ERROR, 'DATA on stream 0');
    const flowLen = end - start;
    if (flowLen > this.recvWindow) return this.fail(E_FLOW_CONTROL_ERROR, 'connection receive window exceeded');
    this.recvWindow -= flowLen;
    // The connection window is credited on receipt; stream windows bound what is held.
    this.creditConnection(flowLen);
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
    if (flowLen > s.recvWindow) return s.fail(E_FLOW_CONTROL_ERROR);
    s.recvWindow -= flowLen;
    s.recvUnacked += flowLen - (end - start);
    const endStream = (flags & F_END_STREAM) !== 0;
    if (s.remaining >= 0) {
      s.remaining -= end - start;
      if (s.remaining < 0 || (endStream && s.remaining !== 0)) return s.fail(E_PROTOCOL_ERROR);
    }
    if (endStream) s.remoteEnded = true;
    const chunk = buf.subarray(start, end);
    if (s.paused) {
      (s.held ??= []).push(chunk);
      if (endStream) s.heldEnd = true;
      return;
    }
    this.deliver(s, chunk, endStream);
  }

  private deliver(s: RawServerStream, chunk: Buffer, endStream: boolean): void {
    s.recvUnacked += chunk.length;
    if (!endStream && s.recvUnacked >= this.streamWindow >>> 1) {
      this.out.queue(windowUpdateFrame(s.id, s.recvUnacked));
      s.recvWindow += s.recvUnacked;
      s.recvUnacked = 0;
    }
    if (endStream) this.maybeClosed(s);
    if (s.tunnel !== undefined) s.tunnel.onPeerData(chunk, endStream);
    else s.sink?.onRequestData(chunk, endStream);
  }

  private creditConnection(n: number): void {
    this.recvUnacked += n;
    if (this.recvUnacked >= this.connWindow >>> 1) {
      this.out.queue(windowUpdateFrame(0, this.recvUnacked));
      this.recvWindow += this.recvUnacked;
      this.recvUnacked = 0;
    }
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
    this.blockStream = id;
    this.blockFlags = flags;
    if ((flags & F_END_HEADERS) !== 0) {
      this.blockStream = 0;
      this.onHeaderBlock(id, flags, buf, start, end);
      return;
    }
    this.addFragment(0, buf.subarray(start, end));
  }

  private addFragment(flags: number, part: Buffer): void {
    this.blockBytes += part.length;
    // CONTINUATION flood: a header block may not grow past twice the list limit.
    if (this.blockBytes > this.maxHeaderListSize * 2) {
      h2ServerAbuseStats.headerOverflow++;
      return this.flood('header block too large (CONTINUATION flood)');
    }
    this.blockParts.push(Buffer.from(part));
    if ((flags & F_END_HEADERS) === 0) return;
    const id = this.blockStream;
    const block = this.blockParts.length === 1 ? this.blockParts[0]! : Buffer.concat(this.blockParts);
    this.blockStream = 0;
    this.blockParts = [];
    this.blockBytes = 0;
    this.onHeaderBlock(id, this.blockFlags, block, 0, block.length);
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
    let head = malformedRequest(fields) ?? decodeRequestHead(fields, endStream, this.secure);
    if (typeof head !== 'string' && head.method === 'CONNECT' && head.upgrade === undefined) {
      // Plain CONNECT carries only :method and :authority (RFC 9113 §8.5).
      for (let i = 0; i < fields.length; i += 2) if (fields[i] === ':path' || fields[i] === ':scheme') head = 'CONNECT with :path or :scheme';
    } else if (typeof head !== 'string' && head.upgrade !== undefined && this.options.allowConnect !== true) {
      head = 'extended CONNECT not enabled';
    }
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
    if (!endStream) return s.fail(E_PROTOCOL_ERROR);
    if (s.remaining > 0) return s.fail(E_PROTOCOL_ERROR);
    s.remoteEnded = true;
    const t = decodeTrailers(fields);
    if (s.paused && s.held !== undefined) {
      s.heldTrailers = t;
      return;
    }
    this.maybeClosed(s);
    if (s.tunnel !== undefined) s.tunnel.onPeerData(EMPTY, true);
    else s.sink?.onRequestTrailers(t);
  }

  /** A stream refused before it reached the connection manager (it still counts as closed). */
  private refuse(id: number, code: number): void {
    this.rememberReset(id);
    this.out.queue(rstStreamFrame(id, code));
    if (this.guard.onControlSent(this.out.full())) return this.flood('outbound control frame flood');
    this.afterStreamGone();
  }

  private onRstStream(id: number, buf: Buffer, start: number, end: number): void {
    if (end - start !== 4) return this.fail(E_FRAME_SIZE_ERROR, 'RST_STREAM length');
    if (id === 0) return this.fail(E_PROTOCOL_ERROR, 'RST_STREAM on stream 0');
    if (id > this.lastStreamId) return this.fail(E_PROTOCOL_ERROR, 'RST_STREAM on an idle stream');
    const s = this.streams.get(id);
    if (s === undefined) return;
    // Envoy's premature reset: reset by the peer before we answered, within a second of its start.
    const premature = !s.responseEnded && Date.now() - s.openedAt < this.guard.prematureMs;
    const sink = s.sink;
    s.sink = undefined;
    this.removeStream(s, premature);
    if (s.tunnel !== undefined) s.tunnel.onPeerReset();
    else sink?.onDownstreamReset(buf.readUInt32BE(start) === E_REFUSED_STREAM ? 'refused_stream' : 'remote_reset');
  }

  private onSettings(flags: number, id: number, buf: Buffer, start: number, end: number): void {
    if (id !== 0) return this.fail(E_PROTOCOL_ERROR, 'SETTINGS on a stream');
    if ((flags & F_ACK) !== 0) {
      if (end !== start) return this.fail(E_FRAME_SIZE_ERROR, 'SETTINGS ACK with payload');
      this.settingsAcked = true;
      return;
    }
    if ((end - start) % 6 !== 0) return this.fail(E_FRAME_SIZE_ERROR, 'SETTINGS length');
    if (this.guard.control()) return this.flood('SETTINGS flood');
    for (let p = start; p < end; p += 6) {
      const key = buf.readUInt16BE(p);
      const value = buf.readUInt32BE(p + 2);
      switch (key) {
        case S_INITIAL_WINDOW_SIZE: {
          if (value > MAX_WINDOW) return this.fail(E_FLOW_CONTROL_ERROR, 'INITIAL_WINDOW_SIZE too large');
          const delta = value - this.tx.peerInitialWindow;
          this.tx.peerInitialWindow = value;
          if (delta === 0) break;
          for (const s of this.streams.values()) {
            s.sendWindow += delta;
            if (s.sendWindow > MAX_WINDOW) return this.fail(E_FLOW_CONTROL_ERROR, 'stream window overflow');
          }
          break;
        }
        case S_MAX_FRAME_SIZE:
          if (value < DEFAULT_MAX_FRAME || value > 0xffffff) return this.fail(E_PROTOCOL_ERROR, 'bad MAX_FRAME_SIZE');
          this.tx.peerMaxFrame = value;
          break;
        case S_ENABLE_PUSH:
          if (value > 1) return this.fail(E_PROTOCOL_ERROR, 'bad ENABLE_PUSH');
          break;
        default:
          // HEADER_TABLE_SIZE: our encoder never uses the dynamic table. Unknown ids are ignored.
          break;
      }
    }
    this.out.queue(settingsFrame([], true));
    if (this.guard.onControlSent(this.out.full())) return this.flood('outbound control frame flood');
    this.tx.drainQueues();
  }

  private onWindowUpdate(id: number, buf: Buffer, start: number, end: number): void {
    if (end - start !== 4) return this.fail(E_FRAME_SIZE_ERROR, 'WINDOW_UPDATE length');
    if (this.guard.windowUpdate()) return this.flood('WINDOW_UPDATE flood');
    const inc = buf.readUInt32BE(start) & 0x7fffffff;
    if (id === 0) {
      if (inc === 0) return this.fail(E_PROTOCOL_ERROR, 'WINDOW_UPDATE of 0');
      this.tx.sendWindow += inc;
      if (this.tx.sendWindow > MAX_WINDOW) return this.fail(E_FLOW_CONTROL_ERROR, 'connection window overflow');
    } else {
      if (id > this.lastStreamId) return this.fail(E_PROTOCOL_ERROR, 'WINDOW_UPDATE on an idle stream');
      const s = this.streams.get(id);
      if (s === undefined) return;
      if (inc === 0) return s.fail(E_PROTOCOL_ERROR);
      s.sendWindow += inc;
      if (s.sendWindow > MAX_WINDOW) return s.fail(E_FLOW_CONTROL_ERROR);
    }
    this.tx.drainQueues();
  }

  /** Stream error on a stream id (open or not): RST_STREAM; an open stream's sink is told. */
  private streamError(id: number, code: number): void {
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

  /** A flood rule tripped: GOAWAY ENHANCE_YOUR_CALM and close. */
  private flood(why: string): void {
    log.warn({ connection: this.connection.id, why }, 'closing HTTP/2 connection');
    this.fail(E_ENHANCE_YOUR_CALM, why);
  }

  /** Connection error: GOAWAY with the code, then close. */
  private fail(code: number, why: string): void {
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
