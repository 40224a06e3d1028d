/**
 * Route matching: virtual host selection and route selection, as pure functions over the frozen
 * RouteConfiguration.
 *
 * Owns Envoy's matching semantics: domains searched exact → longest `*.suffix` wildcard →
 * longest `prefix.*` wildcard → `*` (a wildcard never matches the empty string; when nothing but
 * `*` would match a host with a port, the lookup is retried without the port), then the vhost's
 * routes in order by prefix / path / safe_regex (full match) / path_separated_prefix /
 * connect_matcher, case_sensitive, headers, query_parameters and grpc.
 *
 * Leans towards compile-once: everything derivable from the config (domain index, lower-cased
 * prefixes, anchored regexes) is built the first time a RouteConfiguration is seen and cached in a
 * WeakMap keyed by the frozen object, so an RDS swap simply brings a new key. Matching itself does
 * not allocate except for query-string parsing when a route asks for query parameters.
 */
import { EMPTY_RUNTIME, type RuntimeReader } from '../../common/runtime';
import type {
  HeaderMatcher,
  QueryParameterMatcher,
  Route,
  RouteConfiguration,
  RouteMatch,
  StringMatcher,
  VirtualHost,
} from '../config/types';
import type { RequestHead } from './codec';
import { getHeaderJoined, hasPort, stripPort } from './headers';

// ───────────────────────────── string matchers ─────────────────────────────

const anchored = new WeakMap<RegExp, RegExp>();

/** `re` compiled to match the whole input (Envoy's safe_regex is a full match). */
export function fullMatchRegex(re: RegExp): RegExp {
  let a = anchored.get(re);
  if (!a) {
    a = new RegExp(`^(?:${re.source})$`, re.flags.replace(/[gy]/g, ''));
    anchored.set(re, a);
  }
  return a;
}

/** envoy.type.matcher.v3.StringMatcher semantics. */
export function matchString(m: StringMatcher, value: string): boolean {
  if (m.kind === 'safe_regex') return fullMatchRegex(m.regex).test(value);
  const v = m.ignoreCase ? value.toLowerCase() : value;
  const p = m.ignoreCase ? m.value.toLowerCase() : m.value;
  switch (m.kind) {
    case 'exact':
      return v === p;
    case 'prefix':
      return v.startsWith(p);
    case 'suffix':
      return v.endsWith(p);
    case 'contains':
      return v.includes(p);
  }
  return false;
}

// ───────────────────────────── header / query matchers ─────────────────────────────

/**
 * A request header by name as Envoy's matchers see it: pseudo-headers from the head's fields,
 * repeated headers joined with ",".
 */
export function requestHeaderValue(head: RequestHead, name: string): string | undefined {
  if (name.charCodeAt(0) === 58 /* ':' */) {
    switch (name) {
      case ':method':
        return head.method;
      case ':path':
        return head.path;
      case ':authority':
      case 'host':
        return head.authority === '' ? undefined : head.authority;
      case ':scheme':
        return head.scheme;
      default:
        return undefined;
    }
  }
  if (name === 'host') return head.authority === '' ? getHeaderJoined(head.headers, name) : head.authority;
  return getHeaderJoined(head.headers, name);
}

const INT_RE = /^[+-]?\d+$/;

/**
 * envoy.config.route.v3.HeaderMatcher: an absent header fails value matchers (invert does not
 * rescue it) unless treat_missing_header_as_empty; present_match compares presence and honours
 * invert; no specifier means "present".
 */
export function matchHeader(m: HeaderMatcher, head: RequestHead): boolean {
  return matchHeaderValue(m, requestHeaderValue(head, m.name));
}

/** A HeaderMatcher against a header's value (undefined = absent), for request or response headers. */
export function matchHeaderValue(m: HeaderMatcher, v: string | undefined): boolean {
  const match = m.match;
  if (match.kind === 'present') return ((v !== undefined) === match.present) !== m.invert;
  if (match.kind === 'any') return (v !== undefined) !== m.invert;
  let value = v;
  if (value === undefined) {
    if (!m.treatMissingAsEmpty) return false;
    value = '';
  }
  let ok: boolean;
  if (match.kind === 'string') ok = matchString(match.matcher, value);
  else {
    // range_match: [start, end) over a signed integer value.
    if (!INT_RE.test(value)) ok = false;
    else {
      const n = Number(value);
      ok = n >= match.start && n < match.end;
    }
  }
  return ok !== m.invert;
}

