/**
 * Decoders for the actions of envoy.config.route.v3.Route: RouteAction (cluster, weighted
 * clusters, rewrites, timeouts, retry and hash policies, upgrades), RedirectAction and
 * DirectResponseAction, plus RetryPolicy (also used at the virtual-host level).
 *
 * Envoy defaults: route timeout 15 s, num_retries 1, back-off base 25 ms / max 10 × base,
 * host_selection_retry_max_attempts 1, redirect 301, direct response bodies ≤ 4 KiB.
 */
import type { Reader } from '../../../common/reader';
import {
  type DirectResponseAction,
  type HashPolicy,
  type HeaderMatcher,
  type RateLimitAction,
  type RateLimitPolicy,
  type RedirectAction,
  RETRY_ON,
  RETRY_ON_UNSUPPORTED,
  type RetryOn,
  type RetryPolicy,
  type RouteAction,
  type WeightedCluster,
} from '../types';
import { checkClusterRef, type DecodeContext, readConfigFile } from './context';
import { dataSourceBytes, decodeDataSource, dur, enumNamed } from './core';
import { decodeHeaderMutations } from './headers';
import { decodeHeaderMatcher, decodeRegexMatcher, headerName } from './matchers';
import { decodeMirrorPolicies } from './mirror-policy';
import { decodeTypedPerFilterConfig } from './per-filter';
import { decodeCorsPolicy } from '../filters/cors-policy';

const PREVIOUS_HOSTS_NAME = 'envoy.retry_host_predicates.previous_hosts';
const PREVIOUS_HOSTS_TYPE = 'envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate';
const UINT32_MAX = 0xffffffff;

/** envoy.config.route.v3.RetryPolicy */
export function decodeRetryPolicy(r: Reader): RetryPolicy {
  const retryOn = new Set<RetryOn>();
  const spec = r.str('retry_on', '');
  for (const raw of spec.split(',')) {
    const t = raw.trim();
    if (t === '') continue;
    if ((RETRY_ON as readonly string[]).includes(t)) retryOn.add(t as RetryOn);
    else if (RETRY_ON_UNSUPPORTED.includes(t))
      r.issues.warn(r.sub('retry_on'), `retry condition "${t}" is not supported by meshlet, ignored`);
    else r.error('retry_on', `unknown retry condition ${JSON.stringify(t)} (expected one of ${RETRY_ON.join(', ')})`);
  }
  const numRetries = r.int('num_retries', 1, 0, UINT32_MAX);
  const perTryTimeoutMs = dur(r, 'per_try_timeout', 0);
  const retriableStatusCodes: number[] = [];
  for (const [i, c] of r.list('retriable_status_codes').entries()) {
    if (typeof c === 'number' && Number.isInteger(c) && c >= 100 && c <= 599) retriableStatusCodes.push(c);
    else
      r.issues.error(
        `${r.sub('retriable_status_codes')}[${i}]`,
        `expected an HTTP status code (100-599), got ${JSON.stringify(c)}`,
      );
  }
  const retriableHeaders: HeaderMatcher[] = [];
  for (const m of r.arr('retriable_headers')) {
    const h = decodeHeaderMatcher(m);
    if (h) retriableHeaders.push(h);
  }
  if (retryOn.has('retriable-headers') && retriableHeaders.length === 0)
    r.issues.warn(r.sub('retry_on'), 'retriable-headers without retriable_headers never retries a response');
  let avoidPreviousHosts = false;
  for (const p of r.arr('retry_host_predicate')) {
    const name = p.str('name', '');
    const tc = p.any('typed_config');
    if (tc) tc.reader.done();
    const type = tc?.type;
    if (type === PREVIOUS_HOSTS_TYPE || (!type && name === PREVIOUS_HOSTS_NAME)) avoidPreviousHosts = true;
    else if (type) p.issues.error(p.sub('typed_config.@type'), `unsupported retry host predicate type ${type}`);
    else p.error('name', `unsupported retry host predicate ${JSON.stringify(name)}`);
    p.done();
  }
  const hostSelectionRetryMaxAttempts = r.int('host_selection_retry_max_attempts', 1, 0);
  let backOffBaseMs = 25;
  let backOffMaxMs = 250;
  const bo = r.obj('retry_back_off');
  if (bo) {
    if (!bo.has('base_interval')) bo.error('base_interval', 'is required');
    backOffBaseMs = dur(bo, 'base_interval', 25);
    if (backOffBaseMs <= 0) {
      bo.error('base_interval', 'must be greater than 0');
      backOffBaseMs = 25;
    }
    backOffMaxMs = dur(bo, 'max_interval', backOffBaseMs * 10);
    if (bo.has('max_interval') && backOffMaxMs < backOffBaseMs) {
      bo.error('max_interval', 'must be greater than or equal to the base_interval');
    }
    bo.done();
  }
  r.done();
  return {
    retryOn,
    numRetries,
    perTryTimeoutMs,
    retriableStatusCodes,
    retriableHeaders,
    avoidPreviousHosts,
    hostSelectionRetryMaxAttempts,
    backOffBaseMs,
    backOffMaxMs,
  };
}

