/**
 * End to end through the connection manager: real clients (undici, node:http, raw net) →
 * HttpConnectionManager on a real socket → router → real H1 pool → real node:http upstreams.
 */
import http from 'node:http';
import { Agent, request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { closeAll, type EchoRecord, startHttpEcho } from '../support/upstreams';
import {
  action,
  connect,
  headerExact,
  prefix,
  readUntil,
  route,
  routeConfig,
  startProxy,
  staticCluster,
  stopAll,
  vhost,
} from './hcm-support';

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

const agents: Agent[] = [];
function agent(): Agent {
  const a = new Agent({ keepAliveTimeout: 10_000, connections: 1 });
  agents.push(a);
  return a;
}

afterEach(async () => {
  await Promise.all(agents.splice(0).map((a) => a.close()));
  await stopAll();
  await closeAll();
});

async function get(
  port: number,
  path: string,
  opts: { headers?: Record<string, string>; method?: string; body?: string | Buffer; dispatcher?: Agent } = {},
) {
  const res = await request(`http://127.0.0.1:${port}${path}`, {
    method: (opts.method ?? 'GET') as 'GET',
    headers: opts.headers,
    body: opts.body,
    dispatcher: opts.dispatcher ?? agent(),
  });
  const text = await res.body.text();
  return { status: res.statusCode, headers: res.headers, text };
}

function echoOf(text: string): EchoRecord & { upstream: string } {
  return JSON.parse(text) as EchoRecord & { upstream: string };
}

describe('connection manager end to end (HTTP/1.1)', () => {
  it('forwards a request and its response, adding the standard headers', async () => {
    const up = await startHttpEcho('a');
    const proxy = await startProxy({
      routes: routeConfig([vhost([route(prefix('/'), action('a'), { name: 'all' })], { name: 'web', includeRequestAttemptCount: true })]),
      clusters: [staticCluster('a', [{ port: up.port }])],
    });
    const res = await get(proxy.port, '/hello?x=1', { headers: { 'x-custom': 'v' } });
    expect(res.status).toBe(200);
    expect(res.headers['x-upstream']).toBe('a');
    expect(res.headers.server).toBe('envoy');
    expect(Number.isNaN(Date.parse(String(res.headers.date)))).toBe(false);
    expect(Number(res.headers['x-envoy-upstream-service-time'])).toBeGreaterThanOrEqual(0);
    const seen = echoOf(res.text);
    expect(seen.url).toBe('/hello?x=1');
    expect(seen.headers['x-custom']).toBe('v');
    expect(seen.headers['x-forwarded-proto']).toBe('http');
    expect(seen.headers['x-request-id']).toMatch(UUID_RE);
    expect(seen.headers['x-envoy-attempt-count']).toBe('1');
    // Only because the virtual host sets include_request_attempt_count, as in Envoy (next test).
    expect(seen.headers['x-envoy-expected-rq-timeout-ms']).toBe('15000');
    expect(seen.headers.host).toBe(`127.0.0.1:${proxy.port}`);
    const [info] = await proxy.waitCompleted(1);
    expect(info?.responseCode).toBe(200);
    expect(info?.routeName).toBe('all');
    expect(info?.virtualHostName).toBe('web');
    expect(info?.clusterName).toBe('a');
    expect(info?.upstreamHost).toBe(`127.0.0.1:${up.port}`);
    expect(info?.attemptCount).toBe(1);
    expect(info?.responseFlags()).toBe('-');
    expect(info?.responseCodeDetails).toBe('via_upstream');
  });

  it('adds no x-envoy-attempt-count without include_request_attempt_count (Envoy)', async () => {
    const up = await startHttpEcho('a');
    const proxy = await startProxy({
      routes: routeConfig([vhost([route(prefix('/'), action('a'))])]),
      clusters: [staticCluster('a', [{ port: up.port }])],
    });
    const res = await get(proxy.port, '/hello');
    expect(res.status).toBe(200);
    expect(echoOf(res.text).headers['x-envoy-attempt-count']).toBeUndefined();
  });

  it('keeps the downstream and upstream connections alive across requests', async () => {
    const up = await startHttpEcho('a');
    const proxy = await startProxy({
      routes: routeConfig([vhost([route(prefix('/'), action('a'))])]),
      clusters: [staticCluster('a', [{ port: up.port }])],
    });
    const a = agent();
    const ports = new Set<number>();
    for (let i = 0; i < 5; i++) {
      const res = await get(proxy.port, `/n/${i}`, { dispatcher: a });
      expect(res.status).toBe(200);
      ports.add(echoOf(res.text).remotePort);
    }
    expect(up.requests.map((r) => r.url)).toEqual(['/n/0', '/n/1', '/n/2', '/n/3', '/n/4']);
    expect(up.connections).toBe(1);
    expect(ports.size).toBe(1);
  });

  it('streams chunked request bodies and answers Expect: 100-continue', async () => {
    const up = await startHttpEcho('a');
    const proxy = await startProxy({
      routes: routeConfig([vhost([route(prefix('/'), action('a'))])]),
      clusters: [staticCluster('a', [{ port: up.port }])],
    });
    const body = await new Promise<string>((resolve, reject) => {
      const req = http.request(
        {
          host: '127.0.0.1',
          port: proxy.port,
          path: '/upload',
          method: 'POST',
          headers: { expect: '100-continue', 'transfer-encoding': 'chunked' },
          agent: false,
        },
        (res) => {
          let t = '';
          res.on('data', (c) => {
            t += c;
          });
          res.on('end', () => resolve(t));
        },
      );
      req.on('error', reject);
      req.on('continue', () => {
        req.write('part one,');
        req.write('part two');
        req.end();
      });
    });
    const seen = echoOf(body);
    expect(seen.method).toBe('POST');
    expect(seen.body).toBe('part one,part two');
    expect(seen.headers.expect).toBeUndefined();
  });

  it('forwards large bodies both ways intact (flow control)', async () => {
    const big = Buffer.alloc(4 * 1024 * 1024, 'x');
    for (let i = 0; i < big.length; i += 4096) big[i] = 65 + ((i / 4096) % 26);
    const up = await startHttpEcho('a', (_req, res, b) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      res.end(Buffer.concat([Buffer.from(b), Buffer.from(b)]));
      return true;
    });
    const proxy = await startProxy({
      routes: routeConfig([vhost([route(prefix('/'), action('a'))])]),
      clusters: [staticCluster('a', [{ port: up.port }])],
    });
    const res = await request(`http://127.0.0.1:${proxy.port}/big`, { method: 'POST', body: big, dispatcher: agent() });
    const out = Buffer.from(await res.body.arrayBuffer());
    expect(res.statusCode).toBe(200);
    expect(out.length).toBe(big.length * 2);
    expect(out.subarray(0, big.length).equals(big)).toBe(true);
    expect(up.requests[0]?.body.length).toBe(big.length);
  });

  it('answers 404 with flag NR when no route matches, forwarding nothing', async () => {
    const up = await startHttpEcho('a');
    const proxy = await startProxy({
      routes: routeConfig([vhost([route(prefix('/api'), action('a'))], { domains: ['only.example.com'] })]),
      clusters: [staticCluster('a', [{ port: up.port }])],
    });
    const res = await get(proxy.port, '/api/x');
    expect(res.status).toBe(404);
    expect(res.text).toBe('');
    const res2 = await get(proxy.port, '/other', { headers: { host: 'only.example.com' } });
    expect(res2.status).toBe(404);
    expect(up.requests).toHaveLength(0);
    const infos = await proxy.waitCompleted(2);
    expect(infos.map((i) => i.responseFlags())).toEqual(['NR', 'NR']);
    expect(infos[0]?.responseCodeDetails).toBe('route_not_found');
  });

  it('rejects a malformed request with 400 and forwards nothing', async () => {
    const up = await startHttpEcho('a');
    const proxy = await startProxy({
      routes: routeConfig([vhost([route(prefix('/'), action('a'))])]),
      clusters: [staticCluster('a', [{ port: up.port }])],
    });
    const s = await connect(proxy.port);
    s.write('GET /x HTTP/1.1\r\nHost: a\r\nBad Header Without Colon\r\n\r\n');
    const text = await readUntil(s, (t) => t.includes('\r\n\r\n'));
    s.destroy();
    expect(text.startsWith('HTTP/1.1 400')).toBe(true);
    expect(up.requests).toHaveLength(0);
    // Reported for access logs like any other finished stream, with its connection.
    const [info] = await proxy.waitCompleted(1);
    expect(info?.responseCode).toBe(400);
    expect(info?.hasResponseFlag('DPE')).toBe(true);
    expect(info?.connection.remoteAddress).toBe('127.0.0.1');
  });

  it('selects routes by header match and virtual host domain', async () => {
    const a = await startHttpEcho('a');
    const b = await startHttpEcho('b');
    const c = await startHttpEcho('c');
    const proxy = await startProxy({
      routes: routeConfig([
        vhost([route(prefix('/'), action('c'))], { name: 'other', domains: ['other.local'] }),
        vhost([
          route(prefix('/', { headers: [headerExact('x-canary', '1')] }), action('b')),
          route(prefix('/'), action('a')),
        ]),
      ]),
      clusters: [
        staticCluster('a', [{ port: a.port }]),
        staticCluster('b', [{ port: b.port }]),
        staticCluster('c', [{ port: c.port }]),
      ],
    });
    expect((await get(proxy.port, '/')).headers['x-upstream']).toBe('a');
    expect((await get(proxy.port, '/', { headers: { 'x-canary': '1' } })).headers['x-upstream']).toBe('b');
    expect((await get(proxy.port, '/', { headers: { host: 'other.local:8080' } })).headers['x-upstream']).toBe('c');
  });

  it('matches every route kind on live traffic', async () => {
    const up = await startHttpEcho('a');
    const named = (name: string, m: Parameters<typeof route>[0]) => route(m, action('a'), { name });
    const base = { caseSensitive: true, headers: [], queryParameters: [], grpc: false };
    const proxy = await startProxy({
      routes: routeConfig([
        vhost([
          named('exact', { ...base, path: { kind: 'path', value: '/exact' } }),
          named('regex', { ...base, path: { kind: 'safe_regex', value: '/items/[0-9]+', regex: /\/items\/[0-9]+/ } }),
          named('separated', { ...base, path: { kind: 'path_separated_prefix', value: '/sep' } }),
          named('nocase', { ...base, caseSensitive: false, path: { kind: 'prefix', value: '/case' } }),
          named('query', {
            ...base,
            path: { kind: 'prefix', value: '/q' },
            queryParameters: [{ name: 'debug', match: { kind: 'present' } }],
          }),
          named('grpc', { ...base, path: { kind: 'prefix', value: '/' }, grpc: true }),
          named('fallback', { ...base, path: { kind: 'prefix', value: '/' } }),
        ]),
      ]),
      clusters: [staticCluster('a', [{ port: up.port }])],
    });
    const cases: [string, string, Record<string, string>?][] = [
      ['/exact?x=1', 'exact'],
      ['/exact/more', 'fallback'],
      ['/items/42', 'regex'],
      ['/items/42x', 'fallback'],
      ['/sep/a', 'separated'],
      ['/sepx', 'fallback'],
      ['/CASE/x', 'nocase'],
      ['/q?debug', 'query'],
      ['/q?other=1', 'fallback'],
      ['/svc/M', 'grpc', { 'content-type': 'application/grpc' }],
    ];
    for (const [path, , headers] of cases) {
      const res = await get(proxy.port, path, {
        headers,
        method: headers ? 'POST' : 'GET',
        body: headers ? Buffer.alloc(5) : undefined,
      });
      expect(res.status, path).toBe(200);
    }
    const infos = await proxy.waitCompleted(cases.length);
    expect(infos.map((i) => i.routeName)).toEqual(cases.map((c) => c[1]));
  });

  it('drains: an in-flight response finishes with Connection: close, idle connections close', async () => {
    const held: (() => void)[] = [];
    const up = await startHttpEcho('a', (_q, res) => {
      held.push(() => res.end('done'));
      return true;
    });
    const proxy = await startProxy({
      routes: routeConfig([vhost([route(prefix('/'), action('a'))])]),
      clusters: [staticCluster('a', [{ port: up.port }])],
    });
    const busy = await connect(proxy.port);
    const idle = await connect(proxy.port);
    busy.write('GET /1 HTTP/1.1\r\nHost: a\r\n\r\n');
    for (let i = 0; i < 100 && up.requests.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
    expect(proxy.hcm.activeConnections).toBe(2);
    const idleClosed = readUntil(idle, () => false);
    proxy.hcm.drain();
    expect(await idleClosed).toBe('');
    const response = readUntil(busy, () => false);
    for (const h of held) h();
    const text = await response;
    expect(text.startsWith('HTTP/1.1 200')).toBe(true);
    expect(text.toLowerCase()).toContain('connection: close');
    expect(text.endsWith('done')).toBe(true);
    busy.destroy();
    idle.destroy();
  });

  it('normalises the path before routing when normalize_path / merge_slashes are on', async () => {
    const up = await startHttpEcho('a');
    const proxy = await startProxy({
      routes: routeConfig([vhost([route(prefix('/public'), action('a'))])]),
      clusters: [staticCluster('a', [{ port: up.port }])],
      hcm: { normalizePath: true, mergeSlashes: true },
    });
    const s = await connect(proxy.port);
    s.write('GET /private/../public//x/./y HTTP/1.1\r\nHost: a\r\n\r\n');
    const text = await readUntil(s, (t) => t.includes('"upstream"'));
    s.destroy();
    expect(text.startsWith('HTTP/1.1 200')).toBe(true);
    expect(up.requests[0]?.url).toBe('/public/x/y');
  });

  it('an RDS swap changes routing for new requests only', async () => {
    const a = await startHttpEcho('a');
    const b = await startHttpEcho('b');
    const proxy = await startProxy({
      routes: routeConfig([vhost([route(prefix('/'), action('a'))])]),
      clusters: [staticCluster('a', [{ port: a.port }]), staticCluster('b', [{ port: b.port }])],
    });
    expect((await get(proxy.port, '/')).headers['x-upstream']).toBe('a');
    proxy.setRoutes(routeConfig([vhost([route(prefix('/'), action('b'))])]));
    expect((await get(proxy.port, '/')).headers['x-upstream']).toBe('b');
  });

  it('appends the client address to x-forwarded-for with use_remote_address', async () => {
    const up = await startHttpEcho('a');
    const proxy = await startProxy({
      routes: routeConfig([vhost([route(prefix('/'), action('a'))])]),
      clusters: [staticCluster('a', [{ port: up.port }])],
      hcm: { useRemoteAddress: true },
    });
    const seen = echoOf(
      (await get(proxy.port, '/', { headers: { 'x-forwarded-for': '203.0.113.9', 'x-request-id': 'abc' } })).text,
    );
    expect(seen.headers['x-forwarded-for']).toBe('203.0.113.9,127.0.0.1');
    // Two hops: not an internal request, so a client-chosen request id is replaced.
    expect(seen.headers['x-request-id']).toMatch(UUID_RE);
    const seen2 = echoOf(
      (await get(proxy.port, '/', { headers: { 'x-request-id': 'abc', 'x-envoy-retry-on': '5xx' } })).text,
    );
    expect(seen2.headers['x-forwarded-for']).toBe('127.0.0.1');
    expect(seen2.headers['x-request-id']).toBe('abc');
    expect(seen2.headers['x-envoy-internal']).toBe('true');
  });

  it('honours server_header_transformation', async () => {
    const up = await startHttpEcho('a', (_q, res) => {
      res.writeHead(200, { server: 'upstream-server', 'content-length': '0' });
      res.end();
      return true;
    });
    const clusters = [staticCluster('a', [{ port: up.port }])];
    const rc = routeConfig([vhost([route(prefix('/'), action('a'))])]);
    const p1 = await startProxy({ routes: rc, clusters, hcm: { serverName: 'meshlet' } });
    expect((await get(p1.port, '/')).headers.server).toBe('meshlet');
    const p2 = await startProxy({ routes: rc, clusters, hcm: { serverHeaderTransformation: 'PASS_THROUGH' } });
    expect((await get(p2.port, '/')).headers.server).toBe('upstream-server');
    const p3 = await startProxy({ routes: rc, clusters, hcm: { serverHeaderTransformation: 'APPEND_IF_ABSENT' } });
    expect((await get(p3.port, '/')).headers.server).toBe('upstream-server');
  });

  it('answers a gRPC request that has no route as gRPC (200, grpc-status 12)', async () => {
    const proxy = await startProxy({ routes: routeConfig([vhost([], { domains: ['x'] })]), clusters: [] });
    const res = await get(proxy.port, '/pkg.Svc/Method', {
      method: 'POST',
      headers: { 'content-type': 'application/grpc', te: 'trailers' },
      body: Buffer.alloc(5),
    });
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe('application/grpc');
    expect(res.headers['grpc-status']).toBe('12');
  });

  it('sends 408 when the request body stalls past request_timeout', async () => {
    const up = await startHttpEcho('a');
    const proxy = await startProxy({
      routes: routeConfig([vhost([route(prefix('/'), action('a'))])]),
      clusters: [staticCluster('a', [{ port: up.port }])],
      hcm: { requestTimeoutMs: 200 },
    });
    const s = await connect(proxy.port);
    s.write('POST /slow HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nonly part');
    const text = await readUntil(s, (t) => t.includes('request timeout'));
    s.destroy();
    expect(text.startsWith('HTTP/1.1 408')).toBe(true);
    expect(text).toContain('request timeout');
  });

  it('sends 408 with flag SI when the stream goes idle', async () => {
    const up = await startHttpEcho('a');
    const proxy = await startProxy({
      routes: routeConfig([vhost([route(prefix('/'), action('a'))])]),
      clusters: [staticCluster('a', [{ port: up.port }])],
      hcm: { streamIdleTimeoutMs: 200 },
    });
    const s = await connect(proxy.port);
    s.write('POST /idle HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nx');
    const text = await readUntil(s, (t) => t.includes('stream timeout'));
    s.destroy();
    expect(text.startsWith('HTTP/1.1 408')).toBe(true);
    const [info] = await proxy.waitCompleted(1);
    expect(info?.hasResponseFlag('SI')).toBe(true);
  });

  it('resets the upstream request when the client disconnects (flag DC)', async () => {
    let release: (() => void) | undefined;
    const up = await startHttpEcho('a', (_q, res) => {
      release = () => res.end('late');
      return true;
    });
    const proxy = await startProxy({
      routes: routeConfig([vhost([route(prefix('/'), action('a'))])]),
      clusters: [staticCluster('a', [{ port: up.port }])],
    });
    const s = await connect(proxy.port);
    s.write('GET /hang HTTP/1.1\r\nHost: a\r\n\r\n');
    for (let i = 0; i < 100 && up.requests.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
    expect(up.requests).toHaveLength(1);
    s.destroy();
    const [info] = await proxy.waitCompleted(1);
    expect(info?.hasResponseFlag('DC')).toBe(true);
    release?.();
  });
});
