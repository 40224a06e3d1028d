/**
 * Tunnels on the upstream HTTP/2 pool, on node:http2 and on meshlet's own framing, against real
 * node:http2 servers on 127.0.0.1: CONNECT (RFC 9113 §8.5) and extended CONNECT (RFC 8441, the
 * h2 form of a WebSocket upgrade, reported as 101) carry bytes both ways, each direction ends on
 * its own (half-close), a slow reader is flow-controlled without loss, and the pool's stream
 * gauge returns to zero when the tunnel ends.
 */
import http2 from 'node:http2';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import type { ClusterConfig } from '../../proxy/config/types';
import type { HeaderList, RequestEncoder, RequestHead, ResetReason, ResponseHead, ResponseSink } from '../../proxy/http/codec';
import { type H2Codec, H2ConnectionPool } from '../../proxy/http/h2/client-pool';
import { Host } from '../../proxy/upstream/host';
import { ClusterResourceManager, DEFAULT_THRESHOLDS } from '../../proxy/upstream/resources';
import { TcpTransportSocketFactory } from '../../proxy/upstream/transport';
import { ClusterStats } from '../../proxy/upstream/types';

const cleanups: (() => void | Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function startH2(onStream: (s: http2.ServerHttp2Stream, h: http2.IncomingHttpHeaders) => void, settings: http2.Settings) {
  const server = http2.createServer({ settings });
  const sessions: http2.ServerHttp2Session[] = [];
  server.on('session', (s) => {
    sessions.push(s);
    s.on('error', () => {});
  });
  server.on('stream', (s, h) => {
    s.on('error', () => {});
    onStream(s, h);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanups.push(async () => {
    for (const s of sessions) s.destroy();
    await new Promise((r) => server.close(r));
  });
  return (server.address() as net.AddressInfo).port;
}

function makePool(port: number, codec: H2Codec) {
  const stats = new ClusterStats();
  const resources = new ClusterResourceManager([{ ...DEFAULT_THRESHOLDS }], stats);
  const config = {
    connectTimeoutMs: 2000,
    http2: { maxConcurrentStreams: 100, initialStreamWindowSize: 65535, initialConnectionWindowSize: 1 << 20 },
    upstreamIdleTimeoutMs: 0,
    maxRequestsPerConnection: 0,
  } as unknown as ClusterConfig;
  const host = new Host({ kind: 'socket', host: '127.0.0.1', port });
  const pool = new H2ConnectionPool(host, { config, stats, resources, transport: new TcpTransportSocketFactory() }, { codec });
  cleanups.push(() => pool.destroy());
  return { pool, stats };
}

/** Opens a tunnel request; resolves with the response head and, for a tunnel, its byte stream. */
function open(pool: H2ConnectionPool, head: RequestHead) {
  return new Promise<{ head?: ResponseHead; tunnel?: Duplex; reset?: ResetReason }>((resolve) => {
    let enc: RequestEncoder | undefined;
    const sink: ResponseSink = {
      onResponseHeaders(h: ResponseHead) {
        const tunnelled = h.status === 101 || (head.method === 'CONNECT' && h.status === 200);
        resolve({ head: h, tunnel: tunnelled ? enc!.takeTunnel() : undefined });
      },
      onResponseData() {},
      onResponseTrailers(_t: HeaderList) {},
      onUpstreamReset: (reason) => resolve({ reset: reason }),
      onUpstreamWritable() {},
    };
    pool.newStream(sink, {
      onPoolReady: (e) => {
        enc = e;
        e.writeHeaders(head, true);
      },
      onPoolFailure: (reason) => resolve({ reset: reason }),
    });
  });
}

function readAll(d: Duplex): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = '';
    d.on('data', (c: Buffer) => (out += c.toString('latin1')));
    d.on('end', () => resolve(out));
    d.on('error', reject);
    d.resume();
  });
}

