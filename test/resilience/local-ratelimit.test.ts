/**
 * Local rate limiting through a real meshlet: the token bucket answers 429 with
 * x-envoy-ratelimited and the DRAFT_VERSION_03 x-ratelimit-* headers once empty, per-route
 * buckets replace the listener's, an unenforced limit only tags the request, Envoy's 0 % default
 * for filter_enabled; the bucket's refill arithmetic; config validation errors. Also the
 * per-listener connection limit (envoy.filters.network.connection_limit).
 */
import http from 'node:http';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Issues, Reader } from '../../common/reader';
import { decodeLocalRateLimit, localRateLimitStats, TokenBucket } from '../../proxy/http/filters/local-ratelimit';
import type { StreamInfo } from '../../proxy/http/stream-info';
import {
  bootstrap,
  type StartedMeshlet,
  socketAddress,
  startMeshlet,
  staticCluster,
  stopAllMeshlets,
  TCP_PROXY_TYPE,
  filterListener,
} from '../support/meshlet';
import { closeAll, type HttpEcho, startHttpEcho, startTcpEcho, type TcpEcho } from '../support/upstreams';

const LRL = 'type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit';
const LIMIT_TYPE = 'type.googleapis.com/envoy.extensions.filters.network.connection_limit.v3.ConnectionLimit';
const ALL = { default_value: { numerator: 100, denominator: 'HUNDRED' } };

function listener(
  name: string,
  filterCfg: Record<string, unknown>,
  routeList: Record<string, unknown>[],
): Record<string, unknown> {
  return filterListener(name, { name: 'envoy.filters.http.local_ratelimit', type: LRL, config: filterCfg }, routeList);
}

interface Res {
  status: number;
  body: string;
  headers: http.IncomingHttpHeaders;
}

function get(port: number, path: string): Promise<Res> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => {
        body += c;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
    });
    req.on('error', reject);
    req.end();
  });
}

let m: StartedMeshlet;
let echo: HttpEcho;
let tcp: TcpEcho;
const streams: StreamInfo[] = [];

beforeAll(async () => {
  echo = await startHttpEcho('echo');
  tcp = await startTcpEcho();
  const route = [{ match: { prefix: '/' }, route: { cluster: 'echo' } }];
  m = await startMeshlet(
    bootstrap(
      [
        listener(
          'global',
          {
            stat_prefix: 'global_rl',
            token_bucket: { max_tokens: 3, tokens_per_fill: 3, fill_interval: '60s' },
            filter_enabled: ALL,
            filter_enforced: ALL,
            enable_x_ratelimit_headers: 'DRAFT_VERSION_03',
            response_headers_to_add: [
              { append_action: 'OVERWRITE_IF_EXISTS_OR_ADD', header: { key: 'x-local-rate-limit', value: 'true' } },
            ],
          },
          route,
        ),
        listener(
          'per-route',
          // The listener-level config leaves filter_enabled unset: 0 %, the filter is off by default.
          { stat_prefix: 'off_rl', token_bucket: { max_tokens: 1, fill_interval: '60s' } },
          [
            {
              match: { prefix: '/limited' },
              route: { cluster: 'echo' },
              typed_per_filter_config: {
                'envoy.filters.http.local_ratelimit': {
                  '@type': LRL,
                  stat_prefix: 'route_rl',
                  token_bucket: { max_tokens: 1, tokens_per_fill: 1, fill_interval: '60s' },
                  filter_enabled: ALL,
                  filter_enforced: ALL,
                  status: { code: 503 },
                },
              },
            },
            ...route,
          ],
        ),
        listener(
          'shadow',
          {
            stat_prefix: 'shadow_rl',
            token_bucket: { max_tokens: 1, fill_interval: '60s' },
            filter_enabled: ALL,
            request_headers_to_add_when_not_enforced: [{ header: { key: 'x-would-be-limited', value: 'yes' } }],
          },
          route,
        ),
        listener(
          'per-conn',
          {
            stat_prefix: 'conn_rl',
            token_bucket: { max_tokens: 1, fill_interval: '60s' },
            filter_enabled: ALL,
            filter_enforced: ALL,
            local_rate_limit_per_downstream_connection: true,
          },
          route,
        ),
        {
          name: 'limited-tcp',
          address: socketAddress(0),
          filter_chains: [
            {
              filters: [
                { name: 'limit', typed_config: { '@type': LIMIT_TYPE, stat_prefix: 'limit', max_connections: 2 } },
                { name: 'tcp', typed_config: { '@type': TCP_PROXY_TYPE, stat_prefix: 'tcp', cluster: 'tcp-echo' } },
              ],
            },
          ],
        },
      ],
      [staticCluster('echo', [echo.port]), staticCluster('tcp-echo', [tcp.port])],
    ),
    { onHttpStream: (i) => streams.push(i) },
  );
});

