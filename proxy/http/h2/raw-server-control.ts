/**
 * Connection-control frames of one downstream HTTP/2 connection on meshlet's own framing
 * (raw-server-session.ts): PRIORITY, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE and
 * unknown types. Validates each (RFC 9113 §6), applies the flood rules that concern them
 * (raw-server-guard.ts: SETTINGS/PING/PRIORITY/WINDOW_UPDATE floods, outbound control frames the
 * client does not read) and calls back into the session for what changes streams or closes the
 * connection.
 */
import {
  E_FLOW_CONTROL_ERROR,
  E_FRAME_SIZE_ERROR,
  E_PROTOCOL_ERROR,
  F_ACK,
  MAX_WINDOW,
  pingAckFrame,
  settingsFrame,
  T_GOAWAY,
  T_PING,
  T_PRIORITY,
  T_RST_STREAM,
  T_SETTINGS,
  T_WINDOW_UPDATE,
} from './frames';
import type { FrameOutput } from './frame-output';
import { applyPeerSettings, type PeerSettingsSeen } from './peer-settings';
import type { RawServerGuard } from './raw-server-guard';
import type { RawServerSender } from './raw-server-send';
import type { RawServerStream } from './raw-server-stream';
import { h2ServerAbuseStats } from './server-settings';

/** What the control frames need from their connection (raw-server-session.ts implements it). */
export interface RawServerControlled {
  readonly out: FrameOutput;
  readonly guard: RawServerGuard;
  readonly tx: RawServerSender;
  readonly streams: ReadonlyMap<number, RawServerStream>;
  /** Highest client stream id seen. */
  readonly lastStreamId: number;
  /** Our SETTINGS were acknowledged. */
  settingsAcked: boolean;
  fail(code: number, why: string): void;
  flood(why: string): void;
  streamError(id: number, code: number): void;
  /** The client sent GOAWAY: it opens no more streams. */
  onPeerGoaway(): void;
  /** RST_STREAM from the client on an open stream. */
  onPeerReset(s: RawServerStream, code: number): void;
}

/** Scratch for the settings seen in one SETTINGS frame (applied synchronously). */
const seen: PeerSettingsSeen = { maxConcurrentStreams: -1, connectProtocol: -1 };

/** A frame that is not DATA, HEADERS, CONTINUATION or PUSH_PROMISE. */
export function onControlFrame(c: RawServerControlled, type: number, flags: number, id: number, buf: Buffer, start: number, end: number): void {
  const g = c.guard;
  switch (type) {
    case T_PRIORITY:
      if (id === 0) return c.fail(E_PROTOCOL_ERROR, 'PRIORITY on stream 0');
      if (g.priority()) {
        h2ServerAbuseStats.inboundPriorityFramesFlood++;
        return c.flood('PRIORITY frame flood');
      }
      if (end - start !== 5) return c.streamError(id, E_FRAME_SIZE_ERROR);
      if ((buf.readUInt32BE(start) & 0x7fffffff) === id) return c.streamError(id, E_PROTOCOL_ERROR);
      return;
    case T_RST_STREAM: {
      if (end - start !== 4) return c.fail(E_FRAME_SIZE_ERROR, 'RST_STREAM length');
      if (id === 0) return c.fail(E_PROTOCOL_ERROR, 'RST_STREAM on stream 0');
      if (id > c.lastStreamId) return c.fail(E_PROTOCOL_ERROR, 'RST_STREAM on an idle stream');
      const s = c.streams.get(id);
      if (s !== undefined) c.onPeerReset(s, buf.readUInt32BE(start));
      return;
    }
    case T_SETTINGS:
      return onSettings(c, flags, id, buf, start, end);
    case T_PING:
      if (id !== 0) return c.fail(E_PROTOCOL_ERROR, 'PING on a stream');
      if (end - start !== 8) return c.fail(E_FRAME_SIZE_ERROR, 'PING length');
      if ((flags & F_ACK) !== 0) return;
      if (g.control()) return c.flood('PING flood');
      c.out.queue(pingAckFrame(buf.subarray(start, end)));
      if (g.onControlSent(c.out.full())) return c.flood('outbound control frame flood');
      return;
    case T_GOAWAY:
      if (id !== 0) return c.fail(E_PROTOCOL_ERROR, 'GOAWAY on a stream');
      if (end - start < 8) return c.fail(E_FRAME_SIZE_ERROR, 'GOAWAY length');
      return c.onPeerGoaway();
    case T_WINDOW_UPDATE:
      return onWindowUpdate(c, id, buf, start, end);
    default:
      // Unknown frame types are ignored (RFC 9113 §4.1, §5.5).
      return;
  }
}

function onSettings(c: RawServerControlled, flags: number, id: number, buf: Buffer, start: number, end: number): void {
  if (id !== 0) return c.fail(E_PROTOCOL_ERROR, 'SETTINGS on a stream');
  if ((flags & F_ACK) !== 0) {
    if (end !== start) return c.fail(E_FRAME_SIZE_ERROR, 'SETTINGS ACK with payload');
    c.settingsAcked = true;
    return;
  }
  if ((end - start) % 6 !== 0) return c.fail(E_FRAME_SIZE_ERROR, 'SETTINGS length');
  if (c.guard.control()) return c.flood('SETTINGS flood');
  // MAX_CONCURRENT_STREAMS and ENABLE_CONNECT_PROTOCOL from a client mean nothing to a server.
  const err = applyPeerSettings(buf, start, end, c.tx, c.streams.values(), seen);
  if (err !== undefined) return c.fail(err[0], err[1]);
  c.out.queue(settingsFrame([], true));
  if (c.guard.onControlSent(c.out.full())) return c.flood('outbound control frame flood');
  c.tx.drainQueues();
}

function onWindowUpdate(c: RawServerControlled, id: number, buf: Buffer, start: number, end: number): void {
  if (end - start !== 4) return c.fail(E_FRAME_SIZE_ERROR, 'WINDOW_UPDATE length');
  if (c.guard.windowUpdate()) return c.flood('WINDOW_UPDATE flood');
  const inc = buf.readUInt32BE(start) & 0x7fffffff;
  if (id === 0) {
    if (inc === 0) return c.fail(E_PROTOCOL_ERROR, 'WINDOW_UPDATE of 0');
    c.tx.sendWindow += inc;
    if (c.tx.sendWindow > MAX_WINDOW) return c.fail(E_FLOW_CONTROL_ERROR, 'connection window overflow');
  } else {
    if (id > c.lastStreamId) return c.fail(E_PROTOCOL_ERROR, 'WINDOW_UPDATE on an idle stream');
    const s = c.streams.get(id);
    if (s === undefined) return;
    if (inc === 0) return s.fail(E_PROTOCOL_ERROR);
    s.sendWindow += inc;
    if (s.sendWindow > MAX_WINDOW) return s.fail(E_FLOW_CONTROL_ERROR);
  }
  c.tx.drainQueues();
}
