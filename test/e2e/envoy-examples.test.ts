/**
 * Envoy's example sandboxes (envoyproxy/examples) that meshlet runs, each written here in the
 * shape of the example's own envoy.yaml (same filters, fields and layout; addresses on loopback,
 * the services replaced by small servers started here), loaded through the real YAML bootstrap
 * loader and checked for what the example demonstrates:
 *
 *  - front-proxy: one edge listener routing /service/1 and /service/2 to two services
 *  - fault-injection: the fault filter switched on and off through runtime keys (the example
 *    flips files of a disk layer; meshlet's admin layer takes the same keys)
 *  - websocket: upgrade_configs websocket, an upgraded byte stream through the proxy
 *  - ext-authz: the HTTP authorization service (uri without a scheme, as the example writes it),
 *    allowed_upstream_headers passing x-current-user on
 *  - tls-sni: tls_inspector and server_names choose the chain (and certificate) per domain
 *  - double-proxy: plain HTTP into one proxy, mTLS between the two proxies, plain to the backend
 *  - cors: per-route CorsPolicy (open, restricted to one origin, disabled); browser-style preflights
 *    answered by the proxy, allowed and disallowed origins
 *  - csrf: same-origin writes pass, cross-origin POST 403, additional_origins, shadow mode counted only
 *  - gzip: the compressor (gzip library, min_content_length, content_type) decoded by fetch, small
 *    responses and clients without accept-encoding left alone
 *  - grpc-bridge: an HTTP/1.1 client posting application/grpc to a @grpc/grpc-js service through
 *    grpc_http1_bridge, the call's status in the HTTP status and headers
 *
 * Covered by their own tests: dynamic-config-fs (test/e2e/xds-file.test.ts), jaeger-tracing /
 * zipkin-tracing (test/telemetry/zipkin.test.ts).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DevCa } from '../../certs/dev-ca';
import { afterAll, describe, expect, it } from 'vitest';
import { parseBootstrapText } from '../../proxy/config/bootstrap';
import { type StartedMeshlet, startMeshlet, stopAllMeshlets } from '../support/meshlet';
import { closeAll, startHttpEcho } from '../support/upstreams';
import { request } from '../telemetry/helpers';

const certDir = mkdtempSync(join(tmpdir(), 'meshlet-examples-'));

afterAll(async () => {
  rmSync(certDir, { recursive: true, force: true });
  await stopAllMeshlets();
  await closeAll();
  for (const s of servers) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});

const servers: http.Server[] = [];

async function serve(handler: http.RequestListener, onUpgrade?: (req: http.IncomingMessage, s: net.Socket) => void): Promise<number> {
  const s = http.createServer(handler);
  if (onUpgrade) s.on('upgrade', onUpgrade);
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  servers.push(s);
  return (s.address() as net.AddressInfo).port;
}

async function run(yaml: string): Promise<StartedMeshlet> {
  return startMeshlet(parseBootstrapText(yaml, 'envoy.yaml') as Record<string, unknown>);
}

const HCM = 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager';
const ROUTER = 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router';

function cluster(name: string, port: number, type = 'STRICT_DNS'): string {
  return `
  - name: ${name}
    type: ${type}
    lb_policy: ROUND_ROBIN
    load_assignment:
      cluster_name: ${name}
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address:
                address: 127.0.0.1
                port_value: ${port}`;
}

describe('front-proxy', () => {
  it('routes /service/1 and /service/2 to their services, anything else 404', async () => {
    const s1 = await startHttpEcho('service1');
    const s2 = await startHttpEcho('service2');
    const m = await run(`static_resources:
  listeners:
  - name: front
    address:
      socket_address:
        address: 127.0.0.1
        port_value: 0
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": ${HCM}
          codec_type: AUTO
          stat_prefix: ingress_http
          route_config:
            name: local_route
            virtual_hosts:
            - name: backend
              domains:
              - "*"
              routes:
              - match:
                  prefix: "/service/1"
                route:
                  cluster: service1
              - match:
                  prefix: "/service/2"
                route:
                  cluster: service2
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": ${ROUTER}
  clusters:${cluster('service1', s1.port)}${cluster('service2', s2.port)}
admin:
  address:
    socket_address:
      address: 127.0.0.1
      port_value: 0
`);
    const port = m.listenerPort('front');
    const a = await request(port, '/service/1');
    const b = await request(port, '/service/2');
    expect([a.status, a.headers['x-upstream']]).toEqual([200, 'service1']);
    expect([b.status, b.headers['x-upstream']]).toEqual([200, 'service2']);
    expect((await request(port, '/service/3')).status).toBe(404);
    expect(JSON.parse(a.body).headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
  });
});

describe('fault-injection', () => {
  it('aborts and delays requests when the runtime keys say so, and stops when they are cleared', async () => {
    const backend = await startHttpEcho('backend');
    const m = await run(`static_resources:
  listeners:
  - name: listener_0
    address:
      socket_address:
        address: 127.0.0.1
        port_value: 0
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": ${HCM}
          stat_prefix: ingress_http
          codec_type: AUTO
          route_config:
            name: local_route
            virtual_hosts:
            - name: local_service
              domains:
              - "*"
              routes:
              - match:
                  prefix: "/"
                route:
                  cluster: local_service
          http_filters:
          - name: envoy.filters.http.fault
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault
              abort:
                http_status: 503
                percentage:
                  numerator: 0
                  denominator: HUNDRED
              delay:
                fixed_delay: 3s
                percentage:
                  numerator: 0
                  denominator: HUNDRED
          - name: envoy.filters.http.router
            typed_config:
              "@type": ${ROUTER}
  clusters:${cluster('local_service', backend.port)}
admin:
  address:
    socket_address:
      address: 127.0.0.1
      port_value: 0
layered_runtime:
  layers:
  - name: admin_layer_0
    admin_layer: {}
`);
    const port = m.listenerPort('listener_0');
    const modify = (q: string) => request(m.adminPort, `/runtime_modify?${q}`, { method: 'POST' });
    expect((await request(port, '/')).status).toBe(200);
    await modify('fault.http.abort.abort_percent=100');
    const aborted = await request(port, '/');
    expect([aborted.status, aborted.body]).toEqual([503, 'fault filter abort']);
    await modify('fault.http.abort.abort_percent=0&fault.http.delay.fixed_delay_percent=100&fault.http.delay.fixed_duration_ms=300');
    const t0 = Date.now();
    expect((await request(port, '/')).status).toBe(200);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(280);
    await modify('fault.http.delay.fixed_delay_percent=');
    const t1 = Date.now();
    expect((await request(port, '/')).status).toBe(200);
    expect(Date.now() - t1).toBeLessThan(2_000);
  });
});

describe('websocket', () => {
  it('upgrades through upgrade_configs websocket and carries the byte stream both ways', async () => {
    const wsPort = await serve(
      (_req, res) => res.writeHead(426).end(),
      (req, socket) => {
        socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
        socket.on('data', (c: Buffer) => socket.write(`echo:${c.toString()}`));
        socket.on('end', () => socket.end());
        socket.on('error', () => {});
        void req;
      },
    );
    const m = await run(`static_resources:
  listeners:
  - name: listener_ws
    address:
      socket_address:
        address: 127.0.0.1
        port_value: 0
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": ${HCM}
          stat_prefix: ingress_ws_to_ws
          upgrade_configs:
          - upgrade_type: websocket
          route_config:
            name: local_route
            virtual_hosts:
            - name: app
              domains:
              - "*"
              routes:
              - match:
                  prefix: "/"
                route:
                  cluster: service_ws
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": ${ROUTER}
  clusters:${cluster('service_ws', wsPort)}
`);
    const text = await new Promise<string>((resolve, reject) => {
      const s = net.connect(m.listenerPort('listener_ws'), '127.0.0.1');
      let got = '';
      let sent = false;
      const timer = setTimeout(() => {
        s.destroy();
        reject(new Error(`no echo; got ${JSON.stringify(got)}`));
      }, 5_000);
      s.on('data', (c: Buffer) => {
        got += c.toString();
        if (!sent && got.includes('\r\n\r\n')) {
          sent = true;
          s.write('hello ws');
        }
        if (got.includes('echo:hello ws')) {
          clearTimeout(timer);
          s.end();
          resolve(got);
        }
      });
      s.on('error', reject);
      s.write('GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n');
    });
    expect(text.startsWith('HTTP/1.1 101')).toBe(true);
    expect(text).toContain('echo:hello ws');
  });
});

describe('ext-authz (HTTP service)', () => {
  it('lets a request with a known token through with x-current-user, and denies the rest with 403', async () => {
    const backend = await startHttpEcho('upstream-service');
    const users: Record<string, string> = { token1: 'user1', token2: 'user2' };
    const authz = await serve((req, res) => {
      const token = (req.headers.authorization ?? '').replace(/^Bearer /, '');
      const user = users[token];
      if (user) res.writeHead(200, { 'x-current-user': user }).end();
      else res.writeHead(403).end();
    });
    const m = await run(`static_resources:
  listeners:
  - name: front
    address:
      socket_address:
        address: 127.0.0.1
        port_value: 0
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": ${HCM}
          codec_type: AUTO
          stat_prefix: ingress_http
          route_config:
            name: local_route
            virtual_hosts:
            - name: upstream
              domains:
              - "*"
              routes:
              - match:
                  prefix: "/"
                route:
                  cluster: upstream-service
          http_filters:
          - name: envoy.filters.http.ext_authz
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz
              http_service:
                server_uri:
                  uri: ext_authz
                  cluster: ext_authz-http-service
                  timeout: 0.250s
                authorization_response:
                  allowed_upstream_headers:
                    patterns:
                    - exact: x-current-user
              transport_api_version: V3
          - name: envoy.filters.http.router
            typed_config:
              "@type": ${ROUTER}
  clusters:${cluster('upstream-service', backend.port)}${cluster('ext_authz-http-service', authz)}
`);
    const port = m.listenerPort('front');
    expect((await request(port, '/service')).status).toBe(403);
    expect((await request(port, '/service', { headers: { authorization: 'Bearer nope' } })).status).toBe(403);
    const ok = await request(port, '/service', { headers: { authorization: 'Bearer token1' } });
    expect(ok.status).toBe(200);
    expect(JSON.parse(ok.body).headers['x-current-user']).toBe('user1');
  });
});

/** A certificate for `dnsName` from a test CA, written as the examples keep theirs: files. */
async function certFiles(ca: DevCa, name: string, dnsName: string): Promise<{ cert: string; key: string }> {
  const c = await ca.issueWorkload({ ns: 'examples', sa: name, dnsNames: [dnsName] });
  const cert = join(certDir, `${name}.crt`);
  const key = join(certDir, `${name}.key`);
  writeFileSync(cert, c.certChainPem);
  writeFileSync(key, c.privateKeyPem!);
  return { cert, key };
}