afterAll(async () => {
  await stopAllMeshlets();
  await closeAll();
});

describe('local rate limit filter', () => {
  it('answers 429 with x-envoy-ratelimited and x-ratelimit-* headers once the bucket is empty', async () => {
    const port = m.listenerPort('global');
    const served = echo.requests.length;
    const results: Res[] = [];
    for (let i = 0; i < 5; i++) results.push(await get(port, `/r${i}`));
    expect(results.map((r) => r.status)).toEqual([200, 200, 200, 429, 429]);
    expect(echo.requests.length - served).toBe(3);
    const ok = results[0]!;
    expect(ok.headers['x-ratelimit-limit']).toBe('3');
    expect(ok.headers['x-ratelimit-remaining']).toBe('2');
    const limited = results[3]!;
    expect(limited.body).toBe('local_rate_limited');
    expect(limited.headers['x-envoy-ratelimited']).toBe('true');
    expect(limited.headers['x-local-rate-limit']).toBe('true');
    expect(limited.headers['x-ratelimit-limit']).toBe('3');
    expect(limited.headers['x-ratelimit-remaining']).toBe('0');
    const reset = Number(limited.headers['x-ratelimit-reset']);
    expect(reset).toBeGreaterThan(0);
    expect(reset).toBeLessThanOrEqual(60);
    const info = streams.find((s) => s.path === '/r3');
    expect(info?.hasResponseFlag('RL')).toBe(true);
    expect(info?.responseCodeDetails).toBe('local_rate_limited');
    const st = localRateLimitStats('global_rl');
    expect(st).toMatchObject({ enabled: 5, ok: 3, rateLimited: 2, enforced: 2 });
  });

  it('a per-route config has its own bucket and status; the listener default of 0 % leaves other routes alone', async () => {
    const port = m.listenerPort('per-route');
    expect((await get(port, '/limited')).status).toBe(200);
    const second = await get(port, '/limited');
    expect(second.status).toBe(503);
    expect(second.headers['x-envoy-ratelimited']).toBe('true');
    // The listener-level bucket (max 1) is never consulted: filter_enabled defaults to 0 %.
    for (let i = 0; i < 3; i++) expect((await get(port, '/other')).status).toBe(200);
    expect(localRateLimitStats('off_rl').enabled).toBe(0);
    expect(localRateLimitStats('route_rl')).toMatchObject({ enabled: 2, rateLimited: 1, enforced: 1 });
  });

  it('an unenforced limit forwards the request with request_headers_to_add_when_not_enforced', async () => {
    const port = m.listenerPort('shadow');
    const a = await get(port, '/a');
    const b = await get(port, '/b');
    expect([a.status, b.status]).toEqual([200, 200]);
    const seenA = echo.requests.find((r) => r.url === '/a');
    const seenB = echo.requests.find((r) => r.url === '/b');
    expect(seenA?.headers['x-would-be-limited']).toBeUndefined();
    expect(seenB?.headers['x-would-be-limited']).toBe('yes');
    expect(localRateLimitStats('shadow_rl')).toMatchObject({ rateLimited: 1, enforced: 0 });
  });

  it('local_rate_limit_per_downstream_connection gives each connection its own bucket', async () => {
    const port = m.listenerPort('per-conn');
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const onConn = (path: string): Promise<number> =>
      new Promise((resolve, reject) => {
        const req = http.request({ host: '127.0.0.1', port, path, agent }, (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        });
        req.on('error', reject);
        req.end();
      });
    expect(await onConn('/c1')).toBe(200);
    expect(await onConn('/c2')).toBe(429);
    agent.destroy();
    // A fresh connection starts with a full bucket.
    expect((await get(port, '/c3')).status).toBe(200);
    expect((await get(port, '/c4')).status).toBe(200);
  });

  it('the token bucket refills tokens_per_fill per whole fill_interval, capped at max_tokens', () => {
    const b = new TokenBucket({ maxTokens: 2, tokensPerFill: 1, fillIntervalMs: 1000 }, 0);
    expect(b.consume(0)).toBe(true);
    expect(b.consume(10)).toBe(true);
    expect(b.consume(20)).toBe(false);
    expect(b.secondsToNextFill(20)).toBe(1);
    expect(b.consume(999)).toBe(false);
    expect(b.consume(1000)).toBe(true);
    expect(b.consume(1001)).toBe(false);
    expect(b.consume(60_000)).toBe(true);
    expect(b.tokens).toBe(1); // capped at 2, one taken
  });
});

