/**
 * The filter manager of one stream (Envoy's FilterManager): decoder filters in `http_filters`
 * order ending in the terminal filter (the router), encoder filters in reverse, StopIteration
 * holds and their replay, StopIterationAndBuffer, the decoder buffer limit, the reasons reading
 * is paused, and local replies (built by local-reply.ts) sent through the encoder filters.
 *
 * It knows its stream only through FilterManagerCallbacks (filter-callbacks.ts, implemented by
 * the connection manager's ActiveStream): route cache, codec writes, timers and completion stay
 * there; chain resolution and the hold/buffer bookkeeping are in filter-chain.ts. The
 * filter manager is itself the callbacks object every filter of the stream gets (the filter
 * being called is tracked by index, so there is no wrapper object per filter).
 */
import type { ResponseFlag } from '../../common/errors';
import type { HeaderList, RequestHead, ResetReason, ResponseHead } from './codec';
import {
  type DecoderBufferWatcher,
  FilterStatus,
  type HttpFilter,
  type TerminalFilterCallbacks,
  type TerminalHttpFilter,
} from './filter';
import { type FilterManagerCallbacks, StreamFilterCallbacks } from './filter-callbacks';
import {
  bufferedBytes,
  concatBuffered,
  EVENT_DATA,
  EVENT_HEADERS,
  EVENT_TRAILERS,
  FILTER_BUFFER_LIMIT_BYTES,
  HOLD_LIMIT_BYTES,
  type HeldEncode,
  type HeldEvent,
  type ResolvedChain,
  STOPPED_AT_HEADERS,
  takeBuffered,
} from './filter-chain';
import { buildLocalReply } from './local-reply';

const NO_FILTERS: readonly HttpFilter[] = [];
const PAUSE_TERMINAL = 1;
const PAUSE_FILTER_HOLD = 2;
const PAUSE_FILTER_WATERMARK = 4;

export class FilterManager extends StreamFilterCallbacks implements TerminalFilterCallbacks {
  private filters: readonly HttpFilter[] = NO_FILTERS;
  private terminal: TerminalHttpFilter | undefined;
  /** The response entered the encoder chain (the terminal filter may no longer reply locally). */
  private started = false;
  /** Response headers were handed to the codec. */
  private headersWritten = false;
  private destroyed = false;
  private localReplied = false;
  private decodeStoppedAt = -1;
  private decodeStoppedKind = -1;
  private held: HeldEvent[] | undefined;
  private heldBytes = 0;
  private heldEncodeBytes = 0;
  /** Why reading the request is paused (bit set of PAUSE_*). */
  private pauseReasons = 0;
  /** Index of the filter that asked to buffer the request body (setDecoderBufferLimit), or -1. */
  private bufferingFilter = -1;
  private decoderBufferLimit = 0;
  private bufferWatcher: DecoderBufferWatcher | undefined;
  private heldHeadersEnd = false;
  private encodeStoppedAt = -1;
  private encodeStoppedEvent: HeldEncode | undefined;
  private heldEncode: HeldEncode[] | undefined;
  /** Index of the filter being called (perRouteConfig of that filter); filters.length = terminal. */
  private current = -1;
  /** Chunks kept by filters that returned StopIterationAndBuffer, by filter index (rare). */
  private decodeBuffered: (Buffer[] | undefined)[] | undefined;
  private encodeBuffered: (Buffer[] | undefined)[] | undefined;
  /** Filters above their watermark (onDecoder/EncoderFilterAboveWriteBufferHighWatermark). */
  private decoderFiltersAbove = 0;
  private encoderFiltersAbove = 0;
  /** A local reply replaced the response after it started: what filters inject later is dropped. */
  private encodeBypassed = false;

  constructor(
    cb: FilterManagerCallbacks,
    private readonly chain: ResolvedChain,
  ) {
    super(cb);
  }

  // ─────────────── callbacks that depend on the filter manager's state ───────────────

