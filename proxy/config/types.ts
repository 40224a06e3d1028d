/**
 * The validated, frozen configuration model: what every decoder produces and every data-plane
 * component consumes. Raw input (bootstrap YAML/JSON or xDS resources in proto3 JSON form) is
 * turned into these shapes exactly once, by the decoders in proxy/config/envoy/*.
 *
 * Field names are camelCase versions of the Envoy v3 proto fields they come from, so an Envoy user
 * can map them back. Durations are milliseconds. Defaults are Envoy's unless a comment says why not.
 * Objects are deep-frozen by the decoders; nothing downstream mutates or re-validates them.
 */

import type { RuntimeFraction, RuntimeLayerConfig } from '../../common/runtime';
import type { IstioStatsConfig } from './filters/istio-stats';
import type {
  CertValidationContext,
  ConfigSource,
  DynamicResources,
  GrpcService,
  Locality,
  NodeInfo,
  SecretConfig,
  StringMatcher,
  TlsCertificate,
} from '../../common/config-types';

// The shapes every part shares live in common/ (xds-client/ and certs/ use them too).
export type {
  CallCredential,
  CertValidationContext,
  ConfigSource,
  DataSource,
  DynamicResources,
  GrpcMetadataEntry,
  GrpcService,
  Locality,
  NodeInfo,
  SanMatcher,
  StsServiceConfig,
  SecretConfig,
  StringMatcher,
  TlsCertificate,
} from '../../common/config-types';

/** A listener or endpoint address (envoy.config.core.v3.Address). */
export type Address =
  | {
      readonly kind: 'socket';
      readonly host: string;
      readonly port: number;
      /** socket_address.ipv4_compat: an IPv6 listener on "::" also accepts IPv4 (Envoy default false). */
      readonly ipv4Compat?: boolean;
    }
  | { readonly kind: 'pipe'; readonly path: string };

// ───────────────────────────── Bootstrap ─────────────────────────────

