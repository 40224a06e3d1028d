/**
 * The router end to end: real clients → connection manager → router → real H1 pools → real
 * upstreams (node:http and raw net servers on loopback). Covers cluster selection, rewrites, header
 * mutations, direct responses, redirects, timeouts, retries, circuit breaking and upgrades.
 */
import net from 'node:net';
import { Agent, request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import type { HeaderValueOption, WeightedCluster } from '../../proxy/config/types';
import { closeAll, closedPort, type EchoRecord, startHttpEcho } from '../support/upstreams';
import { clusterConfig } from '../upstream/fixtures';
import {
  action,
  connect,
  prefix,
  readUntil,
  retryPolicy,
  route,
  routeConfig,
  startProxy,
  staticCluster,
  stopAll,
  vhost,
} from './hcm-support';

const agents: Agent[] = [];
const servers: net.Server[] = [];
afterEach(async () => {
  await Promise.all(agents.splice(0).map((a) => a.close()));
  await stopAll();
  await closeAll();
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
});

async function call(
  port: number,
  path: string,
  opts: { headers?: Record<string, string>; method?: string; body?: string } = {},
) {
  const a = new Agent({ keepAliveTimeout: 5_000 });
  agents.push(a);
  const res = await request(`http://127.0.0.1:${port}${path}`, {
    method: (opts.method ?? 'GET') as 'GET',
    headers: opts.headers,
    body: opts.body,
    dispatcher: a,
  });
  return { status: res.statusCode, headers: res.headers, text: await res.body.text() };
}

function echoOf(text: string): EchoRecord & { upstream: string } {
  return JSON.parse(text) as EchoRecord & { upstream: string };
}

function hvo(
  key: string,
  value: string,
  appendAction: HeaderValueOption['appendAction'] = 'APPEND_IF_EXISTS_OR_ADD',
): HeaderValueOption {
  return { key, value, appendAction, keepEmptyValue: false };
}

describe('router: cluster selection, rewrites and header mutations', () => {
  it('picks weighted clusters by weight and applies their header mutations', async () => {
    const a = await startHttpEcho('a');
    const b = await startHttpEcho('b');
    const wc = (name: string, weight: number): WeightedCluster => ({
      name,
      weight,
      requestHeadersToAdd: [hvo('x-weighted', name)],
      requestHeadersToRemove: [],
      responseHeadersToAdd: [hvo('x-picked', name)],
      responseHeadersToRemove: [],
      typedPerFilterConfig: {},
    });
    let next = 0;
    const rolls = [0.1, 0.9, 0.5, 0.29];
    const proxy = await startProxy({
      routes: routeConfig([
        vhost([
          route(
            prefix('/'),
            action('', { cluster: { kind: 'weighted', clusters: [wc('a', 30), wc('b', 70)], totalWeight: 100 } }),
          ),
        ]),
      ]),
      clusters: [staticCluster('a', [{ port: a.port }]), staticCluster('b', [{ port: b.port }])],
      random: () => rolls[next++ % rolls.length]!,
    });
    const picked: string[] = [];
    for (let i = 0; i < 4; i++) {
      const res = await call(proxy.port, '/');
      picked.push(String(res.headers['x-picked']));
      expect(echoOf(res.text).headers['x-weighted']).toBe(res.headers['x-picked']);
    }
    expect(picked).toEqual(['a', 'b', 'b', 'a']);
  });

  it('keeps a client on one host with a header hash policy over RING_HASH', async () => {
    const ups = await Promise.all(['h1', 'h2', 'h3'].map((n) => startHttpEcho(n)));
    const proxy = await startProxy({
      routes: routeConfig([
        vhost([route(prefix('/'), action('a', { hashPolicy: [{ kind: 'header', name: 'x-user', terminal: false }] }))]),
      ]),
      clusters: [
        staticCluster(
          'a',
          ups.map((u) => ({ port: u.port })),
          { lbPolicy: 'RING_HASH' },
        ),
      ],
    });
    const hostsFor = async (user: string) => {
      const seen = new Set<string>();
      for (let i = 0; i < 3; i++)
        seen.add(String((await call(proxy.port, '/', { headers: { 'x-user': user } })).headers['x-upstream']));
      return seen;
    };
    const users = Array.from({ length: 12 }, (_, i) => `user-${i}`);
    const all = new Set<string>();
    for (const u of users) {
      const seen = await hostsFor(u);
      expect(seen.size, u).toBe(1);
      all.add([...seen][0]!);
    }
    // Different users spread over more than one host (all 12 on one of 3 hosts: ~1e-5).
    expect(all.size).toBeGreaterThan(1);
  });

  it('routes by cluster_header and answers 503 NC for an unknown cluster', async () => {
    const a = await startHttpEcho('a');
    const proxy = await startProxy({
      routes: routeConfig([
        vhost([route(prefix('/'), action('', { cluster: { kind: 'cluster_header', header: 'x-cluster' } }))]),
      ]),
      clusters: [staticCluster('a', [{ port: a.port }])],
    });
    expect((await call(proxy.port, '/', { headers: { 'x-cluster': 'a' } })).headers['x-upstream']).toBe('a');
    const miss = await call(proxy.port, '/', { headers: { 'x-cluster': 'nope' } });
    expect(miss.status).toBe(503);
    const missing = await call(proxy.port, '/');
    expect(missing.status).toBe(503);
    const infos = await proxy.waitCompleted(3);
    expect(infos.slice(1).map((i) => i.responseFlags())).toEqual(['NC', 'NC']);
  });

  it('rewrites the path prefix and the host', async () => {
    const a = await startHttpEcho('a');
    const proxy = await startProxy({
      routes: routeConfig([
        vhost([
          route(prefix('/old'), action('a', { prefixRewrite: '/new', hostRewriteLiteral: 'backend.internal' })),
          route(prefix('/hdr'), action('a', { hostRewriteHeader: 'x-host' })),
          route(prefix('/rx'), action('a', { regexRewrite: { regex: /^\/rx\/(\w+)$/g, substitution: '/items/\\1' } })),
        ]),
      ]),
      clusters: [staticCluster('a', [{ port: a.port }])],
    });
    const s1 = echoOf((await call(proxy.port, '/old/thing?q=1')).text);
    expect(s1.url).toBe('/new/thing?q=1');
    expect(s1.headers.host).toBe('backend.internal');
    expect(s1.headers['x-envoy-original-path']).toBe('/old/thing?q=1');
    const s2 = echoOf((await call(proxy.port, '/hdr', { headers: { 'x-host': 'from.header' } })).text);
    expect(s2.headers.host).toBe('from.header');
    const s3 = echoOf((await call(proxy.port, '/rx/abc?z')).text);
    expect(s3.url).toBe('/items/abc?z');
  });

  it('adds and removes request and response headers at route, vhost and route-config level', async () => {
    const a = await startHttpEcho('a', (_q, res) => {
      res.writeHead(200, { 'x-secret': 'hide-me', 'x-up': '1', 'content-length': '2' });
      res.end('ok');
      return true;
    });
    const proxy = await startProxy({
      routes: routeConfig(
        [
          vhost(
            [
              route(prefix('/'), action('a'), {
                requestHeadersToAdd: [
                  hvo('x-route', 'r'),
                  hvo('x-client-ip', '%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%'),
                ],
                requestHeadersToRemove: ['x-drop'],
                responseHeadersToAdd: [hvo('x-resp-route', 'r')],
                responseHeadersToRemove: ['x-secret'],
              }),
            ],
            { requestHeadersToAdd: [hvo('x-vhost', 'v')], responseHeadersToAdd: [hvo('x-resp-vhost', 'v')] },
          ),
        ],
        {
          requestHeadersToAdd: [hvo('x-route', 'global', 'OVERWRITE_IF_EXISTS_OR_ADD')],
          responseHeadersToAdd: [hvo('x-resp-global', 'g')],
        },
      ),
      clusters: [staticCluster('a', [{ port: a.port }])],
    });
    const res = await call(proxy.port, '/', { headers: { 'x-drop': 'bye', 'x-keep': 'hi' } });
    expect(res.headers['x-secret']).toBeUndefined();
    expect(res.headers['x-up']).toBe('1');
    expect(res.headers['x-resp-route']).toBe('r');
    expect(res.headers['x-resp-vhost']).toBe('v');
    expect(res.headers['x-resp-global']).toBe('g');
    const seen = a.requests[0]!.headers;
    expect(seen['x-drop']).toBeUndefined();
    expect(seen['x-keep']).toBe('hi');
    expect(seen['x-vhost']).toBe('v');
    // The route configuration applies last, so its OVERWRITE wins over the route's value.
    expect(seen['x-route']).toBe('global');
    expect(seen['x-client-ip']).toBe('127.0.0.1');
  });

  it('answers direct responses and redirects without an upstream', async () => {
    const proxy = await startProxy({
      routes: routeConfig([
        vhost([
          route(
            prefix('/direct'),
            { kind: 'direct_response', status: 418, body: Buffer.from('short and stout') },
            { responseHeadersToAdd: [hvo('x-direct', '1')] },
          ),
          route(prefix('/empty'), { kind: 'direct_response', status: 204 }),
          route(prefix('/moved'), {
            kind: 'redirect',
            httpsRedirect: true,
            hostRedirect: 'secure.example.com',
            stripQuery: true,
            responseCode: 308,
          }),
          route(prefix('/old'), {
            kind: 'redirect',
            httpsRedirect: false,
            prefixRewrite: '/new',
            stripQuery: false,
            responseCode: 302,
          }),
        ]),
      ]),
      clusters: [],
    });
    const d = await call(proxy.port, '/direct');
    expect(d.status).toBe(418);
    expect(d.text).toBe('short and stout');
    expect(d.headers['x-direct']).toBe('1');
    expect(d.headers['content-type']).toBe('text/plain');
    const e = await call(proxy.port, '/empty');
    expect(e.status).toBe(204);
    expect(e.text).toBe('');
    const m = await call(proxy.port, '/moved/x?q=1');
    expect(m.status).toBe(308);
    expect(m.headers.location).toBe('https://secure.example.com/moved/x');
    const o = await call(proxy.port, '/old/page?q=1', { headers: { host: 'site.test' } });
    expect(o.status).toBe(302);
    expect(o.headers.location).toBe('http://site.test/new/page?q=1');
    const infos = await proxy.waitCompleted(4);
    expect(infos.every((i) => i.hasResponseFlag('DR'))).toBe(true);
  });
});

describe('router: failures, timeouts and retries', () => {
  it('answers 503 UF with Envoy’s body when the upstream refuses connections', async () => {
    const port = await closedPort();
    const proxy = await startProxy({
      routes: routeConfig([vhost([route(prefix('/'), action('a'))])]),
      clusters: [staticCluster('a', [{ port }])],
    });
    const res = await call(proxy.port, '/');
    expect(res.status).toBe(503);
    // Envoy: "... reset reason: connection failure, transport failure reason: delayed connect error: 111".
    expect(res.text).toMatch(
      /^upstream connect error or disconnect\/reset before headers\. reset reason: connection failure, transport failure reason: ECONNREFUSED /,
    );
    const [info] = await proxy.waitCompleted(1);
    expect(info?.responseFlags()).toBe('UF');
  });

  it('answers 503 UH "no healthy upstream" for a cluster without hosts', async () => {
    const proxy = await startProxy({
      routes: routeConfig([vhost([route(prefix('/'), action('a'))])]),
      clusters: [staticCluster('a', [])],
    });
    const res = await call(proxy.port, '/');
    expect(res.status).toBe(503);
    expect(res.text).toBe('no healthy upstream');
    const [info] = await proxy.waitCompleted(1);
    expect(info?.responseFlags()).toBe('UH');
  });

  it('answers 504 UT "upstream request timeout" when the route timeout fires', async () => {
    const pending: (() => void)[] = [];
    const a = await startHttpEcho('a', (_q, res) => {
      pending.push(() => res.end());
      return true;
    });
    const proxy = await startProxy({
      routes: routeConfig([vhost([route(prefix('/'), action('a', { timeoutMs: 150 }))])]),
      clusters: [staticCluster('a', [{ port: a.port }])],
    });
    const res = await call(proxy.port, '/');
    expect(res.status).toBe(504);
    expect(res.text).toBe('upstream request timeout');
    const [info] = await proxy.waitCompleted(1);
    expect(info?.responseFlags()).toBe('UT');
    expect(proxy.clusters.get('a')?.stats.upstreamRqTimeout).toBe(1);
    for (const p of pending) p();
  });

  it('answers 408 when the route max_stream_duration elapses, and the route idle_timeout overrides the HCM one', async () => {
    const held: (() => void)[] = [];
    const a = await startHttpEcho('a', (_q, res) => {
      held.push(() => res.end());
      return true;
    });
    const proxy = await startProxy({
      routes: routeConfig([
        vhost([
          route(prefix('/max'), action('a', { maxStreamDurationMs: 150 })),
          route(prefix('/idle'), action('a', { idleTimeoutMs: 150 })),
        ]),
      ]),
      clusters: [staticCluster('a', [{ port: a.port }])],
      hcm: { streamIdleTimeoutMs: 0 },
    });
    const max = await call(proxy.port, '/max');
    expect(max.status).toBe(408);
    expect(max.text).toBe('downstream duration timeout');
    const idle = await call(proxy.port, '/idle');
    expect(idle.status).toBe(408);
    expect(idle.text).toBe('stream timeout');
    const infos = await proxy.waitCompleted(2);
    expect(infos.map((i) => i.responseCodeDetails)).toEqual(['max_duration_timeout', 'stream_idle_timeout']);
    for (const h of held) h();
  });

  it('resets the downstream when the upstream dies mid-body (UR) or stalls past the timeout (UT)', async () => {
    const a = await startHttpEcho('a', (req, res) => {
      res.writeHead(200, { 'content-length': '100' });
      res.write('partial');
      if (req.url === '/die') setTimeout(() => res.socket?.destroy(), 20);
      return true;
    });
    const proxy = await startProxy({
      routes: routeConfig([vhost([route(prefix('/'), action('a', { timeoutMs: 200 }))])]),
      clusters: [staticCluster('a', [{ port: a.port }])],
    });
    for (const path of ['/die', '/stall']) {
      const s = await connect(proxy.port);
      s.write(`GET ${path} HTTP/1.1\r\nHost: a\r\n\r\n`);
      const text = await readUntil(s, () => false, 5_000);
      s.destroy();
      expect(text.startsWith('HTTP/1.1 200'), path).toBe(true);
      expect(text.endsWith('partial'), path).toBe(true);
    }
    const infos = await proxy.waitCompleted(2);
    expect(infos.find((i) => i.path === '/die')?.responseFlags()).toBe('UR');
    expect(infos.find((i) => i.path === '/stall')?.responseFlags()).toBe('UT');
  });

  it('retries a 503 and returns the retried 200, replaying the request body', async () => {
    let n = 0;
    const a = await startHttpEcho('a', (_q, res) => {
      if (n++ === 0) {
        res.writeHead(503, { 'content-length': '4' });
        res.end('busy');
        return true;
      }
      return false;
    });
    const proxy = await startProxy({
      routes: routeConfig([
        vhost([
          route(
            prefix('/'),
            action('a', { retryPolicy: retryPolicy(['5xx'], { numRetries: 2, backOffBaseMs: 5, backOffMaxMs: 10 }) }),
          ),
        ], { includeRequestAttemptCount: true }),
      ]),
      clusters: [staticCluster('a', [{ port: a.port }])],
    });
    const res = await call(proxy.port, '/r', { method: 'POST', body: 'payload' });
    expect(res.status).toBe(200);
    expect(a.requests.map((r) => r.body)).toEqual(['payload', 'payload']);
    expect(a.requests.map((r) => r.headers['x-envoy-attempt-count'])).toEqual(['1', '2']);
    const [info] = await proxy.waitCompleted(1);
    expect(info?.attemptCount).toBe(2);
    expect(info?.responseFlags()).toBe('-');
    const stats = proxy.clusters.get('a')!.stats;
    expect(stats.upstreamRqRetry).toBe(1);
    expect(stats.upstreamRqRetrySuccess).toBe(1);
    // Per upstream request, as Envoy counts them: two tries, none left active.
    expect(stats.upstreamRqTotal).toBe(2);
    expect(stats.upstreamRqActive).toBe(0);
    expect(stats.upstreamRq5xx).toBe(0);
    expect(stats.upstreamRq2xx).toBe(1);
    expect(proxy.clusters.get('a')!.resources.retries.count).toBe(0);
  });

  it('retries a response that matches retriable_headers under retry_on retriable-headers', async () => {
    let n = 0;
    const a = await startHttpEcho('a', (_q, res) => {
      n++;
      res.writeHead(200, n === 1 ? { 'content-length': '4', 'x-upstream-retry': 'yes' } : { 'content-length': '4' });
      res.end(n === 1 ? 'busy' : 'done');
      return true;
    });
    const policy = retryPolicy(['retriable-headers'], {
      backOffBaseMs: 1,
      backOffMaxMs: 2,
      retriableHeaders: [
        { name: 'x-upstream-retry', match: { kind: 'present', present: true }, invert: false, treatMissingAsEmpty: false },
      ],
    });
    const proxy = await startProxy({
      routes: routeConfig([vhost([route(prefix('/'), action('a', { retryPolicy: policy }))])]),
      clusters: [staticCluster('a', [{ port: a.port }])],
    });
    const res = await call(proxy.port, '/');
    expect(res.status).toBe(200);
    expect(res.text).toBe('done');
    expect(a.requests).toHaveLength(2);
    expect(proxy.clusters.get('a')!.stats.upstreamRqRetry).toBe(1);
  });

  it('passes the last 503 through with flag URX when retries are exhausted', async () => {
    const a = await startHttpEcho('a', (_q, res) => {
      res.writeHead(503, { 'content-length': '4' });
      res.end('busy');
      return true;
    });
    const proxy = await startProxy({
      routes: routeConfig([
        vhost([
          route(
            prefix('/'),
            action('a', { retryPolicy: retryPolicy(['5xx'], { numRetries: 2, backOffBaseMs: 1, backOffMaxMs: 2 }) }),
          ),
        ]),
      ]),
      clusters: [staticCluster('a', [{ port: a.port }])],
    });
    const res = await call(proxy.port, '/');
    expect(res.status).toBe(503);
    expect(res.text).toBe('busy');
    expect(a.requests).toHaveLength(3);
    const [info] = await proxy.waitCompleted(1);
    expect(info?.responseFlags()).toBe('URX');
  });

  it('honours x-envoy-retry-on / x-envoy-max-retries from trusted clients and never forwards them', async () => {
    const a = await startHttpEcho('a', (_q, res) => {
      res.writeHead(503, { 'content-length': '0' });
      res.end();
      return true;
    });
    const proxy = await startProxy({
      routes: routeConfig([vhost([route(prefix('/'), action('a'))])]),
      clusters: [staticCluster('a', [{ port: a.port }])],
      hcm: { useRemoteAddress: true },
    });
    const res = await call(proxy.port, '/', { headers: { 'x-envoy-retry-on': '5xx', 'x-envoy-max-retries': '2' } });
    expect(res.status).toBe(503);
    expect(a.requests).toHaveLength(3);
    expect(a.requests[0]!.headers['x-envoy-retry-on']).toBeUndefined();
    expect(a.requests[0]!.headers['x-envoy-max-retries']).toBeUndefined();
    // From an untrusted (external) client the same headers are stripped and ignored.
    const ext = await call(proxy.port, '/', {
      headers: { 'x-forwarded-for': '203.0.113.1', 'x-envoy-retry-on': '5xx' },
    });
    expect(ext.status).toBe(503);
    expect(a.requests).toHaveLength(4);
  });

  it('does not retry statuses outside retry_on', async () => {
    const a = await startHttpEcho('a', (_q, res) => {
      res.writeHead(500, { 'content-length': '0' });
      res.end();
      return true;
    });
    const proxy = await startProxy({
      routes: routeConfig([
        vhost([route(prefix('/'), action('a', { retryPolicy: retryPolicy(['gateway-error'], { numRetries: 3 }) }))]),
      ]),
      clusters: [staticCluster('a', [{ port: a.port }])],
    });
    expect((await call(proxy.port, '/')).status).toBe(500);
    expect(a.requests).toHaveLength(1);
  });

  it('retries a connect failure on another host (previous_hosts)', async () => {
    const dead = await closedPort();
    const good = await startHttpEcho('good');
    const proxy = await startProxy({
      routes: routeConfig([
        vhost([
          route(
            prefix('/'),
            action('a', {
              retryPolicy: retryPolicy(['connect-failure'], {
                numRetries: 1,
                avoidPreviousHosts: true,
                backOffBaseMs: 1,
                backOffMaxMs: 2,
              }),
            }),
          ),
        ]),
      ]),
      clusters: [staticCluster('a', [{ port: dead }, { port: good.port }])],
    });
    for (let i = 0; i < 4; i++) {
      const res = await call(proxy.port, `/${i}`);
      expect(res.status).toBe(200);
      expect(res.headers['x-upstream']).toBe('good');
    }
    const infos = await proxy.waitCompleted(4);
    // Round robin starts half of the requests on the dead host; each of those needed a retry.
    expect(infos.filter((i) => i.attemptCount === 2).length).toBeGreaterThanOrEqual(1);
    expect(infos.every((i) => i.upstreamHost === `127.0.0.1:${good.port}`)).toBe(true);
  });

  it('retries after a per-try timeout', async () => {
    let n = 0;
    const held: (() => void)[] = [];
    const a = await startHttpEcho('a', (_q, res) => {
      if (n++ === 0) {
        held.push(() => res.end());
        return true;
      }
      return false;
    });
    const proxy = await startProxy({
      routes: routeConfig([
        vhost([
          route(
            prefix('/'),
            action('a', {
              retryPolicy: retryPolicy(['5xx'], {
                numRetries: 1,
                perTryTimeoutMs: 150,
                backOffBaseMs: 1,
                backOffMaxMs: 2,
              }),
            }),
          ),
        ]),
      ]),
      clusters: [staticCluster('a', [{ port: a.port }])],
    });
    const res = await call(proxy.port, '/');
    expect(res.status).toBe(200);
    expect(a.requests).toHaveLength(2);
    for (const h of held) h();
  });

  it('answers 503 UO with x-envoy-overloaded when max_requests is reached', async () => {
    const held: (() => void)[] = [];
    const a = await startHttpEcho('a', (_q, res) => {
      held.push(() => res.end('late'));
      return true;
    });
    const proxy = await startProxy({
      routes: routeConfig([vhost([route(prefix('/'), action('a'))])]),
      clusters: [
        staticCluster('a', [{ port: a.port }], {
          circuitBreakers: [
            { priority: 'DEFAULT', maxConnections: 1024, maxPendingRequests: 1024, maxRequests: 1, maxRetries: 3 },
          ],
        }),
      ],
    });
    const first = call(proxy.port, '/first');
    for (let i = 0; i < 100 && a.requests.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
    const second = await call(proxy.port, '/second');
    expect(second.status).toBe(503);
    expect(second.headers['x-envoy-overloaded']).toBe('true');
    expect(second.text).toBe('upstream connect error or disconnect/reset before headers. reset reason: overflow');
    for (const h of held) h();
    expect((await first).status).toBe(200);
    const infos = await proxy.waitCompleted(2);
    expect(infos.find((i) => i.path === '/second')?.responseFlags()).toBe('UO');
    expect(proxy.clusters.get('a')!.resources.requests.count).toBe(0);
  });
});

describe('router: pending-request circuit breaker', () => {
  it('answers 503 UO with x-envoy-overloaded when the pool cannot queue (max_pending_requests)', async () => {
    const a = await startHttpEcho('a');
    const proxy = await startProxy({
      routes: routeConfig([vhost([route(prefix('/'), action('a'))])]),
      clusters: [
        staticCluster('a', [{ port: a.port }], {
          circuitBreakers: [
            { priority: 'DEFAULT', maxConnections: 1024, maxPendingRequests: 0, maxRequests: 1024, maxRetries: 3 },
          ],
        }),
      ],
    });
    const res = await call(proxy.port, '/');
    expect(res.status).toBe(503);
    expect(res.headers['x-envoy-overloaded']).toBe('true');
    expect(a.requests).toHaveLength(0);
    const [info] = await proxy.waitCompleted(1);
    expect(info?.responseFlags()).toBe('UO');
    expect(proxy.clusters.get('a')!.stats.upstreamRqPendingOverflow).toBe(1);
  });
});

describe('router: ORIGINAL_DST and passive health feedback', () => {
  it('sends ORIGINAL_DST traffic to the address in the configured header', async () => {
    const a = await startHttpEcho('a');
    const proxy = await startProxy({
      routes: routeConfig([vhost([route(prefix('/'), action('passthrough'))])]),
      clusters: [
        clusterConfig({
          name: 'passthrough',
          type: 'ORIGINAL_DST',
          lbPolicy: 'CLUSTER_PROVIDED',
          originalDstHeader: 'x-envoy-original-dst-host',
        }),
      ],
    });
    const res = await call(proxy.port, '/', { headers: { 'x-envoy-original-dst-host': `127.0.0.1:${a.port}` } });
    expect(res.status).toBe(200);
    expect(res.headers['x-upstream']).toBe('a');
    const none = await call(proxy.port, '/');
    expect(none.status).toBe(503);
    expect(none.text).toBe('no healthy upstream');
  });

  it('reports every attempt to the cluster for outlier detection (status, 503 for connect failures)', async () => {
    const dead = await closedPort();
    let n = 0;
    const a = await startHttpEcho('a', (_q, res) => {
      if (n++ === 0) {
        res.writeHead(502, { 'content-length': '0' });
        res.end();
        return true;
      }
      return false;
    });
    const reports: [string, number][] = [];
    const proxy = await startProxy({
      routes: routeConfig([
        vhost([
          route(
            prefix('/'),
            action('a', { retryPolicy: retryPolicy(['5xx'], { numRetries: 3, backOffBaseMs: 1, backOffMaxMs: 2 }) }),
          ),
        ]),
      ]),
      clusters: [staticCluster('a', [{ port: a.port }, { port: dead }], { lbPolicy: 'ROUND_ROBIN' })],
      lookup: (cm) => ({
        get: (name) => {
          const c = cm.get(name);
          if (!c) return undefined;
          return new Proxy(c, {
            get(t, p) {
              if (p === 'reportResult') return (h: { key: string }, status: number) => reports.push([h.key, status]);
              const v = Reflect.get(t, p, t);
              return typeof v === 'function' ? v.bind(t) : v;
            },
          });
        },
      }),
    });
    const res = await call(proxy.port, '/');
    expect(res.status).toBe(200);
    const byHost = new Map<string, number[]>();
    for (const [k, st] of reports) byHost.set(k, [...(byHost.get(k) ?? []), st]);
    expect(byHost.get(`127.0.0.1:${a.port}`)).toContain(502);
    expect(byHost.get(`127.0.0.1:${a.port}`)).toContain(200);
    expect(byHost.get(`127.0.0.1:${dead}`)?.every((st) => st === 503)).toBe(true);
  });
});

describe('router: upgrades', () => {
  async function wsUpstream(): Promise<number> {
    const server = net.createServer({ allowHalfOpen: true }, (s) => {
      s.on('error', () => {});
      let buf = '';
      const onHead = (d: Buffer) => {
        buf += d.toString('latin1');
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        s.off('data', onHead);
        s.write(
          'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: test\r\n\r\n',
        );
        const rest = buf.slice(end + 4);
        if (rest) s.write(`echo:${rest}`);
        s.on('data', (x: Buffer) => s.write(`echo:${x.toString('latin1')}`));
        // After the client's FIN, still send something back: half-close must carry it.
        s.on('end', () => setTimeout(() => s.end('bye'), 20));
      };
      s.on('data', onHead);
    });
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    return (server.address() as net.AddressInfo).port;
  }

  const UPGRADE_REQ =
    'GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n';

  it('tunnels a WebSocket upgrade both ways, including half-close', async () => {
    const port = await wsUpstream();
    const proxy = await startProxy({
      routes: routeConfig([vhost([route(prefix('/'), action('a'))])]),
      clusters: [staticCluster('a', [{ port }])],
      hcm: { upgradeTypes: ['websocket'] },
    });
    const s = await connect(proxy.port);
    s.write(UPGRADE_REQ);
    const head = await readUntil(s, (t) => t.includes('\r\n\r\n'));
    expect(head.startsWith('HTTP/1.1 101')).toBe(true);
    expect(head.toLowerCase()).toContain('upgrade: websocket');
    s.write('hello');
    const echoed = await readUntil(s, (t) => t.includes('echo:hello'));
    expect(echoed).toContain('echo:hello');
    let after = '';
    s.on('data', (d: Buffer) => {
      after += d.toString('latin1');
    });
    const ended = new Promise<boolean>((resolve) => {
      const t = setTimeout(() => resolve(false), 5_000);
      s.once('end', () => {
        clearTimeout(t);
        resolve(true);
      });
    });
    s.end();
    expect(await ended).toBe(true);
    expect(after).toBe('bye');
    s.destroy();
    const [info] = await proxy.waitCompleted(1);
    expect(info?.responseCode).toBe(101);
    expect(info?.bytesReceived).toBeGreaterThanOrEqual(5);
  });

  it('tunnels CONNECT when the route enables it', async () => {
    const server = net.createServer({ allowHalfOpen: true }, (s) => {
      s.on('error', () => {});
      let buf = '';
      const onHead = (d: Buffer) => {
        buf += d.toString('latin1');
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        s.off('data', onHead);
        const line = buf.slice(0, buf.indexOf('\r\n'));
        s.write('HTTP/1.1 200 OK\r\n\r\n');
        s.write(`line:${line};`);
        s.on('data', (x: Buffer) => s.write(`echo:${x.toString('latin1')}`));
        s.on('end', () => s.end());
      };
      s.on('data', onHead);
    });
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as net.AddressInfo).port;
    const proxy = await startProxy({
      routes: routeConfig([
        vhost([
          route(
            { path: { kind: 'connect_matcher' }, caseSensitive: true, headers: [], queryParameters: [], grpc: false },
            action('a', { upgradeTypes: ['CONNECT'] }),
          ),
        ]),
      ]),
      clusters: [staticCluster('a', [{ port }])],
    });
    const s = await connect(proxy.port);
    s.write('CONNECT target.example:443 HTTP/1.1\r\nHost: target.example:443\r\n\r\n');
    const head = await readUntil(s, (t) => t.includes('\r\n\r\n'));
    expect(head.startsWith('HTTP/1.1 200')).toBe(true);
    s.write('tunnelled');
    const data = await readUntil(s, (t) => t.includes('echo:tunnelled'));
    // The upstream's first tunnel bytes may arrive together with the 200.
    expect(head + data).toContain('line:CONNECT target.example:443 HTTP/1.1;');
    expect(data).toContain('echo:tunnelled');
    s.destroy();
  });

  it('refuses an upgrade that is not enabled with 403', async () => {
    const port = await wsUpstream();
    const proxy = await startProxy({
      routes: routeConfig([vhost([route(prefix('/'), action('a'))])]),
      clusters: [staticCluster('a', [{ port }])],
    });
    const s = await connect(proxy.port);
    s.write(UPGRADE_REQ);
    const head = await readUntil(s, (t) => t.includes('\r\n\r\n'));
    s.destroy();
    expect(head.startsWith('HTTP/1.1 403')).toBe(true);
  });
});
