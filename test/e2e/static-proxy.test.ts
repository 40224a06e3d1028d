/**
 * End to end through a real meshlet started from an Envoy-shaped static bootstrap: HTTP/1.1
 * proxying with keep-alive upstream reuse, TCP proxying with half-close, and the admin API.
 */
import http from 'node:http';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bootstrap, httpListener, routes, staticCluster, startMeshlet, stopAllMeshlets, tcpListener, type StartedMeshlet } from '../support/meshlet';
import { closeAll, rawExchange, startHttpEcho, startTcpEcho, type HttpEcho, type TcpEcho } from '../support/upstreams';

let m: StartedMeshlet;
let a: HttpEcho;
let b: HttpEcho;
let tcp: TcpEcho;

beforeAll(async () => {
  a = await startHttpEcho('a');
  b = await startHttpEcho('b');
  tcp = await startTcpEcho();
  m = await startMeshlet(
    bootstrap(
      [
        httpListener(
          'http',
          routes([
            { match: { prefix: '/b/' }, route: { cluster: 'svc-b', prefix_rewrite: '/' } },
            { match: { prefix: '/' }, route: { cluster: 'svc-a' } },
          ]),
        ),
        tcpListener('tcp', 'echo'),
      ],
      [staticCluster('svc-a', [a.port]), staticCluster('svc-b', [b.port]), staticCluster('echo', [tcp.port])],
    ),
  );
});

afterAll(async () => {
  await stopAllMeshlets();
  await closeAll();
});

function get(port: number, path: string, agent?: http.Agent, headers: Record<string, string> = {}): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ port, host: '127.0.0.1', path, agent, headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => {
        body += c;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('static bootstrap, HTTP/1.1', () => {
  it('routes by prefix, rewrites, adds proxy headers and reuses upstream connections', async () => {
    const port = m.listenerPort('http');
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const before = a.connections;
    for (let i = 0; i < 50; i++) {
      const r = await get(port, `/hello?i=${i}`, agent);
      expect(r.status).toBe(200);
      expect(r.headers['x-upstream']).toBe('a');
      expect(r.headers['x-envoy-upstream-service-time']).toMatch(/^\d+$/);
    }
    // One downstream keep-alive connection, sequential requests: one upstream connection.
    expect(a.connections - before).toBe(1);
    const last = a.requests[a.requests.length - 1]!;
    expect(last.url).toBe('/hello?i=49');
    expect(last.headers['x-forwarded-proto']).toBe('http');
    expect(last.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    const rb = await get(port, '/b/thing', agent);
    expect(rb.headers['x-upstream']).toBe('b');
    expect(b.requests[b.requests.length - 1]!.url).toBe('/thing');
    agent.destroy();
  });

  it('answers a malformed request with 400 and closes, forwarding nothing', async () => {
    const before = a.requests.length + b.requests.length;
    const r = await rawExchange(m.listenerPort('http'), 'GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n');
    expect(r.text).toMatch(/^HTTP\/1\.1 400 /);
    expect(r.closed).toBe(true);
    const bad = await rawExchange(m.listenerPort('http'), 'GET / HTTP/1.1\r\nHost: x\r\nBad\x01Header: y\r\n\r\n');
    expect(bad.text).toMatch(/^HTTP\/1\.1 400 /);
    expect(bad.closed).toBe(true);
    expect(a.requests.length + b.requests.length).toBe(before);
  });
});

describe('static bootstrap, TCP proxy', () => {
  it('relays bytes both ways and preserves half-close', async () => {
    const port = m.listenerPort('tcp');
    const payload = Buffer.alloc(256 * 1024, 7);
    const got = await new Promise<Buffer>((resolve, reject) => {
      const c = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
      const chunks: Buffer[] = [];
      c.on('data', (d) => chunks.push(d));
      c.on('end', () => {
        resolve(Buffer.concat(chunks));
        c.destroy();
      });
      c.on('error', reject);
      // Write everything, then half-close: the echo must still arrive after our FIN.
      c.end(payload);
    });
    expect(got.length).toBe(payload.length);
    expect(got.equals(payload)).toBe(true);
  });
});

describe('admin', () => {
  it('serves /ready, /server_info, /clusters, /listeners and /config_dump', async () => {
    const port = m.adminPort;
    expect((await get(port, '/ready')).body.trim()).toBe('LIVE');
    const info = JSON.parse((await get(port, '/server_info')).body);
    expect(info.state).toBe('LIVE');
    expect(info.node.id).toBe('test-node');
    const clusters = (await get(port, '/clusters')).body;
    expect(clusters).toContain(`svc-a::127.0.0.1:${a.port}::health_flags::healthy`);
    expect(clusters).toMatch(new RegExp(`svc-a::127\\.0\\.0\\.1:${a.port}::rq_total::[1-9]`));
    const listeners = (await get(port, '/listeners')).body;
    expect(listeners).toContain(`http::127.0.0.1:${m.listenerPort('http')}`);
    const dump = JSON.parse((await get(port, '/config_dump')).body);
    const types = dump.configs.map((c: { '@type': string }) => c['@type']);
    expect(types).toContain('type.googleapis.com/envoy.admin.v3.ClustersConfigDump');
    const cd = dump.configs.find((c: { '@type': string }) => c['@type'].endsWith('ClustersConfigDump'));
    expect(cd.static_clusters.map((c: { cluster: { name: string } }) => c.cluster.name)).toEqual(['svc-a', 'svc-b', 'echo']);
  });

  it('refuses mutations over GET and toggles readiness with POST /healthcheck/fail|ok', async () => {
    const port = m.adminPort;
    expect((await get(port, '/healthcheck/fail')).status).toBe(405);
    const post = (p: string) =>
      new Promise<number>((resolve) => {
        const req = http.request({ port, host: '127.0.0.1', path: p, method: 'POST' }, (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        });
        req.end();
      });
    expect(await post('/healthcheck/fail')).toBe(200);
    expect((await get(port, '/ready')).status).toBe(503);
    expect(await post('/healthcheck/ok')).toBe(200);
    expect((await get(port, '/ready')).status).toBe(200);
  });
});