function decodeHashPolicy(r: Reader): HashPolicy | undefined {
  const which = r.oneof(['header', 'cookie', 'connection_properties', 'query_parameter', 'filter_state'] as const);
  const terminal = r.bool('terminal', false);
  let out: HashPolicy | undefined;
  const s = which && which !== 'filter_state' ? r.obj(which) : undefined;
  if (which === undefined) {
    r.issues.error(r.path, 'one of header, cookie, connection_properties, query_parameter must be set');
  } else if (s && which === 'header') {
    const name = headerName(s, 'header_name');
    if (s.has('regex_rewrite')) s.error('regex_rewrite', 'is not supported by meshlet');
    s.raw('regex_rewrite');
    if (name) out = { kind: 'header', name, terminal };
  } else if (s && which === 'cookie') {
    const name = s.requiredStr('name');
    const ttlMs = dur(s, 'ttl');
    const path = s.str('path');
    if (name)
      out = { kind: 'cookie', name, ...(ttlMs !== undefined ? { ttlMs } : {}), ...(path ? { path } : {}), terminal };
  } else if (s && which === 'connection_properties') {
    if (s.bool('source_ip', false)) out = { kind: 'source_ip', terminal };
    else s.error('source_ip', 'must be true');
  } else if (s && which === 'query_parameter') {
    const name = s.requiredStr('name');
    if (name) out = { kind: 'query_parameter', name, terminal };
  } else if (which === 'filter_state') {
    r.error(which, 'filter_state hashing is not supported by meshlet');
  }
  s?.done();
  r.done();
  return out;
}

function decodeWeightedClusters(r: Reader, ctx: DecodeContext): RouteAction['cluster'] | undefined {
  const clusters: WeightedCluster[] = [];
  let sum = 0;
  const list = r.arr('clusters');
  if (list.length === 0) r.error('clusters', 'at least one cluster is required');
  for (const c of list) {
    if (c.has('cluster_header')) c.error('cluster_header', 'is not supported by meshlet in weighted clusters');
    c.raw('cluster_header');
    const name = c.requiredStr('name');
    if (ctx.validateRouteClusters) checkClusterRef(ctx, (m) => c.error('name', m), name);
    const weight = c.int('weight', 0, 0, UINT32_MAX);
    const hostRewriteLiteral = c.str('host_rewrite_literal');
    const typedPerFilterConfig = decodeTypedPerFilterConfig(c, ctx);
    const mut = decodeHeaderMutations(c);
    c.done();
    sum += weight;
    if (name) {
      clusters.push({
        name,
        weight,
        ...mut,
        ...(hostRewriteLiteral ? { hostRewriteLiteral } : {}),
        typedPerFilterConfig,
      });
    }
  }
  const total = r.optInt('total_weight', 1, UINT32_MAX);
  r.done();
  if (list.length > 0 && sum === 0)
    r.issues.error(r.path, 'sum of weights in the weighted_cluster must be greater than 0');
  else if (sum > UINT32_MAX)
    r.issues.error(r.path, `sum of weights in the weighted_cluster must not exceed ${UINT32_MAX}, got ${sum}`);
  else if (total !== undefined && total !== sum) {
    r.issues.error(
      r.sub('total_weight'),
      `sum of weights in the weighted_cluster should add up to ${total}, got ${sum}`,
    );
  }
  return clusters.length === list.length && list.length > 0
    ? { kind: 'weighted', clusters, totalWeight: sum }
    : undefined;
}

