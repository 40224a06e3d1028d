/**
 * Traces end to end: client → meshlet A (outbound, CLIENT spans) → meshlet B (inbound, SERVER
 * spans) → app, both exporting over OTLP/gRPC to a real receiver started here. Checks the
 * parent/child linkage across the two meshlets, the trace id the app sees in `traceparent`,
 * joining an incoming W3C or B3 trace, sampling (random, client and overall sampling and the caller's
 * decision), and
 * that a down collector costs dropped spans, not failed requests.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  bootstrap,
  httpListener,
  routes,
  type StartedMeshlet,
  socketAddress,
  startMeshlet,
  staticCluster,
  stopAllMeshlets,
} from '../support/meshlet';
import { closeAll, closedPort, type HttpEcho, startHttpEcho } from '../support/upstreams';
import { otlpHttpTracing, request, scrape, sum } from './helpers';
import { type OtlpReceiver, type ReceivedSpan, startOtlpHttpReceiver, startOtlpReceiver } from './otlp-receiver';

const OTEL = 'type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig';

let receiver: OtlpReceiver;
let app: HttpEcho;
let a: StartedMeshlet;
let b: StartedMeshlet;

/** HCM tracing with the provider inline (google_grpc target) or from the bootstrap. */
function hcmTracing(percent: number, target?: number): Record<string, unknown> {
  return {
    tracing: {
      random_sampling: { value: percent },
      ...(target !== undefined
        ? {
            provider: {
              name: 'envoy.tracers.opentelemetry',
              typed_config: {
                '@type': OTEL,
                grpc_service: {
                  google_grpc: { target_uri: `127.0.0.1:${target}`, stat_prefix: 'otel' },
                  timeout: '1s',
                },
                service_name: 'back-sidecar',
              },
            },
          }
        : {}),
    },
  };
}

beforeAll(async () => {
  receiver = await startOtlpReceiver();
  app = await startHttpEcho('app');
  // B: inbound sidecar of the app; its HCM names the collector itself.
  b = await startMeshlet(
    bootstrap(
      [
        {
          ...httpListener(
            'inbound_app',
            routes([{ match: { prefix: '/' }, route: { cluster: 'app' } }]),
            hcmTracing(100, receiver.port),
          ),
          traffic_direction: 'INBOUND',
        },
      ],
      [staticCluster('app', [app.port])],
      { node: { id: 'b', cluster: 'back' } },
    ),
  );
  // A: outbound sidecar of the client; the collector comes from the bootstrap's tracing.http
  // through an envoy_grpc cluster. /unsampled has a listener with random_sampling 0.
  a = await startMeshlet(
    bootstrap(
      [
        {
          ...httpListener('outbound_b', routes([{ match: { prefix: '/' }, route: { cluster: 'b' } }]), hcmTracing(100)),
          traffic_direction: 'OUTBOUND',
        },
        {
          ...httpListener(
            'outbound_b_unsampled',
            routes([{ match: { prefix: '/' }, route: { cluster: 'b' } }]),
            hcmTracing(0),
          ),
          traffic_direction: 'OUTBOUND',
        },
      ],
      [
        staticCluster('b', [b.listenerPort('inbound_app')]),
        staticCluster('otel-collector', [receiver.port], { typed_extension_protocol_options: h2Options() }),
      ],
      {
        node: { id: 'a', cluster: 'front' },
        tracing: {
          http: {
            name: 'envoy.tracers.opentelemetry',
            typed_config: {
              '@type': OTEL,
              grpc_service: { envoy_grpc: { cluster_name: 'otel-collector' }, timeout: '1s' },
              service_name: 'front-sidecar',
            },
          },
        },
      },
    ),
  );
});

function h2Options(): Record<string, unknown> {
  return {
    'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
      '@type': 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
      explicit_http_config: { http2_protocol_options: {} },
    },
  };
}

afterAll(async () => {
  await stopAllMeshlets();
  await closeAll();
  await receiver?.close();
});

