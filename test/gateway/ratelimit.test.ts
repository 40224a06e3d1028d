/**
 * Global rate limiting through a real meshlet against a real rate limit service implementing
 * envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit on @grpc/grpc-js (a fixed-window
 * counter per descriptor). Covers descriptors from route actions, OVER_LIMIT → 429 with RL and
 * x-envoy-ratelimited, service headers, failure_mode_deny, and config validation.
 */
import type * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeRouteConfiguration } from '../../proxy/config/envoy';
import { createRegistries } from '../../proxy/registry';
import { decodeRateLimit, rateLimitStats } from '../../proxy/http/filters/ratelimit';
import { closeServiceClients, rateLimitService } from '../../proxy/http/filters/service-client';
import type { StreamInfo } from '../../proxy/http/stream-info';
import { bootstrap, type StartedMeshlet, startMeshlet, staticCluster, stopAllMeshlets } from '../support/meshlet';
import { closeAll, closedPort, type HttpEcho, startHttpEcho } from '../support/upstreams';
import { decodeWith, filterListener, request, startGrpcServer, stopGrpcServer } from './helpers';

const RL_TYPE = 'type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit';

interface RlsRequest {
  domain: string;
  descriptors: { entries: { key: string; value: string }[] }[];
  hits_addend: number;
}

let m: StartedMeshlet;
let echo: HttpEcho;
let rls: grpc.Server | undefined;
const calls: RlsRequest[] = [];
const counts = new Map<string, number>();
const streams: StreamInfo[] = [];
/** Requests allowed per descriptor by the test service. */
const LIMIT = 2;

/** The descriptors as sent, without the proto defaults the server fills in. */
function entriesOf(r: RlsRequest): { entries: { key: string; value: string }[] }[] {
  return r.descriptors.map((d) => ({ entries: d.entries.map((e) => ({ key: e.key, value: e.value })) }));
}

function rlFilter(extra: Record<string, unknown>): Record<string, unknown> {
  return { name: 'envoy.filters.http.ratelimit', typed_config: { '@type': RL_TYPE, ...extra } };
}

beforeAll(async () => {
  echo = await startHttpEcho('app');
  const g = await startGrpcServer(rateLimitService().service, {
    ShouldRateLimit: (call: grpc.ServerUnaryCall<RlsRequest, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      const req = call.request;
      calls.push(req);
      let over = false;
      const statuses = req.descriptors.map((d) => {
        const key = `${req.domain}|${d.entries.map((e) => `${e.key}=${e.value}`).join(',')}`;
        const n = (counts.get(key) ?? 0) + Number(req.hits_addend || 1);
        counts.set(key, n);
        const code = n > LIMIT ? 'OVER_LIMIT' : 'OK';
        if (code === 'OVER_LIMIT') over = true;
        return {
          code,
          current_limit: { requests_per_unit: LIMIT, unit: 'MINUTE' },
          limit_remaining: Math.max(0, LIMIT - n),
          duration_until_reset: { seconds: 42 },
        };
      });
      cb(null, {
        overall_code: over ? 'OVER_LIMIT' : 'OK',
        statuses,
        response_headers_to_add: [{ key: 'x-rls-seen', value: String(calls.length) }],
        request_headers_to_add: [{ key: 'x-rls-checked', value: 'yes' }],
      });
    },
  });
  rls = g.server;
  const dead = await closedPort();
  const routes = [
    {
      match: { prefix: '/api' },
      route: {
        cluster: 'app',
        rate_limits: [
          { actions: [{ generic_key: { descriptor_value: 'api' } }, { request_headers: { header_name: 'x-tenant', descriptor_key: 'tenant' } }] },
          { actions: [{ remote_address: {} }, { destination_cluster: {} }] },
          {
            actions: [
              {
                header_value_match: {
                  descriptor_value: 'premium',
                  headers: [{ name: 'x-plan', string_match: { exact: 'premium' } }],
                },
              },
            ],
          },
          { stage: 1, actions: [{ generic_key: { descriptor_value: 'other-stage' } }] },
        ],
      },
    },
    { match: { prefix: '/' }, route: { cluster: 'app' } },
  ];
  const svc = (cluster: string) => ({ grpc_service: { envoy_grpc: { cluster_name: cluster } }, transport_api_version: 'V3' });
  m = await startMeshlet(
    bootstrap(
      [
        filterListener('rl', [rlFilter({ domain: 'shop', timeout: '5s', rate_limit_service: svc('rls'), enable_x_ratelimit_headers: 'DRAFT_VERSION_03' })], routes),
        filterListener('rl_down_allow', [rlFilter({ domain: 'shop', rate_limit_service: svc('dead') })], routes),
        filterListener('rl_down_deny', [rlFilter({ domain: 'shop', failure_mode_deny: true, rate_limit_service: svc('dead') })], routes),
      ],
      [staticCluster('app', [echo.port]), staticCluster('rls', [g.port]), staticCluster('dead', [dead])],
    ),
    { onHttpStream: (i) => streams.push(i) },
  );
});

