/**
 * gRPC and HTTP/2 through a whole in-process meshlet started from an Envoy-shaped bootstrap: the
 * real listener (protocol sniffing hands the HTTP/2 preface back to the codec), the HCM decoded
 * from YAML-style config, and clusters whose upstream protocol comes from
 * `typed_extension_protocol_options` (explicit HTTP/2, or use_downstream_protocol_config).
 */
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { request as undiciRequest } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { bootstrap, httpListener, routes, startMeshlet, staticCluster, stopAllMeshlets } from '../support/meshlet';

const cleanups: (() => void | Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  await stopAllMeshlets();
});

const PROTOCOL_OPTIONS = 'envoy.extensions.upstreams.http.v3.HttpProtocolOptions';
const PROTOCOL_OPTIONS_TYPE = `type.googleapis.com/${PROTOCOL_OPTIONS}`;

function explicitHttp2(maxConcurrentStreams?: number): Record<string, unknown> {
  return {
    typed_extension_protocol_options: {
      [PROTOCOL_OPTIONS]: {
        '@type': PROTOCOL_OPTIONS_TYPE,
        explicit_http_config: {
          http2_protocol_options: maxConcurrentStreams ? { max_concurrent_streams: maxConcurrentStreams } : {},
        },
      },
    },
  };
}

const useDownstream: Record<string, unknown> = {
  typed_extension_protocol_options: {
    [PROTOCOL_OPTIONS]: { '@type': PROTOCOL_OPTIONS_TYPE, use_downstream_protocol_config: {} },
  },
};

const ser = (m: { text: string }): Buffer => Buffer.from(JSON.stringify(m));
const de = (b: Buffer): { text: string } => JSON.parse(b.toString()) as { text: string };
const SayService = {
  say: {
    path: '/meshlet.test.Greeter/Say',
    requestStream: false,
    responseStream: false,
    requestSerialize: ser,
    requestDeserialize: de,
    responseSerialize: ser,
    responseDeserialize: de,
  },
  chat: {
    path: '/meshlet.test.Greeter/Chat',
    requestStream: true,
    responseStream: true,
    requestSerialize: ser,
    requestDeserialize: de,
    responseSerialize: ser,
    responseDeserialize: de,
  },
} as unknown as grpc.ServiceDefinition;
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- generic client methods are dynamically typed
type GreeterClient = grpc.Client & Record<string, any>;
const SayClient = grpc.makeGenericClientConstructor(SayService, 'Greeter') as unknown as new (
  a: string,
  c: grpc.ChannelCredentials,
) => GreeterClient;

