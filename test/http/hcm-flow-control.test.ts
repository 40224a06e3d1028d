/**
 * Backpressure through the proxy, both directions, on real sockets: a client that stops reading
 * must eventually stop the upstream's writes, and an upstream that stops reading must eventually
 * stop the client's upload. The proxy may buffer (socket buffers, codec watermarks), but not
 * without bound. No timing assertions: each test waits for a condition, bounded in time.
 */
import http from 'node:http';
import type net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { action, connect, prefix, route, routeConfig, startProxy, staticCluster, stopAll, vhost } from './hcm-support';

const servers: http.Server[] = [];
afterEach(async () => {
  await stopAll();
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});

async function listen(server: http.Server): Promise<number> {
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return (server.address() as net.AddressInfo).port;
}

/** Poll `cond` every 20 ms for at most `ms`; resolves with its final value. */
async function eventually(cond: () => boolean, ms = 10_000): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (!cond() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  return cond();
}

const CHUNK = Buffer.alloc(64 * 1024, 'z');
const TOTAL = 128 * 1024 * 1024;

describe('flow control', () => {
  it('a client that stops reading stops the upstream (response direction)', async () => {
    const state = { written: 0, blocked: false, finished: false };
    const port = await listen(
      http.createServer((_req, res) => {
        res.writeHead(200, { 'content-length': String(TOTAL) });
        const pump = (): void => {
          while (state.written < TOTAL) {
            state.written += CHUNK.length;
            if (!res.write(CHUNK)) {
              state.blocked = true;
              res.once('drain', () => {
                state.blocked = false;
                pump();
              });
              return;
            }
          }
          state.finished = true;
          res.end();
        };
        pump();
      }),
    );
    const proxy = await startProxy({
      routes: routeConfig([vhost([route(prefix('/'), action('a'))])]),
      clusters: [staticCluster('a', [{ port }])],
    });
    const s = await connect(proxy.port);
    s.pause();
    s.write('GET /big HTTP/1.1\r\nHost: a\r\n\r\n');
    // The upstream runs into backpressure and stays there while the client does not read.
    expect(await eventually(() => state.blocked)).toBe(true);
    const before = state.written;
    await new Promise((r) => setTimeout(r, 300));
    expect(state.finished).toBe(false);
    expect(state.written).toBeLessThan(TOTAL);
    // Whatever was written meanwhile is bounded by buffers, far below the body size.
    expect(state.written - before).toBeLessThan(TOTAL / 4);
    // Reading again lets everything through.
    let received = 0;
    const done = new Promise<void>((resolve) => {
      s.on('data', (d: Buffer) => {
        received += d.length;
        if (received >= TOTAL) resolve();
      });
      s.on('close', () => resolve());
    });
    s.resume();
    await done;
    expect(received).toBeGreaterThan(TOTAL);
    s.destroy();
  });

  it('an upstream that stops reading stops the client upload (request direction)', async () => {
    let upstreamReq: http.IncomingMessage | undefined;
    const port = await listen(
      http.createServer((req, res) => {
        upstreamReq = req;
        req.pause();
        let got = 0;
        req.on('data', (d: Buffer) => {
          got += d.length;
        });
        req.on('end', () => {
          res.writeHead(200, { 'content-length': String(String(got).length) });
          res.end(String(got));
        });
      }),
    );
    const proxy = await startProxy({
      routes: routeConfig([vhost([route(prefix('/'), action('a'))])]),
      clusters: [staticCluster('a', [{ port }])],
    });
    const s = await connect(proxy.port);
    s.write(`POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: ${TOTAL}\r\n\r\n`);
    const state = { sent: 0, blocked: false };
    const pump = (): void => {
      while (state.sent < TOTAL) {
        state.sent += CHUNK.length;
        if (!s.write(CHUNK)) {
          state.blocked = true;
          s.once('drain', () => {
            state.blocked = false;
            pump();
          });
          return;
        }
      }
    };
    pump();
    expect(await eventually(() => upstreamReq !== undefined && state.blocked)).toBe(true);
    await new Promise((r) => setTimeout(r, 300));
    expect(state.sent).toBeLessThan(TOTAL);
    const before = state.sent;
    await new Promise((r) => setTimeout(r, 300));
    expect(state.sent - before).toBeLessThan(TOTAL / 4);
    // The upstream reads again: the whole body arrives and the response comes back.
    let text = '';
    const done = new Promise<void>((resolve) => {
      s.on('data', (d: Buffer) => {
        text += d.toString('latin1');
        if (text.endsWith(String(TOTAL))) resolve();
      });
      s.on('close', () => resolve());
    });
    upstreamReq!.resume();
    await done;
    expect(text.startsWith('HTTP/1.1 200')).toBe(true);
    expect(text.endsWith(String(TOTAL))).toBe(true);
    s.destroy();
  });
});
