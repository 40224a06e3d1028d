// How the --concurrency primary aggregates the workers' /stats and /stats/prometheus: counters and
// histogram buckets add up, per-process gauges that every worker reports identically (liveness,
// uptime, membership, connected_state) are shown once, comments and text lines pass through.
import { describe, expect, it } from 'vitest';
import { sumSeries } from '../../proxy/runtime/workers';

describe('sumSeries', () => {
  it('sums Envoy-style /stats counters and active gauges; keeps identical gauges once', () => {
    const w1 = 'cluster.a.upstream_rq_total: 5\ncluster.a.upstream_cx_active: 2\ncluster.a.membership_total: 3\nserver.live: 1\nserver.uptime: 10\ncontrol_plane.connected_state: 1\n';
    const w2 = 'cluster.a.upstream_rq_total: 7\ncluster.a.upstream_cx_active: 1\ncluster.a.membership_total: 3\nserver.live: 1\nserver.uptime: 11\ncontrol_plane.connected_state: 1\nlistener.x.downstream_cx_total: 4\n';
    expect(sumSeries([w1, w2], false)).toBe(
      'cluster.a.upstream_rq_total: 12\ncluster.a.upstream_cx_active: 3\ncluster.a.membership_total: 3\nserver.live: 1\nserver.uptime: 11\ncontrol_plane.connected_state: 1\nlistener.x.downstream_cx_total: 4\n',
    );
  });

  it('sums Prometheus series by name and labels, histogram buckets included', () => {
    const w = (n: number) =>
      [
        '# HELP istio_requests_total Requests',
        '# TYPE istio_requests_total counter',
        `istio_requests_total{response_code="200"} ${n}`,
        `istio_request_duration_milliseconds_bucket{le="1",response_code="200"} ${n}`,
        `istio_request_duration_milliseconds_sum{response_code="200"} ${n / 2}`,
        'envoy_server_live 1',
        `envoy_cluster_membership_healthy{envoy_cluster_name="a"} 2`,
        '',
      ].join('\n');
    const out = sumSeries([w(3), w(4)], true);
    expect(out).toBe(
      [
        '# HELP istio_requests_total Requests',
        '# TYPE istio_requests_total counter',
        'istio_requests_total{response_code="200"} 7',
        'istio_request_duration_milliseconds_bucket{le="1",response_code="200"} 7',
        'istio_request_duration_milliseconds_sum{response_code="200"} 3.5',
        'envoy_server_live 1',
        'envoy_cluster_membership_healthy{envoy_cluster_name="a"} 2',
        '',
      ].join('\n'),
    );
  });
});
