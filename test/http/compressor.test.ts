/**
 * envoy.filters.http.compressor and envoy.filters.http.decompressor through a real meshlet:
 * gzip- and brotli-decoding clients (undici, curl --compressed, an HTTP/2 client), Envoy's
 * decisions (Accept-Encoding q-values and choose_first, min_content_length, content types,
 * ETag, no-transform, Vary), request compression and decompression, a slow reader that must
 * pause the upstream instead of buffering the body, the counters, and config validation.
 */
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import zlib from 'node:zlib';
import { promisify } from 'node:util';
import { request as undiciRequest } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeBootstrap } from '../../proxy/config/bootstrap';
import { createRegistries } from '../../proxy/registry';
import { bootstrap, httpListener, ROUTER_TYPE, routes, staticCluster, startMeshlet, stopAllMeshlets, type StartedMeshlet } from '../support/meshlet';

const run = promisify(execFile);
const COMPRESSOR = 'type.googleapis.com/envoy.extensions.filters.http.compressor.v3.Compressor';
const DECOMPRESSOR = 'type.googleapis.com/envoy.extensions.filters.http.decompressor.v3.Decompressor';
const GZIP = 'type.googleapis.com/envoy.extensions.compression.gzip.compressor.v3.Gzip';
const BROTLI = 'type.googleapis.com/envoy.extensions.compression.brotli.compressor.v3.Brotli';
const PER_ROUTE = 'type.googleapis.com/envoy.extensions.filters.http.compressor.v3.CompressorPerRoute';
const GUNZIP = 'type.googleapis.com/envoy.extensions.compression.gzip.decompressor.v3.Gzip';
const ROUTER = { name: 'envoy.filters.http.router', typed_config: { '@type': ROUTER_TYPE } };

/** Compressible text of n bytes (words, not one repeated byte). */
function text(n: number): Buffer {
  const words = 'the quick brown fox jumps over a lazy dog while meshlet streams bytes '.split(' ');
  const parts: string[] = [];
  let len = 0;
  for (let i = 0; len < n; i++) {
    const w = `${words[i % words.length]}${i % 97} `;
    parts.push(w);
    len += w.length;
  }
  return Buffer.from(parts.join('').slice(0, n));
}
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

const BIG = text(600_000);
const RANDOM = randomBytes(64 * 1024 * 1024);
let randomWritten = 0;
let upstream: http.Server;
let upPort = 0;
const seen: { path: string; headers: http.IncomingHttpHeaders; body: Buffer }[] = [];

function handle(req: IncomingMessage, res: ServerResponse): void {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.concat(chunks);
    seen.push({ path: req.url ?? '', headers: req.headers, body });
    const url = req.url ?? '/';
    if (url === '/big') {
      res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'content-length': BIG.length, etag: '"strong"' });
      res.end(BIG);
    } else if (url === '/weak-etag') {
      res.writeHead(200, { 'content-type': 'application/json', etag: 'W/"weak"' });
      res.end(BIG.subarray(0, 5000));
    } else if (url === '/chunked') {
      res.writeHead(200, { 'content-type': 'text/html' });
      let i = 0;
      const step = (): void => {
        while (i < BIG.length) {
          const ok = res.write(BIG.subarray(i, i + 16_384));
          i += 16_384;
          if (!ok) return void res.once('drain', step);
        }
        res.end();
      };
      step();
    } else if (url === '/small') {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 10 });
      res.end('0123456789');
    } else if (url === '/png') {
      res.writeHead(200, { 'content-type': 'image/png' });
      res.end(BIG.subarray(0, 4000));
    } else if (url === '/no-transform') {
      res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'public, no-transform' });
      res.end(BIG.subarray(0, 4000));
    } else if (url === '/random') {
      // Incompressible: the compressed stream is as large as the body, so a slow reader fills every buffer.
      res.writeHead(200, { 'content-type': 'text/plain' });
      randomWritten = 0;
      const step = (): void => {
        while (randomWritten < RANDOM.length) {
          const ok = res.write(RANDOM.subarray(randomWritten, randomWritten + 65_536));
          randomWritten += 65_536;
          if (!ok) return void res.once('drain', step);
        }
        res.end();
      };
      step();
    } else if (url === '/partial') {
      res.writeHead(206, { 'content-type': 'text/plain' });
      res.end(BIG.subarray(0, 5000));
    } else if (url === '/gzipped-nt') {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-encoding': 'gzip', 'cache-control': 'no-transform' });
      res.end(zlib.gzipSync(BIG));
    } else if (url === '/gzipped') {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-encoding': 'gzip' });
      res.end(zlib.gzipSync(BIG));
    } else if (url === '/echo') {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'x-got-encoding': String(req.headers['content-encoding'] ?? '') });
      res.end(body);
    } else {
      res.writeHead(404);
      res.end();
    }
  });
}

