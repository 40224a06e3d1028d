/**
 * Issue 16 item 2, TCP: Istio's metadata exchange on `istio-peer-exchange` connections
 * (envoy.tcp.metadataexchange, the inbound network filter and the outbound cluster filter).
 *
 * - The frame against Istio's format, built independently with protobufjs from the well-known
 *   Any and Struct definitions: magic 0x3D230467 and length (big-endian), then an Any of a Struct
 *   {"x-envoy-peer-metadata": {NAME, NAMESPACE, WORKLOAD_NAME, CLUSTER_ID, LABELS, OWNER},
 *   "x-envoy-peer-metadata-id": node id}. A client playing istio-proxy over real mTLS sends its
 *   frame to a meshlet inbound listener, reads meshlet's and checks it field by field.
 * - Two meshlets over real mTLS (SPIFFE identities, Istio's ALPNs): outbound tcp_proxy through a
 *   cluster with the upstream filter, inbound chain with the network filter; the bytes arrive
 *   intact and istio_tcp_* on both sides carry the peer's workload labels.
 * - Without the negotiated ALPN the filters leave the connection alone.
 */
import net from 'node:net';
import tls from 'node:tls';
import * as protobuf from 'protobufjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DevCa } from '../../certs/dev-ca';
import type { NodeInfo } from '../../proxy/config/types';
import { decodeExchangeAny, encodeExchangeFrame } from '../../proxy/http/peer-metadata';
import { bootstrap, socketAddress, startMeshlet, type StartedMeshlet, stopAllMeshlets, TCP_PROXY_TYPE } from '../support/meshlet';
import { closeAll, startTcpEcho, type TcpEcho } from '../support/upstreams';
import { scrape, select } from '../telemetry/helpers';

const TP = 'type.googleapis.com/';
const root = protobuf.Root.fromJSON({
  nested: {
    google: {
      nested: {
        protobuf: {
          nested: {
            ...(protobuf.common.get('google/protobuf/struct.proto')!.nested!.google as { nested: { protobuf: { nested: Record<string, protobuf.INamespace> } } }).nested.protobuf.nested,
            ...(protobuf.common.get('google/protobuf/any.proto')!.nested!.google as { nested: { protobuf: { nested: Record<string, protobuf.INamespace> } } }).nested.protobuf.nested,
          },
        },
      },
    },
  },
});
const Struct = root.lookupType('google.protobuf.Struct');
const Any = root.lookupType('google.protobuf.Any');
const s = (v: string) => ({ stringValue: v });
const MAGIC = 0x3d230467;

/** What istio-proxy writes: header, then Any{Struct} (protobufjs, not meshlet's encoder). */
function istioFrame(workload: Record<string, unknown>, id: string): Buffer {
  const struct = Struct.encode(Struct.fromObject({ fields: { 'x-envoy-peer-metadata': { structValue: { fields: workload } }, 'x-envoy-peer-metadata-id': s(id) } })).finish();
  const any = Any.encode(Any.fromObject({ type_url: `${TP}google.protobuf.Struct`, value: struct })).finish();
  const head = Buffer.alloc(8);
  head.writeUInt32BE(MAGIC, 0);
  head.writeUInt32BE(any.length, 4);
  return Buffer.concat([head, Buffer.from(any)]);
}

type Fields = Record<string, { stringValue?: string; structValue?: { fields: Record<string, { stringValue?: string }> } }>;
/** Parse a frame with protobufjs: the outer Struct's fields. */
function parseFrame(b: Buffer): { any: { type_url: string }; fields: Fields; length: number } {
  expect(b.readUInt32BE(0)).toBe(MAGIC);
  const len = b.readUInt32BE(4);
  const any = Any.decode(b.subarray(8, 8 + len)) as unknown as { type_url: string; value: Uint8Array };
  const st = Struct.toObject(Struct.decode(any.value)) as { fields: Fields };
  return { any, fields: st.fields, length: 8 + len };
}

const istioNode = (workload: string, app: string, version: string, ns = 'shop'): NodeInfo => ({
  id: `sidecar~127.0.0.1~${workload}-abc.${ns}~${ns}.svc.cluster.local`,
  cluster: `${app}.${ns}`,
  metadata: {
    NAME: `${workload}-abc`,
    NAMESPACE: ns,
    WORKLOAD_NAME: workload,
    CLUSTER_ID: 'Kubernetes',
    OWNER: `kubernetes://apis/apps/v1/namespaces/${ns}/deployments/${workload}`,
    ISTIO_VERSION: '1.24.0',
    LABELS: { app, version, 'service.istio.io/canonical-name': app, 'service.istio.io/canonical-revision': version, 'pod-template-hash': 'abc' },
  },
  userAgentName: 'envoy',
  userAgentVersion: '',
});

