/**
 * Shared harness for the hostile-input suite: one in-process meshlet in front of a recording echo
 * upstream, a well-behaved client that keeps sending requests on its own connection while an
 * attack runs (every one of its answers is recorded and asserted), and a raw TCP upstream that
 * records every byte and answers with scripted (possibly malformed) responses.
 *
 * Leans towards honesty over convenience: attack requests use paths under /attack so the echo's
 * request log shows exactly what got through; the good client uses /good.
 */
import http from 'node:http';
import net from 'node:net';
import { bootstrap, httpListener, routes, staticCluster, startMeshlet, type StartedMeshlet } from '../support/meshlet';
import { startHttpEcho, type HttpEcho } from '../support/upstreams';

export interface Proxied {
  m: StartedMeshlet;
  echo: HttpEcho;
  port: number;
  /** Requests the upstream received other than the good client's. */
  leaked(): string[];
}

export interface ProxyOptions {
  /** Extra HttpConnectionManager fields (Envoy JSON). */
  hcm?: Record<string, unknown>;
  /** Extra Listener fields (Envoy JSON). */
  listener?: Record<string, unknown>;
  /** Extra fields of the route's `route` action. */
  route?: Record<string, unknown>;
  /** Extra Cluster fields. */
  cluster?: Record<string, unknown>;
  /** Use this upstream port instead of starting an echo. */
  upstreamPort?: number;
  echoHandler?: Parameters<typeof startHttpEcho>[1];
}

/** A meshlet with one HTTP listener routing everything to one upstream cluster. */
export async function startProxied(o: ProxyOptions = {}): Promise<Proxied> {
  const echo = await startHttpEcho('echo', o.echoHandler);
  const upstreamPort = o.upstreamPort ?? echo.port;
  const listener = { ...httpListener('http', routes([{ match: { prefix: '/' }, route: { cluster: 'up', ...o.route } }]), o.hcm ?? {}), ...o.listener };
  const m = await startMeshlet(bootstrap([listener], [staticCluster('up', [upstreamPort], o.cluster ?? {})]));
  return {
    m,
    echo,
    port: m.listenerPort('http'),
    leaked: () => echo.requests.map((r) => r.url).filter((u) => u !== '/good'),
  };
}

export interface GoodResult {
  status: number;
  ok: boolean;
  error?: string;
}

/**
 * A well-behaved HTTP/1.1 client on its own keep-alive connection(s): sends GET /good in a loop
 * (bounded: at most `max` requests) until `stop()`; each answer must be a 200 from the upstream.
 */
export function goodClient(port: number, max = 5_000): { stop(): Promise<GoodResult[]> } {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const results: GoodResult[] = [];
  let stopped = false;
  const one = (): Promise<GoodResult> =>
    new Promise((resolve) => {
      const req = http.get({ host: '127.0.0.1', port, path: '/good', agent, timeout: 10_000 }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          body += c;
        });
        res.on('end', () => {
          const status = res.statusCode ?? 0;
          resolve({ status, ok: status === 200 && body.includes('"url":"/good"') });
        });
        res.on('error', (e) => resolve({ status: 0, ok: false, error: e.message }));
      });
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', (e) => resolve({ status: 0, ok: false, error: e.message }));
    });
  const loop = (async () => {
    // At least one request even when stopped at once; then until stopped or the bound.
    do {
      results.push(await one());
      if (!stopped) await new Promise((r) => setTimeout(r, 2));
    } while (!stopped && results.length < max);
  })();
  return {
    async stop() {
      stopped = true;
      await loop;
      agent.destroy();
      return results;
    },
  };
}

/** Poll `cond` every 20 ms until it holds or `ms` pass (then throw). */
export async function until(cond: () => boolean | Promise<boolean>, ms = 10_000, what = 'condition'): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`${what} not met in ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export interface RawUpstream {
  port: number;
  /** Bytes received, one entry per accepted connection. */
  conns: { data: string; closed: boolean }[];
  close(): Promise<void>;
}

/**
 * A raw TCP "HTTP server": for every complete request head it calls `respond(head, connIndex)` and
 * writes the bytes it returns (or nothing for undefined). Records everything it received.
 */
export async function startRawUpstream(respond: (head: string, conn: number) => string | Buffer | undefined): Promise<RawUpstream> {
  const conns: RawUpstream['conns'] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    const rec = { data: '', closed: false };
    const idx = conns.push(rec) - 1;
    sockets.add(s);
    let pending = '';
    s.on('data', (d) => {
      rec.data += d.toString('latin1');
      pending += d.toString('latin1');
      let end = pending.indexOf('\r\n\r\n');
      while (end !== -1) {
        const head = pending.slice(0, end);
        pending = pending.slice(end + 4);
        const out = respond(head, idx);
        if (out !== undefined) s.write(out);
        end = pending.indexOf('\r\n\r\n');
      }
    });
    s.on('error', () => {});
    s.on('close', () => {
      rec.closed = true;
      sockets.delete(s);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    conns,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

/** GET a path through the proxy with a fresh connection; resolves status and body. */
export function getOnce(port: number, path: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent: false, headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        body += c;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
      res.on('error', () => resolve({ status: 0, body, headers: res.headers }));
    });
    req.on('error', () => resolve({ status: 0, body: '', headers: {} }));
  });
}

/** Status code of the first response in raw HTTP/1.1 text, or 0. */
export function statusOf(text: string): number {
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(text);
  return m ? Number(m[1]) : 0;
}

/** Number of HTTP/1.x responses in raw text. */
export function responseCount(text: string): number {
  return (text.match(/HTTP\/1\.[01] \d{3} /g) ?? []).length;
}

/** Fetch admin /stats as a name → value map. */
export function adminStats(adminPort: number): Promise<Map<string, number>> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port: adminPort, path: '/stats' }, (res) => {
        let s = '';
        res.on('data', (c) => {
          s += c;
        });
        res.on('end', () => {
          const out = new Map<string, number>();
          for (const line of s.split('\n')) {
            const i = line.lastIndexOf(': ');
            if (i > 0) out.set(line.slice(0, i), Number(line.slice(i + 2)));
          }
          resolve(out);
        });
      })
      .on('error', reject);
  });
}
