/**
 * The admin HTTP server (Envoy's admin paths on admin.address, loopback by default; Istio's 15000).
 *
 * It owns only routing and the HTTP plumbing: components register their endpoints from the
 * composition root (`route()`), so admin knows nothing about clusters or listeners itself.
 * Mutations are POST only, as in Envoy: a GET to a mutating path answers 405.
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { Writable } from 'node:stream';
import { pipeline } from 'node:stream';
import { createGzip } from 'node:zlib';
import type { Address } from '../config/types';
import { logger } from '../../common/logger';
import { homeHtml, PAGE_CSP, wantsHtml, wantsJson } from './home-page';

const log = logger('admin');

export interface AdminResponse {
  status?: number;
  contentType?: string;
  body: string | Buffer;
  /**
   * A large body produced while it is sent (instead of body): called with a writer that sends one
   * chunk and, when the socket's buffer is full, returns a promise that settles on 'drain'; it
   * rejects once the client has gone, which should stop the producer.
   */
  stream?: (write: (chunk: Buffer) => void | Promise<void>) => Promise<void>;
  headers?: Record<string, string>;
}

/** How long a streamed response waits for a reader that stopped reading before it gives up. */
const STALLED_READER_MS = 30_000;

/** zlib level of gzip'ed scrapes: the fastest; exposition text still shrinks 10–20× at it. */
const GZIP_LEVEL = 1;
/** Bytes handed to the gzip stream at once (its output comes back in pieces of the same size). */
const GZIP_INPUT_BYTES = 64 * 1024;

/**
 * Whether a client's Accept-Encoding takes gzip (Prometheus sends `Accept-Encoding: gzip`): gzip,
 * or `*` without gzip named, with a q-value above 0.
 */
export function acceptsGzip(acceptEncoding: string | undefined): boolean {
  if (acceptEncoding === undefined) return false;
  let gzip: number | undefined;
  let any: number | undefined;
  for (const token of acceptEncoding.split(',')) {
    const semi = token.indexOf(';');
    const coding = (semi >= 0 ? token.slice(0, semi) : token).trim().toLowerCase();
    if (coding !== 'gzip' && coding !== 'x-gzip' && coding !== '*') continue;
    const q = semi >= 0 ? /^\s*q\s*=\s*([0-9.]+)\s*$/i.exec(token.slice(semi + 1))?.[1] : '1';
    const v = q === undefined ? 0 : Number(q);
    if (coding === '*') any = v;
    else gzip = v;
  }
  return (gzip ?? any ?? 0) > 0;
}

/**
 * Send what `produce` writes to `res` and end it, waiting for 'drain' whenever the socket buffer
 * is full (a 20 MB scrape is never buffered whole). A client that goes away, or reads nothing for
 * STALLED_READER_MS, stops the producer: the writer rejects and the response is destroyed.
 *
 * `gzip`: the body goes through a gzip stream first (the caller has set Content-Encoding). zlib
 * runs on libuv's thread pool, so besides saving the scraper 90–95% of the bytes this takes the
 * socket copies of the plain text (a third of a 10,000-cluster scrape's main-thread time) off
 * the event loop; backpressure runs from the socket through the gzip stream to the producer.
 */
export async function streamBody(
  res: ServerResponse,
  produce: (write: (chunk: Buffer) => void | Promise<void>) => Promise<void>,
  opts: { gzip?: boolean } = {},
): Promise<void> {
  const gone = new Error('client closed the connection');
  const z = opts.gzip === true ? createGzip({ level: GZIP_LEVEL, chunkSize: GZIP_INPUT_BYTES }) : undefined;
  // The gzip stream ends the response when it ends; a response closed early destroys it.
  if (z !== undefined) pipeline(z, res, () => undefined);
  const target: Writable = z ?? res;
  // Each write to the gzip stream is a round trip to the thread pool: small chunks (a scrape's
  // cached segments are ~12 KiB) are gathered into GZIP_INPUT_BYTES first.
  let staged: Buffer | undefined;
  let stagedLen = 0;
  const stage = (chunk: Buffer): Buffer | undefined => {
    if (stagedLen === 0 && chunk.length >= GZIP_INPUT_BYTES) return chunk;
    staged ??= Buffer.allocUnsafe(GZIP_INPUT_BYTES);
    let from = 0;
    while (from < chunk.length) {
      const n = chunk.copy(staged, stagedLen, from);
      from += n;
      stagedLen += n;
      if (stagedLen === GZIP_INPUT_BYTES && from < chunk.length) {
        // Full with more to come: send this one (rare: chunks are at most CHUNK_BYTES).
        target.write(staged);
        staged = Buffer.allocUnsafe(GZIP_INPUT_BYTES);
        stagedLen = 0;
      }
    }
    if (stagedLen < GZIP_INPUT_BYTES) return undefined;
    const full = staged;
    staged = undefined;
    stagedLen = 0;
    return full;
  };
  const write = (input: Buffer): void | Promise<void> => {
    if (res.destroyed || target.destroyed) throw gone;
    const chunk = z === undefined ? input : stage(input);
    if (chunk === undefined || target.write(chunk)) return;
    return new Promise<void>((resolve, reject) => {
      const done = (): void => {
        clearTimeout(timer);
        target.off('drain', done);
        target.off('close', done);
        res.off('close', done);
        if (res.destroyed || target.destroyed) reject(gone);
        else resolve();
      };
      // A reader that stops for good must not hold the producer (and what it holds) forever.
      const timer = setTimeout(() => {
        res.destroy();
        done();
      }, STALLED_READER_MS);
      target.on('drain', done);
      target.on('close', done);
      res.on('close', done);
    });
  };
  try {
    await produce(write);
  } catch (err) {
    if (err !== gone) log.warn({ err: (err as Error).message }, 'streamed admin response failed');
    res.destroy();
    z?.destroy();
    return;
  }
  if (res.destroyed) return;
  if (staged !== undefined && stagedLen > 0) target.write(staged.subarray(0, stagedLen));
  target.end();
}

