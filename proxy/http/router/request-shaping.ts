/**
 * The pure parts of shaping a routed request (no I/O, no stream state): hash policies, weighted
 * cluster picks, path and host rewrites, redirect locations, the route's request and response
 * header mutations, and the small parsers the router and CONNECT termination share (grpc-timeout
 * among them).
 */
import type {
  HashPolicy,
  HeaderValueOption,
  RedirectAction,
  RouteAction,
  RouteConfiguration,
  WeightedCluster,
} from '../../config/types';
import type { HeaderList, RequestHead } from '../codec';
import {
  applyHeaderOptions,
  getHeader,
  type HeaderFormatContext,
  removeHeaders,
  setHeader,
  stripHopByHop,
  stripPort,
} from '../headers';
import { buildLocalReply, type LocalResponse } from '../local-reply';
import { type CompiledRoute, PathKind, pathOnly, queryParam } from '../route-matcher';
import { isDigits } from './retry-state';

/** FNV-1a 32-bit over a string: the hash fed to RING_HASH / MAGLEV. */
export function hashString(s: string, seed = 0x811c9dc5): number {
  let h = seed >>> 0;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

function cookieValue(cookieHeader: string | undefined, name: string): string | undefined {
  if (cookieHeader === undefined) return undefined;
  let start = 0;
  while (start < cookieHeader.length) {
    let end = cookieHeader.indexOf(';', start);
    if (end < 0) end = cookieHeader.length;
    const eq = cookieHeader.indexOf('=', start);
    if (eq > 0 && eq < end && cookieHeader.slice(start, eq).trim() === name)
      return cookieHeader.slice(eq + 1, end).trim();
    start = end + 1;
  }
  return undefined;
}

/** Where computeHash leaves a cookie it generated (cookie policy with a ttl, cookie absent). */
export interface HashSideEffects {
  setCookie?: string;
}

/**
 * Envoy's hash policy evaluation: policies in order, combined, a terminal hit stops. A cookie
 * policy with a `ttl` whose cookie is absent generates one from the client address (so the
 * client sticks from now on) and asks for it to be set on the response, as Envoy does.
 */
export function computeHash(
  policies: readonly HashPolicy[],
  head: RequestHead,
  sourceIp: string,
  out?: HashSideEffects,
): number | undefined {
  let hash: number | undefined;
  for (let i = 0; i < policies.length; i++) {
    const p = policies[i]!;
    let v: string | undefined;
    switch (p.kind) {
      case 'header':
        v = p.name === ':authority' ? head.authority : p.name === ':path' ? head.path : getHeader(head.headers, p.name);
        break;
      case 'cookie':
        v = cookieValue(getHeader(head.headers, 'cookie'), p.name);
        if (v === undefined && p.ttlMs !== undefined && out !== undefined) {
          v = hashString(sourceIp).toString(16).padStart(8, '0');
          let c = `${p.name}="${v}"`;
          if (p.ttlMs > 0) c += `; Max-Age=${Math.floor(p.ttlMs / 1000)}`;
          if (p.path !== undefined && p.path !== '') c += `; Path=${p.path}`;
          out.setCookie = `${c}; HttpOnly`;
        }
        break;
      case 'source_ip':
        v = sourceIp || undefined;
        break;
      case 'query_parameter':
        v = queryParam(head.path, p.name);
        break;
    }
    if (v === undefined) continue;
    const h = hashString(v);
    hash = hash === undefined ? h : (((hash << 1) | (hash >>> 31)) ^ h) >>> 0;
    if (p.terminal) break;
  }
  return hash;
}

/** Pick a weighted cluster at random by weight. */
export function pickWeighted(
  clusters: readonly WeightedCluster[],
  total: number,
  random: () => number = Math.random,
): WeightedCluster | undefined {
  const sum = total > 0 ? total : clusters.reduce((a, c) => a + c.weight, 0);
  if (sum <= 0) return clusters[0];
  let r = Math.floor(random() * sum);
  for (let i = 0; i < clusters.length; i++) {
    const c = clusters[i]!;
    if (r < c.weight) return c;
    r -= c.weight;
  }
  return clusters[clusters.length - 1];
}

const substitutions = new WeakMap<RegExp, { global: RegExp; sub: string }>();

/** regex_rewrite: every match in the path (not the query) replaced; `\1` group references work. */
export function regexRewritePath(path: string, regex: RegExp, substitution: string): string {
  let c = substitutions.get(regex);
  if (!c) {
    const flags = regex.flags.includes('g') ? regex.flags : `${regex.flags}g`;
    c = {
      global: new RegExp(regex.source, flags),
      sub: substitution.replace(/\$/g, '$$$$').replace(/\\(\d)/g, '$$$1'),
    };
    substitutions.set(regex, c);
  }
  const p = pathOnly(path);
  return p.replace(c.global, c.sub) + path.slice(p.length);
}

/** The prefix_rewrite of a matched route (prefix, path or path_separated_prefix matches only). */
export function prefixRewritePath(path: string, r: CompiledRoute, rewrite: string): string {
  if (r.kind === PathKind.Prefix || r.kind === PathKind.Path || r.kind === PathKind.SeparatedPrefix) {
    return rewrite + path.slice(r.value.length);
  }
  return path;
}

/** The Location of a redirect action, Envoy's rules for scheme, host, port and path. */
export function redirectLocation(
  action: RedirectAction,
  head: RequestHead,
  r: CompiledRoute,
): string {
  const origScheme = head.scheme || 'http';
  const scheme = action.schemeRedirect ?? (action.httpsRedirect ? 'https' : origScheme);
  let host = action.hostRedirect ?? head.authority;
  if (action.portRedirect !== undefined) {
    host = `${stripPort(host)}:${action.portRedirect}`;
  } else if (scheme !== origScheme) {
    // Changing the scheme drops a default port of either scheme (Envoy: https_redirect strips :80).
    const bare = stripPort(host);
    if (host.endsWith(':80') || host.endsWith(':443')) host = bare;
  }
  let path = head.path;
  if (action.pathRedirect !== undefined) {
    path = action.pathRedirect.includes('?')
      ? action.pathRedirect
      : action.pathRedirect + path.slice(pathOnly(path).length);
  } else if (action.prefixRewrite !== undefined) {
    path = prefixRewritePath(path, r, action.prefixRewrite);
  }
  if (action.stripQuery) path = pathOnly(path);
  return `${scheme}://${host}${path}`;
}

export function applyMutations(
  h: HeaderList,
  remove: readonly string[],
  add: readonly HeaderValueOption[],
  ctx: HeaderFormatContext,
): void {
  if (remove.length > 0) removeHeaders(h, remove);
  if (add.length > 0) applyHeaderOptions(h, add, ctx);
}

/**
 * Rewrite a request for its route: prefix_rewrite or regex_rewrite (remembering the original path
 * in x-envoy-original-path unless Envoy headers are suppressed), then the host rewrite.
 */
export function rewriteRequest(
  head: RequestHead,
  route: CompiledRoute,
  action: RouteAction,
  weighted: WeightedCluster | undefined,
  suppressEnvoyHeaders: boolean,
): void {
  const originalPath = head.path;
  if (action.prefixRewrite !== undefined) head.path = prefixRewritePath(head.path, route, action.prefixRewrite);
  else if (action.regexRewrite !== undefined)
    head.path = regexRewritePath(head.path, action.regexRewrite.regex, action.regexRewrite.substitution);
  if (head.path !== originalPath && !suppressEnvoyHeaders)
    setHeader(head.headers, 'x-envoy-original-path', originalPath);
  const hostLiteral = weighted?.hostRewriteLiteral ?? action.hostRewriteLiteral;
  if (hostLiteral !== undefined) head.authority = hostLiteral;
  else if (action.hostRewriteHeader !== undefined) {
    const v = getHeader(head.headers, action.hostRewriteHeader);
    if (v !== undefined && v !== '') head.authority = v;
  }
}

/** request_headers_to_add/remove: weighted cluster, route, virtual host, then the route config. */
export function applyRequestMutations(
  h: HeaderList,
  route: CompiledRoute,
  weighted: WeightedCluster | undefined,
  rc: RouteConfiguration,
  ctx: HeaderFormatContext,
): void {
  if (weighted) applyMutations(h, weighted.requestHeadersToRemove, weighted.requestHeadersToAdd, ctx);
  const r = route.route;
  applyMutations(h, r.requestHeadersToRemove, r.requestHeadersToAdd, ctx);
  const vh = route.vhost;
  applyMutations(h, vh.requestHeadersToRemove, vh.requestHeadersToAdd, ctx);
  applyMutations(h, rc.requestHeadersToRemove, rc.requestHeadersToAdd, ctx);
}

/** response_headers_to_add/remove, in the same order as the request side. */
export function applyResponseMutations(
  h: HeaderList,
  route: CompiledRoute,
  weighted: WeightedCluster | undefined,
  rc: RouteConfiguration | undefined,
  ctx: HeaderFormatContext,
): void {
  if (weighted) applyMutations(h, weighted.responseHeadersToRemove, weighted.responseHeadersToAdd, ctx);
  const r = route.route;
  applyMutations(h, r.responseHeadersToRemove, r.responseHeadersToAdd, ctx);
  applyMutations(h, route.vhost.responseHeadersToRemove, route.vhost.responseHeadersToAdd, ctx);
  if (rc) applyMutations(h, rc.responseHeadersToRemove, rc.responseHeadersToAdd, ctx);
}

/** "host:port" / "[v6]:port" → parts; a bare host gets `defaultPort` (0 = a port is required). */
export function splitAuthority(a: string, defaultPort: number): { host: string; port: number } | undefined {
  const colon = a.lastIndexOf(':');
  if (colon <= 0 || a.endsWith(']')) {
    if (defaultPort === 0 || a === '') return undefined;
    return { host: a.startsWith('[') ? a.slice(1, -1) : a, port: defaultPort };
  }
  const port = Number(a.slice(colon + 1));
  if (!Number.isInteger(port) || port <= 0 || port > 65535) return undefined;
  let host = a.slice(0, colon);
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  else if (host.includes(':')) return undefined;
  return { host, port };
}

export function upgradeAllowed(upgrade: string, routeTypes: readonly string[], hcmTypes: readonly string[]): boolean {
  const list = routeTypes.length > 0 ? routeTypes : hcmTypes;
  for (let i = 0; i < list.length; i++) if (list[i]!.toLowerCase() === upgrade) return true;
  return false;
}

export function grpcStatusOf(h: HeaderList): number {
  for (let i = 0; i < h.length; i += 2) {
    if (h[i] === 'grpc-status') {
      const n = Number(h[i + 1]);
      return Number.isInteger(n) ? n : -1;
    }
  }
  return -1;
}

/**
 * A direct_response or redirect as a local response (never gRPC-shaped, as before): the body as
 * text/plain, `location` for redirects, and the route's response header mutations.
 */
export function directResponse(
  status: number,
  body: Buffer | undefined,
  location: string | undefined,
  head: RequestHead,
  route: CompiledRoute,
  rc: RouteConfiguration,
  ctx: HeaderFormatContext,
): LocalResponse {
  const extra = location === undefined ? undefined : ['location', location];
  const r = buildLocalReply(status, body ?? '', extra, false, head.method === 'HEAD');
  applyResponseMutations(r.head.headers, route, undefined, rc, ctx);
  return r;
}

/**
 * Response headers from upstream: hop-by-hop headers go (a 101 keeps its `upgrade` token, which
 * the downstream codec writes back with Connection: upgrade), and x-envoy-upstream-service-time
 * is set unless Envoy headers are suppressed.
 */
export function cleanResponseHeaders(h: HeaderList, status: number, rttMs: number, suppressEnvoyHeaders: boolean): void {
  const upgradeToken = status === 101 ? getHeader(h, 'upgrade') : undefined;
  stripHopByHop(h);
  if (upgradeToken !== undefined) h.push('upgrade', upgradeToken);
  if (!suppressEnvoyHeaders) setHeader(h, 'x-envoy-upstream-service-time', String(Math.round(rttMs)));
}

/** Whether a content-type is gRPC's (application/grpc, +proto, +json, …). */
export function isGrpcContentType(ct: string | undefined): boolean {
  return ct !== undefined && ct.startsWith('application/grpc');
}

/** grpc-timeout units (gRPC over HTTP/2 spec): hours, minutes, seconds, milli-, micro-, nanoseconds. */
const GRPC_TIMEOUT_UNIT_MS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 1e-3, n: 1e-6 };

/**
 * Envoy's gRPC timeout: the request's grpc-timeout (absent or malformed = 0, which means none),
 * less the offset when that leaves it above 0, capped by the configured maximum unless that is 0.
 */
export function grpcTimeoutMs(header: string | undefined, maxMs: number, offsetMs: number): number {
  let t = 0;
  if (header !== undefined && header.length >= 2 && header.length <= 9) {
    const unit = GRPC_TIMEOUT_UNIT_MS[header[header.length - 1]!];
    const digits = header.slice(0, -1);
    if (unit !== undefined && isDigits(digits)) t = Math.ceil(Number(digits) * unit);
  }
  if (offsetMs > 0 && offsetMs < t) t -= offsetMs;
  if (maxMs > 0 && (t === 0 || t > maxMs)) t = maxMs;
  return t;
}
