/**
 * Decoder for envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager:
 * codec, route source (inline route_config or RDS), http_filters through the HttpFilterRegistry,
 * XFF/request-id/XFCC behaviour, timeouts, HTTP/2 options, upgrades, access logs and tracing.
 *
 * Envoy defaults: stream_idle_timeout 5 min, idle_timeout 1 h, max_request_headers_kb 60,
 * max_headers_count 100, generate_request_id true, server_name "envoy". One deliberate
 * difference: HTTP/2 max_concurrent_streams defaults to 100 (see Http2Options).
 */
import { Reader } from '../../../common/reader';
import type { HcmConfig, Http2Options, HttpFilterConfig } from '../types';
import { decodeAccessLogs } from './access-log';
import type { DecodeContext } from './context';
import { decodeConfigSource } from './config-source';
import { dur, enumNamed, enumOf, percent } from './core';
import { runForeign } from './per-filter';
import { decodeRouteConfigurationR } from './route';
import { decodeUpgradeConfigs } from './route-action';
import { decodeCustomTags, decodeTracingProvider } from './tracing';
import { reportUnsupportedType } from './unsupported';

export const T_HCM = 'envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager';
const INT31_MAX = 2147483647;

export const DEFAULT_HTTP2: Http2Options = Object.freeze({
  maxConcurrentStreams: 100,
  initialStreamWindowSize: 268435456,
  initialConnectionWindowSize: 268435456,
});

/** envoy.config.core.v3.Http2ProtocolOptions (the parts meshlet honours). */
export function decodeHttp2Options(r: Reader | undefined): Http2Options {
  if (!r) return DEFAULT_HTTP2;
  const out = {
    maxConcurrentStreams: r.int('max_concurrent_streams', DEFAULT_HTTP2.maxConcurrentStreams, 1, INT31_MAX),
    initialStreamWindowSize: r.int(
      'initial_stream_window_size',
      DEFAULT_HTTP2.initialStreamWindowSize,
      65535,
      INT31_MAX,
    ),
    initialConnectionWindowSize: r.int(
      'initial_connection_window_size',
      DEFAULT_HTTP2.initialConnectionWindowSize,
      65535,
      INT31_MAX,
    ),
  };
  r.done();
  return out;
}

/** Envoy's extension names (and the deprecated ones its examples still use) → config types. */
const HTTP_FILTER_TYPE_BY_NAME: Readonly<Record<string, string>> = {
  'envoy.filters.http.router': 'envoy.extensions.filters.http.router.v3.Router',
  'envoy.router': 'envoy.extensions.filters.http.router.v3.Router',
  'envoy.filters.http.cors': 'envoy.extensions.filters.http.cors.v3.Cors',
  'envoy.cors': 'envoy.extensions.filters.http.cors.v3.Cors',
  'envoy.filters.http.grpc_web': 'envoy.extensions.filters.http.grpc_web.v3.GrpcWeb',
  'envoy.grpc_web': 'envoy.extensions.filters.http.grpc_web.v3.GrpcWeb',
  'envoy.filters.http.grpc_http1_bridge': 'envoy.extensions.filters.http.grpc_http1_bridge.v3.Config',
  'envoy.filters.http.fault': 'envoy.extensions.filters.http.fault.v3.HTTPFault',
};

