/**
 * gRPC end to end through meshlet over h2c: @grpc/grpc-js client → HttpConnectionManager with
 * H2ServerCodec → router → H2ConnectionPool → @grpc/grpc-js server. Covers the four call shapes,
 * status codes and messages, metadata both ways, multiplexing, plus protocol translation
 * (HTTP/1.1 client → HTTP/2 upstream and HTTP/2 client → HTTP/1.1 upstream).
 *
 * Messages are JSON bytes through a hand-written service definition, so no .proto is needed; the
 * framing, HTTP/2 and trailers are grpc-js's own.
 */
import http from 'node:http';
import http2 from 'node:http2';
import type net from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { request as undiciRequest } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import {
  action,
  connect,
  prefix,
  readUntil,
  retryPolicy,
  route,
  routeConfig,
  startProxy,
  staticCluster,
  stopAll,
  vhost,
} from './hcm-support';

const cleanups: (() => void | Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  await stopAll();
});

type Msg = { text?: string; n?: number };
const ser = (m: Msg): Buffer => Buffer.from(JSON.stringify(m));
const de = (b: Buffer): Msg => JSON.parse(b.toString()) as Msg;

function method(name: string, requestStream: boolean, responseStream: boolean) {
  return {
    path: `/meshlet.test.Echo/${name}`,
    requestStream,
    responseStream,
    requestSerialize: ser,
    requestDeserialize: de,
    responseSerialize: ser,
    responseDeserialize: de,
  };
}

const EchoService = {
  unary: method('Unary', false, false),
  serverStream: method('ServerStream', false, true),
  clientStream: method('ClientStream', true, false),
  bidi: method('Bidi', true, true),
} as unknown as grpc.ServiceDefinition;

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- generic client methods are dynamically typed
type EchoClient = grpc.Client & Record<string, any>;
const EchoClientCtor = grpc.makeGenericClientConstructor(EchoService, 'Echo') as unknown as new (
  address: string,
  creds: grpc.ChannelCredentials,
  options?: grpc.ChannelOptions,
) => EchoClient;