  get responseStarted(): boolean {
    return this.started;
  }
  perRouteConfig(): unknown {
    const r = this.cb.resolveRoute();
    const fs = this.chain.filters;
    const entry = this.current === fs.length ? this.chain.terminal : fs[this.current];
    if (!r || !entry) return undefined;
    return r.route.typedPerFilterConfig[entry.name] ?? r.vhost.typedPerFilterConfig[entry.name];
  }
  perRouteConfigAt(level: 0 | 1): unknown {
    const r = this.cb.resolveRoute();
    const fs = this.chain.filters;
    const entry = this.current === fs.length ? this.chain.terminal : fs[this.current];
    if (!r || !entry) return undefined;
    return (level === 0 ? r.route : r.vhost).typedPerFilterConfig[entry.name];
  }
  /** The terminal filter's read-disable (upstream not ready, or above its watermark). */
  setRequestPaused(paused: boolean): void {
    this.setPaused(PAUSE_TERMINAL, paused);
  }

  /** A local reply was sent: later request events are dropped. */
  get replied(): boolean {
    return this.localReplied;
  }
  get responseHeadersWritten(): boolean {
    return this.headersWritten;
  }

  // ─────────────── decoder chain ───────────────

  /** Create the stream's filters (factories in chain order, the terminal last) and decode the headers. */
  decodeHeaders(head: RequestHead, endStream: boolean): void {
    const entries = this.chain.filters;
    if (entries.length > 0) {
      const fs: HttpFilter[] = new Array(entries.length);
      for (let i = 0; i < entries.length; i++) {
        this.current = i;
        fs[i] = entries[i]!.factory.create(entries[i]!.config, this);
      }
      this.filters = fs;
    }
    const t = this.chain.terminal;
    this.current = entries.length;
    this.terminal = t.factory.create(t.config, this);
    this.runDecodeHeaders(0, head, endStream);
  }

  decodeData(chunk: Buffer, endStream: boolean): void {
    if (this.destroyed || this.localReplied) return;
    if (this.decodeStoppedAt >= 0) this.hold({ kind: EVENT_DATA, chunk, endStream, trailers: undefined });
    else this.runDecodeData(0, chunk, endStream);
  }

  decodeTrailers(trailers: HeaderList): void {
    if (this.destroyed || this.localReplied) return;
    if (this.decodeStoppedAt >= 0) this.hold({ kind: EVENT_TRAILERS, chunk: undefined, endStream: true, trailers });
    else this.runDecodeTrailers(0, trailers);
  }

  /** Queue a decode event while a filter has stopped; stop reading once too much is queued. */
  private hold(e: HeldEvent): void {
    if (this.held === undefined) this.held = [];
    this.held.push(e);
    if (e.chunk !== undefined) {
      this.heldBytes += e.chunk.length;
      if (this.bufferingFilter >= 0 && this.decodeStoppedAt === this.bufferingFilter) {
        // A buffering filter (setDecoderBufferLimit): hold everything up to its limit, then 413.
        if (this.heldBytes > this.decoderBufferLimit && this.bufferWatcher?.partial !== true) {
          this.held = undefined;
          this.sendLocalReply(413, 'Payload Too Large', undefined, undefined, 'request_payload_too_large');
          return;
        }
      } else if (this.heldBytes > HOLD_LIMIT_BYTES) this.setPaused(PAUSE_FILTER_HOLD, true);
    }
    // The buffered request is complete (or, partial, at its limit): the buffering filter's wait is over.
    if (
      this.bufferingFilter >= 0 &&
      this.decodeStoppedAt === this.bufferingFilter &&
      this.decodeStoppedKind === STOPPED_AT_HEADERS &&
      (e.endStream || (this.bufferWatcher?.partial === true && this.heldBytes >= this.decoderBufferLimit))
    ) {
      this.bufferingFilter = -1;
      const w = this.bufferWatcher;
      this.bufferWatcher = undefined;
      if (w === undefined) this.continueDecoding();
      else w.onDecoderBuffered(this.heldBody(), e.endStream);
    }
  }

  /** The request body bytes held so far, in order. */
  private heldBody(): Buffer {
    const chunks: Buffer[] = [];
    for (const h of this.held ?? []) if (h.chunk !== undefined) chunks.push(h.chunk);
    return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
  }

  setDecoderBufferLimit(bytes: number, watcher?: DecoderBufferWatcher): void {
    this.bufferingFilter = this.current;
    this.decoderBufferLimit = bytes;
    this.bufferWatcher = watcher;
  }