export function matchHeaders(ms: readonly HeaderMatcher[], head: RequestHead): boolean {
  for (let i = 0; i < ms.length; i++) if (!matchHeader(ms[i]!, head)) return false;
  return true;
}

/** First value of a query parameter (percent-decoded), undefined when absent. */
export function queryParam(path: string, name: string): string | undefined {
  const q = path.indexOf('?');
  if (q < 0) return undefined;
  const hash = path.indexOf('#', q);
  const qs = hash < 0 ? path.slice(q + 1) : path.slice(q + 1, hash);
  let start = 0;
  while (start <= qs.length) {
    let amp = qs.indexOf('&', start);
    if (amp < 0) amp = qs.length;
    const eq = qs.indexOf('=', start);
    const keyEnd = eq >= 0 && eq < amp ? eq : amp;
    if (decode(qs.slice(start, keyEnd)) === name) return keyEnd === amp ? '' : decode(qs.slice(keyEnd + 1, amp));
    start = amp + 1;
  }
  return undefined;
}

function decode(s: string): string {
  if (!s.includes('%') && !s.includes('+')) return s;
  try {
    return decodeURIComponent(s.replace(/\+/g, ' '));
  } catch {
    return s;
  }
}

export function matchQueryParameter(m: QueryParameterMatcher, path: string): boolean {
  const v = queryParam(path, m.name);
  if (v === undefined) return false;
  return m.match.kind === 'present' ? true : matchString(m.match.matcher, v);
}

// ───────────────────────────── compiled tables ─────────────────────────────

/** Path match kinds, as small integers for a cheap switch. */
export const PathKind = { Prefix: 0, Path: 1, Regex: 2, SeparatedPrefix: 3, Connect: 4 } as const;
export type PathKind = (typeof PathKind)[keyof typeof PathKind];

/** One route with what can be precomputed from its match. */
export interface CompiledRoute {
  readonly route: Route;
  readonly vhost: VirtualHost;
  readonly kind: PathKind;
  /** The configured path value, lower-cased when case-insensitive. */
  readonly value: string;
  readonly caseSensitive: boolean;
  readonly regex: RegExp | undefined;
  readonly match: RouteMatch;
}

export interface CompiledVirtualHost {
  readonly vhost: VirtualHost;
  readonly routes: readonly CompiledRoute[];
}

interface Wildcard {
  readonly part: string;
  readonly vh: CompiledVirtualHost;
}

/**
 * Why a virtual host was chosen (admin /explain only): filled in when passed to
 * RouteTable.virtualHost; the request path never passes one.
 */
export interface VirtualHostWhy {
  how?: 'exact' | 'suffix' | 'prefix' | 'any';
  /** The domain entry that matched (for `suffix`/`prefix` without the `*`). */
  domain?: string;
  /** The lookup matched only after removing the port from the authority. */
  portStripped?: boolean;
}

/** The per-RouteConfiguration index: built once, cached by object identity. */
export class RouteTable {
  private readonly exact = new Map<string, CompiledVirtualHost>();
  /** `*.suffix` and `*suffix` domains, longest suffix first. */
  private readonly suffixes: Wildcard[] = [];
  /** `prefix.*` domains, longest prefix first. */
  private readonly prefixes: Wildcard[] = [];
  private readonly fallback: CompiledVirtualHost | undefined;

  constructor(readonly config: RouteConfiguration) {
    let fallback: CompiledVirtualHost | undefined;
    for (const vh of config.virtualHosts) {
      const cvh: CompiledVirtualHost = { vhost: vh, routes: vh.routes.map((r) => compileRoute(r, vh)) };
      for (const raw of vh.domains) {
        const d = raw.toLowerCase();
        if (d === '*') {
          fallback ??= cvh;
        } else if (d.startsWith('*')) {
          this.suffixes.push({ part: d.slice(1), vh: cvh });
        } else if (d.endsWith('*')) {
          this.prefixes.push({ part: d.slice(0, -1), vh: cvh });
        } else if (!this.exact.has(d)) {
          this.exact.set(d, cvh);
        }
      }
    }
    // Stable sort: on equal length the earlier virtual host wins.
    this.suffixes.sort((a, b) => b.part.length - a.part.length);
    this.prefixes.sort((a, b) => b.part.length - a.part.length);
    this.fallback = fallback;
  }