/** Route-level `upgrade_configs`: the enabled upgrade types, lower-cased. */
export function decodeUpgradeConfigs(r: Reader, perRoute: boolean, connect?: { terminate: boolean }): string[] {
  const out: string[] = [];
  for (const u of r.arr('upgrade_configs')) {
    const t = u.requiredStr('upgrade_type').toLowerCase();
    const enabled = u.bool('enabled', true);
    if (u.has('filters')) u.error('filters', 'upgrade filter chains are not supported by meshlet');
    u.raw('filters');
    // connect_config on a route's CONNECT upgrade: terminate CONNECT here and send the payload
    // as raw TCP (Envoy's behaviour; an explicit-proxy listener uses it).
    const cc = u.obj('connect_config');
    if (cc) {
      if (cc.has('proxy_protocol_config')) cc.error('proxy_protocol_config', 'is not supported by meshlet');
      cc.raw('proxy_protocol_config');
      if (cc.bool('allow_post', false)) cc.error('allow_post', 'is not supported by meshlet');
      cc.done();
      if (t === 'connect' && perRoute && connect) connect.terminate = true;
    }
    if (!enabled) {
      if (perRoute)
        u.issues.warn(u.sub('enabled'), 'disabling an upgrade per route is not supported by meshlet, ignored');
    } else if (t && !out.includes(t)) out.push(t);
    u.done();
  }
  return out;
}

/** envoy.config.route.v3.RouteAction */
export function decodeRouteAction(r: Reader, ctx: DecodeContext): RouteAction | undefined {
  const which = r.oneof([
    'cluster',
    'cluster_header',
    'weighted_clusters',
    'cluster_specifier_plugin',
    'inline_cluster_specifier_plugin',
  ] as const);
  let cluster: RouteAction['cluster'] | undefined;
  if (which === undefined) {
    r.issues.error(r.path, 'one of cluster, cluster_header, weighted_clusters must be set');
  } else if (which === 'cluster') {
    const name = r.requiredStr('cluster');
    if (ctx.validateRouteClusters) checkClusterRef(ctx, (m) => r.error('cluster', m), name);
    if (name) cluster = { kind: 'cluster', name };
  } else if (which === 'cluster_header') {
    const header = headerName(r, 'cluster_header');
    if (header) cluster = { kind: 'cluster_header', header };
  } else if (which === 'weighted_clusters') {
    const w = r.obj(which);
    if (w) cluster = decodeWeightedClusters(w, ctx);
  } else {
    r.error(which, 'cluster specifier plugins are not supported by meshlet');
  }
  const prefixRewrite = r.str('prefix_rewrite');
  let regexRewrite: RouteAction['regexRewrite'];
  const rr = r.obj('regex_rewrite');
  if (rr) {
    const pr = rr.obj('pattern');
    if (!pr) rr.error('pattern', 'is required');
    const m = pr ? decodeRegexMatcher(pr, false) : undefined;
    const substitution = rr.str('substitution', '');
    rr.done();
    if (m) regexRewrite = { regex: new RegExp(m.regex.source, `${m.regex.flags}g`), substitution };
  }
  if (prefixRewrite !== undefined && rr)
    r.error('regex_rewrite', 'cannot specify both prefix_rewrite and regex_rewrite');
  if (r.has('path_rewrite_policy')) r.error('path_rewrite_policy', 'is not supported by meshlet');
  r.raw('path_rewrite_policy');
  const host = r.oneof([
    'host_rewrite_literal',
    'auto_host_rewrite',
    'host_rewrite_header',
    'host_rewrite_path_regex',
  ] as const);
  const hostRewriteLiteral = host === 'host_rewrite_literal' ? r.str(host) : undefined;
  const autoHostRewrite = host === 'auto_host_rewrite' ? r.bool(host, false) : false;
  const hostRewriteHeader = host === 'host_rewrite_header' ? headerName(r, host) : undefined;
  if (host === 'host_rewrite_path_regex') r.error(host, 'is not supported by meshlet');
  r.raw('host_rewrite_path_regex');
  const timeoutMs = dur(r, 'timeout', 15_000);
  const idleTimeoutMs = dur(r, 'idle_timeout', 0);
  const rp = r.obj('retry_policy');
  const retryPolicy = rp ? decodeRetryPolicy(rp) : undefined;
  const hashPolicy: HashPolicy[] = [];
  for (const h of r.arr('hash_policy')) {
    const v = decodeHashPolicy(h);
    if (v) hashPolicy.push(v);
  }
  const connect = { terminate: false };
  const upgradeTypes = decodeUpgradeConfigs(r, true, connect);
  let maxStreamDurationMs: number | undefined;
  // gRPC: the request's grpc-timeout header becomes the route timeout when a cap is configured
  // (0 = no cap); max_stream_duration's fields, else the deprecated RouteAction ones.
  let grpcTimeoutHeaderMaxMs = r.has('max_grpc_timeout') ? dur(r, 'max_grpc_timeout', 0) : undefined;
  let grpcTimeoutHeaderOffsetMs = r.has('grpc_timeout_offset') ? dur(r, 'grpc_timeout_offset', 0) : undefined;
  const msd = r.obj('max_stream_duration');
  if (msd) {
    maxStreamDurationMs = dur(msd, 'max_stream_duration');
    if (msd.has('grpc_timeout_header_max')) grpcTimeoutHeaderMaxMs = dur(msd, 'grpc_timeout_header_max', 0);
    if (msd.has('grpc_timeout_header_offset')) grpcTimeoutHeaderOffsetMs = dur(msd, 'grpc_timeout_header_offset', 0);
    msd.done();
  }
  const rateLimits = decodeRateLimits(r);
  const requestMirrorPolicies = decodeMirrorPolicies(r, ctx);
  const corsR = r.obj('cors');
  const cors = corsR ? decodeCorsPolicy(corsR) : undefined;
  r.done();
  if (!cluster) return undefined;
  return {
    kind: 'route',
    cluster,
    ...(prefixRewrite !== undefined ? { prefixRewrite } : {}),
    ...(regexRewrite ? { regexRewrite } : {}),
    ...(hostRewriteLiteral ? { hostRewriteLiteral } : {}),
    ...(hostRewriteHeader ? { hostRewriteHeader } : {}),
    autoHostRewrite,
    timeoutMs,
    idleTimeoutMs,
    ...(retryPolicy ? { retryPolicy } : {}),
    hashPolicy,
    upgradeTypes,
    ...(connect.terminate ? { terminateConnect: true } : {}),
    ...(maxStreamDurationMs !== undefined ? { maxStreamDurationMs } : {}),
    ...(grpcTimeoutHeaderMaxMs !== undefined ? { grpcTimeoutHeaderMaxMs, grpcTimeoutHeaderOffsetMs: grpcTimeoutHeaderOffsetMs ?? 0 } : {}),
    ...(rateLimits.length > 0 ? { rateLimits } : {}),
    ...(requestMirrorPolicies !== undefined ? { requestMirrorPolicies } : {}),
    ...(cors ? { cors } : {}),
  };
}

