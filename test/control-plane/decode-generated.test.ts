/**
 * What the control plane generates must be accepted by meshlet's own decoders, exactly as the
 * xDS client would see it (encoded to protobuf Any and decoded back to proto3 JSON).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { generateForWorkload, secretResources } from '../../control-plane/generate';
import { parseMeshOrThrow } from '../../control-plane/mesh';
import {
  decodeCluster,
  decodeClusterLoadAssignment,
  decodeListener,
  decodeRbac,
  decodeRouteConfiguration,
  decodeSecret,
} from '../../proxy/config/envoy/index';
import { createRegistries } from '../../proxy/registry';
import { anyToJson, jsonToAny } from '../../xds-client/proto-json';
import { TYPE_URLS } from '../../xds-client/protos';

const { mesh } = parseMeshOrThrow(readFileSync(join(__dirname, '../../control-plane/examples/bookinfo.yaml'), 'utf8'));

const DECODERS: Record<
  string,
  (raw: unknown, ctx: never) => { errors: unknown[]; warnings: unknown[]; value?: unknown }
> = {
  [TYPE_URLS.listener]: decodeListener as never,
  [TYPE_URLS.routeConfiguration]: decodeRouteConfiguration as never,
  [TYPE_URLS.cluster]: decodeCluster as never,
  [TYPE_URLS.clusterLoadAssignment]: decodeClusterLoadAssignment as never,
  [TYPE_URLS.secret]: decodeSecret as never,
};

describe('generated resources decode cleanly through proxy/config/envoy', () => {
  const httpFilters = createRegistries().httpFilters;
  const RBAC = 'envoy.extensions.filters.http.rbac.v3.RBAC';
  if (!httpFilters.get(RBAC)) {
    // Until the HTTP RBAC filter is registered in proxy/registry.ts: decode its config with the real
    // RBAC decoder; this test never builds a filter chain, so create() is never reached.
    httpFilters.register({
      typeName: RBAC,
      decode: (r) => decodeRbac(r, ctx, { statPrefixKey: 'rules_stat_prefix' }),
      create: () => {
        throw new Error('decode-only registration');
      },
    });
  }
  const ctx = { httpFilters } as never;
  const tcpSplitMesh = parseMeshOrThrow(`
services:
  - { name: db, ports: [{ port: 5432, protocol: tcp, target_port: 15432 }] }
  - { name: api, ports: [{ port: 8080, protocol: http2, target_port: 18080 }, { port: 8081, protocol: grpc, target_port: 18081 }] }
workloads:
  - { name: db-1, service: db, version: v1, address: "127.0.0.21:15432" }
  - { name: db-2, service: db, version: v2, address: "127.0.0.22:15432" }
  - { name: api-1, service: api, addresses: ["127.0.0.23:18080", "127.0.0.23:18081"] }
traffic:
  - { service: db, splits: [{ version: v1, weight: 3 }, { version: v2, weight: 1 }] }
authorization:
  - { service: db, action: DENY, from: [{ namespace: other }] }
  - { service: api, action: ALLOW, from: [{ namespace: default }], paths: [/x] }
`).mesh;
  const cases = [
    ...mesh.workloads.map((w) => ({ m: mesh, w, label: w.name })),
    ...tcpSplitMesh.workloads.map((w) => ({ m: tcpSplitMesh, w, label: `${w.name} (tcp splits, multi-port)` })),
  ];
  for (const { m, w, label } of cases) {
    it(`workload ${label}`, () => {
      const all = generateForWorkload(m, w);
      all.set(TYPE_URLS.secret, secretResources({ certChainPem: 'CHAIN', privateKeyPem: 'KEY' }, 'ROOT'));
      const problems: string[] = [];
      let count = 0;
      for (const [typeUrl, byName] of all) {
        for (const [name, json] of byName) {
          const wire = anyToJson(jsonToAny(json));
          const { '@type': _t, ...raw } = wire as Record<string, unknown>;
          const r = DECODERS[typeUrl]!(raw, ctx);
          for (const e of r.errors) problems.push(`${name}: error ${JSON.stringify(e)}`);
          for (const x of r.warnings) problems.push(`${name}: warning ${JSON.stringify(x)}`);
          if (r.errors.length === 0) expect(r.value).toBeDefined();
          count++;
        }
      }
      expect(count).toBeGreaterThan(10);
      expect(problems).toEqual([]);
    });
  }
});
