/**
 * The validated, frozen configuration model: what every decoder produces and every data-plane
 * component consumes. Raw input (bootstrap YAML/JSON or xDS resources in proto3 JSON form) is
 * turned into these shapes exactly once, by the decoders in proxy/config/envoy/*.
 *
 * Field names are camelCase versions of the Envoy v3 proto fields they come from, so an Envoy user
 * can map them back. Durations are milliseconds. Defaults are Envoy's unless a comment says why not.
 * Objects are deep-frozen by the decoders; nothing downstream mutates or re-validates them.
 *
 * The model is one file per config area under proxy/config/model/ (address, listener, hcm, route,
 * rbac, cluster, tls, observability); this file holds the root Bootstrap and re-exports them all,
 * so `proxy/config/types` stays the one import for the whole model.
 */

import type { RuntimeLayerConfig } from '../../common/runtime';
import type { DynamicResources, NodeInfo, SecretConfig } from '../../common/config-types';
import type { Address } from './model/address';
import type { ClusterConfig } from './model/cluster';
import type { ListenerConfig } from './model/listener';
import type { TracingConfig } from './model/observability';

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

export * from './model/address';
export * from './model/cluster';
export * from './model/hcm';
export * from './model/listener';
export * from './model/observability';
export * from './model/rbac';
export * from './model/route';
export * from './model/tls';

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
