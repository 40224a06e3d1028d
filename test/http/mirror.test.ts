/**
 * Request mirroring (route request_mirror_policies) through a real meshlet: the shadow cluster
 * gets the request with the `-shadow` Host suffix (before the port) and its whole streamed body,
 * fire and forget — a slow or dead shadow changes neither the main response nor its latency;
 * runtime_fraction read from the layered runtime (changed through /runtime_modify),
 * cluster_header, disable_shadow_host_suffix_append, trace_sampled, and config validation.
 */
import { createHash } from 'node:crypto';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import net from 'node:net';
import { request as undiciRequest } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeBootstrap } from '../../proxy/config/bootstrap';
import { createRegistries } from '../../proxy/registry';
import { bootstrap, httpListener, routes, staticCluster, startMeshlet, stopAllMeshlets, type StartedMeshlet } from '../support/meshlet';
import { closedPort } from '../support/upstreams';

interface Seen {
  host: string;
  path: string;
  headers: http.IncomingHttpHeaders;
  sha: string;
  bytes: number;
}
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

function recorder(delayMs: number): { server: http.Server; seen: Seen[]; port: () => number; waitFor: (n: number) => Promise<void> } {
  const seen: Seen[] = [];
  const waiters: (() => void)[] = [];
  const server = http.createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      seen.push({ host: req.headers.host ?? '', path: req.url ?? '', headers: req.headers, sha: sha(body), bytes: body.length });
      for (const w of waiters.splice(0)) w();
      setTimeout(() => {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end(`${delayMs > 0 ? 'shadow' : 'main'} ${body.length}`);
      }, delayMs);
    });
  });
  return {
    server,
    seen,
    port: () => (server.address() as net.AddressInfo).port,
    waitFor: async (n) => {
      const deadline = Date.now() + 5000;
      while (seen.length < n && Date.now() < deadline) await new Promise<void>((r) => waiters.push(r) && setTimeout(r, 200));
    },
  };
}

const main = recorder(0);
const shadow = recorder(1500); // a slow shadow: its answer comes long after the main one
const other = recorder(0);
let m: StartedMeshlet;
let deadPort = 0;
/** Accepts connections and never reads them: a shadow upstream that falls behind forever. */
const sinkSockets = new Set<net.Socket>();
const sink = net.createServer((sock) => {
  sinkSockets.add(sock);
  sock.on('error', () => {});
  sock.on('close', () => sinkSockets.delete(sock));
});

beforeAll(async () => {
  for (const r of [main, shadow, other]) await new Promise<void>((ok) => r.server.listen(0, '127.0.0.1', ok));
  deadPort = await closedPort();
  await new Promise<void>((ok) => sink.listen(0, '127.0.0.1', ok));
  const route = (prefix: string, mirrors: unknown[]): Record<string, unknown> => ({
    match: { prefix },
    route: { cluster: 'main', request_mirror_policies: mirrors },
  });
  m = await startMeshlet(
    bootstrap(
      [
        httpListener(
          'l',
          routes([
            route('/all', [{ cluster: 'shadow' }]),
            route('/fraction', [{ cluster: 'shadow', runtime_fraction: { default_value: { numerator: 0 }, runtime_key: 'mirror.pct' } }]),
            route('/header', [{ cluster_header: 'x-mirror-to' }]),
            route('/nosuffix', [{ cluster: 'other', disable_shadow_host_suffix_append: true, trace_sampled: false }]),
            route('/dead', [{ cluster: 'dead' }]),
            route('/stuck', [{ cluster: 'stuck' }]),
            { match: { prefix: '/plain' }, route: { cluster: 'main' } },
          ]),
        ),
      ],
      [staticCluster('main', [main.port()]), staticCluster('shadow', [shadow.port()]), staticCluster('other', [other.port()]), staticCluster('dead', [deadPort]), staticCluster('stuck', [(sink.address() as net.AddressInfo).port])],
      { layered_runtime: { layers: [{ name: 'admin', admin_layer: {} }] } },
    ),
  );
});

afterAll(async () => {
  await stopAllMeshlets();
  // Whatever is still connected (a slow shadow's keep-alive, the sink that never reads) is cut:
  // close() alone waits for those connections and can outlast the hook on a loaded box.
  for (const r of [main, shadow, other]) {
    r.server.closeAllConnections();
    await new Promise((ok) => r.server.close(ok));
  }
  for (const sock of sinkSockets) sock.destroy();
  await new Promise((ok) => sink.close(ok));
});

const url = (path: string): string => `http://127.0.0.1:${m.listenerPort('l')}${path}`;

