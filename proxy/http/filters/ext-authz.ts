/**
 * External authorization, `envoy.extensions.filters.http.ext_authz.v3.ExtAuthz` (Envoy's
 * envoy.filters.http.ext_authz), and its per-route `ExtAuthzPerRoute`.
 *
 * On request headers the filter asks an authorization service and holds the request until it
 * answers: over gRPC with `envoy.service.auth.v3.Authorization/Check` (a real CheckRequest with
 * source/destination addresses and principals and the request's method, path, host, scheme and
 * headers) or over HTTP (`http_service`: the request's method and path_prefix + path with the
 * allowed headers; 200 = allowed). Allowed: the authorizer's headers are applied to the upstream
 * request (gRPC ok_response.headers — append defaults to false here, as in Envoy — and
 * headers_to_remove; HTTP allowed_upstream_headers). Denied: its status (403 by default), body and
 * headers go to the client with response flag UAEX. A failure or a timeout answers
 * `status_on_error` (403) with UAEX, unless `failure_mode_allow` lets the request through (and
 * adds `x-envoy-auth-failure-mode-allowed: true` with failure_mode_allow_header_add).
 *
 * Leans fail-closed and lean: one pending call per request, no body buffering (with_request_body
 * is refused at config time rather than silently ignored).
 */
import { decodeStringMatcher } from '../../config/envoy/matchers';
import { decodeHeadersToAdd } from '../../config/envoy/headers';
import type { Reader } from '../../../common/reader';
import type { HeaderValueOption, StringMatcher } from '../../config/types';
import { MeshletError } from '../../../common/errors';
import type { DownstreamConnectionInfo, HeaderList, RequestHead } from '../codec';
import { FilterStatus, type HttpFilter, type HttpFilterCallbacks, type HttpFilterFactory } from '../filter';
import { addHeader, getHeader, removeHeader, setHeader } from '../headers';
import { matchString } from '../route-matcher';
import {
  checkTransportApiVersion,
  decodeGrpcServiceField,
  decodeHttpUri,
  type GrpcTarget,
  type HttpUriConfig,
} from '../../config/filters/grpc-service';
import { httpCall, unaryCall } from './service-client';

export const EXT_AUTHZ_TYPE_NAME = 'envoy.extensions.filters.http.ext_authz.v3.ExtAuthz';
export const EXT_AUTHZ_PER_ROUTE_TYPE_NAME = 'envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute';

/** http_service of ExtAuthz. */
export interface ExtAuthzHttpService {
  readonly serverUri: HttpUriConfig;
  readonly pathPrefix: string;
  /** authorization_request.allowed_headers (plus Envoy's always-sent set). Empty = the defaults only. */
  readonly allowedHeaders: readonly StringMatcher[];
  /** authorization_request.headers_to_add (literal values). */
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
}

/** Decoded ExtAuthzPerRoute. */
export interface ExtAuthzPerRoute {
  readonly kind: 'ext_authz_per_route';
  readonly disabled: boolean;
  /** check_settings.context_extensions, sent in the CheckRequest. */
  readonly contextExtensions: Readonly<Record<string, string>>;
}

