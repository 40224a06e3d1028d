/**
 * Meshlet's own HTTP/2 client connection (RFC 9113) over a raw socket: the upstream side of the
 * h2 hot path without node:http2 (the default; MESHLET_H2_UPSTREAM_CODEC=nghttp2 selects
 * client-stream.ts).
 *
 * Owns: the connection preface and SETTINGS exchange, the stream table and stream ids, frame
 * dispatch, HPACK decoding, the receive side of flow control (windows credited as the consumer
 * takes data, withheld while it is paused), RST_STREAM, GOAWAY, PING replies, graceful close.
 * Byte splitting is frame-reader.ts, header block assembly header-block.ts, the peer's SETTINGS
 * peer-settings.ts, the send side (windows, queues) raw-client-send.ts, frame writing
 * frame-output.ts (shared with the downstream server).
 *
 * Leans towards doing little per request: one object per stream, DATA payloads handed over as
 * slices of the socket's read buffer (never copied), all frames produced while handling one
 * event leave in one writev at the end of the tick. Leans towards failing the connection (GOAWAY
 * + close) on any protocol violation by the peer; every limit is bounded (header block size,
 * frames queued unflushed), nothing here throws into the pool or the router.
 */
import type { Duplex } from 'node:stream';
import {
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
  goawayFrame,
  MAX_WINDOW,
  pingAckFrame,
  PREFACE,
  rstStreamFrame,
  S_ENABLE_PUSH,
  S_INITIAL_WINDOW_SIZE,
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
} from './frames';
import { logger } from '../../../common/logger';
import { FrameOutput } from './frame-output';
import { FrameReader, type FrameSink } from './frame-reader';
import { HeaderBlock } from './header-block';
import { HpackDecoder, HpackError } from './hpack';
import { applyPeerSettings, type PeerSettingsSeen } from './peer-settings';
import { RawClientSender, type RawClientSenderOwner } from './raw-client-send';
import { RawStream, type RawSessionOptions, type RawSessionOwner, type RawStreamHandler } from './raw-client-types';

const log = logger('h2-pool');

function onSocketData(this: Duplex & { [kSession]?: H2RawClientSession }, chunk: Buffer): void {
  this[kSession]?.onBytes(chunk);
}
const kSession = Symbol('meshlet.h2.raw');
/** Scratch for the settings seen in one SETTINGS frame (applied synchronously). */
const seen: PeerSettingsSeen = { maxConcurrentStreams: -1, connectProtocol: -1 };

