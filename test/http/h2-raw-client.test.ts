/**
 * Conformance of meshlet's own HTTP/2 client framing (proxy/http/h2/raw-client-session.ts)
 * against a raw-frame peer on 127.0.0.1: the RFC 9113 cases an h2spec-style checker would run
 * from the server's side — preface and SETTINGS, PING, the peer's flow-control windows and frame
 * size, header blocks split into CONTINUATION, GOAWAY's last-stream-id, receive windows withheld
 * while the consumer is paused, and each connection error (GOAWAY with the right code, then
 * close) for PUSH_PROMISE, WINDOW_UPDATE 0, window overrun, oversized frames, CONTINUATION
 * floods, bad HPACK and frames inside a header block.
 */
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { HpackDecoder } from '../../proxy/http/h2/hpack';
import { H2RawClientSession } from '../../proxy/http/h2/raw-client-session';
import type { RawStream, RawStreamHandler } from '../../proxy/http/h2/raw-client-types';
import { ERR, F, FLAG, frame, headers, hpack, ping, settings, SETTING, windowUpdate } from '../hostile/h2-frames';

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

interface Frame {
  type: number;
  flags: number;
  id: number;
  payload: Buffer;
}

/** A raw HTTP/2 "server": records the client's frames, sends whatever a test writes. */
async function peer() {
  const state = {
    frames: [] as Frame[],
    preface: '',
    closed: false,
    sock: undefined as net.Socket | undefined,
    send(...b: Buffer[]) {
      state.sock!.write(Buffer.concat(b));
    },
  };
  const server = net.createServer((sock) => {
    state.sock = sock;
    let buf = Buffer.alloc(0);
    sock.on('error', () => {});
    sock.on('close', () => {
      state.closed = true;
    });
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      if (state.preface === '' && buf.length >= 24) {
        state.preface = buf.subarray(0, 24).toString('latin1');
        buf = buf.subarray(24);
      }
      while (state.preface !== '' && buf.length >= 9) {
        const len = buf.readUIntBE(0, 3);
        if (buf.length < 9 + len) break;
        state.frames.push({ type: buf[3]!, flags: buf[4]!, id: buf.readUInt32BE(5) & 0x7fffffff, payload: buf.subarray(9, 9 + len) });
        buf = buf.subarray(9 + len);
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  cleanups.push(() => {
    state.sock?.destroy();
    server.close();
  });
  return { state, port };
}

class Rec implements RawStreamHandler {
  heads: { fields: string[]; end: boolean }[] = [];
  data: Buffer[] = [];
  ended = false;
  reset: { code: number; kind: string } | undefined;
  writable = 0;
  onHeaders(fields: string[], endStream: boolean): void {
    this.heads.push({ fields, end: endStream });
    if (endStream) this.ended = true;
  }
  onData(chunk: Buffer, endStream: boolean): void {
    this.data.push(Buffer.from(chunk));
    if (endStream) this.ended = true;
  }
  onReset(code: number, kind: string): void {
    this.reset = { code, kind };
  }
  onWritable(): void {
    this.writable++;
  }
}

async function waitFor(cond: () => boolean, what: string, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

async function connect(port: number, opts: { streamWindow?: number } = {}) {
  const sock = net.connect(port, '127.0.0.1');
  await new Promise((r) => sock.once('connect', r));
  const owner = { settings: [] as number[], goaway: 0, closed: false };
  const session = new H2RawClientSession(
    sock,
    { streamWindow: opts.streamWindow ?? 65535, connectionWindow: 1 << 20, maxHeaderListSize: 8192 },
    {
      onRemoteSettings: (n) => owner.settings.push(n),
      onGoaway: () => owner.goaway++,
      onClose: () => {
        owner.closed = true;
      },
    },
  );
  cleanups.push(() => session.destroy());
  return { session, owner };
}

const GET = [':method', 'GET', ':scheme', 'http', ':authority', 'x', ':path', '/'];
const POST = [':method', 'POST', ':scheme', 'http', ':authority', 'x', ':path', '/'];
const goawayCode = (fs: Frame[]) => fs.find((f) => f.type === F.GOAWAY)?.payload.readUInt32BE(4);

describe("meshlet's own HTTP/2 client framing (RFC 9113)", () => {
  it('sends the preface, SETTINGS without push, our connection window; ACKs SETTINGS and PINGs', async () => {
    const { state, port } = await peer();
    const { owner } = await connect(port);
    await waitFor(() => state.frames.length >= 2, 'client SETTINGS');
    expect(state.preface).toBe('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
    const first = state.frames[0]!;
    expect(first.type).toBe(F.SETTINGS);
    expect(first.payload.readUInt16BE(0)).toBe(SETTING.ENABLE_PUSH);
    expect(first.payload.readUInt32BE(2)).toBe(0);
    expect(state.frames[1]).toMatchObject({ type: F.WINDOW_UPDATE, id: 0 });
    state.send(settings([[SETTING.MAX_CONCURRENT_STREAMS, 7]]), ping(42));
    await waitFor(() => state.frames.some((f) => f.type === F.PING), 'PING ACK');
    expect(state.frames.find((f) => f.type === F.SETTINGS && f.flags === FLAG.ACK)).toBeDefined();
    const pong = state.frames.find((f) => f.type === F.PING)!;
    expect(pong.flags).toBe(FLAG.ACK);
    expect(pong.payload.readUInt32BE(4)).toBe(42);
    expect(owner.settings).toEqual([7]);
  });

  it("honours the peer's stream window: sends what fits, the rest after WINDOW_UPDATE, then onWritable", async () => {
    const { state, port } = await peer();
    const { session } = await connect(port);
    state.send(settings([[SETTING.INITIAL_WINDOW_SIZE, 10]]));
    await waitFor(() => state.frames.some((f) => f.type === F.SETTINGS && f.flags === FLAG.ACK), 'ACK');
    const rec = new Rec();
    const s = session.openStream(rec, POST, false) as RawStream;
    expect(session.sendData(s, Buffer.alloc(25, 'a'), true)).toBe(false);
    await waitFor(() => state.frames.some((f) => f.type === F.DATA), 'first DATA');
    await new Promise((r) => setTimeout(r, 50));
    const data = () => state.frames.filter((f) => f.type === F.DATA);
    expect(data().reduce((n, f) => n + f.payload.length, 0)).toBe(10);
    state.send(windowUpdate(1, 100));
    await waitFor(() => data().some((f) => f.flags & FLAG.END_STREAM), 'END_STREAM');
    expect(data().reduce((n, f) => n + f.payload.length, 0)).toBe(25);
    expect(rec.writable).toBe(1);
  });

  it('splits a header block larger than the frame size into HEADERS + CONTINUATION', async () => {
    const { state, port } = await peer();
    const { session } = await connect(port);
    session.openStream(new Rec(), [...GET, 'x-big', 'v'.repeat(40_000)], true);
    await waitFor(() => state.frames.some((f) => f.type === F.CONTINUATION && f.flags & FLAG.END_HEADERS), 'last CONTINUATION');
    const parts = state.frames.filter((f) => f.type === F.HEADERS || f.type === F.CONTINUATION);
    expect(parts[0]).toMatchObject({ type: F.HEADERS, flags: FLAG.END_STREAM });
    expect(parts.every((f) => f.payload.length <= 16384)).toBe(true);
    const block = Buffer.concat(parts.map((f) => f.payload));
    expect(new HpackDecoder().decode(block, 0, block.length, 1 << 20).fields.slice(-2)).toEqual(['x-big', 'v'.repeat(40_000)]);
  });

  it('delivers response headers, DATA and trailers; GOAWAY refuses streams above its last-stream-id', async () => {
    const { state, port } = await peer();
    const { session, owner } = await connect(port);
    const a = new Rec();
    const b = new Rec();
    session.openStream(a, GET, true);
    session.openStream(b, GET, true);
    await waitFor(() => state.frames.filter((f) => f.type === F.HEADERS).length === 2, 'two requests');
    const goaway = Buffer.alloc(8);
    goaway.writeUInt32BE(1, 0);
    state.send(frame(F.GOAWAY, 0, 0, goaway));
    await waitFor(() => b.reset !== undefined, 'stream 3 refused');
    expect(b.reset?.kind).toBe('refused');
    expect(owner.goaway).toBe(1);
    expect(session.unusable).toBe(true);
    state.send(
      headers(1, hpack([[':status', '200']]), false),
      frame(F.DATA, 0, 1, Buffer.from('hello')),
      headers(1, hpack([['grpc-status', '0']]), true),
    );
    await waitFor(() => a.ended, 'stream 1 complete');
    expect(a.heads.map((h) => h.fields)).toEqual([[':status', '200'], ['grpc-status', '0']]);
    expect(Buffer.concat(a.data).toString()).toBe('hello');
    // last stream done after GOAWAY: the client says GOAWAY too and closes
    await waitFor(() => state.closed, 'connection closed');
  });

  it('withholds the stream window while paused and credits it on resume', async () => {
    const { state, port } = await peer();
    const { session } = await connect(port, { streamWindow: 100 });
    const rec = new Rec();
    const s = session.openStream(rec, GET, true) as RawStream;
    state.send(headers(1, hpack([[':status', '200']]), false));
    session.pause(s);
    state.send(frame(F.DATA, 0, 1, Buffer.alloc(60)));
    await new Promise((r) => setTimeout(r, 50));
    expect(rec.data).toHaveLength(0);
    expect(state.frames.some((f) => f.type === F.WINDOW_UPDATE && f.id === 1)).toBe(false);
    session.resume(s);
    expect(rec.data).toHaveLength(1);
    await waitFor(() => state.frames.some((f) => f.type === F.WINDOW_UPDATE && f.id === 1), 'stream WINDOW_UPDATE');
  });

  it('trailers that arrive behind held data wait for it: data, then trailers, on resume', async () => {
    const { state, port } = await peer();
    const { session } = await connect(port);
    const order: string[] = [];
    const rec = new Rec();
    rec.onData = (c: Buffer) => void order.push(`data:${c.length}`);
    rec.onHeaders = (f: string[], end: boolean) => void order.push(end ? `trailers:${f[1]}` : 'head');
    const s = session.openStream(rec, GET, true) as RawStream;
    state.send(headers(1, hpack([[':status', '200']]), false));
    await waitFor(() => order.length === 1, 'response head');
    session.pause(s);
    state.send(frame(F.DATA, 0, 1, Buffer.alloc(10)), frame(F.DATA, 0, 1, Buffer.alloc(20)), headers(1, hpack([['grpc-status', '0']]), true));
    await new Promise((r) => setTimeout(r, 50));
    expect(order).toEqual(['head']);
    session.resume(s);
    expect(order).toEqual(['head', 'data:10', 'data:20', 'trailers:0']);
  });

  const block = hpack([[':status', '200']]);
  it.each([
    ['PUSH_PROMISE', () => frame(F.PUSH_PROMISE, FLAG.END_HEADERS, 1, Buffer.concat([Buffer.from([0, 0, 0, 2]), block])), ERR.PROTOCOL_ERROR],
    ['a connection WINDOW_UPDATE of 0', () => windowUpdate(0, 0), ERR.PROTOCOL_ERROR],
    ['a frame larger than SETTINGS_MAX_FRAME_SIZE', () => frame(F.DATA, 0, 1, Buffer.alloc(16385)), 6],
    ['a CONTINUATION flood', () => Buffer.concat([headers(1, block, false, false), ...Array.from({ length: 40 }, () => frame(F.CONTINUATION, 0, 1, Buffer.alloc(1000, 0x40)))]), ERR.ENHANCE_YOUR_CALM],
    ['an undecodable header block', () => headers(1, Buffer.from([0x80]), true), 9],
    ['a PING inside a header block', () => Buffer.concat([headers(1, block, false, false), ping(1)]), ERR.PROTOCOL_ERROR],
    ['HEADERS on a stream the client never opened', () => headers(5, block, true), ERR.PROTOCOL_ERROR],
  ])('%s is a connection error: GOAWAY with its code, streams end, connection closes', async (_what, bytes, code) => {
    const { state, port } = await peer();
    const { session, owner } = await connect(port, { streamWindow: 1 << 20 });
    const rec = new Rec();
    session.openStream(rec, GET, true);
    await waitFor(() => state.frames.some((f) => f.type === F.HEADERS), 'request');
    state.send(bytes());
    // Both ends saw the close: the peer has read everything meshlet wrote before it (GOAWAY included).
    await waitFor(() => owner.closed && state.closed, 'connection closed');
    expect(goawayCode(state.frames)).toBe(code);
    expect(rec.reset?.kind).toBe('gone');
  });

  it('DATA beyond the stream window (consumer paused) resets that stream with FLOW_CONTROL_ERROR', async () => {
    const { state, port } = await peer();
    const { session, owner } = await connect(port, { streamWindow: 65535 });
    const rec = new Rec();
    session.pause(session.openStream(rec, GET, true) as RawStream);
    await waitFor(() => state.frames.some((f) => f.type === F.HEADERS), 'request');
    state.send(headers(1, block, false), ...Array.from({ length: 5 }, () => frame(F.DATA, 0, 1, Buffer.alloc(16384))));
    await waitFor(() => state.frames.some((f) => f.type === F.RST_STREAM), 'RST_STREAM');
    expect(state.frames.find((f) => f.type === F.RST_STREAM)?.payload.readUInt32BE(0)).toBe(ERR.FLOW_CONTROL_ERROR);
    expect(rec.reset?.kind).toBe('remote');
    expect(owner.closed).toBe(false);
  });

  it('a stream-level WINDOW_UPDATE of 0 resets only that stream', async () => {
    const { state, port } = await peer();
    const { session, owner } = await connect(port);
    const rec = new Rec();
    session.openStream(rec, POST, false);
    await waitFor(() => state.frames.some((f) => f.type === F.HEADERS), 'request');
    state.send(windowUpdate(1, 0));
    await waitFor(() => state.frames.some((f) => f.type === F.RST_STREAM), 'RST_STREAM');
    expect(state.frames.find((f) => f.type === F.RST_STREAM)?.payload.readUInt32BE(0)).toBe(ERR.PROTOCOL_ERROR);
    expect(rec.reset?.kind).toBe('remote');
    expect(owner.closed).toBe(false);
  });
});
