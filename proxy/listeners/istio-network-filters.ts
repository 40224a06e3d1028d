/**
 * The runtime side of Istio's own network filters (decoded by
 * proxy/config/envoy/istio-network-filters.ts), registered in proxy/registry.ts:
 *
 * - `istio_authn`: on a connection whose peer presented a certificate, stores the peer's and the
 *   local certificate's first spiffe:// URI SAN as the connection's filter state
 *   (io.istio.peer_principal / io.istio.local_principal), which RBAC `filter_state` principals
 *   and the Istio metrics read. Without the filter (or on plaintext) the keys are absent.
 * - `istio.stats`: hands its config to the chain's tcp_proxy, whose Istio TCP metrics it drives
 *   (proxy/telemetry/istio.ts). On a chain ending in the HTTP connection manager the HTTP
 *   `istio.stats` filter is the one that counts.
 * - `istio.metadata_exchange` (TCP): the downstream end of Istio's TCP metadata exchange
 *   (proxy/upstream/metadata-exchange.ts), wrapped around the terminal handler.
 */
import type { Socket } from 'node:net';
import type { NodeInfo } from '../config/types';
import type { DownstreamConnectionInfo } from '../http/codec';
import { exchangeFrame, exchangeMetadata, negotiatedProtocol } from '../upstream/metadata-exchange';
import type { NetworkFilter } from './listener';
import type { NetworkFilterFactory } from './network-filter';
import type { ConnectionHandler, DrainDecision, Sniffed } from './types';

const SPIFFE = 'spiffe://';

/** istio_authn: one shared instance per chain (it keeps no per-connection state of its own). */
export class IstioAuthnFilter implements NetworkFilter {
  onNewConnection(_socket: Socket, info: DownstreamConnectionInfo): boolean {
    const tls = info.tls;
    // Istio populates the principals only when the peer presented a certificate.
    if (tls === undefined || tls.peerCertificateHash === undefined) return true;
    let peer: string | undefined;
    const uris = tls.peerUriSans ?? [];
    for (let i = 0; i < uris.length; i++) {
      if (uris[i]!.startsWith(SPIFFE)) {
        peer = uris[i];
        break;
      }
    }
    const local = tls.localPrincipal !== undefined && tls.localPrincipal.startsWith(SPIFFE) ? tls.localPrincipal : undefined;
    if (peer === undefined && local === undefined) return true;
    const fs = (info.filterState ??= {});
    if (peer !== undefined) fs.peerPrincipal = peer;
    if (local !== undefined) fs.localPrincipal = local;
    return true;
  }
}

export const istioAuthnFactory: NetworkFilterFactory<'istio_authn'> = {
  kind: 'istio_authn',
  build(_f, parts) {
    parts.filters.push(new IstioAuthnFilter());
  },
};

export const istioStatsNetworkFactory: NetworkFilterFactory<'istio_stats'> = {
  kind: 'istio_stats',
  build(f, parts) {
    parts.istioStats = f.stats;
  },
};

/**
 * istio.metadata_exchange (envoy.tcp.metadataexchange): wraps the chain's terminal handler. On a
 * connection whose negotiated ALPN is the configured protocol it writes this node's frame, reads
 * the peer's and puts the peer into the connection's filter state (the source of the Istio
 * metrics, TCP and HTTP), then hands the rest of the bytes on. Other connections pass untouched.
 */
export class MetadataExchangeHandler implements ConnectionHandler {
  private pending = 0;

  constructor(
    private readonly protocol: string,
    private readonly node: NodeInfo,
    private readonly inner: ConnectionHandler,
  ) {}

  get activeConnections(): number {
    return this.inner.activeConnections + this.pending;
  }

  drain(decision?: DrainDecision): void {
    this.inner.drain?.(decision);
  }

  handle(socket: Socket, info: DownstreamConnectionInfo, sniffed: Sniffed | undefined): void {
    if (negotiatedProtocol(info.tls?.alpn) !== this.protocol) {
      this.inner.handle(socket, info, sniffed);
      return;
    }
    socket.pause();
    this.pending++;
    exchangeMetadata(socket, exchangeFrame(this.node), (r) => {
      this.pending--;
      if (r.kind === 'closed') {
        socket.destroy();
        return;
      }
      if (r.kind === 'peer' && r.peer !== undefined) (info.filterState ??= {}).downstreamPeer = r.peer;
      socket.resume();
      this.inner.handle(socket, info, sniffed);
    });
  }
}

export const metadataExchangeFactory: NetworkFilterFactory<'metadata_exchange'> = {
  kind: 'metadata_exchange',
  build(f, parts, ctx) {
    const node = ctx.node;
    // Without a node there is nothing to send (a bootstrap always has one; tests may not).
    if (node === undefined) return;
    parts.wrappers.push((inner) => new MetadataExchangeHandler(f.mx.protocol, node, inner));
  },
};