describe('the TCP exchange frame in Istio’s format', () => {
  it('encodes what istio-proxy writes: magic, length, Any of the workload Struct and the node id', () => {
    const node = istioNode('reviews-v2', 'reviews', 'v2', 'bookinfo');
    const f = parseFrame(encodeExchangeFrame({ ...node, locality: { region: 'eu', zone: 'eu-1', subZone: '' } }));
    expect(f.any.type_url).toBe(`${TP}google.protobuf.Struct`);
    expect(f.fields['x-envoy-peer-metadata-id']!.stringValue).toBe(node.id);
    const w = (f.fields['x-envoy-peer-metadata']!.structValue!.fields) as Fields;
    // The workload object, not the whole node: ISTIO_VERSION and other labels are not sent.
    expect(Object.keys(w).sort()).toEqual(['AVAILABILITY_ZONE', 'CLUSTER_ID', 'LABELS', 'NAME', 'NAMESPACE', 'OWNER', 'REGION', 'WORKLOAD_NAME']);
    expect(w.OWNER!.stringValue).toBe('kubernetes://apis/apps/v1/namespaces/bookinfo/deployments/reviews-v2');
    expect(w.REGION!.stringValue).toBe('eu');
    const labels = Object.fromEntries(Object.entries(w.LABELS!.structValue!.fields).map(([k, v]) => [k, v.stringValue]));
    expect(labels).toEqual({ app: 'reviews', version: 'v2', 'service.istio.io/canonical-name': 'reviews', 'service.istio.io/canonical-revision': 'v2' });
  });

  it('decodes a frame istio-proxy would send (built with protobufjs)', () => {
    const frame = istioFrame(
      {
        NAME: s('ratings-v1-xyz'),
        NAMESPACE: s('bookinfo'),
        WORKLOAD_NAME: s('ratings-v1'),
        CLUSTER_ID: s('Kubernetes'),
        OWNER: s('kubernetes://apis/apps/v1/namespaces/bookinfo/deployments/ratings-v1'),
        LABELS: { structValue: { fields: { 'app.kubernetes.io/name': s('ratings'), app: s('other'), version: s('v1'), 'service.istio.io/canonical-name': s('ratings'), 'service.istio.io/canonical-revision': s('v1') } } },
      },
      'sidecar~10.0.0.9~ratings-v1-xyz.bookinfo~bookinfo.svc.cluster.local',
    );
    const len = frame.readUInt32BE(4);
    expect(decodeExchangeAny(frame.subarray(8, 8 + len))).toEqual({
      id: 'sidecar~10.0.0.9~ratings-v1-xyz.bookinfo~bookinfo.svc.cluster.local',
      name: 'ratings-v1-xyz',
      workload: 'ratings-v1',
      namespace: 'bookinfo',
      cluster: 'Kubernetes',
      app: 'ratings', // app.kubernetes.io/name wins over app, as in istio-proxy
      version: 'v1',
      canonicalService: 'ratings',
      canonicalRevision: 'v1',
      owner: 'kubernetes://apis/apps/v1/namespaces/bookinfo/deployments/ratings-v1',
    });
    // Not an Any of a Struct, or no metadata in it: no peer.
    const other = Any.encode(Any.fromObject({ type_url: `${TP}google.protobuf.Empty`, value: new Uint8Array(0) })).finish();
    expect(decodeExchangeAny(other)).toBeUndefined();
    expect(decodeExchangeAny(Buffer.from([0xff, 0xff, 0xff]))).toBeUndefined();
  });
});

// ───────────── real sockets ─────────────

const DOWNSTREAM_TLS = `${TP}envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext`;
const UPSTREAM_TLS = `${TP}envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext`;
const MX = { name: 'istio.metadata_exchange', typed_config: { '@type': `${TP}envoy.tcp.metadataexchange.config.MetadataExchange`, protocol: 'istio-peer-exchange' } };
/** The cluster filter as istiod writes it: a TypedStruct of the same config. */
const MX_UPSTREAM = {
  name: 'envoy.filters.network.upstream.metadata_exchange',
  typed_config: { '@type': `${TP}udpa.type.v1.TypedStruct`, type_url: `${TP}envoy.tcp.metadataexchange.config.MetadataExchange`, value: { protocol: 'istio-peer-exchange' } },
};
const STATS = { name: 'istio.stats', typed_config: { '@type': `${TP}stats.PluginConfig` } };
const tcpProxy = (cluster: string) => ({ name: 'envoy.filters.network.tcp_proxy', typed_config: { '@type': TCP_PROXY_TYPE, stat_prefix: cluster, cluster } });

