/**
 * Issue 16 item 1: Istio's `istio.stats` filter drives meshlet's Istio metrics.
 *
 * - Istio's private config types decode from wire bytes written here by field number (the
 *   numbers of istio/proxy's configs), independently of meshlet's descriptors.
 * - Every form istiod sends is accepted (native, TypedStruct, the Wasm stats plugin with its JSON
 *   configuration) for HTTP and network filters; another Wasm module is rejected with the reason.
 * - The config is honoured: dropped metrics, tags removed and added, SERVER_GATEWAY,
 *   disable_host_header_fallback, and tcp_reporting_duration on a real long TCP connection.
 */
import net from 'node:net';
import * as protobuf from 'protobufjs';
import { afterAll, describe, expect, it } from 'vitest';
import { Issues, Reader } from '../../common/reader';
import { decodeIstioStats } from '../../proxy/config/filters/istio-stats';
import { decodeListener } from '../../proxy/config/envoy';
import { StreamInfo } from '../../proxy/http/stream-info';
import { createRegistries } from '../../proxy/registry';
import { HttpIstioReporter, workloadFromNode } from '../../proxy/telemetry/istio';
import { MeshletMetrics } from '../../proxy/telemetry/metrics';
import { anyToJson } from '../../xds-client/proto-json';
import { bootstrap, startMeshlet, staticCluster, stopAllMeshlets } from '../support/meshlet';
import { closeAll, startTcpEcho } from '../support/upstreams';
import { parsePrometheus, scrape, select, sum } from '../telemetry/helpers';

afterAll(async () => {
  await stopAllMeshlets();
  await closeAll();
});

const TP = 'type.googleapis.com/';
const key = (field: number, wire: number) => (field << 3) | wire;

describe("Istio's private config types from wire bytes", () => {
  it('stats.PluginConfig, MetadataExchange and the ALPN FilterConfig decode by field number', () => {
    const w = protobuf.Writer.create();
    w.uint32(key(6, 0)).bool(true); // disable_host_header_fallback
    w.uint32(key(7, 2)).fork().uint32(key(1, 0)).int64(2).ldelim(); // tcp_reporting_duration 2s
    w.uint32(key(8, 2)).fork(); // metrics[0]
    w.uint32(key(1, 2)).fork().uint32(key(1, 2)).string('api').uint32(key(2, 2)).string("request.headers['x-api']").ldelim();
    w.uint32(key(2, 2)).string('requests_total');
    w.uint32(key(3, 2)).string('destination_principal');
    w.ldelim();
    w.uint32(key(10, 0)).int32(1); // SERVER_GATEWAY
    expect(anyToJson({ type_url: `${TP}stats.PluginConfig`, value: w.finish() })).toEqual({
      '@type': `${TP}stats.PluginConfig`,
      disable_host_header_fallback: true,
      tcp_reporting_duration: '2s',
      metrics: [{ dimensions: { api: "request.headers['x-api']" }, name: 'requests_total', tags_to_remove: ['destination_principal'] }],
      reporter: 'SERVER_GATEWAY',
    });
    const mx = protobuf.Writer.create().uint32(key(1, 2)).string('istio-peer-exchange').finish();
    expect(anyToJson({ type_url: `${TP}envoy.tcp.metadataexchange.config.MetadataExchange`, value: mx })).toMatchObject({ protocol: 'istio-peer-exchange' });
    const alpn = protobuf.Writer.create();
    alpn.uint32(key(1, 2)).fork().uint32(key(1, 0)).int32(2).uint32(key(2, 2)).string('istio-h2').ldelim();
    expect(anyToJson({ type_url: `${TP}istio.envoy.config.filter.http.alpn.v2alpha1.FilterConfig`, value: alpn.finish() })).toMatchObject({
      alpn_override: [{ upstream_protocol: 'HTTP2', alpn_override: ['istio-h2'] }],
    });
  });
});

