/**
 * The embedded control plane's `capture: iptables` option: Istio's virtualOutbound (15001) and
 * virtualInbound (15006) for captured workloads, the per-port virtual listeners behind them,
 * PassthroughCluster / BlackHoleCluster by outbound_traffic_policy, inbound delivery from
 * 127.0.0.6, and peers dialled at their app ports. Every generated resource must decode cleanly
 * through meshlet's own decoders after a protobuf round trip (as the xDS client sees it); mesh
 * file mistakes are reported with their paths.
 */
import { describe, expect, it } from 'vitest';
import { generateForWorkload } from '../../control-plane/generate';
import { parseMesh, parseMeshOrThrow } from '../../control-plane/mesh';
import { decodeCluster, decodeClusterLoadAssignment, decodeListener, decodeRouteConfiguration } from '../../proxy/config/envoy/index';
import { createRegistries } from '../../proxy/registry';
import { anyToJson, jsonToAny } from '../../xds-client/proto-json';
import { TYPE_URLS } from '../../xds-client/protos';

const MESH = `
capture: iptables
outbound_traffic_policy: REGISTRY_ONLY
services:
  - { name: web, ports: [{ port: 80, protocol: http, target_port: 8080 }] }
  - { name: db, ports: [{ port: 5432, protocol: tcp }] }
workloads:
  - { name: web-1, service: web, address: "10.1.0.5:8080", outbound_port: 16001 }
  - { name: db-1, service: db, address: "10.1.0.6:5432" }
  - { name: legacy-1, service: db, version: v0, address: "127.0.0.30:5432", outbound_ip: 127.0.0.31, capture: none }
`;

const ctx = { httpFilters: createRegistries().httpFilters } as never;
const DECODERS: Record<string, (raw: unknown, c: never) => { errors: unknown[]; warnings: unknown[]; value?: unknown }> = {
  [TYPE_URLS.listener]: decodeListener as never,
  [TYPE_URLS.routeConfiguration]: decodeRouteConfiguration as never,
  [TYPE_URLS.cluster]: decodeCluster as never,
  [TYPE_URLS.clusterLoadAssignment]: decodeClusterLoadAssignment as never,
};

function generate(name: string) {
  const { mesh } = parseMeshOrThrow(MESH);
  const w = mesh.workloads.find((x) => x.name === name)!;
  return generateForWorkload(mesh, w);
}

describe('control plane capture: iptables', () => {
  it('every generated resource decodes cleanly after a protobuf round trip', () => {
    for (const name of ['web-1', 'db-1', 'legacy-1']) {
      for (const [type, byName] of generate(name)) {
        for (const [rname, json] of byName) {
          const back = anyToJson(jsonToAny(json));
          const { '@type': _t, ...raw } = back as Record<string, unknown>;
          const r = DECODERS[type]!(raw, ctx);
          expect({ name, rname, errors: r.errors, warnings: r.warnings }).toEqual({ name, rname, errors: [], warnings: [] });
        }
      }
    }
  });

  it('virtualOutbound: use_original_dst on 0.0.0.0:<outbound_port>, self blackholed, REGISTRY_ONLY catch-all', () => {
    const l = generate('web-1').get(TYPE_URLS.listener)!;
    const vo = l.get('virtualOutbound') as Record<string, any>;
    expect(vo.address).toEqual({ socket_address: { address: '0.0.0.0', port_value: 16001 } });
    expect(vo.use_original_dst).toBe(true);
    expect(vo.filter_chains.map((c: any) => [c.name, c.filter_chain_match?.destination_port, c.filters[0].typed_config.cluster])).toEqual([
      ['virtualOutbound-blackhole', 16001, 'BlackHoleCluster'],
      ['virtualOutbound-catchall-tcp', undefined, 'BlackHoleCluster'],
    ]);
    // Per-port listeners are virtual, reached only by the hand-over.
    expect((l.get('0.0.0.0_80') as any).bind_to_port).toBe(false);
    expect((l.get('0.0.0.0_5432') as any).bind_to_port).toBe(false);
    expect([...l.keys()].some((k) => k.startsWith('10.1.0.5_'))).toBe(false);
  });

  it('ALLOW_ANY (the default) passes unknown destinations through the ORIGINAL_DST PassthroughCluster', () => {
    const { mesh } = parseMeshOrThrow(MESH.replace('outbound_traffic_policy: REGISTRY_ONLY', ''));
    const out = generateForWorkload(mesh, mesh.workloads[0]!);
    const vo = out.get(TYPE_URLS.listener)!.get('virtualOutbound') as Record<string, any>;
    expect(vo.address.socket_address.port_value).toBe(16001);
    expect(vo.filter_chains[1].filters[0].typed_config.cluster).toBe('PassthroughCluster');
    expect((out.get(TYPE_URLS.cluster)!.get('PassthroughCluster') as any).type).toBe('ORIGINAL_DST');
  });

  it('virtualInbound: chains by original destination port, delivery from 127.0.0.6', () => {
    const out = generate('db-1');
    const vi = out.get(TYPE_URLS.listener)!.get('virtualInbound') as Record<string, any>;
    expect(vi.address).toEqual({ socket_address: { address: '0.0.0.0', port_value: 15006 } });
    expect(vi.listener_filters.map((f: any) => f.name)).toEqual(['envoy.filters.listener.original_dst']);
    expect(vi.filter_chains.map((c: any) => [c.name, c.filter_chain_match?.destination_port])).toEqual([
      ['virtualInbound-blackhole', 15006],
      ['inbound_5432', 5432],
    ]);
    const inbound = out.get(TYPE_URLS.cluster)!.get('inbound|5432||') as Record<string, any>;
    expect(inbound.upstream_bind_config).toEqual({ source_address: { address: '127.0.0.6', port_value: 0 } });
  });

  it('peers dial a captured workload at its app port, an uncaptured one at its sidecar inbound port', () => {
    const eds = generate('web-1').get(TYPE_URLS.clusterLoadAssignment)!;
    const addrs = (name: string) =>
      ((eds.get(name) as any).endpoints[0].lb_endpoints as any[]).map((e) => e.endpoint.address.socket_address);
    expect(addrs('outbound|5432|v1|db.default.svc.cluster.local')).toEqual([{ address: '10.1.0.6', port_value: 5432 }]);
    expect(addrs('outbound|5432|v0|db.default.svc.cluster.local')).toEqual([{ address: '127.0.0.30', port_value: 15006 }]);
  });

  it('an uncaptured workload keeps its bound listeners', () => {
    const l = generate('legacy-1').get(TYPE_URLS.listener)!;
    expect(l.has('virtualOutbound')).toBe(false);
    expect(l.has('inbound_127.0.0.30_15006')).toBe(true);
    expect((l.get('127.0.0.31_80') as any).bind_to_port).toBeUndefined();
  });

  it('reports mesh file mistakes with their paths', () => {
    const r = parseMesh(`
capture: sometimes
outbound_traffic_policy: DENY
services: [{ name: s, ports: [{ port: 80, protocol: http, target_port: 8080 }] }]
workloads: [{ name: s-1, service: s, address: "127.0.0.40:8080", capture: none, outbound_port: 15001 }]
`);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.errors.map((e) => e.path)).toEqual(['capture', 'outbound_traffic_policy', 'workloads[0].outbound_port']);
  });
});
