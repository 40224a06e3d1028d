/**
 * The compressor HTTP filter, `envoy.extensions.filters.http.compressor.v3.Compressor` (Envoy's
 * envoy.filters.http.compressor): compresses response bodies the client accepts, and request
 * bodies when request_direction_config enables it, with the gzip or brotli library (zstd where
 * node:zlib has it), streaming through node:zlib with flow control both ways (zlib-pump.ts).
 *
 * Envoy's decisions, kept: a response is compressed when the direction is enabled, it has a body,
 * its Content-Length (when known) is at least min_content_length (default 30), its Content-Type
 * (without parameters) is in content_type (default: Envoy's list of text types), it has no
 * Content-Encoding, no `Cache-Control: no-transform`, no ETag when disable_on_etag_header, is not
 * an upgrade, and Accept-Encoding chooses this filter's encoding: q-values, `identity`, `*` (the
 * first compressor of the chain), `q=0` exclusions, ties to the filter with choose_first; with
 * several compressor filters the decision is made once per stream and shared. A compressed
 * response loses Content-Length and a strong ETag (weak ones stay), gains Content-Encoding; every
 * compressible response gets `Vary: Accept-Encoding`. remove_accept_encoding_header strips the
 * request's Accept-Encoding so the upstream does not compress too.
 *
 * Transfer-Encoding is hop-by-hop and removed by meshlet's codecs before filters run, so Envoy's
 * "already transfer-encoded" check has nothing to look at. The deprecated top-level fields
 * (content_length, content_type, disable_on_etag_header, remove_accept_encoding_header,
 * runtime_enabled) configure the response direction when response_direction_config is absent,
 * as in Envoy. `enabled` (a RuntimeFeatureFlag) reads the layered runtime's boolean under its
 * runtime_key per request, default_value when the key is unset.
 */
import type { Reader } from '../../../common/reader';
import type { HeaderList, RequestHead, ResponseHead } from '../codec';
import { FilterStatus, type HttpFilter, type HttpFilterCallbacks, type HttpFilterFactory } from '../filter';
import { getHeader, getHeaderJoined, removeHeader, setHeader } from '../headers';
import { type CompressionLibrary, decodeFeatureFlag, decodeLibrary, type FeatureFlag, FLAG_ON, flagEnabled } from './compression-library';
import { CompressorStats, type DirectionStats, statsFor } from './compression-stats';
import { ZlibTransformFilter } from './zlib-filter';

export const COMPRESSOR_TYPE_NAME = 'envoy.extensions.filters.http.compressor.v3.Compressor';
export const COMPRESSOR_PER_ROUTE_TYPE_NAME = 'envoy.extensions.filters.http.compressor.v3.CompressorPerRoute';

/**
 * CompressorPerRoute: `disabled` turns response compression off for the route; `overrides` with a
 * response_direction_config turns it on (even where the filter's is off, as in Envoy) and may
 * override remove_accept_encoding_header.
 */
export interface CompressorPerRouteConfig {
  readonly kind: 'compressor_per_route';
  readonly responseEnabled: boolean;
  readonly removeAcceptEncodingHeader?: boolean;
}

function decodeCompressorPerRoute(r: Reader): CompressorPerRouteConfig | undefined {
  const which = r.oneof(['disabled', 'overrides'] as const);
  let out: CompressorPerRouteConfig | undefined;
  if (which === undefined) r.issues.error(r.path, 'one of disabled, overrides must be set');
  else if (which === 'disabled') {
    if (!r.bool('disabled', false)) r.error('disabled', 'must be true');
    out = { kind: 'compressor_per_route', responseEnabled: false };
  } else {
    const o = r.obj('overrides');
    const rd = o?.obj('response_direction_config');
    if (o && !rd) o.error('response_direction_config', 'is required (the only override meshlet knows)');
    if (rd) {
      const remove = rd.has('remove_accept_encoding_header') ? rd.bool('remove_accept_encoding_header', false) : undefined;
      rd.done();
      out = { kind: 'compressor_per_route', responseEnabled: true, ...(remove !== undefined ? { removeAcceptEncodingHeader: remove } : {}) };
    }
    o?.done();
  }
  r.done();
  return out;
}

/** Envoy's default content types (compressor_filter.cc defaultContentEncoding). */
const DEFAULT_CONTENT_TYPES: readonly string[] = [
  'text/html', 'text/plain', 'text/css', 'application/javascript', 'application/x-javascript',
  'text/javascript', 'text/x-javascript', 'text/ecmascript', 'text/js', 'text/jscript', 'text/x-js',
  'application/ecmascript', 'application/x-json', 'application/xml', 'application/json',
  'image/svg+xml', 'text/xml', 'application/xhtml+xml', 'application/grpc-web', 'application/grpc-web+proto',
];

