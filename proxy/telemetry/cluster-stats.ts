/**
 * The per-cluster stats source (`cluster.<name>.*`, `cluster_manager.active_clusters`): each
 * cluster is one row of CLUSTER_TABLE (and of CLUSTER_SSL_TABLE when its transport is TLS),
 * read by hand-written readers: plain property loads of ClusterStats and SslStats fields, no
 * keyed load per stat (`st[k]` over the field names was megamorphic and, at 10,000 clusters, the
 * largest single cost of a scrape; issue 18.2). test/telemetry/cluster-stats.test.ts checks that
 * every column reads its field.
 */
import type { SslStats } from '../upstream/ssl-stats';
import { SSL_COUNTERS } from '../upstream/ssl-stats';
import type { Cluster } from '../upstream/cluster';
import type { ClusterStats } from '../upstream/types';
import type { StatsSource } from './stats';
import type { StatsTable } from './stats-table';

/** Envoy stat name → ClusterStats field, in exposition order. */
export const CLUSTER_COUNTERS = [
  ['upstream_rq_total', 'upstreamRqTotal'],
  ['upstream_rq_pending_overflow', 'upstreamRqPendingOverflow'],
  ['upstream_rq_timeout', 'upstreamRqTimeout'],
  ['upstream_rq_retry', 'upstreamRqRetry'],
  ['upstream_rq_retry_success', 'upstreamRqRetrySuccess'],
  ['upstream_rq_retry_overflow', 'upstreamRqRetryOverflow'],
  ['upstream_cx_total', 'upstreamCxTotal'],
  ['upstream_cx_connect_fail', 'upstreamCxConnectFail'],
  ['upstream_cx_connect_timeout', 'upstreamCxConnectTimeout'],
  ['upstream_cx_overflow', 'upstreamCxOverflow'],
  ['upstream_cx_destroy', 'upstreamCxDestroy'],
  ['upstream_cx_none_healthy', 'upstreamCxNoneHealthy'],
  ['membership_change', 'membershipChange'],
  ['lb_healthy_panic', 'lbHealthyPanic'],
] as const;

/** Responses by status class (one Prometheus family with a class label). */
export const CLUSTER_CLASSES = [
  ['upstream_rq_2xx', 'upstreamRq2xx'],
  ['upstream_rq_3xx', 'upstreamRq3xx'],
  ['upstream_rq_4xx', 'upstreamRq4xx'],
  ['upstream_rq_5xx', 'upstreamRq5xx'],
] as const;

/** Gauges: the two ClusterStats fields, then the host counts. */
export const CLUSTER_GAUGES = [
  ['upstream_rq_active', 'upstreamRqActive'],
  ['upstream_cx_active', 'upstreamCxActive'],
  ['membership_healthy', undefined],
  ['membership_total', undefined],
] as const;

/** Columns: CLUSTER_COUNTERS, CLUSTER_CLASSES, CLUSTER_GAUGES (the readers below keep this order). */
export const CLUSTER_TABLE: StatsTable = {
  id: 'cluster',
  scope: 'cluster',
  stats: [...CLUSTER_COUNTERS, ...CLUSTER_CLASSES, ...CLUSTER_GAUGES].map(([stat]) => stat),
  counters: CLUSTER_COUNTERS.length + CLUSTER_CLASSES.length,
};

/** `cluster.<name>.ssl.*`: rows only for clusters whose transport is TLS. Columns: SSL_COUNTERS. */
export const CLUSTER_SSL_TABLE: StatsTable = {
  id: 'cluster.ssl',
  scope: 'cluster',
  stats: SSL_COUNTERS.map(([stat]) => stat),
  counters: SSL_COUNTERS.length,
};

const HEALTHY = CLUSTER_TABLE.stats.length - 2;
const TOTAL = CLUSTER_TABLE.stats.length - 1;

/** One cluster's ClusterStats into its CLUSTER_TABLE row (all columns but the host counts). */
export function readClusterRow(st: ClusterStats, row: Float64Array): void {
  row[0] = st.upstreamRqTotal;
  row[1] = st.upstreamRqPendingOverflow;
  row[2] = st.upstreamRqTimeout;
  row[3] = st.upstreamRqRetry;
  row[4] = st.upstreamRqRetrySuccess;
  row[5] = st.upstreamRqRetryOverflow;
  row[6] = st.upstreamCxTotal;
  row[7] = st.upstreamCxConnectFail;
  row[8] = st.upstreamCxConnectTimeout;
  row[9] = st.upstreamCxOverflow;
  row[10] = st.upstreamCxDestroy;
  row[11] = st.upstreamCxNoneHealthy;
  row[12] = st.membershipChange;
  row[13] = st.lbHealthyPanic;
  row[14] = st.upstreamRq2xx;
  row[15] = st.upstreamRq3xx;
  row[16] = st.upstreamRq4xx;
  row[17] = st.upstreamRq5xx;
  row[18] = st.upstreamRqActive;
  row[19] = st.upstreamCxActive;
}

/** One TLS transport's SslStats into its CLUSTER_SSL_TABLE row. */
export function readSslRow(ssl: SslStats, row: Float64Array): void {
  row[0] = ssl.connectionError;
  row[1] = ssl.handshake;
  row[2] = ssl.failVerifyError;
  row[3] = ssl.failVerifySan;
  row[4] = ssl.failVerifyNoCert;
}

/** Clusters per batch before the source lets the scrape pause. */
const CLUSTERS_PER_STEP = 64;

/** cluster.<name>.* and cluster_manager.active_clusters. */
export function clusterStatsSource(clusters: { all(): readonly Cluster[] }): StatsSource {
  const row = new Float64Array(CLUSTER_TABLE.stats.length);
  const sslRow = new Float64Array(CLUSTER_SSL_TABLE.stats.length);
  return function* ({ gauge, table }) {
    const all = clusters.all();
    const rows = table(CLUSTER_TABLE);
    const sslRows = table(CLUSTER_SSL_TABLE);
    for (let i = 0; i < all.length; i++) {
      if ((i + 1) % CLUSTERS_PER_STEP === 0) yield;
      const c = all[i]!;
      readClusterRow(c.stats, row);
      const hosts = c.hosts;
      let healthy = 0;
      for (let h = 0; h < hosts.length; h++) if (hosts[h]!.healthy) healthy++;
      row[HEALTHY] = healthy;
      row[TOTAL] = hosts.length;
      rows.row(c.name, row);
      const ssl = c.transport.ssl;
      if (ssl !== undefined) {
        readSslRow(ssl, sslRow);
        sslRows.row(c.name, sslRow);
      }
    }
    gauge('cluster_manager.active_clusters', all.length);
  };
}
