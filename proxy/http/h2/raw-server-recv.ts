/**
 * The receive side of flow control for one downstream HTTP/2 connection on meshlet's own framing
 * (raw-server-session.ts): the connection receive window (credited on receipt), each stream's
 * window (credited only as the connection manager or tunnel takes the data), request DATA held
 * while a stream is paused and delivered in order on resume, and the declared content-length
 * check. The session validates the frame and finds the stream; this file does the accounting and
 * delivery, request trailers included.
 */
import { E_FLOW_CONTROL_ERROR, E_PROTOCOL_ERROR, F_END_STREAM, windowUpdateFrame } from './frames';
import type { FrameOutput } from './frame-output';
import { decodeTrailers, EMPTY } from './headers';
import type { RawServerStream } from './raw-server-stream';

export class RawServerReceiver {
  private recvWindow: number;
  private recvUnacked = 0;

  constructor(
    private readonly out: FrameOutput,
    private readonly connWindow: number,
    private readonly streamWindow: number,
    /** A stream received its END_STREAM (it closes if the response side has ended too). */
    private readonly onRemoteEnd: (s: RawServerStream) => void,
  ) {
    this.recvWindow = connWindow;
  }

  /** Connection-level accounting of a DATA frame; false when it exceeds the connection window. */
  take(flowLen: number): boolean {
    if (flowLen > this.recvWindow) return false;
    this.recvWindow -= flowLen;
    // The connection window is credited on receipt; stream windows bound what is held.
    this.recvUnacked += flowLen;
    if (this.recvUnacked >= this.connWindow >>> 1) {
      this.out.queue(windowUpdateFrame(0, this.recvUnacked));
      this.recvWindow += this.recvUnacked;
      this.recvUnacked = 0;
    }
    return true;
  }

  /** DATA on an open stream: payload buf[start, end), `flowLen` with padding. */
  onData(s: RawServerStream, flags: number, flowLen: number, buf: Buffer, start: number, end: number): void {
    if (flowLen > s.recvWindow) return s.fail(E_FLOW_CONTROL_ERROR);
    s.recvWindow -= flowLen;
    // Padding is consumed at once.
    s.recvUnacked += flowLen - (end - start);
    const endStream = (flags & F_END_STREAM) !== 0;
    if (s.remaining >= 0) {
      s.remaining -= end - start;
      if (s.remaining < 0 || (endStream && s.remaining !== 0)) return s.fail(E_PROTOCOL_ERROR);
    }
    if (endStream) s.remoteEnded = true;
    const chunk = buf.subarray(start, end);
    if (s.paused) {
      (s.held ??= []).push(chunk);
      if (endStream) s.heldEnd = true;
      return;
    }
    this.deliver(s, chunk, endStream);
  }

  /** The reader resumed: held data in order (it may pause again on any chunk), then trailers. */
  resume(s: RawServerStream): void {
    if (!s.paused) return;
    s.paused = false;
    const held = s.held;
    if (held === undefined) return;
    s.held = undefined;
    const end = s.heldEnd;
    s.heldEnd = false;
    for (let i = 0; i < held.length; i++) {
      const last = i === held.length - 1;
      this.deliver(s, held[i]!, end && last && s.heldTrailers === undefined);
      if (s.gone) return;
      if (s.paused && !last) {
        s.held = held.slice(i + 1);
        s.heldEnd = end;
        return;
      }
    }
    if (s.paused) return;
    const t = s.heldTrailers;
    if (t !== undefined) {
      s.heldTrailers = undefined;
      s.sink?.onRequestTrailers(t);
    } else if (held.length === 0 && end) this.deliver(s, EMPTY, true);
  }

  /** Request trailers (the session checked END_STREAM and content-length): after held data. */
  onTrailers(s: RawServerStream, fields: string[]): void {
    s.remoteEnded = true;
    const t = decodeTrailers(fields);
    if (s.paused && s.held !== undefined) {
      s.heldTrailers = t;
      return;
    }
    this.onRemoteEnd(s);
    if (s.tunnel !== undefined) s.tunnel.onPeerData(EMPTY, true);
    else s.sink?.onRequestTrailers(t);
  }

  private deliver(s: RawServerStream, chunk: Buffer, endStream: boolean): void {
    s.recvUnacked += chunk.length;
    if (!endStream && s.recvUnacked >= this.streamWindow >>> 1) {
      this.out.queue(windowUpdateFrame(s.id, s.recvUnacked));
      s.recvWindow += s.recvUnacked;
      s.recvUnacked = 0;
    }
    if (endStream) this.onRemoteEnd(s);
    if (s.tunnel !== undefined) s.tunnel.onPeerData(chunk, endStream);
    else s.sink?.onRequestData(chunk, endStream);
  }
}
