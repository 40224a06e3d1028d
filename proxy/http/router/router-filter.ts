/**
 * The router (Envoy's envoy.filters.http.router): the terminal HTTP filter that answers a matched
 * route. It picks the cluster (cluster / weighted_clusters / cluster_header), shapes the request
 * (request-shaping.ts), owns the route timeout, the replay buffer of the request body and the
 * retry decisions (retry-state.ts), and runs one UpstreamRequest per try (upstream-request.ts);
 * CONNECT terminated here goes to connect.ts. Direct responses and redirects are sent as local
 * responses through the filter manager.
 *
 * Lean hot path: the router is the one object a router-only chain creates per stream; its
 * methods are the timer callbacks (timers carry `this`), and the downstream request head is
 * edited in place and reused for every try. Data-plane failures never throw: they become local
 * replies with Envoy's status, body and response flag (local-reply.ts).
 */
import type { RouteAction, RouteConfiguration, WeightedCluster } from '../../config/types';
import { Host } from '../../upstream/host';
import type { LbContext } from '../../upstream/lb/types';
import type { UpstreamCluster } from '../../upstream/types';
import type { HeaderList, RequestHead, ResetReason, ResponseHead, UpstreamInfo } from '../codec';
import { FilterStatus, type TerminalFilterCallbacks, type TerminalHttpFilter } from '../filter';
import { getHeader, removeEnvoyHeaders, setHeader } from '../headers';
import {
  type UpstreamFailureReply,
  upstreamResetReply,
  upstreamTimeoutReply,
} from '../local-reply';
import type { CompiledRoute } from '../route-matcher';
import { Tunnel } from '../tunnel';
import { ConnectRequest, type ConnectOwner } from './connect';
import { DEFAULT_ROUTER_CONFIG, type RouterConfig } from './router-config';
import {
  applyRequestMutations,
  applyResponseMutations,
  cleanResponseHeaders,
  computeHash,
  directResponse,
  grpcStatusOf,
  type HashSideEffects,
  pickWeighted,
  redirectLocation,
  rewriteRequest,
  upgradeAllowed,
} from './request-shaping';
import {
  ENVOY_REQUEST_CONTROL_HEADERS,
  isDigits,
  RetryDecision,
  RetryState,
  retryPolicyFromHeaders,
} from './retry-state';
import { Shadows } from './shadow';
import { countResponse, type RouterCallbacks, selectHost, UpstreamRequest } from './upstream-request';

/** Request bodies up to this size are kept for replay on retry; beyond it retries are off. */
export const RETRY_BUFFER_LIMIT = 64 * 1024;

function onGlobalTimeout(r: RouterFilter): void {
  r.onGlobalTimeout();
}
function onBackOff(r: RouterFilter): void {
  r.onBackOffDone();
}

export class RouterFilter implements TerminalHttpFilter, RouterCallbacks, ConnectOwner {
  private head!: RequestHead;
  private action!: RouteAction;
  private route: CompiledRoute | undefined;
  private cluster!: UpstreamCluster;
  private weighted: WeightedCluster | undefined;
  private rc!: RouteConfiguration;
  private retry: RetryState | undefined;
  private attempt: UpstreamRequest | undefined;
  private lbCtx: LbContext | undefined;
  private previousHosts: Host[] | undefined;

  private body: Buffer[] | undefined;
  private bodyBytes = 0;
  /** The request body exceeded RETRY_BUFFER_LIMIT: no replay possible. */
  private bodyOverflow = false;
  private trailers: HeaderList | undefined;
  private downstreamComplete = false;
  /** Chunks already written to the current attempt's encoder (index into `body`). */
  private written = 0;
  private requestPaused = false;

  private globalTimer: NodeJS.Timeout | undefined;
  private backOffTimer: NodeJS.Timeout | undefined;
  private timeoutMs = 0;
  private done = false;
  private retriesHeld = 0;
  private tunnel: Tunnel | undefined;
  private connect: ConnectRequest | undefined;
  /** A hash-policy cookie generated for this client, set on the response. */
  private setCookie: string | undefined;
  /** Mirrors of this request (route request_mirror_policies); undefined for the usual route without. */
  private shadows: Shadows | undefined;
  private readonly config: RouterConfig;

