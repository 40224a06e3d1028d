/**
 * jwt_authn through a real meshlet: tokens signed at test time with `jose` (RS256 and ES256 keys
 * generated per run), a local inline JWKS provider and a remote JWKS served by a real HTTP
 * endpoint reached through a cluster (fetch counted to show caching), rules per route,
 * requires_any / allow_missing_or_failed, PerRouteConfig, forwarding and claim headers, Envoy's
 * 401 bodies with www-authenticate, and config validation.
 */
import http from 'node:http';
import { exportJWK, generateKeyPair, type JWK, type KeyLike, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeJwtAuthn } from '../../proxy/http/filters/jwt-config';
import { jwtAuthnStats } from '../../proxy/http/filters/jwt-authn';
import { closeServiceClients } from '../../proxy/http/filters/service-client';
import { bootstrap, type StartedMeshlet, startMeshlet, staticCluster, stopAllMeshlets } from '../support/meshlet';
import { closeAll, closedPort, type HttpEcho, startHttpEcho } from '../support/upstreams';
import { decodeWith, filterListener, request } from './helpers';

const JWT_TYPE = 'type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication';
const JWT_PER_ROUTE = 'type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.PerRouteConfig';

let m: StartedMeshlet;
let echo: HttpEcho;
let jwksServer: http.Server | undefined;
let jwksFetches = 0;
let localKey: KeyLike;
let remoteKey: KeyLike;
let otherKey: KeyLike;
let localJwk: JWK;

async function sign(
  key: KeyLike,
  alg: string,
  kid: string,
  claims: Record<string, unknown>,
  opts: { iss?: string; aud?: string; exp?: string | number } = {},
): Promise<string> {
  let j = new SignJWT(claims).setProtectedHeader({ alg, kid }).setIssuedAt();
  if (opts.iss !== undefined) j = j.setIssuer(opts.iss);
  if (opts.aud !== undefined) j = j.setAudience(opts.aud);
  j = j.setExpirationTime(opts.exp ?? '10m');
  return j.sign(key);
}

beforeAll(async () => {
  echo = await startHttpEcho('app');
  const local = await generateKeyPair('RS256');
  const remote = await generateKeyPair('ES256');
  const other = await generateKeyPair('RS256');
  localKey = local.privateKey;
  remoteKey = remote.privateKey;
  otherKey = other.privateKey;
  localJwk = { ...(await exportJWK(local.publicKey)), kid: 'local-1', alg: 'RS256', use: 'sig' };
  const remoteJwk: JWK = { ...(await exportJWK(remote.publicKey)), kid: 'remote-1', alg: 'ES256', use: 'sig' };

  jwksServer = http.createServer((req, res) => {
    if (req.url === '/.well-known/jwks.json') {
      jwksFetches++;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ keys: [remoteJwk] }));
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  await new Promise<void>((r) => jwksServer!.listen(0, '127.0.0.1', r));
  const jwksPort = (jwksServer.address() as { port: number }).port;

  const filter = {
    name: 'envoy.filters.http.jwt_authn',
    typed_config: {
      '@type': JWT_TYPE,
      providers: {
        local: {
          issuer: 'https://local.example',
          audiences: ['orders'],
          local_jwks: { inline_string: JSON.stringify({ keys: [localJwk] }) },
          forward_payload_header: 'x-jwt-payload',
          claim_to_headers: [
            { header_name: 'x-jwt-sub', claim_name: 'sub' },
            { header_name: 'x-jwt-team', claim_name: 'org.team' },
          ],
        },
        strict: {
          issuer: 'https://local.example',
          local_jwks: { inline_string: JSON.stringify({ keys: [localJwk] }) },
          subjects: { prefix: 'spiffe://cluster.local/' },
          max_lifetime_seconds: 3600,
        },
        unreachable: {
          remote_jwks: { http_uri: { uri: 'http://gone.example/jwks', cluster: 'jwks_down', timeout: '1s' } },
          from_headers: [{ name: 'x-gone-token' }],
        },
        remote: {
          issuer: 'https://idp.example',
          remote_jwks: {
            http_uri: { uri: 'http://idp.example/.well-known/jwks.json', cluster: 'jwks', timeout: '2s' },
            cache_duration: '300s',
          },
          from_headers: [{ name: 'x-idp-token' }],
          from_params: ['token'],
          forward: true,
        },
      },
      rules: [
        { match: { prefix: '/open' } },
        { match: { prefix: '/strict' }, requires: { provider_name: 'strict' } },
        { match: { prefix: '/either' }, requires: { requires_any: { requirements: [{ provider_name: 'local' }, { provider_name: 'remote' }] } } },
        { match: { prefix: '/optional' }, requires: { allow_missing_or_failed: {} } },
        { match: { prefix: '/remote' }, requires: { provider_name: 'remote' } },
        { match: { prefix: '/gone' }, requires: { provider_name: 'unreachable' } },
        { match: { prefix: '/' }, requires: { provider_name: 'local' } },
      ],
      requirement_map: { remote_only: { provider_name: 'remote' } },
    },
  };
  const routes = [
    {
      match: { prefix: '/unchecked' },
      route: { cluster: 'app' },
      typed_per_filter_config: { 'envoy.filters.http.jwt_authn': { '@type': JWT_PER_ROUTE, disabled: true } },
    },
    {
      match: { prefix: '/named' },
      route: { cluster: 'app' },
      typed_per_filter_config: { 'envoy.filters.http.jwt_authn': { '@type': JWT_PER_ROUTE, requirement_name: 'remote_only' } },
    },
    { match: { prefix: '/' }, route: { cluster: 'app' } },
  ];
  m = await startMeshlet(
    bootstrap(
      [filterListener('jwt', [filter], routes)],
      [staticCluster('app', [echo.port]), staticCluster('jwks', [jwksPort]), staticCluster('jwks_down', [await closedPort()])],
    ),
  );
});

