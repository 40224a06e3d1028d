/**
 * Decoder for tracing providers (envoy.config.trace.v3.Tracing.Http), used by the bootstrap's
 * `tracing.http` and the HCM's `tracing.provider`: OpenTelemetry (gRPC or HTTP export) and
 * Zipkin. Unknown provider types are errors naming the type.
 */
import type { Reader } from '../../../common/reader';
import type { CustomTag, Route, TracingConfig } from '../types';
import { checkClusterRef, type DecodeContext } from './context';
import { dur, enumOf, percent } from './core';
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

/**
 * envoy.type.tracing.v3.CustomTag: literal and environment values are fixed when the config is
 * read (Envoy reads the environment then too); request_header is read per span. metadata tags
 * (route/cluster/host metadata) are not supported: a warning, the tag is left out.
 */
export function decodeCustomTags(r: Reader): CustomTag[] {
  const out: CustomTag[] = [];
  for (const t of r.arr('custom_tags')) {
    const tag = t.requiredStr('tag');
    const which = t.oneof(['literal', 'environment', 'request_header', 'metadata'] as const);
    const o = which ? t.obj(which) : undefined;
    if (which === undefined) t.error('tag', 'one of literal, environment, request_header, metadata must be set');
    if (which === 'literal' && o) {
      const value = o.str('value', '');
      if (tag) out.push({ tag, value });
    } else if (which === 'environment' && o) {
      const name = o.requiredStr('name');
      const def = o.str('default_value', '');
      const v = name ? process.env[name] : undefined;
      if (tag) out.push({ tag, value: v !== undefined && v !== '' ? v : def });
    } else if (which === 'request_header' && o) {
      const name = o.requiredStr('name');
      const def = o.str('default_value', '');
      if (tag && name) out.push({ tag, header: name.toLowerCase(), value: def });
    } else if (which === 'metadata' && o) {
      const k = o.obj('kind');
      const kind = k?.oneof(['request', 'route', 'cluster', 'host'] as const);
      if (k && kind) k.obj(kind)?.done();
      k?.done();
      if (kind === undefined) o.error('kind', 'one of request, route, cluster, host must be set');
      const mk = o.obj('metadata_key');
      const namespace = mk?.requiredStr('key');
      const path: string[] = [];
      for (const seg of mk?.arr('path') ?? []) {
        const key = seg.requiredStr('key');
        if (key) path.push(key);
        seg.done();
      }
      mk?.done();
      if (!mk) o.error('metadata_key', 'is required');
      const def = o.str('default_value', '');
      if (kind === 'route' || kind === 'cluster') {
        o.issues.warn(o.sub('kind'), `${kind} metadata custom tags are not supported by meshlet; the tag is left out`);
      } else if (tag && kind && namespace) out.push({ tag, value: def, metadata: { kind, namespace, path } });
    }
    o?.done();
    t.done();
  }
  return out;
}

/** envoy.config.route.v3.Tracing: a route's own sampling percentages and custom tags. */
export function decodeRouteTracing(r: Reader): Route['tracing'] {
  const t = r.obj('tracing');
  if (!t) return undefined;
  const has = (k: string): boolean => t.raw(k) !== undefined && t.raw(k) !== null;
  const out = {
    ...(has('client_sampling') ? { clientSamplingPercent: percent(t, 'client_sampling', 100) } : {}),
    ...(has('random_sampling') ? { randomSamplingPercent: percent(t, 'random_sampling', 100) } : {}),
    ...(has('overall_sampling') ? { overallSamplingPercent: percent(t, 'overall_sampling', 100) } : {}),
  };
  const customTags = decodeCustomTags(t);
  t.done();
  return { ...out, ...(customTags.length > 0 ? { customTags } : {}) };
}
