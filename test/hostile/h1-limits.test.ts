/**
 * Oversized and slow HTTP/1.1 clients against Envoy's defaults and knobs: header count (100) and
 * size (60 KiB) → 431, request line → 414, request_headers_timeout (slowloris) → 408 + close,
 * stream_idle_timeout → 408, connection idle_timeout, and the connection_limit network filter.
 * Each attack runs while a well-behaved client on another connection is served, and the
 * upstream's request log shows nothing of the attack.
 */
import net from 'node:net';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { stopAllMeshlets } from '../support/meshlet';
import { closeAll, rawExchange } from '../support/upstreams';
import { goodClient, type Proxied, startProxied, statusOf, until } from './harness';

afterEach(async () => {
  await stopAllMeshlets();
  await closeAll();
});

const live = new Set<net.Socket>();
afterAll(() => {
  for (const s of live) s.destroy();
});

function headers(n: number, valueBytes = 8): string {
  let s = '';
  for (let i = 0; i < n; i++) s += `x-h${i}: ${'v'.repeat(valueBytes)}\r\n`;
  return s;
}

/** Run one raw attack while a good client is served; return the raw result. */
async function attack(p: Proxied, bytes: string, idleMs = 3_000): Promise<{ text: string; closed: boolean }> {
  const good = goodClient(p.port);
  const r = await rawExchange(p.port, bytes, idleMs);
  const results = await good.stop();
  expect(results.length).toBeGreaterThan(0);
  expect(results.filter((x) => !x.ok)).toEqual([]);
  return r;
}

/** Open a socket and keep it (closed in afterAll). Resolves once connected. */
function open(port: number): Promise<net.Socket & { gotClose: boolean; received: string }> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1') as net.Socket & { gotClose: boolean; received: string };
    s.gotClose = false;
    s.received = '';
    live.add(s);
    s.on('data', (d) => {
      s.received += d.toString('latin1');
    });
    s.on('error', () => {});
    s.on('close', () => {
      s.gotClose = true;
      live.delete(s);
    });
    s.on('connect', () => resolve(s));
  });
}

describe('header limits (Envoy defaults)', () => {
  it('101 request headers → 431 and close (max_headers_count default 100); 99 pass', async () => {
    const p = await startProxied();
    const r = await attack(p, `GET /attack/many HTTP/1.1\r\nHost: x\r\n${headers(100)}\r\n`);
    expect(statusOf(r.text)).toBe(431);
    expect(r.closed).toBe(true);
    const ok = await rawExchange(p.port, `GET /good HTTP/1.1\r\nHost: x\r\nConnection: close\r\n${headers(98)}\r\n`, 3_000);
    expect(statusOf(ok.text)).toBe(200);
    expect(p.leaked()).toEqual([]);
  });

  it('a request head over 60 KiB → 431 and close (max_request_headers_kb default 60)', async () => {
    const p = await startProxied();
    const r = await attack(p, `GET /attack/big HTTP/1.1\r\nHost: x\r\n${headers(20, 3_200)}\r\n`);
    expect(statusOf(r.text)).toBe(431);
    expect(r.closed).toBe(true);
    expect(p.leaked()).toEqual([]);
  });

  it('a head that never ends but keeps growing is cut at the limit (431), not buffered forever', async () => {
    const p = await startProxied();
    const good = goodClient(p.port);
    const s = await open(p.port);
    s.write('GET /attack/endless HTTP/1.1\r\nHost: x\r\n');
    // 1 MiB of header lines without the terminating blank line, in 16 KiB writes.
    for (let i = 0; i < 64 && !s.gotClose; i++) {
      s.write(`x-fill-${i}: ${'a'.repeat(16_000)}\r\n`);
      await new Promise((r) => setTimeout(r, 1));
    }
    await until(() => s.gotClose, 10_000, 'connection closed');
    const results = await good.stop();
    expect(statusOf(s.received)).toBe(431);
    expect(results.filter((x) => !x.ok)).toEqual([]);
    expect(p.leaked()).toEqual([]);
  });

  it('knobs: max_headers_count 10 and max_request_headers_kb 4', async () => {
    const p = await startProxied({ hcm: { max_request_headers_kb: 4, common_http_protocol_options: { max_headers_count: 10 } } });
    expect(statusOf((await attack(p, `GET /attack/count HTTP/1.1\r\nHost: x\r\n${headers(10)}\r\n`)).text)).toBe(431);
    expect(statusOf((await attack(p, `GET /attack/size HTTP/1.1\r\nHost: x\r\nx-big: ${'b'.repeat(5_000)}\r\n\r\n`)).text)).toBe(431);
    const ok = await rawExchange(p.port, `GET /good HTTP/1.1\r\nHost: x\r\nConnection: close\r\n${headers(8)}\r\n`, 3_000);
    expect(statusOf(ok.text)).toBe(200);
    expect(p.leaked()).toEqual([]);
  });
});