  private runDecodeHeaders(from: number, head: RequestHead, endStream: boolean): void {
    const fs = this.filters;
    for (let i = from; i < fs.length; i++) {
      const f = fs[i]!;
      if (f.decodeHeaders === undefined) continue;
      this.current = i;
      const st = f.decodeHeaders(head, endStream);
      if (this.localReplied || this.destroyed) return;
      if (st === FilterStatus.StopIteration) {
        this.decodeStoppedAt = i;
        this.decodeStoppedKind = STOPPED_AT_HEADERS;
        this.heldHeadersEnd = endStream;
        return;
      }
    }
    this.current = fs.length;
    this.terminal!.decodeHeaders(head, endStream);
  }

  private runDecodeData(from: number, chunk: Buffer, endStream: boolean): void {
    const fs = this.filters;
    for (let i = from; i < fs.length; i++) {
      const f = fs[i]!;
      if (f.decodeData === undefined) continue;
      this.current = i;
      const st = f.decodeData(chunk, endStream);
      if (this.localReplied || this.destroyed || st === FilterStatus.StopIterationNoBuffer) return;
      if (this.decodeBuffered !== undefined || st === FilterStatus.StopIterationAndBuffer) {
        if (this.decodeBuffered === undefined) this.decodeBuffered = new Array(fs.length);
        const kept = takeBuffered(this.decodeBuffered, i, chunk, st === FilterStatus.StopIterationAndBuffer);
        if (kept === undefined) {
          if (bufferedBytes(this.decodeBuffered, i) > FILTER_BUFFER_LIMIT_BYTES) {
            this.sendLocalReply(413, 'Payload Too Large', undefined, undefined, 'request_payload_too_large');
            return;
          }
          if (!endStream) return;
          chunk = concatBuffered(this.decodeBuffered, i);
          this.decodeStopped(i, EVENT_DATA, { kind: EVENT_DATA, chunk, endStream, trailers: undefined });
          return;
        }
        chunk = kept;
      }
      if (st === FilterStatus.StopIteration) {
        this.decodeStopped(i, EVENT_DATA, { kind: EVENT_DATA, chunk, endStream, trailers: undefined });
        return;
      }
    }
    this.current = fs.length;
    this.terminal!.decodeData(chunk, endStream);
  }

  private runDecodeTrailers(from: number, trailers: HeaderList): void {
    const fs = this.filters;
    for (let i = from; i < fs.length; i++) {
      const f = fs[i]!;
      if (this.decodeBuffered !== undefined && this.decodeBuffered[i] !== undefined) {
        // Trailers end the body: what filter i held with StopIterationAndBuffer goes on first.
        this.runDecodeData(i + 1, concatBuffered(this.decodeBuffered, i), false);
        if (this.localReplied || this.destroyed) return;
        if (this.decodeStoppedAt >= 0) {
          (this.held ??= []).push({ kind: EVENT_TRAILERS, chunk: undefined, endStream: true, trailers, from: i });
          return;
        }
      }
      if (f.decodeTrailers === undefined) continue;
      this.current = i;
      const st = f.decodeTrailers(trailers);
      if (this.localReplied || this.destroyed) return;
      if (st === FilterStatus.StopIteration) {
        this.decodeStopped(i, EVENT_TRAILERS, { kind: EVENT_TRAILERS, chunk: undefined, endStream: true, trailers });
        return;
      }
    }
    this.current = fs.length;
    this.terminal!.decodeTrailers(trailers);
  }

  /** Filter `at` stopped on event `e`: it is replayed first when the filter continues. */
  private decodeStopped(at: number, kind: number, e: HeldEvent): void {
    this.decodeStoppedAt = at;
    this.decodeStoppedKind = kind;
    this.held = this.held === undefined ? [e] : [e, ...this.held];
  }

  continueDecoding(): void {
    const at = this.decodeStoppedAt;
    if (at < 0 || this.destroyed || this.localReplied) return;
    this.decodeStoppedAt = -1;
    try {
      if (this.decodeStoppedKind === STOPPED_AT_HEADERS) {
        this.runDecodeHeaders(at + 1, this.cb.request!, this.heldHeadersEnd);
      } else {
        const e = this.held!.shift()!;
        if (e.kind === EVENT_DATA) this.runDecodeData(at + 1, e.chunk!, e.endStream);
        else this.runDecodeTrailers(at + 1, e.trailers!);
      }
      while (
        this.decodeStoppedAt < 0 &&
        this.held !== undefined &&
        this.held.length > 0 &&
        !this.localReplied &&
        !this.destroyed
      ) {
        const e = this.held.shift()!;
        if (e.kind === EVENT_DATA) this.runDecodeData(e.from ?? 0, e.chunk!, e.endStream);
        else this.runDecodeTrailers(e.from ?? 0, e.trailers!);
      }
      if (this.decodeStoppedAt < 0) {
        this.heldBytes = 0;
        this.setPaused(PAUSE_FILTER_HOLD, false);
      }
    } catch (err) {
      this.cb.onFilterError(err);
    }
  }

