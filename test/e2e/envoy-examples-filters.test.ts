/**
 * Envoy's example sandboxes for the HTTP filters of issue 15 (envoyproxy/examples: cors, csrf,
 * gzip; grpc-bridge is in envoy-examples-grpc-bridge.test.ts), each proxy config written here in the shape of the example's own YAML: the
 * same listeners, filters, per-virtual-host and per-route policies, runtime keys, clusters and
 * protocol options. Only the addresses differ: everything is on loopback (ports picked free before
 * start, so the listeners stay unnamed as in the examples), and the example's services are small
 * servers started here. Each test checks what the example's verify.sh checks, plus what the example
 * is for (a browser preflight, a page served from another origin posting, an upload decompressed).
 */
import { gunzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { request } from '../telemetry/helpers';
import { admin, cluster, CORS_FILTER, CORS_POLICY, CSRF_POLICY, freePort, HCM, listener, pct, rawGet, rawGetFull, rawPost, ROUTER, run, serve } from './examples-support';

describe('cors (frontend and backend proxies)', () => {
  it('answers as verify.sh expects: disabled, open and restricted routes; browser preflights answered by the proxy', async () => {
    const page = await serve((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end('<title>Envoy CORS webpage</title>');
    });
    const backend = await serve((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain', 'x-backend': '1' });
      res.end('Success');
    });
    const [front, back, stats] = [await freePort(), await freePort(), await freePort()];
    await run(`static_resources:
  listeners:${listener(
    front,
    `
            - name: services
              domains:
              - "*"
              routes:
              - match:
                  prefix: "/"
                route:
                  cluster: frontend_service`,
    CORS_FILTER,
  )}
  clusters:${cluster('frontend_service', page)}
`);
    const perRoute = (body: string) => `
                typed_per_filter_config:
                  envoy.filters.http.cors:
                    "@type": ${CORS_POLICY}${body}`;
    await run(`static_resources:
  listeners:${listener(
    back,
    `
            - name: www
              domains:
              - "*"
              typed_per_filter_config:
                envoy.filters.http.cors:
                  "@type": ${CORS_POLICY}
                  allow_origin_string_match:
                  - safe_regex:
                      regex: \\*
                  allow_methods: "GET"
                  filter_enabled:${pct(100, '                    ', 'cors.www.enabled')}
                  shadow_enabled:${pct(0, '                    ', 'cors.www.shadow_enabled')}
              routes:
              - match:
                  prefix: "/cors/open"
                route:
                  cluster: backend_service
              - match:
                  prefix: "/cors/disabled"
                route:
                  cluster: backend_service${perRoute(`
                    filter_enabled:${pct(0, '                      ')}`)}
              - match:
                  prefix: "/cors/restricted"
                route:
                  cluster: backend_service${perRoute(`
                    allow_origin_string_match:
                    - safe_regex:
                        regex: .*\\.envoyproxy\\.io
                    allow_methods: "GET"`)}
              - match:
                  prefix: "/"
                route:
                  cluster: backend_service`,
    CORS_FILTER,
  )}
  clusters:${cluster('backend_service', backend)}
${admin(stats)}`);
    expect((await request(front, '/')).body).toContain('Envoy CORS webpage');
    const example = { origin: 'http://example.com' };
    const disabled = await request(back, '/cors/disabled', { headers: example });
    expect([disabled.body, disabled.headers['access-control-allow-origin']]).toEqual(['Success', undefined]);
    // The virtual host's policy: the regex matches "*", which allows every origin (Envoy's rule).
    const open = await request(back, '/cors/open', { headers: example });
    expect([open.body, open.headers['access-control-allow-origin']]).toEqual(['Success', 'http://example.com']);
    const restricted = await request(back, '/cors/restricted', { headers: example });
    expect([restricted.body, restricted.headers['access-control-allow-origin']]).toEqual(['Success', undefined]);
    const foo = await request(back, '/cors/restricted', { headers: { origin: 'http://foo.envoyproxy.io' } });
    expect(foo.headers['access-control-allow-origin']).toBe('http://foo.envoyproxy.io');
    // What the frontend page's fetch() makes a browser send first: a preflight, answered by the proxy.
    const preflight = (path: string, origin: string) =>
      request(back, path, { method: 'OPTIONS', headers: { origin, 'access-control-request-method': 'GET', 'access-control-request-headers': 'content-type' } });
    const pOpen = await preflight('/cors/open', `http://127.0.0.1:${front}`);
    expect(pOpen.status).toBe(200);
    expect(pOpen.headers['access-control-allow-origin']).toBe(`http://127.0.0.1:${front}`);
    expect(pOpen.headers['access-control-allow-methods']).toBe('GET');
    expect(pOpen.headers['x-backend']).toBeUndefined();
    const pRestricted = await preflight('/cors/restricted', `http://127.0.0.1:${front}`);
    expect(pRestricted.headers['access-control-allow-origin']).toBeUndefined();
    const statsText = (await request(stats, '/stats?filter=ingress_http')).body;
    expect(statsText).toContain('ingress_http.cors');
    expect(statsText).toMatch(/http\.ingress_http\.cors\.origin_valid: [1-9]/);
    expect(statsText).toMatch(/http\.ingress_http\.cors\.origin_invalid: [1-9]/);
  });
});

describe('csrf (samesite and crosssite proxies)', () => {
  it('answers as verify.sh expects, and a page from the other origin cannot POST where the same origin can', async () => {
    const page = (name: string) =>
      serve((req, res, body) => {
        if (req.method === 'POST') {
          res.writeHead(200, { 'content-type': 'text/plain' });
          res.end(body.length >= 0 ? 'Success' : '');
          return;
        }
        res.writeHead(200, { 'content-type': 'text/html' });
        res.end(`<title>Envoy CSRF Demo</title>${name}`);
      });
    const [sameSvc, crossSvc] = [await page('same'), await page('cross')];
    const [same, stats, cross] = [await freePort(), await freePort(), await freePort()];
    const csrfRoute = (path: string, body: string) => `
              - match:
                  prefix: "${path}"
                route:
                  cluster: generic_service
                typed_per_filter_config:
                  envoy.filters.http.csrf:
                    "@type": ${CSRF_POLICY}${body}`;
    await run(`static_resources:
  listeners:${listener(
    same,
    `
            - name: www
              domains:
              - "*"
              typed_per_filter_config:
                envoy.filters.http.cors:
                  "@type": ${CORS_POLICY}
                  allow_origin_string_match:
                  - safe_regex:
                      regex: \\*
                  filter_enabled:${pct(100, '                    ')}
                envoy.filters.http.csrf:
                  "@type": ${CSRF_POLICY}
                  filter_enabled:${pct(100, '                    ', 'csrf.www.enabled')}
                  shadow_enabled:${pct(0, '                    ', 'csrf.www.shadow_enabled')}
              routes:${csrfRoute(
                '/csrf/disabled',
                `
                    filter_enabled:${pct(0, '                      ')}`,
              )}${csrfRoute(
                '/csrf/shadow',
                `
                    filter_enabled:${pct(0, '                      ')}
                    shadow_enabled:${pct(100, '                      ')}`,
              )}${csrfRoute(
                '/csrf/additional_origin',
                `
                    filter_enabled:${pct(100, '                      ')}
                    additional_origins:
                    - safe_regex:
                        regex: .*`,
              )}
              - match:
                  prefix: "/"
                route:
                  cluster: generic_service`,
    `${CORS_FILTER}
          - name: envoy.filters.http.csrf
            typed_config:
              "@type": ${CSRF_POLICY}
              filter_enabled:${pct(0, '                ')}`,
  )}
  clusters:${cluster('generic_service', sameSvc)}
${admin(stats)}`);
    await run(`static_resources:
  listeners:${listener(
    cross,
    `
            - name: www
              domains:
              - "*"
              routes:
              - match:
                  prefix: "/"
                route:
                  cluster: generic_service`,
    '',
  )}
  clusters:${cluster('generic_service', crossSvc)}
`);
    expect((await request(cross, '/')).body).toContain('Envoy CSRF Demo');
    expect((await request(same, '/')).body).toContain('Envoy CSRF Demo');
    expect((await request(stats, '/stats')).body).toContain(':');
    const post = (path: string, origin: string) => request(same, path, { method: 'POST', headers: { origin }, body: 'x' });
    for (const path of ['/csrf/disabled', '/csrf/shadow', '/csrf/additional_origin']) {
      const r = await post(path, 'http://example.com');
      expect([path, r.status, r.body, r.headers['access-control-allow-origin']]).toEqual([path, 200, 'Success', 'http://example.com']);
    }
    const enabled = await post('/csrf/enabled', 'http://example.com');
    expect([enabled.status, enabled.body]).toEqual([403, 'Invalid origin']);
    // The demo page: served from the crosssite proxy, its POST is refused; from samesite, allowed.
    expect((await post('/csrf/enabled', `http://127.0.0.1:${cross}`)).status).toBe(403);
    expect((await post('/csrf/enabled', `http://127.0.0.1:${same}`)).status).toBe(200);
    const statsText = (await request(stats, '/stats?filter=ingress_http')).body;
    expect(statsText).toContain('ingress_http.csrf');
    // Two refused (enabled), one counted only (shadow).
    expect(statsText).toMatch(/http\.ingress_http\.csrf\.request_invalid: 3\b/);
  });
});

describe('gzip', () => {
  it('compresses JSON for gzip clients, leaves text alone, decompresses an upload, and compresses /stats/prometheus through its own listener', async () => {
    const json = Buffer.from(JSON.stringify({ items: Array.from({ length: 20_000 }, (_, i) => ({ i, name: `item-${i}`, ok: i % 3 === 0 })) }));
    const svc = await serve((req, res, body) => {
      if (req.url === '/upload') {
        res.writeHead(200, { 'decompressed-size': String(body.length), 'content-type': 'text/plain' });
        res.end(req.headers['content-encoding'] ?? 'identity');
        return;
      }
      const [type, out] = req.url === '/file.json' ? ['application/json', json] : ['text/plain', Buffer.alloc(json.length, 'a')];
      res.writeHead(200, { 'content-type': type, 'content-length': out.length });
      res.end(out);
    });
    const [proxy, statsProxy, adminPort] = [await freePort(), await freePort(), await freePort()];
    const plainListener = (port: number, routes: string, filters: string) => `
  - address:
      socket_address:
        address: 127.0.0.1
        port_value: ${port}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": ${HCM}
          stat_prefix: ingress_http
          route_config:
            name: local_route
            virtual_hosts:
            - name: backend
              domains:
              - "*"
              routes:${routes}
          http_filters:${filters}${ROUTER}`;
    const compressor = (type: string) => `
          - name: envoy.filters.http.compressor
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.compressor.v3.Compressor
              response_direction_config:
                common_config:
                  min_content_length: 100
                  content_type:
                  - ${type}
                disable_on_etag_header: true
              compressor_library:
                name: text_optimized
                typed_config:
                  "@type": type.googleapis.com/envoy.extensions.compression.gzip.compressor.v3.Gzip
                  memory_level: 3
                  window_bits: 10`;
    await run(`static_resources:
  listeners:${plainListener(
    proxy,
    `
              - match:
                  prefix: "/"
                route:
                  cluster: service`,
    `${compressor('application/json')}
          - name: envoy.filters.http.decompressor
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.decompressor.v3.Decompressor
              decompressor_library:
                name: upload
                typed_config:
                  "@type": "type.googleapis.com/envoy.extensions.compression.gzip.decompressor.v3.Gzip"
                  window_bits: 9
                  chunk_size: 8192
                  max_inflate_ratio: 1000
              response_direction_config:
                common_config:
                  enabled:
                    default_value: false
                    runtime_key: response_decompressor_enabled`,
  )}${plainListener(
    statsProxy,
    `
              - match:
                  prefix: "/stats/prometheus"
                route:
                  cluster: envoy-stats`,
    compressor('text/plain'),
  )}
  clusters:
  - name: envoy-stats
    connect_timeout: 0.25s
    type: STATIC
    load_assignment:
      cluster_name: envoy-stats
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address:
                address: 127.0.0.1
                port_value: ${adminPort}
  - name: service
    connect_timeout: 0.25s${cluster('service', svc).replace(/^\n {2}- name: service/, '')}
${admin(adminPort)}`);
    // curl -i -H "Accept-Encoding: gzip": gzip for JSON; undici's fetch decodes it as curl --compressed.
    const r = await fetch(`http://127.0.0.1:${proxy}/file.json`, { headers: { 'accept-encoding': 'gzip' } });
    expect(r.headers.get('content-encoding')).toBe('gzip');
    expect(Buffer.from(await r.arrayBuffer()).equals(json)).toBe(true);
    const txt = await request(proxy, '/file.txt', { headers: { 'accept-encoding': 'gzip' } });
    expect([txt.headers['content-encoding'], txt.body.length]).toEqual([undefined, json.length]);
    // curl -o file.gz with Accept-Encoding: gzip, then POST it with Content-Encoding: gzip.
    const gz = await rawGet(proxy, '/file.json', { 'accept-encoding': 'gzip' });
    expect(gunzipSync(gz).equals(json)).toBe(true);
    const up = await rawPost(proxy, '/upload', { 'content-encoding': 'gzip' }, gz);
    expect(up.headers['decompressed-size']).toBe(String(json.length));
    expect(up.body.toString()).toBe('identity');
    // The admin's /stats/prometheus: plain on the admin port, gzip through the 9902-style listener.
    const direct = await rawGetFull(adminPort, '/stats/prometheus', { 'accept-encoding': 'gzip' });
    expect(direct.headers['content-encoding']).toBeUndefined();
    const viaProxy = await rawGetFull(statsProxy, '/stats/prometheus', { 'accept-encoding': 'gzip' });
    expect(viaProxy.headers['content-encoding']).toBe('gzip');
    expect(gunzipSync(viaProxy.body).toString()).toContain('# TYPE envoy_');
  });
});
