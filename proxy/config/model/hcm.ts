/**
 * HTTP connection manager config (part of the config model; proxy/config/types.ts re-exports
 * every area): HcmConfig, its HTTP/2 options (which clusters share) and http_filters entries.
 */
import type { ConfigSource } from '../../../common/config-types';
import type { AccessLogConfig, CustomTag, TracingConfig } from './observability';
import type { RouteConfiguration } from './route';

export interface HcmConfig {
  readonly statPrefix: string;
  readonly codecType: 'AUTO' | 'HTTP1' | 'HTTP2';
  readonly routeSource:
    | { readonly kind: 'static'; readonly config: RouteConfiguration }
    | { readonly kind: 'rds'; readonly routeConfigName: string; readonly configSource: ConfigSource };
  readonly httpFilters: readonly HttpFilterConfig[];
  readonly useRemoteAddress: boolean;
  readonly xffNumTrustedHops: number;
  readonly skipXffAppend: boolean;
  /** Generate x-request-id when absent (Envoy default true). */
  readonly generateRequestId: boolean;
  readonly preserveExternalRequestId: boolean;
  /**
   * always_set_request_id_in_response (Envoy default false): the request's x-request-id is set on
   * its response (only when the request has one, as Envoy).
   */
  readonly alwaysSetRequestIdInResponse: boolean;
  readonly forwardClientCertDetails:
    | 'SANITIZE'
    | 'FORWARD_ONLY'
    | 'APPEND_FORWARD'
    | 'SANITIZE_SET'
    | 'ALWAYS_FORWARD_ONLY';
  readonly setCurrentClientCertDetails: { readonly subject: boolean; readonly cert: boolean; readonly chain: boolean; readonly dns: boolean; readonly uri: boolean };
  /** 0 = disabled (Envoy default). */
  readonly requestTimeoutMs: number;
  /** 0 = disabled (Envoy default); slowloris defence sets it. */
  readonly requestHeadersTimeoutMs: number;
  /** Envoy default 5 min. */
  readonly streamIdleTimeoutMs: number;
  /** common_http_protocol_options.idle_timeout, Envoy default 1 h. */
  /**
   * drain_timeout (Envoy default 5 s): how long a draining HTTP/1.1 connection may stay idle
   * after its drain notice before it is closed.
   */
  readonly drainTimeoutMs: number;
  readonly idleTimeoutMs: number;
  /** Envoy default 60 KiB. */
  readonly maxRequestHeadersKb: number;
  /** common_http_protocol_options.max_headers_count, Envoy default 100. */
  readonly maxHeadersCount: number;
  readonly http2: Http2Options;
  readonly upgradeTypes: readonly string[];
  readonly serverName: string;
  readonly serverHeaderTransformation: 'OVERWRITE' | 'APPEND_IF_ABSENT' | 'PASS_THROUGH';
  readonly accessLog: readonly AccessLogConfig[];
  /**
   * Sampling percentages (0–100, Envoy defaults 100): client_sampling for requests with
   * x-client-trace-id, random_sampling for the rest, overall_sampling caps both.
   */
  readonly tracing?: {
    readonly clientSamplingPercent: number;
    readonly randomSamplingPercent: number;
    readonly overallSamplingPercent: number;
    /** The url.path attribute is cut to this many characters (Envoy's default 256). */
    readonly maxPathTagLength: number;
    readonly customTags?: readonly CustomTag[];
    readonly provider?: TracingConfig;
  };
  readonly normalizePath: boolean;
  readonly mergeSlashes: boolean;
  /** Istio's inbound listeners set this; meshlet uses it for reporter=destination metrics. */
  readonly trafficDirection?: 'INBOUND' | 'OUTBOUND';
}

export interface Http2Options {
  /** Envoy default 2147483647; meshlet default 100 (linkerd-like careful default), configurable. */
  readonly maxConcurrentStreams: number;
  readonly initialStreamWindowSize: number;
  readonly initialConnectionWindowSize: number;
}

/** One entry of http_filters. `config` is the filter factory's own frozen decoded config. */
export interface HttpFilterConfig {
  readonly name: string;
  /** Fully-qualified proto type of typed_config, e.g. envoy.extensions.filters.http.router.v3.Router */
  readonly typeName: string;
  readonly config: unknown;
  readonly isOptional: boolean;
  readonly disabled: boolean;
}
