/**
 * Flat header list helpers and the standard proxy headers.
 *
 * Owns: lookups and edits on the codec's flat `[name, value, …]` arrays (names lower-case),
 * Envoy's HeaderValueOption application (append actions, keep_empty_value, a small set of
 * `%FORMAT%` substitutions), hop-by-hop stripping, and the x-forwarded-for / x-forwarded-proto /
 * x-request-id / x-envoy-* edge rules of the HTTP connection manager.
 *
 * Leans towards the hot path: linear scans over small arrays (cheaper than a Map per request),
 * in-place edits, and no allocation when nothing needs to change.
 */
import { randomUUID } from 'node:crypto';
import { isIP } from 'node:net';
import type { HcmConfig, HeaderValueOption } from '../config/types';
import type { DownstreamConnectionInfo, HeaderList, RequestHead, ResponseHead } from './codec';

// ───────────────────────────── basic list operations ─────────────────────────────

/** First value of `name` (lower-case), or undefined. */
export function getHeader(h: HeaderList, name: string): string | undefined {
  for (let i = 0; i < h.length; i += 2) if (h[i] === name) return h[i + 1];
  return undefined;
}

/** All values of `name` joined with "," (Envoy's view for matching), or undefined when absent. */
export function getHeaderJoined(h: HeaderList, name: string): string | undefined {
  let out: string | undefined;
  for (let i = 0; i < h.length; i += 2) {
    if (h[i] === name) out = out === undefined ? h[i + 1] : `${out},${h[i + 1]}`;
  }
  return out;
}

export function hasHeader(h: HeaderList, name: string): boolean {
  for (let i = 0; i < h.length; i += 2) if (h[i] === name) return true;
  return false;
}

/** Append one entry (keeps existing values). */
export function addHeader(h: HeaderList, name: string, value: string): void {
  h.push(name, value);
}

/** Replace every value of `name` with one value (added at the end when absent). */
export function setHeader(h: HeaderList, name: string, value: string): void {
  let found = false;
  let w = 0;
  for (let i = 0; i < h.length; i += 2) {
    if (h[i] === name) {
      if (found) continue;
      found = true;
      h[w] = name;
      h[w + 1] = value;
      w += 2;
      continue;
    }
    if (w !== i) {
      h[w] = h[i]!;
      h[w + 1] = h[i + 1]!;
    }
    w += 2;
  }
  h.length = w;
  if (!found) h.push(name, value);
}

/** Remove every entry named `name`; returns how many were removed. */
export function removeHeader(h: HeaderList, name: string): number {
  let w = 0;
  for (let i = 0; i < h.length; i += 2) {
    if (h[i] === name) continue;
    if (w !== i) {
      h[w] = h[i]!;
      h[w + 1] = h[i + 1]!;
    }
    w += 2;
  }
  const removed = (h.length - w) / 2;
  h.length = w;
  return removed;
}

/** Remove every entry whose name is in `names` (lower-case). */
export function removeHeaders(h: HeaderList, names: readonly string[]): void {
  if (names.length === 0) return;
  let w = 0;
  for (let i = 0; i < h.length; i += 2) {
    if (names.includes(h[i]!)) continue;
    if (w !== i) {
      h[w] = h[i]!;
      h[w + 1] = h[i + 1]!;
    }
    w += 2;
  }
  h.length = w;
}

/**
 * Remove the listed x-envoy-* headers. Cheap on the common path: one scan with a prefix test,
 * and nothing else when no header starts with "x-envoy-".
 */
export function removeEnvoyHeaders(h: HeaderList, names: readonly string[]): void {
  for (let i = 0; i < h.length; i += 2) {
    if (h[i]!.startsWith('x-envoy-')) {
      removeHeaders(h, names);
      return;
    }
  }
}

