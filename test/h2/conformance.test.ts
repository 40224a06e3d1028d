/**
 * HTTP/2 conformance, the cases h2spec runs (RFC 9113 and RFC 7541), written as tests with raw
 * frames over real sockets against a meshlet HTTP listener (h2c prior knowledge). h2spec itself
 * cannot be installed here. Each case sends what h2spec sends and accepts what h2spec accepts: a
 * connection error is GOAWAY with the named code (or, as h2spec allows, the connection closed
 * before a GOAWAY could be read); a stream error is RST_STREAM with the code on that stream, or
 * the connection error. Whatever codec serves the listener (node:http2 today, meshlet's own
 * framing when it lands), these must hold.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stopAllMeshlets } from '../support/meshlet';
import { closeAll } from '../support/upstreams';
import { ERR, F, FLAG, frame, headers, hpack, ping, RawH2, requestBlock, SETTING, settings, windowUpdate } from '../hostile/h2-frames';
import { type Proxied, startProxied } from '../hostile/harness';
import { h2ServerCodecKind } from '../../proxy/http/h2/server-settings';

const E = { ...ERR, STREAM_CLOSED: 5, FRAME_SIZE_ERROR: 6, COMPRESSION_ERROR: 9 } as const;
let p: Proxied;
const open: RawH2[] = [];

/**
 * Cases node:http2 (Node 20, which serves meshlet's HTTP/2 today) gets wrong, each checked to
 * fail so that the list cannot go stale: when nghttp2 reports a connection error, Node destroys
 * the session with GOAWAY INTERNAL_ERROR instead of nghttp2's own GOAWAY with the RFC's code
 * (the connection is still ended; only the code is wrong); an unsolicited PING ACK is treated as
 * a protocol error and ends the connection (RFC 9113 §6.7: it must simply not be answered); a
 * HEADERS frame with a stream id lower than the last one is ignored instead of a connection
 * error. A codec that gets them right moves them back to `it`.
 */
const NODE_HTTP2_GAPS = new Set([
  '5.1: HEADERS on a half-closed (remote) stream is STREAM_CLOSED',
  '5.1.1: an even (server-side) stream id from the client is PROTOCOL_ERROR',
  '5.1.1: a stream id lower than one already used is PROTOCOL_ERROR',
  '6.2: HEADERS on stream 0 is PROTOCOL_ERROR',
  '6.4: RST_STREAM on stream 0 is PROTOCOL_ERROR',
  '6.4: RST_STREAM on an idle stream is PROTOCOL_ERROR',
  '6.5: SETTINGS on a stream other than 0 is PROTOCOL_ERROR',
  '6.5.2: SETTINGS_ENABLE_PUSH other than 0 or 1 is PROTOCOL_ERROR',
  '6.5.2: SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1 is FLOW_CONTROL_ERROR',
  '6.5.2: SETTINGS_MAX_FRAME_SIZE below 16,384 is PROTOCOL_ERROR',
  '6.7: a PING with ACK is not answered',
  '6.7: PING on a stream other than 0 is PROTOCOL_ERROR',
  '6.8: GOAWAY on a stream other than 0 is PROTOCOL_ERROR',
  '6.9: WINDOW_UPDATE with increment 0 on the connection is PROTOCOL_ERROR',
  '6.9: WINDOW_UPDATE with increment 0 on a stream is a stream PROTOCOL_ERROR',
  '6.9.1: a connection window pushed above 2^31-1 is FLOW_CONTROL_ERROR',
]);
const NODE_CODEC = h2ServerCodecKind() === 'nghttp2';
const h2it = (name: string, fn: () => Promise<void>): void => {
  // meshlet's own framing (the default) gets every case right; MESHLET_H2_SERVER_CODEC=nghttp2 does not.
  if (NODE_CODEC && NODE_HTTP2_GAPS.has(name)) it.fails(`${name} [node:http2 gap]`, fn, 8000);
  else it(name, fn);
};

beforeAll(async () => {
  p = await startProxied({});
});

afterAll(async () => {
  for (const c of open) c.destroy();
  await stopAllMeshlets();
  await closeAll();
});

/** A connection past the preface exchange: the server's SETTINGS seen and ACKed. */
async function conn(initial: [number, number][] = []): Promise<RawH2> {
  const c = await RawH2.connect(p.port, initial);
  open.push(c);
  expect(await c.waitFor(() => c.frames.some((f) => f.type === F.SETTINGS && (f.flags & FLAG.ACK) === 0), 5000)).toBe(true);
  return c;
}

