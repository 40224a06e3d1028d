/**
 * pilot-agent's status port (15020) for meshlet: `/healthz/ready` (meshlet's own readiness, from
 * its admin `/ready`), `/app-health/<container>/<livez|readyz|startupz>` (the app probes the
 * injector moved here, run by app-probers.ts), and `/stats/prometheus`, meshlet's metrics merged
 * with the app's own (the `prometheus.io/*` annotations the injector saved in
 * ISTIO_PROMETHEUS_ANNOTATIONS), so one scrape of the pod gets both, as with Istio.
 *
 * Talks to meshlet over its admin port on loopback, so it works the same whether meshlet runs in
 * this process or not; when it does (`meshlet proxy --status-port`, `meshlet agent`), the
 * composition hands it meshlet's metrics stream directly, so a scrape is not rendered, sent over
 * loopback and read back (reading 24 MB of fresh Buffers a scrape at 10,000 clusters made V8 run
 * full collections for the external memory: 40–90 ms stalls, bench/SCRAPE.md). Every request does
 * its own bounded work; nothing is cached.
 *
 * The merged scrape is streamed: meshlet's body (tens of MB with thousands of clusters) is passed
 * through chunk by chunk with backpressure, then the app's is appended, gzip'ed for a scraper that
 * asks (Prometheus does). Holding it whole as one string and writing it at once froze the event
 * loop for as long as a scrape on the admin port once did (issue 18.2).
 */
import http from 'node:http';
import { acceptsGzip, streamBody } from '../admin/admin-server';
import type * as grpc from '@grpc/grpc-js';
import { type AppProbers, runProbe } from './app-probers';

/** The app's metrics endpoint (ISTIO_PROMETHEUS_ANNOTATIONS: {"scrape","path","port"}). */
export interface AppMetrics {
  readonly port: number;
  readonly path: string;
  readonly scheme: 'http' | 'https';
}

/** Parses ISTIO_PROMETHEUS_ANNOTATIONS; undefined when absent or scrape is not "true". */
export function parsePrometheusAnnotations(json: string | undefined): AppMetrics | undefined {
  if (!json) return undefined;
  const a = JSON.parse(json) as { scrape?: string; path?: string; port?: string | number; scheme?: string };
  if (String(a.scrape ?? 'true') !== 'true' || a.port === undefined) return undefined;
  const port = Number(a.port);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`ISTIO_PROMETHEUS_ANNOTATIONS: invalid port ${JSON.stringify(a.port)}`);
  return { port, path: a.path || '/metrics', scheme: a.scheme === 'https' ? 'https' : 'http' };
}

export interface StatusServerOptions {
  /** Port to listen on (Istio: 15020; 0 = any). */
  readonly port: number;
  /** Address to bind (the kubelet probes the pod IP: default all addresses). */
  readonly host?: string;
  /** meshlet's admin port on 127.0.0.1. */
  readonly adminPort: number;
  readonly probers: AppProbers;
  /** Where the app listens (default 127.0.0.1). */
  readonly appHost?: string;
  readonly appMetrics?: AppMetrics;
  /**
   * meshlet's Prometheus exposition, streamed into `write` (MeshletMetrics.prometheusStream), when
   * meshlet runs in this process; without it the scrape is fetched from the admin port.
   */
  readonly metrics?: (write: (chunk: Buffer) => void | Promise<void>) => Promise<void>;
  /** Timeout for the admin and app metrics fetches (default 5 s). */
  readonly fetchTimeoutMs?: number;
}

function fetchText(url: string, timeoutMs: number): Promise<{ status: number; body: string }> {
  return fetch(url, { signal: AbortSignal.timeout(timeoutMs) }).then(
    async (r) => ({ status: r.status, body: await r.text() }),
    () => ({ status: 0, body: '' }),
  );
}

const NEWLINE = 0x0a;

