/**
 * The cache filter through a real meshlet in front of a real origin (node:http) whose paths set
 * Cache-Control / Expires / ETag / Last-Modified / Vary: hits with `age`, no-store / private /
 * POST / authorization bypass, ETag and Last-Modified validation with 304, request no-cache,
 * Vary, HEAD from a cached GET, expiry (Date faked, not waited for), the LRU byte bound, and
 * config validation.
 */
import http from 'node:http';
import http2 from 'node:http2';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { cacheStoreFor, decodeCache, type CacheFilterConfig } from '../../proxy/http/filters/cache';
import { bootstrap, type StartedMeshlet, startMeshlet, staticCluster, stopAllMeshlets } from '../support/meshlet';
import { closeAll } from '../support/upstreams';
import { decodeWith, filterListener, request } from './helpers';

const CACHE_TYPE = 'type.googleapis.com/envoy.extensions.filters.http.cache.v3.CacheConfig';

let m: StartedMeshlet;
let origin: http.Server | undefined;
/** Requests the origin received, by path (query included). */
const hits = new Map<string, number>();
const seenHeaders: http.IncomingHttpHeaders[] = [];

function originHandler(req: http.IncomingMessage, res: http.ServerResponse): void {
  const url = req.url ?? '/';
  hits.set(url, (hits.get(url) ?? 0) + 1);
  seenHeaders.push(req.headers);
  const n = hits.get(url)!;
  const p = url.split('?')[0]!;
  let head: Record<string, string> = {};
  const writeHead = (status: number, h: Record<string, string>) => {
    if (status !== 200) {
      res.writeHead(status, h);
      return;
    }
    head = h;
  };
  const body = (s: string) => {
    res.writeHead(200, { ...head, 'content-length': String(Buffer.byteLength(s)) });
    res.end(req.method === 'HEAD' ? undefined : s);
  };
  switch (p) {
    case '/max-age':
      writeHead(200, { 'cache-control': 'public, max-age=60', etag: '"v1"', 'content-type': 'text/plain' });
      return body(`max-age body ${n}`);
    case '/s-maxage':
      writeHead(200, { 'cache-control': 'max-age=0, s-maxage=60' });
      return body(`s-maxage ${n}`);
    case '/expires':
      writeHead(200, { expires: new Date(Date.now() + 120_000).toUTCString(), date: new Date().toUTCString() });
      return body(`expires ${n}`);
    case '/no-store':
      writeHead(200, { 'cache-control': 'no-store, max-age=60' });
      return body(`no-store ${n}`);
    case '/private':
      writeHead(200, { 'cache-control': 'private, max-age=60' });
      return body(`private ${n}`);
    case '/plain':
      writeHead(200, {});
      return body(`plain ${n}`);
    case '/etag': {
      if (req.headers['if-none-match'] === '"e1"') {
        writeHead(304, { etag: '"e1"', 'cache-control': 'no-cache', 'x-revalidated': String(n) });
        return void res.end();
      }
      writeHead(200, { etag: '"e1"', 'cache-control': 'no-cache' });
      return body('etag body');
    }
    case '/last-modified': {
      const lm = 'Wed, 21 Oct 2015 07:28:00 GMT';
      if (req.headers['if-modified-since'] === lm) {
        writeHead(304, {});
        return void res.end();
      }
      writeHead(200, { 'last-modified': lm, 'cache-control': 'max-age=10' });
      return body(`lm body ${n}`);
    }
    case '/vary':
      writeHead(200, { 'cache-control': 'max-age=60', vary: 'Accept-Language' });
      return body(`lang=${req.headers['accept-language'] ?? ''} ${n}`);
    case '/vary-other':
      writeHead(200, { 'cache-control': 'max-age=60', vary: 'x-secret-sauce' });
      return body(`vary-other ${n}`);
    case '/big':
      writeHead(200, { 'cache-control': 'max-age=60' });
      return body(`${'x'.repeat(1500)}${n}`);
    default:
      writeHead(404, {});
      res.end();
  }
}

