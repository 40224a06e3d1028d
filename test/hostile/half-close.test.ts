/**
 * Peers that half-close after a complete exchange (FIN, and for HTTP/2 no GOAWAY — plain
 * `curl --http2-prior-knowledge` does exactly this): meshlet must close its side once the
 * connection's streams are done, for HTTP/1.1, h2c and HTTP/2 over TLS. Checked from the outside:
 * the process's open descriptors return to where they were, and the admin's downstream_cx_active
 * and server.total_connections gauges return to zero (not idle_timeout, 1 h by default, later).
 */
import { readdirSync } from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DevCa } from '../../certs/dev-ca';
import { bootstrap, httpListener, routes, staticCluster, startMeshlet, type StartedMeshlet, stopAllMeshlets } from '../support/meshlet';
import { closeAll, type HttpEcho, startHttpEcho } from '../support/upstreams';
import { F, FLAG, headers, RawH2, requestBlock } from './h2-frames';

const kRaw = Symbol('raw socket');
let attachingRaw: net.Socket | undefined;
const DOWNSTREAM_TLS = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext';
/** Connections per case: a leak of 2 descriptors each would be far above the slack allowed. */
const N = 20;
/** Descriptors that may come and go meanwhile (pooled upstream connections, the admin call). */
const FD_SLACK = 6;

let echo: HttpEcho;
let m: StartedMeshlet;
let plainPort = 0;
let tlsPort = 0;
let h2upPort = 0;
/** Upstream HTTP/2 server sockets still open (it FINs after every response, without GOAWAY). */
const upstreamSockets = new Set<net.Socket>();
let upstreamServer: net.Server;

beforeAll(async () => {
  const ca = await DevCa.create({ trustDomain: 'cluster.local' });
  const server = await ca.issueWorkload({ ns: 'default', sa: 'server' });
  echo = await startHttpEcho('app');
  const route = routes([{ match: { prefix: '/' }, route: { cluster: 'app' } }]);
  const plain = httpListener('plain', route);
  const secure = httpListener('secure', route) as { filter_chains: Record<string, unknown>[] };
  secure.filter_chains[0]!.transport_socket = {
    name: 'envoy.transport_sockets.tls',
    typed_config: {
      '@type': DOWNSTREAM_TLS,
      common_tls_context: {
        alpn_protocols: ['h2', 'http/1.1'],
        tls_certificates: [{ certificate_chain: { inline_string: server.certChainPem }, private_key: { inline_string: server.privateKeyPem } }],
      },
    },
  };
  // An h2c upstream that ends its byte stream (FIN, no GOAWAY) once it has answered a request.
  const h2 = http2.createServer();
  h2.on('stream', (stream) => {
    stream.respond({ ':status': 200 });
    stream.end('ok');
    const raw = (stream.session as unknown as { [kRaw]?: net.Socket })[kRaw];
    stream.on('close', () => raw?.end());
  });
  h2.on('session', (session) => {
    (session as unknown as { [kRaw]?: net.Socket })[kRaw] = attachingRaw;
  });
  upstreamServer = net.createServer({ allowHalfOpen: true }, (sock) => {
    upstreamSockets.add(sock);
    sock.on('close', () => upstreamSockets.delete(sock));
    sock.on('error', () => {});
    attachingRaw = sock;
    h2.emit('connection', sock);
  });
  await new Promise<void>((r) => upstreamServer.listen(0, '127.0.0.1', r));
  const upPort = (upstreamServer.address() as net.AddressInfo).port;
  const h2up = httpListener('h2up', routes([{ match: { prefix: '/' }, route: { cluster: 'h2app' } }]));
  m = await startMeshlet(
    bootstrap(
      [plain, secure, h2up],
      [
        staticCluster('app', [echo.port]),
        staticCluster('h2app', [upPort], {
          typed_extension_protocol_options: {
            'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
              '@type': 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
              explicit_http_config: { http2_protocol_options: {} },
            },
          },
        }),
      ],
    ),
  );
  plainPort = m.listenerPort('plain');
  tlsPort = m.listenerPort('secure');
  h2upPort = m.listenerPort('h2up');
});

