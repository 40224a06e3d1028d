/**
 * The gRPC side of ext_authz: the `envoy.service.auth.v3.CheckRequest` built from a request (and
 * from a connection, for the network filter), and the reading of a CheckResponse — ok_response
 * header mutations (append defaults to false, as in Envoy) and denied_response status, body and
 * headers. The call itself goes through service-client.ts.
 */
import type { DownstreamConnectionInfo, HeaderList, RequestHead } from '../codec';
import type { HttpFilterCallbacks } from '../filter';
import { addHeader, getHeader, removeHeader, setHeader } from '../headers';
import type { StringMatcher } from '../../config/types';
import { matchString } from '../route-matcher';
import { type ExtAuthzConfig, HTTP_STATUS_NAMES } from './ext-authz-config';

function allowed(ms: readonly StringMatcher[] | undefined, name: string): boolean {
  if (ms === undefined) return true;
  for (let i = 0; i < ms.length; i++) if (matchString(ms[i]!, name)) return true;
  return false;
}

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

/** Set on the check request's headers when a body is sent: whether it was cut at max_request_bytes. */
export const PARTIAL_BODY_HEADER = 'x-envoy-auth-partial-body';

/**
 * The CheckRequest for one HTTP request (proto-loader plain form). `body` is the buffered request
 * body (with_request_body): its first max_request_bytes go in `body` (UTF-8) or `raw_body`
 * (pack_as_bytes), with x-envoy-auth-partial-body among the headers, as in Envoy.
 */
export function checkRequest(
  head: RequestHead,
  cb: HttpFilterCallbacks,
  cfg: ExtAuthzConfig,
  contextExtensions: Readonly<Record<string, string>>,
  body?: Buffer,
): Record<string, unknown> {
  const ah = cfg.allowedHeaders;
  const headers: Record<string, string> = {};
  if (allowed(ah, ':authority')) headers[':authority'] = head.authority;
  if (allowed(ah, ':method')) headers[':method'] = head.method;
  if (allowed(ah, ':path')) headers[':path'] = head.path;
  if (allowed(ah, ':scheme')) headers[':scheme'] = head.scheme;
  const h = head.headers;
  for (let i = 0; i < h.length; i += 2) {
    const k = h[i]!;
    // The client's own x-envoy-auth-partial-body never reaches the authorizer (Envoy).
    if (k === PARTIAL_BODY_HEADER || (ah !== undefined && !allowed(ah, k))) continue;
    headers[k] = headers[k] === undefined ? h[i + 1]! : `${headers[k]},${h[i + 1]!}`;
  }
  const q = head.path.indexOf('?');
  const now = Date.now();
  const http: Record<string, unknown> = {
    id: getHeader(h, 'x-request-id') ?? '',
    method: head.method,
    headers,
    path: head.path,
    host: head.authority,
    scheme: head.scheme,
    query: q >= 0 ? head.path.slice(q + 1) : '',
    size: String(head.contentLength),
    protocol: head.protocol,
  };
  const wb = cfg.withRequestBody;
  if (body !== undefined && wb !== undefined) {
    const sent = body.length > wb.maxRequestBytes ? body.subarray(0, wb.maxRequestBytes) : body;
    if (wb.packAsBytes) http.raw_body = sent;
    else http.body = sent.toString('utf8');
    headers[PARTIAL_BODY_HEADER] = sent.length !== body.length ? 'true' : 'false';
  }
  return {
    attributes: {
      ...peers(cb.connection, cfg.includePeerCertificate),
      request: {
        time: { seconds: String(Math.floor(now / 1000)), nanos: (now % 1000) * 1e6 },
        http,
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

/** Whether a CheckResponse allows the request (status.code OK). */
export function checkAllowed(res: Record<string, unknown>): boolean {
  return Number((res.status as { code?: number } | undefined)?.code ?? 0) === 0;
}

/**
 * Apply an allowing CheckResponse's ok_response to the request headers; returns the headers it
 * asks to add to the upstream's response (response_headers_to_add), if any.
 */
export function applyOkResponse(res: Record<string, unknown>, requestHeaders: HeaderList): HeaderList | undefined {
  const ok = res.ok_response as Record<string, unknown> | undefined;
  if (!ok) return undefined;
  applyWireHeaders(requestHeaders, ok.headers, false);
  const rm = ok.headers_to_remove;
  if (Array.isArray(rm)) for (const n of rm as string[]) removeHeader(requestHeaders, n.toLowerCase());
  if (Array.isArray(ok.response_headers_to_add) && ok.response_headers_to_add.length > 0) {
    const out: HeaderList = [];
    applyWireHeaders(out, ok.response_headers_to_add, false);
    return out;
  }
  return undefined;
}

/** The local reply a denying CheckResponse asks for (403 unless denied_response says otherwise). */
export interface DeniedReply {
  readonly status: number;
  readonly body: string;
  readonly headers: HeaderList;
}

export function deniedReply(res: Record<string, unknown>): DeniedReply {
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
  return { status, body, headers };
}