async function waitFor(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const start = Date.now();
  while (!cond()) {
    if (Date.now() - start > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const CONNECT: RequestHead = {
  method: 'CONNECT',
  path: 'target.example:443',
  authority: 'target.example:443',
  scheme: '',
  protocol: 'HTTP/1.1',
  headers: [],
  contentLength: -1,
};
const WS: RequestHead = {
  method: 'GET',
  path: '/chat',
  authority: 'ws.test',
  scheme: 'http',
  protocol: 'HTTP/1.1',
  headers: [],
  contentLength: 0,
  upgrade: 'websocket',
};

describe.each(['nghttp2', 'meshlet'] as const)('upstream HTTP/2 tunnels (%s codec)', (codec) => {
  it('CONNECT: :authority is the target, bytes both ways, each side ends on its own, gauges back to zero', async () => {
    let seen: http2.IncomingHttpHeaders | undefined;
    const port = await startH2((s, h) => {
      seen = h;
      s.respond({ ':status': 200 });
      let got = '';
      s.on('data', (c: Buffer) => {
        got += c.toString();
        s.write(`up:${c.toString()}`);
      });
      // The client ended its side: the server still answers, then ends its own.
      s.on('end', () => s.end(`after-end:${got.length}`));
    }, {});
    const { pool, stats } = makePool(port, codec);
    const r = await open(pool, CONNECT);
    expect(r.head?.status).toBe(200);
    expect(seen?.[':method']).toBe('CONNECT');
    expect(seen?.[':authority']).toBe('target.example:443');
    expect(seen?.[':path']).toBeUndefined();
    const t = r.tunnel!;
    const all = readAll(t);
    t.write('ping');
    await waitFor(() => pool.activeStreams === 1, 'stream active');
    t.end();
    expect(await all).toBe('up:pingafter-end:4');
    await waitFor(() => pool.activeStreams === 0, 'the stream gauge back to zero');
    t.destroy();
    expect(stats.upstreamCxActive).toBe(1);
    // The connection is reusable afterwards.
    const again = await open(pool, CONNECT);
    expect(again.head?.status).toBe(200);
    again.tunnel!.destroy();
    await waitFor(() => pool.activeStreams === 0, 'a destroyed tunnel frees its slot');
    expect(pool.connections).toBe(1);
  });

  it('extended CONNECT: :protocol websocket, 200 reported as 101 with the upgrade token; a slow reader loses nothing', async () => {
    let seen: http2.IncomingHttpHeaders | undefined;
    const big = Buffer.alloc(1 << 20, 'abcdefgh');
    const port = await startH2((s, h) => {
      seen = h;
      s.respond({ ':status': 200 });
      s.end(big);
    }, { enableConnectProtocol: true });
    const { pool } = makePool(port, codec);
    const r = await open(pool, WS);
    expect(seen?.[':method']).toBe('CONNECT');
    expect(seen?.[':protocol']).toBe('websocket');
    expect(seen?.[':path']).toBe('/chat');
    expect(r.head?.status).toBe(101);
    expect(r.head?.headers).toContain('websocket');
    const t = r.tunnel!;
    // Nobody reads for a while: the response is held by flow control, not lost.
    await new Promise((res) => setTimeout(res, 200));
    const got = await readAll(t);
    expect(got.length).toBe(big.length);
    expect(Buffer.from(got, 'latin1').equals(big)).toBe(true);
    t.end();
    await waitFor(() => pool.activeStreams === 0, 'the stream gauge back to zero');
  });

  it('a tunnel reset by the upstream errors the byte stream and frees the slot', async () => {
    const port = await startH2((s) => {
      s.respond({ ':status': 200 });
      s.on('data', () => s.close(http2.constants.NGHTTP2_INTERNAL_ERROR));
    }, {});
    const { pool } = makePool(port, codec);
    const r = await open(pool, CONNECT);
    const t = r.tunnel!;
    const closed = new Promise<void>((res) => t.on('close', () => res()));
    t.on('error', () => {});
    t.resume();
    t.write('x');
    await closed;
    await waitFor(() => pool.activeStreams === 0, 'the stream gauge back to zero');
  });
});

describe("upstream HTTP/2 tunnels (meshlet's own framing only)", () => {
  it('an extended CONNECT to a peer that did not enable it (RFC 8441 §3) fails with protocol_error, nothing is sent', async () => {
    let streams = 0;
    const port = await startH2(() => streams++, {});
    const { pool } = makePool(port, 'meshlet');
    const r = await open(pool, WS);
    expect(r.reset).toBe('protocol_error');
    expect(streams).toBe(0);
    await waitFor(() => pool.activeStreams === 0, 'the slot freed');
  });
});
