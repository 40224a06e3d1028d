/**
 * Istio's auto-mTLS over real sockets: one cluster with Istio's two transport_socket_matches and
 * two endpoints — one in the mesh (`tlsMode: istio`, a TLS server that requires the workload
 * certificate) and one plaintext. HTTP through the router and raw bytes through tcp_proxy each
 * reach the mesh endpoint over mTLS with the workload identity and the other in plaintext;
 * /clusters says which socket each endpoint uses and /config_dump keeps the matches.
 */
import http from 'node:http';
import net from 'node:net';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DevCa } from '../../certs/dev-ca';
import { bootstrap, httpListener, routes, socketAddress, startMeshlet, type StartedMeshlet, stopAllMeshlets, tcpListener } from '../support/meshlet';
import { closeAll, getText, rawExchange, startHttpEcho } from '../support/upstreams';

const UPSTREAM_TLS = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext';
const RAW_BUFFER = 'type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer';
const SERVER_ID = 'spiffe://cluster.local/ns/default/sa/reviews';
const CLIENT_ID = 'spiffe://cluster.local/ns/default/sa/productpage';

let m: StartedMeshlet;
let meshServer: tls.Server;
const meshSeen: { alpn: string | false | null; peer: string; sni: string | false }[] = [];

beforeAll(async () => {
  const ca = await DevCa.create({ trustDomain: 'cluster.local' });
  const serverCert = await ca.issueWorkload({ ns: 'default', sa: 'reviews' });
  const clientCert = await ca.issueWorkload({ ns: 'default', sa: 'productpage' });
  // The in-mesh workload: TLS that requires a client certificate from the mesh CA and speaks
  // Istio's ALPN (as a sidecar's inbound does), HTTP/1.1 inside.
  const app = http.createServer((req, res) => {
    const s = req.socket as tls.TLSSocket;
    const body = `mesh ${String(s.getPeerCertificate().subjectaltname)}`;
    res.writeHead(200, { 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
  meshServer = tls.createServer(
    { cert: serverCert.certChainPem, key: serverCert.privateKeyPem, ca: ca.rootCertPem, requestCert: true, rejectUnauthorized: true, ALPNProtocols: ['istio-peer-exchange', 'istio'] },
    (s) => {
      meshSeen.push({ alpn: s.alpnProtocol, peer: String(s.getPeerCertificate().subjectaltname), sni: (s as unknown as { servername: string | false }).servername });
      app.emit('connection', s);
    },
  );
  await new Promise<void>((r) => meshServer.listen(0, '127.0.0.1', r));
  const meshPort = (meshServer.address() as net.AddressInfo).port;
  const plain = await startHttpEcho('plain', (_req, res) => {
    res.writeHead(200, { 'content-length': 5 });
    res.end('plain');
    return true;
  });

  const reviews = {
    name: 'reviews',
    type: 'STATIC',
    connect_timeout: '2s',
    lb_policy: 'ROUND_ROBIN',
    load_assignment: {
      cluster_name: 'reviews',
      endpoints: [
        {
          lb_endpoints: [
            {
              endpoint: { address: socketAddress(meshPort) },
              metadata: { filter_metadata: { 'envoy.transport_socket_match': { tlsMode: 'istio' }, istio: { workload: 'reviews-v1;default;reviews;v1;Kubernetes' } } },
            },
            { endpoint: { address: socketAddress(plain.port) }, metadata: { filter_metadata: { istio: { workload: 'legacy;default;reviews;v1;Kubernetes' } } } },
          ],
        },
      ],
    },
    transport_socket_matches: [
      {
        name: 'tlsMode-istio',
        match: { tlsMode: 'istio' },
        transport_socket: {
          name: 'envoy.transport_sockets.tls',
          typed_config: {
            '@type': UPSTREAM_TLS,
            sni: 'outbound_.9080_._.reviews.default.svc.cluster.local',
            common_tls_context: {
              alpn_protocols: ['istio-peer-exchange', 'istio'],
              tls_certificates: [{ certificate_chain: { inline_string: clientCert.certChainPem }, private_key: { inline_string: clientCert.privateKeyPem } }],
              validation_context: { trusted_ca: { inline_string: ca.rootCertPem }, match_subject_alt_names: [{ exact: SERVER_ID }] },
            },
          },
        },
      },
      { name: 'tlsMode-disabled', match: {}, transport_socket: { name: 'envoy.transport_sockets.raw_buffer', typed_config: { '@type': RAW_BUFFER } } },
    ],
  };
  m = await startMeshlet(
    bootstrap([httpListener('out_http', routes([{ match: { prefix: '/' }, route: { cluster: 'reviews' } }])), tcpListener('out_tcp', 'reviews')], [reviews]),
  );
});

afterAll(async () => {
  await stopAllMeshlets();
  await closeAll();
  await new Promise((r) => meshServer.close(r));
});

describe('transport_socket_matches over real sockets', () => {
  it('sends HTTP to the tlsMode: istio endpoint over mTLS and to the other in plaintext', async () => {
    const port = m.listenerPort('out_http');
    const bodies: string[] = [];
    for (let i = 0; i < 4; i++) bodies.push((await getText(port, '/')).body);
    expect(bodies.filter((b) => b === `mesh URI:${CLIENT_ID}`)).toHaveLength(2);
    expect(bodies.filter((b) => b === 'plain')).toHaveLength(2);
    // The cluster's TLS socket as configured: Istio's ALPN and SNI, the workload certificate.
    expect(meshSeen[0]).toEqual({ alpn: 'istio-peer-exchange', peer: `URI:${CLIENT_ID}`, sni: 'outbound_.9080_._.reviews.default.svc.cluster.local' });
  });

  it('takes the same per-endpoint choice for tcp_proxy connections', async () => {
    const port = m.listenerPort('out_tcp');
    const req = 'GET / HTTP/1.1\r\nhost: reviews\r\nconnection: close\r\n\r\n';
    const got = [(await rawExchange(port, req)).text, (await rawExchange(port, req)).text];
    expect(got.some((t) => t.endsWith(`mesh URI:${CLIENT_ID}`))).toBe(true);
    expect(got.some((t) => t.endsWith('plain'))).toBe(true);
  });

  it('shows the choice per endpoint in /clusters and keeps the matches in /config_dump', async () => {
    const text = (await getText(m.adminPort, '/clusters')).body;
    const lines = text.split('\n').filter((l) => l.includes('::transport_socket_match::'));
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/^reviews::127\.0\.0\.1:\d+::transport_socket_match::tlsMode-istio$/);
    expect(lines[1]).toMatch(/^reviews::127\.0\.0\.1:\d+::transport_socket_match::tlsMode-disabled$/);
    const dump = JSON.parse((await getText(m.adminPort, '/config_dump')).body) as { configs: Record<string, unknown>[] };
    const cds = dump.configs.find((c) => String(c['@type']).endsWith('ClustersConfigDump')) as { static_clusters: { cluster: Record<string, unknown> }[] };
    const matches = cds.static_clusters[0]!.cluster.transport_socket_matches as { name: string }[];
    expect(matches.map((x) => x.name)).toEqual(['tlsMode-istio', 'tlsMode-disabled']);
  });
});
