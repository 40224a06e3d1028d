/**
 * ext_authz through a real meshlet against real authorizers: a gRPC server implementing
 * envoy.service.auth.v3.Authorization/Check on @grpc/grpc-js, and an HTTP authorizer on
 * node:http. Covers the CheckRequest attributes, ok_response headers passed upstream, denied
 * responses, timeouts, failure_mode_allow, per-route disabling, and config validation.
 */
import http from 'node:http';
import type * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeExtAuthz } from '../../proxy/http/filters/ext-authz-config';
import { extAuthzStats } from '../../proxy/http/filters/ext-authz-stats';
import { authorizationService, closeServiceClients } from '../../proxy/http/filters/service-client';
import type { StreamInfo } from '../../proxy/http/stream-info';
import { bootstrap, type StartedMeshlet, startMeshlet, staticCluster, stopAllMeshlets } from '../support/meshlet';
import { closeAll, closedPort, type HttpEcho, startHttpEcho } from '../support/upstreams';
import { decodeWith, filterListener, request, startGrpcServer, stopGrpcServer } from './helpers';

const EXT_AUTHZ = 'type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz';
const PER_ROUTE = 'type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute';

interface CheckCall {
  attributes: {
    source: { address: { socket_address: { address: string; port_value: number } } };
    destination: { address: { socket_address: { address: string; port_value: number } } };
    request: { http: { method: string; path: string; host: string; headers: Record<string, string> } };
    context_extensions: Record<string, string>;
  };
}

let m: StartedMeshlet;
let echo: HttpEcho;
let grpcServer: grpc.Server | undefined;
let httpAuthz: http.Server | undefined;
const checks: CheckCall[] = [];
const streams: StreamInfo[] = [];

function authzFilter(extra: Record<string, unknown>): Record<string, unknown> {
  return { name: 'envoy.filters.http.ext_authz', typed_config: { '@type': EXT_AUTHZ, ...extra } };
}

beforeAll(async () => {
  echo = await startHttpEcho('app');
  const g = await startGrpcServer(authorizationService().service, {
    Check: (call: grpc.ServerUnaryCall<CheckCall, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      const req = call.request;
      checks.push(req);
      const h = req.attributes.request.http;
      const reply = () => {
        if (h.headers['x-user'] === 'alice') {
          cb(null, {
            status: { code: 0 },
            ok_response: {
              headers: [
                { header: { key: 'x-authz-user', value: 'alice' } },
                { header: { key: 'x-user', value: 'alice@example.com' } },
              ],
              headers_to_remove: ['x-secret'],
              response_headers_to_add: [{ header: { key: 'x-authz-checked', value: 'yes' } }],
            },
          });
        } else {
          cb(null, {
            status: { code: 7 },
            denied_response: {
              status: { code: 'Unauthorized' },
              headers: [{ header: { key: 'x-deny-reason', value: 'no user' } }],
              body: 'denied by policy',
            },
          });
        }
      };
      if (h.path.startsWith('/slow')) setTimeout(reply, 3_000);
      else reply();
    },
  });
  grpcServer = g.server;

  httpAuthz = http.createServer((req, res) => {
    if (req.headers['x-token'] === 'good' || req.headers.authorization === 'Bearer good') {
      res.writeHead(200, { 'x-authz-user': 'bob', 'x-not-allowed': 'dropped' });
      res.end();
    } else {
      res.writeHead(402, { 'content-type': 'text/plain', 'x-why': 'pay first' });
      res.end(`nope ${req.method} ${req.url}`);
    }
  });
  await new Promise<void>((r) => httpAuthz!.listen(0, '127.0.0.1', r));
  const httpPort = (httpAuthz.address() as { port: number }).port;
  const dead = await closedPort();

  const routes = [
    {
      match: { prefix: '/public' },
      route: { cluster: 'app' },
      typed_per_filter_config: { 'envoy.filters.http.ext_authz': { '@type': PER_ROUTE, disabled: true } },
    },
    {
      match: { prefix: '/ext' },
      route: { cluster: 'app' },
      typed_per_filter_config: {
        'envoy.filters.http.ext_authz': { '@type': PER_ROUTE, check_settings: { context_extensions: { team: 'payments' } } },
      },
    },
    { match: { prefix: '/' }, route: { cluster: 'app' } },
  ];
  const grpcService = (cluster: string, timeout = '0.25s') => ({ envoy_grpc: { cluster_name: cluster }, timeout });
  m = await startMeshlet(
    bootstrap(
      [
        // generous deadline: the first call also loads the protos and connects the channel
        filterListener('grpc', [authzFilter({ grpc_service: grpcService('authz', '5s'), transport_api_version: 'V3' })], routes),
        filterListener('grpc_short', [authzFilter({ grpc_service: grpcService('authz', '0.2s') })], routes),
        filterListener('down', [authzFilter({ grpc_service: grpcService('dead') })], routes),
        filterListener(
          'down_allow',
          [authzFilter({ grpc_service: grpcService('dead'), failure_mode_allow: true, failure_mode_allow_header_add: true })],
          routes,
        ),
        filterListener('err_status', [authzFilter({ grpc_service: grpcService('dead'), status_on_error: { code: 503 } })], routes),
        filterListener(
          'http',
          [
            authzFilter({
              http_service: {
                server_uri: { uri: 'http://authz.local', cluster: 'http_authz', timeout: '5s' },
                path_prefix: '/check',
                authorization_request: { allowed_headers: { patterns: [{ exact: 'x-token' }] } },
                authorization_response: { allowed_upstream_headers: { patterns: [{ prefix: 'x-authz-' }] } },
              },
            }),
          ],
          routes,
        ),
      ],
      [
        staticCluster('app', [echo.port]),
        staticCluster('authz', [g.port]),
        staticCluster('http_authz', [httpPort]),
        staticCluster('dead', [dead]),
      ],
    ),
    { onHttpStream: (i) => streams.push(i) },
  );
});