let ca: DevCa;
let echo: TcpEcho;
let back: StartedMeshlet;
let front: StartedMeshlet;
let istioClientCert: { certChainPem: string; privateKeyPem?: string };
const BACK_ID = 'spiffe://cluster.local/ns/shop/sa/back';

beforeAll(async () => {
  ca = await DevCa.create({ trustDomain: 'cluster.local' });
  const backCert = await ca.issueWorkload({ ns: 'shop', sa: 'back' });
  const frontCert = await ca.issueWorkload({ ns: 'shop', sa: 'front' });
  istioClientCert = await ca.issueWorkload({ ns: 'ops', sa: 'legacy' });
  echo = await startTcpEcho();
  const certs = (c: { certChainPem: string; privateKeyPem?: string }) => ({
    tls_certificates: [{ certificate_chain: { inline_string: c.certChainPem }, private_key: { inline_string: c.privateKeyPem! } }],
    validation_context: { trusted_ca: { inline_string: ca.rootCertPem } },
  });
  back = await startMeshlet(
    bootstrap(
      [
        {
          name: 'inbound_tcp',
          address: socketAddress(0),
          traffic_direction: 'INBOUND',
          filter_chains: [
            {
              // istiod's inbound TCP chain: mTLS accepting istio-peer-exchange first.
              filter_chain_match: { transport_protocol: 'tls' },
              transport_socket: {
                name: 'envoy.transport_sockets.tls',
                typed_config: { '@type': DOWNSTREAM_TLS, require_client_certificate: true, common_tls_context: { alpn_protocols: ['istio-peer-exchange', 'h2', 'http/1.1'], ...certs(backCert) } },
              },
              filters: [MX, STATS, tcpProxy('inbound|9000||')],
            },
          ],
          listener_filters: [{ name: 'envoy.filters.listener.tls_inspector', typed_config: { '@type': `${TP}envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector` } }],
        },
      ],
      [{ name: 'inbound|9000||', type: 'STATIC', connect_timeout: '1s', load_assignment: { cluster_name: 'inbound|9000||', endpoints: [{ lb_endpoints: [{ endpoint: { address: socketAddress(echo.port) } }] }] } }],
      { node: istioNode('back-v2', 'back', 'v2') },
    ),
  );
  const OUT = 'outbound|9000||back.shop.svc.cluster.local';
  front = await startMeshlet(
    bootstrap(
      [{ name: 'outbound_tcp', address: socketAddress(0), traffic_direction: 'OUTBOUND', filter_chains: [{ filters: [STATS, tcpProxy(OUT)] }] }],
      [
        {
          name: OUT,
          type: 'STATIC',
          connect_timeout: '2s',
          load_assignment: { cluster_name: OUT, endpoints: [{ lb_endpoints: [{ endpoint: { address: socketAddress(back.listenerPort('inbound_tcp')) } }] }] },
          transport_socket: {
            name: 'envoy.transport_sockets.tls',
            typed_config: {
              '@type': UPSTREAM_TLS,
              sni: 'outbound_.9000_._.back.shop.svc.cluster.local',
              common_tls_context: { alpn_protocols: ['istio-peer-exchange', 'istio'], ...certs(frontCert), validation_context: { trusted_ca: { inline_string: ca.rootCertPem }, match_subject_alt_names: [{ exact: BACK_ID }] } },
            },
          },
          filters: [MX_UPSTREAM],
        },
      ],
      { node: istioNode('front-v1', 'front', 'v1') },
    ),
  );
});

afterAll(async () => {
  await stopAllMeshlets();
  await closeAll();
});

/** Connect, send `payload`, half-close, and collect the whole answer. */
function roundTrip(port: number, payload: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const c = net.connect(port, '127.0.0.1', () => c.end(payload));
    const got: Buffer[] = [];
    c.on('data', (d) => got.push(d));
    c.on('end', () => resolve(Buffer.concat(got)));
    c.on('error', reject);
  });
}

