/**
 * The per-cluster stats source reads ClusterStats and SslStats through hand-written readers
 * (cluster-stats.ts) into table rows (stats-table.ts): every column must read the field its
 * stat names, TLS counters exist only for TLS clusters, reset_counters rebases the counters (not
 * the gauges) in /stats and in the scrape snapshot alike, and the source still yields in batches.
 */
import { describe, expect, it } from 'vitest';
import {
  CLUSTER_CLASSES,
  CLUSTER_COUNTERS,
  CLUSTER_GAUGES,
  CLUSTER_SSL_TABLE,
  CLUSTER_TABLE,
  clusterStatsSource,
  readClusterRow,
  readSslRow,
} from '../../proxy/telemetry/cluster-stats';
import { EnvoyStats, type StatsSnapshot } from '../../proxy/telemetry/stats';
import { columnOf } from '../../proxy/telemetry/stats-table';
import type { Cluster } from '../../proxy/upstream/cluster';
import { SSL_COUNTERS, SslStats } from '../../proxy/upstream/ssl-stats';
import { ClusterStats } from '../../proxy/upstream/types';

/** Every own numeric field set to a distinct value (17, 34, 51, …). */
function distinct<T extends object>(o: T): T {
  Object.keys(o).forEach((k, i) => ((o as Record<string, number>)[k] = 17 * (i + 1)));
  return o;
}

describe('readers', () => {
  it('readClusterRow fills every ClusterStats column with the field its stat names', () => {
    const st = distinct(new ClusterStats());
    const row = new Float64Array(CLUSTER_TABLE.stats.length).fill(NaN);
    readClusterRow(st, row);
    const fields = new Set<string>();
    for (const [stat, field] of [...CLUSTER_COUNTERS, ...CLUSTER_CLASSES, ...CLUSTER_GAUGES]) {
      if (field === undefined) continue;
      fields.add(field);
      expect(row[columnOf(CLUSTER_TABLE, stat)], stat).toBe(st[field]);
    }
    // Every ClusterStats field has a column (a new counter cannot be forgotten silently)…
    expect([...fields].sort()).toEqual(Object.keys(st).sort());
    // …and only the host counts are left for the source to fill.
    const unread = CLUSTER_TABLE.stats.filter((_, j) => Number.isNaN(row[j]));
    expect(unread).toEqual(['membership_healthy', 'membership_total']);
    expect(CLUSTER_TABLE.counters).toBe(CLUSTER_COUNTERS.length + CLUSTER_CLASSES.length);
  });

  it('readSslRow fills every SslStats column with the field its stat names', () => {
    const ssl = distinct(new SslStats());
    const row = new Float64Array(CLUSTER_SSL_TABLE.stats.length).fill(NaN);
    readSslRow(ssl, row);
    for (const [stat, field] of SSL_COUNTERS) expect(row[columnOf(CLUSTER_SSL_TABLE, stat)], stat).toBe(ssl[field]);
    expect(SSL_COUNTERS.map(([, f]) => f).sort()).toEqual(Object.keys(ssl).sort());
    expect(CLUSTER_SSL_TABLE.counters).toBe(SSL_COUNTERS.length);
  });
});

interface FakeCluster {
  name: string;
  stats: ClusterStats;
  transport: { ssl?: SslStats };
  hosts: { healthy: boolean }[];
}

function fake(name: string, tls: boolean): FakeCluster {
  return {
    name,
    stats: distinct(new ClusterStats()),
    transport: tls ? { ssl: distinct(new SslStats()) } : {},
    hosts: [{ healthy: true }, { healthy: false }, { healthy: true }],
  };
}

function source(clusters: FakeCluster[]): EnvoyStats {
  const stats = new EnvoyStats();
  stats.addSource(clusterStatsSource({ all: () => clusters as unknown as readonly Cluster[] }));
  return stats;
}

function snapshot(stats: EnvoyStats, snap: StatsSnapshot = { groups: new Map(), byName: new Map(), tables: new Map() }): { snap: StatsSnapshot; steps: number } {
  let steps = 0;
  const it = stats.snapshot(snap);
  while (it.next().done !== true) steps++;
  return { snap, steps };
}

const value = (stats: EnvoyStats, name: string): number | undefined => stats.collect().find((e) => e.name === name)?.value;

