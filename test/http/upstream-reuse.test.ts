/**
 * Issue 15 bug 1: an upstream connection must go back to its pool ready to read. A response the
 * router paused (the downstream write returned false) and that completed while paused used to
 * leave the HTTP/1.1 socket paused in the idle pool: the next request on it waited for the route
 * timeout (504), every second request. Sizes around every buffer boundary (16 KiB socket
 * high-water mark, 64 KiB hold and replay limits), chunked and content-length, fast and slow
 * readers, several sequential requests on one keep-alive upstream, HTTP/1.1 and HTTP/2 upstreams.
 */
import http from 'node:http';
import http2 from 'node:http2';
import type net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { action, prefix, route, routeConfig, startProxy, staticCluster, stopAll, vhost } from './hcm-support';

const SIZES = [16_300, 16_400, 17_000, 65_000, 65_600, 200_000];
const REQUESTS = 4;
/** Short route timeout: a stalled connection shows as a 504 after this, not after 15 s. */
const ROUTE_TIMEOUT_MS = 2_000;

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  await stopAll();
  await Promise.all(closers.splice(0).map((c) => c()));
});

interface Upstream {
  port: number;
  /** Connections the upstream accepted. */
  connections: number;
}

/** The body for `/<size>/<framing>`: chunked (no content-length) or content-length framed. */
function respond(path: string): { body: Buffer; chunked: boolean } {
  const [, size, framing] = path.split('/');
  return { body: Buffer.alloc(Number(size), 'b'), chunked: framing === 'chunked' };
}

async function startH1Upstream(): Promise<Upstream> {
  const up: Upstream = { port: 0, connections: 0 };
  const server = http.createServer((req, res) => {
    const { body, chunked } = respond(req.url ?? '/');
    if (chunked) {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write(body);
      res.end();
    } else {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': String(body.length) });
      res.end(body);
    }
  });
  server.keepAliveTimeout = 30_000;
  server.on('connection', () => up.connections++);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  up.port = (server.address() as net.AddressInfo).port;
  closers.push(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });
  return up;
}

async function startH2Upstream(): Promise<Upstream> {
  const up: Upstream = { port: 0, connections: 0 };
  const server = http2.createServer();
  server.on('stream', (stream, headers) => {
    const { body, chunked } = respond(String(headers[':path']));
    const h: http2.OutgoingHttpHeaders = { ':status': 200, 'content-type': 'text/plain' };
    if (!chunked) h['content-length'] = String(body.length);
    stream.respond(h);
    stream.end(body);
  });
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on('session', (s) => {
    sessions.add(s);
    s.on('close', () => sessions.delete(s));
  });
  server.on('connection', () => up.connections++);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  up.port = (server.address() as net.AddressInfo).port;
  closers.push(async () => {
    for (const s of sessions) s.destroy();
    await new Promise((r) => server.close(r));
  });
  return up;
}

/**
 * One GET through the proxy on a keep-alive agent; a slow reader pauses after every chunk so the
 * proxy's downstream writes hit their high-water mark.
 */
function get(agent: http.Agent, port: number, path: string, slow: boolean): Promise<{ status: number; length: number }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent }, (res) => {
      let length = 0;
      res.on('data', (d: Buffer) => {
        length += d.length;
        if (slow) {
          res.pause();
          setTimeout(() => res.resume(), 5);
        }
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, length }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.setTimeout(10_000, () => req.destroy(new Error('client timeout')));
  });
}

for (const protocol of ['http1', 'http2'] as const) {
  describe(`upstream ${protocol} connections go back to the pool ready to read`, () => {
    for (const framing of ['chunked', 'length'] as const) {
      for (const slow of [false, true]) {
        it(`${framing} responses, ${slow ? 'slow' : 'fast'} reader: ${REQUESTS} sequential requests per size answer at once on one upstream connection`, async () => {
          const up = protocol === 'http1' ? await startH1Upstream() : await startH2Upstream();
          const proxy = await startProxy({
            routes: routeConfig([vhost([route(prefix('/'), action('a', { timeoutMs: ROUTE_TIMEOUT_MS }))])]),
            clusters: [staticCluster('a', [{ port: up.port }], { upstreamProtocol: protocol })],
          });
          const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
          closers.push(async () => agent.destroy());
          for (const size of SIZES) {
            for (let i = 0; i < REQUESTS; i++) {
              const started = Date.now();
              const res = await get(agent, proxy.port, `/${size}/${framing}`, slow);
              expect({ size, i, status: res.status, length: res.length }).toEqual({ size, i, status: 200, length: size });
              // Far below the route timeout: nothing waited for a stalled connection.
              expect(Date.now() - started).toBeLessThan(ROUTE_TIMEOUT_MS / 2);
            }
          }
          // Every request reused the one upstream connection.
          expect(up.connections).toBe(1);
        }, 60_000);
      }
    }
  });
}
