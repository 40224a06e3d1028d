/**
 * What the inspection endpoints (inspect-endpoints.ts, explain.ts) read, declared here so admin
 * sees a named, read-only subset of the running proxy instead of importing the server: listeners
 * and clusters (to run the proxy's own matchers over them), RDS tables, certificates, the xDS
 * cache, and the two telemetry views the overview shows (the Envoy-style stats and the Istio
 * request-duration histogram), typed by shape so admin does not depend on telemetry.
 * MeshletServer satisfies it.
 */
import type { CertStore } from '../../certs/store';
import type { Bootstrap, RouteConfiguration } from '../config/types';
import type { DynamicConfig } from '../dynamic/xds-config';
import type { ListenerManager } from '../listeners/listener-manager';
import type { ClusterManager } from '../upstream/cluster-manager';

/** One Envoy-style stat as the overview reads it (telemetry's StatEntry has this shape). */
export interface StatLike {
  readonly value: number;
  readonly scope?: string;
  readonly tag?: string;
  readonly stat?: string;
}

/** A histogram family's exported buckets (telemetry's HistogramFamily has this shape). */
export interface HistogramLike {
  readonly name: string;
  readonly buckets: readonly number[];
  getForPromString(): {
    readonly values: readonly {
      readonly value: number;
      readonly labels: Readonly<Record<string, string | number>>;
      readonly metricName?: string;
      readonly sharedLabels?: Readonly<Record<string, string>>;
    }[];
  };
}

export interface InspectTarget {
  readonly state: string;
  readonly ready: boolean;
  readonly startedAt: number;
  readonly bootstrap: Bootstrap;
  readonly listeners: Pick<ListenerManager, 'all' | 'get' | 'findByOriginalDst'>;
  readonly clusters: Pick<ClusterManager, 'get' | 'describe'>;
  readonly routeTables: ReadonlyMap<string, RouteConfiguration>;
  readonly certs: Pick<CertStore, 'get' | 'names'>;
  readonly dynamic: Pick<DynamicConfig, 'client'> | undefined;
  readonly telemetry: {
    readonly stats: { collect(): readonly StatLike[] };
    readonly metrics: { readonly requestDuration: HistogramLike };
  };
}