function httpsGet(port: number, servername: string, ca: string): Promise<{ status: number; upstream: string; subject: string }> {
  return new Promise((resolve, reject) => {
    const req = https.get({ host: '127.0.0.1', port, path: '/', servername, ca, agent: false, headers: { host: servername } }, (res) => {
      const peer = (res.socket as import('node:tls').TLSSocket).getPeerCertificate();
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, upstream: String(res.headers['x-upstream']), subject: String(peer.subjectaltname) }));
    });
    req.on('error', reject);
  });
}

const DOWNSTREAM_TLS = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext';
const UPSTREAM_TLS = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext';

describe('tls-sni', () => {
  it('picks the filter chain, its certificate and its service by SNI', async () => {
    const ca = await DevCa.create({ trustDomain: 'examples.local' });
    const d1 = await certFiles(ca, 'domain1', 'domain1.example.com');
    const d2 = await certFiles(ca, 'domain2', 'domain2.example.com');
    const h1 = await startHttpEcho('http-upstream1');
    const h2 = await startHttpEcho('http-upstream2');
    const chain = (domain: string, c: { cert: string; key: string }, clusterName: string) => `
    - filter_chain_match:
        server_names:
        - ${domain}
      filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": ${HCM}
          stat_prefix: ingress_http
          route_config:
            virtual_hosts:
            - name: default
              domains:
              - "*"
              routes:
              - match:
                  prefix: "/"
                route:
                  cluster: ${clusterName}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": ${ROUTER}
      transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": ${DOWNSTREAM_TLS}
          common_tls_context:
            tls_certificates:
            - certificate_chain:
                filename: ${c.cert}
              private_key:
                filename: ${c.key}`;
    const m = await run(`static_resources:
  listeners:
  - name: listener_sni
    address:
      socket_address:
        address: 127.0.0.1
        port_value: 0
    listener_filters:
    - name: envoy.filters.listener.tls_inspector
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector
    filter_chains:${chain('domain1.example.com', d1, 'proxy-domain1')}${chain('domain2.example.com', d2, 'proxy-domain2')}
  clusters:${cluster('proxy-domain1', h1.port)}${cluster('proxy-domain2', h2.port)}
`);
    const port = m.listenerPort('listener_sni');
    const one = await httpsGet(port, 'domain1.example.com', ca.rootCertPem);
    const two = await httpsGet(port, 'domain2.example.com', ca.rootCertPem);
    expect([one.status, one.upstream]).toEqual([200, 'http-upstream1']);
    expect(one.subject).toContain('DNS:domain1.example.com');
    expect([two.status, two.upstream]).toEqual([200, 'http-upstream2']);
    expect(two.subject).toContain('DNS:domain2.example.com');
    // No chain for another name: the handshake fails.
    await expect(httpsGet(port, 'domain3.example.com', ca.rootCertPem)).rejects.toThrow();
  });
});

