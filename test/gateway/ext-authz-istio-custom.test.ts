/**
 * Istio's CUSTOM authorization action end to end through a real meshlet (issue 16 item 5): the
 * filter pair istiod generates (pilot/pkg/security/authz/builder) — an RBAC filter whose
 * shadow_rules hold the CUSTOM policies with shadow_rules_stat_prefix `istio_ext_authz_`, then
 * ext_authz with filter_enabled_metadata on `envoy.filters.http.rbac` /
 * `istio_ext_authz_shadow_effective_policy_id` prefix `istio-ext-authz` and with_request_body —
 * against a real gRPC authorizer (envoy.service.auth.v3.Authorization on @grpc/grpc-js) and a
 * real HTTP authorizer (node:http) on loopback. A request the CUSTOM policy matches goes to the
 * authorizer (allowed or denied there), one it does not match skips it; the body reaches the
 * authorizer (raw_body / body / the HTTP check's body) and, unchanged, the upstream; over the
 * limit without allow_partial_message it is 413; the shadow counters are in admin /stats.
 */
import http from 'node:http';
import type * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeExtAuthz } from '../../proxy/http/filters/ext-authz-config';
import { extAuthzStats } from '../../proxy/http/filters/ext-authz-stats';
import { authorizationService, closeServiceClients } from '../../proxy/http/filters/service-client';
import { bootstrap, type StartedMeshlet, startMeshlet, staticCluster, stopAllMeshlets } from '../support/meshlet';
import { closeAll, type HttpEcho, startHttpEcho } from '../support/upstreams';
import { decodeWith, filterListener, request, startGrpcServer, stopGrpcServer } from './helpers';

const RBAC = 'type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC';
const EXT_AUTHZ = 'type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz';
const PER_ROUTE = 'type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute';

interface Check {
  attributes: { request: { http: { path: string; headers: Record<string, string>; body: string; raw_body: Buffer } } };
}
interface HttpCheck {
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

let m: StartedMeshlet;
let echo: HttpEcho;
let grpcServer: grpc.Server | undefined;
let httpAuthz: http.Server | undefined;
const checks: Check[] = [];
const httpChecks: HttpCheck[] = [];

/** istiod's RBAC filter for CUSTOM: the provider's policies as DENY shadow rules (Istio's naming). */
function customRbac(stat: string): Record<string, unknown> {
  return {
    name: 'envoy.filters.http.rbac',
    typed_config: {
      '@type': RBAC,
      shadow_rules: {
        action: 'DENY',
        policies: {
          'istio-ext-authz-ns[foo]-policy[httpbin-1]-rule[0]': {
            permissions: [{ and_rules: { rules: [{ or_rules: { rules: [{ url_path: { path: { prefix: '/custom' } } }] } }] } }],
            principals: [{ and_ids: { ids: [{ any: true }] } }],
          },
        },
      },
      shadow_rules_stat_prefix: stat,
    },
  };
}

/** istiod's ext_authz filter for CUSTOM: gated on the RBAC shadow result in dynamic metadata. */
function customExtAuthz(service: Record<string, unknown>, body: Record<string, unknown> | undefined): Record<string, unknown> {
  return {
    name: 'envoy.filters.http.ext_authz',
    typed_config: {
      '@type': EXT_AUTHZ,
      ...service,
      transport_api_version: 'V3',
      filter_enabled_metadata: {
        filter: 'envoy.filters.http.rbac',
        path: [{ key: 'istio_ext_authz_shadow_effective_policy_id' }],
        value: { string_match: { prefix: 'istio-ext-authz' } },
      },
      ...(body ? { with_request_body: body } : {}),
      stat_prefix: 'custom_',
    },
  };
}

beforeAll(async () => {
  echo = await startHttpEcho('app');
  const g = await startGrpcServer(authorizationService().service, {
    Check: (call: grpc.ServerUnaryCall<Check, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      checks.push(call.request);
      const h = call.request.attributes.request.http;
      const body = h.raw_body.length > 0 ? h.raw_body.toString('utf8') : h.body;
      if (h.headers['x-user'] === 'alice' && !body.includes('forbidden')) {
        cb(null, { status: { code: 0 }, ok_response: { headers: [{ header: { key: 'x-authz', value: 'grpc-ok' } }] } });
      } else {
        cb(null, { status: { code: 7 }, denied_response: { status: { code: 'Forbidden' }, body: 'custom denied' } });
      }
    },
  });
  grpcServer = g.server;
  httpAuthz = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      httpChecks.push({ url: req.url ?? '', headers: req.headers, body });
      if (body.includes('explode')) {
        res.writeHead(503, { 'content-type': 'text/plain' });
        res.end('authorizer broken');
      } else if (body.includes('forbidden')) {
        res.writeHead(403, { 'content-type': 'text/plain' });
        res.end('http custom denied');
      } else {
        res.writeHead(200, { 'x-authz': 'http-ok' });
        res.end();
      }
    });
  });
  await new Promise<void>((r) => httpAuthz!.listen(0, '127.0.0.1', r));
  const httpPort = (httpAuthz.address() as { port: number }).port;

  const routes = [
    {
      match: { prefix: '/custom/nobody' },
      route: { cluster: 'app' },
      typed_per_filter_config: {
        'envoy.filters.http.ext_authz': { '@type': PER_ROUTE, check_settings: { disable_request_body_buffering: true } },
      },
    },
    { match: { prefix: '/' }, route: { cluster: 'app' } },
  ];
  const grpcService = { grpc_service: { envoy_grpc: { cluster_name: 'authz' }, timeout: '5s' } };
  const httpService = {
    http_service: {
      server_uri: { uri: 'http://ext-authz.foo.svc.cluster.local', cluster: 'http_authz', timeout: '5s' },
      path_prefix: '/check',
      authorization_request: {
        allowed_headers: { patterns: [{ exact: 'x-envoy-auth-partial-body' }] },
        // HeaderValue entries, as istiod writes them (headersToAdd: [{key, value}]).
        headers_to_add: [{ key: 'x-header-1', value: 'value-1' }],
      },
      authorization_response: { allowed_upstream_headers: { patterns: [{ exact: 'x-authz' }] } },
    },
  };
  m = await startMeshlet(
    bootstrap(
      [
        filterListener(
          'custom_grpc',
          [customRbac('istio_ext_authz_'), customExtAuthz(grpcService, { max_request_bytes: 16, allow_partial_message: true, pack_as_bytes: true })],
          routes,
        ),
        filterListener(
          'custom_grpc_strict',
          // istiod's includeRequestHeadersInCheck: ExtAuthz.allowed_headers limits the CheckRequest headers.
          [customRbac('istio_ext_authz_'), customExtAuthz({ ...grpcService, allowed_headers: { patterns: [{ exact: 'X-User', ignore_case: true }] } }, { max_request_bytes: 16 })],
          routes,
        ),
        filterListener(
          'custom_http',
          [customRbac('istio_ext_authz_'), customExtAuthz(httpService, { max_request_bytes: 2048, allow_partial_message: true })],
          routes,
        ),
      ],
      [staticCluster('app', [echo.port]), staticCluster('authz', [g.port]), staticCluster('http_authz', [httpPort])],
    ),
  );
});

