/**
 * Decoder for envoy.config.cluster.v3.Cluster: discovery type, LB policy and its config,
 * endpoints (inline load_assignment or EDS), circuit breakers, upstream HTTP protocol
 * (typed_extension_protocol_options HttpProtocolOptions, or the legacy fields), upstream TLS,
 * health checks, outlier detection, DNS settings and the rest of ClusterConfig.
 *
 * Envoy's cross-field rules are enforced: STATIC needs IP endpoints, LOGICAL_DNS exactly one
 * endpoint, ORIGINAL_DST only with CLUSTER_PROVIDED and no load_assignment. Defaults are Envoy's
 * (connect_timeout 5 s, dns_refresh_rate 5 s, cleanup_interval 5 s, panic threshold 50 %).
 */
import { isIP } from 'node:net';
import { Reader } from '../../../common/reader';
import type { CircuitBreakerThresholds, ClusterConfig, ClusterType, Http2Options, LbPolicyName, TransportSocketMatch, ZoneAwareLbConfig } from '../types';
import type { DecodeContext } from './context';
import { decodeConfigSource } from './config-source';
import { decodeMetadata, dur, enumNamed, enumOf, percent } from './core';
import { decodeClusterLoadAssignmentR, endpointCount } from './endpoint';
import { DEFAULT_HTTP2, decodeHttp2Options } from './hcm';
import { decodeHealthCheck } from './health-check';
import { headerName } from './matchers';
import { decodeOutlierDetection } from './outlier';
import { decodeTransportSocket } from './tls';
import { decodeClusterFilters } from '../filters/metadata-exchange';

const T_HTTP_PROTOCOL_OPTIONS = 'envoy.extensions.upstreams.http.v3.HttpProtocolOptions';
const LB_POLICIES = {
  ROUND_ROBIN: 0,
  LEAST_REQUEST: 1,
  RING_HASH: 2,
  RANDOM: 3,
  MAGLEV: 5,
  CLUSTER_PROVIDED: 6,
  LOAD_BALANCING_POLICY_CONFIG: 7,
  PEAK_EWMA: -1,
} as const;
const CLUSTER_TYPES = { STATIC: 0, STRICT_DNS: 1, LOGICAL_DNS: 2, EDS: 3, ORIGINAL_DST: 4 } as const;
const MAX_RING = 8_388_608;

function isPrime(n: number): boolean {
  if (n < 2) return false;
  for (let i = 2; i * i <= n; i++) if (n % i === 0) return false;
  return true;
}

function decodeCircuitBreakers(r: Reader): CircuitBreakerThresholds[] {
  const out: CircuitBreakerThresholds[] = [];
  const seen = new Set<string>();
  for (const t of r.arr('thresholds')) {
    const priority = enumOf(t, 'priority', ['DEFAULT', 'HIGH'] as const, 'DEFAULT');
    if (seen.has(priority)) t.error('priority', `duplicate thresholds for priority ${priority}`);
    seen.add(priority);
    let retryBudget: CircuitBreakerThresholds['retryBudget'];
    const rb = t.obj('retry_budget');
    if (rb) {
      retryBudget = {
        budgetPercent: percent(rb, 'budget_percent', 20),
        minRetryConcurrency: rb.int('min_retry_concurrency', 3, 0, 0xffffffff),
      };
      rb.done();
    }
    out.push({
      priority,
      maxConnections: t.int('max_connections', 1024, 0, 0xffffffff),
      maxPendingRequests: t.int('max_pending_requests', 1024, 0, 0xffffffff),
      maxRequests: t.int('max_requests', 1024, 0, 0xffffffff),
      maxRetries: t.int('max_retries', 3, 0, 0xffffffff),
      ...(retryBudget ? { retryBudget } : {}),
    });
    t.done();
  }
  r.done();
  return out;
}

