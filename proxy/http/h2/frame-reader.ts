/**
 * The read side of one HTTP/2 connection on meshlet's own framing (both the downstream server and
 * the upstream client): splits the socket's byte stream into frames and hands each one to the
 * session as (type, flags, stream id, buffer, payload start, payload end).
 *
 * Frames wholly inside one socket read are handed over as ranges of that read's buffer (never
 * copied: DATA payloads reach the consumer as slices of it). Only a frame split across reads is
 * assembled: its 9-octet header in a reused scratch, its payload in one buffer of exactly its
 * length, each octet copied once, so the rest of the read it ends in is never copied (no
 * Buffer.concat of the pending tail with the whole next read).
 */
import { DEFAULT_MAX_FRAME, FRAME_HEADER } from './frames';

/** What a session gives its reader. */
export interface FrameSink {
  onFrame(type: number, flags: number, id: number, buf: Buffer, start: number, end: number): void;
  /** A frame longer than SETTINGS_MAX_FRAME_SIZE (ours is the default): a connection error. */
  onOversizeFrame(length: number): void;
  /** True once the connection failed or closed: reading stops. */
  readStopped(): boolean;
}

const EMPTY = Buffer.alloc(0);

export class FrameReader {
  /** Octets of a split frame header (`headHave` of 9). */
  private readonly head = Buffer.allocUnsafe(FRAME_HEADER);
  private headHave = 0;
  /** Payload of a split frame whose header is complete (`bodyHave` of its length). */
  private body: Buffer | undefined = undefined;
  private bodyHave = 0;

  constructor(private readonly sink: FrameSink) {}

  /** Bytes from the socket (`pos`: where frames start in `buf`). */
  push(buf: Buffer, pos = 0): void {
    const sink = this.sink;
    const total = buf.length;
    if (this.headHave > 0 || this.body !== undefined) {
      pos = this.finishSplit(buf, pos);
      if (pos < 0) return;
    }
    while (total - pos >= FRAME_HEADER) {
      const len = (buf[pos]! << 16) | (buf[pos + 1]! << 8) | buf[pos + 2]!;
      if (len > DEFAULT_MAX_FRAME) return sink.onOversizeFrame(len);
      if (total - pos < FRAME_HEADER + len) break;
      const start = pos + FRAME_HEADER;
      pos = start + len;
      sink.onFrame(buf[start - 6]!, buf[start - 5]!, buf.readUInt32BE(start - 4) & 0x7fffffff, buf, start, pos);
      if (sink.readStopped()) return;
    }
    if (pos < total) this.keep(buf, pos);
  }

  /** Starts a split frame with the tail of a read. */
  private keep(buf: Buffer, pos: number): void {
    const n = Math.min(FRAME_HEADER, buf.length - pos);
    buf.copy(this.head, 0, pos, pos + n);
    this.headHave = n;
    if (n === FRAME_HEADER) this.startBody(buf, pos + FRAME_HEADER);
  }

  /** The header is complete: allocates the payload and copies what this read holds of it. */
  private startBody(buf: Buffer, pos: number): void {
    const h = this.head;
    const len = (h[0]! << 16) | (h[1]! << 8) | h[2]!;
    // Never oversized: push() refuses a complete header with a length past the limit.
    this.body = len === 0 ? EMPTY : Buffer.allocUnsafe(len);
    const n = Math.min(len, buf.length - pos);
    if (n > 0) buf.copy(this.body, 0, pos, pos + n);
    this.bodyHave = n;
  }

  /** Completes the split frame from the start of a read; the position after it, or -1 to stop. */
  private finishSplit(buf: Buffer, pos: number): number {
    const h = this.head;
    if (this.headHave < FRAME_HEADER) {
      const n = Math.min(FRAME_HEADER - this.headHave, buf.length - pos);
      buf.copy(h, this.headHave, pos, pos + n);
      this.headHave += n;
      pos += n;
      if (this.headHave < FRAME_HEADER) return -1;
      const len = (h[0]! << 16) | (h[1]! << 8) | h[2]!;
      if (len > DEFAULT_MAX_FRAME) {
        this.sink.onOversizeFrame(len);
        return -1;
      }
      this.body = len === 0 ? EMPTY : Buffer.allocUnsafe(len);
      this.bodyHave = 0;
    }
    const len = (h[0]! << 16) | (h[1]! << 8) | h[2]!;
    const body = this.body!;
    const n = Math.min(len - this.bodyHave, buf.length - pos);
    if (n > 0) buf.copy(body, this.bodyHave, pos, pos + n);
    this.bodyHave += n;
    pos += n;
    if (this.bodyHave < len) return -1;
    this.headHave = 0;
    this.body = undefined;
    this.bodyHave = 0;
    this.sink.onFrame(h[3]!, h[4]!, h.readUInt32BE(5) & 0x7fffffff, body, 0, len);
    return this.sink.readStopped() ? -1 : pos;
  }
}