afterAll(async () => {
  await stopAllMeshlets();
  closeServiceClients();
  await stopGrpcServer(grpcServer);
  await new Promise((r) => (httpAuthz ? httpAuthz.close(r) : r(undefined)));
  await closeAll();
});

async function stats(): Promise<Map<string, number>> {
  const res = await request(m.adminPort, '/stats');
  const out = new Map<string, number>();
  for (const line of res.body.split('\n')) {
    const i = line.lastIndexOf(': ');
    if (i > 0) out.set(line.slice(0, i), Number(line.slice(i + 2)));
  }
  return out;
}

describe('Istio CUSTOM action: RBAC shadow rules + ext_authz filter_enabled_metadata', () => {
  it('a request the CUSTOM policy matches is checked, one it does not match skips the authorizer', async () => {
    const port = m.listenerPort('custom_grpc');
    const before = { ...extAuthzStats('custom_') };
    const s0 = await stats();
    const n = checks.length;
    const served = echo.requests.length;

    const ok = await request(port, '/custom/a', { headers: { 'x-user': 'alice' } });
    expect(ok.status).toBe(200);
    expect(checks.length).toBe(n + 1);
    expect(echo.requests.at(-1)?.headers['x-authz']).toBe('grpc-ok');

    const denied = await request(port, '/custom/b', { headers: { 'x-user': 'mallory' } });
    expect(denied.status).toBe(403);
    expect(denied.body).toBe('custom denied');
    expect(checks.length).toBe(n + 2);

    // Not matched by the CUSTOM policy: no check, straight to the upstream (even without a user).
    const skipped = await request(port, '/other', { headers: { 'x-user': 'mallory' } });
    expect(skipped.status).toBe(200);
    expect(checks.length).toBe(n + 2);
    expect(echo.requests.length - served).toBe(2);

    const after = extAuthzStats('custom_');
    expect(after.ok - before.ok).toBe(1);
    expect(after.denied - before.denied).toBe(1);
    expect(after.disabled - before.disabled).toBe(1);
    // The shadow counters under Envoy's names, http.<stat_prefix>.rbac.<shadow_rules_stat_prefix>shadow_*; the DENY
    // shadow policy matched twice ("denied" is what marks a CUSTOM match) and missed once.
    const s1 = await stats();
    const delta = (k: string) => (s1.get(k) ?? Number.NaN) - (s0.get(k) ?? 0);
    expect(delta('http.custom_grpc.rbac.istio_ext_authz_shadow_denied')).toBe(2);
    expect(delta('http.custom_grpc.rbac.istio_ext_authz_shadow_allowed')).toBe(1);
    expect(delta('custom_ext_authz.disabled')).toBe(1);
  });

  it('with_request_body: the first max_request_bytes go in raw_body (pack_as_bytes), the whole body upstream', async () => {
    const port = m.listenerPort('custom_grpc');
    const body = 'hello authorizer, this is longer than sixteen bytes';
    const res = await request(port, '/custom/post', { method: 'POST', headers: { 'x-user': 'alice' }, body });
    expect(res.status).toBe(200);
    const h = checks.at(-1)!.attributes.request.http;
    expect(h.raw_body.toString('utf8')).toBe(body.slice(0, 16));
    expect(h.body).toBe('');
    expect(h.headers['x-envoy-auth-partial-body']).toBe('true');
    expect(echo.requests.at(-1)?.body).toBe(body);

    // A chunked body, decided on by its content: the authorizer sees it and denies.
    const denied = await request(port, '/custom/post', {
      method: 'POST',
      headers: { 'x-user': 'alice', 'transfer-encoding': 'chunked' },
      chunks: ['forbidden', ' stuff'],
    });
    expect(denied.status).toBe(403);
    expect(checks.at(-1)!.attributes.request.http.raw_body.toString('utf8')).toBe('forbidden stuff');
    expect(checks.at(-1)!.attributes.request.http.headers['x-envoy-auth-partial-body']).toBe('false');

    // disable_request_body_buffering on the route: checked at once, without the body.
    const nobody = await request(port, '/custom/nobody', { method: 'POST', headers: { 'x-user': 'alice' }, body: 'forbidden' });
    expect(nobody.status).toBe(200);
    expect(checks.at(-1)!.attributes.request.http.raw_body.length).toBe(0);
    expect(checks.at(-1)!.attributes.request.http.headers['x-envoy-auth-partial-body']).toBeUndefined();
  });

  it('without allow_partial_message a body over max_request_bytes is 413 and never checked', async () => {
    const port = m.listenerPort('custom_grpc_strict');
    const n = checks.length;
    const served = echo.requests.length;
    const big = await request(port, '/custom/big', { method: 'POST', headers: { 'x-user': 'alice' }, body: 'x'.repeat(64) });
    expect(big.status).toBe(413);
    expect(checks.length).toBe(n);
    expect(echo.requests.length).toBe(served);

    const small = await request(port, '/custom/small', { method: 'POST', headers: { 'x-user': 'alice' }, body: 'exactly16bytes!!' });
    expect(small.status).toBe(200);
    const h = checks.at(-1)!.attributes.request.http;
    expect(h.body).toBe('exactly16bytes!!');
    expect(h.headers).toEqual({ 'x-user': 'alice', 'x-envoy-auth-partial-body': 'false' });
    expect(echo.requests.at(-1)?.body).toBe('exactly16bytes!!');
  });

  it('http_service: the body is forwarded to the HTTP authorizer, which decides on it', async () => {
    const port = m.listenerPort('custom_http');
    const ok = await request(port, '/custom/h?x=1', { method: 'POST', body: '{"amount": 10}' });
    expect(ok.status).toBe(200);
    const c = httpChecks.at(-1)!;
    expect(c.url).toBe('/check/custom/h?x=1');
    expect(c.body).toBe('{"amount": 10}');
    expect(c.headers['content-length']).toBe('14');
    expect(c.headers['x-envoy-auth-partial-body']).toBe('false');
    expect(c.headers['x-header-1']).toBe('value-1');
    expect(echo.requests.at(-1)?.headers['x-authz']).toBe('http-ok');
    expect(echo.requests.at(-1)?.body).toBe('{"amount": 10}');

    const denied = await request(port, '/custom/h', { method: 'POST', body: 'forbidden' });
    expect(denied.status).toBe(403);
    expect(denied.body).toBe('http custom denied');

    // A 5xx is the authorizer failing, not denying: status_on_error (403, empty body) and ext_authz.error.
    const errorsBefore = extAuthzStats('custom_').error;
    const broken = await request(port, '/custom/h', { method: 'POST', body: 'explode' });
    expect(broken.status).toBe(403);
    expect(broken.body).toBe('');
    expect(extAuthzStats('custom_').error - errorsBefore).toBe(1);

    const n = httpChecks.length;
    const skipped = await request(port, '/elsewhere', { method: 'POST', body: 'forbidden' });
    expect(skipped.status).toBe(200);
    expect(httpChecks.length).toBe(n);
  });
});

