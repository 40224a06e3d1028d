/**
 * HTTP filter interface and registry (style rule 4). Envoy's model: decoder filters see the
 * request in `http_filters` order, encoder filters see the response in reverse order, and the
 * terminal filter (the router, proxy/http/router/router-filter.ts) answers the request — an
 * ordinary registered filter with a wider callback interface (TerminalFilterCallbacks). A filter returns Continue to pass the event on, or
 * StopIteration to hold it until it calls `callbacks.continueDecoding()` / `continueEncoding()`
 * (for example after an async check). `sendLocalReply` ends the stream with a local response.
 *
 * Cost contract: factories are called once per stream; a chain holding only the router creates
 * one object per stream (the router) and nothing else.
 */
import type { RuntimeReader } from '../../common/runtime';
import type { Duplex } from 'node:stream';
import type { Reader } from '../../common/reader';
import type { HcmConfig, NodeInfo, Route, RouteConfiguration } from '../config/types';
import type { ResponseFlag } from '../../common/errors';
import type { ClusterLookup } from '../upstream/types';
import type {
  DownstreamConnectionInfo,
  HeaderList,
  HttpProtocol,
  RequestHead,
  ResetReason,
  ResponseHead,
} from './codec';
import type { HeaderFormatContext } from './headers';
import type { CompiledRoute } from './route-matcher';
import type { StreamInfo } from './stream-info';

/**
 * Continue passes the event on; StopIteration holds it (and every later event) until the filter
 * calls continueDecoding()/continueEncoding(). StopIterationAndBuffer (body chunks only, Envoy's
 * name) keeps the chunk in a per-filter buffer while later chunks still reach this filter; the
 * first chunk it continues is passed on with everything buffered before it, concatenated. At end
 * of stream it behaves like StopIteration over the whole buffered body. StopIterationNoBuffer (body
 * chunks only, Envoy's name) means the filter took the chunk: nothing is passed on or held, later
 * chunks still reach the filter, and it passes its own output on with injectDecodedData /
 * injectEncodedData (a transforming filter: compressor, decompressor, grpc_web). StopHeaders
 * (encodeHeaders only; Envoy's FilterHeadersStatus::StopIteration) holds the response headers at
 * the filter while the body and trailers still reach it, so it can change the headers after
 * seeing them (grpc_http1_bridge: grpc-status from the trailers); the headers go on, ahead of
 * everything else, when the filter passes something on (Continue from encodeData or
 * encodeTrailers, injectEncodedData) or calls continueEncoding().
 */
export const FilterStatus = {
  Continue: 0,
  StopIteration: 1,
  StopIterationAndBuffer: 2,
  StopIterationNoBuffer: 3,
  StopHeaders: 4,
} as const;
export type FilterStatus = (typeof FilterStatus)[keyof typeof FilterStatus];

/**
 * What the filter manager gives a filter for one stream. Every member is always present (since the
 * split of the connection manager, the members that used to be optional are required).
 */
