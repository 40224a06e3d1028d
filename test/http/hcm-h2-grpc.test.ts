/**
 * HTTP/2 downstream (h2c prior knowledge, detected from the preface) and gRPC end to end:
 * node:http2 and @grpc/grpc-js clients → connection manager → router → H1 or H2 pools → real
 * node:http / grpc-js servers.
 */

import http2 from 'node:http2';
import net from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { closeAll, closedPort, startHttpEcho } from '../support/upstreams';
import { action, prefix, route, routeConfig, startProxy, staticCluster, stopAll, vhost } from './hcm-support';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
  await stopAll();
  await closeAll();
});

function h2get(
  port: number,
  path: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; headers: http2.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const client = http2.connect(`http://127.0.0.1:${port}`);
    client.on('error', reject);
    const req = client.request({ ':path': path, ...headers });
    let body = '';
    let respHeaders: http2.IncomingHttpHeaders = {};
    req.on('response', (h) => {
      respHeaders = h;
    });
    req.on('data', (c: Buffer) => {
      body += c.toString();
    });
    req.on('end', () => {
      client.close();
      resolve({ status: Number(respHeaders[':status']), headers: respHeaders, body });
    });
    req.on('error', reject);
    req.end();
  });
}

const passthrough = (b: Buffer) => b;
const ECHO_SERVICE = {
  echo: {
    path: '/test.Echo/Echo',
    requestStream: false,
    responseStream: false,
    requestSerialize: passthrough,
    requestDeserialize: passthrough,
    responseSerialize: passthrough,
    responseDeserialize: passthrough,
  },
} satisfies grpc.ServiceDefinition;