/** RouteAction.rate_limits (envoy.config.route.v3.RateLimit), for envoy.filters.http.ratelimit. */
export function decodeRateLimits(r: Reader): RateLimitPolicy[] {
  const out: RateLimitPolicy[] = [];
  for (const rl of r.arr('rate_limits')) {
    const stage = rl.int('stage', 0, 0, 10);
    const disableKey = rl.str('disable_key', '');
    const actions: RateLimitAction[] = [];
    const list = rl.arr('actions');
    if (list.length === 0) rl.error('actions', 'must have at least one action');
    for (const a of list) {
      const v = decodeRateLimitAction(a);
      if (v) actions.push(v);
    }
    if (rl.has('limit')) rl.error('limit', 'dynamic metadata limit overrides are not supported by meshlet');
    rl.raw('limit');
    rl.done();
    if (actions.length === list.length && list.length > 0) out.push({ stage, disableKey, actions });
  }
  return out;
}

const RATE_LIMIT_ACTIONS = [
  'request_headers',
  'remote_address',
  'generic_key',
  'header_value_match',
  'destination_cluster',
  'source_cluster',
  'masked_remote_address',
  'dynamic_metadata',
  'metadata',
  'extension',
  'query_parameters',
  'query_parameter_value_match',
] as const;

function decodeRateLimitAction(r: Reader): RateLimitAction | undefined {
  const which = r.oneof(RATE_LIMIT_ACTIONS);
  let out: RateLimitAction | undefined;
  if (which === undefined) r.issues.error(r.path, 'one rate limit action must be set');
  else if (which === 'request_headers') {
    const h = r.obj(which);
    if (h) {
      const name = headerName(h, 'header_name');
      const descriptorKey = h.requiredStr('descriptor_key');
      const skipIfAbsent = h.bool('skip_if_absent', false);
      h.done();
      if (name && descriptorKey) out = { kind: 'request_headers', headerName: name, descriptorKey, skipIfAbsent };
    }
  } else if (which === 'remote_address' || which === 'destination_cluster') {
    r.obj(which)?.done();
    out = { kind: which };
  } else if (which === 'generic_key') {
    const g = r.obj(which);
    if (g) {
      const descriptorValue = g.requiredStr('descriptor_value');
      const descriptorKey = g.str('descriptor_key', '') || 'generic_key';
      g.done();
      if (descriptorValue) out = { kind: 'generic_key', descriptorKey, descriptorValue };
    }
  } else if (which === 'header_value_match') {
    const g = r.obj(which);
    if (g) {
      const descriptorValue = g.requiredStr('descriptor_value');
      const descriptorKey = g.str('descriptor_key', '') || 'header_match';
      const expectMatch = g.bool('expect_match', true);
      const headers: HeaderMatcher[] = [];
      const list = g.arr('headers');
      if (list.length === 0) g.error('headers', 'must have at least one header matcher');
      for (const x of list) {
        const m = decodeHeaderMatcher(x);
        if (m) headers.push(m);
      }
      g.done();
      if (descriptorValue && headers.length === list.length && headers.length > 0)
        out = { kind: 'header_value_match', descriptorKey, descriptorValue, expectMatch, headers };
    }
  } else {
    r.error(which, 'this rate limit action is not supported by meshlet');
    r.raw(which);
  }
  r.done();
  return out;
}

