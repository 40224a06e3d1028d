/**
 * Route-level tracing (envoy.config.route.v3.Tracing): a route's sampling percentages replace the
 * HCM's, and its custom tags are added to the HCM's (the route's value wins for a shared tag). Real
 * HTTP through meshlet to an OTLP/HTTP receiver on loopback.
 */
import { afterAll, expect, it } from 'vitest';
import { bootstrap, httpListener, routes, startMeshlet, staticCluster, stopAllMeshlets } from '../support/meshlet';
import { closeAll, startHttpEcho } from '../support/upstreams';
import { request } from './helpers';
import { startOtlpHttpReceiver } from './otlp-receiver';

const OTEL = 'type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig';

afterAll(async () => {
  await stopAllMeshlets();
  await closeAll();
});

it('a route overrides random_sampling and adds its custom tags to the HCM ones', async () => {
  const app = await startHttpEcho('app');
  const rx = await startOtlpHttpReceiver();
  try {
    const m = await startMeshlet(
      bootstrap(
        [
          {
            ...httpListener(
              'inbound_rt',
              routes([
                { match: { prefix: '/never' }, route: { cluster: 'app' }, tracing: { random_sampling: { value: 0 } } },
                {
                  match: { prefix: '/client' },
                  route: { cluster: 'app' },
                  tracing: { random_sampling: { value: 0 }, client_sampling: { value: 100 } },
                },
                {
                  match: { prefix: '/' },
                  route: { cluster: 'app' },
                  tracing: {
                    custom_tags: [
                      { tag: 'route.tag', literal: { value: 'yes' } },
                      { tag: 'shared', request_header: { name: 'x-shared', default_value: 'route-default' } },
                    ],
                  },
                },
              ]),
              {
                tracing: {
                  random_sampling: { value: 100 },
                  custom_tags: [
                    { tag: 'hcm.tag', literal: { value: 'hcm' } },
                    { tag: 'shared', literal: { value: 'hcm-value' } },
                  ],
                  provider: {
                    name: 'envoy.tracers.opentelemetry',
                    typed_config: {
                      '@type': OTEL,
                      http_service: { http_uri: { uri: 'http://c:4318/v1/traces', cluster: 'otel-http', timeout: '2s' } },
                    },
                  },
                },
              },
            ),
            traffic_direction: 'INBOUND',
          },
        ],
        [staticCluster('app', [app.port]), staticCluster('otel-http', [rx.port])],
      ),
    );
    const flags = (): { traceId: string; flags: string } => {
      const tp = String(app.requests[app.requests.length - 1]!.headers.traceparent ?? '');
      const [, traceId, , f] = tp.split('-');
      return { traceId: traceId!, flags: f! };
    };
    const port = m.listenerPort('inbound_rt');
    expect((await request(port, '/never')).status).toBe(200);
    const never = flags();
    expect(never.flags).toBe('00');
    expect((await request(port, '/client')).status).toBe(200);
    expect(flags().flags).toBe('00');
    expect((await request(port, '/client', { headers: { 'x-client-trace-id': 'c1' } })).status).toBe(200);
    const client = flags();
    expect(client.flags).toBe('01');
    expect((await request(port, '/tags')).status).toBe(200);
    const tagged = flags();
    expect(tagged.flags).toBe('01');
    await m.server.telemetry.tracing.flush();
    await rx.waitFor((s) => s.traceId === client.traceId, 1);
    const [span] = await rx.waitFor((s) => s.traceId === tagged.traceId, 1);
    expect(span!.attributes['hcm.tag']).toBe('hcm');
    expect(span!.attributes['route.tag']).toBe('yes');
    expect(span!.attributes['shared']).toBe('route-default');
    expect(rx.spans.filter((s) => s.traceId === never.traceId)).toHaveLength(0);
  } finally {
    await rx.close();
  }
});

it('metadata custom tags read the upstream host\'s filter metadata (default when absent)', async () => {
  const app = await startHttpEcho('app-md');
  const rx = await startOtlpHttpReceiver();
  try {
    const cluster = {
      name: 'app',
      type: 'STATIC',
      connect_timeout: '1s',
      load_assignment: {
        cluster_name: 'app',
        endpoints: [
          {
            lb_endpoints: [
              {
                endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: app.port } } },
                metadata: { filter_metadata: { istio: { workload: { name: 'reviews-v1', port: 9080 } } } },
              },
            ],
          },
        ],
      },
    };
    const md = (tag: string, path: string[], def?: string) => ({
      tag,
      metadata: { kind: { host: {} }, metadata_key: { key: 'istio', path: path.map((key) => ({ key })) }, ...(def ? { default_value: def } : {}) },
    });
    const m = await startMeshlet(
      bootstrap(
        [
          {
            ...httpListener('outbound_md', routes([{ match: { prefix: '/' }, route: { cluster: 'app' } }]), {
              tracing: {
                random_sampling: { value: 100 },
                custom_tags: [md('host.workload', ['workload', 'name']), md('host.port', ['workload', 'port']), md('host.none', ['nope'], 'dflt')],
                provider: {
                  name: 'envoy.tracers.opentelemetry',
                  typed_config: {
                    '@type': OTEL,
                    http_service: { http_uri: { uri: 'http://c:4318/v1/traces', cluster: 'otel-http', timeout: '2s' } },
                  },
                },
              },
            }),
            traffic_direction: 'OUTBOUND',
          },
        ],
        [cluster, staticCluster('otel-http', [rx.port])],
      ),
    );
    expect((await request(m.listenerPort('outbound_md'), '/md')).status).toBe(200);
    const traceId = String(app.requests[app.requests.length - 1]!.headers.traceparent).split('-')[1]!;
    await m.server.telemetry.tracing.flush();
    const [span] = await rx.waitFor((s) => s.traceId === traceId, 1);
    expect(span!.attributes['host.workload']).toBe('reviews-v1');
    expect(span!.attributes['host.port']).toBe('9080');
    expect(span!.attributes['host.none']).toBe('dflt');
  } finally {
    await rx.close();
  }
});
