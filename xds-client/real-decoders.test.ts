/**
 * XdsClient with meshlet's real Envoy decoders (proxy/config/envoy) as resource types: NACK
 * messages carry the decoders' field paths, and accepted values are the frozen config objects.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { type DecodeContext, decodeCluster, decodeClusterLoadAssignment } from '../proxy/config/envoy';
import type { ClusterConfig, ClusterLoadAssignment } from '../proxy/config/types';
import { createRegistries } from '../proxy/registry';
import { ScriptedAdsServer } from '../test/support/scripted-ads-server';
import { RecordingWatcher } from '../test/support/xds-fixtures';
import { XdsClient } from './client';
import { jsonToAny } from './proto-json';
import { TYPE_URLS } from './protos';
import type { ResourceTypeDef } from './resource-types';

const CDS = TYPE_URLS.cluster;
const EDS = TYPE_URLS.clusterLoadAssignment;

const cleanup: Array<() => void> = [];
afterEach(() => {
  for (const f of cleanup.splice(0)) f();
});

function defs(): [ResourceTypeDef<ClusterConfig>, ResourceTypeDef<ClusterLoadAssignment>] {
  const ctx: DecodeContext = { httpFilters: createRegistries().httpFilters };
  return [
    { typeUrl: CDS, wildcard: true, decode: (j) => decodeCluster(j, ctx), name: (v) => v.name },
    { typeUrl: EDS, wildcard: false, decode: (j) => decodeClusterLoadAssignment(j, ctx), name: (v) => v.clusterName },
  ];
}

const cluster = (name: string) =>
  jsonToAny({
    '@type': CDS,
    name,
    type: 'EDS',
    eds_cluster_config: { eds_config: { ads: {}, resource_api_version: 'V3' } },
    connect_timeout: '0.5s',
    lb_policy: 'LEAST_REQUEST',
  });

const cla = (name: string, address: string) =>
  jsonToAny({
    '@type': EDS,
    cluster_name: name,
    endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address, port_value: 8080 } } } }] }],
  });

describe('XdsClient with the real decoders', () => {
  it('applies decoded clusters and endpoints, and NACKs a bad endpoint with the decoder field path', async () => {
    const s = await ScriptedAdsServer.start();
    cleanup.push(() => s.stop());
    const c = new XdsClient({
      node: {
        id: 'sidecar~10.0.0.5~ratings-1.default~default.svc.cluster.local',
        cluster: 'ratings',
        metadata: {},
        userAgentName: 'meshlet',
        userAgentVersion: '',
      },
      dynamicResources: {
        adsConfig: {
          apiType: 'GRPC',
          grpcServices: [{ kind: 'google_grpc', targetUri: `127.0.0.1:${s.port}`, statPrefix: 'ads' }],
          setNodeOnFirstMessageOnly: true,
        },
        initialFetchTimeoutMs: 0,
      },
    });
    cleanup.push(() => c.close());
    const [cds, eds] = defs();
    c.registerType(cds);
    c.registerType(eds);
    const clusters = new RecordingWatcher<ClusterConfig>();
    const endpoints = new RecordingWatcher<ClusterLoadAssignment>();
    c.watch(CDS, '*', clusters);
    c.watch(EDS, 'outbound|9080||ratings', endpoints);
    c.start();
    await s.next();
    await s.next();

    s.send({ type_url: CDS, version_info: '1', nonce: 'c1', resources: [cluster('outbound|9080||ratings')] });
    expect((await s.next()).req).toMatchObject({ type_url: CDS, version_info: '1', response_nonce: 'c1' });
    const got = await clusters.next();
    expect(got.kind).toBe('changed');
    const value = (got as { value: ClusterConfig }).value;
    expect(value).toMatchObject({
      name: 'outbound|9080||ratings',
      type: 'EDS',
      connectTimeoutMs: 500,
      lbPolicy: 'LEAST_REQUEST',
    });
    expect(Object.isFrozen(value)).toBe(true);

    s.send({ type_url: EDS, version_info: '1', nonce: 'e1', resources: [cla('outbound|9080||ratings', '10.0.0.7')] });
    expect((await s.next()).req.error_detail).toBeFalsy();
    expect(await endpoints.next()).toMatchObject({ kind: 'changed', name: 'outbound|9080||ratings' });

    s.send({
      type_url: EDS,
      version_info: '2',
      nonce: 'e2',
      resources: [cla('outbound|9080||ratings', 'ratings.default')],
    });
    const nack = await s.next();
    expect(nack.req).toMatchObject({ type_url: EDS, version_info: '1', response_nonce: 'e2' });
    expect(nack.req.error_detail?.message).toContain(
      'ClusterLoadAssignment "outbound|9080||ratings": endpoints[0].lb_endpoints[0].endpoint.address.socket_address.address: malformed IP address',
    );
    expect(await endpoints.next()).toMatchObject({ kind: 'error', name: 'outbound|9080||ratings' });
    const kept = c.snapshot().types.find((t) => t.type_url === EDS)?.resources[0];
    expect(kept).toMatchObject({ client_status: 'NACKED', version_info: '1' });
    expect(JSON.stringify(kept?.resource)).toContain('10.0.0.7');
  });
});