afterAll(async () => {
  await stopAllMeshlets();
  closeServiceClients();
  await new Promise((r) => (jwksServer ? jwksServer.close(r) : r(undefined)));
  await closeAll();
});

function upstreamHeaders(body: string): Record<string, string> {
  return (JSON.parse(body) as { headers: Record<string, string> }).headers;
}

describe('jwt_authn with a local JWKS', () => {
  it('accepts a valid bearer token, forwards claims and payload, and strips the token', async () => {
    const token = await sign(localKey, 'RS256', 'local-1', { sub: 'alice', org: { team: 'payments' } }, { iss: 'https://local.example', aud: 'orders' });
    const res = await request(m.listenerPort('jwt'), '/orders', { headers: { authorization: `Bearer ${token}` } });
    expect(res.status).toBe(200);
    const h = upstreamHeaders(res.body);
    expect(h['x-jwt-sub']).toBe('alice');
    expect(h['x-jwt-team']).toBe('payments');
    expect(JSON.parse(Buffer.from(h['x-jwt-payload']!, 'base64url').toString()).sub).toBe('alice');
    expect(h.authorization).toBeUndefined();
  });

  it('a missing token: 401 "Jwt is missing" with a bare Bearer challenge', async () => {
    const port = m.listenerPort('jwt');
    const res = await request(port, '/orders?x=1');
    expect(res.status).toBe(401);
    expect(res.body).toBe('Jwt is missing');
    expect(res.headers['www-authenticate']).toBe(`Bearer realm="http://127.0.0.1:${port}/orders"`);
  });

  it('bad tokens: wrong key, expired, wrong audience, wrong issuer, garbage', async () => {
    const port = m.listenerPort('jwt');
    const cases: [string, string][] = [
      [await sign(otherKey, 'RS256', 'local-1', { sub: 'x' }, { iss: 'https://local.example', aud: 'orders' }), 'Jwt verification fails'],
      [await sign(localKey, 'RS256', 'local-1', { sub: 'x' }, { iss: 'https://local.example', aud: 'orders', exp: Math.floor(Date.now() / 1000) - 3600 }), 'Jwt is expired'],
      [await sign(localKey, 'RS256', 'local-1', { sub: 'x' }, { iss: 'https://local.example', aud: 'billing' }), 'Audiences in Jwt are not allowed'],
      [await sign(localKey, 'RS256', 'local-1', { sub: 'x' }, { iss: 'https://evil.example', aud: 'orders' }), 'Jwt issuer is not configured'],
      ['not-a-jwt', 'Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections'],
    ];
    for (const [token, message] of cases) {
      const res = await request(port, '/orders', { headers: { authorization: `Bearer ${token}` } });
      expect(res.status, message).toBe(401);
      expect(res.body).toBe(message);
      expect(res.headers['www-authenticate']).toBe(`Bearer realm="http://127.0.0.1:${port}/orders", error="invalid_token"`);
    }
    expect(jwtAuthnStats.denied).toBeGreaterThanOrEqual(cases.length);
  });

  it('rules without requires, a disabled PerRouteConfig and allow_missing_or_failed let requests through', async () => {
    const port = m.listenerPort('jwt');
    expect((await request(port, '/open/x')).status).toBe(200);
    expect((await request(port, '/unchecked')).status).toBe(200);
    expect((await request(port, '/optional', { headers: { authorization: 'Bearer junk' } })).status).toBe(200);
  });
});