const ctx = () => ({ httpFilters: createRegistries().httpFilters });
const TCP = { name: 'envoy.filters.network.tcp_proxy', typed_config: { '@type': `${TP}envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy`, stat_prefix: 's', cluster: 'c' } };
const ROUTER = { name: 'envoy.filters.http.router', typed_config: { '@type': `${TP}envoy.extensions.filters.http.router.v3.Router` } };
const wasm = (kind: 'http' | 'network', rootId: string, configuration: string, code = 'envoy.wasm.stats') => ({
  '@type': `${TP}envoy.extensions.filters.${kind}.wasm.v3.Wasm`,
  config: {
    root_id: rootId,
    vm_config: { vm_id: `stats_${kind}`, runtime: 'envoy.wasm.runtime.null', code: { local: { inline_string: code } } },
    configuration: { '@type': `${TP}google.protobuf.StringValue`, value: configuration },
  },
});

function listenerWith(networkStats: unknown, httpStats: unknown) {
  return {
    name: 'l',
    address: { socket_address: { address: '127.0.0.1', port_value: 1 } },
    filter_chains: [
      { name: 'tcp', filter_chain_match: { destination_port: 2 }, filters: [{ name: 'istio.stats', typed_config: networkStats }, TCP] },
      {
        name: 'http',
        filters: [
          {
            name: 'envoy.filters.network.http_connection_manager',
            typed_config: {
              '@type': `${TP}envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager`,
              stat_prefix: 'h',
              route_config: { name: 'r', virtual_hosts: [] },
              http_filters: [{ name: 'istio.stats', typed_config: httpStats }, ROUTER],
            },
          },
        ],
      },
    ],
  };
}

describe('istio.stats in every form istiod writes', () => {
  it('accepts the native, TypedStruct and Wasm forms with the same meaning', () => {
    const forms: [unknown, unknown][] = [
      [{ '@type': `${TP}stats.PluginConfig`, disable_host_header_fallback: true }, { '@type': `${TP}stats.PluginConfig`, disable_host_header_fallback: true }],
      [
        { '@type': `${TP}udpa.type.v1.TypedStruct`, type_url: `${TP}stats.PluginConfig`, value: { disable_host_header_fallback: true } },
        { '@type': `${TP}xds.type.v3.TypedStruct`, type_url: `${TP}stats.PluginConfig`, value: { disable_host_header_fallback: true } },
      ],
      [
        wasm('network', 'stats_inbound', '{"debug":"false","stat_prefix":"istio","disable_host_header_fallback":true}'),
        wasm('http', 'stats_outbound', '{"debug":"false","stat_prefix":"istio","disable_host_header_fallback":true}'),
      ],
    ];
    for (const [net, http] of forms) {
      const res = decodeListener(listenerWith(net, http), ctx());
      expect(res.errors).toEqual([]);
      const chains = res.value!.filterChains;
      const tcpStats = chains[0]!.filters[0]!;
      expect(tcpStats).toMatchObject({ kind: 'istio_stats', stats: { disableHostHeaderFallback: true } });
      const hcm = chains[1]!.filters[0]! as unknown as { hcm: { httpFilters: { config: unknown }[] } };
      expect(hcm.hcm.httpFilters[0]!.config).toMatchObject({ kind: 'istio_stats', disableHostHeaderFallback: true });
    }
  });

  it('rejects Wasm modules other than Istio stats with the reason, at root_id', () => {
    const res = decodeListener(listenerWith(wasm('network', 'my_root', '{}', 'my.wasm'), wasm('http', 'stats_outbound', '{}')), ctx());
    expect(res.errors).toEqual([
      {
        path: 'filter_chains[0].filters[0].typed_config.config.root_id',
        message:
          'Wasm network filter "my_root" (my.wasm) is not supported: meshlet runs no Wasm; only Istio\'s stats (root_id stats_inbound/stats_outbound) and metadata_exchange plugins are accepted, mapped onto native filters',
      },
    ]);
  });
});

