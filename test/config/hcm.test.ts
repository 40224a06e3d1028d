import { describe, expect, it } from 'vitest';
import { decodeListener } from '../../proxy/config/envoy';
import type { HcmConfig } from '../../proxy/config/types';
import { ctx, FAULT_TYPE, hcm, listener, ROUTER_TYPE, routerFilter, TYPE_PREFIX } from './helpers';

const P = 'filter_chains[0].filters[0].typed_config';

function decodeHcm(extra: Record<string, unknown>) {
  const res = decodeListener(listener({}, extra), ctx());
  const f = res.value?.filterChains[0]?.filters[0];
  return { hcm: f?.kind === 'http_connection_manager' ? f.hcm : undefined, errors: res.errors, warnings: res.warnings };
}

function decodeRawHcm(raw: Record<string, unknown>) {
  const l = listener();
  (l.filter_chains as { filters: { typed_config: unknown }[] }[])[0]!.filters[0]!.typed_config = raw;
  return decodeListener(l, ctx());
}

describe('HttpConnectionManager', () => {
  it('applies Envoy defaults', () => {
    const { hcm: h, errors, warnings } = decodeHcm({});
    expect(errors).toEqual([]);
    expect(warnings).toEqual([]);
    expect(h).toMatchObject<Partial<HcmConfig>>({
      statPrefix: 'ingress_http',
      codecType: 'AUTO',
      useRemoteAddress: false,
      xffNumTrustedHops: 0,
      skipXffAppend: false,
      generateRequestId: true,
      preserveExternalRequestId: false,
      alwaysSetRequestIdInResponse: false,
      forwardClientCertDetails: 'SANITIZE',
      setCurrentClientCertDetails: { subject: false, cert: false, chain: false, dns: false, uri: false },
      requestTimeoutMs: 0,
      requestHeadersTimeoutMs: 0,
      streamIdleTimeoutMs: 300_000,
      idleTimeoutMs: 3_600_000,
      maxRequestHeadersKb: 60,
      maxHeadersCount: 100,
      http2: { maxConcurrentStreams: 100, initialStreamWindowSize: 268435456, initialConnectionWindowSize: 268435456 },
      upgradeTypes: [],
      serverName: 'envoy',
      serverHeaderTransformation: 'OVERWRITE',
      accessLog: [],
      normalizePath: false,
      mergeSlashes: false,
    });
    expect(h!.tracing).toBeUndefined();
    expect(h!.httpFilters).toEqual([
      {
        name: 'envoy.filters.http.router',
        typeName: ROUTER_TYPE,
        config: {
          dynamicStats: true,
          startChildSpan: false,
          suppressEnvoyHeaders: false,
          respectExpectedRqTimeout: false,
          suppressGrpcRequestFailureCodeStats: false,
        },
        isOptional: false,
        disabled: false,
      },
    ]);
  });

  it('decodes every supported field', () => {
    const {
      hcm: h,
      errors,
      warnings,
    } = decodeHcm({
      codec_type: 'HTTP2',
      use_remote_address: true,
      xff_num_trusted_hops: 2,
      skip_xff_append: true,
      generate_request_id: false,
      preserve_external_request_id: true,
      always_set_request_id_in_response: true,
      forward_client_cert_details: 'APPEND_FORWARD',
      set_current_client_cert_details: { subject: true, uri: true, dns: true },
      request_timeout: '30s',
      request_headers_timeout: '10s',
      stream_idle_timeout: { seconds: '60' },
      common_http_protocol_options: { idle_timeout: '120s', max_headers_count: 50 },
      max_request_headers_kb: 96,
      http2_protocol_options: {
        max_concurrent_streams: 1000,
        initial_stream_window_size: 65536,
        initial_connection_window_size: 1048576,
      },
      upgrade_configs: [{ upgrade_type: 'websocket' }, { upgrade_type: 'CONNECT', enabled: false }],
      server_name: 'meshlet',
      server_header_transformation: 'PASS_THROUGH',
      access_log: [
        {
          name: 'envoy.access_loggers.stdout',
          typed_config: {
            '@type': `${TYPE_PREFIX}envoy.extensions.access_loggers.stream.v3.StdoutAccessLog`,
            log_format: { text_format_source: { inline_string: '[%START_TIME%] %REQ(:METHOD)%\n' } },
          },
        },
        {
          name: 'file',
          typed_config: {
            '@type': `${TYPE_PREFIX}envoy.extensions.access_loggers.file.v3.FileAccessLog`,
            path: '/var/log/access.log',
            log_format: { json_format: { status: '%RESPONSE_CODE%' } },
          },
        },
      ],
      tracing: {
        random_sampling: { value: 12.5 },
        client_sampling: { value: 50 },
        overall_sampling: { value: 25 },
        provider: {
          name: 'envoy.tracers.opentelemetry',
          typed_config: {
            '@type': `${TYPE_PREFIX}envoy.config.trace.v3.OpenTelemetryConfig`,
            grpc_service: { envoy_grpc: { cluster_name: 'otel' }, timeout: '0.25s' },
            service_name: 'front',
          },
        },
      },
      normalize_path: true,
      merge_slashes: true,
      path_with_escaped_slashes_action: 'KEEP_UNCHANGED',
    });
    expect(errors).toEqual([]);
    expect(warnings).toEqual([]);
    expect(h).toMatchObject({
      codecType: 'HTTP2',
      useRemoteAddress: true,
      xffNumTrustedHops: 2,
      skipXffAppend: true,
      generateRequestId: false,
      preserveExternalRequestId: true,
      alwaysSetRequestIdInResponse: true,
      forwardClientCertDetails: 'APPEND_FORWARD',
      setCurrentClientCertDetails: { subject: true, cert: false, chain: false, dns: true, uri: true },
      requestTimeoutMs: 30_000,
      requestHeadersTimeoutMs: 10_000,
      streamIdleTimeoutMs: 60_000,
      idleTimeoutMs: 120_000,
      maxHeadersCount: 50,
      maxRequestHeadersKb: 96,
      http2: { maxConcurrentStreams: 1000, initialStreamWindowSize: 65536, initialConnectionWindowSize: 1048576 },
      upgradeTypes: ['websocket'],
      serverName: 'meshlet',
      serverHeaderTransformation: 'PASS_THROUGH',
      accessLog: [
        {
          name: 'envoy.access_loggers.stdout',
          sink: { kind: 'stdout' },
          format: { kind: 'text', text: '[%START_TIME%] %REQ(:METHOD)%\n' },
        },
        {
          name: 'file',
          sink: { kind: 'file', path: '/var/log/access.log' },
          format: { kind: 'json', json: { status: '%RESPONSE_CODE%' } },
        },
      ],
      tracing: {
        clientSamplingPercent: 50,
        randomSamplingPercent: 12.5,
        overallSamplingPercent: 25,
        provider: {
          provider: 'opentelemetry',
          grpcService: { kind: 'envoy_grpc', clusterName: 'otel', timeoutMs: 250 },
          serviceName: 'front',
        },
      },
      normalizePath: true,
      mergeSlashes: true,
    });
  });

  it('decodes RDS with an ADS config source', () => {
    const { hcm: h, errors } = decodeHcm({
      route_config: undefined,
      rds: { route_config_name: 'outbound|80', config_source: { ads: {}, resource_api_version: 'V3' } },
    });
    expect(errors).toEqual([]);
    expect(h!.routeSource).toEqual({ kind: 'rds', routeConfigName: 'outbound|80', configSource: { kind: 'ads' } });
  });

  it('decodes http filters through the registry, with per-filter config', () => {
    const { hcm: h, errors } = decodeHcm({
      http_filters: [
        {
          name: 'envoy.filters.http.fault',
          typed_config: { '@type': `${TYPE_PREFIX}${FAULT_TYPE}`, abort: { http_status: 503 } },
        },
        routerFilter(),
      ],
    });
    expect(errors).toEqual([]);
    expect(h!.httpFilters.map((f) => [f.name, f.config])).toEqual([
      ['envoy.filters.http.fault', { abortPercent: 503 }],
      ['envoy.filters.http.router', expect.objectContaining({ dynamicStats: true })],
    ]);
  });

  it('reports filter config problems at their path (unknown Router fields are warnings once)', () => {
    const res = decodeHcm({
      http_filters: [
        { name: 'envoy.filters.http.router', typed_config: { '@type': `${TYPE_PREFIX}${ROUTER_TYPE}`, bogus: 1 } },
      ],
    });
    expect(res.errors).toEqual([]);
    expect(res.warnings).toEqual([
      { path: `${P}.http_filters[0].typed_config.bogus`, message: 'not supported by meshlet, ignored' },
    ]);
  });

  it('an unknown filter type is an error, or a warning when is_optional', () => {
    const wasm = `${TYPE_PREFIX}envoy.extensions.filters.http.wasm.v3.Wasm`;
    const res = decodeHcm({ http_filters: [{ name: 'wasm', typed_config: { '@type': wasm } }, routerFilter()] });
    expect(res.errors).toEqual([
      {
        path: `${P}.http_filters[0].typed_config.@type`,
        message: 'unsupported HTTP filter type envoy.extensions.filters.http.wasm.v3.Wasm',
      },
    ]);
    const opt = decodeHcm({
      http_filters: [{ name: 'wasm', is_optional: true, typed_config: { '@type': wasm } }, routerFilter()],
    });
    expect(opt.errors).toEqual([]);
    expect(opt.warnings).toEqual([
      {
        path: `${P}.http_filters[0].typed_config.@type`,
        message: 'unknown HTTP filter type envoy.extensions.filters.http.wasm.v3.Wasm, ignored (is_optional)',
      },
    ]);
    expect(opt.hcm!.httpFilters.map((f) => f.name)).toEqual(['envoy.filters.http.router']);
  });

  it('the terminal filter must be last, and the last filter must be terminal', () => {
    const fault = { name: 'fault', typed_config: { '@type': `${TYPE_PREFIX}${FAULT_TYPE}` } };
    expect(decodeHcm({ http_filters: [routerFilter(), fault] }).errors).toEqual([
      {
        path: `${P}.http_filters[0]`,
        message: `terminal filter named envoy.filters.http.router of type ${ROUTER_TYPE} must be the last filter in a http filter chain`,
      },
      {
        path: `${P}.http_filters[1]`,
        message: `non-terminal filter named fault of type ${FAULT_TYPE} is the last filter in a http filter chain`,
      },
    ]);
    expect(decodeHcm({ http_filters: [] }).errors).toEqual([
      {
        path: `${P}.http_filters`,
        message: 'is required: the last filter must be a terminal filter such as envoy.filters.http.router',
      },
    ]);
  });

  it.each([
    [{ stat_prefix: undefined }, [{ path: `${P}.stat_prefix`, message: 'is required' }]],
    [{ codec_type: 'HTTP3' }, [{ path: `${P}.codec_type`, message: 'HTTP3 is not supported by meshlet' }]],
    [
      { codec_type: 'SPDY' },
      [{ path: `${P}.codec_type`, message: 'unknown value "SPDY" (expected one of AUTO, HTTP1, HTTP2, HTTP3)' }],
    ],
    [{ route_config: undefined }, [{ path: P, message: 'one of rds, route_config must be set' }]],
    [
      { rds: { route_config_name: 'r', config_source: { ads: {} } } },
      [
        {
          path: `${P}.route_config`,
          message: 'only one of rds, route_config, scoped_routes may be set (also found rds)',
        },
      ],
    ],
    [
      { route_config: undefined, rds: { route_config_name: 'r' } },
      [{ path: `${P}.rds.config_source`, message: 'is required' }],
    ],
    [
      { max_request_headers_kb: 9000 },
      [{ path: `${P}.max_request_headers_kb`, message: 'must be between 1 and 8192, got 9000' }],
    ],
    [
      { http2_protocol_options: { initial_stream_window_size: 100 } },
      [
        {
          path: `${P}.http2_protocol_options.initial_stream_window_size`,
          message: 'must be between 65535 and 2147483647, got 100',
        },
      ],
    ],
    [
      { forward_client_cert_details: 'LEAK' },
      [
        {
          path: `${P}.forward_client_cert_details`,
          message:
            'unknown value "LEAK" (expected one of SANITIZE, FORWARD_ONLY, APPEND_FORWARD, SANITIZE_SET, ALWAYS_FORWARD_ONLY)',
        },
      ],
    ],
    [
      { access_log: [{ name: 'x', typed_config: { '@type': `${TYPE_PREFIX}acme.Logger` } }] },
      [{ path: `${P}.access_log[0].typed_config.@type`, message: 'unsupported access logger type acme.Logger' }],
    ],
    [
      {
        tracing: {
          provider: { name: 'x', typed_config: { '@type': `${TYPE_PREFIX}envoy.config.trace.v3.SkyWalkingConfig` } },
        },
      },
      [
        {
          path: `${P}.tracing.provider.typed_config.@type`,
          message: 'unsupported tracing provider type envoy.config.trace.v3.SkyWalkingConfig',
        },
      ],
    ],
    [
      { tracing: { random_sampling: { value: 150 } } },
      [{ path: `${P}.tracing.random_sampling.value`, message: 'must be between 0 and 100, got 150' }],
    ],
  ])('reports HCM error %#', (patch, expected) => {
    const res = decodeRawHcm({ ...hcm(), ...patch });
    expect(res.errors).toEqual(expected);
    expect(res.warnings).toEqual([]);
    expect(res.value).toBeUndefined();
  });
});

describe('path_with_escaped_slashes_action', () => {
  it('KEEP_UNCHANGED (istiod) and the default are honoured as they are; the unescaping actions warn', () => {
    expect(decodeHcm({ path_with_escaped_slashes_action: 'KEEP_UNCHANGED' }).warnings).toEqual([]);
    const w = decodeHcm({ path_with_escaped_slashes_action: 'UNESCAPE_AND_FORWARD' }).warnings;
    expect(w.map((x) => x.message)).toEqual(['UNESCAPE_AND_FORWARD is not supported by meshlet, ignored: escaped slashes are forwarded unchanged (KEEP_UNCHANGED)']);
    expect(decodeHcm({ path_with_escaped_slashes_action: 'SOMETIMES' }).errors.length).toBe(1);
  });
});
