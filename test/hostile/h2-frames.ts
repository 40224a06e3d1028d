/**
 * A tiny raw HTTP/2 client for abuse tests: encodes the frames a well-behaved client library
 * refuses to send (RST_STREAM storms, SETTINGS/PING floods, endless CONTINUATION, zero windows)
 * and decodes what the server sends back (frame types, RST_STREAM and GOAWAY error codes).
 * HPACK is "literal without indexing, no Huffman" only — enough to write valid request heads.
 */
import net from 'node:net';

export const F = { DATA: 0, HEADERS: 1, PRIORITY: 2, RST_STREAM: 3, SETTINGS: 4, PUSH_PROMISE: 5, PING: 6, GOAWAY: 7, WINDOW_UPDATE: 8, CONTINUATION: 9 } as const;
export const FLAG = { END_STREAM: 0x1, ACK: 0x1, END_HEADERS: 0x4 } as const;
export const ERR = { NO_ERROR: 0, PROTOCOL_ERROR: 1, INTERNAL_ERROR: 2, FLOW_CONTROL_ERROR: 3, REFUSED_STREAM: 7, CANCEL: 8, ENHANCE_YOUR_CALM: 0xb } as const;
export const SETTING = { HEADER_TABLE_SIZE: 1, ENABLE_PUSH: 2, MAX_CONCURRENT_STREAMS: 3, INITIAL_WINDOW_SIZE: 4, MAX_FRAME_SIZE: 5 } as const;

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

export function frame(type: number, flags: number, streamId: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const b = Buffer.allocUnsafe(9 + payload.length);
  b.writeUIntBE(payload.length, 0, 3);
  b[3] = type;
  b[4] = flags;
  b.writeUInt32BE(streamId & 0x7fffffff, 5);
  payload.copy(b, 9);
  return b;
}

export function settings(entries: [number, number][] = []): Buffer {
  const p = Buffer.allocUnsafe(entries.length * 6);
  entries.forEach(([id, v], i) => {
    p.writeUInt16BE(id, i * 6);
    p.writeUInt32BE(v, i * 6 + 2);
  });
  return frame(F.SETTINGS, 0, 0, p);
}

export const SETTINGS_ACK = frame(F.SETTINGS, FLAG.ACK, 0);

export function ping(n: number): Buffer {
  const p = Buffer.alloc(8);
  p.writeUInt32BE(n >>> 0, 4);
  return frame(F.PING, 0, 0, p);
}

export function rst(streamId: number, code: number = ERR.CANCEL): Buffer {
  const p = Buffer.allocUnsafe(4);
  p.writeUInt32BE(code, 0);
  return frame(F.RST_STREAM, 0, streamId, p);
}

export function windowUpdate(streamId: number, inc: number): Buffer {
  const p = Buffer.allocUnsafe(4);
  p.writeUInt32BE(inc, 0);
  return frame(F.WINDOW_UPDATE, 0, streamId, p);
}

