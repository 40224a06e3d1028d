/**
 * Decoder for tracing providers (envoy.config.trace.v3.Tracing.Http), used by the bootstrap's
 * `tracing.http` and the HCM's `tracing.provider`: OpenTelemetry (gRPC or HTTP export) and
 * Zipkin. Unknown provider types are errors naming the type.
 */
import type { Reader } from '../../../common/reader';
import type { TracingConfig } from '../types';
import { checkClusterRef, type DecodeContext } from './context';
import { dur, enumOf } from './core';
import { decodeGrpcService } from './grpc-service';

const T_OTEL = 'envoy.config.trace.v3.OpenTelemetryConfig';
const T_ZIPKIN = 'envoy.config.trace.v3.ZipkinConfig';
/**
 * Tracers Istio's bootstrap can name (meshConfig.defaultConfig.tracing) that meshlet does not
 * implement: warned, and requests are not traced, since a tracer only observes traffic. The
 * fields are the ones Istio writes.
 */
const UNTRACED: Readonly<Record<string, readonly string[]>> = {
  'envoy.config.trace.v3.DatadogConfig': ['collector_cluster', 'service_name', 'collector_hostname', 'remote_config'],
  'envoy.config.trace.v3.LightstepConfig': ['collector_cluster', 'access_token_file', 'access_token', 'propagation_modes'],
  // Istio's opencensusagent and stackdriver tracers (Envoy removed OpenCensus in 1.30).
  'envoy.config.trace.v3.OpenCensusConfig': [
    'trace_config',
    'stdout_exporter_enabled',
    'stackdriver_exporter_enabled',
    'stackdriver_project_id',
    'stackdriver_address',
    'stackdriver_grpc_service',
    'zipkin_exporter_enabled',
    'zipkin_url',
    'ocagent_exporter_enabled',
    'ocagent_address',
    'ocagent_grpc_service',
    'incoming_trace_context',
    'outgoing_trace_context',
  ],
};

function decodeHttpService(r: Reader, ctx: DecodeContext): TracingConfig['httpService'] {
  const u = r.obj('http_uri');
  if (!u) {
    r.error('http_uri', 'is required');
    r.done();
    return undefined;
  }
  const uri = u.requiredStr('uri');
  const clusterName = u.requiredStr('cluster');
  checkClusterRef(ctx, (m) => u.error('cluster', m), clusterName);
  if (!u.has('timeout')) u.error('timeout', 'is required');
  const timeoutMs = dur(u, 'timeout', 0);
  u.done();
  if (r.list('request_headers_to_add').length > 0) r.error('request_headers_to_add', 'is not supported by meshlet');
  r.done();
  let path = '/v1/traces';
  try {
    path = new URL(uri).pathname;
  } catch {
    if (uri) u.error('uri', `invalid URI ${JSON.stringify(uri)}`);
    return undefined;
  }
  return clusterName ? { clusterName, path, timeoutMs } : undefined;
}

/** `{name, typed_config}` of a tracing provider. */
export function decodeTracingProvider(r: Reader, ctx: DecodeContext): TracingConfig | undefined {
  r.str('name', '');
  const tc = r.any('typed_config');
  let out: TracingConfig | undefined;
  if (!r.has('typed_config')) r.error('typed_config', 'is required');
  else if (tc?.type === T_OTEL) {
    const t = tc.reader;
    const g = t.obj('grpc_service');
    const grpcService = g ? decodeGrpcService(g, ctx) : undefined;
    const h = t.obj('http_service');
    const httpService = h ? decodeHttpService(h, ctx) : undefined;
    if (g && h) t.error('http_service', 'only one of grpc_service, http_service may be set');
    const serviceName = t.str('service_name', '');
    t.warnNoEffect('resource_detectors', 'resource attributes are service.name only');
    t.warnNoEffect('sampler', 'sampling follows the connection manager tracing percentages');
    t.warnNoEffect('max_cache_size', 'spans are exported as they end');
    t.done();
    out = {
      provider: 'opentelemetry',
      ...(grpcService ? { grpcService } : {}),
      ...(httpService ? { httpService } : {}),
      serviceName,
    };
  } else if (tc?.type === T_ZIPKIN) {
    const t = tc.reader;
    const clusterName = t.requiredStr('collector_cluster');
    checkClusterRef(ctx, (m) => t.error('collector_cluster', m), clusterName);
    const path = t.requiredStr('collector_endpoint');
    const v = enumOf(
      t,
      'collector_endpoint_version',
      ['DEPRECATED_AND_UNAVAILABLE_DO_NOT_USE', 'HTTP_JSON', 'HTTP_PROTO', 'GRPC'] as const,
      'HTTP_JSON',
    );
    if (v !== 'HTTP_JSON')
      t.error('collector_endpoint_version', `${v} is not supported by meshlet (expected HTTP_JSON)`);
    const traceId128bit = t.bool('trace_id_128bit', false);
    const sharedSpanContext = t.bool('shared_span_context', true);
    const collectorHostname = t.str('collector_hostname', '');
    if (path && !path.startsWith('/')) t.error('collector_endpoint', `must be a path starting with "/", got ${JSON.stringify(path)}`);
    t.done();
    out = {
      provider: 'zipkin',
      httpService: { clusterName, path, timeoutMs: 5000 },
      serviceName: '',
      zipkin: { traceId128bit, sharedSpanContext, ...(collectorHostname ? { collectorHostname } : {}) },
    };
  } else if (tc && UNTRACED[tc.type]) {
    const t = tc.reader;
    const cluster = t.str('collector_cluster', '');
    checkClusterRef(ctx, (m) => t.error('collector_cluster', m), cluster);
    for (const k of UNTRACED[tc.type]!) t.raw(k);
    t.done();
    t.issues.warn(t.sub('@type'), `tracer ${tc.type} is not implemented by meshlet; requests are not traced`);
    out = { provider: 'none', serviceName: '' };
  } else if (tc) {
    tc.reader.issues.error(tc.reader.sub('@type'), `unsupported tracing provider type ${tc.type}`);
  }
  r.done();
  return out;
}
