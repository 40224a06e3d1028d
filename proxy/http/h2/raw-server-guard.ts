/**
 * Flood rules of one downstream HTTP/2 connection on meshlet's own framing
 * (raw-server-session.ts): each method counts one event and answers whether the connection must
 * now be closed with GOAWAY ENHANCE_YOUR_CALM. Envoy's http2_protocol_options defaults where
 * Envoy has the rule; meshlet's own bounds where node:http2/nghttp2 had one and Envoy relies on
 * its outbound queue.
 */
import {
  MAX_CONTROL_PER_SECOND,
  MAX_PRIORITY_FRAMES_PER_STREAM,
  PREMATURE_RESET_MIN_LIFETIME_MS,
  PREMATURE_RESET_TOTAL_STREAMS,
} from './server-settings';

/** Envoy's max_consecutive_inbound_frames_with_empty_payload default is 1; nghttp2 allowed 1,000 invalid frames. */
const MAX_CONSECUTIVE_EMPTY = 100;
/** Envoy's max_outbound_control_frames: control frames we queued while the client does not read. */
const MAX_OUTBOUND_CONTROL = 1_000;
/** Envoy's max_inbound_window_update_frames_per_data_frame_sent. */
const MAX_WINDOW_UPDATES_PER_DATA = 10;
/** Malformed requests (stream errors) per connection, as nghttp2's invalid-frame budget. */
const MAX_MALFORMED = 1_000;

export class RawServerGuard {
  readonly prematureMs = PREMATURE_RESET_MIN_LIFETIME_MS;
  streamsOpened = 0;
  dataFramesSent = 0;
  private consecutiveEmpty = 0;
  private priorityFrames = 0;
  private controlInWindow = 0;
  private windowStart = 0;
  private outboundControl = 0;
  private windowUpdates = 0;
  private malformedCount = 0;
  private closedStreams = 0;
  private prematureResets = 0;

  /** A frame with an empty payload (and no END_STREAM); any non-empty frame resets the run. */
  emptyFrame(): boolean {
    return ++this.consecutiveEmpty > MAX_CONSECUTIVE_EMPTY;
  }

  /** Any frame with a payload. */
  nonEmpty(): void {
    this.consecutiveEmpty = 0;
  }

  /** Envoy's max_inbound_priority_frames_per_stream (CVE-2019-9513). */
  priority(): boolean {
    return ++this.priorityFrames > MAX_PRIORITY_FRAMES_PER_STREAM * (1 + this.streamsOpened);
  }

  /** A SETTINGS or PING that must be answered. */
  control(): boolean {
    const now = Date.now();
    if (now - this.windowStart >= 1000) {
      this.windowStart = now;
      this.controlInWindow = 0;
    }
    return ++this.controlInWindow > MAX_CONTROL_PER_SECOND;
  }

  /** We queued a control frame (ACK, RST_STREAM); `backedUp`: the socket is not draining. */
  onControlSent(backedUp: boolean): boolean {
    if (!backedUp) {
      this.outboundControl = 0;
      return false;
    }
    return ++this.outboundControl > MAX_OUTBOUND_CONTROL;
  }

  /** The socket drained. */
  onDrain(): void {
    this.outboundControl = 0;
  }

  windowUpdate(): boolean {
    return ++this.windowUpdates > 100 + MAX_WINDOW_UPDATES_PER_DATA * this.dataFramesSent;
  }

  malformed(): boolean {
    return ++this.malformedCount > MAX_MALFORMED;
  }

  /**
   * A stream closed (`premature`: the peer reset it early). Envoy's rule: once the connection has
   * closed PREMATURE_RESET_TOTAL_STREAMS streams, more than half reset prematurely closes it; so
   * does reaching that many premature resets at all (rapid reset, CVE-2023-44487).
   */
  streamClosed(premature: boolean): boolean {
    this.closedStreams++;
    if (!premature) return false;
    const p = ++this.prematureResets;
    const closed = this.closedStreams;
    return closed < PREMATURE_RESET_TOTAL_STREAMS ? p >= PREMATURE_RESET_TOTAL_STREAMS : p * 2 >= closed;
  }
}
