/**
 * The bootstrap loader: reads a YAML or JSON file in the shape of Envoy's v3 Bootstrap and turns
 * it into the frozen `Bootstrap` model (node, admin, static_resources, dynamic_resources,
 * tracing), then cross-checks it the way Envoy does at startup: unique listener names and
 * addresses, unique cluster names, xDS gRPC clusters that are static, and (without CDS) route,
 * tcp_proxy and tracing clusters that exist. Dangling names are reported at the field that names
 * them.
 *
 * Control plane side: it throws one ConfigError listing every `path: message`, and returns the
 * warnings (unsupported fields) for the caller to print.
 */
import { decodeLayeredRuntime } from './envoy/runtime';
import { readFileSync } from 'node:fs';
import { dirname, extname } from 'node:path';
import { ConfigError, type FieldIssue } from '../../common/errors';
import { decodeClusterR } from './envoy/cluster';
import type { DecodeContext, StaticRefs } from './envoy/context';
import { API_TYPES, decodeConfigSourceFull } from './envoy/config-source';
import { decodeAddress, decodeNode, dur, enumOf } from './envoy/core';
import { decodeGrpcServices } from './envoy/grpc-service';
import { deepFreeze } from './envoy/freeze';
import { decodeListenerR } from './envoy/listener';
import { decodeSecretR } from './envoy/secret';
import { decodeTracingProvider } from './envoy/tracing';
import { Issues, Reader } from '../../common/reader';
import type { Bootstrap, ClusterConfig, DynamicResources, GrpcService, ListenerConfig, SecretConfig } from './types';
import { DEFAULT_YAML_MAX_BYTES, parseYaml } from '../../common/yaml';

export interface LoadedBootstrap {
  readonly bootstrap: Bootstrap;
  /** Fields meshlet read but does not support, and similar notes, for the caller to print. */
  readonly warnings: readonly FieldIssue[];
}

const CLUSTER_TYPE_NAMES = ['STATIC', 'STRICT_DNS', 'LOGICAL_DNS', 'EDS', 'ORIGINAL_DST'];

/** name → cluster type of the raw entries of a list, read before decoding so references resolve. */
function rawNames(r: Reader | undefined, key: string): Map<string, string> {
  const out = new Map<string, string>();
  if (!r) return out;
  const list = r.raw(key);
  if (!Array.isArray(list)) return out;
  for (const item of list) {
    if (item && typeof item === 'object' && typeof (item as { name?: unknown }).name === 'string') {
      const t = (item as { type?: unknown }).type;
      out.set(
        (item as { name: string }).name,
        typeof t === 'number' ? (CLUSTER_TYPE_NAMES[t] ?? 'STATIC') : typeof t === 'string' ? t.toUpperCase() : 'STATIC',
      );
    }
  }
  return out;
}

function decodeDynamic(r: Reader, ctx: DecodeContext): DynamicResources {
  let adsConfig: DynamicResources['adsConfig'];
  const a = r.obj('ads_config');
  if (a) {
    const apiType = enumOf(
      a,
      'api_type',
      API_TYPES,
      'GRPC',
    );
    if (apiType !== 'GRPC' && apiType !== 'DELTA_GRPC')
      a.error('api_type', `${apiType} is not supported by meshlet (expected GRPC or DELTA_GRPC)`);
    const grpcServices = decodeGrpcServices(a, ctx, 'xds');
    if (a.list('grpc_services').length === 0) a.error('grpc_services', 'at least one gRPC service is required');
    const setNodeOnFirstMessageOnly = a.bool('set_node_on_first_message_only', false);
    enumOf(a, 'transport_api_version', ['AUTO', 'V2', 'V3'] as const, 'V3');
    a.done();
    adsConfig = { apiType: apiType === 'DELTA_GRPC' ? 'DELTA_GRPC' : 'GRPC', grpcServices, setNodeOnFirstMessageOnly };
  }
  let initialFetchTimeoutMs = 15_000;
  const src = (key: string) => {
    const s = r.obj(key);
    if (!s) return undefined;
    const d = decodeConfigSourceFull(s, ctx, { allowPath: true });
    if (d.initialFetchTimeoutMs !== undefined) initialFetchTimeoutMs = d.initialFetchTimeoutMs;
    return d.source;
  };
  const ldsConfig = src('lds_config');
  const cdsConfig = src('cds_config');
  // A non-aggregated (api_config_source) LDS/CDS is requested on the ADS stream: right only when
  // it names the ADS server. Anything else would silently ask the wrong server.
  const target = (g: GrpcService | undefined): string | undefined =>
    g === undefined ? undefined : g.kind === 'envoy_grpc' ? `cluster ${g.clusterName}` : `target ${g.targetUri}`;
  const adsTarget = target(adsConfig?.grpcServices[0]);
  for (const [key, c] of [['lds_config', ldsConfig], ['cds_config', cdsConfig]] as const) {
    if (c?.kind !== 'api_config_source') continue;
    const own = target(c.grpc[0]);
    if (adsTarget === undefined)
      r.error(`${key}.api_config_source`, `meshlet requests ${key === 'lds_config' ? 'listeners' : 'clusters'} on one ADS stream: set dynamic_resources.ads_config (to ${own}) or use ads: {}`);
    else if (own !== adsTarget)
      r.error(`${key}.api_config_source`, `names ${own} but ads_config names ${adsTarget}; meshlet requests every type on the one ADS stream, so both must name the same server`);
  }
  if (r.has('lds_resources_locator') || r.has('cds_resources_locator')) {
    r.error(
      r.has('lds_resources_locator') ? 'lds_resources_locator' : 'cds_resources_locator',
      'xdstp:// resource locators are not supported by meshlet',
    );
  }
  r.raw('lds_resources_locator');
  r.raw('cds_resources_locator');
  r.done();
  return {
    ...(adsConfig ? { adsConfig } : {}),
    ...(ldsConfig ? { ldsConfig } : {}),
    ...(cdsConfig ? { cdsConfig } : {}),
    initialFetchTimeoutMs,
  };
}

