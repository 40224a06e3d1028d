/**
 * The 15001 virtualOutbound hand-over without root: an in-process meshlet whose original
 * destination resolver is injected (what SO_ORIGINAL_DST would say for each accepted connection).
 * A destination with a listener — here virtual, bind_to_port: false — gets that listener's chain
 * (HTTP route or TCP proxy); anything else takes the 15001 listener's own chains: Istio's
 * PassthroughCluster (ALLOW_ANY, an ORIGINAL_DST cluster to the original destination) or
 * BlackHoleCluster (REGISTRY_ONLY), both as Envoy config. A connection that was not redirected
 * (its original destination is 15001 itself) is not handed over to itself.
 */
import http from 'node:http';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { OriginalDstResolver } from '../../proxy/listeners/listener';
import { bootstrap, HCM_TYPE, ROUTER_TYPE, socketAddress, startMeshlet, staticCluster, stopAllMeshlets, TCP_PROXY_TYPE, type StartedMeshlet } from '../support/meshlet';
import { closeAll, type HttpEcho, startHttpEcho, startTcpEcho, type TcpEcho } from '../support/upstreams';

/** What the "kernel" says about the next accepted connections, in order. */
const nextOriginalDst: ({ address: string; port: number } | undefined)[] = [];
const resolver: OriginalDstResolver = () => nextOriginalDst.shift();

const SERVICE_IP = '10.96.0.10';
let svcHttp: HttpEcho;
let svcTcp: TcpEcho;
let external: HttpEcho;

const tcpFilter = (cluster: string) => ({
  name: 'envoy.filters.network.tcp_proxy',
  typed_config: { '@type': TCP_PROXY_TYPE, stat_prefix: cluster, cluster },
});

async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const p = (srv.address() as net.AddressInfo).port;
  await new Promise((r) => srv.close(r));
  return p;
}

/**
 * Istio's shape: a blackhole chain for connections whose destination is 15001 itself (they would
 * loop), then the catch-all chain to PassthroughCluster (ALLOW_ANY) or BlackHoleCluster (REGISTRY_ONLY).
 */
function virtualOutbound(policy: 'ALLOW_ANY' | 'REGISTRY_ONLY', port: number): Record<string, unknown> {
  const cluster = policy === 'ALLOW_ANY' ? 'PassthroughCluster' : 'BlackHoleCluster';
  return {
    name: 'virtualOutbound',
    address: socketAddress(port),
    use_original_dst: true,
    filter_chains: [
      { name: 'virtualOutbound-blackhole', filter_chain_match: { destination_port: port }, filters: [tcpFilter('BlackHoleCluster')] },
      { name: 'virtualOutbound-catchall-tcp', filters: [tcpFilter(cluster)] },
    ],
  };
}

function virtualListeners(): Record<string, unknown>[] {
  return [
    {
      name: '0.0.0.0_80',
      address: socketAddress(80, '0.0.0.0'),
      bind_to_port: false,
      filter_chains: [
        {
          filters: [
            {
              name: 'envoy.filters.network.http_connection_manager',
              typed_config: {
                '@type': HCM_TYPE,
                stat_prefix: 'outbound_0.0.0.0_80',
                route_config: { name: '80', virtual_hosts: [{ name: 'svc', domains: ['*'], routes: [{ match: { prefix: '/' }, route: { cluster: 'outbound|80||svc' } }] }] },
                http_filters: [{ name: 'envoy.filters.http.router', typed_config: { '@type': ROUTER_TYPE } }],
              },
            },
          ],
        },
      ],
    },
    { name: `${SERVICE_IP}_5432`, address: socketAddress(5432, SERVICE_IP), bind_to_port: false, filter_chains: [{ filters: [tcpFilter('outbound|5432||db')] }] },
  ];
}

async function start(policy: 'ALLOW_ANY' | 'REGISTRY_ONLY'): Promise<StartedMeshlet> {
  return startMeshlet(
    bootstrap(
      [virtualOutbound(policy, await freePort()), ...virtualListeners()],
      [
        staticCluster('outbound|80||svc', [svcHttp.port]),
        staticCluster('outbound|5432||db', [svcTcp.port]),
        { name: 'PassthroughCluster', type: 'ORIGINAL_DST', lb_policy: 'CLUSTER_PROVIDED', connect_timeout: '1s' },
        { name: 'BlackHoleCluster', type: 'STATIC', connect_timeout: '1s' },
      ],
    ),
    { originalDst: resolver },
  );
}

