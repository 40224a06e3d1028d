/**
 * Decoders of the network filters istiod writes that are Istio's own extensions, in every form
 * istiod sends them: `istio.stats` (native `stats.PluginConfig`, a TypedStruct of it, or the Wasm
 * plugin of older Istio) and `istio_authn` (TypedStruct `io.istio.network.authn.Config`).
 * listener.ts merges these entries into its table of network filters by typed_config type.
 *
 * A TypedStruct whose inner type is none of these is reported as before: "unsupported network
 * filter type … with type_url …".
 */
import { Reader } from '../../../common/reader';
import { decodeIstioStats, ISTIO_STATS_TYPE_NAME } from '../filters/istio-stats';
import { decodeIstioWasm } from '../filters/istio-wasm';
import { decodeMetadataExchange, MX_TYPE_NAME } from '../filters/metadata-exchange';
import type { NetworkFilterConfig } from '../types';
import { reportUnsupportedType } from './unsupported';

export const ISTIO_AUTHN_TYPE_NAME = 'io.istio.network.authn.Config';
const NETWORK_WASM = 'envoy.extensions.filters.network.wasm.v3.Wasm';
const TYPED_STRUCTS = ['udpa.type.v1.TypedStruct', 'xds.type.v3.TypedStruct'] as const;

interface Entry {
  readonly terminal: boolean;
  decode(t: Reader, name: string): NetworkFilterConfig | undefined;
}

/** The inner decoders a TypedStruct may carry, by inner type name. */
const INNER: Readonly<Record<string, (v: Reader, name: string) => NetworkFilterConfig | undefined>> = {
  [ISTIO_STATS_TYPE_NAME]: (v, name) => ({ kind: 'istio_stats', name, stats: decodeIstioStats(v) }),
  [MX_TYPE_NAME]: (v, name) => ({ kind: 'metadata_exchange', name, mx: decodeMetadataExchange(v) }),
  [ISTIO_AUTHN_TYPE_NAME]: (v, name) => {
    v.done(); // io.istio.network.authn.Config has no fields
    return { kind: 'istio_authn', name };
  },
};

function decodeTypedStruct(t: Reader, name: string, outer: string): NetworkFilterConfig | undefined {
  const url = t.str('type_url', '');
  const inner = url.slice(url.lastIndexOf('/') + 1);
  const decode = INNER[inner];
  if (!decode) {
    // Same message as any unknown type, with the inner type URL (unsupported.ts).
    reportUnsupportedType({ type: outer, reader: t }, 'network filter');
    return undefined;
  }
  const value = t.has('value') ? t.obj('value') : undefined;
  t.done();
  return decode(value ?? emptyReader(t), name);
}

function emptyReader(t: Reader): Reader {
  return new Reader({}, t.sub('value'), t.issues);
}

export const ISTIO_NETWORK_FILTERS: readonly (readonly [string, Entry])[] = [
  [ISTIO_STATS_TYPE_NAME, { terminal: false, decode: (t, name) => ({ kind: 'istio_stats', name, stats: decodeIstioStats(t) }) }],
  [MX_TYPE_NAME, { terminal: false, decode: (t, name) => ({ kind: 'metadata_exchange', name, mx: decodeMetadataExchange(t) }) }],
  [
    NETWORK_WASM,
    {
      terminal: false,
      decode: (t, name) => {
        const plugin = decodeIstioWasm(t, 'network filter');
        if (!plugin) return undefined;
        if (plugin.kind !== 'stats') {
          t.issues.error(t.sub('config.root_id'), 'the metadata_exchange Wasm plugin is an HTTP filter; use envoy.tcp.metadataexchange for TCP');
          return undefined;
        }
        return { kind: 'istio_stats', name, stats: decodeIstioStats(plugin.config) };
      },
    },
  ],
  ...TYPED_STRUCTS.map((ts) => [ts, { terminal: false, decode: (t: Reader, name: string) => decodeTypedStruct(t, name, ts) }] as const),
];
