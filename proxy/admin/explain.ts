/**
 * Admin /explain: the decision path one request would take through the running configuration —
 * listener, filter chain (and why the others lost), network filters, HTTP filters, virtual host,
 * routes tried (with the first condition that failed), cluster, endpoints, upstream TLS and the
 * RBAC verdicts.
 *
 * It asks the proxy's own matchers (selectFilterChain with a trace, RouteTable.virtualHost with a
 * "why", routeMismatch, the RBAC engine's firstMatchingPolicy/decide) over the live objects, so the
 * answer is what a real request gets, not a re-implementation. It never counts stats nor touches
 * a connection; what only the run time decides (a weighted pick, an ext_authz answer, a JWT) is
 * reported as such.
 */
import { isIP } from 'node:net';
import { decide, firstMatchingPolicy, type AuthzInput } from '../authz/engine';
import type {
  FilterChainConfig,
  HcmConfig,
  HeaderMatcher,
  ListenerConfig,
  RbacConfig,
  Route,
  RouteConfiguration,
  StringMatcher,
  UpstreamTlsConfig,
} from '../config/types';
import type { DownstreamConnectionInfo, RequestHead } from '../http/codec';
import { Mismatch, PathKind, routeMismatch, routeTable, type CompiledRoute, type VirtualHostWhy } from '../http/route-matcher';
import { FILTER_CHAIN_STEPS, needsInspection, selectFilterChain, type MatchInput } from '../listeners/filter-chain-match';
import { matcherNeedsInspection, selectByMatcher } from '../listeners/filter-chain-matcher';
import type { InspectTarget } from './inspect-target';

const RBAC_TYPE = 'envoy.extensions.filters.http.rbac.v3.RBAC';

export interface ExplainRequest {
  readonly method: string;
  /** Absolute URL: scheme, authority and path (with query). */
  readonly url: string;
  /** Request headers, names lower-case. */
  readonly headers: readonly (readonly [string, string])[];
  /** Client address ("ip" or "ip:port"); default 127.0.0.1. */
  readonly source?: string;
  /** Listener to use; default: the one bound to the URL's port. */
  readonly listener?: string;
  /** Verified peer identity (SPIFFE ID) to assume for RBAC, as after mTLS. */
  readonly principal?: string;
}

export interface ChainCandidate {
  readonly name: string;
  readonly chosen: boolean;
  /** Why it lost: the criterion and whether it did not match or was less specific. */
  readonly reason?: string;
}

export interface RouteTried {
  readonly index: number;
  readonly name: string;
  readonly match: string;
  readonly matched: boolean;
  readonly failed?: string;
}

export interface RbacVerdict {
  readonly filter: string;
  readonly action: string;
  readonly policy?: string;
  readonly allowed: boolean;
  readonly shadow?: { readonly action: string; readonly policy?: string; readonly allowed: boolean };
  /** RBACPerRoute replaced (or disabled) the filter's config for this route. */
  readonly perRoute?: boolean;
}

export interface ExplainResult {
  request: { method: string; authority: string; path: string; scheme: string; source: string; headers: [string, string][] };
  listener?: { name: string; address: string; direction: string; why: string };
  filterChain?: {
    name: string;
    default: boolean;
    input: Record<string, unknown>;
    candidates: ChainCandidate[];
    /** Listeners with filter_chain_matcher: the name the matcher tree selected (absent: no match). */
    matcher?: { selected?: string };
  };
  networkFilters: { name: string; kind: string; note?: string }[];
  hcm?: { statPrefix: string; routeConfig: string; source: 'inline' | 'rds' };
  virtualHost?: { name: string; domains: readonly string[]; why: string };
  routes: RouteTried[];
  route?: { name: string; action: string; detail: Record<string, unknown> };
  httpFilters: { name: string; type: string; disabled: boolean; note?: string }[];
  rbac: RbacVerdict[];
  clusters: { name: string; weight?: number; percent?: number }[];
  upstream: {
    cluster: string;
    found: boolean;
    type?: string;
    lbPolicy?: string;
    endpoints: { address: string; health: string; weight: number; priority: number; locality: string }[];
    tls?: { sni?: string; alpn: readonly string[]; expectedSans: string[]; certificates: string[]; trust: string[] };
  }[];
  /** One line: what happens to the request. */
  verdict: string;
}