interface Protocol {
  upstreamProtocol: ClusterConfig['upstreamProtocol'];
  http2: Http2Options;
  upstreamIdleTimeoutMs: number;
  maxRequestsPerConnection: number;
}

function decodeCommonHttp(r: Reader, p: Protocol): void {
  p.upstreamIdleTimeoutMs = dur(r, 'idle_timeout', p.upstreamIdleTimeoutMs);
  p.maxRequestsPerConnection = r.int('max_requests_per_connection', p.maxRequestsPerConnection, 0, 0xffffffff);
  r.done();
}

/** envoy.extensions.upstreams.http.v3.HttpProtocolOptions */
function decodeHttpProtocolOptions(r: Reader, p: Protocol): void {
  const which = r.oneof(['explicit_http_config', 'use_downstream_protocol_config', 'auto_config'] as const);
  const s = which ? r.obj(which) : undefined;
  if (which === 'auto_config') r.error(which, 'auto_config (ALPN-based upstream protocol) is not supported by meshlet');
  else if (s && which === 'explicit_http_config') {
    const v = s.oneof(['http_protocol_options', 'http2_protocol_options', 'http3_protocol_options'] as const);
    if (v === 'http3_protocol_options') s.error(v, 'HTTP/3 is not supported by meshlet');
    else if (v === 'http2_protocol_options') {
      p.upstreamProtocol = 'http2';
      p.http2 = decodeHttp2Options(s.obj(v));
    } else if (v === 'http_protocol_options') {
      p.upstreamProtocol = 'http1';
      s.obj(v)?.done();
    } else s.issues.error(s.path, 'one of http_protocol_options, http2_protocol_options must be set');
  } else if (s && which === 'use_downstream_protocol_config') {
    p.upstreamProtocol = 'downstream';
    s.obj('http_protocol_options')?.done();
    const h2 = s.obj('http2_protocol_options');
    if (h2) p.http2 = decodeHttp2Options(h2);
    if (s.has('http3_protocol_options')) s.error('http3_protocol_options', 'HTTP/3 is not supported by meshlet');
    s.raw('http3_protocol_options');
  }
  s?.done();
  const c = r.obj('common_http_protocol_options');
  if (c) decodeCommonHttp(c, p);
  const u = r.obj('upstream_http_protocol_options');
  if (u) {
    u.done();
  }
  if (r.list('http_filters').length > 0) r.error('http_filters', 'upstream HTTP filters are not supported by meshlet');
  r.done();
}

function decodeProtocol(r: Reader): Protocol {
  const p: Protocol = {
    upstreamProtocol: 'http1',
    http2: DEFAULT_HTTP2,
    upstreamIdleTimeoutMs: 3_600_000,
    maxRequestsPerConnection: 0,
  };
  // Legacy cluster-level fields first, so typed_extension_protocol_options wins when both are set.
  const h2 = r.obj('http2_protocol_options');
  if (h2) {
    p.upstreamProtocol = 'http2';
    p.http2 = decodeHttp2Options(h2);
  }
  r.obj('http_protocol_options')?.done();
  const sel = enumOf(
    r,
    'protocol_selection',
    ['USE_CONFIGURED_PROTOCOL', 'USE_DOWNSTREAM_PROTOCOL'] as const,
    'USE_CONFIGURED_PROTOCOL',
  );
  if (sel === 'USE_DOWNSTREAM_PROTOCOL') p.upstreamProtocol = 'downstream';
  const c = r.obj('common_http_protocol_options');
  if (c) decodeCommonHttp(c, p);
  p.maxRequestsPerConnection = r.int('max_requests_per_connection', p.maxRequestsPerConnection, 0, 0xffffffff);
  const opts = r.map('typed_extension_protocol_options');
  if (opts) {
    const base = r.sub('typed_extension_protocol_options');
    for (const [key, raw] of Object.entries(opts)) {
      const er = Reader.of(raw, `${base}.${key}`, r.issues);
      const any = er?.asAny();
      if (!er || !any) continue;
      if (any.type === T_HTTP_PROTOCOL_OPTIONS) decodeHttpProtocolOptions(er, p);
      else er.issues.error(er.sub('@type'), `unsupported protocol options type ${any.type}`);
    }
  }
  return p;
}

