/**
 * Builders for upstream tests: a complete ClusterConfig with Envoy's defaults, load assignments,
 * and a recording ConnectionPool stand-in for the injected PoolFactory (the real pools belong to
 * the codec modules; cluster tests only need to see which pools were created, drained, destroyed).
 */
import type { ClusterConfig, ClusterLoadAssignment, HealthStatus, LbEndpoint } from '../../proxy/config/types';
import type { ConnectionPool, HttpProtocol, PoolCallbacks, ResponseSink } from '../../proxy/http/codec';
import type { PoolFactory } from '../../proxy/upstream/cluster';
import type { Host } from '../../proxy/upstream/host';

export function clusterConfig(over: Partial<ClusterConfig> & { name: string }): ClusterConfig {
  return {
    type: 'STATIC',
    connectTimeoutMs: 5000,
    lbPolicy: 'ROUND_ROBIN',
    lbConfig: {},
    circuitBreakers: [],
    upstreamProtocol: 'http1',
    http2: { maxConcurrentStreams: 100, initialStreamWindowSize: 65535, initialConnectionWindowSize: 1048576 },
    upstreamIdleTimeoutMs: 3_600_000,
    maxRequestsPerConnection: 0,
    healthChecks: [],
    dnsLookupFamily: 'AUTO',
    dnsRefreshRateMs: 5000,
    respectDnsTtl: false,
    healthyPanicThresholdPercent: 50,
    cleanupIntervalMs: 5000,
    perConnectionBufferLimitBytes: 1024 * 1024,
    metadata: {},
    ...over,
  };
}

export interface EndpointSpec {
  host?: string;
  port: number;
  weight?: number;
  priority?: number;
  health?: HealthStatus;
}

export function endpoint(s: EndpointSpec): LbEndpoint {
  return {
    address: { kind: 'socket', host: s.host ?? '127.0.0.1', port: s.port },
    hostname: '',
    healthStatus: s.health ?? 'UNKNOWN',
    weight: s.weight ?? 1,
    metadata: {},
  };
}

/** One locality group per priority, in the order priorities first appear. */
export function assignment(name: string, eps: EndpointSpec[], overprovisioningFactor = 140): ClusterLoadAssignment {
  const byPriority = new Map<number, LbEndpoint[]>();
  for (const e of eps) {
    const p = e.priority ?? 0;
    if (!byPriority.has(p)) byPriority.set(p, []);
    byPriority.get(p)?.push(endpoint(e));
  }
  return {
    clusterName: name,
    endpoints: [...byPriority].map(([priority, lbEndpoints]) => ({ priority, lbEndpoints })),
    overprovisioningFactor,
  };
}

/** A pool stand-in that records its life cycle; `activeStreams` can be set by the test. */
export class RecordingPool implements ConnectionPool {
  activeStreams = 0;
  connections = 0;
  pending = 0;
  drained = false;
  destroyed = false;
  constructor(
    readonly host: Host,
    readonly protocol: HttpProtocol,
  ) {}
  newStream(_sink: ResponseSink, callbacks: PoolCallbacks): undefined {
    callbacks.onPoolFailure('connect_failure', 'recording pool makes no connections');
    return undefined;
  }
  drain(): void {
    this.drained = true;
  }
  destroy(): void {
    this.destroyed = true;
  }
}

export function recordingPoolFactory(): { factory: PoolFactory; pools: RecordingPool[] } {
  const pools: RecordingPool[] = [];
  const factory: PoolFactory = (host, _cluster, protocol) => {
    const p = new RecordingPool(host, protocol);
    pools.push(p);
    return p;
  };
  return { factory, pools };
}

/** Count picks per host key. */
export function tally(pick: () => Host | undefined, n: number): Map<string, number> {
  const m = new Map<string, number>();
  for (let i = 0; i < n; i++) {
    const h = pick();
    const k = h === undefined ? 'none' : h.key;
    m.set(k, (m.get(k) ?? 0) + 1);
  }
  return m;
}
