/**
 * envoy.filters.http.csrf through a real meshlet: modifying requests whose Origin (or Referer)
 * does not match the Host are answered 403 "Invalid origin"; matching ones, additional_origins
 * and safe methods go through; shadow mode only counts; a per-route CsrfPolicy overrides; the
 * http.<stat_prefix>.csrf.* stats in /stats and /stats/prometheus; config validation.
 */
import http2 from 'node:http2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeCsrfPolicy, hostAndPort } from '../../proxy/http/filters/csrf';
import { decodeWith, request } from '../gateway/helpers';
import { bootstrap, httpListener, routes, type StartedMeshlet, startMeshlet, staticCluster, stopAllMeshlets } from '../support/meshlet';
import { closeAll, getText, type HttpEcho, startHttpEcho } from '../support/upstreams';

const CSRF = 'type.googleapis.com/envoy.extensions.filters.http.csrf.v3.CsrfPolicy';
const ROUTER = 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router';
const pct = (numerator: number) => ({ default_value: { numerator, denominator: 'HUNDRED' } });

let m: StartedMeshlet;
let echo: HttpEcho;

beforeAll(async () => {
  echo = await startHttpEcho('app');
  const csrf = (name: string, policy: Record<string, unknown>, routeList: Record<string, unknown>[]) =>
    httpListener(name, routes(routeList), {
      http_filters: [
        { name: 'envoy.filters.http.csrf', typed_config: { '@type': CSRF, ...policy } },
        { name: 'envoy.filters.http.router', typed_config: { '@type': ROUTER } },
      ],
    });
  m = await startMeshlet(
    bootstrap(
      [
        csrf('enforce', { filter_enabled: pct(100), additional_origins: [{ suffix: '.partner.example' }] }, [
          {
            match: { prefix: '/shadow' },
            route: { cluster: 'app' },
            typed_per_filter_config: { 'envoy.filters.http.csrf': { '@type': CSRF, filter_enabled: pct(0), shadow_enabled: pct(100) } },
          },
          { match: { prefix: '/' }, route: { cluster: 'app' } },
        ]),
      ],
      [staticCluster('app', [echo.port])],
    ),
  );
});

afterAll(async () => {
  await stopAllMeshlets();
  await closeAll();
});

async function stat(name: string): Promise<number> {
  const { body } = await getText(m.adminPort, '/stats?filter=csrf');
  const line = body.split('\n').find((l) => l.startsWith(`${name}: `));
  return line ? Number(line.slice(name.length + 2)) : 0;
}

describe('CSRF enforcement', () => {
  it('a cross-origin POST is refused with 403 before it reaches the upstream', async () => {
    const before = echo.requests.length;
    const res = await request(m.listenerPort('enforce'), '/api', {
      method: 'POST',
      headers: { host: 'shop.example', origin: 'https://evil.example', 'content-type': 'application/json' },
      body: '{}',
    });
    expect(res.status).toBe(403);
    expect(res.body).toBe('Invalid origin');
    expect(echo.requests.length).toBe(before);
  });

  it('a same-origin POST, a Referer from the same host and an additional origin go through', async () => {
    const port = m.listenerPort('enforce');
    const same = await request(port, '/api', { method: 'POST', headers: { host: 'shop.example:8080', origin: 'https://shop.example:8080' }, body: 'x' });
    expect(same.status).toBe(200);
    const ref = await request(port, '/api', { method: 'DELETE', headers: { host: 'shop.example', referer: 'https://shop.example/cart?x=1' } });
    expect(ref.status).toBe(200);
    const partner = await request(port, '/api', { method: 'PUT', headers: { host: 'shop.example', origin: 'https://app.partner.example' }, body: 'x' });
    expect(partner.status).toBe(200);
    expect(partner.headers['x-upstream']).toBe('app');
  });

  it('a PATCH with no source origin is refused; a GET is not checked', async () => {
    const port = m.listenerPort('enforce');
    const v0 = await stat('http.enforce.csrf.missing_source_origin');
    const patch = await request(port, '/api', { method: 'PATCH', headers: { host: 'shop.example' }, body: 'x' });
    expect(patch.status).toBe(403);
    expect(await stat('http.enforce.csrf.missing_source_origin')).toBe(v0 + 1);
    const get = await request(port, '/api', { headers: { host: 'shop.example', origin: 'https://evil.example' } });
    expect(get.status).toBe(200);
  });

  it('HTTP/2: :authority is the target origin', async () => {
    const client = http2.connect(`http://127.0.0.1:${m.listenerPort('enforce')}`);
    const status = (origin: string) =>
      new Promise<number>((resolve, reject) => {
        const s = client.request({ ':method': 'POST', ':path': '/api', ':authority': 'shop.example', origin });
        s.on('response', (h) => resolve(Number(h[':status'])));
        s.on('error', reject);
        s.resume();
        s.end('x');
      });
    try {
      expect(await status('https://shop.example')).toBe(200);
      expect(await status('https://evil.example')).toBe(403);
    } finally {
      client.close();
    }
  });

  it('a per-route policy in shadow mode only counts', async () => {
    const i0 = await stat('http.enforce.csrf.request_invalid');
    const res = await request(m.listenerPort('enforce'), '/shadow', { method: 'POST', headers: { host: 'shop.example', origin: 'https://evil.example' }, body: 'x' });
    expect(res.status).toBe(200);
    expect(await stat('http.enforce.csrf.request_invalid')).toBe(i0 + 1);
  });

  it('counts in /stats and /stats/prometheus', async () => {
    const v0 = await stat('http.enforce.csrf.request_valid');
    await request(m.listenerPort('enforce'), '/api', { method: 'POST', headers: { host: 'a.example', origin: 'http://a.example' }, body: 'x' });
    expect(await stat('http.enforce.csrf.request_valid')).toBe(v0 + 1);
    const prom = (await getText(m.adminPort, '/stats/prometheus')).body;
    expect(prom).toContain(`envoy_http_csrf_request_valid_total{envoy_http_conn_manager_prefix="enforce"} ${v0 + 1}`);
    expect(prom).toMatch(/envoy_http_csrf_request_invalid_total\{envoy_http_conn_manager_prefix="enforce"\} [1-9]/);
  });
});

describe('CSRF pieces', () => {
  it('takes the authority of an absolute URL, and other values as they are', () => {
    expect(hostAndPort('https://a.example:8443/x?y')).toBe('a.example:8443');
    expect(hostAndPort('http://a.example')).toBe('a.example');
    expect(hostAndPort('null')).toBe('null');
  });

  it('validates the policy with paths', () => {
    const { errors, warnings } = decodeWith(decodeCsrfPolicy, {
      shadow_enabled: { runtime_key: 'x' },
      additional_origins: [{}],
      other: true,
    });
    expect(errors.map((e) => e.path).sort()).toEqual([
      'typed_config.additional_origins[0]',
      'typed_config.filter_enabled',
      'typed_config.shadow_enabled.default_value',
    ]);
    expect(warnings.map((w) => w.path)).toEqual(['typed_config.other']);
  });
});
