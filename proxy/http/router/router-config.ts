/**
 * The decoded router config (envoy.extensions.filters.http.router.v3.Router) and its defaults;
 * decoded by proxy/http/filters/router-factory.ts, read by router-filter.ts.
 */

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

export const DEFAULT_ROUTER_CONFIG: RouterConfig = Object.freeze({
  dynamicStats: true,
  startChildSpan: false,
  suppressEnvoyHeaders: false,
  respectExpectedRqTimeout: false,
  suppressGrpcRequestFailureCodeStats: false,
});
