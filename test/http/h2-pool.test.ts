/**
 * H2ConnectionPool against real node:http2 servers on 127.0.0.1: multiplexing, the peer's
 * SETTINGS_MAX_CONCURRENT_STREAMS, circuit breakers, GOAWAY, refused and reset streams, connect
 * failure, trailers, streaming, idle close, and TLS with ALPN h2.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http2 from 'node:http2';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ClusterConfig } from '../../proxy/config/types';
import type {
  HeaderList,
  RequestEncoder,
  ResetReason,
  ResponseHead,
  ResponseSink,
  UpstreamInfo,
} from '../../proxy/http/codec';
import { type H2Codec, H2ConnectionPool, type H2PoolSettings } from '../../proxy/http/h2/client-pool';
import { Host } from '../../proxy/upstream/host';
import { ClusterResourceManager, DEFAULT_THRESHOLDS } from '../../proxy/upstream/resources';
import { TcpTransportSocketFactory } from '../../proxy/upstream/transport';
import { ClusterStats, type TransportSocketFactory } from '../../proxy/upstream/types';

const cleanups: (() => void | Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A real HTTP/2 server; `onStream` answers; sessions and streams are counted. */
async function startH2(
  onStream: (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => void,
  settings: http2.Settings = {},
  secure?: { key: Buffer; cert: Buffer },
): Promise<{ port: number; sessions: http2.ServerHttp2Session[]; streams: number; server: http2.Http2Server }> {
  const server = secure
    ? http2.createSecureServer({ key: secure.key, cert: secure.cert, settings, ALPNProtocols: ['h2'] })
    : http2.createServer({ settings });
  const state = {
    port: 0,
    sessions: [] as http2.ServerHttp2Session[],
    streams: 0,
    server: server as http2.Http2Server,
  };
  server.on('session', (s) => {
    state.sessions.push(s);
    s.on('error', () => {});
  });
  server.on('stream', (stream, headers) => {
    state.streams++;
    stream.on('error', () => {});
    onStream(stream, headers);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  state.port = (server.address() as net.AddressInfo).port;
  cleanups.push(async () => {
    for (const s of state.sessions) s.destroy();
    await new Promise((r) => server.close(r));
  });
  return state;
}

function makePool(
  port: number,
  opts: {
    maxConnections?: number;
    maxPending?: number;
    settings?: Partial<H2PoolSettings>;
    transport?: TransportSocketFactory;
  } = {},
) {
  const stats = new ClusterStats();
  const resources = new ClusterResourceManager(
    [
      {
        ...DEFAULT_THRESHOLDS,
        maxConnections: opts.maxConnections ?? 1024,
        maxPendingRequests: opts.maxPending ?? 1024,
      },
    ],
    stats,
  );
  const config = {
    connectTimeoutMs: 2000,
    http2: { maxConcurrentStreams: 100, initialStreamWindowSize: 65535, initialConnectionWindowSize: 1 << 20 },
    upstreamIdleTimeoutMs: 0,
    maxRequestsPerConnection: 0,
  } as unknown as ClusterConfig;
  const host = new Host({ kind: 'socket', host: '127.0.0.1', port });
  const pool = new H2ConnectionPool(
    host,
    { config, stats, resources, transport: opts.transport ?? new TcpTransportSocketFactory() },
    { codec, ...opts.settings },
  );
  cleanups.push(() => pool.destroy());
  return { pool, stats, resources, host };
}

/** Records everything an upstream stream reports. */
class Recorder implements ResponseSink {
  head: ResponseHead | undefined;
  body: Buffer[] = [];
  trailers: HeaderList | undefined;
  reset: ResetReason | undefined;
  ended = false;
  encoder: RequestEncoder | undefined;
  info: UpstreamInfo | undefined;
  failure: { reason: ResetReason; detail: string } | undefined;
  onChunk: ((c: Buffer) => void) | undefined;
  private resolveDone!: () => void;
  readonly done = new Promise<void>((r) => {
    this.resolveDone = r;
  });
  readonly callbacks = {
    onPoolReady: (enc: RequestEncoder, info: UpstreamInfo) => {
      this.encoder = enc;
      this.info = info;
    },
    onPoolFailure: (reason: ResetReason, detail: string) => {
      this.failure = { reason, detail };
      this.resolveDone();
    },
  };
  onResponseHeaders(head: ResponseHead, endStream: boolean): void {
    this.head = head;
    if (endStream) this.finish();
  }
  onResponseData(chunk: Buffer, endStream: boolean): void {
    if (chunk.length > 0) {
      this.body.push(chunk);
      this.onChunk?.(chunk);
    }
    if (endStream) this.finish();
  }
  onResponseTrailers(trailers: HeaderList): void {
    this.trailers = trailers;
    this.finish();
  }
  onUpstreamReset(reason: ResetReason): void {
    this.reset = reason;
    this.resolveDone();
  }
  onUpstreamWritable(): void {}
  private finish(): void {
    this.ended = true;
    this.resolveDone();
  }
  text(): string {
    return Buffer.concat(this.body).toString();
  }
}

function get(path: string, headers: HeaderList = []) {
  return {
    method: 'GET',
    path,
    authority: 'upstream.test',
    scheme: 'http',
    protocol: 'HTTP/1.1' as const,
    headers,
    contentLength: 0,
  };
}

function within<T>(p: Promise<T>, ms = 5000, what = 'operation'): Promise<T> {
  return Promise.race([
    p,
    new Promise<T>((_, rej) => setTimeout(() => rej(new Error(`${what} did not finish in ${ms}ms`)), ms).unref()),
  ]);
}

async function waitFor(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const start = Date.now();
  while (!cond()) {
    if (Date.now() - start > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

function request(pool: H2ConnectionPool, path: string, headers: HeaderList = []): Recorder {
  const rec = new Recorder();
  pool.newStream(rec, {
    onPoolReady: (enc, info) => {
      rec.callbacks.onPoolReady(enc, info);
      enc.writeHeaders(get(path, headers), true);
    },
    onPoolFailure: rec.callbacks.onPoolFailure,
  });
  return rec;
}

/** The HTTP/2 implementation under test: every case runs on node:http2 and on meshlet's own framing. */
let codec: H2Codec = 'nghttp2';

describe.each(['nghttp2', 'meshlet'] as const)('H2ConnectionPool (%s codec)', (which) => {
  beforeEach(() => {
    codec = which;
  });

  it('multiplexes concurrent requests over one connection and maps headers both ways', async () => {
    const up = await startH2((stream, headers) => {
      stream.respond({
        ':status': 200,
        'x-path': String(headers[':path']),
        'x-auth': String(headers[':authority']),
        'set-cookie': ['a=1', 'b=2'],
      });
      stream.end(`${headers[':method']} ${headers['x-req']} ${headers.connection ?? 'no-connection-header'}`);
    });
    const { pool, stats } = makePool(up.port);
    const recs: Recorder[] = [];
    for (let i = 0; i < 20; i++)
      recs.push(request(pool, `/r/${i}`, ['x-req', `v${i}`, 'connection', 'keep-alive', 'keep-alive', 'timeout=5']));
    await within(Promise.all(recs.map((r) => r.done)));
    for (let i = 0; i < 20; i++) {
      const r = recs[i] as Recorder;
      expect(r.reset).toBeUndefined();
      expect(r.head?.status).toBe(200);
      expect(r.text()).toBe(`GET v${i} no-connection-header`);
      const h = r.head?.headers ?? [];
      expect(h[h.indexOf('x-path') + 1]).toBe(`/r/${i}`);
      expect(h[h.indexOf('x-auth') + 1]).toBe('upstream.test');
      expect(h.filter((x) => x === 'set-cookie')).toHaveLength(2);
    }
    expect(up.sessions).toHaveLength(1);
    expect(up.streams).toBe(20);
    // Our SETTINGS and connection window reached the server.
    const upSession = up.sessions[0] as http2.ServerHttp2Session;
    expect(upSession.remoteSettings.enablePush).toBe(false);
    await waitFor(
      () => upSession.state.remoteWindowSize !== undefined && upSession.state.remoteWindowSize > 65535 * 4,
      'connection window',
    );
    expect(pool.connections).toBe(1);
    await waitFor(() => pool.activeStreams === 0, 'all stream slots freed');
    expect(stats.upstreamCxTotal).toBe(1);
    expect(recs[0]?.info?.protocol).toBe('HTTP/2');
    expect(recs[0]?.info?.localAddress).toBe('127.0.0.1');
  });

  it("opens another connection when the peer's SETTINGS_MAX_CONCURRENT_STREAMS is reached", async () => {
    const held: http2.ServerHttp2Stream[] = [];
    const up = await startH2(
      (stream, headers) => {
        if (headers[':path'] === '/warm') {
          stream.respond({ ':status': 204 });
          return;
        }
        held.push(stream);
      },
      { maxConcurrentStreams: 2 },
    );
    const { pool, stats } = makePool(up.port);
    // One request first so the pool has learnt the peer's SETTINGS.
    const warm = request(pool, '/warm');
    await within(warm.done);
    expect(warm.head?.status).toBe(204);
    const recs = [0, 1, 2, 3, 4].map((i) => request(pool, `/held/${i}`));
    await waitFor(() => held.length === 5, 'five held streams at the server');
    expect(up.sessions).toHaveLength(3);
    expect(pool.connections).toBe(3);
    expect(pool.activeStreams).toBe(5);
    for (const s of held) {
      s.respond({ ':status': 200 });
      s.end('ok');
    }
    await within(Promise.all(recs.map((r) => r.done)));
    expect(recs.every((r) => r.text() === 'ok')).toBe(true);
    expect(stats.upstreamCxTotal).toBe(3);
  });

  it('queues on the connections circuit breaker and overflows the pending queue', async () => {
    const held: http2.ServerHttp2Stream[] = [];
    const up = await startH2(
      (stream, headers) => {
        if (headers[':path'] === '/warm') {
          stream.respond({ ':status': 204 });
          return;
        }
        held.push(stream);
      },
      { maxConcurrentStreams: 1 },
    );
    const { pool, stats, resources } = makePool(up.port, { maxConnections: 1, maxPending: 1 });
    const warm = request(pool, '/warm');
    await within(warm.done);
    const first = request(pool, '/a');
    await waitFor(() => held.length === 1, 'first stream at the server');
    const second = request(pool, '/b');
    expect(pool.pending).toBe(1);
    expect(resources.pendingRequests.count).toBe(1);
    const third = request(pool, '/c');
    // Overflow is reported synchronously.
    expect(third.failure?.reason).toBe('overflow');
    expect(stats.upstreamRqPendingOverflow).toBe(1);
    expect(stats.upstreamCxOverflow).toBeGreaterThanOrEqual(1);
    expect(pool.connections).toBe(1);
    (held[0] as http2.ServerHttp2Stream).respond({ ':status': 200 });
    (held[0] as http2.ServerHttp2Stream).end('a');
    await within(first.done);
    await waitFor(() => held.length === 2, 'queued stream dispatched');
    expect(pool.pending).toBe(0);
    expect(resources.pendingRequests.count).toBe(0);
    (held[1] as http2.ServerHttp2Stream).respond({ ':status': 200 });
    (held[1] as http2.ServerHttp2Stream).end('b');
    await within(second.done);
    expect(second.text()).toBe('b');
    expect(up.sessions).toHaveLength(1);
  });

  it('cancelling a pending request removes it from the queue', async () => {
    const held: http2.ServerHttp2Stream[] = [];
    const up = await startH2((stream) => held.push(stream), { maxConcurrentStreams: 1 });
    const { pool, resources } = makePool(up.port, { maxConnections: 1 });
    request(pool, '/a');
    await waitFor(() => held.length === 1, 'first stream');
    const rec = new Recorder();
    const handle = pool.newStream(rec, rec.callbacks);
    expect(handle).toBeDefined();
    expect(pool.pending).toBe(1);
    handle?.cancel();
    expect(pool.pending).toBe(0);
    expect(resources.pendingRequests.count).toBe(0);
    (held[0] as http2.ServerHttp2Stream).respond({ ':status': 200 });
    (held[0] as http2.ServerHttp2Stream).end();
    await new Promise((r) => setTimeout(r, 50));
    expect(rec.encoder).toBeUndefined();
    expect(held).toHaveLength(1);
  });

  it('GOAWAY: active streams finish, new streams go to a new connection', async () => {
    const held: http2.ServerHttp2Stream[] = [];
    const up = await startH2((stream) => held.push(stream));
    const { pool } = makePool(up.port);
    const first = request(pool, '/first');
    await waitFor(() => held.length === 1, 'first stream');
    const session = up.sessions[0] as http2.ServerHttp2Session;
    // Graceful GOAWAY (NO_ERROR, last stream id = the active one).
    session.close();
    await waitFor(() => pool.connections === 1 && held.length === 1, 'goaway');
    await new Promise((r) => setTimeout(r, 30));
    const second = request(pool, '/second');
    await waitFor(() => held.length === 2, 'second stream on a new connection');
    expect(up.sessions).toHaveLength(2);
    for (const s of held) {
      s.respond({ ':status': 200 });
      s.end(s === held[0] ? 'one' : 'two');
    }
    await within(Promise.all([first.done, second.done]));
    expect(first.reset).toBeUndefined();
    expect(first.text()).toBe('one');
    expect(second.text()).toBe('two');
    await waitFor(() => pool.connections === 1, 'the GOAWAY connection to close');
  });

  it('a GOAWAY whose last-stream-id excludes an active stream reports refused_stream', async () => {
    // node's own server always sends its last processed stream id, so this peer is a raw socket
    // that answers the preface with SETTINGS and, on the first HEADERS frame, sends
    // GOAWAY(last-stream-id 0, NO_ERROR): "I processed nothing".
    const server = net.createServer((sock) => {
      let buf = Buffer.alloc(0);
      let prefaceSeen = false;
      sock.on('error', () => {});
      sock.on('data', (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        if (!prefaceSeen) {
          if (buf.length < 24) return;
          buf = buf.subarray(24);
          prefaceSeen = true;
          sock.write(Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0])); // SETTINGS (empty)
        }
        while (buf.length >= 9) {
          const len = buf.readUIntBE(0, 3);
          const type = buf[3];
          const flags = buf[4] as number;
          if (buf.length < 9 + len) return;
          buf = buf.subarray(9 + len);
          if (type === 4 && (flags & 1) === 0) sock.write(Buffer.from([0, 0, 0, 4, 1, 0, 0, 0, 0])); // SETTINGS ACK
          if (type === 1) sock.write(Buffer.from([0, 0, 8, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])); // GOAWAY
        }
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const sockets: net.Socket[] = [];
    server.on('connection', (s: net.Socket) => sockets.push(s));
    cleanups.push(async () => {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    });
    const { pool } = makePool((server.address() as net.AddressInfo).port);
    const rec = request(pool, '/never-processed');
    await within(rec.done);
    expect(rec.reset).toBe('refused_stream');
    expect(rec.head).toBeUndefined();
    await waitFor(() => pool.activeStreams === 0, 'slot freed');
  });

  it('max_requests_per_connection retires a connection after that many streams', async () => {
    const up = await startH2((stream) => {
      stream.respond({ ':status': 200 });
      stream.end('ok');
    });
    const { pool } = makePool(up.port, { settings: { maxRequestsPerConnection: 2 } });
    for (let i = 0; i < 3; i++) await within(request(pool, `/${i}`).done);
    expect(up.sessions).toHaveLength(2);
    await waitFor(() => pool.connections === 1, 'the retired connection to close');
  });

  it('maps REFUSED_STREAM to refused_stream and other RST_STREAM codes to remote_reset', async () => {
    const up = await startH2((stream, headers) => {
      stream.close(
        headers[':path'] === '/refuse'
          ? http2.constants.NGHTTP2_REFUSED_STREAM
          : http2.constants.NGHTTP2_INTERNAL_ERROR,
      );
    });
    const { pool } = makePool(up.port);
    const refused = request(pool, '/refuse');
    const reset = request(pool, '/reset');
    await within(Promise.all([refused.done, reset.done]));
    expect(refused.reset).toBe('refused_stream');
    expect(reset.reset).toBe('remote_reset');
    expect(pool.activeStreams).toBe(0);
  });

  it('reports connection_termination when the upstream connection dies mid-stream', async () => {
    const up = await startH2((stream) => {
      stream.respond({ ':status': 200 });
      stream.write('partial');
      // Kill the TCP connection under the session (the raw socket, as a crash would).
      setTimeout(() => rawSockets[0]?.destroy(), 20);
    });
    const rawSockets: net.Socket[] = [];
    up.server.on('connection', (s: net.Socket) => rawSockets.push(s));
    const { pool, stats } = makePool(up.port);
    const rec = request(pool, '/die');
    await within(rec.done);
    expect(rec.head?.status).toBe(200);
    expect(rec.reset).toBe('connection_termination');
    await waitFor(() => pool.connections === 0, 'connection removed');
    expect(stats.upstreamCxActive).toBe(0);
  });

  it('an upstream that answers with garbage fails the request, not the process', async () => {
    const server = net.createServer((sock) => {
      sock.on('error', () => {});
      sock.once('data', () => sock.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n'));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    cleanups.push(() => new Promise((r) => server.close(() => r(undefined))));
    const { pool } = makePool((server.address() as net.AddressInfo).port);
    const rec = request(pool, '/');
    await within(rec.done);
    expect(rec.head).toBeUndefined();
    expect(rec.reset ?? rec.failure?.reason).toMatch(/connection_termination|connect_failure/);
    await waitFor(() => pool.connections === 0, 'connection removed');
  });

  it('fails pending requests with the connect failure reason', async () => {
    const up = await startH2(() => {});
    const port = up.port;
    await new Promise((r) => up.server.close(r));
    const { pool, stats, host } = makePool(port);
    const a = request(pool, '/a');
    const b = request(pool, '/b');
    await within(Promise.all([a.done, b.done]));
    expect(a.failure?.reason).toBe('connect_failure');
    expect(b.failure?.reason).toBe('connect_failure');
    expect(stats.upstreamCxConnectFail).toBe(1);
    expect(host.stats.cxConnectFail).toBe(1);
    expect(pool.connections).toBe(0);
    expect(pool.pending).toBe(0);
  });

  it('counts a connect timeout from the transport and fails the queue with reason timeout', async () => {
    const timeoutTransport: TransportSocketFactory = {
      connect(_host, _opts, cb) {
        setTimeout(() => cb({ reason: 'timeout', detail: 'connect timeout after 10ms' }, undefined), 10);
      },
    };
    const { pool, stats } = makePool(1, { transport: timeoutTransport });
    const rec = request(pool, '/');
    await within(rec.done);
    expect(rec.failure).toEqual({ reason: 'timeout', detail: 'connect timeout after 10ms' });
    expect(stats.upstreamCxConnectTimeout).toBe(1);
    expect(stats.upstreamCxConnectFail).toBe(1);
    expect(pool.connections).toBe(0);
  });

  it('drain() during connection set-up serves the queued request, then closes that connection', async () => {
    const up = await startH2((stream) => {
      stream.respond({ ':status': 200 });
      stream.end('served');
    });
    const { pool } = makePool(up.port);
    const rec = request(pool, '/queued');
    expect(pool.connections).toBe(1);
    pool.drain();
    await within(rec.done);
    expect(rec.text()).toBe('served');
    await waitFor(() => pool.connections === 0, 'the drained connection to close');
  });

  it('streams request and response bodies both ways and carries trailers', async () => {
    const up = await startH2((stream) => {
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.on('data', (c: Buffer) => stream.write(`echo:${c.toString()};`));
      stream.on('trailers', (t) => {
        stream.once('wantTrailers', () =>
          stream.sendTrailers({ 'grpc-status': '0', 'x-got': String(t['x-req-trailer']) }),
        );
      });
      stream.on('end', () => stream.end());
    });
    const { pool } = makePool(up.port);
    const rec = new Recorder();
    let enc: RequestEncoder | undefined;
    const ready = new Promise<void>((resolve) => {
      pool.newStream(rec, {
        onPoolReady: (e) => {
          enc = e;
          e.writeHeaders(
            {
              ...get('/svc/Method'),
              method: 'POST',
              contentLength: -1,
              headers: ['te', 'trailers', 'content-type', 'application/grpc'],
            },
            false,
          );
          resolve();
        },
        onPoolFailure: rec.callbacks.onPoolFailure,
      });
    });
    await within(ready);
    // Ping-pong: each chunk is echoed before the next is sent, so nothing is buffered to the end.
    for (let i = 0; i < 5; i++) {
      const seen = new Promise<void>((r) => {
        rec.onChunk = (c) => {
          if (c.toString().includes(`echo:m${i};`)) r();
        };
      });
      enc?.writeData(Buffer.from(`m${i}`), false);
      await within(seen, 5000, `echo of chunk ${i}`);
    }
    enc?.writeTrailers(['x-req-trailer', 'sent']);
    await within(rec.done);
    expect(rec.head?.status).toBe(200);
    expect(rec.head?.contentLength).toBe(-1);
    expect(rec.text()).toBe('echo:m0;echo:m1;echo:m2;echo:m3;echo:m4;');
    expect(rec.trailers).toEqual(['grpc-status', '0', 'x-got', 'sent']);
  });

  it('delivers a trailers-only response as headers with end of stream', async () => {
    const up = await startH2((stream) => {
      stream.respond(
        { ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '5', 'grpc-message': 'not found' },
        { endStream: true },
      );
    });
    const { pool } = makePool(up.port);
    const rec = request(pool, '/svc/Missing');
    await within(rec.done);
    expect(rec.ended).toBe(true);
    expect(rec.head?.contentLength).toBe(0);
    const h = rec.head?.headers ?? [];
    expect(h[h.indexOf('grpc-status') + 1]).toBe('5');
    expect(h[h.indexOf('grpc-message') + 1]).toBe('not found');
  });

  it('a local reset sends RST_STREAM and frees the slot without calling the sink', async () => {
    let serverRst: number | undefined;
    const gotStream = new Promise<void>((resolve) => {
      void startH2((stream) => {
        stream.on('close', () => {
          serverRst = stream.rstCode;
        });
        resolve();
      }).then((up) => {
        const { pool } = makePool(up.port);
        state.pool = pool;
        state.rec = request(pool, '/slow');
      });
    });
    const state: { pool?: H2ConnectionPool; rec?: Recorder } = {};
    await within(gotStream);
    state.rec?.encoder?.reset('local_reset');
    await waitFor(() => serverRst !== undefined, 'server to see the reset');
    expect(serverRst).toBe(http2.constants.NGHTTP2_NO_ERROR);
    await waitFor(() => state.pool?.activeStreams === 0, 'slot freed');
    expect(state.rec?.reset).toBeUndefined();
  });

  it('closes connections idle for longer than the idle timeout', async () => {
    const up = await startH2((stream) => {
      stream.respond({ ':status': 200 });
      stream.end('x');
    });
    const { pool, stats } = makePool(up.port, { settings: { idleTimeoutMs: 100 } });
    const rec = request(pool, '/x');
    await within(rec.done);
    expect(pool.connections).toBe(1);
    await waitFor(() => pool.connections === 0, 'idle close', 5000);
    expect(stats.upstreamCxDestroy).toBe(1);
    await waitFor(
      () =>
        (up.sessions[0] as http2.ServerHttp2Session).closed || (up.sessions[0] as http2.ServerHttp2Session).destroyed,
      'server session closed',
    );
  });

  it('drain() closes idle connections and new requests open a fresh one', async () => {
    const up = await startH2((stream) => {
      stream.respond({ ':status': 200 });
      stream.end('x');
    });
    const { pool } = makePool(up.port);
    await within(request(pool, '/1').done);
    pool.drain();
    await waitFor(() => pool.connections === 0, 'drained connection closed');
    const r = request(pool, '/2');
    await within(r.done);
    expect(r.text()).toBe('x');
    expect(up.sessions).toHaveLength(2);
  });

  it('speaks h2 whatever ALPN said, except a peer that chose http/1.1', async () => {
    const up = await startH2((stream) => {
      stream.respond({ ':status': 200 });
      stream.end('h2 anyway');
    });
    // A transport that reports an ALPN result over a plain socket, as a TLS factory would.
    const withAlpn = (alpn: string): TransportSocketFactory => {
      const tcp = new TcpTransportSocketFactory();
      return {
        connect(host, opts, cb) {
          tcp.connect(host, opts, (err, conn) => cb(err, conn ? { socket: conn.socket, alpn } : undefined));
        },
      };
    };
    const istio = makePool(up.port, { transport: withAlpn('istio-peer-exchange') });
    const ok = request(istio.pool, '/');
    await within(ok.done);
    expect(ok.text()).toBe('h2 anyway');
    const h1 = makePool(up.port, { transport: withAlpn('http/1.1') });
    const bad = request(h1.pool, '/');
    await within(bad.done);
    expect(bad.failure?.reason).toBe('protocol_error');
    expect(bad.failure?.detail).toContain('http/1.1');
    expect(h1.stats.upstreamCxConnectFail).toBe(1);
  });

  it('speaks h2 over TLS negotiated with ALPN', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'meshlet-h2-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:prime256v1',
        '-nodes',
        '-days',
        '1',
        '-subj',
        '/CN=localhost',
        '-addext',
        'subjectAltName=DNS:localhost,IP:127.0.0.1',
        '-keyout',
        join(dir, 'key.pem'),
        '-out',
        join(dir, 'cert.pem'),
      ],
      { stdio: 'ignore' },
    );
    const key = readFileSync(join(dir, 'key.pem'));
    const cert = readFileSync(join(dir, 'cert.pem'));
    const up = await startH2(
      (stream, headers) => {
        const sock = stream.session?.socket as tls.TLSSocket;
        stream.respond({ ':status': 200 });
        stream.end(`${headers[':scheme']} ${sock.alpnProtocol}`);
      },
      {},
      { key, cert },
    );
    // A minimal real TLS transport (the cluster's TLS factory does the same plus identity checks).
    const transport: TransportSocketFactory = {
      connect(host, opts, cb) {
        const s = tls.connect({
          host: host.host,
          port: host.port,
          ca: cert,
          servername: 'localhost',
          ALPNProtocols: opts.alpn as string[],
        });
        s.once('secureConnect', () => cb(undefined, { socket: s, alpn: s.alpnProtocol || undefined }));
        s.once('error', (e) => cb({ reason: 'connect_failure', detail: e.message }, undefined));
      },
    };
    const { pool } = makePool(up.port, { transport, settings: { secure: true } });
    const rec = request(pool, '/tls');
    await within(rec.done);
    // The request's own :scheme is propagated (Envoy's default); ALPN picked h2.
    expect(rec.text()).toBe('http h2');
    expect(pool.connections).toBe(1);
  });
});