describe('jwt_authn subjects and max_lifetime_seconds', () => {
  it('a token must have a matching sub and a lifetime within the bound', async () => {
    const port = m.listenerPort('jwt');
    const iss = { iss: 'https://local.example' };
    const good = await sign(localKey, 'RS256', 'local-1', { sub: 'spiffe://cluster.local/ns/a/sa/b' }, iss);
    expect((await request(port, '/strict', { headers: { authorization: `Bearer ${good}` } })).status).toBe(200);
    const wrongSub = await sign(localKey, 'RS256', 'local-1', { sub: 'alice' }, iss);
    const r1 = await request(port, '/strict', { headers: { authorization: `Bearer ${wrongSub}` } });
    expect([r1.status, r1.body]).toEqual([401, 'Jwt verification fails']);
    const longLived = await sign(localKey, 'RS256', 'local-1', { sub: 'spiffe://cluster.local/x' }, { ...iss, exp: '2h' });
    expect((await request(port, '/strict', { headers: { authorization: `Bearer ${longLived}` } })).status).toBe(401);
  });
});

describe('jwt_authn with a remote JWKS fetched through a cluster', () => {
  it('verifies tokens from a custom header and a query parameter, fetching the JWKS once (cached)', async () => {
    const port = m.listenerPort('jwt');
    const token = await sign(remoteKey, 'ES256', 'remote-1', { sub: 'bob' }, { iss: 'https://idp.example' });
    const before = jwksFetches;
    const a = await request(port, '/remote/a', { headers: { 'x-idp-token': token } });
    expect(a.status).toBe(200);
    // forward: true keeps the token for the upstream
    expect(upstreamHeaders(a.body)['x-idp-token']).toBe(token);
    const b = await request(port, `/remote/b?token=${token}`);
    expect(b.status).toBe(200);
    expect(jwksFetches - before).toBeLessThanOrEqual(1);
    expect((await request(port, '/remote/c')).body).toBe('Jwt is missing');
  });

  it('a JWKS endpoint that cannot be reached fails verification with Envoy\'s message', async () => {
    const token = await sign(remoteKey, 'ES256', 'remote-1', { sub: 'bob' }, { iss: 'https://idp.example' });
    const failed = jwtAuthnStats.jwksFetchFailed;
    const res = await request(m.listenerPort('jwt'), '/gone', { headers: { 'x-gone-token': token } });
    expect(res.status).toBe(401);
    expect(res.body).toBe('Jwks remote fetch is failed');
    expect(jwtAuthnStats.jwksFetchFailed).toBe(failed + 1);
  });

  it('requires_any accepts either provider; requirement_name picks from the requirement_map', async () => {
    const port = m.listenerPort('jwt');
    const remoteToken = await sign(remoteKey, 'ES256', 'remote-1', { sub: 'bob' }, { iss: 'https://idp.example' });
    const localToken = await sign(localKey, 'RS256', 'local-1', { sub: 'alice' }, { iss: 'https://local.example', aud: 'orders' });
    expect((await request(port, '/either', { headers: { 'x-idp-token': remoteToken } })).status).toBe(200);
    expect((await request(port, '/either', { headers: { authorization: `Bearer ${localToken}` } })).status).toBe(200);
    expect((await request(port, '/either')).status).toBe(401);
    expect((await request(port, '/named', { headers: { authorization: `Bearer ${localToken}` } })).status).toBe(401);
    expect((await request(port, '/named', { headers: { 'x-idp-token': remoteToken } })).status).toBe(200);
  });
});

