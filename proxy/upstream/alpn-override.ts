/**
 * A transport whose TLS connections offer a fixed ALPN list instead of the context's: what
 * istio.alpn asks for per request (Envoy's `application_protocols` filter state, applied through
 * the transport socket options). The cluster builds one per override list and keeps its pools
 * apart (Cluster.httpPool), so a connection is only reused for requests with the same override.
 */
import type { Host } from './host';
import type { ClientTlsOptions, TransportSocketFactory } from './types';

export class AlpnOverrideTransport implements TransportSocketFactory {
  readonly ssl: TransportSocketFactory['ssl'];
  clientTls?: () => ClientTlsOptions;

  constructor(
    private readonly inner: TransportSocketFactory,
    readonly alpn: readonly string[],
  ) {
    this.ssl = inner.ssl;
    if (inner.clientTls !== undefined) this.clientTls = () => inner.clientTls!();
  }

  connect(host: Host, opts: Parameters<TransportSocketFactory['connect']>[1], cb: Parameters<TransportSocketFactory['connect']>[2]): void {
    this.inner.connect(host, { ...opts, alpnOverride: this.alpn }, cb);
  }
}

/** The pool key of an ALPN override list, computed once per list object (config lists are frozen). */
const alpnKeys = new WeakMap<readonly string[], string>();
export function alpnKey(alpn: readonly string[]): string {
  let k = alpnKeys.get(alpn);
  if (k === undefined) {
    k = alpn.join(',');
    alpnKeys.set(alpn, k);
  }
  return k;
}