function splitHostPort(s: string, defPort: number): { ip: string; port: number } {
  if (isIP(s)) return { ip: s, port: defPort };
  const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(s);
  return m ? { ip: m[1]!, port: Number(m[2]) } : { ip: s, port: defPort };
}

function describeString(m: StringMatcher): string {
  if (m.kind === 'safe_regex') return `~ /${m.regex.source}/`;
  return `${m.kind} "${m.value}"${m.ignoreCase ? ' (ignore case)' : ''}`;
}

function describeHeaderMatcher(h: HeaderMatcher): string {
  const m = h.match;
  const what =
    m.kind === 'present'
      ? m.present
        ? 'present'
        : 'absent'
      : m.kind === 'any'
        ? 'present'
        : m.kind === 'string'
          ? describeString(m.matcher)
          : `in [${m.start}, ${m.end})`;
  return `header ${h.name} ${h.invert ? 'NOT ' : ''}${what}`;
}

function describePathMatch(r: Route): string {
  const p = r.match.path;
  const cs = r.match.caseSensitive ? '' : ' (ignore case)';
  switch (p.kind) {
    case 'prefix':
      return `prefix ${p.value}${cs}`;
    case 'path':
      return `path ${p.value}${cs}`;
    case 'safe_regex':
      return `regex ${p.value}`;
    case 'path_separated_prefix':
      return `path_separated_prefix ${p.value}${cs}`;
    default:
      return 'CONNECT';
  }
}

export function describeRouteMatch(r: Route): string {
  const parts = [describePathMatch(r)];
  if (r.match.grpc) parts.push('grpc');
  for (const h of r.match.headers) parts.push(describeHeaderMatcher(h));
  for (const q of r.match.queryParameters) parts.push(`query ${q.name} ${q.match.kind === 'present' ? 'present' : describeString(q.match.matcher)}`);
  return parts.join(', ');
}

/** Words for routeMismatch's code. */
function mismatchReason(r: CompiledRoute, code: number, head: RequestHead): string {
  if (code === Mismatch.Path) return `${describePathMatch(r.route)} does not match ${head.path}`;
  if (code === Mismatch.Connect) return r.kind === PathKind.Connect ? 'route matches CONNECT only' : 'CONNECT requests match connect_matcher routes only';
  if (code === Mismatch.Grpc) return 'not a gRPC request (content-type application/grpc*)';
  if (code === Mismatch.Runtime) {
    const f = r.match.runtimeFraction!;
    return `runtime_fraction ${f.numerator}/${f.denominator}${f.runtimeKey ? ` (runtime_key ${f.runtimeKey})` : ''} did not select this request`;
  }
  if (code >= Mismatch.Query) {
    const q = r.match.queryParameters[code - Mismatch.Query]!;
    return `query ${q.name}: ${q.match.kind === 'present' ? 'absent' : `${describeString(q.match.matcher)} does not match`}`;
  }
  const h = r.match.headers[code - Mismatch.Header]!;
  const v = head.headers.indexOf(h.name);
  const have = v >= 0 && v % 2 === 0 ? `"${head.headers[v + 1]}"` : h.name.startsWith(':') ? 'pseudo-header' : 'absent';
  return `${describeHeaderMatcher(h)} fails (request has ${have})`;
}

function addressOf(l: ListenerConfig, bound: number): string {
  return l.address.kind === 'pipe' ? l.address.path : `${l.address.host}:${bound || l.address.port}`;
}