export interface HttpFilterCallbacks {
  readonly connection: DownstreamConnectionInfo;
  /**
   * The trusted client address for this request (Envoy's downstream remote address after
   * use_remote_address / x-forwarded-for / xff_num_trusted_hops); "" when unknown, in which case
   * filters fall back to `connection.remoteAddress`. RBAC's remote_ip uses it.
   */
  readonly trustedRemoteAddress: string;
  /** The route selected for the current request headers (undefined = no route matched). */
  route(): Route | undefined;
  /** Re-run route selection after the filter changed headers that matching depends on. */
  clearRouteCache(): void;
  /** This filter's per-route config (typed_per_filter_config) from route, vhost or weighted cluster. */
  perRouteConfig(): unknown;
  /**
   * This filter's typed_per_filter_config at one level only: 0 the route, 1 its virtual host
   * (Envoy's traversePerFilterConfig, for filters that merge levels, such as CORS).
   */
  perRouteConfigAt(level: 0 | 1): unknown;
  /** The matched route with its virtual host (undefined = no route). */
  routeEntry(): CompiledRoute | undefined;
  /** The stream's facts (timings, cluster, gRPC status) as access logs and stats read them. */
  readonly streamInfo: StreamInfo;
  continueDecoding(): void;
  continueEncoding(): void;
  /** End the stream with a local response; `flag` feeds access logs and metrics. */
  sendLocalReply(status: number, body: string, headers?: HeaderList, flag?: ResponseFlag, details?: string): void;
  /**
   * Answer the stream with a complete response built by the filter (a cache hit, a validated
   * cached entry, a direct response) instead of Envoy's text/plain local reply. Headers are used
   * as given; the remaining decoder filters are skipped.
   */
  sendResponse(head: ResponseHead, body: Buffer | undefined, details?: string): void;
  setResponseFlag(flag: ResponseFlag): void;
  /**
   * Envoy's setDecoderBufferLimit, for a filter that stopped at decodeHeaders to buffer the body:
   * the filter manager holds the request body up to `bytes` instead of pausing the socket at its
   * watermark, answers 413 beyond it, and continues the chain itself once the request is complete
   * — or, with a `watcher`, hands the held body to it and lets it continue.
   */
  setDecoderBufferLimit(bytes: number, watcher?: DecoderBufferWatcher): void;
  /** Free-form, bounded-size facts for access logs (filter_state / dynamic metadata). */
  setMetadata(key: string, value: string): void;
  /** Envoy's dynamic metadata: set `key` in the `namespace` struct (jwt_authn payload_in_metadata). */
  setDynamicMetadata?(namespace: string, key: string, value: unknown): void;
  /** Read one namespace of the stream's dynamic metadata (RBAC metadata matchers). */
  dynamicMetadataOf?(namespace: string): Readonly<Record<string, unknown>> | undefined;
  /** The connection manager's config (its stat_prefix names the filters' counters, as in Envoy). */
  readonly hcm: HcmConfig;
  /** The clusters of this proxy, for filters that call a service through a cluster (ext_authz, JWKS). */
  readonly clusters: ClusterLookup;
  /**
   * The proxy's layered runtime: read it where Envoy reads a runtime_key or a
   * RuntimeFractionalPercent (decode those with `decodeRuntimeFraction` in
   * proxy/config/envoy/runtime.ts; test with `runtime.fractionEnabled(fraction, Math.random())`).
   */
  readonly runtime: RuntimeReader;
  /** The proxy's node (undefined when the connection manager was built without one). */
  readonly localNode: NodeInfo | undefined;
  /** What `%FORMAT%` operators resolve against for this stream. */
  readonly formatContext: HeaderFormatContext;
  /**
   * Pass request body bytes on from `filter` (which took its input with StopIterationNoBuffer) to
   * the filters after it, now or later (Envoy's injectDecodedDataToFilterChain). Returns false
   * while the terminal filter cannot take more (its upstream is above its watermark); the filter's
   * onDecodeWritable() follows.
   */
  injectDecodedData(filter: HttpFilter, chunk: Buffer, endStream: boolean): boolean;
  /**
   * Pass response body bytes on from `filter` to the encoder filters after it and the codec.
   * Returns false while the downstream is above its watermark; onEncodeWritable() follows.
   */
  injectEncodedData(filter: HttpFilter, chunk: Buffer, endStream: boolean): boolean;
  /** A filter holds too much request data: stop reading the downstream until it drains (Envoy's names). */
  onDecoderFilterAboveWriteBufferHighWatermark(): void;
  onDecoderFilterBelowWriteBufferLowWatermark(): void;
  /** A filter holds too much response data: the terminal filter stops reading its upstream until it drains. */
  onEncoderFilterAboveWriteBufferHighWatermark(): void;
  onEncoderFilterBelowWriteBufferLowWatermark(): void;
}

/**
 * A filter that buffers the request body for itself (ext_authz with_request_body) instead of
 * having the filter manager continue the chain once the body is complete.
 */
export interface DecoderBufferWatcher {
  /** Past the limit, report the body held so far instead of answering 413 (allow_partial_message). */
  readonly partial: boolean;
  /**
   * The held body is complete (`endStream`), or in partial mode reached the limit: `body` is
   * every body byte held so far. The filter continues the chain itself (continueDecoding); the
   * held events are replayed to the filters after it then.
   */
  onDecoderBuffered(body: Buffer, endStream: boolean): void;
}

