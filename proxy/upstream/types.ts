/**
 * What the router and the TCP proxy see of upstream clusters. Implemented in
 * proxy/upstream/cluster-manager.ts and proxy/upstream/cluster.ts.
 */
import type { PeerCertificate, SecureContext } from 'node:tls';
import type { SslStats } from './ssl-stats';
import type { Socket } from 'node:net';
import type { ClusterConfig, ClusterLoadAssignment } from '../config/types';
import type { ConnectionPool, HttpProtocol, ResetReason } from '../http/codec';
import type { PeerMetadata } from '../http/peer-metadata';
import type { Host } from './host';
import type { LbContext } from './lb/types';

/** One circuit-breaker resource (Envoy ResourceManager): a counter with a maximum. */
export interface Resource {
  readonly max: number;
  readonly count: number;
  canCreate(): boolean;
  inc(): void;
  dec(): void;
  /** inc() if below max; otherwise count the overflow in ClusterStats and return false. */
  tryInc?(): boolean;
}

export interface ClusterResources {
  readonly connections: Resource;
  readonly pendingRequests: Resource;
  readonly requests: Resource;
  readonly retries: Resource;
  /**
   * May one more retry start (max_retries, or the retry_budget when configured)? Counts
   * upstream_rq_retry_overflow when not. Does not inc() `retries`.
   */
  canRetry?(): boolean;
}

/** Envoy-style cluster counters (exported as envoy_cluster_* by telemetry). */
export class ClusterStats {
  upstreamRqTotal = 0;
  upstreamRqActive = 0;
  upstreamRqPendingOverflow = 0;
  upstreamRqTimeout = 0;
  upstreamRqRetry = 0;
  upstreamRqRetrySuccess = 0;
  upstreamRqRetryOverflow = 0;
  upstreamRq2xx = 0;
  upstreamRq3xx = 0;
  upstreamRq4xx = 0;
  upstreamRq5xx = 0;
  upstreamCxTotal = 0;
  upstreamCxActive = 0;
  upstreamCxConnectFail = 0;
  upstreamCxConnectTimeout = 0;
  upstreamCxOverflow = 0;
  upstreamCxDestroy = 0;
  membershipChange = 0;
  lbHealthyPanic = 0;
  upstreamCxNoneHealthy = 0;
}

/** Result of opening a transport connection to a host. */
export interface TransportConnection {
  readonly socket: Socket;
  /** ALPN the upstream selected (TLS only). */
  readonly alpn?: string;
  /** Verified SPIFFE ID of the upstream (mTLS only). */
  readonly peerPrincipal?: string;
  /** The upstream's Istio metadata from the TCP metadata exchange (cluster filter), when it ran. */
  readonly peer?: PeerMetadata;
}

/**
 * Opens raw transport connections to a host: plain TCP, or TLS/mTLS with identity verification
 * when the cluster has a transport_socket. Shared by HTTP pools, the TCP proxy and health checks.
 * Exactly one callback invocation; connect timeout enforced here.
 */
/** See TransportSocketFactory.clientTls. */
export interface ClientTlsOptions {
  readonly secureContext: SecureContext;
  readonly servername?: string;
  /** undefined when the server certificate is acceptable, else why not. */
  checkServer(cert: PeerCertificate): string | undefined;
}

export interface TransportSocketFactory {
  /** TLS transports: the cluster's `ssl.*` counters. */
  readonly ssl?: SslStats;
  /**
   * TLS transports: what a client that makes its own connections (grpc-js for side calls and
   * gRPC health checks) needs to speak the cluster's TLS: the current client context (workload
   * certificate, trust bundle, versions, ciphers), the SNI, and the identity check of the server
   * certificate (match_typed_subject_alt_names). Throws when a secret is not available yet.
   */
  clientTls?(): ClientTlsOptions;
  connect(
    host: Host,
    opts: {
      readonly alpn?: readonly string[];
      /** istio.alpn: offered instead of the TLS context's alpn_protocols (TLS only). */
      readonly alpnOverride?: readonly string[];
      readonly timeoutMs: number;
    },
    cb: (err: { reason: ResetReason; detail: string } | undefined, conn: TransportConnection | undefined) => void,
  ): void;
}

export interface UpstreamCluster {
  readonly name: string;
  readonly config: ClusterConfig;
  readonly stats: ClusterStats;
  readonly resources: ClusterResources;
  /** All hosts across priorities (for admin /clusters and health checking). */
  readonly hosts: readonly Host[];
  /** Warming: an EDS cluster before its first assignment arrives. */
  readonly initialized: boolean;
  /** Pick a host respecting priorities, health and the panic threshold. undefined = none healthy. */
  chooseHost(ctx: LbContext | undefined): Host | undefined;
  /**
   * The HTTP pool for `host`; `downstream` picks the protocol when the cluster says to use the
   * downstream's. Pools are created lazily and kept per host.
   */
  httpPool(host: Host, downstream: HttpProtocol, alpnOverride?: readonly string[]): ConnectionPool;
  readonly transport: TransportSocketFactory;
  /**
   * The transport for connections to `host`: its transport_socket_matches choice, else
   * `transport`. Every connection to a host goes through this.
   */
  transportFor?(host: Host): TransportSocketFactory;
  /** ORIGINAL_DST clusters: the host for a given destination, created on demand. */
  hostForOriginalDst?(address: string, port: number): Host;
  /** Feed EDS (or a static/DNS refresh) into the cluster: hosts are diffed by address. */
  updateAssignment(cla: ClusterLoadAssignment): void;
  /** PEAK_EWMA feedback: the round-trip time of a completed request to `host`, in ms. */
  observeRtt?(host: Host, rttMs: number): void;
  /** Health checking / outlier detection changed a host's health: rebuild the balancers. */
  healthChanged?(): void;
  /**
   * Passive health (outlier detection): the router reports the outcome of every upstream attempt
   * to `host` — the response status, or Envoy's stand-ins for local-origin failures (503 for a
   * connect failure or reset, 504 for a timeout). Pool overflow is not reported.
   */
  reportResult?(host: Host, status: number): void;
}

export interface ClusterLookup {
  get(name: string): UpstreamCluster | undefined;
}
