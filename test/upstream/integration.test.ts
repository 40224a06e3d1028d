/**
 * The cluster manager with the real HTTP/1.1 pool and real loopback servers: round robin across
 * hosts, and make-before-break on a config change with a request in flight.
 */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { ConnectionPool, RequestHead, ResetReason, ResponseHead, ResponseSink } from '../../proxy/http/codec';
import { H1ConnectionPool } from '../../proxy/http/h1/pool';
import { ClusterManager } from '../../proxy/upstream/cluster-manager';
import type { Host } from '../../proxy/upstream/host';
import { assignment, clusterConfig } from './fixtures';

interface Reply {
  status: number;
  body: string;
}

function get(pool: ConnectionPool, host: Host, path: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    let head: ResponseHead | undefined;
    const chunks: Buffer[] = [];
    const sink: ResponseSink = {
      onResponseHeaders(h, end) {
        head = h;
        if (end) resolve({ status: h.status, body: '' });
      },
      onResponseData(chunk, end) {
        chunks.push(chunk);
        if (end) resolve({ status: head?.status ?? 0, body: Buffer.concat(chunks).toString() });
      },
      onResponseTrailers() {
        resolve({ status: head?.status ?? 0, body: Buffer.concat(chunks).toString() });
      },
      onUpstreamReset(reason: ResetReason, detail?: string) {
        reject(new Error(`${reason} ${detail ?? ''}`));
      },
      onUpstreamWritable() {},
    };
    const req: RequestHead = {
      method: 'GET',
      path,
      authority: host.key,
      scheme: 'http',
      protocol: 'HTTP/1.1',
      headers: [],
      contentLength: 0,
    };
    pool.newStream(sink, {
      onPoolReady(encoder) {
        encoder.writeHeaders(req, true);
      },
      onPoolFailure(reason, detail) {
        reject(new Error(`${reason} ${detail}`));
      },
    });
  });
}

describe('cluster manager with real HTTP/1.1 pools', () => {
  const servers: http.Server[] = [];
  let cm: ClusterManager | undefined;
  afterEach(async () => {
    cm?.destroy();
    cm = undefined;
    for (const s of servers.splice(0)) {
      s.closeAllConnections();
      await new Promise<void>((r) => s.close(() => r()));
    }
  });

  async function server(id: string, onRequest?: (res: http.ServerResponse) => void): Promise<number> {
    const s = http.createServer((req, res) => {
      if (onRequest && req.url === '/slow') return onRequest(res);
      res.end(id);
    });
    servers.push(s);
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
    return (s.address() as AddressInfo).port;
  }

  it('round-robins requests across loopback hosts and reuses keep-alive connections', async () => {
    const ports = [await server('a'), await server('b'), await server('c')];
    cm = new ClusterManager({ poolFactory: (host, cluster) => new H1ConnectionPool(host, cluster) });
    cm.addOrUpdate(
      clusterConfig({
        name: 'web',
        loadAssignment: assignment(
          'web',
          ports.map((port) => ({ port })),
        ),
      }),
    );
    const c = cm.get('web');
    if (c === undefined) throw new Error('no cluster');
    const bodies: string[] = [];
    for (let i = 0; i < 9; i++) {
      const host = c.chooseHost(undefined);
      if (host === undefined) throw new Error('no host');
      const r = await get(c.httpPool(host, 'HTTP/1.1'), host, '/');
      expect(r.status).toBe(200);
      bodies.push(r.body);
    }
    expect(bodies.slice(3)).toEqual([...bodies.slice(0, 3), ...bodies.slice(0, 3)]);
    expect(new Set(bodies)).toEqual(new Set(['a', 'b', 'c']));
    // One connection per host, reused.
    expect(c.hosts.map((h) => c.httpPool(h, 'HTTP/1.1').connections)).toEqual([1, 1, 1]);
    expect(c.stats.upstreamCxTotal).toBe(3);
  });

  it('make-before-break: a config change lets the in-flight request finish on the old cluster, then closes it', async () => {
    let release: (() => void) | undefined;
    const port = await server('only', (res) => {
      release = () => res.end('slow-done');
    });
    cm = new ClusterManager({ poolFactory: (host, cluster) => new H1ConnectionPool(host, cluster), drainCheckMs: 20 });
    const cfg = clusterConfig({ name: 'web', loadAssignment: assignment('web', [{ port }]) });
    cm.addOrUpdate(cfg);
    const old = cm.get('web');
    const host = old?.chooseHost(undefined);
    if (old === undefined || host === undefined) throw new Error('no host');
    const oldPool = old.httpPool(host, 'HTTP/1.1');
    const inflight = get(oldPool, host, '/slow');
    while (release === undefined) await new Promise((r) => setTimeout(r, 5));

    expect(cm.addOrUpdate({ ...cfg, connectTimeoutMs: 1234 })).toBe('updated');
    const next = cm.get('web');
    expect(next).not.toBe(old);
    // The new cluster serves new requests on its own connection right away.
    const nh = next?.chooseHost(undefined);
    if (next === undefined || nh === undefined) throw new Error('no host');
    expect((await get(next.httpPool(nh, 'HTTP/1.1'), nh, '/')).body).toBe('only');
    expect(cm.drainingCount).toBe(1);
    expect(oldPool.connections).toBe(1);

    release();
    expect((await inflight).body).toBe('slow-done');
    const deadline = Date.now() + 5000;
    while (cm.drainingCount > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    expect(cm.drainingCount).toBe(0);
    expect(oldPool.connections).toBe(0);
    expect(next.httpPool(nh, 'HTTP/1.1').connections).toBe(1);
  });
});