describe('request mirroring', () => {
  it('mirrors headers and the whole streamed body to the shadow cluster with the -shadow host suffix', async () => {
    const body = Buffer.alloc(300_000, 'mirror me ');
    const before = shadow.seen.length;
    const t0 = performance.now();
    const r = await undiciRequest(url('/all/upload?x=1'), { method: 'POST', body, headers: { host: 'svc.local:8080', 'x-custom': 'kept' } });
    expect(await r.body.text()).toBe(`main ${body.length}`);
    const took = performance.now() - t0;
    // The shadow answers after 1.5 s; the main response does not wait for it.
    expect(took).toBeLessThan(1200);
    await shadow.waitFor(before + 1);
    const s = shadow.seen[before]!;
    expect(s.host).toBe('svc.local-shadow:8080');
    expect(s.path).toBe('/all/upload?x=1');
    expect(s.headers['x-custom']).toBe('kept');
    expect(s.bytes).toBe(body.length);
    expect(s.sha).toBe(sha(body));
    expect(main.seen.at(-1)!.host).toBe('svc.local:8080');
  });

  it('a route without mirror policies sends nothing to the shadow', async () => {
    const before = shadow.seen.length;
    await (await undiciRequest(url('/plain'))).body.text();
    await new Promise((r) => setTimeout(r, 300));
    expect(shadow.seen.length).toBe(before);
  });

  it('runtime_fraction: default 0 % mirrors nothing; /runtime_modify to 100 mirrors every request', async () => {
    const before = shadow.seen.length;
    for (let i = 0; i < 5; i++) await (await undiciRequest(url('/fraction'))).body.text();
    await new Promise((r) => setTimeout(r, 300));
    expect(shadow.seen.length).toBe(before);
    const mod = await undiciRequest(`http://127.0.0.1:${m.adminPort}/runtime_modify?mirror.pct=100`, { method: 'POST' });
    expect(await mod.body.text()).toBe('OK\n');
    for (let i = 0; i < 5; i++) await (await undiciRequest(url('/fraction'))).body.text();
    await shadow.waitFor(before + 5);
    expect(shadow.seen.length).toBe(before + 5);
    await (await undiciRequest(`http://127.0.0.1:${m.adminPort}/runtime_modify?mirror.pct=`, { method: 'POST' })).body.text();
  });

  it('cluster_header picks the shadow cluster per request; absent or unknown means no mirror', async () => {
    const before = other.seen.length;
    await (await undiciRequest(url('/header'), { headers: { 'x-mirror-to': 'other' } })).body.text();
    await other.waitFor(before + 1);
    expect(other.seen.length).toBe(before + 1);
    expect(other.seen.at(-1)!.host).toMatch(/-shadow:\d+$/);
    const r1 = await undiciRequest(url('/header'), { headers: { 'x-mirror-to': 'nope' } });
    expect(r1.statusCode).toBe(200);
    await r1.body.text();
    const r2 = await undiciRequest(url('/header'));
    expect(r2.statusCode).toBe(200);
    await r2.body.text();
    await new Promise((r) => setTimeout(r, 300));
    expect(other.seen.length).toBe(before + 1);
  });

  it('disable_shadow_host_suffix_append keeps the Host; trace_sampled: false marks the shadow unsampled', async () => {
    const before = other.seen.length;
    await (await undiciRequest(url('/nosuffix'), { headers: { host: 'svc.local', 'x-b3-traceid': '463ac35c9f6413ad', 'x-b3-spanid': 'a2fb4a1d1a96d312', 'x-b3-sampled': '1' } })).body.text();
    await other.waitFor(before + 1);
    const s = other.seen[before]!;
    expect(s.host).toBe('svc.local');
    expect(s.headers['x-b3-sampled']).toBe('0');
    expect(main.seen.at(-1)!.headers['x-b3-sampled']).toBe('1');
  });

  it('a dead shadow cluster does not affect the main response', async () => {
    for (let i = 0; i < 3; i++) {
      const r = await undiciRequest(url('/dead'), { method: 'POST', body: 'payload' });
      expect(r.statusCode).toBe(200);
      expect(await r.body.text()).toBe('main 7');
    }
  });
});

describe('request mirroring: a shadow that falls behind', () => {
  it('is dropped past 1 MiB behind; the main request streams on and the shadow is released', async () => {
    const body = Buffer.alloc(12 * 1024 * 1024, 'z');
    const r = await undiciRequest(url('/stuck'), { method: 'POST', body });
    expect(r.statusCode).toBe(200);
    expect(await r.body.text()).toBe(`main ${body.length}`);
    // Without the bound the shadow would still hold its request (and the body) until the route timeout.
    const stats = await (await undiciRequest(`http://127.0.0.1:${m.adminPort}/stats`)).body.text();
    expect(stats).toMatch(/cluster\.stuck\.upstream_rq_total: 1\b/);
    expect(stats).toMatch(/cluster\.stuck\.upstream_rq_active: 0\b/);
  }, 20_000);
});

describe('request_mirror_policies validation', () => {
  const decode = (mirrors: unknown[]): string => {
    try {
      const raw = bootstrap([httpListener('v', routes([{ match: { prefix: '/' }, route: { cluster: 'main', request_mirror_policies: mirrors } }]))], [staticCluster('main', [1])]);
      const { warnings } = decodeBootstrap(raw, { httpFilters: createRegistries().httpFilters });
      return warnings.map((w) => `warn ${w.path}: ${w.message}`).join('\n');
    } catch (e) {
      return String(e);
    }
  };
  it('names the field of a bad policy', () => {
    expect(decode([{}])).toMatch(/request_mirror_policies\[0\]: one of cluster, cluster_header must be set/);
    expect(decode([{ cluster: 'a', cluster_header: 'b' }])).toMatch(/request_mirror_policies\[0\]\.cluster_header: only one of cluster, cluster_header/);
    expect(decode([{ cluster: 'main', runtime_fraction: {} }])).toMatch(/request_mirror_policies\[0\]\.runtime_fraction\.default_value: is required/);
    expect(decode([{ cluster_header: 'bad header' }])).toMatch(/cluster_header: invalid header name/);
    expect(decode([{ cluster: 'main', request_headers_mutations: [] }])).toMatch(/warn .*request_mirror_policies\[0\]\.request_headers_mutations: not supported by meshlet/);
  });
});
