/**
 * Issue 16, second "done when": real traffic through the resources istiod generates for a sidecar
 * (test/support/istio-sidecar.ts, the same set the acceptance test serves), delivered over ADS
 * in SotW and in delta, readdressed to loopback. The kernel's original destination is injected
 * (what SO_ORIGINAL_DST would say after iptables capture), and the SDS secrets istiod names are
 * given inline (the mesh CA's certificates for the productpage workload).
 *
 * - Outbound through virtualOutbound to the reviews service port: by Host
 *   (reviews.default.svc.cluster.local:9080, the short names, VIP:port) to the reviews cluster,
 *   an unknown Host through allow_any → PassthroughCluster to the original destination.
 * - The reviews cluster's auto-mTLS: the tlsMode: istio endpoint gets mTLS with the workload
 *   certificate and Istio's ALPN, the other endpoint plaintext.
 * - Inbound through virtualInbound to the application port over mTLS, with the
 *   AuthorizationPolicy-shaped RBAC on the filter_state peer principal: allowed for the sleep
 *   service account's GET, denied (403) for another identity.
 */
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DevCa, type IssuedCertificate } from '../../certs/dev-ca';
import type { OriginalDstResolver } from '../../proxy/listeners/listener';
import { sidecarClusters, sidecarEndpoints, sidecarListeners, sidecarRoutes, type SidecarWorld, T } from '../support/istio-sidecar';
import { JsonAdsServer } from '../support/json-ads-server';
import { adsBootstrap } from '../support/mesh';
import { startMeshlet, type StartedMeshlet, stopAllMeshlets } from '../support/meshlet';
import { closeAll, closedPort } from '../support/upstreams';

type J = Record<string, unknown>;
const servers: net.Server[] = [];
let ca: DevCa;
let productpage: IssuedCertificate;
let sleep: IssuedCertificate;
let other: IssuedCertificate;
let world: SidecarWorld;
const meshSeen: { alpn: string | false | null; peer: string }[] = [];
const plainSeen: string[] = [];
const passthroughSeen: string[] = [];
const appSeen: { path: string; xfcc: string | undefined }[] = [];

/** The original destination of the next connection accepted on each capture port. */
const originalDst = new Map<number, { address: string; port: number }>();
const resolver: OriginalDstResolver = (s) => originalDst.get(s.localPort ?? 0);

async function listen(s: net.Server, host: string): Promise<number> {
  await new Promise<void>((r) => s.listen(0, host, r));
  servers.push(s);
  return (s.address() as net.AddressInfo).port;
}

function answer(seen: string[], name: string): http.Server {
  return http.createServer((req, res) => {
    seen.push(`${req.headers.host} ${req.url}`);
    res.writeHead(200, { 'content-type': 'text/plain', 'x-served-by': name });
    res.end(name);
  });
}

/** istiod names SDS secrets `default` and `ROOTCA`; here they are the CA's, inline. */
function inlineSecrets(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(inlineSecrets);
  if (v === null || typeof v !== 'object') return v;
  const out: J = {};
  for (const [k, x] of Object.entries(v as J)) {
    if (k === 'tls_certificate_sds_secret_configs')
      out.tls_certificates = [{ certificate_chain: { inline_string: productpage.certChainPem }, private_key: { inline_string: productpage.privateKeyPem } }];
    else if (k === 'combined_validation_context') {
      const dvc = ((x as J).default_validation_context ?? {}) as J;
      out.validation_context = { ...dvc, trusted_ca: { inline_string: ca.rootCertPem } };
    } else out[k] = inlineSecrets(x);
  }
  return out;
}

beforeAll(async () => {
  ca = await DevCa.create({ trustDomain: 'cluster.local' });
  productpage = await ca.issueWorkload({ ns: 'default', sa: 'bookinfo-productpage' });
  sleep = await ca.issueWorkload({ ns: 'default', sa: 'sleep' });
  other = await ca.issueWorkload({ ns: 'default', sa: 'other' });
  const reviews = await ca.issueWorkload({ ns: 'default', sa: 'bookinfo-reviews' });
  // reviews in the mesh: mTLS requiring a mesh client certificate, HTTP/1.1 inside.
  const meshApp = answer([], 'reviews-mesh');
  const mesh = tls.createServer(
    { cert: reviews.certChainPem, key: reviews.privateKeyPem, ca: ca.rootCertPem, requestCert: true, rejectUnauthorized: true, ALPNProtocols: ['istio-http/1.1', 'http/1.1'] },
    (s) => {
      meshSeen.push({ alpn: s.alpnProtocol, peer: String(s.getPeerCertificate().subjectaltname) });
      meshApp.emit('connection', s);
    },
  );
  const meshPort = await listen(mesh, '127.0.0.21');
  const plainPort = await listen(answer(plainSeen, 'reviews-plain'), '127.0.0.22');
  // The reviews VIP's original destination, for unknown Hosts (allow_any → PassthroughCluster).
  const vipPort = await listen(answer(passthroughSeen, 'passthrough'), '127.0.96.20');
  const app = http.createServer((req, res) => {
    appSeen.push({ path: req.url ?? '', xfcc: req.headers['x-forwarded-client-cert'] as string | undefined });
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end('productpage');
  });
  const appPort = await listen(app, '127.0.0.1');
  world = {
    outboundPort: await closedPort(),
    inboundPort: await closedPort(),
    reviewsVip: '127.0.96.20',
    reviewsPort: vipPort,
    reviewsMeshEndpoint: { address: '127.0.0.21', port: meshPort },
    reviewsPlainEndpoint: { address: '127.0.0.22', port: plainPort },
    appPort,
  };
});