  private readonly random: () => number;

  constructor(
    readonly callbacks: TerminalFilterCallbacks,
    config: RouterConfig | undefined,
  ) {
    this.config = config ?? DEFAULT_ROUTER_CONFIG;
    this.random = callbacks.random;
  }

  get finished(): boolean {
    return this.done;
  }

  // ─────────────── decoder side ───────────────

  decodeHeaders(head: RequestHead, endStream: boolean): FilterStatus {
    const cb = this.callbacks;
    const route = cb.routeEntry();
    const rc = cb.routeConfig();
    if (route === undefined || rc === undefined) {
      cb.sendLocalReply(404, '', undefined, 'NR', 'route_not_found');
      return FilterStatus.StopIteration;
    }
    this.head = head;
    this.rc = rc;
    this.route = route;
    this.downstreamComplete = endStream;
    const r = route.route;
    const action = r.action;
    if (action.kind === 'direct_response') {
      this.respondDirect(action.status, action.body, undefined);
      return FilterStatus.StopIteration;
    }
    if (action.kind === 'redirect') {
      this.respondDirect(action.responseCode, undefined, redirectLocation(action, head, route));
      return FilterStatus.StopIteration;
    }
    this.action = action;

    // Upgrades (WebSocket, CONNECT) must be enabled on the route or the connection manager.
    const upgrade = head.upgrade ?? (head.method === 'CONNECT' ? 'connect' : undefined);
    if (upgrade !== undefined && !upgradeAllowed(upgrade, action.upgradeTypes, cb.hcm.upgradeTypes)) {
      cb.sendLocalReply(403, '', undefined, undefined, 'upgrade_failed');
      return FilterStatus.StopIteration;
    }

    const c = action.cluster;
    if (c.kind === 'weighted') this.weighted = pickWeighted(c.clusters, c.totalWeight, this.random);
    const clusterName = c.kind === 'cluster' ? c.name : c.kind === 'weighted' ? this.weighted?.name : getHeader(head.headers, c.header);
    const cluster = clusterName === undefined ? undefined : cb.clusters.get(clusterName);
    if (clusterName !== undefined) cb.streamInfo.clusterName = clusterName;
    if (cluster === undefined) {
      cb.sendLocalReply(503, '', undefined, 'NC', 'cluster_not_found');
      return FilterStatus.StopIteration;
    }
    this.cluster = cluster;
    if (upgrade === 'connect' && action.terminateConnect === true) {
      this.terminateConnect();
      return FilterStatus.StopIteration;
    }

    // Request rewrites and header mutations (most specific first; the route config applies last).
    rewriteRequest(head, route, action, this.weighted, this.config.suppressEnvoyHeaders);
    const h = head.headers;
    applyRequestMutations(h, route, this.weighted, rc, cb.formatContext);
    if (action.hashPolicy.length > 0) {
      const fx: HashSideEffects = {};
      const hash = computeHash(action.hashPolicy, head, cb.connection.remoteAddress, fx);
      if (hash !== undefined) this.lbCtx = { hash };
      this.setCookie = fx.setCookie;
    }

    // Timeout and retry policy: the route's, overridden by x-envoy-* headers from a trusted client.
    this.timeoutMs = action.timeoutMs;
    if (action.grpcTimeoutHeaderMaxMs !== undefined && isGrpcContentType(getHeader(h, 'content-type')))
      this.timeoutMs = grpcTimeoutMs(getHeader(h, 'grpc-timeout'), action.grpcTimeoutHeaderMaxMs, action.grpcTimeoutHeaderOffsetMs ?? 0);
    let policy = action.retryPolicy ?? route.vhost.retryPolicy;
    if (cb.internal) {
      const t = getHeader(h, 'x-envoy-upstream-rq-timeout-ms');
      if (t !== undefined && isDigits(t)) this.timeoutMs = Number(t);
      policy = retryPolicyFromHeaders(h, policy);
    }
    removeEnvoyHeaders(h, ENVOY_REQUEST_CONTROL_HEADERS);
    if (policy !== undefined && policy.numRetries > 0 && upgrade === undefined)
      this.retry = new RetryState(policy, this.random);
    const mirrors = action.requestMirrorPolicies;
    if (mirrors !== undefined && upgrade === undefined) this.startShadows(mirrors, head, endStream);

    if (endStream) this.startGlobalTimer();
    this.startAttempt();
    return FilterStatus.StopIteration;
  }

