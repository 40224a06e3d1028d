/**
 * Zipkin tracing (issue 15 bug 3) in the shape of Envoy's jaeger-tracing / zipkin-tracing
 * examples: a front proxy whose HCM names `envoy.tracers.zipkin` (collector_endpoint
 * /api/v2/spans, HTTP_JSON, shared_span_context false, generate_request_id) routes to a service
 * sidecar (inbound, shared_span_context default true) in front of the app. Both export Zipkin v2
 * JSON through their collector cluster to a real HTTP collector started here, which checks what
 * a Zipkin server would: POST /api/v2/spans, a JSON array of spans. Checks the trace ids the
 * collector and the app see, B3 in (multi and single header) and out, the shared span id, and
 * 64- vs 128-bit new trace ids.
 */
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bootstrap, httpListener, routes, type StartedMeshlet, startMeshlet, staticCluster, stopAllMeshlets } from '../support/meshlet';
import { closeAll, type HttpEcho, startHttpEcho } from '../support/upstreams';
import { request } from './helpers';

const ZIPKIN = 'type.googleapis.com/envoy.config.trace.v3.ZipkinConfig';

interface ZipkinSpan {
  traceId: string;
  id: string;
  parentId?: string;
  kind?: string;
  name: string;
  timestamp: number;
  duration: number;
  localEndpoint: { serviceName: string };
  tags: Record<string, string>;
}

let collector: http.Server;
let collectorPort: number;
const received: ZipkinSpan[] = [];
const posts: { path: string; contentType: string | undefined }[] = [];
let app: HttpEcho;
let front: StartedMeshlet;
let service1: StartedMeshlet;

function zipkinTracing(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    tracing: {
      provider: {
        name: 'envoy.tracers.zipkin',
        typed_config: {
          '@type': ZIPKIN,
          collector_cluster: 'jaeger',
          collector_endpoint: '/api/v2/spans',
          collector_endpoint_version: 'HTTP_JSON',
          ...extra,
        },
      },
    },
  };
}

beforeAll(async () => {
  collector = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      posts.push({ path: req.url ?? '', contentType: req.headers['content-type'] });
      if (req.method === 'POST' && req.url === '/api/v2/spans') {
        received.push(...(JSON.parse(Buffer.concat(chunks).toString('utf8')) as ZipkinSpan[]));
        res.writeHead(202).end();
      } else res.writeHead(404).end();
    });
  });
  await new Promise<void>((r) => collector.listen(0, '127.0.0.1', r));
  collectorPort = (collector.address() as { port: number }).port;
  app = await startHttpEcho('service1-app');
  service1 = await startMeshlet(
    bootstrap(
      [
        {
          ...httpListener('service1', routes([{ match: { prefix: '/' }, route: { cluster: 'app' } }]), zipkinTracing()),
          traffic_direction: 'INBOUND',
        },
      ],
      [staticCluster('app', [app.port]), staticCluster('jaeger', [collectorPort])],
      { node: { id: 'service1', cluster: 'service1' } },
    ),
  );
  const toService1 = routes([{ match: { prefix: '/' }, route: { cluster: 'service1' } }]);
  front = await startMeshlet(
    bootstrap(
      [
        httpListener('front', toService1, { generate_request_id: true, ...zipkinTracing({ shared_span_context: false }) }),
        httpListener('front128', toService1, zipkinTracing({ shared_span_context: false, trace_id_128bit: true })),
      ],
      [staticCluster('service1', [service1.listenerPort('service1')]), staticCluster('jaeger', [collectorPort])],
      { node: { id: 'front-proxy', cluster: 'front-proxy' } },
    ),
  );
});

afterAll(async () => {
  await stopAllMeshlets();
  await closeAll();
  await new Promise((r) => collector.close(r));
});