function decodeLbConfig(r: Reader, policy: LbPolicyName): ClusterConfig['lbConfig'] {
  const out: { -readonly [K in keyof ClusterConfig['lbConfig']]: ClusterConfig['lbConfig'][K] } = {};
  const rh = r.obj('ring_hash_lb_config');
  if (rh || policy === 'RING_HASH') {
    let minRingSize = 1024;
    let maxRingSize = MAX_RING;
    let hashFunction: 'XX_HASH' | 'MURMUR_HASH_2' = 'XX_HASH';
    if (rh) {
      minRingSize = rh.int('minimum_ring_size', 1024, 1, MAX_RING);
      maxRingSize = rh.int('maximum_ring_size', MAX_RING, 1, MAX_RING);
      if (minRingSize > maxRingSize)
        rh.error('minimum_ring_size', `must not be larger than maximum_ring_size (${maxRingSize})`);
      hashFunction = enumOf(rh, 'hash_function', ['XX_HASH', 'MURMUR_HASH_2'] as const, 'XX_HASH');
      rh.done();
    }
    out.ringHash = { minRingSize, maxRingSize, hashFunction };
  }
  const lr = r.obj('least_request_lb_config');
  if (lr || policy === 'LEAST_REQUEST') {
    out.leastRequest = { choiceCount: lr ? lr.int('choice_count', 2, 2, 0xffffffff) : 2 };
    if (lr) {
      lr.done();
    }
  }
  const mg = r.obj('maglev_lb_config');
  if (mg || policy === 'MAGLEV') {
    const tableSize = mg ? mg.int('table_size', 65537, 1, 5_000_011) : 65537;
    if (mg && !isPrime(tableSize)) mg.error('table_size', `must be a prime number, got ${tableSize}`);
    mg?.done();
    out.maglev = { tableSize };
  }
  // PEAK_EWMA is meshlet's own policy (linkerd2-proxy defaults: 10 s decay, 30 ms default RTT).
  if (policy === 'PEAK_EWMA') out.peakEwma = { decayMs: 10_000, defaultRttMs: 30 };
  return out;
}

