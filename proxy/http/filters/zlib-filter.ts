/**
 * What the compressor and decompressor filters share: a ZlibPump per direction fed from the
 * filter chain (StopIterationNoBuffer), its output injected after the filter, trailers held until
 * the last transformed bytes went before them, and the pump's watermarks reported as the filter's.
 * Subclasses decide in their header callbacks whether a direction is transformed and start its
 * pump with `startPump`.
 */
import type { Transform } from 'node:stream';
import { FilterStatus, type HttpFilter, type HttpFilterCallbacks } from '../filter';
import { ZlibPump } from './zlib-pump';

const EMPTY = Buffer.alloc(0);
const REQUEST = 1;
const RESPONSE = 2;

/** Per-direction accounting a subclass keeps: bytes out as they go, bytes in once done. */
export interface PumpAccounting {
  out(bytes: number): void;
  done(bytesIn: number): void;
  /** Corrupt input or a zlib failure: answer locally (the subclass knows the status). */
  error(bytesIn: number): void;
}

export abstract class ZlibTransformFilter implements HttpFilter {
  protected requestPump: ZlibPump | undefined;
  protected responsePump: ZlibPump | undefined;
  /** Trailers wait in the filter manager until the last transformed bytes went before them. */
  private trailersHeld = 0;

  constructor(protected readonly cb: HttpFilterCallbacks) {}

  decodeData(chunk: Buffer, endStream: boolean): FilterStatus {
    return feed(this.requestPump, chunk, endStream);
  }

  decodeTrailers(): FilterStatus {
    if (this.requestPump === undefined) return FilterStatus.Continue;
    this.trailersHeld |= REQUEST;
    this.requestPump.end();
    return FilterStatus.StopIteration;
  }

  encodeData(chunk: Buffer, endStream: boolean): FilterStatus {
    return feed(this.responsePump, chunk, endStream);
  }

  encodeTrailers(): FilterStatus {
    if (this.responsePump === undefined) return FilterStatus.Continue;
    this.trailersHeld |= RESPONSE;
    this.responsePump.end();
    return FilterStatus.StopIteration;
  }

  onEncodeWritable(): void {
    this.responsePump?.resume();
  }
  onDecodeWritable(): void {
    this.requestPump?.resume();
  }

  onDestroy(): void {
    this.requestPump?.destroy();
    this.responsePump?.destroy();
  }

  /** A pump for one direction, wired to the filter manager. */
  protected startPump(response: boolean, z: Transform, acct: PumpAccounting, maxRatio = 0): ZlibPump {
    const cb = this.cb;
    const pump: ZlibPump = new ZlibPump(
      z,
      {
        out: (b) => {
          acct.out(b.length);
          return response ? cb.injectEncodedData(this, b, false) : cb.injectDecodedData(this, b, false);
        },
        done: () => {
          acct.done(pump.bytesIn);
          if ((this.trailersHeld & (response ? RESPONSE : REQUEST)) !== 0) {
            // Trailers end the body: they go on after the last transformed bytes.
            if (response) cb.continueEncoding();
            else cb.continueDecoding();
          } else if (response) cb.injectEncodedData(this, EMPTY, true);
          else cb.injectDecodedData(this, EMPTY, true);
        },
        error: () => acct.error(pump.bytesIn),
        above: () => (response ? cb.onEncoderFilterAboveWriteBufferHighWatermark() : cb.onDecoderFilterAboveWriteBufferHighWatermark()),
        below: () => (response ? cb.onEncoderFilterBelowWriteBufferLowWatermark() : cb.onDecoderFilterBelowWriteBufferLowWatermark()),
      },
      maxRatio,
    );
    if (response) this.responsePump = pump;
    else this.requestPump = pump;
    return pump;
  }
}

function feed(p: ZlibPump | undefined, chunk: Buffer, endStream: boolean): FilterStatus {
  if (p === undefined) return FilterStatus.Continue;
  if (chunk.length > 0) p.write(chunk);
  if (endStream) p.end();
  return FilterStatus.StopIterationNoBuffer;
}
