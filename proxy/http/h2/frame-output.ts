/**
 * The write side of one HTTP/2 connection on meshlet's own framing: frames produced while one
 * event is handled are queued and leave in one writev at the end of the tick (or at once past a
 * bound). Header blocks are HPACK-encoded into a shared scratch buffer and split into HEADERS +
 * CONTINUATION at the peer's SETTINGS_MAX_FRAME_SIZE. DATA payloads are never copied.
 */
import type { Duplex } from 'node:stream';
import {
  F_END_HEADERS,
  F_END_STREAM,
  FRAME_HEADER,
  frameHeader,
  T_CONTINUATION,
  T_DATA,
  T_HEADERS,
  writeFrameHeader,
} from './frames';
import { encodeField } from './hpack';

const MAX_UNFLUSHED = 4096;
let scratch = Buffer.allocUnsafe(16 * 1024);

export class FrameOutput {
  private out: Buffer[] = [];
  private flushPending = false;

  constructor(
    private readonly socket: Duplex,
    onDrain: () => void,
  ) {
    socket.on('drain', onDrain);
  }

  /** The socket's buffer is above its high watermark. */
  full(): boolean {
    return (this.socket as Duplex & { writableNeedDrain?: boolean }).writableNeedDrain === true;
  }

  queue(b: Buffer): void {
    this.out.push(b);
    if (!this.flushPending) {
      this.flushPending = true;
      process.nextTick(flushOutput, this);
    }
    if (this.out.length > MAX_UNFLUSHED) this.flush();
  }

  data(id: number, chunk: Buffer, end: boolean): void {
    this.queue(frameHeader(chunk.length, T_DATA, end ? F_END_STREAM : 0, id));
    if (chunk.length > 0) this.queue(chunk);
  }

  /** A header block (flat [name, value, …], pseudo-headers first) as HEADERS + CONTINUATION. */
  headers(id: number, fields: readonly string[], endStream: boolean, maxFrame: number): void {
    let buf = scratch;
    let pos = 0;
    for (let i = 0; i + 1 < fields.length; i += 2) {
      const next = encodeField(buf, pos, fields[i]!, fields[i + 1]!);
      if (next < 0) {
        const bigger = Buffer.allocUnsafe(Math.max(buf.length * 2, pos + fields[i]!.length + fields[i + 1]!.length + 64));
        buf.copy(bigger, 0, 0, pos);
        buf = scratch = bigger;
        i -= 2;
        continue;
      }
      pos = next;
    }
    let first = true;
    let at = 0;
    do {
      const n = Math.min(maxFrame, pos - at);
      const last = at + n >= pos;
      const frame = Buffer.allocUnsafe(FRAME_HEADER + n);
      const flags = (last ? F_END_HEADERS : 0) | (first && endStream ? F_END_STREAM : 0);
      writeFrameHeader(frame, 0, n, first ? T_HEADERS : T_CONTINUATION, flags, id);
      buf.copy(frame, FRAME_HEADER, at, at + n);
      this.queue(frame);
      at += n;
      first = false;
    } while (at < pos);
  }

  /** Writes everything queued (one writev). */
  flush(): void {
    this.flushPending = false;
    const out = this.out;
    if (out.length === 0) return;
    this.out = [];
    const sock = this.socket;
    if (sock.destroyed || sock.writableEnded) return;
    if (out.length === 1) {
      sock.write(out[0]);
      return;
    }
    sock.cork();
    for (let i = 0; i < out.length; i++) sock.write(out[i]);
    sock.uncork();
  }
}

function flushOutput(o: FrameOutput): void {
  o.flush();
}