  decodeData(chunk: Buffer, endStream: boolean): FilterStatus {
    if (this.done) return FilterStatus.StopIteration;
    this.shadows?.data(chunk, endStream);
    if (endStream) this.downstreamComplete = true;
    const a = this.attempt;
    const replay = this.retry !== undefined && !this.bodyOverflow;
    if (a?.encoder && this.written === (this.body?.length ?? 0)) {
      // Streaming straight through; keep a copy only while replay is still possible.
      if (replay) this.keep(chunk);
      if (this.body) this.written = this.body.length;
      if (!a.encoder.writeData(chunk, endStream && this.trailers === undefined)) this.pauseDownstream();
    } else {
      this.keep(chunk, true);
      if (!a?.encoder && this.bodyBytes > RETRY_BUFFER_LIMIT) this.pauseDownstream();
    }
    if (endStream) this.onDownstreamComplete();
    return FilterStatus.StopIteration;
  }

  decodeTrailers(trailers: HeaderList): FilterStatus {
    if (this.done) return FilterStatus.StopIteration;
    this.shadows?.trailers(trailers);
    this.trailers = trailers;
    this.downstreamComplete = true;
    const a = this.attempt;
    if (a?.encoder && this.written === (this.body?.length ?? 0)) a.encoder.writeTrailers(trailers);
    this.onDownstreamComplete();
    return FilterStatus.StopIteration;
  }

  private startShadows(mirrors: NonNullable<RouteAction['requestMirrorPolicies']>, head: RequestHead, endStream: boolean): void {
    const cb = this.callbacks;
    const s = new Shadows(mirrors, head, endStream, {
      clusters: cb.clusters,
      runtime: cb.runtime,
      random: this.random,
      connection: cb.connection,
      protocol: cb.downstreamProtocol,
      timeoutMs: this.timeoutMs,
    });
    if (!s.empty) this.shadows = s;
  }

  /** Keep a chunk for a not-yet-ready upstream (`force`) or for replay; stop replaying beyond the bound. */
  private keep(chunk: Buffer, force = false): void {
    this.bodyBytes += chunk.length;
    if (this.bodyBytes > RETRY_BUFFER_LIMIT) this.bodyOverflow = true;
    if (!force && this.bodyOverflow) {
      this.body = undefined;
      this.written = 0;
      return;
    }
    if (!this.body) this.body = [];
    this.body.push(chunk);
  }

  private onDownstreamComplete(): void {
    this.startGlobalTimer();
    if (this.attempt?.encoder) this.startPerTryTimer(this.attempt);
  }

  private startGlobalTimer(): void {
    if (this.globalTimer === undefined && this.timeoutMs > 0 && !this.done) {
      this.globalTimer = setTimeout(onGlobalTimeout, this.timeoutMs, this);
    }
  }

  private startPerTryTimer(a: UpstreamRequest): void {
    a.startPerTryTimer(this.retry?.policy.perTryTimeoutMs ?? 0);
  }

  private pauseDownstream(): void {
    if (!this.requestPaused) {
      this.requestPaused = true;
      this.callbacks.setRequestPaused(true);
    }
  }

  private resumeDownstream(): void {
    if (this.requestPaused) {
      this.requestPaused = false;
      this.callbacks.setRequestPaused(false);
    }
  }

  // ─────────────── tries ───────────────

  /** A host for the next try or the CONNECT target; undefined once the stream was answered (UH, UO). */
  private admitHost(): Host | undefined {
    const avoid = this.previousHosts;
    if (avoid !== undefined) (this.lbCtx ??= {}).avoid = avoid;
    const cb = this.callbacks;
    const r = selectHost(this.cluster, this.lbCtx, this.head, cb.connection, this.config.suppressEnvoyHeaders);
    if (!(r instanceof Host)) {
      this.fail(r);
      return undefined;
    }
    const info = cb.streamInfo;
    info.upstreamHost = r.key;
    info.upstreamHostMetadata = r.metadata;
    info.attemptCount++;
    return r;
  }