afterAll(async () => {
  for (const sock of upstreamSockets) sock.destroy();
  upstreamServer?.close();
  await stopAllMeshlets();
  await closeAll();
});

function openFds(): number {
  return readdirSync('/proc/self/fd').length;
}

/** One admin GET on its own connection (no keep-alive descriptor left behind). */
function admin(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port: m.adminPort, path, agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve(body));
      })
      .on('error', reject);
  });
}

async function gauges(): Promise<Record<string, number>> {
  const text = await admin('/stats?filter=downstream_cx_active|total_connections');
  const out: Record<string, number> = {};
  for (const line of text.split('\n')) {
    const i = line.lastIndexOf(': ');
    if (i > 0) out[line.slice(0, i)] = Number(line.slice(i + 2));
  }
  return out;
}

function connectionGauges(g: Record<string, number>): number[] {
  return [
    g[`listener.127.0.0.1_${plainPort}.downstream_cx_active`] ?? -1,
    g[`listener.127.0.0.1_${tlsPort}.downstream_cx_active`] ?? -1,
    g['server.total_connections'] ?? -1,
  ];
}

/** GET through the h2up listener (HTTP/1.1 downstream, HTTP/2 upstream) on a fresh connection. */
function getViaH2Upstream(): Promise<number> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port: h2upPort, path: '/up', agent: false }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      })
      .on('error', reject);
  });
}

/** Poll until every connection gauge is 0 and descriptors are back near `baseline` (or time out). */
async function settle(baseline: number, ms = 5_000): Promise<{ gauges: number[]; fds: number }> {
  const end = Date.now() + ms;
  for (;;) {
    const g = connectionGauges(await gauges());
    const fds = openFds();
    if ((g.every((v) => v === 0) && fds <= baseline + FD_SLACK) || Date.now() > end) return { gauges: g, fds };
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Resolves when `s` closed, or after `ms` (the assertions below tell what stayed open). */
function waitClose(s: net.Socket, ms = 3_000): Promise<void> {
  return new Promise((r) => {
    if (s.destroyed) return r();
    const t = setTimeout(r, ms);
    s.once('close', () => {
      clearTimeout(t);
      r();
    });
  });
}

/** HTTP/1.1: one request, read the whole response, then FIN. */
async function h1Exchange(socket: net.Socket): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    let got = '';
    const onData = (d: Buffer): void => {
      got += d.toString('latin1');
      const head = got.indexOf('\r\n\r\n');
      const len = /content-length: (\d+)/i.exec(got);
      if (head >= 0 && len && got.length >= head + 4 + Number(len[1])) {
        socket.off('data', onData);
        expect(got.startsWith('HTTP/1.1 200')).toBe(true);
        resolve();
      }
    };
    socket.on('data', onData);
    socket.once('error', reject);
    socket.write('GET /h1 HTTP/1.1\r\nhost: x\r\n\r\n');
  });
  socket.end();
}

/** HTTP/2 over `socket`: one request to completion, then FIN on the transport, no GOAWAY. */
async function h2Exchange(socket: net.Socket, authority: string): Promise<void> {
  const session = http2.connect(authority, { createConnection: () => socket });
  session.on('error', () => {});
  const status = await new Promise<number>((resolve, reject) => {
    const req = session.request({ ':path': '/h2' });
    let st = 0;
    req.on('response', (h) => (st = Number(h[':status'])));
    req.on('error', reject);
    req.resume();
    req.on('end', () => resolve(st));
  });
  expect(status).toBe(200);
  // Like curl: no GOAWAY, just the end of the byte stream (TLS close_notify first over TLS).
  socket.end();
}

function plainSocket(): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect(plainPort, '127.0.0.1', () => resolve(s));
    s.once('error', reject);
  });
}

function tlsSocket(alpn: string): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port: tlsPort, ALPNProtocols: [alpn], rejectUnauthorized: false }, () => resolve(s));
    s.once('error', reject);
  });
}

