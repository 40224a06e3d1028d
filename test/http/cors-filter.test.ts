/**
 * envoy.filters.http.cors through a real meshlet: browser-style preflights (Origin,
 * Access-Control-Request-Method/-Headers/-Private-Network) answered by the proxy over HTTP/1.1
 * and HTTP/2, simple requests decorated on the way back, policies from typed_per_filter_config
 * (route before virtual host, field by field) and from the route action / virtual host `cors`
 * fields, filter_enabled / shadow_enabled, forward_not_matching_preflights, the
 * http.<stat_prefix>.cors.* stats in /stats and /stats/prometheus, and config validation.
 */
import http2 from 'node:http2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeCorsPolicy } from '../../proxy/config/filters/cors-policy';
import { decodeBootstrap } from '../../proxy/config/bootstrap';
import { createRegistries } from '../../proxy/registry';
import { decodeWith, request } from '../gateway/helpers';
import { bootstrap, httpListener, routes, type StartedMeshlet, startMeshlet, staticCluster, stopAllMeshlets } from '../support/meshlet';
import { closeAll, getText, type HttpEcho, startHttpEcho } from '../support/upstreams';

const CORS = 'type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors';
const POLICY = 'type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy';
const ROUTER = 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router';
const FILTERS = [
  { name: 'envoy.filters.http.cors', typed_config: { '@type': CORS } },
  { name: 'envoy.filters.http.router', typed_config: { '@type': ROUTER } },
];
const pct = (numerator: number) => ({ default_value: { numerator, denominator: 'HUNDRED' }, runtime_key: 'cors.x' });

let m: StartedMeshlet;
let echo: HttpEcho;

beforeAll(async () => {
  echo = await startHttpEcho('app');
  const vhostPolicy = {
    '@type': POLICY,
    allow_origin_string_match: [{ exact: 'https://app.example' }, { safe_regex: { regex: 'https://[a-z]+\\.trusted\\.example' } }],
    allow_methods: 'GET, POST, PUT',
    allow_headers: 'content-type, x-custom',
    expose_headers: 'x-upstream',
    max_age: '600',
    allow_credentials: true,
    allow_private_network_access: true,
  };
  const typed = httpListener(
    'typed',
    routes(
      [
        {
          // Route policy: any origin, methods/headers mirrored; the rest falls back to the vhost's.
          match: { prefix: '/open' },
          route: { cluster: 'app' },
          typed_per_filter_config: {
            'envoy.filters.http.cors': { '@type': POLICY, allow_origin_string_match: [{ safe_regex: { regex: '.*' } }], allow_methods: '*', allow_headers: '*' },
          },
        },
        {
          match: { prefix: '/strict' },
          route: { cluster: 'app' },
          typed_per_filter_config: {
            'envoy.filters.http.cors': { '@type': POLICY, forward_not_matching_preflights: false },
          },
        },
        {
          // 0 % by default, 100 % from the runtime's static layer.
          match: { prefix: '/rt' },
          route: { cluster: 'app' },
          typed_per_filter_config: {
            'envoy.filters.http.cors': { '@type': POLICY, filter_enabled: { default_value: { numerator: 0 }, runtime_key: 'cors.rt_enabled' } },
          },
        },
        {
          match: { prefix: '/off' },
          route: { cluster: 'app' },
          typed_per_filter_config: { 'envoy.filters.http.cors': { '@type': POLICY, filter_enabled: pct(0) } },
        },
        { match: { prefix: '/' }, route: { cluster: 'app' } },
      ],
      { typed_per_filter_config: { 'envoy.filters.http.cors': vhostPolicy } },
    ),
    { http_filters: FILTERS },
  );
  // Envoy's older form: `cors` on the virtual host and on the route action.
  const legacy = httpListener(
    'legacy',
    routes(
      [
        {
          match: { prefix: '/shadow' },
          route: { cluster: 'app', cors: { allow_origin_string_match: [{ exact: 'https://app.example' }], filter_enabled: pct(0), shadow_enabled: pct(100) } },
        },
        { match: { prefix: '/' }, route: { cluster: 'app' } },
      ],
      { cors: { allow_origin_string_match: [{ suffix: '.example' }], allow_methods: 'GET', max_age: '60' } },
    ),
    { http_filters: FILTERS },
  );
  m = await startMeshlet(
    bootstrap([typed, legacy], [staticCluster('app', [echo.port])], {
      layered_runtime: { layers: [{ name: 'static', static_layer: { cors: { rt_enabled: 100 } } }, { name: 'admin', admin_layer: {} }] },
    }),
  );
});

afterAll(async () => {
  await stopAllMeshlets();
  await closeAll();
});

const preflight = (origin: string, extra: Record<string, string> = {}) => ({
  method: 'OPTIONS',
  headers: {
    origin,
    'access-control-request-method': 'PUT',
    'access-control-request-headers': 'content-type,x-custom',
    'sec-fetch-mode': 'cors',
    ...extra,
  },
});

