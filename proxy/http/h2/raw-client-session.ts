/**
 * Meshlet's own HTTP/2 client connection (RFC 9113) over a raw socket: the upstream side of the
 * h2 hot path without node:http2. Selected per pool by H2PoolSettings.codec ('meshlet'); the
 * default stays node:http2 until every h2 suite passes on this path.
 *
 * Owns: the connection preface and SETTINGS exchange, frame parsing and writing, HPACK state of
 * both directions, stream ids, flow control both ways (send windows with per-stream queues;
 * receive windows credited as the consumer takes data, withheld while it is paused), RST_STREAM,
 * GOAWAY, PING replies, graceful close.
 *
 * Leans towards doing little per request: one object per stream, DATA payloads handed over as
 * slices of the socket's read buffer (never copied), all frames produced while handling one
 * event leave in one writev at the end of the tick. Leans towards failing the connection (GOAWAY
 * + close) on any protocol violation by the peer; every limit is bounded (header block size,
 * frames queued unflushed), nothing here throws into the pool or the router.
 */
import type { Duplex } from 'node:stream';
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
  F_ACK,
  F_END_HEADERS,
  F_END_STREAM,
  F_PADDED,
  F_PRIORITY,
  FRAME_HEADER,
  frameHeader,
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
  settingsFrame,
  T_CONTINUATION,
  T_DATA,
  T_GOAWAY,
  T_HEADERS,
  T_PING,
  T_PUSH_PROMISE,
  T_RST_STREAM,
  T_SETTINGS,
  T_WINDOW_UPDATE,
  windowUpdateFrame,
  writeFrameHeader,
} from './frames';
import { logger } from '../../../common/logger';
import { encodeField, HpackDecoder, HpackError } from './hpack';

const log = logger('h2-pool');

/** Events a stream receives from its connection. */
export interface RawStreamHandler {
  /** A complete header block (response headers, 1xx, or trailers). */
  onHeaders(fields: string[], endStream: boolean, oversize: boolean): void;
  onData(chunk: Buffer, endStream: boolean): void;
  /** The stream ended abnormally: RST_STREAM from the peer, GOAWAY, or the connection died. */
  onReset(code: number, kind: 'remote' | 'refused' | 'gone'): void;
  /** Queued request data left (flow-control window or socket drained). */
  onWritable(): void;
}

/** Events the pool receives from a connection. */
export interface RawSessionOwner {
  onRemoteSettings(maxConcurrentStreams: number): void;
  onGoaway(): void;
  onClose(): void;
}

/** One stream's state inside the connection. */
export class RawStream {
  sendWindow: number;
  recvWindow: number;
  /** Octets delivered to the consumer but not yet credited back to the peer. */
  recvUnacked = 0;
  localEnded = false;
  remoteEnded = false;
  /** Request data waiting for flow-control window; `queuedEnd`: END_STREAM after it. */
  queued: Buffer[] | undefined = undefined;
  queuedBytes = 0;
  queuedEnd = false;
  queuedTrailers: string[] | undefined = undefined;
  blocked = false;
  /** Paused by the consumer: received data is held here and not credited. */
  paused = false;
  held: Buffer[] | undefined = undefined;
  heldEnd = false;
  /** Trailers that arrived behind held data: delivered after it on resume. */
  heldTrailers: string[] | undefined = undefined;

  constructor(
    readonly id: number,
    readonly handler: RawStreamHandler,
    sendWindow: number,
    recvWindow: number,
  ) {
    this.sendWindow = sendWindow;
    this.recvWindow = recvWindow;
  }
}

export interface RawSessionOptions {
  /** Our SETTINGS_INITIAL_WINDOW_SIZE (per stream) and the connection receive window. */
  readonly streamWindow: number;
  readonly connectionWindow: number;
  /** Largest response header list accepted (RFC 7541 accounting). */
  readonly maxHeaderListSize: number;
}

const MAX_UNFLUSHED = 4096;
let encodeScratch = Buffer.allocUnsafe(16 * 1024);

