/**
 * Decoder for envoy.config.listener.v3.Listener: address, filter chains and their matches,
 * default filter chain, listener filters, downstream TLS transport sockets, and the network
 * filters (HTTP connection manager, TCP proxy, RBAC, connection limit) by typed_config type.
 *
 * Checks what Envoy checks when adding a listener: each chain ends in exactly one terminal
 * filter, no two chains share the same match (or, with filter_chain_matcher, the same name),
 * server_names wildcards are whole labels only. Envoy defaults: bind_to_port true,
 * listener_filters_timeout 15 s (0 = no timeout), per-connection buffer 1 MiB.
 */
import type { Reader } from '../../../common/reader';
import type {
  Address,
  FilterChainConfig,
  FilterChainMatch,
  ListenerConfig,
  ListenerFilterConfig,
  ListenerFilterPredicate,
  NetworkFilterConfig,
} from '../types';
import { decodeAccessLogs } from './access-log';
import { decodeChainMatcher, type MatcherNames } from './chain-matcher';
import { AMBIENT_REASON, reportUnsupportedType } from './unsupported';
import type { DecodeContext } from './context';
import { decodeAddress, dur, enumOf, UNREAD_METADATA } from './core';
import { decodeHcm, T_HCM } from './hcm';
import { ISTIO_NETWORK_FILTERS } from './istio-network-filters';
import { decodeCidrList } from './matchers';
import { decodeNetworkRbac, T_NETWORK_RBAC } from './rbac';
import { decodeNetworkExtAuthz, NETWORK_EXT_AUTHZ_TYPE_NAME } from '../filters/network-ext-authz';
import { decodeTcpProxy, T_TCP_PROXY } from './tcp-proxy';
import { decodeTransportSocket } from './tls';

const T_CONNECTION_LIMIT = 'envoy.extensions.filters.network.connection_limit.v3.ConnectionLimit';

const LISTENER_FILTERS: Readonly<Record<string, ListenerFilterConfig['kind']>> = {
  'envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector': 'tls_inspector',
  'envoy.extensions.filters.listener.http_inspector.v3.HttpInspector': 'http_inspector',
  'envoy.extensions.filters.listener.original_dst.v3.OriginalDst': 'original_dst',
  'envoy.extensions.filters.listener.proxy_protocol.v3.ProxyProtocol': 'proxy_protocol',
  'envoy.filters.listener.tls_inspector': 'tls_inspector',
  'envoy.filters.listener.http_inspector': 'http_inspector',
  'envoy.filters.listener.original_dst': 'original_dst',
  'envoy.filters.listener.proxy_protocol': 'proxy_protocol',
};

type Direction = ListenerConfig['trafficDirection'];

interface NetworkFilterDecoder {
  /** Terminal filters (connection manager, TCP proxy) must be last in the chain, and only they. */
  readonly terminal: boolean;
  decode(t: Reader, name: string, ctx: DecodeContext, dir: Direction): NetworkFilterConfig | undefined;
}

/**
 * The network filters meshlet runs, by typed_config type: one decoder each. The runtime side of a
 * decoded `kind` is its factory in proxy/listeners/builtin-network-filters.ts (registered in
 * proxy/registry.ts); a new network filter needs both.
 */
const NETWORK_FILTERS: ReadonlyMap<string, NetworkFilterDecoder> = new Map<string, NetworkFilterDecoder>([
  [
    T_HCM,
    {
      terminal: true,
      decode: (t, name, ctx, dir) => {
        const hcm = decodeHcm(t, ctx, dir === 'UNSPECIFIED' ? undefined : dir);
        return hcm ? { kind: 'http_connection_manager', name, hcm } : undefined;
      },
    },
  ],
  [
    T_TCP_PROXY,
    {
      terminal: true,
      decode: (t, name, ctx) => {
        const tcp = decodeTcpProxy(t, ctx);
        return tcp ? { kind: 'tcp_proxy', name, tcp } : undefined;
      },
    },
  ],
  [T_NETWORK_RBAC, { terminal: false, decode: (t, name, ctx) => ({ kind: 'rbac', name, rbac: decodeNetworkRbac(t, ctx) }) }],
  [
    NETWORK_EXT_AUTHZ_TYPE_NAME,
    {
      terminal: false,
      decode: (t, name) => {
        const extAuthz = decodeNetworkExtAuthz(t);
        return extAuthz ? { kind: 'ext_authz', name, extAuthz } : undefined;
      },
    },
  ],
  [
    T_CONNECTION_LIMIT,
    {
      terminal: false,
      decode: (t, name) => {
        const statPrefix = t.requiredStr('stat_prefix');
        if (!t.has('max_connections')) t.error('max_connections', 'is required');
        const maxConnections = t.int('max_connections', 1, 1);
        t.done();
        return { kind: 'connection_limit', name, statPrefix, maxConnections };
      },
    },
  ],
  // Istio's own: istio.stats (native, TypedStruct, Wasm) and istio_authn.
  ...ISTIO_NETWORK_FILTERS,
]);