function listener(name: string, filters: Record<string, unknown>[]): Record<string, unknown> {
  return httpListener(name, routes([{ match: { prefix: '/' }, route: { cluster: 'up' } }]), { http_filters: [...filters, ROUTER] });
}
const gzipFilter = (extra: Record<string, unknown> = {}, lib: Record<string, unknown> = {}): Record<string, unknown> => ({
  name: 'envoy.filters.http.compressor',
  typed_config: { '@type': COMPRESSOR, compressor_library: { name: 'text', typed_config: { '@type': GZIP, ...lib } }, ...extra },
});
const brotliFilter = (extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  name: 'envoy.filters.http.compressor.br',
  typed_config: { '@type': COMPRESSOR, compressor_library: { name: 'text', typed_config: { '@type': BROTLI, quality: 4 } }, ...extra },
});

/** An HTTP/2 upstream: /trailers answers BIG then trailers; /echo answers the request body and echoes its trailers. */
let h2up: http2.Http2Server;
let h2Seen: { body: Buffer; trailers: http2.IncomingHttpHeaders | undefined; encoding: string | undefined } | undefined;
const H2_CLUSTER_OPTS = {
  typed_extension_protocol_options: {
    'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
      '@type': 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
      explicit_http_config: { http2_protocol_options: {} },
    },
  },
};

let m: StartedMeshlet;
let port = (name: string): number => m.listenerPort(name);

