/**
 * The decoder side of a stream's filter manager (Envoy's FilterManager::decodeHeaders/Data/
 * Trailers and ActiveStreamDecoderFilter): the request events run through the decoder filters
 * in `http_filters` order and end at the terminal filter; a filter that stops holds every later
 * event until it continues (continueDecoding replays them), StopIterationAndBuffer keeps a
 * filter's chunks, a buffering filter (setDecoderBufferLimit) holds the body up to its limit, and
 * reading the request is paused while any reason holds (PAUSE_*).
 *
 * It also owns the state both sides share (the stream's filter instances, which one is being
 * called, whether the stream is over or answered locally). The encoder side
 * (filter-encoding.ts) extends it and FilterManager (filter-manager.ts) completes it with filter
 * creation, local replies and the end of the stream; the classes are layers of one object per
 * stream, so the split costs no allocation.
 */
import type { ResponseFlag } from '../../common/errors';
import type { HeaderList, RequestHead } from './codec';
import { type DecoderBufferWatcher, FilterStatus, type HttpFilter, type TerminalHttpFilter } from './filter';
import { StreamFilterCallbacks } from './filter-callbacks';
import {
  bufferedBytes,
  concatBuffered,
  EVENT_DATA,
  EVENT_TRAILERS,
  FILTER_BUFFER_LIMIT_BYTES,
  HOLD_LIMIT_BYTES,
  type HeldEvent,
  STOPPED_AT_HEADERS,
  takeBuffered,
} from './filter-chain';

export const NO_FILTERS: readonly HttpFilter[] = [];
const PAUSE_TERMINAL = 1;
const PAUSE_FILTER_HOLD = 2;
const PAUSE_FILTER_WATERMARK = 4;

export abstract class DecoderFilterIteration extends StreamFilterCallbacks {
  // ─────────────── state shared with the encoder side ───────────────
  protected filters: readonly HttpFilter[] = NO_FILTERS;
  protected terminal: TerminalHttpFilter | undefined;
  protected destroyed = false;
  protected localReplied = false;
  /** Index of the filter being called (perRouteConfig of that filter); filters.length = terminal. */
  protected current = -1;

  // ─────────────── decoder state ───────────────
  private decodeStoppedAt = -1;
  private decodeStoppedKind = -1;
  private held: HeldEvent[] | undefined;
  private heldBytes = 0;
  /** Why reading the request is paused (bit set of PAUSE_*). */
  private pauseReasons = 0;
  /** Index of the filter that asked to buffer the request body (setDecoderBufferLimit), or -1. */
  private bufferingFilter = -1;
  private decoderBufferLimit = 0;
  private bufferWatcher: DecoderBufferWatcher | undefined;
  private heldHeadersEnd = false;
  /** Chunks kept by filters that returned StopIterationAndBuffer, by filter index (rare). */
  private decodeBuffered: (Buffer[] | undefined)[] | undefined;
  /** Filters above their watermark (onDecoderFilterAboveWriteBufferHighWatermark). */
  private decoderFiltersAbove = 0;

  /** End the stream with a local response (FilterManager). */
  abstract sendLocalReply(status: number, body: string, headers?: HeaderList, flag?: ResponseFlag, details?: string): void;

  /** A local reply was sent: later request events are dropped. */
  get replied(): boolean {
    return this.localReplied;
  }
  /** The terminal filter's read-disable (upstream not ready, or above its watermark). */
  setRequestPaused(paused: boolean): void {
    this.setPaused(PAUSE_TERMINAL, paused);
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

  protected runDecodeHeaders(from: number, head: RequestHead, endStream: boolean): void {
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

  /** Drop the decode events still held (the stream is over). */
  protected dropHeldDecodes(): void {
    this.held = undefined;
  }
}
