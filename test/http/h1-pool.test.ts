/**
 * H1ConnectionPool against real upstream servers on 127.0.0.1: reuse, circuit breakers, connect
 * failures, malformed responses, connection-reuse rules, idle timeout, drain/destroy, upgrades.
 */
import http from 'node:http';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { ResponseSink } from '../../proxy/http/codec';
import { H1ConnectionPool, type H1PoolCluster } from '../../proxy/http/h1/pool';
import { loopbackHost, poolCluster, poolRequest, resources } from '../support/h1-harness';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

function listen(server: net.Server): Promise<number> {
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port)),
  );
}

/** Raw upstream whose reply to each request head is produced by `reply` (string = write it). */
async function scriptedUpstream(reply: (n: number, head: string, socket: net.Socket) => string | undefined) {
  const state = { connections: 0, closed: 0, requests: 0, heads: [] as string[] };
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    state.connections++;
    sockets.add(socket);
    let buf = '';
    socket.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      for (;;) {
        const end = buf.indexOf('\r\n\r\n');
        if (end === -1) return;
        const head = buf.slice(0, end);
        const m = /\r\ncontent-length: (\d+)/i.exec(head);
        const len = m ? Number(m[1]) : 0;
        if (buf.length < end + 4 + len) return;
        buf = buf.slice(end + 4 + len);
        state.heads.push(head);
        const out = reply(state.requests++, head, socket);
        if (out !== undefined) socket.write(out, 'latin1');
      }
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      state.closed++;
      sockets.delete(socket);
    });
  });
  const port = await listen(server);
  cleanups.push(
    () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  );
  return { port, state };
}

const OK = (body = 'ok') => `HTTP/1.1 200 OK\r\ncontent-length: ${body.length}\r\n\r\n${body}`;

function makePool(port: number, cluster: H1PoolCluster = poolCluster()) {
  const pool = new H1ConnectionPool(loopbackHost(port), cluster);
  cleanups.push(() => pool.destroy());
  return pool;
}

