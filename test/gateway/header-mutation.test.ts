/**
 * Transformation through a real meshlet: Envoy's header_mutation filter with `%FORMAT%`
 * substitutions (%REQ(x?y):n%, %RESP(x)%, %DOWNSTREAM_REMOTE_ADDRESS…%, %UPSTREAM_METADATA%),
 * removals, HeaderMutationPerRoute ordering, and config validation.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeHeaderMutation } from '../../proxy/http/filters/header-mutation';
import { bootstrap, type StartedMeshlet, socketAddress, startMeshlet, stopAllMeshlets } from '../support/meshlet';
import { closeAll, type HttpEcho, startHttpEcho } from '../support/upstreams';
import { decodeWith, filterListener, request } from './helpers';

const HM = 'type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation';
const HM_ROUTE = 'type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutationPerRoute';

let m: StartedMeshlet;
let echo: HttpEcho;

const append = (key: string, value: string, action = 'OVERWRITE_IF_EXISTS_OR_ADD') => ({
  append: { header: { key, value }, append_action: action },
});

beforeAll(async () => {
  echo = await startHttpEcho('app');
  const filter = {
    name: 'envoy.filters.http.header_mutation',
    typed_config: {
      '@type': HM,
      mutations: {
        request_mutations: [
          append('x-client', '%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%'),
          append('x-orig-path', '%REQ(:path)%'),
          append('x-agent', '%REQ(x-missing?user-agent):4%'),
          append('x-who', 'filter'),
          { remove: 'x-remove-me' },
        ],
        response_mutations: [
          append('x-upstream-was', '%RESP(x-upstream)%'),
          append('x-status', '%RESP(:status)%'),
          append('x-zone', '%UPSTREAM_METADATA(["envoy.lb","zone"])%'),
          append('x-literal', '100%% sure'),
        ],
      },
    },
  };
  const routes = [
    {
      match: { prefix: '/special' },
      route: { cluster: 'app' },
      typed_per_filter_config: {
        'envoy.filters.http.header_mutation': {
          '@type': HM_ROUTE,
          mutations: { request_mutations: [append('x-who', 'route'), append('x-route', 'special')] },
        },
      },
    },
    { match: { prefix: '/' }, route: { cluster: 'app' } },
  ];
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
              endpoint: { address: socketAddress(echo.port) },
              metadata: { filter_metadata: { 'envoy.lb': { zone: 'zone-a' } } },
            },
          ],
        },
      ],
    },
  };
  m = await startMeshlet(bootstrap([filterListener('hm', [filter], routes)], [cluster]));
});

afterAll(async () => {
  await stopAllMeshlets();
  await closeAll();
});

describe('header_mutation with %FORMAT% operators', () => {
  it('mutates request headers from the request and the connection', async () => {
    const res = await request(m.listenerPort('hm'), '/a/b?c=1', { headers: { 'user-agent': 'curl/8.0', 'x-remove-me': 'x' } });
    expect(res.status).toBe(200);
    const h = (JSON.parse(res.body) as { headers: Record<string, string> }).headers;
    expect(h['x-client']).toBe('127.0.0.1');
    expect(h['x-orig-path']).toBe('/a/b?c=1');
    expect(h['x-agent']).toBe('curl');
    expect(h['x-who']).toBe('filter');
    expect(h['x-remove-me']).toBeUndefined();
  });

  it('mutates response headers from the response and the upstream host metadata', async () => {
    const res = await request(m.listenerPort('hm'), '/r');
    expect(res.headers['x-upstream-was']).toBe('app');
    expect(res.headers['x-status']).toBe('200');
    expect(res.headers['x-zone']).toBe('zone-a');
    expect(res.headers['x-literal']).toBe('100% sure');
  });

  it('HeaderMutationPerRoute runs first, so the filter-level mutation wins by default', async () => {
    const res = await request(m.listenerPort('hm'), '/special');
    const h = (JSON.parse(res.body) as { headers: Record<string, string> }).headers;
    expect(h['x-route']).toBe('special');
    expect(h['x-who']).toBe('filter');
  });
});

describe('header_mutation config validation', () => {
  it('reports bad mutations with their paths', () => {
    const { errors } = decodeWith(decodeHeaderMutation, {
      mutations: {
        request_mutations: [{}, { append: { header: { key: ':path', value: 'x' } } }, { remove: 'bad header' }],
        response_mutations: [{ append: { header: { key: 'x' }, append: true, append_action: 'ADD_IF_ABSENT' } }],
        query_parameter_mutations: [{}],
      },
    });
    expect(errors.map((e) => e.path).sort()).toEqual([
      'typed_config.mutations.query_parameter_mutations',
      'typed_config.mutations.request_mutations[0]',
      'typed_config.mutations.request_mutations[1].append.header.key',
      'typed_config.mutations.request_mutations[2].remove',
      'typed_config.mutations.response_mutations[0].append.append',
    ]);
  });
});
