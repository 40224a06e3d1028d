/**
 * The HTTP cache filter, `envoy.extensions.filters.http.cache.v3.CacheConfig` (Envoy's
 * envoy.filters.http.cache), backed by meshlet's in-memory store (cache/store.ts): Envoy's
 * `SimpleHttpCacheConfig` selects it with a default bound of 64 MiB, and
 * `meshlet.http.cache.InMemoryCacheConfig { max_size_bytes }` sets the bound explicitly.
 *
 * Semantics (RFC 9111 as Envoy applies them): GET and HEAD requests without `authorization` or
 * `range` are looked up (a HEAD is served from a cached GET); request `no-store` bypasses the
 * cache, request `no-cache` / `max-age` force validation. A fresh entry is answered from memory
 * with an `age` header. A stale entry with an ETag or Last-Modified is validated upstream with
 * If-None-Match / If-Modified-Since: a 304 refreshes it and the client gets the cached 200, a 200
 * replaces it. Only GET 200 responses are stored, and only when they carry no `no-store` or
 * `private`, vary only on `allowed_vary_headers`, fit `max_body_bytes`, and have a freshness
 * lifetime (s-maxage, max-age, Expires) or a validator; `no-cache` responses are stored but
 * validated on every use.
 *
 * Leans on correctness over hit rate: anything ambiguous (client conditionals, Vary: *, unknown
 * Vary headers) bypasses the cache instead of risking a wrong answer.
 */
import { decodeStringMatcher } from '../../config/envoy/matchers';
import type { Reader } from '../../../common/reader';
import type { StringMatcher } from '../../config/types';
import type { HeaderList, RequestHead, ResponseHead } from '../codec';
import { FilterStatus, type HttpFilter, type HttpFilterCallbacks, type HttpFilterFactory } from '../filter';
import { getHeader, getHeaderJoined, hasHeader, isHopByHop, setHeader } from '../headers';
import { matchString } from '../route-matcher';
import { currentAgeSec, freshnessLifetimeSec, parseCacheControl } from './cache/cache-control';
import { type CacheEntry, type CacheStats, MemoryCacheStore } from './cache/store';

export const CACHE_TYPE_NAME = 'envoy.extensions.filters.http.cache.v3.CacheConfig';
const SIMPLE_CACHE_TYPE = 'envoy.extensions.http.cache.simple_http_cache.v3.SimpleHttpCacheConfig';
const MESHLET_CACHE_TYPE = 'meshlet.http.cache.InMemoryCacheConfig';

/** Default bound of the in-memory store. */
export const DEFAULT_CACHE_BYTES = 64 * 1024 * 1024;

export interface CacheFilterConfig {
  readonly kind: 'cache';
  /** Store bound in bytes (bodies + headers + per-entry overhead). */
  readonly maxSizeBytes: number;
  /** Larger bodies are not stored (0 = only the store bound applies). */
  readonly maxBodyBytes: number;
  /** Vary header names a stored response may use. */
  readonly allowedVaryHeaders: readonly StringMatcher[];
  /** Ignore the request's Cache-Control (no-cache / no-store / max-age). */
  readonly ignoreRequestCacheControl: boolean;
}

export function decodeCache(r: Reader): CacheFilterConfig {
  let maxSizeBytes = DEFAULT_CACHE_BYTES;
  const tc = r.any('typed_config');
  if (!tc) {
    if (!r.has('typed_config')) r.error('typed_config', `is required (${SIMPLE_CACHE_TYPE} or ${MESHLET_CACHE_TYPE})`);
  } else if (tc.type === MESHLET_CACHE_TYPE) {
    maxSizeBytes = tc.reader.int('max_size_bytes', DEFAULT_CACHE_BYTES, 1024, 2 ** 40);
    tc.reader.done();
  } else if (tc.type === SIMPLE_CACHE_TYPE) {
    tc.reader.done();
  } else {
    tc.reader.issues.error(tc.reader.sub('@type'), `unsupported cache storage ${tc.type}; meshlet has an in-memory store only`);
  }
  const allowedVaryHeaders: StringMatcher[] = [];
  for (const m of r.arr('allowed_vary_headers')) {
    const v = decodeStringMatcher(m);
    if (v) allowedVaryHeaders.push(v);
  }
  const maxBodyBytes = r.int('max_body_bytes', 0, 0, 0xffffffff);
  const ignoreRequestCacheControl = r.bool('ignore_request_cache_control_header', false);
  if (r.has('key_creator_params')) r.error('key_creator_params', 'is not supported by meshlet');
  r.raw('key_creator_params');
  r.done();
  return { kind: 'cache', maxSizeBytes, maxBodyBytes, allowedVaryHeaders, ignoreRequestCacheControl };
}