beforeAll(async () => {
  origin = http.createServer(originHandler);
  await new Promise<void>((r) => origin!.listen(0, '127.0.0.1', r));
  const port = (origin.address() as { port: number }).port;
  const routes = [{ match: { prefix: '/' }, route: { cluster: 'origin' } }];
  const cache = (storage: Record<string, unknown>) => ({
    name: 'envoy.filters.http.cache',
    typed_config: { '@type': CACHE_TYPE, typed_config: storage, allowed_vary_headers: [{ exact: 'accept-language' }] },
  });
  m = await startMeshlet(
    bootstrap(
      [
        filterListener('cache', [cache({ '@type': 'type.googleapis.com/envoy.extensions.http.cache.simple_http_cache.v3.SimpleHttpCacheConfig' })], routes),
        filterListener('small', [cache({ '@type': 'type.googleapis.com/meshlet.http.cache.InMemoryCacheConfig', max_size_bytes: 4096 })], routes),
      ],
      [staticCluster('origin', [port])],
    ),
  );
});

afterEach(() => {
  vi.useRealTimers();
});

afterAll(async () => {
  await stopAllMeshlets();
  await new Promise((r) => (origin ? origin.close(r) : r(undefined)));
  await closeAll();
});

const get = (path: string, headers: Record<string, string> = {}, method = 'GET') =>
  request(m.listenerPort('cache'), path, { headers, method });

describe('cache hits and what is stored', () => {
  it('max-age: the second GET comes from memory with an age header', async () => {
    const a = await get('/max-age');
    const b = await get('/max-age');
    expect(a.body).toBe('max-age body 1');
    expect(b.body).toBe('max-age body 1');
    expect(b.headers.age).toBeDefined();
    expect(Number(b.headers.age)).toBeGreaterThanOrEqual(0);
    expect(b.headers.etag).toBe('"v1"');
    expect(hits.get('/max-age')).toBe(1);
  });

  it('s-maxage overrides max-age=0 for a shared cache; Expires gives freshness too', async () => {
    await get('/s-maxage');
    expect((await get('/s-maxage')).body).toBe('s-maxage 1');
    await get('/expires');
    expect((await get('/expires')).body).toBe('expires 1');
    expect(hits.get('/s-maxage')).toBe(1);
    expect(hits.get('/expires')).toBe(1);
  });

  it('no-store, private, no freshness and no validator, POST and authorization are never served from cache', async () => {
    for (const p of ['/no-store', '/private', '/plain']) {
      await get(p);
      expect((await get(p)).body).toBe(`${p.slice(1)} 2`);
    }
    await get('/max-age?post', {}, 'POST');
    await get('/max-age?post', {}, 'POST');
    expect(hits.get('/max-age?post')).toBe(2);
    await get('/max-age?auth', { authorization: 'Bearer x' });
    await get('/max-age?auth', { authorization: 'Bearer x' });
    expect(hits.get('/max-age?auth')).toBe(2);
  });

  it('HEAD is answered from a cached GET without a body', async () => {
    await get('/max-age?head');
    const h = await get('/max-age?head', {}, 'HEAD');
    expect(h.status).toBe(200);
    expect(h.body).toBe('');
    expect(h.headers.age).toBeDefined();
    expect(hits.get('/max-age?head')).toBe(1);
  });
});

describe('validation', () => {
  it('no-cache + ETag: every use is validated with If-None-Match; a 304 serves the cached body', async () => {
    expect((await get('/etag')).body).toBe('etag body');
    const before = seenHeaders.length;
    const b = await get('/etag');
    expect(b.status).toBe(200);
    expect(b.body).toBe('etag body');
    expect(b.headers['x-revalidated']).toBe('2');
    expect(seenHeaders[before]!['if-none-match']).toBe('"e1"');
    expect(hits.get('/etag')).toBe(2);
  });

  it('a stale entry with Last-Modified is validated with If-Modified-Since (clock moved, not waited for)', async () => {
    expect((await get('/last-modified')).body).toBe('lm body 1');
    expect((await get('/last-modified')).body).toBe('lm body 1');
    expect(hits.get('/last-modified')).toBe(1);
    vi.useFakeTimers({ toFake: ['Date'], now: Date.now() + 11_000 });
    const c = await get('/last-modified');
    expect(c.body).toBe('lm body 1');
    expect(hits.get('/last-modified')).toBe(2);
    expect(seenHeaders.at(-1)!['if-modified-since']).toBe('Wed, 21 Oct 2015 07:28:00 GMT');
  });

  it('request Cache-Control: no-cache forces validation; no-store bypasses', async () => {
    await get('/max-age?rq');
    const n = hits.get('/max-age?rq')!;
    await get('/max-age?rq', { 'cache-control': 'no-cache' });
    expect(hits.get('/max-age?rq')).toBe(n + 1);
    expect(seenHeaders.at(-1)!['if-none-match']).toBe('"v1"');
    await get('/max-age?rq', { 'cache-control': 'no-store' });
    expect(hits.get('/max-age?rq')).toBe(n + 2);
  });
});

