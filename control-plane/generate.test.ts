import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { anyToJson, jsonToAny } from '../xds-client/proto-json';
import { TYPE_URLS } from '../xds-client/protos';
import { generateForWorkload, secretResources } from './generate';
import { findWorkload, parseMeshOrThrow } from './mesh';

const { mesh } = parseMeshOrThrow(readFileSync(join(__dirname, 'examples', 'bookinfo.yaml'), 'utf8'));

function all(nodeId: string) {
  const w = findWorkload(mesh, nodeId)!;
  return generateForWorkload(mesh, w);
}

describe('generate', () => {
  it('produces outbound listeners, routes with weighted subsets, EDS clusters with mTLS and endpoints', () => {
    const r = all('productpage-v1');
    const listeners = r.get(TYPE_URLS.listener)!;
    expect([...listeners.keys()]).toEqual([
      '127.0.0.10_9080',
      '127.0.0.10_9081',
      '127.0.0.10_9082',
      '127.0.0.10_9083',
      'inbound_127.0.0.10_15006',
    ]);
    const route = r.get(TYPE_URLS.routeConfiguration)!.get('9081') as any;
    const action = route.virtual_hosts[0].routes[0].route;
    expect(action.weighted_clusters.clusters).toEqual([
      { name: 'outbound|9081|v1|reviews.default.svc.cluster.local', weight: 80 },
      { name: 'outbound|9081|v2|reviews.default.svc.cluster.local', weight: 20 },
    ]);
    expect(action.timeout).toBe('3s');
    expect(action.retry_policy).toMatchObject({
      num_retries: 2,
      per_try_timeout: '1s',
      retry_on: '5xx,reset,connect-failure',
    });
    expect(r.get(TYPE_URLS.routeConfiguration)!.has('9083')).toBe(false); // tcp
    const tcp = listeners.get('127.0.0.10_9083') as any;
    expect(tcp.filter_chains[0].filters[0].typed_config.cluster).toBe('outbound|9083||db.default.svc.cluster.local');

    const c = r.get(TYPE_URLS.cluster)!.get('outbound|9081|v2|reviews.default.svc.cluster.local') as any;
    expect(c.type).toBe('EDS');
    const tls = c.transport_socket.typed_config;
    expect(tls.sni).toBe('outbound_.9081_.v2_.reviews.default.svc.cluster.local');
    expect(tls.common_tls_context.tls_certificate_sds_secret_configs[0].name).toBe('default');
    expect(tls.common_tls_context.combined_validation_context.validation_context_sds_secret_config.name).toBe('ROOTCA');
    expect(
      tls.common_tls_context.combined_validation_context.default_validation_context.match_typed_subject_alt_names,
    ).toEqual([{ san_type: 'URI', matcher: { exact: 'spiffe://cluster.local/ns/default/sa/reviews' } }]);
    const grpc = r.get(TYPE_URLS.cluster)!.get('outbound|9082||ratings.default.svc.cluster.local') as any;
    expect(
      grpc.typed_extension_protocol_options['envoy.extensions.upstreams.http.v3.HttpProtocolOptions']
        .explicit_http_config,
    ).toEqual({
      http2_protocol_options: {},
    });
    const cla = r.get(TYPE_URLS.clusterLoadAssignment)!.get('outbound|9081||reviews.default.svc.cluster.local') as any;
    expect(cla.endpoints[0].lb_endpoints.map((e: any) => e.endpoint.address.socket_address)).toEqual([
      { address: '127.0.0.11', port_value: 15006 },
      { address: '127.0.0.12', port_value: 15006 },
    ]);
  });

  it('builds the inbound listener with required client certs, RBAC from the rules and a STATIC app cluster', () => {
    const r = all('reviews-v1');
    const inbound = r.get(TYPE_URLS.listener)!.get('inbound_127.0.0.11_15006') as any;
    const chain = inbound.filter_chains[0];
    expect(chain.transport_socket.typed_config.require_client_certificate).toBe(true);
    const hcm = chain.filters[0].typed_config;
    expect(hcm.http_filters.map((f: any) => f.name)).toEqual(['envoy.filters.http.rbac', 'envoy.filters.http.router']);
    expect(hcm.http_filters[0].typed_config.rules).toEqual({
      action: 'ALLOW',
      policies: {
        'ns[default]-policy[reviews-from-productpage]': {
          permissions: [{ any: true }],
          principals: [
            { authenticated: { principal_name: { exact: 'spiffe://cluster.local/ns/default/sa/productpage' } } },
          ],
        },
      },
    });
    const app = r.get(TYPE_URLS.cluster)!.get('inbound|19081||') as any;
    expect(app.type).toBe('STATIC');
    expect(app.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address).toEqual({
      address: '127.0.0.11',
      port_value: 19081,
    });
    // DENY with paths on productpage; network RBAC on the tcp db.
    const pp = all('productpage-v1').get(TYPE_URLS.listener)!.get('inbound_127.0.0.10_15006') as any;
    const ppRbac = pp.filter_chains[0].filters[0].typed_config.http_filters[0].typed_config.rules;
    expect(ppRbac.action).toBe('DENY');
    expect(Object.values(ppRbac.policies)[0]).toEqual({
      permissions: [{ or_rules: { rules: [{ url_path: { path: { prefix: '/admin' } } }] } }],
      principals: [{ any: true }],
    });
    const db = all('db-v1').get(TYPE_URLS.listener)!.get('inbound_127.0.0.14_15006') as any;
    expect(db.filter_chains[0].filters.map((f: any) => f.name)).toEqual([
      'envoy.filters.network.rbac',
      'envoy.filters.network.tcp_proxy',
    ]);
  });

  it('is deterministic (content-hash versioning relies on it)', () => {
    expect(JSON.stringify([...all('reviews-v2').get(TYPE_URLS.listener)!])).toBe(
      JSON.stringify([...all('reviews-v2').get(TYPE_URLS.listener)!]),
    );
  });

  it('encodes every generated resource through the real Envoy protos and back', () => {
    for (const w of mesh.workloads) {
      const r = generateForWorkload(mesh, w);
      r.set(TYPE_URLS.secret, secretResources({ certChainPem: 'CHAIN', privateKeyPem: 'KEY' }, 'ROOT'));
      for (const [typeUrl, byName] of r) {
        for (const [name, json] of byName) {
          const any = jsonToAny(json);
          expect(any.type_url).toBe(typeUrl);
          const back = anyToJson(any) as Record<string, unknown>;
          expect(back.name ?? back.cluster_name).toBe(name);
        }
      }
    }
  });

  it('splits tcp services by version with a weighted tcp_proxy', () => {
    const { mesh: m, warnings } = parseMeshOrThrow(`
services:
  - { name: db, ports: [{ port: 5432, protocol: tcp, target_port: 15432 }] }
workloads:
  - { name: db-1, service: db, version: v1, address: "127.0.0.21:15432" }
  - { name: db-2, service: db, version: v2, address: "127.0.0.22:15432" }
  - { name: app, service: db, version: v1, address: "127.0.0.23:15432" }
traffic:
  - { service: db, splits: [{ version: v1, weight: 3 }, { version: v2, weight: 1 }], timeout: 1s }
`);
    expect(warnings.map((x) => x.path)).toEqual(['traffic[0].timeout']);
    const r = generateForWorkload(m, m.workloads[2]!);
    const l = r.get(TYPE_URLS.listener)!.get('127.0.0.23_5432') as any;
    expect(l.filter_chains[0].filters[0].typed_config.weighted_clusters.clusters).toEqual([
      { name: 'outbound|5432|v1|db.default.svc.cluster.local', weight: 3 },
      { name: 'outbound|5432|v2|db.default.svc.cluster.local', weight: 1 },
    ]);
    expect(anyToJson(jsonToAny(l))).toMatchObject({ name: '127.0.0.23_5432' });
  });
});
