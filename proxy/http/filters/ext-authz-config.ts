/**
 * Config of the HTTP ext_authz filter: the decoded shapes of
 * `envoy.extensions.filters.http.ext_authz.v3.ExtAuthz` and `ExtAuthzPerRoute` and their decoders
 * (every field read is honoured, warned about, or rejected with its path). The filter itself is
 * ext-authz.ts; the two check clients are ext-authz-grpc.ts and ext-authz-http.ts.
 */
import { decodeStringMatcher } from '../../config/envoy/matchers';
import type { Reader } from '../../../common/reader';
import type { HeaderValueOption, MetadataMatcher, StringMatcher } from '../../config/types';
import type { RuntimeFraction } from '../../../common/runtime';
import { decodeMetadataMatcher } from '../../config/envoy/metadata-matcher';
import { ALWAYS, decodeRuntimeFraction } from '../../config/envoy/runtime';
import { decodeFeatureFlag, type FeatureFlag } from './compression-library';
import {
  checkTransportApiVersion,
  decodeGrpcServiceField,
  decodeHttpUri,
  type GrpcTarget,
  type HttpUriConfig,
} from '../../config/filters/grpc-service';
import { extAuthzStats } from './ext-authz-stats';

export const EXT_AUTHZ_TYPE_NAME = 'envoy.extensions.filters.http.ext_authz.v3.ExtAuthz';
export const EXT_AUTHZ_PER_ROUTE_TYPE_NAME = 'envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute';

/** http_service of ExtAuthz. */
export interface ExtAuthzHttpService {
  readonly serverUri: HttpUriConfig;
  readonly pathPrefix: string;
  /** authorization_request.allowed_headers (plus Envoy's always-sent set). Empty = the defaults only. */
  readonly allowedHeaders: readonly StringMatcher[];
  /** authorization_request.headers_to_add (HeaderValue: literal values, set on the check). */
  readonly headersToAdd: readonly HeaderValueOption[];
  /** authorization_response.allowed_upstream_headers: copied (overwriting) onto the upstream request. */
  readonly allowedUpstreamHeaders: readonly StringMatcher[];
  /** authorization_response.allowed_upstream_headers_to_append. */
  readonly allowedUpstreamHeadersToAppend: readonly StringMatcher[];
  /** authorization_response.allowed_client_headers (denied responses). Empty = all but host. */
  readonly allowedClientHeaders: readonly StringMatcher[];
  /** authorization_response.allowed_client_headers_on_success (added to the upstream's response). */
  readonly allowedClientHeadersOnSuccess: readonly StringMatcher[];
}

export interface ExtAuthzConfig {
  readonly kind: 'ext_authz';
  /** Exactly one of grpc / http is set. */
  readonly grpc?: GrpcTarget;
  /**
   * gRPC: allowed_headers — only the request headers (pseudo-headers included) it matches go in
   * the CheckRequest; undefined = all. (With http_service it feeds ExtAuthzHttpService.allowedHeaders.)
   */
  readonly allowedHeaders?: readonly StringMatcher[];
  readonly http?: ExtAuthzHttpService;
  /** Let requests through when the service fails or times out (Envoy default false). */
  readonly failureModeAllow: boolean;
  /** Add x-envoy-auth-failure-mode-allowed: true to requests let through by failure_mode_allow. */
  readonly failureModeAllowHeaderAdd: boolean;
  /** Status when the service fails (status_on_error, Envoy default 403). */
  readonly statusOnError: number;
  readonly statPrefix: string;
  /** Send the peer certificate (PEM) in the CheckRequest. */
  readonly includePeerCertificate: boolean;
  /** Re-select the route after the authorizer changed headers. */
  readonly clearRouteCache: boolean;
  /** filter_enabled: the share of requests checked (undefined = all). */
  readonly filterEnabled?: RuntimeFraction;
  /** filter_enabled_metadata: check only requests whose dynamic metadata matches. */
  readonly filterEnabledMetadata?: MetadataMatcher;
  /** deny_at_disable: a request the filter is disabled for is answered status_on_error instead. */
  readonly denyAtDisable?: FeatureFlag;
  /** with_request_body: buffer the body and send it in the check. */
  readonly withRequestBody?: ExtAuthzBodySettings;
}

/** ExtAuthz with_request_body (envoy.extensions.filters.http.ext_authz.v3.BufferSettings). */
export interface ExtAuthzBodySettings {
  /** Bytes of body sent (and, unless allowPartialMessage, the most buffered: more is 413). */
  readonly maxRequestBytes: number;
  /** Send the first maxRequestBytes of a larger body (x-envoy-auth-partial-body: true) instead of 413. */
  readonly allowPartialMessage: boolean;
  /** gRPC: send the body as bytes (raw_body) instead of a UTF-8 string (body). */
  readonly packAsBytes: boolean;
}

