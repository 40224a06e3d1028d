/**
 * The router's tries (the middle of its three class layers; Envoy's Filter as the
 * RouterFilterInterface of its UpstreamRequests): host choice and admission for each try and for
 * terminated CONNECT, sending the request to a ready upstream, the upstream's response on its
 * way downstream (response header mutations, upgrades into a tunnel), upstream failures, the
 * route and per-try timeouts, and the retry decisions with their back-off.
 *
 * It extends the per-stream state (router-state.ts); RouterFilter (router-filter.ts) completes it
 * with the decoder side. One object per stream; the back-off timer gets it as its argument.
 */
import { Host } from '../../upstream/host';
import type { HeaderList, ResetReason, ResponseHead, UpstreamInfo } from '../codec';
import { setHeader } from '../headers';
import { upstreamResetReply, upstreamTimeoutReply } from '../local-reply';
import { Tunnel } from '../tunnel';
import { ConnectRequest, type ConnectOwner } from './connect';
import { applyResponseMutations, cleanResponseHeaders, grpcStatusOf } from './request-shaping';
import { RetryDecision } from './retry-state';
import { RouterState } from './router-state';
import { countResponse, type RouterCallbacks, selectHost, UpstreamRequest } from './upstream-request';

function onBackOff(r: RouterTries): void {
  r.onBackOffDone();
}

export abstract class RouterTries extends RouterState implements RouterCallbacks, ConnectOwner {
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

  protected startAttempt(): void {
    const host = this.admitHost();
    if (host === undefined) return;
    if (this.action.autoHostRewrite && host.hostname !== '') this.head.authority = host.hostname;
    const a = new UpstreamRequest(this, this.cluster, host);
    this.attempt = a;
    a.start(this.cluster.httpPool(host, this.callbacks.downstreamProtocol, this.callbacks.streamInfo.upstreamAlpnOverride));
  }

  // ─────────────── terminated CONNECT (ConnectOwner) ───────────────

  protected terminateConnect(): void {
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

  // ─────────────── RouterCallbacks (called by the UpstreamRequest) ───────────────

  /** The pool gave us a stream: send the head, then whatever body and trailers we have. */
  onUpstreamReady(a: UpstreamRequest, up: UpstreamInfo): void {
    const info = this.callbacks.streamInfo;
    info.upstreamLocalAddress = up.localAddress;
    if (up.peerPrincipal !== undefined) info.upstreamPeerPrincipal = up.peerPrincipal;
    if (info.firstUpstreamTxByteMs < 0) info.firstUpstreamTxByteMs = info.now();
    const h = this.head.headers;
    if (!this.config.suppressEnvoyHeaders) {
      // Envoy adds it only when the virtual host asks (include_request_attempt_count; istiod does).
      if (this.route?.vhost.includeRequestAttemptCount === true) setHeader(h, 'x-envoy-attempt-count', String(info.attemptCount));
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

  // ─────────────── timeouts and retries ───────────────

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
}