/** GET on meshlet's admin: the response, streaming (undefined when it cannot be reached in time). */
function adminStream(port: number, path: string, timeoutMs: number): Promise<http.IncomingMessage | undefined> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      // The time limit is for the answer to start; the body then flows at the scraper's pace.
      req.setTimeout(0);
      resolve(res);
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error('admin did not answer in time')));
    req.on('error', () => resolve(undefined));
  });
}

export class StatusServer {
  private server?: http.Server;

  constructor(private readonly opts: StatusServerOptions) {}

  get port(): number {
    const a = this.server?.address();
    return a && typeof a === 'object' ? a.port : 0;
  }

  async start(): Promise<void> {
    const server = http.createServer((req, res) => {
      if ((req.url ?? '/').split('?')[0] === '/stats/prometheus') {
        void this.metrics(req, res).catch(() => res.destroy());
        return;
      }
      void this.handle(req.url ?? '/').then(
        ({ status, body, type }) => {
          res.writeHead(status, { 'content-type': type });
          res.end(body);
        },
        () => {
          res.writeHead(500);
          res.end();
        },
      );
    });
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.opts.port, this.opts.host ?? '0.0.0.0', () => resolve());
    });
  }

  close(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    return new Promise((resolve) => (s ? s.close(() => resolve()) : resolve()));
  }

  /** meshlet's metrics, then the app's, streamed (gzip'ed when the scraper asks). */
  private async metrics(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const timeout = this.opts.fetchTimeoutMs ?? 5000;
    const m = this.opts.appMetrics;
    const app = m ? fetchText(`${m.scheme}://${this.opts.appHost ?? '127.0.0.1'}:${m.port}${m.path}`, timeout) : undefined;
    const inProcess = this.opts.metrics;
    const own = inProcess === undefined ? await adminStream(this.opts.adminPort, '/stats/prometheus', timeout) : undefined;
    if (inProcess === undefined && (own === undefined || own.statusCode !== 200)) {
      own?.destroy();
      await app;
      res.writeHead(503, { 'content-type': 'text/plain' }).end('meshlet metrics unavailable\n');
      return;
    }
    const gzip = acceptsGzip(req.headers['accept-encoding']);
    res.writeHead(200, {
      'content-type': 'text/plain; version=0.0.4; charset=utf-8',
      vary: 'Accept-Encoding',
      ...(gzip ? { 'content-encoding': 'gzip' } : {}),
    });
    await streamBody(
      res,
      async (write) => {
        let last = NEWLINE;
        if (inProcess !== undefined) {
          await inProcess((chunk) => {
            if (chunk.length > 0) last = chunk[chunk.length - 1]!;
            return write(chunk);
          });
        } else {
          // Leaving the loop early (the scraper went away) destroys the admin response.
          for await (const chunk of own as AsyncIterable<Buffer>) {
            if (chunk.length === 0) continue;
            await write(chunk);
            last = chunk[chunk.length - 1]!;
          }
        }
        if (last !== NEWLINE) await write(Buffer.from('\n'));
        // The app's metrics follow meshlet's; an app that cannot be scraped costs only its part.
        const a = await app;
        if (a && a.status === 200 && a.body !== '') await write(Buffer.from(a.body.endsWith('\n') ? a.body : `${a.body}\n`));
      },
      { gzip },
    );
  }

  private async handle(url: string): Promise<{ status: number; body: string; type: string }> {
    const path = url.split('?')[0]!;
    const timeout = this.opts.fetchTimeoutMs ?? 5000;
    const admin = `http://127.0.0.1:${this.opts.adminPort}`;
    if (path === '/healthz/ready') {
      const r = await fetchText(`${admin}/ready`, timeout);
      return r.status === 200 ? { status: 200, body: '', type: 'text/plain' } : { status: 503, body: r.body || 'meshlet is not ready\n', type: 'text/plain' };
    }
    const prober = this.opts.probers.get(path);
    if (prober) {
      const status = await runProbe(prober, this.opts.appHost ?? '127.0.0.1', () => require('@grpc/grpc-js') as typeof grpc);
      return { status, body: '', type: 'text/plain' };
    }
    return { status: 404, body: 'not found\n', type: 'text/plain' };
  }
}
