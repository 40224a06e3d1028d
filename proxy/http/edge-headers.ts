/**
 * The headers the connection manager edits at the edge of the mesh, before any filter sees the
 * request: x-forwarded-for / -proto and x-envoy-internal from use_remote_address and
 * xff_num_trusted_hops, x-request-id, sanitising of x-envoy-* from untrusted clients, the
 * `server` header, x-forwarded-client-cert, and path normalisation.
 */
import { randomUUID } from 'node:crypto';
import { isIP } from 'node:net';
import type { HcmConfig } from '../config/types';
import type { DownstreamConnectionInfo, HeaderList, RequestHead } from './codec';
import {
  getHeader,
  getHeaderJoined,
  removeEnvoyHeaders,
  removeHeader,
  hasHeader,
  setHeader,
} from './headers';

// ───────────────────────────── edge headers (HCM) ─────────────────────────────

/**
 * RFC 1918 / loopback / link-local / ULA: Envoy's definition of an "internal" address, which
 * decides whether a request is trusted (x-envoy-internal, x-envoy-* sanitising).
 */
export function isInternalAddress(ip: string): boolean {
  let a = ip;
  if (a.startsWith('::ffff:')) a = a.slice(7);
  const fam = isIP(a);
  if (fam === 4) {
    const dot = a.indexOf('.');
    const o1 = Number(a.slice(0, dot));
    const o2 = Number(a.slice(dot + 1, a.indexOf('.', dot + 1)));
    return o1 === 10 || o1 === 127 || (o1 === 172 && o2 >= 16 && o2 <= 31) || (o1 === 192 && o2 === 168);
  }
  if (fam === 6) {
    const l = a.toLowerCase();
    return l === '::1' || l.startsWith('fc') || l.startsWith('fd');
  }
  return false;
}

/**
 * Envoy-internal request headers only trusted from internal clients. Envoy removes this list from
 * external requests (see "HTTP header sanitizing" in its docs).
 */
export const ENVOY_SANITIZED_HEADERS: readonly string[] = [
  'x-envoy-decorator-operation',
  'x-envoy-downstream-service-cluster',
  'x-envoy-downstream-service-node',
  'x-envoy-expected-rq-timeout-ms',
  'x-envoy-external-address',
  'x-envoy-force-trace',
  'x-envoy-hedge-on-per-try-timeout',
  'x-envoy-internal',
  'x-envoy-ip-tags',
  'x-envoy-max-retries',
  'x-envoy-original-path',
  'x-envoy-retriable-header-names',
  'x-envoy-retriable-status-codes',
  'x-envoy-retry-grpc-on',
  'x-envoy-retry-on',
  'x-envoy-upstream-alt-stat-name',
  'x-envoy-upstream-rq-per-try-timeout-ms',
  'x-envoy-upstream-rq-timeout-ms',
  'x-envoy-upstream-stream-duration-ms',
  'x-envoy-attempt-count',
];

/** The edge decision for one request (what Envoy's ConnectionManagerUtility::mutateRequestHeaders returns). */
export interface EdgeResult {
  /** Whether the request comes from an internal (trusted) client. */
  internal: boolean;
  /** The trusted client address ("" when unknown). */
  trustedAddress: string;
}

/**
 * Apply Envoy's request header mutations at the connection manager:
 *  - `use_remote_address`: the client address is the connection's peer; it is appended to
 *    x-forwarded-for (unless `skip_xff_append`), x-forwarded-proto is overwritten, and
 *    x-envoy-external-address / x-envoy-internal are set.
 *  - otherwise the trusted client address is the `xff_num_trusted_hops + 1`-th address from the
 *    right of x-forwarded-for, and x-forwarded-proto is only filled when absent.
 *  - external requests lose the x-envoy-* control headers, and (unless
 *    `preserve_external_request_id`) any client-chosen x-request-id.
 *  - x-request-id is generated when absent and `generate_request_id`.
 * `out` is reused by the caller to avoid an allocation per request.
 */
export function mutateRequestHeaders(
  head: RequestHead,
  conn: DownstreamConnectionInfo,
  cfg: HcmConfig,
  out: EdgeResult,
): void {
  const h = head.headers;
  const scheme = conn.tls ? 'https' : 'http';
  let trusted = '';
  let singleHop = true;
  if (cfg.useRemoteAddress) {
    let remote = conn.remoteAddress;
    if (remote.startsWith('::ffff:')) remote = remote.slice(7);
    const xff = getHeaderJoined(h, 'x-forwarded-for');
    singleHop = xff === undefined;
    if (cfg.xffNumTrustedHops > 0 && xff) {
      trusted = xffAddressFromRight(xff, cfg.xffNumTrustedHops - 1) ?? remote;
    } else {
      trusted = remote;
    }
    if (!cfg.skipXffAppend) setHeader(h, 'x-forwarded-for', xff ? `${xff},${remote}` : remote);
    setHeader(h, 'x-forwarded-proto', scheme);
    head.scheme = scheme;
  } else {
    const xff = getHeaderJoined(h, 'x-forwarded-for');
    if (xff) {
      trusted = xffAddressFromRight(xff, cfg.xffNumTrustedHops) ?? '';
      singleHop = !xff.includes(',');
    }
    const xfp = getHeader(h, 'x-forwarded-proto');
    if (xfp === undefined) setHeader(h, 'x-forwarded-proto', scheme);
    else head.scheme = xfp;
  }
  // Envoy: with use_remote_address a request is internal only when it came from an internal
  // address and carried no other hops; without it, only when XFF is a single internal address.
  const internal = singleHop && trusted !== '' && isInternalAddress(trusted);
  out.internal = internal;
  out.trustedAddress = trusted;

  if (!internal) {
    removeEnvoyHeaders(h, ENVOY_SANITIZED_HEADERS);
    if (cfg.useRemoteAddress && trusted !== '') setHeader(h, 'x-envoy-external-address', trusted);
  } else if (cfg.useRemoteAddress) {
    setHeader(h, 'x-envoy-internal', 'true');
  }

  if (cfg.generateRequestId) {
    const edge = cfg.useRemoteAddress && !internal;
    if (!hasHeader(h, 'x-request-id') || (edge && !cfg.preserveExternalRequestId)) {
      setHeader(h, 'x-request-id', randomUUID());
    }
  }
}

