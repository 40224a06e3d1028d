/**
 * Steady keep-alive load with real clients (node:http with a keep-alive Agent, node:http2
 * sessions), for drain and rollover tests. Each loop sends one request at a time, bounded in
 * count and by a stop condition, and retries only what a real client may retry:
 *
 * - any request whose connection was refused (nothing was sent);
 * - HTTP/2: a stream the server refused (REFUSED_STREAM, e.g. above a GOAWAY's last stream id)
 *   or a request made on a session that is already closing (never sent);
 * - HTTP/1.1: an idempotent request (GET) whose reused keep-alive connection closed before any
 *   response byte — what node documents for `req.reusedSocket` and undici does for idempotent
 *   requests. A POST is never retried: a proxy that closes a connection that may carry a new
 *   request, without telling the client first, loses it.
 *
 * Anything else that is not a 200 is lost.
 */
import http from 'node:http';
import http2 from 'node:http2';
import https from 'node:https';

export interface LoadTarget {
  readonly port: number;
  readonly protocol: 'h1' | 'h2';
  readonly method: 'GET' | 'POST';
  /** TLS options (the client side of mTLS) for an https / h2-over-TLS target. */
  readonly tls?: { readonly ca: string | Buffer; readonly cert?: string | Buffer; readonly key?: string | Buffer; readonly servername?: string };
}

export interface LoadResult {
  readonly target: string;
  ok: number;
  /** Requests answered 200 after `marker()` first returned true (e.g. after SIGTERM). */
  okAfterMarker: number;
  retried: number;
  /** HTTP/1.1 responses that carried `connection: close`. */
  closeHeaders: number;
  /** GOAWAY frames received on HTTP/2 sessions. */
  goaways: number;
  /** One line per lost request. */
  readonly lost: string[];
}

export interface LoadOptions {
  readonly concurrency: number;
  /** Per loop. */
  readonly maxRequests: number;
  readonly stop: () => boolean;
  readonly marker?: () => boolean;
  /** Retries of one request before it counts as lost (default 50). */
  readonly maxRetries?: number;
}

type Outcome = 'ok' | 'retry' | string;

const BODY = Buffer.from('x'.repeat(512));
const REFUSED_STREAM = http2.constants.NGHTTP2_REFUSED_STREAM;

function h1Client(t: LoadTarget, concurrency: number, r: LoadResult): { once(): Promise<Outcome>; close(): void } {
  const agent = t.tls
    ? new https.Agent({ keepAlive: true, maxSockets: concurrency, ...t.tls })
    : new http.Agent({ keepAlive: true, maxSockets: concurrency });
  const mod = t.tls ? https : http;
  return {
    close: () => agent.destroy(),
    once: () =>
      new Promise<Outcome>((resolve) => {
        const headers: http.OutgoingHttpHeaders = t.method === 'POST' ? { 'content-type': 'text/plain', 'content-length': BODY.length } : {};
        const req = mod.request({ host: '127.0.0.1', port: t.port, method: t.method, path: '/load', agent, headers, ...(t.tls ?? {}) });
        let responded = false;
        req.on('response', (res) => {
          responded = true;
          if (res.headers.connection === 'close') r.closeHeaders++;
          res.on('data', () => {});
          res.on('end', () => resolve(res.statusCode === 200 ? 'ok' : `${t.method} status ${res.statusCode}`));
          res.on('error', (e) => resolve(`${t.method} response aborted: ${e.message}`));
        });
        req.on('error', (err: NodeJS.ErrnoException) => {
          if (responded) return;
          if (err.code === 'ECONNREFUSED') resolve('retry');
          else if (req.reusedSocket && err.code === 'ECONNRESET' && t.method === 'GET') resolve('retry');
          else resolve(`${t.method} ${err.code ?? ''} ${err.message} (reused connection: ${req.reusedSocket})`);
        });
        req.end(t.method === 'POST' ? BODY : undefined);
      }),
  };
}

