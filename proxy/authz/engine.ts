/**
 * The RBAC engine shared by the HTTP and network RBAC filters: evaluates envoy.config.rbac.v3
 * policies (permissions × principals) against one request or connection.
 *
 * Semantics follow Envoy's RoleBasedAccessControlEngineImpl: a policy matches when at least one
 * of its permissions AND at least one of its principals match. Action ALLOW admits a request
 * only if some policy matches; DENY refuses it if some policy matches; LOG always admits it and
 * only records the match. Rules that need request data (header, url_path) never match on a bare
 * connection (network filter), as in Envoy, so a network DENY on a header cannot be bypassed by a
 * header-less connection being "allowed" by accident — and an ALLOW on a header admits nobody.
 *
 * Leans lean: evaluation walks the frozen config tree directly, compiles CIDR ranges once per
 * range (WeakMap), and allocates nothing per evaluation.
 */
import { BlockList, isIPv4, isIPv6 } from 'node:net';
import type { CidrRange, RbacConfig, RbacPermission, RbacPolicy, RbacPrincipal, StringMatcher } from '../config/types';
import type { DownstreamConnectionInfo, RequestHead } from '../http/codec';
import { matchHeader, matchString, pathOnly } from '../http/route-matcher';
import { type DynamicMetadataReader, metadataMatches } from './metadata-match';

/** What one evaluation looks at. Reuse one object per stream/connection. */
export interface AuthzInput {
  readonly connection: DownstreamConnectionInfo;
  /** The request (HTTP filter); undefined for the network filter. */
  readonly head: RequestHead | undefined;
  /**
   * The trusted client address for `remote_ip` (the x-forwarded-for derived address the
   * connection manager decided on); falls back to the connection's peer.
   */
  readonly remoteIp?: string;
  /** The stream's dynamic metadata by namespace (metadata principals and permissions). */
  readonly dynamicMetadata?: DynamicMetadataReader;
}

export type RbacAction = 'ALLOW' | 'DENY' | 'LOG';

/** Outcome of one rule set. */
export interface RbacDecision {
  readonly allowed: boolean;
  /** Name of the first policy that matched, or undefined. */
  readonly policy: string | undefined;
}

function normalizeIp(ip: string): string {
  return ip.startsWith('::ffff:') && isIPv4(ip.slice(7)) ? ip.slice(7) : ip;
}

const blocks = new WeakMap<CidrRange, BlockList>();

/** Whether `ip` is inside `range` (IPv4-mapped IPv6 addresses count as IPv4). */
export function cidrContains(range: CidrRange, ip: string): boolean {
  if (ip === '') return false;
  const addr = normalizeIp(ip);
  const fam = isIPv4(addr) ? 'ipv4' : isIPv6(addr) ? 'ipv6' : undefined;
  if (fam === undefined) return false;
  const rfam = isIPv4(range.addressPrefix) ? 'ipv4' : 'ipv6';
  if (rfam !== fam) return false;
  let bl = blocks.get(range);
  if (bl === undefined) {
    bl = new BlockList();
    bl.addSubnet(range.addressPrefix, range.prefixLen, fam);
    blocks.set(range, bl);
  }
  return bl.check(addr, fam);
}

function urlPathMatches(m: StringMatcher, head: RequestHead | undefined): boolean {
  if (head === undefined) return false;
  return matchString(m, pathOnly(head.path));
}

/** The address the connection was meant for: the original destination when intercepted. */
function destinationIp(c: DownstreamConnectionInfo): string {
  return c.originalDst?.address ?? c.localAddress;
}
function destinationPort(c: DownstreamConnectionInfo): number {
  return c.originalDst?.port ?? c.localPort;
}

export function permissionMatches(p: RbacPermission, input: AuthzInput): boolean {
  switch (p.kind) {
    case 'any':
      return true;
    case 'and':
      for (let i = 0; i < p.rules.length; i++) if (!permissionMatches(p.rules[i]!, input)) return false;
      return true;
    case 'or':
      for (let i = 0; i < p.rules.length; i++) if (permissionMatches(p.rules[i]!, input)) return true;
      return false;
    case 'not':
      return !permissionMatches(p.rule, input);
    case 'header':
      return input.head !== undefined && matchHeader(p.header, input.head);
    case 'url_path':
      return urlPathMatches(p.matcher, input.head);
    case 'destination_ip':
      return cidrContains(p.cidr, destinationIp(input.connection));
    case 'destination_port':
      return destinationPort(input.connection) === p.port;
    case 'requested_server_name':
      return matchString(p.matcher, input.connection.tls?.sni ?? '');
    case 'metadata':
      return metadataMatches(p.matcher, input.dynamicMetadata);
  }
  return false;
}

/**
 * authenticated: with no principal_name, any connection with a verified peer certificate; with
 * one, Envoy's order: each URI SAN, then each DNS SAN, then the subject.
 */
function authenticatedMatches(m: StringMatcher | undefined, c: DownstreamConnectionInfo): boolean {
  const tls = c.tls;
  if (tls === undefined) return false;
  const uris = tls.peerUriSans;
  const hasPeer =
    tls.peerPrincipal !== undefined || (uris !== undefined && uris.length > 0) || tls.peerSubject !== undefined;
  if (m === undefined) return hasPeer;
  if (uris !== undefined && uris.length > 0) {
    for (let i = 0; i < uris.length; i++) if (matchString(m, uris[i]!)) return true;
  } else if (tls.peerPrincipal !== undefined && matchString(m, tls.peerPrincipal)) return true;
  const dns = tls.peerDnsSans;
  if (dns !== undefined) for (let i = 0; i < dns.length; i++) if (matchString(m, dns[i]!)) return true;
  return tls.peerSubject !== undefined && matchString(m, tls.peerSubject);
}

