/**
 * Flat header list helpers and the standard proxy headers.
 *
 * Owns: lookups and edits on the codec's flat `[name, value, …]` arrays (names lower-case),
 * Envoy's HeaderValueOption application (append actions, keep_empty_value, a small set of
 * `%FORMAT%` substitutions), hop-by-hop stripping, and authority ports. The connection manager's
 * edge rules (x-forwarded-*, x-request-id, x-envoy-* sanitising, XFCC) are in edge-headers.ts.
 *
 * Leans towards the hot path: linear scans over small arrays (cheaper than a Map per request),
 * in-place edits, and no allocation when nothing needs to change.
 */
import type { HeaderValueOption } from '../config/types';
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

// ───────────────────────────── authority ─────────────────────────────

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