function onSocketData(this: Duplex & { [kSession]?: H2RawClientSession }, chunk: Buffer): void {
  this[kSession]?.onBytes(chunk);
}
const kSession = Symbol('meshlet.h2.raw');

/** One upstream HTTP/2 connection driven by meshlet's own framing. */
export class H2RawClientSession {
  private readonly streams = new Map<number, RawStream>();
  private nextId = 1;
  private readonly decoder = new HpackDecoder();
  // send side (the peer's settings)
  private peerInitialWindow = DEFAULT_WINDOW;
  private sendWindow = DEFAULT_WINDOW;
  private peerMaxFrame = DEFAULT_MAX_FRAME;
  /** The peer's SETTINGS_MAX_CONCURRENT_STREAMS (unlimited until it says). */
  remoteMaxConcurrentStreams = Infinity;
  /** The peer allows extended CONNECT (RFC 8441). */
  peerConnectProtocol = false;
  /** The peer's first SETTINGS has arrived. */
  settingsSeen = false;
  /** Called once at the peer's first SETTINGS, or when the connection closes before it. */
  private settingsWaiters: (() => void)[] | undefined = undefined;
  // receive side
  private recvWindow: number;
  private recvUnacked = 0;
  private pending: Buffer | undefined = undefined;
  /** Header block being assembled from HEADERS + CONTINUATION. */
  private blockStream = 0;
  private blockFlags = 0;
  private blockParts: Buffer[] = [];
  private blockBytes = 0;
  // output
  private out: Buffer[] = [];
  private flushPending = false;
  private blockedStreams: RawStream[] = [];
  // lifecycle
  closed = false;
  destroyed = false;
  goawayReceived = false;
  private goawaySent = false;

  constructor(
    readonly socket: Duplex,
    private readonly options: RawSessionOptions,
    private readonly owner: RawSessionOwner,
  ) {
    this.recvWindow = options.connectionWindow;
    (socket as Duplex & { [kSession]?: H2RawClientSession })[kSession] = this;
    socket.on('data', onSocketData);
    socket.on('error', () => {});
    socket.on('drain', () => this.onSocketDrain());
    socket.once('close', () => this.onSocketClose());
    this.queue(PREFACE);
    this.queue(
      settingsFrame([
        [S_ENABLE_PUSH, 0],
        [S_INITIAL_WINDOW_SIZE, options.streamWindow],
      ]),
    );
    if (options.connectionWindow > DEFAULT_WINDOW)
      this.queue(windowUpdateFrame(0, options.connectionWindow - DEFAULT_WINDOW));
    this.flush();
  }

  get activeStreams(): number {
    return this.streams.size;
  }

  /** True when no new stream can be opened on this connection. */
  get unusable(): boolean {
    return this.closed || this.destroyed || this.goawayReceived || this.nextId > MAX_WINDOW;
  }

  // ───────────── streams (called by RawClientStream) ─────────────

  /** Runs `fn` once the peer's first SETTINGS arrived (or the connection closed before it). */
  whenSettings(fn: () => void): void {
    (this.settingsWaiters ??= []).push(fn);
  }

  private runSettingsWaiters(): void {
    const w = this.settingsWaiters;
    if (w === undefined) return;
    this.settingsWaiters = undefined;
    for (const fn of w) fn();
  }

  /** Opens a stream with HEADERS; `fields` is a flat list with pseudo-headers first. */
  openStream(handler: RawStreamHandler, fields: readonly string[], endStream: boolean): RawStream | string {
    if (this.unusable) return 'connection not usable';
    const id = this.nextId;
    this.nextId += 2;
    const s = new RawStream(id, handler, this.peerInitialWindow, this.options.streamWindow);
    this.streams.set(id, s);
    this.writeHeaders(id, fields, endStream);
    s.localEnded = endStream;
    return s;
  }