describe('CORS preflight answered by the proxy', () => {
  it('answers an allowed preflight itself with the policy headers (HTTP/1.1)', async () => {
    const before = echo.requests.length;
    const res = await request(m.listenerPort('typed'), '/api', preflight('https://app.example', { 'access-control-request-private-network': 'true' }));
    expect(res.status).toBe(200);
    expect(res.headers['access-control-allow-origin']).toBe('https://app.example');
    expect(res.headers['access-control-allow-methods']).toBe('GET, POST, PUT');
    expect(res.headers['access-control-allow-headers']).toBe('content-type, x-custom');
    expect(res.headers['access-control-max-age']).toBe('600');
    expect(res.headers['access-control-allow-credentials']).toBe('true');
    expect(res.headers['access-control-allow-private-network']).toBe('true');
    expect(res.body).toBe('');
    expect(echo.requests.length).toBe(before);
  });

  it('matches origins by regex and answers over HTTP/2', async () => {
    const client = http2.connect(`http://127.0.0.1:${m.listenerPort('typed')}`);
    try {
      const headers = await new Promise<http2.IncomingHttpHeaders>((resolve, reject) => {
        const s = client.request({ ':method': 'OPTIONS', ':path': '/api', ...preflight('https://ui.trusted.example').headers });
        s.on('response', (h) => resolve(h));
        s.on('error', reject);
        s.resume();
        s.end();
      });
      expect(headers[':status']).toBe(200);
      expect(headers['access-control-allow-origin']).toBe('https://ui.trusted.example');
      // Not asked for: no private-network grant.
      expect(headers['access-control-allow-private-network']).toBeUndefined();
    } finally {
      client.close();
    }
  });

  it('forwards a preflight from a disallowed origin upstream, undecorated', async () => {
    const before = echo.requests.length;
    const res = await request(m.listenerPort('typed'), '/api', preflight('https://evil.example'));
    expect(res.status).toBe(200);
    expect(res.headers['x-upstream']).toBe('app');
    expect(res.headers['access-control-allow-origin']).toBeUndefined();
    expect(echo.requests.length).toBe(before + 1);
    expect(echo.requests.at(-1)!.method).toBe('OPTIONS');
  });

  it('forward_not_matching_preflights: false answers a disallowed preflight without granting the origin', async () => {
    const before = echo.requests.length;
    const res = await request(m.listenerPort('typed'), '/strict', preflight('https://evil.example'));
    expect(res.status).toBe(200);
    expect(res.headers['access-control-allow-origin']).toBeUndefined();
    // The other settings come from the virtual host's policy.
    expect(res.headers['access-control-allow-methods']).toBe('GET, POST, PUT');
    expect(echo.requests.length).toBe(before);
  });

  it('a route policy overrides field by field: "*" mirrors the request, unset fields fall back to the vhost', async () => {
    const res = await request(m.listenerPort('typed'), '/open/x', preflight('https://anyone.test'));
    expect(res.status).toBe(200);
    expect(res.headers['access-control-allow-origin']).toBe('https://anyone.test');
    expect(res.headers['access-control-allow-methods']).toBe('PUT');
    expect(res.headers['access-control-allow-headers']).toBe('content-type,x-custom');
    expect(res.headers['access-control-max-age']).toBe('600');
    expect(res.headers['access-control-allow-credentials']).toBe('true');
  });

  it('an OPTIONS without Access-Control-Request-Method is not a preflight', async () => {
    const res = await request(m.listenerPort('typed'), '/api', { method: 'OPTIONS', headers: { origin: 'https://app.example' } });
    expect(res.headers['x-upstream']).toBe('app');
    expect(res.headers['access-control-allow-origin']).toBe('https://app.example');
  });
});

describe('CORS on simple requests', () => {
  it('decorates the response to an allowed origin', async () => {
    const res = await request(m.listenerPort('typed'), '/api', { headers: { origin: 'https://app.example' } });
    expect(res.status).toBe(200);
    expect(res.headers['x-upstream']).toBe('app');
    expect(res.headers['access-control-allow-origin']).toBe('https://app.example');
    expect(res.headers['access-control-allow-credentials']).toBe('true');
    expect(res.headers['access-control-expose-headers']).toBe('x-upstream');
  });

  it('leaves the response to a disallowed origin or to no origin alone', async () => {
    const bad = await request(m.listenerPort('typed'), '/api', { headers: { origin: 'https://evil.example' } });
    expect(bad.status).toBe(200);
    expect(bad.headers['access-control-allow-origin']).toBeUndefined();
    const none = await request(m.listenerPort('typed'), '/api');
    expect(none.headers['access-control-allow-origin']).toBeUndefined();
  });

  it('filter_enabled reads its runtime key from the layered runtime', async () => {
    const res = await request(m.listenerPort('typed'), '/rt', preflight('https://app.example'));
    expect(res.headers['x-upstream']).toBeUndefined();
    expect(res.headers['access-control-allow-origin']).toBe('https://app.example');
  });

  it('filter_enabled 0% turns the policy off for its route', async () => {
    const res = await request(m.listenerPort('typed'), '/off', preflight('https://app.example'));
    expect(res.headers['x-upstream']).toBe('app');
    expect(res.headers['access-control-allow-origin']).toBeUndefined();
  });
});