beforeAll(async () => {
  upstream = http.createServer(handle);
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  upPort = (upstream.address() as net.AddressInfo).port;
  h2up = http2.createServer();
  h2up.on('stream', (stream, headers) => {
    const chunks: Buffer[] = [];
    let trailers: http2.IncomingHttpHeaders | undefined;
    stream.on('trailers', (t: http2.IncomingHttpHeaders) => (trailers = t));
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => {
      h2Seen = { body: Buffer.concat(chunks), trailers, encoding: headers['content-encoding'] as string | undefined };
      stream.respond({ ':status': 200, 'content-type': 'text/plain' }, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'x-checksum': sha(BIG) }));
      stream.end(headers[':path'] === '/trailers' ? BIG : Buffer.concat(chunks));
    });
  });
  await new Promise<void>((r) => h2up.listen(0, '127.0.0.1', r));
  const h2Port = (h2up.address() as net.AddressInfo).port;
  m = await startMeshlet(
    bootstrap(
      [
        listener('gzip', [gzipFilter({ response_direction_config: { disable_on_etag_header: false, remove_accept_encoding_header: true, uncompressible_response_codes: [206] } })]),
        listener('both', [gzipFilter(), brotliFilter({ choose_first: true })]),
        listener('etag', [gzipFilter({ response_direction_config: { disable_on_etag_header: true } })]),
        listener('request', [
          gzipFilter({
            request_direction_config: { common_config: { min_content_length: 100, content_type: ['text/plain'] } },
            response_direction_config: { common_config: { enabled: { default_value: false, runtime_key: 'resp' } } },
          }),
        ]),
        listener('decomp', [
          { name: 'envoy.filters.http.decompressor', typed_config: { '@type': DECOMPRESSOR, decompressor_library: { name: 'up', typed_config: { '@type': GUNZIP } } } },
        ]),
        listener('decomp-nt', [
          {
            name: 'envoy.filters.http.decompressor',
            typed_config: { '@type': DECOMPRESSOR, decompressor_library: { name: 'up', typed_config: { '@type': GUNZIP } }, response_direction_config: { common_config: { ignore_no_transform_header: true } } },
          },
        ]),
        httpListener(
          'perroute',
          routes([
            { match: { prefix: '/', headers: [{ name: 'x-route', string_match: { exact: 'off' } }] }, route: { cluster: 'up' }, typed_per_filter_config: { 'envoy.filters.http.compressor': { '@type': PER_ROUTE, disabled: true } } },
            {
              match: { prefix: '/', headers: [{ name: 'x-route', string_match: { exact: 'keep' } }] },
              route: { cluster: 'up' },
              typed_per_filter_config: { 'envoy.filters.http.compressor': { '@type': PER_ROUTE, overrides: { response_direction_config: { remove_accept_encoding_header: false } } } },
            },
            { match: { prefix: '/' }, route: { cluster: 'up' } },
          ]),
          { http_filters: [gzipFilter({ response_direction_config: { remove_accept_encoding_header: true } }), ROUTER] },
        ),
        httpListener('h2gzip', routes([{ match: { prefix: '/' }, route: { cluster: 'h2up' } }]), { http_filters: [gzipFilter(), ROUTER] }),
        httpListener('h2decomp', routes([{ match: { prefix: '/' }, route: { cluster: 'h2up' } }]), {
          http_filters: [{ name: 'd', typed_config: { '@type': DECOMPRESSOR, decompressor_library: { name: 'up', typed_config: { '@type': GUNZIP } } } }, ROUTER],
        }),
      ],
      [staticCluster('up', [upPort]), staticCluster('h2up', [h2Port], H2_CLUSTER_OPTS)],
    ),
  );
  port = (name) => m.listenerPort(name);
});

afterAll(async () => {
  await stopAllMeshlets();
  await new Promise((r) => upstream.close(r));
  await new Promise((r) => h2up.close(r));
});

async function get(listenerName: string, path: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: http.IncomingHttpHeaders; raw: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port: port(listenerName), path, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, raw: Buffer.concat(chunks) }));
    });
    req.on('error', reject);
  });
}

async function stats(): Promise<Map<string, number>> {
  const r = await undiciRequest(`http://127.0.0.1:${m.adminPort}/stats`);
  const out = new Map<string, number>();
  for (const line of (await r.body.text()).split('\n')) {
    const i = line.lastIndexOf(': ');
    if (i > 0) out.set(line.slice(0, i), Number(line.slice(i + 2)));
  }
  return out;
}

