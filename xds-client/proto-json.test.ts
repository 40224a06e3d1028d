import { describe, expect, it } from 'vitest';
import { ConfigError } from '../common/errors';
import {
  anyToJson,
  decodeResourceJson,
  jsonToAny,
  jsonToMessage,
  lookupType,
  messageToJson,
  toStructProto,
} from './proto-json';
import { adsServiceDefinition, protoLoadStats, resourceProtoRoot, TYPE_URLS } from './protos';

const HCM = 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager';
const ROUTER = 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router';
const DOWNSTREAM_TLS = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext';
const HTTP_OPTIONS = 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions';

const listener = {
  '@type': TYPE_URLS.listener,
  name: 'inbound_0.0.0.0_15006',
  address: { socket_address: { address: '0.0.0.0', port_value: 15006 } },
  listener_filters: [
    {
      name: 'envoy.filters.listener.tls_inspector',
      typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector' },
    },
  ],
  filter_chains: [
    {
      filter_chain_match: { transport_protocol: 'tls', application_protocols: ['istio-peer-exchange', 'h2'] },
      filters: [
        {
          name: 'envoy.filters.network.http_connection_manager',
          typed_config: {
            '@type': HCM,
            stat_prefix: 'inbound_http',
            codec_type: 'HTTP2',
            stream_idle_timeout: '300s',
            common_http_protocol_options: { idle_timeout: '1.5s', max_headers_count: 100 },
            route_config: {
              name: 'inbound|8080||',
              virtual_hosts: [
                {
                  name: 'inbound|http|8080',
                  domains: ['*'],
                  routes: [
                    {
                      match: { prefix: '/' },
                      route: {
                        cluster: 'inbound|8080||',
                        timeout: '0s',
                        max_stream_duration: { max_stream_duration: '0.25s' },
                      },
                      decorator: { operation: 'echo.default.svc.cluster.local:8080/*' },
                    },
                  ],
                },
              ],
              validate_clusters: false,
            },
            http_filters: [
              { name: 'envoy.filters.http.router', typed_config: { '@type': ROUTER, suppress_envoy_headers: true } },
            ],
            use_remote_address: false,
            forward_client_cert_details: 'APPEND_FORWARD',
          },
        },
      ],
      transport_socket: {
        name: 'envoy.transport_sockets.tls',
        typed_config: {
          '@type': DOWNSTREAM_TLS,
          common_tls_context: {
            alpn_protocols: ['h2', 'http/1.1'],
            tls_certificate_sds_secret_configs: [
              { name: 'default', sds_config: { ads: {}, resource_api_version: 'V3' } },
            ],
            combined_validation_context: {
              default_validation_context: {
                match_typed_subject_alt_names: [{ san_type: 'URI', matcher: { prefix: 'spiffe://cluster.local/' } }],
              },
              validation_context_sds_secret_config: {
                name: 'ROOTCA',
                sds_config: { ads: {}, resource_api_version: 'V3' },
              },
            },
          },
          require_client_certificate: true,
        },
      },
    },
  ],
  traffic_direction: 'INBOUND',
  continue_on_listener_filters_timeout: true,
  listener_filters_timeout: '0.1s',
};

const cluster = {
  '@type': TYPE_URLS.cluster,
  name: 'outbound|8080||echo.default.svc.cluster.local',
  type: 'EDS',
  eds_cluster_config: {
    eds_config: { ads: {}, initial_fetch_timeout: '0s', resource_api_version: 'V3' },
    service_name: 'outbound|8080||echo',
  },
  connect_timeout: '10s',
  lb_policy: 'LEAST_REQUEST',
  circuit_breakers: {
    thresholds: [
      {
        max_connections: 4294967295,
        max_pending_requests: 1024,
        max_requests: 4294967295,
        max_retries: 3,
        track_remaining: true,
      },
    ],
  },
  outlier_detection: { consecutive_5xx: 5, interval: '10s', base_ejection_time: '30s', max_ejection_percent: 100 },
  typed_extension_protocol_options: {
    'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
      '@type': HTTP_OPTIONS,
      common_http_protocol_options: { idle_timeout: '3600s', max_requests_per_connection: 1000 },
      use_downstream_protocol_config: {
        http_protocol_options: {},
        http2_protocol_options: { max_concurrent_streams: 1073741824 },
      },
    },
  },
  metadata: {
    filter_metadata: {
      istio: {
        services: [{ host: 'echo.default.svc.cluster.local', name: 'echo', namespace: 'default' }],
        weight: 1.5,
        on: true,
        none: null,
      },
    },
  },
  common_lb_config: { healthy_panic_threshold: { value: 50 }, locality_weighted_lb_config: {} },
  health_checks: [
    {
      timeout: '1s',
      interval: '5s',
      unhealthy_threshold: 2,
      healthy_threshold: 1,
      http_health_check: { path: '/healthz', expected_statuses: [{ start: 200, end: 300 }] },
    },
  ],
};