/** One upstream HTTP/2 connection driven by meshlet's own framing. */
export class H2RawClientSession implements FrameSink, RawClientSenderOwner {
  private readonly streams = new Map<number, RawStream>();
  private nextId = 1;
  private readonly decoder = new HpackDecoder();
  private readonly out: FrameOutput;
  private readonly reader: FrameReader;
  /** Request HEADERS / DATA / trailers within the upstream's windows. */
  private readonly tx: RawClientSender;
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
  private readonly block = new HeaderBlock();
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
    this.out = new FrameOutput(socket, () => this.tx.onDrain());
    this.reader = new FrameReader(this);
    this.tx = new RawClientSender(this.out, this);
    (socket as Duplex & { [kSession]?: H2RawClientSession })[kSession] = this;
    socket.on('data', onSocketData);
    socket.on('error', () => {});
    socket.once('close', () => this.onSocketClose());
    this.out.queue(PREFACE);
    this.out.queue(
      settingsFrame([
        [S_ENABLE_PUSH, 0],
        [S_INITIAL_WINDOW_SIZE, options.streamWindow],
      ]),
    );
    if (options.connectionWindow > DEFAULT_WINDOW)
      this.out.queue(windowUpdateFrame(0, options.connectionWindow - DEFAULT_WINDOW));
    this.out.flush();
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
    const s = new RawStream(id, handler, this.tx.peerInitialWindow, this.options.streamWindow);
    this.streams.set(id, s);
    this.tx.headers(id, fields, endStream);
    s.localEnded = endStream;
    return s;
  }

  /** Request data; false when it could not all be sent now (the stream gets onWritable later). */
  sendData(s: RawStream, chunk: Buffer, end: boolean): boolean {
    return this.tx.sendData(s, chunk, end);
  }

  sendTrailers(s: RawStream, fields: readonly string[]): void {
    this.tx.sendTrailers(s, fields);
  }

  /** Local reset: RST_STREAM and forget the stream (no handler call). */
  resetStream(s: RawStream, code: number): void {
    if (!this.streams.has(s.id)) return;
    this.streams.delete(s.id);
    if (!this.destroyed) this.out.queue(rstStreamFrame(s.id, code));
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

  /** @internal The stream is still in the table (RawClientSenderOwner). */
  isOpen(s: RawStream): boolean {
    return this.streams.has(s.id);
  }

  // ───────────── receiving ─────────────

  /** @internal Bytes from the socket. */
  onBytes(chunk: Buffer): void {
    if (!this.destroyed) this.reader.push(chunk);
  }

  /** @internal FrameSink */
  readStopped(): boolean {
    return this.destroyed;
  }

  /** @internal FrameSink */
  onOversizeFrame(len: number): void {
    this.fail(E_FRAME_SIZE_ERROR, `frame of ${len} octets`);
  }

  /** @internal FrameSink: one frame (payload buf[start, end)). */
  onFrame(type: number, flags: number, id: number, buf: Buffer, start: number, end: number): void {
    if (this.block.stream !== 0 && type !== T_CONTINUATION)
      return this.fail(E_PROTOCOL_ERROR, 'frame inside a header block');
    switch (type) {
      case T_DATA:
        return this.onDataFrame(flags, id, buf, start, end);
      case T_HEADERS:
        return this.onHeadersFrame(flags, id, buf, start, end);
      case T_CONTINUATION:
        if (id === 0 || id !== this.block.stream) return this.fail(E_PROTOCOL_ERROR, 'unexpected CONTINUATION');
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
        if ((flags & F_ACK) === 0) this.out.queue(pingAckFrame(buf.subarray(start, end)));
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
      this.out.queue(windowUpdateFrame(s.id, s.recvUnacked));
      s.recvWindow += s.recvUnacked;
      s.recvUnacked = 0;
    }
    s.handler.onData(chunk, endStream);
  }

  private creditConnection(n: number): void {
    this.recvUnacked += n;
    if (this.recvUnacked >= this.options.connectionWindow >>> 1) {
      this.out.queue(windowUpdateFrame(0, this.recvUnacked));
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
    if ((flags & F_END_HEADERS) !== 0) return this.onHeaderBlock(id, flags, buf, start, end);
    this.block.begin(id, flags);
    this.addFragment(0, buf.subarray(start, end));
  }

  private addFragment(flags: number, part: Buffer): void {
    const b = this.block;
    const id = b.stream;
    // CONTINUATION flood defence: a header block may not grow past twice the list limit.
    const block = b.add(part, (flags & F_END_HEADERS) !== 0, this.options.maxHeaderListSize * 2);
    if (block === null) return this.fail(E_ENHANCE_YOUR_CALM, 'header block too large');
    if (block !== undefined) this.onHeaderBlock(id, b.flags, block, 0, block.length);
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
    const err = applyPeerSettings(buf, start, end, this.tx, this.streams.values(), seen);
    if (err !== undefined) return this.fail(err[0], err[1]);
    const maxStreams = seen.maxConcurrentStreams;
    if (seen.connectProtocol >= 0) this.peerConnectProtocol = seen.connectProtocol === 1;
    this.out.queue(settingsFrame([], true));
    if (!this.settingsSeen) {
      this.settingsSeen = true;
      this.runSettingsWaiters();
    }
    if (maxStreams >= 0) {
      this.remoteMaxConcurrentStreams = maxStreams;
      this.owner.onRemoteSettings(maxStreams);
    }
    this.tx.drainQueues();
  }

  private onWindowUpdate(id: number, buf: Buffer, start: number, end: number): void {
    if (end - start !== 4) return this.fail(E_FRAME_SIZE_ERROR, 'WINDOW_UPDATE length');
    const inc = buf.readUInt32BE(start) & 0x7fffffff;
    if (id === 0) {
      if (inc === 0) return this.fail(E_PROTOCOL_ERROR, 'WINDOW_UPDATE of 0');
      this.tx.sendWindow += inc;
      if (this.tx.sendWindow > MAX_WINDOW) return this.fail(E_FLOW_CONTROL_ERROR, 'connection window overflow');
    } else {
      const s = this.streams.get(id);
      if (s === undefined) return;
      if (inc === 0) return this.streamError(s, E_PROTOCOL_ERROR);
      s.sendWindow += inc;
      if (s.sendWindow > MAX_WINDOW) return this.streamError(s, E_FLOW_CONTROL_ERROR);
    }
    this.tx.drainQueues();
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
    this.out.queue(goawayFrame(0, code));
    this.out.flush();
    this.destroy();
  }

  /** @internal Closes a stream whose both sides ended (RawClientSenderOwner). */
  maybeClosed(s: RawStream): void {
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
      this.out.queue(goawayFrame(0, E_NO_ERROR));
    }
    this.out.flush();
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
