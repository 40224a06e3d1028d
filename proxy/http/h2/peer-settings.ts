/**
 * The peer's SETTINGS frame as it binds the send side of a connection on meshlet's own framing
 * (RFC 9113 §6.5.2), shared by the downstream server and the upstream client: the initial stream
 * window (its change applied to every open stream), the largest frame, ENABLE_PUSH validity, and
 * the two settings only the client reads (MAX_CONCURRENT_STREAMS, ENABLE_CONNECT_PROTOCOL).
 */
import {
  DEFAULT_MAX_FRAME,
  E_FLOW_CONTROL_ERROR,
  E_FRAME_SIZE_ERROR,
  E_PROTOCOL_ERROR,
  MAX_WINDOW,
  S_ENABLE_CONNECT_PROTOCOL,
  S_ENABLE_PUSH,
  S_INITIAL_WINDOW_SIZE,
  S_MAX_CONCURRENT_STREAMS,
  S_MAX_FRAME_SIZE,
} from './frames';

/** The send side's view of the peer's settings. */
export interface PeerSendSettings {
  peerInitialWindow: number;
  peerMaxFrame: number;
}

/** Settings seen in the last frame applied (-1: absent). */
export interface PeerSettingsSeen {
  maxConcurrentStreams: number;
  connectProtocol: number;
}

/** A connection error: [code, reason]. */
export type SettingsError = readonly [number, string];

/**
 * Applies a SETTINGS payload (not an ACK) in order; stops at the first connection error and
 * returns it. HEADER_TABLE_SIZE needs nothing (our encoder never uses the dynamic table); unknown
 * ids are ignored.
 */
export function applyPeerSettings(
  buf: Buffer,
  start: number,
  end: number,
  tx: PeerSendSettings,
  streams: Iterable<{ sendWindow: number }>,
  seen: PeerSettingsSeen,
): SettingsError | undefined {
  seen.maxConcurrentStreams = -1;
  seen.connectProtocol = -1;
  if ((end - start) % 6 !== 0) return [E_FRAME_SIZE_ERROR, 'SETTINGS length'];
  for (let p = start; p < end; p += 6) {
    const key = buf.readUInt16BE(p);
    const value = buf.readUInt32BE(p + 2);
    switch (key) {
      case S_MAX_CONCURRENT_STREAMS:
        seen.maxConcurrentStreams = value;
        break;
      case S_INITIAL_WINDOW_SIZE: {
        if (value > MAX_WINDOW) return [E_FLOW_CONTROL_ERROR, 'INITIAL_WINDOW_SIZE too large'];
        const delta = value - tx.peerInitialWindow;
        tx.peerInitialWindow = value;
        if (delta === 0) break;
        for (const s of streams) {
          s.sendWindow += delta;
          if (s.sendWindow > MAX_WINDOW) return [E_FLOW_CONTROL_ERROR, 'stream window overflow'];
        }
        break;
      }
      case S_MAX_FRAME_SIZE:
        if (value < DEFAULT_MAX_FRAME || value > 0xffffff) return [E_PROTOCOL_ERROR, 'bad MAX_FRAME_SIZE'];
        tx.peerMaxFrame = value;
        break;
      case S_ENABLE_PUSH:
        if (value > 1) return [E_PROTOCOL_ERROR, 'bad ENABLE_PUSH'];
        break;
      case S_ENABLE_CONNECT_PROTOCOL:
        seen.connectProtocol = value;
        break;
      default:
        break;
    }
  }
  return undefined;
}
