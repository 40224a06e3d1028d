/**
 * The gRPC-Web HTTP filter, `envoy.extensions.filters.http.grpc_web.v3.GrpcWeb` (Envoy's
 * envoy.filters.http.grpc_web): a browser's gRPC-Web request (HTTP/1.1 or HTTP/2,
 * `application/grpc-web[+proto]` or the base64 `application/grpc-web-text[+proto]`) goes upstream
 * as gRPC, and the gRPC response comes back in gRPC-Web form.
 *
 * The protocol (grpc/grpc PROTOCOL-WEB.md) and Envoy's handling, kept: the request's
 * content-type becomes `application/grpc` (its `+suffix` kept), Content-Length goes (text mode
 * changes the length), `te: trailers` is set and `grpc-accept-encoding` defaults to
 * `identity,deflate,gzip`; a text-mode body is base64-decoded as it streams (a 4-character
 * quantum may span chunks; padded segments may be concatenated), and invalid base64 is answered
 * with Envoy's 400 local reply — in gRPC form, as for any gRPC request (grpc-status 13). The response's content-type becomes `application/grpc-web+proto`, or
 * `application/grpc-web-text+proto` when the client accepts `application/grpc-web-text` (then the
 * body is base64-encoded as it streams, 3-byte groups carried between chunks); HTTP trailers
 * become the final length-prefixed frame (flag 0x80, `name:value\r\n` lines) at the end of the
 * body, so HTTP/1.1 clients without trailer support get grpc-status and grpc-message. A
 * trailers-only response keeps grpc-status in its headers, as the spec allows. Requests of other
 * content types pass untouched.
 *
 * CORS (preflights, `access-control-expose-headers: grpc-status,grpc-message`) is the cors
 * filter's job, placed before this one as in Envoy's grpc-web examples.
 */
import type { Reader } from '../../../common/reader';
import type { HeaderList, RequestHead, ResponseHead } from '../codec';
import { FilterStatus, type HttpFilter, type HttpFilterCallbacks, type HttpFilterFactory } from '../filter';
import { getHeader, removeHeader, setHeader } from '../headers';

export const GRPC_WEB_TYPE_NAME = 'envoy.extensions.filters.http.grpc_web.v3.GrpcWeb';

const WEB = 'application/grpc-web';
const WEB_TEXT = 'application/grpc-web-text';
const EMPTY = Buffer.alloc(0);
const B64_SEGMENT = /^[A-Za-z0-9+/]*={0,2}$/;

/** Base64 of a stream arriving in arbitrary pieces; undefined on invalid input. */
class Base64Decoder {
  private rest = '';
  push(chunk: Buffer, end: boolean): Buffer | undefined {
    let s = this.rest + chunk.toString('latin1').replace(/[\r\n\t ]/g, '');
    const usable = end ? s.length : s.length - (s.length % 4);
    this.rest = s.slice(usable);
    s = s.slice(0, usable);
    if (end && this.rest.length > 0) return undefined;
    if (s.length % 4 !== 0) return undefined;
    // Padded segments may be concatenated ("AAE=AAE="): decode each run up to its padding.
    const out: Buffer[] = [];
    let from = 0;
    for (let i = 0; i < s.length; i += 4) {
      if (s.charCodeAt(i + 3) === 0x3d /* = */ || i + 4 === s.length) {
        const seg = s.slice(from, i + 4);
        if (!B64_SEGMENT.test(seg)) return undefined;
        out.push(Buffer.from(seg, 'base64'));
        from = i + 4;
      }
    }
    return out.length === 1 ? out[0] : Buffer.concat(out);
  }
}

/** Base64 of a stream, encoded in 3-byte groups; the remainder waits for the next piece or the end. */
class Base64Encoder {
  private rest: Buffer = EMPTY;
  push(chunk: Buffer, end: boolean): Buffer {
    const all = this.rest.length === 0 ? chunk : Buffer.concat([this.rest, chunk]);
    const usable = end ? all.length : all.length - (all.length % 3);
    this.rest = all.subarray(usable);
    return usable === 0 ? EMPTY : Buffer.from(all.subarray(0, usable).toString('base64'), 'latin1');
  }
}