async function expectConnectionError(c: RawH2, code: number): Promise<void> {
  await c.waitFor(() => c.goaway() !== undefined, 5000);
  const g = c.goaway();
  if (g === undefined) expect(c.closed, 'neither GOAWAY nor close').toBe(true);
  else expect(g.code).toBe(code);
}

async function expectStreamError(c: RawH2, streamId: number, code: number): Promise<void> {
  await c.waitFor(() => c.rstCodes().has(streamId) || c.goaway() !== undefined, 5000);
  const r = c.rstCodes().get(streamId);
  if (r !== undefined) expect(r).toBe(code);
  else await expectConnectionError(c, code);
}

/** A 200 response HEADERS on the stream (the connection is still usable). */
async function expectResponse(c: RawH2, streamId: number): Promise<void> {
  expect(await c.waitFor(() => c.headersOn(streamId), 5000)).toBe(true);
  expect(c.goaway()).toBeUndefined();
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
}

describe('RFC 9113 §3.4 / §4 connection preface and frames', () => {
  it('3.4: an invalid connection preface ends the connection', async () => {
    const { default: net } = await import('node:net');
    const s = net.connect(p.port, '127.0.0.1');
    let closed = false;
    await new Promise<void>((r) => s.once('connect', r));
    s.on('error', () => {});
    s.on('close', () => (closed = true));
    s.write('PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n');
    await new Promise((r) => setTimeout(r, 1500));
    if (!closed) {
      // Sniffing listeners may treat it as HTTP/1.1 and answer 4xx; either way nothing is proxied.
      let text = '';
      s.on('data', (d: Buffer) => (text += d.toString('latin1')));
      await new Promise((r) => setTimeout(r, 500));
      expect(closed || /^HTTP\/1\.1 4\d\d/.test(text)).toBe(true);
    }
    s.destroy();
  });

  it('4.1: an unknown frame type is ignored', async () => {
    const c = await conn();
    c.write(frame(0x20, 0, 0, Buffer.from('ignored')));
    c.write(headers(1, requestBlock('/unknown-type')));
    await expectResponse(c, 1);
  });

  it('4.1: unknown flags are ignored (PING with 0xfe)', async () => {
    const c = await conn();
    const pl = Buffer.from('h2spec!!');
    c.write(frame(F.PING, 0xfe, 0, pl));
    expect(await c.waitFor(() => c.frames.some((f) => f.type === F.PING && (f.flags & FLAG.ACK) !== 0), 5000)).toBe(true);
    expect(c.frames.find((f) => f.type === F.PING && (f.flags & FLAG.ACK) !== 0)!.payload).toEqual(pl);
  });

  it('4.1: the reserved bit of the stream id is ignored', async () => {
    const c = await conn();
    const h = headers(1, requestBlock('/reserved'));
    h[5] = h[5]! | 0x80;
    c.write(h);
    await expectResponse(c, 1);
  });

  it('4.2: a DATA frame over SETTINGS_MAX_FRAME_SIZE is FRAME_SIZE_ERROR', async () => {
    const c = await conn();
    c.write(headers(1, requestBlock('/big', 'POST'), false));
    c.write(frame(F.DATA, FLAG.END_STREAM, 1, Buffer.alloc(16_385)));
    await expectStreamError(c, 1, E.FRAME_SIZE_ERROR);
  });

  it('4.3: a header block that does not decode is COMPRESSION_ERROR', async () => {
    const c = await conn();
    // Indexed header field 0 is invalid in HPACK.
    c.write(headers(1, Buffer.from([0x80])));
    await expectConnectionError(c, E.COMPRESSION_ERROR);
  });
});

