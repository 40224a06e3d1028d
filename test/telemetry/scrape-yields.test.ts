/**
 * A Prometheus scrape of a sidecar with thousands of clusters must not hold the event loop
 * (issue 18.2: 1–1.8 s at 1,000 clusters, during which nothing was proxied). Asserted by
 * structure, not by timing where it can be avoided:
 * - the body is streamed: while a scraper reads nothing after the first chunk, the rendering is
 *   held by backpressure (a family registered last has not rendered), proxied requests are
 *   answered and another scraper is served meanwhile, and the whole body arrives once the
 *   paused scraper reads again;
 * - the rendering yields between small families too (one time budget for the whole rendering,
 *   not a fresh one per family: 1,000 clusters make 24 families of about 1 ms each);
 * - proxied responses arrive between the chunks of a scrape that is being read;
 * - sending is sliced too: handing chunks to the socket costs time (a writev copy each), and a
 *   slice of cached segments can produce megabytes of them.
 */
import http from 'node:http';
import type { Metric } from 'prom-client';
import { Registry } from 'prom-client';
import { afterAll, expect, it } from 'vitest';
import { type ChunkWriter, MAX_READY_BYTES, renderExposition, SLICE_MS } from '../../proxy/telemetry/exposition';
import { countLoopTurns } from '../support/loop-turns';
import { bootstrap, httpListener, routes, staticCluster, startMeshlet, stopAllMeshlets } from '../support/meshlet';
import { closeAll, startHttpEcho } from '../support/upstreams';

afterAll(async () => {
  await stopAllMeshlets();
  await closeAll();
});

function proxiedGet(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: '/', agent: false }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      })
      .on('error', reject);
  });
}

async function meshletWith(clusterCount: number): Promise<{ adminPort: number; proxyPort: number; registry: Registry }> {
  const app = await startHttpEcho('app');
  const clusters = [staticCluster('app', [app.port])];
  for (let i = 1; i < clusterCount; i++) clusters.push(staticCluster(`outbound|${9000 + i}||svc-${i}.ns.svc.cluster.local`, [20000 + (i % 20000)]));
  const m = await startMeshlet(bootstrap([httpListener('in', routes([{ match: { prefix: '/' }, route: { cluster: 'app' } }]))], clusters));
  return { adminPort: m.adminPort, proxyPort: m.listenerPort('in'), registry: m.server.telemetry.metrics.registry };
}

it('streams a 10,000-cluster scrape: a paused scraper holds its own rendering only; proxied requests and other scrapes are answered meanwhile', async () => {
  const m = await meshletWith(10_000);
  // A family registered after every other one: it renders only when the rendering reaches the end.
  let probeRenders = 0;
  const probe = {
    name: 'test_scrape_probe',
    // eslint-disable-next-line require-yield
    *render(out: ChunkWriter): Generator<void> {
      probeRenders++;
      out.write('# HELP test_scrape_probe last family\n# TYPE test_scrape_probe gauge\ntest_scrape_probe 1');
    },
    get: () => Promise.resolve({ name: 'test_scrape_probe', help: 'last family', type: 'gauge', values: [], aggregator: 'sum' }),
    reset: () => undefined,
  };
  m.registry.registerMetric(probe as unknown as Metric);

  const parts: Buffer[] = [];
  let res!: http.IncomingMessage;
  const firstChunk = new Promise<void>((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port: m.adminPort, path: '/stats/prometheus', agent: false }, (r) => {
        res = r;
        r.once('data', (d: Buffer) => {
          parts.push(d);
          r.pause(); // read nothing more: the socket fills and the server must wait
          resolve();
        });
      })
      .on('error', reject);
  });
  await firstChunk;
  // While the scraper reads nothing, the proxy keeps answering.
  const statuses = [];
  for (let i = 0; i < 20; i++) statuses.push(await proxiedGet(m.proxyPort));
  expect(statuses.every((s) => s === 200)).toBe(true);
  // 23 MB cannot all sit in loopback socket buffers: the rendering is still waiting.
  expect(probeRenders).toBe(0);
  // ... and it holds only itself: another scraper gets a whole scrape meanwhile.
  const other = await new Promise<string>((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port: m.adminPort, path: '/stats/prometheus', agent: false }, (r) => {
        const ps: Buffer[] = [];
        r.on('data', (d: Buffer) => ps.push(d));
        r.on('end', () => resolve(Buffer.concat(ps).toString()));
      })
      .on('error', reject);
  });
  expect(other).toContain('\ntest_scrape_probe 1\n');
  expect(probeRenders).toBe(1);

  const body = await new Promise<string>((resolve) => {
    res.on('data', (d: Buffer) => parts.push(d));
    res.on('end', () => resolve(Buffer.concat(parts).toString()));
    res.resume();
  });
  expect(probeRenders).toBe(2);
  expect(body.split('\n').filter((l) => l.startsWith('envoy_cluster_upstream_rq_total{'))).toHaveLength(10_000);
  expect(body).toContain('\ntest_scrape_probe 1\n');
  expect(body.endsWith('\n')).toBe(true);
}, 120_000);

