/**
 * One upstream try (Envoy's UpstreamRequest): the pool and response callbacks of a single
 * request to one host, its per-try timer, response flow control, and the accounting every try
 * carries — the cluster's `requests` circuit breaker, upstream_rq_total / upstream_rq_active and
 * the host's active-request counter. It knows the router only through RouterCallbacks, and once
 * the router abandons it (`live = false`) every late callback is ignored.
 *
 * Host choice and admission (selectHost, releaseRequest) live here too, so that CONNECT
 * termination (connect.ts) picks and counts its host exactly as a try does.
 */
import type { Host } from '../../upstream/host';
import type { LbContext } from '../../upstream/lb/types';
import type { UpstreamCluster } from '../../upstream/types';
import type {
  Cancellable,
  ConnectionPool,
  DownstreamConnectionInfo,
  HeaderList,
  PoolCallbacks,
  RequestEncoder,
  RequestHead,
  ResetReason,
  ResponseHead,
  ResponseSink,
  UpstreamInfo,
} from '../codec';
import { getHeader } from '../headers';
import { NO_HEALTHY_UPSTREAM, type UpstreamFailureReply, upstreamResetReply } from '../local-reply';
import { splitAuthority } from './request-shaping';

/** What an UpstreamRequest tells its router (Envoy's RouterFilterInterface). */
export interface RouterCallbacks {
  onUpstreamReady(req: UpstreamRequest, info: UpstreamInfo): void;
  /** Connect failure, pool overflow, or a reset of the upstream stream. */
  onUpstreamFailure(req: UpstreamRequest, reason: ResetReason, detail: string): void;
  onUpstreamHeaders(req: UpstreamRequest, head: ResponseHead, endStream: boolean): void;
  onUpstreamData(req: UpstreamRequest, chunk: Buffer, endStream: boolean): void;
  onUpstreamTrailers(req: UpstreamRequest, trailers: HeaderList): void;
  /** The upstream drained after a request write returned false. */
  onUpstreamWritable(): void;
  onPerTryTimeout(req: UpstreamRequest): void;
}

function onPerTryTimer(req: UpstreamRequest): void {
  req.perTryTimer = undefined;
  if (req.live) req.parent.onPerTryTimeout(req);
}

export class UpstreamRequest implements ResponseSink, PoolCallbacks {
  live = true;
  encoder: RequestEncoder | undefined;
  private pending: Cancellable | undefined;
  startMono = 0;
  responseHeaders = false;
  /** The response is paused because the downstream is above its watermark. */
  private responsePaused = false;
  /** Holds one unit of the cluster's `requests` resource and of host.activeRequests. */
  private counted = true;
  perTryTimer: NodeJS.Timeout | undefined;

  /** The caller admitted the request (admitRequest) for `host` before constructing it. */
  constructor(
    readonly parent: RouterCallbacks,
    readonly cluster: UpstreamCluster,
    readonly host: Host,
  ) {}

  /** Ask the pool for a stream (the router has recorded this try as current first). */
  start(pool: ConnectionPool): void {
    this.startMono = performance.now();
    this.pending = pool.newStream(this, this);
  }

  onPoolReady(encoder: RequestEncoder, info: UpstreamInfo): void {
    this.pending = undefined;
    if (!this.live) {
      encoder.reset('local_reset');
      return;
    }
    this.encoder = encoder;
    this.parent.onUpstreamReady(this, info);
  }
  onPoolFailure(reason: ResetReason, detail: string): void {
    this.pending = undefined;
    if (this.live) this.parent.onUpstreamFailure(this, reason, detail);
  }
  onResponseHeaders(head: ResponseHead, endStream: boolean): void {
    if (this.live) this.parent.onUpstreamHeaders(this, head, endStream);
  }
  onResponseData(chunk: Buffer, endStream: boolean): void {
    if (this.live) this.parent.onUpstreamData(this, chunk, endStream);
  }
  onResponseTrailers(trailers: HeaderList): void {
    if (this.live) this.parent.onUpstreamTrailers(this, trailers);
  }
  onUpstreamReset(reason: ResetReason, detail?: string): void {
    if (this.live) this.parent.onUpstreamFailure(this, reason, detail ?? '');
  }
  onUpstreamWritable(): void {
    if (this.live) this.parent.onUpstreamWritable();
  }

