/**
 * Where dynamic configuration goes: one narrow seam per owner of running state, declared here by
 * the side that pushes (as grpc-js-xds's dependency manager declares the `XdsConfigWatcher` it
 * hands resolved config to). DynamicConfig (xds-config.ts) tracks watches and warming and applies
 * what it accepted only through these; the composition (proxy/server.ts) passes the cluster
 * manager, the listener manager, its RDS table and the certificate store, which satisfy them.
 *
 * Nothing here may reach back into the server: the arrows run config → runtime only.
 */
import type { ClusterConfig, ClusterLoadAssignment, ListenerConfig, RouteConfiguration, SecretConfig } from '../config/types';

/** CDS and EDS results (the cluster manager). */
export interface ClusterTarget {
  /** Throws when the cluster manager rejects the config (the old cluster keeps serving). */
  addOrUpdate(config: ClusterConfig, opts: { readonly addedViaApi: boolean }): unknown;
  remove(name: string): unknown;
  updateEdsService(serviceName: string, cla: ClusterLoadAssignment): unknown;
  /** EDS clusters still waiting for their first assignment (initialization waits for them). */
  readonly warmingCount: number;
  /** Called when a cluster becomes active (a DNS cluster done warming ends the initial fetch). */
  onUpdate(listener: () => void): () => void;
}

/** LDS results, once warm (the listener manager). */
export interface ListenerTarget {
  /** Resolves once the listener is bound (or re-pointed); rejects when it cannot bind. */
  addOrUpdate(config: ListenerConfig): Promise<unknown>;
  remove(name: string): unknown;
}

/** RDS results: the route tables HTTP connection managers read by name at request time. */
export interface RouteTarget {
  set(name: string, config: RouteConfiguration): unknown;
  has(name: string): boolean;
}

/** SDS results (the certificate store, which validates before it swaps). */
export interface SecretTarget {
  update(name: string, secret: SecretConfig): Promise<{ readonly ok: true } | { readonly ok: false; readonly error: string }>;
  get(name: string): unknown;
  /** `rotate` is emitted after any secret changes, also ones installed outside SDS. */
  on(event: 'rotate', listener: () => void): unknown;
  off(event: 'rotate', listener: () => void): unknown;
}

/** A local certificate provider that owns some secrets (certs/csr-provider.ts). */
export interface SecretOwner {
  owns(name: string): boolean;
  /** The pushed secret is only the provider's provisioning credential. */
  offerSdsSecret(secret: SecretConfig): Promise<void>;
}

export interface XdsConfigTargets {
  readonly clusters: ClusterTarget;
  readonly listeners: ListenerTarget;
  readonly routes: RouteTarget;
  readonly secrets: SecretTarget;
  readonly secretOwner?: SecretOwner;
}
