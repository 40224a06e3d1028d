/**
 * Shared helpers for the config decoder tests: an HttpFilterRegistry with the real router factory
 * and a non-terminal test filter with per-route config, plus builders for common resources.
 */

import type { DecodeContext } from '../../proxy/config/envoy/context';
import type { Reader } from '../../common/reader';
import { type HttpFilterFactory, HttpFilterRegistry } from '../../proxy/http/filter';
import { routerFilterFactory } from '../../proxy/http/filters/router-factory';

export const ROUTER_TYPE = 'envoy.extensions.filters.http.router.v3.Router';
export const FAULT_TYPE = 'envoy.extensions.filters.http.fault.v3.HTTPFault';

/** A non-terminal filter with per-route config, to exercise typed_per_filter_config. */
export const testFaultFactory: HttpFilterFactory<{ abortPercent: number }> = {
  typeName: FAULT_TYPE,
  decode(r: Reader) {
    const abort = r.obj('abort');
    const out = { abortPercent: abort ? abort.int('http_status', 0, 200, 599) : 0 };
    abort?.done();
    return out;
  },
  decodePerRoute(r: Reader) {
    const abort = r.obj('abort');
    const out = { abortStatus: abort ? abort.int('http_status', 0, 200, 599) : 0 };
    abort?.done();
    return out;
  },
  create() {
    return {};
  },
};

export function registry(): HttpFilterRegistry {
  return new HttpFilterRegistry().register(routerFilterFactory).register(testFaultFactory);
}

export function ctx(extra: Partial<DecodeContext> = {}): DecodeContext {
  return { httpFilters: registry(), ...extra };
}

export const TYPE_PREFIX = 'type.googleapis.com/';
export const HCM_TYPE = `${TYPE_PREFIX}envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager`;
export const TCP_PROXY_TYPE = `${TYPE_PREFIX}envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy`;

export function routerFilter(): Record<string, unknown> {
  return { name: 'envoy.filters.http.router', typed_config: { '@type': `${TYPE_PREFIX}${ROUTER_TYPE}` } };
}

export function hcm(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    '@type': HCM_TYPE,
    stat_prefix: 'ingress_http',
    route_config: {
      name: 'local_route',
      virtual_hosts: [
        { name: 'backend', domains: ['*'], routes: [{ match: { prefix: '/' }, route: { cluster: 'service1' } }] },
      ],
    },
    http_filters: [routerFilter()],
    ...extra,
  };
}

export function listener(
  extra: Record<string, unknown> = {},
  hcmExtra: Record<string, unknown> = {},
): Record<string, unknown> {
  return {
    name: 'ingress',
    address: { socket_address: { address: '0.0.0.0', port_value: 8080 } },
    filter_chains: [
      { filters: [{ name: 'envoy.filters.network.http_connection_manager', typed_config: hcm(hcmExtra) }] },
    ],
    ...extra,
  };
}

export function staticCluster(name: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    name,
    connect_timeout: '1s',
    load_assignment: {
      cluster_name: name,
      endpoints: [
        { lb_endpoints: [{ endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: 9000 } } } }] },
      ],
    },
    ...extra,
  };
}
