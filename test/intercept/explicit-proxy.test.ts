/**
 * Explicit-proxy mode on the outbound listener (no interception, no NET_ADMIN): an application
 * that uses meshlet as its HTTP proxy. Absolute-form requests are routed by the host in the URI
 * (a mesh service by its route, anything else through the ORIGINAL_DST passthrough cluster to
 * the URI's host), and CONNECT is terminated by meshlet (route upgrade_configs CONNECT with
 * connect_config) and tunnelled as raw TCP. Real clients: node:http, undici ProxyAgent /
 * EnvHttpProxyAgent, and curl when installed.
 */
import { spawn, spawnSync } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import { EnvHttpProxyAgent, ProxyAgent, request as undiciRequest } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bootstrap, HCM_TYPE, ROUTER_TYPE, socketAddress, startMeshlet, staticCluster, stopAllMeshlets, TCP_PROXY_TYPE } from '../support/meshlet';
import { closeAll, closedPort, type HttpEcho, startHttpEcho, startTcpEcho, type TcpEcho } from '../support/upstreams';

let mesh: HttpEcho;
let other: HttpEcho;
let tcp: TcpEcho;
let proxyPort = 0;
const agents: { close(): Promise<void> }[] = [];

/** The 15001 shape for explicit mode: HTTP chain (detected) for proxy requests, TCP passthrough otherwise. */
function outboundListener(meshPort: number): Record<string, unknown> {
  return {
    name: 'virtualOutbound',
    address: socketAddress(0),
    use_original_dst: true,
    listener_filters: [
      {
        name: 'envoy.filters.listener.http_inspector',
        typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.listener.http_inspector.v3.HttpInspector' },
      },
    ],
    listener_filters_timeout: '1s',
    continue_on_listener_filters_timeout: true,
    filter_chains: [
      {
        name: 'explicit-http-proxy',
        filter_chain_match: { application_protocols: ['http/1.1', 'http/1.0'] },
        filters: [
          {
            name: 'envoy.filters.network.http_connection_manager',
            typed_config: {
              '@type': HCM_TYPE,
              stat_prefix: 'outbound_explicit',
              http_filters: [{ name: 'envoy.filters.http.router', typed_config: { '@type': ROUTER_TYPE } }],
              route_config: {
                name: 'explicit',
                virtual_hosts: [
                  {
                    name: 'mesh-service',
                    domains: [`echo.mesh.local:${meshPort}`, 'echo.mesh.local'],
                    routes: [
                      {
                        match: { connect_matcher: {} },
                        route: { cluster: 'outbound|echo', upgrade_configs: [{ upgrade_type: 'CONNECT', connect_config: {} }] },
                      },
                      { match: { prefix: '/' }, route: { cluster: 'outbound|echo' } },
                    ],
                  },
                  {
                    name: 'allow_any',
                    domains: ['*'],
                    routes: [
                      {
                        match: { connect_matcher: {} },
                        route: { cluster: 'PassthroughCluster', upgrade_configs: [{ upgrade_type: 'CONNECT', connect_config: {} }] },
                      },
                      { match: { prefix: '/' }, route: { cluster: 'PassthroughCluster' } },
                    ],
                  },
                ],
              },
            },
          },
        ],
      },
    ],
    default_filter_chain: {
      name: 'passthrough',
      filters: [
        {
          name: 'envoy.filters.network.tcp_proxy',
          typed_config: { '@type': TCP_PROXY_TYPE, stat_prefix: 'PassthroughCluster', cluster: 'PassthroughCluster' },
        },
      ],
    },
  };
}

beforeAll(async () => {
  mesh = await startHttpEcho('mesh-echo');
  other = await startHttpEcho('other-echo');
  tcp = await startTcpEcho();
  const m = await startMeshlet(
    bootstrap(
      [outboundListener(mesh.port)],
      [
        staticCluster('outbound|echo', [mesh.port]),
        { name: 'PassthroughCluster', type: 'ORIGINAL_DST', lb_policy: 'CLUSTER_PROVIDED', connect_timeout: '1s' },
      ],
    ),
  );
  proxyPort = m.listenerPort('virtualOutbound');
});

afterAll(async () => {
  for (const a of agents.splice(0)) await a.close();
  await stopAllMeshlets();
  await closeAll();
});

function proxyGet(url: string, host?: string): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port: proxyPort, method: 'GET', path: url, agent: false, headers: host ? { host } : {} },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      },
    );
    req.on('error', reject);
    req.setTimeout(5000, () => req.destroy(new Error('timeout')));
    req.end();
  });
}