const cla = {
  '@type': TYPE_URLS.clusterLoadAssignment,
  cluster_name: 'outbound|8080||echo',
  endpoints: [
    {
      locality: { region: 'us-east1', zone: 'us-east1-b' },
      lb_endpoints: [
        {
          endpoint: {
            address: { socket_address: { address: '10.0.0.1', port_value: 8080 } },
            health_check_config: { port_value: 15021 },
          },
          health_status: 'HEALTHY',
          load_balancing_weight: 3,
        },
        {
          endpoint: { address: { socket_address: { address: '10.0.0.2', port_value: 8080 } } },
          health_status: 'DRAINING',
        },
      ],
      load_balancing_weight: 1,
      priority: 1,
    },
  ],
  policy: { overprovisioning_factor: 140, endpoint_stale_after: '30s' },
};

const secret = {
  '@type': TYPE_URLS.secret,
  name: 'default',
  tls_certificate: {
    certificate_chain: {
      inline_bytes: Buffer.from('-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n').toString('base64'),
    },
    private_key: { inline_string: '-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n' },
  },
};

describe('protos', () => {
  it('loads the ADS service and every resource type once, and reports load time', () => {
    const root = resourceProtoRoot();
    expect(resourceProtoRoot()).toBe(root);
    expect(Object.keys(adsServiceDefinition()).sort()).toEqual([
      'DeltaAggregatedResources',
      'StreamAggregatedResources',
    ]);
    for (const name of [
      'envoy.config.listener.v3.Listener',
      'envoy.extensions.filters.network.rbac.v3.RBAC',
      'envoy.extensions.filters.http.rbac.v3.RBAC',
      'envoy.extensions.filters.network.connection_limit.v3.ConnectionLimit',
      'envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit',
      'envoy.extensions.filters.http.fault.v3.HTTPFault',
      'envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication',
      'envoy.extensions.filters.http.ext_authz.v3.ExtAuthz',
      'envoy.extensions.filters.http.ratelimit.v3.RateLimit',
      'envoy.extensions.filters.http.lua.v3.Lua',
      'envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext',
      'envoy.extensions.access_loggers.file.v3.FileAccessLog',
      'envoy.extensions.access_loggers.stream.v3.StdoutAccessLog',
      'envoy.config.trace.v3.OpenTelemetryConfig',
      'envoy.extensions.filters.listener.http_inspector.v3.HttpInspector',
      'envoy.extensions.filters.listener.original_dst.v3.OriginalDst',
      'envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate',
      'envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy',
      'envoy.config.core.v3.HealthCheck',
      'envoy.config.bootstrap.v3.Bootstrap',
    ]) {
      expect(lookupType(name), name).not.toBeNull();
    }
    expect(protoLoadStats.rootMs).toBeGreaterThan(0);
  });
});

describe('proto3 JSON round trip on real Envoy shapes', () => {
  for (const [label, json] of [
    ['listener with HCM, router and a TLS transport socket', listener],
    ['cluster with EDS, circuit breakers and typed_extension_protocol_options', cluster],
    ['cluster load assignment', cla],
    ['secret', secret],
  ] as const) {
    it(label, () => {
      const any = jsonToAny(json);
      expect(any.type_url).toBe(json['@type']);
      expect(any.value.length).toBeGreaterThan(10);
      expect(anyToJson(any)).toEqual(json);
      const { '@type': _t, ...fields } = json;
      expect(decodeResourceJson(any.type_url, any.value)).toEqual(fields);
      // The bytes are the same when encoded without the Any wrapper.
      expect(jsonToMessage(json['@type'], fields).equals(any.value)).toBe(true);
    });
  }

  it('accepts lowerCamelCase names and emits the .proto names', () => {
    const any = jsonToAny({ '@type': TYPE_URLS.cluster, name: 'c', connectTimeout: '0.250s', lbPolicy: 'RANDOM' });
    expect(anyToJson(any)).toEqual({
      '@type': TYPE_URLS.cluster,
      name: 'c',
      connect_timeout: '0.25s',
      lb_policy: 'RANDOM',
    });
  });
});