async function waitFor(pred: () => boolean, what: string, maxMs = 5000): Promise<void> {
  const deadline = Date.now() + maxMs;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('H1ConnectionPool', () => {
  it('reuses one keep-alive connection for 100 sequential requests (LIFO idle list)', async () => {
    const up = await scriptedUpstream((n) => OK(`r${n}`));
    const cluster = poolCluster();
    const pool = makePool(up.port, cluster);
    for (let i = 0; i < 100; i++) {
      const res = await poolRequest(pool, { path: `/x/${i}` }, i % 3 === 0 ? Buffer.from('body') : undefined);
      expect(res.failure).toBeUndefined();
      expect(res.status).toBe(200);
      expect(res.body.toString()).toBe(`r${i}`);
    }
    expect(up.state.connections).toBe(1);
    expect(cluster.stats.upstreamCxTotal).toBe(1);
    expect(cluster.stats.upstreamCxActive).toBe(1);
    expect(pool.connections).toBe(1);
    expect(pool.idleConnections).toBe(1);
    expect(pool.activeStreams).toBe(0);
    expect(pool.host.activeConnections).toBe(1);
    expect(up.state.heads[1]).toBe('GET /x/1 HTTP/1.1\r\nhost: upstream.test');
    expect(up.state.heads[3]).toMatch(/^POST \/x\/3 HTTP\/1\.1\r\nhost: upstream.test\r\ncontent-length: 4$/);
  });

  it('opens a connection per concurrent request and reuses them afterwards', async () => {
    const held: net.Socket[] = [];
    const up = await scriptedUpstream((n, _h, socket) => {
      if (n >= 3) return OK();
      held.push(socket);
      return undefined;
    });
    const pool = makePool(up.port);
    const all = Promise.all([0, 1, 2].map((i) => poolRequest(pool, { path: `/${i}` })));
    await waitFor(() => held.length === 3, 'three requests upstream');
    expect(pool.activeStreams).toBe(3);
    for (const s of held) s.write(OK());
    const results = await all;
    expect(results.map((r) => r.status)).toEqual([200, 200, 200]);
    expect(pool.idleConnections).toBe(3);
    await poolRequest(pool, { path: '/again' });
    expect(up.state.connections).toBe(3);
  });

  it('queues over max_connections and fails with overflow over max_pending_requests', async () => {
    const held: net.Socket[] = [];
    const up = await scriptedUpstream((_n, _h, socket) => {
      held.push(socket);
      return undefined;
    });
    const cluster = poolCluster({ resources: resources({ connections: 1, pendingRequests: 1 }) });
    const pool = makePool(up.port, cluster);
    const first = poolRequest(pool, { path: '/1' });
    await waitFor(() => held.length === 1, 'first request upstream');
    const second = poolRequest(pool, { path: '/2' }); // waits: max_connections = 1
    expect(pool.pending).toBe(1);
    expect(cluster.stats.upstreamCxOverflow).toBe(1);
    const third = await poolRequest(pool, { path: '/3' }); // pending is full
    expect(third.failure).toEqual({ reason: 'overflow', detail: expect.any(String), from: 'pool' });
    expect(cluster.stats.upstreamRqPendingOverflow).toBe(1);
    held[0].write(OK('one'));
    expect((await first).body.toString()).toBe('one');
    await waitFor(() => held.length === 2, 'queued request upstream');
    held[0].write(OK('two'));
    expect((await second).body.toString()).toBe('two');
    expect(up.state.connections).toBe(1);
    expect(cluster.resources.pendingRequests.count).toBe(0);
    expect(cluster.resources.connections.count).toBe(1);
  });

  it('cancel() withdraws a pending request: it never gets a connection and frees its pending slot', async () => {
    const held: net.Socket[] = [];
    const up = await scriptedUpstream((n, _h, socket) => {
      if (n === 0) {
        held.push(socket);
        return undefined;
      }
      return OK('second');
    });
    const cluster = poolCluster({ resources: resources({ connections: 1 }) });
    const pool = makePool(up.port, cluster);
    const first = poolRequest(pool, { path: '/1' });
    await waitFor(() => held.length === 1, 'first request upstream');
    let readyCalls = 0;
    const handle = pool.newStream(
      {
        onResponseHeaders() {},
        onResponseData() {},
        onResponseTrailers() {},
        onUpstreamReset() {},
        onUpstreamWritable() {},
      },
      {
        onPoolReady() {
          readyCalls++;
        },
        onPoolFailure() {
          readyCalls++;
        },
      },
    );
    expect(handle).toBeDefined();
    expect(pool.pending).toBe(1);
    handle!.cancel();
    expect(pool.pending).toBe(0);
    expect(cluster.resources.pendingRequests.count).toBe(0);
    const second = poolRequest(pool, { path: '/2' });
    held[0].write(OK('first'));
    expect((await first).body.toString()).toBe('first');
    expect((await second).body.toString()).toBe('second');
    expect(readyCalls).toBe(0);
    expect(up.state.connections).toBe(1);
  });

  it('reports connect_failure when nothing listens, and counts it', async () => {
    const probe = net.createServer();
    const port = await listen(probe);
    await new Promise<void>((r) => probe.close(() => r()));
    const cluster = poolCluster();
    const pool = makePool(port, cluster);
    const res = await poolRequest(pool, { path: '/' });
    expect(res.failure?.reason).toBe('connect_failure');
    expect(res.failure?.from).toBe('pool');
    expect(cluster.stats.upstreamCxConnectFail).toBe(1);
    expect(cluster.stats.upstreamCxActive).toBe(0);
    expect(cluster.resources.connections.count).toBe(0);
    expect(cluster.resources.pendingRequests.count).toBe(0);
    expect(pool.host.stats.cxConnectFail).toBe(1);
    expect(pool.connections).toBe(0);
  });

  it('passes the transport timeout reason through as onPoolFailure(timeout)', async () => {
    // The connect-timeout itself belongs to the transport (proxy/upstream); a loopback connect
    // cannot be made to hang deterministically, so this transport starts a real connect and
    // reports `timeout` when its 0 ms budget expires. What is under test is the pool's handling.
    const up = await scriptedUpstream(() => OK());
    const cluster = poolCluster({
      transport: {
        connect(host, opts, cb) {
          const socket = net.connect(host.port, host.host);
          socket.on('error', () => {});
          const timer = setTimeout(() => {
            socket.destroy();
            cb({ reason: 'timeout', detail: `connect timeout after ${opts.timeoutMs} ms` }, undefined);
          }, opts.timeoutMs);
          timer.ref();
        },
      },
      connectTimeoutMs: 0,
    });
    const pool = makePool(up.port, cluster);
    const res = await poolRequest(pool, { path: '/' });
    expect(res.failure?.reason).toBe('timeout');
    expect(cluster.stats.upstreamCxConnectTimeout).toBe(1);
    expect(cluster.resources.connections.count).toBe(0);
  });

  it('malformed upstream response → protocol_error and the connection is never reused', async () => {
    const up = await scriptedUpstream((n) =>
      n === 0 ? 'HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nabc' : OK('fine'),
    );
    const pool = makePool(up.port);
    const bad = await poolRequest(pool, { path: '/bad' });
    expect(bad.failure?.reason).toBe('protocol_error');
    expect(bad.failure?.from).toBe('reset');
    await waitFor(() => up.state.closed === 1, 'bad connection closed');
    const good = await poolRequest(pool, { path: '/good' });
    expect(good.body.toString()).toBe('fine');
    expect(up.state.connections).toBe(2);
  });

  it('does not reuse a connection after Connection: close, or an HTTP/1.0 response without keep-alive', async () => {
    const up = await scriptedUpstream((n) =>
      n === 0
        ? 'HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 1\r\n\r\na'
        : n === 1
          ? 'HTTP/1.0 200 OK\r\ncontent-length: 1\r\n\r\nb'
          : OK('c'),
    );
    const pool = makePool(up.port);
    expect((await poolRequest(pool, { path: '/1' })).body.toString()).toBe('a');
    expect((await poolRequest(pool, { path: '/2' })).body.toString()).toBe('b');
    expect((await poolRequest(pool, { path: '/3' })).body.toString()).toBe('c');
    expect(up.state.connections).toBe(3);
  });

  it('reads close-delimited and chunked responses with trailers', async () => {
    const up = await scriptedUpstream((n, _h, socket) => {
      if (n === 0) {
        socket.end('HTTP/1.1 200 OK\r\n\r\nuntil-close');
        return undefined;
      }
      return 'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\nx-sum: 9\r\n\r\n';
    });
    const pool = makePool(up.port);
    const eof = await poolRequest(pool, { path: '/1' });
    expect(eof.failure).toBeUndefined();
    expect(eof.body.toString()).toBe('until-close');
    const ch = await poolRequest(pool, { path: '/2' });
    expect(ch.body.toString()).toBe('abcd');
    expect(ch.trailers).toEqual(['x-sum', '9']);
    expect(up.state.connections).toBe(2);
  });

  it('a response abandoned mid-body closes the connection (never reused)', async () => {
    const up = await scriptedUpstream((n, _h, socket) => {
      if (n === 0) {
        socket.write('HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial');
        return undefined;
      }
      return OK('next');
    });
    const pool = makePool(up.port);
    await new Promise<void>((resolve) => {
      const sink: ResponseSink = {
        onResponseHeaders() {},
        onResponseData() {
          // The router gives up (e.g. downstream went away) before the body is complete.
          enc?.reset('local_reset');
          resolve();
        },
        onResponseTrailers() {},
        onUpstreamReset() {},
        onUpstreamWritable() {},
      };
      let enc: import('../../proxy/http/codec').RequestEncoder | undefined;
      pool.newStream(sink, {
        onPoolReady(encoder) {
          enc = encoder;
          encoder.writeHeaders(
            {
              method: 'GET',
              path: '/',
              authority: 'u',
              scheme: 'http',
              protocol: 'HTTP/1.1',
              headers: [],
              contentLength: 0,
            },
            true,
          );
        },
        onPoolFailure() {},
      });
    });
    await waitFor(() => up.state.closed === 1, 'abandoned connection closed');
    expect((await poolRequest(pool, { path: '/2' })).body.toString()).toBe('next');
    expect(up.state.connections).toBe(2);
    expect(pool.activeStreams).toBe(0);
  });

  it('swallows 1xx before the final response and reads HEAD responses without a body (connection reused)', async () => {
    const up = await scriptedUpstream((n) =>
      n === 0
        ? 'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 1\r\n\r\nz'
        : n === 1
          ? 'HTTP/1.1 200 OK\r\ncontent-length: 1234\r\n\r\n'
          : OK('after-head'),
    );
    const pool = makePool(up.port);
    const first = await poolRequest(pool, { path: '/1' }, Buffer.from('x'));
    expect(first.status).toBe(201);
    expect(first.body.toString()).toBe('z');
    const head = await poolRequest(pool, { path: '/2', method: 'HEAD' });
    expect(head.failure).toBeUndefined();
    expect(head.status).toBe(200);
    expect(head.headers).toEqual(['content-length', '1234']);
    expect(head.body.length).toBe(0);
    expect((await poolRequest(pool, { path: '/3' })).body.toString()).toBe('after-head');
    expect(up.state.connections).toBe(1);
  });

  it('bytes after a complete response mean the connection is not reused', async () => {
    const up = await scriptedUpstream((n) => (n === 0 ? `${OK('one')}HTTP/1.1 200 OK\r\n` : OK('two')));
    const pool = makePool(up.port);
    expect((await poolRequest(pool, { path: '/1' })).body.toString()).toBe('one');
    await waitFor(() => up.state.closed === 1, 'connection with trailing garbage closed');
    expect((await poolRequest(pool, { path: '/2' })).body.toString()).toBe('two');
    expect(up.state.connections).toBe(2);
  });

  it('a response that completes before the request body was sent ends the exchange and retires the connection', async () => {
    // Answer as soon as the head arrives, before the (never sent) body.
    const early = net.createServer((socket) => {
      socket.once('data', () => socket.write('HTTP/1.1 413 Payload Too Large\r\ncontent-length: 0\r\n\r\n'));
      socket.on('error', () => {});
    });
    const port = await listen(early);
    cleanups.push(() => new Promise<void>((r) => early.close(() => r())));
    const cluster = poolCluster();
    const pool = makePool(port, cluster);
    const res = await new Promise<number>((resolve) => {
      pool.newStream(
        {
          onResponseHeaders(h) {
            resolve(h.status);
          },
          onResponseData() {},
          onResponseTrailers() {},
          onUpstreamReset() {},
          onUpstreamWritable() {},
        },
        {
          onPoolReady(encoder) {
            encoder.writeHeaders(
              {
                method: 'PUT',
                path: '/big',
                authority: 'u',
                scheme: 'http',
                protocol: 'HTTP/1.1',
                headers: [],
                contentLength: 1_000_000,
              },
              false,
            );
          },
          onPoolFailure() {},
        },
      );
    });
    expect(res).toBe(413);
    await waitFor(() => pool.connections === 0 && pool.activeStreams === 0, 'connection retired');
    expect(cluster.stats.upstreamCxDestroy).toBe(1);
  });

  it('honours maxRequestsPerConnection', async () => {
    const up = await scriptedUpstream(() => OK());
    const pool = makePool(up.port, poolCluster({ maxRequestsPerConnection: 2 }));
    for (let i = 0; i < 5; i++) expect((await poolRequest(pool, { path: '/' })).status).toBe(200);
    expect(up.state.connections).toBe(3);
  });

  it('closes idle connections after upstreamIdleTimeoutMs', async () => {
    const up = await scriptedUpstream(() => OK());
    const cluster = poolCluster({ upstreamIdleTimeoutMs: 50 });
    const pool = makePool(up.port, cluster);
    await poolRequest(pool, { path: '/' });
    await waitFor(() => up.state.closed === 1, 'idle connection closed');
    await waitFor(() => pool.connections === 0, 'pool forgot the connection');
    expect(cluster.stats.upstreamCxDestroy).toBe(1);
    expect(pool.host.activeConnections).toBe(0);
  });

  it('drops an idle connection the upstream closed, and an upstream reset mid-response is reported', async () => {
    const up = await scriptedUpstream((n, _h, socket) => {
      if (n === 0) return OK();
      socket.write('HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc');
      socket.destroy();
      return undefined;
    });
    const pool = makePool(up.port);
    await poolRequest(pool, { path: '/1' });
    const res = await poolRequest(pool, { path: '/2' });
    expect(res.failure).toMatchObject({ reason: 'connection_termination', from: 'reset' });
    expect(res.status).toBe(200);
    await waitFor(() => pool.connections === 0, 'closed connection removed');
  });

  it('drain() closes idle connections and refuses new streams; destroy() fails pending ones', async () => {
    const up = await scriptedUpstream(() => OK());
    const pool = makePool(up.port);
    await poolRequest(pool, { path: '/' });
    pool.drain();
    await waitFor(() => up.state.closed === 1, 'idle connection closed on drain');
    const after = await poolRequest(pool, { path: '/' });
    expect(after.failure?.from).toBe('pool');

    const held: net.Socket[] = [];
    const slow = await scriptedUpstream((_n, _h, s) => {
      held.push(s);
      return undefined;
    });
    const cluster = poolCluster({ resources: resources({ connections: 1 }) });
    const pool2 = makePool(slow.port, cluster);
    const a = poolRequest(pool2, { path: '/a' });
    await waitFor(() => held.length === 1, 'request upstream');
    const b = poolRequest(pool2, { path: '/b' });
    pool2.destroy();
    expect((await b).failure).toMatchObject({ reason: 'local_reset', from: 'pool' });
    expect((await a).failure).toMatchObject({ reason: 'connection_termination', from: 'reset' });
    expect(cluster.resources.pendingRequests.count).toBe(0);
  });

  it('hands over the raw socket after a 101 (WebSocket-style upgrade)', async () => {
    const server = http.createServer();
    const upgraded: import('node:stream').Duplex[] = [];
    server.on('upgrade', (req, socket) => {
      upgraded.push(socket);
      socket.write(
        `HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: ${req.headers.upgrade}\r\n\r\nhello-from-upstream`,
      );
      socket.on('data', (d: Buffer) => socket.write(Buffer.concat([Buffer.from('echo:'), d])));
    });
    const port = await listen(server);
    cleanups.push(
      () =>
        new Promise<void>((r) => {
          for (const u of upgraded) u.destroy();
          server.close(() => r());
        }),
    );
    const cluster = poolCluster();
    const pool = makePool(port, cluster);
    const got = await new Promise<string>((resolve, reject) => {
      const sink: ResponseSink = {
        onResponseHeaders(head) {
          expect(head.status).toBe(101);
          expect(head.headers).toContain('upgrade');
          const tunnel = enc!.takeTunnel();
          let text = '';
          tunnel.on('data', (d: Buffer) => {
            text += d.toString();
            if (text === 'hello-from-upstreamecho:ping') {
              tunnel.destroy();
              resolve(text);
            }
          });
          tunnel.write('ping');
          tunnel.resume();
        },
        onResponseData() {},
        onResponseTrailers() {},
        onUpstreamReset(reason, detail) {
          reject(new Error(`${reason}: ${detail}`));
        },
        onUpstreamWritable() {},
      };
      let enc: import('../../proxy/http/codec').RequestEncoder | undefined;
      pool.newStream(sink, {
        onPoolReady(encoder) {
          enc = encoder;
          encoder.writeHeaders(
            {
              method: 'GET',
              path: '/ws',
              authority: 'u',
              scheme: 'http',
              protocol: 'HTTP/1.1',
              headers: ['sec-websocket-key', 'k'],
              contentLength: 0,
              upgrade: 'websocket',
            },
            true,
          );
        },
        onPoolFailure(reason) {
          reject(new Error(reason));
        },
      });
    });
    expect(got).toBe('hello-from-upstreamecho:ping');
    expect(pool.connections).toBe(0); // the tunnel left the pool
    expect(cluster.resources.connections.count).toBe(0);
  });
});
