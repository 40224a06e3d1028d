/**
 * Fuzzing the xDS resource pipeline the way a hostile control plane would drive it: for every
 * resource type (Listener, RouteConfiguration, Cluster, ClusterLoadAssignment, Secret),
 *  - random proto3 JSON, and realistic resources with random subtrees replaced or removed, go
 *    through the real encoder (which may refuse with ConfigError only) and then the real parser
 *    and decoder: never a throw, always either a value or issues with a path and a message;
 *  - the wire bytes of valid resources with random byte flips, truncations and insertions: the
 *    parser never throws, and anything it accepts has a name;
 *  - decoders called directly on arbitrary JSON never throw.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  decodeCluster,
  decodeClusterLoadAssignment,
  decodeListener,
  decodeRouteConfiguration,
  decodeSecret,
} from '../../proxy/config/envoy';
import { ConfigError } from '../../common/errors';
import { createRegistries } from '../../proxy/registry';
import { parseResource } from '../../xds-client/parser';
import { jsonToAny } from '../../xds-client/proto-json';
import { TYPE_URLS } from '../../xds-client/protos';
import type { ResourceTypeDef } from '../../xds-client/resource-types';
import { params, timeoutFor } from './params';

const ctx = { httpFilters: createRegistries().httpFilters };
const HCM = 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager';
const ROUTER = 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router';
const DTLS = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext';
const UTLS = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext';

type Def = ResourceTypeDef<unknown>;
const def = (typeUrl: string, decode: (j: unknown) => ReturnType<Def['decode']>, wildcard: boolean): Def => ({
  typeUrl,
  wildcard,
  decode,
  name: (v) => String((v as { name?: string; clusterName?: string }).name ?? (v as { clusterName?: string }).clusterName),
});

const routeConfig = {
  name: 'r1',
  virtual_hosts: [
    {
      name: 'vh',
      domains: ['*', 'a.example.com'],
      routes: [
        { match: { prefix: '/api', headers: [{ name: 'x-v', string_match: { exact: '2' } }] }, route: { cluster: 'c2', timeout: '2s', retry_policy: { retry_on: '5xx', num_retries: 2 } } },
        { match: { path: '/exact', case_sensitive: false }, route: { weighted_clusters: { clusters: [{ name: 'c1', weight: 30 }, { name: 'c2', weight: 70 }] } } },
        { match: { safe_regex: { regex: '/r/[0-9]+' } }, direct_response: { status: 204 } },
        { match: { prefix: '/' }, route: { cluster: 'c1', hash_policy: [{ header: { header_name: 'x-user' } }] } },
      ],
    },
  ],
};

/** Realistic seeds per type: the fuzz mutates these. */
const SEEDS: [Def, Record<string, unknown>][] = [
  [
    def(TYPE_URLS.listener, (j) => decodeListener(j, ctx), true),
    {
      name: 'l1',
      address: { socket_address: { address: '127.0.0.1', port_value: 15006 } },
      listener_filters: [{ name: 'envoy.filters.listener.tls_inspector', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector' } }],
      filter_chains: [
        {
          filter_chain_match: { destination_port: 8080, transport_protocol: 'tls' },
          transport_socket: {
            name: 'envoy.transport_sockets.tls',
            typed_config: { '@type': DTLS, require_client_certificate: true, common_tls_context: { tls_certificate_sds_secret_configs: [{ name: 'default' }], validation_context_sds_secret_config: { name: 'ROOTCA' } } },
          },
          filters: [
            {
              name: 'envoy.filters.network.http_connection_manager',
              typed_config: {
                '@type': HCM,
                stat_prefix: 'in',
                route_config: routeConfig,
                stream_idle_timeout: '30s',
                common_http_protocol_options: { idle_timeout: '60s', max_headers_count: 50 },
                http2_protocol_options: { max_concurrent_streams: 10 },
                http_filters: [{ name: 'envoy.filters.http.router', typed_config: { '@type': ROUTER } }],
              },
            },
          ],
        },
      ],
    },
  ],
  [def(TYPE_URLS.routeConfiguration, (j) => decodeRouteConfiguration(j, ctx), false), routeConfig],
  [
    def(TYPE_URLS.cluster, (j) => decodeCluster(j, ctx), true),
    {
      name: 'c1',
      type: 'EDS',
      connect_timeout: '1s',
      lb_policy: 'LEAST_REQUEST',
      eds_cluster_config: { eds_config: { ads: {}, resource_api_version: 'V3' } },
      circuit_breakers: { thresholds: [{ max_connections: 10, max_pending_requests: 5, max_retries: 2 }] },
      outlier_detection: { consecutive_5xx: 3, interval: '5s', base_ejection_time: '30s' },
      health_checks: [{ timeout: '1s', interval: '5s', unhealthy_threshold: 2, healthy_threshold: 1, http_health_check: { path: '/healthz' } }],
      transport_socket: {
        name: 'envoy.transport_sockets.tls',
        typed_config: { '@type': UTLS, sni: 'c1.svc', common_tls_context: { tls_certificate_sds_secret_configs: [{ name: 'default' }] } },
      },
    },
  ],
  [
    def(TYPE_URLS.clusterLoadAssignment, (j) => decodeClusterLoadAssignment(j, ctx), false),
    {
      cluster_name: 'c1',
      endpoints: [
        { locality: { zone: 'z1' }, priority: 0, lb_endpoints: [{ endpoint: { address: { socket_address: { address: '10.0.0.1', port_value: 80 } } }, load_balancing_weight: 3, health_status: 'HEALTHY' }] },
        { priority: 1, lb_endpoints: [{ endpoint: { address: { socket_address: { address: '10.0.0.2', port_value: 80 } } } }] },
      ],
      policy: { overprovisioning_factor: 140 },
    },
  ],
  [
    def(TYPE_URLS.secret, (j) => decodeSecret(j, ctx), false),
    { name: 'ROOTCA', validation_context: { trusted_ca: { inline_string: '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n' } } },
  ],
];

/** Every (parent, key) slot of a JSON tree. */
function slots(v: unknown, out: [Record<string, unknown> | unknown[], string | number][] = []): typeof out {
  if (Array.isArray(v))
    v.forEach((x, i) => {
      out.push([v, i]);
      slots(x, out);
    });
  else if (v !== null && typeof v === 'object')
    for (const [k, x] of Object.entries(v)) {
      out.push([v as Record<string, unknown>, k]);
      slots(x, out);
    }
  return out;
}

type Edit = { pick: number; op: 'replace' | 'delete'; value: unknown };
const edit: fc.Arbitrary<Edit> = fc.record({
  pick: fc.nat(),
  op: fc.constantFrom<'replace' | 'delete'>('replace', 'replace', 'delete'),
  value: fc.oneof(
    fc.jsonValue({ maxDepth: 3 }),
    fc.constantFrom(-1, 0, 2 ** 32, 1e300, '', '-1s', '99999999999s', 'NaN', 'x'.repeat(300), [], {}, null, true, '\u0000'),
  ),
});

function mutate(seed: unknown, edits: Edit[]): unknown {
  const copy = structuredClone(seed);
  for (const e of edits) {
    const all = slots(copy);
    if (all.length === 0) break;
    const [parent, key] = all[e.pick % all.length]!;
    if (e.op === 'delete' && !Array.isArray(parent)) delete (parent as Record<string, unknown>)[key as string];
    else (parent as Record<string | number, unknown>)[key] = e.value;
  }
  return copy;
}

function checkParsed(d: Def, any: { type_url: string; value: Buffer }): void {
  const p = parseResource(d, 0, any, () => undefined);
  if (p.issues.length > 0) {
    for (const i of p.issues) {
      expect(typeof i.path).toBe('string');
      expect(i.message.length).toBeGreaterThan(0);
    }
    expect(p.value).toBeUndefined();
  } else {
    expect(p.value).toBeDefined();
    expect(typeof p.name).toBe('string');
  }
}

describe('xDS decoders fuzzing', () => {
  for (const [d, seed] of SEEDS) {
    const short = d.typeUrl.slice(d.typeUrl.lastIndexOf('.') + 1);

    it(
      `${short}: the seed itself is valid (the fuzz starts from accepted config)`,
      () => {
        const r = d.decode(seed);
        expect(r.errors).toEqual([]);
        checkParsed(d, jsonToAny({ '@type': d.typeUrl, ...seed }));
      },
    );

    it(
      `${short}: mutated resources → encoder refuses with ConfigError or parser/decoder report issues, never a throw`,
      () => {
        fc.assert(
          fc.property(fc.array(edit, { minLength: 1, maxLength: 4 }), (edits) => {
            const json = mutate(seed, edits) as Record<string, unknown>;
            // Direct decoder call on the mutated JSON.
            const direct = d.decode(json);
            expect(Array.isArray(direct.errors)).toBe(true);
            let any: { type_url: string; value: Buffer };
            try {
              any = jsonToAny({ ...json, '@type': d.typeUrl });
            } catch (err) {
              expect(err).toBeInstanceOf(ConfigError);
              return;
            }
            checkParsed(d, any);
          }),
          params(),
        );
      },
      timeoutFor(),
    );

    it(
      `${short}: corrupted wire bytes never make the parser throw`,
      () => {
        const good = jsonToAny({ '@type': d.typeUrl, ...seed }).value;
        fc.assert(
          fc.property(
            fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 }), fc.constantFrom('flip', 'set', 'insert', 'cut')), { minLength: 1, maxLength: 6 }),
            (ops) => {
              let b = Buffer.from(good);
              for (const [at, v, op] of ops) {
                const i = b.length === 0 ? 0 : at % b.length;
                if (op === 'flip' && b.length > 0) b[i]! ^= 1 << (v % 8);
                else if (op === 'set' && b.length > 0) b[i] = v;
                else if (op === 'insert') b = Buffer.concat([b.subarray(0, i), Buffer.from([v]), b.subarray(i)]);
                else b = b.subarray(0, i);
              }
              checkParsed(d, { type_url: d.typeUrl, value: b });
            },
          ),
          params(),
        );
      },
      timeoutFor(),
    );

    it(
      `${short}: arbitrary JSON straight into the decoder never throws`,
      () => {
        fc.assert(
          fc.property(fc.jsonValue({ maxDepth: 5 }), (raw) => {
            const r = d.decode(raw);
            expect(r.value !== undefined || r.errors.length > 0).toBe(true);
          }),
          params(),
        );
      },
      timeoutFor(),
    );
  }
});
