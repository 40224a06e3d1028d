/**
 * HTTP filters delivered as a TypedStruct (`xds.type.v3.TypedStruct` / `udpa.type.v1.TypedStruct`):
 * the way xDS carries extension configs that have no proto in the API set. `type_url` names the
 * filter, `value` holds its fields in JSON form; the inner factory decodes and creates it.
 *
 * Inner types: meshlet's own TypeScript filter (`meshlet.filters.TypeScript`) and Istio's
 * `stats.PluginConfig` (istio.stats) and `io.istio.http.peer_metadata.Config`. Any other inner type is rejected with it named.
 */
import { Reader } from '../../../common/reader';
import { ambientMessage } from '../../config/envoy/unsupported';
import type { HttpFilter, HttpFilterCallbacks, HttpFilterFactory } from '../filter';
import { istioStatsFilterFactory } from './istio-stats';
import { peerMetadataFilterFactory } from './istio-peer-metadata';
import { typeScriptFilterFactory } from './typescript';

const INNER: readonly HttpFilterFactory<object>[] = [
  typeScriptFilterFactory as HttpFilterFactory<object>,
  istioStatsFilterFactory as HttpFilterFactory<object>,
  peerMetadataFilterFactory as HttpFilterFactory<object>,
];
const BY_TYPE = new Map(INNER.map((f) => [f.typeName, f]));

/** Which inner factory decoded a config (configs stay plain data). */
const factoryOf = new WeakMap<object, HttpFilterFactory<object>>();

function typedStructFactory(typeName: string): HttpFilterFactory<object | undefined> {
  return {
    typeName,
    decode(r: Reader): object | undefined {
      const url = r.requiredStr('type_url');
      const inner = url.slice(url.lastIndexOf('/') + 1);
      const factory = BY_TYPE.get(inner);
      if (!factory) {
        // The unsupported inner type is the one error: its value is not looked at.
        if (url)
          r.error(
            'type_url',
            ambientMessage(inner, `TypedStruct of ${JSON.stringify(url)}`) ??
              `TypedStruct of ${JSON.stringify(url)} is not supported by meshlet (only ${[...BY_TYPE.keys()].join(', ')})`,
          );
        r.ignore('value');
        r.done();
        return undefined;
      }
      // An empty Struct value is left out of proto3 JSON: read it as {}, so the inner type's own
      // required fields are what is reported, under `value`.
      const v = r.has('value') ? r.obj('value') : new Reader({}, r.sub('value'), r.issues);
      r.done();
      if (!factory || !v) return undefined;
      const config = factory.decode(v);
      factoryOf.set(config, factory);
      return config;
    },
    create(config: object | undefined, callbacks: HttpFilterCallbacks): HttpFilter {
      const factory = config === undefined ? undefined : factoryOf.get(config);
      if (config === undefined || factory === undefined) throw new Error('TypedStruct filter without a decoded config');
      return factory.create(config, callbacks);
    },
  };
}

/** Registered under both TypedStruct type names. */
export const typedStructFilterFactories = [typedStructFactory('xds.type.v3.TypedStruct'), typedStructFactory('udpa.type.v1.TypedStruct')] as const;