export interface DirectionConfig {
  readonly enabled: FeatureFlag;
  readonly minContentLength: number;
  /** Lower-case media types. */
  readonly contentTypes: ReadonlySet<string>;
}

export interface CompressorConfig {
  readonly kind: 'compressor';
  readonly libraryName: string;
  readonly library: CompressionLibrary;
  readonly response: DirectionConfig;
  /** undefined = request_direction_config absent: requests are never compressed. */
  readonly request: DirectionConfig | undefined;
  readonly disableOnEtagHeader: boolean;
  readonly removeAcceptEncodingHeader: boolean;
  /** response_direction_config.uncompressible_response_codes. */
  readonly uncompressibleCodes: ReadonlySet<number>;
  readonly chooseFirst: boolean;
  /** response_direction_config set: its counters sit under `response.` (Envoy's layout). */
  readonly responseSub: string;
  readonly stats: Map<string, CompressorStats>;
}


function uint32Value(r: Reader, key: string, def: number): number {
  const raw = r.raw(key);
  if (typeof raw === 'object' && raw !== null) {
    const o = r.obj(key)!;
    const v = o.int('value', def, 0, 0xffffffff);
    o.done();
    return v;
  }
  return r.int(key, def, 0, 0xffffffff);
}

const DEFAULT_TYPES: ReadonlySet<string> = new Set(DEFAULT_CONTENT_TYPES);

function contentTypes(r: Reader, key: string): ReadonlySet<string> {
  const list = r.strList(key);
  return list.length > 0 ? new Set(list.map((t) => t.trim().toLowerCase())) : DEFAULT_TYPES;
}

function decodeCommon(r: Reader | undefined): DirectionConfig {
  if (!r) return { enabled: FLAG_ON, minContentLength: 30, contentTypes: DEFAULT_TYPES };
  const enabled = decodeFeatureFlag(r, 'enabled');
  const min = uint32Value(r, 'min_content_length', 0);
  const types = contentTypes(r, 'content_type');
  r.done();
  return { enabled, minContentLength: min > 0 ? min : 30, contentTypes: types };
}

export function decodeCompressor(r: Reader): CompressorConfig | undefined {
  const lib = decodeLibrary(r, 'compressor_library', 'compressor');
  const respR = r.obj('response_direction_config');
  const reqR = r.obj('request_direction_config');
  let response: DirectionConfig;
  const uncompressible = new Set<number>();
  let disableOnEtagHeader: boolean;
  let removeAcceptEncodingHeader: boolean;
  const deprecated = ['content_length', 'content_type', 'disable_on_etag_header', 'remove_accept_encoding_header', 'runtime_enabled'];
  if (respR) {
    for (const k of deprecated) if (r.has(k)) r.error(k, 'is deprecated and may not be combined with response_direction_config');
    r.ignore(...deprecated);
    response = decodeCommon(respR.obj('common_config'));
    disableOnEtagHeader = respR.bool('disable_on_etag_header', false);
    removeAcceptEncodingHeader = respR.bool('remove_accept_encoding_header', false);
    for (const [i, v] of respR.list('uncompressible_response_codes').entries()) {
      if (typeof v !== 'number' || !Number.isInteger(v) || v < 200 || v > 599) respR.issues.error(`${respR.sub('uncompressible_response_codes')}[${i}]`, `must be an HTTP status 200-599, got ${JSON.stringify(v)}`);
      else uncompressible.add(v);
    }
    respR.done();
  } else {
    const min = uint32Value(r, 'content_length', 0);
    response = { enabled: decodeFeatureFlag(r, 'runtime_enabled'), minContentLength: min > 0 ? min : 30, contentTypes: contentTypes(r, 'content_type') };
    disableOnEtagHeader = r.bool('disable_on_etag_header', false);
    removeAcceptEncodingHeader = r.bool('remove_accept_encoding_header', false);
  }
  let request: DirectionConfig | undefined;
  if (reqR) {
    request = decodeCommon(reqR.obj('common_config'));
    reqR.done();
  }
  const chooseFirst = r.bool('choose_first', false);
  r.done();
  if (!lib) return undefined;
  return {
    kind: 'compressor',
    libraryName: lib.name,
    library: lib.library,
    response,
    request,
    disableOnEtagHeader,
    removeAcceptEncodingHeader,
    uncompressibleCodes: uncompressible,
    chooseFirst,
    responseSub: respR ? 'response.' : '',
    stats: new Map(),
  };
}

// ─────────────── Accept-Encoding decision (once per stream, shared by the chain's compressors) ───────────────

const NOT_VALID = 0;
const IDENTITY = 1;
const WILDCARD = 2;
const VALID = 3;

interface Decision {
  readonly encoding: string;
  readonly stat: number;
}

