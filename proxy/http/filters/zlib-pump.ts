/**
 * One node:zlib stream between a filter's input and its injected output, with flow control both
 * ways and no whole-body buffering: input goes in as it arrives (the filter reports its watermark
 * when the zlib stream's buffer is full, so the reader pauses), output goes on as zlib produces it
 * (zlib is paused while the next stage is full, and resumed when it drains). zlib works on the
 * thread pool, so a large body never holds the event loop.
 */
import type { Transform } from 'node:stream';

export interface PumpSink {
  /** Pass output on; false = the next stage is full (resume() follows when it drains). */
  out(chunk: Buffer): boolean;
  /** Everything written before end() has been passed on. */
  done(): void;
  /** Corrupt input, an inflate ratio over the limit, or a zlib failure. */
  error(err: Error): void;
  /** The zlib stream holds too much input / drained again. */
  above(): void;
  below(): void;
}

export class ZlibPump {
  bytesIn = 0;
  bytesOut = 0;
  private aboveWatermark = false;
  private closed = false;

  constructor(
    private readonly z: Transform,
    private readonly sink: PumpSink,
    /** Decompressors: fail once the output exceeds this many times the input (a zip bomb). */
    private readonly maxRatio = 0,
  ) {
    z.on('data', (b: Buffer) => {
      if (this.closed) return;
      this.bytesOut += b.length;
      if (this.maxRatio > 0 && this.bytesOut > this.maxRatio * Math.max(this.bytesIn, 1)) {
        this.fail(new Error(`inflated output exceeds max_inflate_ratio ${this.maxRatio}`));
        return;
      }
      if (!this.sink.out(b)) z.pause();
    });
    z.on('end', () => {
      if (this.closed) return;
      this.closed = true;
      this.sink.done();
    });
    z.on('error', (err: Error) => this.fail(err));
    z.on('drain', () => {
      if (!this.aboveWatermark || this.closed) return;
      this.aboveWatermark = false;
      this.sink.below();
    });
  }

  write(chunk: Buffer): void {
    if (this.closed) return;
    this.bytesIn += chunk.length;
    if (!this.z.write(chunk) && !this.aboveWatermark) {
      this.aboveWatermark = true;
      this.sink.above();
    }
  }

  end(): void {
    if (!this.closed) this.z.end();
  }

  /** The next stage drained. */
  resume(): void {
    if (!this.closed) this.z.resume();
  }

  destroy(): void {
    if (this.closed) return;
    this.closed = true;
    this.z.destroy();
  }

  private fail(err: Error): void {
    if (this.closed) return;
    this.closed = true;
    this.z.destroy();
    this.sink.error(err);
  }
}