/** Remove entries whose name starts with `prefix`. */
export function removeHeadersWithPrefix(h: HeaderList, prefix: string): void {
  let w = 0;
  for (let i = 0; i < h.length; i += 2) {
    if (h[i]!.startsWith(prefix)) continue;
    if (w !== i) {
      h[w] = h[i]!;
      h[w + 1] = h[i + 1]!;
    }
    w += 2;
  }
  h.length = w;
}

// ───────────────────────────── hop-by-hop ─────────────────────────────

/**
 * Connection-specific headers a proxy never forwards (RFC 9110 §7.6.1). `te: trailers` is kept
 * because gRPC needs it end to end; codecs strip the rest already, this is the safety net for
 * responses and for names listed in `connection:`.
 */
const HOP_BY_HOP = ['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'http2-settings'];

export function isHopByHop(name: string): boolean {
  return HOP_BY_HOP.includes(name);
}

/** Strip hop-by-hop headers in place (and a `te` other than "trailers"). No allocation when clean. */
export function stripHopByHop(h: HeaderList): void {
  let dirty = false;
  for (let i = 0; i < h.length; i += 2) {
    const n = h[i]!;
    if (HOP_BY_HOP.includes(n) || (n === 'te' && h[i + 1]!.toLowerCase() !== 'trailers')) {
      dirty = true;
      break;
    }
  }
  if (!dirty) return;
  let w = 0;
  for (let i = 0; i < h.length; i += 2) {
    const n = h[i]!;
    if (HOP_BY_HOP.includes(n) || (n === 'te' && h[i + 1]!.toLowerCase() !== 'trailers')) continue;
    if (w !== i) {
      h[w] = n;
      h[w + 1] = h[i + 1]!;
    }
    w += 2;
  }
  h.length = w;
}

// ───────────────────────────── HeaderValueOption ─────────────────────────────

/** What `%FORMAT%` operators in header values may refer to. */
export interface HeaderFormatContext {
  readonly connection: DownstreamConnectionInfo;
  readonly request?: RequestHead;
  /** "ip:port" of the chosen upstream host, when known. */
  readonly upstreamHost?: string;
  readonly protocol?: string;
  readonly hostname?: string;
  /** The response being encoded, for %RESP(…)% (response header mutations). Optional (additive). */
  readonly response?: ResponseHead;
  /** The chosen upstream host's filter_metadata, for %UPSTREAM_METADATA([…])%. Optional (additive). */
  readonly upstreamMetadata?: Readonly<Record<string, unknown>>;
}

function formatAddress(addr: string, port: number): string {
  return addr.includes(':') ? `[${addr}]:${port}` : `${addr}:${port}`;
}

/**
 * Resolve Envoy command operators in a header value. Supported: DOWNSTREAM_REMOTE_ADDRESS,
 * DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT, DOWNSTREAM_LOCAL_ADDRESS, DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT,
 * DOWNSTREAM_PEER_URI_SAN, DOWNSTREAM_LOCAL_URI_SAN, UPSTREAM_REMOTE_ADDRESS, PROTOCOL, HOSTNAME,
 * REQ(name?alt):max, RESP(name?alt):max, UPSTREAM_METADATA(["ns","key"]), START_TIME (ISO).
 * `%%` is a literal percent. Unknown operators resolve to "-" the way
 * Envoy prints missing values.
 */
export function formatHeaderValue(value: string, ctx: HeaderFormatContext): string {
  if (!value.includes('%')) return value;
  let out = '';
  let i = 0;
  while (i < value.length) {
    const p = value.indexOf('%', i);
    if (p < 0) {
      out += value.slice(i);
      break;
    }
    out += value.slice(i, p);
    if (value[p + 1] === '%') {
      out += '%';
      i = p + 2;
      continue;
    }
    const q = value.indexOf('%', p + 1);
    if (q < 0) {
      out += value.slice(p);
      break;
    }
    out += resolveOperator(value.slice(p + 1, q), ctx);
    i = q + 1;
  }
  return out;
}

function resolveOperator(op: string, ctx: HeaderFormatContext): string {
  const c = ctx.connection;
  switch (op) {
    case 'DOWNSTREAM_REMOTE_ADDRESS':
      return formatAddress(c.remoteAddress, c.remotePort);
    case 'DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT':
    case 'DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT':
      return c.remoteAddress;
    case 'DOWNSTREAM_LOCAL_ADDRESS':
      return formatAddress(c.localAddress, c.localPort);
    case 'DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT':
      return c.localAddress;
    case 'DOWNSTREAM_PEER_URI_SAN':
      return c.tls?.peerPrincipal ?? '-';
    case 'DOWNSTREAM_LOCAL_URI_SAN':
      return c.tls?.localPrincipal ?? '-';
    case 'UPSTREAM_REMOTE_ADDRESS':
      return ctx.upstreamHost ?? '-';
    case 'PROTOCOL':
      return ctx.protocol ?? ctx.request?.protocol ?? '-';
    case 'HOSTNAME':
      return ctx.hostname ?? '-';
    case 'START_TIME':
      return new Date().toISOString();
  }
  if (op.startsWith('REQ(') || op.startsWith('RESP(')) return headerOperator(op, ctx);
  if (op.startsWith('UPSTREAM_METADATA(') && op.endsWith(')')) return metadataOperator(op.slice(18, -1), ctx.upstreamMetadata);
  return '-';
}

/** One request/response header value; `:authority`, `:path`, `:method`, `:scheme`, `:status` too. */
function headerValue(ctx: HeaderFormatContext, req: boolean, name: string): string | undefined {
  if (req) {
    const r = ctx.request;
    if (r === undefined) return undefined;
    if (name === ':authority') return r.authority || undefined;
    if (name === ':path') return r.path;
    if (name === ':method') return r.method;
    if (name === ':scheme') return r.scheme;
    return getHeader(r.headers, name);
  }
  const s = ctx.response;
  if (s === undefined) return undefined;
  if (name === ':status') return String(s.status);
  return getHeader(s.headers, name);
}

/**
 * Envoy's %REQ(X?Y):Z% / %RESP(X?Y):Z%: header X, else Y, truncated to Z characters; "-" when
 * absent.
 */
function headerOperator(op: string, ctx: HeaderFormatContext): string {
  const req = op.startsWith('REQ(');
  const close = op.lastIndexOf(')');
  if (close < 0) return '-';
  const inner = op.slice(req ? 4 : 5, close).toLowerCase();
  let max = -1;
  if (op.length > close + 1) {
    if (op[close + 1] !== ':' || !/^\d+$/.test(op.slice(close + 2))) return '-';
    max = Number(op.slice(close + 2));
  }
  const q = inner.indexOf('?');
  let v = headerValue(ctx, req, q < 0 ? inner : inner.slice(0, q));
  if (v === undefined && q >= 0) v = headerValue(ctx, req, inner.slice(q + 1));
  if (v === undefined) return '-';
  return max >= 0 && v.length > max ? v.slice(0, max) : v;
}

/** %UPSTREAM_METADATA(["namespace", "key", …])%: a string, number or bool at that path. */
function metadataOperator(arg: string, md: Readonly<Record<string, unknown>> | undefined): string {
  if (md === undefined) return '-';
  let path: unknown;
  try {
    path = JSON.parse(arg);
  } catch {
    return '-';
  }
  if (!Array.isArray(path) || path.length < 2) return '-';
  let v: unknown = md;
  for (const k of path) {
    if (v === null || typeof v !== 'object' || typeof k !== 'string') return '-';
    v = (v as Record<string, unknown>)[k];
  }
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  return '-';
}

/** Apply Envoy's `*_headers_to_add` entries with their append actions. */
export function applyHeaderOptions(h: HeaderList, opts: readonly HeaderValueOption[], ctx: HeaderFormatContext): void {
  for (let i = 0; i < opts.length; i++) {
    const o = opts[i]!;
    const v = formatHeaderValue(o.value, ctx);
    if (v === '' && !o.keepEmptyValue) continue;
    switch (o.appendAction) {
      case 'APPEND_IF_EXISTS_OR_ADD':
        h.push(o.key, v);
        break;
      case 'ADD_IF_ABSENT':
        if (!hasHeader(h, o.key)) h.push(o.key, v);
        break;
      case 'OVERWRITE_IF_EXISTS_OR_ADD':
        setHeader(h, o.key, v);
        break;
      case 'OVERWRITE_IF_EXISTS':
        if (hasHeader(h, o.key)) setHeader(h, o.key, v);
        break;
    }
  }
}

// ───────────────────────────── edge headers (HCM) ─────────────────────────────

/**
 * RFC 1918 / loopback / link-local / ULA: Envoy's definition of an "internal" address, which
 * decides whether a request is trusted (x-envoy-internal, x-envoy-* sanitising).
 */
export function isInternalAddress(ip: string): boolean {
  let a = ip;
  if (a.startsWith('::ffff:')) a = a.slice(7);
  const fam = isIP(a);
  if (fam === 4) {
    const dot = a.indexOf('.');
    const o1 = Number(a.slice(0, dot));
    const o2 = Number(a.slice(dot + 1, a.indexOf('.', dot + 1)));
    return o1 === 10 || o1 === 127 || (o1 === 172 && o2 >= 16 && o2 <= 31) || (o1 === 192 && o2 === 168);
  }
  if (fam === 6) {
    const l = a.toLowerCase();
    return l === '::1' || l.startsWith('fc') || l.startsWith('fd');
  }
  return false;
}

/**
 * Envoy-internal request headers only trusted from internal clients. Envoy removes this list from
 * external requests (see "HTTP header sanitizing" in its docs).
 */
export const ENVOY_SANITIZED_HEADERS: readonly string[] = [
  'x-envoy-decorator-operation',
  'x-envoy-downstream-service-cluster',
  'x-envoy-downstream-service-node',
  'x-envoy-expected-rq-timeout-ms',
  'x-envoy-external-address',
  'x-envoy-force-trace',
  'x-envoy-hedge-on-per-try-timeout',
  'x-envoy-internal',
  'x-envoy-ip-tags',
  'x-envoy-max-retries',
  'x-envoy-original-path',
  'x-envoy-retriable-header-names',
  'x-envoy-retriable-status-codes',
  'x-envoy-retry-grpc-on',
  'x-envoy-retry-on',
  'x-envoy-upstream-alt-stat-name',
  'x-envoy-upstream-rq-per-try-timeout-ms',
  'x-envoy-upstream-rq-timeout-ms',
  'x-envoy-upstream-stream-duration-ms',
  'x-envoy-attempt-count',
];

/** The edge decision for one request (what Envoy's ConnectionManagerUtility::mutateRequestHeaders returns). */
export interface EdgeResult {
  /** Whether the request comes from an internal (trusted) client. */
  internal: boolean;
  /** The trusted client address ("" when unknown). */
  trustedAddress: string;
}

/**
 * Apply Envoy's request header mutations at the connection manager:
 *  - `use_remote_address`: the client address is the connection's peer; it is appended to
 *    x-forwarded-for (unless `skip_xff_append`), x-forwarded-proto is overwritten, and
 *    x-envoy-external-address / x-envoy-internal are set.
 *  - otherwise the trusted client address is the `xff_num_trusted_hops + 1`-th address from the
 *    right of x-forwarded-for, and x-forwarded-proto is only filled when absent.
 *  - external requests lose the x-envoy-* control headers, and (unless
 *    `preserve_external_request_id`) any client-chosen x-request-id.
 *  - x-request-id is generated when absent and `generate_request_id`.
 * `out` is reused by the caller to avoid an allocation per request.
 */
export function mutateRequestHeaders(
  head: RequestHead,
  conn: DownstreamConnectionInfo,
  cfg: HcmConfig,
  out: EdgeResult,
): void {
  const h = head.headers;
  const scheme = conn.tls ? 'https' : 'http';
  let trusted = '';
  let singleHop = true;
  if (cfg.useRemoteAddress) {
    let remote = conn.remoteAddress;
    if (remote.startsWith('::ffff:')) remote = remote.slice(7);
    const xff = getHeaderJoined(h, 'x-forwarded-for');
    singleHop = xff === undefined;
    if (cfg.xffNumTrustedHops > 0 && xff) {
      trusted = xffAddressFromRight(xff, cfg.xffNumTrustedHops - 1) ?? remote;
    } else {
      trusted = remote;
    }
    if (!cfg.skipXffAppend) setHeader(h, 'x-forwarded-for', xff ? `${xff},${remote}` : remote);
    setHeader(h, 'x-forwarded-proto', scheme);
    head.scheme = scheme;
  } else {
    const xff = getHeaderJoined(h, 'x-forwarded-for');
    if (xff) {
      trusted = xffAddressFromRight(xff, cfg.xffNumTrustedHops) ?? '';
      singleHop = !xff.includes(',');
    }
    const xfp = getHeader(h, 'x-forwarded-proto');
    if (xfp === undefined) setHeader(h, 'x-forwarded-proto', scheme);
    else head.scheme = xfp;
  }
  // Envoy: with use_remote_address a request is internal only when it came from an internal
  // address and carried no other hops; without it, only when XFF is a single internal address.
  const internal = singleHop && trusted !== '' && isInternalAddress(trusted);
  out.internal = internal;
  out.trustedAddress = trusted;

  if (!internal) {
    removeEnvoyHeaders(h, ENVOY_SANITIZED_HEADERS);
    if (cfg.useRemoteAddress && trusted !== '') setHeader(h, 'x-envoy-external-address', trusted);
  } else if (cfg.useRemoteAddress) {
    setHeader(h, 'x-envoy-internal', 'true');
  }

  if (cfg.generateRequestId) {
    const edge = cfg.useRemoteAddress && !internal;
    if (!hasHeader(h, 'x-request-id') || (edge && !cfg.preserveExternalRequestId)) {
      setHeader(h, 'x-request-id', randomUUID());
    }
  }
}

/** The n-th (0-based) comma-separated address counting from the right, trimmed. */
export function xffAddressFromRight(xff: string, n: number): string | undefined {
  let end = xff.length;
  for (let k = 0; ; k++) {
    const comma = xff.lastIndexOf(',', end - 1);
    if (k === n) {
      const v = xff.slice(comma + 1, end).trim();
      return v === '' ? undefined : v;
    }
    if (comma < 0) return undefined;
    end = comma;
  }
}

/** Apply `server_header_transformation` to response headers. */
export function applyServerHeader(h: HeaderList, cfg: HcmConfig): void {
  switch (cfg.serverHeaderTransformation) {
    case 'OVERWRITE':
      setHeader(h, 'server', cfg.serverName);
      break;
    case 'APPEND_IF_ABSENT':
      if (!hasHeader(h, 'server')) h.push('server', cfg.serverName);
      break;
    case 'PASS_THROUGH':
      break;
  }
}

/** Host without the port ("a.b:80" → "a.b", "[::1]:80" → "[::1]"). */
export function stripPort(authority: string): string {
  if (authority.startsWith('[')) {
    const close = authority.indexOf(']');
    return close < 0 ? authority : authority.slice(0, close + 1);
  }
  const colon = authority.lastIndexOf(':');
  return colon < 0 ? authority : authority.slice(0, colon);
}

/** Whether the authority carries a ":port". */
export function hasPort(authority: string): boolean {
  if (authority.startsWith('[')) return authority.indexOf(']:') > 0;
  return authority.lastIndexOf(':') > 0;
}

// ───────────────────────────── x-forwarded-client-cert ─────────────────────────────

/**
 * Envoy's forward_client_cert_details / set_current_client_cert_details for the
 * x-forwarded-client-cert header. FORWARD_ONLY, APPEND_FORWARD and SANITIZE_SET act only on mTLS
 * connections (a plaintext client's XFCC is removed); ALWAYS_FORWARD_ONLY forwards whatever came.
 * The appended element follows Envoy's key order: By, Hash, Cert, Subject, URI (every URI SAN),
 * DNS (every DNS SAN).
 */
export function applyXfcc(h: HeaderList, conn: DownstreamConnectionInfo, cfg: HcmConfig): void {
  const mode = cfg.forwardClientCertDetails;
  if (mode === 'ALWAYS_FORWARD_ONLY') return;
  const tls = conn.tls;
  const mtls = tls !== undefined && (tls.peerCertificateHash !== undefined || tls.peerPrincipal !== undefined);
  if (mode === 'SANITIZE' || !mtls) {
    removeHeader(h, 'x-forwarded-client-cert');
    return;
  }
  if (mode === 'FORWARD_ONLY') return;
  const d = cfg.setCurrentClientCertDetails;
  let el = '';
  if (tls.localPrincipal) el = `By=${tls.localPrincipal}`;
  if (tls.peerCertificateHash) el += `${el ? ';' : ''}Hash=${tls.peerCertificateHash}`;
  if (d.cert && tls.peerCertificatePem) el += `${el ? ';' : ''}Cert="${encodeURIComponent(tls.peerCertificatePem)}"`;
  if (d.subject && tls.peerSubject !== undefined)
    el += `${el ? ';' : ''}Subject="${tls.peerSubject.replace(/"/g, '\\"')}"`;
  if (d.uri) {
    const uris = tls.peerUriSans ?? (tls.peerPrincipal ? [tls.peerPrincipal] : []);
    for (const u of uris) el += `${el ? ';' : ''}URI=${u}`;
  }
  if (d.dns) for (const n of tls.peerDnsSans ?? []) el += `${el ? ';' : ''}DNS=${n}`;
  if (mode === 'SANITIZE_SET') {
    if (el === '') removeHeader(h, 'x-forwarded-client-cert');
    else setHeader(h, 'x-forwarded-client-cert', el);
    return;
  }
  // APPEND_FORWARD
  if (el === '') return;
  const prev = getHeaderJoined(h, 'x-forwarded-client-cert');
  setHeader(h, 'x-forwarded-client-cert', prev ? `${prev},${el}` : el);
}

// ───────────────────────────── path normalisation ─────────────────────────────

/**
 * normalize_path (RFC 3986 §5.2.4 dot-segment removal, backslashes kept as data) and
 * merge_slashes on the path part of `path`; the query is untouched. Returns undefined for a path
 * that does not start with "/" (Envoy answers such requests with 400). No allocation when the
 * path is already normal.
 */
export function normalizeRequestPath(path: string, normalize: boolean, mergeSlashes: boolean): string | undefined {
  if (path.charCodeAt(0) !== 47 /* '/' */) return path === '*' ? path : undefined;
  let end = path.indexOf('?');
  if (end < 0) end = path.length;
  let p = path.slice(0, end);
  const rest = path.slice(end);
  if (normalize && (p.includes('/.') || p.includes('%2e') || p.includes('%2E'))) {
    p = p.replace(/%2e/gi, '.');
    const out: string[] = [];
    const segs = p.split('/');
    for (let i = 1; i < segs.length; i++) {
      const s = segs[i]!;
      const last = i === segs.length - 1;
      if (s === '.') {
        if (last) out.push('');
      } else if (s === '..') {
        out.pop();
        if (last) out.push('');
      } else out.push(s);
    }
    p = `/${out.join('/')}`;
  }
  if (mergeSlashes && p.includes('//')) p = p.replace(/\/{2,}/g, '/');
  const result = p + rest;
  return result === path ? path : result;
}
