/**
 * The router (terminal HTTP filter): from a matched route to an upstream response.
 *
 * Owns, per stream: cluster selection (cluster / weighted_clusters / cluster_header), host choice
 * through the cluster's load balancer with a hash from hash_policy, request rewrites (prefix,
 * regex, host) and header mutations, direct responses and redirects, the route timeout and
 * per-try timeout, the retry state machine (retry_on conditions, budgets and the retries circuit
 * breaker, jittered back-off, previous-hosts avoidance, replay of a bounded request body), the
 * upgrade/CONNECT hand-over to a byte tunnel, and flow control between the two sides.
 *
 * Leans towards Envoy's behaviour and a lean hot path: one RouterStream per stream whose methods
 * are the timer and pool callbacks (timers carry `this` as an argument, no closures), one small
 * UpstreamAttempt object per try so that late callbacks from an abandoned try are ignored, and
 * the downstream request head is edited in place and reused for every attempt. Data-plane
 * failures never throw: they become local replies with Envoy's status, body and response flag.
 */
import type { Duplex } from 'node:stream';
import type {
  HashPolicy,
  HcmConfig,
  HeaderValueOption,
  RetryOn,
  RetryPolicy,
  RouteAction,
  RouteConfiguration,
  WeightedCluster,
} from '../config/types';
import type { ResponseFlag } from '../../common/errors';
import type { Host } from '../upstream/host';
import type { LbContext } from '../upstream/lb/types';
import type { ClusterLookup, UpstreamCluster } from '../upstream/types';
import type {
  Cancellable,
  ConnectionPool,
  HeaderList,
  HttpProtocol,
  PoolCallbacks,
  RequestEncoder,
  RequestHead,
  ResetReason,
  ResponseHead,
  ResponseSink,
  UpstreamInfo,
} from './codec';
import type { RouterConfig } from './filters/router-factory';
import {
  applyHeaderOptions,
  getHeader,
  type HeaderFormatContext,
  removeEnvoyHeaders,
  removeHeaders,
  setHeader,
  stripHopByHop,
  stripPort,
} from './headers';
import { type CompiledRoute, PathKind, pathOnly, queryParam } from './route-matcher';
import type { StreamInfo } from './stream-info';
import { Tunnel } from './tunnel';

/** Request bodies up to this size are kept for replay on retry; beyond it retries are off. */
export const RETRY_BUFFER_LIMIT = 64 * 1024;

/** What the router needs from the stream that owns it (implemented by the HCM's ActiveStream). */
export interface RouterStreamCallbacks {
  readonly info: StreamInfo;
  readonly hcm: HcmConfig;
  readonly downstreamProtocol: HttpProtocol;
  readonly formatContext: HeaderFormatContext;
  /** Whether the request came from a trusted (internal) client. */
  readonly internal: boolean;
  /** Response headers have been sent (or started through encoder filters). */
  readonly responseStarted: boolean;
  encodeHeaders(head: ResponseHead, endStream: boolean): void;
  /** Returns false when the downstream is above its high watermark. */
  encodeData(chunk: Buffer, endStream: boolean): boolean;
  encodeTrailers(trailers: HeaderList): void;
  sendLocalReply(
    status: number,
    body: string,
    headers: HeaderList | undefined,
    flag: ResponseFlag | undefined,
    details: string,
  ): void;
  resetDownstream(reason: ResetReason): void;
  pauseRequest(): void;
  resumeRequest(): void;
  takeDownstreamTunnel(): Duplex;
  /** The tunnel of an accepted upgrade ended: complete the stream. */
  onTunnelDone(bytesUp: number, bytesDown: number): void;
}

/** Envoy's "reset reason" wording in local reply bodies. */
export function resetReasonText(r: ResetReason): string {
  switch (r) {
    case 'connect_failure':
      return 'connection failure';
    case 'connection_termination':
      return 'connection termination';
    case 'local_reset':
      return 'local reset';
    case 'remote_reset':
      return 'remote reset';
    case 'refused_stream':
      return 'remote refused stream reset';
    case 'overflow':
      return 'overflow';
    case 'protocol_error':
      return 'protocol error';
    case 'timeout':
      return 'connection timeout';
    case 'tls_failure':
      return 'connection failure';
  }
}

const UPSTREAM_RESET_PREFIX = 'upstream connect error or disconnect/reset before headers. reset reason: ';

// ───────────────────────────── retry state machine ─────────────────────────────

/** Outcome of asking the retry state whether to retry. */
export const RetryDecision = { No: 0, Yes: 1, NoLimitExceeded: 2, NoOverflow: 3 } as const;
export type RetryDecision = (typeof RetryDecision)[keyof typeof RetryDecision];

/**
 * Envoy's RetryStateImpl reduced to what meshlet supports: which failures are retriable under
 * retry_on, how many retries remain, and the jittered exponential back-off
 * (`random(0, min(base × 2^n, max))`, defaults 25 ms / 250 ms).
 */
export class RetryState {
  retriesUsed = 0;

  constructor(
    readonly policy: RetryPolicy,
    private readonly random: () => number = Math.random,
  ) {}

  /** Would `status` (with an optional grpc-status from the headers) be retried under retry_on? */
  retriableStatus(status: number, grpcStatus: number): boolean {
    const on = this.policy.retryOn;
    if (on.has('5xx') && status >= 500) return true;
    if (on.has('gateway-error') && (status === 502 || status === 503 || status === 504)) return true;
    if (on.has('retriable-4xx') && status === 409) return true;
    if (on.has('retriable-status-codes') && this.policy.retriableStatusCodes.includes(status)) return true;
    if (grpcStatus >= 0) {
      if (on.has('cancelled') && grpcStatus === 1) return true;
      if (on.has('deadline-exceeded') && grpcStatus === 4) return true;
      if (on.has('resource-exhausted') && grpcStatus === 8) return true;
      if (on.has('internal') && grpcStatus === 13) return true;
      if (on.has('unavailable') && grpcStatus === 14) return true;
    }
    return false;
  }