export type AdminHandler = (query: URLSearchParams, req: IncomingMessage) => AdminResponse | Promise<AdminResponse>;

interface Entry {
  method: 'GET' | 'POST';
  help: string;
  handler: AdminHandler;
}

export function json(value: unknown, status = 200): AdminResponse {
  return { status, contentType: 'application/json', body: `${JSON.stringify(value, null, 2)}\n` };
}

export function text(body: string, status = 200): AdminResponse {
  return { status, contentType: 'text/plain; charset=UTF-8', body: body.endsWith('\n') ? body : `${body}\n` };
}

export class AdminServer {
  private readonly routes = new Map<string, Entry>();
  private server: http.Server | undefined;
  port = 0;

  /** Register an endpoint. Paths are exact; the query string is parsed for the handler. */
  route(method: 'GET' | 'POST', path: string, help: string, handler: AdminHandler): this {
    this.routes.set(path, { method, help, handler });
    return this;
  }

  /**
   * The index page lists every endpoint, like Envoy's admin home: text by default, HTML for a
   * browser (Accept: text/html), JSON for Accept: application/json.
   */
  private index(req: IncomingMessage): AdminResponse {
    const entries = [...this.routes]
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([path, e]) => ({ path, method: e.method, help: e.help }));
    if (wantsHtml(req)) return { contentType: 'text/html; charset=UTF-8', body: homeHtml(entries) };
    if (wantsJson(req)) return json({ endpoints: entries });
    const lines = ['meshlet admin', ''];
    for (const e of entries) lines.push(`  ${e.method.padEnd(5)}${e.path.padEnd(24)}${e.help}`);
    return text(lines.join('\n'));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://admin');
    let out: AdminResponse;
    if (url.pathname === '/' && (req.method === 'GET' || req.method === 'HEAD')) out = this.index(req);
    else {
      const e = this.routes.get(url.pathname);
      if (!e) out = text(`invalid path: ${url.pathname}; see / for the list of endpoints`, 404);
      else if (req.method !== e.method && !(req.method === 'HEAD' && e.method === 'GET')) {
        out = { ...text(`method not allowed: ${url.pathname} needs ${e.method}`, 405), headers: { allow: e.method } };
      } else {
        try {
          out = await e.handler(url.searchParams, req);
        } catch (err) {
          log.error({ path: url.pathname, err: (err as Error).message }, 'admin handler failed');
          out = text(`internal error: ${(err as Error).message}`, 500);
        }
      }
    }
    // Plain even for a client that asks for gzip, as Envoy's admin (its gzip example checks that
    // 9901 answers without content-encoding); the 15090 and 15020 ports compress.
    res.writeHead(out.status ?? 200, {
      'content-type': out.contentType ?? 'text/plain; charset=UTF-8',
      'cache-control': 'no-cache, max-age=0',
      'x-content-type-options': 'nosniff',
      ...(out.contentType?.startsWith('text/html') ? { 'content-security-policy': PAGE_CSP } : {}),
      ...out.headers,
    });
    if (out.stream !== undefined && req.method !== 'HEAD') await streamBody(res, out.stream);
    else res.end(req.method === 'HEAD' ? undefined : out.body);
  }

  /** `exclusive`: bind in this process even inside a node:cluster worker (never shared). */
  listen(address: Address, opts: { exclusive?: boolean } = {}): Promise<void> {
    const server = http.createServer((req, res) => {
      void this.handle(req, res);
    });
    server.keepAliveTimeout = 5_000;
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      const ready = (): void => {
        server.removeListener('error', reject);
        const a = server.address();
        if (a && typeof a === 'object') this.port = a.port;
        resolve();
      };
      const exclusive = opts.exclusive === true;
      if (address.kind === 'pipe') server.listen({ path: address.path, exclusive }, ready);
      else server.listen({ port: address.port, host: address.host, exclusive }, ready);
    });
  }

  async close(): Promise<void> {
    const s = this.server;
    if (!s) return;
    s.closeAllConnections();
    await new Promise<void>((r) => s.close(() => r()));
  }
}
