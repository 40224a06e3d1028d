/**
 * CONNECT terminated by the proxy (route upgrade_configs CONNECT with connect_config): the tunnel
 * is an upstream request like any other — the host comes from the same choice, it holds one unit
 * of the cluster's `requests` circuit breaker and of upstream_rq_active / the host's active
 * requests while open, and a full breaker answers 503 UO (x-envoy-overloaded) instead of
 * connecting. Real sockets: a TCP echo upstream and a raw client.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { closeAll, startTcpEcho } from '../support/upstreams';
import { action, connect, readUntil, route, routeConfig, startProxy, staticCluster, stopAll, vhost } from './hcm-support';

afterEach(async () => {
  await stopAll();
  await closeAll();
});

const CONNECT_ROUTE = route(
  { path: { kind: 'connect_matcher' }, caseSensitive: true, headers: [], queryParameters: [], grpc: false },
  action('a', { upgradeTypes: ['CONNECT'], terminateConnect: true }),
);

/** Poll `cond` every 10 ms for at most `ms`. */
async function eventually(cond: () => boolean, ms = 5_000): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (!cond() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  return cond();
}

describe('CONNECT termination', () => {
  it('counts the tunnel as an active request, and a full requests breaker answers 503 UO', async () => {
    const echo = await startTcpEcho();
    const proxy = await startProxy({
      routes: routeConfig([vhost([CONNECT_ROUTE])]),
      clusters: [
        staticCluster('a', [{ port: echo.port }], {
          circuitBreakers: [
            { priority: 'DEFAULT', maxConnections: 1024, maxPendingRequests: 1024, maxRequests: 1, maxRetries: 3 },
          ],
        }),
      ],
    });
    const cluster = proxy.clusters.get('a')!;
    const s = await connect(proxy.port);
    s.write('CONNECT target.example:443 HTTP/1.1\r\nHost: target.example:443\r\n\r\n');
    const head = await readUntil(s, (t) => t.includes('\r\n\r\n'));
    expect(head.startsWith('HTTP/1.1 200')).toBe(true);
    s.write('ping');
    expect(await readUntil(s, (t) => t.includes('ping'))).toContain('ping');
    // While the tunnel is open it holds the request.
    expect(cluster.stats.upstreamRqTotal).toBe(1);
    expect(cluster.stats.upstreamRqActive).toBe(1);
    expect(cluster.resources.requests.count).toBe(1);

    // max_requests 1: a second CONNECT is refused before any connection is made.
    const second = await connect(proxy.port);
    second.write('CONNECT other.example:443 HTTP/1.1\r\nHost: other.example:443\r\n\r\n');
    const refused = await readUntil(second, (t) => t.includes('\r\n\r\n'));
    second.destroy();
    expect(refused.startsWith('HTTP/1.1 503')).toBe(true);
    expect(refused.toLowerCase()).toContain('x-envoy-overloaded: true');
    expect(cluster.stats.upstreamRqPendingOverflow).toBe(1);
    expect(echo.connections).toBe(1);
    const infos = await proxy.waitCompleted(1);
    expect(infos[0]?.responseFlags()).toBe('UO');

    // Closing the tunnel releases it.
    s.end();
    s.destroy();
    expect(await eventually(() => cluster.stats.upstreamRqActive === 0 && cluster.resources.requests.count === 0)).toBe(
      true,
    );
  });

  it('answers 503 UF when the upstream refuses the connection, holding nothing afterwards', async () => {
    const echo = await startTcpEcho();
    const port = echo.port;
    await new Promise((r) => echo.server.close(r));
    const proxy = await startProxy({
      routes: routeConfig([vhost([CONNECT_ROUTE])]),
      clusters: [staticCluster('a', [{ port }])],
    });
    const s = await connect(proxy.port);
    s.write('CONNECT target.example:443 HTTP/1.1\r\nHost: target.example:443\r\n\r\n');
    const head = await readUntil(s, (t) => t.includes('\r\n\r\n'));
    s.destroy();
    expect(head.startsWith('HTTP/1.1 503')).toBe(true);
    const [info] = await proxy.waitCompleted(1);
    expect(info?.responseFlags()).toBe('UF');
    const cluster = proxy.clusters.get('a')!;
    expect(cluster.stats.upstreamRqActive).toBe(0);
    expect(cluster.resources.requests.count).toBe(0);
  });
});