async function startGrpcServer(): Promise<{ port: number; calls: string[] }> {
  const calls: string[] = [];
  const server = new grpc.Server();
  server.addService(EchoService, {
    unary: (call: grpc.ServerUnaryCall<Msg, Msg>, cb: grpc.sendUnaryData<Msg>) => {
      calls.push('unary');
      const text = call.request.text ?? '';
      if (text === 'fail') {
        const trailer = new grpc.Metadata();
        trailer.set('x-error-detail', 'because');
        cb({ code: grpc.status.NOT_FOUND, details: 'no such thing: fail', metadata: trailer });
        return;
      }
      const md = new grpc.Metadata();
      md.set('x-initial', 'from-server');
      call.sendMetadata(md);
      const trailer = new grpc.Metadata();
      trailer.set('x-trailing', 'bye');
      const seen = call.metadata.get('x-client-meta')[0];
      cb(null, { text: `echo:${text}|meta:${String(seen)}` }, trailer);
    },
    serverStream: (call: grpc.ServerWritableStream<Msg, Msg>) => {
      calls.push('serverStream');
      const n = call.request.n ?? 0;
      for (let i = 0; i < n; i++) call.write({ n: i });
      if (call.request.text === 'abort') {
        call.emit('error', { code: grpc.status.RESOURCE_EXHAUSTED, details: 'enough' });
        return;
      }
      call.end();
    },
    clientStream: (call: grpc.ServerReadableStream<Msg, Msg>, cb: grpc.sendUnaryData<Msg>) => {
      calls.push('clientStream');
      let sum = 0;
      let count = 0;
      call.on('data', (m: Msg) => {
        sum += m.n ?? 0;
        count++;
      });
      call.on('end', () => cb(null, { n: sum, text: `count=${count}` }));
    },
    bidi: (call: grpc.ServerDuplexStream<Msg, Msg>) => {
      calls.push('bidi');
      call.on('data', (m: Msg) => call.write({ text: `pong:${m.text}` }));
      call.on('end', () => call.end());
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
  cleanups.push(() => {
    server.forceShutdown();
  });
  return { port, calls };
}

async function grpcThroughMeshlet(): Promise<{
  client: EchoClient;
  calls: string[];
  proxy: Awaited<ReturnType<typeof startProxy>>;
}> {
  const up = await startGrpcServer();
  const proxy = await startProxy({
    routes: routeConfig([vhost([route(prefix('/'), action('grpc', { timeoutMs: 0 }))])]),
    clusters: [staticCluster('grpc', [{ port: up.port }], { upstreamProtocol: 'http2' })],
    // The harness hands sockets over without protocol sniffing, so say HTTP/2 explicitly.
    hcm: { codecType: 'HTTP2' },
  });
  const client = new EchoClientCtor(`127.0.0.1:${proxy.port}`, grpc.credentials.createInsecure());
  cleanups.push(() => client.close());
  return { client, calls: up.calls, proxy };
}

function deadline(): Date {
  return new Date(Date.now() + 10_000);
}

describe('gRPC through meshlet (h2c both sides)', () => {
  it('unary: response, metadata both ways and trailing metadata', async () => {
    const { client, calls } = await grpcThroughMeshlet();
    const md = new grpc.Metadata();
    md.set('x-client-meta', 'hello-meta');
    let initial: grpc.Metadata | undefined;
    let status: grpc.StatusObject | undefined;
    const res = await new Promise<Msg>((resolve, reject) => {
      const call = client.unary(
        { text: 'hi' },
        md,
        { deadline: deadline() },
        (err: grpc.ServiceError | null, r: Msg) => (err ? reject(err) : resolve(r)),
      );
      call.on('metadata', (m: grpc.Metadata) => {
        initial = m;
      });
      call.on('status', (s: grpc.StatusObject) => {
        status = s;
      });
    });
    expect(res.text).toBe('echo:hi|meta:hello-meta');
    expect(calls).toEqual(['unary']);
    expect(initial?.get('x-initial')).toEqual(['from-server']);
    await new Promise((r) => setImmediate(r));
    expect(status?.code).toBe(grpc.status.OK);
    expect(status?.metadata.get('x-trailing')).toEqual(['bye']);
  });

  it('preserves grpc-status, grpc-message and trailing metadata of an error', async () => {
    const { client } = await grpcThroughMeshlet();
    const err = await new Promise<grpc.ServiceError>((resolve, reject) => {
      client.unary({ text: 'fail' }, new grpc.Metadata(), { deadline: deadline() }, (e: grpc.ServiceError | null) =>
        e ? resolve(e) : reject(new Error('expected an error')),
      );
    });
    expect(err.code).toBe(grpc.status.NOT_FOUND);
    expect(err.details).toBe('no such thing: fail');
    expect(err.metadata.get('x-error-detail')).toEqual(['because']);
  });

  it('server streaming delivers every message, and a mid-stream error status', async () => {
    const { client } = await grpcThroughMeshlet();
    const got: number[] = [];
    await new Promise<void>((resolve, reject) => {
      const call = client.serverStream({ n: 50 }, { deadline: deadline() });
      call.on('data', (m: Msg) => got.push(m.n as number));
      call.on('error', reject);
      call.on('end', () => resolve());
    });
    expect(got).toEqual(Array.from({ length: 50 }, (_, i) => i));

    const partial: number[] = [];
    const err = await new Promise<grpc.ServiceError>((resolve) => {
      const call = client.serverStream({ n: 3, text: 'abort' }, { deadline: deadline() });
      call.on('data', (m: Msg) => partial.push(m.n as number));
      call.on('error', (e: grpc.ServiceError) => resolve(e));
    });
    expect(partial).toEqual([0, 1, 2]);
    expect(err.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(err.details).toBe('enough');
  });

  it('client streaming sums every message', async () => {
    const { client } = await grpcThroughMeshlet();
    const res = await new Promise<Msg>((resolve, reject) => {
      const call = client.clientStream({ deadline: deadline() }, (e: grpc.ServiceError | null, r: Msg) =>
        e ? reject(e) : resolve(r),
      );
      for (let i = 1; i <= 100; i++) call.write({ n: i });
      call.end();
    });
    expect(res.n).toBe(5050);
    expect(res.text).toBe('count=100');
  });

  it('bidi streaming answers each message before the next is sent', async () => {
    const { client } = await grpcThroughMeshlet();
    const call = client.bidi({ deadline: deadline() });
    const replies: string[] = [];
    for (let i = 0; i < 10; i++) {
      const next = new Promise<string>((resolve, reject) => {
        call.once('data', (m: Msg) => resolve(m.text as string));
        call.once('error', reject);
      });
      call.write({ text: `ping${i}` });
      replies.push(await next);
    }
    const ended = new Promise<void>((resolve) => call.on('end', () => resolve()));
    call.end();
    await ended;
    expect(replies).toEqual(Array.from({ length: 10 }, (_, i) => `pong:ping${i}`));
  });

  it('multiplexes many concurrent calls over one downstream and one upstream connection', async () => {
    const { client, calls, proxy } = await grpcThroughMeshlet();
    const results = await Promise.all(
      Array.from(
        { length: 40 },
        (_, i) =>
          new Promise<string>((resolve, reject) => {
            client.unary(
              { text: `c${i}` },
              new grpc.Metadata(),
              { deadline: deadline() },
              (e: grpc.ServiceError | null, r: Msg) => (e ? reject(e) : resolve(r.text as string)),
            );
          }),
      ),
    );
    expect(results).toEqual(Array.from({ length: 40 }, (_, i) => `echo:c${i}|meta:undefined`));
    expect(calls).toHaveLength(40);
    expect(proxy.hcm.activeConnections).toBe(1);
    const cluster = proxy.clusters.get('grpc');
    expect(cluster?.stats.upstreamCxTotal).toBe(1);
  });
});

describe('HTTP/2 upstream failures through the router', () => {
  async function h2Upstream(
    onStream: (stream: http2.ServerHttp2Stream, n: number) => void,
  ): Promise<{ port: number; streams: () => number }> {
    const up = http2.createServer();
    let n = 0;
    const sessions: http2.ServerHttp2Session[] = [];
    up.on('session', (s) => {
      sessions.push(s);
      s.on('error', () => {});
    });
    up.on('stream', (stream) => {
      stream.on('error', () => {});
      onStream(stream, n++);
    });
    await new Promise<void>((r) => up.listen(0, '127.0.0.1', r));
    cleanups.push(async () => {
      for (const s of sessions) s.destroy();
      await new Promise((r) => up.close(r));
    });
    return { port: (up.address() as net.AddressInfo).port, streams: () => n };
  }

  it('a REFUSED_STREAM is retried by retry_on: refused-stream', async () => {
    const up = await h2Upstream((stream, n) => {
      if (n === 0) {
        stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
        return;
      }
      stream.respond({ ':status': 200 });
      stream.end('second try');
    });
    const proxy = await startProxy({
      routes: routeConfig([
        vhost([route(prefix('/'), action('up', { retryPolicy: retryPolicy(['refused-stream'], { numRetries: 1 }) }))]),
      ]),
      clusters: [staticCluster('up', [{ port: up.port }], { upstreamProtocol: 'http2' })],
    });
    const res = await undiciRequest(`http://127.0.0.1:${proxy.port}/retry`);
    expect(res.statusCode).toBe(200);
    expect(await res.body.text()).toBe('second try');
    expect(up.streams()).toBe(2);
  });

  it('an upstream RST_STREAM mid-call ends the gRPC call with an error instead of hanging', async () => {
    const up = await h2Upstream((stream) => {
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' });
      // One complete gRPC message frame, then a reset.
      const msg = Buffer.from(JSON.stringify({ n: 0 }));
      const frame = Buffer.alloc(5 + msg.length);
      frame.writeUInt32BE(msg.length, 1);
      msg.copy(frame, 5);
      stream.write(frame);
      setTimeout(() => stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR), 20);
    });
    const proxy = await startProxy({
      routes: routeConfig([vhost([route(prefix('/'), action('up', { timeoutMs: 0 }))])]),
      clusters: [staticCluster('up', [{ port: up.port }], { upstreamProtocol: 'http2' })],
      hcm: { codecType: 'HTTP2' },
    });
    const client = new EchoClientCtor(`127.0.0.1:${proxy.port}`, grpc.credentials.createInsecure());
    cleanups.push(() => client.close());
    const got: Msg[] = [];
    const err = await new Promise<grpc.ServiceError>((resolve) => {
      const call = client.serverStream({ n: 5 }, { deadline: deadline() });
      call.on('data', (m: Msg) => got.push(m));
      call.on('error', (e: grpc.ServiceError) => resolve(e));
    });
    expect(got).toEqual([{ n: 0 }]);
    expect(err.code).not.toBe(grpc.status.OK);
    expect(err.code).not.toBe(grpc.status.DEADLINE_EXCEEDED);
  });

  it('an unreachable HTTP/2 upstream gives gRPC UNAVAILABLE', async () => {
    // A port that was just free: nothing listens there any more.
    const probe = http2.createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    const deadPort = (probe.address() as net.AddressInfo).port;
    await new Promise((r) => probe.close(r));
    const proxy = await startProxy({
      routes: routeConfig([vhost([route(prefix('/'), action('gone'))])]),
      clusters: [staticCluster('gone', [{ port: deadPort }], { upstreamProtocol: 'http2' })],
      hcm: { codecType: 'HTTP2' },
    });
    const client = new EchoClientCtor(`127.0.0.1:${proxy.port}`, grpc.credentials.createInsecure());
    cleanups.push(() => client.close());
    const err = await new Promise<grpc.ServiceError>((resolve, reject) =>
      client.unary({ text: 'x' }, new grpc.Metadata(), { deadline: deadline() }, (e: grpc.ServiceError | null) =>
        e ? resolve(e) : reject(new Error('expected an error')),
      ),
    );
    expect(err.code).toBe(grpc.status.UNAVAILABLE);
  });
});

describe('protocol translation through meshlet', () => {
  it('HTTP/1.1 client → HTTP/2 upstream', async () => {
    const seen: { method?: string; path?: string; authority?: string; body?: string; h2?: boolean } = {};
    const up = http2.createServer();
    up.on('stream', (stream, headers) => {
      stream.on('error', () => {});
      let body = '';
      stream.setEncoding('utf8');
      stream.on('data', (c: string) => {
        body += c;
      });
      stream.on('end', () => {
        seen.method = String(headers[':method']);
        seen.path = String(headers[':path']);
        seen.authority = String(headers[':authority']);
        seen.body = body;
        seen.h2 = true;
        stream.respond({ ':status': 201, 'x-from': 'h2-upstream', 'set-cookie': ['a=1', 'b=2'] });
        stream.end(`got ${body.length} bytes`);
      });
    });
    await new Promise<void>((r) => up.listen(0, '127.0.0.1', r));
    const sessions: http2.ServerHttp2Session[] = [];
    up.on('session', (s) => sessions.push(s));
    cleanups.push(async () => {
      for (const s of sessions) s.destroy();
      await new Promise((r) => up.close(r));
    });
    const proxy = await startProxy({
      routes: routeConfig([vhost([route(prefix('/'), action('h2up'))])]),
      clusters: [
        staticCluster('h2up', [{ port: (up.address() as net.AddressInfo).port }], { upstreamProtocol: 'http2' }),
      ],
    });
    const res = await undiciRequest(`http://127.0.0.1:${proxy.port}/upload?x=1`, {
      method: 'POST',
      headers: { host: 'svc.h1.test', 'content-type': 'text/plain', connection: 'keep-alive' },
      body: 'x'.repeat(10_000),
    });
    const text = await res.body.text();
    expect(res.statusCode).toBe(201);
    expect(text).toBe('got 10000 bytes');
    expect(res.headers['x-from']).toBe('h2-upstream');
    expect(res.headers['set-cookie']).toEqual(['a=1', 'b=2']);
    expect(seen).toEqual({
      method: 'POST',
      path: '/upload?x=1',
      authority: 'svc.h1.test',
      body: 'x'.repeat(10_000),
      h2: true,
    });
  });

  it('HTTP/2 client → HTTP/1.1 upstream', async () => {
    const seen: { version?: string; method?: string; url?: string; host?: string; body?: string; cookie?: string } = {};
    const up = http.createServer((req, res) => {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (c: string) => {
        body += c;
      });
      req.on('end', () => {
        Object.assign(seen, {
          version: req.httpVersion,
          method: req.method,
          url: req.url,
          host: req.headers.host,
          body,
          cookie: req.headers.cookie,
        });
        res.writeHead(200, { 'content-type': 'text/plain', 'x-from': 'h1-upstream', connection: 'keep-alive' });
        res.write('part1-');
        res.end('part2');
      });
    });
    await new Promise<void>((r) => up.listen(0, '127.0.0.1', r));
    cleanups.push(async () => {
      up.closeAllConnections();
      await new Promise((r) => up.close(r));
    });
    const proxy = await startProxy({
      routes: routeConfig([vhost([route(prefix('/'), action('h1up'))])]),
      clusters: [
        staticCluster('h1up', [{ port: (up.address() as net.AddressInfo).port }], { upstreamProtocol: 'http1' }),
      ],
      hcm: { codecType: 'HTTP2' },
    });
    const client = http2.connect(`http://127.0.0.1:${proxy.port}`);
    client.on('error', () => {});
    cleanups.push(() => {
      client.destroy();
    });
    const req = client.request(
      { ':method': 'PUT', ':path': '/items/7', ':authority': 'svc.h2.test', cookie: ['a=1', 'b=2'] },
      { endStream: false },
    );
    const out = await new Promise<{ status: number; headers: http2.IncomingHttpHeaders; body: string }>(
      (resolve, reject) => {
        let body = '';
        let headers: http2.IncomingHttpHeaders = {};
        req.setEncoding('utf8');
        req.on('response', (h) => {
          headers = h;
        });
        req.on('data', (c: string) => {
          body += c;
        });
        req.on('error', reject);
        req.on('end', () => resolve({ status: Number(headers[':status']), headers, body }));
        req.end('payload');
      },
    );
    expect(out.status).toBe(200);
    expect(out.body).toBe('part1-part2');
    expect(out.headers['x-from']).toBe('h1-upstream');
    expect(out.headers.connection).toBeUndefined();
    expect(seen).toEqual({
      version: '1.1',
      method: 'PUT',
      url: '/items/7',
      host: 'svc.h2.test',
      body: 'payload',
      cookie: 'a=1; b=2',
    });
  });
});

describe('WebSocket across HTTP versions (RFC 8441 extended CONNECT)', () => {
  it('HTTP/1.1 Upgrade downstream → extended CONNECT to an HTTP/2 upstream, bytes both ways', async () => {
    const seen: { method?: string; protocol?: string; path?: string } = {};
    const up = http2.createServer({ settings: { enableConnectProtocol: true } });
    const sessions: http2.ServerHttp2Session[] = [];
    up.on('session', (x) => {
      sessions.push(x);
      x.on('error', () => {});
    });
    up.on('stream', (stream, headers) => {
      stream.on('error', () => {});
      Object.assign(seen, { method: headers[':method'], protocol: headers[':protocol'], path: headers[':path'] });
      stream.respond({ ':status': 200 });
      stream.on('data', (c: Buffer) => stream.write(`up:${c.toString()}`));
      stream.on('end', () => stream.end());
    });
    await new Promise<void>((r) => up.listen(0, '127.0.0.1', r));
    cleanups.push(async () => {
      for (const x of sessions) x.destroy();
      await new Promise((r) => up.close(r));
    });
    const proxy = await startProxy({
      routes: routeConfig([vhost([route(prefix('/'), action('ws', { timeoutMs: 0 }))])]),
      clusters: [
        staticCluster('ws', [{ port: (up.address() as net.AddressInfo).port }], { upstreamProtocol: 'http2' }),
      ],
      hcm: { upgradeTypes: ['websocket'] },
    });
    const sock = await connect(proxy.port);
    cleanups.push(() => {
      sock.destroy();
    });
    sock.write(
      'GET /chat HTTP/1.1\r\nHost: ws.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n',
    );
    const head = await readUntil(sock, (t) => t.includes('\r\n\r\n'));
    expect(head).toMatch(/^HTTP\/1\.1 101 /);
    expect(head.toLowerCase()).toContain('upgrade: websocket');
    expect(seen).toEqual({ method: 'CONNECT', protocol: 'websocket', path: '/chat' });
    const echoed = readUntil(sock, (t) => t.includes('up:ping'));
    sock.write('ping');
    expect(await echoed).toContain('up:ping');
  });

  it('HTTP/2 extended CONNECT downstream → HTTP/1.1 Upgrade to the upstream, bytes both ways', async () => {
    const seen: { method?: string; upgrade?: string; url?: string } = {};
    const up = http.createServer();
    up.on('upgrade', (req: http.IncomingMessage, socket: net.Socket) => {
      Object.assign(seen, { method: req.method, upgrade: req.headers.upgrade, url: req.url });
      socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
      socket.on('data', (c: Buffer) => socket.write(`h1:${c.toString()}`));
      socket.on('end', () => socket.end());
      socket.on('error', () => {});
    });
    await new Promise<void>((r) => up.listen(0, '127.0.0.1', r));
    cleanups.push(async () => {
      up.closeAllConnections();
      await new Promise((r) => up.close(r));
    });
    const proxy = await startProxy({
      routes: routeConfig([vhost([route(prefix('/'), action('ws1', { timeoutMs: 0 }))])]),
      clusters: [
        staticCluster('ws1', [{ port: (up.address() as net.AddressInfo).port }], { upstreamProtocol: 'http1' }),
      ],
      hcm: { upgradeTypes: ['websocket'], codecType: 'HTTP2' },
    });
    const client = http2.connect(`http://127.0.0.1:${proxy.port}`);
    client.on('error', () => {});
    cleanups.push(() => {
      client.destroy();
    });
    await new Promise((r) => client.once('remoteSettings', r));
    expect(client.remoteSettings.enableConnectProtocol).toBe(true);
    const req = client.request(
      {
        ':method': 'CONNECT',
        ':protocol': 'websocket',
        ':path': '/room',
        ':scheme': 'http',
        ':authority': 'ws.test',
        'sec-websocket-version': '13',
      },
      { endStream: false },
    );
    req.on('error', () => {});
    const status = await new Promise<number>((r) => req.once('response', (h) => r(Number(h[':status']))));
    expect(status).toBe(200);
    expect(seen).toEqual({ method: 'GET', upgrade: 'websocket', url: '/room' });
    const echoed = new Promise<string>((r) => req.once('data', (c: Buffer) => r(c.toString())));
    req.write('hello');
    expect(await echoed).toBe('h1:hello');
    req.close();
  });
});

describe('HTTP/2 flow control through meshlet', () => {
  it('a client that stops reading back-pressures the upstream instead of buffering the body', async () => {
    const chunk = Buffer.alloc(64 * 1024, 0x78);
    const TOTAL = 160; // 10 MiB
    const state = { written: 0 };
    const up = http2.createServer();
    const sessions: http2.ServerHttp2Session[] = [];
    up.on('session', (x) => {
      sessions.push(x);
      x.on('error', () => {});
    });
    up.on('stream', (stream) => {
      stream.on('error', () => {});
      stream.respond({ ':status': 200 });
      // Write one chunk per 'drain': `written` only grows while meshlet keeps taking data.
      const pump = () => {
        while (state.written < TOTAL) {
          state.written++;
          if (state.written === TOTAL) {
            stream.end(chunk);
            return;
          }
          if (!stream.write(chunk)) {
            stream.once('drain', pump);
            return;
          }
        }
      };
      pump();
    });
    await new Promise<void>((r) => up.listen(0, '127.0.0.1', r));
    cleanups.push(async () => {
      for (const x of sessions) x.destroy();
      await new Promise((r) => up.close(r));
    });
    const proxy = await startProxy({
      routes: routeConfig([vhost([route(prefix('/'), action('bulk', { timeoutMs: 0 }))])]),
      clusters: [
        staticCluster('bulk', [{ port: (up.address() as net.AddressInfo).port }], { upstreamProtocol: 'http2' }),
      ],
      hcm: { codecType: 'HTTP2' },
    });
    const client = http2.connect(`http://127.0.0.1:${proxy.port}`, { settings: { initialWindowSize: 65535 } });
    client.on('error', () => {});
    cleanups.push(() => {
      client.destroy();
    });
    const req = client.request({ ':path': '/bulk', ':method': 'GET' }, { endStream: true });
    req.on('error', () => {});
    req.pause();
    // Wait for the body to start flowing (on a loaded machine the first chunk can take over
    // 100 ms, which read as a plateau at 0), then until the upstream's progress plateaus (bounded:
    // at most 5 s each).
    for (let i = 0; i < 50 && state.written === 0; i++) await new Promise((r) => setTimeout(r, 100));
    let last = -1;
    for (let i = 0; i < 50 && state.written !== last; i++) {
      last = state.written;
      await new Promise((r) => setTimeout(r, 100));
    }
    // Only the flow-control windows and buffers on the way (a few hundred KiB) were taken, not
    // the 10 MiB body.
    expect(state.written).toBeGreaterThan(0);
    expect(state.written).toBeLessThan(40);
    let received = 0;
    const done = new Promise<void>((r) => req.on('end', () => r()));
    req.on('data', (c: Buffer) => {
      received += c.length;
    });
    req.resume();
    await done;
    expect(received).toBe(TOTAL * chunk.length);
  });
  it('an upstream that stops reading back-pressures the client upload', async () => {
    const chunk = Buffer.alloc(64 * 1024, 0x79);
    const TOTAL = 160; // 10 MiB
    let upstreamStream: http2.ServerHttp2Stream | undefined;
    let upstreamReceived = 0;
    const up = http2.createServer();
    const sessions: http2.ServerHttp2Session[] = [];
    up.on('session', (x) => {
      sessions.push(x);
      x.on('error', () => {});
    });
    up.on('stream', (stream) => {
      stream.on('error', () => {});
      // Do not read yet: the body stays in flow-control windows.
      stream.pause();
      upstreamStream = stream;
    });
    await new Promise<void>((r) => up.listen(0, '127.0.0.1', r));
    cleanups.push(async () => {
      for (const x of sessions) x.destroy();
      await new Promise((r) => up.close(r));
    });
    const proxy = await startProxy({
      routes: routeConfig([vhost([route(prefix('/'), action('sink', { timeoutMs: 0 }))])]),
      clusters: [
        staticCluster('sink', [{ port: (up.address() as net.AddressInfo).port }], { upstreamProtocol: 'http2' }),
      ],
      hcm: { codecType: 'HTTP2' },
    });
    const client = http2.connect(`http://127.0.0.1:${proxy.port}`);
    client.on('error', () => {});
    cleanups.push(() => {
      client.destroy();
    });
    const req = client.request({ ':path': '/upload', ':method': 'POST' }, { endStream: false });
    req.on('error', () => {});
    let written = 0;
    const pump = () => {
      while (written < TOTAL) {
        written++;
        if (written === TOTAL) {
          req.end(chunk);
          return;
        }
        if (!req.write(chunk)) {
          req.once('drain', pump);
          return;
        }
      }
    };
    pump();
    let last = -1;
    for (let i = 0; i < 50 && written !== last; i++) {
      last = written;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(upstreamStream).toBeDefined();
    expect(written).toBeGreaterThan(0);
    expect(written).toBeLessThan(40);
    const s = upstreamStream as http2.ServerHttp2Stream;
    const ended = new Promise<void>((r) => s.on('end', () => r()));
    s.on('data', (c: Buffer) => {
      upstreamReceived += c.length;
    });
    s.resume();
    await ended;
    expect(upstreamReceived).toBe(TOTAL * chunk.length);
    s.respond({ ':status': 204 }, { endStream: true });
  });
});
