/**
 * End-to-end through the HTTP/1.1 codecs: real client (undici / node:http / raw net) →
 * H1ServerCodec on a real socket → forwarding sink → H1ConnectionPool → real upstream server.
 */
import http from 'node:http';
import net from 'node:net';
import { Agent, request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import type { DownstreamConnectionInfo } from '../../proxy/http/codec';
import { H1ConnectionPool } from '../../proxy/http/h1/pool';
import { H1ServerCodec, type H1ServerCodecOptions } from '../../proxy/http/h1/server-codec';
import { ForwardingCallbacks, loopbackHost, poolCluster } from '../support/h1-harness';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

function listen(server: net.Server | http.Server): Promise<number> {
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port));
  });
}

function close(server: net.Server | http.Server): Promise<void> {
  return new Promise((resolve) => {
    (server as http.Server).closeAllConnections?.();
    server.close(() => resolve());
  });
}

/** Echo upstream: answers with method, path, selected headers and the request body. */
async function echoUpstream(): Promise<{ port: number; connections: () => number }> {
  let connections = 0;
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      res.setHeader('x-method', req.method ?? '');
      res.setHeader('x-path', req.url ?? '');
      res.setHeader('x-host', req.headers.host ?? '');
      res.setHeader('x-te', String(req.headers['transfer-encoding'] ?? ''));
      res.setHeader('x-cl', String(req.headers['content-length'] ?? ''));
      res.setHeader('x-trailer', String(req.trailers['x-checksum'] ?? ''));
      res.end(body);
    });
  });
  server.on('connection', () => connections++);
  const port = await listen(server);
  cleanups.push(() => close(server));
  return { port, connections: () => connections };
}

async function proxy(
  upstreamPort: number,
  options: H1ServerCodecOptions = {},
  clusterOpts: Parameters<typeof poolCluster>[0] = {},
) {
  const cluster = poolCluster(clusterOpts);
  const pool = new H1ConnectionPool(loopbackHost(upstreamPort), cluster);
  const callbacks = new ForwardingCallbacks(pool);
  const codecs: H1ServerCodec[] = [];
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    const info: DownstreamConnectionInfo = {
      id: codecs.length,
      remoteAddress: socket.remoteAddress ?? '',
      remotePort: socket.remotePort ?? 0,
      localAddress: socket.localAddress ?? '',
      localPort: socket.localPort ?? 0,
    };
    codecs.push(new H1ServerCodec(socket, callbacks, info, options));
  });
  const port = await listen(server);
  cleanups.push(async () => {
    pool.destroy();
    for (const c of codecs) c.destroy();
    await close(server);
  });
  return { port, pool, cluster, callbacks };
}

describe('HTTP/1.1 proxying through the codecs', () => {
  it('forwards GET and POST bodies and reuses one upstream connection for 100 sequential requests', async () => {
    const up = await echoUpstream();
    const px = await proxy(up.port);
    const agent = new Agent({ connections: 1 });
    cleanups.push(() => agent.close());
    for (let i = 0; i < 100; i++) {
      const body = i % 2 === 0 ? undefined : `payload-${i}`;
      const res = await request(`http://127.0.0.1:${px.port}/item/${i}?q=${i}`, {
        method: body === undefined ? 'GET' : 'POST',
        body,
        dispatcher: agent,
      });
      const text = await res.body.text();
      expect(res.statusCode).toBe(200);
      expect(res.headers['x-path']).toBe(`/item/${i}?q=${i}`);
      expect(res.headers['x-host']).toBe(`127.0.0.1:${px.port}`);
      expect(text).toBe(body ?? '');
    }
    expect(up.connections()).toBe(1);
    expect(px.cluster.stats.upstreamCxTotal).toBe(1);
    expect(px.pool.activeStreams).toBe(0);
    expect(px.pool.idleConnections).toBe(1);
  });

  it('streams a chunked request body with trailers and a large response', async () => {
    const up = await echoUpstream();
    const px = await proxy(up.port);
    const big = Buffer.alloc(300_000, 'x');
    const res = await new Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }>(
      (resolve, reject) => {
        const req = http.request(
          { host: '127.0.0.1', port: px.port, method: 'PUT', path: '/upload', headers: { trailer: 'x-checksum' } },
          (r) => {
            const chunks: Buffer[] = [];
            r.on('data', (c: Buffer) => chunks.push(c));
            r.on('end', () => resolve({ status: r.statusCode ?? 0, headers: r.headers, body: Buffer.concat(chunks) }));
          },
        );
        req.on('error', reject);
        req.write(big.subarray(0, 100_000));
        req.write(big.subarray(100_000));
        req.addTrailers({ 'x-checksum': 'abc' });
        req.end();
      },
    );
    expect(res.status).toBe(200);
    expect(res.headers['x-te']).toBe('chunked');
    expect(res.headers['x-trailer']).toBe('abc');
    expect(res.body.equals(big)).toBe(true);
  });

  it('proxies an HTTP/1.1 upgrade end to end: 101, then raw bytes both ways (including early bytes)', async () => {
    const server = http.createServer();
    const upgraded: import('node:stream').Duplex[] = [];
    server.on('upgrade', (req, socket, head) => {
      upgraded.push(socket);
      socket.write(
        `HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: ${req.headers.upgrade}\r\n\r\n`,
      );
      if (head.length > 0) socket.write(Buffer.concat([Buffer.from('echo:'), head]));
      socket.on('data', (d: Buffer) => socket.write(Buffer.concat([Buffer.from('echo:'), d])));
    });
    const port = await listen(server);
    cleanups.push(async () => {
      for (const u of upgraded) u.destroy();
      await close(server);
    });
    const px = await proxy(port);
    const socket = net.connect(px.port, '127.0.0.1');
    cleanups.push(() => {
      socket.destroy();
    });
    let text = '';
    socket.on('data', (d: Buffer) => (text += d.toString('latin1')));
    socket.write('GET /chat HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nfirst');
    const deadline = Date.now() + 5000;
    while (!text.includes('echo:first') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    socket.write('second');
    while (!text.includes('echo:second') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    expect(text).toMatch(/^HTTP\/1\.1 101 Switching Protocols\r\n/);
    expect(text.toLowerCase()).toContain('upgrade: websocket\r\n');
    expect(text).toContain('connection: upgrade\r\n');
    expect(text).toContain('echo:first');
    expect(text).toContain('echo:second');
    expect(px.callbacks.records[0].head?.upgrade).toBe('websocket');
  });
});
