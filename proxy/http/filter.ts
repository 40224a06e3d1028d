/**
 * HTTP filter interface and registry (style rule 4). Envoy's model: decoder filters see the
 * request in `http_filters` order, encoder filters see the response in reverse order, and the
 * terminal router filter forwards upstream. A filter returns Continue to pass the event on, or
 * StopIteration to hold it until it calls `callbacks.continueDecoding()` / `continueEncoding()`
 * (for example after an async check). `sendLocalReply` ends the stream with a local response.
 *
 * Cost contract: a stream whose chain holds only the router creates no filter objects at all;
 * factories are called once per stream for the other filters.
 */
import type { ResponseFlag } from '../../common/errors';
import type { Reader } from '../../common/reader';
import type { Route } from '../config/types';
import type { ClusterLookup } from '../upstream/types';
import type { DownstreamConnectionInfo, HeaderList, RequestHead, ResponseHead } from './codec';
import type { HeaderFormatContext } from './headers';

/**
 * Continue passes the event on; StopIteration holds it (and every later event) until the filter
 * calls continueDecoding()/continueEncoding(). StopIterationAndBuffer (body chunks only, Envoy's
 * name) keeps the chunk in a per-filter buffer while later chunks still reach this filter; the
 * first chunk it continues is passed on with everything buffered before it, concatenated. At end
 * of stream it behaves like StopIteration over the whole buffered body.
 */
export const FilterStatus = { Continue: 0, StopIteration: 1, StopIterationAndBuffer: 2 } as const;
export type FilterStatus = (typeof FilterStatus)[keyof typeof FilterStatus];

/** What the connection manager gives a filter for one stream. */
export interface HttpFilterCallbacks {
  readonly connection: DownstreamConnectionInfo;
  /**
   * The trusted client address for this request (Envoy's downstream remote address after
   * use_remote_address / x-forwarded-for / xff_num_trusted_hops); "" when unknown. Optional
   * (additive): filters fall back to `connection.remoteAddress`. RBAC's remote_ip uses it.
   */
  readonly trustedRemoteAddress?: string;
  /** The route selected for the current request headers (undefined = no route matched). */
  route(): Route | undefined;
  /** Re-run route selection after the filter changed headers that matching depends on. */
  clearRouteCache(): void;
  /** This filter's per-route config (typed_per_filter_config) from route, vhost or weighted cluster. */
  perRouteConfig(): unknown;
  continueDecoding(): void;
  continueEncoding(): void;
  /** End the stream with a local response; `flag` feeds access logs and metrics. */
  sendLocalReply(status: number, body: string, headers?: HeaderList, flag?: ResponseFlag, details?: string): void;
  setResponseFlag(flag: ResponseFlag): void;
  /**
   * Envoy's setDecoderBufferLimit, for a filter that stopped at decodeHeaders to buffer the body
   * (additive, optional): the connection manager holds the request body up to `bytes` instead of
   * pausing the socket at its watermark, answers 413 beyond it, and continues the chain itself
   * once the request is complete.
   */
  setDecoderBufferLimit?(bytes: number): void;
  /** Free-form, bounded-size facts for access logs (filter_state / dynamic metadata). */
  setMetadata(key: string, value: string): void;
  /**
   * Optional (additive): the clusters of this proxy, for filters that call a service through a
   * cluster (ext_authz, rate limit service, remote JWKS).
   */
  readonly clusters?: ClusterLookup;
  /** Optional (additive): what `%FORMAT%` operators resolve against for this stream. */
  readonly formatContext?: HeaderFormatContext;
  /**
   * Optional (additive): answer the stream with a complete response built by the filter (a cache
   * hit, a validated cached entry) instead of Envoy's text/plain local reply. Headers are used as
   * given; the remaining decoder filters and the router are skipped.
   */
  sendResponse?(head: ResponseHead, body: Buffer | undefined, details?: string): void;
}

export interface HttpFilter {
  decodeHeaders?(head: RequestHead, endStream: boolean): FilterStatus;
  decodeData?(chunk: Buffer, endStream: boolean): FilterStatus;
  decodeTrailers?(trailers: HeaderList): FilterStatus;
  encodeHeaders?(head: ResponseHead, endStream: boolean): FilterStatus;
  encodeData?(chunk: Buffer, endStream: boolean): FilterStatus;
  encodeTrailers?(trailers: HeaderList): FilterStatus;
  /** The stream ended (completed or reset); release timers and resources. */
  onDestroy?(): void;
}

export interface HttpFilterFactory<C = unknown> {
  /** Fully-qualified proto type name of the filter's typed_config. */
  readonly typeName: string;
  /** Validate typed_config (proto3 JSON form) into a frozen config; report problems on the reader. */
  decode(r: Reader): C;
  /** Validate a typed_per_filter_config entry for this filter. */
  decodePerRoute?(r: Reader): unknown;
  /** Terminal filter (the router): must be last in the chain, and only it. */
  readonly terminal?: boolean;
  /** One filter instance per stream. Not called for the terminal router. */
  create(config: C, callbacks: HttpFilterCallbacks): HttpFilter;
}

/** Explicit registry filled from the composition root. */
export class HttpFilterRegistry {
  private readonly byType = new Map<string, HttpFilterFactory>();
  register<C>(factory: HttpFilterFactory<C>): this {
    this.byType.set(factory.typeName, factory as HttpFilterFactory);
    return this;
  }
  get(typeName: string): HttpFilterFactory | undefined {
    return this.byType.get(typeName);
  }
  types(): string[] {
    return [...this.byType.keys()];
  }
}
