/**
 * Istio's TCP metadata exchange config, `envoy.tcp.metadataexchange.config.MetadataExchange`: the
 * network filter istiod puts on inbound filter chains (`istio.metadata_exchange`) and the upstream
 * network filter on outbound clusters (`envoy.filters.network.upstream.metadata_exchange`, in
 * Cluster.filters), natively or as a TypedStruct of it. The runtime is
 * proxy/upstream/metadata-exchange.ts.
 *
 * Fields: `protocol` (the ALPN the exchange runs on; compared with what TLS negotiated, "" when
 * nothing was), `enable_discovery` (look the peer up in Istio's workload discovery when the
 * exchange fails: ambient's WDS, warned and ignored), `additional_labels` (extra peer labels for
 * custom metric dimensions: warned and ignored).
 */
import { Reader } from '../../../common/reader';
import type { MetadataExchangeConfig } from '../types';
import { reportUnsupportedType } from '../envoy/unsupported';

export const MX_TYPE_NAME = 'envoy.tcp.metadataexchange.config.MetadataExchange';
const TYPED_STRUCTS = new Set(['udpa.type.v1.TypedStruct', 'xds.type.v3.TypedStruct']);

export function decodeMetadataExchange(r: Reader): MetadataExchangeConfig {
  const protocol = r.str('protocol', '');
  if (r.bool('enable_discovery', false)) {
    r.issues.warn(r.sub('enable_discovery'), 'workload discovery (WDS, ambient) is not supported by meshlet, ignored: a peer without the exchange has no metadata');
  }
  if (r.strList('additional_labels').length > 0) {
    r.issues.warn(r.sub('additional_labels'), 'is not supported by meshlet, ignored (the standard peer labels are exchanged)');
  }
  r.done();
  return Object.freeze({ protocol });
}

/**
 * Cluster.filters (upstream network filters): only Istio's metadata exchange, native or as a
 * TypedStruct; any other is an error at its `@type`. Returns the exchange config, if any.
 */
export function decodeClusterFilters(r: Reader): MetadataExchangeConfig | undefined {
  let mx: MetadataExchangeConfig | undefined;
  for (const f of r.arr('filters')) {
    f.str('name', '');
    if (f.has('config_discovery')) f.error('config_discovery', 'upstream filter discovery (ECDS) is not supported by meshlet');
    f.raw('config_discovery');
    const tc = f.any('typed_config');
    f.done();
    if (tc === undefined) {
      if (!f.has('config_discovery')) f.error('typed_config', 'is required');
      continue;
    }
    let inner: Reader | undefined;
    if (tc.type === MX_TYPE_NAME) inner = tc.reader;
    else if (TYPED_STRUCTS.has(tc.type)) {
      const url = tc.reader.str('type_url', '');
      if (url.slice(url.lastIndexOf('/') + 1) === MX_TYPE_NAME) {
        inner = tc.reader.obj('value') ?? new Reader({}, tc.reader.sub('value'), tc.reader.issues);
        tc.reader.done();
      } else {
        reportUnsupportedType(tc, 'upstream network filter');
        continue;
      }
    } else {
      reportUnsupportedType(tc, 'upstream network filter');
      continue;
    }
    const c = decodeMetadataExchange(inner);
    if (mx !== undefined) f.issues.warn(f.path, 'a second metadata exchange filter on the cluster is ignored');
    else mx = c;
  }
  return mx;
}