describe('local rate limit config validation', () => {
  it('reports missing and out-of-range fields with their paths', () => {
    const issues = new Issues();
    decodeLocalRateLimit(
      new Reader(
        {
          token_bucket: { max_tokens: 0, fill_interval: '0.01s' },
          filter_enabled: { runtime_key: 'k' },
          enable_x_ratelimit_headers: 'DRAFT_VERSION_99',
          descriptors: [{ entries: [] }],
        },
        'lrl',
        issues,
      ),
    );
    expect(issues.errors.map((e) => e.path)).toEqual(
      expect.arrayContaining([
        'lrl.stat_prefix',
        'lrl.token_bucket.max_tokens',
        'lrl.token_bucket.fill_interval',
        'lrl.filter_enabled.default_value',
        'lrl.enable_x_ratelimit_headers',
        'lrl.descriptors',
      ]),
    );
  });

  it('decodes Envoy defaults: status 429, tokens_per_fill 1, 0 % enabled and enforced', () => {
    const issues = new Issues();
    const cfg = decodeLocalRateLimit(
      new Reader({ stat_prefix: 's', token_bucket: { max_tokens: 5, fill_interval: '1s' } }, '', issues),
    );
    expect(issues.errors).toEqual([]);
    expect(cfg).toMatchObject({
      status: 429,
      tokenBucket: { maxTokens: 5, tokensPerFill: 1, fillIntervalMs: 1000 },
      enabledPercent: 0,
      enforcedPercent: 0,
    });
  });
});

describe('connection_limit network filter', () => {
  it('closes connections beyond max_connections and admits new ones once others close', async () => {
    const port = m.listenerPort('limited-tcp');
    const open = (): Promise<{ sock: net.Socket; echoed: Promise<boolean> }> =>
      new Promise((resolve) => {
        const sock = net.connect(port, '127.0.0.1');
        sock.on('error', () => {});
        sock.on('connect', () => {
          const echoed = new Promise<boolean>((r) => {
            const t = setTimeout(() => r(false), 1_500);
            sock.once('data', () => {
              clearTimeout(t);
              r(true);
            });
            sock.once('close', () => {
              clearTimeout(t);
              r(false);
            });
          });
          sock.write('x');
          resolve({ sock, echoed });
        });
      });
    const a = await open();
    const b = await open();
    expect(await a.echoed).toBe(true);
    expect(await b.echoed).toBe(true);
    const c = await open();
    expect(await c.echoed).toBe(false);
    c.sock.destroy();
    a.sock.destroy();
    await new Promise((r) => setTimeout(r, 100));
    const d = await open();
    expect(await d.echoed).toBe(true);
    b.sock.destroy();
    d.sock.destroy();
  });
});
