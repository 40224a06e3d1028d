/**
 * Header translation between nghttp2's raw header arrays / header objects and meshlet's
 * protocol-neutral heads (proxy/http/codec.ts). Shared by the HTTP/2 server codec and the
 * upstream HTTP/2 pool.
 *
 * Leans towards speed and Envoy's semantics: every conversion is one pass over a flat array with
 * no per-header objects; connection-specific headers that HTTP/2 forbids (RFC 9113 §8.2.2) are
 * dropped instead of letting node:http2 throw; cookies split across several h2 fields are joined
 * with "; " (RFC 9113 §8.2.3), as Envoy's codec does; RFC 8441 extended CONNECT is mapped to and
 * from the HTTP/1.1 Upgrade shape (GET + `upgrade`) the way Envoy's codec utilities do.
 */
import { constants as h2c, type OutgoingHttpHeaders } from 'node:http2';
import type { HeaderList, RequestHead, ResetReason, ResponseHead } from '../codec';

/** Empty buffer used for "end of stream with no data" calls; shared, never written to. */
export const EMPTY = Buffer.alloc(0);

/**
 * True for headers that must not appear in an HTTP/2 message (node:http2 throws on them).
 * `te` is handled separately: only `te: trailers` is legal.
 */
export function isConnectionSpecific(name: string): boolean {
  switch (name) {
    case 'connection':
    case 'keep-alive':
    case 'proxy-connection':
    case 'transfer-encoding':
    case 'upgrade':
    case 'http2-settings':
      return true;
    default:
      return false;
  }
}

/** Result of decoding a request's raw headers; `error` set when the request is malformed. */
export interface DecodedRequest {
  head: RequestHead | undefined;
  error: string | undefined;
}

/**
 * Raw request headers (as node:http2 hands them: [name, value, …], pseudo-headers first) to a
 * RequestHead. `endStream` is whether HEADERS carried END_STREAM.
 */
export function decodeRequestHead(raw: readonly string[], endStream: boolean, secure: boolean): RequestHead | string {
  let method = '';
  let path = '';
  let authority = '';
  let scheme = '';
  let protocol = '';
  let host = '';
  let contentLength = -1;
  let cookieAt = -1;
  const headers: HeaderList = [];
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i] as string;
    const value = raw[i + 1] as string;
    if (name.charCodeAt(0) === 58 /* ':' */) {
      switch (name) {
        case ':method':
          method = value;
          break;
        case ':path':
          path = value;
          break;
        case ':authority':
          authority = value;
          break;
        case ':scheme':
          scheme = value;
          break;
        case ':protocol':
          protocol = value;
          break;
        default:
          return `unknown pseudo-header ${name}`;
      }
      continue;
    }
    switch (name) {
      case 'host':
        host = value;
        continue;
      case 'cookie':
        if (cookieAt >= 0) {
          headers[cookieAt] = `${headers[cookieAt]}; ${value}`;
          continue;
        }
        cookieAt = headers.length + 1;
        break;
      case 'content-length': {
        const n = Number(value);
        if (!Number.isSafeInteger(n) || n < 0 || value.length === 0) return 'invalid content-length';
        contentLength = n;
        break;
      }
      case 'te':
        if (value !== 'trailers') continue;
        break;
      default:
        if (isConnectionSpecific(name)) continue;
    }
    headers.push(name, value);
  }
  if (method === '') return 'missing :method';
  if (authority === '') authority = host;
  let upgrade: string | undefined;
  if (method === 'CONNECT') {
    if (protocol !== '') {
      // RFC 8441 extended CONNECT: present it to the connection manager in HTTP/1.1 Upgrade
      // shape (Envoy's transformUpgradeRequestFromH2toH1).
      if (path === '') return 'missing :path on extended CONNECT';
      method = 'GET';
      upgrade = protocol.toLowerCase();
    } else {
      if (authority === '') return 'missing :authority on CONNECT';
      path = authority;
    }
  } else if (path === '') {
    return 'missing :path';
  }
  const head: RequestHead = {
    method,
    path,
    authority,
    scheme: scheme === '' ? (secure ? 'https' : 'http') : scheme,
    protocol: 'HTTP/2',
    headers,
    contentLength: endStream ? 0 : contentLength,
  };
  if (upgrade !== undefined) head.upgrade = upgrade;
  return head;
}