afterAll(async () => {
  await stopAllMeshlets();
  closeServiceClients();
  await stopGrpcServer(grpcServer);
  await new Promise((r) => (httpAuthz ? httpAuthz.close(r) : r(undefined)));
  await closeAll();
});

describe('ext_authz over gRPC (envoy.service.auth.v3.Authorization)', () => {
  it('sends a CheckRequest with addresses and request attributes, and passes ok_response headers upstream', async () => {
    const port = m.listenerPort('grpc');
    const res = await request(port, '/orders?id=7', { headers: { 'x-user': 'alice', 'x-secret': 's3' } });
    expect(res.status).toBe(200);
    expect(res.headers['x-authz-checked']).toBe('yes');
    const seen = JSON.parse(res.body) as { headers: Record<string, string> };
    expect(seen.headers['x-authz-user']).toBe('alice');
    // append defaults to false in ok_response: the authorizer's value replaces the client's
    expect(seen.headers['x-user']).toBe('alice@example.com');
    expect(seen.headers['x-secret']).toBeUndefined();
    const c = checks.at(-1)!;
    expect(c.attributes.request.http.method).toBe('GET');
    expect(c.attributes.request.http.path).toBe('/orders?id=7');
    expect(c.attributes.request.http.host).toBe(`127.0.0.1:${port}`);
    expect(c.attributes.request.http.headers['x-user']).toBe('alice');
    expect(c.attributes.source.address.socket_address.address).toBe('127.0.0.1');
    expect(c.attributes.destination.address.socket_address.port_value).toBe(port);
  });

  it('answers a denial with the authorizer status, body and headers, flag UAEX', async () => {
    const before = extAuthzStats('').denied;
    const res = await request(m.listenerPort('grpc'), '/orders');
    expect(res.status).toBe(401);
    expect(res.body).toBe('denied by policy');
    expect(res.headers['x-deny-reason']).toBe('no user');
    expect(extAuthzStats('').denied).toBe(before + 1);
    expect(echo.requests.some((r) => r.url === '/orders')).toBe(false);
    expect(streams.find((s) => s.path === '/orders' && s.responseCode === 401)?.hasResponseFlag('UAEX')).toBe(true);
  });

  it('skips the check where ExtAuthzPerRoute disables it and sends context_extensions where set', async () => {
    const n = checks.length;
    expect((await request(m.listenerPort('grpc'), '/public/x')).status).toBe(200);
    expect(checks.length).toBe(n);
    expect((await request(m.listenerPort('grpc'), '/ext', { headers: { 'x-user': 'alice' } })).status).toBe(200);
    expect(checks.at(-1)!.attributes.context_extensions).toEqual({ team: 'payments' });
  });

  it('a check slower than the timeout is an error: 403 without failure_mode_allow', async () => {
    // warm the channel first, so only the slow answer can miss the 200 ms deadline
    expect((await request(m.listenerPort('grpc'), '/warm', { headers: { 'x-user': 'alice' } })).status).toBe(200);
    const res = await request(m.listenerPort('grpc_short'), '/slow', { headers: { 'x-user': 'alice' } });
    expect(res.status).toBe(403);
    expect(streams.find((s) => s.path === '/slow')?.responseCodeDetails).toBe('ext_authz_error');
  });

  it('an unreachable authorizer: 403, status_on_error, or through with failure_mode_allow', async () => {
    expect((await request(m.listenerPort('down'), '/a')).status).toBe(403);
    expect((await request(m.listenerPort('err_status'), '/a')).status).toBe(503);
    const res = await request(m.listenerPort('down_allow'), '/allowed');
    expect(res.status).toBe(200);
    const seen = JSON.parse(res.body) as { headers: Record<string, string> };
    expect(seen.headers['x-envoy-auth-failure-mode-allowed']).toBe('true');
  });
});

