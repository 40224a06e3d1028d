/**
 * Decoders for envoy.config.core.v3 building blocks shared by every resource: Address, DataSource,
 * Node, Locality, Metadata, Percent, and enum helpers that know proto
 * enum numbers. Pure functions over a Reader; every problem is recorded with its path.
 *
 * Leans strict: an address that must be an IP (listeners, STATIC endpoints) is rejected when it
 * is a hostname, as Envoy does ("malformed IP address").
 */
import { isIP } from 'node:net';
import type { Reader } from '../../../common/reader';
import type { Address, DataSource, Locality, NodeInfo } from '../types';

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
    r.error(which, 'envoy_internal_address (ambient/HBONE internal listeners) is not supported: meshlet implements the sidecar data plane, not ambient');
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
  r.warnNoEffect('watched_directory', 'the file is read at start-up and when the config changes, not watched');
  r.done();
  return out;
}

/** Reads a DataSource's bytes at decode time (control-plane side). */
export { dataSourceBytes } from '../../../common/data-source';

/** envoy.config.core.v3.Locality */
export function decodeLocality(r: Reader): Locality {
  const l = { region: r.str('region', ''), zone: r.str('zone', ''), subZone: r.str('sub_zone', '') };
  r.done();
  return l;
}

/** Why listener, filter chain and route `metadata` is warned about (once per configuration). */
export const UNREAD_METADATA =
  'nothing in meshlet reads listener, filter chain or route metadata (it stays in /config_dump)';

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
  r.done();
  return { id, cluster, metadata, ...(locality ? { locality } : {}), userAgentName, userAgentVersion };
}

/** `{name, typed_config}` extension config: the Any's type name (or undefined) and its reader. */
export function typedConfig(r: Reader): { type?: string; reader?: Reader } {
  const tc = r.any('typed_config');
  return tc ? { type: tc.type, reader: tc.reader } : {};
}
