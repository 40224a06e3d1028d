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

export const HTTP_WASM_TYPE_NAME = 'envoy.extensions.filters.http.wasm.v3.Wasm';

type WasmConfig = IstioStatsConfig;

export const istioWasmFilterFactory: HttpFilterFactory<WasmConfig | undefined> = {
  typeName: HTTP_WASM_TYPE_NAME,
  decode(r: Reader): WasmConfig | undefined {
    const plugin = decodeIstioWasm(r, 'HTTP filter');
    if (plugin === undefined) return undefined;
    if (plugin.kind === 'stats') return decodeIstioStats(plugin.config);
    r.issues.error(r.sub('config.root_id'), 'the metadata_exchange Wasm plugin is not supported by meshlet yet');
    return undefined;
  },
  create(config: WasmConfig | undefined, callbacks: HttpFilterCallbacks): HttpFilter {
    if (config === undefined) throw new Error('Wasm filter without a decoded config');
    return istioStatsFilterFactory.create(config, callbacks);
  },
};