/** Decoded ExtAuthzPerRoute. */
export interface ExtAuthzPerRoute {
  readonly kind: 'ext_authz_per_route';
  readonly disabled: boolean;
  /** check_settings.context_extensions, sent in the CheckRequest. */
  readonly contextExtensions: Readonly<Record<string, string>>;
  /** check_settings.disable_request_body_buffering: no with_request_body on this route. */
  readonly disableRequestBodyBuffering: boolean;
}

function matcherList(r: Reader | undefined, key: string): StringMatcher[] {
  const out: StringMatcher[] = [];
  const l = r?.obj(key);
  if (!l) return out;
  for (const m of l.arr('patterns')) {
    const v = decodeStringMatcher(m);
    if (v) out.push(v);
  }
  l.done();
  return out;
}

/** envoy.type.v3.StatusCode enum names → numbers (status_on_error, denied_response.status). */
export const HTTP_STATUS_NAMES: Readonly<Record<string, number>> = {
  Empty: 0,
  Continue: 100,
  OK: 200,
  Created: 201,
  Accepted: 202,
  NoContent: 204,
  MovedPermanently: 301,
  Found: 302,
  TemporaryRedirect: 307,
  PermanentRedirect: 308,
  BadRequest: 400,
  Unauthorized: 401,
  PaymentRequired: 402,
  Forbidden: 403,
  NotFound: 404,
  MethodNotAllowed: 405,
  NotAcceptable: 406,
  RequestTimeout: 408,
  Conflict: 409,
  Gone: 410,
  PreconditionFailed: 412,
  PayloadTooLarge: 413,
  UnsupportedMediaType: 415,
  TooManyRequests: 429,
  InternalServerError: 500,
  NotImplemented: 501,
  BadGateway: 502,
  ServiceUnavailable: 503,
  GatewayTimeout: 504,
};

/** envoy.type.v3.HttpStatus.code: a number or, as istiod writes it, the enum name ("Forbidden"). */
function decodeStatusCode(r: Reader, def: number): number {
  const v = r.raw('code');
  if (typeof v === 'string' && !/^\d+$/.test(v)) {
    const n = HTTP_STATUS_NAMES[v];
    if (n !== undefined && n >= 100) return n;
    r.error('code', `unknown envoy.type.v3.StatusCode ${JSON.stringify(v)}`);
    return def;
  }
  return r.int('code', def, 100, 599);
}

/**
 * authorization_request.headers_to_add: a list of envoy.config.core.v3.HeaderValue (`key`,
 * `value` or base64 `raw_value` — not HeaderValueOption), each set on the check request.
 */
function decodeHeaderValues(r: Reader, field: string): HeaderValueOption[] {
  const out: HeaderValueOption[] = [];
  for (const e of r.arr(field)) {
    const key = e.requiredStr('key')?.toLowerCase();
    let value = e.str('value', '');
    if (e.has('raw_value')) {
      if (e.has('value')) e.error('value', 'only one of value, raw_value may be set');
      value = Buffer.from(e.str('raw_value', ''), 'base64').toString('latin1');
    }
    e.done();
    if (key) out.push({ key, value, appendAction: 'OVERWRITE_IF_EXISTS_OR_ADD', keepEmptyValue: false });
  }
  return out;
}

function decodeHttpService(r: Reader, topAllowedHeaders: StringMatcher[] | undefined): ExtAuthzHttpService | undefined {
  const su = r.obj('server_uri');
  if (!su) r.error('server_uri', 'is required');
  const serverUri = su ? decodeHttpUri(su, { schemeOptional: true }) : undefined;
  const pathPrefix = r.str('path_prefix', '');
  if (pathPrefix && !pathPrefix.startsWith('/')) r.error('path_prefix', 'must start with "/"');
  const req = r.obj('authorization_request');
  if (topAllowedHeaders !== undefined && req?.has('allowed_headers')) {
    req.error('allowed_headers', 'invalid duplicate configuration: allowed_headers is also set on ExtAuthz');
  }
  // ExtAuthz.allowed_headers stands in for authorization_request.allowed_headers (Envoy).
  const allowedHeaders = req?.has('allowed_headers') ? matcherList(req, 'allowed_headers') : (topAllowedHeaders ?? []);
  const headersToAdd = req ? decodeHeaderValues(req, 'headers_to_add') : [];
  req?.done();
  const res = r.obj('authorization_response');
  const allowedUpstreamHeaders = matcherList(res, 'allowed_upstream_headers');
  const allowedUpstreamHeadersToAppend = matcherList(res, 'allowed_upstream_headers_to_append');
  const allowedClientHeaders = matcherList(res, 'allowed_client_headers');
  const allowedClientHeadersOnSuccess = matcherList(res, 'allowed_client_headers_on_success');
  res?.done();
  r.done();
  if (!serverUri) return undefined;
  return {
    serverUri,
    pathPrefix,
    allowedHeaders,
    headersToAdd,
    allowedUpstreamHeaders,
    allowedUpstreamHeadersToAppend,
    allowedClientHeaders,
    allowedClientHeadersOnSuccess,
  };
}

