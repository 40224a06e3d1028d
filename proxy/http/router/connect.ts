/**
 * CONNECT terminated by the proxy (route upgrade_configs CONNECT with connect_config): a raw
 * connection to the chosen host, a 200 downstream, then bytes copied both ways. The host comes
 * from the same choice as an UpstreamRequest and is admitted the same way (selectHost in
 * upstream-request.ts: the `requests` circuit breaker, upstream_rq_total / upstream_rq_active, the
 * host's active requests), released when the tunnel closes or the connect fails. A failed connect
 * is a 503 with UF (Envoy's upstream connection failure), never an exception.
 */
import type { Duplex } from 'node:stream';
import type { Host } from '../../upstream/host';
import type { UpstreamCluster } from '../../upstream/types';
import type { ResetReason } from '../codec';
import type { TerminalFilterCallbacks } from '../filter';
import { Tunnel } from '../tunnel';
import { releaseRequest } from './upstream-request';

/** What the CONNECT termination needs from its router. */
export interface ConnectOwner {
  readonly callbacks: TerminalFilterCallbacks;
  /** The router already answered or was destroyed. */
  readonly finished: boolean;
  /** Answer the stream for a failed connect. */
  onConnectFailure(reason: ResetReason): void;
  /** The tunnel is about to start: the router drops its timers. */
  onConnectEstablished(): void;
  /** The tunnel ended. */
  onConnectDone(): void;
}

export class ConnectRequest {
  private tunnel: Tunnel | undefined;
  private released = false;

  /** `host` was chosen and admitted (selectHost) by the caller. */
  constructor(
    private readonly owner: ConnectOwner,
    private readonly cluster: UpstreamCluster,
    private readonly host: Host,
  ) {}

  start(): void {
    const host = this.host;
    host.activeConnections++;
    const onConnected = (
      err: { reason: ResetReason; detail: string } | undefined,
      conn: { socket: Duplex } | undefined,
    ): void => this.onConnected(err, conn);
    try {
      (this.cluster.transportFor?.(host) ?? this.cluster.transport).connect(host, { timeoutMs: this.cluster.config.connectTimeoutMs }, onConnected);
    } catch (e) {
      // A target the socket layer rejects outright (never expected after validation): still a 503.
      onConnected({ reason: 'connect_failure', detail: (e as Error).message }, undefined);
    }
  }

  private onConnected(err: { reason: ResetReason; detail: string } | undefined, conn: { socket: Duplex } | undefined): void {
    const host = this.host;
    if (err !== undefined || conn === undefined) {
      host.activeConnections--;
      this.release();
      if (!this.owner.finished) this.owner.onConnectFailure(err?.reason ?? 'connect_failure');
      return;
    }
    const up = conn.socket;
    up.once('close', () => host.activeConnections--);
    if (this.owner.finished) {
      this.release();
      up.destroy();
      return;
    }
    const cb = this.owner.callbacks;
    const info = cb.streamInfo;
    if (info.firstUpstreamTxByteMs < 0) info.firstUpstreamTxByteMs = info.now();
    info.responseCodeDetails = 'via_upstream';
    this.owner.onConnectEstablished();
    cb.encodeHeaders({ status: 200, headers: [], contentLength: -1 }, false);
    const down = cb.takeDownstreamTunnel();
    this.tunnel = new Tunnel(down, up, (t) => {
      this.release();
      this.owner.onConnectDone();
      cb.onTunnelDone(t.bytesUp, t.bytesDown);
    });
  }

  /** The stream is over: close the tunnel (its end releases the request). */
  destroy(): void {
    if (this.tunnel !== undefined) this.tunnel.finish();
  }

  private release(): void {
    if (this.released) return;
    this.released = true;
    releaseRequest(this.cluster, this.host);
  }
}
