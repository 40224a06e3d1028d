/**
 * The buffer HTTP filter, `envoy.extensions.filters.http.buffer.v3.Buffer` (Envoy's
 * envoy.filters.http.buffer): hold the whole request body before the request goes on, up to
 * `max_request_bytes`; a larger body is answered 413 Payload Too Large and nothing is forwarded.
 * Per route, `envoy.extensions.filters.http.buffer.v3.BufferPerRoute` disables it or sets another
 * limit.
 *
 * Envoy's mechanism, kept: decodeHeaders of a request with a body stops iteration and sets the
 * stream's decoder buffer limit (`setDecoderBufferLimit`); the filter manager then buffers the
 * body (instead of pausing the socket at its 64 KiB watermark), answers 413 when the limit is
 * exceeded, and resumes the chain when the request is complete. A request whose Content-Length
 * already exceeds the limit is refused at once (it could only end in 413 after reading the body).
 * Unlike Envoy, no Content-Length is added to a buffered chunked request: it is forwarded with its
 * original framing.
 *
 * This is meshlet's only 413 path: elsewhere request bodies stream with backpressure (bounded by
 * watermarks), and the router's retry buffer (64 KiB) gives up replay rather than failing the
 * request, as Envoy's does.
 */
import type { Reader } from '../../../common/reader';
import type { RequestHead } from '../codec';
import { FilterStatus, type HttpFilter, type HttpFilterCallbacks, type HttpFilterFactory } from '../filter';

export const BUFFER_TYPE_NAME = 'envoy.extensions.filters.http.buffer.v3.Buffer';
export const BUFFER_PER_ROUTE_TYPE_NAME = 'envoy.extensions.filters.http.buffer.v3.BufferPerRoute';

/** Decoded Buffer (listener-level) config. */
export interface BufferConfig {
  readonly kind: 'buffer';
  /** max_request_bytes (required, > 0): the largest request body held; larger → 413. */
  readonly maxRequestBytes: number;
}

/** Decoded BufferPerRoute: the filter off for the route, or another limit. */
export type BufferPerRouteConfig = { readonly kind: 'buffer_per_route'; readonly disabled: true } | { readonly kind: 'buffer_per_route'; readonly disabled: false; readonly maxRequestBytes: number };

const UINT32_MAX = 0xffffffff;

function decodeBuffer(r: Reader): BufferConfig {
  if (!r.has('max_request_bytes')) r.error('max_request_bytes', 'is required');
  const maxRequestBytes = r.int('max_request_bytes', 1, 1, UINT32_MAX);
  r.done();
  return { kind: 'buffer', maxRequestBytes };
}

function decodeBufferPerRoute(r: Reader): BufferPerRouteConfig | undefined {
  const disabled = r.bool('disabled', false);
  const inner = r.obj('buffer');
  let out: BufferPerRouteConfig | undefined;
  if (disabled && inner) r.error('buffer', 'only one of disabled and buffer may be set');
  if (disabled) out = { kind: 'buffer_per_route', disabled: true };
  else if (inner) out = { kind: 'buffer_per_route', disabled: false, maxRequestBytes: decodeBuffer(inner).maxRequestBytes };
  else r.error('buffer', 'one of disabled and buffer is required');
  r.done();
  return out;
}

class BufferFilter implements HttpFilter {
  constructor(
    private readonly config: BufferConfig,
    private readonly callbacks: HttpFilterCallbacks,
  ) {}

  decodeHeaders(head: RequestHead, endStream: boolean): FilterStatus {
    if (endStream) return FilterStatus.Continue;
    const per = this.callbacks.perRouteConfig() as BufferPerRouteConfig | undefined;
    if (per?.disabled === true) return FilterStatus.Continue;
    const limit = per?.disabled === false ? per.maxRequestBytes : this.config.maxRequestBytes;
    if (head.contentLength > limit) {
      this.callbacks.sendLocalReply(413, 'Payload Too Large', undefined, undefined, 'request_payload_too_large');
      return FilterStatus.StopIteration;
    }
    this.callbacks.setDecoderBufferLimit(limit);
    return FilterStatus.StopIteration;
  }
}

export const bufferFilterFactory: HttpFilterFactory<BufferConfig> = {
  typeName: BUFFER_TYPE_NAME,
  decode: decodeBuffer,
  decodePerRoute(r: Reader): unknown {
    r.issues.error(r.path, `use ${BUFFER_PER_ROUTE_TYPE_NAME} for per-route buffer configuration`);
    return undefined;
  },
  create(config: BufferConfig, callbacks: HttpFilterCallbacks): HttpFilter {
    return new BufferFilter(config, callbacks);
  },
};

/** Registered under the BufferPerRoute type so typed_per_filter_config entries decode; not a filter. */
export const bufferPerRouteFactory: HttpFilterFactory<undefined> = {
  typeName: BUFFER_PER_ROUTE_TYPE_NAME,
  decode(r: Reader): undefined {
    r.issues.error(r.sub('@type'), `${BUFFER_PER_ROUTE_TYPE_NAME} is only valid in typed_per_filter_config; use ${BUFFER_TYPE_NAME}`);
    return undefined;
  },
  decodePerRoute: decodeBufferPerRoute,
  create(config: undefined, callbacks: HttpFilterCallbacks): HttpFilter {
    void config;
    void callbacks;
    // The registry never builds per-route-only types into a chain (decode reports it first).
    return {};
  },
};