describe('compressor: responses', () => {
  it('gzip for undici (a gzip-decoding client): the body round-trips, Content-Length goes, Vary comes', async () => {
    const before = await stats();
    const r = await undiciRequest(`http://127.0.0.1:${port('gzip')}/big`, { headers: { 'accept-encoding': 'gzip' } });
    expect(r.statusCode).toBe(200);
    expect(r.headers['content-encoding']).toBe('gzip');
    expect(r.headers['content-length']).toBeUndefined();
    expect(r.headers.vary).toBe('Accept-Encoding');
    expect(r.headers.etag).toBeUndefined(); // a strong ETag does not describe the compressed bytes
    const wire = Buffer.from(await r.body.arrayBuffer());
    expect(wire.length).toBeLessThan(BIG.length / 3);
    expect(sha(zlib.gunzipSync(wire))).toBe(sha(BIG));
    // remove_accept_encoding_header: the upstream did not see the client's Accept-Encoding
    expect(seen.at(-1)!.headers['accept-encoding']).toBeUndefined();
    const after = await stats();
    const p = 'http.gzip.compressor.text.gzip.response.';
    expect(after.get(`${p}compressed`)! - (before.get(`${p}compressed`) ?? 0)).toBe(1);
    expect(after.get(`${p}total_uncompressed_bytes`)! - (before.get(`${p}total_uncompressed_bytes`) ?? 0)).toBe(BIG.length);
    expect(after.get(`${p}total_compressed_bytes`)! - (before.get(`${p}total_compressed_bytes`) ?? 0)).toBe(wire.length);
    expect(after.get('http.gzip.compressor.text.gzip.header_compressor_used')).toBeGreaterThanOrEqual(1);
  });

  it('fetch() (undici) decodes a streamed (chunked) gzip response transparently', async () => {
    const r = await fetch(`http://127.0.0.1:${port('gzip')}/chunked`);
    expect(r.headers.get('content-encoding')).toBe('gzip');
    expect(sha(Buffer.from(await r.arrayBuffer()))).toBe(sha(BIG));
  });

  it('curl --compressed gets brotli where brotli has choose_first, gzip otherwise', async () => {
    const both = await run('curl', ['-s', '--compressed', '-D', '-', '-o', '/dev/null', `http://127.0.0.1:${port('both')}/big`]);
    expect(both.stdout.toLowerCase()).toContain('content-encoding: br');
    const body = await run('curl', ['-s', '--compressed', `http://127.0.0.1:${port('both')}/big`], { maxBuffer: 4 << 20, encoding: 'buffer' });
    expect(sha(body.stdout as unknown as Buffer)).toBe(sha(BIG));
    const gz = await run('curl', ['-s', '--compressed', '-D', '-', '-o', '/dev/null', `http://127.0.0.1:${port('gzip')}/big`]);
    expect(gz.stdout.toLowerCase()).toContain('content-encoding: gzip');
  });

  it('Accept-Encoding q-values pick the encoding; q=0 and identity are honoured', async () => {
    const gz = await get('both', '/big', { 'accept-encoding': 'br;q=0.5, gzip;q=0.9' });
    expect(gz.headers['content-encoding']).toBe('gzip');
    const br = await get('both', '/big', { 'accept-encoding': 'gzip;q=0.1, br' });
    expect(br.headers['content-encoding']).toBe('br');
    expect(sha(zlib.brotliDecompressSync(br.raw))).toBe(sha(BIG));
    const none = await get('both', '/big', { 'accept-encoding': 'gzip;q=0, br;q=0' });
    expect(none.headers['content-encoding']).toBeUndefined();
    expect(none.headers.vary).toBe('Accept-Encoding');
    const wildcard = await get('both', '/big', { 'accept-encoding': '*' });
    expect(wildcard.headers['content-encoding']).toBe('gzip'); // the first compressor of the chain
    const identity = await get('both', '/big', { 'accept-encoding': 'identity' });
    expect(identity.headers['content-encoding']).toBeUndefined();
    expect(identity.raw.equals(BIG)).toBe(true);
  });

  it('not compressed: no Accept-Encoding, too small, other content types, no-transform, ETag when disabled', async () => {
    const before = await stats();
    const noAe = await get('gzip', '/big');
    expect(noAe.headers['content-encoding']).toBeUndefined();
    expect(noAe.headers.vary).toBe('Accept-Encoding');
    expect(noAe.raw.equals(BIG)).toBe(true);
    const small = await get('gzip', '/small', { 'accept-encoding': 'gzip' });
    expect(small.headers['content-encoding']).toBeUndefined();
    expect(small.raw.toString()).toBe('0123456789');
    const png = await get('gzip', '/png', { 'accept-encoding': 'gzip' });
    expect(png.headers['content-encoding']).toBeUndefined();
    expect(png.headers.vary).toBeUndefined();
    const nt = await get('gzip', '/no-transform', { 'accept-encoding': 'gzip' });
    expect(nt.headers['content-encoding']).toBeUndefined();
    const etag = await get('etag', '/big', { 'accept-encoding': 'gzip' });
    expect(etag.headers['content-encoding']).toBeUndefined();
    expect(etag.headers.etag).toBe('"strong"');
    const partial = await get('gzip', '/partial', { 'accept-encoding': 'gzip' });
    expect(partial.status).toBe(206);
    expect(partial.headers['content-encoding']).toBeUndefined(); // uncompressible_response_codes
    const weak = await get('gzip', '/weak-etag', { 'accept-encoding': 'gzip' });
    expect(weak.headers['content-encoding']).toBe('gzip');
    expect(weak.headers.etag).toBe('W/"weak"');
    const after = await stats();
    const d = (k: string): number => (after.get(k) ?? 0) - (before.get(k) ?? 0);
    expect(d('http.gzip.compressor.text.gzip.no_accept_header')).toBe(1);
    expect(d('http.gzip.compressor.text.gzip.response.content_length_too_small')).toBe(1);
    expect(d('http.gzip.compressor.text.gzip.response.not_compressed')).toBe(5);
    expect(d('http.etag.compressor.text.gzip.not_compressed_etag')).toBe(1);
  });

  it('an HTTP/2 client gets brotli', async () => {
    const s = http2.connect(`http://127.0.0.1:${port('both')}`);
    try {
      const req = s.request({ ':path': '/chunked', 'accept-encoding': 'br' });
      const chunks: Buffer[] = [];
      const head = await new Promise<http2.IncomingHttpHeaders>((r) => req.on('response', r));
      req.on('data', (c: Buffer) => chunks.push(c));
      await new Promise((r) => req.on('end', r));
      expect(head['content-encoding']).toBe('br');
      expect(sha(zlib.brotliDecompressSync(Buffer.concat(chunks)))).toBe(sha(BIG));
    } finally {
      s.close();
    }
  });

  it('a slow reader pauses the upstream: the compressor does not buffer the body', async () => {
    const sock = net.connect(port('gzip'), '127.0.0.1');
    await new Promise((r) => sock.once('connect', r));
    sock.write('GET /random HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n');
    const received: Buffer[] = [];
    let got = 0;
    let reading = false;
    sock.on('data', (c: Buffer) => {
      received.push(c);
      got += c.length;
      if (!reading && got > 64 * 1024) sock.pause(); // read a little, then stop reading
    });
    // With flow control the upstream stalls once the buffers on the way (kernel socket buffers,
    // zlib's, the codecs') are full; without it meshlet would read all 64 MiB into memory.
    let last = -1;
    for (let i = 0; i < 40 && randomWritten !== last; i++) {
      last = randomWritten;
      await new Promise((r) => setTimeout(r, 500));
    }
    expect(randomWritten).toBe(last);
    expect(randomWritten).toBeLessThan(RANDOM.length / 2);
    reading = true;
    sock.resume();
    const done = new Promise<void>((resolve) => {
      let tail = '';
      const check = (c: Buffer): void => {
        tail = (tail + c.subarray(-5).toString('latin1')).slice(-5);
        if (tail === '0\r\n\r\n') resolve();
      };
      sock.on('data', check);
    });
    await done;
    sock.destroy();
    const all = Buffer.concat(received);
    const headEnd = all.indexOf('\r\n\r\n');
    expect(all.subarray(0, headEnd).toString()).toMatch(/content-encoding: gzip/i);
    // de-chunk
    const parts: Buffer[] = [];
    let i = headEnd + 4;
    for (;;) {
      const eol = all.indexOf('\r\n', i);
      const n = parseInt(all.subarray(i, eol).toString(), 16);
      if (n === 0) break;
      parts.push(all.subarray(eol + 2, eol + 2 + n));
      i = eol + 2 + n + 2;
    }
    expect(sha(zlib.gunzipSync(Buffer.concat(parts)))).toBe(sha(RANDOM));
  }, 30_000);
});

