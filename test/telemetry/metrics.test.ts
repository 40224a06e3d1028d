/**
 * Metrics after real traffic through a static meshlet: Istio standard metrics with Istio's labels
 * (reporter from traffic_direction, workload labels from node metadata, response flags, Istio's
 * buckets), Envoy-style cluster/listener/server stats, the 15090 port, admin /stats in Envoy's
 * text format, and /reset_counters. Values are checked, not just names.
 */
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ISTIO_DURATION_BUCKETS_MS } from '../../proxy/telemetry/metrics';
import {
  bootstrap,
  httpListener,
  routes,
  type StartedMeshlet,
  startMeshlet,
  staticCluster,
  stopAllMeshlets,
  tcpListener,
} from '../support/meshlet';
import { closeAll, closedPort, type HttpEcho, startHttpEcho, startTcpEcho, type TcpEcho } from '../support/upstreams';
import { request, type Sample, scrape, select, sum } from './helpers';

const OUT_CLUSTER = 'outbound|80||backend.default.svc.cluster.local';

let m: StartedMeshlet;
let app: HttpEcho;
let tcpApp: TcpEcho;

beforeAll(async () => {
  app = await startHttpEcho('backend', (req, res) => {
    if (req.url?.startsWith('/missing')) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('nope');
      return true;
    }
  });
  tcpApp = await startTcpEcho();
  const dead = await closedPort();
  const outbound = {
    ...httpListener(
      'outbound_0.0.0.0_80',
      routes([
        { match: { prefix: '/dead' }, route: { cluster: 'dead' } },
        { match: { prefix: '/' }, route: { cluster: OUT_CLUSTER } },
      ]),
    ),
    traffic_direction: 'OUTBOUND',
  };
  const inbound = {
    ...httpListener('inbound_0.0.0.0_8080', routes([{ match: { prefix: '/' }, route: { cluster: 'inbound|8080||' } }])),
    traffic_direction: 'INBOUND',
  };
  m = await startMeshlet(
    bootstrap(
      [outbound, inbound, { ...tcpListener('tcp_out', 'tcp-backend'), traffic_direction: 'OUTBOUND' }],
      [
        staticCluster(OUT_CLUSTER, [app.port]),
        staticCluster('inbound|8080||', [app.port]),
        staticCluster('dead', [dead]),
        staticCluster('tcp-backend', [tcpApp.port]),
      ],
      {
        node: {
          id: 'front-v1-abc.default',
          cluster: 'front.default',
          metadata: { WORKLOAD_NAME: 'front-v1', NAMESPACE: 'default', LABELS: { app: 'front', version: 'v1' } },
        },
      },
    ),
    { telemetry: { statsPort: 0, portsHost: '127.0.0.1' } },
  );
});

afterAll(async () => {
  await stopAllMeshlets();
  await closeAll();
});

async function tcpRoundTrip(port: number, payload: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    let got = '';
    s.on('data', (d) => {
      got += d;
      if (got.length >= payload.length) s.end();
    });
    s.on('close', () => resolve(got));
    s.on('error', reject);
    s.write(payload);
  });
}