describe('the route action and virtual host `cors` fields', () => {
  it('a virtual host `cors` policy answers preflights', async () => {
    const res = await request(m.listenerPort('legacy'), '/x', preflight('https://shop.example'));
    expect(res.status).toBe(200);
    expect(res.headers['x-upstream']).toBeUndefined();
    expect(res.headers['access-control-allow-origin']).toBe('https://shop.example');
    expect(res.headers['access-control-allow-methods']).toBe('GET');
    expect(res.headers['access-control-max-age']).toBe('60');
  });

  it('shadow_enabled without filter_enabled only counts', async () => {
    const before = await stat('http.legacy.cors.origin_valid');
    const res = await request(m.listenerPort('legacy'), '/shadow', preflight('https://app.example'));
    expect(res.headers['x-upstream']).toBe('app');
    expect(res.headers['access-control-allow-origin']).toBeUndefined();
    expect(await stat('http.legacy.cors.origin_valid')).toBe(before + 1);
  });
});

async function stat(name: string): Promise<number> {
  const { body } = await getText(m.adminPort, `/stats?filter=${encodeURIComponent(`^${name.replace(/\./g, '\\.')}$`)}`);
  const line = body.split('\n').find((l) => l.startsWith(`${name}: `));
  return line ? Number(line.slice(name.length + 2)) : NaN;
}

describe('CORS stats', () => {
  it('counts valid and invalid origins per connection manager in /stats and /stats/prometheus', async () => {
    const v0 = await stat('http.typed.cors.origin_valid');
    const i0 = await stat('http.typed.cors.origin_invalid');
    await request(m.listenerPort('typed'), '/api', { headers: { origin: 'https://app.example' } });
    await request(m.listenerPort('typed'), '/api', { headers: { origin: 'https://evil.example' } });
    await request(m.listenerPort('typed'), '/api', { headers: { origin: 'https://evil.example' } });
    await request(m.listenerPort('typed'), '/api');
    expect(await stat('http.typed.cors.origin_valid')).toBe(v0 + 1);
    expect(await stat('http.typed.cors.origin_invalid')).toBe(i0 + 2);
    const prom = await getText(m.adminPort, '/stats/prometheus');
    expect(prom.body).toContain(`envoy_http_cors_origin_valid_total{envoy_http_conn_manager_prefix="typed"} ${v0 + 1}`);
    expect(prom.body).toContain(`envoy_http_cors_origin_invalid_total{envoy_http_conn_manager_prefix="typed"} ${i0 + 2}`);
  });
});

describe('CORS config validation', () => {
  it('rejects removed and malformed fields with their paths and warns about unknown ones', () => {
    const { errors, warnings } = decodeWith(decodeCorsPolicy, {
      allow_origin: ['*'],
      allow_origin_string_match: [{}, { safe_regex: { regex: '(' } }],
      filter_enabled: { runtime_key: 'k' },
      allow_credentials: 'yes',
      bogus: 1,
    });
    expect(errors.map((e) => e.path).sort()).toEqual([
      'typed_config.allow_credentials',
      'typed_config.allow_origin',
      'typed_config.allow_origin_string_match[0]',
      'typed_config.allow_origin_string_match[1].safe_regex.regex',
      'typed_config.filter_enabled.default_value',
    ]);
    expect(warnings.map((w) => w.path)).toEqual(['typed_config.bogus']);
  });

  it('CorsPolicy is not a filter, and Cors is not a per-route config', () => {
    const { httpFilters } = createRegistries();
    const listener = (filters: unknown[], perRoute: Record<string, unknown> = {}) =>
      httpListener('l', routes([{ match: { prefix: '/' }, route: { cluster: 'app' }, typed_per_filter_config: perRoute }]), { http_filters: filters });
    const run = (l: Record<string, unknown>) => {
      try {
        decodeBootstrap(bootstrap([l], [staticCluster('app', [1])]), { httpFilters });
        return '';
      } catch (e) {
        return String((e as Error & { issues?: unknown }).message) + JSON.stringify((e as { issues?: unknown }).issues);
      }
    };
    expect(run(listener([{ name: 'c', typed_config: { '@type': POLICY } }, FILTERS[1]]))).toMatch(/only valid in typed_per_filter_config/);
    expect(run(listener(FILTERS, { 'envoy.filters.http.cors': { '@type': CORS } }))).toMatch(/does not support per-route configuration/);
    // Envoy's shorthand: the filter by name alone, no typed_config.
    expect(run(listener([{ name: 'envoy.filters.http.cors' }, FILTERS[1]]))).toBe('');
  });
});
