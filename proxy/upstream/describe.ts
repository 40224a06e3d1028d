/**
 * What admin /clusters shows for a cluster (Envoy's text format has one line per host counter and
 * flag; the admin module does the formatting, this module collects the facts). Read-only: it
 * looks at hosts and counters and changes nothing.
 */
import type { ClusterConfig, HealthStatus, Locality } from '../config/types';
import type { Host } from './host';
import type { ClusterResourceManager } from './resources';
import type { UpstreamCluster } from './types';

/** One host as admin /clusters shows it (the admin module formats it Envoy's way). */
export interface HostDescription {
  /** "ip:port" (or pipe path). */
  readonly address: string;
  readonly hostname: string;
  readonly weight: number;
  readonly priority: number;
  readonly region: string;
  readonly zone: string;
  readonly subZone: string;
  /** "healthy" or Envoy's flags joined, e.g. "/failed_active_hc/failed_outlier_check". */
  readonly healthFlags: string;
  /** The transport_socket_matches entry the host connects with ("default": the cluster's); absent without matches. */
  readonly transportSocketMatch?: string;
  readonly stats: {
    readonly cx_active: number;
    readonly cx_connect_fail: number;
    readonly cx_total: number;
    readonly rq_active: number;
    readonly rq_error: number;
    readonly rq_success: number;
    readonly rq_timeout: number;
    readonly rq_total: number;
  };
}

/** One cluster as admin /clusters shows it. */
export interface ClusterDescription {
  readonly name: string;
  readonly type: ClusterConfig['type'];
  readonly addedViaApi: boolean;
  readonly initialized: boolean;
  readonly circuitBreakers: {
    readonly default: {
      readonly maxConnections: number;
      readonly maxPendingRequests: number;
      readonly maxRequests: number;
      readonly maxRetries: number;
    };
  };
  readonly hosts: readonly HostDescription[];
}

/** Envoy's host health flags, as /clusters prints them. */
export function healthFlags(h: Host): string {
  let s = '';
  if (h.failedActiveHealthCheck) s += '/failed_active_hc';
  if (h.outlierEjected) s += '/failed_outlier_check';
  const eds: HealthStatus = h.edsHealth;
  if (eds === 'UNHEALTHY' || eds === 'TIMEOUT') s += '/failed_eds_health';
  if (eds === 'DEGRADED') s += '/degraded_eds_health';
  if (eds === 'DRAINING') s += '/eds_status_draining';
  return s === '' ? 'healthy' : s;
}

const EMPTY_LOCALITY: Locality = Object.freeze({ region: '', zone: '', subZone: '' });

/** Collect the /clusters facts for one cluster. */
export function describeCluster(
  c: Pick<UpstreamCluster, 'name' | 'config' | 'initialized' | 'hosts'> & {
    readonly resources: ClusterResourceManager;
  },
  addedViaApi: boolean,
  socketName?: (h: Host) => string,
): ClusterDescription {
  const t = c.resources.thresholds;
  return {
    name: c.name,
    type: c.config.type,
    addedViaApi,
    initialized: c.initialized,
    circuitBreakers: {
      default: {
        maxConnections: t.maxConnections,
        maxPendingRequests: t.maxPendingRequests,
        maxRequests: t.maxRequests,
        maxRetries: c.resources.retries.max,
      },
    },
    hosts: c.hosts.map((h) => describeHost(h, socketName?.(h))),
  };
}

export function describeHost(h: Host, transportSocketMatch?: string): HostDescription {
  const loc = h.locality ?? EMPTY_LOCALITY;
  return {
    address: h.key,
    hostname: h.hostname,
    weight: h.weight,
    priority: h.priority,
    region: loc.region,
    zone: loc.zone,
    subZone: loc.subZone,
    healthFlags: healthFlags(h),
    ...(transportSocketMatch !== undefined ? { transportSocketMatch } : {}),
    stats: {
      cx_active: h.activeConnections,
      cx_connect_fail: h.stats.cxConnectFail,
      cx_total: h.stats.cxTotal,
      rq_active: h.activeRequests,
      rq_error: h.stats.rqError,
      rq_success: h.stats.rqSuccess,
      rq_timeout: h.stats.rqTimeout,
      rq_total: h.stats.rqTotal,
    },
  };
}
