/**
 * The gRPC HTTP/1.1 bridge, `envoy.extensions.filters.http.grpc_http1_bridge.v3.Config` (Envoy's
 * envoy.filters.http.grpc_http1_bridge): an HTTP/1.x client that posts `application/grpc` (or
 * `application/grpc+…`) gets an ordinary HTTP response. The gRPC response's headers wait at this
 * filter (StopHeaders) while its body is collected; when the trailers come, grpc-status and
 * grpc-message are copied into the response headers, a grpc-status other than 0 (or one that is
 * not a number) turns the HTTP status into 503, and content-length is set to the body, so the
 * client reads a complete, length-framed response (the HTTP/1 codec drops the trailers then).
 *
 * As Envoy: HTTP/2 requests pass untouched; with `upgrade_protobuf_to_grpc` a request of
 * content-type exactly `application/x-protobuf` becomes `application/grpc` (route cache cleared),
 * its body framed as one gRPC message, and the first gRPC frame header of the response is removed;
 * with `ignore_query_parameters` the query is cut from a bridged request's path (gRPC servers
 * refuse unknown paths). Deliberate difference: a trailers-only response (grpc-status in the
 * headers, no body) gets the same 503 mapping instead of keeping 200 — an HTTP/1.1 client
 * should not read a failed call as a success.
 */
import type { Reader } from '../../../common/reader';
import type { HeaderList, RequestHead, ResponseHead } from '../codec';
import { FilterStatus, type HttpFilter, type HttpFilterCallbacks, type HttpFilterFactory } from '../filter';
import { getHeader, removeHeader, setHeader } from '../headers';

export const GRPC_HTTP1_BRIDGE_TYPE_NAME = 'envoy.extensions.filters.http.grpc_http1_bridge.v3.Config';

export interface GrpcHttp1BridgeConfig {
  readonly upgradeProtobufToGrpc: boolean;
  readonly ignoreQueryParameters: boolean;
}

const EMPTY = Buffer.alloc(0);
const FRAME_HEADER = 5;

function isGrpcContentType(ct: string | undefined): boolean {
  if (ct === undefined || !ct.startsWith('application/grpc')) return false;
  return ct.length === 16 || ct.charCodeAt(16) === 0x2b /* + */;
}

/** grpc-status/grpc-message from `from` into the held response headers; 503 unless the status is 0. */
function applyGrpcStatus(head: ResponseHead, from: HeaderList): void {
  const status = getHeader(from, 'grpc-status');
  if (status !== undefined) {
    if (status !== '0') head.status = 503;
    if (from !== head.headers) setHeader(head.headers, 'grpc-status', status);
  }
  const message = getHeader(from, 'grpc-message');
  if (message !== undefined && from !== head.headers) setHeader(head.headers, 'grpc-message', message);
}

class GrpcHttp1BridgeFilter implements HttpFilter {
  private bridging = false;
  /** The request was upgraded from application/x-protobuf: frame it, de-frame the response. */
  private framing = false;
  private requestBody: Buffer[] | undefined;
  private head: ResponseHead | undefined;
  private body: Buffer[] | undefined;
  private bodyBytes = 0;
  /** Response frame-header bytes still to drop (upgraded requests). */
  private skip = 0;

  constructor(
    private readonly cfg: GrpcHttp1BridgeConfig,
    private readonly cb: HttpFilterCallbacks,
  ) {}

  decodeHeaders(head: RequestHead): FilterStatus {
    const h = head.headers;
    if (this.cfg.upgradeProtobufToGrpc && getHeader(h, 'content-type') === 'application/x-protobuf' && head.path !== '') {
      this.framing = true;
      setHeader(h, 'content-type', 'application/grpc');
      removeHeader(h, 'content-length');
      head.contentLength = -1;
      this.cb.clearRouteCache();
    }
    if (head.protocol !== 'HTTP/2' && isGrpcContentType(getHeader(h, 'content-type'))) this.bridging = true;
    if (this.bridging && this.cfg.ignoreQueryParameters) {
      const q = head.path.indexOf('?');
      if (q >= 0) {
        head.path = head.path.slice(0, q);
        this.cb.clearRouteCache();
      }
    }
    if (!this.bridging) this.framing = false;
    return FilterStatus.Continue;
  }

  decodeData(chunk: Buffer, endStream: boolean): FilterStatus {
    if (!this.framing) return FilterStatus.Continue;
    (this.requestBody ??= []).push(chunk);
    if (!endStream) return FilterStatus.StopIterationNoBuffer;
    const message = Buffer.concat(this.requestBody);
    this.requestBody = undefined;
    const frame = Buffer.allocUnsafe(FRAME_HEADER + message.length);
    frame[0] = 0;
    frame.writeUInt32BE(message.length, 1);
    message.copy(frame, FRAME_HEADER);
    this.cb.injectDecodedData(this, frame, true);
    return FilterStatus.StopIterationNoBuffer;
  }

  encodeHeaders(head: ResponseHead, endStream: boolean): FilterStatus {
    if (!this.bridging) return FilterStatus.Continue;
    if (endStream) {
      applyGrpcStatus(head, head.headers);
      return FilterStatus.Continue;
    }
    this.head = head;
    this.body = [];
    this.skip = this.framing ? FRAME_HEADER : 0;
    return FilterStatus.StopHeaders;
  }

  encodeData(chunk: Buffer, endStream: boolean): FilterStatus {
    const body = this.body;
    if (body === undefined) return FilterStatus.Continue;
    if (this.skip > 0) {
      const n = Math.min(this.skip, chunk.length);
      this.skip -= n;
      chunk = chunk.subarray(n);
    }
    if (chunk.length > 0) {
      body.push(chunk);
      this.bodyBytes += chunk.length;
    }
    // The body ended without trailers: it goes on as it is (headers unchanged, as Envoy).
    if (endStream) this.flush(true);
    return FilterStatus.StopIterationNoBuffer;
  }

  encodeTrailers(trailers: HeaderList): FilterStatus {
    const head = this.head;
    if (head === undefined) return FilterStatus.Continue;
    applyGrpcStatus(head, trailers);
    removeHeader(head.headers, 'transfer-encoding');
    setHeader(head.headers, 'content-length', String(this.bodyBytes));
    head.contentLength = this.bodyBytes;
    this.flush(false);
    // The trailers go on; an HTTP/1 codec with a content-length ends the response without them.
    return FilterStatus.Continue;
  }

  /** The headers (released by the injection) and the collected body go on. */
  private flush(endStream: boolean): void {
    const body = this.body!;
    this.body = undefined;
    this.head = undefined;
    const all = body.length === 0 ? EMPTY : body.length === 1 ? body[0]! : Buffer.concat(body);
    if (all.length > 0 || endStream) this.cb.injectEncodedData(this, all, endStream);
    else this.cb.continueEncoding();
  }
}

export function decodeGrpcHttp1Bridge(r: Reader): GrpcHttp1BridgeConfig {
  const cfg = {
    upgradeProtobufToGrpc: r.bool('upgrade_protobuf_to_grpc', false),
    ignoreQueryParameters: r.bool('ignore_query_parameters', false),
  };
  r.done();
  return Object.freeze(cfg);
}

export const grpcHttp1BridgeFilterFactory: HttpFilterFactory<GrpcHttp1BridgeConfig> = {
  typeName: GRPC_HTTP1_BRIDGE_TYPE_NAME,
  decode: decodeGrpcHttp1Bridge,
  create(config: GrpcHttp1BridgeConfig, callbacks: HttpFilterCallbacks): HttpFilter {
    return new GrpcHttp1BridgeFilter(config, callbacks);
  },
};