function decodeStats(raw: Record<string, unknown>) {
  const issues = new Issues();
  const cfg = decodeIstioStats(new Reader(raw, '', issues));
  return { cfg, issues };
}

const LOCAL = {
  workload: workloadFromNode({
    id: 'n',
    cluster: 'c',
    metadata: { WORKLOAD_NAME: 'reviews-v1', NAMESPACE: 'default', LABELS: { app: 'reviews', version: 'v1' } },
    userAgentName: '',
    userAgentVersion: '',
  }),
  localPrincipal: () => '',
};

function stream(authority: string, headers: string[] = []): StreamInfo {
  const info = new StreamInfo({ id: 1, remoteAddress: '127.0.0.1', remotePort: 1, localAddress: '127.0.0.1', localPort: 2 }, 'HTTP/1.1');
  info.authority = authority;
  info.method = 'GET';
  info.responseCode = 200;
  info.clusterName = 'inbound|9080||';
  info.requestHeaders = headers;
  info.lastDownstreamTxByteMs = 2;
  return info;
}

describe('istio.stats honoured by the Istio metrics', () => {
  it('drops metrics, removes and adds dimensions (with request headers), as configured', async () => {
    const { cfg, issues } = decodeStats({
      metrics: [
        { name: 'request_bytes', drop: true },
        { name: 'requests_total', tags_to_remove: ['destination_principal', 'source_principal'], dimensions: { api: "request.headers['x-api']", team: "'payments'" } },
        { dimensions: { request_protocol: 'request.method' } },
        { name: 'requests_total', dimensions: { odd: 'request.size * 2' } },
      ],
    });
    expect(issues.errors).toEqual([]);
    expect(issues.warnings.map((w) => w.path)).toEqual(['metrics[3].dimensions.odd']);
    const metrics = new MeshletMetrics();
    const r = new HttpIstioReporter(metrics, 'destination', LOCAL, { stats: cfg });
    r.record(stream('reviews:9080', ['x-api', 'v2']));
    r.record(stream('reviews:9080', ['x-api', 'v2']));
    r.record(stream('reviews:9080', ['x-api', 'v3']));
    const s = parsePrometheus(await metrics.prometheus());
    const req = select(s, 'istio_requests_total');
    expect(req).toHaveLength(2);
    const v2 = select(s, 'istio_requests_total', { api: 'v2' })[0]!;
    expect(v2.value).toBe(2);
    expect(v2.labels).toMatchObject({ team: 'payments', odd: 'unknown', request_protocol: 'GET', reporter: 'destination' });
    expect(v2.labels).not.toHaveProperty('destination_principal');
    expect(v2.labels).not.toHaveProperty('source_principal');
    expect(sum(s, 'istio_requests_total', { api: 'v3' })).toBe(1);
    // Dropped: no series at all; the other histograms keep the standard tags plus the override.
    expect(select(s, 'istio_request_bytes_count')).toHaveLength(0);
    const dur = select(s, 'istio_request_duration_milliseconds_count')[0]!;
    expect(dur.labels).toMatchObject({ request_protocol: 'GET', destination_principal: 'unknown' });
    expect(dur.labels).not.toHaveProperty('api');
    expect(dur.value).toBe(3);
  });

  it('disable_host_header_fallback: destination_service from the cluster, else the local canonical service', async () => {
    for (const disable of [false, true]) {
      const metrics = new MeshletMetrics();
      const r = new HttpIstioReporter(metrics, 'destination', LOCAL, { stats: decodeStats({ disable_host_header_fallback: disable }).cfg });
      r.record(stream('evil.example.com'));
      const one = select(parsePrometheus(await metrics.prometheus()), 'istio_requests_total')[0]!;
      expect(one.labels.destination_service).toBe(disable ? 'reviews' : 'evil.example.com');
    }
    // Cluster metadata (istio.services) wins over the Host header.
    const metrics = new MeshletMetrics();
    const md = { istio: { services: [{ host: 'reviews.default.svc.cluster.local', name: 'reviews', namespace: 'default' }] } };
    const r = new HttpIstioReporter(metrics, 'destination', LOCAL, { clusterMetadata: () => md });
    r.record(stream('evil.example.com'));
    const one = select(parsePrometheus(await metrics.prometheus()), 'istio_requests_total')[0]!;
    expect(one.labels).toMatchObject({ destination_service: 'reviews.default.svc.cluster.local', destination_service_name: 'reviews', destination_service_namespace: 'default' });
  });

  it('SERVER_GATEWAY reports as destination with the upstream peer as the destination workload', async () => {
    const metrics = new MeshletMetrics();
    const r = new HttpIstioReporter(metrics, 'source', LOCAL, { stats: decodeStats({ reporter: 'SERVER_GATEWAY' }).cfg });
    expect(r.kind).toBe('gateway');
    const info = stream('reviews:9080');
    info.upstreamPeer = { id: '', name: '', workload: 'ratings-v1', namespace: 'default', cluster: 'Kubernetes', app: 'ratings', version: 'v1', canonicalService: 'ratings', canonicalRevision: 'v1', owner: '' };
    r.record(info);
    const one = select(parsePrometheus(await metrics.prometheus()), 'istio_requests_total')[0]!;
    expect(one.labels).toMatchObject({
      reporter: 'destination',
      destination_workload: 'ratings-v1',
      destination_canonical_service: 'ratings',
      destination_canonical_revision: 'v1',
      destination_app: 'unknown',
      destination_workload_namespace: 'default',
    });
  });
});