describe('request line', () => {
  it('a request line over 16 KiB → 414 and close', async () => {
    const p = await startProxied();
    const r = await attack(p, `GET /attack/${'a'.repeat(17 * 1024)} HTTP/1.1\r\nHost: x\r\n\r\n`);
    expect(statusOf(r.text)).toBe(414);
    expect(r.closed).toBe(true);
    expect(p.leaked()).toEqual([]);
  });

  it('an endless request line (no CRLF ever) → 414, not buffered forever', async () => {
    const p = await startProxied();
    const good = goodClient(p.port);
    const s = await open(p.port);
    s.write('GET /attack/');
    for (let i = 0; i < 64 && !s.gotClose; i++) {
      s.write('a'.repeat(4_096));
      await new Promise((r) => setTimeout(r, 1));
    }
    await until(() => s.gotClose, 10_000, 'connection closed');
    const results = await good.stop();
    expect(statusOf(s.received)).toBe(414);
    expect(results.filter((x) => !x.ok)).toEqual([]);
    expect(p.leaked()).toEqual([]);
  });
});

describe('slow clients', () => {
  it('slowloris: a head dribbled byte by byte past request_headers_timeout → 408 and close', async () => {
    const p = await startProxied({ hcm: { request_headers_timeout: '0.4s' } });
    const good = goodClient(p.port);
    const s = await open(p.port);
    const head = `GET /attack/slow HTTP/1.1\r\nHost: x\r\n${headers(50)}\r\n`;
    // One byte every 20 ms keeps the connection "active" forever without the timeout.
    for (let i = 0; i < head.length - 4 && !s.gotClose; i++) {
      s.write(head[i]!);
      await new Promise((r) => setTimeout(r, 20));
    }
    await until(() => s.gotClose, 10_000, 'connection closed');
    const results = await good.stop();
    expect(statusOf(s.received)).toBe(408);
    expect(s.received.toLowerCase()).toContain('connection: close');
    expect(results.filter((x) => !x.ok)).toEqual([]);
    expect(p.leaked()).toEqual([]);
  });

  it('a body that stalls after the headers → 408 after stream_idle_timeout, and the upstream request is reset', async () => {
    const p = await startProxied({ hcm: { stream_idle_timeout: '0.4s' } });
    const good = goodClient(p.port);
    const s = await open(p.port);
    s.write('POST /attack/stall HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly-part');
    await until(() => s.gotClose || s.received.length > 0, 10_000, 'answer');
    await until(() => s.gotClose, 10_000, 'connection closed');
    const results = await good.stop();
    expect(statusOf(s.received)).toBe(408);
    expect(results.filter((x) => !x.ok)).toEqual([]);
    // The upstream never saw a complete request.
    expect(p.echo.requests.filter((r) => r.url === '/attack/stall')).toEqual([]);
  });

  it('idle_timeout closes a connection that never sends a request, and a keep-alive connection after its request', async () => {
    const p = await startProxied({ hcm: { common_http_protocol_options: { idle_timeout: '0.3s' } } });
    const good = goodClient(p.port);
    const silent = await open(p.port);
    const kept = await open(p.port);
    kept.write('GET /good HTTP/1.1\r\nHost: x\r\n\r\n');
    await until(() => silent.gotClose && kept.gotClose, 10_000, 'idle connections closed');
    const results = await good.stop();
    expect(silent.received).toBe('');
    expect(statusOf(kept.received)).toBe(200);
    // The busy client (a request every few ms) was never idle long enough to be cut.
    expect(results.filter((x) => !x.ok)).toEqual([]);
  });
});