const stores = new WeakMap<CacheFilterConfig, MemoryCacheStore>();
const allStores = new Set<MemoryCacheStore>();
/** The store of one decoded config (created on first use). */
export function cacheStoreFor(cfg: CacheFilterConfig): MemoryCacheStore {
  let s = stores.get(cfg);
  if (s === undefined) {
    s = new MemoryCacheStore(cfg.maxSizeBytes);
    stores.set(cfg, s);
    allStores.add(s);
  }
  return s;
}
export function allCacheStats(): readonly CacheStats[] {
  return [...allStores].map((s) => s.stats);
}

function baseKey(head: RequestHead): string {
  return `${head.scheme}://${head.authority}${head.path}`;
}

function varyKey(base: string, names: readonly string[], head: RequestHead): string {
  if (names.length === 0) return base;
  let k = base;
  for (const n of names) k += `\u0000${getHeaderJoined(head.headers, n) ?? ''}`;
  return k;
}

/** Headers a cached response keeps (hop-by-hop and age are per-hop). */
function storedHeaders(h: HeaderList): HeaderList {
  const out: HeaderList = [];
  for (let i = 0; i < h.length; i += 2) {
    const n = h[i]!;
    if (n === 'age' || isHopByHop(n)) continue;
    out.push(n, h[i + 1]!);
  }
  return out;
}

const INSERT = 2;
const VALIDATE = 3;

class CacheFilter implements HttpFilter {
  private mode = 0;
  private head: RequestHead | undefined;
  private key = '';
  private base = '';
  private vary: readonly string[] = [];
  private entry: CacheEntry | undefined;
  private chunks: Buffer[] | undefined;
  private bodyBytes = 0;
  private pending: { headers: HeaderList; cc: ReturnType<typeof parseCacheControl>; time: number } | undefined;
  /** The response came from this filter (cache hit): its own encode calls are pass-through. */
  private served = false;

  constructor(
    private readonly cfg: CacheFilterConfig,
    private readonly store: MemoryCacheStore,
    private readonly cb: HttpFilterCallbacks,
  ) {}

  decodeHeaders(head: RequestHead): FilterStatus {
    const st = this.store.stats;
    if ((head.method !== 'GET' && head.method !== 'HEAD') || hasHeader(head.headers, 'authorization') || hasHeader(head.headers, 'range')) {
      st.bypassed++;
      return FilterStatus.Continue;
    }
    const reqCc = this.cfg.ignoreRequestCacheControl ? parseCacheControl(undefined) : parseCacheControl(getHeader(head.headers, 'cache-control'));
    const pragmaNoCache = !this.cfg.ignoreRequestCacheControl && getHeader(head.headers, 'pragma') === 'no-cache';
    if (reqCc.noStore) {
      st.bypassed++;
      return FilterStatus.Continue;
    }
    const conditional = hasHeader(head.headers, 'if-none-match') || hasHeader(head.headers, 'if-modified-since');
    this.head = head;
    this.base = baseKey(head);
    this.vary = this.store.varyNames(this.base);
    this.key = varyKey(this.base, this.vary, head);
    const e = this.store.get(this.key);
    if (e === undefined) {
      st.misses++;
      // A client's own conditional request goes through untouched (its 304 is for the client).
      if (!conditional && head.method === 'GET') this.mode = INSERT;
      return FilterStatus.Continue;
    }
    const now = Date.now();
    const age = currentAgeSec(e.initialAgeSec, e.responseTime, now);
    const fresh =
      !e.mustValidate &&
      !reqCc.noCache &&
      !pragmaNoCache &&
      age < e.freshnessSec &&
      (reqCc.maxAge === undefined || age <= reqCc.maxAge);
    if (fresh) {
      st.hits++;
      this.serve(e, age);
      return FilterStatus.StopIteration;
    }
    if ((e.etag !== undefined || e.lastModified !== undefined) && !conditional) {
      if (e.etag !== undefined) setHeader(head.headers, 'if-none-match', e.etag);
      if (e.lastModified !== undefined) setHeader(head.headers, 'if-modified-since', e.lastModified);
      this.entry = e;
      this.mode = VALIDATE;
      return FilterStatus.Continue;
    }
    st.misses++;
    this.store.delete(this.key);
    if (!conditional && head.method === 'GET') this.mode = INSERT;
    return FilterStatus.Continue;
  }

  private serve(e: CacheEntry, age: number): void {
    this.served = true;
    const h = e.headers.slice();
    h.push('age', String(age));
    const body = e.body.length > 0 ? e.body : undefined;
    this.cb.sendResponse({ status: 200, headers: h, contentLength: e.body.length }, body, 'cache_response');
  }