it('yields between families: many small families share one time budget', async () => {
  const registry = new Registry();
  // 60 families of about 0.5 ms each: each fits in a slice on its own, together they are ~30 ms.
  for (let f = 0; f < 60; f++) {
    const family = {
      name: `small_${f}`,
      // eslint-disable-next-line require-yield
      *render(out: ChunkWriter): Generator<void> {
        const until = performance.now() + SLICE_MS / 4;
        while (performance.now() < until);
        out.write(`# TYPE small_${f} gauge\nsmall_${f} 1`);
      },
      get: () => Promise.resolve({ name: `small_${f}`, help: '', type: 'gauge', values: [], aggregator: 'sum' }),
      reset: () => undefined,
    };
    registry.registerMetric(family as unknown as Metric);
  }
  const turns = countLoopTurns();
  const parts: Buffer[] = [];
  await renderExposition(registry, (c) => {
    parts.push(c);
  });
  turns.stop();
  // Without a shared budget no family uses up a slice, so the loop never got a turn (0).
  expect(turns.count).toBeGreaterThanOrEqual(5);
  const text = Buffer.concat(parts).toString();
  expect(text.split('\n').filter((l) => /^small_\d+ 1$/.test(l))).toHaveLength(60);
});

it('answers proxied requests between the chunks of a scrape that is being read', async () => {
  const m = await meshletWith(3_000);
  const events: string[] = [];
  let scraping = true;
  const scrape = new Promise<string>((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port: m.adminPort, path: '/stats/prometheus', agent: false }, (res) => {
        const parts: Buffer[] = [];
        res.on('data', (d: Buffer) => {
          parts.push(d);
          events.push('chunk');
        });
        res.on('end', () => {
          scraping = false;
          resolve(Buffer.concat(parts).toString());
        });
      })
      .on('error', reject);
  });
  const proxied = (async () => {
    for (let i = 0; i < 5_000 && scraping; i++) {
      expect(await proxiedGet(m.proxyPort)).toBe(200);
      events.push('proxied');
    }
  })();
  const body = await scrape;
  await proxied;
  const first = events.indexOf('chunk');
  const last = events.lastIndexOf('chunk');
  expect(events.slice(first, last).filter((e) => e === 'proxied').length).toBeGreaterThan(0);
  expect(body.split('\n').filter((l) => l.startsWith('envoy_cluster_upstream_rq_total{'))).toHaveLength(3_000);
}, 60_000);

it('sends under the same clock: chunks that cost time to send do not hold the loop, and rendering waits for them', async () => {
  const registry = new Registry();
  // One family that emits 2,000 ready-made 1 KiB segments, 100 per step: cheap to render (as
  // cached segments are), so one slice produces far more than can be sent in a slice.
  const segment = Buffer.alloc(1024, 'x');
  let mostWaiting = 0;
  const family = {
    name: 'cached_segments',
    *render(out: ChunkWriter): Generator<void> {
      out.write('# TYPE cached_segments gauge');
      for (let i = 0; i < 2000; i++) {
        out.writeBuffer(segment);
        mostWaiting = Math.max(mostWaiting, out.readyBytes);
        if (i % 100 === 99) yield;
      }
    },
    get: () => Promise.resolve({ name: 'cached_segments', help: '', type: 'gauge', values: [], aggregator: 'sum' }),
    reset: () => undefined,
  };
  registry.registerMetric(family as unknown as Metric);
  const turns = countLoopTurns();
  // A sink whose every write costs SLICE_MS / 5 of CPU, as a writev of a big chunk does.
  let sinceTurn = 0;
  let lastTurns = turns.count;
  let mostPerTurn = 0;
  let bytes = 0;
  await renderExposition(registry, (c) => {
    if (turns.count !== lastTurns) {
      lastTurns = turns.count;
      sinceTurn = 0;
    }
    sinceTurn++;
    mostPerTurn = Math.max(mostPerTurn, sinceTurn);
    bytes += c.length;
    const until = performance.now() + SLICE_MS / 5;
    while (performance.now() < until);
  });
  turns.stop();
  expect(bytes).toBeGreaterThan(2000 * 1024);
  // About 5 sends fit in a slice; without a clock on sending, all 2,000 went out in one turn.
  expect(mostPerTurn).toBeLessThanOrEqual(20);
  // Rendering pauses once MAX_READY_BYTES wait (a step adds 100 KiB at most on top).
  expect(mostWaiting).toBeLessThanOrEqual(MAX_READY_BYTES + 100 * 1024);
});