/** Raw response headers from node:http2 to a ResponseHead (status parsed from `:status`). */
export function decodeResponseHead(raw: readonly string[], endStream: boolean): ResponseHead {
  let status = 0;
  let contentLength = -1;
  const headers: HeaderList = [];
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i] as string;
    const value = raw[i + 1] as string;
    if (name.charCodeAt(0) === 58) {
      if (name === ':status') status = Number(value) | 0;
      continue;
    }
    if (name === 'content-length') {
      const n = Number(value);
      if (Number.isSafeInteger(n) && n >= 0) contentLength = n;
    } else if (isConnectionSpecific(name)) {
      continue;
    }
    headers.push(name, value);
  }
  return { status, headers, contentLength: endStream ? 0 : contentLength };
}

/** Raw trailer array to a HeaderList (pseudo-headers are illegal in trailers and dropped). */
export function decodeTrailers(raw: readonly string[]): HeaderList {
  const out: HeaderList = [];
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i] as string;
    if (name.charCodeAt(0) === 58 || isConnectionSpecific(name)) continue;
    out.push(name, raw[i + 1] as string);
  }
  return out;
}

/** Append a flat header list onto an outgoing node:http2 header object (duplicates → arrays). */
function addHeaders(obj: OutgoingHttpHeaders, list: HeaderList): void {
  for (let i = 0; i + 1 < list.length; i += 2) {
    const name = list[i] as string;
    if (name.charCodeAt(0) === 58 || isConnectionSpecific(name) || name === 'host') continue;
    const value = list[i + 1] as string;
    if (name === 'te' && value !== 'trailers') continue;
    const prev = obj[name];
    if (prev === undefined) obj[name] = value;
    else if (SINGLE_VALUE.has(name)) continue;
    else if (Array.isArray(prev)) prev.push(value);
    else obj[name] = [prev as string, value];
  }
}

/**
 * Headers node:http2 refuses to send more than once (it throws ERR_HTTP2_HEADER_SINGLE_VALUE).
 * A repeated one (say two content-type lines from an HTTP/1 upstream) keeps its first value
 * rather than failing the whole response. Only consulted for duplicates.
 */
const SINGLE_VALUE: ReadonlySet<string> = new Set([
  'access-control-allow-credentials',
  'access-control-max-age',
  'access-control-request-method',
  'age',
  'authorization',
  'content-encoding',
  'content-language',
  'content-length',
  'content-location',
  'content-md5',
  'content-range',
  'content-type',
  'date',
  'dnt',
  'etag',
  'expires',
  'from',
  'if-match',
  'if-modified-since',
  'if-none-match',
  'if-range',
  'if-unmodified-since',
  'last-modified',
  'location',
  'max-forwards',
  'proxy-authorization',
  'range',
  'referer',
  'retry-after',
  'tk',
  'upgrade-insecure-requests',
  'user-agent',
  'x-content-type-options',
]);

/**
 * ResponseHead to node:http2 response headers. A 101 answer to an upgrade becomes 200, as RFC
 * 8441 requires (Envoy's transformUpgradeResponseFromH1toH2).
 */
export function encodeResponseHeaders(head: ResponseHead, upgrade: boolean): OutgoingHttpHeaders {
  const status = upgrade && head.status === 101 ? 200 : head.status;
  const obj: OutgoingHttpHeaders = { ':status': status };
  addHeaders(obj, head.headers);
  return obj;
}

/** Trailers to a node:http2 header object. */
export function encodeTrailers(list: HeaderList): OutgoingHttpHeaders {
  const obj: OutgoingHttpHeaders = {};
  addHeaders(obj, list);
  return obj;
}