  /** Would a reset/connect failure of this kind be retried under retry_on? Overflow never is. */
  retriableReset(reason: ResetReason): boolean {
    if (reason === 'overflow') return false;
    const on = this.policy.retryOn;
    if (on.has('5xx') || on.has('gateway-error') || on.has('reset')) return true;
    if (on.has('connect-failure') && (reason === 'connect_failure' || reason === 'timeout' || reason === 'tls_failure'))
      return true;
    if (on.has('refused-stream') && reason === 'refused_stream') return true;
    return false;
  }

  /** A per-try timeout counts as a 504-like failure (Envoy retries it under 5xx/gateway-error/reset). */
  retriableTimeout(): boolean {
    const on = this.policy.retryOn;
    return on.has('5xx') || on.has('gateway-error') || on.has('reset');
  }

  /** Given a retriable failure: may we retry (retry count, then the cluster's retry resource)? */
  decide(cluster: UpstreamCluster): RetryDecision {
    if (this.retriesUsed >= this.policy.numRetries) return RetryDecision.NoLimitExceeded;
    if (!cluster.resources.retries.canCreate()) {
      cluster.stats.upstreamRqRetryOverflow++;
      return RetryDecision.NoOverflow;
    }
    this.retriesUsed++;
    return RetryDecision.Yes;
  }

  /** Jittered exponential back-off before retry number `retriesUsed` (1-based). */
  backOffMs(): number {
    const base = this.policy.backOffBaseMs > 0 ? this.policy.backOffBaseMs : 25;
    const max = this.policy.backOffMaxMs > 0 ? this.policy.backOffMaxMs : base * 10;
    const ceiling = Math.min(base * 2 ** Math.max(0, this.retriesUsed - 1), max);
    return Math.floor(this.random() * ceiling);
  }
}

// ───────────────────────────── helpers ─────────────────────────────

