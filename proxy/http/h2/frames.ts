/**
 * HTTP/2 wire constants and frame builders (RFC 9113 §4, §6) for meshlet's own framing.
 * Frame builders return small Buffers; DATA payloads are never copied (the caller writes the
 * 9-octet header and the payload Buffer as two writes of one writev).
 */

export const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

export const FRAME_HEADER = 9;
export const DEFAULT_MAX_FRAME = 16384;
export const DEFAULT_WINDOW = 65535;
export const MAX_WINDOW = 2 ** 31 - 1;

export const T_DATA = 0;
export const T_HEADERS = 1;
export const T_PRIORITY = 2;
export const T_RST_STREAM = 3;
export const T_SETTINGS = 4;
export const T_PUSH_PROMISE = 5;
export const T_PING = 6;
export const T_GOAWAY = 7;
export const T_WINDOW_UPDATE = 8;
export const T_CONTINUATION = 9;

export const F_END_STREAM = 0x1;
export const F_ACK = 0x1;
export const F_END_HEADERS = 0x4;
export const F_PADDED = 0x8;
export const F_PRIORITY = 0x20;

export const S_HEADER_TABLE_SIZE = 1;
export const S_ENABLE_PUSH = 2;
export const S_MAX_CONCURRENT_STREAMS = 3;
export const S_INITIAL_WINDOW_SIZE = 4;
export const S_MAX_FRAME_SIZE = 5;
export const S_MAX_HEADER_LIST_SIZE = 6;
export const S_ENABLE_CONNECT_PROTOCOL = 8;

export const E_NO_ERROR = 0;
export const E_PROTOCOL_ERROR = 1;
export const E_INTERNAL_ERROR = 2;
export const E_FLOW_CONTROL_ERROR = 3;
export const E_STREAM_CLOSED = 5;
export const E_FRAME_SIZE_ERROR = 6;
export const E_REFUSED_STREAM = 7;
export const E_CANCEL = 8;
export const E_COMPRESSION_ERROR = 9;
export const E_ENHANCE_YOUR_CALM = 11;

/** Writes a frame header into `out` at `pos`. */
export function writeFrameHeader(out: Buffer, pos: number, length: number, type: number, flags: number, stream: number): void {
  out[pos] = (length >>> 16) & 0xff;
  out[pos + 1] = (length >>> 8) & 0xff;
  out[pos + 2] = length & 0xff;
  out[pos + 3] = type;
  out[pos + 4] = flags;
  out.writeUInt32BE(stream & 0x7fffffff, pos + 5);
}

export function frameHeader(length: number, type: number, flags: number, stream: number): Buffer {
  const b = Buffer.allocUnsafe(FRAME_HEADER);
  writeFrameHeader(b, 0, length, type, flags, stream);
  return b;
}

/** SETTINGS frame from [id, value] pairs (empty with ACK for an acknowledgement). */
export function settingsFrame(pairs: readonly (readonly [number, number])[], ack = false): Buffer {
  const b = Buffer.allocUnsafe(FRAME_HEADER + pairs.length * 6);
  writeFrameHeader(b, 0, pairs.length * 6, T_SETTINGS, ack ? F_ACK : 0, 0);
  let pos = FRAME_HEADER;
  for (const [id, value] of pairs) {
    b.writeUInt16BE(id, pos);
    b.writeUInt32BE(value, pos + 2);
    pos += 6;
  }
  return b;
}

export function windowUpdateFrame(stream: number, increment: number): Buffer {
  const b = Buffer.allocUnsafe(FRAME_HEADER + 4);
  writeFrameHeader(b, 0, 4, T_WINDOW_UPDATE, 0, stream);
  b.writeUInt32BE(increment, FRAME_HEADER);
  return b;
}

export function rstStreamFrame(stream: number, code: number): Buffer {
  const b = Buffer.allocUnsafe(FRAME_HEADER + 4);
  writeFrameHeader(b, 0, 4, T_RST_STREAM, 0, stream);
  b.writeUInt32BE(code, FRAME_HEADER);
  return b;
}

export function goawayFrame(lastStream: number, code: number): Buffer {
  const b = Buffer.allocUnsafe(FRAME_HEADER + 8);
  writeFrameHeader(b, 0, 8, T_GOAWAY, 0, 0);
  b.writeUInt32BE(lastStream, FRAME_HEADER);
  b.writeUInt32BE(code, FRAME_HEADER + 4);
  return b;
}

export function pingAckFrame(payload: Uint8Array): Buffer {
  const b = Buffer.allocUnsafe(FRAME_HEADER + 8);
  writeFrameHeader(b, 0, 8, T_PING, F_ACK, 0);
  b.set(payload, FRAME_HEADER);
  return b;
}