describe('Vary', () => {
  it('stores one variant per allowed Vary header value; unknown Vary headers are not stored', async () => {
    expect((await get('/vary', { 'accept-language': 'en' })).body).toBe('lang=en 1');
    expect((await get('/vary', { 'accept-language': 'fr' })).body).toBe('lang=fr 2');
    expect((await get('/vary', { 'accept-language': 'en' })).body).toBe('lang=en 1');
    expect((await get('/vary', { 'accept-language': 'fr' })).body).toBe('lang=fr 2');
    await get('/vary-other');
    expect((await get('/vary-other')).body).toBe('vary-other 2');
  });
});

describe('HTTP/2 clients', () => {
  it('a cache hit is answered on an HTTP/2 stream like any response', async () => {
    const session = http2.connect(`http://127.0.0.1:${m.listenerPort('cache')}`);
    try {
      const get2 = () =>
        new Promise<{ status: number; age: string | undefined; body: string }>((resolve, reject) => {
          const s = session.request({ ':path': '/max-age?h2', ':method': 'GET' });
          let body = '';
          let status = 0;
          let age: string | undefined;
          s.on('response', (h) => {
            status = Number(h[':status']);
            age = h.age as string | undefined;
          });
          s.setEncoding('utf8');
          s.on('data', (c: string) => {
            body += c;
          });
          s.on('end', () => resolve({ status, age, body }));
          s.on('error', reject);
          s.end();
        });
      const a = await get2();
      const b = await get2();
      expect([a.status, b.status]).toEqual([200, 200]);
      expect(b.body).toBe(a.body);
      expect(b.age).toBeDefined();
      expect(hits.get('/max-age?h2')).toBe(1);
    } finally {
      session.close();
    }
  });
});

describe('size bound', () => {
  it('evicts least recently used entries to stay within max_size_bytes', async () => {
    const port = m.listenerPort('small');
    const g = (p: string) => request(port, p);
    await g('/big?1');
    await g('/big?2');
    await g('/big?1'); // touch 1: 2 is now the least recently used
    await g('/big?3'); // over 4096 bytes: evicts 2
    expect(hits.get('/big?1')).toBe(1);
    expect(hits.get('/big?3')).toBe(1);
    await g('/big?2');
    expect(hits.get('/big?2')).toBe(2);
    const listener = m.server.listeners.get('small')!;
    const f = listener.config.filterChains[0]!.filters[0]!;
    const cfg = (f.kind === 'http_connection_manager' ? f.hcm.httpFilters[0]!.config : undefined) as CacheFilterConfig;
    const store = cacheStoreFor(cfg);
    expect(store.size).toBeLessThanOrEqual(4096);
    expect(store.stats.evictions).toBeGreaterThanOrEqual(2);
  });
});

describe('cache config validation', () => {
  it('reports a missing or unknown storage and bad fields with paths', () => {
    expect(decodeWith(decodeCache, {}).errors.map((e) => e.path)).toEqual(['typed_config.typed_config']);
    const { errors } = decodeWith(decodeCache, {
      typed_config: { '@type': 'type.googleapis.com/envoy.extensions.http.cache.file_system_http_cache.v3.FileSystemHttpCacheConfig' },
      allowed_vary_headers: [{ exact: 'a', prefix: 'b' }],
      max_body_bytes: -1,
      key_creator_params: {},
    });
    expect(errors.map((e) => e.path).sort()).toEqual([
      'typed_config.allowed_vary_headers[0].prefix',
      'typed_config.key_creator_params',
      'typed_config.max_body_bytes',
      'typed_config.typed_config.@type',
    ]);
    const small = decodeWith(decodeCache, { typed_config: { '@type': 'type.googleapis.com/meshlet.http.cache.InMemoryCacheConfig', max_size_bytes: 10 } });
    expect(small.errors.map((e) => e.path)).toEqual(['typed_config.typed_config.max_size_bytes']);
  });
});