async function flushBoth(): Promise<void> {
  await Promise.all([a.server.telemetry.tracing.flush(), b.server.telemetry.tracing.flush()]);
}

/** The traceparent the app saw for the last request. */
function appTraceparent(): { traceId: string; parentId: string; flags: string } {
  const tp = String(app.requests[app.requests.length - 1]!.headers.traceparent ?? '');
  const m = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/.exec(tp);
  if (!m) throw new Error(`app saw no valid traceparent: "${tp}"`);
  return { traceId: m[1]!, parentId: m[2]!, flags: m[3]! };
}

function inTrace(traceId: string): (s: ReceivedSpan) => boolean {
  return (s) => s.traceId === traceId;
}

describe('spans across two meshlets', () => {
  it('starts a trace when none came in, links B under A, and shows the trace to the app', async () => {
    const r = await request(a.listenerPort('outbound_b'), '/orders/42?x=1', {
      headers: { 'user-agent': 'trace-test' },
    });
    expect(r.status).toBe(200);
    const seen = appTraceparent();
    expect(seen.flags).toBe('01');
    await flushBoth();
    const spans = await receiver.waitFor(inTrace(seen.traceId), 2);
    expect(spans).toHaveLength(2);
    const client = spans.find((s) => s.kind === 3)!;
    const server = spans.find((s) => s.kind === 2)!;
    expect(client).toBeDefined();
    expect(server).toBeDefined();
    // A's span is the root; B's span is its child; the app's parent is B's span.
    expect(client.parentSpanId).toBe('');
    expect(server.parentSpanId).toBe(client.spanId);
    expect(seen.parentId).toBe(server.spanId);
    expect(client.resource['service.name']).toBe('front-sidecar');
    expect(server.resource['service.name']).toBe('back-sidecar');
    // OTel HTTP semantic conventions, plus Envoy's upstream tags.
    expect(client.name).toBe('GET');
    expect(client.attributes).toMatchObject({
      'http.request.method': 'GET',
      'url.path': '/orders/42',
      'http.response.status_code': 200,
      'user_agent.original': 'trace-test',
      upstream_cluster: 'b',
      upstream_address: `127.0.0.1:${b.listenerPort('inbound_app')}`,
      component: 'proxy',
      node_id: 'a',
    });
    expect(server.attributes).toMatchObject({
      upstream_cluster: 'app',
      'http.response.status_code': 200,
      node_id: 'b',
    });
    expect(client.statusCode).toBe(0);
  });

  it('joins an incoming W3C trace and passes tracestate through', async () => {
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    const callerSpan = '00f067aa0ba902b7';
    const r = await request(a.listenerPort('outbound_b'), '/w3c', {
      headers: { traceparent: `00-${traceId}-${callerSpan}-01`, tracestate: 'vendor=abc' },
    });
    expect(r.status).toBe(200);
    const seen = appTraceparent();
    expect(seen.traceId).toBe(traceId);
    expect(String(app.requests[app.requests.length - 1]!.headers.tracestate)).toBe('vendor=abc');
    await flushBoth();
    const spans = await receiver.waitFor(inTrace(traceId), 2);
    const client = spans.find((s) => s.kind === 3)!;
    const server = spans.find((s) => s.kind === 2)!;
    expect(client.parentSpanId).toBe(callerSpan);
    expect(server.parentSpanId).toBe(client.spanId);
    expect(seen.parentId).toBe(server.spanId);
  });

  it('accepts B3 headers and keeps them in step with the new span', async () => {
    const traceId = '463ac35c9f6413ad48485a3953bb6124';
    const r = await request(a.listenerPort('outbound_b'), '/b3', {
      headers: { 'x-b3-traceid': traceId, 'x-b3-spanid': 'a2fb4a1d1a96d312', 'x-b3-sampled': '1' },
    });
    expect(r.status).toBe(200);
    const seen = appTraceparent();
    expect(seen.traceId).toBe(traceId);
    const h = app.requests[app.requests.length - 1]!.headers;
    expect(h['x-b3-traceid']).toBe(traceId);
    expect(h['x-b3-spanid']).toBe(seen.parentId);
    await flushBoth();
    const spans = await receiver.waitFor(inTrace(traceId), 2);
    expect(spans.find((s) => s.kind === 3)!.parentSpanId).toBe('a2fb4a1d1a96d312');
  });

  it('follows the caller\'s "not sampled" and random_sampling 0: propagated, never exported', async () => {
    const traceId = '0af7651916cd43dd8448eb211c80319c';
    expect(
      (
        await request(a.listenerPort('outbound_b'), '/no', {
          headers: { traceparent: `00-${traceId}-b7ad6b7169203331-00` },
        })
      ).status,
    ).toBe(200);
    const first = appTraceparent();
    expect(first.traceId).toBe(traceId);
    expect(first.flags).toBe('00');
    expect((await request(a.listenerPort('outbound_b_unsampled'), '/zero')).status).toBe(200);
    const second = appTraceparent();
    expect(second.flags).toBe('00');
    // A sampled request after them: once its spans arrive, the unsampled ones would have too.
    expect((await request(a.listenerPort('outbound_b'), '/marker')).status).toBe(200);
    const marker = appTraceparent();
    await flushBoth();
    await receiver.waitFor(inTrace(marker.traceId), 2);
    expect(receiver.spans.filter(inTrace(traceId))).toHaveLength(0);
    expect(receiver.spans.filter(inTrace(second.traceId))).toHaveLength(0);
  });
});