describe('compressor: CompressorPerRoute', () => {
  it('disabled turns compression off for the route; overrides change remove_accept_encoding_header', async () => {
    const on = await get('perroute', '/big', { 'accept-encoding': 'gzip' });
    expect(on.headers['content-encoding']).toBe('gzip');
    expect(seen.at(-1)!.headers['accept-encoding']).toBeUndefined();
    const off = await get('perroute', '/big', { 'accept-encoding': 'gzip', 'x-route': 'off' });
    expect(off.headers['content-encoding']).toBeUndefined();
    expect(off.raw.equals(BIG)).toBe(true);
    expect(seen.at(-1)!.headers['accept-encoding']).toBe('gzip'); // disabled: the header is left alone
    const keep = await get('perroute', '/big', { 'accept-encoding': 'gzip', 'x-route': 'keep' });
    expect(keep.headers['content-encoding']).toBe('gzip');
    expect(seen.at(-1)!.headers['accept-encoding']).toBe('gzip');
  });
});

describe('compressor: enabled read from the runtime', () => {
  it('a RuntimeFeatureFlag runtime_key switches response compression through /runtime_modify', async () => {
    const off = await get('request', '/big', { 'accept-encoding': 'gzip' });
    expect(off.headers['content-encoding']).toBeUndefined(); // default_value: false
    const admin = (q: string) => undiciRequest(`http://127.0.0.1:${m.adminPort}/runtime_modify?${q}`, { method: 'POST' }).then((r) => r.body.text());
    expect(await admin('resp=true')).toBe('OK\n');
    try {
      const on = await get('request', '/big', { 'accept-encoding': 'gzip' });
      expect(on.headers['content-encoding']).toBe('gzip');
      expect(sha(zlib.gunzipSync(on.raw))).toBe(sha(BIG));
    } finally {
      await admin('resp=');
    }
  });
});