async function grpcServer(): Promise<number> {
  const server = new grpc.Server();
  server.addService(ECHO_SERVICE, {
    echo: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
      const text = call.request.toString();
      if (text === 'missing') {
        cb({ code: grpc.status.NOT_FOUND, details: 'no such thing' });
        return;
      }
      const md = new grpc.Metadata();
      md.set('x-trailer', 'kept');
      cb(null, Buffer.from(`echo:${text}`), md);
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
  cleanups.push(() => new Promise<void>((r) => server.tryShutdown(() => r())));
  return port;
}

function grpcClient(port: number): grpc.Client & {
  echo: (
    req: Buffer,
    md: grpc.Metadata,
    opts: grpc.CallOptions,
    cb: (e: grpc.ServiceError | null, r?: Buffer) => void,
  ) => grpc.ClientUnaryCall;
} {
  const Ctor = grpc.makeGenericClientConstructor(ECHO_SERVICE, 'Echo');
  const c = new Ctor(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as unknown as ReturnType<
    typeof grpcClient
  >;
  cleanups.push(() => c.close());
  return c;
}

function unary(
  c: ReturnType<typeof grpcClient>,
  text: string,
): Promise<{ err: grpc.ServiceError | null; res?: Buffer; trailers?: grpc.Metadata }> {
  return new Promise((resolve) => {
    // Resolve once both the callback and the 'status' event (which carries trailers) have fired.
    let result: { err: grpc.ServiceError | null; res?: Buffer } | undefined;
    let trailers: grpc.Metadata | undefined;
    let statusSeen = false;
    const maybe = () => {
      if (result && statusSeen) resolve({ ...result, trailers });
    };
    const call = c.echo(Buffer.from(text), new grpc.Metadata(), { deadline: Date.now() + 10_000 }, (err, res) => {
      result = { err, res };
      maybe();
    });
    call.on('status', (s: grpc.StatusObject) => {
      trailers = s.metadata;
      statusSeen = true;
      maybe();
    });
  });
}

describe('HTTP/2 downstream', () => {
  it('detects the h2c preface and proxies to an HTTP/1.1 upstream', async () => {
    const up = await startHttpEcho('a');
    const proxy = await startProxy({
      routes: routeConfig([vhost([route(prefix('/'), action('a'))])]),
      clusters: [staticCluster('a', [{ port: up.port }])],
    });
    const res = await h2get(proxy.port, '/h2?x=1', { 'x-custom': 'v' });
    expect(res.status).toBe(200);
    expect(res.headers['x-upstream']).toBe('a');
    const seen = JSON.parse(res.body) as { url: string; headers: Record<string, string> };
    expect(seen.url).toBe('/h2?x=1');
    expect(seen.headers['x-custom']).toBe('v');
    const [info] = await proxy.waitCompleted(1);
    expect(info?.protocol).toBe('HTTP/2');
  });

  it('answers local replies on HTTP/2 streams', async () => {
    const proxy = await startProxy({
      routes: routeConfig([vhost([route(prefix('/api'), action('a'))])]),
      clusters: [],
    });
    const res = await h2get(proxy.port, '/nothing');
    expect(res.status).toBe(404);
  });
});

describe('WebSocket over HTTP/2 (RFC 8441) to an HTTP/1.1 upstream', () => {
  it('tunnels an extended CONNECT as an HTTP/1.1 Upgrade', async () => {
    const server = net.createServer((s) => {
      s.on('error', () => {});
      let buf = '';
      const onHead = (d: Buffer) => {
        buf += d.toString('latin1');
        if (!buf.includes('\r\n\r\n')) return;
        s.off('data', onHead);
        s.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
        s.on('data', (x: Buffer) => s.write(`echo:${x.toString('latin1')}`));
      };
      s.on('data', onHead);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    cleanups.push(() => new Promise<void>((r) => server.close(() => r())));
    const port = (server.address() as net.AddressInfo).port;
    const proxy = await startProxy({
      routes: routeConfig([vhost([route(prefix('/'), action('a'))])]),
      clusters: [staticCluster('a', [{ port }])],
      hcm: { upgradeTypes: ['websocket'] },
    });
    const client = http2.connect(`http://127.0.0.1:${proxy.port}`);
    cleanups.push(() => {
      client.destroy();
    });
    await new Promise<void>((resolve) => client.once('remoteSettings', () => resolve()));
    const stream = client.request({
      ':method': 'CONNECT',
      ':protocol': 'websocket',
      ':path': '/ws',
      ':scheme': 'http',
      ':authority': 'a',
    });
    const status = await new Promise<number>((resolve) =>
      stream.once('response', (h) => resolve(Number(h[':status']))),
    );
    expect(status).toBe(200);
    stream.write('hello');
    const echoed = await new Promise<string>((resolve) => {
      let t = '';
      stream.on('data', (d: Buffer) => {
        t += d.toString();
        if (t.includes('echo:hello')) resolve(t);
      });
      setTimeout(() => resolve(t), 5_000);
    });
    expect(echoed).toContain('echo:hello');
    stream.close();
  });
});

describe('gRPC through the proxy', () => {
  it('passes unary calls, grpc-status and trailers through an HTTP/2 upstream', async () => {
    const gport = await grpcServer();
    const proxy = await startProxy({
      routes: routeConfig([vhost([route(prefix('/', { grpc: true }), action('g'))])]),
      clusters: [staticCluster('g', [{ port: gport }], { upstreamProtocol: 'http2' })],
    });
    const c = grpcClient(proxy.port);
    const ok = await unary(c, 'hi');
    expect(ok.err).toBeNull();
    expect(ok.res?.toString()).toBe('echo:hi');
    expect(ok.trailers?.get('x-trailer')).toEqual(['kept']);
    const nf = await unary(c, 'missing');
    expect(nf.err?.code).toBe(grpc.status.NOT_FOUND);
    expect(nf.err?.details).toBe('no such thing');
    const infos = await proxy.waitCompleted(2);
    expect(infos.map((i) => i.grpcStatus).sort()).toEqual([0, 5]);
  });

  it('answers a failed upstream connection to a gRPC client as UNAVAILABLE', async () => {
    const dead = await closedPort();
    const proxy = await startProxy({
      routes: routeConfig([vhost([route(prefix('/'), action('g'))])]),
      clusters: [staticCluster('g', [{ port: dead }], { upstreamProtocol: 'http2' })],
    });
    const c = grpcClient(proxy.port);
    const r = await unary(c, 'hi');
    expect(r.err?.code).toBe(grpc.status.UNAVAILABLE);
    expect(r.err?.details).toContain('upstream connect error or disconnect/reset before headers');
    const [info] = await proxy.waitCompleted(1);
    expect(info?.responseFlags()).toBe('UF');
  });

  it('answers an unrouted gRPC method as UNIMPLEMENTED', async () => {
    const proxy = await startProxy({
      routes: routeConfig([vhost([route(prefix('/other'), action('g'))])]),
      clusters: [],
    });
    const c = grpcClient(proxy.port);
    const r = await unary(c, 'hi');
    expect(r.err?.code).toBe(grpc.status.UNIMPLEMENTED);
  });
});
