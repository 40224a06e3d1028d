/**
 * RBAC metadata principals as istiod writes them for an AuthorizationPolicy on JWT claims
 * (`request.auth.claims[groups]`, `request.auth.claims[iss]`): jwt_authn with
 * payload_in_metadata "payload" and normalize_payload_in_metadata (Istio's RequestAuthentication)
 * puts the verified payload in dynamic metadata, and the RBAC filter after it matches
 * `envoy.filters.http.jwt_authn` → payload.<claim> with list and string value matchers. Real
 * tokens, a real meshlet and real requests.
 */
import { exportJWK, generateKeyPair, type KeyLike, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bootstrap, type StartedMeshlet, startMeshlet, staticCluster, stopAllMeshlets } from '../support/meshlet';
import { closeAll, startHttpEcho } from '../support/upstreams';
import { filterListener, request } from '../gateway/helpers';

const TP = 'type.googleapis.com/';
let m: StartedMeshlet;
let key: KeyLike;

const claim = (path: string[], value: Record<string, unknown>) => ({ metadata: { filter: 'envoy.filters.http.jwt_authn', path: path.map((k) => ({ key: k })), value } });

beforeAll(async () => {
  const echo = await startHttpEcho('app');
  const kp = await generateKeyPair('RS256');
  key = kp.privateKey;
  const jwk = { ...(await exportJWK(kp.publicKey)), kid: 'k1', alg: 'RS256', use: 'sig' };
  const jwt = {
    name: 'envoy.filters.http.jwt_authn',
    typed_config: {
      '@type': `${TP}envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication`,
      providers: {
        'origins-0': {
          issuer: 'https://issuer.example',
          local_jwks: { inline_string: JSON.stringify({ keys: [jwk] }) },
          payload_in_metadata: 'payload',
          normalize_payload_in_metadata: { space_delimited_claims: ['scope', 'permission'] },
          forward: true,
        },
      },
      rules: [{ match: { prefix: '/' }, requires: { requires_any: { requirements: [{ provider_name: 'origins-0' }, { allow_missing: {} }] } } }],
      bypass_cors_preflight: true,
    },
  };
  // istiod: ALLOW when request.auth.claims[groups] has "admins" (list_match one_of) and
  // request.auth.claims[scope] has "write" (normalized from "read write"), iss as a string.
  const rbac = {
    rules: {
      policies: {
        'ns[default]-policy[claims]-rule[0]': {
          permissions: [{ any: true }],
          principals: [
            {
              and_ids: {
                ids: [
                  claim(['payload', 'groups'], { list_match: { one_of: { string_match: { exact: 'admins' } } } }),
                  claim(['payload', 'scope'], { list_match: { one_of: { string_match: { exact: 'write' } } } }),
                  claim(['payload', 'iss'], { or_match: { value_matchers: [{ string_match: { exact: 'https://issuer.example' } }, { list_match: { one_of: { string_match: { exact: 'https://issuer.example' } } } }] } }),
                ],
              },
            },
          ],
        },
      },
    },
  };
  const l = filterListener('in', [jwt, { name: 'envoy.filters.http.rbac', typed_config: { '@type': `${TP}envoy.extensions.filters.http.rbac.v3.RBAC`, ...rbac } }], [
    { match: { prefix: '/' }, route: { cluster: 'app' } },
  ]);
  m = await startMeshlet(bootstrap([l], [staticCluster('app', [echo.port])]));
});

afterAll(async () => {
  await stopAllMeshlets();
  await closeAll();
});

function token(claims: Record<string, unknown>): Promise<string> {
  return new SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid: 'k1' }).setIssuer('https://issuer.example').setIssuedAt().setExpirationTime('10m').sign(key);
}

describe('RBAC metadata principals over jwt_authn payload_in_metadata', () => {
  it('allows a token whose claims match and denies one whose do not (or no token)', async () => {
    const port = m.listenerPort('in');
    const ok = await token({ groups: ['dev', 'admins'], scope: 'read write' });
    expect((await request(port, '/', { headers: { authorization: `Bearer ${ok}` } })).status).toBe(200);
    const wrongGroup = await token({ groups: ['dev'], scope: 'read write' });
    expect((await request(port, '/', { headers: { authorization: `Bearer ${wrongGroup}` } })).status).toBe(403);
    const noWrite = await token({ groups: ['admins'], scope: 'read' });
    expect((await request(port, '/', { headers: { authorization: `Bearer ${noWrite}` } })).status).toBe(403);
    // allow_missing: no token passes jwt_authn, but there is no payload for RBAC to match.
    expect((await request(port, '/')).status).toBe(403);
  });
});