describe('compressor: requests', () => {
  it('request_direction_config compresses a large text/plain request body; small and other types pass', async () => {
    const big = text(200_000);
    const r = await undiciRequest(`http://127.0.0.1:${port('request')}/echo`, { method: 'POST', body: big, headers: { 'content-type': 'text/plain', 'accept-encoding': 'gzip' } });
    expect(r.headers['x-got-encoding']).toBe('gzip');
    const echoed = Buffer.from(await r.body.arrayBuffer());
    expect(r.headers['content-encoding']).toBeUndefined(); // response direction disabled
    expect(sha(zlib.gunzipSync(echoed))).toBe(sha(big));
    const small = await undiciRequest(`http://127.0.0.1:${port('request')}/echo`, { method: 'POST', body: 'tiny', headers: { 'content-type': 'text/plain' } });
    expect(small.headers['x-got-encoding']).toBe('');
    expect(await small.body.text()).toBe('tiny');
    const json = await undiciRequest(`http://127.0.0.1:${port('request')}/echo`, { method: 'POST', body: big, headers: { 'content-type': 'application/json' } });
    expect(json.headers['x-got-encoding']).toBe('');
    expect(sha(Buffer.from(await json.body.arrayBuffer()))).toBe(sha(big));
  });
});

describe('decompressor', () => {
  it('decompresses a gzip response for a client that asked for none, and advertises gzip upstream', async () => {
    // Envoy advertises on requests with a body only (a headers-only request passes untouched).
    const r = await new Promise<{ status: number; headers: http.IncomingHttpHeaders; raw: Buffer }>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port: port('decomp'), path: '/gzipped', method: 'POST' }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, raw: Buffer.concat(chunks) }));
      });
      req.on('error', reject);
      req.end('x');
    });
    expect(r.status).toBe(200);
    expect(r.headers['content-encoding']).toBeUndefined();
    expect(sha(r.raw)).toBe(sha(BIG));
    expect(seen.at(-1)!.headers['accept-encoding']).toBe('gzip');
  });

  it('Cache-Control: no-transform is respected unless ignore_no_transform_header', async () => {
    const kept = await get('decomp', '/gzipped-nt');
    expect(kept.headers['content-encoding']).toBe('gzip');
    expect(sha(zlib.gunzipSync(kept.raw))).toBe(sha(BIG));
    const ignored = await get('decomp-nt', '/gzipped-nt');
    expect(ignored.headers['content-encoding']).toBeUndefined();
    expect(sha(ignored.raw)).toBe(sha(BIG));
  });

  it('decompresses a gzip request body before the upstream; a corrupt one is answered 400', async () => {
    const big = text(300_000);
    const r = await undiciRequest(`http://127.0.0.1:${port('decomp')}/echo`, { method: 'POST', body: zlib.gzipSync(big), headers: { 'content-encoding': 'gzip' } });
    expect(r.headers['x-got-encoding']).toBe('');
    expect(sha(Buffer.from(await r.body.arrayBuffer()))).toBe(sha(big));
    const bad = await undiciRequest(`http://127.0.0.1:${port('decomp')}/echo`, { method: 'POST', body: Buffer.from('not gzip at all, not even close'), headers: { 'content-encoding': 'gzip' } });
    await bad.body.dump();
    expect(bad.statusCode).toBe(400);
    const s = await stats();
    expect(s.get('http.decomp.decompressor.up.gzip.request.decompressed')).toBeGreaterThanOrEqual(2);
    expect(s.get('http.decomp.decompressor.up.gzip.decompression_errors')).toBeGreaterThanOrEqual(1);
  });
});