describe('clusterStatsSource', () => {
  it('writes /stats names per cluster, ssl.* only for TLS clusters', () => {
    const stats = source([fake('plain', false), fake('tls', true)]);
    const names = stats.collect().map((e) => e.name);
    expect(names.filter((n) => n.startsWith('cluster.plain.'))).toHaveLength(CLUSTER_TABLE.stats.length);
    expect(names.filter((n) => n.startsWith('cluster.tls.'))).toHaveLength(CLUSTER_TABLE.stats.length + SSL_COUNTERS.length);
    expect(names.some((n) => n.startsWith('cluster.plain.ssl.'))).toBe(false);
    expect(value(stats, 'cluster.tls.upstream_rq_5xx')).toBe(distinct(new ClusterStats()).upstreamRq5xx);
    expect(value(stats, 'cluster.tls.ssl.handshake')).toBe(distinct(new SslStats()).handshake);
    expect(value(stats, 'cluster.tls.membership_healthy')).toBe(2);
    expect(value(stats, 'cluster.tls.membership_total')).toBe(3);
    expect(value(stats, 'cluster_manager.active_clusters')).toBe(2);
    const entry = stats.collect().find((e) => e.name === 'cluster.tls.upstream_cx_active')!;
    expect(entry).toMatchObject({ type: 'gauge', scope: 'cluster', tag: 'tls', stat: 'upstream_cx_active' });
  });

  it('snapshot tables hold one row per cluster (TLS table: TLS clusters only), truncated when clusters go', () => {
    const clusters = [fake('a', true), fake('b', false), fake('c', true)];
    const stats = source(clusters);
    const { snap } = snapshot(stats);
    const t = snap.tables.get(CLUSTER_TABLE.id)!;
    expect(t.tags).toEqual(['a', 'b', 'c']);
    expect(t.n).toBe(3);
    const j = columnOf(CLUSTER_TABLE, 'upstream_cx_destroy');
    expect([...t.columns[j]!.subarray(0, 3)]).toEqual([1, 2, 3].map(() => clusters[0]!.stats.upstreamCxDestroy));
    expect(snap.tables.get(CLUSTER_SSL_TABLE.id)!.tags).toEqual(['a', 'c']);
    clusters.splice(0, 1);
    snapshot(stats, snap);
    expect(t.tags).toEqual(['b', 'c']);
    expect(snap.tables.get(CLUSTER_SSL_TABLE.id)!.tags).toEqual(['c']);
  });

  it('reset_counters rebases counters (never below zero), not gauges, in /stats and in the snapshot', () => {
    const clusters = [fake('a', true), fake('b', false)];
    const stats = source(clusters);
    stats.resetCounters();
    const a = clusters[0]!;
    a.stats.upstreamRqTotal += 5;
    a.stats.upstreamRq2xx = 0;
    a.transport.ssl!.handshake += 2;
    expect(value(stats, 'cluster.a.upstream_rq_total')).toBe(5);
    expect(value(stats, 'cluster.a.upstream_rq_2xx')).toBe(0);
    expect(value(stats, 'cluster.a.ssl.handshake')).toBe(2);
    expect(value(stats, 'cluster.a.upstream_rq_active')).toBe(a.stats.upstreamRqActive);
    const { snap } = snapshot(stats);
    const t = snap.tables.get(CLUSTER_TABLE.id)!;
    expect(t.columns[columnOf(CLUSTER_TABLE, 'upstream_rq_total')]![0]).toBe(5);
    expect(t.columns[columnOf(CLUSTER_TABLE, 'upstream_rq_2xx')]![0]).toBe(0);
    expect(t.columns[columnOf(CLUSTER_TABLE, 'upstream_rq_total')]![1]).toBe(0);
    expect(t.columns[columnOf(CLUSTER_TABLE, 'upstream_rq_active')]![1]).toBe(clusters[1]!.stats.upstreamRqActive);
    expect(snap.tables.get(CLUSTER_SSL_TABLE.id)!.columns[columnOf(CLUSTER_SSL_TABLE, 'ssl.handshake')]![0]).toBe(2);
    // A cluster added after the reset has no baseline: its counters count from zero.
    clusters.push(fake('late', false));
    snapshot(stats, snap);
    expect(t.tags[2]).toBe('late');
    expect(t.columns[columnOf(CLUSTER_TABLE, 'upstream_rq_total')]![2]).toBe(clusters[2]!.stats.upstreamRqTotal);
    expect(value(stats, 'cluster.late.upstream_rq_total')).toBe(clusters[2]!.stats.upstreamRqTotal);
    // Every cell of the snapshot is what /stats shows for it.
    const shown = new Map(stats.collect().map((e) => [e.name, e.value]));
    for (let i = 0; i < t.n; i++)
      CLUSTER_TABLE.stats.forEach((stat, j) => expect(t.columns[j]![i], `${t.tags[i]} ${stat}`).toBe(shown.get(`cluster.${t.tags[i]}.${stat}`)));
  });

  it('yields every 64 clusters and grows its recycled columns past their first capacity', () => {
    const clusters: FakeCluster[] = [];
    for (let i = 0; i < 1000; i++) clusters.push(fake(`c${i}`, i % 2 === 0));
    const stats = source(clusters);
    const { snap, steps } = snapshot(stats);
    // 15 pauses inside the source (1000 / 64) plus one after it.
    expect(steps).toBe(Math.floor(1000 / 64) + 1);
    const t = snap.tables.get(CLUSTER_TABLE.id)!;
    expect(t.tags[999]).toBe('c999');
    expect(t.columns[columnOf(CLUSTER_TABLE, 'membership_total')]![999]).toBe(3);
    expect(snap.tables.get(CLUSTER_SSL_TABLE.id)!.n).toBe(500);
  });
});