describe('ext_authz over HTTP (http_service)', () => {
  it('allowed: the authorizer sees method, path_prefix + path and allowed headers; allowed upstream headers are added', async () => {
    const res = await request(m.listenerPort('http'), '/items/1', { headers: { 'x-token': 'good', 'x-other': 'no' } });
    expect(res.status).toBe(200);
    const seen = JSON.parse(res.body) as { headers: Record<string, string> };
    expect(seen.headers['x-authz-user']).toBe('bob');
    expect(seen.headers['x-not-allowed']).toBeUndefined();
  });

  it('denied: the authorizer status, body and headers reach the client', async () => {
    const res = await request(m.listenerPort('http'), '/items/2', { method: 'DELETE', headers: { 'x-other': 'no' } });
    expect(res.status).toBe(402);
    expect(res.body).toBe('nope DELETE /check/items/2');
    expect(res.headers['x-why']).toBe('pay first');
  });
});

describe('ext_authz config validation', () => {
  it('reports bad fields with their paths', () => {
    const { errors } = decodeWith(decodeExtAuthz, {
      grpc_service: { google_grpc: { target_uri: 'x' } },
      http_service: { server_uri: { uri: 'ftp://x' } },
      status_on_error: { code: 42 },
      with_request_body: { max_request_bytes: 0 },
      transport_api_version: 'V2',
    });
    const paths = errors.map((e) => e.path);
    expect(paths).toContain('typed_config.http_service');
    expect(paths).toContain('typed_config.status_on_error.code');
    expect(paths).toContain('typed_config.with_request_body.max_request_bytes');
    expect(paths).toContain('typed_config.transport_api_version');
  });

  it('reports a missing service and HttpUri fields', () => {
    expect(decodeWith(decodeExtAuthz, {}).errors.map((e) => e.path)).toEqual(['typed_config']);
    const { errors } = decodeWith(decodeExtAuthz, { http_service: { server_uri: { uri: 'ftp://x' } } });
    expect(errors.map((e) => e.path).sort()).toEqual([
      'typed_config.http_service.server_uri.cluster',
      'typed_config.http_service.server_uri.timeout',
      'typed_config.http_service.server_uri.uri',
    ]);
  });

  it('takes a server_uri without a scheme, as Envoy does (issue 15 bug 4)', () => {
    for (const uri of ['ext_authz', '127.0.0.1:10003']) {
      const { errors, value } = decodeWith(decodeExtAuthz, {
        http_service: { server_uri: { uri, cluster: 'ext_authz-http-service', timeout: '0.25s' } },
      });
      expect(errors).toEqual([]);
      expect(JSON.stringify(value)).toContain(`"uri":"http://${uri}"`);
    }
  });
});