  /** Request data; false when it could not all be sent now (the stream gets onWritable later). */
  sendData(s: RawStream, chunk: Buffer, end: boolean): boolean {
    if (s.localEnded || this.destroyed) return true;
    if (end) s.localEnded = true;
    if (s.queued !== undefined) {
      if (chunk.length > 0) {
        s.queued.push(chunk);
        s.queuedBytes += chunk.length;
      }
      if (end) s.queuedEnd = true;
      return this.markBlocked(s);
    }
    if (!this.pushData(s, chunk, end)) return this.markBlocked(s);
    // A full socket also blocks the writer: the socket's 'drain' wakes it (onWritable).
    return this.socketFull() ? this.markBlocked(s) : true;
  }

  sendTrailers(s: RawStream, fields: readonly string[]): void {
    if (s.localEnded || this.destroyed) return;
    s.localEnded = true;
    if (s.queued !== undefined) {
      s.queuedTrailers = fields as string[];
      return;
    }
    this.writeHeaders(s.id, fields, true);
    this.maybeClosed(s);
  }

  /** Local reset: RST_STREAM and forget the stream (no handler call). */
  resetStream(s: RawStream, code: number): void {
    if (!this.streams.has(s.id)) return;
    this.streams.delete(s.id);
    if (!this.destroyed) this.queue(rstStreamFrame(s.id, code));
    this.afterStreamGone();
  }

  pause(s: RawStream): void {
    s.paused = true;
  }

  resume(s: RawStream): void {
    if (!s.paused) return;
    s.paused = false;
    const held = s.held;
    if (held === undefined) return;
    // Deliver held data in order; the consumer may pause again on any chunk.
    while (held.length > 0 && !s.paused) {
      const chunk = held.shift()!;
      const last = held.length === 0;
      if (last) s.held = undefined;
      this.deliver(s, chunk, last && s.heldEnd && s.heldTrailers === undefined);
    }
    if (s.held === undefined && !s.paused && s.heldTrailers !== undefined) {
      const t = s.heldTrailers;
      s.heldTrailers = undefined;
      s.handler.onHeaders(t, true, false);
    }
  }

