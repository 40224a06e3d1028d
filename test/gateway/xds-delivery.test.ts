/**
 * The gateway filter configs as a control plane delivers them: a Listener encoded to protobuf
 * with the real Envoy protos (jwt_authn, ext_authz, ratelimit, cache, header_mutation, and the
 * TypeScript filter inside an xds.type.v3.TypedStruct), decoded back the way the xDS client does
 * it, then validated by meshlet's decoders — nothing lost on the way.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { decodeListener } from '../../proxy/config/envoy';
import { closeTypeScriptFilters } from '../../proxy/http/filters/typescript';
import { createRegistries } from '../../proxy/registry';
import { anyToJson, jsonToAny } from '../../xds-client/proto-json';
import { HCM_TYPE, ROUTER_TYPE, socketAddress } from '../support/meshlet';

const dir = mkdtempSync(path.join(os.tmpdir(), 'meshlet-xds-filters-'));
afterAll(() => {
  closeTypeScriptFilters();
  rmSync(dir, { recursive: true, force: true });
});

describe('gateway filter configs over xDS', () => {
  it('round-trip through protobuf and decode without errors or dropped fields', () => {
    const module = path.join(dir, 'f.js');
    writeFileSync(module, 'module.exports = { onRequestHeaders() {} };');
    const filters = [
      {
        name: 'envoy.filters.http.jwt_authn',
        typed_config: {
          '@type': 'type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication',
          providers: {
            p: {
              issuer: 'https://idp',
              remote_jwks: { http_uri: { uri: 'http://idp/jwks', cluster: 'idp', timeout: '1s' }, cache_duration: '60s' },
              claim_to_headers: [{ header_name: 'x-sub', claim_name: 'sub' }],
            },
          },
          rules: [{ match: { prefix: '/' }, requires: { provider_name: 'p' } }],
        },
      },
      {
        name: 'envoy.filters.http.ext_authz',
        typed_config: {
          '@type': 'type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz',
          grpc_service: { envoy_grpc: { cluster_name: 'authz' }, timeout: '0.5s' },
          transport_api_version: 'V3',
          failure_mode_allow: true,
        },
      },
      {
        name: 'envoy.filters.http.ratelimit',
        typed_config: {
          '@type': 'type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit',
          domain: 'd',
          rate_limit_service: { grpc_service: { envoy_grpc: { cluster_name: 'rls' } }, transport_api_version: 'V3' },
        },
      },
      {
        name: 'envoy.filters.http.cache',
        typed_config: {
          '@type': 'type.googleapis.com/envoy.extensions.filters.http.cache.v3.CacheConfig',
          typed_config: { '@type': 'type.googleapis.com/envoy.extensions.http.cache.simple_http_cache.v3.SimpleHttpCacheConfig' },
          allowed_vary_headers: [{ exact: 'accept-language' }],
        },
      },
      {
        name: 'envoy.filters.http.header_mutation',
        typed_config: {
          '@type': 'type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation',
          mutations: { request_mutations: [{ append: { header: { key: 'x-a', value: '%REQ(:path)%' } } }] },
        },
      },
      {
        name: 'my.typescript',
        typed_config: {
          '@type': 'type.googleapis.com/xds.type.v3.TypedStruct',
          type_url: 'type.googleapis.com/meshlet.filters.TypeScript',
          value: { path: module, config: { greeting: 'hi' }, time_budget: '0.5s' },
        },
      },
      { name: 'envoy.filters.http.router', typed_config: { '@type': ROUTER_TYPE } },
    ];
    const listener = {
      '@type': 'type.googleapis.com/envoy.config.listener.v3.Listener',
      name: 'l',
      address: socketAddress(15001),
      filter_chains: [
        {
          filters: [
            {
              name: 'envoy.filters.network.http_connection_manager',
              typed_config: {
                '@type': HCM_TYPE,
                stat_prefix: 'l',
                route_config: {
                  name: 'r',
                  virtual_hosts: [
                    {
                      name: 'v',
                      domains: ['*'],
                      routes: [
                        {
                          match: { prefix: '/' },
                          route: { cluster: 'c', rate_limits: [{ actions: [{ remote_address: {} }, { generic_key: { descriptor_value: 'x' } }] }] },
                        },
                      ],
                    },
                  ],
                },
                http_filters: filters,
              },
            },
          ],
        },
      ],
    };
    const wire = jsonToAny(listener);
    const json = anyToJson(wire);
    const { '@type': _t, ...raw } = json as Record<string, unknown>;
    const res = decodeListener(raw, { httpFilters: createRegistries().httpFilters });
    expect(res.errors).toEqual([]);
    expect(res.warnings).toEqual([]);
    const f = res.value!.filterChains[0]!.filters[0]!;
    if (f.kind !== 'http_connection_manager') throw new Error('expected an HCM');
    const kinds = f.hcm.httpFilters.map((x) => (x.config as { kind?: string } | undefined)?.kind);
    expect(kinds.slice(0, 6)).toEqual(['jwt_authn', 'ext_authz', 'ratelimit', 'cache', 'header_mutation', 'typescript']);
    const ts = f.hcm.httpFilters[5]!.config as { config: unknown; timeBudgetMs: number };
    expect(ts.config).toEqual({ greeting: 'hi' });
    expect(ts.timeBudgetMs).toBe(500);
    const route = f.hcm.routeSource.kind === 'static' ? f.hcm.routeSource.config.virtualHosts[0]!.routes[0]! : undefined;
    expect(route?.action.kind === 'route' && route.action.rateLimits?.[0]?.actions.map((a) => a.kind)).toEqual(['remote_address', 'generic_key']);
  });
});
