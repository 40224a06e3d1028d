/**
 * Istio's HTTP peer metadata exchange: `io.istio.http.peer_metadata.Config` (the filter istiod
 * names `istio.metadata_exchange`) and the Wasm `metadata_exchange` plugin of older Istio, which
 * behaves like it with every method on. The wire format is Istio's (proxy/http/peer-metadata.ts):
 * `x-envoy-peer-metadata` (base64 of the node's flat metadata as a google.protobuf.Struct) and
 * `x-envoy-peer-metadata-id` (the node id).
 *
 * - downstream discovery: the request's headers give the downstream peer (StreamInfo.downstreamPeer,
 *   read by the Istio metrics as the source); the headers are removed before forwarding.
 * - upstream propagation: this node's headers are added to the request sent upstream (not to
 *   PassthroughCluster or clusters with `istio.external` metadata when `skip_external_clusters`).
 * - upstream discovery: the response's headers give the upstream peer (the destination), removed.
 * - downstream propagation: this node's headers are added to the response, only when the request
 *   carried them (a peer that speaks the exchange), as istio-proxy does.
 *
 * Leans cheap: the local header value is computed once per node; decoded peers are interned in a
 * bounded cache keyed by header value, so a known peer costs one Map lookup.
 */
import type { Reader } from '../../../common/reader';
import type { NodeInfo } from '../../config/types';
import type { RequestHead, ResponseHead } from '../codec';
import { FilterStatus, type HttpFilter, type HttpFilterCallbacks, type HttpFilterFactory } from '../filter';
import { getHeader, removeHeader, setHeader } from '../headers';
import { decodePeerHeader, encodePeerHeader, PEER_METADATA_HEADER, PEER_METADATA_ID_HEADER } from '../peer-metadata';

export const PEER_METADATA_TYPE_NAME = 'io.istio.http.peer_metadata.Config';

export interface PeerMetadataConfig {
  readonly kind: 'peer_metadata';
  readonly downstreamDiscovery: boolean;
  readonly upstreamDiscovery: boolean;
  readonly downstreamPropagation: boolean;
  readonly upstreamPropagation: boolean;
  /** Do not add our headers towards PassthroughCluster or `istio.external` clusters. */
  readonly skipExternalClusters: boolean;
}

/** What the Wasm metadata_exchange plugin does: discover and propagate both ways. */
export const WASM_MX_CONFIG: PeerMetadataConfig = Object.freeze({
  kind: 'peer_metadata',
  downstreamDiscovery: true,
  upstreamDiscovery: true,
  downstreamPropagation: true,
  upstreamPropagation: true,
  skipExternalClusters: false,
});

/** A list of DiscoveryMethod / PropagationMethod: whether istio_headers is in it. */
function methods(r: Reader, key: string, allowed: readonly string[]): { istio: boolean; skipExternal: boolean } {
  let istio = false;
  let skipExternal = false;
  for (const m of r.arr(key)) {
    const which = m.oneof(['baggage', 'workload_discovery', 'istio_headers'] as const);
    if (which === 'istio_headers') {
      istio = true;
      const h = m.obj('istio_headers');
      if (h) {
        skipExternal = h.bool('skip_external_clusters', false);
        h.done();
      }
    } else if (which !== undefined) {
      m.issues.warn(m.sub(which), `${which} is not supported by meshlet (only istio_headers), ignored`);
      m.ignore(which);
    }
    if (which !== undefined && !allowed.includes(which)) m.error(which, `is not a ${key} method`);
    m.done();
  }
  return { istio, skipExternal };
}

export function decodePeerMetadata(r: Reader): PeerMetadataConfig {
  const all = ['baggage', 'workload_discovery', 'istio_headers'];
  const dd = methods(r, 'downstream_discovery', all);
  const ud = methods(r, 'upstream_discovery', all);
  const dp = methods(r, 'downstream_propagation', ['istio_headers']);
  const up = methods(r, 'upstream_propagation', ['istio_headers']);
  if (r.bool('shared_with_upstream', false)) r.issues.warn(r.sub('shared_with_upstream'), 'is for internal listeners (ambient), ignored');
  if (r.strList('additional_labels').length > 0) r.issues.warn(r.sub('additional_labels'), 'is not supported by meshlet, ignored');
  r.done();
  return {
    kind: 'peer_metadata',
    downstreamDiscovery: dd.istio,
    upstreamDiscovery: ud.istio,
    downstreamPropagation: dp.istio,
    upstreamPropagation: up.istio,
    skipExternalClusters: up.skipExternal,
  };
}