const REDIRECT_CODES = {
  MOVED_PERMANENTLY: 0,
  FOUND: 1,
  SEE_OTHER: 2,
  TEMPORARY_REDIRECT: 3,
  PERMANENT_REDIRECT: 4,
} as const;
const REDIRECT_STATUS = {
  MOVED_PERMANENTLY: 301,
  FOUND: 302,
  SEE_OTHER: 303,
  TEMPORARY_REDIRECT: 307,
  PERMANENT_REDIRECT: 308,
} as const;

/** envoy.config.route.v3.RedirectAction */
export function decodeRedirectAction(r: Reader): RedirectAction {
  const scheme = r.oneof(['scheme_redirect', 'https_redirect'] as const);
  const schemeRedirect = scheme === 'scheme_redirect' ? r.str(scheme)?.toLowerCase() : undefined;
  const httpsRedirect = scheme === 'https_redirect' ? r.bool(scheme, false) : false;
  const hostRedirect = r.str('host_redirect');
  const portRedirect = r.optInt('port_redirect', 0, 65535);
  const path = r.oneof(['path_redirect', 'prefix_rewrite', 'regex_rewrite'] as const);
  const pathRedirect = path === 'path_redirect' ? r.str(path) : undefined;
  const prefixRewrite = path === 'prefix_rewrite' ? r.str(path) : undefined;
  if (path === 'regex_rewrite') r.error(path, 'regex_rewrite in redirects is not supported by meshlet');
  r.raw('regex_rewrite');
  const code = enumNamed(r, 'response_code', REDIRECT_CODES, 'MOVED_PERMANENTLY');
  const stripQuery = r.bool('strip_query', false);
  r.done();
  return {
    kind: 'redirect',
    ...(schemeRedirect ? { schemeRedirect } : {}),
    httpsRedirect,
    ...(hostRedirect ? { hostRedirect } : {}),
    ...(portRedirect ? { portRedirect } : {}),
    ...(pathRedirect !== undefined ? { pathRedirect } : {}),
    ...(prefixRewrite !== undefined ? { prefixRewrite } : {}),
    stripQuery,
    responseCode: REDIRECT_STATUS[code],
  };
}

/** envoy.config.route.v3.DirectResponseAction; a `filename` body is read now (control plane). */
export function decodeDirectResponse(
  r: Reader,
  ctx: DecodeContext,
  maxBodyBytes: number,
): DirectResponseAction | undefined {
  if (!r.has('status')) r.error('status', 'is required');
  const status = r.int('status', 200, 200, 599);
  let body: Buffer | undefined;
  const b = r.obj('body');
  if (b) {
    const ds = decodeDataSource(b);
    if (ds) {
      try {
        body = dataSourceBytes(ds, (p) => readConfigFile(ctx, p));
      } catch (e) {
        b.error(ds.kind, `cannot read ${JSON.stringify(ds.value)}: ${(e as Error).message}`);
      }
      if (body && body.length > maxBodyBytes) {
        r.error('body', `response body size is ${body.length} bytes; maximum is ${maxBodyBytes}`);
        body = undefined;
      }
    }
  }
  r.done();
  return { kind: 'direct_response', status, ...(body ? { body } : {}) };
}