/** Envoy's ext_authz stats: ok, denied, error, failure_mode_allowed. */
export class ExtAuthzStats {
  ok = 0;
  denied = 0;
  error = 0;
  failureModeAllowed = 0;
  constructor(readonly statPrefix: string) {}
}
const statsByPrefix = new Map<string, ExtAuthzStats>();
/** Counters `<stat_prefix>ext_authz.*` (shared by the HTTP and network filters). */
export function extAuthzStats(prefix: string): ExtAuthzStats {
  let s = statsByPrefix.get(prefix);
  if (s === undefined) {
    s = new ExtAuthzStats(prefix);
    statsByPrefix.set(prefix, s);
  }
  return s;
}
export function allExtAuthzStats(): readonly ExtAuthzStats[] {
  return [...statsByPrefix.values()];
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

function decodeHttpService(r: Reader): ExtAuthzHttpService | undefined {
  const su = r.obj('server_uri');
  if (!su) r.error('server_uri', 'is required');
  const serverUri = su ? decodeHttpUri(su, { schemeOptional: true }) : undefined;
  const pathPrefix = r.str('path_prefix', '');
  if (pathPrefix && !pathPrefix.startsWith('/')) r.error('path_prefix', 'must start with "/"');
  const req = r.obj('authorization_request');
  const allowedHeaders = matcherList(req, 'allowed_headers');
  const headersToAdd = req ? decodeHeadersToAdd(req, 'headers_to_add') : [];
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

/** Envoy's default gRPC timeout for ext_authz calls. */
export function decodeExtAuthz(r: Reader): ExtAuthzConfig {
  const which = r.oneof(['grpc_service', 'http_service'] as const);
  if (which === undefined) r.issues.error(r.path, 'one of grpc_service, http_service must be set');
  const grpc = which === 'grpc_service' ? decodeGrpcServiceField(r) : undefined;
  const hs = which === 'http_service' ? r.obj('http_service') : undefined;
  const http = hs ? decodeHttpService(hs) : undefined;
  checkTransportApiVersion(r);
  const failureModeAllow = r.bool('failure_mode_allow', false);
  const failureModeAllowHeaderAdd = r.bool('failure_mode_allow_header_add', false);
  let statusOnError = 403;
  const se = r.obj('status_on_error');
  if (se) {
    statusOnError = se.int('code', 403, 100, 599);
    se.done();
  }
  const statPrefix = r.str('stat_prefix', '');
  const includePeerCertificate = r.bool('include_peer_certificate', false);
  const clearRouteCache = r.bool('clear_route_cache', false);
  if (r.has('with_request_body')) r.error('with_request_body', 'sending the request body is not supported by meshlet');
  r.raw('with_request_body');
  for (const k of ['filter_enabled', 'filter_enabled_metadata', 'deny_at_disable']) {
    if (r.has(k)) r.error(k, 'runtime/metadata gating is not supported by meshlet');
    r.raw(k);
  }
  // Counting only: accepted. Anything that would change the CheckRequest is left to warn.
  r.ignore('emit_filter_state_stats');
  r.done();
  extAuthzStats(statPrefix);
  return {
    kind: 'ext_authz',
    ...(grpc ? { grpc } : {}),
    ...(http ? { http } : {}),
    failureModeAllow,
    failureModeAllowHeaderAdd,
    statusOnError,
    statPrefix,
    includePeerCertificate,
    clearRouteCache,
  };
}

function decodePerRoute(r: Reader): ExtAuthzPerRoute {
  const which = r.oneof(['disabled', 'check_settings'] as const);
  const disabled = which === 'disabled' ? r.bool('disabled', false) : false;
  const contextExtensions: Record<string, string> = {};
  const cs = which === 'check_settings' ? r.obj('check_settings') : undefined;
  if (cs) {
    const m = cs.map('context_extensions') ?? {};
    for (const [k, v] of Object.entries(m)) {
      if (typeof v === 'string') contextExtensions[k] = v;
      else cs.issues.error(`${cs.sub('context_extensions')}.${k}`, 'expected a string');
    }
    // The body is never sent (with_request_body is refused), so turning buffering off is a no-op.
    cs.ignore('disable_request_body_buffering');
    cs.done();
  }
  r.done();
  return Object.freeze({ kind: 'ext_authz_per_route', disabled, contextExtensions });
}

// ───────────────────────────── CheckRequest ─────────────────────────────

function socketAddress(address: string, port: number): Record<string, unknown> {
  return { socket_address: { address, port_value: port } };
}

/** AttributeContext.Peer pair for a downstream connection (used by the network filter too). */
export function peers(conn: DownstreamConnectionInfo, includeCert: boolean): Record<string, unknown> {
  return {
    source: {
      address: socketAddress(conn.remoteAddress, conn.remotePort),
      principal: conn.tls?.peerPrincipal ?? '',
      ...(includeCert && conn.tls?.peerCertificatePem ? { certificate: conn.tls.peerCertificatePem } : {}),
    },
    destination: {
      address: socketAddress(conn.localAddress, conn.localPort),
      principal: conn.tls?.localPrincipal ?? '',
    },
  };
}

function checkRequest(
  head: RequestHead,
  cb: HttpFilterCallbacks,
  cfg: ExtAuthzConfig,
  contextExtensions: Readonly<Record<string, string>>,
): Record<string, unknown> {
  const headers: Record<string, string> = {
    ':authority': head.authority,
    ':method': head.method,
    ':path': head.path,
    ':scheme': head.scheme,
  };
  const h = head.headers;
  for (let i = 0; i < h.length; i += 2) {
    const k = h[i]!;
    headers[k] = headers[k] === undefined ? h[i + 1]! : `${headers[k]},${h[i + 1]!}`;
  }
  const q = head.path.indexOf('?');
  const now = Date.now();
  return {
    attributes: {
      ...peers(cb.connection, cfg.includePeerCertificate),
      request: {
        time: { seconds: String(Math.floor(now / 1000)), nanos: (now % 1000) * 1e6 },
        http: {
          id: getHeader(h, 'x-request-id') ?? '',
          method: head.method,
          headers,
          path: head.path,
          host: head.authority,
          scheme: head.scheme,
          query: q >= 0 ? head.path.slice(q + 1) : '',
          size: String(head.contentLength),
          protocol: head.protocol,
        },
      },
      context_extensions: contextExtensions,
    },
  };
}

/** Apply an envoy.config.core.v3.HeaderValueOption list from a CheckResponse (append default false). */
function applyWireHeaders(target: HeaderList, list: unknown, appendDefault: boolean): void {
  if (!Array.isArray(list)) return;
  for (const o of list as { header?: { key?: string; value?: string }; append?: { value?: boolean } | null; append_action?: string }[]) {
    const key = o.header?.key?.toLowerCase();
    if (!key) continue;
    const value = o.header?.value ?? '';
    let append = appendDefault;
    if (o.append !== null && o.append !== undefined) append = o.append.value === true;
    const action = o.append_action;
    if (action === 'ADD_IF_ABSENT') {
      if (getHeader(target, key) === undefined) target.push(key, value);
    } else if (action === 'OVERWRITE_IF_EXISTS_OR_ADD' || (!append && (action === undefined || action === 'APPEND_IF_EXISTS_OR_ADD'))) {
      setHeader(target, key, value);
    } else if (action === 'OVERWRITE_IF_EXISTS') {
      if (getHeader(target, key) !== undefined) setHeader(target, key, value);
    } else addHeader(target, key, value);
  }
}

function anyMatch(ms: readonly StringMatcher[], name: string): boolean {
  for (let i = 0; i < ms.length; i++) if (matchString(ms[i]!, name)) return true;
  return false;
}

/** Headers Envoy always forwards to an HTTP authorizer. */
const ALWAYS_SENT = ['authorization', 'content-length'];
/** Headers an HTTP authorizer's denied response never passes to the client. */
const NEVER_TO_CLIENT = new Set(['host', 'content-length', 'transfer-encoding', 'connection', 'keep-alive']);

// ───────────────────────────── the filter ─────────────────────────────

class ExtAuthzFilter implements HttpFilter {
  private pending = false;
  private done = false;
  private head: RequestHead | undefined;
  /** Headers for the upstream's response (allowed_client_headers_on_success). */
  private responseHeaders: HeaderList | undefined;

  constructor(
    private readonly config: ExtAuthzConfig,
    private readonly cb: HttpFilterCallbacks,
  ) {}

  decodeHeaders(head: RequestHead): FilterStatus {
    const per = this.cb.perRouteConfig() as ExtAuthzPerRoute | undefined;
    let ext: Readonly<Record<string, string>> = {};
    if (per !== undefined && per.kind === 'ext_authz_per_route') {
      if (per.disabled) return FilterStatus.Continue;
      ext = per.contextExtensions;
    }
    this.head = head;
    this.pending = true;
    const cfg = this.config;
    if (cfg.grpc !== undefined) {
      unaryCall(this.cb.clusters, cfg.grpc, 'auth', 'Check', checkRequest(head, this.cb, cfg, ext), (err, res) =>
        this.onGrpcResult(err, res),
      );
    } else if (cfg.http !== undefined) {
      this.callHttp(head, cfg.http).then(
        (r) => this.onHttpResult(r, undefined),
        (err: unknown) => this.onHttpResult(undefined, err as Error),
      );
    } else {
      this.pending = false;
      return FilterStatus.Continue;
    }
    // The callback may have run synchronously (no host): then the decision is already applied.
    return this.pending ? FilterStatus.StopIteration : this.syncResult;
  }

  private syncResult: FilterStatus = FilterStatus.Continue;

  encodeHeaders(head: { headers: HeaderList }): FilterStatus {
    const add = this.responseHeaders;
    if (add !== undefined) for (let i = 0; i < add.length; i += 2) setHeader(head.headers, add[i]!, add[i + 1]!);
    return FilterStatus.Continue;
  }

  onDestroy(): void {
    this.done = true;
  }

  private finish(allow: boolean): void {
    const wasPending = this.pending;
    this.pending = false;
    if (!allow) {
      this.syncResult = FilterStatus.StopIteration;
      return;
    }
    if (this.config.clearRouteCache) this.cb.clearRouteCache();
    if (wasPending) this.cb.continueDecoding();
  }

  private onError(err: Error): void {
    const cfg = this.config;
    const stats = extAuthzStats(cfg.statPrefix);
    stats.error++;
    this.cb.setMetadata('ext_authz_error', err.message.slice(0, 200));
    if (cfg.failureModeAllow) {
      stats.failureModeAllowed++;
      if (cfg.failureModeAllowHeaderAdd && this.head) setHeader(this.head.headers, 'x-envoy-auth-failure-mode-allowed', 'true');
      this.finish(true);
      return;
    }
    this.deny(cfg.statusOnError, '', undefined, 'ext_authz_error');
  }

  private deny(status: number, body: string, headers: HeaderList | undefined, details: string): void {
    this.pending = false;
    this.syncResult = FilterStatus.StopIteration;
    this.cb.sendLocalReply(status, body, headers, 'UAEX', details);
  }

  private onGrpcResult(err: Error | undefined, res: Record<string, unknown> | undefined): void {
    if (this.done) return;
    if (err !== undefined || res === undefined) {
      this.onError(err ?? new Error('empty response'));
      return;
    }
    const stats = extAuthzStats(this.config.statPrefix);
    const code = Number((res.status as { code?: number } | undefined)?.code ?? 0);
    if (code === 0) {
      stats.ok++;
      const ok = res.ok_response as Record<string, unknown> | undefined;
      if (ok && this.head) {
        applyWireHeaders(this.head.headers, ok.headers, false);
        const rm = ok.headers_to_remove;
        if (Array.isArray(rm)) for (const n of rm as string[]) removeHeader(this.head.headers, n.toLowerCase());
        if (Array.isArray(ok.response_headers_to_add) && ok.response_headers_to_add.length > 0) {
          this.responseHeaders = [];
          applyWireHeaders(this.responseHeaders, ok.response_headers_to_add, false);
        }
      }
      this.finish(true);
      return;
    }
    stats.denied++;
    const d = res.denied_response as Record<string, unknown> | undefined;
    let status = 403;
    const headers: HeaderList = [];
    let body = '';
    if (d) {
      const s = d.status as { code?: string | number } | undefined;
      const n = typeof s?.code === 'number' ? s.code : HTTP_STATUS_NAMES[String(s?.code ?? '')];
      if (n !== undefined && n >= 100 && n <= 599 && n !== 0) status = n;
      applyWireHeaders(headers, d.headers, false);
      body = typeof d.body === 'string' ? d.body : '';
    }
    this.deny(status, body, headers, 'ext_authz_denied');
  }

  private async callHttp(head: RequestHead, hs: ExtAuthzHttpService) {
    const out: string[] = [];
    const h = head.headers;
    for (let i = 0; i < h.length; i += 2) {
      const k = h[i]!;
      if (ALWAYS_SENT.includes(k) || anyMatch(hs.allowedHeaders, k)) out.push(k, h[i + 1]!);
    }
    for (const o of hs.headersToAdd) setHeader(out, o.key, o.value);
    if (getHeader(out, 'content-length') !== undefined) setHeader(out, 'content-length', '0');
    const url = new URL(hs.serverUri.uri);
    return httpCall(this.cb.clusters, hs.serverUri.cluster, {
      method: head.method === 'CONNECT' ? 'GET' : head.method,
      path: hs.pathPrefix + head.path,
      host: head.authority || url.host,
      headers: out,
      timeoutMs: hs.serverUri.timeoutMs,
    });
  }

  private onHttpResult(r: { status: number; headers: string[]; body: Buffer } | undefined, err: Error | undefined): void {
    if (this.done) return;
    if (r === undefined) {
      this.onError(err ?? new Error('no response'));
      return;
    }
    const hs = this.config.http!;
    const stats = extAuthzStats(this.config.statPrefix);
    if (r.status === 200) {
      stats.ok++;
      const h = this.head!.headers;
      for (let i = 0; i < r.headers.length; i += 2) {
        const k = r.headers[i]!;
        const v = r.headers[i + 1]!;
        if (anyMatch(hs.allowedUpstreamHeaders, k)) setHeader(h, k, v);
        else if (anyMatch(hs.allowedUpstreamHeadersToAppend, k)) addHeader(h, k, v);
        if (anyMatch(hs.allowedClientHeadersOnSuccess, k)) (this.responseHeaders ??= []).push(k, v);
      }
      this.finish(true);
      return;
    }
    // Envoy treats every non-200 answer of an HTTP authorizer as a denial carrying its status.
    stats.denied++;
    const headers: HeaderList = [];
    for (let i = 0; i < r.headers.length; i += 2) {
      const k = r.headers[i]!;
      if (NEVER_TO_CLIENT.has(k) || k === 'date' || k === 'content-type') continue;
      if (hs.allowedClientHeaders.length === 0 || anyMatch(hs.allowedClientHeaders, k)) headers.push(k, r.headers[i + 1]!);
    }
    const ct = getHeader(r.headers, 'content-type');
    if (ct !== undefined && r.body.length > 0) headers.push('content-type', ct);
    this.deny(r.status, r.body.toString('utf8'), headers, 'ext_authz_denied');
  }
}

/** envoy.type.v3.StatusCode enum names → numbers (denied_response.status.code). */
const HTTP_STATUS_NAMES: Record<string, number> = {
  Empty: 0,
  Continue: 100,
  OK: 200,
  BadRequest: 400,
  Unauthorized: 401,
  PaymentRequired: 402,
  Forbidden: 403,
  NotFound: 404,
  MethodNotAllowed: 405,
  Conflict: 409,
  Gone: 410,
  PayloadTooLarge: 413,
  TooManyRequests: 429,
  InternalServerError: 500,
  BadGateway: 502,
  ServiceUnavailable: 503,
  GatewayTimeout: 504,
};

export const extAuthzFilterFactory: HttpFilterFactory<ExtAuthzConfig> = {
  typeName: EXT_AUTHZ_TYPE_NAME,
  decode: decodeExtAuthz,
  decodePerRoute(r: Reader): unknown {
    r.issues.error(r.path, `use ${EXT_AUTHZ_PER_ROUTE_TYPE_NAME} for per-route ext_authz configuration`);
    return undefined;
  },
  create(config: ExtAuthzConfig, callbacks: HttpFilterCallbacks): HttpFilter {
    return new ExtAuthzFilter(config, callbacks);
  },
};

/** Registered so typed_per_filter_config entries of ExtAuthzPerRoute decode; not a filter itself. */
export const extAuthzPerRouteFactory: HttpFilterFactory<undefined> = {
  typeName: EXT_AUTHZ_PER_ROUTE_TYPE_NAME,
  decode(r: Reader): undefined {
    r.issues.error(r.sub('@type'), `${EXT_AUTHZ_PER_ROUTE_TYPE_NAME} is only valid in typed_per_filter_config`);
    return undefined;
  },
  decodePerRoute,
  create(): HttpFilter {
    throw new MeshletError('MESHLET_ERR_INTERNAL', 'ExtAuthzPerRoute is not an HTTP filter');
  },
};