/** The http_filters list: decoded through ctx.httpFilters; the terminal filter must be last. */
export function decodeHttpFilters(r: Reader, ctx: DecodeContext): HttpFilterConfig[] {
  const out: HttpFilterConfig[] = [];
  const list = r.arr('http_filters');
  if (list.length === 0) {
    r.error('http_filters', 'is required: the last filter must be a terminal filter such as envoy.filters.http.router');
  }
  for (const [i, f] of list.entries()) {
    const name = f.requiredStr('name');
    const isOptional = f.bool('is_optional', false);
    const disabled = f.bool('disabled', false);
    if (f.has('config_discovery'))
      f.error('config_discovery', 'filter config discovery (ECDS) is not supported by meshlet');
    f.raw('config_discovery');
    let tc = f.any('typed_config');
    if (!f.has('typed_config') && !f.has('config_discovery')) {
      // Envoy finds the extension by its name when typed_config is absent and uses its empty config.
      const type = name ? HTTP_FILTER_TYPE_BY_NAME[name] : undefined;
      const empty = type ? Reader.of({ '@type': `type.googleapis.com/${type}` }, f.sub('typed_config'), f.issues) : undefined;
      if (empty) tc = { type: type!, reader: empty };
      else f.error('typed_config', 'is required');
    }
    f.done();
    if (!tc) continue;
    const factory = ctx.httpFilters.get(tc.type);
    const last = i === list.length - 1;
    if (!factory) {
      if (isOptional)
        tc.reader.issues.warn(tc.reader.sub('@type'), `unknown HTTP filter type ${tc.type}, ignored (is_optional)`);
      else reportUnsupportedType(tc, 'HTTP filter');
      continue;
    }
    const config = runForeign(tc.reader, (x) => factory.decode(x));
    if (factory.terminal && !last) {
      f.issues.error(
        f.path,
        `terminal filter named ${name} of type ${tc.type} must be the last filter in a http filter chain`,
      );
    } else if (!factory.terminal && last) {
      f.issues.error(
        f.path,
        `non-terminal filter named ${name} of type ${tc.type} is the last filter in a http filter chain`,
      );
    }
    if (name) out.push({ name, typeName: tc.type, config, isOptional, disabled });
  }
  return out;
}

function decodeRouteSource(r: Reader, ctx: DecodeContext): HcmConfig['routeSource'] | undefined {
  const which = r.oneof(['rds', 'route_config', 'scoped_routes'] as const);
  if (which === undefined) {
    r.issues.error(r.path, 'one of rds, route_config must be set');
    return undefined;
  }
  if (which === 'scoped_routes') {
    r.error(which, 'scoped routes are not supported by meshlet');
    r.raw(which);
    return undefined;
  }
  const s = r.obj(which);
  if (!s) return undefined;
  if (which === 'route_config') return { kind: 'static', config: decodeRouteConfigurationR(s, ctx, true) };
  const routeConfigName = s.requiredStr('route_config_name');
  const cs = s.obj('config_source');
  if (!cs) s.error('config_source', 'is required');
  const configSource = cs ? decodeConfigSource(cs, ctx) : undefined;
  s.done();
  return routeConfigName && configSource ? { kind: 'rds', routeConfigName, configSource } : undefined;
}

function decodeHcmTracing(r: Reader, ctx: DecodeContext): HcmConfig['tracing'] {
  const clientSamplingPercent = percent(r, 'client_sampling', 100);
  const randomSamplingPercent = percent(r, 'random_sampling', 100);
  const overallSamplingPercent = percent(r, 'overall_sampling', 100);
  const p = r.obj('provider');
  const provider = p ? decodeTracingProvider(p, ctx) : undefined;
  const customTags = decodeCustomTags(r);
  const maxPathTagLength = r.int('max_path_tag_length', 256, 0, 0xffffffff);
  // verbose (per-event span annotations) and spawn_upstream_span (a child span per upstream try)
  // are not built; false is what meshlet does, true warns.
  for (const k of ['verbose', 'spawn_upstream_span']) {
    if (r.bool(k, false)) r.issues.warn(r.sub(k), 'not supported by meshlet, ignored');
  }
  r.done();
  return {
    clientSamplingPercent,
    randomSamplingPercent,
    overallSamplingPercent,
    maxPathTagLength,
    ...(customTags.length > 0 ? { customTags } : {}),
    ...(provider ? { provider } : {}),
  };
}

