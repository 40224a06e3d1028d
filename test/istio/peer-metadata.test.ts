/**
 * Issue 16 item 2: Istio's HTTP peer metadata exchange.
 *
 * - The wire format against Istio's documented one, built independently: the header value is
 *   base64 of a google.protobuf.Struct (the node's flat metadata: NAME, NAMESPACE, WORKLOAD_NAME,
 *   CLUSTER_ID, LABELS, …) serialized deterministically. The test builds those bytes with
 *   protobufjs from the well-known Struct definition, not with meshlet's encoder, and checks both
 *   directions.
 * - Two meshlets over real loopback HTTP — front with the Wasm metadata_exchange plugin form,
 *   back with io.istio.http.peer_metadata — exchange metadata, and istio_requests_total on both
 *   sides carries the peer's source_* / destination_* labels. The headers never reach the app or
 *   the client.
 */
import * as protobuf from 'protobufjs';
import { afterAll, describe, expect, it } from 'vitest';
import type { NodeInfo } from '../../proxy/config/types';
import { decodePeerHeader, encodePeerHeader } from '../../proxy/http/peer-metadata';
import { bootstrap, httpListener, routes, startMeshlet, staticCluster, stopAllMeshlets } from '../support/meshlet';
import { closeAll, startHttpEcho } from '../support/upstreams';
import { request, scrape, select } from '../telemetry/helpers';

afterAll(async () => {
  await stopAllMeshlets();
  await closeAll();
});

const structType = protobuf.Root.fromJSON(protobuf.common.get('google/protobuf/struct.proto')!).lookupType('google.protobuf.Struct');
const s = (v: string) => ({ stringValue: v });

describe('x-envoy-peer-metadata in Istio’s format', () => {
  const labels = { app: 'reviews', version: 'v2', 'service.istio.io/canonical-name': 'reviews', 'service.istio.io/canonical-revision': 'v2' };
  const node: NodeInfo = {
    id: 'sidecar~10.0.0.7~reviews-v2-abc.bookinfo~bookinfo.svc.cluster.local',
    cluster: 'reviews.bookinfo',
    metadata: { NAME: 'reviews-v2-abc', NAMESPACE: 'bookinfo', WORKLOAD_NAME: 'reviews-v2', CLUSTER_ID: 'Kubernetes', MESH_ID: 'cluster.local', LABELS: labels, INTERCEPTION_MODE: 'REDIRECT' },
    userAgentName: 'envoy',
    userAgentVersion: '',
  };

  it('decodes a header value istio-proxy would send (Struct built with protobufjs)', () => {
    const msg = structType.fromObject({
      fields: {
        CLUSTER_ID: s('Kubernetes'),
        LABELS: { structValue: { fields: Object.fromEntries(Object.entries(labels).map(([k, v]) => [k, s(v)])) } },
        NAME: s('reviews-v2-abc'),
        NAMESPACE: s('bookinfo'),
        OWNER: s('kubernetes://apis/apps/v1/namespaces/bookinfo/deployments/reviews-v2'),
        WORKLOAD_NAME: s('reviews-v2'),
        ISTIO_VERSION: s('1.24.0'),
        APP_CONTAINERS: s('reviews'),
        PLATFORM_METADATA: { structValue: { fields: {} } },
      },
    });
    const header = Buffer.from(structType.encode(msg).finish()).toString('base64');
    expect(decodePeerHeader(header, 'sidecar~10.0.0.7~reviews-v2-abc.bookinfo~bookinfo.svc.cluster.local')).toEqual({
      id: 'sidecar~10.0.0.7~reviews-v2-abc.bookinfo~bookinfo.svc.cluster.local',
      name: 'reviews-v2-abc',
      workload: 'reviews-v2',
      namespace: 'bookinfo',
      cluster: 'Kubernetes',
      app: 'reviews',
      version: 'v2',
      canonicalService: 'reviews',
      canonicalRevision: 'v2',
      owner: 'kubernetes://apis/apps/v1/namespaces/bookinfo/deployments/reviews-v2',
    });
    // Padding is optional on the wire (istio-proxy decodes without it).
    expect(decodePeerHeader(header.replace(/=+$/, ''))?.workload).toBe('reviews-v2');
    expect(decodePeerHeader('not base64 of a struct!')).toBeUndefined();
  });

  it('encodes the flat-node fields, deterministically (key order), byte for byte as protobufjs does', () => {
    const ours = Buffer.from(encodePeerHeader(node), 'base64');
    const decoded = structType.toObject(structType.decode(ours)) as { fields: Record<string, { stringValue?: string; structValue?: { fields: Record<string, { stringValue: string }> } }> };
    // Only Istio's flat-node fields: INTERCEPTION_MODE is not sent.
    expect(Object.keys(decoded.fields).sort()).toEqual(['CLUSTER_ID', 'LABELS', 'MESH_ID', 'NAME', 'NAMESPACE', 'WORKLOAD_NAME']);
    expect(decoded.fields.WORKLOAD_NAME!.stringValue).toBe('reviews-v2');
    expect(decoded.fields.LABELS!.structValue!.fields['service.istio.io/canonical-revision']!.stringValue).toBe('v2');
    // Deterministic serialization = map entries in key order at every level.
    const sortedLabels = Object.fromEntries(Object.keys(labels).sort().map((k) => [k, s(labels[k as keyof typeof labels])]));
    const expected = structType.encode(
      structType.fromObject({
        fields: {
          CLUSTER_ID: s('Kubernetes'),
          LABELS: { structValue: { fields: sortedLabels } },
          MESH_ID: s('cluster.local'),
          NAME: s('reviews-v2-abc'),
          NAMESPACE: s('bookinfo'),
          WORKLOAD_NAME: s('reviews-v2'),
        },
      }),
    ).finish();
    expect(ours.equals(Buffer.from(expected))).toBe(true);
  });
});