/**
 * RequestHead to node:http2 request headers. `:scheme` is the request's own (Envoy propagates it
 * upstream by default); only when it is empty does the upstream transport decide. HTTP/1.1 Upgrade (GET + upgrade token) becomes an
 * RFC 8441 extended CONNECT; plain CONNECT carries only :method and :authority.
 */
export function encodeRequestHeaders(head: RequestHead, transportScheme: string): OutgoingHttpHeaders {
  const scheme = head.scheme !== '' ? head.scheme : transportScheme;
  let obj: OutgoingHttpHeaders;
  if (head.method === 'CONNECT' && head.upgrade === undefined) {
    obj = { ':method': 'CONNECT', ':authority': head.authority !== '' ? head.authority : head.path };
  } else if (head.upgrade !== undefined && head.upgrade !== 'h2c') {
    obj = {
      ':method': 'CONNECT',
      ':protocol': head.upgrade,
      ':scheme': scheme,
      ':authority': head.authority,
      ':path': head.path,
    };
  } else {
    obj = {
      ':method': head.method,
      ':scheme': scheme,
      ':authority': head.authority,
      ':path': head.path,
    };
  }
  // No Host on an HTTP/1.0 request (rare): let node use the upstream's host:port.
  if (obj[':authority'] === '') delete obj[':authority'];
  // WebSocket handshake fields pass through untouched, as Envoy does, so an h1 → h2 → h1 chain
  // of proxies still delivers a complete handshake to the origin.
  addHeaders(obj, head.headers);
  return obj;
}

/** Local reset reason to the RST_STREAM code sent (Envoy's reasonToReset). */
export function resetCode(reason: ResetReason): number {
  return reason === 'refused_stream' ? h2c.NGHTTP2_REFUSED_STREAM : h2c.NGHTTP2_NO_ERROR;
}

/** RST_STREAM code received from the peer to a ResetReason. */
export function reasonForCode(code: number | undefined): ResetReason {
  return code === h2c.NGHTTP2_REFUSED_STREAM ? 'refused_stream' : 'remote_reset';
}

// ───────────── flat field lists for meshlet's own framing ─────────────

/** A field value HTTP/2 may carry (RFC 9113 §8.2.1: no NUL, CR or LF). */
function validValue(v: string): boolean {
  for (let i = 0; i < v.length; i++) {
    const c = v.charCodeAt(i);
    if (c === 0 || c === 10 || c === 13 || c > 255) return false;
  }
  return true;
}

/** Appends regular fields (connection-specific ones, host and te other than trailers dropped). */
function addFields(out: string[], list: HeaderList): string | undefined {
  for (let i = 0; i + 1 < list.length; i += 2) {
    const name = list[i] as string;
    if (name.charCodeAt(0) === 58 || isConnectionSpecific(name) || name === 'host') continue;
    const value = list[i + 1] as string;
    if (name === 'te' && value !== 'trailers') continue;
    if (!validValue(value) || name.length === 0) return `invalid header ${name}`;
    out.push(name, value);
  }
  return undefined;
}

/**
 * RequestHead to a flat HTTP/2 field list, pseudo-headers first (the shape of
 * encodeRequestHeaders, without the object). Returns a string on an invalid field.
 */
export function requestFields(head: RequestHead, transportScheme: string, authorityDefault: string): string[] | string {
  const scheme = head.scheme !== '' ? head.scheme : transportScheme;
  const authority = head.authority !== '' ? head.authority : authorityDefault;
  let out: string[];
  if (head.method === 'CONNECT' && head.upgrade === undefined) {
    out = [':method', 'CONNECT', ':authority', head.authority !== '' ? head.authority : head.path];
  } else if (head.upgrade !== undefined && head.upgrade !== 'h2c') {
    out = [':method', 'CONNECT', ':protocol', head.upgrade, ':scheme', scheme, ':authority', authority, ':path', head.path];
  } else {
    out = [':method', head.method, ':scheme', scheme, ':authority', authority, ':path', head.path];
  }
  if (!validValue(head.path) || !validValue(authority)) return 'invalid :path or :authority';
  return addFields(out, head.headers) ?? out;
}