describe('double-proxy', () => {
  it('carries plain HTTP through an mTLS hop between two proxies to the backend', async () => {
    const ca = await DevCa.create({ trustDomain: 'examples.local' });
    const server = await certFiles(ca, 'proxy-postgres-backend', 'proxy-backend.example.com');
    const client = await certFiles(ca, 'proxy-postgres-frontend', 'proxy-frontend.example.com');
    const caFile = join(certDir, 'ca.crt');
    writeFileSync(caFile, ca.rootCertPem);
    const backend = await startHttpEcho('backend');
    const plainHcm = (clusterName: string) => `
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": ${HCM}
          stat_prefix: ingress_http
          route_config:
            virtual_hosts:
            - name: all
              domains:
              - "*"
              routes:
              - match:
                  prefix: "/"
                route:
                  cluster: ${clusterName}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": ${ROUTER}`;
    const back = await run(`static_resources:
  listeners:
  - name: backend_proxy
    address:
      socket_address:
        address: 127.0.0.1
        port_value: 0
    filter_chains:
    - filters:${plainHcm('backend')}
      transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": ${DOWNSTREAM_TLS}
          require_client_certificate: true
          common_tls_context:
            tls_certificates:
            - certificate_chain:
                filename: ${server.cert}
              private_key:
                filename: ${server.key}
            validation_context:
              match_typed_subject_alt_names:
              - san_type: DNS
                matcher:
                  exact: proxy-frontend.example.com
              trusted_ca:
                filename: ${caFile}
  clusters:${cluster('backend', backend.port)}
`);
    const front = await run(`static_resources:
  listeners:
  - name: frontend_proxy
    address:
      socket_address:
        address: 127.0.0.1
        port_value: 0
    filter_chains:
    - filters:${plainHcm('proxy-backend')}
  clusters:
  - name: proxy-backend
    type: STATIC
    load_assignment:
      cluster_name: proxy-backend
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address:
                address: 127.0.0.1
                port_value: ${back.listenerPort('backend_proxy')}
    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": ${UPSTREAM_TLS}
        sni: proxy-backend.example.com
        common_tls_context:
          tls_certificates:
          - certificate_chain:
              filename: ${client.cert}
            private_key:
              filename: ${client.key}
          validation_context:
            match_typed_subject_alt_names:
            - san_type: DNS
              matcher:
                exact: proxy-backend.example.com
            trusted_ca:
              filename: ${caFile}
`);
    const r = await request(front.listenerPort('frontend_proxy'), '/hello');
    expect([r.status, r.headers['x-upstream']]).toEqual([200, 'backend']);
    // The backend proxy refuses a client without a certificate.
    await expect(httpsGet(back.listenerPort('backend_proxy'), 'proxy-backend.example.com', ca.rootCertPem)).rejects.toThrow();
  });
});

