/**
 * The encoder side of a stream's filter manager (Envoy's FilterManager::encodeHeaders/Data/
 * Trailers and ActiveStreamEncoderFilter): response events from the terminal filter or a local
 * reply run through the encoder filters in reverse `http_filters` order and end at the codec; a
 * filter that stops holds every later event until it continues (continueEncoding replays them),
 * StopIterationAndBuffer keeps a filter's chunks, and downstream flow control reaches the
 * terminal filter (onDownstreamWritable) once no filter holds too much.
 */
import type { HeaderList, ResponseHead } from './codec';
import { FilterStatus, type HttpFilter } from './filter';
import {
  bufferedBytes,
  concatBuffered,
  EVENT_DATA,
  EVENT_HEADERS,
  EVENT_TRAILERS,
  FILTER_BUFFER_LIMIT_BYTES,
  HOLD_LIMIT_BYTES,
  type HeldEncode,
  takeBuffered,
} from './filter-chain';
import { DecoderFilterIteration } from './filter-decoding';

export abstract class EncoderFilterIteration extends DecoderFilterIteration {
  /** The response entered the encoder chain (the terminal filter may no longer reply locally). */
  protected started = false;
  /** Response headers were handed to the codec. */
  protected headersWritten = false;
  /** A local reply replaced the response after it started: what filters inject later is dropped. */
  protected encodeBypassed = false;
  protected encodeStoppedAt = -1;
  protected encodeStoppedEvent: HeldEncode | undefined;
  protected heldEncode: HeldEncode[] | undefined;
  private heldEncodeBytes = 0;
  /** The filter that returned StopHeaders holds the response headers at this index, or -1. */
  protected headersHeldAt = -1;
  private heldHead: ResponseHead | undefined;
  /** Chunks kept by filters that returned StopIterationAndBuffer, by filter index (rare). */
  private encodeBuffered: (Buffer[] | undefined)[] | undefined;
  /** Filters above their watermark (onEncoderFilterAboveWriteBufferHighWatermark). */
  private encoderFiltersAbove = 0;

  get responseStarted(): boolean {
    return this.started;
  }
  get responseHeadersWritten(): boolean {
    return this.headersWritten;
  }

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
      if (this.headersHeldAt === i && !this.releaseHeaders(i)) {
        if (!this.destroyed)
          this.holdEncode({ kind: EVENT_DATA, head: undefined, chunk, trailers: undefined, endStream, from: i - 1 });
        return this.destroyed;
      }
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
      if (st === FilterStatus.StopHeaders && !endStream) {
        // The headers wait at this filter; the body and trailers still reach it.
        this.headersHeldAt = i;
        this.heldHead = head;
        return;
      }
    }
    this.writeHeaders(head, endStream);
  }

  /**
   * Filter `i`, which holds the headers (StopHeaders), passes something on: the headers go first,
   * to the filters after it. False when they did not get through (a later filter stopped them, or
   * the stream ended): what `i` passes on then waits behind them.
   */
  private releaseHeaders(i: number): boolean {
    const head = this.heldHead!;
    this.headersHeldAt = -1;
    this.heldHead = undefined;
    this.runEncodeHeaders(i - 1, head, false);
    return !this.destroyed && !this.encodeBypassed && this.encodeStoppedAt < 0;
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
      if (this.headersHeldAt === i && !this.releaseHeaders(i)) {
        if (!this.destroyed && !this.encodeBypassed)
          this.holdEncode({ kind: EVENT_DATA, head: undefined, chunk, trailers: undefined, endStream, from: i - 1 });
        return true;
      }
    }
    return this.cb.writeData(chunk, endStream);
  }

  private runEncodeTrailers(from: number, trailers: HeaderList): void {
    const fs = this.filters;
    for (let i = from; i >= 0; i--) {
      const f = fs[i]!;
      const holding = this.headersHeldAt === i;
      if (!holding && this.encodeBuffered !== undefined && this.encodeBuffered[i] !== undefined) {
        // Trailers end the body: what filter i held with StopIterationAndBuffer goes on first.
        this.runEncodeData(i - 1, concatBuffered(this.encodeBuffered, i), false);
        if (this.destroyed) return;
        if (this.encodeStoppedAt >= 0) {
          this.holdEncode({ kind: EVENT_TRAILERS, head: undefined, chunk: undefined, trailers, endStream: true, from: i });
          return;
        }
      }
      if (f.encodeTrailers !== undefined) {
        this.current = i;
        const st = f.encodeTrailers(trailers);
        if (this.destroyed) return;
        if (st === FilterStatus.StopIteration) {
          this.encodeStopped(i, { kind: EVENT_TRAILERS, head: undefined, chunk: undefined, trailers, endStream: true });
          return;
        }
      }
      // The filter holding the headers saw the trailers (Envoy's order): headers, its buffered
      // body, then the trailers go on.
      if (holding && this.headersHeldAt === i && !this.passHeldOn(i)) {
        if (!this.destroyed && !this.encodeBypassed)
          this.holdEncode({ kind: EVENT_TRAILERS, head: undefined, chunk: undefined, trailers, endStream: true, from: i - 1 });
        return;
      }
    }
    this.cb.writeTrailers(trailers);
  }

  /** Filter `i` lets its held headers go, then what it buffered (StopIterationAndBuffer); false if they stopped. */
  private passHeldOn(i: number): boolean {
    if (!this.releaseHeaders(i)) return false;
    const b = this.encodeBuffered;
    if (b === undefined || b[i] === undefined) return true;
    this.runEncodeData(i - 1, concatBuffered(b, i), false);
    return !this.destroyed && !this.encodeBypassed && this.encodeStoppedAt < 0;
  }

  /** A local reply replaces the response: nothing held for it goes on. */
  protected dropEncodeHolds(): void {
    this.encodeStoppedAt = -1;
    this.encodeStoppedEvent = undefined;
    this.heldEncode = undefined;
    this.headersHeldAt = -1;
    this.heldHead = undefined;
  }

  private encodeStopped(at: number, e: HeldEncode): void {
    this.encodeStoppedAt = at;
    this.encodeStoppedEvent = e;
  }

  protected writeHeaders(head: ResponseHead, endStream: boolean): void {
    this.headersWritten = true;
    this.cb.writeHeaders(head, endStream);
  }

  continueEncoding(): void {
    const at = this.encodeStoppedAt;
    const e = this.encodeStoppedEvent;
    if (this.destroyed) return;
    if (at < 0 || !e) {
      // The filter holding the headers (StopHeaders) lets them go, with what it buffered.
      const h = this.headersHeldAt;
      if (h < 0) return;
      try {
        this.passHeldOn(h);
      } catch (err) {
        this.cb.onFilterError(err);
      }
      return;
    }
    this.encodeStoppedAt = -1;
    this.encodeStoppedEvent = undefined;
    try {
      if (this.headersHeldAt === at && !this.passHeldOn(at)) {
        // The headers stopped further on: the event this filter stopped on waits behind them.
        if (!this.destroyed && !this.encodeBypassed)
          this.heldEncode = [{ ...e, from: at - 1 }, ...(this.heldEncode ?? [])];
        return;
      }
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
}
