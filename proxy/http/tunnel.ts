/**
 * Byte tunnelling for accepted upgrades (WebSocket 101) and CONNECT (2xx): after both codecs hand
 * over their raw streams (`takeTunnel()`), bytes are copied both ways until both directions end.
 *
 * Owns: backpressure (a write returning false pauses the other side until 'drain'), half-close
 * (one side's end becomes `end()` on the other, the reverse direction keeps flowing), and teardown
 * (an error or close on either side destroys both, exactly once). Leans towards never leaking a
 * socket: every path ends in `finish()`.
 */
import type { Duplex } from 'node:stream';

export type TunnelDoneListener = (t: Tunnel) => void;

export class Tunnel {
  /** Bytes copied downstream → upstream and upstream → downstream. */
  bytesUp = 0;
  bytesDown = 0;
  private downEnded = false;
  private upEnded = false;
  private finished = false;

  constructor(
    readonly downstream: Duplex,
    readonly upstream: Duplex,
    private readonly onDone?: TunnelDoneListener,
  ) {
    const d = downstream;
    const u = upstream;
    // Half-close: one side's FIN must not end our writes towards it while the other side still
    // has bytes to deliver (sockets from net.Server / net.connect default to auto-ending).
    d.allowHalfOpen = true;
    u.allowHalfOpen = true;
    d.on('data', (c: Buffer) => {
      this.bytesUp += c.length;
      if (!u.write(c)) d.pause();
    });
    u.on('data', (c: Buffer) => {
      this.bytesDown += c.length;
      if (!d.write(c)) u.pause();
    });
    u.on('drain', () => d.resume());
    d.on('drain', () => u.resume());
    d.on('end', () => {
      this.downEnded = true;
      if (!u.writableEnded) u.end();
      this.maybeDone();
    });
    u.on('end', () => {
      this.upEnded = true;
      if (!d.writableEnded) d.end();
      this.maybeDone();
    });
    const fail = () => this.finish();
    d.on('error', fail);
    u.on('error', fail);
    d.on('close', fail);
    u.on('close', fail);
    // Bytes may already be buffered in either stream (e.g. read together with the 101).
    d.resume();
    u.resume();
  }

  private maybeDone(): void {
    if (this.downEnded && this.upEnded) this.finish();
  }

  /** Tear down both sides (idempotent). */
  finish(): void {
    if (this.finished) return;
    this.finished = true;
    // Let already-queued writes flush on a graceful end; destroy after both directions ended.
    if (this.downEnded && this.upEnded) {
      endThenDestroy(this.downstream);
      endThenDestroy(this.upstream);
    } else {
      this.downstream.destroy();
      this.upstream.destroy();
    }
    this.onDone?.(this);
  }

  get done(): boolean {
    return this.finished;
  }
}

function endThenDestroy(s: Duplex): void {
  if (s.destroyed) return;
  if (!s.writableEnded) s.end();
  if (s.writableFinished) s.destroy();
  else s.once('finish', () => s.destroy());
}
