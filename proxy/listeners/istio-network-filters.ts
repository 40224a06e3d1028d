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
 */
import type { Socket } from 'node:net';
import type { DownstreamConnectionInfo } from '../http/codec';
import type { NetworkFilter } from './listener';
import type { NetworkFilterFactory } from './network-filter';

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