describe('RFC 9113 §5 streams', () => {
  it('5.1: DATA on an idle stream is a connection PROTOCOL_ERROR', async () => {
    const c = await conn();
    c.write(frame(F.DATA, FLAG.END_STREAM, 1, Buffer.from('x')));
    await expectConnectionError(c, E.PROTOCOL_ERROR);
  });

  h2it('5.1: HEADERS on a half-closed (remote) stream is STREAM_CLOSED', async () => {
    const c = await conn();
    c.write(headers(1, requestBlock('/slow-enough')));
    c.write(headers(1, requestBlock('/again')));
    await expectStreamError(c, 1, E.STREAM_CLOSED);
  });

  h2it('5.1.1: an even (server-side) stream id from the client is PROTOCOL_ERROR', async () => {
    const c = await conn();
    c.write(headers(2, requestBlock('/even')));
    await expectConnectionError(c, E.PROTOCOL_ERROR);
  });

  h2it('5.1.1: a stream id lower than one already used is PROTOCOL_ERROR', async () => {
    const c = await conn();
    c.write(headers(5, requestBlock('/five')));
    await expectResponse(c, 5);
    c.write(headers(3, requestBlock('/three')));
    await expectConnectionError(c, E.PROTOCOL_ERROR);
  });

  it('5.3.1: a stream that depends on itself is PROTOCOL_ERROR', async () => {
    const c = await conn();
    const pl = Buffer.alloc(5);
    pl.writeUInt32BE(1);
    pl[4] = 16;
    c.write(frame(F.PRIORITY, 0, 1, pl));
    await expectStreamError(c, 1, E.PROTOCOL_ERROR);
  });

  it('5.5: an unknown extension frame in the middle of a header block is PROTOCOL_ERROR', async () => {
    const c = await conn();
    const block = requestBlock('/split');
    c.write(headers(1, block.subarray(0, 5), true, false));
    c.write(frame(0x20, 0, 1, Buffer.from('x')));
    c.write(frame(F.CONTINUATION, FLAG.END_HEADERS, 1, block.subarray(5)));
    await expectConnectionError(c, E.PROTOCOL_ERROR);
  });
});

