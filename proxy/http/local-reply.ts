/**
 * The one place that turns a locally decided outcome into a response: Envoy's local reply format
 * (text/plain body, content-length), its gRPC form (trailers-only, grpc-status mapped from the
 * HTTP status, percent-encoded grpc-message), and the status, body, flag and details of every
 * upstream failure the router answers itself. The filter manager sends what this builds; nothing
 * else builds a local response.
 */
import type { ResponseFlag } from '../../common/errors';
import type { HeaderList, ResetReason, ResponseHead } from './codec';

/** A response built here: the head and the body to send (undefined = headers only). */
export interface LocalResponse {
  readonly head: ResponseHead;
  readonly body: Buffer | undefined;
  /** The gRPC status carried by a gRPC local reply, or -1. */
  readonly grpcStatus: number;
}

/**
 * Build a local reply. For a gRPC request (and `grpc` set) it is a trailers-only 200 with
 * grpc-status / grpc-message; otherwise `status` with a text/plain body. A HEAD request keeps the
 * content-length of the body it does not get. `headers` are appended (location, x-envoy-overloaded…).
 */
export function buildLocalReply(
  status: number,
  body: string | Buffer,
  headers: HeaderList | undefined,
  grpc: boolean,
  headRequest: boolean,
): LocalResponse {
  if (grpc) {
    const grpcStatus = httpToGrpcStatus(status);
    const h: HeaderList = ['content-type', 'application/grpc', 'grpc-status', String(grpcStatus)];
    const text = typeof body === 'string' ? body : body.toString('utf8');
    if (text !== '') h.push('grpc-message', grpcPercentEncode(text));
    if (headers) h.push(...headers);
    return { head: { status: 200, headers: h, contentLength: 0 }, body: undefined, grpcStatus };
  }
  const data = typeof body === 'string' ? (body === '' ? undefined : Buffer.from(body, 'utf8')) : body;
  const len = data?.length ?? 0;
  const h: HeaderList = [];
  if (len > 0) h.push('content-type', 'text/plain');
  h.push('content-length', String(len));
  if (headers) h.push(...headers);
  return {
    head: { status, headers: h, contentLength: len },
    body: len === 0 || headRequest ? undefined : data,
    grpcStatus: -1,
  };
}

/** Envoy's HTTP → gRPC status mapping for local replies to gRPC requests. */
export function httpToGrpcStatus(status: number): number {
  switch (status) {
    case 400:
      return 13; // INTERNAL
    case 401:
      return 16; // UNAUTHENTICATED
    case 403:
      return 7; // PERMISSION_DENIED
    case 404:
      return 12; // UNIMPLEMENTED
    case 429:
    case 502:
    case 503:
    case 504:
      return 14; // UNAVAILABLE
    default:
      return 2; // UNKNOWN
  }
}

/** gRPC's percent-encoding of grpc-message (printable ASCII except '%' stays as is). */
export function grpcPercentEncode(s: string): string {
  let simple = true;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c > 0x7e || c === 0x25) {
      simple = false;
      break;
    }
  }
  if (simple) return s;
  let out = '';
  for (const b of Buffer.from(s, 'utf8')) {
    out +=
      b < 0x20 || b > 0x7e || b === 0x25 ? `%${b.toString(16).toUpperCase().padStart(2, '0')}` : String.fromCharCode(b);
  }
  return out;
}

// ───────────────────────────── upstream failures ─────────────────────────────

/** Status, body, flag and details of a local reply the router sends for an upstream failure. */
export interface UpstreamFailureReply {
  readonly status: number;
  readonly body: string;
  readonly flag: ResponseFlag;
  readonly details: string;
  /** Extra response headers (x-envoy-overloaded), or undefined. */
  readonly headers: HeaderList | undefined;
}

const UPSTREAM_RESET_PREFIX = 'upstream connect error or disconnect/reset before headers. reset reason: ';
const OVERLOADED: HeaderList = ['x-envoy-overloaded', 'true'];

/** Envoy's "reset reason" wording in local reply bodies. */
export function resetReasonText(r: ResetReason): string {
  switch (r) {
    case 'connect_failure':
      return 'connection failure';
    case 'connection_termination':
      return 'connection termination';
    case 'local_reset':
      return 'local reset';
    case 'remote_reset':
      return 'remote reset';
    case 'refused_stream':
      return 'remote refused stream reset';
    case 'overflow':
      return 'overflow';
    case 'protocol_error':
      return 'protocol error';
    case 'timeout':
      return 'connection timeout';
    case 'tls_failure':
      return 'connection failure';
  }
}

/**
 * The reply to an upstream reset or connect failure before response headers: 503 (502 for a
 * protocol error) with Envoy's body, UF / UO / UPE / UR, and x-envoy-overloaded on overflow
 * unless the router suppresses Envoy headers. A transport failure reason (a SAN mismatch, a
 * refused handshake) is appended to UF bodies, as Envoy does.
 */
export function upstreamResetReply(
  reason: ResetReason,
  transportFailureReason: string,
  suppressEnvoyHeaders: boolean,
): UpstreamFailureReply {
  let flag: ResponseFlag;
  let status = 503;
  switch (reason) {
    case 'connect_failure':
    case 'timeout':
    case 'tls_failure':
      // Envoy reports TLS and identity failures as UF too (the detail is in the transport failure reason).
      flag = 'UF';
      break;
    case 'overflow':
      flag = 'UO';
      break;
    case 'protocol_error':
      flag = 'UPE';
      status = 502;
      break;
    default:
      flag = 'UR';
  }
  const transport =
    flag === 'UF' && transportFailureReason !== '' ? `, transport failure reason: ${transportFailureReason}` : '';
  return {
    status,
    body: UPSTREAM_RESET_PREFIX + resetReasonText(reason) + transport,
    flag,
    details: `upstream_reset_before_response_started{${reason}}`,
    headers: flag === 'UO' && !suppressEnvoyHeaders ? OVERLOADED : undefined,
  };
}

/** No host to send to (none healthy, or ORIGINAL_DST found no target). */
export const NO_HEALTHY_UPSTREAM: UpstreamFailureReply = Object.freeze({
  status: 503,
  body: 'no healthy upstream',
  flag: 'UH',
  details: 'no_healthy_upstream',
  headers: undefined,
});

/** The route timeout or a per-try timeout elapsed before the response started. */
export function upstreamTimeoutReply(perTry: boolean): UpstreamFailureReply {
  return perTry ? PER_TRY_TIMEOUT : ROUTE_TIMEOUT;
}
const ROUTE_TIMEOUT: UpstreamFailureReply = Object.freeze({
  status: 504,
  body: 'upstream request timeout',
  flag: 'UT',
  details: 'upstream_response_timeout',
  headers: undefined,
});
const PER_TRY_TIMEOUT: UpstreamFailureReply = Object.freeze({ ...ROUTE_TIMEOUT, details: 'upstream_per_try_timeout' });
