/**
 * The gateway filters composed the way a gateway runs them: jwt_authn → ext_authz (gRPC) →
 * a TypeScript filter with an async hook → cache → router, each stopping the request while it
 * waits. Checks that the request (and a streamed request body) continues through every stop in
 * order, that each filter's headers reach the upstream, and that the cache still answers repeats.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closeTypeScriptFilters } from '../../proxy/http/filters/typescript';
import { authorizationService, closeServiceClients } from '../../proxy/http/filters/service-client';
import { bootstrap, type StartedMeshlet, startMeshlet, staticCluster, stopAllMeshlets } from '../support/meshlet';
import { closeAll } from '../support/upstreams';
import { filterListener, request, startGrpcServer, stopGrpcServer } from './helpers';

let m: StartedMeshlet;
let authz: grpc.Server | undefined;
let origin: http.Server | undefined;
let dir: string;
let token: string;
const originRequests: { url: string; headers: http.IncomingHttpHeaders; body: string }[] = [];

beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'meshlet-chain-'));
  writeFileSync(
    path.join(dir, 'tag.ts'),
    `export default {
      async onRequestHeaders(req: { headers: { set(n: string, v: string): void; get(n: string): string | undefined } }) {
        await new Promise((r) => setTimeout(r, 5));
        req.headers.set('x-ts-saw-user', req.headers.get('x-jwt-sub') ?? 'none');
      },
    };`,
  );
  const { publicKey, privateKey } = await generateKeyPair('ES256');
  const jwk = { ...(await exportJWK(publicKey)), kid: 'k', alg: 'ES256' };
  token = await new SignJWT({ sub: 'carol' }).setProtectedHeader({ alg: 'ES256', kid: 'k' }).setIssuer('https://idp').setExpirationTime('5m').sign(privateKey);

  const g = await startGrpcServer(authorizationService().service, {
    Check: (call: grpc.ServerUnaryCall<{ attributes: { request: { http: { headers: Record<string, string> } } } }, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      const sub = call.request.attributes.request.http.headers['x-jwt-sub'];
      // the authorizer runs after jwt_authn, so it sees the verified claim
      cb(null, sub === 'carol' ? { status: { code: 0 }, ok_response: { headers: [{ header: { key: 'x-authz', value: `ok:${sub}` } }] } } : { status: { code: 7 } });
    },
  });
  authz = g.server;
  origin = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => {
      body += c;
    });
    req.on('end', () => {
      originRequests.push({ url: req.url ?? '', headers: req.headers, body });
      const out = JSON.stringify({ n: originRequests.length, authz: req.headers['x-authz'], ts: req.headers['x-ts-saw-user'], body });
      res.writeHead(200, { 'cache-control': 'max-age=60', 'content-type': 'application/json', 'content-length': Buffer.byteLength(out) });
      res.end(out);
    });
  });
  await new Promise<void>((r) => origin!.listen(0, '127.0.0.1', r));
  const originPort = (origin.address() as { port: number }).port;

  const filters = [
    {
      name: 'envoy.filters.http.jwt_authn',
      typed_config: {
        '@type': 'type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication',
        providers: {
          idp: {
            issuer: 'https://idp',
            local_jwks: { inline_string: JSON.stringify({ keys: [jwk] }) },
            claim_to_headers: [{ header_name: 'x-jwt-sub', claim_name: 'sub' }],
          },
        },
        rules: [{ match: { prefix: '/' }, requires: { provider_name: 'idp' } }],
      },
    },
    {
      name: 'envoy.filters.http.ext_authz',
      typed_config: {
        '@type': 'type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz',
        grpc_service: { envoy_grpc: { cluster_name: 'authz' }, timeout: '5s' },
      },
    },
    { name: 'tag', typed_config: { '@type': 'type.googleapis.com/meshlet.filters.TypeScript', path: path.join(dir, 'tag.ts'), time_budget: '2s' } },
    {
      name: 'envoy.filters.http.cache',
      typed_config: {
        '@type': 'type.googleapis.com/envoy.extensions.filters.http.cache.v3.CacheConfig',
        typed_config: { '@type': 'type.googleapis.com/envoy.extensions.http.cache.simple_http_cache.v3.SimpleHttpCacheConfig' },
      },
    },
  ];
  m = await startMeshlet(
    bootstrap(
      [filterListener('gw', filters, [{ match: { prefix: '/' }, route: { cluster: 'origin' } }])],
      [staticCluster('origin', [originPort]), staticCluster('authz', [g.port])],
    ),
  );
});

afterAll(async () => {
  await stopAllMeshlets();
  closeServiceClients();
  closeTypeScriptFilters();
  await stopGrpcServer(authz);
  await new Promise((r) => (origin ? origin.close(r) : r(undefined)));
  await closeAll();
  rmSync(dir, { recursive: true, force: true });
});

describe('jwt_authn → ext_authz → TypeScript → cache → router', () => {
  it('each stop continues in order; every filter contributes; a repeat is served from cache', async () => {
    const port = m.listenerPort('gw');
    const auth = { authorization: `Bearer ${token}` };
    const a = await request(port, '/catalog', { headers: auth });
    expect(a.status).toBe(200);
    expect(JSON.parse(a.body)).toEqual({ n: 1, authz: 'ok:carol', ts: 'carol', body: '' });
    const b = await request(port, '/catalog', { headers: auth });
    expect(JSON.parse(b.body).n).toBe(1);
    expect(b.headers.age).toBeDefined();
    // without a token the chain stops at jwt_authn: neither the authorizer nor the cache answer
    const c = await request(port, '/catalog');
    expect([c.status, c.body]).toEqual([401, 'Jwt is missing']);
  });

  it('a streamed request body waits behind the async filters and arrives whole', async () => {
    const port = m.listenerPort('gw');
    const chunks = ['{"items":[', '1,2,3', ']}'];
    const res = await request(port, '/orders', {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      chunks,
    });
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body).body).toBe(chunks.join(''));
    expect(originRequests.at(-1)!.headers['x-authz']).toBe('ok:carol');
  });
});