function decodeListenerFilter(r: Reader): ListenerFilterConfig | undefined {
  const name = r.str('name', '');
  let kind: ListenerFilterConfig['kind'] | undefined;
  if (r.has('typed_config')) {
    const tc = r.any('typed_config');
    if (tc) {
      kind = LISTENER_FILTERS[tc.type];
      // An unknown type is reported once, by name; its fields are not walked.
      if (!kind) reportUnsupportedType(tc, 'listener filter');
      else tc.reader.done();
    }
  } else {
    kind = LISTENER_FILTERS[name];
    if (!kind) r.error('name', `unsupported listener filter ${JSON.stringify(name)} (set typed_config)`);
  }
  const fd = r.obj('filter_disabled');
  const filterDisabled = fd ? decodeListenerFilterPredicate(fd) : undefined;
  r.done();
  return kind ? { kind, ...(filterDisabled ? { filterDisabled } : {}) } : undefined;
}

/** ListenerFilterChainMatchPredicate: or/and/not/any and destination_port_range. */
function decodeListenerFilterPredicate(r: Reader): ListenerFilterPredicate | undefined {
  const which = r.oneof(['or_match', 'and_match', 'not_match', 'any_match', 'destination_port_range'] as const);
  let out: ListenerFilterPredicate | undefined;
  if (which === undefined) {
    r.issues.error(r.path, 'one of or_match, and_match, not_match, any_match, destination_port_range must be set');
  } else if (which === 'any_match') {
    if (r.bool('any_match', false)) out = { kind: 'any' };
    else r.error('any_match', 'must be true');
  } else if (which === 'not_match') {
    const n = r.obj('not_match');
    const rule = n ? decodeListenerFilterPredicate(n) : undefined;
    if (rule) out = { kind: 'not', rule };
  } else if (which === 'destination_port_range') {
    const pr = r.obj('destination_port_range');
    if (pr) {
      const start = pr.int('start', 0, 0, 65536);
      const end = pr.int('end', 0, 0, 65536);
      if (end <= start) pr.error('end', `must be greater than start (${start}); the range is [start, end)`);
      pr.done();
      if (end > start) out = { kind: 'destination_port_range', start, end };
    }
  } else {
    const set = r.obj(which);
    if (set) {
      const rules: ListenerFilterPredicate[] = [];
      const list = set.arr('rules');
      if (list.length < 2) set.error('rules', 'needs at least 2 rules');
      for (const x of list) {
        const v = decodeListenerFilterPredicate(x);
        if (v) rules.push(v);
      }
      set.done();
      if (rules.length === list.length && list.length >= 2) out = { kind: which === 'or_match' ? 'or' : 'and', rules };
    }
  }
  r.done();
  return out;
}