/** Raw CONNECT: returns the response head and a socket that is the tunnel afterwards. */
function connect(target: string): Promise<{ head: string; socket: net.Socket; rest: Buffer }> {
  return new Promise((resolve, reject) => {
    const s = net.connect(proxyPort, '127.0.0.1');
    let buf = Buffer.alloc(0);
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error('CONNECT timed out'));
    }, 5000);
    s.on('error', reject);
    s.on('data', function onData(c: Buffer) {
      buf = Buffer.concat([buf, c]);
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      clearTimeout(timer);
      s.removeListener('data', onData);
      s.pause();
      resolve({ head: buf.subarray(0, end).toString('latin1'), socket: s, rest: buf.subarray(end + 4) });
    });
    s.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`);
  });
}

describe('explicit mode: absolute-form requests', () => {
  it('routes a mesh service by the host in the URI', async () => {
    const before = mesh.requests.length;
    const r = await proxyGet(`http://echo.mesh.local:${mesh.port}/svc/path?q=1`);
    expect(r.status).toBe(200);
    expect(r.headers['x-upstream']).toBe('mesh-echo');
    const rec = mesh.requests[before]!;
    // The upstream sees an origin-form request with the URI's host.
    expect(rec.url).toBe('/svc/path?q=1');
    expect(rec.headers.host).toBe(`echo.mesh.local:${mesh.port}`);
  });

  it('passes any other destination through to the host named in the URI (ALLOW_ANY)', async () => {
    const r = await proxyGet(`http://127.0.0.1:${other.port}/elsewhere`);
    expect(r.status).toBe(200);
    expect(r.headers['x-upstream']).toBe('other-echo');
    expect(other.requests.at(-1)!.url).toBe('/elsewhere');
  });

  it('answers 503 UF (not a crash) when the passthrough destination refuses', async () => {
    const dead = await closedPort();
    const r = await proxyGet(`http://127.0.0.1:${dead}/`);
    expect(r.status).toBe(503);
    // The proxy keeps serving afterwards.
    expect((await proxyGet(`http://127.0.0.1:${other.port}/again`)).status).toBe(200);
  });

  it('works for undici with proxyTunnel off (absolute-form)', async () => {
    const agent = new ProxyAgent({ uri: `http://127.0.0.1:${proxyPort}`, proxyTunnel: false });
    agents.push(agent);
    const r = await undiciRequest(`http://127.0.0.1:${other.port}/undici-abs`, { dispatcher: agent });
    expect(r.statusCode).toBe(200);
    expect(r.headers['x-upstream']).toBe('other-echo');
    const body = (await r.body.json()) as { url: string };
    expect(body.url).toBe('/undici-abs');
  });
});

describe('explicit mode: CONNECT', () => {
  it('terminates CONNECT and tunnels raw TCP to the target', async () => {
    const { head, socket, rest } = await connect(`127.0.0.1:${tcp.port}`);
    expect(head).toMatch(/^HTTP\/1\.1 200 /);
    expect(rest.length).toBe(0);
    const echoed = await new Promise<string>((resolve, reject) => {
      let got = '';
      socket.on('data', (c) => {
        got += c.toString();
        if (got.length >= 11) resolve(got);
      });
      socket.on('error', reject);
      socket.resume();
      socket.write('hello there');
    });
    expect(echoed).toBe('hello there');
    socket.destroy();
  });

  it('answers 503 to CONNECT when the target refuses', async () => {
    const dead = await closedPort();
    const { head, socket } = await connect(`127.0.0.1:${dead}`);
    expect(head).toMatch(/^HTTP\/1\.1 503 /);
    socket.destroy();
  });

  it('works for undici ProxyAgent (CONNECT tunnel) and EnvHttpProxyAgent reading HTTP_PROXY', async () => {
    const agent = new ProxyAgent({ uri: `http://127.0.0.1:${proxyPort}` });
    agents.push(agent);
    const r = await undiciRequest(`http://127.0.0.1:${other.port}/via-connect`, { dispatcher: agent });
    expect(r.statusCode).toBe(200);
    expect(((await r.body.json()) as { url: string }).url).toBe('/via-connect');

    const env = new EnvHttpProxyAgent({ httpProxy: `http://127.0.0.1:${proxyPort}`, noProxy: '' });
    agents.push(env);
    const before = mesh.requests.length;
    const r2 = await undiciRequest(`http://echo.mesh.local:${mesh.port}/env`, { dispatcher: env });
    expect(r2.statusCode).toBe(200);
    await r2.body.text();
    expect(mesh.requests.length).toBe(before + 1);
  });

  const haveCurl = spawnSync('curl', ['--version']).status === 0;
  if (!haveCurl) console.warn('explicit-proxy curl test skipped: curl is not installed (scripts/install-test-deps.sh installs it)');
  it.skipIf(!haveCurl)('works for curl with HTTP_PROXY (absolute-form) and --proxytunnel (CONNECT)', async () => {
    const run = (args: string[]) =>
      new Promise<{ code: number | null; out: string }>((resolve) => {
        const p = spawn('curl', ['-sS', '--max-time', '5', ...args], {
          env: { ...process.env, http_proxy: `http://127.0.0.1:${proxyPort}`, HTTP_PROXY: `http://127.0.0.1:${proxyPort}`, NO_PROXY: '', no_proxy: '' },
        });
        let out = '';
        p.stdout.on('data', (c) => (out += c));
        p.stderr.on('data', (c) => (out += c));
        p.on('close', (code) => resolve({ code, out }));
      });
    const a = await run([`http://echo.mesh.local:${mesh.port}/curl-abs`]);
    expect(a.code, a.out).toBe(0);
    expect(JSON.parse(a.out).url).toBe('/curl-abs');
    const b = await run(['-p', `http://127.0.0.1:${other.port}/curl-tunnel`]);
    expect(b.code, b.out).toBe(0);
    expect(JSON.parse(b.out).url).toBe('/curl-tunnel');
  });
});