  private startAttempt(): void {
    const host = this.admitHost();
    if (host === undefined) return;
    if (this.action.autoHostRewrite && host.hostname !== '') this.head.authority = host.hostname;
    const a = new UpstreamRequest(this, this.cluster, host);
    this.attempt = a;
    a.start(this.cluster.httpPool(host, this.callbacks.downstreamProtocol, this.callbacks.streamInfo.upstreamAlpnOverride));
  }

  private terminateConnect(): void {
    const host = this.admitHost();
    if (host === undefined) return;
    this.connect = new ConnectRequest(this, this.cluster, host);
    this.connect.start();
  }

  onConnectFailure(reason: ResetReason): void {
    this.fail(upstreamResetReply(reason, '', this.config.suppressEnvoyHeaders));
  }

  onConnectEstablished(): void {
    this.clearTimers();
  }

  onConnectDone(): void {
    this.finish();
  }

  /** The pool gave us a stream: send the head, then whatever body and trailers we have. */
  onUpstreamReady(a: UpstreamRequest, up: UpstreamInfo): void {
    const info = this.callbacks.streamInfo;
    info.upstreamLocalAddress = up.localAddress;
    if (up.peerPrincipal !== undefined) info.upstreamPeerPrincipal = up.peerPrincipal;
    if (info.firstUpstreamTxByteMs < 0) info.firstUpstreamTxByteMs = info.now();
    const h = this.head.headers;
    if (!this.config.suppressEnvoyHeaders) {
      setHeader(h, 'x-envoy-attempt-count', String(info.attemptCount));
      if (this.timeoutMs > 0) setHeader(h, 'x-envoy-expected-rq-timeout-ms', String(this.perTryOrGlobalMs()));
    }
    if (info.span !== undefined) info.span.inject(h);
    const body = this.body;
    const ok = a.sendRequest(this.head, body, this.trailers, this.downstreamComplete);
    if (ok === undefined) return; // the write failed synchronously and the try was abandoned
    if (body !== undefined) {
      this.written = body.length;
      if (this.bodyOverflow) {
        // Replay is impossible from now on; drop what was only kept for the upstream.
        this.body = undefined;
        this.written = 0;
      }
    }
    if (ok) this.resumeDownstream();
    else this.pauseDownstream();
    if (this.downstreamComplete) this.startPerTryTimer(a);
  }

  private perTryOrGlobalMs(): number {
    const pt = this.retry?.policy.perTryTimeoutMs ?? 0;
    return pt > 0 && pt < this.timeoutMs ? pt : this.timeoutMs;
  }

  onUpstreamWritable(): void {
    this.resumeDownstream();
  }

  onUpstreamFailure(a: UpstreamRequest, reason: ResetReason, detail: string): void {
    a.release(false);
    a.live = false;
    // Local-origin failures count as 503 for outlier detection (Envoy); overflow is not the host's fault.
    if (reason !== 'overflow' && !a.responseHeaders) this.cluster.reportResult?.(a.host, 503);
    const info = this.callbacks.streamInfo;
    if (detail !== '' && (reason === 'connect_failure' || reason === 'tls_failure' || reason === 'timeout')) {
      info.upstreamTransportFailureReason = detail;
    }
    if (this.callbacks.responseStarted) {
      // Too late for a local reply: the downstream sees a reset.
      info.setResponseFlag('UR');
      this.finish();
      this.callbacks.resetStream('remote_reset');
      return;
    }
    if (this.retry?.retriableReset(reason) && this.maybeRetry(a.host)) return;
    this.fail(upstreamResetReply(reason, info.upstreamTransportFailureReason ?? '', this.config.suppressEnvoyHeaders));
  }

