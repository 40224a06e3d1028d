/**
 * The router's per-stream state (the lowest of the router's three class layers): what the route
 * chose (cluster, weighted cluster, route config), the replay buffer of the request body, the
 * flow control towards the downstream, the route timeout and back-off timers, and completion —
 * the local replies caused by the upstream side, direct responses, and releasing what the router
 * holds.
 *
 * The tries (router-tries.ts) extend it and RouterFilter (router-filter.ts) completes it with the
 * decoder side; the classes are layers of one object per stream, so the split costs no
 * allocation. The timer callbacks are module functions that get the router as their argument.
 */
import type { RouteAction, RouteConfiguration, WeightedCluster } from '../../config/types';
import type { Host } from '../../upstream/host';
import type { LbContext } from '../../upstream/lb/types';
import type { UpstreamCluster } from '../../upstream/types';
import type { HeaderList, RequestHead } from '../codec';
import type { TerminalFilterCallbacks } from '../filter';
import type { UpstreamFailureReply } from '../local-reply';
import type { CompiledRoute } from '../route-matcher';
import type { Tunnel } from '../tunnel';
import type { ConnectRequest } from './connect';
import { DEFAULT_ROUTER_CONFIG, type RouterConfig } from './router-config';
import { directResponse } from './request-shaping';
import type { RetryState } from './retry-state';
import type { Shadows } from './shadow';
import type { UpstreamRequest } from './upstream-request';

/** Request bodies up to this size are kept for replay on retry; beyond it retries are off. */
export const RETRY_BUFFER_LIMIT = 64 * 1024;

function onGlobalTimeout(r: RouterState): void {
  r.onGlobalTimeout();
}

export abstract class RouterState {
  protected head!: RequestHead;
  protected action!: RouteAction;
  protected route: CompiledRoute | undefined;
  protected cluster!: UpstreamCluster;
  protected weighted: WeightedCluster | undefined;
  protected rc!: RouteConfiguration;
  protected retry: RetryState | undefined;
  protected attempt: UpstreamRequest | undefined;
  protected lbCtx: LbContext | undefined;
  protected previousHosts: Host[] | undefined;

  protected body: Buffer[] | undefined;
  protected bodyBytes = 0;
  /** The request body exceeded RETRY_BUFFER_LIMIT: no replay possible. */
  protected bodyOverflow = false;
  protected trailers: HeaderList | undefined;
  protected downstreamComplete = false;
  /** Chunks already written to the current attempt's encoder (index into `body`). */
  protected written = 0;
  protected requestPaused = false;

  protected globalTimer: NodeJS.Timeout | undefined;
  protected backOffTimer: NodeJS.Timeout | undefined;
  protected timeoutMs = 0;
  protected done = false;
  protected retriesHeld = 0;
  protected tunnel: Tunnel | undefined;
  protected connect: ConnectRequest | undefined;
  /** A hash-policy cookie generated for this client, set on the response. */
  protected setCookie: string | undefined;
  /** Mirrors of this request (route request_mirror_policies); undefined for the usual route without. */
  protected shadows: Shadows | undefined;
  protected readonly config: RouterConfig;

  protected readonly random: () => number;

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

  /** The route timeout fired (router-tries.ts). */
  abstract onGlobalTimeout(): void;

  // ─────────────── replay buffer and downstream flow control ───────────────

  /** Keep a chunk for a not-yet-ready upstream (`force`) or for replay; stop replaying beyond the bound. */
  protected keep(chunk: Buffer, force = false): void {
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

  protected pauseDownstream(): void {
    if (!this.requestPaused) {
      this.requestPaused = true;
      this.callbacks.setRequestPaused(true);
    }
  }

  protected resumeDownstream(): void {
    if (this.requestPaused) {
      this.requestPaused = false;
      this.callbacks.setRequestPaused(false);
    }
  }

  // ─────────────── timers ───────────────

  protected onDownstreamComplete(): void {
    this.startGlobalTimer();
    if (this.attempt?.encoder) this.startPerTryTimer(this.attempt);
  }

  protected startGlobalTimer(): void {
    if (this.globalTimer === undefined && this.timeoutMs > 0 && !this.done) {
      this.globalTimer = setTimeout(onGlobalTimeout, this.timeoutMs, this);
    }
  }

  protected startPerTryTimer(a: UpstreamRequest): void {
    a.startPerTryTimer(this.retry?.policy.perTryTimeoutMs ?? 0);
  }

  protected perTryOrGlobalMs(): number {
    const pt = this.retry?.policy.perTryTimeoutMs ?? 0;
    return pt > 0 && pt < this.timeoutMs ? pt : this.timeoutMs;
  }

  protected clearTimers(): void {
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

  // ─────────────── completion ───────────────

  protected completeAttempt(a: UpstreamRequest): void {
    a.complete();
    this.finish();
  }

  /** A local reply caused by the upstream side. */
  protected fail(r: UpstreamFailureReply): void {
    this.finish();
    this.callbacks.sendLocalReply(r.status, r.body, r.headers, r.flag, r.details);
  }

  /** A direct_response or redirect: a local response with the route's response header mutations. */
  protected respondDirect(status: number, body: Buffer | undefined, location: string | undefined): void {
    const cb = this.callbacks;
    cb.setResponseFlag('DR');
    const r = directResponse(status, body, location, this.head, this.route!, this.rc, cb.formatContext);
    this.finish();
    cb.sendResponse(r.head, r.body, 'direct_response');
  }

  /** Release everything the router holds (idempotent): timers, retry resources, the replay buffer. */
  protected finish(): void {
    this.done = true;
    this.clearTimers();
    while (this.retriesHeld > 0) {
      this.retriesHeld--;
      this.cluster.resources.retries.dec();
    }
    this.body = undefined;
  }
}