function decodeFilterChainMatch(r: Reader | undefined, tlsInspector: boolean): FilterChainMatch {
  if (!r)
    return { prefixRanges: [], serverNames: [], applicationProtocols: [], sourcePrefixRanges: [], sourcePorts: [] };
  const destinationPort = r.optInt('destination_port', 1, 65535);
  const prefixRanges = decodeCidrList(r, 'prefix_ranges');
  const serverNames: string[] = [];
  for (const [i, n] of r.strList('server_names').entries()) {
    const s = n.toLowerCase();
    if (s.includes('*') && !(s.startsWith('*.') && s.indexOf('*', 1) < 0)) {
      r.issues.error(
        `${r.sub('server_names')}[${i}]`,
        `partial wildcards are not supported in server_names: ${JSON.stringify(n)}`,
      );
    } else serverNames.push(s);
  }
  const transportProtocol = r.str('transport_protocol');
  const applicationProtocols = r.strList('application_protocols');
  const sourcePrefixRanges = decodeCidrList(r, 'source_prefix_ranges');
  const sourcePorts: number[] = [];
  for (const [i, p] of r.list('source_ports').entries()) {
    if (typeof p === 'number' && Number.isInteger(p) && p >= 1 && p <= 65535) sourcePorts.push(p);
    else r.issues.error(`${r.sub('source_ports')}[${i}]`, `expected a port (1-65535), got ${JSON.stringify(p)}`);
  }
  const st = enumOf(r, 'source_type', ['ANY', 'SAME_IP_OR_LOOPBACK', 'EXTERNAL'] as const, 'ANY');
  if (st !== 'ANY') r.error('source_type', `${st} is not supported by meshlet`);
  if (r.list('direct_source_prefix_ranges').length > 0)
    r.error('direct_source_prefix_ranges', 'is not supported by meshlet');
  if (!tlsInspector && (serverNames.length > 0 || transportProtocol === 'tls' || applicationProtocols.length > 0)) {
    r.issues.warn(
      r.path,
      'server_names, transport_protocol "tls" and application_protocols need the tls_inspector listener filter: meshlet added it to this listener',
    );
  }
  r.done();
  return {
    ...(destinationPort !== undefined ? { destinationPort } : {}),
    prefixRanges,
    serverNames,
    ...(transportProtocol ? { transportProtocol } : {}),
    applicationProtocols,
    sourcePrefixRanges,
    sourcePorts,
  };
}

function decodeNetworkFilter(
  r: Reader,
  ctx: DecodeContext,
  dir: Direction,
): { value?: NetworkFilterConfig; type?: string } {
  const name = r.requiredStr('name');
  if (r.has('config_discovery'))
    r.error('config_discovery', 'filter config discovery (ECDS) is not supported by meshlet');
  r.raw('config_discovery');
  if (!r.has('typed_config') && !r.has('config_discovery')) r.error('typed_config', 'is required');
  const tc = r.any('typed_config');
  let out: NetworkFilterConfig | undefined;
  if (tc) {
    const decoder = NETWORK_FILTERS.get(tc.type);
    if (decoder) out = decoder.decode(tc.reader, name, ctx, dir);
    else reportUnsupportedType(tc, 'network filter');
  }
  r.done();
  return { value: out, type: tc?.type };
}

function isTerminalType(type: string | undefined): boolean {
  return type !== undefined && NETWORK_FILTERS.get(type)?.terminal === true;
}

function decodeFilterChain(
  r: Reader,
  ctx: DecodeContext,
  dir: Direction,
  tlsInspector: boolean,
): FilterChainConfig | undefined {
  const name = r.str('name', '');
  const match = decodeFilterChainMatch(r.obj('filter_chain_match'), tlsInspector);
  const handshakeTimeoutMs = dur(r, 'transport_socket_connect_timeout', 15_000);
  const ts = r.obj('transport_socket');
  const transportSocket = ts ? decodeTransportSocket(ts, ctx, 'downstream', handshakeTimeoutMs) : undefined;
  const filters: NetworkFilterConfig[] = [];
  const list = r.arr('filters');
  let ok = true;
  if (list.length === 0) {
    r.error(
      'filters',
      'a filter chain needs a terminal filter (http_connection_manager or tcp_proxy) as its last filter',
    );
    ok = false;
  }
  for (const [i, f] of list.entries()) {
    const { value: v, type } = decodeNetworkFilter(f, ctx, dir);
    const last = i === list.length - 1;
    if (v && isTerminalType(type) && !last) {
      f.issues.error(
        f.path,
        `terminal filter named ${v.name} of type ${type} must be the last filter in a network filter chain`,
      );
    } else if (v && !isTerminalType(type) && last) {
      f.issues.error(
        f.path,
        `non-terminal filter named ${v.name} of type ${type} is the last filter in a network filter chain`,
      );
    }
    if (v) filters.push(v);
    else ok = false;
  }
  r.warnNoEffectOnce('metadata', UNREAD_METADATA);
  r.done();
  if (!ok) return undefined;
  return { name, match, ...(transportSocket ? { transportSocket } : {}), filters };
}

function defaultName(a: Address | undefined): string {
  if (!a) return '';
  return a.kind === 'socket' ? `${a.host}_${a.port}` : a.path;
}

