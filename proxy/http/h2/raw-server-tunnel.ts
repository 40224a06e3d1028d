/**
 * The byte stream of an accepted CONNECT or extended CONNECT (RFC 8441) on meshlet's own
 * downstream HTTP/2 framing: what RawServerStream.takeTunnel() hands to http/tunnel.ts. Writes
 * become DATA on the stream, end() its END_STREAM; the client's DATA is pushed to the reader.
 *
 * Owns: backpressure both ways (a write that did not fit the windows or the socket completes when
 * the stream is writable again; a full read buffer pauses the stream, which withholds its receive
 * window) and half-close (each direction ends on its own).
 */
import { Duplex } from 'node:stream';
import { E_CANCEL } from './frames';

/** The stream under a tunnel (RawServerStream). */
export interface TunnelOwner {
  readonly gone: boolean;
  paused: boolean;
  /** DATA (END_STREAM with `end`); false when it waits for window (onWritable follows). */
  tunnelWrite(chunk: Buffer, end: boolean): boolean;
  /** The reader wants more: resume delivery and credit the window. */
  tunnelRead(): void;
  tunnelReset(code: number): void;
}

const EMPTY = Buffer.alloc(0);

export class RawServerTunnel extends Duplex {
  private writeCb: ((err?: Error | null) => void) | undefined = undefined;

  constructor(private readonly s: TunnelOwner) {
    super({ allowHalfOpen: true });
  }

  /** DATA from the client (`end`: its END_STREAM). */
  onPeerData(chunk: Buffer, end: boolean): void {
    if (this.destroyed) return;
    if (chunk.length > 0 && !this.push(chunk)) this.s.paused = true;
    if (end) this.push(null);
  }

  /** The stream was reset by the client or the connection died. */
  onPeerReset(): void {
    this.destroy(new Error('HTTP/2 tunnel stream reset'));
  }

  /** Queued DATA left: the pending write completes. */
  onWritable(): void {
    const cb = this.writeCb;
    this.writeCb = undefined;
    cb?.();
  }

  override _read(): void {
    this.s.tunnelRead();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (this.s.gone) return cb(new Error('tunnel stream closed'));
    if (this.s.tunnelWrite(chunk, false)) cb();
    else this.writeCb = cb;
  }

  override _final(cb: (err?: Error | null) => void): void {
    if (!this.s.gone) this.s.tunnelWrite(EMPTY, true);
    cb();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    if (!this.s.gone) this.s.tunnelReset(E_CANCEL);
    this.writeCb = undefined;
    cb(err);
  }
}
