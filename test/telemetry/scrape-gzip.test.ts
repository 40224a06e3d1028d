/**
 * The 15090-style stats port answers /stats/prometheus gzip'ed to a client that asks for it, as
 * Prometheus does on every scrape (`Accept-Encoding: gzip`). The decoded body is the plain one; a
 * client that does not ask (or refuses gzip with q=0) gets plain text. The admin port stays plain
 * whatever is asked, as Envoy's (its gzip example checks exactly that). The real Prometheus server
 * test (prometheus.test.ts) reads the gzip'ed body through Prometheus itself.
 */
import http from 'node:http';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { acceptsGzip } from '../../proxy/admin/admin-server';
import { bootstrap, httpListener, routes, type StartedMeshlet, startMeshlet, staticCluster, stopAllMeshlets } from '../support/meshlet';
import { closeAll, startHttpEcho } from '../support/upstreams';

describe('Accept-Encoding', () => {
  it.each([
    [undefined, false],
    ['', false],
    ['gzip', true],
    ['GZIP', true],
    ['x-gzip', true],
    ['gzip;q=0', false],
    ['gzip; q=0.0', false],
    ['deflate, gzip;q=0.5', true],
    ['identity', false],
    ['br, deflate', false],
    ['*', true],
    ['*;q=0', false],
    ['gzip;q=0, *', false],
    ['identity, *;q=0.1', true],
    ['gzip;q=junk', false],
  ])('%j → gzip %s', (header, expected) => {
    expect(acceptsGzip(header)).toBe(expected);
  });
});

interface Raw {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

function get(port: number, headers: Record<string, string> = {}): Promise<Raw> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: '/stats/prometheus', headers, agent: false }, (res) => {
        const parts: Buffer[] = [];
        res.on('data', (c: Buffer) => parts.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(parts) }));
        res.on('error', reject);
      })
      .on('error', reject);
  });
}

/** The per-cluster lines: they do not move between two scrapes of an idle proxy (uptime and memory gauges do). */
function clusterLines(text: string): string[] {
  return text.split('\n').filter((l) => l.startsWith('envoy_cluster_'));
}

let m: StartedMeshlet;

beforeAll(async () => {
  const app = await startHttpEcho('app');
  const clusters = [staticCluster('app', [app.port])];
  for (let i = 1; i < 500; i++) clusters.push(staticCluster(`outbound|${9000 + i}||svc-${i}.ns.svc.cluster.local`, [20000 + i]));
  m = await startMeshlet(bootstrap([httpListener('in', routes([{ match: { prefix: '/' }, route: { cluster: 'app' } }]))], clusters), {
    telemetry: { statsPort: 0, portsHost: '127.0.0.1' },
  });
});

afterAll(async () => {
  await stopAllMeshlets();
  await closeAll();
});

describe('/stats/prometheus on the stats port (15090)', () => {
  it('is gzip for a client that asks, the same text once decoded, and plain otherwise', async () => {
    const port = m.server.telemetry.statsPort;
    const plain = await get(port);
    expect(plain.status).toBe(200);
    expect(plain.headers['content-encoding']).toBeUndefined();
    expect(plain.headers.vary).toMatch(/accept-encoding/i);
    const text = plain.body.toString('utf8');
    expect(clusterLines(text).filter((l) => l.startsWith('envoy_cluster_upstream_rq_total{'))).toHaveLength(500);

    const zipped = await get(port, { 'accept-encoding': 'gzip' });
    expect(zipped.status).toBe(200);
    expect(zipped.headers['content-encoding']).toBe('gzip');
    expect(zipped.headers.vary).toMatch(/accept-encoding/i);
    expect(zipped.headers['content-type']).toBe(plain.headers['content-type']);
    const decoded = gunzipSync(zipped.body).toString('utf8');
    expect(clusterLines(decoded)).toEqual(clusterLines(text));
    expect(decoded.split('\n').map((l) => l.split('{')[0]!.split(' ')[0])).toEqual(text.split('\n').map((l) => l.split('{')[0]!.split(' ')[0]));
    expect(decoded.endsWith('\n')).toBe(true);
    // Exposition text is repetitive: far fewer bytes on the wire.
    expect(zipped.body.length).toBeLessThan(text.length / 5);

    const refused = await get(port, { 'accept-encoding': 'gzip;q=0, identity' });
    expect(refused.headers['content-encoding']).toBeUndefined();
    expect(clusterLines(refused.body.toString('utf8'))).toEqual(clusterLines(text));
  });
});

it('the admin port answers plain text even when gzip is asked for, as Envoy does', async () => {
  const r = await get(m.adminPort, { 'accept-encoding': 'gzip' });
  expect(r.status).toBe(200);
  expect(r.headers['content-encoding']).toBeUndefined();
  expect(clusterLines(r.body.toString('utf8')).filter((l) => l.startsWith('envoy_cluster_upstream_rq_total{'))).toHaveLength(500);
});

it('a gzip scraper that leaves after the first bytes does not break the next scrape', async () => {
  await new Promise<void>((resolve, reject) => {
    const req = http.get(
      { host: '127.0.0.1', port: m.server.telemetry.statsPort, path: '/stats/prometheus', headers: { 'accept-encoding': 'gzip' }, agent: false },
      (res) => {
        expect(res.headers['content-encoding']).toBe('gzip');
        res.once('data', () => {
          req.destroy();
          resolve();
        });
      },
    );
    req.on('error', (err) => {
      if ((err as NodeJS.ErrnoException).code !== 'ECONNRESET') reject(err);
    });
  });
  const next = await get(m.server.telemetry.statsPort, { 'accept-encoding': 'gzip' });
  expect(clusterLines(gunzipSync(next.body).toString('utf8')).filter((l) => l.startsWith('envoy_cluster_upstream_rq_total{'))).toHaveLength(500);
});
