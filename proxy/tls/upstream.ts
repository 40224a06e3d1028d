/**
 * Upstream TLS / mTLS transport (UpstreamTlsContext): wraps the plain TCP transport, presents
 * the workload certificate, sets SNI and ALPN, verifies the server chain and its identity with
 * match_typed_subject_alt_names, and reports the server's SPIFFE ID.
 *
 * Leans strict: an identity mismatch fails the connection with reason `tls_failure` and a clear
 * detail (the router answers 503 with response flag UMSDR/UF); it never falls back to plaintext.
 * TLS sessions are deliberately not resumed: on a resumed session Node does not expose the peer
 * certificate, so the server's SPIFFE identity could not be verified again. Connection pooling
 * keeps full handshakes rare instead.
 */
import { isIP } from 'node:net';
import tls from 'node:tls';
import { uriSansOf } from '../../certs/identity';
import type { UpstreamTlsConfig } from '../config/types';
import type { ResetReason } from '../http/codec';
import type { Host } from '../upstream/host';
import { logger } from '../../common/logger';
import { SslStats } from '../upstream/ssl-stats';
import type { ClientTlsOptions, TransportConnection, TransportSocketFactory } from '../upstream/types';
import { sanMatches, type TlsContextManager } from './context-manager';
import { RateLimitedLog } from './failure-log';

/** One info line per failed upstream handshake (rate limited). */
const failures = new RateLimitedLog(logger('tls'));

/** OpenSSL's X509 verification results as node reports them (err.code). */
const VERIFY_CODE = /^(CERT_|UNABLE_TO_|DEPTH_ZERO_SELF_SIGNED|SELF_SIGNED_CERT|INVALID_CA|INVALID_PURPOSE|PATH_LENGTH|ERROR_IN_CERT|HOSTNAME_MISMATCH)/;

type FailureClass = 'verify_error' | 'verify_san' | 'other';

type Cb = (err: { reason: ResetReason; detail: string } | undefined, conn: TransportConnection | undefined) => void;

export class UpstreamTlsStats {
  handshakes = 0;
  failures = 0;
  sanMismatch = 0;
}

export class TlsTransportSocketFactory implements TransportSocketFactory {
  readonly stats = new UpstreamTlsStats();
  /** cluster.<name>.ssl.* (one factory per cluster). */
  readonly ssl = new SslStats();

  constructor(
    private readonly tcp: TransportSocketFactory,
    private readonly cfg: UpstreamTlsConfig,
    private readonly mgr: TlsContextManager,
  ) {}

  clientTls(): ClientTlsOptions {
    const ctx = this.mgr.current(this.cfg.common, false);
    return {
      secureContext: ctx.secureContext,
      servername: this.cfg.sni,
      checkServer: (cert) =>
        sanMatches(ctx.sanMatchers, cert) ? undefined : `server identity ${cert?.subjectaltname ?? '(no SAN)'} does not match the expected subject alt names`,
    };
  }

  connect(host: Host, opts: { readonly alpn?: readonly string[]; readonly alpnOverride?: readonly string[]; readonly timeoutMs: number }, cb: Cb): void {
    const started = Date.now();
    this.tcp.connect(host, opts, (err, conn) => {
      if (err || !conn) {
        cb(err, undefined);
        return;
      }
      let ctx: ReturnType<TlsContextManager['current']>;
      try {
        ctx = this.mgr.current(this.cfg.common, false);
      } catch (e) {
        conn.socket.destroy();
        this.stats.failures++;
        this.ssl.connectionError++;
        cb({ reason: 'tls_failure', detail: `upstream TLS context unavailable: ${(e as Error).message}` }, undefined);
        return;
      }
      // Envoy: the per-request override (istio.alpn), else the context's list, else the pool's fallback.
      const alpn = opts.alpnOverride ?? (this.cfg.common.alpnProtocols.length > 0 ? this.cfg.common.alpnProtocols : opts.alpn);
      const sni = this.cfg.sni ?? (isIP(host.host) ? undefined : host.host);
      const t = tls.connect({
        socket: conn.socket,
        secureContext: ctx.secureContext,
        servername: sni,
        ALPNProtocols: alpn ? [...alpn] : undefined,
        rejectUnauthorized: ctx.canVerifyPeer,
        // Identity is checked with the SAN matchers below, not by hostname.
        checkServerIdentity: () => undefined,
      });
      let done = false;
      const remaining = Math.max(1, opts.timeoutMs - (Date.now() - started));
      const timer = setTimeout(() => finish({ reason: 'timeout', detail: `TLS handshake timeout to ${host.key}` }), remaining);
      const finish = (e: { reason: ResetReason; detail: string } | undefined, kind: FailureClass = 'other'): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        if (e) {
          this.stats.failures++;
          this.ssl.connectionError++;
          if (kind === 'verify_error') this.ssl.failVerifyError++;
          else if (kind === 'verify_san') this.ssl.failVerifySan++;
          failures.info({ upstream: host.key, reason: e.detail }, 'upstream TLS handshake failed');
          t.destroy();
          cb(e, undefined);
          return;
        }
        this.stats.handshakes++;
        this.ssl.handshake++;
        t.removeListener('error', onError);
        t.on('error', swallow);
        const cert = t.getPeerCertificate(false);
        cb(undefined, { socket: t, alpn: t.alpnProtocol || undefined, peerPrincipal: uriSansOf(cert?.subjectaltname)[0] });
      };
      const onError = (e: Error & { code?: string }): void =>
        finish(
          { reason: 'tls_failure', detail: `TLS error to ${host.key}: ${e.code ? `${e.code}: ` : ''}${e.message}` },
          e.code !== undefined && VERIFY_CODE.test(e.code) ? 'verify_error' : 'other',
        );
      t.on('error', onError);
      t.once('secureConnect', () => {
        if (ctx.canVerifyPeer && !t.authorized) {
          finish({ reason: 'tls_failure', detail: `upstream ${host.key} certificate rejected: ${String(t.authorizationError)}` }, 'verify_error');
          return;
        }
        const cert = t.getPeerCertificate(false);
        if (!sanMatches(ctx.sanMatchers, cert)) {
          this.stats.sanMismatch++;
          finish({
            reason: 'tls_failure',
            detail: `upstream ${host.key} identity ${cert?.subjectaltname ?? '(no SAN)'} does not match the expected subject alt names`,
          }, 'verify_san');
          return;
        }
        finish(undefined);
      });
    });
  }
}

function swallow(): void {}
