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
 * and resumed for the terminal handler afterwards. Leans fail-closed.
 */
import type { Socket } from 'node:net';
import type { NetworkExtAuthzConfig } from '../config/types';
import type { Reader } from '../config/reader';
import type { DownstreamConnectionInfo } from '../http/codec';
import {
  checkTransportApiVersion,
  decodeGrpcServiceField,
  extAuthzStats,
  peers,
} from '../http/filters/ext-authz';
import { unaryCall } from '../http/filters/service-client';
import { logger } from '../telemetry/logger';
import type { ClusterLookup } from '../upstream/types';
import type { ConnectionHandler, Sniffed } from './types';

const log = logger('ext_authz');

export const NETWORK_EXT_AUTHZ_TYPE_NAME = 'envoy.extensions.filters.network.ext_authz.v3.ExtAuthz';

/** Decode the network ExtAuthz typed_config (control plane). */
export function decodeNetworkExtAuthz(r: Reader): NetworkExtAuthzConfig | undefined {
  const statPrefix = r.requiredStr('stat_prefix');
  if (!r.has('grpc_service')) r.error('grpc_service', 'is required');
  const grpcService = decodeGrpcServiceField(r);
  checkTransportApiVersion(r);
  const failureModeAllow = r.bool('failure_mode_allow', false);
  const includePeerCertificate = r.bool('include_peer_certificate', false);
  if (r.has('filter_enabled_metadata')) r.error('filter_enabled_metadata', 'is not supported by meshlet');
  r.raw('filter_enabled_metadata');
  r.done();
  extAuthzStats(statPrefix);
  if (!grpcService) return undefined;
  return { statPrefix, grpcService, failureModeAllow, includePeerCertificate };
}

/** Wraps a terminal handler: connections reach it only once the authorizer said OK. */
export class NetworkExtAuthzHandler implements ConnectionHandler {
  private pending = 0;

  constructor(
    readonly config: NetworkExtAuthzConfig,
    private readonly inner: ConnectionHandler,
    private readonly clusters: ClusterLookup,
  ) {}

  get activeConnections(): number {
    return this.inner.activeConnections + this.pending;
  }

  drain(): void {
    this.inner.drain?.();
  }

  handle(socket: Socket, info: DownstreamConnectionInfo, sniffed: Sniffed | undefined): void {
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
    const stats = extAuthzStats(cfg.statPrefix);
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
