import { describe, expect, it } from 'vitest';
import { decodeCluster } from '../../proxy/config/envoy';
import type { ClusterConfig } from '../../proxy/config/types';
import { ctx, staticCluster, TYPE_PREFIX } from './helpers';

const HPO = 'envoy.extensions.upstreams.http.v3.HttpProtocolOptions';
const UP_TLS = `${TYPE_PREFIX}envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext`;

function ep(address: string, port = 80, extra: Record<string, unknown> = {}) {
  return { endpoint: { address: { socket_address: { address, port_value: port } } }, ...extra };
}

describe('decodeCluster', () => {
  it('applies Envoy defaults', () => {
    const { value, errors, warnings } = decodeCluster(staticCluster('c', { connect_timeout: undefined }), ctx());
    expect(errors).toEqual([]);
    expect(warnings).toEqual([]);
    expect(value).toMatchObject<Partial<ClusterConfig>>({
      name: 'c',
      type: 'STATIC',
      connectTimeoutMs: 5000,
      lbPolicy: 'ROUND_ROBIN',
      lbConfig: {},
      circuitBreakers: [],
      upstreamProtocol: 'http1',
      http2: { maxConcurrentStreams: 100, initialStreamWindowSize: 268435456, initialConnectionWindowSize: 268435456 },
      upstreamIdleTimeoutMs: 3_600_000,
      maxRequestsPerConnection: 0,
      healthChecks: [],
      dnsLookupFamily: 'AUTO',
      dnsRefreshRateMs: 5000,
      respectDnsTtl: false,
      healthyPanicThresholdPercent: 50,
      cleanupIntervalMs: 5000,
      perConnectionBufferLimitBytes: 1_048_576,
      metadata: {},
    });
    expect(value!.loadAssignment).toEqual({
      clusterName: 'c',
      overprovisioningFactor: 140,
      endpoints: [
        {
          priority: 0,
          lbEndpoints: [
            {
              address: { kind: 'socket', host: '127.0.0.1', port: 9000 },
              hostname: '',
              healthStatus: 'UNKNOWN',
              weight: 1,
              metadata: {},
            },
          ],
        },
      ],
    });
  });

  it('decodes every supported field', () => {
    const raw = {
      name: 'outbound|8080||reviews.default.svc.cluster.local',
      type: 'EDS',
      eds_cluster_config: {
        service_name: 'reviews',
        eds_config: { ads: {}, initial_fetch_timeout: '0s', resource_api_version: 'V3' },
      },
      connect_timeout: '10s',
      lb_policy: 'RING_HASH',
      ring_hash_lb_config: { minimum_ring_size: 2048, maximum_ring_size: 4096, hash_function: 'MURMUR_HASH_2' },
      circuit_breakers: {
        thresholds: [
          {
            max_connections: 100,
            max_pending_requests: 10,
            max_requests: 1000,
            max_retries: 5,
            retry_budget: { budget_percent: { value: 25 }, min_retry_concurrency: 2 },
          },
          { priority: 'HIGH', max_connections: 5 },
        ],
      },
      typed_extension_protocol_options: {
        [HPO]: {
          '@type': `${TYPE_PREFIX}${HPO}`,
          use_downstream_protocol_config: { http2_protocol_options: { max_concurrent_streams: 50 } },
          common_http_protocol_options: { idle_timeout: '30s', max_requests_per_connection: 100 },
        },
      },
      transport_socket: {
        name: 'envoy.transport_sockets.tls',
        typed_config: {
          '@type': UP_TLS,
          sni: 'outbound_.8080_._.reviews.default.svc.cluster.local',
          common_tls_context: {
            alpn_protocols: ['istio-peer-exchange', 'istio'],
            tls_params: {
              tls_minimum_protocol_version: 'TLSv1_2',
              tls_maximum_protocol_version: 'TLSv1_3',
              cipher_suites: ['ECDHE-ECDSA-AES256-GCM-SHA384'],
            },
            tls_certificate_sds_secret_configs: [{ name: 'default', sds_config: { ads: {} } }],
            combined_validation_context: {
              default_validation_context: {
                match_typed_subject_alt_names: [
                  { san_type: 'URI', matcher: { exact: 'spiffe://cluster.local/ns/default/sa/reviews' } },
                ],
              },
              validation_context_sds_secret_config: { name: 'ROOTCA', sds_config: { ads: {} } },
            },
          },
        },
      },
      health_checks: [
        {
          timeout: '1s',
          interval: '5s',
          unhealthy_threshold: 3,
          healthy_threshold: 2,
          http_health_check: {
            path: '/healthz',
            expected_statuses: [{ start: 200, end: 300 }],
            codec_client_type: 'HTTP2',
          },
        },
        {
          timeout: '1s',
          interval: '5s',
          unhealthy_threshold: 1,
          healthy_threshold: 1,
          tcp_health_check: {
            send: { text: '50494e47' },
            receive: [{ binary: Buffer.from('PONG').toString('base64') }],
          },
        },
        {
          timeout: '1s',
          interval: '5s',
          interval_jitter: '1s',
          unhealthy_threshold: 1,
          healthy_threshold: 1,
          no_traffic_interval: '10s',
          unhealthy_interval: '2s',
          grpc_health_check: { service_name: 'reviews', authority: 'reviews' },
        },
      ],
      outlier_detection: { consecutive_5xx: 3, interval: '1s', base_ejection_time: '10s', max_ejection_percent: 50 },
      dns_lookup_family: 'V4_ONLY',
      respect_dns_ttl: true,
      common_lb_config: { healthy_panic_threshold: { value: 0 } },
      cleanup_interval: '60s',
      per_connection_buffer_limit_bytes: 32768,
      metadata: { filter_metadata: { istio: { services: [{ name: 'reviews' }] } } },
    };
    const { value, errors, warnings } = decodeCluster(raw, ctx());
    expect(errors).toEqual([]);
    expect(warnings).toEqual([]);
    expect(value).toMatchObject({
      type: 'EDS',
      edsServiceName: 'reviews',
      edsConfigSource: { kind: 'ads' },
      connectTimeoutMs: 10_000,
      lbPolicy: 'RING_HASH',
      lbConfig: { ringHash: { minRingSize: 2048, maxRingSize: 4096, hashFunction: 'MURMUR_HASH_2' } },
      circuitBreakers: [
        {
          priority: 'DEFAULT',
          maxConnections: 100,
          maxPendingRequests: 10,
          maxRequests: 1000,
          maxRetries: 5,
          retryBudget: { budgetPercent: 25, minRetryConcurrency: 2 },
        },
        { priority: 'HIGH', maxConnections: 5, maxPendingRequests: 1024, maxRequests: 1024, maxRetries: 3 },
      ],
      upstreamProtocol: 'downstream',
      http2: { maxConcurrentStreams: 50 },
      upstreamIdleTimeoutMs: 30_000,
      maxRequestsPerConnection: 100,
      transportSocket: {
        kind: 'upstream_tls',
        sni: 'outbound_.8080_._.reviews.default.svc.cluster.local',
        allowRenegotiation: false,
        common: {
          alpnProtocols: ['istio-peer-exchange', 'istio'],
          tlsMinimumProtocolVersion: 'TLSv1_2',
          tlsMaximumProtocolVersion: 'TLSv1_3',
          cipherSuites: ['ECDHE-ECDSA-AES256-GCM-SHA384'],
          tlsCertificateSdsSecretConfigs: [{ name: 'default', sdsConfig: { kind: 'ads' } }],
          validationContextSdsSecretConfig: { name: 'ROOTCA', sdsConfig: { kind: 'ads' } },
          combinedDefaultValidationContext: {
            matchTypedSubjectAltNames: [
              {
                sanType: 'URI',
                matcher: { kind: 'exact', value: 'spiffe://cluster.local/ns/default/sa/reviews', ignoreCase: false },
              },
            ],
            onlyVerifyLeafCertCrl: false,
          },
        },
      },
      outlierDetection: {
        consecutive5xx: 3,
        consecutiveGatewayFailure: 5,
        intervalMs: 1000,
        baseEjectionTimeMs: 10_000,
        maxEjectionTimeMs: 300_000,
        maxEjectionPercent: 50,
        enforcingConsecutive5xx: 100,
        enforcingConsecutiveGatewayFailure: 0,
        enforcingSuccessRate: 100,
        successRateMinimumHosts: 5,
        successRateRequestVolume: 100,
        successRateStdevFactor: 1900,
        splitExternalLocalOriginErrors: false,
      },
      dnsLookupFamily: 'V4_ONLY',
      respectDnsTtl: true,
      healthyPanicThresholdPercent: 0,
      cleanupIntervalMs: 60_000,
      perConnectionBufferLimitBytes: 32768,
      metadata: { istio: { services: [{ name: 'reviews' }] } },
    });
    const [http, tcp, grpc] = value!.healthChecks;
    expect(http).toEqual({
      timeoutMs: 1000,
      intervalMs: 5000,
      intervalJitterMs: 0,
      intervalJitterPercent: 0,
      unhealthyThreshold: 3,
      healthyThreshold: 2,
      noTrafficIntervalMs: 60_000,
      check: { kind: 'http', host: '', path: '/healthz', expectedStatuses: [{ start: 200, end: 300 }], useHttp2: true },
    });
    expect(tcp!.check).toEqual({ kind: 'tcp', send: Buffer.from('PING'), receive: [Buffer.from('PONG')] });
    expect(grpc).toMatchObject({
      intervalJitterMs: 1000,
      noTrafficIntervalMs: 10_000,
      unhealthyIntervalMs: 2000,
      check: { kind: 'grpc', serviceName: 'reviews', authority: 'reviews' },
    });
  });

  it('decodes lb configs and meshlet PEAK_EWMA', () => {
    expect(
      decodeCluster(
        staticCluster('c', { lb_policy: 'LEAST_REQUEST', least_request_lb_config: { choice_count: 3 } }),
        ctx(),
      ).value!.lbConfig,
    ).toEqual({
      leastRequest: { choiceCount: 3 },
    });
    expect(decodeCluster(staticCluster('c', { lb_policy: 'MAGLEV' }), ctx()).value!.lbConfig).toEqual({
      maglev: { tableSize: 65537 },
    });
    expect(decodeCluster(staticCluster('c', { lb_policy: 'RING_HASH' }), ctx()).value!.lbConfig).toEqual({
      ringHash: { minRingSize: 1024, maxRingSize: 8388608, hashFunction: 'XX_HASH' },
    });
    expect(decodeCluster(staticCluster('c', { lb_policy: 'PEAK_EWMA' }), ctx()).value!).toMatchObject({
      lbPolicy: 'PEAK_EWMA',
      lbConfig: { peakEwma: { decayMs: 10_000, defaultRttMs: 30 } },
    });
    expect(decodeCluster(staticCluster('c', { lb_policy: 3 }), ctx()).value!.lbPolicy).toBe('RANDOM');
  });

  it('selects the upstream protocol from explicit config or the legacy fields', () => {
    const explicit1 = {
      [HPO]: { '@type': `${TYPE_PREFIX}${HPO}`, explicit_http_config: { http_protocol_options: {} } },
    };
    expect(
      decodeCluster(staticCluster('c', { typed_extension_protocol_options: explicit1 }), ctx()).value!.upstreamProtocol,
    ).toBe('http1');
    const legacy = decodeCluster(
      staticCluster('c', { http2_protocol_options: { max_concurrent_streams: 7 }, max_requests_per_connection: 9 }),
      ctx(),
    ).value!;
    expect([legacy.upstreamProtocol, legacy.http2.maxConcurrentStreams, legacy.maxRequestsPerConnection]).toEqual([
      'http2',
      7,
      9,
    ]);
    expect(
      decodeCluster(staticCluster('c', { protocol_selection: 'USE_DOWNSTREAM_PROTOCOL' }), ctx()).value!
        .upstreamProtocol,
    ).toBe('downstream');
  });

  it('decodes STRICT_DNS / LOGICAL_DNS with hostnames and ORIGINAL_DST with CLUSTER_PROVIDED', () => {
    const dns = (type: string) => ({
      name: 'd',
      type,
      dns_refresh_rate: '30s',
      load_assignment: { cluster_name: 'd', endpoints: [{ lb_endpoints: [ep('backend.internal', 80)] }] },
    });
    for (const t of ['STRICT_DNS', 'LOGICAL_DNS']) {
      const { value, errors } = decodeCluster(dns(t), ctx());
      expect(errors).toEqual([]);
      expect(value!.dnsRefreshRateMs).toBe(30_000);
      expect(value!.loadAssignment!.endpoints[0]!.lbEndpoints[0]!.address).toEqual({
        kind: 'socket',
        host: 'backend.internal',
        port: 80,
      });
    }
    const od = decodeCluster(
      {
        name: 'passthrough',
        type: 'ORIGINAL_DST',
        lb_policy: 'CLUSTER_PROVIDED',
        original_dst_lb_config: { use_http_header: true },
      },
      ctx(),
    );
    expect(od.errors).toEqual([]);
    expect(od.value).toMatchObject({
      type: 'ORIGINAL_DST',
      lbPolicy: 'CLUSTER_PROVIDED',
      originalDstHeader: 'x-envoy-original-dst-host',
    });
  });

  it.each([
    [{ name: undefined }, [{ path: 'name', message: 'is required' }]],
    [
      { lb_policy: 'ROUND_ROBBIN' },
      [
        {
          path: 'lb_policy',
          message:
            'unknown value "ROUND_ROBBIN" (expected one of ROUND_ROBIN, LEAST_REQUEST, RING_HASH, RANDOM, MAGLEV, CLUSTER_PROVIDED, LOAD_BALANCING_POLICY_CONFIG, PEAK_EWMA)',
        },
      ],
    ],
    [
      { type: 'STATIK' },
      [
        {
          path: 'type',
          message: 'unknown value "STATIK" (expected one of STATIC, STRICT_DNS, LOGICAL_DNS, EDS, ORIGINAL_DST)',
        },
      ],
    ],
    [
      {
        cluster_type: {
          name: 'envoy.clusters.aggregate',
          typed_config: { '@type': `${TYPE_PREFIX}envoy.extensions.clusters.aggregate.v3.ClusterConfig` },
        },
      },
      [
        {
          path: 'cluster_type',
          message:
            'custom cluster types are not supported by meshlet (got envoy.extensions.clusters.aggregate.v3.ClusterConfig); use type',
        },
      ],
    ],
    [{ connect_timeout: '0s' }, [{ path: 'connect_timeout', message: 'must be greater than 0' }]],
    [
      { lb_policy: 'CLUSTER_PROVIDED' },
      [
        {
          path: 'lb_policy',
          message: 'LB policy CLUSTER_PROVIDED is not valid for cluster type STATIC; it requires ORIGINAL_DST',
        },
      ],
    ],
    [
      { load_balancing_policy: { policies: [] } },
      [
        {
          path: 'load_balancing_policy',
          message: 'typed load balancing policies are not supported by meshlet; use lb_policy',
        },
      ],
    ],
    [
      { ring_hash_lb_config: { minimum_ring_size: 4096, maximum_ring_size: 1024 } },
      [{ path: 'ring_hash_lb_config.minimum_ring_size', message: 'must not be larger than maximum_ring_size (1024)' }],
    ],
    [
      { least_request_lb_config: { choice_count: 1 } },
      [{ path: 'least_request_lb_config.choice_count', message: 'must be between 2 and 4294967295, got 1' }],
    ],
    [
      { maglev_lb_config: { table_size: 65536 } },
      [{ path: 'maglev_lb_config.table_size', message: 'must be a prime number, got 65536' }],
    ],
    [
      { circuit_breakers: { thresholds: [{}, {}] } },
      [{ path: 'circuit_breakers.thresholds[1].priority', message: 'duplicate thresholds for priority DEFAULT' }],
    ],
    [
      {
        typed_extension_protocol_options: {
          x: { '@type': `${TYPE_PREFIX}envoy.extensions.upstreams.tcp.v3.TcpProtocolOptions` },
        },
      },
      [
        {
          path: 'typed_extension_protocol_options.x.@type',
          message: 'unsupported protocol options type envoy.extensions.upstreams.tcp.v3.TcpProtocolOptions',
        },
      ],
    ],
    [
      { typed_extension_protocol_options: { [HPO]: { '@type': `${TYPE_PREFIX}${HPO}`, auto_config: {} } } },
      [
        {
          path: `typed_extension_protocol_options.${HPO}.auto_config`,
          message: 'auto_config (ALPN-based upstream protocol) is not supported by meshlet',
        },
      ],
    ],
    [
      {
        transport_socket: {
          name: 'envoy.transport_sockets.tls',
          typed_config: {
            '@type': UP_TLS,
            common_tls_context: { tls_params: { tls_minimum_protocol_version: 'TLSv1_0' } },
          },
        },
      },
      [
        {
          path: 'transport_socket.typed_config.common_tls_context.tls_params.tls_minimum_protocol_version',
          message: 'TLSv1_0 is not supported by meshlet (minimum TLSv1_2)',
        },
      ],
    ],
    [
      {
        transport_socket: {
          name: 'envoy.transport_sockets.tls',
          typed_config: {
            '@type': UP_TLS,
            common_tls_context: { validation_context: { trust_chain_verification: 'ACCEPT_UNTRUSTED' } },
          },
        },
      },
      [
        {
          path: 'transport_socket.typed_config.common_tls_context.validation_context.trust_chain_verification',
          message: 'ACCEPT_UNTRUSTED is not supported by meshlet',
        },
      ],
    ],
    [
      { transport_socket: { name: 'envoy.transport_sockets.tls' } },
      [{ path: 'transport_socket.typed_config', message: 'is required for a TLS transport socket' }],
    ],
    [
      { transport_socket_matches: [{ name: 'tlsMode-istio', match: { tlsMode: 'istio' } }] },
      [{ path: 'transport_socket_matches[0].transport_socket', message: 'is required' }],
    ],
    [
      { transport_socket_matches: [{ name: 'x', transport_socket: { name: 'envoy.transport_sockets.quic' } }] },
      [{ path: 'transport_socket_matches[0].transport_socket.typed_config', message: 'is required' }],
    ],
    [
      { transport_socket_matcher: { matcher_list: {} } },
      [{ path: 'transport_socket_matcher', message: 'is not supported by meshlet; use transport_socket_matches' }],
    ],
    [
      { dns_lookup_family: 'V5' },
      [
        {
          path: 'dns_lookup_family',
          message: 'unknown value "V5" (expected one of AUTO, V4_ONLY, V6_ONLY, V4_PREFERRED, ALL)',
        },
      ],
    ],
    [{ dns_refresh_rate: '0.001s' }, [{ path: 'dns_refresh_rate', message: 'must be greater than 1ms' }]],
    [
      { common_lb_config: { healthy_panic_threshold: { value: 101 } } },
      [{ path: 'common_lb_config.healthy_panic_threshold.value', message: 'must be between 0 and 100, got 101' }],
    ],
    [
      { original_dst_lb_config: { use_http_header: true } },
      [{ path: 'original_dst_lb_config', message: 'is only valid for ORIGINAL_DST clusters (type is STATIC)' }],
    ],
    [
      { eds_cluster_config: { eds_config: { ads: {} } } },
      [{ path: 'eds_cluster_config', message: 'is only valid for EDS clusters (type is STATIC)' }],
    ],
    [
      { outlier_detection: { base_ejection_time: '60s', max_ejection_time: '30s' } },
      [{ path: 'outlier_detection.max_ejection_time', message: 'cannot be smaller than base_ejection_time' }],
    ],
    [
      { outlier_detection: { max_ejection_percent: 200 } },
      [{ path: 'outlier_detection.max_ejection_percent', message: 'must be between 0 and 100, got 200' }],
    ],
  ])('reports cluster error %#', (patch, expected) => {
    const { value, errors, warnings } = decodeCluster({ ...staticCluster('c'), ...patch }, ctx());
    expect(errors).toEqual(expected);
    expect(warnings).toEqual([]);
    expect(value).toBeUndefined();
  });

  it('enforces Envoy cross-field rules for discovery types', () => {
    expect(decodeCluster({ name: 'e', type: 'EDS' }, ctx()).errors).toEqual([
      { path: 'eds_cluster_config', message: 'is required for an EDS cluster' },
    ]);
    expect(decodeCluster({ name: 'e', type: 'EDS', eds_cluster_config: { service_name: 's' } }, ctx()).errors).toEqual([
      { path: 'eds_cluster_config.eds_config', message: 'is required' },
    ]);
    expect(
      decodeCluster(
        staticCluster('c', {
          load_assignment: { cluster_name: 'c', endpoints: [{ lb_endpoints: [ep('backend.internal')] }] },
        }),
        ctx(),
      ).errors,
    ).toEqual([
      {
        path: 'load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.address',
        message:
          'malformed IP address: "backend.internal" (a STATIC cluster needs IP addresses; use STRICT_DNS or LOGICAL_DNS for hostnames)',
      },
    ]);
    expect(
      decodeCluster(
        {
          name: 'l',
          type: 'LOGICAL_DNS',
          load_assignment: { cluster_name: 'l', endpoints: [{ lb_endpoints: [ep('a.internal'), ep('b.internal')] }] },
        },
        ctx(),
      ).errors,
    ).toEqual([
      {
        path: 'load_assignment',
        message: 'LOGICAL_DNS clusters must have a single locality_lb_endpoint and a single lb_endpoint',
      },
    ]);
    expect(
      decodeCluster(
        {
          name: 'l',
          type: 'STRICT_DNS',
          load_assignment: {
            cluster_name: 'l',
            endpoints: [{ lb_endpoints: [{ endpoint: { address: { pipe: { path: '/s' } } } }] }],
          },
        },
        ctx(),
      ).errors,
    ).toEqual([
      {
        path: 'load_assignment.endpoints[0].lb_endpoints[0].endpoint.address',
        message: 'STRICT_DNS clusters need a socket_address with a hostname and port',
      },
    ]);
    expect(decodeCluster({ name: 'o', type: 'ORIGINAL_DST' }, ctx()).errors).toEqual([
      {
        path: 'lb_policy',
        message: 'LB policy ROUND_ROBIN is not valid for cluster type ORIGINAL_DST; only CLUSTER_PROVIDED is allowed',
      },
    ]);
    expect(
      decodeCluster({ ...staticCluster('o'), type: 'ORIGINAL_DST', lb_policy: 'CLUSTER_PROVIDED' }, ctx()).errors,
    ).toEqual([{ path: 'load_assignment', message: 'ORIGINAL_DST clusters must have no load assignment configured' }]);
  });

  it('reports health check errors', () => {
    const hc = (h: Record<string, unknown>) => decodeCluster(staticCluster('c', { health_checks: [h] }), ctx()).errors;
    expect(hc({ http_health_check: { path: '/' } })).toEqual([
      { path: 'health_checks[0].timeout', message: 'is required' },
      { path: 'health_checks[0].interval', message: 'is required' },
      { path: 'health_checks[0].unhealthy_threshold', message: 'is required' },
      { path: 'health_checks[0].healthy_threshold', message: 'is required' },
    ]);
    const base = { timeout: '1s', interval: '1s', unhealthy_threshold: 1, healthy_threshold: 1 };
    expect(hc(base)).toEqual([
      {
        path: 'health_checks[0]',
        message: 'one of http_health_check, tcp_health_check, grpc_health_check must be set',
      },
    ]);
    expect(hc({ ...base, http_health_check: { expected_statuses: [{ start: 300, end: 200 }] } })).toEqual([
      { path: 'health_checks[0].http_health_check.path', message: 'is required' },
      {
        path: 'health_checks[0].http_health_check.expected_statuses[0].end',
        message: 'must be greater than start (300)',
      },
    ]);
    expect(hc({ ...base, tcp_health_check: { send: { text: 'zz' } } })).toEqual([
      { path: 'health_checks[0].tcp_health_check.send.text', message: 'expected a hex-encoded payload' },
    ]);
    expect(hc({ ...base, interval: '0s', custom_health_check: { name: 'x' } })).toEqual([
      { path: 'health_checks[0].interval', message: 'must be greater than 0' },
      { path: 'health_checks[0].custom_health_check', message: 'custom health checkers are not supported by meshlet' },
    ]);
  });

  it('warns about unsupported fields instead of dropping them silently', () => {
    const { errors, warnings } = decodeCluster(
      staticCluster('c', { lrs_server: {}, track_cluster_stats: {} }),
      ctx(),
    );
    expect(errors).toEqual([]);
    expect(warnings).toEqual([
      { path: 'lrs_server', message: 'not supported by meshlet, ignored' },
      { path: 'track_cluster_stats', message: 'not supported by meshlet, ignored' },
    ]);
  });
});