function addressKey(l: ListenerConfig): string | undefined {
  if (!l.bindToPort) return undefined;
  if (l.address.kind === 'pipe') return `pipe:${l.address.path}`;
  return l.address.port === 0 ? undefined : `${l.address.host}:${l.address.port}`;
}

/** Validates a parsed bootstrap; throws ConfigError listing every problem. */
export function decodeBootstrap(raw: unknown, ctx0: DecodeContext, what = 'bootstrap'): LoadedBootstrap {
  const issues = new Issues();
  const r = Reader.of(raw, '', issues);
  if (!r) throw new ConfigError(what, issues.errors, 'MESHLET_ERR_BOOTSTRAP');
  const node = decodeNode(r.obj('node'));

  let admin: Bootstrap['admin'];
  const ar = r.obj('admin');
  if (ar) {
    const addr = ar.obj('address');
    if (!addr) ar.error('address', 'is required');
    const address = addr
      ? decodeAddress(addr, { allowHostname: false, ipHint: 'admin binds an IP address' })
      : undefined;
    const accessLogPath = ar.str('access_log_path');
    if (accessLogPath !== undefined) ar.issues.warn(ar.sub('access_log_path'), 'deprecated in Envoy; use access_log');
    ar.done();
    if (address) admin = { address, ...(accessLogPath ? { accessLogPath } : {}) };
  }

  const sr = r.obj('static_resources');
  const dr = r.obj('dynamic_resources');
  const refs: StaticRefs = {
    staticClusters: rawNames(sr, 'clusters'),
    checkClusters: !(dr?.has('cds_config') ?? false),
    staticSecrets: new Set(rawNames(sr, 'secrets').keys()),
    adsConfigured: dr?.has('ads_config') ?? false,
  };
  const ctx: DecodeContext = { ...ctx0, refs };

  const secrets: SecretConfig[] = [];
  const clusters: ClusterConfig[] = [];
  const listeners: ListenerConfig[] = [];
  if (sr) {
    const secretNames = new Map<string, number>();
    for (const [i, s] of sr.arr('secrets').entries()) {
      const v = decodeSecretR(s, ctx);
      if (!v) continue;
      const prev = secretNames.get(v.name);
      if (prev !== undefined)
        s.error('name', `duplicate secret name ${JSON.stringify(v.name)} (also static_resources.secrets[${prev}])`);
      if (prev === undefined) secretNames.set(v.name, i);
      secrets.push(v);
    }
    const clusterNames = new Map<string, number>();
    for (const [i, c] of sr.arr('clusters').entries()) {
      const v = decodeClusterR(c, ctx);
      if (!v) continue;
      const prev = clusterNames.get(v.name);
      if (prev !== undefined)
        c.error('name', `duplicate cluster name ${JSON.stringify(v.name)} (also static_resources.clusters[${prev}])`);
      if (prev === undefined) clusterNames.set(v.name, i);
      clusters.push(v);
    }
    const listenerNames = new Map<string, number>();
    const addresses = new Map<string, number>();
    for (const [i, l] of sr.arr('listeners').entries()) {
      const v = decodeListenerR(l, ctx);
      if (!v) continue;
      const prev = listenerNames.get(v.name);
      if (prev !== undefined)
        l.error('name', `duplicate listener name ${JSON.stringify(v.name)} (also static_resources.listeners[${prev}])`);
      if (prev === undefined) listenerNames.set(v.name, i);
      const key = addressKey(v);
      const prevAddr = key === undefined ? undefined : addresses.get(key);
      if (prevAddr !== undefined)
        l.error('address', `address ${key} is already used by static_resources.listeners[${prevAddr}]`);
      if (key !== undefined && prevAddr === undefined) addresses.set(key, i);
      listeners.push(v);
    }
    sr.done();
  }

  const dynamicResources = dr ? decodeDynamic(dr, ctx) : undefined;
  // Envoy refuses to open an xDS stream without a node identity ("node 'id' and 'cluster' are required").
  if (dynamicResources?.adsConfig) {
    const n = r.has('node') ? r.sub('node') : undefined;
    if (!node.id) issues.error(n ? `${n}.id` : 'node', 'node id is required when dynamic_resources.ads_config is set');
    if (!node.cluster)
      issues.error(n ? `${n}.cluster` : 'node', 'node cluster is required when dynamic_resources.ads_config is set');
  }

  let tracing: Bootstrap['tracing'];
  const tr = r.obj('tracing');
  if (tr) {
    const h = tr.obj('http');
    if (h) tracing = decodeTracingProvider(h, ctx);
    tr.done();
  }
  const statsFlushIntervalMs = dur(r, 'stats_flush_interval');
  if (statsFlushIntervalMs !== undefined)
    r.warnAt('stats_flush_interval', 'accepted, but has no effect in meshlet: stats are computed when scraped, there is no flush');
  let localClusterName: string | undefined;
  const cm = r.obj('cluster_manager');
  if (cm) {
    const n = cm.str('local_cluster_name', '');
    if (n !== '') {
      // As Envoy: the local cluster must be a static one (it exists before CDS).
      if (!clusters.some((c) => c.name === n)) cm.error('local_cluster_name', `unknown cluster ${JSON.stringify(n)}: the local cluster must be in static_resources.clusters`);
      else localClusterName = n;
    }
    cm.done();
  }
  const lr = r.obj('layered_runtime');
  const layeredRuntime = lr ? decodeLayeredRuntime(lr) : undefined;
  r.done();

  if (!issues.ok) throw new ConfigError(what, issues.errors, 'MESHLET_ERR_BOOTSTRAP', issues.warnings);
  const bootstrap: Bootstrap = {
    node,
    ...(admin ? { admin } : {}),
    staticResources: { listeners, clusters, secrets },
    ...(dynamicResources ? { dynamicResources } : {}),
    ...(tracing ? { tracing } : {}),
    ...(statsFlushIntervalMs !== undefined ? { statsFlushIntervalMs } : {}),
    ...(layeredRuntime ? { layeredRuntime } : {}),
    ...(localClusterName ? { localClusterName } : {}),
  };
  return { bootstrap: deepFreeze(bootstrap), warnings: issues.warnings };
}