describe('ext_authz gating and body config validation', () => {
  it('reports bad filter_enabled_metadata, with_request_body and deny_at_disable fields with their paths', () => {
    const { errors } = decodeWith(decodeExtAuthz, {
      grpc_service: { envoy_grpc: { cluster_name: 'authz' } },
      filter_enabled_metadata: { filter: 'envoy.filters.http.rbac', path: [], value: { string_match: { prefix: 'x' } } },
      with_request_body: { max_request_bytes: 0 },
      deny_at_disable: { runtime_key: 'k' },
      filter_enabled: { runtime_key: 'k' },
    });
    expect(errors.map((e) => e.path).sort()).toEqual([
      'typed_config.deny_at_disable.default_value',
      'typed_config.filter_enabled.default_value',
      'typed_config.filter_enabled_metadata.path',
      'typed_config.with_request_body.max_request_bytes',
    ]);
  });

  // The ext_authz filters of istiod's golden outputs (pilot/pkg/security/authz/builder/testdata/http/
  // custom-grpc-provider-out2.yaml, custom-http-provider-out2.yaml), in proto-JSON field names.
  const metadataGate = {
    filter: 'envoy.filters.http.rbac',
    path: [{ key: 'istio_ext_authz_shadow_effective_policy_id' }],
    value: { string_match: { prefix: 'istio-ext-authz-default' } },
  };
  const istioPatterns = { patterns: [{ exact: 'x-custom-id', ignore_case: true }, { ignore_case: true, prefix: 'x-prefix-' }, { ignore_case: true, suffix: '-suffix' }] };

  it("accepts istiod's CUSTOM gRPC ext_authz as generated (status_on_error by enum name)", () => {
    const { errors, warnings, value } = decodeWith(decodeExtAuthz, {
      failure_mode_allow: true,
      filter_enabled_metadata: metadataGate,
      grpc_service: {
        envoy_grpc: { authority: 'my-custom-ext-authz.foo.svc.cluster.local', cluster_name: 'outbound|9000||my-custom-ext-authz.foo.svc.cluster.local' },
        timeout: '0.002s',
      },
      status_on_error: { code: 'Forbidden' },
      transport_api_version: 'V3',
      with_request_body: { allow_partial_message: true, max_request_bytes: 4096 },
    });
    expect(errors).toEqual([]);
    expect(warnings).toEqual([]);
    expect(value?.statusOnError).toBe(403);
    expect(value?.withRequestBody).toEqual({ maxRequestBytes: 4096, allowPartialMessage: true, packAsBytes: false });
    expect(value?.filterEnabledMetadata?.path).toEqual(['istio_ext_authz_shadow_effective_policy_id']);
  });

  it("accepts istiod's CUSTOM HTTP ext_authz as generated (top-level allowed_headers)", () => {
    const { errors, warnings, value } = decodeWith(decodeExtAuthz, {
      allowed_headers: istioPatterns,
      failure_mode_allow: true,
      filter_enabled_metadata: metadataGate,
      http_service: {
        authorization_request: { headers_to_add: [{ key: 'x-header-1', value: 'value-1' }] },
        authorization_response: {
          allowed_client_headers: istioPatterns,
          allowed_client_headers_on_success: istioPatterns,
          allowed_upstream_headers: istioPatterns,
        },
        path_prefix: '/check',
        server_uri: { cluster: 'outbound|9000||my-custom-ext-authz.foo.svc.cluster.local', timeout: '10s', uri: 'http://my-custom-ext-authz.foo.svc.cluster.local' },
      },
      status_on_error: { code: 'Forbidden' },
      transport_api_version: 'V3',
      with_request_body: { allow_partial_message: true, max_request_bytes: 2048, pack_as_bytes: true },
    });
    expect(errors).toEqual([]);
    expect(warnings).toEqual([]);
    // Top-level allowed_headers stands in for authorization_request.allowed_headers, as in Envoy.
    expect(value?.http?.allowedHeaders).toHaveLength(3);
  });

  it('rejects allowed_headers set twice and an unknown status name, with their paths', () => {
    const { errors } = decodeWith(decodeExtAuthz, {
      allowed_headers: istioPatterns,
      http_service: {
        server_uri: { cluster: 'c', timeout: '1s', uri: 'http://c' },
        authorization_request: { allowed_headers: istioPatterns },
      },
      status_on_error: { code: 'Teapot' },
    });
    expect(errors.map((e) => e.path).sort()).toEqual([
      'typed_config.http_service.authorization_request.allowed_headers',
      'typed_config.status_on_error.code',
    ]);
  });
});