async function runCase(open: () => Promise<net.Socket>, exchange: (s: net.Socket) => Promise<void>): Promise<void> {
  // Warm up: the upstream pool holds its connection from here on, so it is part of the baseline.
  const warm = await open();
  await exchange(warm);
  await waitClose(warm);
  const base = await settle(openFds(), 5_000);
  expect(base.gauges).toEqual([0, 0, 0]);
  const baseline = openFds();
  const sockets: net.Socket[] = [];
  for (let i = 0; i < N; i++) {
    const s = await open();
    sockets.push(s);
    await exchange(s);
  }
  const after = await settle(baseline);
  expect(after.gauges).toEqual([0, 0, 0]);
  expect(after.fds).toBeLessThanOrEqual(baseline + FD_SLACK);
  // Our client sockets were closed by meshlet's FIN (they do not allow half-open).
  expect(sockets.every((s) => s.destroyed)).toBe(true);
}

describe('connection gauges count connections, not sockets', () => {
  it('a live TLS connection is one downstream_cx_active (not the TCP and the TLS socket both)', async () => {
    const open = [await tlsSocket('h2'), await tlsSocket('http/1.1'), await plainSocket()];
    // Let the listener accept and finish the handshakes.
    await new Promise((r) => setTimeout(r, 200));
    const g = connectionGauges(await gauges());
    for (const s of open) s.destroy();
    expect(g).toEqual([1, 2, 3]);
    const after = await settle(openFds());
    expect(after.gauges).toEqual([0, 0, 0]);
  });
});

describe('a peer half-close ends the connection once its streams are done', () => {
  it('HTTP/1.1', async () => {
    await runCase(plainSocket, h1Exchange);
  });

  it('h2c with prior knowledge, FIN without GOAWAY', async () => {
    await runCase(plainSocket, (s) => h2Exchange(s, `http://127.0.0.1:${plainPort}`));
  });

  it('HTTP/1.1 over TLS', async () => {
    await runCase(() => tlsSocket('http/1.1'), h1Exchange);
  });

  it('HTTP/2 over TLS (ALPN h2), close_notify and FIN without GOAWAY', async () => {
    await runCase(() => tlsSocket('h2'), (s) => h2Exchange(s, `https://127.0.0.1:${tlsPort}`));
  });
});

describe('a request in flight when the peer half-closes', () => {
  it('is still answered over h2c, then the connection closes', async () => {
    const raw = await RawH2.connect(plainPort);
    raw.write(headers(1, requestBlock('/in-flight')));
    // Once the request is in (a FIN in the very first read of an AUTO connection is another case).
    await new Promise((r) => setTimeout(r, 100));
    raw.socket.end();
    const answered = await raw.waitFor(() => raw.frames.some((f) => f.streamId === 1 && (f.flags & FLAG.END_STREAM) !== 0), 5_000);
    expect(answered).toBe(true);
    expect(raw.frames.some((f) => f.type === F.HEADERS && f.streamId === 1)).toBe(true);
    expect(await raw.waitFor(() => raw.closed, 5_000)).toBe(true);
  });
});

describe('an upstream HTTP/2 peer that half-closes', () => {
  it('is released by the pool: upstream_cx_active returns to 0 and its sockets close', async () => {
    for (let i = 0; i < 10; i++) expect(await getViaH2Upstream()).toBe(200);
    const end = Date.now() + 5_000;
    let active = -1;
    let total = -1;
    while (Date.now() < end) {
      const text = await admin('/stats?filter=^cluster\\.h2app\\.upstream_cx_(active|total)$');
      active = Number(/cluster\.h2app\.upstream_cx_active: (\d+)/.exec(text)?.[1] ?? -1);
      total = Number(/cluster\.h2app\.upstream_cx_total: (\d+)/.exec(text)?.[1] ?? -1);
      if (active === 0 && upstreamSockets.size === 0) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(active).toBe(0);
    // Every response ended its connection, so every request needed a new one.
    expect(total).toBe(10);
    expect(upstreamSockets.size).toBe(0);
    // And the pool opens a new connection for the next request.
    expect(await getViaH2Upstream()).toBe(200);
  });
});
