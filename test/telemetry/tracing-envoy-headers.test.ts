/**
 * Envoy's tracing headers on real HTTP through meshlet: the inbound route's decorator operation
 * goes back to the caller in x-envoy-decorator-operation (and names the outbound sidecar's client
 * span, which removes it), and x-envoy-force-trace forces the trace of an internal request that
 * has a traceable x-request-id (it is then returned), never of an external one.
 */
import { afterAll, expect, it } from 'vitest';
import { bootstrap, httpListener, routes, startMeshlet, staticCluster, stopAllMeshlets } from '../support/meshlet';
import { closeAll, startHttpEcho } from '../support/upstreams';
import { otlpHttpTracing, request } from './helpers';
import { startOtlpHttpReceiver } from './otlp-receiver';


afterAll(async () => {
  await stopAllMeshlets();
  await closeAll();
});

const tracing = otlpHttpTracing;

it("an inbound route's decorator goes back to the caller and names the outbound sidecar's span", async () => {
  const app = await startHttpEcho('app');
  const rx = await startOtlpHttpReceiver();
  try {
    const inbound = await startMeshlet(
      bootstrap(
        [
          {
            ...httpListener(
              'inbound_dec',
              routes([
                { match: { prefix: '/quiet' }, route: { cluster: 'app' }, decorator: { operation: 'quiet-in', propagate: false } },
                { match: { prefix: '/' }, route: { cluster: 'app' }, decorator: { operation: 'ratings-in' } },
              ]),
              { ...tracing(100, 'inbound'), use_remote_address: true },
            ),
            traffic_direction: 'INBOUND',
          },
        ],
        [staticCluster('app', [app.port]), staticCluster('otel-http', [rx.port])],
      ),
    );
    const outbound = await startMeshlet(
      bootstrap(
        [
          {
            ...httpListener('outbound_dec', routes([{ match: { prefix: '/' }, route: { cluster: 'in' } }]), tracing(100, 'outbound')),
            traffic_direction: 'OUTBOUND',
          },
        ],
        [staticCluster('in', [inbound.listenerPort('inbound_dec')]), staticCluster('otel-http', [rx.port])],
      ),
    );
    const inPort = inbound.listenerPort('inbound_dec');
    // Straight to the inbound sidecar: the route's operation comes back.
    const direct = await request(inPort, '/ratings/1');
    expect(direct.status).toBe(200);
    expect(direct.headers['x-envoy-decorator-operation']).toBe('ratings-in');
    // propagate: false keeps it in.
    expect((await request(inPort, '/quiet')).headers['x-envoy-decorator-operation']).toBeUndefined();
    // A caller that names the span itself gets nothing back (Envoy clears the decorated operation).
    const named = await request(inPort, '/ratings/2', { headers: { 'x-envoy-decorator-operation': 'caller-op' } });
    expect(named.headers['x-envoy-decorator-operation']).toBeUndefined();

    // Through the outbound sidecar: its client span takes the name, and the header stops there.
    const via = await request(outbound.listenerPort('outbound_dec'), '/ratings/3');
    expect(via.status).toBe(200);
    expect(via.headers['x-envoy-decorator-operation']).toBeUndefined();
    const tp = String(app.requests[app.requests.length - 1]!.headers.traceparent ?? '');
    const traceId = tp.split('-')[1]!;
    await Promise.all([inbound.server.telemetry.tracing.flush(), outbound.server.telemetry.tracing.flush()]);
    const spans = await rx.waitFor((s) => s.traceId === traceId, 2);
    expect(spans.map((s) => [s.kind, s.name]).sort()).toEqual([
      [2, 'ratings-in'],
      [3, 'ratings-in'],
    ]);
  } finally {
    await rx.close();
  }
});

it('x-envoy-force-trace forces the trace of an internal request only, and returns its x-request-id', async () => {
  const app = await startHttpEcho('app');
  const rx = await startOtlpHttpReceiver();
  try {
    // No use_remote_address: a request is internal when x-forwarded-for is one internal address.
    const m = await startMeshlet(
      bootstrap(
        [
          {
            ...httpListener('inbound_force', routes([{ match: { prefix: '/' }, route: { cluster: 'app' } }]), tracing(0, 'in')),
            traffic_direction: 'INBOUND',
          },
        ],
        [staticCluster('app', [app.port]), staticCluster('otel-http', [rx.port])],
      ),
    );
    const port = m.listenerPort('inbound_force');
    const sampled = (): string => String(app.requests[app.requests.length - 1]!.headers.traceparent ?? '').split('-')[3]!;
    const internal = { 'x-forwarded-for': '10.1.2.3' };

    const plain = await request(port, '/a', { headers: internal });
    expect(sampled()).toBe('00');
    expect(plain.headers['x-request-id']).toBeUndefined();

    const forced = await request(port, '/b', { headers: { ...internal, 'x-envoy-force-trace': 'true', 'x-request-id': '0a1b2c3d-1111-4222-8333-444455556666' } });
    expect(forced.status).toBe(200);
    expect(sampled()).toBe('01');
    expect(forced.headers['x-request-id']).toBe('0a1b2c3d-1111-4222-8333-444455556666');
    const traceId = String(app.requests[app.requests.length - 1]!.headers.traceparent).split('-')[1]!;
    await m.server.telemetry.tracing.flush();
    expect(await rx.waitFor((s) => s.traceId === traceId, 1)).toHaveLength(1);

    // An external caller (a public address in x-forwarded-for) cannot force a trace.
    const external = await request(port, '/c', {
      headers: { 'x-forwarded-for': '203.0.113.9', 'x-envoy-force-trace': 'true', 'x-request-id': 'rid-ext' },
    });
    expect(external.status).toBe(200);
    expect(sampled()).toBe('00');
    expect(app.requests[app.requests.length - 1]!.headers['x-envoy-force-trace']).toBeUndefined();
    expect(external.headers['x-request-id']).toBeUndefined();
  } finally {
    await rx.close();
  }
});