describe('Istio standard metrics after real traffic', () => {
  let samples: Sample[];

  beforeAll(async () => {
    const out = m.listenerPort('outbound_0.0.0.0_80');
    const host = { host: 'backend.default.svc.cluster.local' };
    for (let i = 0; i < 3; i++) expect((await request(out, `/ok/${i}`, { headers: host })).status).toBe(200);
    for (let i = 0; i < 2; i++) expect((await request(out, `/missing/${i}`, { headers: host })).status).toBe(404);
    expect((await request(out, '/dead', { headers: host })).status).toBe(503);
    const body = 'x'.repeat(1500);
    expect(
      (await request(out, '/upload', { method: 'POST', body, headers: { ...host, 'content-type': 'text/plain' } }))
        .status,
    ).toBe(200);
    const inb = m.listenerPort('inbound_0.0.0.0_8080');
    expect((await request(inb, '/in', { headers: { host: 'front.default.svc.cluster.local:8080' } })).status).toBe(200);
    expect(await tcpRoundTrip(m.listenerPort('tcp_out'), 'ping-12345')).toBe('ping-12345');
    // The TCP session is reported when both sides have closed; wait for it, bounded.
    for (let i = 0; i < 100; i++) {
      samples = await scrape(m.adminPort);
      if (sum(samples, 'istio_tcp_connections_closed_total') >= 1) break;
      await new Promise((r) => setTimeout(r, 20));
    }
  });

  it('counts outbound requests with reporter=source and the local workload as source', () => {
    const base = {
      reporter: 'source',
      source_workload: 'front-v1',
      source_workload_namespace: 'default',
      source_app: 'front',
      source_version: 'v1',
      destination_service: 'backend.default.svc.cluster.local',
      destination_service_name: 'backend',
      // istio-proxy takes the destination namespace from the peer (SPIFFE ID or exchanged
      // metadata): a plaintext upstream without metadata exchange leaves it unknown.
      destination_service_namespace: 'unknown',
      request_protocol: 'http',
      connection_security_policy: 'unknown',
    };
    expect(sum(samples, 'istio_requests_total', { ...base, response_code: '200', response_flags: '-' })).toBe(4);
    expect(sum(samples, 'istio_requests_total', { ...base, response_code: '404', response_flags: '-' })).toBe(2);
    const ok = select(samples, 'istio_requests_total', { ...base, response_code: '200' })[0]!;
    // Plaintext upstream: no peer identity, so the destination principal is unknown (as Istio).
    expect(ok.labels.destination_principal).toBe('unknown');
    expect(ok.labels.destination_workload).toBe('unknown');
    expect(ok.labels.grpc_response_status).toBe('');
  });

  it('labels a local failure with Envoy response flags', () => {
    const failed = select(samples, 'istio_requests_total', { reporter: 'source', response_code: '503' });
    expect(failed).toHaveLength(1);
    expect(failed[0]!.labels.response_flags).toBe('UF');
    expect(failed[0]!.value).toBe(1);
  });

  it('counts inbound requests with reporter=destination and the local workload as destination', () => {
    const s = select(samples, 'istio_requests_total', { reporter: 'destination' });
    expect(s).toHaveLength(1);
    expect(s[0]!.value).toBe(1);
    expect(s[0]!.labels).toMatchObject({
      destination_workload: 'front-v1',
      destination_app: 'front',
      source_workload: 'unknown',
      source_principal: 'unknown',
      // The inbound cluster names no istio.services: istio-proxy falls back to the Host header as sent.
      destination_service: 'front.default.svc.cluster.local:8080',
      destination_service_namespace: 'default',
      connection_security_policy: 'none',
      response_code: '200',
    });
  });

  it('never turns paths into labels', () => {
    for (const s of samples)
      for (const v of Object.values(s.labels)) expect(v).not.toMatch(/\/(ok|missing|upload|in)\b/);
  });

  it('observes durations in Istio buckets and body sizes', () => {
    const labels = { reporter: 'source', response_code: '200' };
    const les = select(samples, 'istio_request_duration_milliseconds_bucket', labels).map((s) => s.labels.le);
    expect(les).toEqual([...ISTIO_DURATION_BUCKETS_MS.map(String), '+Inf']);
    expect(sum(samples, 'istio_request_duration_milliseconds_count', labels)).toBe(4);
    expect(sum(samples, 'istio_request_duration_milliseconds_sum', labels)).toBeGreaterThan(0);
    // Request bodies: three GETs with none, one POST of 1500 bytes.
    expect(sum(samples, 'istio_request_bytes_sum', labels)).toBe(1500);
    expect(sum(samples, 'istio_request_bytes_count', labels)).toBe(4);
    // The echo answers with a JSON body: every 200 response had a body.
    expect(sum(samples, 'istio_response_bytes_sum', labels)).toBeGreaterThan(4 * 50);
    expect(select(samples, 'istio_response_bytes_bucket', { ...labels, le: '1' })[0]!.value).toBe(0);
  });

  it('reports TCP bytes and connections with request_protocol=tcp', () => {
    const labels = { reporter: 'source', request_protocol: 'tcp' };
    expect(sum(samples, 'istio_tcp_connections_opened_total', labels)).toBe(1);
    expect(sum(samples, 'istio_tcp_connections_closed_total', labels)).toBe(1);
    expect(sum(samples, 'istio_tcp_received_bytes_total', labels)).toBe(10);
    expect(sum(samples, 'istio_tcp_sent_bytes_total', labels)).toBe(10);
  });

  it('exports Envoy-style cluster, listener and server stats with the same counts', () => {
    const c = { envoy_cluster_name: OUT_CLUSTER };
    expect(sum(samples, 'envoy_cluster_upstream_rq_total', c)).toBe(6);
    expect(sum(samples, 'envoy_cluster_upstream_rq_xx_total', { ...c, envoy_response_code_class: '2' })).toBe(4);
    expect(sum(samples, 'envoy_cluster_upstream_rq_xx_total', { ...c, envoy_response_code_class: '4' })).toBe(2);
    expect(sum(samples, 'envoy_cluster_membership_healthy', c)).toBe(1);
    expect(select(samples, 'envoy_cluster_membership_total')).toHaveLength(0);
    expect(
      sum(samples, 'envoy_cluster_upstream_cx_connect_fail_total', { envoy_cluster_name: 'dead' }),
    ).toBeGreaterThanOrEqual(1);
    const port = m.listenerPort('outbound_0.0.0.0_80');
    expect(sum(samples, 'envoy_listener_downstream_cx_total', { envoy_listener_address: `127.0.0.1_${port}` })).toBe(7);
    expect(sum(samples, 'envoy_server_live')).toBe(1);
    expect(sum(samples, 'envoy_server_uptime')).toBeGreaterThanOrEqual(0);
    expect(sum(samples, 'envoy_server_memory_allocated')).toBeGreaterThan(1_000_000);
    expect(sum(samples, 'envoy_control_plane_connected_state')).toBe(0);
  });

  it('serves the same metrics on the stats port (Istio 15090)', async () => {
    const port = m.server.telemetry.statsPort;
    expect(port).toBeGreaterThan(0);
    const s = await scrape(port, '/stats/prometheus');
    expect(sum(s, 'istio_requests_total', { reporter: 'source', response_code: '404' })).toBe(2);
  });

  it('answers admin /stats in Envoy text format, with ?filter and ?format=json', async () => {
    const r = await request(m.adminPort, '/stats');
    expect(r.status).toBe(200);
    expect(r.body.split('\n')).toContain(`cluster.${OUT_CLUSTER}.upstream_rq_total: 6`);
    expect(r.body.split('\n')).toContain(`cluster.${OUT_CLUSTER}.upstream_rq_4xx: 2`);
    expect(r.body.split('\n')).toContain(`cluster.${OUT_CLUSTER}.membership_total: 1`);
    const f = await request(m.adminPort, '/stats?filter=^cluster\\.dead\\.');
    const lines = f.body.trim().split('\n');
    expect(lines.length).toBeGreaterThan(3);
    for (const l of lines) expect(l.startsWith('cluster.dead.')).toBe(true);
    const j = JSON.parse((await request(m.adminPort, '/stats?format=json&filter=server.live')).body) as {
      stats: { name: string; value: number }[];
    };
    expect(j.stats).toEqual([{ name: 'server.live', value: 1 }]);
  });
});

describe('POST /reset_counters', () => {
  it('is POST only, and zeroes counters while gauges keep their value', async () => {
    expect((await request(m.adminPort, '/reset_counters')).status).toBe(405);
    expect((await request(m.adminPort, '/reset_counters', { method: 'POST' })).status).toBe(200);
    const s = await scrape(m.adminPort);
    expect(sum(s, 'envoy_cluster_upstream_rq_total', { envoy_cluster_name: OUT_CLUSTER })).toBe(0);
    expect(sum(s, 'istio_requests_total')).toBe(0);
    expect(sum(s, 'envoy_cluster_membership_healthy', { envoy_cluster_name: OUT_CLUSTER })).toBe(1);
    // Counting resumes from zero.
    expect(
      (
        await request(m.listenerPort('outbound_0.0.0.0_80'), '/again', {
          headers: { host: 'backend.default.svc.cluster.local' },
        })
      ).status,
    ).toBe(200);
    const after = await scrape(m.adminPort);
    expect(sum(after, 'envoy_cluster_upstream_rq_total', { envoy_cluster_name: OUT_CLUSTER })).toBe(1);
    expect(sum(after, 'istio_requests_total', { reporter: 'source', response_code: '200' })).toBe(1);
  });
});