function edge(name: string, routesYaml: string, filtersYaml: string, vhostExtra = ''): string {
  return `static_resources:
  listeners:
  - name: ${name}
    address:
      socket_address:
        address: 127.0.0.1
        port_value: 0
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": ${HCM}
          codec_type: AUTO
          stat_prefix: ingress_http
          route_config:
            name: local_route
            virtual_hosts:
            - name: services
              domains:
              - "*"${vhostExtra}
              routes:${routesYaml}
          http_filters:${filtersYaml}
          - name: envoy.filters.http.router
            typed_config:
              "@type": ${ROUTER}
`;
}
const CORS_POLICY = 'type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy';
const CSRF = 'type.googleapis.com/envoy.extensions.filters.http.csrf.v3.CsrfPolicy';

describe('cors', () => {
  it('answers a browser preflight for an allowed origin, and gives a disallowed origin no CORS headers', async () => {
    const s = await startHttpEcho('backend');
    const route = (path: string, policy: string): string => `
              - match:
                  prefix: "${path}"
                route:
                  cluster: backend_service
                typed_per_filter_config:
                  envoy.filters.http.cors:
                    "@type": ${CORS_POLICY}${policy}`;
    const m = await run(
      `${edge(
        'backend',
        route(
          '/cors/open',
          `
                    allow_origin_string_match:
                    - safe_regex:
                        regex: ".*"
                    allow_methods: "GET"`,
        ) +
          route(
            '/cors/restricted',
            `
                    allow_origin_string_match:
                    - exact: https://envoyproxy.io
                    allow_methods: "GET"`,
          ) +
          route(
            '/cors/disabled',
            `
                    filter_enabled:
                      default_value:
                        numerator: 0
                        denominator: HUNDRED`,
          ),
        `
          - name: envoy.filters.http.cors
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors`,
      )}  clusters:${cluster('backend_service', s.port)}
`,
    );
    const port = m.listenerPort('backend');
    const origin = 'http://frontend.example:8000';
    const preflight = (path: string, o: string) =>
      request(port, path, { method: 'OPTIONS', headers: { origin: o, 'access-control-request-method': 'GET' } });
    const open = await preflight('/cors/open', origin);
    expect(open.status).toBe(200);
    expect(open.headers['access-control-allow-origin']).toBe(origin);
    expect(open.headers['access-control-allow-methods']).toBe('GET');
    expect(open.headers['x-upstream']).toBeUndefined(); // answered by the proxy
    const get = await request(port, '/cors/open', { headers: { origin } });
    expect([get.status, get.headers['access-control-allow-origin']]).toEqual([200, origin]);
    // Restricted: only envoyproxy.io is allowed.
    const denied = await preflight('/cors/restricted', origin);
    expect(denied.headers['access-control-allow-origin']).toBeUndefined();
    const allowed = await preflight('/cors/restricted', 'https://envoyproxy.io');
    expect(allowed.headers['access-control-allow-origin']).toBe('https://envoyproxy.io');
    const deniedGet = await request(port, '/cors/restricted', { headers: { origin } });
    expect([deniedGet.status, deniedGet.headers['access-control-allow-origin']]).toEqual([200, undefined]);
    // Disabled: no CORS headers at all.
    const off = await request(port, '/cors/disabled', { headers: { origin } });
    expect(off.headers['access-control-allow-origin']).toBeUndefined();
  });
});

