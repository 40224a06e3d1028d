/**
 * The send side of one downstream HTTP/2 connection on meshlet's own framing
 * (raw-server-session.ts): response HEADERS, DATA and trailers within the client's flow-control
 * windows (connection and stream), per-stream queues for what does not fit, and waking the
 * writers (connection manager or CONNECT tunnel) when windows open or the socket drains.
 */
import { DEFAULT_MAX_FRAME, DEFAULT_WINDOW } from './frames';
import type { FrameOutput } from './frame-output';
import { EMPTY } from './headers';
import type { RawServerGuard } from './raw-server-guard';
import type { RawServerStream } from './raw-server-stream';

export class RawServerSender {
  /** The client's SETTINGS_INITIAL_WINDOW_SIZE and SETTINGS_MAX_FRAME_SIZE; the connection send window. */
  peerInitialWindow = DEFAULT_WINDOW;
  peerMaxFrame = DEFAULT_MAX_FRAME;
  sendWindow = DEFAULT_WINDOW;
  private blocked: RawServerStream[] = [];

  constructor(
    private readonly out: FrameOutput,
    private readonly guard: RawServerGuard,
    /** A stream sent its END_STREAM (it closes if the request side has ended too). */
    private readonly onLocalEnd: (s: RawServerStream) => void,
  ) {}

  sendHeaders(s: RawServerStream, fields: readonly string[], endStream: boolean): void {
    if (s.gone) return;
    if (endStream) {
      s.localEnded = true;
      if (s.queued !== undefined) {
        // Never happens for a first HEADERS; kept for safety.
        s.queuedEnd = true;
        return;
      }
    }
    this.out.headers(s.id, fields, endStream, this.peerMaxFrame);
    if (endStream) this.onLocalEnd(s);
  }

  /** Response data; false when the connection manager should wait for onDownstreamWritable. */
  sendData(s: RawServerStream, chunk: Buffer, end: boolean): boolean {
    if (s.gone || s.localEnded) return true;
    if (end) s.localEnded = true;
    if (s.queued !== undefined) {
      if (chunk.length > 0) {
        s.queued.push(chunk);
        s.queuedBytes += chunk.length;
      }
      if (end) s.queuedEnd = true;
      return this.notWritable(s);
    }
    if (!this.pushData(s, chunk, end)) return this.notWritable(s);
    if (this.out.full()) return this.notWritable(s);
    return true;
  }

  sendTrailers(s: RawServerStream, fields: string[]): void {
    if (s.gone || s.localEnded) return;
    s.localEnded = true;
    if (s.queued !== undefined) {
      s.queuedTrailers = fields;
      return;
    }
    this.out.headers(s.id, fields, true, this.peerMaxFrame);
    this.onLocalEnd(s);
  }

  notWritable(s: RawServerStream): boolean {
    s.wantWritable = true;
    if (!s.blocked) {
      s.blocked = true;
      this.blocked.push(s);
    }
    return false;
  }

  /** Sends as much of `chunk` as the windows allow; queues the rest. True when all went out. */
  pushData(s: RawServerStream, chunk: Buffer, end: boolean): boolean {
    let at = 0;
    const len = chunk.length;
    if (len === 0 && !end) return true;
    while (at < len || (end && at === len)) {
      const n = Math.min(s.sendWindow, this.sendWindow, this.peerMaxFrame, len - at);
      if (n <= 0 && at < len) break;
      const last = at + n === len;
      this.out.data(s.id, at === 0 && n === len ? chunk : chunk.subarray(at, at + n), end && last);
      this.guard.dataFramesSent++;
      s.sendWindow -= n;
      this.sendWindow -= n;
      at += n;
      if (last) {
        if (end) this.onLocalEnd(s);
        return true;
      }
    }
    s.queued = [chunk.subarray(at)];
    s.queuedBytes = len - at;
    s.queuedEnd = end;
    return false;
  }

  /** Windows opened or the socket drained: send queued data, wake writers. */
  drainQueues(): void {
    const list = this.blocked;
    if (list.length === 0) return;
    this.blocked = [];
    const wake: RawServerStream[] = [];
    for (const s of list) {
      s.blocked = false;
      if (s.gone) continue;
      if (s.queued !== undefined && !this.flushQueued(s)) {
        s.blocked = true;
        this.blocked.push(s);
        continue;
      }
      if (this.out.full()) {
        s.blocked = true;
        this.blocked.push(s);
        continue;
      }
      wake.push(s);
    }
    for (const s of wake) {
      if (!s.wantWritable) continue;
      s.wantWritable = false;
      if (s.tunnel !== undefined) s.tunnel.onWritable();
      else if (!s.gone) s.sink?.onDownstreamWritable();
    }
  }

  flushQueued(s: RawServerStream): boolean {
    const q = s.queued!;
    const end = s.queuedEnd;
    const trailers = s.queuedTrailers;
    s.queued = undefined;
    s.queuedBytes = 0;
    s.queuedEnd = false;
    s.queuedTrailers = undefined;
    for (let i = 0; i < q.length; i++) {
      const last = i === q.length - 1;
      if (!this.pushData(s, q[i]!, end && last && trailers === undefined)) {
        const rest = s.queued as unknown as Buffer[];
        for (let k = i + 1; k < q.length; k++) {
          rest.push(q[k]!);
          s.queuedBytes += q[k]!.length;
        }
        s.queuedEnd = end;
        s.queuedTrailers = trailers;
        return false;
      }
    }
    if (q.length === 0 && end && trailers === undefined) this.pushData(s, EMPTY, true);
    if (trailers !== undefined) {
      this.out.headers(s.id, trailers, true, this.peerMaxFrame);
      this.onLocalEnd(s);
    }
    return true;
  }
}