export interface Bootstrap {
  readonly node: NodeInfo;
  readonly admin?: { readonly address: Address; readonly accessLogPath?: string };
  readonly staticResources: {
    readonly listeners: readonly ListenerConfig[];
    readonly clusters: readonly ClusterConfig[];
    readonly secrets: readonly SecretConfig[];
  };
  readonly dynamicResources?: DynamicResources;
  readonly tracing?: TracingConfig;
  /**
   * stats_flush_interval. Read and kept for config_dump; it changes nothing, because meshlet has no
   * stats sinks to flush to: stats are computed when /stats or /stats/prometheus is scraped.
   */
  readonly statsFlushIntervalMs?: number;
  /** cluster_manager.local_cluster_name: the local service's cluster, for zone-aware routing. */
  readonly localClusterName?: string;
  /** layered_runtime (undefined: Envoy's default of one admin layer). */
  readonly layeredRuntime?: readonly RuntimeLayerConfig[];
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

// ───────────────────────────── Listeners ─────────────────────────────

export interface ListenerConfig {
  readonly name: string;
  readonly address: Address;
  readonly filterChains: readonly FilterChainConfig[];
  readonly defaultFilterChain?: FilterChainConfig;
  /**
   * filter_chain_matcher (xds.type.matcher.v3.Matcher): when set it alone selects the chain, by
   * name; every chain's filter_chain_match is ignored (as in Envoy).
   */
  readonly filterChainMatcher?: ChainMatcher;
  /** Hand redirected connections to the listener matching the original destination (15001/15006). */
  readonly useOriginalDst: boolean;
  /** false for Istio-style virtual listeners that only receive connections handed over. */
  readonly bindToPort: boolean;
  readonly listenerFilters: readonly ListenerFilterConfig[];
  readonly listenerFiltersTimeoutMs: number;
  readonly continueOnListenerFiltersTimeout: boolean;
  readonly perConnectionBufferLimitBytes: number;
  readonly trafficDirection: 'UNSPECIFIED' | 'INBOUND' | 'OUTBOUND';
  readonly accessLog: readonly AccessLogConfig[];
  /** Envoy `connection_limit` network filter or meshlet listener option; undefined = unlimited. */
  readonly maxConnections?: number;
}

/** A network matching input of the unified matcher API (envoy.matching.inputs.*). */
export type ChainMatchInput =
  | 'destination_ip'
  | 'destination_port'
  | 'source_ip'
  | 'source_port'
  | 'direct_source_ip'
  | 'source_type'
  | 'server_name'
  | 'transport_protocol'
  | 'application_protocol';

/** Matcher.OnMatch: a filter chain (by name, the StringValue action) or a nested matcher. */
export type ChainOnMatch =
  | { readonly kind: 'chain'; readonly name: string }
  | { readonly kind: 'matcher'; readonly matcher: ChainMatcher };

export type ChainPredicate =
  | {
      readonly kind: 'single';
      readonly input: ChainMatchInput;
      /** value_match, or a CIDR list (the envoy.matching.matchers.ip custom matcher). */
      readonly value?: StringMatcher;
      readonly cidrs?: readonly CidrRange[];
    }
  | { readonly kind: 'or' | 'and'; readonly predicates: readonly ChainPredicate[] }
  | { readonly kind: 'not'; readonly predicate: ChainPredicate };

/** xds.type.matcher.v3.Matcher over network inputs, as a listener's filter_chain_matcher. */
export type ChainMatcher = (
  | {
      readonly kind: 'list';
      readonly matchers: readonly { readonly predicate: ChainPredicate; readonly onMatch: ChainOnMatch }[];
    }
  | {
      readonly kind: 'exact' | 'prefix';
      readonly input: ChainMatchInput;
      readonly map: ReadonlyMap<string, ChainOnMatch>;
    }
  | {
      /** xds.type.matcher.v3.IPMatcher custom_match. */
      readonly kind: 'ip';
      readonly input: ChainMatchInput;
      readonly ranges: readonly {
        readonly cidrs: readonly CidrRange[];
        readonly onMatch: ChainOnMatch;
        readonly exclusive: boolean;
      }[];
    }
) & { readonly onNoMatch?: ChainOnMatch };

export type ListenerFilterConfig = (
  | { readonly kind: 'tls_inspector' }
  | { readonly kind: 'http_inspector' }
  | { readonly kind: 'original_dst' }
  | { readonly kind: 'proxy_protocol' }
) & {
  /**
   * filter_disabled: connections this predicate matches skip the filter (Istio disables the
   * inspectors on ports declared opaque or server-first, so those never wait for client bytes).
   */
  readonly filterDisabled?: ListenerFilterPredicate;
};

/** envoy.config.listener.v3.ListenerFilterChainMatchPredicate (destination port based). */
export type ListenerFilterPredicate =
  | { readonly kind: 'any' }
  /** [start, end): Envoy's Int32Range, end exclusive. */
  | { readonly kind: 'destination_port_range'; readonly start: number; readonly end: number }
  | { readonly kind: 'or' | 'and'; readonly rules: readonly ListenerFilterPredicate[] }
  | { readonly kind: 'not'; readonly rule: ListenerFilterPredicate };

export interface CidrRange {
  readonly addressPrefix: string;
  readonly prefixLen: number;
}

/** envoy.config.listener.v3.FilterChainMatch */
export interface FilterChainMatch {
  readonly destinationPort?: number;
  readonly prefixRanges: readonly CidrRange[];
  readonly serverNames: readonly string[];
  readonly transportProtocol?: string; // 'tls' | 'raw_buffer'
  readonly applicationProtocols: readonly string[];
  readonly sourcePrefixRanges: readonly CidrRange[];
  readonly sourcePorts: readonly number[];
}

export interface FilterChainConfig {
  readonly name: string;
  readonly match: FilterChainMatch;
  readonly transportSocket?: DownstreamTlsConfig;
  readonly filters: readonly NetworkFilterConfig[];
}

export type NetworkFilterConfig =
  | { readonly kind: 'http_connection_manager'; readonly name: string; readonly hcm: HcmConfig }
  | { readonly kind: 'tcp_proxy'; readonly name: string; readonly tcp: TcpProxyConfig }
  | { readonly kind: 'rbac'; readonly name: string; readonly rbac: RbacConfig }
  | { readonly kind: 'connection_limit'; readonly name: string; readonly statPrefix: string; readonly maxConnections: number }
  | { readonly kind: 'ext_authz'; readonly name: string; readonly extAuthz: NetworkExtAuthzConfig }
  /** Istio's istio.stats network filter: drives the Istio TCP metrics of the chain's tcp_proxy. */
  | { readonly kind: 'istio_stats'; readonly name: string; readonly stats: IstioStatsConfig }
  /** Istio's istio_authn: io.istio.peer_principal / local_principal from the mTLS certificates. */
  | { readonly kind: 'istio_authn'; readonly name: string }
  /** Istio's TCP metadata exchange (envoy.tcp.metadataexchange): peer metadata over ALPN `protocol`. */
  | { readonly kind: 'metadata_exchange'; readonly name: string; readonly mx: MetadataExchangeConfig };

/** envoy.tcp.metadataexchange.config.MetadataExchange (network filter and upstream cluster filter). */
export interface MetadataExchangeConfig {
  /** The ALPN the exchange runs on (istiod: istio-peer-exchange); compared with the negotiated one. */
  readonly protocol: string;
}

/** envoy.extensions.filters.network.ext_authz.v3.ExtAuthz (gRPC Authorization/Check per connection). */
export interface NetworkExtAuthzConfig {
  readonly statPrefix: string;
  /** grpc_service (envoy_grpc): the authorizer's cluster, authority, timeout and initial metadata. */
  readonly grpcService: {
    readonly clusterName: string;
    readonly authority: string;
    readonly timeoutMs: number;
    readonly initialMetadata: readonly (readonly [string, string])[];
  };
  /** Accept the connection when the authorizer fails or times out (Envoy default false). */
  readonly failureModeAllow: boolean;
  /** Send the peer certificate (PEM) in the CheckRequest. */
  readonly includePeerCertificate: boolean;
  /** filter_enabled_metadata: check only connections whose dynamic metadata matches (Istio's TCP CUSTOM). */
  readonly filterEnabledMetadata?: MetadataMatcher;
}

// ─────────────────────── HTTP connection manager ───────────────────────

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
  /** Percent of requests sampled when tracing is configured (random_sampling), 0–100. */
  readonly tracing?: {
    readonly randomSamplingPercent: number;
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

/** envoy.config.route.v3.RouteConfiguration */
export interface RouteConfiguration {
  readonly name: string;
  readonly virtualHosts: readonly VirtualHost[];
  readonly requestHeadersToAdd: readonly HeaderValueOption[];
  readonly requestHeadersToRemove: readonly string[];
  readonly responseHeadersToAdd: readonly HeaderValueOption[];
  readonly responseHeadersToRemove: readonly string[];
}

export interface VirtualHost {
  readonly name: string;
  /** Lower-cased. Exact, `*.suffix`, `prefix.*` or `*`, optionally with `:port`. */
  readonly domains: readonly string[];
  readonly routes: readonly Route[];
  readonly requestHeadersToAdd: readonly HeaderValueOption[];
  readonly requestHeadersToRemove: readonly string[];
  readonly responseHeadersToAdd: readonly HeaderValueOption[];
  readonly responseHeadersToRemove: readonly string[];
  readonly retryPolicy?: RetryPolicy;
  readonly typedPerFilterConfig: Readonly<Record<string, unknown>>;
  /** The `cors` field (route.v3.CorsPolicy), read by envoy.filters.http.cors without a typed_per_filter_config policy. */
  readonly cors?: CorsPolicyConfig;
}

export interface Route {
  readonly name: string;
  readonly match: RouteMatch;
  readonly action: RouteAction | RedirectAction | DirectResponseAction;
  readonly requestHeadersToAdd: readonly HeaderValueOption[];
  readonly requestHeadersToRemove: readonly string[];
  readonly responseHeadersToAdd: readonly HeaderValueOption[];
  readonly responseHeadersToRemove: readonly string[];
  /** Filter name → that filter's decoded per-route config. */
  readonly typedPerFilterConfig: Readonly<Record<string, unknown>>;
}

export interface RouteMatch {
  readonly path:
    | { readonly kind: 'prefix'; readonly value: string }
    | { readonly kind: 'path'; readonly value: string }
    | { readonly kind: 'safe_regex'; readonly value: string; readonly regex: RegExp }
    | { readonly kind: 'path_separated_prefix'; readonly value: string }
    | { readonly kind: 'connect_matcher' };
  /** Envoy default true. */
  readonly caseSensitive: boolean;
  readonly headers: readonly HeaderMatcher[];
  readonly queryParameters: readonly QueryParameterMatcher[];
  /** grpc: {} — only requests with content-type application/grpc*. */
  readonly grpc: boolean;
  /** runtime_fraction: the route matches this fraction of requests (read under its runtime_key). */
  readonly runtimeFraction?: RuntimeFraction;
}

/** envoy.config.route.v3.HeaderMatcher; `name` is lower-cased. */
export interface HeaderMatcher {
  readonly name: string;
  readonly match:
    | { readonly kind: 'string'; readonly matcher: StringMatcher }
    | { readonly kind: 'present'; readonly present: boolean }
    | { readonly kind: 'range'; readonly start: number; readonly end: number }
    | { readonly kind: 'any' };
  readonly invert: boolean;
  readonly treatMissingAsEmpty: boolean;
}

export interface QueryParameterMatcher {
  readonly name: string;
  readonly match: { readonly kind: 'string'; readonly matcher: StringMatcher } | { readonly kind: 'present' };
}

export interface HeaderValueOption {
  /** Lower-cased header name. */
  readonly key: string;
  /** May contain Envoy `%FORMAT%` substitutions (resolved by the header formatter). */
  readonly value: string;
  readonly appendAction:
    | 'APPEND_IF_EXISTS_OR_ADD'
    | 'ADD_IF_ABSENT'
    | 'OVERWRITE_IF_EXISTS_OR_ADD'
    | 'OVERWRITE_IF_EXISTS';
  readonly keepEmptyValue: boolean;
}

export interface WeightedCluster {
  readonly name: string;
  readonly weight: number;
  readonly requestHeadersToAdd: readonly HeaderValueOption[];
  readonly requestHeadersToRemove: readonly string[];
  readonly responseHeadersToAdd: readonly HeaderValueOption[];
  readonly responseHeadersToRemove: readonly string[];
  readonly hostRewriteLiteral?: string;
  readonly typedPerFilterConfig: Readonly<Record<string, unknown>>;
}

/** A CORS policy (decoded by config/filters/cors-policy.ts, applied by http/filters/cors.ts). */
export interface CorsPolicyConfig {
  readonly kind: 'cors_policy';
  readonly allowOrigins: readonly StringMatcher[];
  /** Header values as configured ("" = not set, the next policy in line decides). */
  readonly allowMethods: string;
  readonly allowHeaders: string;
  readonly exposeHeaders: string;
  readonly maxAge: string;
  /** undefined = not set (the next policy in line decides; false in the end). */
  readonly allowCredentials?: boolean;
  readonly allowPrivateNetworkAccess?: boolean;
  /** undefined = not set (true in the end: a preflight from a disallowed origin goes upstream). */
  readonly forwardNotMatchingPreflights?: boolean;
  /** undefined = enabled for every request (Envoy's default). */
  readonly filterEnabled?: RuntimeFraction;
  /** undefined = no shadow mode. */
  readonly shadowEnabled?: RuntimeFraction;
}

export interface RouteAction {
  readonly kind: 'route';
  readonly cluster:
    | { readonly kind: 'cluster'; readonly name: string }
    | { readonly kind: 'weighted'; readonly clusters: readonly WeightedCluster[]; readonly totalWeight: number }
    | { readonly kind: 'cluster_header'; readonly header: string };
  readonly prefixRewrite?: string;
  readonly regexRewrite?: { readonly regex: RegExp; readonly substitution: string };
  readonly hostRewriteLiteral?: string;
  readonly hostRewriteHeader?: string;
  readonly autoHostRewrite: boolean;
  /** Envoy default 15 s; 0 disables. */
  readonly timeoutMs: number;
  /** 0 = use the HCM stream idle timeout. */
  readonly idleTimeoutMs: number;
  readonly retryPolicy?: RetryPolicy;
  readonly hashPolicy: readonly HashPolicy[];
  /** Upgrades enabled on this route (websocket, CONNECT, …). Empty = inherit HCM's. */
  readonly upgradeTypes: readonly string[];
  /**
   * upgrade_configs CONNECT with connect_config: the proxy terminates CONNECT (answers 200 once a
   * TCP connection to the chosen host is up) and tunnels the payload as raw TCP.
   */
  readonly terminateConnect?: boolean;
  readonly maxStreamDurationMs?: number;
  /**
   * Set when gRPC requests take their timeout from grpc-timeout (max_stream_duration.
   * grpc_timeout_header_max or max_grpc_timeout): the cap, 0 = none.
   */
  readonly grpcTimeoutHeaderMaxMs?: number;
  /** Subtracted from grpc-timeout when that leaves it above 0. */
  readonly grpcTimeoutHeaderOffsetMs?: number;
  /** rate_limits: descriptors for the global rate limit filter (envoy.filters.http.ratelimit). */
  readonly rateLimits?: readonly RateLimitPolicy[];
  /** request_mirror_policies: shadow copies of the request (undefined = none: nothing to do per request). */
  readonly requestMirrorPolicies?: readonly RequestMirrorPolicy[];
  /** The `cors` field (route.v3.CorsPolicy), read by envoy.filters.http.cors without a typed_per_filter_config policy. */
  readonly cors?: CorsPolicyConfig;
}

/** envoy.config.route.v3.RouteAction.RequestMirrorPolicy. */
export interface RequestMirrorPolicy {
  /** Exactly one of cluster and clusterHeader. */
  readonly cluster?: string;
  readonly clusterHeader?: string;
  /** undefined = every request is mirrored. */
  readonly runtimeFraction?: RuntimeFraction;
  /** Set: the shadow's trace sampling decision; unset: the parent's. */
  readonly traceSampled?: boolean;
  readonly disableShadowHostSuffixAppend: boolean;
}

/** envoy.config.route.v3.RateLimit: one descriptor built from its actions, in order. */
export interface RateLimitPolicy {
  /** Only filters configured with the same stage use it (Envoy default 0). */
  readonly stage: number;
  /** disable_key: runtime key (recorded; runtime is not read). */
  readonly disableKey: string;
  readonly actions: readonly RateLimitAction[];
}

/** envoy.config.route.v3.RateLimit.Action (the descriptor entry kinds meshlet supports). */
export type RateLimitAction =
  | {
      readonly kind: 'request_headers';
      readonly headerName: string;
      readonly descriptorKey: string;
      /** Skip the entry (not the whole descriptor) when the header is absent. */
      readonly skipIfAbsent: boolean;
    }
  | { readonly kind: 'remote_address' }
  | { readonly kind: 'generic_key'; readonly descriptorKey: string; readonly descriptorValue: string }
  | {
      readonly kind: 'header_value_match';
      readonly descriptorKey: string;
      readonly descriptorValue: string;
      readonly expectMatch: boolean;
      readonly headers: readonly HeaderMatcher[];
    }
  | { readonly kind: 'destination_cluster' };

export interface RedirectAction {
  readonly kind: 'redirect';
  readonly schemeRedirect?: string;
  readonly httpsRedirect: boolean;
  readonly hostRedirect?: string;
  readonly portRedirect?: number;
  readonly pathRedirect?: string;
  readonly prefixRewrite?: string;
  readonly stripQuery: boolean;
  /** 301 (default), 302, 303, 307 or 308. */
  readonly responseCode: number;
}

export interface DirectResponseAction {
  readonly kind: 'direct_response';
  readonly status: number;
  readonly body?: Buffer;
}

/**
 * Every retry_on condition meshlet implements, in Envoy's documentation order: the one list the
 * route decoder accepts and the router's x-envoy-retry-on parser and RetryState
 * (proxy/http/router/retry-state.ts) understand.
 */
export const RETRY_ON = [
  '5xx',
  'gateway-error',
  'reset',
  'connect-failure',
  'retriable-4xx',
  'refused-stream',
  'retriable-status-codes',
  'retriable-headers',
  'cancelled',
  'deadline-exceeded',
  'internal',
  'resource-exhausted',
  'unavailable',
  'http3-post-connect-failure',
] as const;
/** Conditions of retry_on, as parsed flags. */
export type RetryOn = (typeof RETRY_ON)[number];
/** Valid in Envoy, not implemented by meshlet: accepted with a warning. */
export const RETRY_ON_UNSUPPORTED: readonly string[] = ['reset-before-request', 'envoy-ratelimited'];

export interface RetryPolicy {
  readonly retryOn: ReadonlySet<RetryOn>;
  /** Envoy default 1. */
  readonly numRetries: number;
  /** 0 = none (the route timeout still applies). */
  readonly perTryTimeoutMs: number;
  readonly retriableStatusCodes: readonly number[];
  /** retriable_headers: under retry_on retriable-headers, a response matching any is retried. */
  readonly retriableHeaders: readonly HeaderMatcher[];
  /** retry_host_predicate envoy.retry_host_predicates.previous_hosts */
  readonly avoidPreviousHosts: boolean;
  readonly hostSelectionRetryMaxAttempts: number;
  /** Envoy default base 25 ms, max 10 × base. */
  readonly backOffBaseMs: number;
  readonly backOffMaxMs: number;
}

export type HashPolicy =
  | { readonly kind: 'header'; readonly name: string; readonly terminal: boolean }
  | { readonly kind: 'cookie'; readonly name: string; readonly ttlMs?: number; readonly path?: string; readonly terminal: boolean }
  | { readonly kind: 'source_ip'; readonly terminal: boolean }
  | { readonly kind: 'query_parameter'; readonly name: string; readonly terminal: boolean };

// ───────────────────────────── TCP proxy ─────────────────────────────

export interface TcpProxyConfig {
  readonly statPrefix: string;
  readonly cluster:
    | { readonly kind: 'cluster'; readonly name: string }
    | { readonly kind: 'weighted'; readonly clusters: readonly { readonly name: string; readonly weight: number }[]; readonly totalWeight: number };
  /** Envoy default 1 h; 0 disables. */
  readonly idleTimeoutMs: number;
  readonly maxConnectAttempts: number;
  readonly accessLog: readonly AccessLogConfig[];
}

// ───────────────────────────── RBAC ─────────────────────────────

/** envoy.config.rbac.v3.RBAC (shared by the HTTP and network filters). */
export interface RbacConfig {
  /** undefined rules = allow everything (Envoy semantics when `rules` is unset). */
  readonly rules?: { readonly action: 'ALLOW' | 'DENY' | 'LOG'; readonly policies: readonly RbacPolicy[] };
  readonly shadowRules?: { readonly action: 'ALLOW' | 'DENY' | 'LOG'; readonly policies: readonly RbacPolicy[] };
  readonly statPrefix: string;
  /**
   * shadow_rules_stat_prefix: prefixes the shadow counters (`…rbac.<prefix>shadow_allowed`) and the
   * shadow result keys in dynamic metadata (`<prefix>shadow_engine_result`), as in Envoy.
   */
  readonly shadowStatPrefix?: string;
}

export interface RbacPolicy {
  readonly name: string;
  readonly permissions: readonly RbacPermission[];
  readonly principals: readonly RbacPrincipal[];
}

export type RbacPermission =
  | { readonly kind: 'any' }
  | { readonly kind: 'and'; readonly rules: readonly RbacPermission[] }
  | { readonly kind: 'or'; readonly rules: readonly RbacPermission[] }
  | { readonly kind: 'not'; readonly rule: RbacPermission }
  | { readonly kind: 'header'; readonly header: HeaderMatcher }
  | { readonly kind: 'url_path'; readonly matcher: StringMatcher }
  | { readonly kind: 'destination_ip'; readonly cidr: CidrRange }
  | { readonly kind: 'destination_port'; readonly port: number }
  | { readonly kind: 'requested_server_name'; readonly matcher: StringMatcher }
  | { readonly kind: 'metadata'; readonly matcher: MetadataMatcher };

/** envoy.type.matcher.v3.ValueMatcher over a google.protobuf.Value (in its JSON form). */
export type ValueMatcher =
  | { readonly kind: 'null' }
  | { readonly kind: 'double'; readonly exact?: number; readonly start?: number; readonly end?: number }
  | { readonly kind: 'string'; readonly matcher: StringMatcher }
  | { readonly kind: 'bool'; readonly value: boolean }
  | { readonly kind: 'present'; readonly value: boolean }
  | { readonly kind: 'list'; readonly oneOf: ValueMatcher }
  | { readonly kind: 'or'; readonly matchers: readonly ValueMatcher[] };

/**
 * envoy.type.matcher.v3.MetadataMatcher: the value at `path` (struct keys) in the `filter`
 * namespace of the stream's dynamic metadata, e.g. jwt_authn's verified payload.
 */
export interface MetadataMatcher {
  readonly filter: string;
  readonly path: readonly string[];
  readonly value: ValueMatcher;
  readonly invert: boolean;
}

export type RbacPrincipal =
  | { readonly kind: 'any' }
  | { readonly kind: 'and'; readonly ids: readonly RbacPrincipal[] }
  | { readonly kind: 'or'; readonly ids: readonly RbacPrincipal[] }
  | { readonly kind: 'not'; readonly id: RbacPrincipal }
  | { readonly kind: 'authenticated'; readonly principalName?: StringMatcher }
  | { readonly kind: 'direct_remote_ip' | 'remote_ip' | 'source_ip'; readonly cidr: CidrRange }
  | { readonly kind: 'header'; readonly header: HeaderMatcher }
  | { readonly kind: 'url_path'; readonly matcher: StringMatcher }
  /** filter_state over Istio's principal keys (what istio_authn puts there from the mTLS peer). */
  | { readonly kind: 'filter_state'; readonly key: IstioPrincipalKey; readonly matcher: StringMatcher }
  | { readonly kind: 'metadata'; readonly matcher: MetadataMatcher };

/** The filter state keys istio_authn sets on an mTLS connection. */
export type IstioPrincipalKey = 'io.istio.peer_principal' | 'io.istio.local_principal';

// ───────────────────────────── Access log ─────────────────────────────

export interface AccessLogConfig {
  readonly name: string;
  readonly sink: { readonly kind: 'stdout' } | { readonly kind: 'stderr' } | { readonly kind: 'file'; readonly path: string };
  /** Envoy format string (text) or JSON format map; undefined = meshlet's JSON default fields. */
  readonly format?:
    | { readonly kind: 'text'; readonly text: string; readonly omitEmptyValues?: boolean }
    | { readonly kind: 'json'; readonly json: Readonly<Record<string, unknown>>; readonly omitEmptyValues?: boolean };
}

// ───────────────────────────── Clusters ─────────────────────────────

export type ClusterType = 'STATIC' | 'STRICT_DNS' | 'LOGICAL_DNS' | 'EDS' | 'ORIGINAL_DST';

/** LB policy names; Envoy's plus meshlet's PEAK_EWMA (registered by name, see upstream/lb). */
export type LbPolicyName = 'ROUND_ROBIN' | 'LEAST_REQUEST' | 'RANDOM' | 'RING_HASH' | 'MAGLEV' | 'PEAK_EWMA' | 'CLUSTER_PROVIDED';

export interface CircuitBreakerThresholds {
  readonly priority: 'DEFAULT' | 'HIGH';
  /** Envoy defaults: 1024, 1024, 1024, 3. */
  readonly maxConnections: number;
  readonly maxPendingRequests: number;
  readonly maxRequests: number;
  readonly maxRetries: number;
  readonly retryBudget?: { readonly budgetPercent: number; readonly minRetryConcurrency: number };
}

export interface ClusterConfig {
  readonly name: string;
  readonly type: ClusterType;
  readonly edsServiceName?: string;
  readonly edsConfigSource?: ConfigSource;
  /** Envoy default 5 s. */
  readonly connectTimeoutMs: number;
  readonly lbPolicy: LbPolicyName;
  readonly lbConfig: {
    readonly ringHash?: { readonly minRingSize: number; readonly maxRingSize: number; readonly hashFunction: 'XX_HASH' | 'MURMUR_HASH_2' };
    readonly leastRequest?: { readonly choiceCount: number };
    readonly maglev?: { readonly tableSize: number };
    readonly peakEwma?: { readonly decayMs: number; readonly defaultRttMs: number };
  };
  readonly loadAssignment?: ClusterLoadAssignment;
  readonly circuitBreakers: readonly CircuitBreakerThresholds[];
  /** Upstream HTTP protocol: explicit http1/http2, or use the downstream's. */
  readonly upstreamProtocol: 'http1' | 'http2' | 'downstream';
  readonly http2: Http2Options;
  /** common_http_protocol_options.idle_timeout (Envoy default 1 h). */
  readonly upstreamIdleTimeoutMs: number;
  /** 0 = unlimited. */
  readonly maxRequestsPerConnection: number;
  readonly transportSocket?: UpstreamTlsConfig;
  /**
   * transport_socket_matches (Istio's auto-mTLS): per endpoint, the first entry whose `match`
   * the endpoint's `envoy.transport_socket_match` metadata holds (then the locality's) picks the
   * socket; no match = `transportSocket`. Absent when the cluster has none.
   */
  readonly transportSocketMatches?: readonly TransportSocketMatch[];
  readonly healthChecks: readonly HealthCheckConfig[];
  readonly outlierDetection?: OutlierDetectionConfig;
  readonly dnsLookupFamily: 'AUTO' | 'V4_ONLY' | 'V6_ONLY' | 'V4_PREFERRED' | 'ALL';
  readonly dnsRefreshRateMs: number;
  readonly respectDnsTtl: boolean;
  /** common_lb_config.healthy_panic_threshold, percent; Envoy default 50. */
  readonly healthyPanicThresholdPercent: number;
  /** common_lb_config.locality_weighted_lb_config: choose a locality by weight first. */
  readonly localityWeightedLb?: boolean;
  /** common_lb_config.zone_aware_lb_config (Envoy's defaults when unset); used with a local cluster. */
  readonly zoneAware?: ZoneAwareLbConfig;
  /** ORIGINAL_DST: take the destination from this header instead of the socket (Envoy option). */
  /** original_dst_lb_config.upstream_port_override: connect to this port instead of the destination's. */
  readonly originalDstPortOverride?: number;
  readonly originalDstHeader?: string;
  readonly cleanupIntervalMs: number;
  readonly perConnectionBufferLimitBytes: number;
  readonly metadata: Readonly<Record<string, unknown>>;
  /**
   * upstream_bind_config: local addresses upstream connections are made from (Istio's inbound
   * clusters use 127.0.0.6 so delivered traffic is not recaptured). One per IP family at most;
   * the one matching the destination's family is used.
   */
  readonly upstreamBindConfig?: { readonly sourceAddresses: readonly { readonly address: string; readonly port: number }[] };
  /** Cluster.filters: Istio's upstream TCP metadata exchange (the only upstream network filter meshlet has). */
  readonly upstreamMetadataExchange?: MetadataExchangeConfig;
}

/** envoy.config.endpoint.v3.ClusterLoadAssignment */
export interface ClusterLoadAssignment {
  readonly clusterName: string;
  readonly endpoints: readonly LocalityLbEndpoints[];
  /** Envoy default 140. */
  readonly overprovisioningFactor: number;
}

/** envoy.config.cluster.v3.Cluster.CommonLbConfig.ZoneAwareLbConfig. */
export interface ZoneAwareLbConfig {
  /** routing_enabled: percent of requests zone-aware routing applies to (default 100). */
  readonly routingEnabledPercent: number;
  /** min_cluster_size: fewer upstream hosts disable zone-aware routing (default 6). */
  readonly minClusterSize: number;
  /** fail_traffic_on_panic: in panic, no host instead of every host (default false). */
  readonly failTrafficOnPanic: boolean;
}

export interface LocalityLbEndpoints {
  readonly locality?: Locality;
  /** The locality's filter_metadata (transport socket matching falls back to it). */
  readonly metadata?: Readonly<Record<string, unknown>>;
  readonly lbEndpoints: readonly LbEndpoint[];
  readonly loadBalancingWeight?: number;
  readonly priority: number;
}

export type HealthStatus = 'UNKNOWN' | 'HEALTHY' | 'UNHEALTHY' | 'DRAINING' | 'TIMEOUT' | 'DEGRADED';

export interface LbEndpoint {
  readonly address: Address;
  readonly hostname: string;
  readonly healthStatus: HealthStatus;
  /** Envoy default 1. */
  readonly weight: number;
  readonly healthCheckPort?: number;
  readonly metadata: Readonly<Record<string, unknown>>;
}

export interface HealthCheckConfig {
  readonly timeoutMs: number;
  readonly intervalMs: number;
  readonly intervalJitterMs: number;
  readonly intervalJitterPercent: number;
  readonly unhealthyThreshold: number;
  readonly healthyThreshold: number;
  readonly noTrafficIntervalMs: number;
  readonly unhealthyIntervalMs?: number;
  readonly check:
    | { readonly kind: 'http'; readonly host: string; readonly path: string; readonly expectedStatuses: readonly { readonly start: number; readonly end: number }[]; readonly useHttp2: boolean }
    | { readonly kind: 'tcp'; readonly send?: Buffer; readonly receive: readonly Buffer[] }
    | { readonly kind: 'grpc'; readonly serviceName: string; readonly authority?: string };
}

export interface OutlierDetectionConfig {
  /** Envoy defaults: 5, 5, 10 s interval, 30 s base ejection, 10 % max ejection, … */
  readonly consecutive5xx: number;
  readonly consecutiveGatewayFailure: number;
  readonly intervalMs: number;
  readonly baseEjectionTimeMs: number;
  readonly maxEjectionTimeMs: number;
  readonly maxEjectionPercent: number;
  readonly enforcingConsecutive5xx: number;
  readonly enforcingConsecutiveGatewayFailure: number;
  readonly enforcingSuccessRate: number;
  readonly successRateMinimumHosts: number;
  readonly successRateRequestVolume: number;
  readonly successRateStdevFactor: number;
  readonly splitExternalLocalOriginErrors: boolean;
}

// ───────────────────────────── TLS and secrets ─────────────────────────────

export interface SdsSecretConfig {
  readonly name: string;
  /** undefined = the secret comes from static_resources.secrets. */
  readonly sdsConfig?: ConfigSource;
}

export interface CommonTlsConfig {
  readonly tlsCertificates: readonly TlsCertificate[];
  readonly tlsCertificateSdsSecretConfigs: readonly SdsSecretConfig[];
  readonly validationContext?: CertValidationContext;
  readonly validationContextSdsSecretConfig?: SdsSecretConfig;
  /** combined_validation_context: the default context merged over the SDS one. */
  readonly combinedDefaultValidationContext?: CertValidationContext;
  readonly alpnProtocols: readonly string[];
  readonly tlsMinimumProtocolVersion?: 'TLSv1_2' | 'TLSv1_3';
  readonly tlsMaximumProtocolVersion?: 'TLSv1_2' | 'TLSv1_3';
  readonly cipherSuites: readonly string[];
  /** tls_params.ecdh_curves (OpenSSL group names); absent means OpenSSL's defaults. */
  readonly ecdhCurves?: readonly string[];
  /** tls_params.signature_algorithms (OpenSSL sigalg names); absent means OpenSSL's defaults. */
  readonly signatureAlgorithms?: readonly string[];
}

export interface DownstreamTlsConfig {
  readonly kind: 'downstream_tls';
  readonly common: CommonTlsConfig;
  readonly requireClientCertificate: boolean;
  /** Envoy default 15 s (transport_socket_connect_timeout on the filter chain). */
  readonly handshakeTimeoutMs: number;
}

/** envoy.config.cluster.v3.Cluster.TransportSocketMatch */
export interface TransportSocketMatch {
  readonly name: string;
  /** Every key must be in the endpoint's `envoy.transport_socket_match` metadata with an equal value; {} matches all. */
  readonly match: Readonly<Record<string, unknown>>;
  /** undefined = raw_buffer (plaintext). */
  readonly transportSocket?: UpstreamTlsConfig;
}

export interface UpstreamTlsConfig {
  readonly kind: 'upstream_tls';
  readonly common: CommonTlsConfig;
  readonly sni?: string;
  readonly allowRenegotiation: boolean;
}

/**
 * A span tag from HCM tracing.custom_tags: a fixed value (literal, or environment read at config
 * time), or the request header `header` with `value` as its default.
 */
export interface CustomTag {
  readonly tag: string;
  readonly value: string;
  readonly header?: string;
}
