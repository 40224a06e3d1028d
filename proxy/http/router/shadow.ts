/**
 * Request mirroring (Envoy's shadow writer, route `request_mirror_policies`): a fire-and-forget
 * copy of the request — headers as sent upstream, body and trailers as they stream — to the
 * shadow cluster through that cluster's own load balancer, circuit breaker and connection pool
 * (so mTLS and HTTP/2 clusters work as for any route). The Host gets Envoy's `-shadow` suffix
 * (before the port) unless disable_shadow_host_suffix_append. The response is read and dropped;
 * its status counts in the shadow cluster's stats, nothing else.
 *
 * It never touches the main stream: no backpressure onto the request (a shadow whose upstream
 * falls behind by more than SHADOW_BUFFER_LIMIT bytes, or is not connected by then, is reset and
 * forgotten), no effect on the response or its timing, and a missing cluster, no healthy host or a
 * full circuit breaker simply means no shadow. Like Envoy's, a shadow ends at the route timeout,
 * and one whose request body was still streaming when the main stream ended is reset.
 */
import type { Host } from '../../upstream/host';
import type { UpstreamCluster } from '../../upstream/types';
import type { RequestMirrorPolicy } from '../../config/types';
import type {
  Cancellable,
  DownstreamConnectionInfo,
  HeaderList,
  HttpProtocol,
  PoolCallbacks,
  RequestEncoder,
  RequestHead,
  ResetReason,
  ResponseHead,
  ResponseSink,
} from '../codec';
import { getHeader, setHeader } from '../headers';
import { admitRequest, chooseHost, countResponse, releaseRequest } from './upstream-request';

/** Bytes a shadow may hold (not yet connected, or its upstream above its watermark) before it is dropped. */
export const SHADOW_BUFFER_LIMIT = 1024 * 1024;

/** Envoy's shadowAppendedHost: "-shadow" before the port, if any. */
export function shadowHost(authority: string): string {
  const close = authority.lastIndexOf(']');
  const colon = authority.lastIndexOf(':');
  if (colon > close && colon > 0 && authority.indexOf(':') === colon) return `${authority.slice(0, colon)}-shadow${authority.slice(colon)}`;
  if (close >= 0 && colon > close) return `${authority.slice(0, colon)}-shadow${authority.slice(colon)}`;
  return `${authority}-shadow`;
}

/** trace_sampled: the shadow's sampling decision in the B3 and W3C headers it carries. */
function setSampled(h: HeaderList, sampled: boolean): void {
  if (getHeader(h, 'x-b3-sampled') !== undefined || getHeader(h, 'x-b3-traceid') !== undefined) setHeader(h, 'x-b3-sampled', sampled ? '1' : '0');
  const tp = getHeader(h, 'traceparent');
  if (tp !== undefined && tp.length >= 55) setHeader(h, 'traceparent', `${tp.slice(0, 53)}${sampled ? '01' : '00'}${tp.slice(55)}`);
}