const TP = 'type.googleapis.com/';
const ROUTER = { name: 'envoy.filters.http.router', typed_config: { '@type': `${TP}envoy.extensions.filters.http.router.v3.Router` } };
const STATS = { name: 'istio.stats', typed_config: { '@type': `${TP}stats.PluginConfig` } };
const MX_WASM = {
  name: 'istio.metadata_exchange',
  typed_config: {
    '@type': `${TP}envoy.extensions.filters.http.wasm.v3.Wasm`,
    config: {
      root_id: 'metadata_exchange',
      vm_config: { runtime: 'envoy.wasm.runtime.null', code: { local: { inline_string: 'envoy.wasm.metadata_exchange' } } },
      configuration: { '@type': `${TP}google.protobuf.StringValue`, value: '{}' },
    },
  },
};
const MX_INBOUND = {
  name: 'istio.metadata_exchange',
  typed_config: { '@type': `${TP}io.istio.http.peer_metadata.Config`, downstream_discovery: [{ istio_headers: {} }], downstream_propagation: [{ istio_headers: {} }] },
};
const istioNode = (workload: string, app: string, version: string) => ({
  id: `sidecar~127.0.0.1~${workload}-abc.shop~shop.svc.cluster.local`,
  cluster: `${app}.shop`,
  metadata: {
    NAME: `${workload}-abc`,
    NAMESPACE: 'shop',
    WORKLOAD_NAME: workload,
    CLUSTER_ID: 'Kubernetes',
    LABELS: { app, version, 'service.istio.io/canonical-name': app, 'service.istio.io/canonical-revision': version },
  },
});

describe('two meshlets exchange peer metadata', () => {
  it('fills source_* on the server and destination_* on the client; the app and the client never see the headers', async () => {
    const seen: string[] = [];
    const app = await startHttpEcho('back', (req) => {
      seen.push(...Object.keys(req.headers).filter((h) => h.startsWith('x-envoy-peer-metadata')));
    });
    const back = await startMeshlet(
      bootstrap(
        [
          {
            ...httpListener('inbound_0.0.0.0_9080', routes([{ match: { prefix: '/' }, route: { cluster: 'inbound|9080||' } }]), {
              http_filters: [MX_INBOUND, STATS, ROUTER],
            }),
            traffic_direction: 'INBOUND',
          },
        ],
        [staticCluster('inbound|9080||', [app.port])],
        { node: istioNode('back-v2', 'back', 'v2') },
      ),
    );
    const OUT = 'outbound|9080||back.shop.svc.cluster.local';
    const front = await startMeshlet(
      bootstrap(
        [
          {
            ...httpListener('outbound_0.0.0.0_9080', routes([{ match: { prefix: '/' }, route: { cluster: OUT } }]), {
              http_filters: [MX_WASM, STATS, ROUTER],
            }),
            traffic_direction: 'OUTBOUND',
          },
        ],
        [staticCluster(OUT, [back.listenerPort('inbound_0.0.0.0_9080')])],
        { node: istioNode('front-v1', 'front', 'v1') },
      ),
    );
    for (let i = 0; i < 3; i++) {
      const r = await request(front.listenerPort('outbound_0.0.0.0_9080'), `/hello/${i}`, { headers: { host: 'back.shop.svc.cluster.local:9080' } });
      expect(r.status).toBe(200);
      expect(Object.keys(r.headers).filter((h) => h.startsWith('x-envoy-peer-metadata'))).toEqual([]);
    }
    expect(seen).toEqual([]);

    const client = select(await scrape(front.adminPort), 'istio_requests_total', { reporter: 'source' });
    expect(client).toHaveLength(1);
    expect(client[0]!.value).toBe(3);
    expect(client[0]!.labels).toMatchObject({
      source_workload: 'front-v1',
      source_canonical_service: 'front',
      destination_workload: 'back-v2',
      destination_workload_namespace: 'shop',
      destination_app: 'back',
      destination_version: 'v2',
      destination_canonical_service: 'back',
      destination_canonical_revision: 'v2',
      destination_cluster: 'Kubernetes',
      destination_service: 'back.shop.svc.cluster.local',
      destination_service_name: 'back',
      destination_service_namespace: 'shop',
    });
    const server = select(await scrape(back.adminPort), 'istio_requests_total', { reporter: 'destination' });
    expect(server).toHaveLength(1);
    expect(server[0]!.value).toBe(3);
    expect(server[0]!.labels).toMatchObject({
      source_workload: 'front-v1',
      source_workload_namespace: 'shop',
      source_app: 'front',
      source_version: 'v1',
      source_canonical_service: 'front',
      source_canonical_revision: 'v1',
      source_cluster: 'Kubernetes',
      destination_workload: 'back-v2',
      destination_canonical_service: 'back',
    });
  });
});