  /** Graceful close: GOAWAY, finish active streams, then end the connection. */
  close(): void {
    if (this.closed || this.destroyed) return;
    this.closed = true;
    if (this.streams.size === 0) this.finish();
  }

  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.closed = true;
    this.socket.destroy();
  }

  // ───────────── sending ─────────────

  private writeHeaders(id: number, fields: readonly string[], endStream: boolean): void {
    let buf = encodeScratch;
    let pos = 0;
    for (let i = 0; i + 1 < fields.length; i += 2) {
      const next = encodeField(buf, pos, fields[i]!, fields[i + 1]!);
      if (next < 0) {
        const bigger = Buffer.allocUnsafe(Math.max(buf.length * 2, pos + fields[i]!.length + fields[i + 1]!.length + 64));
        buf.copy(bigger, 0, 0, pos);
        buf = encodeScratch = bigger;
        i -= 2;
        continue;
      }
      pos = next;
    }
    const max = this.peerMaxFrame;
    let first = true;
    let at = 0;
    do {
      const n = Math.min(max, pos - at);
      const last = at + n >= pos;
      const frame = Buffer.allocUnsafe(FRAME_HEADER + n);
      const flags = (last ? F_END_HEADERS : 0) | (first && endStream ? F_END_STREAM : 0);
      writeFrameHeader(frame, 0, n, first ? T_HEADERS : T_CONTINUATION, flags, id);
      buf.copy(frame, FRAME_HEADER, at, at + n);
      this.queue(frame);
      at += n;
      first = false;
    } while (at < pos);
  }

  /** Sends as much of `chunk` as the windows allow; queues the rest. True when all went out. */
  private pushData(s: RawStream, chunk: Buffer, end: boolean): boolean {
    let at = 0;
    const len = chunk.length;
    if (len === 0 && !end) return true;
    while (at < len || (end && at === len)) {
      const room = Math.min(s.sendWindow, this.sendWindow, this.peerMaxFrame);
      const n = Math.min(room, len - at);
      if (n <= 0 && at < len) break;
      const last = at + n === len;
      const flags = end && last ? F_END_STREAM : 0;
      this.queue(frameHeader(n, T_DATA, flags, s.id));
      if (n > 0) this.queue(at === 0 && n === len ? chunk : chunk.subarray(at, at + n));
      s.sendWindow -= n;
      this.sendWindow -= n;
      at += n;
      if (last) {
        if (end) this.maybeClosed(s);
        return true;
      }
    }
    s.queued = [chunk.subarray(at)];
    s.queuedBytes = len - at;
    s.queuedEnd = end;
    return false;
  }

  private markBlocked(s: RawStream): boolean {
    if (!s.blocked) {
      s.blocked = true;
      this.blockedStreams.push(s);
    }
    return false;
  }

  /** Windows opened: send queued data in stream order. */
  private drainQueues(): void {
    const list = this.blockedStreams;
    if (list.length === 0) return;
    this.blockedStreams = [];
    const wake: RawStream[] = [];
    for (const s of list) {
      s.blocked = false;
      if (!this.streams.has(s.id)) continue;
      if (s.queued !== undefined && !this.flushQueued(s)) {
        s.blocked = true;
        this.blockedStreams.push(s);
        continue;
      }
      wake.push(s);
    }
    for (const s of wake) if (this.streams.has(s.id)) s.handler.onWritable();
  }

  private flushQueued(s: RawStream): boolean {
    const q = s.queued!;
    s.queued = undefined;
    const end = s.queuedEnd;
    const trailers = s.queuedTrailers;
    s.queuedBytes = 0;
    s.queuedEnd = false;
    s.queuedTrailers = undefined;
    for (let i = 0; i < q.length; i++) {
      const last = i === q.length - 1;
      if (!this.pushData(s, q[i]!, end && last && trailers === undefined)) {
        const rest = s.queued as unknown as Buffer[];
        s.queued = [...rest, ...q.slice(i + 1)];
        for (let k = i + 1; k < q.length; k++) s.queuedBytes += q[k]!.length;
        s.queuedEnd = end;
        s.queuedTrailers = trailers;
        return false;
      }
    }
    if (q.length === 0 && end && trailers === undefined) this.pushData(s, Buffer.alloc(0), true);
    if (trailers !== undefined) {
      this.writeHeaders(s.id, trailers, true);
      this.maybeClosed(s);
    }
    return true;
  }

  private socketFull(): boolean {
    return (this.socket as Duplex & { writableNeedDrain?: boolean }).writableNeedDrain === true;
  }

  private onSocketDrain(): void {
    if (this.blockedStreams.length > 0) this.drainQueues();
  }

  private queue(b: Buffer): void {
    this.out.push(b);
    if (!this.flushPending) {
      this.flushPending = true;
      process.nextTick(flushSession, this);
    }
    if (this.out.length > MAX_UNFLUSHED) this.flush();
  }

  /** @internal Writes everything queued in one writev. */
  flush(): void {
    this.flushPending = false;
    const out = this.out;
    if (out.length === 0 || this.destroyed) {
      out.length = 0;
      return;
    }
    this.out = [];
    const sock = this.socket;
    if (out.length === 1) {
      sock.write(out[0]);
      return;
    }
    sock.cork();
    for (let i = 0; i < out.length; i++) sock.write(out[i]);
    sock.uncork();
  }

  // ───────────── receiving ─────────────

  /** @internal Bytes from the socket. */
  onBytes(chunk: Buffer): void {
    if (this.destroyed) return;
    let buf = chunk;
    if (this.pending !== undefined) {
      buf = Buffer.concat([this.pending, chunk]);
      this.pending = undefined;
    }
    let pos = 0;
    const total = buf.length;
    while (total - pos >= FRAME_HEADER) {
      const len = (buf[pos]! << 16) | (buf[pos + 1]! << 8) | buf[pos + 2]!;
      if (len > DEFAULT_MAX_FRAME) return this.fail(E_FRAME_SIZE_ERROR, `frame of ${len} octets`);
      if (total - pos < FRAME_HEADER + len) break;
      const type = buf[pos + 3]!;
      const flags = buf[pos + 4]!;
      const id = buf.readUInt32BE(pos + 5) & 0x7fffffff;
      const start = pos + FRAME_HEADER;
      pos = start + len;
      this.onFrame(type, flags, id, buf, start, pos);
      if (this.destroyed) return;
    }
    if (pos < total) this.pending = buf.subarray(pos);
  }

  private onFrame(type: number, flags: number, id: number, buf: Buffer, start: number, end: number): void {
    if (this.blockStream !== 0 && type !== T_CONTINUATION)
      return this.fail(E_PROTOCOL_ERROR, 'frame inside a header block');
    switch (type) {
      case T_DATA:
        return this.onDataFrame(flags, id, buf, start, end);
      case T_HEADERS:
        return this.onHeadersFrame(flags, id, buf, start, end);
      case T_CONTINUATION:
        if (id === 0 || id !== this.blockStream) return this.fail(E_PROTOCOL_ERROR, 'unexpected CONTINUATION');
        return this.addFragment(flags, buf.subarray(start, end));
      case T_RST_STREAM: {
        if (id === 0 || end - start !== 4) return this.fail(E_PROTOCOL_ERROR, 'bad RST_STREAM');
        const s = this.streams.get(id);
        if (s === undefined) return;
        const code = buf.readUInt32BE(start);
        this.streams.delete(id);
        this.afterStreamGone();
        s.handler.onReset(code, code === E_REFUSED_STREAM ? 'refused' : 'remote');
        return;
      }
      case T_SETTINGS:
        return this.onSettings(flags, id, buf, start, end);
      case T_PING:
        if (id !== 0 || end - start !== 8) return this.fail(E_PROTOCOL_ERROR, 'bad PING');
        if ((flags & F_ACK) === 0) this.queue(pingAckFrame(buf.subarray(start, end)));
        return;
      case T_GOAWAY:
        if (id !== 0 || end - start < 8) return this.fail(E_PROTOCOL_ERROR, 'bad GOAWAY');
        return this.onGoaway(buf.readUInt32BE(start) & 0x7fffffff);
      case T_WINDOW_UPDATE:
        return this.onWindowUpdate(id, buf, start, end);
      case T_PUSH_PROMISE:
        return this.fail(E_PROTOCOL_ERROR, 'PUSH_PROMISE with push disabled');
      default:
        // PRIORITY and unknown frame types are ignored (RFC 9113 §4.1, §5.3.2).
        return;
    }
  }

  private onDataFrame(flags: number, id: number, buf: Buffer, start: number, end: number): void {
    if (id === 0) return this.fail(E_PROTOCOL_ERROR, 'DATA on stream 0');
    const flowLen = end - start;
    if (flowLen > this.recvWindow) return this.fail(E_FLOW_CONTROL_ERROR, 'connection receive window exceeded');
    this.recvWindow -= flowLen;
    // The connection window is credited on receipt; the stream window only as data is consumed.
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
      if (id >= this.nextId) this.fail(E_PROTOCOL_ERROR, 'DATA on an idle stream');
      return;
    }
    if (s.remoteEnded) return this.streamError(s, E_PROTOCOL_ERROR);
    if (flowLen > s.recvWindow) return this.streamError(s, E_FLOW_CONTROL_ERROR);
    s.recvWindow -= flowLen;
    // Padding is consumed at once.
    s.recvUnacked += flowLen - (end - start);
    const endStream = (flags & F_END_STREAM) !== 0;
    if (endStream) s.remoteEnded = true;
    const chunk = buf.subarray(start, end);
    if (s.paused) {
      (s.held ??= []).push(chunk);
      if (endStream) s.heldEnd = true;
      return;
    }
    this.deliver(s, chunk, endStream);
  }

  private deliver(s: RawStream, chunk: Buffer, endStream: boolean): void {
    s.recvUnacked += chunk.length;
    if (endStream) {
      this.maybeClosed(s);
    } else if (!s.remoteEnded && s.recvUnacked >= this.options.streamWindow >>> 1) {
      this.queue(windowUpdateFrame(s.id, s.recvUnacked));
      s.recvWindow += s.recvUnacked;
      s.recvUnacked = 0;
    }
    s.handler.onData(chunk, endStream);
  }

  private creditConnection(n: number): void {
    this.recvUnacked += n;
    if (this.recvUnacked >= this.options.connectionWindow >>> 1) {
      this.queue(windowUpdateFrame(0, this.recvUnacked));
      this.recvWindow += this.recvUnacked;
      this.recvUnacked = 0;
    }
  }

  private onHeadersFrame(flags: number, id: number, buf: Buffer, start: number, end: number): void {
    if (id === 0 || (id & 1) === 0 || id >= this.nextId) return this.fail(E_PROTOCOL_ERROR, 'HEADERS on a stream we did not open');
    if ((flags & F_PADDED) !== 0) {
      if (start >= end) return this.fail(E_PROTOCOL_ERROR, 'bad padding');
      const pad = buf[start]!;
      start++;
      if (pad > end - start) return this.fail(E_PROTOCOL_ERROR, 'bad padding');
      end -= pad;
    }
    if ((flags & F_PRIORITY) !== 0) {
      if (end - start < 5) return this.fail(E_FRAME_SIZE_ERROR, 'short HEADERS priority');
      start += 5;
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
    // CONTINUATION flood defence: a header block may not grow past twice the list limit.
    if (this.blockBytes > this.options.maxHeaderListSize * 2)
      return this.fail(E_ENHANCE_YOUR_CALM, 'header block too large');
    this.blockParts.push(Buffer.from(part));
    if ((flags & F_END_HEADERS) === 0) return;
    const id = this.blockStream;
    const block = Buffer.concat(this.blockParts);
    this.blockStream = 0;
    this.blockParts = [];
    this.blockBytes = 0;
    this.onHeaderBlock(id, this.blockFlags, block, 0, block.length);
  }

  private onHeaderBlock(id: number, flags: number, buf: Buffer, start: number, end: number): void {
    let fields: string[];
    let oversize: boolean;
    try {
      const r = this.decoder.decode(buf, start, end, this.options.maxHeaderListSize);
      fields = r.fields;
      oversize = r.oversize;
    } catch (err) {
      if (err instanceof HpackError) return this.fail(E_COMPRESSION_ERROR, err.message);
      throw err;
    }
    const s = this.streams.get(id);
    // A stream we already reset: the block was decoded only to keep the HPACK table in step.
    if (s === undefined) return;
    if (s.remoteEnded) return this.streamError(s, E_PROTOCOL_ERROR);
    const endStream = (flags & F_END_STREAM) !== 0;
    if (endStream) {
      s.remoteEnded = true;
      this.maybeClosed(s);
      // Trailers behind data the consumer has not taken yet wait for it (resume delivers them).
      if (s.held !== undefined) {
        s.heldTrailers = fields;
        return;
      }
    }
    s.handler.onHeaders(fields, endStream, oversize);
  }

  private onSettings(flags: number, id: number, buf: Buffer, start: number, end: number): void {
    if (id !== 0) return this.fail(E_PROTOCOL_ERROR, 'SETTINGS on a stream');
    if ((flags & F_ACK) !== 0) {
      if (end !== start) this.fail(E_FRAME_SIZE_ERROR, 'SETTINGS ACK with payload');
      return;
    }
    if ((end - start) % 6 !== 0) return this.fail(E_FRAME_SIZE_ERROR, 'SETTINGS length');
    let maxStreams = -1;
    for (let p = start; p < end; p += 6) {
      const key = buf.readUInt16BE(p);
      const value = buf.readUInt32BE(p + 2);
      switch (key) {
        case S_MAX_CONCURRENT_STREAMS:
          maxStreams = value;
          break;
        case S_INITIAL_WINDOW_SIZE: {
          if (value > MAX_WINDOW) return this.fail(E_FLOW_CONTROL_ERROR, 'INITIAL_WINDOW_SIZE too large');
          const delta = value - this.peerInitialWindow;
          this.peerInitialWindow = value;
          for (const s of this.streams.values()) {
            s.sendWindow += delta;
            if (s.sendWindow > MAX_WINDOW) return this.fail(E_FLOW_CONTROL_ERROR, 'stream window overflow');
          }
          break;
        }
        case S_MAX_FRAME_SIZE:
          if (value < DEFAULT_MAX_FRAME || value > 0xffffff) return this.fail(E_PROTOCOL_ERROR, 'bad MAX_FRAME_SIZE');
          this.peerMaxFrame = value;
          break;
        case S_ENABLE_PUSH:
          if (value > 1) return this.fail(E_PROTOCOL_ERROR, 'bad ENABLE_PUSH');
          break;
        case S_ENABLE_CONNECT_PROTOCOL:
          this.peerConnectProtocol = value === 1;
          break;
        default:
          // HEADER_TABLE_SIZE: our encoder never uses the dynamic table. Unknown ids are ignored.
          break;
      }
    }
    this.queue(settingsFrame([], true));
    if (!this.settingsSeen) {
      this.settingsSeen = true;
      this.runSettingsWaiters();
    }
    if (maxStreams >= 0) {
      this.remoteMaxConcurrentStreams = maxStreams;
      this.owner.onRemoteSettings(maxStreams);
    }
    this.drainQueues();
  }

  private onWindowUpdate(id: number, buf: Buffer, start: number, end: number): void {
    if (end - start !== 4) return this.fail(E_FRAME_SIZE_ERROR, 'WINDOW_UPDATE length');
    const inc = buf.readUInt32BE(start) & 0x7fffffff;
    if (id === 0) {
      if (inc === 0) return this.fail(E_PROTOCOL_ERROR, 'WINDOW_UPDATE of 0');
      this.sendWindow += inc;
      if (this.sendWindow > MAX_WINDOW) return this.fail(E_FLOW_CONTROL_ERROR, 'connection window overflow');
    } else {
      const s = this.streams.get(id);
      if (s === undefined) return;
      if (inc === 0) return this.streamError(s, E_PROTOCOL_ERROR);
      s.sendWindow += inc;
      if (s.sendWindow > MAX_WINDOW) return this.streamError(s, E_FLOW_CONTROL_ERROR);
    }
    this.drainQueues();
  }

  private onGoaway(lastId: number): void {
    this.goawayReceived = true;
    // Streams the peer never processed are refused (safe to retry elsewhere).
    for (const [id, s] of [...this.streams]) {
      if (id > lastId) {
        this.streams.delete(id);
        s.handler.onReset(E_REFUSED_STREAM, 'refused');
      }
    }
    this.owner.onGoaway();
    if (this.streams.size === 0) this.finish();
  }

  /** Stream error: RST_STREAM and tell the handler (as a reset by the peer would). */
  private streamError(s: RawStream, code: number): void {
    this.resetStream(s, code);
    s.handler.onReset(code, 'remote');
  }

  /** Connection error: GOAWAY with the code, then close. */
  private fail(code: number, why: string): void {
    if (this.destroyed) return;
    if (log.isLevelEnabled('debug')) log.debug({ code, err: why }, 'upstream HTTP/2 connection error');
    this.queue(goawayFrame(0, code));
    this.flush();
    this.destroy();
  }

  private maybeClosed(s: RawStream): void {
    if (!s.localEnded || !s.remoteEnded || s.queued !== undefined) return;
    if (this.streams.delete(s.id)) this.afterStreamGone();
  }

  private afterStreamGone(): void {
    if (this.streams.size === 0 && (this.closed || this.goawayReceived)) this.finish();
  }

  private finish(): void {
    if (this.destroyed) return;
    if (!this.goawaySent) {
      this.goawaySent = true;
      this.queue(goawayFrame(0, E_NO_ERROR));
    }
    this.flush();
    this.destroyed = true;
    this.closed = true;
    this.socket.end();
  }

  private onSocketClose(): void {
    this.destroyed = true;
    this.closed = true;
    const streams = [...this.streams.values()];
    this.streams.clear();
    for (const s of streams) s.handler.onReset(0, 'gone');
    this.runSettingsWaiters();
    this.owner.onClose();
  }
}

function flushSession(s: H2RawClientSession): void {
  s.flush();
}