/**
 * What the terminal filter (the router) gets on top of HttpFilterCallbacks — the parts of Envoy's
 * StreamDecoderFilterCallbacks a filter needs to answer the request itself: the stream's info,
 * the resolved route entry, the encoder path (through every encoder filter), resets, request
 * read-disable and the byte tunnel of an accepted upgrade.
 */
export interface TerminalFilterCallbacks extends HttpFilterCallbacks {
  readonly downstreamProtocol: HttpProtocol;
  /** Whether the request came from a trusted (internal) client (x-envoy-* controls apply). */
  readonly internal: boolean;
  /** The response entered the encoder filters: a local reply is no longer possible. */
  readonly responseStarted: boolean;
  /** The route configuration the route came from (fixed when the request arrived). */
  routeConfig(): RouteConfiguration | undefined;
  encodeHeaders(head: ResponseHead, endStream: boolean): void;
  /** Returns false when the downstream is above its high watermark (onDownstreamWritable follows). */
  encodeData(chunk: Buffer, endStream: boolean): boolean;
  encodeTrailers(trailers: HeaderList): void;
  /** Reset the downstream stream (headers already sent, or the upstream reset mid-response). */
  resetStream(reason: ResetReason): void;
  /** Read-disable the request while the upstream is not ready or above its watermark. */
  setRequestPaused(paused: boolean): void;
  /** After an accepted upgrade (101) or CONNECT (2xx): the downstream byte stream. */
  takeDownstreamTunnel(): Duplex;
  /** The tunnel of an accepted upgrade ended: complete the stream. */
  onTunnelDone(bytesUp: number, bytesDown: number): void;
  /** Randomness for weighted clusters and retry jitter (the connection manager's; tests pin it). */
  readonly random: () => number;
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
  /** The terminal filter can take request data again (after injectDecodedData returned false). */
  onDecodeWritable?(): void;
  /** The downstream drained below its watermark (after injectEncodedData returned false). */
  onEncodeWritable?(): void;
}

/** The terminal filter: a decoder that answers the request and follows downstream flow control. */
export interface TerminalHttpFilter extends HttpFilter {
  decodeHeaders(head: RequestHead, endStream: boolean): FilterStatus;
  decodeData(chunk: Buffer, endStream: boolean): FilterStatus;
  decodeTrailers(trailers: HeaderList): FilterStatus;
  /** The downstream drained below its watermark after encodeData returned false. */
  onDownstreamWritable(): void;
  onDestroy(): void;
}

interface FactoryBase<C> {
  /** Fully-qualified proto type name of the filter's typed_config. */
  readonly typeName: string;
  /** Validate typed_config (proto3 JSON form) into a frozen config; report problems on the reader. */
  decode(r: Reader): C;
  /** Validate a typed_per_filter_config entry for this filter. */
  decodePerRoute?(r: Reader): unknown;
}

export interface HttpFilterFactory<C = unknown> extends FactoryBase<C> {
  readonly terminal?: false;
  /** One filter instance per stream. */
  create(config: C, callbacks: HttpFilterCallbacks): HttpFilter;
}

/** A terminal filter (the router): must be last in the chain, and only it. */
export interface TerminalHttpFilterFactory<C = unknown> extends FactoryBase<C> {
  readonly terminal: true;
  /** One instance per stream; `config` is undefined when the chain was built without decoding. */
  create(config: C | undefined, callbacks: TerminalFilterCallbacks): TerminalHttpFilter;
}

export type AnyHttpFilterFactory = HttpFilterFactory | TerminalHttpFilterFactory;

/** Explicit registry filled from the composition root. */
export class HttpFilterRegistry {
  private readonly byType = new Map<string, AnyHttpFilterFactory>();
  register<C>(factory: HttpFilterFactory<C> | TerminalHttpFilterFactory<C>): this {
    this.byType.set(factory.typeName, factory as AnyHttpFilterFactory);
    return this;
  }
  get(typeName: string): AnyHttpFilterFactory | undefined {
    return this.byType.get(typeName);
  }
  types(): string[] {
    return [...this.byType.keys()];
  }
}