describe('jwt_authn with an invalid inline JWKS (issue 15 bug 10)', () => {
  it('starts with a warning naming the field, and that provider fails its requests with 401', async () => {
    const filter = {
      name: 'envoy.filters.http.jwt_authn',
      typed_config: {
        '@type': JWT_TYPE,
        providers: {
          broken: { issuer: 'https://local.example', local_jwks: { inline_string: 'invalid' } },
          good: {
            issuer: 'https://local.example',
            local_jwks: { inline_string: JSON.stringify({ keys: [{ ...localJwk, kid: 'local-1', alg: 'RS256' }] }) },
            from_headers: [{ name: 'x-good-token' }],
          },
        },
        rules: [
          { match: { prefix: '/good' }, requires: { provider_name: 'good' } },
          { match: { prefix: '/' }, requires: { provider_name: 'broken' } },
        ],
      },
    };
    const bad = await startMeshlet(
      bootstrap([filterListener('jwt_broken', [filter], [{ match: { prefix: '/' }, route: { cluster: 'app' } }])], [staticCluster('app', [echo.port])]),
    );
    const w = bad.warnings.find((x) => x.path.endsWith('providers.broken.local_jwks.inline_string'));
    expect(w?.message).toMatch(/not valid JSON.*provider "broken" has no valid key.*401/);
    const port = bad.listenerPort('jwt_broken');
    const token = await sign(localKey, 'RS256', 'local-1', { sub: 'alice' }, { iss: 'https://local.example' });
    const res = await request(port, '/x', { headers: { authorization: `Bearer ${token}` } });
    expect([res.status, res.body]).toEqual([401, "Jwks doesn't have any valid public key"]);
    expect((await request(port, '/x')).body).toBe('Jwt is missing');
    // The other provider of the same filter works.
    expect((await request(port, '/good', { headers: { 'x-good-token': token } })).status).toBe(200);
  });
});

describe('jwt_authn config validation', () => {
  it('reports bad providers and requirements with their paths', () => {
    const { errors, warnings } = decodeWith(decodeJwtAuthn, {
      providers: {
        a: { local_jwks: { inline_string: '{"keys": []}' } },
        b: { remote_jwks: { http_uri: { uri: 'http://x/jwks' } } },
        c: { issuer: 'x' },
      },
      rules: [
        { match: { prefix: '/' }, requires: { provider_name: 'nope' } },
        { requires: { requires_any: { requirements: [{ provider_name: 'a' }] } } },
      ],
    });
    // An empty key set is Envoy's start-up warning, not an error (issue 15 bug 10).
    expect(warnings.map((e) => e.path)).toContain('typed_config.providers.a.local_jwks.inline_string');
    expect(errors.map((e) => e.path).sort()).toEqual([
      'typed_config.providers.b.remote_jwks.http_uri.cluster',
      'typed_config.providers.b.remote_jwks.http_uri.timeout',
      'typed_config.providers.c',
      'typed_config.rules[0].requires.provider_name',
      'typed_config.rules[1].match',
      'typed_config.rules[1].requires.requires_any.requirements',
    ]);
  });
});
