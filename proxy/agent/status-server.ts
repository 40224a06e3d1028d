/**
 * pilot-agent's status port (15020) for meshlet: `/healthz/ready` (meshlet's own readiness, from
 * its admin `/ready`), `/app-health/<container>/<livez|readyz|startupz>` (the app probes the
 * injector moved here, run by app-probers.ts), and `/stats/prometheus`, meshlet's metrics merged
 * with the app's own (the `prometheus.io/*` annotations the injector saved in
 * ISTIO_PROMETHEUS_ANNOTATIONS), so one scrape of the pod gets both, as with Istio.
 *
 * Talks to meshlet only over its admin port on loopback, so it works the same whether meshlet
 * runs in this process or not. Every request does its own bounded work; nothing is cached.
 */
import http from 'node:http';
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
  /** Timeout for the admin and app metrics fetches (default 5 s). */
  readonly fetchTimeoutMs?: number;
}

function fetchText(url: string, timeoutMs: number): Promise<{ status: number; body: string }> {
  return fetch(url, { signal: AbortSignal.timeout(timeoutMs) }).then(
    async (r) => ({ status: r.status, body: await r.text() }),
    () => ({ status: 0, body: '' }),
  );
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
    if (path === '/stats/prometheus') {
      const m = this.opts.appMetrics;
      const [own, app] = await Promise.all([
        fetchText(`${admin}/stats/prometheus`, timeout),
        m ? fetchText(`${m.scheme}://${this.opts.appHost ?? '127.0.0.1'}:${m.port}${m.path}`, timeout) : undefined,
      ]);
      if (own.status !== 200) return { status: 503, body: 'meshlet metrics unavailable\n', type: 'text/plain' };
      let body = own.body.endsWith('\n') || own.body === '' ? own.body : `${own.body}\n`;
      // The app's metrics follow meshlet's; an app that cannot be scraped costs only its part.
      if (app && app.status === 200) body += app.body.endsWith('\n') ? app.body : `${app.body}\n`;
      return { status: 200, body, type: 'text/plain; version=0.0.4; charset=utf-8' };
    }
    return { status: 404, body: 'not found\n', type: 'text/plain' };
  }
}
