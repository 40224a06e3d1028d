/**
 * Listener config (part of the config model; proxy/config/types.ts re-exports every area):
 * listeners, listener filters, filter chains and their matching (filter_chain_match and the
 * filter_chain_matcher tree), and the network filters a chain runs (the TCP proxy, ext_authz and
 * Istio's metadata exchange among them; the HCM's own config is hcm.ts).
 */
import type { StringMatcher } from '../../../common/config-types';
import type { IstioStatsConfig } from '../filters/istio-stats';
import type { Address, CidrRange } from './address';
import type { HcmConfig } from './hcm';
import type { AccessLogConfig } from './observability';
import type { MetadataMatcher, RbacConfig } from './rbac';
import type { DownstreamTlsConfig } from './tls';

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