  encodeHeaders(head: ResponseHead, endStream: boolean): FilterStatus {
    if (this.served) return FilterStatus.Continue;
    if (this.mode === VALIDATE) {
      const e = this.entry!;
      if (head.status === 304) {
        this.store.stats.validated++;
        this.refresh(e, head.headers);
        this.mode = 0;
        this.serve(e, currentAgeSec(e.initialAgeSec, e.responseTime, Date.now()));
        return FilterStatus.StopIteration;
      }
      this.store.delete(this.key);
      this.mode = head.status === 200 ? INSERT : 0;
    }
    if (this.mode !== INSERT) return FilterStatus.Continue;
    this.mode = 0;
    if (head.status !== 200 || this.head?.method !== 'GET') return FilterStatus.Continue;
    const h = head.headers;
    const cc = parseCacheControl(getHeaderJoined(h, 'cache-control'));
    if (cc.noStore || cc.private) return FilterStatus.Continue;
    const vary = this.varyList(getHeaderJoined(h, 'vary'));
    if (vary === undefined) return FilterStatus.Continue;
    const hasValidator = hasHeader(h, 'etag') || hasHeader(h, 'last-modified');
    const time = Date.now();
    const lifetime = freshnessLifetimeSec(cc, getHeader(h, 'expires'), getHeader(h, 'date'), time);
    if (lifetime <= 0 && !hasValidator) return FilterStatus.Continue;
    if (this.cfg.maxBodyBytes > 0 && head.contentLength > this.cfg.maxBodyBytes) return FilterStatus.Continue;
    this.vary = vary;
    this.key = varyKey(this.base, vary, this.head);
    this.pending = { headers: storedHeaders(h), cc, time };
    if (endStream) this.insert(Buffer.alloc(0));
    else this.chunks = [];
    return FilterStatus.Continue;
  }

  encodeData(chunk: Buffer, endStream: boolean): FilterStatus {
    const c = this.chunks;
    if (c === undefined || this.served) return FilterStatus.Continue;
    this.bodyBytes += chunk.length;
    const limit = this.cfg.maxBodyBytes > 0 ? this.cfg.maxBodyBytes : this.store.maxBytes;
    if (this.bodyBytes > limit) {
      this.chunks = undefined;
      this.pending = undefined;
      return FilterStatus.Continue;
    }
    c.push(chunk);
    if (endStream) this.insert(Buffer.concat(c));
    return FilterStatus.Continue;
  }

  encodeTrailers(): FilterStatus {
    // Trailers are not stored; a response with trailers is not cached.
    this.chunks = undefined;
    this.pending = undefined;
    return FilterStatus.Continue;
  }

  /** Vary names when every one is allowed (lower-cased, sorted); undefined = do not store. */
  private varyList(v: string | undefined): string[] | undefined {
    if (v === undefined || v.trim() === '') return [];
    const names = v
      .split(',')
      .map((s) => s.trim().toLowerCase())
      .filter((s) => s !== '');
    for (const n of names) {
      if (n === '*') return undefined;
      if (!this.cfg.allowedVaryHeaders.some((m) => matchString(m, n))) return undefined;
    }
    return [...new Set(names)].sort();
  }

  private insert(body: Buffer): void {
    const p = this.pending;
    this.pending = undefined;
    this.chunks = undefined;
    if (p === undefined) return;
    const h = p.headers;
    const entry: CacheEntry = {
      headers: h,
      body,
      responseTime: p.time,
      initialAgeSec: Number(getHeader(h, 'age') ?? 0) || 0,
      freshnessSec: freshnessLifetimeSec(p.cc, getHeader(h, 'expires'), getHeader(h, 'date'), p.time),
      mustValidate: p.cc.noCache,
      etag: getHeader(h, 'etag'),
      lastModified: getHeader(h, 'last-modified'),
      size: MemoryCacheStore.entrySize(h, body, this.key),
    };
    this.store.put(this.base, this.vary, this.key, entry);
  }

  /** A 304 refreshes the stored headers (RFC 9111 §4.3.4) and restarts the entry's age. */
  private refresh(e: CacheEntry, fresh: HeaderList): void {
    const h = e.headers;
    for (let i = 0; i < fresh.length; i += 2) {
      const n = fresh[i]!;
      if (n === 'content-length' || n === 'age' || isHopByHop(n)) continue;
      setHeader(h, n, fresh[i + 1]!);
    }
    const cc = parseCacheControl(getHeaderJoined(h, 'cache-control'));
    e.responseTime = Date.now();
    e.initialAgeSec = 0;
    e.freshnessSec = freshnessLifetimeSec(cc, getHeader(h, 'expires'), getHeader(h, 'date'), e.responseTime);
    e.mustValidate = cc.noCache;
    e.etag = getHeader(h, 'etag');
    e.lastModified = getHeader(h, 'last-modified');
  }
}

export const cacheFilterFactory: HttpFilterFactory<CacheFilterConfig> = {
  typeName: CACHE_TYPE_NAME,
  decode: decodeCache,
  create(config: CacheFilterConfig, callbacks: HttpFilterCallbacks): HttpFilter {
    return new CacheFilter(config, cacheStoreFor(config), callbacks);
  },
};
