/**
 * Decoders for envoy.config.core.v3 building blocks shared by every resource: Address, DataSource,
 * ConfigSource, GrpcService, Node, Locality, Metadata, Percent, and enum helpers that know proto
 * enum numbers. Pure functions over a Reader; every problem is recorded with its path.
 *
 * Leans strict: an address that must be an IP (listeners, STATIC endpoints) is rejected when it
 * is a hostname, as Envoy does ("malformed IP address").
 */
import { isIP } from 'node:net';
import type { Reader } from '../../../common/reader';
import type { Address, ConfigSource, DataSource, GrpcService, Locality, NodeInfo } from '../types';
import { checkClusterRef, type DecodeContext } from './context';

/**
 * Proto enum by name (case-insensitive, as Envoy parses YAML/JSON: `lb_policy: round_robin`),
 * delegating everything else, including the error message, to Reader.enumOf.
 */
export function enumOf<T extends string>(r: Reader, key: string, values: readonly T[], def: NoInfer<T>): T {
  const v = r.raw(key);
  if (typeof v === 'string' && !(values as readonly string[]).includes(v)) {
    const lower = v.toLowerCase();
    const hit = values.find((x) => x.toLowerCase() === lower);
    if (hit) return hit;
  }
  return r.enumOf(key, values, def);
}

/**
 * Proto enum by name (case-insensitive), or by its proto number (which, unlike Reader.enumOf, may have gaps:
 * lb_policy has no 4). Same message as Reader.enumOf for unknown names.
 */
export function enumNamed<T extends string>(
  r: Reader,
  key: string,
  table: Readonly<Record<T, number>>,
  def: NoInfer<T>,
): T {
  const v = r.raw(key);
  if (v === undefined || v === null) return def;
  const names = Object.keys(table) as T[];
  if (typeof v === 'number') {
    const hit = names.find((n) => table[n] === v);
    if (hit) return hit;
  } else if (typeof v === 'string') {
    const hit = names.find((n) => n === v) ?? names.find((n) => n.toLowerCase() === v.toLowerCase());
    if (hit) return hit;
  }
  r.error(key, `unknown value ${JSON.stringify(v)} (expected one of ${names.join(', ')})`);
  return def;
}

/** google.protobuf.Duration in ms. Negative durations are rejected, as Envoy does. */
export function dur(r: Reader, key: string): number | undefined;
export function dur(r: Reader, key: string, def: number): number;
export function dur(r: Reader, key: string, def?: number): number | undefined {
  const v = r.durationMs(key);
  if (v === undefined) return def;
  if (v < 0) {
    r.error(key, `must not be negative, got ${JSON.stringify(r.raw(key))}`);
    return def;
  }
  return v;
}

/** envoy.type.v3.Percent ({value: 0..100}); a bare number is accepted too. */
export function percent(r: Reader, key: string, def: number): number {
  const v = r.raw(key);
  if (v === undefined || v === null) return def;
  let n: unknown = v;
  if (typeof v === 'object' && !Array.isArray(v)) {
    const sub = r.obj(key);
    if (!sub) return def;
    n = sub.num('value', 0, 0, 100);
    sub.done();
    return n as number;
  }
  if (typeof n !== 'number' || Number.isNaN(n) || n < 0 || n > 100) {
    r.error(key, `expected a percentage between 0 and 100, got ${JSON.stringify(v)}`);
    return def;
  }
  return n;
}

/** envoy.type.v3.FractionalPercent → percent 0..100 (numerator over HUNDRED/TEN_THOUSAND/MILLION). */
export function fractionalPercent(r: Reader, key: string, def: number): number {
  const f = r.obj(key);
  if (!f) return def;
  const num = f.int('numerator', 0, 0, 0xffffffff);
  const den = enumNamed(f, 'denominator', { HUNDRED: 0, TEN_THOUSAND: 1, MILLION: 2 }, 'HUNDRED');
  f.done();
  const scale = den === 'HUNDRED' ? 1 : den === 'TEN_THOUSAND' ? 100 : 10_000;
  return Math.min(100, num / scale);
}

export interface AddressOptions {
  /** Hostnames allowed (DNS cluster endpoints); otherwise the address must be an IP literal. */
  readonly allowHostname?: boolean;
  /** Why an IP is needed, appended to the "malformed IP address" message. */
  readonly ipHint?: string;
}

