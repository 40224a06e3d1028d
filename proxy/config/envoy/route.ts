/**
 * Decoders for envoy.config.route.v3.RouteConfiguration, VirtualHost, Route and RouteMatch
 * (static route_config in an HCM, and RDS resources). Domains are lower-cased and checked as
 * Envoy does: wildcards only as a leading or trailing "*", one "*" per configuration, and no
 * domain repeated across virtual hosts.
 */
import { decodeRuntimeFraction, NEVER } from './runtime';
import type { Reader } from '../../../common/reader';
import type {
  HeaderMatcher,
  QueryParameterMatcher,
  Route,
  RouteConfiguration,
  RouteMatch,
  VirtualHost,
} from '../types';
import type { DecodeContext } from './context';
import { enumOf, UNREAD_METADATA } from './core';
import { decodeHeaderMutations } from './headers';
import { decodeHeaderMatcher, decodeQueryParameterMatcher, decodeRegexMatcher } from './matchers';
import { decodeCorsPolicy } from '../filters/cors-policy';
import { decodeTypedPerFilterConfig } from './per-filter';
import { decodeRouteTracing } from './tracing';
import { decodeDirectResponse, decodeRedirectAction, decodeRetryPolicy, decodeRouteAction } from './route-action';

const PATH_KEYS = [
  'prefix',
  'path',
  'safe_regex',
  'path_separated_prefix',
  'connect_matcher',
  'path_match_policy',
] as const;
const PATH_SEPARATED_RE = /^[^?#]+[^?#/]$/;

/** Route-match fields meshlet does not implement: ignoring them would widen the match, so they are errors. */
const UNSUPPORTED_MATCH = ['tls_context', 'dynamic_metadata', 'filter_state', 'cookies'] as const;

/** envoy.config.route.v3.RouteMatch */
export function decodeRouteMatch(r: Reader): RouteMatch | undefined {
  const which = r.oneof(PATH_KEYS);
  let path: RouteMatch['path'] | undefined;
  if (which === undefined) {
    r.issues.error(r.path, 'one of prefix, path, safe_regex, path_separated_prefix, connect_matcher must be set');
  } else if (which === 'prefix' || which === 'path') {
    path = { kind: which, value: r.str(which, '') };
  } else if (which === 'path_separated_prefix') {
    const value = r.str(which, '');
    if (!PATH_SEPARATED_RE.test(value)) {
      r.error(which, `${JSON.stringify(value)} must not be empty, contain ? or #, or end with /`);
    } else path = { kind: which, value };
  } else if (which === 'safe_regex') {
    const s = r.obj(which);
    const m = s ? decodeRegexMatcher(s) : undefined;
    if (m) path = { kind: 'safe_regex', value: m.value, regex: m.regex };
  } else if (which === 'connect_matcher') {
    r.obj(which)?.done();
    path = { kind: 'connect_matcher' };
  } else {
    r.error(which, 'path match policies are not supported by meshlet');
  }
  const caseSensitive = r.bool('case_sensitive', true);
  const headers: HeaderMatcher[] = [];
  for (const h of r.arr('headers')) {
    const m = decodeHeaderMatcher(h);
    if (m) headers.push(m);
  }
  const queryParameters: QueryParameterMatcher[] = [];
  for (const q of r.arr('query_parameters')) {
    const m = decodeQueryParameterMatcher(q);
    if (m) queryParameters.push(m);
  }
  const g = r.obj('grpc');
  if (g) {
    g.done();
  }
  const runtimeFraction = r.has('runtime_fraction') ? decodeRuntimeFraction(r, 'runtime_fraction', NEVER) : undefined;
  for (const k of UNSUPPORTED_MATCH) {
    if (r.has(k)) r.error(k, 'is not supported by meshlet');
    r.raw(k);
  }
  r.done();
  if (!path) return undefined;
  return { path, caseSensitive, headers, queryParameters, grpc: g !== undefined, ...(runtimeFraction ? { runtimeFraction } : {}) };
}

/** envoy.config.route.v3.Route */
export function decodeRoute(r: Reader, ctx: DecodeContext, maxBodyBytes: number): Route | undefined {
  const name = r.str('name', '');
  const mr = r.obj('match');
  if (!mr) r.error('match', 'is required');
  const match = mr ? decodeRouteMatch(mr) : undefined;
  const which = r.oneof(['route', 'redirect', 'direct_response', 'filter_action', 'non_forwarding_action'] as const);
  let action: Route['action'] | undefined;
  const ar = which ? r.obj(which) : undefined;
  if (which === undefined) r.issues.error(r.path, 'one of route, redirect, direct_response must be set');
  else if (which === 'filter_action' || which === 'non_forwarding_action')
    r.error(which, 'is not supported by meshlet');
  else if (ar && which === 'route') action = decodeRouteAction(ar, ctx);
  else if (ar && which === 'redirect') action = decodeRedirectAction(ar);
  else if (ar && which === 'direct_response') action = decodeDirectResponse(ar, ctx, maxBodyBytes);
  const typedPerFilterConfig = decodeTypedPerFilterConfig(r, ctx);
  const mut = decodeHeaderMutations(r);
  const decorator = decodeDecorator(r);
  const tracing = decodeRouteTracing(r);
  r.warnNoEffectOnce('metadata', UNREAD_METADATA);
  r.done();
  if (!match || !action) return undefined;
  return { name, match, action, ...mut, typedPerFilterConfig, ...(decorator ? { decorator } : {}), ...(tracing ? { tracing } : {}) };
}

/** envoy.config.route.v3.Decorator: the span's operation name; propagate defaults to true. */
function decodeDecorator(r: Reader): Route['decorator'] {
  const d = r.obj('decorator');
  if (!d) return undefined;
  const operation = d.requiredStr('operation');
  const propagate = d.bool('propagate', true);
  d.done();
  return operation ? { operation, propagate } : undefined;
}

function checkDomain(d: string): string | undefined {
  if (d === '') return 'must not be empty';
  if (d === '*') return undefined;
  const stars = d.split('*').length - 1;
  if (stars === 0) return undefined;
  if (stars === 1 && (d.startsWith('*') || d.endsWith('*')) && d.length > 1) return undefined;
  return `invalid domain ${JSON.stringify(d)}: a wildcard may only be a single leading or trailing "*"`;
}

/** envoy.config.route.v3.VirtualHost */
export function decodeVirtualHost(r: Reader, ctx: DecodeContext, maxBodyBytes: number): VirtualHost | undefined {
  const name = r.requiredStr('name');
  const domains: string[] = [];
  const raw = r.strList('domains');
  if (raw.length === 0) r.error('domains', 'at least one domain is required');
  for (const [i, d0] of raw.entries()) {
    const d = d0.toLowerCase();
    const bad = checkDomain(d);
    if (bad) r.issues.error(`${r.sub('domains')}[${i}]`, bad);
    else domains.push(d);
  }
  const routes: Route[] = [];
  for (const rr of r.arr('routes')) {
    const route = decodeRoute(rr, ctx, maxBodyBytes);
    if (route) routes.push(route);
  }
  const rp = r.obj('retry_policy');
  const retryPolicy = rp ? decodeRetryPolicy(rp) : undefined;
  const typedPerFilterConfig = decodeTypedPerFilterConfig(r, ctx);
  const corsR = r.obj('cors');
  const cors = corsR ? decodeCorsPolicy(corsR) : undefined;
  const mut = decodeHeaderMutations(r);
  const requireTls = enumOf(r, 'require_tls', ['NONE', 'EXTERNAL_ONLY', 'ALL'] as const, 'NONE');
  if (requireTls !== 'NONE') r.error('require_tls', `${requireTls} is not supported by meshlet`);
  const attemptCount = r.bool('include_request_attempt_count', false);
  r.done();
  if (!name) return undefined;
  return {
    ...(attemptCount ? { includeRequestAttemptCount: true } : {}),
    name,
    domains,
    routes,
    ...mut,
    ...(retryPolicy ? { retryPolicy } : {}),
    typedPerFilterConfig,
    ...(cors ? { cors } : {}),
  };
}

/** envoy.config.route.v3.RouteConfiguration */
export function decodeRouteConfigurationR(r: Reader, ctx0: DecodeContext, inline = false): RouteConfiguration {
  const name = r.str('name', '');
  const maxBodyBytes = r.int('max_direct_response_body_size_bytes', 4096, 1, 0xffffffff);
  // Envoy validates clusters of inline route configs by default, not of RDS ones.
  const ctx: DecodeContext = { ...ctx0, validateRouteClusters: r.bool('validate_clusters', inline) };
  const virtualHosts: VirtualHost[] = [];
  const seen = new Map<string, string>();
  let wildcard: string | undefined;
  for (const vr of r.arr('virtual_hosts')) {
    const vh = decodeVirtualHost(vr, ctx, maxBodyBytes);
    if (!vh) continue;
    for (const d of vh.domains) {
      if (d === '*') {
        if (wildcard !== undefined) {
          vr.error(
            'domains',
            `only a single wildcard domain is permitted in route ${JSON.stringify(name)} (also in virtual host ${JSON.stringify(wildcard)})`,
          );
        }
        wildcard = vh.name;
      }
      const prev = seen.get(d);
      if (prev !== undefined && d !== '*') {
        vr.error(
          'domains',
          `only unique values for domains are permitted: duplicate entry of domain ${d} (also in virtual host ${JSON.stringify(prev)})`,
        );
      }
      seen.set(d, vh.name);
    }
    virtualHosts.push(vh);
  }
  if (r.has('vhds')) r.error('vhds', 'VHDS is not supported by meshlet');
  r.raw('vhds');
  const ignorePort = r.bool('ignore_port_in_host_matching', false);
  const mut = decodeHeaderMutations(r);
  r.done();
  return { name, virtualHosts, ...mut, ...(ignorePort ? { ignorePortInHostMatching: true } : {}) };
}