function h2Client(t: LoadTarget, r: LoadResult): { once(): Promise<Outcome>; close(): void } {
  let session: http2.ClientHttp2Session | undefined;
  const all = new Set<http2.ClientHttp2Session>();
  const current = (): http2.ClientHttp2Session => {
    if (session === undefined || session.closed || session.destroyed) {
      const s = t.tls
        ? http2.connect(`https://127.0.0.1:${t.port}`, { ...t.tls, ALPNProtocols: ['h2'] })
        : http2.connect(`http://127.0.0.1:${t.port}`);
      s.on('error', () => {});
      s.on('goaway', () => {
        r.goaways++;
        if (session === s) session = undefined;
      });
      s.on('close', () => all.delete(s));
      all.add(s);
      session = s;
    }
    return session;
  };
  return {
    close: () => {
      for (const s of all) s.destroy();
    },
    once: () =>
      new Promise<Outcome>((resolve) => {
        let stream: http2.ClientHttp2Stream;
        try {
          stream = current().request(
            { ':method': t.method, ':path': '/load', ...(t.method === 'POST' ? { 'content-type': 'text/plain' } : {}) },
            { endStream: t.method === 'GET' },
          );
        } catch {
          session = undefined; // closing or gone: nothing was sent
          resolve('retry');
          return;
        }
        let status = 0;
        let settled = false;
        const done = (o: Outcome): void => {
          if (!settled) {
            settled = true;
            resolve(o);
          }
        };
        stream.on('response', (h) => {
          status = Number(h[':status']);
        });
        stream.on('data', () => {});
        stream.on('end', () => done(status === 200 ? 'ok' : `h2 ${t.method} status ${status}`));
        const failed = (err?: NodeJS.ErrnoException): void => {
          const cause = (err as { cause?: NodeJS.ErrnoException } | undefined)?.cause;
          if (status === 0 && (stream.rstCode === REFUSED_STREAM || cause?.code === 'ECONNREFUSED' || err?.code === 'ECONNREFUSED')) done('retry');
          else if (status === 0 && stream.id === undefined) done('retry'); // never got a stream id: never sent
          else done(`h2 ${t.method} ${err?.code ?? ''} ${err?.message ?? `closed (rst ${stream.rstCode})`} after status ${status}`);
        };
        stream.on('error', failed);
        stream.on('close', () => {
          if (!settled) failed();
        });
        if (t.method === 'POST') stream.end(BODY);
      }),
  };
}

/** Run `concurrency` loops against one target until `stop()` or `maxRequests` per loop. */
export async function runLoad(t: LoadTarget, o: LoadOptions): Promise<LoadResult> {
  const r: LoadResult = {
    target: `${t.protocol} ${t.method} :${t.port}`,
    ok: 0,
    okAfterMarker: 0,
    retried: 0,
    closeHeaders: 0,
    goaways: 0,
    lost: [],
  };
  const client = t.protocol === 'h1' ? h1Client(t, o.concurrency, r) : h2Client(t, r);
  const maxRetries = o.maxRetries ?? 50;
  const loop = async (): Promise<void> => {
    for (let n = 0; n < o.maxRequests && !o.stop(); n++) {
      let out: Outcome = 'retry';
      for (let tries = 0; out === 'retry'; tries++) {
        if (tries > maxRetries) {
          out = `${t.method} still refused after ${maxRetries} retries`;
          break;
        }
        if (tries > 0) {
          r.retried++;
          await new Promise((res) => setTimeout(res, 5));
        }
        out = await client.once();
      }
      if (out === 'ok') {
        r.ok++;
        if (o.marker?.()) r.okAfterMarker++;
      } else r.lost.push(out);
    }
  };
  try {
    await Promise.all(Array.from({ length: o.concurrency }, loop));
  } finally {
    client.close();
  }
  return r;
}