/** The n-th (0-based) comma-separated address counting from the right, trimmed. */
export function xffAddressFromRight(xff: string, n: number): string | undefined {
  let end = xff.length;
  for (let k = 0; ; k++) {
    const comma = xff.lastIndexOf(',', end - 1);
    if (k === n) {
      const v = xff.slice(comma + 1, end).trim();
      return v === '' ? undefined : v;
    }
    if (comma < 0) return undefined;
    end = comma;
  }
}

/** Apply `server_header_transformation` to response headers. */
export function applyServerHeader(h: HeaderList, cfg: HcmConfig): void {
  switch (cfg.serverHeaderTransformation) {
    case 'OVERWRITE':
      setHeader(h, 'server', cfg.serverName);
      break;
    case 'APPEND_IF_ABSENT':
      if (!hasHeader(h, 'server')) h.push('server', cfg.serverName);
      break;
    case 'PASS_THROUGH':
      break;
  }
}

// ───────────────────────────── x-forwarded-client-cert ─────────────────────────────

/**
 * Envoy's forward_client_cert_details / set_current_client_cert_details for the
 * x-forwarded-client-cert header. FORWARD_ONLY, APPEND_FORWARD and SANITIZE_SET act only on mTLS
 * connections (a plaintext client's XFCC is removed); ALWAYS_FORWARD_ONLY forwards whatever came.
 * The appended element follows Envoy's key order: By, Hash, Cert, Subject, URI (every URI SAN),
 * DNS (every DNS SAN).
 */
export function applyXfcc(h: HeaderList, conn: DownstreamConnectionInfo, cfg: HcmConfig): void {
  const mode = cfg.forwardClientCertDetails;
  if (mode === 'ALWAYS_FORWARD_ONLY') return;
  const tls = conn.tls;
  const mtls = tls !== undefined && (tls.peerCertificateHash !== undefined || tls.peerPrincipal !== undefined);
  if (mode === 'SANITIZE' || !mtls) {
    removeHeader(h, 'x-forwarded-client-cert');
    return;
  }
  if (mode === 'FORWARD_ONLY') return;
  const d = cfg.setCurrentClientCertDetails;
  let el = '';
  if (tls.localPrincipal) el = `By=${tls.localPrincipal}`;
  if (tls.peerCertificateHash) el += `${el ? ';' : ''}Hash=${tls.peerCertificateHash}`;
  if (d.cert && tls.peerCertificatePem) el += `${el ? ';' : ''}Cert="${encodeURIComponent(tls.peerCertificatePem)}"`;
  if (d.subject && tls.peerSubject !== undefined)
    el += `${el ? ';' : ''}Subject="${tls.peerSubject.replace(/"/g, '\\"')}"`;
  if (d.uri) {
    const uris = tls.peerUriSans ?? (tls.peerPrincipal ? [tls.peerPrincipal] : []);
    for (const u of uris) el += `${el ? ';' : ''}URI=${u}`;
  }
  if (d.dns) for (const n of tls.peerDnsSans ?? []) el += `${el ? ';' : ''}DNS=${n}`;
  if (mode === 'SANITIZE_SET') {
    if (el === '') removeHeader(h, 'x-forwarded-client-cert');
    else setHeader(h, 'x-forwarded-client-cert', el);
    return;
  }
  // APPEND_FORWARD
  if (el === '') return;
  const prev = getHeaderJoined(h, 'x-forwarded-client-cert');
  setHeader(h, 'x-forwarded-client-cert', prev ? `${prev},${el}` : el);
}

// ───────────────────────────── path normalisation ─────────────────────────────

/**
 * normalize_path (RFC 3986 §5.2.4 dot-segment removal, backslashes kept as data) and
 * merge_slashes on the path part of `path`; the query is untouched. Returns undefined for a path
 * that does not start with "/" (Envoy answers such requests with 400). No allocation when the
 * path is already normal.
 */
export function normalizeRequestPath(path: string, normalize: boolean, mergeSlashes: boolean): string | undefined {
  if (path.charCodeAt(0) !== 47 /* '/' */) return path === '*' ? path : undefined;
  let end = path.indexOf('?');
  if (end < 0) end = path.length;
  let p = path.slice(0, end);
  const rest = path.slice(end);
  if (normalize && (p.includes('/.') || p.includes('%2e') || p.includes('%2E'))) {
    p = p.replace(/%2e/gi, '.');
    const out: string[] = [];
    const segs = p.split('/');
    for (let i = 1; i < segs.length; i++) {
      const s = segs[i]!;
      const last = i === segs.length - 1;
      if (s === '.') {
        if (last) out.push('');
      } else if (s === '..') {
        out.pop();
        if (last) out.push('');
      } else out.push(s);
    }
    p = `/${out.join('/')}`;
  }
  if (mergeSlashes && p.includes('//')) p = p.replace(/\/{2,}/g, '/');
  const result = p + rest;
  return result === path ? path : result;
}