  /** Virtual host for an authority (Host / :authority), Envoy's search order. */
  virtualHost(authority: string, why?: VirtualHostWhy): CompiledVirtualHost | undefined {
    let host = authority.toLowerCase();
    // ignore_port_in_host_matching: the port never takes part (Envoy strips it before the search).
    if (this.config.ignorePortInHostMatching === true && hasPort(host)) {
      host = stripPort(host);
      if (why) why.portStripped = true;
    }
    const found = this.lookup(host, why);
    if (found) return found;
    if (hasPort(host)) {
      const bare = this.lookup(stripPort(host), why);
      if (bare) {
        if (why) why.portStripped = true;
        return bare;
      }
    }
    if (why && this.fallback) why.how = 'any';
    return this.fallback;
  }

  private lookup(host: string, why: VirtualHostWhy | undefined): CompiledVirtualHost | undefined {
    const e = this.exact.get(host);
    if (e) {
      if (why) Object.assign(why, { how: 'exact', domain: host });
      return e;
    }
    for (let i = 0; i < this.suffixes.length; i++) {
      const w = this.suffixes[i]!;
      if (host.length > w.part.length && host.endsWith(w.part)) {
        if (why) Object.assign(why, { how: 'suffix', domain: w.part });
        return w.vh;
      }
    }
    for (let i = 0; i < this.prefixes.length; i++) {
      const w = this.prefixes[i]!;
      if (host.length > w.part.length && host.startsWith(w.part)) {
        if (why) Object.assign(why, { how: 'prefix', domain: w.part });
        return w.vh;
      }
    }
    return undefined;
  }

  /** The first matching route of the selected virtual host, or undefined (→ 404 NR). */
  /**
   * `runtime`/`random`: see routeMismatch. Envoy draws one random value per request for runtime
   * fractions; meshlet draws it only when a route that has one is reached (most requests never do).
   */
  route(head: RequestHead, runtime?: RuntimeReader, random?: () => number): CompiledRoute | undefined {
    const vh = this.virtualHost(head.authority);
    if (!vh) return undefined;
    const rs = vh.routes;
    let roll: number | undefined;
    for (let i = 0; i < rs.length; i++) {
      const r = rs[i]!;
      if (roll === undefined && random !== undefined && r.match.runtimeFraction !== undefined) roll = random();
      if (routeMismatch(r, head, runtime, roll) === M_NONE) return r;
    }
    return undefined;
  }
}

function compileRoute(route: Route, vhost: VirtualHost): CompiledRoute {
  const m = route.match;
  const p = m.path;
  let kind: PathKind;
  let value = '';
  let regex: RegExp | undefined;
  switch (p.kind) {
    case 'prefix':
      kind = PathKind.Prefix;
      value = p.value;
      break;
    case 'path':
      kind = PathKind.Path;
      value = p.value;
      break;
    case 'safe_regex':
      kind = PathKind.Regex;
      regex = fullMatchRegex(p.regex);
      break;
    case 'path_separated_prefix':
      kind = PathKind.SeparatedPrefix;
      value = p.value;
      break;
    default:
      kind = PathKind.Connect;
  }
  if (!m.caseSensitive) value = value.toLowerCase();
  return { route, vhost, kind, value, caseSensitive: m.caseSensitive, regex, match: m };
}

/** Path without query string and fragment. */
export function pathOnly(path: string): string {
  let end = path.length;
  const q = path.indexOf('?');
  if (q >= 0) end = q;
  const h = path.indexOf('#');
  if (h >= 0 && h < end) end = h;
  return end === path.length ? path : path.slice(0, end);
}

function startsWithCase(s: string, prefix: string, caseSensitive: boolean): boolean {
  if (s.length < prefix.length) return false;
  if (caseSensitive) return s.startsWith(prefix);
  return s.slice(0, prefix.length).toLowerCase() === prefix;
}