function get(port: number, path: string): Promise<{ status: number; upstream: string | undefined } | 'closed'> {
  return new Promise((resolve) => {
    http
      .get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode ?? 0, upstream: res.headers['x-upstream'] as string | undefined }));
      })
      .on('error', () => resolve('closed'));
  });
}

function tcpRoundTrip(port: number, payload: string): Promise<string> {
  return new Promise((resolve) => {
    const c = net.connect(port, '127.0.0.1', () => c.write(payload));
    let b = '';
    c.on('data', (d) => {
      b += d;
      if (b.length >= payload.length) c.end();
    });
    c.on('close', () => resolve(b));
    c.on('error', () => {});
  });
}

let allowAny: StartedMeshlet;
let registryOnly: StartedMeshlet;

beforeAll(async () => {
  svcHttp = await startHttpEcho('svc');
  external = await startHttpEcho('external');
  svcTcp = await startTcpEcho();
  allowAny = await start('ALLOW_ANY');
  registryOnly = await start('REGISTRY_ONLY');
});

afterAll(async () => {
  await stopAllMeshlets();
  await closeAll();
});

describe('virtualOutbound (use_original_dst) hand-over', () => {
  it('an HTTP destination port goes to the virtual 0.0.0.0_80 listener and its route', async () => {
    const port = allowAny.listenerPort('virtualOutbound');
    nextOriginalDst.push({ address: '10.96.0.99', port: 80 });
    expect(await get(port, '/x')).toEqual({ status: 200, upstream: 'svc' });
    expect(allowAny.server.listeners.get('0.0.0.0_80')!.stats.downstreamCxTotal).toBe(1);
  });

  it('an exact IP:port virtual listener wins for TCP', async () => {
    const port = allowAny.listenerPort('virtualOutbound');
    nextOriginalDst.push({ address: SERVICE_IP, port: 5432 });
    expect(await tcpRoundTrip(port, 'select 1')).toBe('select 1');
    expect(allowAny.server.listeners.get(`${SERVICE_IP}_5432`)!.stats.downstreamCxTotal).toBe(1);
  });

  it('ALLOW_ANY: an unknown destination goes through PassthroughCluster to the original destination', async () => {
    const port = allowAny.listenerPort('virtualOutbound');
    nextOriginalDst.push({ address: '127.0.0.1', port: external.port });
    expect(await get(port, '/out')).toEqual({ status: 200, upstream: 'external' });
    expect(external.requests.at(-1)!.url).toBe('/out');
  });

  it('REGISTRY_ONLY: the same unknown destination is refused (BlackHoleCluster); known ones still work', async () => {
    const port = registryOnly.listenerPort('virtualOutbound');
    const before = external.requests.length;
    nextOriginalDst.push({ address: '127.0.0.1', port: external.port });
    expect(await get(port, '/out')).toBe('closed');
    expect(external.requests.length).toBe(before);
    nextOriginalDst.push({ address: '10.96.0.99', port: 80 });
    expect(await get(port, '/ok')).toEqual({ status: 200, upstream: 'svc' });
  });

  it('a connection whose original destination is 15001 itself is blackholed, never looped or handed over', async () => {
    const port = allowAny.listenerPort('virtualOutbound');
    const passthrough = allowAny.server.clusters.get('PassthroughCluster')!;
    const before = passthrough.stats.upstreamCxTotal;
    const handedBefore = allowAny.server.listeners.get('0.0.0.0_80')!.stats.downstreamCxTotal;
    nextOriginalDst.push({ address: '127.0.0.1', port });
    expect(await get(port, '/self')).toBe('closed');
    expect(passthrough.stats.upstreamCxTotal).toBe(before);
    expect(allowAny.server.listeners.get('0.0.0.0_80')!.stats.downstreamCxTotal).toBe(handedBefore);
  });
});
