/**
 * One upstream endpoint and everything the data plane tracks about it.
 *
 * A Host is created by a cluster from its load assignment (static, DNS or EDS) and kept across
 * membership updates when the address is unchanged, so counters, health and connection pools
 * survive config pushes. Fields are plain mutable numbers on purpose: load balancers and the
 * router update them on every request without allocating.
 */
import type { Address, HealthStatus, Locality } from '../config/types';

export class HostStats {
  rqTotal = 0;
  rqSuccess = 0;
  rqError = 0;
  rqTimeout = 0;
  cxTotal = 0;
  cxConnectFail = 0;
}

export class Host {
  /** "ip:port" or the pipe path: stable identity across updates. */
  readonly key: string;
  /** Address used to connect: host (IP or name) and port. */
  readonly host: string;
  readonly port: number;
  weight: number;
  priority: number;
  locality: Locality | undefined;
  /** The load_balancing_weight of the host's locality group (locality weighted balancing). */
  localityWeight: number | undefined;
  hostname: string;
  metadata: Readonly<Record<string, unknown>>;
  /** The filter_metadata of the host's locality group (transport socket matching falls back to it). */
  localityMetadata: Readonly<Record<string, unknown>> | undefined;
  /** Health status as pushed by EDS (or UNKNOWN for static/DNS). */
  edsHealth: HealthStatus;
  /** Set by active health checking (issue: resilience). */
  failedActiveHealthCheck = false;
  /** Set by outlier detection while ejected. */
  outlierEjected = false;
  /** Requests currently in flight to this host (least-request, peak-EWMA, circuit breaking). */
  activeRequests = 0;
  activeConnections = 0;
  /** Peak-EWMA state: smoothed round-trip time in ms and when it was last updated. */
  ewmaRttMs = 0;
  ewmaStamp = 0;
  /**
   * LOGICAL_DNS only: the IP to dial for new connections (the latest resolution of `host`, which
   * stays the DNS name so the host's identity and pools survive re-resolution). undefined = dial
   * `host`. Transports should dial `connectAddress ?? host`.
   */
  connectAddress: string | undefined = undefined;
  readonly stats = new HostStats();

  constructor(
    readonly address: Address,
    opts: {
      weight?: number;
      priority?: number;
      locality?: Locality;
      localityWeight?: number;
      hostname?: string;
      metadata?: Readonly<Record<string, unknown>>;
      localityMetadata?: Readonly<Record<string, unknown>>;
      health?: HealthStatus;
    } = {},
  ) {
    if (address.kind === 'socket') {
      this.host = address.host;
      this.port = address.port;
      this.key = address.host.includes(':') ? `[${address.host}]:${address.port}` : `${address.host}:${address.port}`;
    } else {
      this.host = address.path;
      this.port = 0;
      this.key = address.path;
    }
    this.weight = opts.weight ?? 1;
    this.priority = opts.priority ?? 0;
    this.locality = opts.locality;
    this.localityWeight = opts.localityWeight;
    this.hostname = opts.hostname ?? '';
    this.metadata = opts.metadata ?? {};
    this.localityMetadata = opts.localityMetadata;
    this.edsHealth = opts.health ?? 'UNKNOWN';
  }

  /** Eligible for new requests: not unhealthy/draining by EDS, active HC, or outlier detection. */
  get healthy(): boolean {
    const h = this.edsHealth;
    return (
      h !== 'UNHEALTHY' && h !== 'DRAINING' && h !== 'TIMEOUT' && !this.failedActiveHealthCheck && !this.outlierEjected
    );
  }

  /** Draining hosts get no new requests even in panic mode. */
  get draining(): boolean {
    return this.edsHealth === 'DRAINING';
  }
}
