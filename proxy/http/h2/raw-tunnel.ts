/**
 * The byte stream of a CONNECT or extended CONNECT (RFC 8441) tunnel on meshlet's own HTTP/2
 * client framing: what RawClientStream.takeTunnel() hands to http/tunnel.ts. Writes become DATA
 * on the stream, end() its END_STREAM, DATA from the peer is pushed to the reader.
 *
 * Owns: backpressure both ways (a write that did not fit the windows or the socket completes on
 * the stream's onWritable; a full read buffer pauses the stream, which withholds its receive
 * window, and _read resumes it), half-close (each direction ends on its own), and freeing the
 * pool slot exactly once: when both directions have ended, or on a reset from either side.
 */
import { Duplex } from 'node:stream';
import { E_CANCEL } from './frames';
import type { H2RawClientSession } from './raw-client-session';
import type { RawStream } from './raw-client-types';

const EMPTY = Buffer.alloc(0);

export class RawTunnel extends Duplex {
  private writeCb: ((err?: Error | null) => void) | undefined = undefined;
  private readEnded = false;
  private writeEnded = false;
  private gone = false;

  constructor(
    private readonly session: H2RawClientSession,
    private readonly s: RawStream,
    /** The stream is over (both directions ended, or reset): frees the pool slot. */
    private readonly onGone: () => void,
  ) {
    super({ allowHalfOpen: true });
  }

  /** DATA from the peer (`end`: its END_STREAM). */
  onPeerData(chunk: Buffer, end: boolean): void {
    if (this.destroyed) return;
    if (chunk.length > 0 && !this.push(chunk)) this.session.pause(this.s);
    if (end) {
      this.readEnded = true;
      this.push(null);
      this.maybeGone();
    }
  }

  /** The stream was reset by the peer or the connection died. */
  onPeerReset(detail: string): void {
    this.markGone();
    this.destroy(new Error(detail));
  }

  /** Queued DATA left: the pending write completes. */
  onWritable(): void {
    const cb = this.writeCb;
    this.writeCb = undefined;
    cb?.();
  }

  override _read(): void {
    this.session.resume(this.s);
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (this.gone) return cb(new Error('tunnel stream closed'));
    if (this.session.sendData(this.s, chunk, false)) cb();
    else this.writeCb = cb;
  }

  override _final(cb: (err?: Error | null) => void): void {
    if (!this.gone) {
      this.session.sendData(this.s, EMPTY, true);
      this.writeEnded = true;
      this.maybeGone();
    }
    cb();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    if (!this.gone) {
      // Torn down before both directions ended: stop the stream at the peer too.
      this.session.resetStream(this.s, E_CANCEL);
      this.markGone();
    }
    // A write still waiting for the window is dropped with the stream (the stream is destroyed).
    this.writeCb = undefined;
    cb(err);
  }

  private maybeGone(): void {
    if (this.readEnded && this.writeEnded) this.markGone();
  }

  private markGone(): void {
    if (this.gone) return;
    this.gone = true;
    this.onGone();
  }
}