describe('OTLP over HTTP/protobuf (http_service)', () => {
  it('exports to the collector cluster at the http_uri path', async () => {
    const httpReceiver = await startOtlpHttpReceiver();
    try {
      const m = await startMeshlet(
        bootstrap(
          [
            {
              ...httpListener(
                'inbound_http_otlp',
                routes([{ match: { prefix: '/' }, route: { cluster: 'app' } }]),
                otlpHttpTracing(100, 'http-exporting-sidecar'),
              ),
              traffic_direction: 'INBOUND',
            },
          ],
          [staticCluster('app', [app.port]), staticCluster('otel-http', [httpReceiver.port])],
        ),
      );
      expect((await request(m.listenerPort('inbound_http_otlp'), '/via-http')).status).toBe(200);
      const seen = appTraceparent();
      await m.server.telemetry.tracing.flush();
      const [span] = await httpReceiver.waitFor(inTrace(seen.traceId), 1);
      expect(span!.kind).toBe(2);
      expect(span!.spanId).toBe(seen.parentId);
      expect(span!.resource['service.name']).toBe('http-exporting-sidecar');
      expect(span!.attributes['url.path']).toBe('/via-http');
    } finally {
      await httpReceiver.close();
    }
  });
});

describe('HCM tracing custom_tags and max_path_tag_length (Istio writes both)', () => {
  it('puts literal, environment and request-header tags on the span and cuts the path', async () => {
    const httpReceiver = await startOtlpHttpReceiver();
    process.env.MESHLET_TEST_CLUSTER_ID = 'Kubernetes';
    try {
      const m = await startMeshlet(
        bootstrap(
          [
            {
              ...httpListener('inbound_tags', routes([{ match: { prefix: '/' }, route: { cluster: 'app' } }]), {
                tracing: {
                  random_sampling: { value: 100 },
                  max_path_tag_length: 12,
                  custom_tags: [
                    { tag: 'istio.canonical_service', literal: { value: 'productpage' } },
                    { tag: 'istio.cluster_id', environment: { name: 'MESHLET_TEST_CLUSTER_ID', default_value: 'unknown' } },
                    { tag: 'istio.mesh_id', environment: { name: 'MESHLET_TEST_UNSET_VARIABLE', default_value: 'cluster.local' } },
                    { tag: 'tenant', request_header: { name: 'X-Tenant', default_value: 'none' } },
                    { tag: 'missing', request_header: { name: 'x-absent', default_value: 'fallback' } },
                  ],
                  provider: {
                    name: 'envoy.tracers.opentelemetry',
                    typed_config: {
                      '@type': OTEL,
                      http_service: { http_uri: { uri: 'http://otel-collector:4318/v1/traces', cluster: 'otel-http', timeout: '2s' } },
                      service_name: 'tagging-sidecar',
                    },
                  },
                },
              }),
              traffic_direction: 'INBOUND',
            },
          ],
          [staticCluster('app', [app.port]), staticCluster('otel-http', [httpReceiver.port])],
        ),
      );
      expect((await request(m.listenerPort('inbound_tags'), '/a/rather/long/path?q=1', { headers: { 'x-tenant': 'blue' } })).status).toBe(200);
      const seen = appTraceparent();
      await m.server.telemetry.tracing.flush();
      const [span] = await httpReceiver.waitFor(inTrace(seen.traceId), 1);
      expect(span!.attributes['istio.canonical_service']).toBe('productpage');
      expect(span!.attributes['istio.cluster_id']).toBe('Kubernetes');
      expect(span!.attributes['istio.mesh_id']).toBe('cluster.local');
      expect(span!.attributes['tenant']).toBe('blue');
      expect(span!.attributes['missing']).toBe('fallback');
      expect(span!.attributes['url.path']).toBe('/a/rather/lo');
    } finally {
      delete process.env.MESHLET_TEST_CLUSTER_ID;
      await httpReceiver.close();
    }
  });
});