describe('two meshlets exchange metadata on istio-peer-exchange', () => {
  it('the bytes arrive intact and istio_tcp_* on both sides carry the peer workload', async () => {
    const payload = Buffer.from('x'.repeat(5000) + 'end');
    for (let i = 0; i < 2; i++) {
      const got = await roundTrip(front.listenerPort('outbound_tcp'), payload);
      expect(got.equals(payload)).toBe(true);
    }
    // The echo saw only the application's bytes, never a frame.
    expect(echo.received).toBe(2 * payload.length);
    await new Promise((r) => setTimeout(r, 200));
    const client = select(await scrape(front.adminPort), 'istio_tcp_connections_opened_total', { reporter: 'source' });
    expect(client).toHaveLength(1);
    expect(client[0]!.value).toBe(2);
    expect(client[0]!.labels).toMatchObject({
      source_workload: 'front-v1',
      destination_workload: 'back-v2',
      destination_workload_namespace: 'shop',
      destination_app: 'back',
      destination_version: 'v2',
      destination_canonical_service: 'back',
      destination_canonical_revision: 'v2',
      destination_cluster: 'Kubernetes',
      destination_principal: BACK_ID,
    });
    const sent = select(await scrape(front.adminPort), 'istio_tcp_sent_bytes_total', { reporter: 'source' });
    expect(sent[0]!.labels.destination_workload).toBe('back-v2');
    const server = select(await scrape(back.adminPort), 'istio_tcp_connections_closed_total', { reporter: 'destination' });
    expect(server).toHaveLength(1);
    expect(server[0]!.value).toBe(2);
    expect(server[0]!.labels).toMatchObject({
      source_workload: 'front-v1',
      source_workload_namespace: 'shop',
      source_app: 'front',
      source_version: 'v1',
      source_canonical_service: 'front',
      source_canonical_revision: 'v1',
      source_principal: 'spiffe://cluster.local/ns/shop/sa/front',
      destination_workload: 'back-v2',
    });
  });
});

/** A client speaking as istio-proxy does: TLS with ALPN, its frame, then data. */
function istioClient(alpn: string[], frame: Buffer | undefined, data: Buffer): Promise<{ alpn: string | false; bytes: Buffer }> {
  return new Promise((resolve, reject) => {
    const c = tls.connect({
      host: '127.0.0.1',
      port: back.listenerPort('inbound_tcp'),
      ca: ca.rootCertPem,
      cert: istioClientCert.certChainPem,
      key: istioClientCert.privateKeyPem,
      ALPNProtocols: alpn,
      checkServerIdentity: () => undefined,
    });
    const got: Buffer[] = [];
    c.on('secureConnect', () => c.end(frame ? Buffer.concat([frame, data]) : data));
    c.on('data', (d) => got.push(d));
    c.on('end', () => resolve({ alpn: c.alpnProtocol ?? false, bytes: Buffer.concat(got) }));
    c.on('error', reject);
  });
}

describe('meshlet against istio-proxy’s bytes', () => {
  it('reads the frame istio-proxy sends and answers with its own before the data', async () => {
    const frame = istioFrame(
      {
        NAME: s('legacy-7-abc'),
        NAMESPACE: s('ops'),
        WORKLOAD_NAME: s('legacy-7'),
        CLUSTER_ID: s('east'),
        LABELS: { structValue: { fields: { app: s('legacy'), version: s('v7'), 'service.istio.io/canonical-name': s('legacy'), 'service.istio.io/canonical-revision': s('v7') } } },
      },
      'sidecar~10.1.1.1~legacy-7-abc.ops~ops.svc.cluster.local',
    );
    const r = await istioClient(['istio-peer-exchange', 'istio'], frame, Buffer.from('hello'));
    expect(r.alpn).toBe('istio-peer-exchange');
    const f = parseFrame(r.bytes);
    expect(f.fields['x-envoy-peer-metadata-id']!.stringValue).toBe(istioNode('back-v2', 'back', 'v2').id);
    expect(f.fields['x-envoy-peer-metadata']!.structValue!.fields.WORKLOAD_NAME!.stringValue).toBe('back-v2');
    // After meshlet's frame: the echo of the data only (the client's frame was consumed).
    expect(r.bytes.subarray(f.length).toString()).toBe('hello');
    await new Promise((res) => setTimeout(res, 200));
    const server = select(await scrape(back.adminPort), 'istio_tcp_connections_closed_total', { reporter: 'destination', source_workload: 'legacy-7' });
    expect(server).toHaveLength(1);
    expect(server[0]!.labels).toMatchObject({ source_workload_namespace: 'ops', source_canonical_service: 'legacy', source_cluster: 'east', source_principal: 'spiffe://cluster.local/ns/ops/sa/legacy' });
  });

  it('passes bytes that are not a frame through, and leaves other ALPNs alone', async () => {
    // istio-peer-exchange negotiated but the peer has no exchange filter: its bytes reach the app.
    const r = await istioClient(['istio-peer-exchange'], undefined, Buffer.from('no frame here'));
    const f = parseFrame(r.bytes);
    expect(r.bytes.subarray(f.length).toString()).toBe('no frame here');
    // Another ALPN: no frame either way.
    const plain = await istioClient(['h2'], undefined, Buffer.from('just bytes'));
    expect(plain.alpn).toBe('h2');
    expect(plain.bytes.toString()).toBe('just bytes');
  });
});