/** The spans of one trace once both proxies exported theirs. */
async function spansOf(traceId: string, n = 2): Promise<ZipkinSpan[]> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    await Promise.all([front.server.telemetry.tracing.flush(), service1.server.telemetry.tracing.flush()]);
    const got = received.filter((s) => s.traceId === traceId);
    if (got.length >= n) return got;
    if (Date.now() > deadline) throw new Error(`trace ${traceId}: ${got.length} of ${n} spans; collector has ${JSON.stringify(received.map((s) => s.traceId))}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function appHeaders(body: string): Record<string, string> {
  return (JSON.parse(body) as { headers: Record<string, string> }).headers;
}

describe('envoy.tracers.zipkin (the jaeger-tracing example shape)', () => {
  it('joins an incoming B3 trace: the collector and the app get the caller\'s 64-bit trace id', async () => {
    const traceId = 'a1b2c3d4e5f60718';
    const callerSpan = '1122334455667788';
    const r = await request(front.listenerPort('front'), '/trace/1', {
      headers: { 'x-b3-traceid': traceId, 'x-b3-spanid': callerSpan, 'x-b3-sampled': '1' },
    });
    expect(r.status).toBe(200);
    const h = appHeaders(r.body);
    expect(h['x-b3-traceid']).toBe(traceId);
    expect(h['x-b3-sampled']).toBe('1');
    expect(h.traceparent).toBeUndefined();
    const spans = await spansOf(traceId);
    expect(posts.every((p) => p.path === '/api/v2/spans' && p.contentType === 'application/json')).toBe(true);
    const f = spans.find((s) => s.localEndpoint.serviceName === 'front-proxy')!;
    const s1 = spans.find((s) => s.localEndpoint.serviceName === 'service1')!;
    // No traffic_direction: Envoy's ingress operation, a SERVER span, with its own id
    // (shared_span_context false on the front proxy).
    expect(f.kind).toBe('SERVER');
    expect(f.parentId).toBe(callerSpan);
    expect(f.id).not.toBe(callerSpan);
    expect(f.id).toMatch(/^[0-9a-f]{16}$/);
    // service1 shares its caller's span context (the default): same id, same parent.
    expect(s1.kind).toBe('SERVER');
    expect(s1.id).toBe(f.id);
    expect(s1.parentId).toBe(callerSpan);
    // The app sees the shared span as its parent.
    expect(h['x-b3-spanid']).toBe(f.id);
    expect(h['x-b3-parentspanid']).toBe(callerSpan);
    expect(f.duration).toBeGreaterThan(0);
    expect(f.tags['http.response.status_code']).toBe('200');
  });

  it('accepts the single b3 header with a 128-bit trace id and keeps its width', async () => {
    const traceId = '0af7651916cd43dd8448eb211c80319c';
    const r = await request(front.listenerPort('front'), '/trace/2', { headers: { b3: `${traceId}-b7ad6b7169203331-1` } });
    expect(r.status).toBe(200);
    expect(appHeaders(r.body)['x-b3-traceid']).toBe(traceId);
    const spans = await spansOf(traceId);
    expect(spans.find((s) => s.localEndpoint.serviceName === 'front-proxy')!.parentId).toBe('b7ad6b7169203331');
  });

  it('starts new traces with 64-bit ids, or 128-bit ones with trace_id_128bit', async () => {
    const r64 = await request(front.listenerPort('front'), '/trace/3');
    const t64 = appHeaders(r64.body)['x-b3-traceid']!;
    expect(t64).toMatch(/^[0-9a-f]{16}$/);
    const spans = await spansOf(t64);
    expect(spans.find((s) => s.localEndpoint.serviceName === 'front-proxy')!.parentId).toBeUndefined();
    const r128 = await request(front.listenerPort('front128'), '/trace/4');
    const t128 = appHeaders(r128.body)['x-b3-traceid']!;
    expect(t128).toMatch(/^[0-9a-f]{32}$/);
    expect(t128.startsWith('0000000000000000')).toBe(false);
    await spansOf(t128);
  });

  it('does not export a trace the caller did not sample, and says so downstream', async () => {
    const traceId = 'ffeeddccbbaa9988';
    const r = await request(front.listenerPort('front'), '/trace/5', {
      headers: { 'x-b3-traceid': traceId, 'x-b3-spanid': '0102030405060708', 'x-b3-sampled': '0' },
    });
    expect(appHeaders(r.body)['x-b3-sampled']).toBe('0');
    await Promise.all([front.server.telemetry.tracing.flush(), service1.server.telemetry.tracing.flush()]);
    // A sampled trace sent after it arrives, so the unsampled one had its chance to be exported.
    const after = appHeaders((await request(front.listenerPort('front'), '/trace/6')).body)['x-b3-traceid']!;
    await spansOf(after);
    expect(received.filter((s) => s.traceId === traceId)).toEqual([]);
  });
});