describe('compressor config validation', () => {
  const decode = (filter: Record<string, unknown>) => {
    const reg = createRegistries();
    try {
      const { warnings } = decodeBootstrap(bootstrap([listener('v', [filter])], [staticCluster('up', [1])]), { httpFilters: reg.httpFilters });
      return { errors: '', warnings: warnings.map((w) => `${w.path}: ${w.message}`).join('\n') };
    } catch (e) {
      return { errors: String(e), warnings: '' };
    }
  };
  it('rejects a missing library, a zstd decompressor without node support (a zstd compressor warns), bad ranges and enum names, with their paths', () => {
    expect(decode({ name: 'c', typed_config: { '@type': COMPRESSOR } }).errors).toMatch(/compressor_library: is required/);
    const zstd = decode({ name: 'c', typed_config: { '@type': COMPRESSOR, compressor_library: { name: 'z', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.compression.zstd.compressor.v3.Zstd' } } } });
    // Without zstd in node:zlib the compressor filter is left out with a warning (istiod's bootstrap
    // lists brotli, zstd and gzip); a zstd decompressor is an error.
    expect(zstd.errors).toBe('');
    const zstdD = decode({ name: 'd', typed_config: { '@type': DECOMPRESSOR, decompressor_library: { name: 'z', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.compression.zstd.decompressor.v3.Zstd' } } } });
    if (typeof (zlib as unknown as Record<string, unknown>).createZstdCompress !== 'function') {
      expect(zstd.warnings).toMatch(/compressor_library\.typed_config\.@type: zstd needs node:zlib zstd support .*this compressor filter is left out/);
      expect(zstdD.errors).toMatch(/zstd needs node:zlib zstd support/);
    } else expect([zstd.warnings, zstdD.errors]).toEqual(['', '']);
    expect(decode(gzipFilter({}, { window_bits: 30 })).errors).toMatch(/compressor_library\.typed_config\.window_bits/);
    expect(decode(gzipFilter({}, { compression_level: 'FASTEST' })).errors).toMatch(/compression_level: unknown value/);
    expect(decode(gzipFilter({ content_length: 10, response_direction_config: {} })).errors).toMatch(/content_length: is deprecated and may not be combined/);
    const other = decode({ name: 'c', typed_config: { '@type': COMPRESSOR, compressor_library: { name: 'x', typed_config: { '@type': GUNZIP } } } });
    expect(other.errors).toMatch(/compressor library .*decompressor.v3.Gzip is not supported/);
  });
  it('CompressorPerRoute: one of disabled and overrides; the type is not a filter of its own', () => {
    const perRoute = (cfg: Record<string, unknown>): string => {
      try {
        const raw = bootstrap(
          [httpListener('v', routes([{ match: { prefix: '/' }, route: { cluster: 'up' }, typed_per_filter_config: { c: { '@type': PER_ROUTE, ...cfg } } }]), { http_filters: [{ name: 'c', typed_config: gzipFilter().typed_config }, ROUTER] })],
          [staticCluster('up', [1])],
        );
        decodeBootstrap(raw, { httpFilters: createRegistries().httpFilters });
        return '';
      } catch (e) {
        return String(e);
      }
    };
    expect(perRoute({ disabled: true })).toBe('');
    expect(perRoute({})).toMatch(/one of disabled, overrides must be set/);
    expect(perRoute({ disabled: false })).toMatch(/disabled: must be true/);
    expect(perRoute({ overrides: {} })).toMatch(/overrides\.response_direction_config: is required/);
    expect(decode({ name: 'c', typed_config: { '@type': PER_ROUTE, disabled: true } }).errors).toMatch(/only valid in typed_per_filter_config/);
  });

  it('warns about fields it does not honour', () => {
    const w = decode({ name: 'd', typed_config: { '@type': DECOMPRESSOR, decompressor_library: { name: 'x', typed_config: { '@type': GUNZIP } }, response_direction_config: { common_config: { max_buffered_bytes: 1000 } } } });
    expect(w.errors).toBe('');
    expect(w.warnings).toMatch(/response_direction_config\.common_config\.max_buffered_bytes: not supported by meshlet, ignored/);
    expect(decode(gzipFilter({ response_direction_config: { uncompressible_response_codes: [99] } })).errors).toMatch(/uncompressible_response_codes\[0\]: must be an HTTP status 200-599/);
  });
});

describe('trailers after a transformed body (HTTP/2)', () => {
  async function h2(listenerName: string, headers: http2.OutgoingHttpHeaders, body: Buffer | undefined, trailers?: http2.OutgoingHttpHeaders) {
    const s = http2.connect(`http://127.0.0.1:${port(listenerName)}`);
    try {
      const req = s.request({ ':method': body ? 'POST' : 'GET', ...headers }, trailers ? { waitForTrailers: true } : {});
      if (trailers) req.on('wantTrailers', () => req.sendTrailers(trailers));
      req.end(body);
      const head = await new Promise<http2.IncomingHttpHeaders>((r) => req.on('response', r));
      let got: http2.IncomingHttpHeaders | undefined;
      req.on('trailers', (t: http2.IncomingHttpHeaders) => (got = t));
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      await new Promise((r) => req.on('end', r));
      return { head, body: Buffer.concat(chunks), trailers: got };
    } finally {
      s.close();
    }
  }

  it('compressor: the response trailers follow the last compressed bytes', async () => {
    const r = await h2('h2gzip', { ':path': '/trailers', 'accept-encoding': 'gzip' }, undefined);
    expect(r.head['content-encoding']).toBe('gzip');
    expect(sha(zlib.gunzipSync(r.body))).toBe(sha(BIG));
    expect(r.trailers?.['x-checksum']).toBe(sha(BIG));
  });

  it('decompressor: request trailers follow the last decompressed bytes', async () => {
    const big = text(150_000);
    const r = await h2('h2decomp', { ':path': '/echo', 'content-encoding': 'gzip' }, zlib.gzipSync(big), { 'x-req-trailer': 'yes' });
    expect(r.head[':status']).toBe(200);
    expect(h2Seen!.encoding).toBeUndefined();
    expect(sha(h2Seen!.body)).toBe(sha(big));
    expect(h2Seen!.trailers?.['x-req-trailer']).toBe('yes');
    expect(sha(r.body)).toBe(sha(big));
  });
});
