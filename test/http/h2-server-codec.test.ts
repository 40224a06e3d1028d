/**
 * H2ServerCodec on real loopback sockets: node:http2 clients (h2c prior knowledge, with the
 * preface already read by a listener, and h2 over TLS with ALPN) talk to the codec, whose
 * RequestSink is a small bridge that answers from a real node:http2 upstream through
 * H2ConnectionPool — the same shape the router has, minus routing.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http2 from 'node:http2';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { afterEach, describe, expect, it } from 'vitest';
import type { ClusterConfig } from '../../proxy/config/types';
import type {
  DownstreamConnectionInfo,
  HeaderList,
  RequestEncoder,
  RequestHead,
  RequestSink,
  ResetReason,
  ResponseEncoder,
  ResponseHead,
  ResponseSink,
} from '../../proxy/http/codec';
import { H2ConnectionPool } from '../../proxy/http/h2/client-pool';
import { H2ServerCodec as NodeH2ServerCodec, type H2ServerCodecOptions } from '../../proxy/http/h2/server-codec';
import { H2RawServerCodec } from '../../proxy/http/h2/raw-server-session';
import { h2ServerCodecKind } from '../../proxy/http/h2/server-settings';

/** The codec MESHLET_H2_SERVER_CODEC selects (meshlet's own framing by default, node:http2 with =nghttp2). */
const H2ServerCodec = h2ServerCodecKind() === 'meshlet' ? H2RawServerCodec : NodeH2ServerCodec;
type H2ServerCodec = NodeH2ServerCodec | H2RawServerCodec;
import { Host } from '../../proxy/upstream/host';
import { ClusterResourceManager } from '../../proxy/upstream/resources';
import { TcpTransportSocketFactory } from '../../proxy/upstream/transport';
import { ClusterStats } from '../../proxy/upstream/types';

