/**
 * The Envoy cluster families keep their rendered lines from scrape to scrape (line-cache.ts) and
 * their label strings by row, per snapshot (envoy-families.ts refreshRowLabels). Whatever changes between two
 * scrapes — a value, a reset, a cluster added, removed or renamed, a line count crossing a
 * segment boundary, a scrape that failed half-way, two scrapes at once — the next body must be
 * byte for byte what a cold rendering (fresh caches, nothing reused) gives. Structural only: no
 * timing.
 */
import { type Metric, Registry } from 'prom-client';
import { expect, it } from 'vitest';
import { registerEnvoyFamilies } from '../../proxy/telemetry/envoy-families';
import { ChunkWriter, renderExposition } from '../../proxy/telemetry/exposition';
import { LineCache, SEGMENT_LINES } from '../../proxy/telemetry/line-cache';
import { clusterStatsSource } from '../../proxy/telemetry/cluster-stats';
import { EnvoyStats } from '../../proxy/telemetry/stats';
import type { Cluster } from '../../proxy/upstream/cluster';
import { ClusterStats } from '../../proxy/upstream/types';

interface FakeCluster {
  name: string;
  stats: ClusterStats;
  transport: { ssl?: undefined };
  hosts: { healthy: boolean }[];
}

function cluster(name: string, rq = 0): FakeCluster {
  const stats = new ClusterStats();
  stats.upstreamRqTotal = rq;
  stats.upstreamRq2xx = rq;
  return { name, stats, transport: {}, hosts: [{ healthy: true }] };
}

/** A registry with the Envoy families over `clusters` (the array may be edited between scrapes). */
function mesh(clusters: FakeCluster[]): { stats: EnvoyStats } & ReturnType<typeof renderer> {
  const stats = new EnvoyStats();
  stats.addSource(clusterStatsSource({ all: () => clusters as unknown as readonly Cluster[] }));
  return { stats, ...renderer(stats) };
}

function renderer(stats: EnvoyStats): {
  scrape: (fail?: boolean) => Promise<string>;
  registry: Registry;
  before: (scope: Map<object, unknown>) => Promise<() => void>;
} {
  const registry = new Registry();
  const before = registerEnvoyFamilies(stats, registry);
  const scrape = async (fail = false): Promise<string> => {
    const scope = new Map();
    const release = await before(scope);
    const parts: Buffer[] = [];
    let bytes = 0;
    try {
      await renderExposition(
        registry,
        (c) => {
          // A scraper that goes away after 100 KB: the sink rejects, the rendering stops.
          if (fail && bytes > 100_000) throw new Error('scraper gone');
          bytes += c.length;
          parts.push(Buffer.from(c)); // a copy: the cache's Buffers must not change under us
        },
        scope,
      );
    } finally {
      release();
    }
    return Buffer.concat(parts).toString('utf8');
  };
  return { scrape, registry, before };
}

/** What a rendering with nothing cached gives for the same stats. */
async function cold(stats: EnvoyStats): Promise<string> {
  return renderer(stats).scrape();
}

function cacheOf(registry: Registry, name: string): { rendered: number; reused: number } {
  return (registry.getSingleMetric(name) as unknown as { cache: { rendered: number; reused: number } }).cache;
}

const line = (family: string, cluster: string, v: number): string => `\n${family}{envoy_cluster_name="${cluster}"} ${v}\n`;