  onUpstreamHeaders(a: UpstreamRequest, head: ResponseHead, endStream: boolean): void {
    const status = head.status;
    // 1xx informational responses (other than 101) are not forwarded; the codec handles 100-continue.
    if (status < 200 && status !== 101) return;
    const cb = this.callbacks;
    const info = cb.streamInfo;
    if (info.firstUpstreamRxByteMs < 0) info.firstUpstreamRxByteMs = info.now();
    a.responseHeaders = true;
    this.cluster.reportResult?.(a.host, status);
    const grpcStatus = grpcStatusOf(head.headers);
    if (this.retry !== undefined && status !== 101 && this.retry.retriableStatus(status, grpcStatus, head.headers)) {
      // A body that could not be kept for replay means no retry (and no URX flag).
      if (this.downstreamComplete && !this.bodyOverflow && this.maybeRetry(a.host, true)) return;
    }
    a.clearPerTryTimer();
    const rtt = performance.now() - a.startMono;
    const h = head.headers;
    cleanResponseHeaders(h, status, rtt, this.config.suppressEnvoyHeaders);
    countResponse(this.cluster, a.host, status, this.retriesHeld > 0);
    this.cluster.observeRtt?.(a.host, rtt);
    applyResponseMutations(h, this.route!, this.weighted, this.rc, cb.formatContext);
    if (this.setCookie !== undefined) h.push('set-cookie', this.setCookie);
    if (grpcStatus >= 0) info.grpcStatus = grpcStatus;
    info.responseCodeDetails = 'via_upstream';

    if (status === 101 || (this.head.method === 'CONNECT' && status >= 200 && status < 300)) {
      cb.encodeHeaders(head, false);
      this.startTunnel(a);
      return;
    }
    // The upstream side is finished before the last event goes downstream, so that stream
    // completion (which destroys the router) does not mistake it for an abandoned try.
    if (endStream) this.completeAttempt(a);
    cb.encodeHeaders(head, endStream);
  }

  onUpstreamData(a: UpstreamRequest, chunk: Buffer, endStream: boolean): void {
    if (endStream) this.completeAttempt(a);
    const ok = this.callbacks.encodeData(chunk, endStream);
    if (!endStream && !ok) a.pauseResponse();
  }

  onUpstreamTrailers(a: UpstreamRequest, trailers: HeaderList): void {
    const g = grpcStatusOf(trailers);
    if (g >= 0) this.callbacks.streamInfo.grpcStatus = g;
    this.completeAttempt(a);
    this.callbacks.encodeTrailers(trailers);
  }

  /** The downstream drained: let the upstream response flow again. */
  onDownstreamWritable(): void {
    this.attempt?.resumeResponse();
  }

  onGlobalTimeout(): void {
    this.globalTimer = undefined;
    if (this.done) return;
    this.cluster.stats.upstreamRqTimeout++;
    const a = this.attempt;
    if (a?.live) {
      a.host.stats.rqTimeout++;
      if (!a.responseHeaders) this.cluster.reportResult?.(a.host, 504);
      a.release(false);
      a.abandon();
    }
    if (this.backOffTimer !== undefined) {
      clearTimeout(this.backOffTimer);
      this.backOffTimer = undefined;
    }
    if (this.callbacks.responseStarted) {
      this.callbacks.streamInfo.setResponseFlag('UT');
      this.finish();
      this.callbacks.resetStream('timeout');
      return;
    }
    this.fail(upstreamTimeoutReply(false));
  }

  onPerTryTimeout(a: UpstreamRequest): void {
    if (this.done || a !== this.attempt || a.responseHeaders) return;
    this.cluster.stats.upstreamRqTimeout++;
    a.host.stats.rqTimeout++;
    this.cluster.reportResult?.(a.host, 504);
    a.release(false);
    a.abandon();
    if (this.retry?.retriableTimeout() && this.maybeRetry(a.host)) return;
    this.fail(upstreamTimeoutReply(true));
  }

  onBackOffDone(): void {
    this.backOffTimer = undefined;
    if (this.done) return;
    this.written = 0;
    this.startAttempt();
  }

