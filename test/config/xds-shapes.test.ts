/**
 * xDS-shaped input: what the xDS client produces from protobuf resources (real Envoy protos
 * encoded and decoded through xds-client's proto-json), Durations as {seconds, nanos}, enums by
 * number, camelCase keys — all must decode to the same config as the YAML-style input.
 */
import { describe, expect, it } from 'vitest';
import {
  decodeCluster,
  decodeClusterLoadAssignment,
  decodeListener,
  decodeRouteConfiguration,
  decodeSecret,
} from '../../proxy/config/envoy';
import { decodeResourceJson, jsonToMessage } from '../../xds-client/proto-json';
import { ctx, hcm, listener, staticCluster, TYPE_PREFIX } from './helpers';

function viaProtobuf(typeName: string, json: unknown): unknown {
  const bytes = jsonToMessage(typeName, json);
  return decodeResourceJson(`${TYPE_PREFIX}${typeName}`, bytes);
}

function camelKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(camelKeys);
  if (v && typeof v === 'object') {
    return Object.fromEntries(
      Object.entries(v).map(([k, x]) => [
        k.startsWith('@') ? k : k.replace(/_([a-z0-9])/g, (_m, c: string) => c.toUpperCase()),
        k === 'typed_per_filter_config' ? x : camelKeys(x),
      ]),
    );
  }
  return v;
}

const richRoute = {
  name: 'outbound|9080',
  virtual_hosts: [
    {
      name: 'reviews',
      domains: ['reviews', 'reviews.default.svc.cluster.local:9080'],
      routes: [
        {
          match: { prefix: '/', headers: [{ name: 'end-user', string_match: { exact: 'jason' } }] },
          route: {
            weighted_clusters: {
              clusters: [
                { name: 'v2', weight: 80 },
                { name: 'v3', weight: 20 },
              ],
            },
            timeout: '0s',
            retry_policy: {
              retry_on: 'connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes',
              num_retries: 2,
              per_try_timeout: '1.500s',
            },
          },
        },
        {
          match: { safe_regex: { regex: '/api/v[0-9]+' } },
          direct_response: { status: 403, body: { inline_string: 'denied' } },
        },
      ],
    },
  ],
};

