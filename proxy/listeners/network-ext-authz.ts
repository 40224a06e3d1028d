/**
 * The network ext_authz filter, `envoy.extensions.filters.network.ext_authz.v3.ExtAuthz`: each new
 * connection is checked once with `envoy.service.auth.v3.Authorization/Check` (source and
 * destination addresses and principals — the peer's verified SPIFFE ID after TLS termination)
 * before the terminal filter sees a byte. OK hands the connection on; a denial or, without
 * `failure_mode_allow`, a failure or timeout closes it. Counters are shared with the HTTP filter
 * (`<stat_prefix>ext_authz.ok|denied|error|failure_mode_allowed`).
 *
 * Network filters in meshlet are synchronous, so this one wraps the chain's terminal handler:
 * the socket is paused while the check is in flight (bytes stay in the kernel / socket buffer)
 * and resumed for the terminal handler afterwards. With `filter_enabled_metadata` only connections
 * whose dynamic metadata matches (Istio's TCP CUSTOM: network RBAC's shadow result) are checked;
 * the others go straight on, counted as `ext_authz.disabled`. Leans fail-closed.
 */
import type { Socket } from 'node:net';
import type { NetworkExtAuthzConfig } from '../config/types';
import type { DownstreamConnectionInfo } from '../http/codec';
import { metadataMatches } from '../authz/metadata-match';
import { peers } from '../http/filters/ext-authz-grpc';
import { extAuthzStats } from '../http/filters/ext-authz-stats';
import { unaryCall } from '../http/filters/service-client';
import { logger } from '../../common/logger';
import type { ClusterLookup } from '../upstream/types';
import type { ConnectionHandler, DrainDecision, Sniffed } from './types';

const log = logger('ext_authz');

/** Wraps a terminal handler: connections reach it only once the authorizer said OK. */
export class NetworkExtAuthzHandler implements ConnectionHandler {
  private pending = 0;
  /** Created with the chain, so the counters exist (at zero) before the first connection. */
  private readonly stats: ReturnType<typeof extAuthzStats>;

  constructor(
    readonly config: NetworkExtAuthzConfig,
    private readonly inner: ConnectionHandler,
    private readonly clusters: ClusterLookup,
  ) {
    this.stats = extAuthzStats(config.statPrefix);
  }

  get activeConnections(): number {
    return this.inner.activeConnections + this.pending;
  }

  drain(decision?: DrainDecision): void {
    this.inner.drain?.(decision);
  }

  handle(socket: Socket, info: DownstreamConnectionInfo, sniffed: Sniffed | undefined): void {
    const gate = this.config.filterEnabledMetadata;
    if (gate !== undefined && !metadataMatches(gate, (ns) => info.dynamicMetadata?.get(ns))) {
      // filter_enabled_metadata does not match: not checked (Envoy counts ext_authz.disabled).
      this.stats.disabled++;
      this.inner.handle(socket, info, sniffed);
      return;
    }
    socket.pause();
    this.pending++;
    let done = false;
    const onClose = (): void => {
      if (!done) {
        done = true;
        this.pending--;
      }
    };
    socket.once('close', onClose);
    const cfg = this.config;
    const stats = this.stats;
    unaryCall(
      this.clusters,
      cfg.grpcService,
      'auth',
      'Check',
      { attributes: { ...peers(info, cfg.includePeerCertificate) } },
      (err, res) => {
        if (done) return;
        done = true;
        this.pending--;
        socket.removeListener('close', onClose);
        let allow: boolean;
        if (err !== undefined || res === undefined) {
          stats.error++;
          allow = cfg.failureModeAllow;
          if (allow) stats.failureModeAllowed++;
          log.debug({ err, conn: info.id }, 'network ext_authz check failed');
        } else if (Number((res.status as { code?: number } | undefined)?.code ?? 0) === 0) {
          stats.ok++;
          allow = true;
        } else {
          stats.denied++;
          allow = false;
        }
        if (!allow || socket.destroyed) {
          socket.destroy();
          return;
        }
        socket.resume();
        this.inner.handle(socket, info, sniffed);
      },
    );
  }
}