describe('RFC 9113 §6 frame definitions', () => {
  it('6.1: DATA on stream 0 is PROTOCOL_ERROR', async () => {
    const c = await conn();
    c.write(frame(F.DATA, 0, 0, Buffer.from('x')));
    await expectConnectionError(c, E.PROTOCOL_ERROR);
  });

  h2it('6.2: HEADERS on stream 0 is PROTOCOL_ERROR', async () => {
    const c = await conn();
    c.write(headers(0, requestBlock('/zero')));
    await expectConnectionError(c, E.PROTOCOL_ERROR);
  });

  it('6.3: PRIORITY with a length other than 5 is FRAME_SIZE_ERROR', async () => {
    const c = await conn();
    c.write(frame(F.PRIORITY, 0, 1, Buffer.alloc(4)));
    await expectStreamError(c, 1, E.FRAME_SIZE_ERROR);
  });

  h2it('6.4: RST_STREAM on stream 0 is PROTOCOL_ERROR', async () => {
    const c = await conn();
    c.write(frame(F.RST_STREAM, 0, 0, u32(ERR.CANCEL)));
    await expectConnectionError(c, E.PROTOCOL_ERROR);
  });

  h2it('6.4: RST_STREAM on an idle stream is PROTOCOL_ERROR', async () => {
    const c = await conn();
    c.write(frame(F.RST_STREAM, 0, 1, u32(ERR.CANCEL)));
    await expectConnectionError(c, E.PROTOCOL_ERROR);
  });

  it('6.4: RST_STREAM with a length other than 4 is FRAME_SIZE_ERROR', async () => {
    const c = await conn();
    c.write(headers(1, requestBlock('/rst'), false));
    c.write(frame(F.RST_STREAM, 0, 1, Buffer.alloc(3)));
    await expectConnectionError(c, E.FRAME_SIZE_ERROR);
  });

  it('6.5: SETTINGS with ACK and a payload is FRAME_SIZE_ERROR', async () => {
    const c = await conn();
    c.write(frame(F.SETTINGS, FLAG.ACK, 0, Buffer.alloc(6)));
    await expectConnectionError(c, E.FRAME_SIZE_ERROR);
  });

  h2it('6.5: SETTINGS on a stream other than 0 is PROTOCOL_ERROR', async () => {
    const c = await conn();
    c.write(frame(F.SETTINGS, 0, 1, Buffer.alloc(0)));
    await expectConnectionError(c, E.PROTOCOL_ERROR);
  });

  it('6.5: SETTINGS whose length is not a multiple of 6 is FRAME_SIZE_ERROR', async () => {
    const c = await conn();
    c.write(frame(F.SETTINGS, 0, 0, Buffer.alloc(3)));
    await expectConnectionError(c, E.FRAME_SIZE_ERROR);
  });

  h2it('6.5.2: SETTINGS_ENABLE_PUSH other than 0 or 1 is PROTOCOL_ERROR', async () => {
    const c = await conn();
    c.write(settings([[SETTING.ENABLE_PUSH, 2]]));
    await expectConnectionError(c, E.PROTOCOL_ERROR);
  });

  h2it('6.5.2: SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1 is FLOW_CONTROL_ERROR', async () => {
    const c = await conn();
    c.write(settings([[SETTING.INITIAL_WINDOW_SIZE, 0x80000000]]));
    await expectConnectionError(c, E.FLOW_CONTROL_ERROR);
  });

  h2it('6.5.2: SETTINGS_MAX_FRAME_SIZE below 16,384 is PROTOCOL_ERROR', async () => {
    const c = await conn();
    c.write(settings([[SETTING.MAX_FRAME_SIZE, 16_383]]));
    await expectConnectionError(c, E.PROTOCOL_ERROR);
  });

  it('6.5.2: an unknown setting is ignored and ACKed', async () => {
    const c = await conn();
    const before = c.frames.filter((f) => f.type === F.SETTINGS && (f.flags & FLAG.ACK) !== 0).length;
    c.write(settings([[0xff, 1]]));
    expect(await c.waitFor(() => c.frames.filter((f) => f.type === F.SETTINGS && (f.flags & FLAG.ACK) !== 0).length > before, 5000)).toBe(true);
    c.write(headers(1, requestBlock('/after-unknown-setting')));
    await expectResponse(c, 1);
  });

  it('6.7: PING is answered with ACK and the same payload', async () => {
    const c = await conn();
    c.write(ping(0x1234));
    expect(await c.waitFor(() => c.frames.some((f) => f.type === F.PING && (f.flags & FLAG.ACK) !== 0), 5000)).toBe(true);
    expect(c.frames.find((f) => f.type === F.PING && (f.flags & FLAG.ACK) !== 0)!.payload.readUInt32BE(4)).toBe(0x1234);
  });

  h2it('6.7: a PING with ACK is not answered', async () => {
    const c = await conn();
    c.write(frame(F.PING, FLAG.ACK, 0, Buffer.alloc(8)));
    c.write(headers(1, requestBlock('/after-ping-ack')));
    await expectResponse(c, 1);
    expect(c.frames.filter((f) => f.type === F.PING)).toHaveLength(0);
  });

  h2it('6.7: PING on a stream other than 0 is PROTOCOL_ERROR', async () => {
    const c = await conn();
    c.write(frame(F.PING, 0, 1, Buffer.alloc(8)));
    await expectConnectionError(c, E.PROTOCOL_ERROR);
  });

  it('6.7: PING with a length other than 8 is FRAME_SIZE_ERROR', async () => {
    const c = await conn();
    c.write(frame(F.PING, 0, 0, Buffer.alloc(6)));
    await expectConnectionError(c, E.FRAME_SIZE_ERROR);
  });

  h2it('6.8: GOAWAY on a stream other than 0 is PROTOCOL_ERROR', async () => {
    const c = await conn();
    c.write(frame(F.GOAWAY, 0, 1, Buffer.concat([u32(0), u32(0)])));
    await expectConnectionError(c, E.PROTOCOL_ERROR);
  });

  h2it('6.9: WINDOW_UPDATE with increment 0 on the connection is PROTOCOL_ERROR', async () => {
    const c = await conn();
    c.write(windowUpdate(0, 0));
    await expectConnectionError(c, E.PROTOCOL_ERROR);
  });

  h2it('6.9: WINDOW_UPDATE with increment 0 on a stream is a stream PROTOCOL_ERROR', async () => {
    const c = await conn();
    c.write(headers(1, requestBlock('/wu0', 'POST'), false));
    c.write(windowUpdate(1, 0));
    await expectStreamError(c, 1, E.PROTOCOL_ERROR);
  });

  it('6.9: WINDOW_UPDATE with a length other than 4 is FRAME_SIZE_ERROR', async () => {
    const c = await conn();
    c.write(frame(F.WINDOW_UPDATE, 0, 0, Buffer.alloc(3)));
    await expectConnectionError(c, E.FRAME_SIZE_ERROR);
  });

  h2it('6.9.1: a connection window pushed above 2^31-1 is FLOW_CONTROL_ERROR', async () => {
    const c = await conn();
    c.write(windowUpdate(0, 0x7fffffff));
    c.write(windowUpdate(0, 0x7fffffff));
    await expectConnectionError(c, E.FLOW_CONTROL_ERROR);
  });

  it('6.9.1: a stream window pushed above 2^31-1 is a stream FLOW_CONTROL_ERROR', async () => {
    const c = await conn();
    c.write(headers(1, requestBlock('/wu-overflow', 'POST'), false));
    c.write(windowUpdate(1, 0x7fffffff));
    c.write(windowUpdate(1, 0x7fffffff));
    await expectStreamError(c, 1, E.FLOW_CONTROL_ERROR);
  });

  it('6.10: CONTINUATION without a preceding HEADERS is PROTOCOL_ERROR', async () => {
    const c = await conn();
    c.write(frame(F.CONTINUATION, FLAG.END_HEADERS, 1, requestBlock('/cont')));
    await expectConnectionError(c, E.PROTOCOL_ERROR);
  });

  it('6.10: a header block split over HEADERS and CONTINUATION is served', async () => {
    const c = await conn();
    const block = requestBlock('/split-ok');
    c.write(headers(1, block.subarray(0, 7), true, false));
    c.write(frame(F.CONTINUATION, FLAG.END_HEADERS, 1, block.subarray(7)));
    await expectResponse(c, 1);
  });

  it('6.10: another stream\'s frame inside a header block is PROTOCOL_ERROR', async () => {
    const c = await conn();
    const block = requestBlock('/interleaved');
    c.write(headers(1, block.subarray(0, 7), true, false));
    c.write(headers(3, requestBlock('/other')));
    await expectConnectionError(c, E.PROTOCOL_ERROR);
  });
});