describe('well-known types and edge cases', () => {
  it('formats durations, timestamps, wrappers, 64-bit ints and unknown Anys', () => {
    const c = anyToJson(
      jsonToAny({
        '@type': TYPE_URLS.cluster,
        name: 'c',
        connect_timeout: '1.000340012s',
        dns_refresh_rate: '0s',
        per_connection_buffer_limit_bytes: '4294967295',
        health_checks: [
          {
            timeout: '-1.5s',
            interval: '2s',
            http_health_check: { expected_statuses: [{ start: '9007199254740993', end: -2 }] },
          },
        ],
      }),
    );
    expect(c.connect_timeout).toBe('1.000340012s');
    expect(c.dns_refresh_rate).toBe('0s'); // a set message field is kept even when zero
    expect(c.per_connection_buffer_limit_bytes).toBe(4294967295); // UInt32Value -> plain number
    const hc = (c.health_checks as Array<{ timeout: string; http_health_check: { expected_statuses: unknown } }>)[0];
    expect(hc.timeout).toBe('-1.5s');
    expect(hc.http_health_check.expected_statuses).toEqual([{ start: '9007199254740993', end: -2 }]);

    const ts = anyToJson(
      jsonToAny({ '@type': 'type.googleapis.com/google.protobuf.Timestamp', value: '2024-01-02T03:04:05.120Z' }),
    );
    expect(ts).toEqual({ '@type': 'type.googleapis.com/google.protobuf.Timestamp', value: '2024-01-02T03:04:05.12Z' });
    const st = anyToJson(
      jsonToAny({ '@type': 'type.googleapis.com/google.protobuf.Struct', value: { a: [1, 'x', null, { b: true }] } }),
    );
    expect(st).toEqual({
      '@type': 'type.googleapis.com/google.protobuf.Struct',
      value: { a: [1, 'x', null, { b: true }] },
    });

    const unknown = {
      '@type': 'type.googleapis.com/example.v1.NotLoaded',
      value: Buffer.from([8, 1]).toString('base64'),
    };
    expect(anyToJson(jsonToAny(unknown))).toEqual(unknown);
  });

  it('omits enum and scalar defaults (proto3 JSON)', () => {
    const any = jsonToAny({
      '@type': HCM,
      stat_prefix: 'x',
      codec_type: 'AUTO',
      use_remote_address: false,
      generate_request_id: false,
    });
    // generate_request_id is a BoolValue: a set wrapper is kept even when false.
    expect(anyToJson(any)).toEqual({
      '@type': HCM,
      stat_prefix: 'x',
      use_remote_address: false,
      generate_request_id: false,
    });
  });

  it('keeps only the set member of a oneof and omits unset fields', () => {
    const type = resourceProtoRoot().lookupType('envoy.config.core.v3.DataSource');
    const bytes = jsonToMessage('envoy.config.core.v3.DataSource', { filename: '/etc/certs/root.pem' });
    expect(messageToJson(type, type.decode(bytes))).toEqual({ filename: '/etc/certs/root.pem' });
    expect(messageToJson(type, type.decode(jsonToMessage('envoy.config.core.v3.DataSource', {})))).toEqual({});
  });

  it('collects every bad field with its path', () => {
    let caught: unknown;
    try {
      jsonToAny({
        '@type': TYPE_URLS.listener,
        name: 7,
        address: { socket_address: { address: '0.0.0.0', port_value: -1, protocol: 'SCTP' } },
        filter_chains: [{ filters: [{ name: 'x', typed_config: { '@type': ROUTER, bogus: 1 } }] }],
        listener_filters_timeout: '5m',
        statPrefix: 'a',
        stat_prefix: 'b',
      });
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(ConfigError);
    const issues = (caught as ConfigError).issues.map((i) => i.path).sort();
    expect(issues).toEqual(
      [
        'name',
        'address.socket_address.port_value',
        'address.socket_address.protocol',
        'filter_chains[0].filters[0].typed_config.bogus',
        'listener_filters_timeout',
        'stat_prefix',
      ].sort(),
    );
    expect((caught as ConfigError).code).toBe('MESHLET_ERR_XDS_RESOURCE');
    expect(() => jsonToAny({ name: 'no type' })).toThrow(/@type/);
    expect(() => jsonToMessage('envoy.config.core.v3.DataSource', { filename: 'a', inline_string: 'b' })).toThrow(
      /oneof/,
    );
  });

  it('names the field path of an embedded Any whose bytes do not decode', () => {
    const Listener = resourceProtoRoot().lookupType('envoy.config.listener.v3.Listener');
    const bytes = Listener.encode({
      name: 'l',
      filter_chains: [
        { filters: [] },
        {
          filters: [
            { name: 'ok' },
            { name: 'hcm', typed_config: { type_url: HCM, value: Buffer.from([0x0a, 0xff, 0xff, 0xff]) } },
          ],
        },
      ],
    }).finish();
    let caught: unknown;
    try {
      decodeResourceJson(TYPE_URLS.listener, bytes);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(ConfigError);
    expect((caught as ConfigError).issues[0].path).toBe('filter_chains[1].filters[1].typed_config');
    expect(() => anyToJson({ type_url: TYPE_URLS.cluster, value: Buffer.from([0xff]) })).toThrow(ConfigError);
  });

  it('converts plain metadata to a Struct for proto-loader', () => {
    expect(toStructProto({ a: 'x', n: 1, l: [true, null], o: { k: 'v' } })).toEqual({
      fields: {
        a: { stringValue: 'x' },
        n: { numberValue: 1 },
        l: { listValue: { values: [{ boolValue: true }, { nullValue: 'NULL_VALUE' }] } },
        o: { structValue: { fields: { k: { stringValue: 'v' } } } },
      },
    });
  });

  describe('bytes and Any edges (an empty istio.stats PluginConfig made the walk throw)', () => {
    // A type meshlet has no descriptor for (stats.PluginConfig itself is known since Istio's
    // private types were added; the edge is about unknown ones).
    const PLUGIN = 'type.googleapis.com/example.vendor.UnknownPluginConfig';
    // Every shape a bytes value takes: absent, protobufjs's empty-array default (no Buffer found),
    // empty and non-empty Buffer / Uint8Array, a plain byte array, proto-loader's base64 string.
    const shapes: [string, unknown, string][] = [
      ['absent', undefined, ''],
      ['empty array', [], ''],
      ['empty Buffer', Buffer.alloc(0), ''],
      ['empty Uint8Array', new Uint8Array(0), ''],
      ['byte array', [0x30, 0x01], 'MAE='],
      ['Buffer', Buffer.from([0x30, 0x01]), 'MAE='],
      ['Uint8Array view', new Uint8Array([9, 0x30, 0x01]).subarray(1), 'MAE='],
      ['base64 string', 'MAE=', 'MAE='],
    ];
    for (const [label, value, b64] of shapes) {
      it(`unknown Any type, value ${label}`, () => {
        expect(anyToJson({ type_url: PLUGIN, value } as never)).toEqual({ '@type': PLUGIN, value: b64 });
      });
      it(`bytes field and BytesValue, value ${label}`, () => {
        const ds = lookupType('type.googleapis.com/envoy.config.core.v3.DataSource')!;
        // inline_bytes is a oneof member: set-but-empty is kept (explicit presence).
        expect(messageToJson(ds, { inline_bytes: value })).toEqual(value === undefined ? {} : { inline_bytes: b64 });
        const bv = lookupType('type.googleapis.com/google.protobuf.BytesValue')!;
        expect(messageToJson(bv, { value })).toBe(b64);
      });
    }
    it('known type with an empty or absent value decodes to its defaults', () => {
      for (const value of [undefined, [], Buffer.alloc(0)])
        expect(anyToJson({ type_url: ROUTER, value } as never)).toEqual({ '@type': ROUTER });
    });
    it('an Any with no type_url is empty; an Any nested in an unknown-typed Any stays bytes', () => {
      expect(anyToJson({ type_url: '', value: [] } as never)).toEqual({});
      expect(anyToJson({ value: Buffer.from([1]) } as never)).toEqual({});
    });
    it('a whole listener with an empty unknown-typed filter config decodes, from the wire and from objects', () => {
      const Listener = resourceProtoRoot().lookupType('envoy.config.listener.v3.Listener');
      const stats = { name: 'istio.stats', typed_config: { type_url: PLUGIN, value: Buffer.alloc(0) } };
      const bytes = Listener.encode({ name: 'l', filter_chains: [{ filters: [stats] }] }).finish();
      const want = { name: 'l', filter_chains: [{ filters: [{ name: 'istio.stats', typed_config: { '@type': PLUGIN, value: '' } }] }] };
      expect(decodeResourceJson(TYPE_URLS.listener, bytes)).toEqual(want);
      const asObject = { name: 'l', filter_chains: [{ filters: [{ name: 'istio.stats', typed_config: { type_url: PLUGIN, value: [] } }] }] };
      expect(messageToJson(Listener, asObject)).toEqual(want);
    });
  });
});
