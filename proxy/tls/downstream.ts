/**
 * Downstream TLS termination for filter chains with a DownstreamTlsContext: present the current
 * workload certificate, verify client certificates against the trust bundle, enforce SAN matchers,
 * and report the peer's SPIFFE identity to authorization, logs, metrics and XFCC.
 *
 * Leans strict: a presented client certificate that does not verify fails the handshake even when
 * client certificates are optional; a handshake that does not finish within the timeout is closed.
 */
import type { Socket } from 'node:net';
import tls from 'node:tls';
import { splitSan, uriSansOf } from '../../certs/identity';
import type { DownstreamTlsConfig } from '../config/types';
import type { DownstreamConnectionInfo } from '../http/codec';
import { logger } from '../../common/logger';
import type { SslStats } from '../upstream/ssl-stats';
import { sanMatches, type TlsContextManager } from './context-manager';
import { RateLimitedLog } from './failure-log';

const log = logger('tls');
/** One info line per failed downstream handshake (rate limited). */
const failures = new RateLimitedLog(log);

/** Which Envoy counter a failed handshake adds to, besides connection_error. */
type FailureClass = 'verify_error' | 'verify_san' | 'no_cert' | 'other';

export class DownstreamTlsStats {
  handshakes = 0;
  handshakeFailures = 0;
  noCertificate = 0;
  failVerifySan = 0;
  handshakeTimeouts = 0;
}

export const downstreamTlsStats = new DownstreamTlsStats();

/** ALPN selection: prefer h2, then http/1.1, from what the server allows; otherwise none. */
function alpnSelector(allowed: readonly string[]): (arg: { servername: string; protocols: string[] }) => string | undefined {
  return ({ protocols }) => {
    for (const p of allowed) if (protocols.includes(p)) return p;
    // Nothing in common: node fails the handshake (no_application_protocol). Envoy would go on
    // without ALPN; terminateDownstreamTls avoids this case when the ClientHello was inspected.
    return undefined;
  };
}

/**
 * Terminate TLS on an accepted connection. `ssl` is the listener's `ssl.*` counters. A client
 * that sends no certificate where one is required gets the handshake alert from OpenSSL
 * (SSL_VERIFY_FAIL_IF_NO_PEER_CERT). A certificate that does not verify cannot get one: Node's
 * verify callback accepts every chain during the handshake and reports the result only after it
 * (`verifyError`), so such a connection is closed right after the handshake, counted and logged.
 */
