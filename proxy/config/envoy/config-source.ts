/**
 * Decoders for envoy.config.core.v3.ConfigSource and ApiConfigSource (lds/cds/eds/rds/sds config
 * sources). Pure functions over a Reader; every problem is recorded with its path.
 */
import type { Reader } from '../../../common/reader';
import type { ConfigSource } from '../types';
import type { DecodeContext } from './context';
import { dur, enumOf } from './core';
import { decodeGrpcServices } from './grpc-service';

export interface DecodedConfigSource {
  readonly source?: ConfigSource;
  readonly initialFetchTimeoutMs?: number;
}

/** envoy.config.core.v3.ConfigSource: ads, self (treated as ads), path / path_config_source, api_config_source. */
export function decodeConfigSourceFull(r: Reader, ctx?: DecodeContext, opts: { allowPath?: boolean } = {}): DecodedConfigSource {
  const which = r.oneof(['ads', 'self', 'path', 'path_config_source', 'api_config_source'] as const);
  let source: ConfigSource | undefined;
  const initialFetchTimeoutMs = dur(r, 'initial_fetch_timeout');
  enumOf(r, 'resource_api_version', ['AUTO', 'V2', 'V3'] as const, 'AUTO');
  if (which === undefined) {
    r.issues.error(r.path, 'one of ads, path_config_source, api_config_source must be set');
  } else if (which === 'ads' || which === 'self') {
    const a = r.obj(which);
    a?.done();
    source = { kind: 'ads' };
    if (ctx?.refs && !ctx.refs.adsConfigured) r.error(which, 'an ADS config source needs dynamic_resources.ads_config');
  } else if (which === 'path' || which === 'path_config_source') {
    // File-based xDS (xds-client/file-source.ts) feeds whole types: LDS and CDS.
    if (!opts.allowPath) r.error(which, 'file-based config sources are supported by meshlet for lds_config and cds_config only');
    if (which === 'path') {
      const p = r.requiredStr('path');
      if (p) source = { kind: 'path', path: p };
    } else {
      const pr = r.obj(which);
      if (pr) {
        const p = pr.requiredStr('path');
        const wd = pr.obj('watched_directory');
        const watchedDirectory = wd?.requiredStr('path');
        wd?.done();
        pr.done();
        if (p) source = { kind: 'path', path: p, ...(watchedDirectory ? { watchedDirectory } : {}) };
      }
    }
  } else {
    const a = r.obj(which);
    if (a) {
      const api = decodeApiConfigSource(a, ctx);
      if (api) source = api;
    }
  }
  r.done();
  return { source, initialFetchTimeoutMs };
}

export function decodeConfigSource(r: Reader, ctx?: DecodeContext): ConfigSource | undefined {
  return decodeConfigSourceFull(r, ctx).source;
}

/** envoy.config.core.v3.ApiConfigSource.ApiType names (meshlet supports GRPC and DELTA_GRPC). */
export const API_TYPES = [
  'DEPRECATED_AND_UNAVAILABLE_DO_NOT_USE',
  'REST',
  'GRPC',
  'DELTA_GRPC',
  'AGGREGATED_GRPC',
  'AGGREGATED_DELTA_GRPC',
] as const;

function decodeApiConfigSource(a: Reader, ctx?: DecodeContext): ConfigSource | undefined {
  const apiType = enumOf(
    a,
    'api_type',
    API_TYPES,
    'DEPRECATED_AND_UNAVAILABLE_DO_NOT_USE',
  );
  enumOf(a, 'transport_api_version', ['AUTO', 'V2', 'V3'] as const, 'AUTO');
  if (a.raw('set_node_on_first_message_only') === true)
    a.warnNoEffect('set_node_on_first_message_only', 'only ads_config honours it; this source sends the node with every request');
  else a.ignore('set_node_on_first_message_only');
  const grpc = decodeGrpcServices(a, ctx, 'xds');
  if (a.has('cluster_names')) a.error('cluster_names', 'REST config sources are not supported by meshlet');
  a.raw('cluster_names');
  a.done();
  if (apiType !== 'GRPC' && apiType !== 'DELTA_GRPC') {
    a.error('api_type', `${apiType} is not supported by meshlet (expected GRPC or DELTA_GRPC)`);
    return undefined;
  }
  if (grpc.length === 0) {
    a.error('grpc_services', 'at least one gRPC service is required');
    return undefined;
  }
  return { kind: 'api_config_source', apiType, grpc };
}