it('a warm scrape reuses unchanged segments and equals a cold rendering after every kind of change', async () => {
  const clusters: FakeCluster[] = [];
  for (let i = 0; i < 3 * SEGMENT_LINES + 7; i++) clusters.push(cluster(`outbound|80||svc-${i}.ns.svc.cluster.local`, i));
  const m = mesh(clusters);
  const first = await m.scrape();
  expect(first).toBe(await cold(m.stats));
  expect(first).toContain(line('envoy_cluster_upstream_rq_total', 'outbound|80||svc-5.ns.svc.cluster.local', 5));

  // Nothing changed: every segment of a cluster family is sent as kept.
  expect(await m.scrape()).toBe(first);
  const rq = cacheOf(m.registry, 'envoy_cluster_upstream_rq_total');
  expect(rq.rendered).toBe(0);
  expect(rq.reused).toBe(4);

  // One value moves: only its segment is rendered again, and the body shows it.
  clusters[200]!.stats.upstreamRqTotal = 99_999;
  let body = await m.scrape();
  expect(rq.rendered).toBe(1);
  expect(body).toContain(line('envoy_cluster_upstream_rq_total', 'outbound|80||svc-200.ns.svc.cluster.local', 99_999));
  expect(body).toBe(await cold(m.stats));

  // A cluster added in the middle and one at the end.
  clusters.splice(10, 0, cluster('added-middle', 7));
  clusters.push(cluster('added-end', 8));
  body = await m.scrape();
  expect(body).toContain(line('envoy_cluster_upstream_rq_total', 'added-middle', 7));
  expect(body).toContain(line('envoy_cluster_upstream_rq_total', 'added-end', 8));
  expect(body).toBe(await cold(m.stats));

  // A cluster removed: gone from every family (the class family too).
  clusters.splice(50, 1);
  body = await m.scrape();
  expect(body).not.toContain('svc-49.ns');
  expect(body).toBe(await cold(m.stats));

  // A cluster renamed in place (same position, same values): the new label, never the old one.
  clusters[3] = { ...clusters[3]!, name: 'renamed "x"\\y' };
  body = await m.scrape();
  expect(body).not.toContain('svc-3.ns');
  expect(body).toContain(line('envoy_cluster_upstream_rq_total', 'renamed \\"x\\"\\\\y', 3));
  expect(body).toContain('envoy_cluster_upstream_rq_xx_total{envoy_cluster_name="renamed \\"x\\"\\\\y",envoy_response_code_class="2"} 3\n');
  expect(body).toBe(await cold(m.stats));

  // Down to exactly one segment, then one line past it.
  clusters.length = SEGMENT_LINES;
  expect(await m.scrape()).toBe(await cold(m.stats));
  clusters.push(cluster('one-more', 1));
  body = await m.scrape();
  expect(body).toContain(line('envoy_cluster_upstream_rq_total', 'one-more', 1));
  expect(body).toBe(await cold(m.stats));

  // reset_counters rebases every counter: all values change at once.
  m.stats.resetCounters();
  body = await m.scrape();
  expect(body).toContain(line('envoy_cluster_upstream_rq_total', 'one-more', 0));
  expect(body).toBe(await cold(m.stats));

  // All clusters gone.
  clusters.length = 0;
  body = await m.scrape();
  expect(body).not.toContain('envoy_cluster_name=');
  expect(body).toBe(await cold(m.stats));
});

it('a scrape whose scraper goes away leaves the cache consistent for the next one', async () => {
  const clusters: FakeCluster[] = [];
  for (let i = 0; i < 2_000; i++) clusters.push(cluster(`c-${i}`, i));
  const m = mesh(clusters);
  await m.scrape();
  for (const c of clusters) c.stats.upstreamRqTotal += 1; // every segment changes
  await expect(m.scrape(true)).rejects.toThrow('scraper gone');
  const body = await m.scrape();
  expect(body).toContain(line('envoy_cluster_upstream_rq_total', 'c-1999', 2_000));
  expect(body).toBe(await cold(m.stats));
});

it('a rendering abandoned in the middle of a segment (its scrape failed) does not leave stale segments behind', () => {
  const cache = new LineCache('m');
  const render = (values: number[], stopAt = values.length): string | undefined => {
    const out = new ChunkWriter();
    cache.begin(out);
    for (let i = 0; i < stopAt; i++) cache.emit(`{i="${i}"}`, values[i]!);
    if (stopAt < values.length) {
      cache.abort();
      return undefined;
    }
    cache.end();
    out.flush();
    return Buffer.concat(out.take()).toString('utf8');
  };
  const expected = (values: number[]): string => values.map((v, i) => `\nm{i="${i}"} ${v}`).join('');
  const a = Array.from({ length: 3 * SEGMENT_LINES }, (_, i) => i);
  expect(render(a)).toBe(expected(a));
  // One value of the second segment changes; the rendering stops after that line but before the
  // segment is closed, so the cache has stored the new value while the segment's Buffer is old.
  const b = [...a];
  b[SEGMENT_LINES + 2] = -1;
  render(b, SEGMENT_LINES + SEGMENT_LINES / 2);
  expect(render(b)).toBe(expected(b));
  expect([cache.rendered, cache.reused]).toEqual([2, 1]); // segments from the abandoned one on were dropped
});