describe('csrf', () => {
  it('passes same-origin writes, refuses cross-origin POST with 403, and only counts them in shadow mode', async () => {
    const s = await startHttpEcho('service');
    const route = (path: string, policy: string): string => `
              - match:
                  prefix: "${path}"
                route:
                  cluster: generic_service
                typed_per_filter_config:
                  envoy.filters.http.csrf:
                    "@type": ${CSRF}${policy}`;
    const m = await run(
      `${edge(
        'csrf',
        route(
          '/csrf/shadow',
          `
                    filter_enabled:
                      default_value:
                        numerator: 0
                        denominator: HUNDRED
                    shadow_enabled:
                      default_value:
                        numerator: 100
                        denominator: HUNDRED`,
        ) +
          route(
            '/csrf/additional_origin',
            `
                    filter_enabled:
                      default_value:
                        numerator: 100
                        denominator: HUNDRED
                    additional_origins:
                    - exact: example.com`,
          ) +
          `
              - match:
                  prefix: "/"
                route:
                  cluster: generic_service`,
        `
          - name: envoy.filters.http.csrf
            typed_config:
              "@type": ${CSRF}
              filter_enabled:
                default_value:
                  numerator: 100
                  denominator: HUNDRED`,
      )}  clusters:${cluster('generic_service', s.port)}
admin:
  address:
    socket_address:
      address: 127.0.0.1
      port_value: 0
`,
    );
    const port = m.listenerPort('csrf');
    const post = (path: string, origin: string) =>
      request(port, path, { method: 'POST', host: undefined, headers: { host: 'front.example', origin }, body: 'x' });
    expect((await post('/csrf/enabled', 'http://front.example')).status).toBe(200);
    const cross = await post('/csrf/enabled', 'http://evil.example');
    expect(cross.status).toBe(403);
    expect(cross.body).toBe('Invalid origin');
    expect((await request(port, '/csrf/enabled', { headers: { host: 'front.example', origin: 'http://evil.example' } })).status).toBe(200);
    expect((await post('/csrf/shadow', 'http://evil.example')).status).toBe(200);
    expect((await post('/csrf/additional_origin', 'http://example.com')).status).toBe(200);
    expect((await post('/csrf/additional_origin', 'http://evil.example')).status).toBe(403);
    const stats = await (await fetch(`http://127.0.0.1:${m.adminPort}/stats`)).text();
    expect(stats).toMatch(/csrf\.request_invalid: 3\b/);
  });
});