describe('client_sampling and overall_sampling (Envoy: x-client-trace-id forces a trace, overall caps all)', () => {
  it('traces x-client-trace-id requests at random_sampling 0, and nothing past overall_sampling 0', async () => {
    const httpReceiver = await startOtlpHttpReceiver();
    const listener = (name: string, sampling: Record<string, unknown>) => ({
      ...httpListener(name, routes([{ match: { prefix: '/' }, route: { cluster: 'app' } }]), {
        tracing: {
          ...sampling,
          provider: {
            name: 'envoy.tracers.opentelemetry',
            typed_config: {
              '@type': OTEL,
              http_service: { http_uri: { uri: 'http://otel-collector:4318/v1/traces', cluster: 'otel-http', timeout: '2s' } },
            },
          },
        },
      }),
      traffic_direction: 'INBOUND',
    });
    try {
      const m = await startMeshlet(
        bootstrap(
          [
            listener('client_only', { random_sampling: { value: 0 }, client_sampling: { value: 100 } }),
            listener('client_off', { random_sampling: { value: 0 }, client_sampling: { value: 0 } }),
            listener('overall_off', { random_sampling: { value: 100 }, client_sampling: { value: 100 }, overall_sampling: { value: 0 } }),
          ],
          [staticCluster('app', [app.port]), staticCluster('otel-http', [httpReceiver.port])],
        ),
      );
      const sent: Array<{ traceId: string; flags: string }> = [];
      const send = async (l: string, clientTraceId: boolean): Promise<void> => {
        const headers: Record<string, string> = clientTraceId ? { 'x-client-trace-id': 'abc' } : {};
        expect((await request(m.listenerPort(l), `/${l}`, { headers })).status).toBe(200);
        sent.push(appTraceparent());
      };
      await send('client_only', false);
      await send('client_off', true);
      await send('overall_off', true);
      await send('overall_off', false);
      expect(sent.map((x) => x.flags)).toEqual(['00', '00', '00', '00']);
      await send('client_only', true);
      expect(sent[4]!.flags).toBe('01');
      await m.server.telemetry.tracing.flush();
      const [span] = await httpReceiver.waitFor(inTrace(sent[4]!.traceId), 1);
      expect(span!.attributes['url.path']).toBe('/client_only');
      // The unsampled ones were queued before the sampled one: none of them reached the collector.
      for (const x of sent.slice(0, 4)) expect(httpReceiver.spans.filter(inTrace(x.traceId))).toHaveLength(0);
    } finally {
      await httpReceiver.close();
    }
  });
});