/**
 * The first condition of a route's match that refuses a request, as a small integer (no
 * allocation): 0 = the route matches; Mismatch.Path / Connect / Grpc; Mismatch.Header + i for
 * the i-th header matcher; Mismatch.Query + i for the i-th query parameter matcher. Admin
 * /explain turns the code into words; the request path only compares it with 0.
 */
const M_NONE = 0;
const M_PATH = 1;
const M_CONNECT = 2;
const M_GRPC = 3;
const M_RUNTIME = 4;
const M_HEADER = 0x100;
const M_QUERY = 0x10000;
export const Mismatch = Object.freeze({ None: M_NONE, Path: M_PATH, Connect: M_CONNECT, Grpc: M_GRPC, Runtime: M_RUNTIME, Header: M_HEADER, Query: M_QUERY });

/**
 * `runtime` and `random` (0 ≤ random < 1) decide a route's runtime_fraction; without a runtime the
 * fraction's default is tested against a fresh random value.
 */
export function routeMismatch(r: CompiledRoute, head: RequestHead, runtime?: RuntimeReader, random?: number): number {
  const isConnect = head.method === 'CONNECT';
  switch (r.kind) {
    case PathKind.Connect:
      if (!isConnect) return M_CONNECT;
      break;
    case PathKind.Prefix:
      // Envoy matches prefixes against the whole :path, query included.
      if (isConnect) return M_CONNECT;
      if (!startsWithCase(head.path, r.value, r.caseSensitive)) return M_PATH;
      break;
    case PathKind.Path: {
      if (isConnect) return M_CONNECT;
      const p = pathOnly(head.path);
      if (r.caseSensitive ? p !== r.value : p.toLowerCase() !== r.value) return M_PATH;
      break;
    }
    case PathKind.Regex:
      if (isConnect) return M_CONNECT;
      if (!r.regex!.test(pathOnly(head.path))) return M_PATH;
      break;
    case PathKind.SeparatedPrefix: {
      if (isConnect) return M_CONNECT;
      const p = pathOnly(head.path);
      if (!startsWithCase(p, r.value, r.caseSensitive)) return M_PATH;
      if (p.length !== r.value.length && p.charCodeAt(r.value.length) !== 47 /* '/' */) return M_PATH;
      break;
    }
  }
  const m = r.match;
  if (m.grpc && !isGrpcRequest(head)) return M_GRPC;
  const hs = m.headers;
  for (let i = 0; i < hs.length; i++) if (!matchHeader(hs[i]!, head)) return M_HEADER + i;
  const qs = m.queryParameters;
  for (let i = 0; i < qs.length; i++) if (!matchQueryParameter(qs[i]!, head.path)) return M_QUERY + i;
  const rf = m.runtimeFraction;
  if (rf !== undefined && !(runtime ?? EMPTY_RUNTIME).fractionEnabled(rf, random ?? Math.random())) return M_RUNTIME;
  return M_NONE;
}

/** Whether one compiled route's match accepts the request. */
export function routeMatches(r: CompiledRoute, head: RequestHead, runtime?: RuntimeReader, random?: number): boolean {
  return routeMismatch(r, head, runtime, random) === M_NONE;
}

export function matchRoutes(vh: CompiledVirtualHost, head: RequestHead, runtime?: RuntimeReader, random?: number): CompiledRoute | undefined {
  const rs = vh.routes;
  for (let i = 0; i < rs.length; i++) if (routeMatches(rs[i]!, head, runtime, random)) return rs[i];
  return undefined;
}

/** content-type application/grpc (+proto, +json, …). */
export function isGrpcRequest(head: RequestHead): boolean {
  const h = head.headers;
  for (let i = 0; i < h.length; i += 2) {
    if (h[i] === 'content-type') return h[i + 1]!.startsWith('application/grpc');
  }
  return false;
}

const tables = new WeakMap<RouteConfiguration, RouteTable>();

/** The compiled table for a (frozen) RouteConfiguration, built on first use. */
export function routeTable(config: RouteConfiguration): RouteTable {
  let t = tables.get(config);
  if (!t) {
    t = new RouteTable(config);
    tables.set(config, t);
  }
  return t;
}

/** Convenience: the matching route for a request, or undefined. */
export function findRoute(config: RouteConfiguration, head: RequestHead): CompiledRoute | undefined {
  return routeTable(config).route(head);
}
