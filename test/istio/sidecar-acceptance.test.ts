/**
 * Issue 16, first "done when": what istiod generates for a whole
 * sidecar (test/support/istio-sidecar.ts, built from Istio's own config dumps) served over a real
 * ADS stream, in SotW and in delta. The ambient/HBONE resources are rejected with a one-line
 * reason naming the feature at its path; every other rejection must be one of the issue items
 * not implemented yet, and the accepted set is measured.
 */
import http from 'node:http';
import { afterAll, describe, expect, it } from 'vitest';
import {
  ambientResources,
  DEFAULT_WORLD,
  sidecarClusters,
  sidecarEndpoints,
  sidecarListeners,
  sidecarRoutes,
  T,
} from '../support/istio-sidecar';
import { JsonAdsServer } from '../support/json-ads-server';
import { adsBootstrap } from '../support/mesh';
import { startMeshlet, stopAllMeshlets } from '../support/meshlet';
import { closeAll, closedPort } from '../support/upstreams';
import { decodeClusterLoadAssignment, decodeRouteConfiguration } from '../../proxy/config/envoy';
import { createRegistries } from '../../proxy/registry';
import { decodeResourceJson, jsonToAny } from '../../xds-client/proto-json';

afterAll(async () => {
  await stopAllMeshlets();
  await closeAll();
});

function getJson(port: number, path: string): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path }, (res) => {
        let b = '';
        res.on('data', (d) => (b += d));
        res.on('end', () => resolve(JSON.parse(b) as Record<string, unknown>));
      })
      .on('error', reject);
  });
}

async function until(cond: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Every "Kind \"name\": path: message" line of the NACKs of one type. */
function rejections(ads: JsonAdsServer, typeUrl: string): { name: string; path: string; message: string }[] {
  const out: { name: string; path: string; message: string }[] = [];
  for (const n of ads.nacks.filter((x) => x.typeUrl === typeUrl)) {
    for (const line of n.message.split('\n')) {
      // The client bounds error_detail; the one line cut short there is not a reason to check.
      if (line.includes(' … (truncated, ')) continue;
      const m = /^\w+ "([^"]+)": ([^:]+): (.*)$/.exec(line);
      if (m) out.push({ name: m[1]!, path: m[2]!, message: m[3]! });
    }
  }
  return out;
}

/**
 * What meshlet does not implement yet from issue 16, by the reason it is rejected with (measured
 * here; each entry goes when its item lands). Empty: items 1 (istio.stats), 2 (metadata exchange,
 * HTTP and TCP), 3 (istio.alpn), 4, 5 (istio_authn) and 7 (cors, grpc_stats) are done.
 */
const PENDING: readonly RegExp[] = [];

async function serve(delta: boolean) {
  const world = { ...DEFAULT_WORLD, outboundPort: await closedPort(), inboundPort: await closedPort() };
  const ambient = ambientResources(await closedPort());
  const ads = new JsonAdsServer();
  await ads.start();
  ads.set(T.cluster, [...sidecarClusters(world), ...ambient.clusters]);
  ads.set(T.cla, sidecarEndpoints(world));
  ads.set(T.route, sidecarRoutes(world));
  ads.set(T.listener, [...sidecarListeners(world), ...ambient.listeners]);
  const m = await startMeshlet(adsBootstrap('sidecar~127.0.0.1~productpage-v1.default~default.svc.cluster.local', ads.port, { delta }));
  await m.server.initialized;
  const seen = (t: string) => ads.acks.some((a) => a.typeUrl === t) || ads.nacks.some((n) => n.typeUrl === t);
  await until(() => [T.cluster, T.listener].every(seen));
  const dump = await getJson(m.adminPort, '/config_dump');
  return { ads, m, dump, world };
}

function activeNames(dump: Record<string, unknown>): { listeners: string[]; clusters: string[] } {
  const configs = dump.configs as Record<string, unknown>[];
  const names = (key: string, inner: string) =>
    configs.flatMap((c) => ((c[key] as Record<string, Record<string, unknown>>[] | undefined) ?? []).map((x) => String((x[inner] as Record<string, unknown> | undefined)?.name ?? x.name)));
  const listeners = configs.flatMap((c) =>
    ((c.dynamic_listeners as Record<string, Record<string, unknown>>[] | undefined) ?? []).filter((x) => x.active_state !== undefined).map((x) => String(x.name)),
  );
  return { listeners, clusters: names('dynamic_active_clusters', 'cluster') };
}