/** HttpConnectionManager typed_config. `trafficDirection` comes from the enclosing listener. */
export function decodeHcm(
  r: Reader,
  ctx: DecodeContext,
  trafficDirection?: 'INBOUND' | 'OUTBOUND',
): HcmConfig | undefined {
  const statPrefix = r.requiredStr('stat_prefix');
  const codecType = enumNamed(r, 'codec_type', { AUTO: 0, HTTP1: 1, HTTP2: 2, HTTP3: 3 }, 'AUTO');
  if (codecType === 'HTTP3') r.error('codec_type', 'HTTP3 is not supported by meshlet');
  const routeSource = decodeRouteSource(r, ctx);
  const httpFilters = decodeHttpFilters(r, ctx);
  const useRemoteAddress = r.bool('use_remote_address', false);
  const xffNumTrustedHops = r.int('xff_num_trusted_hops', 0, 0, 0xffffffff);
  const skipXffAppend = r.bool('skip_xff_append', false);
  const generateRequestId = r.bool('generate_request_id', true);
  const preserveExternalRequestId = r.bool('preserve_external_request_id', false);
  const alwaysSetRequestIdInResponse = r.bool('always_set_request_id_in_response', false);
  const forwardClientCertDetails = enumOf(
    r,
    'forward_client_cert_details',
    ['SANITIZE', 'FORWARD_ONLY', 'APPEND_FORWARD', 'SANITIZE_SET', 'ALWAYS_FORWARD_ONLY'] as const,
    'SANITIZE',
  );
  const setCurrentClientCertDetails = { subject: false, cert: false, chain: false, dns: false, uri: false };
  const sc = r.obj('set_current_client_cert_details');
  if (sc) {
    for (const k of ['subject', 'cert', 'chain', 'dns', 'uri'] as const)
      setCurrentClientCertDetails[k] = sc.bool(k, false);
    sc.done();
  }
  const requestTimeoutMs = dur(r, 'request_timeout', 0);
  const requestHeadersTimeoutMs = dur(r, 'request_headers_timeout', 0);
  const streamIdleTimeoutMs = dur(r, 'stream_idle_timeout', 300_000);
  const drainTimeoutMs = dur(r, 'drain_timeout', 5_000);
  let idleTimeoutMs = 3_600_000;
  let maxHeadersCount = 100;
  const cp = r.obj('common_http_protocol_options');
  if (cp) {
    idleTimeoutMs = dur(cp, 'idle_timeout', 3_600_000);
    maxHeadersCount = cp.int('max_headers_count', 100, 1);
    cp.done();
  }
  const maxRequestHeadersKb = r.int('max_request_headers_kb', 60, 1, 8192);
  const http2 = decodeHttp2Options(r.obj('http2_protocol_options'));
  const upgradeTypes = decodeUpgradeConfigs(r, false);
  const serverName = r.str('server_name', 'envoy');
  const serverHeaderTransformation = enumOf(
    r,
    'server_header_transformation',
    ['OVERWRITE', 'APPEND_IF_ABSENT', 'PASS_THROUGH'] as const,
    'OVERWRITE',
  );
  const accessLog = decodeAccessLogs(r);
  const tr = r.obj('tracing');
  const tracing = tr ? decodeHcmTracing(tr, ctx) : undefined;
  const normalizePath = r.bool('normalize_path', false);
  const mergeSlashes = r.bool('merge_slashes', false);
  // meshlet forwards %2F / %5C as they came: Envoy's default, and KEEP_UNCHANGED (what istiod writes).
  const escapedSlashes = enumOf(
    r,
    'path_with_escaped_slashes_action',
    ['IMPLEMENTATION_SPECIFIC_DEFAULT', 'KEEP_UNCHANGED', 'REJECT_REQUEST', 'UNESCAPE_AND_REDIRECT', 'UNESCAPE_AND_FORWARD'] as const,
    'IMPLEMENTATION_SPECIFIC_DEFAULT',
  );
  if (escapedSlashes !== 'IMPLEMENTATION_SPECIFIC_DEFAULT' && escapedSlashes !== 'KEEP_UNCHANGED')
    r.warnAt('path_with_escaped_slashes_action', `${escapedSlashes} is not supported by meshlet, ignored: escaped slashes are forwarded unchanged (KEEP_UNCHANGED)`);
  r.done();
  if (!routeSource || !statPrefix) return undefined;
  return {
    statPrefix,
    codecType: codecType === 'HTTP3' ? 'AUTO' : codecType,
    routeSource,
    httpFilters,
    useRemoteAddress,
    xffNumTrustedHops,
    skipXffAppend,
    generateRequestId,
    preserveExternalRequestId,
    alwaysSetRequestIdInResponse,
    forwardClientCertDetails,
    setCurrentClientCertDetails,
    requestTimeoutMs,
    requestHeadersTimeoutMs,
    streamIdleTimeoutMs,
    drainTimeoutMs,
    idleTimeoutMs,
    maxRequestHeadersKb,
    maxHeadersCount,
    http2,
    upgradeTypes,
    serverName,
    serverHeaderTransformation,
    accessLog,
    ...(tracing ? { tracing } : {}),
    normalizePath,
    mergeSlashes,
    ...(trafficDirection ? { trafficDirection } : {}),
  };
}