const cleanups: (() => void | Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

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

// ───────────── a real upstream ─────────────

interface Upstream {
  port: number;
  streams: { headers: http2.IncomingHttpHeaders; rstCode?: number }[];
}

/** node:http2 upstream: /echo echoes body chunks as they arrive (with trailers), /grpc-fail is trailers-only, /hold waits. */
async function startUpstream(): Promise<Upstream> {
  const server = http2.createServer();
  const sessions: http2.ServerHttp2Session[] = [];
  const state: Upstream = { port: 0, streams: [] };
  server.on('session', (s) => {
    sessions.push(s);
    s.on('error', () => {});
  });
  server.on('stream', (stream, headers) => {
    const rec: Upstream['streams'][number] = { headers };
    state.streams.push(rec);
    stream.on('error', () => {});
    stream.on('close', () => {
      rec.rstCode = stream.rstCode;
    });
    const path = String(headers[':path']);
    if (path === '/hold') return;
    if (path === '/grpc-fail') {
      stream.respond(
        { ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '7', 'grpc-message': 'denied' },
        { endStream: true },
      );
      return;
    }
    if (path.startsWith('/big/')) {
      const size = Number(path.slice(5));
      stream.respond({ ':status': 200, 'content-length': String(size) });
      stream.end(Buffer.alloc(size, 0x61));
      return;
    }
    stream.respond(
      {
        ':status': 200,
        'x-seen-method': String(headers[':method']),
        'x-seen-path': path,
        'x-seen-authority': String(headers[':authority']),
        'x-seen-custom': String(headers['x-custom']),
        'x-seen-cookie': String(headers.cookie),
      },
      { waitForTrailers: true },
    );
    stream.on('data', (c: Buffer) => stream.write(c));
    let trailerSeen = 'none';
    stream.on('trailers', (t) => {
      trailerSeen = String(t['x-client-trailer']);
    });
    stream.on('wantTrailers', () =>
      stream.sendTrailers({ 'x-upstream-trailer': 'done', 'x-echo-trailer': trailerSeen }),
    );
    stream.on('end', () => stream.end());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  state.port = (server.address() as net.AddressInfo).port;
  cleanups.push(async () => {
    for (const s of sessions) s.destroy();
    await new Promise((r) => server.close(r));
  });
  return state;
}

function makePool(port: number): H2ConnectionPool {
  const stats = new ClusterStats();
  const config = {
    connectTimeoutMs: 2000,
    http2: { maxConcurrentStreams: 1000, initialStreamWindowSize: 65535, initialConnectionWindowSize: 1 << 20 },
    upstreamIdleTimeoutMs: 0,
    maxRequestsPerConnection: 0,
  } as unknown as ClusterConfig;
  const pool = new H2ConnectionPool(new Host({ kind: 'socket', host: '127.0.0.1', port }), {
    config,
    stats,
    resources: new ClusterResourceManager([], stats),
    transport: new TcpTransportSocketFactory(),
  });
  cleanups.push(() => pool.destroy());
  return pool;
}

// ───────────── the bridge: RequestSink → pool → ResponseEncoder ─────────────

class Bridge implements RequestSink, ResponseSink {
  head: RequestHead | undefined;
  upstream: RequestEncoder | undefined;
  private queued: (() => void)[] = [];
  downstreamReset: ResetReason | undefined;
  private responded = false;

  constructor(
    private readonly down: ResponseEncoder,
    private readonly pool: H2ConnectionPool,
  ) {}

  onRequestHeaders(head: RequestHead, endStream: boolean): void {
    this.head = head;
    this.pool.newStream(this, {
      onPoolReady: (enc) => {
        this.upstream = enc;
        enc.writeHeaders(head, endStream);
        for (const q of this.queued.splice(0)) q();
      },
      onPoolFailure: () => {
        this.down.writeHeaders({ status: 503, headers: [], contentLength: 0 }, true);
      },
    });
  }
  private up(fn: (enc: RequestEncoder) => void): void {
    if (this.upstream) fn(this.upstream);
    else this.queued.push(() => fn(this.upstream as RequestEncoder));
  }
  onRequestData(chunk: Buffer, endStream: boolean): void {
    this.up((enc) => {
      if (!enc.writeData(chunk, endStream)) this.down.pauseRequest();
    });
  }
  onRequestTrailers(trailers: HeaderList): void {
    this.up((enc) => enc.writeTrailers(trailers));
  }
  onDownstreamReset(reason: ResetReason): void {
    this.downstreamReset = reason;
    this.upstream?.reset('local_reset');
  }
  onDownstreamWritable(): void {
    this.upstream?.resumeResponse();
  }
  onResponseHeaders(head: ResponseHead, endStream: boolean): void {
    this.responded = true;
    this.down.writeHeaders(head, endStream);
  }
  onResponseData(chunk: Buffer, endStream: boolean): void {
    if (!this.down.writeData(chunk, endStream)) this.upstream?.pauseResponse();
  }
  onResponseTrailers(trailers: HeaderList): void {
    this.down.writeTrailers(trailers);
  }
  onUpstreamReset(reason: ResetReason): void {
    if (!this.responded) this.down.writeHeaders({ status: 503, headers: ['x-reset', reason], contentLength: 0 }, true);
    else this.down.reset(reason);
  }
  onUpstreamWritable(): void {
    this.down.resumeRequest();
  }
}

// ───────────── the listener side ─────────────

interface Front {
  port: number;
  bridges: Bridge[];
  codecs: H2ServerCodec[];
}

const OPTIONS: H2ServerCodecOptions = {
  http2: { maxConcurrentStreams: 100, initialStreamWindowSize: 65535, initialConnectionWindowSize: 1 << 20 },
  maxRequestHeadersKb: 60,
  maxHeadersCount: 100,
};

function info(socket: net.Socket): DownstreamConnectionInfo {
  return {
    id: 1,
    remoteAddress: socket.remoteAddress ?? '',
    remotePort: socket.remotePort ?? 0,
    localAddress: socket.localAddress ?? '',
    localPort: socket.localPort ?? 0,
  };
}

async function startFront(
  pool: H2ConnectionPool,
  opts: {
    options?: Partial<H2ServerCodecOptions>;
    readPreface?: boolean;
    tls?: { key: Buffer; cert: Buffer };
    noAlpn?: boolean;
  } = {},
): Promise<Front> {
  const front: Front = { port: 0, bridges: [], codecs: [] };
  const callbacks = {
    newStream: (enc: ResponseEncoder): RequestSink => {
      const b = new Bridge(enc, pool);
      front.bridges.push(b);
      return b;
    },
  };
  const serve = (socket: net.Socket, preface?: Buffer) => {
    front.codecs.push(new H2ServerCodec(socket, info(socket), callbacks, { ...OPTIONS, ...opts.options }, preface));
  };
  let server: net.Server;
  if (opts.tls) {
    server = tls.createServer(
      { key: opts.tls.key, cert: opts.tls.cert, ALPNProtocols: opts.noAlpn ? undefined : ['h2'] },
      (s) => serve(s),
    );
  } else {
    server = net.createServer((socket) => {
      if (!opts.readPreface) return serve(socket);
      // Like protocol detection: read the 24-byte client preface, then hand it back to the codec.
      const onReadable = () => {
        const preface = socket.read(24) as Buffer | null;
        if (preface === null) return;
        socket.removeListener('readable', onReadable);
        expect(preface.toString('latin1')).toBe('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
        serve(socket, preface);
      };
      socket.on('readable', onReadable);
    });
  }
  const sockets = new Set<net.Socket>();
  server.on('connection', (s: net.Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  front.port = (server.address() as net.AddressInfo).port;
  cleanups.push(async () => {
    for (const c of front.codecs) c.destroy();
    for (const s of sockets) s.destroy();
    await new Promise((r) => server.close(r));
  });
  return front;
}

function connect(url: string, options: http2.SecureClientSessionOptions = {}): http2.ClientHttp2Session {
  const c = http2.connect(url, options);
  c.on('error', () => {});
  cleanups.push(() => {
    c.destroy();
  });
  return c;
}

interface Result {
  headers: http2.IncomingHttpHeaders;
  body: string;
  trailers: http2.IncomingHttpHeaders | undefined;
  rstCode: number | undefined;
}

function collect(req: http2.ClientHttp2Stream): Promise<Result> {
  return new Promise((resolve) => {
    const out: Result = { headers: {}, body: '', trailers: undefined, rstCode: undefined };
    req.on('error', () => {});
    req.on('response', (h) => {
      out.headers = h;
    });
    req.setEncoding('utf8');
    req.on('data', (c: string) => {
      out.body += c;
    });
    req.on('trailers', (t) => {
      out.trailers = t;
    });
    req.on('close', () => {
      out.rstCode = req.rstCode;
      resolve(out);
    });
  });
}

function makeCert(): { key: Buffer; cert: Buffer } {
  const dir = mkdtempSync(join(tmpdir(), 'meshlet-h2s-'));
  try {
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
    return { key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(join(dir, 'cert.pem')) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('H2ServerCodec', () => {
  it('serves h2c prior knowledge: pseudo-headers, headers, cookies, body and trailers both ways', async () => {
    const up = await startUpstream();
    const front = await startFront(makePool(up.port));
    const client = connect(`http://127.0.0.1:${front.port}`);
    const req = client.request(
      {
        ':method': 'POST',
        ':path': '/echo?q=1',
        ':authority': 'svc.test',
        'x-custom': 'yes',
        cookie: ['a=1', 'b=2'],
        'content-length': '5',
      },
      { endStream: false, waitForTrailers: true },
    );
    req.on('wantTrailers', () => req.sendTrailers({ 'x-client-trailer': 'from-client' }));
    const done = collect(req);
    req.end('hello');
    const res = await within(done);
    expect(res.headers[':status']).toBe(200);
    expect(res.headers['x-seen-method']).toBe('POST');
    expect(res.headers['x-seen-path']).toBe('/echo?q=1');
    expect(res.headers['x-seen-authority']).toBe('svc.test');
    expect(res.headers['x-seen-custom']).toBe('yes');
    expect(res.headers['x-seen-cookie']).toBe('a=1; b=2');
    expect(res.body).toBe('hello');
    expect(res.trailers?.['x-upstream-trailer']).toBe('done');
    expect(res.trailers?.['x-echo-trailer']).toBe('from-client');
    const head = front.bridges[0]?.head as RequestHead;
    expect(head.method).toBe('POST');
    expect(head.scheme).toBe('http');
    expect(head.protocol).toBe('HTTP/2');
    expect(head.contentLength).toBe(5);
    expect(head.headers).toContain('x-custom');
    expect(head.headers.some((h) => h.startsWith(':'))).toBe(false);
  });

  it('accepts a connection whose preface was already read by protocol detection', async () => {
    const up = await startUpstream();
    const front = await startFront(makePool(up.port), { readPreface: true });
    const client = connect(`http://127.0.0.1:${front.port}`);
    const res = await within(collect(client.request({ ':path': '/echo', ':method': 'GET' }, { endStream: true })));
    expect(res.headers[':status']).toBe(200);
    expect(res.headers['x-seen-method']).toBe('GET');
    expect(front.bridges[0]?.head?.contentLength).toBe(0);
  });

  it('serves h2 over TLS negotiated with ALPN and reports scheme https', async () => {
    const cert = makeCert();
    const up = await startUpstream();
    const front = await startFront(makePool(up.port), { tls: cert });
    const client = connect(`https://localhost:${front.port}`, { ca: cert.cert });
    const res = await within(collect(client.request({ ':path': '/echo', ':method': 'GET' }, { endStream: true })));
    expect(res.headers[':status']).toBe(200);
    expect((client.socket as tls.TLSSocket).alpnProtocol).toBe('h2');
    expect(front.bridges[0]?.head?.scheme).toBe('https');
  });

  it('serves HTTP/2 prior knowledge over TLS without ALPN when the connection manager chose HTTP/2', async () => {
    const cert = makeCert();
    const up = await startUpstream();
    const front = await startFront(makePool(up.port), { tls: cert, noAlpn: true });
    const client = connect(`https://localhost:${front.port}`, {
      createConnection: () =>
        tls.connect({ host: '127.0.0.1', port: front.port, ca: cert.cert, servername: 'localhost' }),
    });
    const res = await within(collect(client.request({ ':path': '/echo', ':method': 'GET' }, { endStream: true })));
    expect(res.headers[':status']).toBe(200);
    expect(front.bridges[0]?.head?.scheme).toBe('https');
  });

  it('response backpressure: writeData returns false until the client reads, then onDownstreamWritable', async () => {
    const state = { falseAt: -1, writable: 0, sent: 0 };
    const chunk = Buffer.alloc(16 * 1024, 0x62);
    const server = net.createServer((socket) => {
      new H2ServerCodec(
        socket,
        info(socket),
        {
          newStream(enc) {
            const pump = () => {
              // Bounded: at most 256 chunks (4 MiB) per pump.
              for (let i = 0; i < 256; i++) {
                if (state.sent >= 64) {
                  enc.writeData(Buffer.alloc(0), true);
                  return;
                }
                state.sent++;
                if (!enc.writeData(chunk, false)) {
                  if (state.falseAt < 0) state.falseAt = state.sent;
                  return;
                }
              }
            };
            return {
              onRequestHeaders() {
                enc.writeHeaders({ status: 200, headers: [], contentLength: -1 }, false);
                pump();
              },
              onRequestData() {},
              onRequestTrailers() {},
              onDownstreamReset() {},
              onDownstreamWritable() {
                state.writable++;
                pump();
              },
            };
          },
        },
        OPTIONS,
      );
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    cleanups.push(() => new Promise((r) => server.close(() => r(undefined))));
    const client = connect(`http://127.0.0.1:${(server.address() as net.AddressInfo).port}`, {
      settings: { initialWindowSize: 65535 },
    });
    const req = client.request({ ':path': '/big', ':method': 'GET' }, { endStream: true });
    req.on('error', () => {});
    req.pause();
    await waitFor(() => state.falseAt > 0, 'writeData to report backpressure');
    // The client has not read: the window (64 KiB) plus buffers hold far less than 64 chunks.
    expect(state.falseAt).toBeLessThan(64);
    let received = 0;
    const done = new Promise<void>((r) => req.on('end', () => r()));
    req.on('data', (c: Buffer) => {
      received += c.length;
    });
    req.resume();
    await within(done);
    expect(received).toBe(64 * chunk.length);
    expect(state.writable).toBeGreaterThan(0);
  });

  it('request backpressure: pauseRequest stops the body, resumeRequest delivers the rest', async () => {
    const state = { received: 0, ended: false, enc: undefined as ResponseEncoder | undefined };
    const server = net.createServer((socket) => {
      new H2ServerCodec(
        socket,
        info(socket),
        {
          newStream(enc) {
            state.enc = enc;
            return {
              onRequestHeaders() {
                enc.pauseRequest();
              },
              onRequestData(c: Buffer, end: boolean) {
                state.received += c.length;
                if (end) {
                  state.ended = true;
                  enc.writeHeaders(
                    { status: 200, headers: ['x-received', String(state.received)], contentLength: 0 },
                    true,
                  );
                }
              },
              onRequestTrailers() {},
              onDownstreamReset() {},
              onDownstreamWritable() {},
            };
          },
        },
        {
          ...OPTIONS,
          http2: { maxConcurrentStreams: 100, initialStreamWindowSize: 65535, initialConnectionWindowSize: 65535 },
        },
      );
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    cleanups.push(() => new Promise((r) => server.close(() => r(undefined))));
    const client = connect(`http://127.0.0.1:${(server.address() as net.AddressInfo).port}`);
    const req = client.request({ ':path': '/upload', ':method': 'POST' }, { endStream: false });
    const res = collect(req);
    const total = 2 * 1024 * 1024;
    req.end(Buffer.alloc(total, 0x63));
    await waitFor(() => state.enc !== undefined, 'stream');
    // Give the client every chance to push more than flow control allows.
    await new Promise((r) => setTimeout(r, 200));
    expect(state.ended).toBe(false);
    expect(state.received).toBeLessThan(total / 2);
    state.enc?.resumeRequest();
    const out = await within(res);
    expect(out.headers['x-received']).toBe(String(total));
  });

  it('a response head node:http2 cannot encode resets the stream and tells the sink and the error report', async () => {
    const state = { reset: undefined as ResetReason | undefined, reports: [] as string[] };
    const server = net.createServer((socket) => {
      new H2ServerCodec(
        socket,
        info(socket),
        {
          newStream(enc) {
            return {
              onRequestHeaders() {
                enc.writeHeaders({ status: 200, headers: ['bad header name', 'x'], contentLength: -1 }, false);
                // Writes after the failed head are dropped, not thrown.
                expect(enc.writeData(Buffer.from('late'), true)).toBe(true);
              },
              onRequestData() {},
              onRequestTrailers() {},
              onDownstreamReset(reason: ResetReason) {
                state.reset = reason;
              },
              onDownstreamWritable() {},
            };
          },
        },
        { ...OPTIONS, onCodecError: (r) => state.reports.push(`${r.status} ${r.flag}`) },
      );
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    cleanups.push(() => new Promise((r) => server.close(() => r(undefined))));
    const client = connect(`http://127.0.0.1:${(server.address() as net.AddressInfo).port}`);
    const res = await within(collect(client.request({ ':path': '/', ':method': 'GET' }, { endStream: true })));
    expect(res.rstCode).toBe(http2.constants.NGHTTP2_INTERNAL_ERROR);
    await waitFor(() => state.reset !== undefined, 'sink notified');
    expect(state.reset).toBe('protocol_error');
    expect(state.reports).toEqual(['502 UPE']);
  });

  it('serves a TLSSocket the listener terminated itself (no tls.Server, socket paused on connect)', async () => {
    const cert = makeCert();
    const up = await startUpstream();
    const pool = makePool(up.port);
    const bridges: Bridge[] = [];
    const server = net.createServer({ pauseOnConnect: true }, (raw) => {
      raw.on('error', () => {});
      const t = new tls.TLSSocket(raw, {
        isServer: true,
        secureContext: tls.createSecureContext({ key: cert.key, cert: cert.cert }),
        ALPNProtocols: ['h2'],
      });
      t.once('secure', () => {
        new H2ServerCodec(
          t,
          info(raw),
          {
            newStream: (enc) => {
              const b = new Bridge(enc, pool);
              bridges.push(b);
              return b;
            },
          },
          OPTIONS,
        );
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    cleanups.push(() => new Promise((r) => server.close(() => r(undefined))));
    const client = connect(`https://localhost:${(server.address() as net.AddressInfo).port}`, { ca: cert.cert });
    const res = await within(collect(client.request({ ':path': '/echo', ':method': 'GET' }, { endStream: true })));
    expect(res.headers[':status']).toBe(200);
    expect(bridges[0]?.head?.scheme).toBe('https');
  });

  it('garbage after the preface closes the connection without reaching the sink or crashing', async () => {
    let closed = 0;
    const streams: number[] = [];
    const server = net.createServer((socket) => {
      new H2ServerCodec(
        socket,
        info(socket),
        {
          newStream() {
            streams.push(1);
            throw new Error('no stream expected');
          },
        },
        { ...OPTIONS, onClose: () => closed++ },
      );
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    cleanups.push(() => new Promise((r) => server.close(() => r(undefined))));
    const sock = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
    sock.on('error', () => {});
    let goaway = false;
    sock.on('data', (d: Buffer) => {
      // A GOAWAY frame header: type 0x7 at byte 3 of some frame; a cheap scan is enough here.
      if (d.includes(Buffer.from([0x07, 0x00, 0x00, 0x00, 0x00, 0x00]))) goaway = true;
    });
    const ended = new Promise<void>((r) => sock.on('end', () => r()));
    sock.write('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
    sock.write(Buffer.from('this is not an HTTP/2 frame at all, just noise that goes on and on'));
    await within(ended, 5000, 'the server to close its side');
    await waitFor(() => closed === 1, 'codec onClose');
    expect(goaway).toBe(true);
    expect(streams).toHaveLength(0);
  });

  it('forwards a trailers-only gRPC error response intact', async () => {
    const up = await startUpstream();
    const front = await startFront(makePool(up.port));
    const client = connect(`http://127.0.0.1:${front.port}`);
    const res = await within(
      collect(
        client.request(
          { ':path': '/grpc-fail', ':method': 'POST', 'content-type': 'application/grpc', te: 'trailers' },
          { endStream: true },
        ),
      ),
    );
    expect(res.headers[':status']).toBe(200);
    expect(res.headers['grpc-status']).toBe('7');
    expect(res.headers['grpc-message']).toBe('denied');
    expect(res.body).toBe('');
    expect(res.rstCode).toBe(http2.constants.NGHTTP2_NO_ERROR);
  });

  it('streams both ways: every request chunk comes back before the next is sent', async () => {
    const up = await startUpstream();
    const front = await startFront(makePool(up.port));
    const client = connect(`http://127.0.0.1:${front.port}`);
    const req = client.request({ ':path': '/echo', ':method': 'POST' }, { endStream: false });
    req.on('error', () => {});
    let got = '';
    req.setEncoding('utf8');
    for (let i = 0; i < 10; i++) {
      const want = `${got}chunk${i};`;
      const seen = new Promise<void>((resolve) => {
        const onData = (c: string) => {
          got += c;
          if (got === want) {
            req.removeListener('data', onData);
            resolve();
          }
        };
        req.on('data', onData);
      });
      req.write(`chunk${i};`);
      await within(seen, 5000, `echo of chunk ${i}`);
    }
    const closed = new Promise<void>((r) => req.on('close', () => r()));
    req.end();
    req.resume();
    await within(closed);
    expect(got).toBe('chunk0;chunk1;chunk2;chunk3;chunk4;chunk5;chunk6;chunk7;chunk8;chunk9;');
  });

  it('carries many concurrent streams on one connection', async () => {
    const up = await startUpstream();
    const front = await startFront(makePool(up.port));
    const client = connect(`http://127.0.0.1:${front.port}`);
    const results = await within(
      Promise.all(
        Array.from({ length: 60 }, (_, i) => {
          const req = client.request(
            { ':path': '/echo', ':method': 'POST', 'x-custom': `n${i}` },
            { endStream: false },
          );
          const p = collect(req);
          req.end(`body-${i}`);
          return p;
        }),
      ),
      10_000,
    );
    results.forEach((r, i) => {
      expect(r.headers[':status']).toBe(200);
      expect(r.headers['x-seen-custom']).toBe(`n${i}`);
      expect(r.body).toBe(`body-${i}`);
    });
    expect(front.codecs).toHaveLength(1);
    expect(front.bridges).toHaveLength(60);
    await waitFor(() => front.codecs[0]?.activeStreams === 0, 'streams closed');
  });

  it('moves a large response through small flow-control windows intact', async () => {
    const up = await startUpstream();
    const front = await startFront(makePool(up.port));
    const client = connect(`http://127.0.0.1:${front.port}`, { settings: { initialWindowSize: 16384 } });
    const size = 3 * 1024 * 1024;
    const res = await within(
      collect(client.request({ ':path': `/big/${size}`, ':method': 'GET' }, { endStream: true })),
      15_000,
    );
    expect(res.headers['content-length']).toBe(String(size));
    expect(res.body.length).toBe(size);
    expect(/^a+$/.test(res.body)).toBe(true);
  });

  it('a client RST_STREAM reaches the sink as remote_reset and resets the upstream stream', async () => {
    const up = await startUpstream();
    const front = await startFront(makePool(up.port));
    const client = connect(`http://127.0.0.1:${front.port}`);
    const req = client.request({ ':path': '/hold', ':method': 'POST' }, { endStream: false });
    req.on('error', () => {});
    await waitFor(() => up.streams.length === 1, 'upstream stream');
    req.close(http2.constants.NGHTTP2_CANCEL);
    await waitFor(() => front.bridges[0]?.downstreamReset !== undefined, 'downstream reset');
    expect(front.bridges[0]?.downstreamReset).toBe('remote_reset');
    await waitFor(() => up.streams[0]?.rstCode !== undefined, 'upstream reset');
    expect(up.streams[0]?.rstCode).toBe(http2.constants.NGHTTP2_NO_ERROR);
    await waitFor(() => front.codecs[0]?.activeStreams === 0, 'stream released');
  });

  it('a dropped client connection is reported as connection_termination', async () => {
    const up = await startUpstream();
    const front = await startFront(makePool(up.port));
    let raw: net.Socket | undefined;
    const client = connect(`http://127.0.0.1:${front.port}`, {
      createConnection: () => {
        raw = net.connect(front.port, '127.0.0.1');
        return raw;
      },
    });
    const req = client.request({ ':path': '/hold', ':method': 'POST' }, { endStream: false });
    req.on('error', () => {});
    await waitFor(() => up.streams.length === 1, 'upstream stream');
    raw?.destroy();
    await waitFor(() => front.bridges[0]?.downstreamReset !== undefined, 'downstream reset');
    expect(front.bridges[0]?.downstreamReset).toBe('connection_termination');
  });

  it('an upstream reset after headers becomes RST_STREAM to the client', async () => {
    const up = await startUpstream();
    const front = await startFront(makePool(up.port));
    const client = connect(`http://127.0.0.1:${front.port}`);
    const req = client.request({ ':path': '/echo', ':method': 'POST' }, { endStream: false });
    const done = collect(req);
    req.write('x');
    await waitFor(() => front.bridges[0]?.upstream !== undefined, 'upstream');
    await new Promise((r) => setTimeout(r, 20));
    front.bridges[0]?.upstream?.reset('local_reset');
    front.bridges[0]?.onUpstreamReset('remote_reset');
    const res = await within(done);
    expect(res.headers[':status']).toBe(200);
    expect(res.trailers).toBeUndefined();
    expect(res.rstCode).toBe(http2.constants.NGHTTP2_NO_ERROR);
  });

  it('advertises SETTINGS from the HCM options', async () => {
    const up = await startUpstream();
    const front = await startFront(makePool(up.port), {
      options: {
        http2: { maxConcurrentStreams: 7, initialStreamWindowSize: 131072, initialConnectionWindowSize: 1 << 20 },
        maxRequestHeadersKb: 16,
      },
    });
    const client = connect(`http://127.0.0.1:${front.port}`);
    await within(new Promise((r) => client.once('remoteSettings', r)));
    expect(client.remoteSettings.maxConcurrentStreams).toBe(7);
    expect(client.remoteSettings.initialWindowSize).toBe(131072);
    expect(client.remoteSettings.maxHeaderListSize).toBe(16 * 1024);
    // The connection-level window is opened with WINDOW_UPDATE on stream 0.
    await waitFor(() => client.state.remoteWindowSize === 1 << 20, 'connection window update');
  });

  it('rejects a request whose headers exceed max_request_headers_kb without reaching the sink', async () => {
    const up = await startUpstream();
    const front = await startFront(makePool(up.port), { options: { maxRequestHeadersKb: 1 } });
    const client = connect(`http://127.0.0.1:${front.port}`);
    await within(new Promise((r) => client.once('remoteSettings', r)));
    // Bypass the client's own check of the peer limit by sending a header the peer must refuse.
    const res = await within(
      collect(client.request({ ':path': '/echo', ':method': 'GET', 'x-big': 'b'.repeat(4000) }, { endStream: true })),
    );
    expect(Number(res.headers[':status']) === 431 || res.rstCode !== http2.constants.NGHTTP2_NO_ERROR).toBe(true);
    expect(front.bridges).toHaveLength(0);
    expect(up.streams).toHaveLength(0);
  });

  it('closes an idle connection with GOAWAY after idle_timeout', async () => {
    const up = await startUpstream();
    const front = await startFront(makePool(up.port), { options: { idleTimeoutMs: 100 } });
    const client = connect(`http://127.0.0.1:${front.port}`);
    const goaway = new Promise<number>((r) => client.once('goaway', (code: number) => r(code)));
    const res = await within(collect(client.request({ ':path': '/echo', ':method': 'GET' }, { endStream: true })));
    expect(res.headers[':status']).toBe(200);
    expect(await within(goaway)).toBe(http2.constants.NGHTTP2_NO_ERROR);
    await within(new Promise((r) => client.once('close', r)));
  });

  it('closeAfterResponse sends GOAWAY and lets the active stream finish', async () => {
    const up = await startUpstream();
    const front = await startFront(makePool(up.port));
    const client = connect(`http://127.0.0.1:${front.port}`);
    const goaway = new Promise<void>((r) => client.once('goaway', () => r()));
    const req = client.request({ ':path': '/echo', ':method': 'POST' }, { endStream: false });
    const done = collect(req);
    req.write('before ');
    await waitFor(() => front.bridges.length === 1, 'stream');
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- reach the encoder the bridge was given
    ((front.bridges[0] as any).down as ResponseEncoder).closeAfterResponse();
    await within(goaway);
    req.end('after');
    const res = await within(done);
    expect(res.body).toBe('before after');
    expect(res.trailers?.['x-upstream-trailer']).toBe('done');
  });

  it('maps RFC 8441 extended CONNECT to an upgrade head and answers 101 as 200 with a tunnel', async () => {
    const front: { enc?: ResponseEncoder; head?: RequestHead } = {};
    const server = net.createServer((socket) => {
      new H2ServerCodec(
        socket,
        info(socket),
        {
          newStream(enc) {
            front.enc = enc;
            return {
              onRequestHeaders(head) {
                front.head = head;
                enc.writeHeaders(
                  { status: 101, headers: ['upgrade', 'websocket', 'connection', 'upgrade'], contentLength: -1 },
                  false,
                );
                const tunnel = enc.takeTunnel();
                tunnel.on('data', (c: Buffer) => tunnel.write(Buffer.concat([Buffer.from('echo:'), c])));
                tunnel.on('end', () => tunnel.end());
              },
              onRequestData() {},
              onRequestTrailers() {},
              onDownstreamReset() {},
              onDownstreamWritable() {},
            };
          },
        },
        { ...OPTIONS, allowConnect: true },
      );
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    cleanups.push(() => new Promise((r) => server.close(() => r(undefined))));
    const client = connect(`http://127.0.0.1:${(server.address() as net.AddressInfo).port}`);
    await within(new Promise((r) => client.once('remoteSettings', r)));
    expect(client.remoteSettings.enableConnectProtocol).toBe(true);
    const req = client.request(
      { ':method': 'CONNECT', ':protocol': 'websocket', ':path': '/chat', ':scheme': 'http', ':authority': 'ws.test' },
      { endStream: false },
    );
    req.on('error', () => {});
    const status = await within(new Promise<number>((r) => req.once('response', (h) => r(Number(h[':status'])))));
    expect(status).toBe(200);
    expect(front.head?.method).toBe('GET');
    expect(front.head?.upgrade).toBe('websocket');
    expect(front.head?.path).toBe('/chat');
    const echoed = new Promise<string>((r) => req.once('data', (c: Buffer) => r(c.toString())));
    req.write('ping');
    expect(await within(echoed)).toBe('echo:ping');
    req.close();
  });
});