describe('tcp_reporting_duration', () => {
  it('reports the bytes of a long TCP connection while it is open, and the close once', async () => {
    const echo = await startTcpEcho();
    const stats = { '@type': `${TP}stats.PluginConfig`, tcp_reporting_duration: '0.1s' };
    const listener = {
      name: 'tcp_in',
      address: { socket_address: { address: '127.0.0.1', port_value: 0 } },
      traffic_direction: 'INBOUND',
      filter_chains: [{ filters: [{ name: 'istio.stats', typed_config: stats }, { ...TCP, typed_config: { ...TCP.typed_config, cluster: 'echo' } }] }],
    };
    const m = await startMeshlet(bootstrap([listener], [staticCluster('echo', [echo.port])]));
    const s = net.connect(m.listenerPort('tcp_in'), '127.0.0.1');
    await new Promise((r) => s.once('connect', r));
    let got = 0;
    s.on('data', (d: Buffer) => (got += d.length));
    s.write('x'.repeat(100));
    const deadline = Date.now() + 5000;
    let open: ReturnType<typeof select> = [];
    while (Date.now() < deadline) {
      const samples = await scrape(m.adminPort);
      open = select(samples, 'istio_tcp_received_bytes_total');
      if (open.length > 0 && got === 100) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    // Still open: bytes and the open are reported, the close is not.
    let samples = await scrape(m.adminPort);
    expect(sum(samples, 'istio_tcp_received_bytes_total', { reporter: 'destination' })).toBe(100);
    expect(sum(samples, 'istio_tcp_connections_opened_total')).toBe(1);
    expect(sum(samples, 'istio_tcp_connections_closed_total')).toBe(0);
    s.write('y'.repeat(50));
    s.end();
    await new Promise((r) => s.once('close', r));
    for (let i = 0; i < 100; i++) {
      samples = await scrape(m.adminPort);
      if (sum(samples, 'istio_tcp_connections_closed_total') >= 1) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(sum(samples, 'istio_tcp_received_bytes_total')).toBe(150);
    expect(sum(samples, 'istio_tcp_sent_bytes_total')).toBe(150);
    expect(sum(samples, 'istio_tcp_connections_opened_total')).toBe(1);
    expect(sum(samples, 'istio_tcp_connections_closed_total')).toBe(1);
  });
});