afterAll(async () => {
  await stopAllMeshlets();
  await closeAll();
  for (const s of servers) {
    if (s instanceof http.Server) s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});

function outbound(port: number, host: string, path = '/reviews'): Promise<{ status: number; body: string; by?: string }> {
  originalDst.set(world.outboundPort, { address: world.reviewsVip, port: world.reviewsPort });
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, headers: { host }, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, by: res.headers['x-served-by'] as string | undefined }));
    });
    req.on('error', reject);
    req.end();
  });
}

function inbound(port: number, client: IssuedCertificate, method = 'GET'): Promise<{ status: number; body: string }> {
  originalDst.set(world.inboundPort, { address: '127.0.0.1', port: world.appPort });
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: '127.0.0.1',
        port,
        path: '/productpage',
        method,
        agent: false,
        cert: client.certChainPem,
        key: client.privateKeyPem,
        ca: ca.rootCertPem,
        ALPNProtocols: ['istio-http/1.1'],
        servername: 'outbound_.9080_._.productpage.default.svc.cluster.local',
        checkServerIdentity: () => undefined,
      } as https.RequestOptions & tls.ConnectionOptions,
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

async function until(cond: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function sidecar(delta: boolean): Promise<{ m: StartedMeshlet; ads: JsonAdsServer }> {
  const ads = new JsonAdsServer();
  await ads.start();
  ads.set(T.cluster, inlineSecrets(sidecarClusters(world)) as J[]);
  ads.set(T.cla, sidecarEndpoints(world));
  ads.set(T.route, sidecarRoutes(world));
  ads.set(T.listener, inlineSecrets(sidecarListeners(world)) as J[]);
  const m = await startMeshlet(adsBootstrap('sidecar~127.0.0.1~productpage-v1.default~default.svc.cluster.local', ads.port, { delta }), { originalDst: resolver });
  await m.server.initialized;
  await until(() => [T.cluster, T.listener, T.route, T.cla].every((t) => ads.acks.some((a) => a.typeUrl === t)));
  return { m, ads };
}

for (const delta of [false, true]) {
  describe(`istiod's sidecar resources carry traffic (${delta ? 'delta' : 'SotW'})`, () => {
    it('outbound by Host through virtualOutbound, auto-mTLS per endpoint, unknown Host to PassthroughCluster; inbound mTLS with RBAC on the peer principal', async () => {
      const { m, ads } = await sidecar(delta);
      try {
        expect(ads.nacks).toEqual([]);
        const port = m.listenerPort('virtualOutbound');
        const [meshBefore, plainBefore] = [meshSeen.length, plainSeen.length];
        const hosts = [
          `reviews.default.svc.cluster.local:${world.reviewsPort}`,
          'reviews.default.svc.cluster.local',
          'reviews',
          `reviews:${world.reviewsPort}`,
          'reviews.default',
          `${world.reviewsVip}:${world.reviewsPort}`,
        ];
        const served = new Set<string>();
        for (const host of [...hosts, ...hosts]) {
          const r = await outbound(port, host);
          expect([host, r.status]).toEqual([host, 200]);
          served.add(r.body);
        }
        // LEAST_REQUEST over both endpoints: each got requests, the mesh one over mTLS.
        expect([...served].sort()).toEqual(['reviews-mesh', 'reviews-plain']);
        expect(plainSeen.length).toBeGreaterThan(plainBefore);
        const mesh = meshSeen.slice(meshBefore);
        expect(mesh.length).toBeGreaterThan(0);
        for (const s of mesh) expect(s).toEqual({ alpn: 'istio-http/1.1', peer: 'URI:spiffe://cluster.local/ns/default/sa/bookinfo-productpage' });
        // Not a reviews host: allow_any → PassthroughCluster → the original destination.
        const before = passthroughSeen.length;
        const unknown = await outbound(port, 'unknown.example.com', '/elsewhere');
        expect([unknown.status, unknown.body]).toEqual([200, 'passthrough']);
        expect(passthroughSeen.slice(before)).toEqual(['unknown.example.com /elsewhere']);

        // Inbound: the sleep identity may GET; POST and other identities are denied by RBAC.
        const inPort = m.listenerPort('virtualInbound');
        const appBefore = appSeen.length;
        const ok = await inbound(inPort, sleep);
        expect([ok.status, ok.body]).toEqual([200, 'productpage']);
        expect(appSeen.length).toBe(appBefore + 1);
        expect(appSeen.at(-1)!.xfcc).toContain('URI=spiffe://cluster.local/ns/default/sa/sleep');
        const denied = await inbound(inPort, other);
        expect([denied.status, denied.body]).toEqual([403, 'RBAC: access denied']);
        expect((await inbound(inPort, sleep, 'POST')).status).toBe(403);
        expect(appSeen.length).toBe(appBefore + 1);
      } finally {
        await ads.stop();
        await stopAllMeshlets();
      }
    });
  });
}
