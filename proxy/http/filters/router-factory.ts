/**
 * The `envoy.extensions.filters.http.router.v3.Router` filter factory: decodes the router's
 * typed_config and marks it terminal. The router itself is not a per-stream filter object — the
 * connection manager drives proxy/http/router.ts directly when the chain reaches it, which keeps
 * the "router only" chain free of filter allocations (cost contract of proxy/http/filter.ts).
 */
import type { Reader } from '../../../common/reader';
import { MeshletError } from '../../../common/errors';
import type { HttpFilter, HttpFilterFactory } from '../filter';

/** Decoded envoy.extensions.filters.http.router.v3.Router. */
export interface RouterConfig {
  /** Envoy default true: per-cluster dynamic stats (kept for fidelity; meshlet always counts). */
  readonly dynamicStats: boolean;
  /** Create a child span per upstream attempt (Envoy default false). */
  readonly startChildSpan: boolean;
  /**
   * Do not add x-envoy-upstream-service-time / x-envoy-attempt-count / x-envoy-expected-rq-timeout-ms
   * and x-envoy-overloaded (Envoy default false).
   */
  readonly suppressEnvoyHeaders: boolean;
  /** Honour x-envoy-expected-rq-timeout-ms from a trusted downstream Envoy instead of the route timeout. */
  readonly respectExpectedRqTimeout: boolean;
  /** Do not count gRPC failure codes in cluster stats (kept for fidelity). */
  readonly suppressGrpcRequestFailureCodeStats: boolean;
}

export const ROUTER_TYPE_NAME = 'envoy.extensions.filters.http.router.v3.Router';

export const DEFAULT_ROUTER_CONFIG: RouterConfig = Object.freeze({
  dynamicStats: true,
  startChildSpan: false,
  suppressEnvoyHeaders: false,
  respectExpectedRqTimeout: false,
  suppressGrpcRequestFailureCodeStats: false,
});

export const routerFilterFactory: HttpFilterFactory<RouterConfig> = {
  typeName: ROUTER_TYPE_NAME,
  terminal: true,
  decode(r: Reader): RouterConfig {
    const cfg: RouterConfig = {
      dynamicStats: r.bool('dynamic_stats', true),
      startChildSpan: r.bool('start_child_span', false),
      suppressEnvoyHeaders: r.bool('suppress_envoy_headers', false),
      respectExpectedRqTimeout: r.bool('respect_expected_rq_timeout', false),
      suppressGrpcRequestFailureCodeStats: r.bool('suppress_grpc_request_failure_code_stats', false),
    };
    // strict_check_headers lists headers to validate; accepted values are checked for shape only.
    const strict = r.strList('strict_check_headers');
    for (const [i, h] of strict.entries()) {
      if (!h.startsWith('x-envoy-'))
        r.issues.error(`${r.sub('strict_check_headers')}[${i}]`, `unsupported header ${h}`);
    }
    r.done();
    return Object.freeze(cfg);
  },
  create(): HttpFilter {
    // The router is terminal: the connection manager never asks for a per-stream instance.
    throw new MeshletError(
      'MESHLET_ERR_INTERNAL',
      'the router filter is driven by the connection manager, not created per stream',
    );
  },
};
