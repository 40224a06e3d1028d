/**
 * Istio's `istio.alpn` HTTP filter (istio/proxy source/extensions/filters/http/alpn), config
 * `istio.envoy.config.filter.http.alpn.v2alpha1.FilterConfig`: per request, the ALPN list the
 * upstream TLS connection offers, chosen by the protocol the request goes upstream with. istiod
 * writes HTTP10 → [istio-http/1.0, istio], HTTP11 → [istio-http/1.1, istio], HTTP2 → [istio-h2,
 * istio] on outbound HTTP listeners, so the server sidecar's filter chain match can tell HTTP from
 * opaque TCP (which offers istio-peer-exchange).
 *
 * As istio-proxy: the route's cluster decides; a cluster whose metadata says
 * `istio.alpn_override: "false"` keeps its own ALPN; the upstream protocol is the cluster's
 * (HTTP/2, or HTTP/1.1), or the downstream's with use_downstream_protocol_config. The override
 * goes on the stream (StreamInfo.upstreamAlpnOverride); the router hands it to the cluster, whose
 * TLS connections for it are pooled apart (Cluster.httpPool). Plaintext connections ignore it.
 */
import type { Reader } from '../../../common/reader';
import type { HttpProtocol, RequestHead } from '../codec';
import { FilterStatus, type HttpFilter, type HttpFilterCallbacks, type HttpFilterFactory } from '../filter';

export const ISTIO_ALPN_TYPE_NAME = 'istio.envoy.config.filter.http.alpn.v2alpha1.FilterConfig';

export interface IstioAlpnConfig {
  readonly kind: 'istio_alpn';
  readonly http10: readonly string[] | undefined;
  readonly http11: readonly string[] | undefined;
  readonly http2: readonly string[] | undefined;
}

const PROTOCOLS = ['HTTP10', 'HTTP11', 'HTTP2'] as const;

export function decodeIstioAlpn(r: Reader): IstioAlpnConfig {
  const by: Partial<Record<(typeof PROTOCOLS)[number], readonly string[]>> = {};
  for (const o of r.arr('alpn_override')) {
    const raw = o.raw('upstream_protocol');
    // proto3 JSON: the enum's name, or its number; absent = HTTP10 (0).
    const p = raw === undefined || raw === null ? 'HTTP10' : typeof raw === 'number' ? PROTOCOLS[raw] : PROTOCOLS.find((x) => x === raw);
    const list = Object.freeze(o.strList('alpn_override'));
    if (p === undefined) o.error('upstream_protocol', `must be one of ${PROTOCOLS.join(', ')}`);
    // A repeated protocol: the first entry counts (istio-proxy's map insert keeps the first).
    else if (by[p] === undefined) by[p] = list;
    o.done();
  }
  r.done();
  const nonEmpty = (l: readonly string[] | undefined) => (l !== undefined && l.length > 0 ? l : undefined);
  return Object.freeze({ kind: 'istio_alpn', http10: nonEmpty(by.HTTP10), http11: nonEmpty(by.HTTP11), http2: nonEmpty(by.HTTP2) });
}

class IstioAlpnFilter implements HttpFilter {
  constructor(
    private readonly cfg: IstioAlpnConfig,
    private readonly cb: HttpFilterCallbacks,
  ) {}

  decodeHeaders(_head: RequestHead): FilterStatus {
    const action = this.cb.route()?.action as { kind?: string; cluster?: { kind?: string; name?: string } } | undefined;
    const name = action?.cluster?.kind === 'cluster' ? action.cluster.name : undefined;
    if (name === undefined) return FilterStatus.Continue;
    const cluster = this.cb.clusters.get(name);
    if (cluster === undefined) return FilterStatus.Continue;
    const md = cluster.config.metadata as { istio?: { alpn_override?: unknown } } | undefined;
    if (md?.istio?.alpn_override === 'false') return FilterStatus.Continue;
    const list = this.forProtocol(cluster.config.upstreamProtocol, this.cb.streamInfo.protocol);
    if (list !== undefined) this.cb.streamInfo.upstreamAlpnOverride = list;
    return FilterStatus.Continue;
  }

  private forProtocol(up: 'http1' | 'http2' | 'downstream', downstream: HttpProtocol): readonly string[] | undefined {
    const c = this.cfg;
    if (up === 'http2') return c.http2;
    if (up === 'http1') return c.http11;
    return downstream === 'HTTP/2' ? c.http2 : downstream === 'HTTP/1.0' ? c.http10 : c.http11;
  }
}

export const istioAlpnFilterFactory: HttpFilterFactory<IstioAlpnConfig> = {
  typeName: ISTIO_ALPN_TYPE_NAME,
  decode: decodeIstioAlpn,
  create: (config, callbacks) => new IstioAlpnFilter(config, callbacks),
};