/** The listener a connection to ip:port lands on (as the virtual listeners' hand-over does). */
function pickListener(server: InspectTarget, req: ExplainRequest, dst: { ip: string; port: number }): { name: string; why: string } | undefined {
  const all = server.listeners.all();
  if (req.listener) {
    return all.some((l) => l.config.name === req.listener) ? { name: req.listener, why: 'named in the request (listener=)' } : undefined;
  }
  const byOd = isIP(dst.ip) ? server.listeners.findByOriginalDst({ address: dst.ip, port: dst.port }) : undefined;
  if (byOd) return { name: byOd.config.name, why: `bound to ${dst.ip}:${dst.port} (or its wildcard address), as an original destination hands it over` };
  const onPort = all.filter((l) => l.config.address.kind === 'socket' && (l.boundPort || l.config.address.port) === dst.port);
  if (onPort.length > 0) return { name: onPort[0]!.config.name, why: `the listener on port ${dst.port}` };
  return undefined;
}

function rbacVerdict(name: string, cfg: RbacConfig | undefined, input: AuthzInput, perRoute: boolean): RbacVerdict {
  if (!cfg || !cfg.rules) {
    const v: RbacVerdict = { filter: name, action: cfg ? 'none' : 'disabled', allowed: true, perRoute };
    return cfg?.shadowRules ? { ...v, shadow: shadowOf(cfg, input) } : v;
  }
  const policy = firstMatchingPolicy(cfg.rules.policies, input);
  return {
    filter: name,
    action: cfg.rules.action,
    ...(policy !== undefined ? { policy } : {}),
    allowed: decide(cfg.rules.action, policy),
    perRoute,
    ...(cfg.shadowRules ? { shadow: shadowOf(cfg, input) } : {}),
  };
}

function shadowOf(cfg: RbacConfig, input: AuthzInput): RbacVerdict['shadow'] {
  const s = cfg.shadowRules!;
  const policy = firstMatchingPolicy(s.policies, input);
  return { action: s.action, ...(policy !== undefined ? { policy } : {}), allowed: decide(s.action, policy) };
}

function tlsFacts(t: UpstreamTlsConfig): NonNullable<ExplainResult['upstream'][number]['tls']> {
  const c = t.common;
  const vc = c.combinedDefaultValidationContext ?? c.validationContext;
  return {
    ...(t.sni ? { sni: t.sni } : {}),
    alpn: c.alpnProtocols,
    expectedSans: (vc?.matchTypedSubjectAltNames ?? []).map((s) => `${s.sanType} ${describeString(s.matcher)}`),
    certificates: c.tlsCertificateSdsSecretConfigs.map((s) => `sds:${s.name}`).concat(c.tlsCertificates.map(() => 'inline')),
    trust: [
      ...(c.validationContextSdsSecretConfig ? [`sds:${c.validationContextSdsSecretConfig.name}`] : []),
      ...(vc?.trustedCa ? ['inline trusted_ca'] : []),
    ],
  };
}

function upstreamOf(server: InspectTarget, name: string): ExplainResult['upstream'][number] {
  const c = server.clusters.get(name);
  if (!c) return { cluster: name, found: false, endpoints: [] };
  const d = server.clusters.describe().find((x) => x.name === name);
  return {
    cluster: name,
    found: true,
    type: c.config.type,
    lbPolicy: c.config.lbPolicy,
    endpoints: (d?.hosts ?? []).map((h) => ({
      address: h.address,
      health: h.healthFlags,
      weight: h.weight,
      priority: h.priority,
      locality: [h.region, h.zone, h.subZone].filter(Boolean).join('/'),
    })),
    ...(c.config.transportSocket ? { tls: tlsFacts(c.config.transportSocket) } : {}),
  };
}