  startPerTryTimer(ms: number): void {
    if (ms > 0 && this.perTryTimer === undefined) this.perTryTimer = setTimeout(onPerTryTimer, ms, this);
  }

  clearPerTryTimer(): void {
    if (this.perTryTimer !== undefined) {
      clearTimeout(this.perTryTimer);
      this.perTryTimer = undefined;
    }
  }

  /**
   * Send the request head, then the body and trailers received so far (`complete`: the
   * downstream request has ended). Returns whether the upstream is still below its watermark,
   * or undefined when a write failed synchronously and the try was abandoned.
   */
  sendRequest(
    head: RequestHead,
    body: readonly Buffer[] | undefined,
    trailers: HeaderList | undefined,
    complete: boolean,
  ): boolean | undefined {
    const enc = this.encoder!;
    const noBody = (body === undefined || body.length === 0) && trailers === undefined;
    enc.writeHeaders(head, complete && noBody);
    if (!this.live) return undefined;
    let ok = true;
    if (body !== undefined) {
      for (let i = 0; i < body.length; i++) {
        ok = enc.writeData(body[i]!, i === body.length - 1 && complete && trailers === undefined);
        if (!this.live) return undefined;
      }
    }
    if (complete && trailers !== undefined) enc.writeTrailers(trailers);
    return ok;
  }

  /** The downstream is above its watermark: stop reading the response. */
  pauseResponse(): void {
    if (!this.responsePaused && this.encoder !== undefined && this.live) {
      this.responsePaused = true;
      this.encoder.pauseResponse();
    }
  }

  /** The downstream drained: let the response flow again. */
  resumeResponse(): void {
    if (this.responsePaused && this.encoder !== undefined) {
      this.responsePaused = false;
      this.encoder.resumeResponse();
    }
  }

  /**
   * Per-try accounting when the try ends (once): the `requests` resource, upstream_rq_active,
   * the host's active requests, and rq_error for a failure before response headers.
   */
  release(success: boolean): void {
    if (this.counted) {
      this.counted = false;
      releaseRequest(this.cluster, this.host);
    }
    if (!success && !this.responseHeaders) this.host.stats.rqError++;
    this.clearPerTryTimer();
  }

  /**
   * The response is complete: account, and leave the stream unpaused — the codec hands the
   * connection back to its pool, which must never receive a read-paused connection.
   */
  complete(): void {
    this.release(true);
    this.resumeResponse();
    this.live = false;
  }

  /** Abandon this try: cancel a pending pool request or reset the stream. */
  abandon(): void {
    if (!this.live) return;
    this.live = false;
    this.clearPerTryTimer();
    if (this.pending) {
      this.pending.cancel();
      this.pending = undefined;
    } else if (this.encoder) {
      this.encoder.reset('local_reset');
    }
  }
}

// ───────────────────────────── host choice and admission ─────────────────────────────

/**
 * Choose and admit a host for one try or a CONNECT: the host, or the reply when there is none
 * (UH, upstream_cx_none_healthy counted) or the `requests` circuit breaker is full (UO).
 */
export function selectHost(
  cluster: UpstreamCluster,
  lbCtx: LbContext | undefined,
  head: RequestHead,
  conn: DownstreamConnectionInfo,
  suppressEnvoyHeaders: boolean,
): Host | UpstreamFailureReply {
  const host = chooseHost(cluster, lbCtx, head, conn);
  if (host === undefined) {
    cluster.stats.upstreamCxNoneHealthy++;
    return NO_HEALTHY_UPSTREAM;
  }
  if (!admitRequest(cluster, host)) return upstreamResetReply('overflow', '', suppressEnvoyHeaders);
  return host;
}