  injectDecodedData(filter: HttpFilter, chunk: Buffer, endStream: boolean): boolean {
    if (this.destroyed || this.localReplied) return true;
    const i = this.filters.indexOf(filter);
    if (this.decodeStoppedAt > i) {
      // A later filter has stopped: the injected bytes wait behind it, in order, counted like any
      // held body (read-disable past the bound; a buffering filter's limit and completion).
      this.hold({ kind: EVENT_DATA, chunk, endStream, trailers: undefined, from: i + 1 });
    } else {
      try {
        this.runDecodeData(i + 1, chunk, endStream);
      } catch (err) {
        this.cb.onFilterError(err);
      }
    }
    return (this.pauseReasons & PAUSE_TERMINAL) === 0;
  }

  onDecoderFilterAboveWriteBufferHighWatermark(): void {
    if (this.decoderFiltersAbove++ === 0) this.setPaused(PAUSE_FILTER_WATERMARK, true);
  }
  onDecoderFilterBelowWriteBufferLowWatermark(): void {
    if (this.decoderFiltersAbove > 0 && --this.decoderFiltersAbove === 0) this.setPaused(PAUSE_FILTER_WATERMARK, false);
  }

  /** Reading stops while any reason holds and resumes once none does. */
  private setPaused(reason: number, on: boolean): void {
    const before = this.pauseReasons;
    this.pauseReasons = on ? before | reason : before & ~reason;
    if (before === 0 && this.pauseReasons !== 0) this.cb.setReadDisabled(true);
    else if (before !== 0 && this.pauseReasons === 0 && !this.destroyed) this.cb.setReadDisabled(false);
    // The terminal filter takes request data again: filters that inject it may go on.
    if (reason === PAUSE_TERMINAL && !on && (before & PAUSE_TERMINAL) !== 0 && !this.destroyed) {
      const fs = this.filters;
      for (let i = 0; i < fs.length; i++) fs[i]!.onDecodeWritable?.();
    }
  }

  // ─────────────── encoder chain (from the terminal filter or a local reply) ───────────────

  encodeHeaders(head: ResponseHead, endStream: boolean): void {
    if (this.destroyed) return;
    this.started = true;
    this.cb.onResponseStarted();
    if (this.encodeStoppedAt >= 0)
      this.holdEncode({ kind: EVENT_HEADERS, head, chunk: undefined, trailers: undefined, endStream });
    else this.runEncodeHeaders(this.filters.length - 1, head, endStream);
  }

  encodeData(chunk: Buffer, endStream: boolean): boolean {
    if (this.destroyed) return true;
    this.cb.refreshIdleTimer();
    if (this.encodeStoppedAt >= 0) {
      this.holdEncode({ kind: EVENT_DATA, head: undefined, chunk, trailers: undefined, endStream });
      // Past the bound, ask the router to pause the upstream until continueEncoding drains.
      this.heldEncodeBytes += chunk.length;
      return this.heldEncodeBytes <= HOLD_LIMIT_BYTES;
    }
    return this.runEncodeData(this.filters.length - 1, chunk, endStream);
  }

  encodeTrailers(trailers: HeaderList): void {
    if (this.destroyed) return;
    if (this.encodeStoppedAt >= 0)
      this.holdEncode({ kind: EVENT_TRAILERS, head: undefined, chunk: undefined, trailers, endStream: true });
    else this.runEncodeTrailers(this.filters.length - 1, trailers);
  }

  injectEncodedData(filter: HttpFilter, chunk: Buffer, endStream: boolean): boolean {
    if (this.destroyed || this.encodeBypassed) return true;
    const i = this.filters.indexOf(filter);
    this.cb.refreshIdleTimer();
    if (this.encodeStoppedAt >= 0 && this.encodeStoppedAt < i) {
      this.holdEncode({ kind: EVENT_DATA, head: undefined, chunk, trailers: undefined, endStream, from: i - 1 });
      return false;
    }
    try {
      return this.runEncodeData(i - 1, chunk, endStream);
    } catch (err) {
      this.cb.onFilterError(err);
      return true;
    }
  }