describe('slow readers', () => {
  it('a client pipelining requests for 1 MiB responses without ever reading is throttled, not buffered', async () => {
    const big = Buffer.alloc(1024 * 1024, 0x61);
    const p = await startProxied({
      echoHandler: (req, res) => {
        if (!req.url?.startsWith('/attack/pipe')) return false;
        res.writeHead(200, { 'content-length': big.length });
        res.end(big);
        return true;
      },
    });
    const good = goodClient(p.port);
    const s = await open(p.port);
    s.pause(); // never read
    const one = 'GET /attack/pipe HTTP/1.1\r\nHost: x\r\n\r\n';
    s.write(one.repeat(200));
    // Let the proxy do whatever it will; with nobody reading, only a few responses fit in the
    // socket buffers before meshlet stops reading requests (and upstream responses).
    await new Promise((r) => setTimeout(r, 2_000));
    const forwarded = p.echo.requests.filter((r) => r.url === '/attack/pipe').length;
    expect(forwarded).toBeGreaterThan(0);
    expect(forwarded).toBeLessThan(50);
    s.destroy();
    const results = await good.stop();
    expect(results.length).toBeGreaterThan(0);
    expect(results.filter((x) => !x.ok)).toEqual([]);
    // After the client is gone, the pipelined rest is dropped, not forwarded.
    await new Promise((r) => setTimeout(r, 300));
    expect(p.echo.requests.filter((r) => r.url === '/attack/pipe').length).toBeLessThanOrEqual(forwarded + 1);
  });
});

describe('connections per listener', () => {
  it('connection_limit: connections past max_connections are closed at once; a slot frees when one closes', async () => {
    const limit = {
      name: 'envoy.filters.network.connection_limit',
      typed_config: {
        '@type': 'type.googleapis.com/envoy.extensions.filters.network.connection_limit.v3.ConnectionLimit',
        stat_prefix: 'limit',
        max_connections: 3,
      },
    };
    const p = await startProxied();
    // Rebuild with the limit filter in front of the HCM.
    await stopAllMeshlets();
    const { bootstrap, httpListener, routes, staticCluster, startMeshlet } = await import('../support/meshlet');
    const l = httpListener('http', routes([{ match: { prefix: '/' }, route: { cluster: 'up' } }])) as { filter_chains: { filters: unknown[] }[] };
    l.filter_chains[0]!.filters.unshift(limit);
    const m = await startMeshlet(bootstrap([l], [staticCluster('up', [p.echo.port])]));
    const port = m.listenerPort('http');

    const good = goodClient(port);
    await until(async () => p.echo.requests.length > 0, 10_000, 'good client served');
    const a = await open(port);
    const b = await open(port);
    // Two attackers + the good client = 3; the next ones are refused.
    await new Promise((r) => setTimeout(r, 100));
    const extra = await Promise.all([open(port), open(port), open(port)]);
    for (const e of extra) e.write('GET /attack/over HTTP/1.1\r\nHost: x\r\n\r\n');
    await until(() => extra.every((e) => e.gotClose), 10_000, 'over-limit connections closed');
    expect(extra.map((e) => e.received)).toEqual(['', '', '']);
    expect(a.gotClose || b.gotClose).toBe(false);
    // Counted under Envoy's names (issue 18.10: refusals were counted nowhere).
    const stats = await (await fetch(`http://127.0.0.1:${m.adminPort}/stats?filter=^connection_limit`)).text();
    expect(stats).toMatch(/^connection_limit\.limit\.limited_connections: 3$/m);
    expect(stats).toMatch(/^connection_limit\.limit\.active_connections: 3$/m);
    const prom = await (await fetch(`http://127.0.0.1:${m.adminPort}/stats/prometheus`)).text();
    expect(prom).toMatch(/^envoy_connection_limit_limited_connections_total\{stat_prefix="limit"\} 3$/m);
    a.destroy();
    await until(() => a.gotClose, 5_000, 'a closed');
    await new Promise((r) => setTimeout(r, 50));
    const c = await open(port);
    c.write('GET /good HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    await until(() => c.gotClose, 5_000, 'c answered');
    expect(statusOf(c.received)).toBe(200);
    const results = await good.stop();
    expect(results.length).toBeGreaterThan(0);
    expect(results.filter((x) => !x.ok)).toEqual([]);
    expect(p.leaked()).toEqual([]);
  });
});
