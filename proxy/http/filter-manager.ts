/**
 * The filter manager of one stream (Envoy's FilterManager): it creates the stream's filters
 * (decoder filters in `http_filters` order ending in the terminal filter, the router), answers
 * per-route config for the filter being called, sends local replies (built by local-reply.ts)
 * through the encoder filters, and ends the stream. The iteration itself is layered below it:
 * the decoder side in filter-decoding.ts, the encoder side in filter-encoding.ts (one object per
 * stream; the layers are classes, not separate objects).
 *
 * It knows its stream only through FilterManagerCallbacks (filter-callbacks.ts, implemented by
 * the connection manager's ActiveStream, active-stream.ts): route cache, codec writes, timers and completion stay
 * there; chain resolution and the hold/buffer bookkeeping are in filter-chain.ts. The
 * filter manager is itself the callbacks object every filter of the stream gets (the filter
 * being called is tracked by index, so there is no wrapper object per filter).
 */
import type { ResponseFlag } from '../../common/errors';
import type { HeaderList, RequestHead, ResetReason, ResponseHead } from './codec';
import type { HttpFilter, TerminalFilterCallbacks } from './filter';
import type { FilterManagerCallbacks } from './filter-callbacks';
import type { ResolvedChain } from './filter-chain';
import { EncoderFilterIteration } from './filter-encoding';
import { buildLocalReply } from './local-reply';

export class FilterManager extends EncoderFilterIteration implements TerminalFilterCallbacks {
  constructor(
    cb: FilterManagerCallbacks,
    private readonly chain: ResolvedChain,
  ) {
    super(cb);
  }

  // ─────────────── callbacks that depend on the filter being called ───────────────

  perRouteConfig(): unknown {
    const r = this.cb.resolveRoute();
    const fs = this.chain.filters;
    const entry = this.current === fs.length ? this.chain.terminal : fs[this.current];
    if (!r || !entry) return undefined;
    return r.route.typedPerFilterConfig[entry.name] ?? r.vhost.typedPerFilterConfig[entry.name];
  }
  perRouteConfigAt(level: 0 | 1): unknown {
    const r = this.cb.resolveRoute();
    const fs = this.chain.filters;
    const entry = this.current === fs.length ? this.chain.terminal : fs[this.current];
    if (!r || !entry) return undefined;
    return (level === 0 ? r.route : r.vhost).typedPerFilterConfig[entry.name];
  }
  /** The terminal filter's read-disable (upstream not ready, or above its watermark). */


  /** Create the stream's filters (factories in chain order, the terminal last) and decode the headers. */
  decodeHeaders(head: RequestHead, endStream: boolean): void {
    const entries = this.chain.filters;
    if (entries.length > 0) {
      const fs: HttpFilter[] = new Array(entries.length);
      for (let i = 0; i < entries.length; i++) {
        this.current = i;
        fs[i] = entries[i]!.factory.create(entries[i]!.config, this);
      }
      this.filters = fs;
    }
    const t = this.chain.terminal;
    this.current = entries.length;
    this.terminal = t.factory.create(t.config, this);
    this.runDecodeHeaders(0, head, endStream);
  }

  // ─────────────── local replies ───────────────

  sendLocalReply(status: number, body: string, headers?: HeaderList, flag?: ResponseFlag, details?: string): void {
    if (this.destroyed) return;
    const info = this.cb.info;
    if (flag !== undefined) info.setResponseFlag(flag);
    info.responseCodeDetails = details ?? 'local_reply';
    if (this.headersWritten) {
      // Headers are already on the wire: the only honest signal left is a reset.
      this.cb.resetStream('local_reset');
      return;
    }
    const r = buildLocalReply(status, body, headers, info.grpc, this.cb.request?.method === 'HEAD');
    if (r.grpcStatus >= 0) info.grpcStatus = r.grpcStatus;
    this.respond(r.head, r.body);
  }

  /**
   * A complete response built by a filter (a cache hit, a direct response). Before the response
   * started it goes through the encoder filters like any response; once started (raised from an
   * encoder filter) it replaces what they hold, as a local reply does.
   */
  sendResponse(head: ResponseHead, body: Buffer | undefined, details?: string): void {
    if (this.destroyed) return;
    this.cb.info.responseCodeDetails = details ?? 'filter_response';
    if (this.headersWritten) {
      this.cb.resetStream('local_reset');
      return;
    }
    this.respond(head, this.cb.request?.method === 'HEAD' ? undefined : body);
  }

  /**
   * A local reply, or a stream-level failure (timeouts): before headers were written a local
   * reply, after it a reset with `reason`.
   */
  failStream(status: number, body: string, flag: ResponseFlag | undefined, details: string, reason: ResetReason): void {
    if (this.destroyed) return;
    this.terminal?.onDestroy();
    if (this.headersWritten) this.cb.resetStream(reason);
    else this.sendLocalReply(status, body, undefined, flag, details);
  }

  private respond(head: ResponseHead, body: Buffer | undefined): void {
    this.localReplied = true;
    this.terminal?.onDestroy();
    if (this.started) {
      // Raised from (or after) the encoder filters: replace whatever they hold and skip them,
      // as Envoy does for local replies sent while encoding.
      this.dropEncodeHolds();
      this.encodeBypassed = true;
      this.writeHeaders(head, body === undefined);
      if (body !== undefined && !this.destroyed) this.cb.writeData(body, true);
      return;
    }
    this.encodeHeaders(head, body === undefined);
    if (body !== undefined) this.encodeData(body, true);
  }

  // ─────────────── end of stream ───────────────

  /** The stream is over: tell every filter (the terminal first, it abandons upstream work). */
  destroy(onError: (err: unknown) => void): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.terminal?.onDestroy();
    const fs = this.filters;
    for (let i = 0; i < fs.length; i++) {
      const f = fs[i]!;
      if (f.onDestroy === undefined) continue;
      try {
        f.onDestroy();
      } catch (err) {
        onError(err);
      }
    }
    this.dropHeldDecodes();
    this.heldEncode = undefined;
  }
}