for (const delta of [false, true]) {
  describe(`istiod's sidecar resources over ADS (${delta ? 'delta' : 'SotW'})`, () => {
    it('rejects the ambient resources by feature, and sidecar resources only for the pending items', async () => {
      const { ads, dump } = await serve(delta);
      try {
        const clusters = rejections(ads, T.cluster);
        const listeners = rejections(ads, T.listener);
        // Ambient/HBONE: one-line reasons naming the feature, at the field's path.
        expect(clusters.filter((r) => r.name === 'main_internal')).toEqual([
          {
            name: 'main_internal',
            path: 'load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.envoy_internal_address',
            message: 'envoy_internal_address (ambient/HBONE internal listeners) is not supported: meshlet implements the sidecar data plane, not ambient',
          },
          {
            name: 'main_internal',
            path: 'transport_socket.typed_config.@type',
            message: 'internal_upstream (ambient/HBONE) is not supported: meshlet implements the sidecar data plane, not ambient (transport socket type envoy.extensions.transport_sockets.internal_upstream.v3.InternalUpstreamTransport)',
          },
        ]);
        const setDst =
          'set_internal_dst_address (ambient/HBONE internal listeners) is not supported: meshlet implements the sidecar data plane, not ambient (listener filter type udpa.type.v1.TypedStruct with type_url type.googleapis.com/istio.set_internal_dst_address.v1.Config)';
        const internal = 'internal listeners (ambient/HBONE) are not supported: meshlet implements the sidecar data plane, not ambient';
        expect(listeners.filter((r) => r.name === 'main_internal')).toEqual([
          { name: 'main_internal', path: 'internal_listener', message: internal },
          { name: 'main_internal', path: 'listener_filters[0].typed_config.@type', message: setDst },
        ]);
        const hcm = 'filter_chains[0].filters[1].typed_config';
        expect(listeners.filter((r) => r.name === 'connect_terminate')).toEqual([
          {
            name: 'connect_terminate',
            path: `${hcm}.route_config.virtual_hosts[0].routes[0].typed_per_filter_config.connect_authority.@type`,
            message:
              'HBONE connect authority (ambient) is not supported: meshlet implements the sidecar data plane, not ambient (per-route TypedStruct of "type.googleapis.com/io.istio.http.connect_authority.Config")',
          },
          {
            name: 'connect_terminate',
            path: `${hcm}.http_filters[0].typed_config.type_url`,
            message: 'HBONE connect baggage (ambient) is not supported: meshlet implements the sidecar data plane, not ambient (TypedStruct of "type.googleapis.com/io.istio.http.connect_baggage.Config")',
          },
          {
            name: 'connect_terminate',
            path: `${hcm}.http_filters[1].typed_config.type_url`,
            message: 'HBONE connect authority (ambient) is not supported: meshlet implements the sidecar data plane, not ambient (TypedStruct of "type.googleapis.com/io.istio.http.connect_authority.Config")',
          },
        ]);
        expect(listeners.filter((r) => r.name === 'connect_originate')).toEqual([
          { name: 'connect_originate', path: 'internal_listener', message: internal },
          { name: 'connect_originate', path: 'listener_filters[0].typed_config.@type', message: setDst },
          {
            name: 'connect_originate',
            path: 'filter_chains[0].filters[0].typed_config.tunneling_config',
            message: 'HBONE/CONNECT tunneling (ambient) is not supported: meshlet implements the sidecar data plane, not ambient',
          },
        ]);
        // Every other rejection is one of the pending items, and names its resource and path.
        const AMBIENT = new Set(['main_internal', 'connect_originate', 'connect_terminate']);
        const sidecar = [...clusters, ...listeners].filter((r) => !AMBIENT.has(r.name));
        const unexplained = sidecar.filter((r) => !PENDING.some((p) => p.test(`${r.path}: ${r.message}`) || p.test(r.message)));
        expect(unexplained).toEqual([]);
        // Measured: what is active now (the rest waits for the pending items).
        const active = activeNames(dump);
        expect(active.clusters.sort()).toEqual(
          [
            'BlackHoleCluster',
            'InboundPassthroughClusterIpv4',
            'PassthroughCluster',
            'inbound|9080||',
            'outbound|53||kube-dns.kube-system.svc.cluster.local',
            'outbound|9080||reviews.default.svc.cluster.local',
          ].sort(),
        );
        expect(active.listeners.sort()).toEqual(['0.0.0.0_9080', '127.0.96.10_53', 'virtualInbound', 'virtualOutbound']);
        expect(sidecar).toEqual([]);
      } finally {
        await ads.stop();
      }
    });
  });
}

describe("istiod's route configuration and endpoints", () => {
  it('decode with no errors after a real proto round trip', () => {
    const registries = createRegistries();
    const c = { httpFilters: registries.httpFilters };
    for (const r of sidecarRoutes(DEFAULT_WORLD)) {
      const json = decodeResourceJson(T.route, jsonToAny({ '@type': T.route, ...r }).value);
      expect(decodeRouteConfiguration(json, c).errors).toEqual([]);
    }
    for (const e of sidecarEndpoints(DEFAULT_WORLD)) {
      const json = decodeResourceJson(T.cla, jsonToAny({ '@type': T.cla, ...e }).value);
      expect(decodeClusterLoadAssignment(json, c).errors).toEqual([]);
    }
  });
});