/** ExtAuthz typed_config. */
export function decodeExtAuthz(r: Reader): ExtAuthzConfig {
  const which = r.oneof(['grpc_service', 'http_service'] as const);
  if (which === undefined) r.issues.error(r.path, 'one of grpc_service, http_service must be set');
  const grpc = which === 'grpc_service' ? decodeGrpcServiceField(r) : undefined;
  const allowedHeaders = r.has('allowed_headers') ? matcherList(r, 'allowed_headers') : undefined;
  const hs = which === 'http_service' ? r.obj('http_service') : undefined;
  const http = hs ? decodeHttpService(hs, allowedHeaders) : undefined;
  checkTransportApiVersion(r);
  const failureModeAllow = r.bool('failure_mode_allow', false);
  const failureModeAllowHeaderAdd = r.bool('failure_mode_allow_header_add', false);
  let statusOnError = 403;
  const se = r.obj('status_on_error');
  if (se) {
    statusOnError = decodeStatusCode(se, 403);
    se.done();
  }
  const statPrefix = r.str('stat_prefix', '');
  const includePeerCertificate = r.bool('include_peer_certificate', false);
  const clearRouteCache = r.bool('clear_route_cache', false);
  const wb = r.obj('with_request_body');
  const withRequestBody = wb ? decodeBodySettings(wb) : undefined;
  const filterEnabled = r.has('filter_enabled') ? decodeRuntimeFraction(r, 'filter_enabled', ALWAYS) : undefined;
  const fm = r.obj('filter_enabled_metadata');
  const filterEnabledMetadata = fm ? decodeMetadataMatcher(fm) : undefined;
  const denyAtDisable = r.has('deny_at_disable') ? decodeFeatureFlag(r, 'deny_at_disable') : undefined;
  // Filter-state stats are read only by access log operators (%FILTER_STATE%) meshlet lacks.
  r.warnNoEffect('emit_filter_state_stats', 'meshlet has no %FILTER_STATE% access log operator to read them');
  r.done();
  extAuthzStats(statPrefix);
  return {
    kind: 'ext_authz',
    ...(grpc ? { grpc } : {}),
    ...(grpc && allowedHeaders ? { allowedHeaders } : {}),
    ...(http ? { http } : {}),
    failureModeAllow,
    failureModeAllowHeaderAdd,
    statusOnError,
    statPrefix,
    includePeerCertificate,
    clearRouteCache,
    ...(filterEnabled ? { filterEnabled } : {}),
    ...(filterEnabledMetadata ? { filterEnabledMetadata } : {}),
    ...(denyAtDisable ? { denyAtDisable } : {}),
    ...(withRequestBody ? { withRequestBody } : {}),
  };
}

function decodeBodySettings(r: Reader): ExtAuthzBodySettings {
  // Envoy requires max_request_bytes > 0 (validate.rules uint32.gt 0).
  if (!r.has('max_request_bytes')) r.error('max_request_bytes', 'is required and must be greater than 0');
  const maxRequestBytes = r.int('max_request_bytes', 1, 1, 0xffffffff);
  const allowPartialMessage = r.bool('allow_partial_message', false);
  const packAsBytes = r.bool('pack_as_bytes', false);
  r.done();
  return { maxRequestBytes, allowPartialMessage, packAsBytes };
}

/** ExtAuthzPerRoute (typed_per_filter_config). */
export function decodeExtAuthzPerRoute(r: Reader): ExtAuthzPerRoute {
  const which = r.oneof(['disabled', 'check_settings'] as const);
  const disabled = which === 'disabled' ? r.bool('disabled', false) : false;
  const contextExtensions: Record<string, string> = {};
  let disableRequestBodyBuffering = false;
  const cs = which === 'check_settings' ? r.obj('check_settings') : undefined;
  if (cs) {
    const m = cs.map('context_extensions') ?? {};
    for (const [k, v] of Object.entries(m)) {
      if (typeof v === 'string') contextExtensions[k] = v;
      else cs.issues.error(`${cs.sub('context_extensions')}.${k}`, 'expected a string');
    }
    disableRequestBodyBuffering = cs.bool('disable_request_body_buffering', false);
    cs.done();
  }
  r.done();
  return Object.freeze({ kind: 'ext_authz_per_route', disabled, contextExtensions, disableRequestBodyBuffering });
}
