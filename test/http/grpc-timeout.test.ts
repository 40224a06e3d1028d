/**
 * Istio writes `max_stream_duration: { grpc_timeout_header_max: 0s }` on every route so that a
 * gRPC client's deadline (grpc-timeout) is the route timeout. meshlet accepted the field and
 * ignored the header: a call with a 300 ms deadline waited on the route's own timeout.
 */
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { grpcTimeoutMs } from '../../proxy/http/router/request-shaping';
import { bootstrap, httpListener, routes, type StartedMeshlet, startMeshlet, staticCluster, stopAllMeshlets } from '../support/meshlet';

let m: StartedMeshlet;
let slow: http2.Http2Server;

beforeAll(async () => {
  // A gRPC-shaped upstream that answers after 1.5 s.
  slow = http2.createServer();
  slow.on('stream', (s) => {
    const t = setTimeout(() => {
      if (s.destroyed) return;
      s.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      s.on('wantTrailers', () => s.sendTrailers({ 'grpc-status': '0' }));
      s.end();
    }, 1500);
    s.on('close', () => clearTimeout(t));
    s.resume();
  });
  await new Promise<void>((r) => slow.listen(0, '127.0.0.1', r));
  const port = (slow.address() as AddressInfo).port;
  const h2 = { typed_extension_protocol_options: { 'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': { '@type': 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions', explicit_http_config: { http2_protocol_options: {} } } } };
  m = await startMeshlet(
    bootstrap(
      [
        httpListener(
          'l',
          routes([
            // Istio's shape: no route timeout, grpc-timeout uncapped.
            { match: { prefix: '/istio.' }, route: { cluster: 'slow', timeout: '0s', max_stream_duration: { grpc_timeout_header_max: '0s' } } },
            // Capped at 200 ms, offset 50 ms.
            { match: { prefix: '/capped.' }, route: { cluster: 'slow', timeout: '0s', max_stream_duration: { grpc_timeout_header_max: '0.2s', grpc_timeout_header_offset: '0.05s' } } },
            { match: { prefix: '/' }, route: { cluster: 'slow', timeout: '0s' } },
          ]),
        ),
      ],
      [staticCluster('slow', [port], h2)],
    ),
  );
});

afterAll(async () => {
  await stopAllMeshlets();
  slow?.close();
});

function call(path: string, grpcTimeout?: string): Promise<{ ms: number; grpcStatus: string | undefined }> {
  return new Promise((resolve, reject) => {
    const c = http2.connect(`http://127.0.0.1:${m.listenerPort('l')}`);
    const t0 = performance.now();
    const req = c.request({ ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers', ...(grpcTimeout ? { 'grpc-timeout': grpcTimeout } : {}) });
    let status: string | undefined;
    req.on('response', (h) => (status = h['grpc-status'] as string | undefined));
    req.on('trailers', (h) => (status = (h['grpc-status'] as string | undefined) ?? status));
    req.on('close', () => {
      c.close();
      resolve({ ms: performance.now() - t0, grpcStatus: status });
    });
    req.on('error', reject);
    req.resume();
    req.end(Buffer.from([0, 0, 0, 0, 0]));
  });
}

describe('grpc-timeout as the route timeout', () => {
  it('parses the header as Envoy does, with offset and cap', () => {
    expect(grpcTimeoutMs('300m', 0, 0)).toBe(300);
    expect(grpcTimeoutMs('2S', 0, 0)).toBe(2000);
    expect(grpcTimeoutMs('1M', 0, 0)).toBe(60_000);
    expect(grpcTimeoutMs('1500u', 0, 0)).toBe(2);
    expect(grpcTimeoutMs(undefined, 0, 0)).toBe(0); // none
    expect(grpcTimeoutMs('12x', 0, 0)).toBe(0); // malformed: none
    expect(grpcTimeoutMs('123456789m', 0, 0)).toBe(0); // more than 8 digits: malformed
    expect(grpcTimeoutMs(undefined, 200, 0)).toBe(200); // no deadline: the cap
    expect(grpcTimeoutMs('1S', 200, 50)).toBe(200);
    expect(grpcTimeoutMs('100m', 200, 50)).toBe(50);
    expect(grpcTimeoutMs('40m', 200, 50)).toBe(40); // offset would reach 0: not applied
  });

  it('a 300 ms deadline ends the call as an upstream timeout, not the route timeout (none here)', async () => {
    const r = await call('/istio.Svc/M', '300m');
    expect(r.ms).toBeGreaterThanOrEqual(250);
    expect(r.ms).toBeLessThan(1400);
    // Envoy's local reply for an upstream timeout to a gRPC client: 504 → UNAVAILABLE (14).
    expect(r.grpcStatus).toBe('14');
  });

  it('without a configured cap the header is not read', async () => {
    const r = await call('/plain.Svc/M', '300m');
    expect(r.ms).toBeGreaterThanOrEqual(1400);
    expect(r.grpcStatus).toBe('0');
  });

  it('the cap applies when the client has no deadline', async () => {
    const r = await call('/capped.Svc/M');
    expect(r.ms).toBeLessThan(1400);
    expect(r.grpcStatus).toBe('14');
  });
});