/** envoy.config.cluster.v3.Cluster */
export function decodeClusterR(r: Reader, ctx: DecodeContext): ClusterConfig | undefined {
  const name = r.requiredStr('name');
  let type: ClusterType = 'STATIC';
  if (r.has('cluster_type')) {
    const ct = r.obj('cluster_type');
    const n = ct?.str('name', '');
    const tt = ct?.any('typed_config')?.type;
    r.error(
      'cluster_type',
      `custom cluster types are not supported by meshlet (got ${tt ?? n ?? 'unknown'}); use type`,
    );
  } else type = enumNamed(r, 'type', CLUSTER_TYPES, 'STATIC');
  const lbPolicy0 = enumNamed(r, 'lb_policy', LB_POLICIES, 'ROUND_ROBIN');
  let lbPolicy: LbPolicyName = lbPolicy0 === 'LOAD_BALANCING_POLICY_CONFIG' ? 'ROUND_ROBIN' : lbPolicy0;
  if (lbPolicy0 === 'LOAD_BALANCING_POLICY_CONFIG' || r.has('load_balancing_policy')) {
    r.error('load_balancing_policy', 'typed load balancing policies are not supported by meshlet; use lb_policy');
  }
  r.raw('load_balancing_policy');
  if (type === 'ORIGINAL_DST' && lbPolicy !== 'CLUSTER_PROVIDED') {
    r.error(
      'lb_policy',
      `LB policy ${lbPolicy} is not valid for cluster type ORIGINAL_DST; only CLUSTER_PROVIDED is allowed`,
    );
    lbPolicy = 'CLUSTER_PROVIDED';
  } else if (type !== 'ORIGINAL_DST' && lbPolicy === 'CLUSTER_PROVIDED') {
    r.error('lb_policy', `LB policy CLUSTER_PROVIDED is not valid for cluster type ${type}; it requires ORIGINAL_DST`);
  }
  const connectTimeoutMs = dur(r, 'connect_timeout', 5000);
  if (connectTimeoutMs <= 0) r.error('connect_timeout', 'must be greater than 0');
  const lbConfig = decodeLbConfig(r, lbPolicy);

  let edsServiceName: string | undefined;
  let edsConfigSource: ClusterConfig['edsConfigSource'];
  const eds = r.obj('eds_cluster_config');
  if (eds) {
    edsServiceName = eds.str('service_name') || undefined;
    const cs = eds.obj('eds_config');
    if (cs) edsConfigSource = decodeConfigSource(cs, ctx);
    eds.done();
    if (type !== 'EDS') r.error('eds_cluster_config', `is only valid for EDS clusters (type is ${type})`);
  }
  if (type === 'EDS') {
    if (!eds) r.error('eds_cluster_config', 'is required for an EDS cluster');
    else if (!eds.has('eds_config')) eds.error('eds_config', 'is required');
  }

  const dns = type === 'STRICT_DNS' || type === 'LOGICAL_DNS';
  let loadAssignment: ClusterConfig['loadAssignment'];
  const la = r.obj('load_assignment');
  if (la) {
    loadAssignment = decodeClusterLoadAssignmentR(la, ctx, {
      allowHostname: dns,
      ipHint: `a ${type} cluster needs IP addresses; use STRICT_DNS or LOGICAL_DNS for hostnames`,
    });
    if (type === 'ORIGINAL_DST')
      r.error('load_assignment', 'ORIGINAL_DST clusters must have no load assignment configured');
    for (const [i, l] of loadAssignment.endpoints.entries()) {
      for (const [j, e] of l.lbEndpoints.entries()) {
        if (dns && e.address.kind !== 'socket') {
          r.issues.error(
            `${la.sub(`endpoints[${i}].lb_endpoints[${j}].endpoint.address`)}`,
            `${type} clusters need a socket_address with a hostname and port`,
          );
        }
      }
    }
  }
  if (
    type === 'LOGICAL_DNS' &&
    (!loadAssignment || endpointCount(loadAssignment) !== 1 || loadAssignment.endpoints.length !== 1)
  ) {
    r.error('load_assignment', 'LOGICAL_DNS clusters must have a single locality_lb_endpoint and a single lb_endpoint');
  }

  const cb = r.obj('circuit_breakers');
  const circuitBreakers = cb ? decodeCircuitBreakers(cb) : [];
  const proto = decodeProtocol(r);
  const ts = r.obj('transport_socket');
  const transportSocket = ts ? decodeTransportSocket(ts, ctx, 'upstream') : undefined;
  const transportSocketMatches = decodeTransportSocketMatches(r, ctx);
  // The matcher form selects sockets by an xds matcher tree; meshlet does the legacy list only,
  // and ignoring the tree could send plaintext where TLS was meant: an error.
  if (r.has('transport_socket_matcher')) {
    r.error('transport_socket_matcher', 'is not supported by meshlet; use transport_socket_matches');
  }
  r.raw('transport_socket_matcher');
  const healthChecks = [];
  for (const h of r.arr('health_checks')) {
    const v = decodeHealthCheck(h);
    if (v) healthChecks.push(v);
  }
  const od = r.obj('outlier_detection');
  const outlierDetection = od ? decodeOutlierDetection(od) : undefined;
  const dnsLookupFamily = enumOf(
    r,
    'dns_lookup_family',
    ['AUTO', 'V4_ONLY', 'V6_ONLY', 'V4_PREFERRED', 'ALL'] as const,
    'AUTO',
  );
  const dnsRefreshRateMs = dur(r, 'dns_refresh_rate', 5000);
  if (dnsRefreshRateMs <= 1) r.error('dns_refresh_rate', 'must be greater than 1ms');
  const respectDnsTtl = r.bool('respect_dns_ttl', false);
  let healthyPanicThresholdPercent = 50;
  let localityWeightedLb = false;
  let zoneAware: ZoneAwareLbConfig | undefined;
  const clb = r.obj('common_lb_config');
  if (clb) {
    healthyPanicThresholdPercent = percent(clb, 'healthy_panic_threshold', 50);
    const lbKind = clb.oneof(['zone_aware_lb_config', 'locality_weighted_lb_config'] as const);
    if (lbKind === 'locality_weighted_lb_config') {
      clb.obj('locality_weighted_lb_config')?.done();
      localityWeightedLb = true;
    } else if (lbKind === 'zone_aware_lb_config') {
      const z = clb.obj('zone_aware_lb_config');
      if (z) {
        const mcs = z.raw('min_cluster_size');
        // google.protobuf.UInt64Value: a number or a decimal string in proto3 JSON, {value} by hand.
        const mv = mcs !== null && typeof mcs === 'object' && !Array.isArray(mcs) ? (mcs as { value?: unknown }).value : mcs;
        const minClusterSize = mv === undefined ? 6 : Number(mv);
        if (!Number.isInteger(minClusterSize) || minClusterSize < 0) z.error('min_cluster_size', 'must be a non-negative integer');
        zoneAware = {
          routingEnabledPercent: percent(z, 'routing_enabled', 100),
          minClusterSize: Number.isInteger(minClusterSize) && minClusterSize >= 0 ? minClusterSize : 6,
          failTrafficOnPanic: z.bool('fail_traffic_on_panic', false),
        };
        z.done();
      }
    }
    // Envoy batches EDS/health updates inside this window for CPU's sake; meshlet applies each at once.
    clb.warnNoEffect('update_merge_window', 'EDS and health updates are applied at once, not batched');
    clb.done();
  }
  let originalDstHeader: string | undefined;
  let originalDstPortOverride: number | undefined;
  const odc = r.obj('original_dst_lb_config');
  if (odc) {
    const use = odc.bool('use_http_header', false);
    const h = odc.has('http_header_name') ? headerName(odc, 'http_header_name') : undefined;
    if (use) originalDstHeader = h ?? 'x-envoy-original-dst-host';
    // google.protobuf.UInt32Value: a bare number in proto3 JSON, {value} in YAML written by hand.
    const po = odc.raw('upstream_port_override');
    if (po !== undefined && po !== null) {
      const v = typeof po === 'object' && !Array.isArray(po) ? (po as { value?: unknown }).value : po;
      const n = Number(v);
      if (!Number.isInteger(n) || n < 1 || n > 65535) odc.error('upstream_port_override', 'must be a port number 1..65535');
      else originalDstPortOverride = n;
    }
    odc.done();
    if (type !== 'ORIGINAL_DST')
      r.error('original_dst_lb_config', `is only valid for ORIGINAL_DST clusters (type is ${type})`);
  }
  const cleanupIntervalMs = dur(r, 'cleanup_interval', 5000);
  if (cleanupIntervalMs <= 0) r.error('cleanup_interval', 'must be greater than 0');
  const perConnectionBufferLimitBytes = r.int('per_connection_buffer_limit_bytes', 1_048_576, 0, 0xffffffff);
  const metadata = decodeMetadata(r);
  const upstreamBindConfig = decodeBindConfig(r.obj('upstream_bind_config'));
  const upstreamMetadataExchange = decodeClusterFilters(r);
  r.done();
  if (!name) return undefined;
  return {
    name,
    type,
    ...(edsServiceName ? { edsServiceName } : {}),
    ...(edsConfigSource ? { edsConfigSource } : {}),
    connectTimeoutMs,
    lbPolicy,
    lbConfig,
    ...(loadAssignment ? { loadAssignment } : {}),
    circuitBreakers,
    upstreamProtocol: proto.upstreamProtocol,
    http2: proto.http2,
    upstreamIdleTimeoutMs: proto.upstreamIdleTimeoutMs,
    maxRequestsPerConnection: proto.maxRequestsPerConnection,
    ...(transportSocket ? { transportSocket } : {}),
    ...(transportSocketMatches.length > 0 ? { transportSocketMatches } : {}),
    ...(upstreamMetadataExchange ? { upstreamMetadataExchange } : {}),
    healthChecks,
    ...(outlierDetection ? { outlierDetection } : {}),
    dnsLookupFamily,
    dnsRefreshRateMs,
    respectDnsTtl,
    healthyPanicThresholdPercent,
    ...(originalDstHeader ? { originalDstHeader } : {}),
    ...(localityWeightedLb ? { localityWeightedLb } : {}),
    ...(zoneAware ? { zoneAware } : {}),
    ...(originalDstPortOverride !== undefined ? { originalDstPortOverride } : {}),
    cleanupIntervalMs,
    perConnectionBufferLimitBytes,
    metadata,
    ...(upstreamBindConfig ? { upstreamBindConfig } : {}),
  };
}