/** Walk one request through the running configuration. */
export function explainRequest(server: InspectTarget, req: ExplainRequest): ExplainResult {
  const url = new URL(req.url);
  const scheme = url.protocol.replace(/:$/, '');
  const defPort = scheme === 'https' ? 443 : 80;
  const dstPort = url.port ? Number(url.port) : defPort;
  const hostOnly = url.hostname.replace(/^\[|\]$/g, '');
  const authorityHeader = req.headers.find(([k]) => k === 'host' || k === ':authority')?.[1];
  const authority = authorityHeader ?? url.host;
  const src = splitHostPort(req.source ?? '127.0.0.1', 50000);
  const path = `${url.pathname}${url.search}`;
  const headerList: string[] = [];
  for (const [k, v] of req.headers) if (k !== 'host' && k !== ':authority') headerList.push(k.toLowerCase(), v);
  const head: RequestHead = {
    method: req.method.toUpperCase(),
    path,
    authority,
    scheme,
    protocol: 'HTTP/1.1',
    headers: headerList,
    contentLength: 0,
  };
  const out: ExplainResult = {
    request: { method: head.method, authority, path, scheme, source: `${src.ip}:${src.port}`, headers: req.headers.map(([k, v]) => [k, v]) },
    networkFilters: [],
    routes: [],
    httpFilters: [],
    rbac: [],
    clusters: [],
    upstream: [],
    verdict: '',
  };

  const picked = pickListener(server, req, { ip: hostOnly, port: dstPort });
  const listener = picked ? server.listeners.get(picked.name) : undefined;
  if (!picked || !listener) {
    out.verdict = req.listener ? `no listener named "${req.listener}"` : `no listener for port ${dstPort}: the connection is refused (or, with interception, handled by the catch-all)`;
    return out;
  }
  const lc = listener.config;
  out.listener = { name: lc.name, address: addressOf(lc, listener.boundPort), direction: lc.trafficDirection, why: picked.why };

  // Filter chain: the proxy's own selection, traced.
  const matcher = lc.filterChainMatcher;
  const inspect =
    lc.listenerFilters.some((f) => f.kind === 'tls_inspector' || f.kind === 'http_inspector') ||
    (matcher ? matcherNeedsInspection(matcher) : needsInspection(lc.filterChains));
  const tls = scheme === 'https';
  const dstIp = isIP(hostOnly) ? hostOnly : lc.address.kind === 'socket' ? lc.address.host : '0.0.0.0';
  const input: MatchInput = {
    destinationPort: dstPort,
    destinationIp: dstIp,
    serverName: inspect && tls ? hostOnly : undefined,
    transportProtocol: inspect && tls ? 'tls' : 'raw_buffer',
    applicationProtocols: inspect ? (tls ? ['http/1.1'] : ['http/1.1']) : undefined,
    sourceIp: src.ip,
    sourcePort: src.port,
  };
  const lost = new Map<FilterChainConfig, string>();
  const scores = new Map<FilterChainConfig, number | undefined>();
  let lastStep = -1;
  let selected: string | undefined;
  let chosen: FilterChainConfig | undefined;
  const settle = (): void => {
    if (lastStep < 0) return;
    let best = -1;
    for (const s of scores.values()) if (s !== undefined && s > best) best = s;
    const step = FILTER_CHAIN_STEPS[lastStep]!;
    for (const [c, s] of scores) {
      if (s === undefined) lost.set(c, `${step} does not match`);
      else if (s < best) lost.set(c, `${step}: a more specific chain matched`);
    }
    scores.clear();
  };
  if (matcher) {
    // The listener's own selection: the matcher tree names a chain (filter_chain_match is not used).
    const r = selectByMatcher(matcher, lc.filterChains, input);
    selected = r.name;
    chosen = r.chain;
    const why =
      r.name === undefined
        ? 'filter_chain_matcher matched no chain'
        : r.chain === undefined
          ? `filter_chain_matcher selected "${r.name}", which no filter chain is named`
          : `filter_chain_matcher selected "${r.name}"`;
    for (const c of lc.filterChains) if (c !== chosen) lost.set(c, why);
  } else {
    chosen = selectFilterChain(lc.filterChains, input, (step, c, s) => {
      if (step !== lastStep) {
        settle();
        lastStep = step;
      }
      scores.set(c, s);
    });
    settle();
  }
  const chain = chosen ?? lc.defaultFilterChain;
  out.filterChain = chain
    ? {
        name: chain.name || '(unnamed)',
        default: !chosen,
        input: { ...input },
        candidates: lc.filterChains.map((c) => ({
          name: c.name || '(unnamed)',
          chosen: c === chosen,
          ...(c === chosen ? {} : { reason: lost.get(c) ?? 'tied with the chosen chain (first wins)' }),
        })),
        ...(matcher ? { matcher: selected === undefined ? {} : { selected } } : {}),
      }
    : undefined;
  if (!chain) {
    out.verdict = matcher
      ? `${selected === undefined ? 'filter_chain_matcher matched no chain' : `filter_chain_matcher selected "${selected}", which no filter chain is named`} and there is no default_filter_chain: the connection is closed`
      : 'no filter chain matches and there is no default_filter_chain: the connection is closed';
    return out;
  }

  const connection: DownstreamConnectionInfo = {
    id: 0,
    remoteAddress: src.ip,
    remotePort: src.port,
    localAddress: dstIp,
    localPort: dstPort,
    ...(tls || req.principal
      ? { tls: { sni: tls ? hostOnly : undefined, ...(req.principal ? { peerPrincipal: req.principal, peerUriSans: [req.principal] } : {}) } }
      : {}),
  };
  let hcm: HcmConfig | undefined;
  for (const f of chain.filters) {
    if (f.kind === 'rbac') {
      const v = rbacVerdict(f.name, f.rbac, { connection, head: undefined }, false);
      out.rbac.push(v);
      out.networkFilters.push({ name: f.name, kind: f.kind, note: v.allowed ? 'connection allowed' : `connection denied (policy ${v.policy ?? 'none'})` });
      if (!v.allowed) {
        out.verdict = `network RBAC "${f.name}" closes the connection (${v.action}, policy ${v.policy ?? 'none'})`;
        return out;
      }
    } else if (f.kind === 'tcp_proxy') {
      out.networkFilters.push({ name: f.name, kind: f.kind, note: 'TCP proxy: no HTTP routing' });
      const cl = f.tcp.cluster;
      if (cl.kind === 'cluster') out.clusters.push({ name: cl.name });
      else for (const w of cl.clusters) out.clusters.push({ name: w.name, weight: w.weight, percent: Math.round((1000 * w.weight) / cl.totalWeight) / 10 });
      for (const c of out.clusters) out.upstream.push(upstreamOf(server, c.name));
      out.verdict = `proxied as TCP to ${out.clusters.map((c) => c.name).join(' / ')}`;
      return out;
    } else {
      out.networkFilters.push({ name: f.name, kind: f.kind, ...(f.kind === 'ext_authz' ? { note: 'decided at run time by the authorization service' } : {}) });
      if (f.kind === 'http_connection_manager') hcm = f.hcm;
    }
  }
  if (!hcm) {
    out.verdict = 'the chain has no HTTP connection manager';
    return out;
  }
  const rs = hcm.routeSource;
  const rc: RouteConfiguration | undefined = rs.kind === 'static' ? rs.config : server.routeTables.get(rs.routeConfigName);
  out.hcm = { statPrefix: hcm.statPrefix, routeConfig: rs.kind === 'static' ? rs.config.name : rs.routeConfigName, source: rs.kind === 'static' ? 'inline' : 'rds' };
  if (!rc) {
    out.verdict = `route configuration "${out.hcm.routeConfig}" is not loaded yet: 404 NR`;
    return out;
  }

  // Virtual host and routes: the proxy's own tables.
  const table = routeTable(rc);
  const why: VirtualHostWhy = {};
  const vh = table.virtualHost(authority, why);
  let matched: CompiledRoute | undefined;
  if (vh) {
    const how =
      why.how === 'exact' ? `exact domain "${why.domain}"` : why.how === 'suffix' ? `wildcard "*${why.domain}"` : why.how === 'prefix' ? `wildcard "${why.domain}*"` : 'the catch-all "*"';
    out.virtualHost = { name: vh.vhost.name, domains: vh.vhost.domains, why: `${how} matches ${authority}${why.portStripped ? ' (port removed)' : ''}` };
    for (let i = 0; i < vh.routes.length; i++) {
      const r = vh.routes[i]!;
      const code = routeMismatch(r, head);
      out.routes.push({
        index: i,
        name: r.route.name,
        match: describeRouteMatch(r.route),
        matched: code === Mismatch.None,
        ...(code === Mismatch.None ? {} : { failed: mismatchReason(r, code, head) }),
      });
      if (code === Mismatch.None) {
        matched = r;
        break;
      }
    }
  }

  // HTTP filters in order; RBAC evaluated with the route's override, as the filter does.
  const authz: AuthzInput = { connection, head, remoteIp: src.ip };
  let denied: RbacVerdict | undefined;
  for (const f of hcm.httpFilters) {
    const entry = { name: f.name, type: f.typeName, disabled: f.disabled };
    if (f.typeName === RBAC_TYPE && !f.disabled && !denied) {
      const per = (matched?.route.typedPerFilterConfig[f.name] ?? matched?.vhost.typedPerFilterConfig[f.name]) as
        | { kind?: string; config?: RbacConfig }
        | undefined;
      const isPer = per?.kind === 'rbac_per_route';
      const v = rbacVerdict(f.name, isPer ? per.config : (f.config as RbacConfig), authz, isPer);
      out.rbac.push(v);
      out.httpFilters.push({ ...entry, note: v.allowed ? `allowed${v.policy ? ` (policy ${v.policy})` : ''}` : `denied: 403 (policy ${v.policy ?? 'none'})` });
      if (!v.allowed) denied = v;
    } else out.httpFilters.push(entry);
  }

  if (!vh) {
    out.verdict = `no virtual host matches ${authority}: 404 NR`;
    return out;
  }
  if (!matched) {
    out.verdict = `no route in virtual host "${vh.vhost.name}" matches: 404 NR`;
    return out;
  }
  const a = matched.route.action;
  if (a.kind === 'redirect') {
    out.route = { name: matched.route.name, action: 'redirect', detail: { responseCode: a.responseCode, host: a.hostRedirect, path: a.pathRedirect, https: a.httpsRedirect } };
  } else if (a.kind === 'direct_response') {
    out.route = { name: matched.route.name, action: 'direct_response', detail: { status: a.status } };
  } else {
    const c = a.cluster;
    if (c.kind === 'cluster') out.clusters.push({ name: c.name });
    else if (c.kind === 'weighted') for (const w of c.clusters) out.clusters.push({ name: w.name, weight: w.weight, percent: Math.round((1000 * w.weight) / c.totalWeight) / 10 });
    else {
      const v = head.headers.indexOf(c.header);
      if (v >= 0 && v % 2 === 0) out.clusters.push({ name: head.headers[v + 1]! });
    }
    out.route = {
      name: matched.route.name,
      action: 'route',
      detail: {
        cluster: c.kind === 'cluster' ? c.name : c.kind === 'weighted' ? 'weighted_clusters' : `from header ${c.header}`,
        timeoutMs: a.timeoutMs,
        ...(a.prefixRewrite !== undefined ? { prefixRewrite: a.prefixRewrite } : {}),
        ...(a.hostRewriteLiteral !== undefined ? { hostRewrite: a.hostRewriteLiteral } : {}),
        ...(a.retryPolicy ? { retries: a.retryPolicy.numRetries } : {}),
      },
    };
    for (const cl of out.clusters) out.upstream.push(upstreamOf(server, cl.name));
  }
  if (denied) {
    out.verdict = `403 RBAC: access denied by "${denied.filter}" (${denied.action}, policy ${denied.policy ?? 'none'})`;
  } else if (a.kind === 'redirect') out.verdict = `${a.responseCode} redirect`;
  else if (a.kind === 'direct_response') out.verdict = `${a.status} direct response`;
  else if (out.clusters.length === 0) out.verdict = 'cluster header absent: 503 (no cluster)';
  else {
    const missing = out.upstream.filter((u) => !u.found).map((u) => u.cluster);
    const names = out.clusters.map((c) => (c.percent !== undefined ? `${c.name} (${c.percent}%)` : c.name)).join(', ');
    out.verdict = missing.length > 0 ? `routed to ${names}; cluster ${missing.join(', ')} not found: 503 NC` : `routed to ${names}`;
  }
  return out;
}