/** envoy.config.core.v3.Address (socket_address or pipe). */
export function decodeAddress(r: Reader, opts: AddressOptions = {}): Address | undefined {
  const which = r.oneof(['socket_address', 'pipe', 'envoy_internal_address'] as const);
  let out: Address | undefined;
  if (which === undefined) {
    r.issues.error(r.path || '(root)', 'one of socket_address, pipe must be set');
  } else if (which === 'envoy_internal_address') {
    r.error(which, 'internal listener addresses are not supported by meshlet');
  } else if (which === 'pipe') {
    const p = r.obj('pipe');
    if (p) {
      const path = p.requiredStr('path');
      p.int('mode', 0, 0, 0o777);
      p.done();
      if (path) out = { kind: 'pipe', path };
    }
  } else {
    const s = r.obj('socket_address');
    if (s) out = decodeSocketAddress(s, opts);
  }
  r.done();
  return out;
}

function decodeSocketAddress(s: Reader, opts: AddressOptions): Address | undefined {
  const host = s.requiredStr('address');
  const protocol = enumOf(s, 'protocol', ['TCP', 'UDP'] as const, 'TCP');
  if (protocol === 'UDP') s.error('protocol', 'UDP is not supported by meshlet');
  if (s.has('named_port')) s.error('named_port', 'named ports are not supported; use port_value');
  s.raw('named_port');
  const port = s.int('port_value', 0, 0, 65535);
  const ipv4Compat = s.bool('ipv4_compat', false);
  const resolver = s.str('resolver_name');
  if (resolver) s.error('resolver_name', 'custom resolvers are not supported by meshlet');
  s.done();
  if (!host) return undefined;
  if (!opts.allowHostname && isIP(host) === 0) {
    s.error('address', `malformed IP address: ${JSON.stringify(host)}${opts.ipHint ? ` (${opts.ipHint})` : ''}`);
    return undefined;
  }
  return ipv4Compat ? { kind: 'socket', host, port, ipv4Compat } : { kind: 'socket', host, port };
}

/** envoy.config.core.v3.DataSource. */
export function decodeDataSource(r: Reader): DataSource | undefined {
  const which = r.oneof(['filename', 'inline_string', 'inline_bytes', 'environment_variable'] as const);
  let out: DataSource | undefined;
  if (which === undefined) {
    r.issues.error(r.path, 'one of filename, inline_string, inline_bytes, environment_variable must be set');
  } else {
    const value = r.str(which, '');
    if (which === 'filename' && value === '') r.error(which, 'must not be empty');
    else if (which === 'environment_variable' && value === '') r.error(which, 'must not be empty');
    else if (which === 'inline_bytes' && !/^[A-Za-z0-9+/_-]*={0,2}$/.test(value)) r.error(which, 'expected base64');
    else out = { kind: which, value };
  }
  r.ignore('watched_directory');
  r.done();
  return out;
}

/** Reads a DataSource's bytes at decode time (control-plane side). */
export { dataSourceBytes } from '../../../common/data-source';

export interface DecodedConfigSource {
  readonly source?: ConfigSource;
  readonly initialFetchTimeoutMs?: number;
}