/** The compressor filters of one stream, in chain order, and their shared decision. */
interface StreamCompressors {
  readonly filters: CompressorFilter[];
  decision: Decision | undefined;
}
const byStream = new WeakMap<HttpFilterCallbacks, StreamCompressors>();

function mediaType(v: string | undefined): string {
  if (v === undefined) return '';
  const semi = v.indexOf(';');
  return (semi >= 0 ? v.slice(0, semi) : v).trim().toLowerCase();
}

function chooseEncoding(acceptEncoding: string, contentType: string, filters: readonly CompressorFilter[]): Decision {
  // Encodings this chain can produce for this content type, in registration order.
  const allowed = new Map<string, { order: number; chooseFirst: boolean }>();
  for (const f of filters) {
    const c = f.config;
    if (contentType !== '' && !c.response.contentTypes.has(contentType)) continue;
    if (!allowed.has(c.library.encoding)) allowed.set(c.library.encoding, { order: allowed.size, chooseFirst: c.chooseFirst });
  }
  const pairs: { enc: string; q: number }[] = [];
  for (const token of acceptEncoding.split(',')) {
    if (token.trim() === '') continue;
    const semi = token.indexOf(';');
    const enc = (semi >= 0 ? token.slice(0, semi) : token).trim().toLowerCase();
    let q = 1;
    if (semi >= 0) {
      const params = token.slice(semi + 1);
      const eq = params.indexOf('=');
      if (eq >= 0 && params.slice(0, eq).trim().toLowerCase() === 'q') {
        q = Number(params.slice(eq + 1).trim());
        if (!Number.isFinite(q)) continue; // an unparseable q-value is skipped
      }
    }
    pairs.push({ enc, q });
    if (q === 0) allowed.delete(enc);
  }
  if (pairs.length === 0 || allowed.size === 0) return { encoding: 'identity', stat: NOT_VALID };
  let choice = { enc: 'identity', q: 0 };
  for (const p of pairs) {
    const a = allowed.get(p.enc);
    if (a !== undefined || p.enc === 'identity' || p.enc === '*') {
      if (p.q > choice.q || (p.q === choice.q && a?.chooseFirst === true)) choice = p;
    }
  }
  if (choice.q === 0) return { encoding: 'identity', stat: NOT_VALID };
  if (choice.enc === 'identity') return { encoding: 'identity', stat: IDENTITY };
  if (choice.enc === '*') {
    let first = '';
    let best = Infinity;
    for (const [enc, a] of allowed) if (a.order < best) [first, best] = [enc, a.order];
    return { encoding: first, stat: WILDCARD };
  }
  return { encoding: choice.enc, stat: VALID };
}

function hasToken(value: string | undefined, token: string): boolean {
  if (value === undefined) return false;
  for (const t of value.split(',')) if (t.trim().toLowerCase() === token) return true;
  return false;
}

// ─────────────── the filter ───────────────

class CompressorFilter extends ZlibTransformFilter {
  private acceptEncoding: string | undefined;
  private perRoute: CompressorPerRouteConfig | undefined;
  private readonly stats: CompressorStats;
  private readonly stream: StreamCompressors;

  constructor(
    readonly config: CompressorConfig,
    cb: HttpFilterCallbacks,
  ) {
    super(cb);
    this.stats = statsFor(config.stats, cb.hcm.statPrefix, (p) => new CompressorStats(`${p}compressor.${config.libraryName}.${config.library.statsPrefix}.`, config.responseSub));
    let s = byStream.get(cb);
    if (s === undefined) {
      s = { filters: [], decision: undefined };
      byStream.set(cb, s);
    }
    s.filters.push(this);
    this.stream = s;
  }

  decodeHeaders(head: RequestHead, endStream: boolean): FilterStatus {
    const c = this.config;
    this.acceptEncoding = getHeaderJoined(head.headers, 'accept-encoding');
    const per = this.cb.perRouteConfig() as CompressorPerRouteConfig | undefined;
    this.perRoute = per;
    if (this.responseEnabled() && (per?.removeAcceptEncodingHeader ?? c.removeAcceptEncodingHeader)) removeHeader(head.headers, 'accept-encoding');
    const req = c.request;
    if (req === undefined) return FilterStatus.Continue;
    const st = this.stats.request;
    if (
      !endStream &&
      flagEnabled(req.enabled, this.cb.runtime) &&
      head.upgrade === undefined &&
      this.minimumLength(head.contentLength, req, st) &&
      this.contentTypeAllowed(head.headers, req) &&
      getHeader(head.headers, 'content-encoding') === undefined
    ) {
      head.contentLength = -1;
      removeHeader(head.headers, 'content-length');
      setHeader(head.headers, 'content-encoding', c.library.encoding);
      st.compressed++;
      this.pump(st, false);
    } else st.notCompressed++;
    return FilterStatus.Continue;
  }

