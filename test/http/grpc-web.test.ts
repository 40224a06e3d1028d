/**
 * envoy.filters.http.grpc_web through a real meshlet in front of a real @grpc/grpc-js server:
 * gRPC-Web requests built from the protocol (grpc/grpc PROTOCOL-WEB.md) as a browser library
 * sends them — binary and base64 text mode, over HTTP/1.1 (undici) and HTTP/2 — unary, server
 * streaming and errors, the trailers as the final 0x80 frame, the content types, bad base64 → 400,
 * plain gRPC through the same listener untouched, and the filter's config.
 */
import * as grpc from '@grpc/grpc-js';
import http2 from 'node:http2';
import { Readable } from 'node:stream';
import { gunzipSync } from 'node:zlib';
import { request as undiciRequest } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeBootstrap } from '../../proxy/config/bootstrap';
import { trailerFrame } from '../../proxy/http/filters/grpc-web';
import { createRegistries } from '../../proxy/registry';
import { bootstrap, httpListener, ROUTER_TYPE, routes, staticCluster, startMeshlet, stopAllMeshlets, type StartedMeshlet } from '../support/meshlet';

type Msg = { text?: string; n?: number };
const ser = (m: Msg): Buffer => Buffer.from(JSON.stringify(m));
const de = (b: Buffer): Msg => JSON.parse(b.toString()) as Msg;
const method = (name: string, responseStream: boolean) => ({
  path: `/meshlet.test.Echo/${name}`,
  requestStream: false,
  responseStream,
  requestSerialize: ser,
  requestDeserialize: de,
  responseSerialize: ser,
  responseDeserialize: de,
});
const EchoService = { unary: method('Unary', false), serverStream: method('ServerStream', true) } as unknown as grpc.ServiceDefinition;

let server: grpc.Server;
let m: StartedMeshlet;
const GRPC_WEB = 'type.googleapis.com/envoy.extensions.filters.http.grpc_web.v3.GrpcWeb';

beforeAll(async () => {
  server = new grpc.Server();
  server.addService(EchoService, {
    unary: (call: grpc.ServerUnaryCall<Msg, Msg>, cb: grpc.sendUnaryData<Msg>) => {
      if (call.request.text === 'fail') {
        cb({ code: grpc.status.NOT_FOUND, details: 'no such thing' });
        return;
      }
      const t = new grpc.Metadata();
      t.set('x-trailing', 'bye');
      cb(null, { text: `echo:${call.request.text ?? ''}` }, t);
    },
    serverStream: (call: grpc.ServerWritableStream<Msg, Msg>) => {
      for (let i = 0; i < (call.request.n ?? 0); i++) call.write({ n: i, text: 'x'.repeat(1000) });
      call.end();
    },
  });
  const port = await new Promise<number>((ok, ko) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? ko(e) : ok(p))));
  const h2 = {
    typed_extension_protocol_options: {
      'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
        '@type': 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
        explicit_http_config: { http2_protocol_options: {} },
      },
    },
  };
  m = await startMeshlet(
    bootstrap(
      [
        httpListener('web', routes([{ match: { prefix: '/' }, route: { cluster: 'grpc' } }]), {
          // The config-less form of Envoy's grpc-bridge / grpc-web examples.
          http_filters: [{ name: 'envoy.filters.http.grpc_web' }, { name: 'envoy.filters.http.router', typed_config: { '@type': ROUTER_TYPE } }],
        }),
        httpListener('webgz', routes([{ match: { prefix: '/' }, route: { cluster: 'grpc' } }]), {
          http_filters: [
            {
              name: 'envoy.filters.http.compressor',
              typed_config: {
                '@type': 'type.googleapis.com/envoy.extensions.filters.http.compressor.v3.Compressor',
                compressor_library: { name: 'gz', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.compression.gzip.compressor.v3.Gzip' } },
              },
            },
            { name: 'envoy.filters.http.grpc_web' },
            { name: 'envoy.filters.http.router', typed_config: { '@type': ROUTER_TYPE } },
          ],
        }),
      ],
      [staticCluster('grpc', [port], h2)],
    ),
  );
});

afterAll(async () => {
  await stopAllMeshlets();
  server.forceShutdown();
});