/**
 * The host for a request: ORIGINAL_DST's target for clusters of that type, else the cluster's
 * load balancer with `lbCtx` (hash, hosts to avoid).
 */
export function chooseHost(
  cluster: UpstreamCluster,
  lbCtx: LbContext | undefined,
  head: RequestHead,
  conn: DownstreamConnectionInfo,
): Host | undefined {
  return cluster.hostForOriginalDst !== undefined ? originalDstHost(cluster, head, conn) : cluster.chooseHost(lbCtx);
}

/**
 * ORIGINAL_DST: the host is where the client meant to go — the cluster's original_dst header
 * ("ip:port") when configured, else the connection's SO_ORIGINAL_DST.
 */
function originalDstHost(cluster: UpstreamCluster, head: RequestHead, conn: DownstreamConnectionInfo): Host | undefined {
  const header = cluster.config.originalDstHeader;
  if (header !== undefined) {
    // ":authority" (Envoy's spelling for the Host) lives in the head, not among the headers.
    const v = header === ':authority' || header === 'host' ? head.authority : getHeader(head.headers, header);
    if (v === undefined || v === '') return undefined;
    const colon = v.lastIndexOf(':');
    const port = Number(v.slice(colon + 1));
    if (colon <= 0 || !Number.isInteger(port) || port <= 0 || port > 65535) return undefined;
    let address = v.slice(0, colon);
    if (address.startsWith('[') && address.endsWith(']')) address = address.slice(1, -1);
    return cluster.hostForOriginalDst!(address, port);
  }
  const dst = conn.originalDst;
  if (dst !== undefined && (dst.port !== conn.localPort || dst.address !== conn.localAddress)) {
    return cluster.hostForOriginalDst!(dst.address, dst.port);
  }
  // Not intercepted (explicit proxy: the client dialled us): the request names its target in
  // an absolute-form URI or CONNECT authority ("host:port"); without a port there is no target.
  const target = splitAuthority(head.authority, head.method === 'CONNECT' ? 0 : head.scheme === 'https' ? 443 : 80);
  return target === undefined ? undefined : cluster.hostForOriginalDst!(target.host, target.port);
}

/**
 * The cluster's `requests` circuit breaker for one more request to `host`: false (and
 * upstream_rq_pending_overflow counted) when full; else the request is counted in
 * upstream_rq_total / upstream_rq_active and the host's active requests until releaseRequest.
 */
export function admitRequest(cluster: UpstreamCluster, host: Host): boolean {
  const requests = cluster.resources.requests;
  if (!requests.canCreate()) {
    cluster.stats.upstreamRqPendingOverflow++;
    return false;
  }
  requests.inc();
  // Envoy counts upstream_rq_total / upstream_rq_active per upstream request (each try).
  cluster.stats.upstreamRqTotal++;
  cluster.stats.upstreamRqActive++;
  host.activeRequests++;
  host.stats.rqTotal++;
  return true;
}

/** Undo admitRequest (exactly once per admitted request). */
export function releaseRequest(cluster: UpstreamCluster, host: Host): void {
  cluster.resources.requests.dec();
  if (cluster.stats.upstreamRqActive > 0) cluster.stats.upstreamRqActive--;
  if (host.activeRequests > 0) host.activeRequests--;
}

/** The response class counters of the cluster and the host; `retried` counts retry successes. */
export function countResponse(cluster: UpstreamCluster, host: Host, status: number, retried: boolean): void {
  const s = cluster.stats;
  if (status >= 500) {
    s.upstreamRq5xx++;
    host.stats.rqError++;
  } else {
    if (status >= 400) s.upstreamRq4xx++;
    else if (status >= 300) s.upstreamRq3xx++;
    else s.upstreamRq2xx++;
    host.stats.rqSuccess++;
  }
  if (retried && status < 500) s.upstreamRqRetrySuccess++;
}
