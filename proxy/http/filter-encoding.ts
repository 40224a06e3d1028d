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

  protected writeHeaders(head: ResponseHead, endStream: boolean): void {
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
}
