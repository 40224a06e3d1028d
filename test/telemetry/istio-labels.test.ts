/**
 * Istio label rules in isolation: bounded cardinality (a flood of distinct authorities cannot
 * grow the series without bound), Istio's reporter choice, workload labels from node metadata
 * and namespaces from SPIFFE IDs.
 */
import { describe, expect, it } from 'vitest';
import type { NodeInfo } from '../../proxy/config/types';
import { StreamInfo } from '../../proxy/http/stream-info';
import { HttpIstioReporter, namespaceOfPrincipal, reporterFor, workloadFromNode } from '../../proxy/telemetry/istio';
import { MeshletMetrics } from '../../proxy/telemetry/metrics';
import { parsePrometheus, select, sum } from './helpers';

const CONN = { id: 1, remoteAddress: '127.0.0.1', remotePort: 5555, localAddress: '127.0.0.1', localPort: 8080 };

function stream(authority: string, code = 200): StreamInfo {
  const info = new StreamInfo(CONN, 'HTTP/1.1');
  info.authority = authority;
  info.method = 'GET';
  info.path = `/items/${authority}`;
  info.responseCode = code;
  info.lastDownstreamTxByteMs = 3;
  return info;
}

const LOCAL = {
  workload: workloadFromNode({ id: 'n', cluster: 'c', metadata: {}, userAgentName: '', userAgentVersion: '' }),
  localPrincipal: () => '',
};

describe('label cardinality', () => {
  it('folds new service labels into "unknown" once the cache is full, and counts it', async () => {
    const metrics = new MeshletMetrics();
    const r = new HttpIstioReporter(metrics, 'destination', LOCAL, { maxLabelSets: 3 });
    for (let i = 0; i < 50; i++) r.record(stream(`host-${i}.example`));
    const s = parsePrometheus(await metrics.prometheus());
    const series = select(s, 'istio_requests_total');
    expect(series).toHaveLength(4);
    expect(sum(s, 'istio_requests_total')).toBe(50);
    expect(sum(s, 'istio_requests_total', { destination_service: 'unknown' })).toBe(47);
    expect(sum(s, 'meshlet_metric_label_overflow_total')).toBe(47);
    // Response codes still split inside the overflow set.
    r.record(stream('another.example', 503));
    const after = parsePrometheus(await metrics.prometheus());
    expect(sum(after, 'istio_requests_total', { destination_service: 'unknown', response_code: '503' })).toBe(1);
  });

  it('never labels with the path; without cluster metadata the Host header is the service, as sent', async () => {
    const metrics = new MeshletMetrics();
    const r = new HttpIstioReporter(metrics, 'destination', LOCAL);
    r.record(stream('reviews.bookinfo.svc.cluster.local:9080'));
    const s = parsePrometheus(await metrics.prometheus());
    const one = select(s, 'istio_requests_total')[0]!;
    // istio-proxy's Host fallback keeps the header's value (port included); the server side's
    // service namespace is its own.
    expect(one.labels).toMatchObject({
      destination_service: 'reviews.bookinfo.svc.cluster.local:9080',
      destination_service_name: 'reviews.bookinfo.svc.cluster.local:9080',
      destination_service_namespace: 'unknown',
    });
    expect(Object.values(one.labels).some((v) => v.includes('/items'))).toBe(false);
  });
});

describe('Istio label sources', () => {
  it('chooses the reporter from traffic_direction, then from Istio listener names', () => {
    expect(reporterFor('INBOUND', [])).toBe('destination');
    expect(reporterFor('OUTBOUND', ['inbound_x'])).toBe('source');
    expect(reporterFor('UNSPECIFIED', ['virtualInbound', 'inbound_10.0.0.1_8080'])).toBe('destination');
    expect(reporterFor(undefined, ['outbound_0.0.0.0_80'])).toBe('source');
    // Undirected: the client side for Istio metrics, ingress (SERVER spans) for tracing.
    expect(reporterFor(undefined, ['listener_0'])).toBe('source');
    expect(reporterFor(undefined, ['listener_0'], 'destination')).toBe('destination');
  });

  it('reads Istio node metadata, "unknown" where absent', () => {
    const node: NodeInfo = {
      id: 'sidecar~10.0.0.1~reviews-v2-abc.bookinfo~bookinfo.svc.cluster.local',
      cluster: 'reviews.bookinfo',
      metadata: {
        WORKLOAD_NAME: 'reviews-v2',
        NAMESPACE: 'bookinfo',
        CLUSTER_ID: 'Kubernetes',
        LABELS: { app: 'reviews', version: 'v2', 'service.istio.io/canonical-name': 'reviews-svc' },
      },
      userAgentName: '',
      userAgentVersion: '',
    };
    expect(workloadFromNode(node)).toEqual({
      workload: 'reviews-v2',
      namespace: 'bookinfo',
      app: 'reviews',
      version: 'v2',
      canonicalService: 'reviews-svc',
      canonicalRevision: 'v2',
      cluster: 'Kubernetes',
    });
    expect(workloadFromNode({ ...node, metadata: {} })).toEqual({
      workload: 'unknown',
      namespace: 'unknown',
      app: 'unknown',
      version: 'unknown',
      canonicalService: 'unknown',
      canonicalRevision: 'latest',
      cluster: 'unknown',
    });
  });

  it('takes the namespace from a SPIFFE ID', () => {
    expect(namespaceOfPrincipal('spiffe://cluster.local/ns/bookinfo/sa/reviews')).toBe('bookinfo');
    expect(namespaceOfPrincipal('spiffe://example.org/workload')).toBe('unknown');
  });
});