  onEncoderFilterAboveWriteBufferHighWatermark(): void {
    this.encoderFiltersAbove++;
  }
  onEncoderFilterBelowWriteBufferLowWatermark(): void {
    if (this.encoderFiltersAbove > 0 && --this.encoderFiltersAbove === 0 && !this.destroyed)
      this.terminal?.onDownstreamWritable();
  }

  private holdEncode(e: HeldEncode): void {
    if (this.heldEncode === undefined) this.heldEncode = [];
    this.heldEncode.push(e);
  }

  private runEncodeHeaders(from: number, head: ResponseHead, endStream: boolean): void {
    const fs = this.filters;
    for (let i = from; i >= 0; i--) {
      const f = fs[i]!;
      if (f.encodeHeaders === undefined) continue;
      this.current = i;
      const st = f.encodeHeaders(head, endStream);
      if (this.destroyed) return;
      if (st === FilterStatus.StopIteration) {
        this.encodeStopped(i, { kind: EVENT_HEADERS, head, chunk: undefined, trailers: undefined, endStream });
        return;
      }
    }
    this.writeHeaders(head, endStream);
  }

  private runEncodeData(from: number, chunk: Buffer, endStream: boolean): boolean {
    const fs = this.filters;
    for (let i = from; i >= 0; i--) {
      const f = fs[i]!;
      if (f.encodeData === undefined) continue;
      this.current = i;
      const st = f.encodeData(chunk, endStream);
      if (this.destroyed) return true;
      if (st === FilterStatus.StopIterationNoBuffer) return this.encoderFiltersAbove === 0;
      if (this.encodeBuffered !== undefined || st === FilterStatus.StopIterationAndBuffer) {
        if (this.encodeBuffered === undefined) this.encodeBuffered = new Array(fs.length);
        const kept = takeBuffered(this.encodeBuffered, i, chunk, st === FilterStatus.StopIterationAndBuffer);
        if (kept === undefined) {
          if (bufferedBytes(this.encodeBuffered, i) > FILTER_BUFFER_LIMIT_BYTES) {
            this.sendLocalReply(500, 'Internal Server Error', undefined, undefined, 'response_payload_too_large');
            return true;
          }
          if (!endStream) return true;
          chunk = concatBuffered(this.encodeBuffered, i);
          this.encodeStopped(i, { kind: EVENT_DATA, head: undefined, chunk, trailers: undefined, endStream });
          return true;
        }
        chunk = kept;
      }
      if (st === FilterStatus.StopIteration) {
        this.encodeStopped(i, { kind: EVENT_DATA, head: undefined, chunk, trailers: undefined, endStream });
        return true;
      }
    }
    return this.cb.writeData(chunk, endStream);
  }

  private runEncodeTrailers(from: number, trailers: HeaderList): void {
    const fs = this.filters;
    for (let i = from; i >= 0; i--) {
      const f = fs[i]!;
      if (this.encodeBuffered !== undefined && this.encodeBuffered[i] !== undefined) {
        // Trailers end the body: what filter i held with StopIterationAndBuffer goes on first.
        this.runEncodeData(i - 1, concatBuffered(this.encodeBuffered, i), false);
        if (this.destroyed) return;
        if (this.encodeStoppedAt >= 0) {
          this.holdEncode({ kind: EVENT_TRAILERS, head: undefined, chunk: undefined, trailers, endStream: true, from: i });
          return;
        }
      }
      if (f.encodeTrailers === undefined) continue;
      this.current = i;
      const st = f.encodeTrailers(trailers);
      if (this.destroyed) return;
      if (st === FilterStatus.StopIteration) {
        this.encodeStopped(i, { kind: EVENT_TRAILERS, head: undefined, chunk: undefined, trailers, endStream: true });
        return;
      }
    }
    this.cb.writeTrailers(trailers);
  }

  private encodeStopped(at: number, e: HeldEncode): void {
    this.encodeStoppedAt = at;
    this.encodeStoppedEvent = e;
  }

  private writeHeaders(head: ResponseHead, endStream: boolean): void {
    this.headersWritten = true;
    this.cb.writeHeaders(head, endStream);
  }