describe('RFC 9113 §8 HTTP message exchanges', () => {
  const bad: [string, [string, string][]][] = [
    ['an upper-case header name', [[':method', 'GET'], [':scheme', 'http'], [':authority', 'x'], [':path', '/'], ['X-Upper', 'a']]],
    ['an unknown pseudo-header', [[':method', 'GET'], [':scheme', 'http'], [':authority', 'x'], [':path', '/'], [':bogus', 'a']]],
    ['a pseudo-header after a regular header', [[':method', 'GET'], [':scheme', 'http'], ['x-a', 'a'], [':path', '/']]],
    ['a connection-specific header', [[':method', 'GET'], [':scheme', 'http'], [':authority', 'x'], [':path', '/'], ['connection', 'keep-alive']]],
    ['TE other than trailers', [[':method', 'GET'], [':scheme', 'http'], [':authority', 'x'], [':path', '/'], ['te', 'gzip']]],
    ['no :method', [[':scheme', 'http'], [':authority', 'x'], [':path', '/']]],
    ['no :path', [[':method', 'GET'], [':scheme', 'http'], [':authority', 'x']]],
    ['an empty :path', [[':method', 'GET'], [':scheme', 'http'], [':authority', 'x'], [':path', '']]],
    ['a duplicated :path', [[':method', 'GET'], [':scheme', 'http'], [':authority', 'x'], [':path', '/'], [':path', '/']]],
    ['a response pseudo-header in a request', [[':method', 'GET'], [':scheme', 'http'], [':authority', 'x'], [':path', '/'], [':status', '200']]],
  ];
  for (const [what, fields] of bad) {
    it(`8.2/8.3: a request with ${what} is malformed: PROTOCOL_ERROR, nothing proxied`, async () => {
      const before = p.echo.requests.length;
      const c = await conn();
      c.write(headers(1, hpack(fields)));
      await expectStreamError(c, 1, E.PROTOCOL_ERROR);
      expect(p.echo.requests.length).toBe(before);
    });
  }

  it('8.1.1: DATA longer than content-length is malformed: PROTOCOL_ERROR', async () => {
    const c = await conn();
    c.write(headers(1, requestBlock('/cl', 'POST', [['content-length', '1']]), false));
    c.write(frame(F.DATA, FLAG.END_STREAM, 1, Buffer.from('too long')));
    await expectStreamError(c, 1, E.PROTOCOL_ERROR);
  });

  it('8.1: trailers without END_STREAM are malformed: PROTOCOL_ERROR', async () => {
    const c = await conn();
    c.write(headers(1, requestBlock('/trailers', 'POST'), false));
    c.write(frame(F.DATA, 0, 1, Buffer.from('x')));
    c.write(headers(1, hpack([['x-trailer', 'a']]), false));
    await expectStreamError(c, 1, E.PROTOCOL_ERROR);
  });
});