afterAll(async () => {
  await stopAllMeshlets();
  closeServiceClients();
  await stopGrpcServer(rls);
  await closeAll();
});

describe('global rate limit (envoy.service.ratelimit.v3.RateLimitService)', () => {
  it('sends the domain and the descriptors of the route actions at the filter stage', async () => {
    const res = await request(m.listenerPort('rl'), '/api/a', { headers: { 'x-tenant': 'acme', 'x-plan': 'premium' } });
    expect(res.status).toBe(200);
    const c = calls.at(-1)!;
    expect(c.domain).toBe('shop');
    expect(entriesOf(c)).toEqual([
      { entries: [{ key: 'generic_key', value: 'api' }, { key: 'tenant', value: 'acme' }] },
      { entries: [{ key: 'remote_address', value: '127.0.0.1' }, { key: 'destination_cluster', value: 'app' }] },
      { entries: [{ key: 'header_match', value: 'premium' }] },
    ]);
    // the service's headers: request_headers_to_add upstream, response_headers_to_add downstream
    expect((JSON.parse(res.body) as { headers: Record<string, string> }).headers['x-rls-checked']).toBe('yes');
    expect(res.headers['x-rls-seen']).toBe(String(calls.length));
    expect(res.headers['x-ratelimit-limit']).toBe('2');
  });

  it('drops a descriptor whose header is absent or does not match; no descriptor means no call', async () => {
    const n = calls.length;
    await request(m.listenerPort('rl'), '/api/b');
    expect(entriesOf(calls.at(-1)!)).toEqual([
      { entries: [{ key: 'remote_address', value: '127.0.0.1' }, { key: 'destination_cluster', value: 'app' }] },
    ]);
    await request(m.listenerPort('rl'), '/other');
    expect(calls.length).toBe(n + 1);
  });

  it('OVER_LIMIT answers 429 with x-envoy-ratelimited and flag RL; the upstream is not called', async () => {
    const before = echo.requests.length;
    const res = await request(m.listenerPort('rl'), '/api/c', { headers: { 'x-tenant': 'acme' } });
    expect(res.status).toBe(429);
    expect(res.headers['x-envoy-ratelimited']).toBe('true');
    expect(res.headers['x-ratelimit-remaining']).toBe('0');
    expect(res.headers['x-ratelimit-reset']).toBe('42');
    expect(echo.requests.length).toBe(before);
    expect(rateLimitStats('shop').overLimit).toBeGreaterThan(0);
    expect(streams.find((s) => s.path === '/api/c')?.hasResponseFlag('RL')).toBe(true);
  });

  it('a failed service lets requests through, or answers 500 RLSE with failure_mode_deny', async () => {
    expect((await request(m.listenerPort('rl_down_allow'), '/api/d')).status).toBe(200);
    const res = await request(m.listenerPort('rl_down_deny'), '/api/e');
    expect(res.status).toBe(500);
    expect(streams.find((s) => s.path === '/api/e')?.hasResponseFlag('RLSE')).toBe(true);
  });
});

describe('rate limit config validation', () => {
  it('filter: domain and rate_limit_service are required; bad fields are reported with paths', () => {
    const { errors } = decodeWith(decodeRateLimit, { stage: 11, request_type: 'sometimes', timeout: 'soon' });
    expect(errors.map((e) => e.path).sort()).toEqual([
      'typed_config.domain',
      'typed_config.rate_limit_service',
      'typed_config.request_type',
      'typed_config.stage',
      'typed_config.timeout',
    ]);
    const g = decodeWith(decodeRateLimit, { domain: 'd', rate_limit_service: { grpc_service: { google_grpc: {} } } });
    expect(g.errors.map((e) => e.path)).toContain('typed_config.rate_limit_service.grpc_service.google_grpc');
  });

  it('route rate_limits: unsupported and incomplete actions are reported with paths', () => {
    const res = decodeRouteConfiguration(
      {
        name: 'r',
        virtual_hosts: [
          {
            name: 'v',
            domains: ['*'],
            routes: [
              {
                match: { prefix: '/' },
                route: {
                  cluster: 'c',
                  rate_limits: [
                    { actions: [{ request_headers: { header_name: 'x' } }] },
                    { actions: [] },
                    { actions: [{ dynamic_metadata: {} }] },
                  ],
                },
              },
            ],
          },
        ],
      },
      { httpFilters: createRegistries().httpFilters },
    );
    const base = 'virtual_hosts[0].routes[0].route.rate_limits';
    expect(res.errors.map((e) => e.path)).toEqual([
      `${base}[0].actions[0].request_headers.descriptor_key`,
      `${base}[1].actions`,
      `${base}[2].actions[0].dynamic_metadata`,
    ]);
  });
});