  continueEncoding(): void {
    const at = this.encodeStoppedAt;
    const e = this.encodeStoppedEvent;
    if (at < 0 || !e || this.destroyed) return;
    this.encodeStoppedAt = -1;
    this.encodeStoppedEvent = undefined;
    try {
      this.runEncodeEvent(at - 1, e);
      const q = this.heldEncode;
      while (this.encodeStoppedAt < 0 && q !== undefined && q.length > 0 && !this.destroyed) {
        const e = q.shift()!;
        this.runEncodeEvent(e.from ?? this.filters.length - 1, e);
      }
      if (this.encodeStoppedAt < 0) {
        this.heldEncodeBytes = 0;
        this.terminal?.onDownstreamWritable();
      }
    } catch (err) {
      this.cb.onFilterError(err);
    }
  }

  private runEncodeEvent(from: number, e: HeldEncode): void {
    if (e.kind === EVENT_HEADERS) this.runEncodeHeaders(from, e.head!, e.endStream);
    else if (e.kind === EVENT_DATA) this.runEncodeData(from, e.chunk!, e.endStream);
    else this.runEncodeTrailers(from, e.trailers!);
  }

  /** The codec drained below its watermark: filters that inject response data first, then the terminal. */
  onDownstreamWritable(): void {
    const fs = this.filters;
    for (let i = 0; i < fs.length; i++) fs[i]!.onEncodeWritable?.();
    if (this.encoderFiltersAbove === 0) this.terminal?.onDownstreamWritable();
  }

  // ─────────────── local replies ───────────────

  sendLocalReply(status: number, body: string, headers?: HeaderList, flag?: ResponseFlag, details?: string): void {
    if (this.destroyed) return;
    const info = this.cb.info;
    if (flag !== undefined) info.setResponseFlag(flag);
    info.responseCodeDetails = details ?? 'local_reply';
    if (this.headersWritten) {
      // Headers are already on the wire: the only honest signal left is a reset.
      this.cb.resetStream('local_reset');
      return;
    }
    const r = buildLocalReply(status, body, headers, info.grpc, this.cb.request?.method === 'HEAD');
    if (r.grpcStatus >= 0) info.grpcStatus = r.grpcStatus;
    this.respond(r.head, r.body);
  }

  /**
   * A complete response built by a filter (a cache hit, a direct response). Before the response
   * started it goes through the encoder filters like any response; once started (raised from an
   * encoder filter) it replaces what they hold, as a local reply does.
   */
  sendResponse(head: ResponseHead, body: Buffer | undefined, details?: string): void {
    if (this.destroyed) return;
    this.cb.info.responseCodeDetails = details ?? 'filter_response';
    if (this.headersWritten) {
      this.cb.resetStream('local_reset');
      return;
    }
    this.respond(head, this.cb.request?.method === 'HEAD' ? undefined : body);
  }

  /**
   * A local reply, or a stream-level failure (timeouts): before headers were written a local
   * reply, after it a reset with `reason`.
   */
  failStream(status: number, body: string, flag: ResponseFlag | undefined, details: string, reason: ResetReason): void {
    if (this.destroyed) return;
    this.terminal?.onDestroy();
    if (this.headersWritten) this.cb.resetStream(reason);
    else this.sendLocalReply(status, body, undefined, flag, details);
  }

  private respond(head: ResponseHead, body: Buffer | undefined): void {
    this.localReplied = true;
    this.terminal?.onDestroy();
    if (this.started) {
      // Raised from (or after) the encoder filters: replace whatever they hold and skip them,
      // as Envoy does for local replies sent while encoding.
      this.encodeStoppedAt = -1;
      this.encodeStoppedEvent = undefined;
      this.heldEncode = undefined;
      this.encodeBypassed = true;
      this.writeHeaders(head, body === undefined);
      if (body !== undefined && !this.destroyed) this.cb.writeData(body, true);
      return;
    }
    this.encodeHeaders(head, body === undefined);
    if (body !== undefined) this.encodeData(body, true);
  }

  // ─────────────── end of stream ───────────────

  /** The stream is over: tell every filter (the terminal first, it abandons upstream work). */
  destroy(onError: (err: unknown) => void): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.terminal?.onDestroy();
    const fs = this.filters;
    for (let i = 0; i < fs.length; i++) {
      const f = fs[i]!;
      if (f.onDestroy === undefined) continue;
      try {
        f.onDestroy();
      } catch (err) {
        onError(err);
      }
    }
    this.held = undefined;
    this.heldEncode = undefined;
  }
}
