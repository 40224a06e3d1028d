/**
 * Route configuration (part of the config model; proxy/config/types.ts re-exports every area):
 * RouteConfiguration, virtual hosts, routes and their matches, route / redirect / direct response
 * actions, header mutations, weighted clusters, CORS, mirroring, rate limit descriptors, retry
 * and hash policies — with RETRY_ON, the one list of retry_on conditions.
 */
import type { RuntimeFraction } from '../../../common/runtime';
import type { StringMatcher } from '../../../common/config-types';
import type { CustomTag } from './observability';

/** The header edits Envoy allows at every level of a route table (route configuration, virtual host, route, weighted cluster). */
export interface HeaderMutations {
  readonly requestHeadersToAdd: readonly HeaderValueOption[];
  readonly requestHeadersToRemove: readonly string[];
  readonly responseHeadersToAdd: readonly HeaderValueOption[];
  readonly responseHeadersToRemove: readonly string[];
}

/** envoy.config.route.v3.RouteConfiguration */
export interface RouteConfiguration extends HeaderMutations {
  readonly name: string;
  readonly virtualHosts: readonly VirtualHost[];
  /** ignore_port_in_host_matching: virtual hosts are picked by the authority without its port (istiod sets it). */
  readonly ignorePortInHostMatching?: boolean;
}

export interface VirtualHost extends HeaderMutations {
  readonly name: string;
  /** Lower-cased. Exact, `*.suffix`, `prefix.*` or `*`, optionally with `:port`. */
  readonly domains: readonly string[];
  readonly routes: readonly Route[];
  readonly retryPolicy?: RetryPolicy;
  readonly typedPerFilterConfig: Readonly<Record<string, unknown>>;
  /** The `cors` field (route.v3.CorsPolicy), read by envoy.filters.http.cors without a typed_per_filter_config policy. */
  readonly cors?: CorsPolicyConfig;
  /** include_request_attempt_count: upstream requests carry x-envoy-attempt-count (Envoy adds it only then; istiod sets it). */
  readonly includeRequestAttemptCount?: boolean;
}

export interface Route extends HeaderMutations {
  readonly name: string;
  readonly match: RouteMatch;
  readonly action: RouteAction | RedirectAction | DirectResponseAction;
  /** Filter name → that filter's decoded per-route config. */
  readonly typedPerFilterConfig: Readonly<Record<string, unknown>>;
  /** Names the span instead of the default; `propagate` sends it upstream on outbound. */
  readonly decorator?: { readonly operation: string; readonly propagate: boolean };
  /** Route-level tracing: each set percentage replaces the HCM's; tags are added to the HCM's. */
  readonly tracing?: {
    readonly clientSamplingPercent?: number;
    readonly randomSamplingPercent?: number;
    readonly overallSamplingPercent?: number;
    readonly customTags?: readonly CustomTag[];
  };
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

export interface WeightedCluster extends HeaderMutations {
  readonly name: string;
  readonly weight: number;
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
