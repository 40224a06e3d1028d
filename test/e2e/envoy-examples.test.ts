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
 *
 * Covered by their own tests: cors, csrf, gzip (test/e2e/envoy-examples-filters.test.ts) and
 * grpc-bridge (envoy-examples-grpc-bridge.test.ts), in the shape of the examples' real YAML;
 * dynamic-config-fs (test/e2e/xds-file.test.ts), jaeger-tracing / zipkin-tracing
 * (test/telemetry/zipkin.test.ts).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DevCa } from '../../certs/dev-ca';
import { afterAll, describe, expect, it } from 'vitest';
import { stopAllMeshlets } from '../support/meshlet';
import { cluster, HCM, run } from './examples-support';
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

const ROUTER = 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router';


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