  encodeHeaders(head: ResponseHead, endStream: boolean): FilterStatus {
    const c = this.config;
    const h = head.headers;
    const st = this.stats.response;
    const enabledAndLong = this.responseEnabled() && this.minimumLength(head.contentLength, c.response, st);
    const compressible =
      enabledAndLong &&
      head.status !== 101 &&
      !c.uncompressibleCodes.has(head.status) &&
      this.contentTypeAllowed(h, c.response) &&
      !hasToken(getHeaderJoined(h, 'cache-control'), 'no-transform') &&
      this.etagAllowed(h) &&
      getHeader(h, 'content-encoding') === undefined;
    if (!endStream && this.acceptEncodingAllowed(enabledAndLong, h) && compressible) {
      const etag = getHeader(h, 'etag');
      if (etag !== undefined && etag.length > 2 && !((etag[0] === 'w' || etag[0] === 'W') && etag[1] === '/')) removeHeader(h, 'etag');
      removeHeader(h, 'content-length');
      head.contentLength = -1;
      setHeader(h, 'content-encoding', c.library.encoding);
      st.compressed++;
      this.pump(st, true);
    } else st.notCompressed++;
    if (compressible) {
      const vary = getHeaderJoined(h, 'vary');
      if (vary === undefined) h.push('vary', 'Accept-Encoding');
      else if (!hasToken(vary, 'accept-encoding')) setHeader(h, 'vary', `${vary}, Accept-Encoding`);
    }
    return FilterStatus.Continue;
  }

  private pump(st: DirectionStats, response: boolean): void {
    this.startPump(response, this.config.library.create(), {
      out: (n) => (st.totalCompressedBytes += n),
      done: (bytesIn) => (st.totalUncompressedBytes += bytesIn),
      error: () => this.cb.sendLocalReply(500, 'Internal Server Error', undefined, undefined, 'compressor_error'),
    });
  }

  private responseEnabled(): boolean {
    return this.perRoute?.responseEnabled ?? flagEnabled(this.config.response.enabled, this.cb.runtime);
  }

  private minimumLength(contentLength: number, d: DirectionConfig, st: DirectionStats): boolean {
    if (contentLength < 0) return true; // streamed: the length is not known in advance
    if (contentLength >= d.minContentLength) return true;
    st.contentLengthTooSmall++;
    return false;
  }

  private contentTypeAllowed(h: HeaderList, d: DirectionConfig): boolean {
    const t = getHeader(h, 'content-type');
    return t === undefined || d.contentTypes.has(mediaType(t));
  }

  private etagAllowed(h: HeaderList): boolean {
    if (!this.config.disableOnEtagHeader || getHeader(h, 'etag') === undefined) return true;
    this.stats.decision.notCompressedEtag++;
    return false;
  }

  private acceptEncodingAllowed(maybe: boolean, h: HeaderList): boolean {
    if (!maybe) return false;
    const d = this.stats.decision;
    if (this.acceptEncoding === undefined) {
      d.noAcceptHeader++;
      return false;
    }
    const s = this.stream;
    const decision = (s.decision ??= chooseEncoding(this.acceptEncoding, mediaType(getHeader(h, 'content-type')), s.filters));
    const mine = decision.encoding === this.config.library.encoding;
    if (decision.stat === VALID) {
      if (mine) d.headerCompressorUsed++;
      else d.headerCompressorOvershadowed++;
    } else if (decision.stat === IDENTITY) d.headerIdentity++;
    else if (decision.stat === WILDCARD) d.headerWildcard++;
    else d.headerNotValid++;
    return mine;
  }
}


export const compressorFilterFactory: HttpFilterFactory<CompressorConfig | undefined> = {
  typeName: COMPRESSOR_TYPE_NAME,
  decode: decodeCompressor,
  decodePerRoute(r: Reader): unknown {
    r.issues.error(r.path, `use ${COMPRESSOR_PER_ROUTE_TYPE_NAME} for per-route compressor configuration`);
    return undefined;
  },
  create(config: CompressorConfig | undefined, callbacks: HttpFilterCallbacks): HttpFilter {
    // decode() reports a missing library as an error, so a built chain always has one.
    return config === undefined ? {} : new CompressorFilter(config, callbacks);
  },
};

/** Registered under the CompressorPerRoute type so typed_per_filter_config entries decode; not a filter. */
export const compressorPerRouteFactory: HttpFilterFactory<undefined> = {
  typeName: COMPRESSOR_PER_ROUTE_TYPE_NAME,
  decode(r: Reader): undefined {
    r.issues.error(r.sub('@type'), `${COMPRESSOR_PER_ROUTE_TYPE_NAME} is only valid in typed_per_filter_config; use ${COMPRESSOR_TYPE_NAME}`);
    return undefined;
  },
  decodePerRoute: decodeCompressorPerRoute,
  create(): HttpFilter {
    return {};
  },
};
