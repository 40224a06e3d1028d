/**
 * The router (Envoy's envoy.filters.http.router): the terminal HTTP filter that answers a matched
 * route. This file is its decoder side, the top of three class layers of one object per stream:
 * it picks the cluster (cluster / weighted_clusters / cluster_header), shapes the request
 * (request-shaping.ts), sets the route timeout and retry policy (retry-state.ts), starts request
 * mirrors (shadow.ts), and streams or keeps the request body for replay. The tries — one
 * UpstreamRequest each (upstream-request.ts), upstream responses, timeouts and retries — are
 * router-tries.ts; the per-stream state, replay buffer, timers and completion are router-state.ts.
 * CONNECT terminated here goes to connect.ts. Direct responses and redirects are sent as local
 * responses through the filter manager.
 *
 * Lean hot path: the router is the one object a router-only chain creates per stream; its
 * methods are the timer callbacks (timers carry `this`), and the downstream request head is
 * edited in place and reused for every try. Data-plane failures never throw: they become local
 * replies with Envoy's status, body and response flag (local-reply.ts).
 */
import type { RouteAction } from '../../config/types';
import type { HeaderList, RequestHead } from '../codec';
import { FilterStatus, type TerminalHttpFilter } from '../filter';
import { getHeader, removeEnvoyHeaders } from '../headers';
import {
  applyRequestMutations,
  computeHash,
  grpcTimeoutMs,
  type HashSideEffects,
  isGrpcContentType,
  pickWeighted,
  redirectLocation,
  rewriteRequest,
  upgradeAllowed,
} from './request-shaping';
import { ENVOY_REQUEST_CONTROL_HEADERS, isDigits, RetryState, retryPolicyFromHeaders } from './retry-state';
import { RETRY_BUFFER_LIMIT } from './router-state';
import { RouterTries } from './router-tries';
import { Shadows } from './shadow';

export class RouterFilter extends RouterTries implements TerminalHttpFilter {
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

  /** The downstream drained: let the upstream response flow again. */
  onDownstreamWritable(): void {
    this.attempt?.resumeResponse();
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
