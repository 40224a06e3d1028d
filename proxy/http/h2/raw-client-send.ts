/**
 * The send side of one upstream HTTP/2 connection on meshlet's own framing
 * (raw-client-session.ts): request HEADERS, DATA and trailers within the upstream's flow-control
 * windows (connection and stream), per-stream queues for what does not fit, and waking the
 * writers (raw-client-stream.ts, raw-tunnel.ts) when windows open or the socket drains. Frames
 * leave through the shared frame writer (frame-output.ts).
 */
import { DEFAULT_MAX_FRAME, DEFAULT_WINDOW, F_END_STREAM, frameHeader, T_DATA } from './frames';
import type { FrameOutput } from './frame-output';
import type { RawStream } from './raw-client-types';

/** What the sender needs from its connection. */
export interface RawClientSenderOwner {
  readonly destroyed: boolean;
  /** The stream is still in the connection's table. */
  isOpen(s: RawStream): boolean;
  /** A stream sent its END_STREAM (it closes if the response side has ended too). */
  maybeClosed(s: RawStream): void;
}

export class RawClientSender {
  /** The upstream's SETTINGS_INITIAL_WINDOW_SIZE and SETTINGS_MAX_FRAME_SIZE; the connection send window. */
  peerInitialWindow = DEFAULT_WINDOW;
  peerMaxFrame = DEFAULT_MAX_FRAME;
  sendWindow = DEFAULT_WINDOW;
  private blockedStreams: RawStream[] = [];

  constructor(
    private readonly out: FrameOutput,
    private readonly owner: RawClientSenderOwner,
  ) {}

  /** A header block (flat list, pseudo-headers first) as HEADERS + CONTINUATION. */
  headers(id: number, fields: readonly string[], endStream: boolean): void {
    this.out.headers(id, fields, endStream, this.peerMaxFrame);
  }

  /** Request data; false when it could not all be sent now (the stream gets onWritable later). */
  sendData(s: RawStream, chunk: Buffer, end: boolean): boolean {
    if (s.localEnded || this.owner.destroyed) return true;
    if (end) s.localEnded = true;
    if (s.queued !== undefined) {
      if (chunk.length > 0) {
        s.queued.push(chunk);
        s.queuedBytes += chunk.length;
      }
      if (end) s.queuedEnd = true;
      return this.markBlocked(s);
    }
    if (!this.pushData(s, chunk, end)) return this.markBlocked(s);
    // A full socket also blocks the writer: the socket's 'drain' wakes it (onWritable).
    return this.out.full() ? this.markBlocked(s) : true;
  }

  sendTrailers(s: RawStream, fields: readonly string[]): void {
    if (s.localEnded || this.owner.destroyed) return;
    s.localEnded = true;
    if (s.queued !== undefined) {
      s.queuedTrailers = fields as string[];
      return;
    }
    this.headers(s.id, fields, true);
    this.owner.maybeClosed(s);
  }

  /** The socket drained. */
  onDrain(): void {
    if (this.blockedStreams.length > 0) this.drainQueues();
  }

  /** Windows opened: send queued data in stream order. */
  drainQueues(): void {
    const list = this.blockedStreams;
    if (list.length === 0) return;
    this.blockedStreams = [];
    const wake: RawStream[] = [];
    const owner = this.owner;
    for (const s of list) {
      s.blocked = false;
      if (!owner.isOpen(s)) continue;
      if (s.queued !== undefined && !this.flushQueued(s)) {
        s.blocked = true;
        this.blockedStreams.push(s);
        continue;
      }
      wake.push(s);
    }
    for (const s of wake) if (owner.isOpen(s)) s.handler.onWritable();
  }

  /** Sends as much of `chunk` as the windows allow; queues the rest. True when all went out. */
  private pushData(s: RawStream, chunk: Buffer, end: boolean): boolean {
    let at = 0;
    const len = chunk.length;
    if (len === 0 && !end) return true;
    while (at < len || (end && at === len)) {
      const room = Math.min(s.sendWindow, this.sendWindow, this.peerMaxFrame);
      const n = Math.min(room, len - at);
      if (n <= 0 && at < len) break;
      const last = at + n === len;
      const flags = end && last ? F_END_STREAM : 0;
      this.out.queue(frameHeader(n, T_DATA, flags, s.id));
      if (n > 0) this.out.queue(at === 0 && n === len ? chunk : chunk.subarray(at, at + n));
      s.sendWindow -= n;
      this.sendWindow -= n;
      at += n;
      if (last) {
        if (end) this.owner.maybeClosed(s);
        return true;
      }
    }
    s.queued = [chunk.subarray(at)];
    s.queuedBytes = len - at;
    s.queuedEnd = end;
    return false;
  }

  private markBlocked(s: RawStream): boolean {
    if (!s.blocked) {
      s.blocked = true;
      this.blockedStreams.push(s);
    }
    return false;
  }

  private flushQueued(s: RawStream): boolean {
    const q = s.queued!;
    s.queued = undefined;
    const end = s.queuedEnd;
    const trailers = s.queuedTrailers;
    s.queuedBytes = 0;
    s.queuedEnd = false;
    s.queuedTrailers = undefined;
    for (let i = 0; i < q.length; i++) {
      const last = i === q.length - 1;
      if (!this.pushData(s, q[i]!, end && last && trailers === undefined)) {
        const rest = s.queued as unknown as Buffer[];
        s.queued = [...rest, ...q.slice(i + 1)];
        for (let k = i + 1; k < q.length; k++) s.queuedBytes += q[k]!.length;
        s.queuedEnd = end;
        s.queuedTrailers = trailers;
        return false;
      }
    }
    if (q.length === 0 && end && trailers === undefined) this.pushData(s, Buffer.alloc(0), true);
    if (trailers !== undefined) {
      this.headers(s.id, trailers, true);
      this.owner.maybeClosed(s);
    }
    return true;
  }
}
