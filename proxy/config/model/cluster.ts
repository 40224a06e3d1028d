/**
 * Cluster and endpoint config (part of the config model; proxy/config/types.ts re-exports every
 * area): clusters with their load balancing, circuit breakers, health checks and outlier
 * detection, and ClusterLoadAssignment (EDS) with localities and endpoints.
 */
import type { ConfigSource, Locality } from '../../../common/config-types';
import type { Address } from './address';
import type { Http2Options } from './hcm';
import type { MetadataExchangeConfig } from './listener';
import type { TransportSocketMatch, UpstreamTlsConfig } from './tls';

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