describe('route decorator (operation names the span; propagate sends it upstream on outbound)', () => {
  it('names both sides\' spans by the outbound route\'s decorator, and not past the inbound sidecar', async () => {
    const httpReceiver = await startOtlpHttpReceiver();
    const tracing = (direction: string) => otlpHttpTracing(100, direction);
    try {
      const inbound = await startMeshlet(
        bootstrap(
          [
            {
              // use_remote_address: the loopback caller is internal, so its x-envoy-* headers are kept.
              ...httpListener('inbound_deco', routes([{ match: { prefix: '/' }, route: { cluster: 'app' } }]), {
                ...tracing('inbound'),
                use_remote_address: true,
              }),
              traffic_direction: 'INBOUND',
            },
          ],
          [staticCluster('app', [app.port]), staticCluster('otel-http', [httpReceiver.port])],
        ),
      );
      const outbound = await startMeshlet(
        bootstrap(
          [
            {
              ...httpListener(
                'outbound_deco',
                routes([
                  { match: { prefix: '/quiet' }, route: { cluster: 'in' }, decorator: { operation: 'quiet-op', propagate: false } },
                  { match: { prefix: '/' }, route: { cluster: 'in' }, decorator: { operation: 'reviews:9080/*' } },
                ]),
                tracing('outbound'),
              ),
              traffic_direction: 'OUTBOUND',
            },
          ],
          [staticCluster('in', [inbound.listenerPort('inbound_deco')]), staticCluster('otel-http', [httpReceiver.port])],
        ),
      );
      const flush = () => Promise.all([inbound.server.telemetry.tracing.flush(), outbound.server.telemetry.tracing.flush()]);
      expect((await request(outbound.listenerPort('outbound_deco'), '/reviews/1')).status).toBe(200);
      const first = appTraceparent();
      expect(app.requests[app.requests.length - 1]!.headers['x-envoy-decorator-operation']).toBeUndefined();
      expect((await request(outbound.listenerPort('outbound_deco'), '/quiet')).status).toBe(200);
      const second = appTraceparent();
      await flush();
      const named = await httpReceiver.waitFor(inTrace(first.traceId), 2);
      expect(named.map((s) => [s.kind, s.name]).sort()).toEqual([
        [2, 'reviews:9080/*'],
        [3, 'reviews:9080/*'],
      ]);
      const quiet = await httpReceiver.waitFor(inTrace(second.traceId), 2);
      expect(quiet.map((s) => [s.kind, s.name]).sort()).toEqual([
        [2, 'GET'],
        [3, 'quiet-op'],
      ]);
    } finally {
      await httpReceiver.close();
    }
  });
});

describe('a down collector', () => {
  it('costs dropped spans, not failed requests', async () => {
    const dead = await closedPort();
    const m = await startMeshlet(
      bootstrap(
        [
          {
            ...httpListener(
              'outbound_app',
              routes([{ match: { prefix: '/' }, route: { cluster: 'app' } }]),
              hcmTracing(100, dead),
            ),
            traffic_direction: 'OUTBOUND',
          },
        ],
        [staticCluster('app', [app.port])],
        { admin: { address: socketAddress(0) } },
      ),
    );
    for (let i = 0; i < 5; i++) expect((await request(m.listenerPort('outbound_app'), `/r${i}`)).status).toBe(200);
    await m.server.telemetry.tracing.flush();
    const s = await scrape(m.adminPort);
    expect(sum(s, 'meshlet_tracing_spans_dropped_total')).toBe(5);
    expect(sum(s, 'meshlet_tracing_spans_exported_total')).toBe(0);
  });
});