/** The trailers as gRPC-Web's final frame: 0x80, a 4-byte length, `name:value\r\n` lines. */
export function trailerFrame(trailers: HeaderList): Buffer {
  let text = '';
  for (let i = 0; i < trailers.length; i += 2) text += `${trailers[i]!.toLowerCase()}:${trailers[i + 1]!}\r\n`;
  const body = Buffer.from(text, 'latin1');
  const frame = Buffer.allocUnsafe(5 + body.length);
  frame[0] = 0x80;
  frame.writeUInt32BE(body.length, 1);
  body.copy(frame, 5);
  return frame;
}

class GrpcWebFilter implements HttpFilter {
  private active = false;
  private textRequest: Base64Decoder | undefined;
  private textResponse: Base64Encoder | undefined;
  private wantsText = false;

  constructor(private readonly cb: HttpFilterCallbacks) {}

  decodeHeaders(head: RequestHead): FilterStatus {
    const h = head.headers;
    const ct = getHeader(h, 'content-type');
    if (ct === undefined) return FilterStatus.Continue;
    const lower = ct.toLowerCase();
    let suffix: string;
    if (lower.startsWith(WEB_TEXT)) {
      suffix = lower.slice(WEB_TEXT.length);
      this.textRequest = new Base64Decoder();
    } else if (lower.startsWith(WEB)) suffix = lower.slice(WEB.length);
    else return FilterStatus.Continue;
    if (suffix !== '' && !suffix.startsWith('+') && !suffix.startsWith(';')) {
      this.textRequest = undefined;
      return FilterStatus.Continue;
    }
    this.active = true;
    const accept = getHeader(h, 'accept');
    this.wantsText = accept !== undefined && accept.toLowerCase().includes(WEB_TEXT);
    setHeader(h, 'content-type', `application/grpc${suffix.startsWith('+') ? suffix.split(';')[0] : ''}`);
    removeHeader(h, 'content-length');
    head.contentLength = -1;
    setHeader(h, 'te', 'trailers');
    if (getHeader(h, 'grpc-accept-encoding') === undefined) h.push('grpc-accept-encoding', 'identity,deflate,gzip');
    return FilterStatus.Continue;
  }

  decodeData(chunk: Buffer, endStream: boolean): FilterStatus {
    const d = this.textRequest;
    if (d === undefined) return FilterStatus.Continue;
    const out = d.push(chunk, endStream);
    if (out === undefined) {
      this.cb.sendLocalReply(400, 'Bad gRPC-web request, invalid base64 data.', undefined, undefined, 'grpc_base_64_decode_failed');
      return FilterStatus.StopIteration;
    }
    if (out.length > 0 || endStream) this.cb.injectDecodedData(this, out, endStream);
    return FilterStatus.StopIterationNoBuffer;
  }

  encodeHeaders(head: ResponseHead, endStream: boolean): FilterStatus {
    if (!this.active) return FilterStatus.Continue;
    const h = head.headers;
    setHeader(h, 'content-type', this.wantsText ? `${WEB_TEXT}+proto` : `${WEB}+proto`);
    removeHeader(h, 'content-length');
    head.contentLength = -1;
    if (this.wantsText && !endStream) this.textResponse = new Base64Encoder();
    return FilterStatus.Continue;
  }

  encodeData(chunk: Buffer, endStream: boolean): FilterStatus {
    const e = this.textResponse;
    if (e === undefined) return FilterStatus.Continue;
    const out = e.push(chunk, endStream);
    if (out.length > 0 || endStream) this.cb.injectEncodedData(this, out, endStream);
    return FilterStatus.StopIterationNoBuffer;
  }

  encodeTrailers(trailers: HeaderList): FilterStatus {
    if (!this.active) return FilterStatus.Continue;
    // The trailers end the body as its last frame; nothing is sent as HTTP trailers.
    const frame = trailerFrame(trailers);
    const e = this.textResponse;
    this.cb.injectEncodedData(this, e === undefined ? frame : e.push(frame, true), true);
    return FilterStatus.StopIteration;
  }
}

export const grpcWebFilterFactory: HttpFilterFactory<undefined> = {
  typeName: GRPC_WEB_TYPE_NAME,
  decode(r: Reader): undefined {
    r.done();
    return undefined;
  },
  create(_config: undefined, callbacks: HttpFilterCallbacks): HttpFilter {
    return new GrpcWebFilter(callbacks);
  },
};
