/**
 * envoy.filters.http.grpc_http1_bridge through a real meshlet in front of a real @grpc/grpc-js
 * server, called by a real HTTP/1.1 client (undici): the response's status comes from the gRPC
 * trailers (200 for grpc-status 0, 503 otherwise, grpc-status/grpc-message as headers,
 * content-length set), upgrade_protobuf_to_grpc frames an application/x-protobuf body and
 * de-frames the answer, ignore_query_parameters cuts the query, the config-less form, and the
 * filter's config validation. The headers reach the client only after the trailers were seen:
 * the filter manager's StopHeaders.
 */
import * as grpc from '@grpc/grpc-js';
import { request as undiciRequest } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeBootstrap } from '../../proxy/config/bootstrap';
import { createRegistries } from '../../proxy/registry';
import { bootstrap, httpListener, ROUTER_TYPE, routes, staticCluster, startMeshlet, stopAllMeshlets, type StartedMeshlet } from '../support/meshlet';

type Msg = { text?: string };
const ser = (m: Msg): Buffer => Buffer.from(JSON.stringify(m));
const de = (b: Buffer): Msg => JSON.parse(b.toString()) as Msg;
const EchoService = {
  unary: { path: '/meshlet.test.Echo/Unary', requestStream: false, responseStream: false, requestSerialize: ser, requestDeserialize: de, responseSerialize: ser, responseDeserialize: de },
} as unknown as grpc.ServiceDefinition;
const BRIDGE = 'type.googleapis.com/envoy.extensions.filters.http.grpc_http1_bridge.v3.Config';

let server: grpc.Server;
let m: StartedMeshlet;

beforeAll(async () => {
  server = new grpc.Server();
  server.addService(EchoService, {
    unary: (call: grpc.ServerUnaryCall<Msg, Msg>, cb: grpc.sendUnaryData<Msg>) => {
      if (call.request.text === 'fail') {
        cb({ code: grpc.status.NOT_FOUND, details: 'no such thing' });
        return;
      }
      cb(null, { text: `echo:${call.request.text ?? ''}` });
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
  const rt = routes([{ match: { prefix: '/' }, route: { cluster: 'grpc' } }]);
  const router = { name: 'envoy.filters.http.router', typed_config: { '@type': ROUTER_TYPE } };
  m = await startMeshlet(
    bootstrap(
      [
        // The config-less form of Envoy's grpc-bridge example.
        httpListener('plain', rt, { http_filters: [{ name: 'envoy.filters.http.grpc_http1_bridge' }, router] }),
        httpListener('upgrade', rt, {
          http_filters: [
            { name: 'b', typed_config: { '@type': BRIDGE, upgrade_protobuf_to_grpc: true, ignore_query_parameters: true } },
            router,
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
const url = (l: string, path: string): string => `http://127.0.0.1:${m.listenerPort(l)}${path}`;

describe('grpc_http1_bridge', () => {
  it('an HTTP/1.1 gRPC call that succeeds: 200, grpc-status 0 as a header, a length-framed body', async () => {
    const r = await undiciRequest(url('plain', '/meshlet.test.Echo/Unary'), { method: 'POST', body: frame({ text: 'hi' }), headers: { 'content-type': 'application/grpc' } });
    const body = Buffer.from(await r.body.arrayBuffer());
    expect(r.statusCode).toBe(200);
    expect(r.headers['grpc-status']).toBe('0');
    expect(r.headers['content-length']).toBe(String(body.length));
    expect(r.headers['transfer-encoding']).toBeUndefined();
    expect(body.readUInt32BE(1)).toBe(body.length - 5);
    expect(de(body.subarray(5))).toEqual({ text: 'echo:hi' });
  });

  it('a failing call: 503 with grpc-status and grpc-message from the trailers', async () => {
    const r = await undiciRequest(url('plain', '/meshlet.test.Echo/Unary'), { method: 'POST', body: frame({ text: 'fail' }), headers: { 'content-type': 'application/grpc' } });
    await r.body.arrayBuffer();
    expect(r.statusCode).toBe(503);
    expect(r.headers['grpc-status']).toBe(String(grpc.status.NOT_FOUND));
    expect(r.headers['grpc-message']).toBe('no%20such%20thing'); // percent-encoded by the server, copied as-is (as Envoy)
  });

  it('a trailers-only failure (unknown method) is a 503 too', async () => {
    const r = await undiciRequest(url('plain', '/meshlet.test.Echo/Nope'), { method: 'POST', body: frame({ text: 'x' }), headers: { 'content-type': 'application/grpc' } });
    await r.body.arrayBuffer();
    expect(r.statusCode).toBe(503);
    expect(r.headers['grpc-status']).toBe(String(grpc.status.UNIMPLEMENTED));
  });

  it('non-gRPC requests pass untouched', async () => {
    const r = await undiciRequest(url('plain', '/meshlet.test.Echo/Unary'), { method: 'POST', body: 'x', headers: { 'content-type': 'text/plain' } });
    await r.body.arrayBuffer();
    expect(r.headers['grpc-status']).toBeUndefined();
  });

  it('upgrade_protobuf_to_grpc: a raw application/x-protobuf body is framed, the answer de-framed; ignore_query_parameters cuts ?…', async () => {
    const r = await undiciRequest(url('upgrade', '/meshlet.test.Echo/Unary?trace=1'), { method: 'POST', body: ser({ text: 'pb' }), headers: { 'content-type': 'application/x-protobuf' } });
    const body = Buffer.from(await r.body.arrayBuffer());
    expect(r.statusCode).toBe(200);
    expect(r.headers['grpc-status']).toBe('0');
    expect(de(body)).toEqual({ text: 'echo:pb' });
    expect(r.headers['content-length']).toBe(String(body.length));
  });

  it('without ignore_query_parameters the query reaches the gRPC server (which does not know the path)', async () => {
    const r = await undiciRequest(url('plain', '/meshlet.test.Echo/Unary?trace=1'), { method: 'POST', body: frame({ text: 'q' }), headers: { 'content-type': 'application/grpc' } });
    await r.body.arrayBuffer();
    expect(r.statusCode).toBe(503);
  });

  it('config: both fields are read; unknown fields are warned with their path', () => {
    const raw = bootstrap(
      [httpListener('v', routes([{ match: { prefix: '/' }, route: { cluster: 'c' } }]), { http_filters: [{ name: 'b', typed_config: { '@type': BRIDGE, upgrade_protobuf_to_grpc: true, nonsense: 1 } }, { name: 'r', typed_config: { '@type': ROUTER_TYPE } }] })],
      [staticCluster('c', [1])],
    );
    const { warnings } = decodeBootstrap(raw, { httpFilters: createRegistries().httpFilters });
    const text = warnings.map((w) => `${w.path}: ${w.message}`).join('\n');
    expect(text).toMatch(/http_filters\[0\]\.typed_config\.nonsense: not supported by meshlet/);
    expect(text).not.toMatch(/upgrade_protobuf_to_grpc/);
  });
});