/** envoy.config.listener.v3.Listener; a missing name becomes "<ip>_<port>" (Istio's convention). */
export function decodeListenerR(r: Reader, ctx: DecodeContext): ListenerConfig | undefined {
  // Internal listeners carry no address: report the feature, not the missing field.
  const internal = r.has('internal_listener');
  r.raw('internal_listener');
  if (internal) r.error('internal_listener', `internal listeners (ambient/HBONE) are not supported: ${AMBIENT_REASON}`);
  const ar = r.obj('address');
  if (!ar && !internal) r.error('address', 'is required');
  const address = ar ? decodeAddress(ar, { ipHint: 'a listener binds an IP address' }) : undefined;
  const name = r.str('name') || defaultName(address);
  const trafficDirection = enumOf(
    r,
    'traffic_direction',
    ['UNSPECIFIED', 'INBOUND', 'OUTBOUND'] as const,
    'UNSPECIFIED',
  );
  const listenerFilters: ListenerFilterConfig[] = [];
  for (const f of r.arr('listener_filters')) {
    const v = decodeListenerFilter(f);
    if (v) listenerFilters.push(v);
  }
  const tlsInspector = listenerFilters.some((f) => f.kind === 'tls_inspector');
  // With filter_chain_matcher, chains are selected by name only: names must be unique and
  // filter_chain_match is ignored (Envoy). Without it, names are labels and may repeat (istiod's
  // virtualInbound reuses them), while two chains with the same match are ambiguous.
  const fcm = r.obj('filter_chain_matcher');
  const matcherNames: MatcherNames = { referenced: [] };
  const filterChainMatcher = fcm ? decodeChainMatcher(fcm, matcherNames) : undefined;
  const filterChains: FilterChainConfig[] = [];
  const seenMatch = new Map<string, number>();
  const seenName = new Set<string>();
  for (const [i, c] of r.arr('filter_chains').entries()) {
    const fc = decodeFilterChain(c, ctx, trafficDirection, tlsInspector);
    if (!fc) continue;
    if (fcm) {
      if (!fc.name) c.error('name', 'filter chains must be named when filter_chain_matcher is set');
      else if (seenName.has(fc.name))
        c.error('name', `filter chain name ${JSON.stringify(fc.name)} is used by another filter chain (names must be unique with filter_chain_matcher)`);
      seenName.add(fc.name);
    } else {
      const key = JSON.stringify(fc.match);
      const prev = seenMatch.get(key);
      if (prev !== undefined) {
        c.error(
          'filter_chain_match',
          `multiple filter chains with the same matching rules are defined (also filter_chains[${prev}])`,
        );
      }
      seenMatch.set(key, i);
    }
    filterChains.push(fc);
  }
  for (const ref of matcherNames.referenced) {
    if (!seenName.has(ref.name))
      r.issues.warn(ref.path, `no filter chain is named ${JSON.stringify(ref.name)}: connections matched here use the default filter chain or are closed`);
  }
  const dr = r.obj('default_filter_chain');
  const defaultFilterChain = dr ? decodeFilterChain(dr, ctx, trafficDirection, tlsInspector) : undefined;
  if (filterChains.length === 0 && r.list('filter_chains').length === 0 && !dr)
    r.issues.error(r.sub('filter_chains'), 'no filter chains specified');
  const useOriginalDst = r.bool('use_original_dst', false);
  const bindToPort = r.bool('bind_to_port', true);
  const listenerFiltersTimeoutMs = dur(r, 'listener_filters_timeout', 15_000);
  const continueOnListenerFiltersTimeout = r.bool('continue_on_listener_filters_timeout', false);
  const perConnectionBufferLimitBytes = r.int('per_connection_buffer_limit_bytes', 1_048_576, 0, 0xffffffff);
  const accessLog = decodeAccessLogs(r);
  r.warnNoEffectOnce('metadata', UNREAD_METADATA);
  r.done();
  if (!address || !name) return undefined;
  return {
    name,
    address,
    filterChains,
    ...(defaultFilterChain ? { defaultFilterChain } : {}),
    ...(filterChainMatcher ? { filterChainMatcher } : {}),
    useOriginalDst,
    bindToPort,
    listenerFilters,
    listenerFiltersTimeoutMs,
    continueOnListenerFiltersTimeout,
    perConnectionBufferLimitBytes,
    trafficDirection,
    accessLog,
  };
}