describe('gzip', () => {
  it('compresses responses for gzip-accepting clients above min_content_length, and leaves small ones alone', async () => {
    const big = JSON.stringify({ items: Array.from({ length: 200 }, (_, i) => ({ i, name: `item-${i}` })) });
    const port0 = await serve((req, res) => {
      const body = req.url === '/file.json' ? big : '{"ok":1}';
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
    const m = await run(
      `${edge(
        'gzip',
        `
              - match:
                  prefix: "/"
                route:
                  cluster: service`,
        `
          - name: envoy.filters.http.compressor
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.compressor.v3.Compressor
              response_direction_config:
                common_config:
                  min_content_length: 100
                  content_type:
                  - application/json
                disable_on_etag_header: true
              compressor_library:
                name: text_optimized
                typed_config:
                  "@type": type.googleapis.com/envoy.extensions.compression.gzip.compressor.v3.Gzip
                  memory_level: 3
                  window_bits: 10
                  compression_level: BEST_COMPRESSION
                  compression_strategy: DEFAULT_STRATEGY`,
      )}  clusters:${cluster('service', port0)}
`,
    );
    const port = m.listenerPort('gzip');
    // undici's fetch decodes gzip as curl --compressed does.
    const r = await fetch(`http://127.0.0.1:${port}/file.json`, { headers: { 'accept-encoding': 'gzip' } });
    expect(r.headers.get('content-encoding')).toBe('gzip');
    expect(await r.text()).toBe(big);
    const raw = await request(port, '/file.json', { headers: { 'accept-encoding': 'gzip' } });
    expect(raw.headers['content-encoding']).toBe('gzip');
    const small = await request(port, '/small.json', { headers: { 'accept-encoding': 'gzip' } });
    expect([small.headers['content-encoding'], small.body]).toEqual([undefined, '{"ok":1}']);
    const plain = await request(port, '/file.json');
    expect([plain.headers['content-encoding'], plain.body]).toEqual([undefined, big]);
  });
});

describe('grpc-bridge', () => {
  it('an HTTP/1.1 client calls a gRPC service through the bridge and reads the result from the status and headers', async () => {
    const grpc = await import('@grpc/grpc-js');
    type KV = { key?: string; value?: string };
    const ser = (v: KV): Buffer => Buffer.from(JSON.stringify(v));
    const de = (b: Buffer): KV => JSON.parse(b.toString()) as KV;
    const def = (name: string) => ({ path: `/kv.KV/${name}`, requestStream: false, responseStream: false, requestSerialize: ser, requestDeserialize: de, responseSerialize: ser, responseDeserialize: de });
    const store = new Map<string, string>();
    const server = new grpc.Server();
    server.addService({ get: def('Get'), set: def('Set') } as unknown as import('@grpc/grpc-js').ServiceDefinition, {
      get: (call: import('@grpc/grpc-js').ServerUnaryCall<KV, KV>, cb: import('@grpc/grpc-js').sendUnaryData<KV>) => {
        const v = store.get(call.request.key ?? '');
        if (v === undefined) cb({ code: grpc.status.NOT_FOUND, details: 'no such key' });
        else cb(null, { value: v });
      },
      set: (call: import('@grpc/grpc-js').ServerUnaryCall<KV, KV>, cb: import('@grpc/grpc-js').sendUnaryData<KV>) => {
        store.set(call.request.key ?? '', call.request.value ?? '');
        cb(null, {});
      },
    });
    const gport = await new Promise<number>((ok, ko) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? ko(e) : ok(p))));
    try {
      const m = await run(
        `${edge(
          'bridge',
          `
              - match:
                  prefix: "/"
                route:
                  cluster: backend-grpc`,
          `
          - name: envoy.filters.http.grpc_http1_bridge
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.grpc_http1_bridge.v3.Config`,
        )}  clusters:
  - name: backend-grpc
    type: STRICT_DNS
    lb_policy: ROUND_ROBIN
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config:
          http2_protocol_options: {}
    load_assignment:
      cluster_name: backend-grpc
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address:
                address: 127.0.0.1
                port_value: ${gport}
`,
      );
      const framed = (v: KV): Buffer => {
        const p = ser(v);
        const f = Buffer.alloc(5 + p.length);
        f.writeUInt32BE(p.length, 1);
        p.copy(f, 5);
        return f;
      };
      const call = async (method: string, v: KV) => {
        const r = await fetch(`http://127.0.0.1:${m.listenerPort('bridge')}/kv.KV/${method}`, { method: 'POST', headers: { 'content-type': 'application/grpc' }, body: framed(v) });
        return { status: r.status, headers: r.headers, body: Buffer.from(await r.arrayBuffer()) };
      };
      const set = await call('Set', { key: 'foo', value: 'bar' });
      expect([set.status, set.headers.get('grpc-status')]).toEqual([200, '0']);
      const get = await call('Get', { key: 'foo' });
      expect([get.status, get.headers.get('grpc-status')]).toEqual([200, '0']);
      expect(get.headers.get('content-length')).toBe(String(get.body.length));
      expect(de(get.body.subarray(5))).toEqual({ value: 'bar' });
      const missing = await call('Get', { key: 'nope' });
      expect([missing.status, missing.headers.get('grpc-status')]).toEqual([503, String(grpc.status.NOT_FOUND)]);
    } finally {
      server.forceShutdown();
    }
  });
});
