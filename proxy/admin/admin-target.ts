/**
 * What the core admin endpoints (endpoints.ts) read and control, declared here so admin sees a
 * named subset of the running proxy instead of importing the server: state and readiness, the
 * bootstrap, and the views the cluster manager, listener manager, certificate store and xDS side
 * already offer. MeshletServer satisfies it; tests may pass anything that does.
 */
import type { CertStore } from '../../certs/store';
import type { Bootstrap, ListenerConfig } from '../config/types';
import type { DynamicConfig } from '../dynamic/xds-config';
import type { ListenerManager } from '../listeners/listener-manager';
import type { ClusterManager } from '../upstream/cluster-manager';

export interface AdminTarget {
  /** Envoy's server state (PRE_INITIALIZING, INITIALIZING, LIVE, DRAINING). */
  readonly state: string;
  /** What admin and metrics report: DRAINING after /healthcheck/fail or /drain_listeners. */
  readonly reportedState: string;
  /** Set by POST /drain_listeners. */
  listenersDrained: boolean;
  /** LIVE and not failed by /healthcheck/fail or /drain_listeners. */
  readonly ready: boolean;
  /** Set and cleared by POST /healthcheck/fail and /healthcheck/ok. */
  healthCheckFailed: boolean;
  readonly startedAt: number;
  readonly bootstrap: Bootstrap;
  /** The bootstrap as written (shown by /config_dump) and the drain time (/server_info). */
  readonly opts: { readonly rawBootstrap?: unknown; readonly drainTimeoutMs?: number; readonly drainStrategy?: string };
  readonly clusters: Pick<ClusterManager, 'describe' | 'warmingNames'>;
  readonly listeners: Pick<ListenerManager, 'all' | 'drainAll'>;
  readonly certs: Pick<CertStore, 'adminCerts'>;
  /** The xDS side, when the bootstrap has dynamic_resources. */
  readonly dynamic: Pick<DynamicConfig, 'client' | 'listenerStates'> | undefined;
  /** POST /drain_listeners?graceful: keep accepting for the drain time while connections drain, then stop (unless skipStop). */
  drainListeners(filter: ((l: { config: ListenerConfig }) => boolean) | undefined, skipStop: boolean): unknown;
  /** POST /quitquitquit: drain (ending early once no connection is left), then close. */
  shutdown(drainTimeoutMs: number | undefined, exitOnZero: boolean): Promise<void>;
}