class ShadowRequest implements ResponseSink, PoolCallbacks {
  private encoder: RequestEncoder | undefined;
  private pending: Cancellable | undefined;
  private queued: Buffer[] | undefined = [];
  private queuedTrailers: HeaderList | undefined;
  private queuedEnd = false;
  private held = 0;
  private writable = true;
  private requestDone = false;
  private finished = false;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly cluster: UpstreamCluster,
    private readonly host: Host,
    private readonly head: RequestHead,
    endStream: boolean,
    timeoutMs: number,
  ) {
    this.queuedEnd = endStream;
    if (timeoutMs > 0) this.timer = setTimeout(() => this.abandon('timeout'), timeoutMs);
  }

  start(protocol: HttpProtocol): void {
    this.pending = this.cluster.httpPool(this.host, protocol).newStream(this, this);
  }

  onPoolReady(encoder: RequestEncoder): void {
    this.pending = undefined;
    if (this.finished) {
      encoder.reset('local_reset');
      return;
    }
    this.encoder = encoder;
    const q = this.queued ?? [];
    this.queued = undefined;
    this.held = 0;
    const noBody = q.length === 0 && this.queuedTrailers === undefined;
    encoder.writeHeaders(this.head, this.queuedEnd && noBody);
    for (let i = 0; i < q.length && !this.finished; i++) {
      if (!encoder.writeData(q[i]!, this.queuedEnd && this.queuedTrailers === undefined && i === q.length - 1)) this.writable = false;
    }
    if (this.queuedTrailers !== undefined && !this.finished) encoder.writeTrailers(this.queuedTrailers);
    if (this.queuedEnd) this.requestDone = true;
  }
  onPoolFailure(): void {
    this.pending = undefined;
    this.finish();
  }

  data(chunk: Buffer, endStream: boolean): void {
    if (this.finished) return;
    if (endStream) this.queuedEnd = true;
    const enc = this.encoder;
    if (enc === undefined) {
      this.queued!.push(chunk);
      this.hold(chunk.length);
      return;
    }
    if (!this.writable) this.hold(chunk.length);
    if (this.finished) return;
    if (!enc.writeData(chunk, endStream)) this.writable = false;
    if (endStream) this.requestDone = true;
  }

  trailers(t: HeaderList): void {
    if (this.finished) return;
    this.queuedEnd = true;
    if (this.encoder === undefined) this.queuedTrailers = t;
    else {
      this.encoder.writeTrailers(t);
      this.requestDone = true;
    }
  }

  /** The main stream ended: a shadow whose request is still incomplete is reset (as Envoy's). */
  parentDone(): void {
    if (!this.requestDone && !this.queuedEnd) this.abandon('local_reset');
  }

  private hold(n: number): void {
    this.held += n;
    if (this.held > SHADOW_BUFFER_LIMIT) this.abandon('overflow');
  }

  onUpstreamWritable(): void {
    this.writable = true;
    this.held = 0;
  }
  onResponseHeaders(head: ResponseHead, endStream: boolean): void {
    if (this.finished) return;
    countResponse(this.cluster, this.host, head.status, false);
    if (endStream) this.finish();
  }
  onResponseData(_chunk: Buffer, endStream: boolean): void {
    if (endStream) this.finish();
  }
  onResponseTrailers(): void {
    this.finish();
  }
  onUpstreamReset(_reason: ResetReason): void {
    this.finish();
  }

  private abandon(reason: ResetReason): void {
    if (this.finished) return;
    this.pending?.cancel();
    this.pending = undefined;
    this.encoder?.reset(reason);
    this.finish();
  }

  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    this.queued = undefined;
    if (this.timer !== undefined) clearTimeout(this.timer);
    releaseRequest(this.cluster, this.host);
  }
}

/** The shadows of one request, fed by the router as the request streams. */
export class Shadows {
  private readonly list: ShadowRequest[] = [];

  /**
   * Start a shadow per policy that applies (`random` draws the runtime fraction). `head` is the
   * request as it goes upstream; each shadow gets its own copy.
   */
  constructor(
    policies: readonly RequestMirrorPolicy[],
    head: RequestHead,
    endStream: boolean,
    ctx: {
      readonly clusters: { get(name: string): UpstreamCluster | undefined };
      readonly runtime: { fractionEnabled(f: NonNullable<RequestMirrorPolicy['runtimeFraction']>, random: number): boolean };
      readonly random: () => number;
      readonly connection: DownstreamConnectionInfo;
      readonly protocol: HttpProtocol;
      readonly timeoutMs: number;
    },
  ) {
    for (const p of policies) {
      if (p.runtimeFraction !== undefined && !ctx.runtime.fractionEnabled(p.runtimeFraction, ctx.random())) continue;
      const name = p.cluster ?? getHeader(head.headers, p.clusterHeader!);
      const cluster = name === undefined ? undefined : ctx.clusters.get(name);
      if (cluster === undefined) continue;
      const host = chooseHost(cluster, undefined, head, ctx.connection);
      if (host === undefined) {
        cluster.stats.upstreamCxNoneHealthy++;
        continue;
      }
      if (!admitRequest(cluster, host)) continue;
      const headers = head.headers.slice();
      if (p.traceSampled !== undefined) setSampled(headers, p.traceSampled);
      const copy: RequestHead = {
        ...head,
        headers,
        authority: p.disableShadowHostSuffixAppend || head.authority === '' ? head.authority : shadowHost(head.authority),
      };
      const s = new ShadowRequest(cluster, host, copy, endStream, ctx.timeoutMs);
      this.list.push(s);
      s.start(ctx.protocol);
    }
  }

  get empty(): boolean {
    return this.list.length === 0;
  }

  data(chunk: Buffer, endStream: boolean): void {
    for (const s of this.list) s.data(chunk, endStream);
  }

  trailers(t: HeaderList): void {
    for (const s of this.list) s.trailers(t);
  }

  parentDone(): void {
    for (const s of this.list) s.parentDone();
  }
}
