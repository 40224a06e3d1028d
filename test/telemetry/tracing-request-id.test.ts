/**
 * Envoy traces no request without an x-request-id (generate_request_id false and none sent: the
 * decision is "not traceable"), nor one whose x-request-id does not start with 8 hex digits,
 * whatever random_sampling says; a caller's sampled traceparent is
 * still followed (Envoy's OpenTelemetry tracer keeps the parent's sampled flag). Through a real
 * meshlet with an OTLP receiver.
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

it('does not sample a request without an x-request-id, but follows a sampled traceparent', async () => {
  const app = await startHttpEcho('app');
  const rx = await startOtlpHttpReceiver();
  try {
    const m = await startMeshlet(
      bootstrap(
        [
          httpListener('rid_trace', routes([{ match: { prefix: '/' }, route: { cluster: 'app' } }]), {
            generate_request_id: false,
            ...otlpHttpTracing(100, 'rid'),
          }),
        ],
        [staticCluster('app', [app.port]), staticCluster('otel-http', [rx.port])],
      ),
    );
    const port = m.listenerPort('rid_trace');
    const seen = (): string[] => String(app.requests[app.requests.length - 1]!.headers.traceparent ?? '').split('-');

    // No x-request-id: random_sampling 100 does not apply; the trace is still propagated, unsampled.
    expect((await request(port, '/none')).status).toBe(200);
    const unsampled = seen();
    expect(unsampled[3]).toBe('00');
    // Nor does x-client-trace-id force it.
    expect((await request(port, '/client', { headers: { 'x-client-trace-id': 'c1' } })).status).toBe(200);
    expect(seen()[3]).toBe('00');

    // An x-request-id that does not start with 8 hex digits is not traceable either.
    expect((await request(port, '/bad', { headers: { 'x-request-id': 'rid-not-hex' } })).status).toBe(200);
    expect(seen()[3]).toBe('00');
    expect((await request(port, '/short', { headers: { 'x-request-id': 'abc' } })).status).toBe(200);
    expect(seen()[3]).toBe('00');

    // With a UUID x-request-id from the caller: sampled at random_sampling 100.
    const rid = '7e57ab1e-0000-4000-8000-000000000001';
    expect((await request(port, '/rid', { headers: { 'x-request-id': rid } })).status).toBe(200);
    const sampled = seen();
    expect(sampled[3]).toBe('01');

    // No x-request-id but a sampled traceparent: the caller's decision is kept.
    const callerTrace = '4bf92f3577b34da6a3ce929d0e0e4736';
    const tp = `00-${callerTrace}-00f067aa0ba902b7-01`;
    expect((await request(port, '/parent', { headers: { traceparent: tp } })).status).toBe(200);
    const joined = seen();
    expect(joined[1]).toBe(callerTrace);
    expect(joined[3]).toBe('01');

    await m.server.telemetry.tracing.flush();
    expect(await rx.waitFor((s) => s.traceId === sampled[1], 1)).toHaveLength(1);
    expect(await rx.waitFor((s) => s.traceId === callerTrace, 1)).toHaveLength(1);
    expect(rx.spans.some((s) => s.traceId === unsampled[1])).toBe(false);
  } finally {
    await rx.close();
  }
});