export function principalMatches(p: RbacPrincipal, input: AuthzInput): boolean {
  switch (p.kind) {
    case 'any':
      return true;
    case 'and':
      for (let i = 0; i < p.ids.length; i++) if (!principalMatches(p.ids[i]!, input)) return false;
      return true;
    case 'or':
      for (let i = 0; i < p.ids.length; i++) if (principalMatches(p.ids[i]!, input)) return true;
      return false;
    case 'not':
      return !principalMatches(p.id, input);
    case 'authenticated':
      return authenticatedMatches(p.principalName, input.connection);
    case 'direct_remote_ip':
    case 'source_ip':
      return cidrContains(p.cidr, input.connection.remoteAddress);
    case 'remote_ip':
      return cidrContains(p.cidr, input.remoteIp || input.connection.remoteAddress);
    case 'header':
      return input.head !== undefined && matchHeader(p.header, input.head);
    case 'url_path':
      return urlPathMatches(p.matcher, input.head);
    case 'filter_state': {
      // What the istio_authn network filter set from the mTLS certificates; absent on plaintext
      // connections and on chains without istio_authn (then nothing matches, as in Envoy).
      const fs = input.connection.filterState;
      if (fs === undefined) return false;
      const v = p.key === 'io.istio.peer_principal' ? fs.peerPrincipal : fs.localPrincipal;
      return v !== undefined && matchString(p.matcher, v);
    }
    case 'metadata':
      return metadataMatches(p.matcher, input.dynamicMetadata);
  }
  return false;
}

export function policyMatches(policy: RbacPolicy, input: AuthzInput): boolean {
  let perm = false;
  const perms = policy.permissions;
  for (let i = 0; i < perms.length; i++) {
    if (permissionMatches(perms[i]!, input)) {
      perm = true;
      break;
    }
  }
  if (!perm) return false;
  const ids = policy.principals;
  for (let i = 0; i < ids.length; i++) if (principalMatches(ids[i]!, input)) return true;
  return false;
}

/** Name of the first matching policy (policies in config order), or undefined. */
export function firstMatchingPolicy(policies: readonly RbacPolicy[], input: AuthzInput): string | undefined {
  for (let i = 0; i < policies.length; i++) {
    const p = policies[i]!;
    if (policyMatches(p, input)) return p.name;
  }
  return undefined;
}

/** Whether a rule set admits the input, and which policy decided. */
export function decide(action: RbacAction, policy: string | undefined): boolean {
  if (action === 'ALLOW') return policy !== undefined;
  if (action === 'DENY') return policy === undefined;
  return true; // LOG
}

/** Counters of one RBAC filter (Envoy's rbac.allowed / rbac.denied / shadow_allowed / shadow_denied). */
export class RbacStats {
  allowed = 0;
  denied = 0;
  shadowAllowed = 0;
  shadowDenied = 0;
  /** LOG action: requests that matched a policy and should be logged. */
  logged = 0;
  constructor(
    /** Envoy stat name prefix, e.g. `http.inbound.rbac.` or `tcp_rbac.rbac.` */
    readonly name: string,
    readonly kind: 'http' | 'network',
    /** Prefix of shadow_allowed / shadow_denied: the rbac prefix + shadow_rules_stat_prefix. */
    readonly shadowName: string = name,
  ) {}
}

/**
 * One configured RBAC filter's engine: enforced rules, shadow rules and counters. Built once per
 * decoded config (the filter factories cache it), evaluated per request or connection.
 */
export class RbacEngine {
  /** Dynamic metadata keys of the shadow result, with shadow_rules_stat_prefix (Envoy's names). */
  readonly shadowEngineResultKey: string;
  readonly shadowEffectivePolicyIdKey: string;

  constructor(
    readonly config: RbacConfig,
    readonly stats: RbacStats,
  ) {
    const p = config.shadowStatPrefix ?? '';
    this.shadowEngineResultKey = `${p}shadow_engine_result`;
    this.shadowEffectivePolicyIdKey = `${p}shadow_effective_policy_id`;
  }

  /**
   * Evaluate shadow rules (counted only) and the enforced rules. Returns whether the input is
   * admitted; `lastPolicy` / `lastShadowPolicy` hold the deciding policies until the next call.
   */
  evaluate(input: AuthzInput): boolean {
    const cfg = this.config;
    const shadow = cfg.shadowRules;
    if (shadow !== undefined) {
      const sp = firstMatchingPolicy(shadow.policies, input);
      this.lastShadowPolicy = sp;
      this.lastShadowAllowed = decide(shadow.action, sp);
      if (this.lastShadowAllowed) this.stats.shadowAllowed++;
      else this.stats.shadowDenied++;
    }
    const rules = cfg.rules;
    if (rules === undefined) {
      this.lastPolicy = undefined;
      this.stats.allowed++;
      return true;
    }
    const p = firstMatchingPolicy(rules.policies, input);
    this.lastPolicy = p;
    const ok = decide(rules.action, p);
    if (rules.action === 'LOG' && p !== undefined) this.stats.logged++;
    if (ok) this.stats.allowed++;
    else this.stats.denied++;
    return ok;
  }

  lastPolicy: string | undefined = undefined;
  lastShadowPolicy: string | undefined = undefined;
  lastShadowAllowed = true;
}