it('two scrapes at once both give the whole body (the second renders without the cache)', async () => {
  const clusters: FakeCluster[] = [];
  for (let i = 0; i < 1_000; i++) clusters.push(cluster(`c-${i}`, i));
  const m = mesh(clusters);
  await m.scrape();
  clusters[1]!.stats.upstreamRqTotal = 5;
  const [a, b] = await Promise.all([m.scrape(), m.scrape()]);
  const ref = await cold(m.stats);
  expect(a).toBe(ref);
  expect(b).toBe(ref);
  // And the cache is still right afterwards.
  clusters[2]!.stats.upstreamRqTotal = 6;
  expect(await m.scrape()).toBe(await cold(m.stats));
});

it('two scrapes at once over different cluster lists each give their own snapshot, line for line', async () => {
  const clusters: FakeCluster[] = [];
  for (let i = 0; i < 2_000; i++) clusters.push(cluster(`c-${i}`, i));
  const m = mesh(clusters);
  const r = renderer(m.stats);
  await r.scrape();
  const coldA = await cold(m.stats);
  // Both snapshots are taken before either renders; the clusters change in between (one added at
  // the front shifts every row, one renamed), then the two renderings interleave chunk by chunk.
  const scopeA = new Map();
  const releaseA = await r.before(scopeA);
  clusters.unshift(cluster('first', 1));
  clusters[500] = { ...clusters[500]!, name: 'renamed' };
  const coldB = await cold(m.stats);
  const scopeB = new Map();
  const releaseB = await r.before(scopeB);
  const render = async (scope: Map<object, unknown>): Promise<string> => {
    const parts: Buffer[] = [];
    await renderExposition(
      r.registry,
      async (c) => {
        parts.push(Buffer.from(c));
        await new Promise(setImmediate);
      },
      scope,
    );
    return Buffer.concat(parts).toString('utf8');
  };
  const [a, b] = await Promise.all([render(scopeA), render(scopeB)]);
  releaseA();
  releaseB();
  expect(a).toBe(coldA);
  expect(b).toBe(coldB);
  expect(b).toContain(line('envoy_cluster_upstream_rq_total', 'renamed', 499));
  expect(await r.scrape()).toBe(coldB);
});

it("prom-client's JSON (getMetricsAsJSON) has every Envoy family, per-cluster ones from the snapshot's tables", async () => {
  const m = mesh([cluster('a', 3), cluster('b', 4)]);
  await m.scrape();
  const json = await m.registry.getMetricsAsJSON();
  const rq = json.find((f) => f.name === 'envoy_cluster_upstream_rq_total')!;
  expect(rq.values).toEqual([
    { value: 3, labels: { envoy_cluster_name: 'a' } },
    { value: 4, labels: { envoy_cluster_name: 'b' } },
  ]);
  expect(json.find((f) => f.name === 'envoy_cluster_manager_active_clusters')!.values).toEqual([{ value: 2, labels: {} }]);
});

it('families registered after the Envoy ones still render in order', async () => {
  const m = mesh([cluster('a', 1)]);
  m.registry.registerMetric({
    name: 'test_last',
    // eslint-disable-next-line require-yield
    *render(out: { write(s: string): void }): Generator<void> {
      out.write('# HELP test_last last\n# TYPE test_last gauge\ntest_last 1');
    },
  } as unknown as Metric);
  const body = await m.scrape();
  expect(body.endsWith('\n\n# HELP test_last last\n# TYPE test_last gauge\ntest_last 1\n')).toBe(true);
});