/** The header value per node object (computed once). */
const localValues = new WeakMap<NodeInfo, string>();
function localValue(node: NodeInfo): string {
  let v = localValues.get(node);
  if (v === undefined) {
    v = encodePeerHeader(node);
    localValues.set(node, v);
  }
  return v;
}

class PeerMetadataFilter implements HttpFilter {
  private requestHadPeer = false;
  private requestHadId = false;

  constructor(
    private readonly cfg: PeerMetadataConfig,
    private readonly cb: HttpFilterCallbacks,
  ) {}

  decodeHeaders(head: RequestHead): FilterStatus {
    const cfg = this.cfg;
    const h = head.headers;
    if (cfg.downstreamDiscovery) {
      const id = getHeader(h, PEER_METADATA_ID_HEADER);
      const value = getHeader(h, PEER_METADATA_HEADER);
      this.requestHadId = id !== undefined;
      this.requestHadPeer = value !== undefined;
      if (value !== undefined && value !== '') {
        const peer = decodePeerHeader(value, id ?? '');
        if (peer !== undefined) this.cb.streamInfo.downstreamPeer = peer;
      }
      if (id !== undefined) removeHeader(h, PEER_METADATA_ID_HEADER);
      if (value !== undefined) removeHeader(h, PEER_METADATA_HEADER);
    }
    const node = this.cb.localNode;
    if (cfg.upstreamPropagation && node !== undefined && !this.external()) {
      setHeader(h, PEER_METADATA_ID_HEADER, node.id);
      setHeader(h, PEER_METADATA_HEADER, localValue(node));
    }
    return FilterStatus.Continue;
  }

  encodeHeaders(head: ResponseHead): FilterStatus {
    const cfg = this.cfg;
    const h = head.headers;
    if (cfg.upstreamDiscovery) {
      const id = getHeader(h, PEER_METADATA_ID_HEADER);
      const value = getHeader(h, PEER_METADATA_HEADER);
      if (value !== undefined && value !== '') {
        const peer = decodePeerHeader(value, id ?? '');
        if (peer !== undefined) this.cb.streamInfo.upstreamPeer = peer;
      }
      if (id !== undefined) removeHeader(h, PEER_METADATA_ID_HEADER);
      if (value !== undefined) removeHeader(h, PEER_METADATA_HEADER);
    }
    const node = this.cb.localNode;
    if (cfg.downstreamPropagation && node !== undefined) {
      // Only to a downstream that sent its own (istio-proxy's request_peer_received gate).
      if (this.requestHadId) setHeader(h, PEER_METADATA_ID_HEADER, node.id);
      if (this.requestHadPeer) setHeader(h, PEER_METADATA_HEADER, localValue(node));
    }
    return FilterStatus.Continue;
  }

  /** skip_external_clusters: the route's cluster is PassthroughCluster or marked istio.external. */
  private external(): boolean {
    if (!this.cfg.skipExternalClusters) return false;
    const action = this.cb.route()?.action as { kind?: string; cluster?: { kind?: string; name?: string } } | undefined;
    const name = action?.cluster?.kind === 'cluster' ? action.cluster.name : undefined;
    if (name === undefined) return false;
    if (name === 'PassthroughCluster') return true;
    const md = this.cb.clusters.get(name)?.config.metadata as { istio?: { external?: unknown } } | undefined;
    return md?.istio?.external === true;
  }
}

export const peerMetadataFilterFactory: HttpFilterFactory<PeerMetadataConfig> = {
  typeName: PEER_METADATA_TYPE_NAME,
  decode: decodePeerMetadata,
  create: (config, callbacks) => new PeerMetadataFilter(config, callbacks),
};