function hpackInt(value: number, prefixBits: number, firstByteHigh: number): number[] {
  const max = (1 << prefixBits) - 1;
  if (value < max) return [firstByteHigh | value];
  const out = [firstByteHigh | max];
  let v = value - max;
  while (v >= 128) {
    out.push((v % 128) + 128);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return out;
}

/** HPACK block of literal header fields without indexing (new names, no Huffman). */
export function hpack(fields: [string, string][]): Buffer {
  const parts: Buffer[] = [];
  for (const [n, v] of fields) {
    const nb = Buffer.from(n, 'latin1');
    const vb = Buffer.from(v, 'latin1');
    parts.push(Buffer.from([0x00, ...hpackInt(nb.length, 7, 0)]), nb, Buffer.from(hpackInt(vb.length, 7, 0)), vb);
  }
  return Buffer.concat(parts);
}

export function requestBlock(path: string, method = 'GET', extra: [string, string][] = []): Buffer {
  return hpack([[':method', method], [':scheme', 'http'], [':authority', 'x'], [':path', path], ...extra]);
}

export function headers(streamId: number, block: Buffer, endStream = true, endHeaders = true): Buffer {
  return frame(F.HEADERS, (endStream ? FLAG.END_STREAM : 0) | (endHeaders ? FLAG.END_HEADERS : 0), streamId, block);
}

export interface ReceivedFrame {
  type: number;
  flags: number;
  streamId: number;
  payload: Buffer;
}

/** A raw HTTP/2 connection: writes frames, parses every frame the server sends. */
export class RawH2 {
  readonly socket: net.Socket;
  readonly frames: ReceivedFrame[] = [];
  closed = false;
  private buf: Buffer = Buffer.alloc(0);
  private readonly waiters: (() => void)[] = [];

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on('data', (d: Buffer) => this.onData(d));
    socket.on('error', () => {});
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
  }

  /** Connect, send the preface and an initial SETTINGS frame (optionally with entries). */
  static async connect(port: number, initial: [number, number][] = []): Promise<RawH2> {
    const s = net.connect(port, '127.0.0.1');
    await new Promise<void>((resolve, reject) => {
      s.once('connect', resolve);
      s.once('error', reject);
    });
    const c = new RawH2(s);
    c.write(Buffer.concat([PREFACE, settings(initial)]));
    return c;
  }

  write(b: Buffer): boolean {
    if (this.closed || this.socket.destroyed) return false;
    return this.socket.write(b);
  }

  /** Write, waiting for 'drain' when the socket buffer is full; false once the peer is gone. */
  async writeAll(b: Buffer): Promise<boolean> {
    if (this.closed || this.socket.destroyed) return false;
    if (this.socket.write(b)) return true;
    await new Promise<void>((r) => {
      const done = (): void => {
        this.socket.off('drain', done);
        this.socket.off('close', done);
        r();
      };
      this.socket.once('drain', done);
      this.socket.once('close', done);
    });
    return !this.closed;
  }

  destroy(): void {
    this.socket.destroy();
  }

  goaway(): { lastStreamId: number; code: number } | undefined {
    const g = this.frames.find((f) => f.type === F.GOAWAY);
    if (!g) return undefined;
    return { lastStreamId: g.payload.readUInt32BE(0) & 0x7fffffff, code: g.payload.readUInt32BE(4) };
  }

  /** The peer acknowledged PING number `n` (see ping()). */
  pingAcked(n: number): boolean {
    return this.frames.some((f) => f.type === F.PING && (f.flags & FLAG.ACK) !== 0 && f.payload.readUInt32BE(4) === n >>> 0);
  }

  rstCodes(): Map<number, number> {
    const m = new Map<number, number>();
    for (const f of this.frames) if (f.type === F.RST_STREAM) m.set(f.streamId, f.payload.readUInt32BE(0));
    return m;
  }

  /** Response :status per stream, decoded from HEADERS when the server used a literal or static index. */
  headersOn(streamId: number): boolean {
    return this.frames.some((f) => f.type === F.HEADERS && f.streamId === streamId);
  }

  /** Wait until `cond` holds or the connection closes or `ms` pass; returns cond(). */
  async waitFor(cond: () => boolean, ms = 10_000): Promise<boolean> {
    const end = Date.now() + ms;
    while (!cond() && !this.closed && Date.now() < end) {
      await new Promise<void>((r) => {
        const t = setTimeout(r, 50);
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
    return cond();
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  private onData(d: Buffer): void {
    this.buf = this.buf.length === 0 ? d : Buffer.concat([this.buf, d]);
    while (this.buf.length >= 9) {
      const len = this.buf.readUIntBE(0, 3);
      if (this.buf.length < 9 + len) break;
      const f: ReceivedFrame = {
        type: this.buf[3]!,
        flags: this.buf[4]!,
        streamId: this.buf.readUInt32BE(5) & 0x7fffffff,
        payload: Buffer.from(this.buf.subarray(9, 9 + len)),
      };
      this.buf = this.buf.subarray(9 + len);
      // Acknowledge the server's SETTINGS like any client would (floods are sent explicitly).
      if (f.type === F.SETTINGS && (f.flags & FLAG.ACK) === 0) this.write(SETTINGS_ACK);
      this.frames.push(f);
    }
    this.wake();
  }
}