/** envoy.config.core.v3.ConfigSource: ads, self (treated as ads), path / path_config_source, api_config_source. */
export function decodeConfigSourceFull(r: Reader, ctx?: DecodeContext): DecodedConfigSource {
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
  } else if (which === 'path') {
    const p = r.requiredStr('path');
    if (p) source = { kind: 'path', path: p };
  } else if (which === 'path_config_source') {
    const pr = r.obj(which);
    if (pr) {
      const p = pr.requiredStr('path');
      pr.done();
      if (p) source = { kind: 'path', path: p };
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
  a.ignore('set_node_on_first_message_only');
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

/**
 * What a gRPC service is for: xDS services must use a static, non-EDS cluster (Envoy's rule);
 * others (tracing) need an existing cluster when the bootstrap has no CDS.
 */
export type GrpcRole = 'xds' | 'other';

/** The repeated `grpc_services` field of an ApiConfigSource. */
export function decodeGrpcServices(r: Reader, ctx?: DecodeContext, role: GrpcRole = 'other'): GrpcService[] {
  const out: GrpcService[] = [];
  for (const g of r.arr('grpc_services')) {
    const s = decodeGrpcService(g, ctx, role);
    if (s) out.push(s);
  }
  return out;
}

/** envoy.config.core.v3.GrpcService (envoy_grpc or google_grpc). */
export function decodeGrpcService(r: Reader, ctx?: DecodeContext, role: GrpcRole = 'other'): GrpcService | undefined {
  const which = r.oneof(['envoy_grpc', 'google_grpc'] as const);
  const timeoutMs = dur(r, 'timeout');
  let out: GrpcService | undefined;
  if (r.list('initial_metadata').length > 0)
    r.error('initial_metadata', 'initial metadata is not supported by meshlet');
  if (which === undefined) {
    r.issues.error(r.path, 'one of envoy_grpc, google_grpc must be set');
  } else if (which === 'envoy_grpc') {
    const e = r.obj(which);
    if (e) {
      const clusterName = e.requiredStr('cluster_name');
      const authority = e.str('authority');
      if (ctx) {
        const report = (m: string) => e.error('cluster_name', m);
        if (role === 'xds' && ctx.refs && clusterName) {
          const t = ctx.refs.staticClusters.get(clusterName);
          if (t === undefined)
            report(`envoy_grpc cluster ${JSON.stringify(clusterName)} must be a statically defined cluster`);
          else if (t === 'EDS')
            report(`envoy_grpc cluster ${JSON.stringify(clusterName)} must be a statically defined non-EDS cluster`);
        } else checkClusterRef(ctx, report, clusterName);
      }
      e.done();
      if (clusterName) {
        out = {
          kind: 'envoy_grpc',
          clusterName,
          ...(authority ? { authority } : {}),
          ...(timeoutMs !== undefined ? { timeoutMs } : {}),
        };
      }
    }
  } else {
    const g = r.obj(which);
    if (g) out = decodeGoogleGrpc(g, timeoutMs);
  }
  r.done();
  return out;
}

function decodeGoogleGrpc(g: Reader, timeoutMs: number | undefined): GrpcService | undefined {
  const targetUri = g.requiredStr('target_uri');
  const statPrefix = g.str('stat_prefix', '');
  let ssl: { rootCerts?: DataSource; privateKey?: DataSource; certChain?: DataSource } | undefined;
  const cc = g.obj('channel_credentials');
  if (cc) {
    const which = cc.oneof(['ssl_credentials', 'google_default', 'local_credentials'] as const);
    if (which === 'ssl_credentials') {
      const s = cc.obj(which);
      ssl = {};
      if (s) {
        for (const [key, field] of [
          ['root_certs', 'rootCerts'],
          ['private_key', 'privateKey'],
          ['cert_chain', 'certChain'],
        ] as const) {
          const d = s.obj(key);
          const ds = d ? decodeDataSource(d) : undefined;
          if (ds) ssl[field] = ds;
        }
        s.done();
      }
    } else if (which === 'google_default') {
      cc.error(which, 'Google default credentials are not supported by meshlet');
    } else if (which === 'local_credentials') {
      cc.obj(which)?.done();
    }
    cc.done();
  }
  if (g.list('call_credentials').length > 0)
    g.error('call_credentials', 'call credentials are not supported by meshlet');
  g.done();
  if (!targetUri) return undefined;
  return {
    kind: 'google_grpc',
    targetUri,
    statPrefix,
    ...(ssl ? { ssl } : {}),
    ...(timeoutMs !== undefined ? { timeoutMs } : {}),
  };
}

/** envoy.config.core.v3.Locality */
export function decodeLocality(r: Reader): Locality {
  const l = { region: r.str('region', ''), zone: r.str('zone', ''), subZone: r.str('sub_zone', '') };
  r.done();
  return l;
}

/**
 * envoy.config.core.v3.Metadata → its filter_metadata map (namespace → Struct as plain JSON).
 * typed_filter_metadata is accepted and ignored without a warning only when empty.
 */
export function decodeMetadata(r: Reader, key = 'metadata'): Readonly<Record<string, unknown>> {
  const m = r.obj(key);
  if (!m) return {};
  const fm = m.map('filter_metadata') ?? {};
  for (const [ns, v] of Object.entries(fm)) {
    if (v === null || typeof v !== 'object' || Array.isArray(v)) {
      m.issues.error(`${m.sub('filter_metadata')}.${ns}`, 'expected a map');
    }
  }
  m.done();
  // Copied: the decoded config is frozen, the caller's input is not.
  return structuredClone(fm);
}

/** envoy.config.core.v3.Node; defaults user_agent_name to "meshlet". */
export function decodeNode(r: Reader | undefined): NodeInfo {
  if (!r) return { id: '', cluster: '', metadata: {}, userAgentName: 'meshlet', userAgentVersion: '' };
  const id = r.str('id', '');
  const cluster = r.str('cluster', '');
  const metadata = structuredClone(r.map('metadata') ?? {});
  const lr = r.obj('locality');
  const locality = lr ? decodeLocality(lr) : undefined;
  const userAgentName = r.str('user_agent_name', 'meshlet');
  const userAgentVersion = r.str('user_agent_version', '');
  r.ignore('user_agent_build_version', 'client_features', 'extensions');
  r.done();
  return { id, cluster, metadata, ...(locality ? { locality } : {}), userAgentName, userAgentVersion };
}

/** `{name, typed_config}` extension config: the Any's type name (or undefined) and its reader. */
export function typedConfig(r: Reader): { type?: string; reader?: Reader } {
  const tc = r.any('typed_config');
  return tc ? { type: tc.type, reader: tc.reader } : {};
}