/** FNV-1a 32-bit over a string: the hash fed to RING_HASH / MAGLEV. */
export function hashString(s: string, seed = 0x811c9dc5): number {
  let h = seed >>> 0;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

function cookieValue(cookieHeader: string | undefined, name: string): string | undefined {
  if (cookieHeader === undefined) return undefined;
  let start = 0;
  while (start < cookieHeader.length) {
    let end = cookieHeader.indexOf(';', start);
    if (end < 0) end = cookieHeader.length;
    const eq = cookieHeader.indexOf('=', start);
    if (eq > 0 && eq < end && cookieHeader.slice(start, eq).trim() === name)
      return cookieHeader.slice(eq + 1, end).trim();
    start = end + 1;
  }
  return undefined;
}

/** Where computeHash leaves a cookie it generated (cookie policy with a ttl, cookie absent). */
export interface HashSideEffects {
  setCookie?: string;
}

/**
 * Envoy's hash policy evaluation: policies in order, combined, a terminal hit stops. A cookie
 * policy with a `ttl` whose cookie is absent generates one from the client address (so the
 * client sticks from now on) and asks for it to be set on the response, as Envoy does.
 */
export function computeHash(
  policies: readonly HashPolicy[],
  head: RequestHead,
  sourceIp: string,
  out?: HashSideEffects,
): number | undefined {
  let hash: number | undefined;
  for (let i = 0; i < policies.length; i++) {
    const p = policies[i]!;
    let v: string | undefined;
    switch (p.kind) {
      case 'header':
        v = p.name === ':authority' ? head.authority : p.name === ':path' ? head.path : getHeader(head.headers, p.name);
        break;
      case 'cookie':
        v = cookieValue(getHeader(head.headers, 'cookie'), p.name);
        if (v === undefined && p.ttlMs !== undefined && out !== undefined) {
          v = hashString(sourceIp).toString(16).padStart(8, '0');
          let c = `${p.name}="${v}"`;
          if (p.ttlMs > 0) c += `; Max-Age=${Math.floor(p.ttlMs / 1000)}`;
          if (p.path !== undefined && p.path !== '') c += `; Path=${p.path}`;
          out.setCookie = `${c}; HttpOnly`;
        }
        break;
      case 'source_ip':
        v = sourceIp || undefined;
        break;
      case 'query_parameter':
        v = queryParam(head.path, p.name);
        break;
    }
    if (v === undefined) continue;
    const h = hashString(v);
    hash = hash === undefined ? h : (((hash << 1) | (hash >>> 31)) ^ h) >>> 0;
    if (p.terminal) break;
  }
  return hash;
}

/** Pick a weighted cluster at random by weight. */
export function pickWeighted(
  clusters: readonly WeightedCluster[],
  total: number,
  random: () => number = Math.random,
): WeightedCluster | undefined {
  const sum = total > 0 ? total : clusters.reduce((a, c) => a + c.weight, 0);
  if (sum <= 0) return clusters[0];
  let r = Math.floor(random() * sum);
  for (let i = 0; i < clusters.length; i++) {
    const c = clusters[i]!;
    if (r < c.weight) return c;
    r -= c.weight;
  }
  return clusters[clusters.length - 1];
}

const substitutions = new WeakMap<RegExp, { global: RegExp; sub: string }>();

/** regex_rewrite: every match in the path (not the query) replaced; `\1` group references work. */
export function regexRewritePath(path: string, regex: RegExp, substitution: string): string {
  let c = substitutions.get(regex);
  if (!c) {
    const flags = regex.flags.includes('g') ? regex.flags : `${regex.flags}g`;
    c = {
      global: new RegExp(regex.source, flags),
      sub: substitution.replace(/\$/g, '$$$$').replace(/\\(\d)/g, '$$$1'),
    };
    substitutions.set(regex, c);
  }
  const p = pathOnly(path);
  return p.replace(c.global, c.sub) + path.slice(p.length);
}

/** The prefix_rewrite of a matched route (prefix, path or path_separated_prefix matches only). */
export function prefixRewritePath(path: string, r: CompiledRoute, rewrite: string): string {
  if (r.kind === PathKind.Prefix || r.kind === PathKind.Path || r.kind === PathKind.SeparatedPrefix) {
    return rewrite + path.slice(r.value.length);
  }
  return path;
}

/** The Location of a redirect action, Envoy's rules for scheme, host, port and path. */
export function redirectLocation(
  action: import('../config/types').RedirectAction,
  head: RequestHead,
  r: CompiledRoute,
): string {
  const origScheme = head.scheme || 'http';
  const scheme = action.schemeRedirect ?? (action.httpsRedirect ? 'https' : origScheme);
  let host = action.hostRedirect ?? head.authority;
  if (action.portRedirect !== undefined) {
    host = `${stripPort(host)}:${action.portRedirect}`;
  } else if (scheme !== origScheme) {
    // Changing the scheme drops a default port of either scheme (Envoy: https_redirect strips :80).
    const bare = stripPort(host);
    if (host.endsWith(':80') || host.endsWith(':443')) host = bare;
  }
  let path = head.path;
  if (action.pathRedirect !== undefined) {
    path = action.pathRedirect.includes('?')
      ? action.pathRedirect
      : action.pathRedirect + path.slice(pathOnly(path).length);
  } else if (action.prefixRewrite !== undefined) {
    path = prefixRewritePath(path, r, action.prefixRewrite);
  }
  if (action.stripQuery) path = pathOnly(path);
  return `${scheme}://${host}${path}`;
}

function applyMutations(
  h: HeaderList,
  remove: readonly string[],
  add: readonly HeaderValueOption[],
  ctx: HeaderFormatContext,
): void {
  if (remove.length > 0) removeHeaders(h, remove);
  if (add.length > 0) applyHeaderOptions(h, add, ctx);
}

// ───────────────────────────── per-try upstream request ─────────────────────────────

/**
 * One try: the pool/encoder callbacks of a single upstream request. Once the router abandons it
 * (`live = false`) every late callback is ignored.
 */
class UpstreamAttempt implements ResponseSink, PoolCallbacks {
  live = true;
  encoder: RequestEncoder | undefined;
  pending: Cancellable | undefined;
  startMono = 0;
  responseHeaders = false;
  upstreamPaused = false;
  /** Holds one unit of the cluster's `requests` resource and of host.activeRequests. */
  counted = true;

  constructor(
    readonly router: RouterStream,
    readonly host: Host,
    readonly pool: ConnectionPool,
  ) {}

  onPoolReady(encoder: RequestEncoder, info: UpstreamInfo): void {
    this.pending = undefined;
    if (!this.live) {
      encoder.reset('local_reset');
      return;
    }
    this.encoder = encoder;
    this.router.onPoolReady(this, info);
  }
  onPoolFailure(reason: ResetReason, detail: string): void {
    this.pending = undefined;
    if (this.live) this.router.onAttemptFailure(this, reason, detail);
  }
  onResponseHeaders(head: ResponseHead, endStream: boolean): void {
    if (this.live) this.router.onResponseHeaders(this, head, endStream);
  }
  onResponseData(chunk: Buffer, endStream: boolean): void {
    if (this.live) this.router.onResponseData(this, chunk, endStream);
  }
  onResponseTrailers(trailers: HeaderList): void {
    if (this.live) this.router.onResponseTrailers(this, trailers);
  }
  onUpstreamReset(reason: ResetReason, detail?: string): void {
    if (this.live) this.router.onAttemptFailure(this, reason, detail ?? '');
  }
  onUpstreamWritable(): void {
    if (this.live) this.router.onUpstreamWritable();
  }

  /** Abandon this try: cancel a pending pool request or reset the stream. */
  abandon(): void {
    if (!this.live) return;
    this.live = false;
    if (this.pending) {
      this.pending.cancel();
      this.pending = undefined;
    } else if (this.encoder) {
      this.encoder.reset('local_reset');
    }
  }
}

// ───────────────────────────── the router, per stream ─────────────────────────────

function onGlobalTimeout(r: RouterStream): void {
  r.onGlobalTimeout();
}
function onPerTryTimeout(r: RouterStream): void {
  r.onPerTryTimeout();
}
function onBackOff(r: RouterStream): void {
  r.onBackOffDone();
}

export class RouterStream {
  private head!: RequestHead;
  private action!: RouteAction;
  private cluster!: UpstreamCluster;
  private weighted: WeightedCluster | undefined;
  private rc!: RouteConfiguration;
  private retry: RetryState | undefined;
  private attempt: UpstreamAttempt | undefined;
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
  private perTryTimer: NodeJS.Timeout | undefined;
  private backOffTimer: NodeJS.Timeout | undefined;
  private timeoutMs = 0;
  private done = false;
  private retriesHeld = 0;
  private tunnel: Tunnel | undefined;
  /** A hash-policy cookie generated for this client, set on the response. */
  private setCookie: string | undefined;

  constructor(
    private readonly cb: RouterStreamCallbacks,
    private readonly config: RouterConfig,
    private readonly clusters: ClusterLookup,
    private readonly random: () => number = Math.random,
  ) {}

  /** Start routing a request whose headers passed the decoder filters. */
  decodeHeaders(head: RequestHead, endStream: boolean, route: CompiledRoute, rc: RouteConfiguration): void {
    const info = this.cb.info;
    this.head = head;
    this.rc = rc;
    this.routeForMutations = route;
    this.downstreamComplete = endStream;
    const r = route.route;
    const action = r.action;
    if (action.kind === 'direct_response') {
      this.respondDirect(action.status, action.body, undefined, route);
      return;
    }
    if (action.kind === 'redirect') {
      const location = redirectLocation(action, head, route);
      this.respondDirect(action.responseCode, undefined, location, route);
      return;
    }
    this.action = action;

    // Upgrades (WebSocket, CONNECT) must be enabled on the route or the connection manager.
    const upgrade = head.upgrade ?? (head.method === 'CONNECT' ? 'connect' : undefined);
    if (upgrade !== undefined && !upgradeAllowed(upgrade, action.upgradeTypes, this.cb.hcm.upgradeTypes)) {
      this.cb.sendLocalReply(403, '', undefined, undefined, 'upgrade_failed');
      return;
    }

    let clusterName: string | undefined;
    const c = action.cluster;
    if (c.kind === 'cluster') clusterName = c.name;
    else if (c.kind === 'weighted') {
      this.weighted = pickWeighted(c.clusters, c.totalWeight, this.random);
      clusterName = this.weighted?.name;
    } else clusterName = getHeader(head.headers, c.header);
    const cluster = clusterName === undefined ? undefined : this.clusters.get(clusterName);
    if (clusterName !== undefined) info.clusterName = clusterName;
    if (cluster === undefined) {
      this.cb.sendLocalReply(503, '', undefined, 'NC', 'cluster_not_found');
      return;
    }
    this.cluster = cluster;
    if (upgrade === 'connect' && action.terminateConnect === true) {
      this.terminateConnect(cluster);
      return;
    }

    // Request rewrites and header mutations (most specific first; the route config applies last).
    const originalPath = head.path;
    if (action.prefixRewrite !== undefined) head.path = prefixRewritePath(head.path, route, action.prefixRewrite);
    else if (action.regexRewrite !== undefined)
      head.path = regexRewritePath(head.path, action.regexRewrite.regex, action.regexRewrite.substitution);
    if (head.path !== originalPath && !this.config.suppressEnvoyHeaders)
      setHeader(head.headers, 'x-envoy-original-path', originalPath);
    const hostLiteral = this.weighted?.hostRewriteLiteral ?? action.hostRewriteLiteral;
    if (hostLiteral !== undefined) head.authority = hostLiteral;
    else if (action.hostRewriteHeader !== undefined) {
      const v = getHeader(head.headers, action.hostRewriteHeader);
      if (v !== undefined && v !== '') head.authority = v;
    }
    const ctx = this.cb.formatContext;
    const h = head.headers;
    if (this.weighted) applyMutations(h, this.weighted.requestHeadersToRemove, this.weighted.requestHeadersToAdd, ctx);
    applyMutations(h, r.requestHeadersToRemove, r.requestHeadersToAdd, ctx);
    const vh = route.vhost;
    applyMutations(h, vh.requestHeadersToRemove, vh.requestHeadersToAdd, ctx);
    applyMutations(h, rc.requestHeadersToRemove, rc.requestHeadersToAdd, ctx);

    if (action.hashPolicy.length > 0) {
      const fx: HashSideEffects = {};
      const hash = computeHash(action.hashPolicy, head, this.cb.info.connection.remoteAddress, fx);
      if (hash !== undefined) this.lbCtx = { hash };
      this.setCookie = fx.setCookie;
    }

    // Timeout and retry policy: the route's, overridden by x-envoy-* headers from a trusted client.
    this.timeoutMs = action.timeoutMs;
    let policy = action.retryPolicy ?? vh.retryPolicy;
    if (this.cb.internal) {
      const t = getHeader(h, 'x-envoy-upstream-rq-timeout-ms');
      if (t !== undefined && DIGITS.test(t)) this.timeoutMs = Number(t);
      policy = retryPolicyFromHeaders(h, policy);
    }
    removeEnvoyHeaders(h, ENVOY_REQUEST_CONTROL_HEADERS);
    if (policy !== undefined && policy.numRetries > 0 && upgrade === undefined)
      this.retry = new RetryState(policy, this.random);

    if (endStream) this.startGlobalTimer();
    this.startAttempt();
  }

  decodeData(chunk: Buffer, endStream: boolean): void {
    if (this.done) return;
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
  }

  decodeTrailers(trailers: HeaderList): void {
    if (this.done) return;
    this.trailers = trailers;
    this.downstreamComplete = true;
    const a = this.attempt;
    if (a?.encoder && this.written === (this.body?.length ?? 0)) a.encoder.writeTrailers(trailers);
    this.onDownstreamComplete();
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
    if (this.attempt?.encoder) this.startPerTryTimer();
  }

  private startGlobalTimer(): void {
    if (this.globalTimer === undefined && this.timeoutMs > 0 && !this.done) {
      this.globalTimer = setTimeout(onGlobalTimeout, this.timeoutMs, this);
    }
  }

  private startPerTryTimer(): void {
    const ms = this.retry?.policy.perTryTimeoutMs ?? 0;
    if (ms > 0 && this.perTryTimer === undefined) this.perTryTimer = setTimeout(onPerTryTimeout, ms, this);
  }

  private clearPerTryTimer(): void {
    if (this.perTryTimer !== undefined) {
      clearTimeout(this.perTryTimer);
      this.perTryTimer = undefined;
    }
  }

  private pauseDownstream(): void {
    if (!this.requestPaused) {
      this.requestPaused = true;
      this.cb.pauseRequest();
    }
  }

  private resumeDownstream(): void {
    if (this.requestPaused) {
      this.requestPaused = false;
      this.cb.resumeRequest();
    }
  }

  // ─────────────── attempts ───────────────

  private startAttempt(): void {
    const cluster = this.cluster;
    const info = this.cb.info;
    const avoid = this.previousHosts;
    if (avoid !== undefined) {
      if (!this.lbCtx) this.lbCtx = {};
      this.lbCtx.avoid = avoid;
    }
    const host =
      cluster.hostForOriginalDst !== undefined ? this.originalDstHost(cluster) : cluster.chooseHost(this.lbCtx);
    if (host === undefined) {
      cluster.stats.upstreamCxNoneHealthy++;
      this.fail(503, 'no healthy upstream', 'UH', 'no_healthy_upstream');
      return;
    }
    // The cluster's `requests` circuit breaker: requests in flight across all hosts.
    const requests = cluster.resources.requests;
    if (!requests.canCreate()) {
      cluster.stats.upstreamRqPendingOverflow++;
      const headers = this.config.suppressEnvoyHeaders ? undefined : ['x-envoy-overloaded', 'true'];
      this.fail(
        503,
        UPSTREAM_RESET_PREFIX + resetReasonText('overflow'),
        'UO',
        'upstream_reset_before_response_started{overflow}',
        headers,
      );
      return;
    }
    requests.inc();
    // Envoy counts upstream_rq_total / upstream_rq_active per upstream request (each try).
    cluster.stats.upstreamRqTotal++;
    cluster.stats.upstreamRqActive++;
    if (this.action.autoHostRewrite && host.hostname !== '') this.head.authority = host.hostname;
    info.upstreamHost = host.key;
    info.upstreamHostMetadata = host.metadata;
    info.attemptCount++;
    const pool = cluster.httpPool(host, this.cb.downstreamProtocol);
    const a = new UpstreamAttempt(this, host, pool);
    this.attempt = a;
    a.startMono = performance.now();
    host.activeRequests++;
    host.stats.rqTotal++;
    a.pending = pool.newStream(a, a);
  }

  /**
   * ORIGINAL_DST: the host is where the client meant to go — the cluster's original_dst header
   * ("ip:port") when configured, else the connection's SO_ORIGINAL_DST.
   */
  private originalDstHost(cluster: UpstreamCluster): Host | undefined {
    const header = cluster.config.originalDstHeader;
    if (header !== undefined) {
      const v = getHeader(this.head.headers, header);
      if (v === undefined) return undefined;
      const colon = v.lastIndexOf(':');
      const port = Number(v.slice(colon + 1));
      if (colon <= 0 || !Number.isInteger(port) || port <= 0 || port > 65535) return undefined;
      let address = v.slice(0, colon);
      if (address.startsWith('[') && address.endsWith(']')) address = address.slice(1, -1);
      return cluster.hostForOriginalDst!(address, port);
    }
    const conn = this.cb.info.connection;
    const dst = conn.originalDst;
    if (dst !== undefined && (dst.port !== conn.localPort || dst.address !== conn.localAddress)) {
      return cluster.hostForOriginalDst!(dst.address, dst.port);
    }
    // Not intercepted (explicit proxy: the client dialled us): the request names its target in
    // an absolute-form URI or CONNECT authority ("host:port"); without a port there is no target.
    const target = splitAuthority(this.head.authority, this.head.method === 'CONNECT' ? 0 : this.head.scheme === 'https' ? 443 : 80);
    return target === undefined ? undefined : cluster.hostForOriginalDst!(target.host, target.port);
  }

  /**
   * CONNECT terminated here (route upgrade_configs CONNECT with connect_config): open a raw
   * connection to the chosen host, answer 200, then copy bytes both ways. A failed connect is a
   * 503 with UF (Envoy's upstream connection failure), never an exception.
   */
  private terminateConnect(cluster: UpstreamCluster): void {
    const info = this.cb.info;
    const host =
      cluster.hostForOriginalDst !== undefined ? this.originalDstHost(cluster) : cluster.chooseHost(this.lbCtx);
    if (host === undefined) {
      cluster.stats.upstreamCxNoneHealthy++;
      this.fail(503, 'no healthy upstream', 'UH', 'no_healthy_upstream');
      return;
    }
    info.upstreamHost = host.key;
    info.upstreamHostMetadata = host.metadata;
    info.attemptCount++;
    cluster.stats.upstreamRqTotal++;
    host.stats.rqTotal++;
    host.activeConnections++;
    const onConnected = (err: { reason: ResetReason; detail: string } | undefined, conn: { socket: Duplex } | undefined): void => {
      if (err !== undefined || conn === undefined) {
        host.activeConnections--;
        if (!this.done) {
          const reason = err?.reason ?? 'connect_failure';
          this.fail(503, UPSTREAM_RESET_PREFIX + resetReasonText(reason), 'UF', `upstream_reset_before_response_started{${reason}}`);
        }
        return;
      }
      const up = conn.socket;
      up.once('close', () => host.activeConnections--);
      if (this.done) {
        up.destroy();
        return;
      }
      if (info.firstUpstreamTxByteMs < 0) info.firstUpstreamTxByteMs = info.now();
      info.responseCodeDetails = 'via_upstream';
      this.clearTimers();
      this.cb.encodeHeaders({ status: 200, headers: [], contentLength: -1 }, false);
      const down = this.cb.takeDownstreamTunnel();
      this.tunnel = new Tunnel(down, up, (t) => {
        this.finish();
        this.cb.onTunnelDone(t.bytesUp, t.bytesDown);
      });
    };
    try {
      cluster.transport.connect(host, { timeoutMs: cluster.config.connectTimeoutMs }, onConnected);
    } catch (e) {
      // A target the socket layer rejects outright (never expected after validation): still a 503.
      onConnected({ reason: 'connect_failure', detail: (e as Error).message }, undefined);
    }
  }

  /** The pool gave us a stream: send the head, then whatever body and trailers we have. */
  onPoolReady(a: UpstreamAttempt, up: UpstreamInfo): void {
    const info = this.cb.info;
    info.upstreamLocalAddress = up.localAddress;
    if (up.peerPrincipal !== undefined) info.upstreamPeerPrincipal = up.peerPrincipal;
    if (info.firstUpstreamTxByteMs < 0) info.firstUpstreamTxByteMs = info.now();
    const h = this.head.headers;
    if (!this.config.suppressEnvoyHeaders) {
      setHeader(h, 'x-envoy-attempt-count', String(info.attemptCount));
      if (this.timeoutMs > 0) setHeader(h, 'x-envoy-expected-rq-timeout-ms', String(this.perTryOrGlobalMs()));
    }
    if (info.span !== undefined) info.span.inject(h);
    const enc = a.encoder!;
    const body = this.body;
    const noBody = (body === undefined || body.length === 0) && this.trailers === undefined;
    enc.writeHeaders(this.head, this.downstreamComplete && noBody);
    if (!a.live) return; // the write failed synchronously and the attempt was abandoned
    let ok = true;
    if (body !== undefined) {
      for (let i = 0; i < body.length; i++) {
        const last = i === body.length - 1 && this.downstreamComplete && this.trailers === undefined;
        ok = enc.writeData(body[i]!, last);
        if (!a.live) return;
      }
      this.written = body.length;
      if (this.bodyOverflow) {
        // Replay is impossible from now on; drop what was only kept for the upstream.
        this.body = undefined;
        this.written = 0;
      }
    }
    if (this.downstreamComplete && this.trailers !== undefined) enc.writeTrailers(this.trailers);
    if (ok) this.resumeDownstream();
    else this.pauseDownstream();
    if (this.downstreamComplete) this.startPerTryTimer();
  }

  private perTryOrGlobalMs(): number {
    const pt = this.retry?.policy.perTryTimeoutMs ?? 0;
    return pt > 0 && pt < this.timeoutMs ? pt : this.timeoutMs;
  }

  onUpstreamWritable(): void {
    this.resumeDownstream();
  }

  /** Connect failure, pool overflow, or a reset of the upstream stream. */
  onAttemptFailure(a: UpstreamAttempt, reason: ResetReason, detail: string): void {
    this.finishAttempt(a, false);
    a.live = false;
    // Local-origin failures count as 503 for outlier detection (Envoy); overflow is not the host's fault.
    if (reason !== 'overflow' && !a.responseHeaders) this.cluster.reportResult?.(a.host, 503);
    const info = this.cb.info;
    if (detail !== '' && (reason === 'connect_failure' || reason === 'tls_failure' || reason === 'timeout')) {
      info.upstreamTransportFailureReason = detail;
    }
    if (this.cb.responseStarted) {
      // Too late for a local reply: the downstream sees a reset.
      info.setResponseFlag('UR');
      this.finish();
      this.cb.resetDownstream('remote_reset');
      return;
    }
    if (this.retry?.retriableReset(reason) && this.maybeRetry(a.host)) return;
    let flag: ResponseFlag;
    let status = 503;
    switch (reason) {
      case 'connect_failure':
      case 'timeout':
      case 'tls_failure':
        // Envoy reports TLS and identity failures as UF too (the detail is in the transport failure reason).
        flag = 'UF';
        break;
      case 'overflow':
        flag = 'UO';
        break;
      case 'protocol_error':
        flag = 'UPE';
        status = 502;
        break;
      default:
        flag = 'UR';
    }
    const headers = flag === 'UO' && !this.config.suppressEnvoyHeaders ? ['x-envoy-overloaded', 'true'] : undefined;
    // Envoy appends the transport failure reason to the local reply body (e.g. a SAN mismatch).
    const transport = flag === 'UF' && info.upstreamTransportFailureReason ? `, transport failure reason: ${info.upstreamTransportFailureReason}` : '';
    this.fail(
      status,
      UPSTREAM_RESET_PREFIX + resetReasonText(reason) + transport,
      flag,
      `upstream_reset_before_response_started{${reason}}`,
      headers,
    );
  }

  onResponseHeaders(a: UpstreamAttempt, head: ResponseHead, endStream: boolean): void {
    const status = head.status;
    // 1xx informational responses (other than 101) are not forwarded; the codec handles 100-continue.
    if (status < 200 && status !== 101) return;
    const info = this.cb.info;
    if (info.firstUpstreamRxByteMs < 0) info.firstUpstreamRxByteMs = info.now();
    a.responseHeaders = true;
    this.cluster.reportResult?.(a.host, status);
    const grpcStatus = grpcStatusOf(head.headers);
    if (this.retry !== undefined && status !== 101 && this.retry.retriableStatus(status, grpcStatus)) {
      // A body that could not be kept for replay means no retry (and no URX flag).
      if (this.downstreamComplete && !this.bodyOverflow && this.maybeRetry(a.host, true)) return;
    }
    this.clearPerTryTimer();
    const rtt = performance.now() - a.startMono;
    const h = head.headers;
    // A 101 keeps its `upgrade` token: the downstream codec writes it back with Connection: upgrade.
    const upgradeToken = status === 101 ? getHeader(h, 'upgrade') : undefined;
    stripHopByHop(h);
    if (upgradeToken !== undefined) h.push('upgrade', upgradeToken);
    if (!this.config.suppressEnvoyHeaders) setHeader(h, 'x-envoy-upstream-service-time', String(Math.round(rtt)));
    this.countResponse(a.host, status);
    this.cluster.observeRtt?.(a.host, rtt);
    this.applyResponseMutations(h, this.routeForMutations);
    if (this.setCookie !== undefined) h.push('set-cookie', this.setCookie);
    if (grpcStatus >= 0) info.grpcStatus = grpcStatus;
    info.responseCodeDetails = 'via_upstream';

    if (status === 101 || (this.head.method === 'CONNECT' && status >= 200 && status < 300)) {
      this.cb.encodeHeaders(head, false);
      this.startTunnel(a);
      return;
    }
    // The upstream side is finished before the last event goes downstream, so that stream
    // completion (which destroys the router) does not mistake it for an abandoned attempt.
    if (endStream) this.completeAttempt(a);
    this.cb.encodeHeaders(head, endStream);
  }

  onResponseData(a: UpstreamAttempt, chunk: Buffer, endStream: boolean): void {
    if (endStream) this.completeAttempt(a);
    const ok = this.cb.encodeData(chunk, endStream);
    if (!endStream && !ok && !a.upstreamPaused && a.encoder) {
      a.upstreamPaused = true;
      a.encoder.pauseResponse();
    }
  }

  onResponseTrailers(a: UpstreamAttempt, trailers: HeaderList): void {
    const g = grpcStatusOf(trailers);
    if (g >= 0) this.cb.info.grpcStatus = g;
    this.completeAttempt(a);
    this.cb.encodeTrailers(trailers);
  }

  /** The downstream drained: let the upstream response flow again. */
  onDownstreamWritable(): void {
    const a = this.attempt;
    if (a?.upstreamPaused && a.encoder) {
      a.upstreamPaused = false;
      a.encoder.resumeResponse();
    }
  }

  onGlobalTimeout(): void {
    this.globalTimer = undefined;
    if (this.done) return;
    const info = this.cb.info;
    this.cluster.stats.upstreamRqTimeout++;
    const a = this.attempt;
    if (a?.live) {
      a.host.stats.rqTimeout++;
      if (!a.responseHeaders) this.cluster.reportResult?.(a.host, 504);
      this.finishAttempt(a, false);
      a.abandon();
    }
    if (this.backOffTimer !== undefined) {
      clearTimeout(this.backOffTimer);
      this.backOffTimer = undefined;
    }
    if (this.cb.responseStarted) {
      info.setResponseFlag('UT');
      this.finish();
      this.cb.resetDownstream('timeout');
      return;
    }
    this.fail(504, 'upstream request timeout', 'UT', 'upstream_response_timeout');
  }

  onPerTryTimeout(): void {
    this.perTryTimer = undefined;
    const a = this.attempt;
    if (this.done || !a || a.responseHeaders) return;
    this.cluster.stats.upstreamRqTimeout++;
    a.host.stats.rqTimeout++;
    this.cluster.reportResult?.(a.host, 504);
    this.finishAttempt(a, false);
    a.abandon();
    if (this.retry?.retriableTimeout() && this.maybeRetry(a.host)) return;
    this.fail(504, 'upstream request timeout', 'UT', 'upstream_per_try_timeout');
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
    if (d === RetryDecision.NoLimitExceeded) {
      this.cb.info.setResponseFlag('URX');
      return false;
    }
    if (d === RetryDecision.NoOverflow) {
      this.cb.info.setResponseFlag('UO');
      return false;
    }
    if (fromHeaders && this.attempt) {
      // Envoy charges the retried response to the host's rq_error (the cluster's retry.* codes).
      this.attempt.host.stats.rqError++;
      this.finishAttempt(this.attempt, false);
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

  private countResponse(host: Host, status: number): void {
    const s = this.cluster.stats;
    if (status >= 500) {
      s.upstreamRq5xx++;
      host.stats.rqError++;
    } else {
      if (status >= 400) s.upstreamRq4xx++;
      else if (status >= 300) s.upstreamRq3xx++;
      else s.upstreamRq2xx++;
      host.stats.rqSuccess++;
    }
    if (this.retriesHeld > 0 && status < 500) s.upstreamRqRetrySuccess++;
  }

  /** Per-attempt accounting when an attempt ends (success or not). */
  private finishAttempt(a: UpstreamAttempt, success: boolean): void {
    if (a.counted) {
      a.counted = false;
      this.cluster.resources.requests.dec();
      if (this.cluster.stats.upstreamRqActive > 0) this.cluster.stats.upstreamRqActive--;
      if (a.host.activeRequests > 0) a.host.activeRequests--;
    }
    if (!success && !a.responseHeaders) a.host.stats.rqError++;
    this.clearPerTryTimer();
  }

  private completeAttempt(a: UpstreamAttempt): void {
    this.finishAttempt(a, true);
    a.live = false;
    this.finish();
  }

  private startTunnel(a: UpstreamAttempt): void {
    const up = a.encoder!.takeTunnel();
    const down = this.cb.takeDownstreamTunnel();
    this.clearTimers();
    this.tunnel = new Tunnel(down, up, (t) => {
      this.finishAttempt(a, true);
      a.live = false;
      this.finish();
      this.cb.onTunnelDone(t.bytesUp, t.bytesDown);
    });
  }

  /** A local reply caused by the upstream side. */
  private fail(status: number, body: string, flag: ResponseFlag, details: string, headers?: HeaderList): void {
    this.finish();
    this.cb.sendLocalReply(status, body, headers, flag, details);
  }

  private respondDirect(
    status: number,
    body: Buffer | undefined,
    location: string | undefined,
    route: CompiledRoute,
  ): void {
    const info = this.cb.info;
    info.setResponseFlag('DR');
    info.responseCodeDetails = 'direct_response';
    const h: HeaderList = [];
    if (location !== undefined) h.push('location', location);
    const len = body?.length ?? 0;
    if (len > 0) h.push('content-type', 'text/plain');
    h.push('content-length', String(len));
    this.applyResponseMutations(h, route);
    this.finish();
    const headOnly = len === 0 || this.head.method === 'HEAD';
    this.cb.encodeHeaders({ status, headers: h, contentLength: len }, headOnly);
    if (!headOnly) this.cb.encodeData(body!, true);
  }

  /** The route whose response_headers_to_add/remove apply; set by the connection manager. */
  routeForMutations: CompiledRoute | undefined;

  private applyResponseMutations(h: HeaderList, route: CompiledRoute | undefined): void {
    if (route === undefined) return;
    const ctx = this.cb.formatContext;
    const r = route.route;
    if (this.weighted)
      applyMutations(h, this.weighted.responseHeadersToRemove, this.weighted.responseHeadersToAdd, ctx);
    applyMutations(h, r.responseHeadersToRemove, r.responseHeadersToAdd, ctx);
    applyMutations(h, route.vhost.responseHeadersToRemove, route.vhost.responseHeadersToAdd, ctx);
    const rc = this.rc;
    if (rc) applyMutations(h, rc.responseHeadersToRemove, rc.responseHeadersToAdd, ctx);
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
    this.clearPerTryTimer();
  }

  /** Release everything the router holds (idempotent): timers, retry resources, counters. */
  private finish(): void {
    this.done = true;
    this.clearTimers();
    this.releaseCounters();
    this.body = undefined;
  }

  private releaseCounters(): void {
    while (this.retriesHeld > 0) {
      this.retriesHeld--;
      this.cluster.resources.retries.dec();
    }
  }

  /** The downstream went away or the stream is being destroyed: abandon upstream work. */
  onDestroy(): void {
    const a = this.attempt;
    if (a?.live) {
      this.finishAttempt(a, false);
      a.abandon();
    }
    this.tunnel?.finish();
    this.finish();
  }
}

const DIGITS = /^\d+$/;

/** "host:port" / "[v6]:port" → parts; a bare host gets `defaultPort` (0 = a port is required). */
function splitAuthority(a: string, defaultPort: number): { host: string; port: number } | undefined {
  const colon = a.lastIndexOf(':');
  if (colon <= 0 || a.endsWith(']')) {
    if (defaultPort === 0 || a === '') return undefined;
    return { host: a.startsWith('[') ? a.slice(1, -1) : a, port: defaultPort };
  }
  const port = Number(a.slice(colon + 1));
  if (!Number.isInteger(port) || port <= 0 || port > 65535) return undefined;
  let host = a.slice(0, colon);
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  else if (host.includes(':')) return undefined;
  return { host, port };
}

/** Control headers the router consumes and never forwards (Envoy removes them too). */
const ENVOY_REQUEST_CONTROL_HEADERS: readonly string[] = [
  'x-envoy-upstream-rq-timeout-ms',
  'x-envoy-upstream-rq-per-try-timeout-ms',
  'x-envoy-retry-on',
  'x-envoy-retry-grpc-on',
  'x-envoy-max-retries',
  'x-envoy-retriable-status-codes',
];

const HEADER_RETRY_ON: ReadonlySet<string> = new Set<RetryOn>([
  '5xx',
  'gateway-error',
  'reset',
  'connect-failure',
  'retriable-4xx',
  'refused-stream',
  'retriable-status-codes',
  'cancelled',
  'deadline-exceeded',
  'internal',
  'resource-exhausted',
  'unavailable',
]);

/**
 * Envoy's request-header retry controls from trusted clients: x-envoy-retry-on and
 * x-envoy-retry-grpc-on add conditions, x-envoy-max-retries, x-envoy-retriable-status-codes and
 * x-envoy-upstream-rq-per-try-timeout-ms override. Allocates only when such a header is present.
 */
export function retryPolicyFromHeaders(h: HeaderList, base: RetryPolicy | undefined): RetryPolicy | undefined {
  const on = getHeader(h, 'x-envoy-retry-on');
  const grpcOn = getHeader(h, 'x-envoy-retry-grpc-on');
  const max = getHeader(h, 'x-envoy-max-retries');
  const codes = getHeader(h, 'x-envoy-retriable-status-codes');
  const perTry = getHeader(h, 'x-envoy-upstream-rq-per-try-timeout-ms');
  if (on === undefined && grpcOn === undefined && max === undefined && codes === undefined && perTry === undefined)
    return base;
  const retryOn = new Set<RetryOn>(base?.retryOn ?? []);
  for (const list of [on, grpcOn]) {
    if (list === undefined) continue;
    for (const raw of list.split(',')) {
      const c = raw.trim();
      if (HEADER_RETRY_ON.has(c)) retryOn.add(c as RetryOn);
    }
  }
  if (retryOn.size === 0) return base;
  const retriableStatusCodes = [...(base?.retriableStatusCodes ?? [])];
  if (codes !== undefined) {
    for (const raw of codes.split(',')) {
      const n = Number(raw.trim());
      if (Number.isInteger(n) && n >= 100 && n <= 599) retriableStatusCodes.push(n);
    }
  }
  return {
    retryOn,
    // Envoy: a retry policy from headers alone defaults to one retry.
    numRetries: max !== undefined && DIGITS.test(max) ? Number(max) : (base?.numRetries ?? 1),
    perTryTimeoutMs: perTry !== undefined && DIGITS.test(perTry) ? Number(perTry) : (base?.perTryTimeoutMs ?? 0),
    retriableStatusCodes,
    avoidPreviousHosts: base?.avoidPreviousHosts ?? false,
    hostSelectionRetryMaxAttempts: base?.hostSelectionRetryMaxAttempts ?? 1,
    backOffBaseMs: base?.backOffBaseMs ?? 25,
    backOffMaxMs: base?.backOffMaxMs ?? 250,
  };
}

function upgradeAllowed(upgrade: string, routeTypes: readonly string[], hcmTypes: readonly string[]): boolean {
  const list = routeTypes.length > 0 ? routeTypes : hcmTypes;
  for (let i = 0; i < list.length; i++) if (list[i]!.toLowerCase() === upgrade) return true;
  return false;
}

function grpcStatusOf(h: HeaderList): number {
  for (let i = 0; i < h.length; i += 2) {
    if (h[i] === 'grpc-status') {
      const n = Number(h[i + 1]);
      return Number.isInteger(n) ? n : -1;
    }
  }
  return -1;
}
