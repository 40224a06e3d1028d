/**
 * Access log and tracing config (part of the config model; proxy/config/types.ts re-exports every
 * area): access_log entries of listeners, HCMs and TCP proxies, the bootstrap's (or an HCM's)
 * tracing provider, and HCM tracing custom tags.
 */
import type { GrpcService } from '../../../common/config-types';

export interface AccessLogConfig {
  readonly name: string;
  readonly sink: { readonly kind: 'stdout' } | { readonly kind: 'stderr' } | { readonly kind: 'file'; readonly path: string };
  /** Envoy format string (text) or JSON format map; undefined = meshlet's JSON default fields. */
  readonly format?:
    | { readonly kind: 'text'; readonly text: string; readonly omitEmptyValues?: boolean }
    | { readonly kind: 'json'; readonly json: Readonly<Record<string, unknown>>; readonly omitEmptyValues?: boolean };
}

/** envoy.config.trace.v3 OpenTelemetryConfig in the bootstrap (or HCM) `tracing.http`. */
export interface TracingConfig {
  readonly provider: 'opentelemetry' | 'zipkin' | 'none';
  readonly grpcService?: GrpcService;
  readonly httpService?: { readonly clusterName: string; readonly path: string; readonly timeoutMs: number };
  readonly serviceName: string;
  /** envoy.tracers.zipkin: export as Zipkin v2 JSON to httpService, B3 propagation. */
  readonly zipkin?: {
    readonly traceId128bit: boolean;
    /** Default true, as Envoy: a server span reuses its caller's span id. */
    readonly sharedSpanContext: boolean;
    /** collector_hostname: Host header of the export requests. */
    readonly collectorHostname?: string;
  };
}

/**
 * A span tag from HCM tracing.custom_tags: a fixed value (literal, or environment read at config
 * time), or the request header `header` with `value` as its default.
 */
export interface CustomTag {
  readonly tag: string;
  readonly value: string;
  readonly header?: string;
  /**
   * kind metadata: the value at `path` in the `namespace` filter metadata of the request
   * (dynamic metadata) or the upstream host, read when the stream ends; `value` is the default.
   */
  readonly metadata?: { readonly kind: 'request' | 'host'; readonly namespace: string; readonly path: readonly string[] };
}
