/**
 * `envoy.extensions.filters.http.wasm.v3.Wasm` as older istiod writes it: Istio's built-in stats
 * and metadata exchange plugins, mapped onto meshlet's native filters (proxy/config/filters/
 * istio-wasm.ts says which plugin a config is). Other Wasm modules are rejected there with the
 * reason. The decoded config is the native filter's, so the rest of meshlet (telemetry finding
 * the stats config, the filter chain) sees no difference between the two forms.
 */
import type { Reader } from '../../../common/reader';
import { decodeIstioStats, type IstioStatsConfig } from '../../config/filters/istio-stats';
import { decodeIstioWasm } from '../../config/filters/istio-wasm';
import type { HttpFilter, HttpFilterCallbacks, HttpFilterFactory } from '../filter';
import { istioStatsFilterFactory } from './istio-stats';
import { type PeerMetadataConfig, peerMetadataFilterFactory, WASM_MX_CONFIG } from './istio-peer-metadata';

export const HTTP_WASM_TYPE_NAME = 'envoy.extensions.filters.http.wasm.v3.Wasm';

type WasmConfig = IstioStatsConfig | PeerMetadataConfig;

export const istioWasmFilterFactory: HttpFilterFactory<WasmConfig | undefined> = {
  typeName: HTTP_WASM_TYPE_NAME,
  decode(r: Reader): WasmConfig | undefined {
    const plugin = decodeIstioWasm(r, 'HTTP filter');
    if (plugin === undefined) return undefined;
    if (plugin.kind === 'stats') return decodeIstioStats(plugin.config);
    // The plugin's configuration (max_peer_cache_size, …) tunes its cache only: meshlet's is bounded.
    plugin.config.ignore('max_peer_cache_size', 'protocol');
    plugin.config.done();
    return WASM_MX_CONFIG;
  },
  create(config: WasmConfig | undefined, callbacks: HttpFilterCallbacks): HttpFilter {
    if (config === undefined) throw new Error('Wasm filter without a decoded config');
    return config.kind === 'istio_stats' ? istioStatsFilterFactory.create(config, callbacks) : peerMetadataFilterFactory.create(config, callbacks);
  },
};