/** Parses bootstrap text: JSON when the name ends in .json (or the text starts with "{"), else YAML. */
export function parseBootstrapText(text: string, fileName: string): unknown {
  const what = `bootstrap ${fileName}`;
  const ext = extname(fileName).toLowerCase();
  if (text.length > DEFAULT_YAML_MAX_BYTES) {
    const message = `is ${text.length} bytes, over the ${DEFAULT_YAML_MAX_BYTES}-byte limit for a bootstrap`;
    throw new ConfigError(what, [{ path: '(file)', message }], 'MESHLET_ERR_BOOTSTRAP');
  }
  if (ext === '.json' || (ext !== '.yaml' && ext !== '.yml' && text.trimStart().startsWith('{'))) {
    try {
      return JSON.parse(text);
    } catch (e) {
      const msg = (e as Error).message;
      const m = /position (\d+)/.exec(msg);
      const line = m ? text.slice(0, Number(m[1])).split('\n').length : undefined;
      throw new ConfigError(
        what,
        [{ path: line ? `line ${line}` : '(file)', message: `invalid JSON: ${msg}` }],
        'MESHLET_ERR_BOOTSTRAP',
      );
    }
  }
  // The YAML parser loads only for YAML bootstraps (JSON ones, as injected sidecars use, skip it).
  const r = parseYaml(text);
  if (!r.ok) throw new ConfigError(what, r.errors, 'MESHLET_ERR_BOOTSTRAP');
  return r.value;
}

/**
 * Reads and validates a bootstrap file. Relative file names in it (direct_response bodies)
 * resolve against the file's directory unless ctx.baseDir says otherwise.
 */
export function loadBootstrap(path: string, ctx: DecodeContext): LoadedBootstrap {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new ConfigError(
      `bootstrap ${path}`,
      [{ path: '(file)', message: `cannot read: ${(e as Error).message}` }],
      'MESHLET_ERR_BOOTSTRAP',
    );
  }
  const raw = parseBootstrapText(text, path);
  return decodeBootstrap(raw, { ...ctx, baseDir: ctx.baseDir ?? dirname(path) }, `bootstrap ${path}`);
}
