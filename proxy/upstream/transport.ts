/**
 * Plain-TCP upstream transport (Envoy's raw_buffer transport socket): opens a connection to a
 * host, enforces the cluster's connect timeout, and reports the outcome exactly once.
 *
 * Leans towards honest failure reasons: a timer firing before `connect` is reason 'timeout'
 * (Envoy's upstream_cx_connect_timeout), any socket error before `connect` (ECONNREFUSED,
 * EHOSTUNREACH, …) is 'connect_failure'. Sockets leave here with TCP_NODELAY and keep-alive on
 * and with none of our listeners attached. This module counts nothing: pools, the TCP proxy and
 * health checks own their stats. TLS transports implement the same TransportSocketFactory and are
 * plugged in through the cluster manager's transport provider.
 */
import * as net from 'node:net';
import type { ResetReason } from '../http/codec';
import type { Host } from './host';
import type { TransportConnection, TransportSocketFactory } from './types';

/** Keep-alive probe delay for upstream sockets (Envoy leaves this to the OS; Node needs a value). */
export const UPSTREAM_KEEPALIVE_INITIAL_DELAY_MS = 60_000;

type ConnectCallback = (
  err: { reason: ResetReason; detail: string } | undefined,
  conn: TransportConnection | undefined,
) => void;

/** The address to dial for `host`: LOGICAL_DNS hosts carry their latest resolved IP separately. */
export function dialAddress(host: Host): string {
  return host.connectAddress ?? host.host;
}

export class TcpTransportSocketFactory implements TransportSocketFactory {
  private readonly source4: { address: string; port: number } | undefined;
  private readonly source6: { address: string; port: number } | undefined;

  /**
   * `sourceAddresses`: the cluster's upstream_bind_config; connections bind the one matching the
   * destination's IP family (a destination of another family connects unbound).
   */
  constructor(sourceAddresses: readonly { readonly address: string; readonly port: number }[] = []) {
    this.source4 = sourceAddresses.find((a) => net.isIPv4(a.address));
    this.source6 = sourceAddresses.find((a) => net.isIPv6(a.address));
  }

  connect(
    host: Host,
    opts: { readonly alpn?: readonly string[]; readonly timeoutMs: number },
    cb: ConnectCallback,
  ): void {
    let done = false;
    let timer: NodeJS.Timeout | undefined;
    const socket =
      host.address.kind === 'pipe'
        ? net.connect({ path: host.address.path })
        : net.connect({
            host: dialAddress(host),
            port: host.port,
            ...this.bindFor(dialAddress(host)),
            noDelay: true,
            keepAlive: true,
            keepAliveInitialDelay: UPSTREAM_KEEPALIVE_INITIAL_DELAY_MS,
          });

    const finish = (err: { reason: ResetReason; detail: string } | undefined): void => {
      if (done) return;
      done = true;
      if (timer !== undefined) clearTimeout(timer);
      socket.removeListener('connect', onConnect);
      socket.removeListener('error', onError);
      if (err !== undefined) {
        socket.destroy();
        cb(err, undefined);
      } else {
        cb(undefined, { socket });
      }
    };
    const onConnect = (): void => {
      if (host.address.kind === 'socket') {
        socket.setNoDelay(true);
        socket.setKeepAlive(true, UPSTREAM_KEEPALIVE_INITIAL_DELAY_MS);
      }
      finish(undefined);
    };
    const onError = (e: NodeJS.ErrnoException): void => {
      finish({ reason: 'connect_failure', detail: `${e.code ?? 'ERROR'} connecting to ${host.key}: ${e.message}` });
    };
    socket.once('connect', onConnect);
    socket.once('error', onError);
    if (opts.timeoutMs > 0) {
      timer = setTimeout(() => {
        finish({ reason: 'timeout', detail: `connect timeout after ${opts.timeoutMs}ms to ${host.key}` });
      }, opts.timeoutMs);
    }
  }

  private bindFor(ip: string): { localAddress?: string; localPort?: number } {
    if (this.source4 === undefined && this.source6 === undefined) return {};
    const src = net.isIPv6(ip) ? this.source6 : this.source4;
    if (src === undefined) return {};
    return src.port > 0 ? { localAddress: src.address, localPort: src.port } : { localAddress: src.address };
  }
}