async function startGreeter(): Promise<number> {
  const server = new grpc.Server();
  server.addService(SayService, {
    say: (call: grpc.ServerUnaryCall<{ text: string }, { text: string }>, cb: grpc.sendUnaryData<{ text: string }>) => {
      if (call.request.text === 'deny') {
        cb({ code: grpc.status.PERMISSION_DENIED, details: 'not you' });
        return;
      }
      const md = new grpc.Metadata();
      md.set('x-greeter', 'v1');
      call.sendMetadata(md);
      cb(null, { text: `hello ${call.request.text} (${String(call.metadata.get('x-caller')[0])})` });
    },
    chat: (call: grpc.ServerDuplexStream<{ text: string }, { text: string }>) => {
      call.on('data', (m: { text: string }) => call.write({ text: m.text.toUpperCase() }));
      call.on('end', () => call.end());
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
  );
  cleanups.push(() => {
    server.forceShutdown();
  });
  return port;
}

describe('gRPC through a whole meshlet (listener sniffing → HCM → HTTP/2 pool)', () => {
  it('unary, errors and bidi streaming with an explicit HTTP/2 cluster', async () => {
    const upstreamPort = await startGreeter();
    const m = await startMeshlet(
      bootstrap(
        [httpListener('ingress', routes([{ match: { prefix: '/' }, route: { cluster: 'greeter', timeout: '0s' } }]))],
        [staticCluster('greeter', [upstreamPort], explicitHttp2(10))],
      ),
    );
    const client = new SayClient(`127.0.0.1:${m.listenerPort('ingress')}`, grpc.credentials.createInsecure());
    cleanups.push(() => client.close());
    const md = new grpc.Metadata();
    md.set('x-caller', 'tester');
    let serverMd: grpc.Metadata | undefined;
    const reply = await new Promise<{ text: string }>((resolve, reject) => {
      const call = client.say({ text: 'mesh' }, md, (e: grpc.ServiceError | null, r: { text: string }) =>
        e ? reject(e) : resolve(r),
      );
      call.on('metadata', (x: grpc.Metadata) => {
        serverMd = x;
      });
    });
    expect(reply.text).toBe('hello mesh (tester)');
    expect(serverMd?.get('x-greeter')).toEqual(['v1']);

    const err = await new Promise<grpc.ServiceError>((resolve, reject) =>
      client.say({ text: 'deny' }, new grpc.Metadata(), (e: grpc.ServiceError | null) =>
        e ? resolve(e) : reject(new Error('expected an error')),
      ),
    );
    expect(err.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(err.details).toBe('not you');

    const chat = client.chat();
    const got: string[] = [];
    const ended = new Promise<void>((resolve, reject) => {
      chat.on('data', (x: { text: string }) => got.push(x.text));
      chat.on('end', () => resolve());
      chat.on('error', reject);
    });
    for (const w of ['a', 'b', 'c']) chat.write({ text: w });
    chat.end();
    await ended;
    expect(got).toEqual(['A', 'B', 'C']);
  });

  it('use_downstream_protocol_config: HTTP/2 clients get an HTTP/2 upstream, HTTP/1.1 clients an HTTP/1.1 one', async () => {
    const seen: string[] = [];
    const answer = (
      req: http.IncomingMessage | http2.Http2ServerRequest,
      res: http.ServerResponse | http2.Http2ServerResponse,
    ) => {
      seen.push(req.httpVersion);
      res.end(`v${req.httpVersion}`);
    };
    // One port speaking both: a test upstream that routes the HTTP/2 preface to an http2 server
    // and anything else to an HTTP/1.1 server.
    const h1 = http.createServer(answer);
    const h2 = http2.createServer(answer);
    const sessions: http2.ServerHttp2Session[] = [];
    h2.on('session', (s) => sessions.push(s));
    const sockets = new Set<net.Socket>();
    const up = net.createServer((sock) => {
      sockets.add(sock);
      sock.on('close', () => sockets.delete(sock));
      sock.once('readable', () => {
        const first = sock.read() as Buffer | null;
        if (first === null) return;
        sock.unshift(first);
        (first.toString('latin1').startsWith('PRI * HTTP/2.0') ? h2 : h1).emit('connection', sock);
      });
    });
    await new Promise<void>((r) => up.listen(0, '127.0.0.1', r));
    cleanups.push(async () => {
      for (const s of sessions) s.destroy();
      for (const s of sockets) s.destroy();
      await new Promise((r) => up.close(r));
    });
    const upPort = (up.address() as net.AddressInfo).port;
    const m = await startMeshlet(
      bootstrap(
        [httpListener('ingress', routes([{ match: { prefix: '/' }, route: { cluster: 'both' } }]))],
        [staticCluster('both', [upPort], useDownstream)],
      ),
    );
    const port = m.listenerPort('ingress');

    const viaH1 = await undiciRequest(`http://127.0.0.1:${port}/one`);
    expect(await viaH1.body.text()).toBe('v1.1');

    const client = http2.connect(`http://127.0.0.1:${port}`);
    client.on('error', () => {});
    cleanups.push(() => {
      client.destroy();
    });
    const body = await new Promise<string>((resolve, reject) => {
      const req = client.request({ ':path': '/two', ':method': 'GET' }, { endStream: true });
      let text = '';
      req.setEncoding('utf8');
      req.on('data', (c: string) => {
        text += c;
      });
      req.on('end', () => resolve(text));
      req.on('error', reject);
    });
    expect(body).toBe('v2.0');
    expect(seen).toEqual(['1.1', '2.0']);
  });

  it('a plain HTTP/1.1 request still works on the same listener', async () => {
    const up = http.createServer((_req, res) => res.end('h1 ok'));
    await new Promise<void>((r) => up.listen(0, '127.0.0.1', r));
    cleanups.push(async () => {
      up.closeAllConnections();
      await new Promise((r) => up.close(r));
    });
    const m = await startMeshlet(
      bootstrap(
        [httpListener('ingress', routes([{ match: { prefix: '/' }, route: { cluster: 'h1' } }]))],
        [staticCluster('h1', [(up.address() as net.AddressInfo).port])],
      ),
    );
    const res = await undiciRequest(`http://127.0.0.1:${m.listenerPort('ingress')}/x`);
    expect(res.statusCode).toBe(200);
    expect(await res.body.text()).toBe('h1 ok');
  });
});