/**
 * Cluster.transport_socket_matches. Each `match` is a Struct compared by value with the
 * endpoint's `envoy.transport_socket_match` metadata, as Envoy does; a match without a
 * transport_socket has nothing to select, as in Envoy (no factory for an empty name): an error.
 */
function decodeTransportSocketMatches(r: Reader, ctx: DecodeContext): TransportSocketMatch[] {
  const out: TransportSocketMatch[] = [];
  for (const m of r.arr('transport_socket_matches')) {
    const name = m.str('name', '');
    const match = m.map('match') ?? {};
    const ts = m.obj('transport_socket');
    if (!ts) m.error('transport_socket', 'is required');
    const transportSocket = ts ? decodeTransportSocket(ts, ctx, 'upstream') : undefined;
    m.done();
    out.push({ name, match: structuredClone(match), ...(transportSocket ? { transportSocket } : {}) });
  }
  return out;
}

/** envoy.config.core.v3.BindConfig: source_address plus additional_source_addresses (one per family). */
function decodeBindConfig(r: Reader | undefined): ClusterConfig['upstreamBindConfig'] {
  if (!r) return undefined;
  const sourceAddresses: { address: string; port: number }[] = [];
  const add = (a: Reader, path: string): void => {
    const addr = a.requiredStr('address');
    const port = a.int('port_value', 0, 0, 65535);
    if (a.str('protocol', 'TCP') !== 'TCP') a.error('protocol', 'meshlet binds TCP sources only');
    a.done();
    if (!addr) return;
    const fam = isIP(addr);
    if (fam === 0) a.error('address', `malformed IP address: ${JSON.stringify(addr)} (a bind address must be an IP)`);
    else if (sourceAddresses.some((s) => isIP(s.address) === fam))
      r.issues.error(path, `a source address of the same IP family is already configured (${addr})`);
    else sourceAddresses.push({ address: addr, port });
  };
  const sa = r.obj('source_address');
  if (sa) add(sa, r.sub('source_address'));
  for (const [i, x] of r.arr('additional_source_addresses').entries()) {
    const a = x.obj('address');
    if (a) add(a, `${r.sub('additional_source_addresses')}[${i}]`);
    x.done();
  }
  if (r.bool('freebind', false)) r.error('freebind', 'is not supported by meshlet (Node cannot set IP_FREEBIND)');
  r.done();
  return sourceAddresses.length > 0 ? { sourceAddresses } : undefined;
}