export function terminateDownstreamTls(
  mgr: TlsContextManager,
  cfg: DownstreamTlsConfig,
  socket: Socket,
  info: DownstreamConnectionInfo,
  cb: (tlsSocket: Socket | undefined, tlsInfo: DownstreamConnectionInfo['tls']) => void,
  ssl?: SslStats,
  /** The client's ALPN offer from the ClientHello (tls_inspector), when known. */
  offeredAlpn?: readonly string[],
): void {
  let ctx: ReturnType<TlsContextManager['current']>;
  try {
    ctx = mgr.current(cfg.common, true);
  } catch (err) {
    downstreamTlsStats.handshakeFailures++;
    if (ssl) ssl.connectionError++;
    log.warn({ conn: info.id, err: (err as Error).message }, 'cannot serve TLS: no usable certificate');
    cb(undefined, undefined);
    return;
  }
  // Envoy: without alpn_protocols, ALPN is not negotiated (the client's offer is ignored).
  const allowed = cfg.common.alpnProtocols;
  const requestCert = cfg.requireClientCertificate || ctx.canVerifyPeer;
  const t = new tls.TLSSocket(socket, {
    isServer: true,
    secureContext: ctx.secureContext,
    requestCert,
    rejectUnauthorized: cfg.requireClientCertificate,
    // Node answers an ALPN callback that selects nothing with a fatal no_application_protocol
    // alert; Envoy (BoringSSL) goes on without ALPN. When the inspected ClientHello shares no
    // protocol with ours (Istio's istio-h2 / istio-http/1.1 offers), negotiate none, as Envoy.
    ...(allowed.length > 0 && !(offeredAlpn !== undefined && !offeredAlpn.some((p) => allowed.includes(p))) ? { ALPNCallback: alpnSelector(allowed) } : {}),
  } as tls.TLSSocketOptions);
  let settled = false;
  const timer = setTimeout(() => {
    if (settled) return;
    settled = true;
    downstreamTlsStats.handshakeTimeouts++;
    if (ssl) ssl.connectionError++;
    failures.info({ conn: info.id, remote: `${info.remoteAddress}:${info.remotePort}`, reason: 'handshake timeout' }, 'downstream TLS handshake failed');
    t.destroy();
    cb(undefined, undefined);
  }, cfg.handshakeTimeoutMs);
  const fail = (why: string, kind: FailureClass): void => {
    if (settled) return;
    settled = true;
    clearTimeout(timer);
    downstreamTlsStats.handshakeFailures++;
    if (ssl) {
      ssl.connectionError++;
      if (kind === 'verify_error') ssl.failVerifyError++;
      else if (kind === 'verify_san') ssl.failVerifySan++;
      else if (kind === 'no_cert') ssl.failVerifyNoCert++;
    }
    failures.info({ conn: info.id, remote: `${info.remoteAddress}:${info.remotePort}`, reason: why }, 'downstream TLS handshake failed');
    t.destroy();
    cb(undefined, undefined);
  };
  t.once('error', (e: Error & { code?: string }) => {
    if (e.code === 'ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE') {
      downstreamTlsStats.noCertificate++;
      fail('client presented no certificate', 'no_cert');
    } else {
      fail(e.code ? `${e.code}: ${e.message}` : e.message, 'other');
    }
  });
  t.once('secure', () => {
    if (settled) return;
    const cert = t.getPeerCertificate(false);
    const presented = cert && Object.keys(cert).length > 0;
    if (!presented && cfg.requireClientCertificate) {
      downstreamTlsStats.noCertificate++;
      fail('client presented no certificate', 'no_cert');
      return;
    }
    if (presented && ctx.canVerifyPeer) {
      const verifyError = chainVerifyError(t);
      if (verifyError) {
        fail(`client certificate rejected: ${verifyError}`, 'verify_error');
        return;
      }
    }
    if (presented && !sanMatches(ctx.sanMatchers, cert)) {
      downstreamTlsStats.failVerifySan++;
      fail(`client certificate SAN ${cert.subjectaltname ?? '(none)'} does not match`, 'verify_san');
      return;
    }
    settled = true;
    clearTimeout(timer);
    downstreamTlsStats.handshakes++;
    if (ssl) ssl.handshake++;
    t.removeAllListeners('error');
    t.on('error', swallow);
    // Envoy (BoringSSL) never renegotiates as a server; node allows a client 3 renegotiations
    // per 10 minutes. Refuse them all: a renegotiation attempt closes the connection. A TLSSocket
    // built outside tls.Server never "releases control", so node reports the refusal only as the
    // internal '_tlsError' event, not as 'error'.
    t.disableRenegotiation();
    t.on('_tlsError', onPostHandshakeError);
    const uris = presented ? uriSansOf(cert.subjectaltname) : [];
    cb(t, {
      sni: (t as unknown as { servername?: string | false }).servername || undefined,
      alpn: t.alpnProtocol || undefined,
      peerPrincipal: uris[0],
      localPrincipal: ctx.localPrincipal,
      peerCertificateHash: presented ? cert.fingerprint256?.replace(/:/g, '').toLowerCase() : undefined,
      peerSubject: presented ? subjectString(cert.subject) : undefined,
      peerUriSans: uris,
      peerDnsSans: presented ? dnsSans(cert.subjectaltname) : undefined,
    });
  });
}

function swallow(): void {}

/**
 * TLS errors after the handshake: a refused renegotiation (ERR_TLS_RENEGOTIATION_DISABLED, or
 * ERR_TLS_SESSION_ATTACK past node's limit) is only reported by node, not acted on; close.
 */
function onPostHandshakeError(this: tls.TLSSocket, err: Error & { code?: string }): void {
  if (err.code === 'ERR_TLS_RENEGOTIATION_DISABLED' || err.code === 'ERR_TLS_SESSION_ATTACK') {
    log.debug({ err: err.message }, 'TLS renegotiation refused; closing the connection');
    this.destroy();
  }
}

/**
 * The chain verification result of a server-side TLSSocket. A standalone `new TLSSocket(...,
 * {isServer: true})` (no tls.Server) never sets `authorized`; Node records the OpenSSL result on
 * the handle, which tls.Server itself reads the same way.
 */
function chainVerifyError(t: tls.TLSSocket): string | undefined {
  const h = (t as unknown as { _handle?: { verifyError?: () => (Error & { code?: string }) | null } })._handle;
  if (!h?.verifyError) return t.authorized ? undefined : String(t.authorizationError ?? 'unverified');
  const e = h.verifyError();
  return e ? (e.code ?? e.message) : undefined;
}

function dnsSans(san: string | undefined): string[] {
  if (!san) return [];
  return splitSan(san)
    .filter((s) => s.startsWith('DNS:'))
    .map((s) => s.slice(4));
}

function subjectString(subject: tls.Certificate | undefined): string | undefined {
  if (!subject) return undefined;
  return Object.entries(subject)
    .map(([k, v]) => `${k}=${Array.isArray(v) ? v.join('+') : v}`)
    .join(',');
}
