/**
 * The HTTP side of ext_authz (`http_service`): the check request sent to the authorizer (the
 * request's method and path_prefix + path, Envoy's always-sent headers plus allowed_headers and
 * headers_to_add) and the reading of its answer — 200 allows and copies allowed_upstream_headers
 * (and _to_append) onto the request and allowed_client_headers_on_success onto the response; a 5xx
 * is the authorizer's failure (status_on_error, or failure_mode_allow); any other status denies
 * with that status, body and the allowed_client_headers.
 */
import type { ClusterLookup } from '../../upstream/types';
import type { StringMatcher } from '../../config/types';
import type { HeaderList, RequestHead } from '../codec';
import { addHeader, getHeader, setHeader } from '../headers';
import { matchString } from '../route-matcher';
import type { ExtAuthzBodySettings, ExtAuthzHttpService } from './ext-authz-config';
import { type DeniedReply, PARTIAL_BODY_HEADER } from './ext-authz-grpc';
import { httpCall, type HttpCallResult } from './service-client';

function anyMatch(ms: readonly StringMatcher[], name: string): boolean {
  for (let i = 0; i < ms.length; i++) if (matchString(ms[i]!, name)) return true;
  return false;
}

/** Headers Envoy always forwards to an HTTP authorizer. */
const ALWAYS_SENT = ['authorization', 'content-length'];
/** Headers an HTTP authorizer's denied response never passes to the client. */
const NEVER_TO_CLIENT = new Set(['host', 'content-length', 'transfer-encoding', 'connection', 'keep-alive']);

/**
 * Ask the HTTP authorizer about `head`; rejects on connect errors and timeouts. With
 * with_request_body the buffered body's first max_request_bytes are forwarded as the check's body
 * (Content-Length set to match) — except with pack_as_bytes, where Envoy puts the body only in the
 * gRPC raw_body and its HTTP client sends none.
 */
export function httpCheck(
  clusters: ClusterLookup,
  hs: ExtAuthzHttpService,
  head: RequestHead,
  body?: Buffer,
  settings?: ExtAuthzBodySettings,
): Promise<HttpCallResult> {
  const out: string[] = [];
  const h = head.headers;
  for (let i = 0; i < h.length; i += 2) {
    const k = h[i]!;
    if (k === PARTIAL_BODY_HEADER) continue;
    if (ALWAYS_SENT.includes(k) || anyMatch(hs.allowedHeaders, k)) out.push(k, h[i + 1]!);
  }
  for (const o of hs.headersToAdd) setHeader(out, o.key, o.value);
  let sent: Buffer | undefined;
  if (body !== undefined && settings !== undefined) {
    const cut = body.length > settings.maxRequestBytes ? body.subarray(0, settings.maxRequestBytes) : body;
    if (!settings.packAsBytes && cut.length > 0) sent = cut;
    if (anyMatch(hs.allowedHeaders, PARTIAL_BODY_HEADER)) setHeader(out, PARTIAL_BODY_HEADER, cut.length !== body.length ? 'true' : 'false');
  }
  if (sent !== undefined) setHeader(out, 'content-length', String(sent.length));
  else if (getHeader(out, 'content-length') !== undefined) setHeader(out, 'content-length', '0');
  const url = new URL(hs.serverUri.uri);
  return httpCall(clusters, hs.serverUri.cluster, {
    method: head.method === 'CONNECT' ? 'GET' : head.method,
    path: hs.pathPrefix + head.path,
    host: head.authority || url.host,
    headers: out,
    ...(sent !== undefined ? { body: sent } : {}),
    timeoutMs: hs.serverUri.timeoutMs,
  });
}

/**
 * Apply an allowing (200) answer to the request headers; returns the headers for the upstream's
 * response (allowed_client_headers_on_success), if any.
 */
export function applyHttpOk(hs: ExtAuthzHttpService, r: HttpCallResult, requestHeaders: HeaderList): HeaderList | undefined {
  let responseHeaders: HeaderList | undefined;
  for (let i = 0; i < r.headers.length; i += 2) {
    const k = r.headers[i]!;
    const v = r.headers[i + 1]!;
    if (anyMatch(hs.allowedUpstreamHeaders, k)) setHeader(requestHeaders, k, v);
    else if (anyMatch(hs.allowedUpstreamHeadersToAppend, k)) addHeader(requestHeaders, k, v);
    if (anyMatch(hs.allowedClientHeadersOnSuccess, k)) (responseHeaders ??= []).push(k, v);
  }
  return responseHeaders;
}

/** The local reply for a denying answer: its status and body, with the allowed client headers. */
export function httpDeniedReply(hs: ExtAuthzHttpService, r: HttpCallResult): DeniedReply {
  const headers: HeaderList = [];
  for (let i = 0; i < r.headers.length; i += 2) {
    const k = r.headers[i]!;
    if (NEVER_TO_CLIENT.has(k) || k === 'date' || k === 'content-type') continue;
    if (hs.allowedClientHeaders.length === 0 || anyMatch(hs.allowedClientHeaders, k)) headers.push(k, r.headers[i + 1]!);
  }
  const ct = getHeader(r.headers, 'content-type');
  if (ct !== undefined && r.body.length > 0) headers.push('content-type', ct);
  return { status: r.status, body: r.body.toString('utf8'), headers };
}