function frame(msg: Msg): Buffer {
  const p = ser(msg);
  const f = Buffer.alloc(5 + p.length);
  f.writeUInt32BE(p.length, 1);
  p.copy(f, 5);
  return f;
}

/** Split a gRPC-Web body into messages and the trailer frame. */
function parse(body: Buffer): { messages: Msg[]; trailers: Record<string, string> } {
  const messages: Msg[] = [];
  const trailers: Record<string, string> = {};
  let i = 0;
  while (i < body.length) {
    const flag = body[i]!;
    const len = body.readUInt32BE(i + 1);
    const payload = body.subarray(i + 5, i + 5 + len);
    if (flag & 0x80) {
      for (const line of payload.toString('latin1').split('\r\n')) {
        const c = line.indexOf(':');
        if (c > 0) trailers[line.slice(0, c)] = line.slice(c + 1).trim();
      }
    } else messages.push(de(payload));
    i += 5 + len;
  }
  expect(i).toBe(body.length);
  return { messages, trailers };
}

const url = (path: string): string => `http://127.0.0.1:${m.listenerPort('web')}${path}`;
const webHeaders = { 'content-type': 'application/grpc-web+proto', 'x-grpc-web': '1', 'x-user-agent': 'grpc-web-javascript/0.1' };

describe('grpc_web', () => {
  it('binary mode over HTTP/1.1: unary call, trailers as the final frame', async () => {
    const r = await undiciRequest(url('/meshlet.test.Echo/Unary'), { method: 'POST', body: frame({ text: 'hi' }), headers: webHeaders });
    expect(r.statusCode).toBe(200);
    expect(r.headers['content-type']).toBe('application/grpc-web+proto');
    const { messages, trailers } = parse(Buffer.from(await r.body.arrayBuffer()));
    expect(messages).toEqual([{ text: 'echo:hi' }]);
    expect(trailers['grpc-status']).toBe('0');
    expect(trailers['x-trailing']).toBe('bye');
  });

  it('text mode both ways: base64 request (sent in 3-character pieces), base64 response with 64 KiB of streamed messages', async () => {
    const b64 = Buffer.from(frame({ n: 64 }).toString('base64'));
    // Stream the base64 in 3-character pieces so quanta straddle chunks.
    const pieces = Readable.from(
      (function* () {
        for (let i = 0; i < b64.length; i += 3) yield b64.subarray(i, i + 3);
      })(),
    );
    const r = await undiciRequest(url('/meshlet.test.Echo/ServerStream'), {
      method: 'POST',
      body: pieces,
      headers: { ...webHeaders, 'content-type': 'application/grpc-web-text', accept: 'application/grpc-web-text' },
    });
    expect(r.headers['content-type']).toBe('application/grpc-web-text+proto');
    const text = await r.body.text();
    expect(text).toMatch(/^[A-Za-z0-9+/]+=*$/);
    const { messages, trailers } = parse(Buffer.from(text, 'base64'));
    expect(messages).toHaveLength(64);
    expect(messages[63]).toEqual({ n: 63, text: 'x'.repeat(1000) });
    expect(trailers['grpc-status']).toBe('0');
  });

  it('concatenated padded base64 segments decode', async () => {
    const f = frame({ text: 'pad' });
    const body = `${f.subarray(0, 4).toString('base64')}${f.subarray(4).toString('base64')}`;
    expect(body.slice(0, 8)).toContain('=');
    const r = await undiciRequest(url('/meshlet.test.Echo/Unary'), { method: 'POST', body, headers: { ...webHeaders, 'content-type': 'application/grpc-web-text' } });
    expect(r.headers['content-type']).toBe('application/grpc-web+proto');
    expect(parse(Buffer.from(await r.body.arrayBuffer())).messages).toEqual([{ text: 'echo:pad' }]);
  });

  it('a gRPC error reaches the web client as grpc-status / grpc-message', async () => {
    const r = await undiciRequest(url('/meshlet.test.Echo/Unary'), { method: 'POST', body: frame({ text: 'fail' }), headers: webHeaders });
    expect(r.statusCode).toBe(200);
    const body = Buffer.from(await r.body.arrayBuffer());
    // grpc-js answers trailers-only: grpc-status stays in the headers (the spec allows it), or a trailer frame.
    const status = (r.headers['grpc-status'] as string | undefined) ?? parse(body).trailers['grpc-status'];
    const message = (r.headers['grpc-message'] as string | undefined) ?? parse(body).trailers['grpc-message'];
    expect(status).toBe(String(grpc.status.NOT_FOUND));
    expect(decodeURIComponent(message ?? '')).toBe('no such thing');
  });

  it('invalid base64 in text mode: a 400 local reply, in gRPC form (grpc-status 13), as Envoy', async () => {
    const r = await undiciRequest(url('/meshlet.test.Echo/Unary'), { method: 'POST', body: 'AAAA*not*base64!', headers: { ...webHeaders, 'content-type': 'application/grpc-web-text' } });
    await r.body.dump();
    expect(r.statusCode).toBe(200);
    expect(r.headers['grpc-status']).toBe('13');
    expect(decodeURIComponent(String(r.headers['grpc-message']))).toContain('invalid base64');
  });

  it('over HTTP/2 too, and a plain gRPC client through the same listener is untouched', async () => {
    const s = http2.connect(url(''));
    try {
      const req = s.request({ ':method': 'POST', ':path': '/meshlet.test.Echo/Unary', ...webHeaders });
      req.end(frame({ text: 'h2' }));
      const head = await new Promise<http2.IncomingHttpHeaders>((ok) => req.on('response', ok));
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      await new Promise((ok) => req.on('end', ok));
      expect(head['content-type']).toBe('application/grpc-web+proto');
      const { messages, trailers } = parse(Buffer.concat(chunks));
      expect(messages).toEqual([{ text: 'echo:h2' }]);
      expect(trailers['grpc-status']).toBe('0');
    } finally {
      s.close();
    }
    const Ctor = grpc.makeGenericClientConstructor(EchoService, 'Echo') as unknown as new (a: string, c: grpc.ChannelCredentials) => grpc.Client & Record<string, (...a: unknown[]) => void>;
    const client = new Ctor(`127.0.0.1:${m.listenerPort('web')}`, grpc.credentials.createInsecure());
    try {
      const res = await new Promise<Msg>((ok, ko) => client.unary!({ text: 'native' }, (e: Error | null, v: Msg) => (e ? ko(e) : ok(v))));
      expect(res.text).toBe('echo:native');
    } finally {
      client.close();
    }
  });

  it('with the compressor before it (grpc-web+proto is in its default types): a gzip body holding the messages and the trailer frame', async () => {
    const r = await undiciRequest(`http://127.0.0.1:${m.listenerPort('webgz')}/meshlet.test.Echo/ServerStream`, {
      method: 'POST',
      body: frame({ n: 20 }),
      headers: { ...webHeaders, 'accept-encoding': 'gzip' },
    });
    expect(r.headers['content-type']).toBe('application/grpc-web+proto');
    expect(r.headers['content-encoding']).toBe('gzip');
    const { messages, trailers } = parse(gunzipSync(Buffer.from(await r.body.arrayBuffer())));
    expect(messages).toHaveLength(20);
    expect(trailers['grpc-status']).toBe('0');
  });

  it('trailerFrame follows the protocol: 0x80, big-endian length, name:value CRLF lines', () => {
    const f = trailerFrame(['grpc-status', '0', 'Grpc-Message', 'ok']);
    expect(f[0]).toBe(0x80);
    expect(f.readUInt32BE(1)).toBe(f.length - 5);
    expect(f.subarray(5).toString()).toBe('grpc-status:0\r\ngrpc-message:ok\r\n');
  });

  it('config: the empty GrpcWeb is accepted; unknown fields are warned', () => {
    const raw = bootstrap(
      [httpListener('v', routes([{ match: { prefix: '/' }, route: { cluster: 'c' } }]), { http_filters: [{ name: 'w', typed_config: { '@type': GRPC_WEB, nonsense: 1 } }, { name: 'r', typed_config: { '@type': ROUTER_TYPE } }] })],
      [staticCluster('c', [1])],
    );
    const { warnings } = decodeBootstrap(raw, { httpFilters: createRegistries().httpFilters });
    expect(warnings.map((w) => `${w.path}: ${w.message}`).join('\n')).toMatch(/http_filters\[0\]\.typed_config\.nonsense: not supported by meshlet/);
  });
});