  /**
   * Decide and, if allowed, schedule a retry after `failedHost` failed. Returns false when the
   * caller must answer instead (flags URX / UO are recorded here).
   */
  private maybeRetry(failedHost: Host, fromHeaders = false): boolean {
    const retry = this.retry!;
    if (!this.downstreamComplete || this.bodyOverflow) return false;
    const d = retry.decide(this.cluster);
    const info = this.callbacks.streamInfo;
    if (d === RetryDecision.NoLimitExceeded) {
      info.setResponseFlag('URX');
      return false;
    }
    if (d === RetryDecision.NoOverflow) {
      info.setResponseFlag('UO');
      return false;
    }
    if (fromHeaders && this.attempt) {
      // Envoy charges the retried response to the host's rq_error (the cluster's retry.* codes).
      this.attempt.host.stats.rqError++;
      this.attempt.release(false);
      this.attempt.abandon();
    }
    this.cluster.stats.upstreamRqRetry++;
    this.cluster.resources.retries.inc();
    this.retriesHeld++;
    if (retry.policy.avoidPreviousHosts) {
      if (this.previousHosts === undefined) this.previousHosts = [];
      this.previousHosts.push(failedHost);
    }
    this.attempt = undefined;
    this.backOffTimer = setTimeout(onBackOff, retry.backOffMs(), this);
    return true;
  }

  // ─────────────── completion ───────────────

  private completeAttempt(a: UpstreamRequest): void {
    a.complete();
    this.finish();
  }

  private startTunnel(a: UpstreamRequest): void {
    const up = a.encoder!.takeTunnel();
    const down = this.callbacks.takeDownstreamTunnel();
    this.clearTimers();
    this.tunnel = new Tunnel(down, up, (t) => {
      a.release(true);
      a.live = false;
      this.finish();
      this.callbacks.onTunnelDone(t.bytesUp, t.bytesDown);
    });
  }

  /** A local reply caused by the upstream side. */
  private fail(r: UpstreamFailureReply): void {
    this.finish();
    this.callbacks.sendLocalReply(r.status, r.body, r.headers, r.flag, r.details);
  }

  /** A direct_response or redirect: a local response with the route's response header mutations. */
  private respondDirect(status: number, body: Buffer | undefined, location: string | undefined): void {
    const cb = this.callbacks;
    cb.setResponseFlag('DR');
    const r = directResponse(status, body, location, this.head, this.route!, this.rc, cb.formatContext);
    this.finish();
    cb.sendResponse(r.head, r.body, 'direct_response');
  }

  private clearTimers(): void {
    if (this.globalTimer !== undefined) {
      clearTimeout(this.globalTimer);
      this.globalTimer = undefined;
    }
    if (this.backOffTimer !== undefined) {
      clearTimeout(this.backOffTimer);
      this.backOffTimer = undefined;
    }
    this.attempt?.clearPerTryTimer();
  }

  /** Release everything the router holds (idempotent): timers, retry resources, the replay buffer. */
  private finish(): void {
    this.done = true;
    this.clearTimers();
    while (this.retriesHeld > 0) {
      this.retriesHeld--;
      this.cluster.resources.retries.dec();
    }
    this.body = undefined;
  }

  /** The stream is over or answered locally: abandon upstream work. */
  onDestroy(): void {
    const a = this.attempt;
    if (a?.live) {
      a.release(false);
      a.abandon();
    }
    this.tunnel?.finish();
    this.connect?.destroy();
    this.shadows?.parentDone();
    this.finish();
  }
}

function isGrpcContentType(ct: string | undefined): boolean {
  return ct !== undefined && ct.startsWith('application/grpc');
}

/** grpc-timeout units (gRPC over HTTP/2 spec): hours, minutes, seconds, milli-, micro-, nanoseconds. */
const GRPC_TIMEOUT_UNIT_MS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 1e-3, n: 1e-6 };

/**
 * Envoy's gRPC timeout: the request's grpc-timeout (absent or malformed = 0, which means none),
 * less the offset when that leaves it above 0, capped by the configured maximum unless that is 0.
 */
export function grpcTimeoutMs(header: string | undefined, maxMs: number, offsetMs: number): number {
  let t = 0;
  if (header !== undefined && header.length >= 2 && header.length <= 9) {
    const unit = GRPC_TIMEOUT_UNIT_MS[header[header.length - 1]!];
    const digits = header.slice(0, -1);
    if (unit !== undefined && isDigits(digits)) t = Math.ceil(Number(digits) * unit);
  }
  if (offsetMs > 0 && offsetMs < t) t -= offsetMs;
  if (maxMs > 0 && (t === 0 || t > maxMs)) t = maxMs;
  return t;
}