/** Trailers to a flat field list, or a string on an invalid field. */
export function trailerFields(list: HeaderList): string[] | string {
  const out: string[] = [];
  return addFields(out, list) ?? out;
}

/** ResponseHead to a flat HTTP/2 field list (`:status` first); a 101 to an upgrade becomes 200. */
export function responseFields(head: ResponseHead, upgrade: boolean): string[] | string {
  const status = upgrade && head.status === 101 ? 200 : head.status;
  const out: string[] = [':status', String(status)];
  const bad = addFields(out, head.headers);
  if (bad !== undefined) return bad;
  for (let i = 2; i < out.length; i += 2) if (!validName(out[i]!)) return `invalid header name ${out[i]}`;
  return out;
}

/** A lower-case RFC 9110 token (what a field name on the wire may be). */
function validName(name: string): boolean {
  for (let k = 0; k < name.length; k++) {
    const c = name.charCodeAt(k);
    if (c > 126 || (c >= 65 && c <= 90) || !TOKEN[c]) return false;
  }
  return true;
}

const TOKEN: boolean[] = [];
for (let c = 0; c < 127; c++) TOKEN[c] = c > 32 && !'"(),/:;<=>?@[\\]{}'.includes(String.fromCharCode(c));

/**
 * RFC 9113 §8.2–8.3 checks of a decoded request field list that decodeRequestHead does not make
 * (it is lenient towards what nghttp2 already validated): upper-case names, pseudo-headers after
 * regular ones, duplicated or response pseudo-headers, connection-specific fields, TE other than
 * "trailers", an empty :path. Returns why the request is malformed, or undefined.
 */
export function malformedRequest(fields: readonly string[]): string | undefined {
  let regular = false;
  let seen = 0;
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const name = fields[i]!;
    if (name.length === 0) return 'empty header name';
    if (name.charCodeAt(0) === 58) {
      if (regular) return 'pseudo-header after a regular header';
      let bit: number;
      switch (name) {
        case ':method':
          bit = 1;
          break;
        case ':scheme':
          bit = 2;
          break;
        case ':authority':
          bit = 4;
          break;
        case ':path':
          bit = 8;
          if (fields[i + 1]!.length === 0) return 'empty :path';
          break;
        case ':protocol':
          bit = 16;
          break;
        default:
          return `pseudo-header ${name} in a request`;
      }
      if ((seen & bit) !== 0) return `duplicated ${name}`;
      seen |= bit;
      continue;
    }
    regular = true;
    for (let k = 0; k < name.length; k++) {
      const c = name.charCodeAt(k);
      if ((c >= 65 && c <= 90) || c <= 32 || c === 127 || c > 255) return 'invalid header name';
    }
    if (isConnectionSpecific(name)) return `connection-specific header ${name}`;
    if (name === 'te' && fields[i + 1] !== 'trailers') return 'te other than trailers';
    if (!validValue(fields[i + 1]!)) return `invalid value of ${name}`;
  }
  return undefined;
}

/**
 * A request head from a decoded header block with meshlet's own framing's checks (RFC 9113
 * §8.2–8.5): malformed fields, the pseudo-headers, plain CONNECT carrying only :method and
 * :authority, extended CONNECT only when enabled. A string says why the request is malformed.
 */
export function checkedRequestHead(fields: readonly string[], endStream: boolean, secure: boolean, allowConnect: boolean): RequestHead | string {
  const head = malformedRequest(fields) ?? decodeRequestHead(fields, endStream, secure);
  if (typeof head === 'string') return head;
  if (head.method === 'CONNECT' && head.upgrade === undefined) {
    for (let i = 0; i < fields.length; i += 2) if (fields[i] === ':path' || fields[i] === ':scheme') return 'CONNECT with :path or :scheme';
  } else if (head.upgrade !== undefined && !allowConnect) {
    return 'extended CONNECT not enabled';
  }
  return head;
}