describe('xDS-shaped input decodes like YAML-shaped input', () => {
  it('Listener through the real Envoy protos', () => {
    const raw = listener(
      { listener_filters_timeout: '2.5s', traffic_direction: 'OUTBOUND' },
      { stream_idle_timeout: '0s', route_config: richRoute },
    );
    const direct = decodeListener(raw, ctx());
    const fromProto = decodeListener(viaProtobuf('envoy.config.listener.v3.Listener', raw), ctx());
    expect(direct.errors).toEqual([]);
    expect(fromProto.errors).toEqual([]);
    expect(fromProto.warnings).toEqual([]);
    expect(fromProto.value).toEqual(direct.value);
  });

  it('RouteConfiguration, Cluster, ClusterLoadAssignment and Secret through the real protos', () => {
    const cluster = staticCluster('c', {
      lb_policy: 'LEAST_REQUEST',
      circuit_breakers: { thresholds: [{ max_connections: 10, retry_budget: { budget_percent: { value: 30 } } }] },
      outlier_detection: { consecutive_5xx: 2, base_ejection_time: '15s' },
      health_checks: [
        {
          timeout: '1s',
          interval: '2s',
          unhealthy_threshold: 2,
          healthy_threshold: 1,
          http_health_check: { path: '/ready' },
        },
      ],
      common_lb_config: { healthy_panic_threshold: { value: 25 } },
    });
    const cla = {
      cluster_name: 'c',
      endpoints: [
        {
          locality: { zone: 'z1' },
          lb_endpoints: [
            {
              endpoint: { address: { socket_address: { address: '10.1.1.1', port_value: 80 } } },
              load_balancing_weight: 2,
            },
          ],
        },
      ],
    };
    const secret = {
      name: 'default',
      tls_certificate: { certificate_chain: { inline_string: 'CERT' }, private_key: { inline_string: 'KEY' } },
    };
    const cases: [string, unknown, (raw: unknown) => { value?: unknown; errors: unknown[]; warnings: unknown[] }][] = [
      ['envoy.config.route.v3.RouteConfiguration', richRoute, (r) => decodeRouteConfiguration(r, ctx())],
      ['envoy.config.cluster.v3.Cluster', cluster, (r) => decodeCluster(r, ctx())],
      ['envoy.config.endpoint.v3.ClusterLoadAssignment', cla, (r) => decodeClusterLoadAssignment(r, ctx())],
      ['envoy.extensions.transport_sockets.tls.v3.Secret', secret, (r) => decodeSecret(r, ctx())],
    ];
    for (const [type, raw, decode] of cases) {
      const direct = decode(raw);
      const fromProto = decode(viaProtobuf(type, raw));
      expect(direct.errors, type).toEqual([]);
      expect(fromProto.errors, type).toEqual([]);
      expect(fromProto.warnings, type).toEqual([]);
      expect(fromProto.value, type).toEqual(direct.value);
    }
  });

  it('Durations as {seconds, nanos} (and int64 seconds as strings) equal their string form', () => {
    const a = decodeListener(
      listener({ listener_filters_timeout: '1.5s' }, { stream_idle_timeout: '90s', request_timeout: '0.250s' }),
      ctx(),
    );
    const b = decodeListener(
      listener(
        { listener_filters_timeout: { seconds: 1, nanos: 500_000_000 } },
        { stream_idle_timeout: { seconds: '90' }, request_timeout: { nanos: 250_000_000 } },
      ),
      ctx(),
    );
    expect(b.errors).toEqual([]);
    expect(b.value).toEqual(a.value);
  });

  it('camelCase keys (proto3 JSON names) decode the same as snake_case', () => {
    const raw = listener(
      { per_connection_buffer_limit_bytes: 4096 },
      { use_remote_address: true, xff_num_trusted_hops: 1, route_config: richRoute },
    );
    const snake = decodeListener(raw, ctx());
    const camel = decodeListener(camelKeys(raw), ctx());
    expect(camel.errors).toEqual([]);
    expect(camel.warnings).toEqual([]);
    expect(camel.value).toEqual(snake.value);
  });

  it('enums by number decode as their names', () => {
    const byName = decodeCluster(
      staticCluster('c', { type: 'STATIC', lb_policy: 'MAGLEV', dns_lookup_family: 'V6_ONLY' }),
      ctx(),
    );
    const byNumber = decodeCluster(staticCluster('c', { type: 0, lb_policy: 5, dns_lookup_family: 2 }), ctx());
    expect(byNumber.errors).toEqual([]);
    expect(byNumber.value).toEqual(byName.value);
  });

  it('enum names are case-insensitive, as Envoy parses them', () => {
    const upper = decodeCluster(
      staticCluster('c', { type: 'STATIC', lb_policy: 'LEAST_REQUEST', dns_lookup_family: 'V4_ONLY' }),
      ctx(),
    );
    const lower = decodeCluster(
      staticCluster('c', { type: 'static', lb_policy: 'least_request', dns_lookup_family: 'v4_only' }),
      ctx(),
    );
    expect(lower.errors).toEqual([]);
    expect(lower.value).toEqual(upper.value);
    const l = decodeListener(
      listener({ traffic_direction: 'inbound' }, { codec_type: 'http1', forward_client_cert_details: 'sanitize_set' }),
      ctx(),
    );
    expect(l.errors).toEqual([]);
    expect(l.value!.trafficDirection).toBe('INBOUND');
    const f = l.value!.filterChains[0]!.filters[0]!;
    expect(f.kind === 'http_connection_manager' && [f.hcm.codecType, f.hcm.forwardClientCertDetails]).toEqual([
      'HTTP1',
      'SANITIZE_SET',
    ]);
  });

  it('an Any of a type missing from the proto Root is reported by type name', () => {
    const raw = listener({}, {});
    const h = hcm({
      http_filters: [
        { name: 'acme', typed_config: { '@type': `${TYPE_PREFIX}acme.filters.Secret`, value: 'AAAA' } },
        { name: 'r', typed_config: { '@type': `${TYPE_PREFIX}envoy.extensions.filters.http.router.v3.Router` } },
      ],
    });
    (raw.filter_chains as { filters: { typed_config: unknown }[] }[])[0]!.filters[0]!.typed_config = h;
    const res = decodeListener(raw, ctx());
    expect(res.errors).toEqual([
      {
        path: 'filter_chains[0].filters[0].typed_config.http_filters[0].typed_config.@type',
        message: 'unsupported HTTP filter type acme.filters.Secret',
      },
    ]);
  });
});

describe('decoding leaves the input alone', () => {
  it('does not freeze or share the caller’s objects', () => {
    const raw = staticCluster('c', { metadata: { filter_metadata: { istio: { labels: { app: 'a' } } } } });
    const { value } = decodeCluster(raw, ctx());
    const input = (raw.metadata as { filter_metadata: { istio: { labels: Record<string, string> } } }).filter_metadata
      .istio;
    expect(Object.isFrozen(input)).toBe(false);
    expect(Object.isFrozen(value!.metadata.istio)).toBe(true);
    input.labels.app = 'changed';
    expect(value!.metadata).toEqual({ istio: { labels: { app: 'a' } } });
  });
});
