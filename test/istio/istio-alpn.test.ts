/**
 * Issue 16 items 3 and 4 ("real traffic"): two meshlets as sidecars in the productpage → reviews
 * shape, over mTLS with SPIFFE identities and Istio's ALPNs.
 *
 * Each sidecar is driven over a real ADS stream by its own istiod-shaped control plane
 * (JsonAdsServer), resources in the shape of Istio's config dumps (readdressed to loopback, with
 * inline certificates where istiod names SDS secrets); every push must be ACKed.
 *
 * - istio.alpn: the outbound HTTP listener's requests go upstream offering istio-h2 (HTTP/2
 *   cluster) or istio-http/1.1 (HTTP/1.1 cluster) instead of the cluster's istio-peer-exchange,
 *   measured at a TLS server that records what was offered; `istio.alpn_override: "false"` cluster
 *   metadata keeps the cluster's list.
 * - The reviews sidecar's inbound listener selects its HTTP chain by those ALPNs (istiod's
 *   application_protocols [istio-http/1.0, istio-http/1.1, istio-h2]) and speaks HTTP/2 for
 *   istio-h2 (its access log says HTTP/2); raw TCP offering istio-peer-exchange takes the TCP chain
 *   and exchanges metadata. istio_requests_total and istio_tcp_* on both sides carry the peer's
 *   workload, namespace and canonical service.
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DevCa } from '../../certs/dev-ca';
import { JsonAdsServer } from '../support/json-ads-server';
import { adsBootstrap } from '../support/mesh';
import { socketAddress, startMeshlet, type StartedMeshlet, stopAllMeshlets, HCM_TYPE, ROUTER_TYPE, TCP_PROXY_TYPE } from '../support/meshlet';
import { closeAll, startHttpEcho, startTcpEcho } from '../support/upstreams';
import { request, scrape, select } from '../telemetry/helpers';

const TP = 'type.googleapis.com/';
const DOWNSTREAM_TLS = `${TP}envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext`;
const UPSTREAM_TLS = `${TP}envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext`;
const ALPN = {
  name: 'istio.alpn',
  typed_config: {
    '@type': `${TP}istio.envoy.config.filter.http.alpn.v2alpha1.FilterConfig`,
    alpn_override: [
      { upstream_protocol: 'HTTP10', alpn_override: ['istio-http/1.0', 'istio'] },
      { upstream_protocol: 'HTTP11', alpn_override: ['istio-http/1.1', 'istio'] },
      { upstream_protocol: 'HTTP2', alpn_override: ['istio-h2', 'istio'] },
    ],
  },
};
const MX_HTTP = {
  name: 'istio.metadata_exchange',
  typed_config: { '@type': `${TP}io.istio.http.peer_metadata.Config`, upstream_discovery: [{ istio_headers: {} }], upstream_propagation: [{ istio_headers: {} }] },
};
const MX_HTTP_IN = {
  name: 'istio.metadata_exchange',
  typed_config: { '@type': `${TP}io.istio.http.peer_metadata.Config`, downstream_discovery: [{ istio_headers: {} }], downstream_propagation: [{ istio_headers: {} }] },
};
const MX_NET = { name: 'istio.metadata_exchange', typed_config: { '@type': `${TP}envoy.tcp.metadataexchange.config.MetadataExchange`, protocol: 'istio-peer-exchange' } };
const MX_UP = { name: 'envoy.filters.network.upstream.metadata_exchange', typed_config: MX_NET.typed_config };
const AUTHN = { name: 'istio_authn', typed_config: { '@type': `${TP}udpa.type.v1.TypedStruct`, type_url: `${TP}io.istio.network.authn.Config` } };
const STATS = { name: 'istio.stats', typed_config: { '@type': `${TP}stats.PluginConfig` } };
const ROUTER = { name: 'envoy.filters.http.router', typed_config: { '@type': ROUTER_TYPE } };
const H2 = { 'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': { '@type': `${TP}envoy.extensions.upstreams.http.v3.HttpProtocolOptions`, explicit_http_config: { http2_protocol_options: {} } } };

const node = (workload: string, app: string, ns: string) => ({
  id: `sidecar~127.0.0.1~${workload}-abc.${ns}~${ns}.svc.cluster.local`,
  cluster: `${app}.${ns}`,
  metadata: {
    NAME: `${workload}-abc`,
    NAMESPACE: ns,
    WORKLOAD_NAME: workload,
    CLUSTER_ID: 'Kubernetes',
    LABELS: { app, version: 'v1', 'service.istio.io/canonical-name': app, 'service.istio.io/canonical-revision': 'v1' },
  },
});

type Cert = { certChainPem: string; privateKeyPem?: string };
let ca: DevCa;
const certs = (c: Cert, sans?: string[]) => ({
  tls_certificates: [{ certificate_chain: { inline_string: c.certChainPem }, private_key: { inline_string: c.privateKeyPem! } }],
  validation_context: { trusted_ca: { inline_string: ca.rootCertPem }, ...(sans ? { match_subject_alt_names: sans.map((exact) => ({ exact })) } : {}) },
});
const upstreamMtls = (c: Cert, sans: string[]) => ({
  name: 'envoy.transport_sockets.tls',
  typed_config: { '@type': UPSTREAM_TLS, sni: 'outbound_.9080_._.reviews.bookinfo.svc.cluster.local', common_tls_context: { alpn_protocols: ['istio-peer-exchange', 'istio'], ...certs(c, sans) } },
});
const cluster = (name: string, port: number, extra: Record<string, unknown> = {}) => ({
  name,
  type: 'STATIC',
  connect_timeout: '2s',
  load_assignment: { cluster_name: name, endpoints: [{ lb_endpoints: [{ endpoint: { address: socketAddress(port) } }] }] },
  ...extra,
});

const REVIEWS_ID = 'spiffe://cluster.local/ns/bookinfo/sa/bookinfo-reviews';
const PRODUCTPAGE_ID = 'spiffe://cluster.local/ns/bookinfo/sa/bookinfo-productpage';
let reviews: StartedMeshlet;
let productpage: StartedMeshlet;
let probe: tls.Server;
const offered: string[][] = [];
let logPath: string;
const controlPlanes: JsonAdsServer[] = [];
const T_LISTENER = 'type.googleapis.com/envoy.config.listener.v3.Listener';
const T_CLUSTER = 'type.googleapis.com/envoy.config.cluster.v3.Cluster';

/** A sidecar taking `listeners` and `clusters` from its own ADS server (SotW). */
async function startSidecar(listeners: Record<string, unknown>[], clusters: Record<string, unknown>[], n: ReturnType<typeof node>): Promise<StartedMeshlet> {
  const ads = new JsonAdsServer();
  await ads.start();
  controlPlanes.push(ads);
  ads.set(T_CLUSTER, clusters);
  ads.set(T_LISTENER, listeners);
  const m = await startMeshlet({ ...adsBootstrap(n.id, ads.port), node: n });
  await m.server.initialized;
  const end = Date.now() + 15_000;
  while (!ads.acks.some((a) => a.typeUrl === T_LISTENER) || !ads.acks.some((a) => a.typeUrl === T_CLUSTER)) {
    if (ads.nacks.length > 0 || Date.now() > end) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  expect(ads.nacks).toEqual([]);
  return m;
}

beforeAll(async () => {
  ca = await DevCa.create({ trustDomain: 'cluster.local' });
  const reviewsCert = await ca.issueWorkload({ ns: 'bookinfo', sa: 'bookinfo-reviews' });
  const ppCert = await ca.issueWorkload({ ns: 'bookinfo', sa: 'bookinfo-productpage' });
  const app = await startHttpEcho('reviews-app');
  const tcpApp = await startTcpEcho();
  // A TLS server recording the ALPN list each client offers (then closing).
  probe = tls.createServer({
    cert: reviewsCert.certChainPem,
    key: reviewsCert.privateKeyPem,
    ca: ca.rootCertPem,
    requestCert: true,
    ALPNCallback: ({ protocols }: { protocols: string[] }) => {
      offered.push(protocols);
      return undefined;
    },
  } as tls.TlsOptions, (s) => s.destroy());
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
  const probePort = (probe.address() as net.AddressInfo).port;
  logPath = join(mkdtempSync(join(tmpdir(), 'mx-alpn-')), 'access.log');

  const downstreamMtls = (alpn: string[]) => ({
    name: 'envoy.transport_sockets.tls',
    typed_config: { '@type': DOWNSTREAM_TLS, require_client_certificate: true, common_tls_context: { alpn_protocols: alpn, ...certs(reviewsCert) } },
  });
  reviews = await startSidecar(
      [
        {
          name: 'virtualInbound',
          address: socketAddress(0),
          traffic_direction: 'INBOUND',
          listener_filters: [{ name: 'envoy.filters.listener.tls_inspector', typed_config: { '@type': `${TP}envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector` } }],
          filter_chains: [
            {
              name: 'virtualInbound-catchall-http',
              filter_chain_match: { transport_protocol: 'tls', application_protocols: ['istio-http/1.0', 'istio-http/1.1', 'istio-h2'] },
              transport_socket: downstreamMtls(['h2', 'http/1.1']),
              filters: [
                AUTHN,
                MX_NET,
                {
                  name: 'envoy.filters.network.http_connection_manager',
                  typed_config: {
                    '@type': HCM_TYPE,
                    stat_prefix: 'inbound_0.0.0.0_9080',
                    route_config: { name: 'inbound|9080||', virtual_hosts: [{ name: 'inbound', domains: ['*'], routes: [{ match: { prefix: '/' }, route: { cluster: 'inbound|9080||' } }] }] },
                    http_filters: [MX_HTTP_IN, STATS, ROUTER],
                    access_log: [{ name: 'envoy.access_loggers.file', typed_config: { '@type': `${TP}envoy.extensions.access_loggers.file.v3.FileAccessLog`, path: logPath, log_format: { text_format_source: { inline_string: '%PROTOCOL% %REQ(:PATH)%\n' } } } }],
                  },
                },
              ],
            },
            {
              name: 'virtualInbound-tcp',
              filter_chain_match: { transport_protocol: 'tls', application_protocols: ['istio-peer-exchange', 'istio'] },
              transport_socket: downstreamMtls(['istio-peer-exchange', 'h2', 'http/1.1']),
              filters: [AUTHN, MX_NET, STATS, { name: 'envoy.filters.network.tcp_proxy', typed_config: { '@type': TCP_PROXY_TYPE, stat_prefix: 'inbound|9090||', cluster: 'inbound|9090||' } }],
            },
          ],
        },
      ],
      [cluster('inbound|9080||', app.port), cluster('inbound|9090||', tcpApp.port)],
      node('reviews-v1', 'reviews', 'bookinfo'),
  );
  const inbound = reviews.listenerPort('virtualInbound');
  const mtls = upstreamMtls(ppCert, [REVIEWS_ID]);
  const route = (c: string, prefix: string) => ({ match: { prefix }, route: { cluster: c } });
  productpage = await startSidecar(
      [
        {
          name: 'outbound_http',
          address: socketAddress(0),
          traffic_direction: 'OUTBOUND',
          filter_chains: [
            {
              filters: [
                {
                  name: 'envoy.filters.network.http_connection_manager',
                  typed_config: {
                    '@type': HCM_TYPE,
                    stat_prefix: 'outbound_0.0.0.0_9080',
                    route_config: {
                      name: '9080',
                      virtual_hosts: [
                        {
                          name: 'all',
                          domains: ['*'],
                          routes: [route('probe-h2', '/probe/h2'), route('probe-h1', '/probe/h1'), route('probe-off', '/probe/off'), route('outbound|9080||reviews.bookinfo.svc.cluster.local', '/')],
                        },
                      ],
                    },
                    http_filters: [MX_HTTP, ALPN, STATS, ROUTER],
                  },
                },
              ],
            },
          ],
        },
        { name: 'outbound_tcp', address: socketAddress(0), traffic_direction: 'OUTBOUND', filter_chains: [{ filters: [STATS, { name: 'envoy.filters.network.tcp_proxy', typed_config: { '@type': TCP_PROXY_TYPE, stat_prefix: 'tcp', cluster: 'outbound|9090||reviews.bookinfo.svc.cluster.local' } }] }] },
      ],
      [
        cluster('outbound|9080||reviews.bookinfo.svc.cluster.local', inbound, { transport_socket: mtls, filters: [MX_UP], typed_extension_protocol_options: H2 }),
        cluster('outbound|9090||reviews.bookinfo.svc.cluster.local', inbound, { transport_socket: mtls, filters: [MX_UP] }),
        cluster('probe-h2', probePort, { transport_socket: mtls, typed_extension_protocol_options: H2 }),
        cluster('probe-h1', probePort, { transport_socket: mtls }),
        cluster('probe-off', probePort, { transport_socket: mtls, metadata: { filter_metadata: { istio: { alpn_override: 'false' } } } }),
      ],
      node('productpage-v1', 'productpage', 'bookinfo'),
  );
});

afterAll(async () => {
  await stopAllMeshlets();
  await closeAll();
  await new Promise((r) => probe.close(r));
  for (const a of controlPlanes) await a.stop();
});

describe('istio.alpn', () => {
  it('offers istio-h2 / istio-http/1.1 by upstream protocol, and the cluster’s list when alpn_override is "false"', async () => {
    const port = productpage.listenerPort('outbound_http');
    for (const p of ['/probe/h2', '/probe/h1', '/probe/off']) {
      offered.length = 0;
      await request(port, p).catch(() => undefined);
      expect(offered.length).toBeGreaterThan(0);
      const want = p === '/probe/h2' ? ['istio-h2', 'istio'] : p === '/probe/h1' ? ['istio-http/1.1', 'istio'] : ['istio-peer-exchange', 'istio'];
      expect(offered[0]).toEqual(want);
    }
  });
});

describe('productpage → reviews, two meshlet sidecars over mTLS', () => {
  it('HTTP takes the istio-h2 chain, is served as HTTP/2, and istio_requests_total on both sides names the peer', async () => {
    const port = productpage.listenerPort('outbound_http');
    for (let i = 0; i < 3; i++) {
      const r = await request(port, `/reviews/${i}`, { headers: { host: 'reviews.bookinfo.svc.cluster.local:9080' } });
      expect(`${r.status} ${r.body}`).toBe(`200 ${r.body}`);
    }
    await new Promise((r) => setTimeout(r, 300));
    expect(readFileSync(logPath, 'utf8').trim().split('\n')).toEqual(['HTTP/2 /reviews/0', 'HTTP/2 /reviews/1', 'HTTP/2 /reviews/2']);
    const client = select(await scrape(productpage.adminPort), 'istio_requests_total', { reporter: 'source', destination_workload: 'reviews-v1' });
    expect(client).toHaveLength(1);
    expect(client[0]!.value).toBe(3);
    expect(client[0]!.labels).toMatchObject({
      source_workload: 'productpage-v1',
      destination_workload_namespace: 'bookinfo',
      destination_canonical_service: 'reviews',
      destination_principal: REVIEWS_ID,
    });
    const server = select(await scrape(reviews.adminPort), 'istio_requests_total', { reporter: 'destination' });
    expect(server).toHaveLength(1);
    expect(server[0]!.value).toBe(3);
    expect(server[0]!.labels).toMatchObject({
      source_workload: 'productpage-v1',
      source_workload_namespace: 'bookinfo',
      source_canonical_service: 'productpage',
      source_principal: PRODUCTPAGE_ID,
      destination_workload: 'reviews-v1',
      connection_security_policy: 'mutual_tls',
    });
  });

  it('TCP takes the istio-peer-exchange chain, exchanges metadata, and istio_tcp_* on both sides names the peer', async () => {
    const port = productpage.listenerPort('outbound_tcp');
    const got = await new Promise<string>((resolve, reject) => {
      const c = net.connect(port, '127.0.0.1', () => c.end('ping over tcp'));
      let b = '';
      c.on('data', (d) => (b += d.toString()));
      c.on('end', () => resolve(b));
      c.on('error', reject);
    });
    expect(got).toBe('ping over tcp');
    await new Promise((r) => setTimeout(r, 300));
    const client = select(await scrape(productpage.adminPort), 'istio_tcp_connections_closed_total', { reporter: 'source' });
    expect(client).toHaveLength(1);
    expect(client[0]!.labels).toMatchObject({ source_workload: 'productpage-v1', destination_workload: 'reviews-v1', destination_workload_namespace: 'bookinfo', destination_canonical_service: 'reviews' });
    const server = select(await scrape(reviews.adminPort), 'istio_tcp_connections_closed_total', { reporter: 'destination' });
    expect(server).toHaveLength(1);
    expect(server[0]!.labels).toMatchObject({ source_workload: 'productpage-v1', source_workload_namespace: 'bookinfo', source_canonical_service: 'productpage', destination_workload: 'reviews-v1' });
  });
});
