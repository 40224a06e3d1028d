/**
 * Decoder for envoy.config.rbac.v3.RBAC and the network RBAC filter
 * (envoy.extensions.filters.network.rbac.v3.RBAC). `decodeRbac` is shared with the HTTP RBAC
 * filter factory.
 *
 * Leans fail-closed: a permission, principal or policy condition meshlet does not implement is
 * an error, never a warning, because ignoring it would change who is allowed in.
 */
import { Reader } from '../../../common/reader';
import type { RbacConfig, RbacPermission, RbacPolicy, RbacPrincipal, StringMatcher } from '../types';
import type { DecodeContext } from './context';
import { enumOf } from './core';
import { decodeCidr, decodeHeaderMatcher, decodeStringMatcher } from './matchers';
import { decodeMetadataMatcher } from './metadata-matcher';

export const T_NETWORK_RBAC = 'envoy.extensions.filters.network.rbac.v3.RBAC';

const PERMISSION_KEYS = [
  'any',
  'and_rules',
  'or_rules',
  'not_rule',
  'header',
  'url_path',
  'destination_ip',
  'destination_port',
  'requested_server_name',
  'destination_port_range',
  'metadata',
  'matcher',
  'uri_template',
  'sourced_metadata',
] as const;

const PRINCIPAL_KEYS = [
  'any',
  'and_ids',
  'or_ids',
  'not_id',
  'authenticated',
  'direct_remote_ip',
  'remote_ip',
  'source_ip',
  'header',
  'url_path',
  'metadata',
  'filter_state',
  'custom',
  'sourced_metadata',
] as const;

function pathMatcher(r: Reader, key: string): StringMatcher | undefined {
  const p = r.obj(key);
  if (!p) return undefined;
  const s = p.obj('path');
  if (!s) p.error('path', 'is required');
  const m = s ? decodeStringMatcher(s) : undefined;
  p.done();
  return m;
}

function anyTrue(r: Reader, key: string): boolean {
  if (r.bool(key, false) !== true) {
    r.error(key, 'must be true');
    return false;
  }
  return true;
}

/** envoy.config.rbac.v3.Permission */
export function decodePermission(r: Reader): RbacPermission | undefined {
  const which = r.oneof(PERMISSION_KEYS);
  let out: RbacPermission | undefined;
  switch (which) {
    case undefined:
      r.issues.error(
        r.path,
        'a permission rule must be set (any, and_rules, or_rules, not_rule, header, url_path, destination_ip, destination_port, requested_server_name)',
      );
      break;
    case 'any':
      if (anyTrue(r, which)) out = { kind: 'any' };
      break;
    case 'and_rules':
    case 'or_rules': {
      const s = r.obj(which);
      if (!s) break;
      const rules: RbacPermission[] = [];
      let ok = true;
      const list = s.arr('rules');
      if (list.length === 0) {
        s.error('rules', 'at least one rule is required');
        ok = false;
      }
      for (const p of list) {
        const v = decodePermission(p);
        if (v) rules.push(v);
        else ok = false;
      }
      s.done();
      if (ok) out = { kind: which === 'and_rules' ? 'and' : 'or', rules };
      break;
    }
    case 'not_rule': {
      const s = r.obj(which);
      const rule = s ? decodePermission(s) : undefined;
      if (rule) out = { kind: 'not', rule };
      break;
    }
    case 'header': {
      const s = r.obj(which);
      const header = s ? decodeHeaderMatcher(s) : undefined;
      if (header) out = { kind: 'header', header };
      break;
    }
    case 'url_path': {
      const matcher = pathMatcher(r, which);
      if (matcher) out = { kind: 'url_path', matcher };
      break;
    }
    case 'destination_ip': {
      const s = r.obj(which);
      const cidr = s ? decodeCidr(s) : undefined;
      if (cidr) out = { kind: 'destination_ip', cidr };
      break;
    }
    case 'destination_port':
      out = { kind: 'destination_port', port: r.int(which, 0, 0, 65535) };
      break;
    case 'requested_server_name': {
      const s = r.obj(which);
      const matcher = s ? decodeStringMatcher(s) : undefined;
      if (matcher) out = { kind: 'requested_server_name', matcher };
      break;
    }
    case 'metadata': {
      const s = r.obj(which);
      const matcher = s ? decodeMetadataMatcher(s) : undefined;
      if (matcher) out = { kind: 'metadata', matcher };
      break;
    }
    default:
      r.error(which, 'this permission is not supported by meshlet');
      r.raw(which);
  }
  r.done();
  return out;
}

function decodeIdList(r: Reader, key: string): RbacPrincipal[] | undefined {
  const s = r.obj(key);
  if (!s) return undefined;
  const ids: RbacPrincipal[] = [];
  let ok = true;
  const list = s.arr('ids');
  if (list.length === 0) {
    s.error('ids', 'at least one principal is required');
    ok = false;
  }
  for (const p of list) {
    const v = decodePrincipal(p);
    if (v) ids.push(v);
    else ok = false;
  }
  s.done();
  return ok ? ids : undefined;
}

/** envoy.config.rbac.v3.Principal */
export function decodePrincipal(r: Reader): RbacPrincipal | undefined {
  const which = r.oneof(PRINCIPAL_KEYS);
  let out: RbacPrincipal | undefined;
  switch (which) {
    case undefined:
      r.issues.error(
        r.path,
        'a principal identifier must be set (any, and_ids, or_ids, not_id, authenticated, direct_remote_ip, remote_ip, source_ip, header, url_path)',
      );
      break;
    case 'any':
      if (anyTrue(r, which)) out = { kind: 'any' };
      break;
    case 'and_ids':
    case 'or_ids': {
      const ids = decodeIdList(r, which);
      if (ids) out = which === 'and_ids' ? { kind: 'and', ids } : { kind: 'or', ids };
      break;
    }
    case 'not_id': {
      const s = r.obj(which);
      const id = s ? decodePrincipal(s) : undefined;
      if (id) out = { kind: 'not', id };
      break;
    }
    case 'authenticated': {
      const s = r.obj(which);
      if (!s) break;
      const pn = s.obj('principal_name');
      const principalName = pn ? decodeStringMatcher(pn) : undefined;
      s.done();
      if (!pn || principalName) out = { kind: 'authenticated', ...(principalName ? { principalName } : {}) };
      break;
    }
    case 'direct_remote_ip':
    case 'remote_ip':
    case 'source_ip': {
      const s = r.obj(which);
      const cidr = s ? decodeCidr(s) : undefined;
      if (cidr) out = { kind: which, cidr };
      break;
    }
    case 'header': {
      const s = r.obj(which);
      const header = s ? decodeHeaderMatcher(s) : undefined;
      if (header) out = { kind: 'header', header };
      break;
    }
    case 'url_path': {
      const matcher = pathMatcher(r, which);
      if (matcher) out = { kind: 'url_path', matcher };
      break;
    }
    case 'filter_state': {
      // Istio's AuthorizationPolicy principals: io.istio.peer_principal / local_principal, the
      // SPIFFE IDs of the mTLS peer and of this workload. meshlet reads them from the connection.
      const s = r.obj(which);
      if (!s) break;
      const key = s.requiredStr('key');
      const sm = s.obj('string_match');
      if (!sm) s.error('string_match', 'is required (meshlet matches filter state as a string)');
      const matcher = sm ? decodeStringMatcher(sm) : undefined;
      s.ignore('present_match');
      if (s.has('present_match')) s.error('present_match', 'is not supported by meshlet; use string_match');
      const ok = key === 'io.istio.peer_principal' || key === 'io.istio.local_principal';
      if (key && !ok)
        s.error('key', `filter state key ${JSON.stringify(key)} is not supported (meshlet provides io.istio.peer_principal and io.istio.local_principal)`);
      s.done();
      if (ok && matcher) out = { kind: 'filter_state', key, matcher };
      break;
    }
    case 'metadata': {
      // The stream's dynamic metadata, e.g. Istio's request.auth.claims from jwt_authn's
      // payload_in_metadata (filter envoy.filters.http.jwt_authn, path payload.<claim>).
      const s = r.obj(which);
      const matcher = s ? decodeMetadataMatcher(s) : undefined;
      if (matcher) out = { kind: 'metadata', matcher };
      break;
    }
    default:
      r.error(which, 'this principal is not supported by meshlet');
      r.raw(which);
  }
  r.done();
  return out;
}

/** envoy.config.rbac.v3.RBAC (the `rules` message): action and named policies. */
export function decodeRbacRules(r: Reader): NonNullable<RbacConfig['rules']> {
  const action = enumOf(r, 'action', ['ALLOW', 'DENY', 'LOG'] as const, 'ALLOW');
  const policies: RbacPolicy[] = [];
  const m = r.map('policies') ?? {};
  for (const [name, raw] of Object.entries(m)) {
    const p = Reader.of(raw, `${r.sub('policies')}.${name}`, r.issues);
    if (!p) continue;
    const permissions: RbacPermission[] = [];
    const principals: RbacPrincipal[] = [];
    let ok = true;
    const perms = p.arr('permissions');
    const princ = p.arr('principals');
    if (perms.length === 0) {
      p.error('permissions', 'at least one permission is required');
      ok = false;
    }
    if (princ.length === 0) {
      p.error('principals', 'at least one principal is required');
      ok = false;
    }
    for (const x of perms) {
      const v = decodePermission(x);
      if (v) permissions.push(v);
      else ok = false;
    }
    for (const x of princ) {
      const v = decodePrincipal(x);
      if (v) principals.push(v);
      else ok = false;
    }
    for (const k of ['condition', 'checked_condition'] as const) {
      if (p.has(k)) p.error(k, 'CEL conditions are not supported by meshlet');
      p.raw(k);
    }
    p.done();
    if (ok) policies.push({ name, permissions, principals });
  }
  if (r.has('audit_logging_options'))
    r.issues.warn(r.sub('audit_logging_options'), 'not supported by meshlet, ignored');
  r.raw('audit_logging_options');
  r.done();
  return { action, policies };
}

export interface RbacDecodeOptions {
  /** Field carrying the stat prefix: `stat_prefix` (network filter) or `rules_stat_prefix` (HTTP). */
  readonly statPrefixKey?: string;
  /** The network filter requires a stat prefix; the HTTP filter does not. */
  readonly requireStatPrefix?: boolean;
}

/**
 * The RBAC filter config shared by the network and HTTP filters: `rules`, `shadow_rules`, a
 * stat prefix and `shadow_rules_stat_prefix`. `matcher`/`shadow_matcher` (the unified matcher
 * API) are rejected. Does not call
 * `r.done()`: the caller reads its filter's remaining fields first, then calls it.
 */
export function decodeRbac(r: Reader, _ctx: DecodeContext, opts: RbacDecodeOptions = {}): RbacConfig {
  const key = opts.statPrefixKey ?? 'stat_prefix';
  const statPrefix = opts.requireStatPrefix ? r.requiredStr(key) : r.str(key, '');
  const rr = r.obj('rules');
  const rules = rr ? decodeRbacRules(rr) : undefined;
  const sr = r.obj('shadow_rules');
  const shadowRules = sr ? decodeRbacRules(sr) : undefined;
  const shadowStatPrefix = r.str('shadow_rules_stat_prefix', '');
  for (const k of ['matcher', 'shadow_matcher'] as const) {
    if (r.has(k)) r.error(k, 'the matcher API is not supported by meshlet; use rules');
    r.raw(k);
  }
  return { ...(rules ? { rules } : {}), ...(shadowRules ? { shadowRules } : {}), statPrefix, ...(shadowStatPrefix ? { shadowStatPrefix } : {}) };
}

/** The network RBAC filter's typed_config (envoy.extensions.filters.network.rbac.v3.RBAC). */
export function decodeNetworkRbac(r: Reader, ctx: DecodeContext): RbacConfig {
  const out = decodeRbac(r, ctx, { requireStatPrefix: true });
  const et = enumOf(r, 'enforcement_type', ['ONE_TIME_ON_FIRST_BYTE', 'CONTINUOUS'] as const, 'ONE_TIME_ON_FIRST_BYTE');
  if (et !== 'ONE_TIME_ON_FIRST_BYTE') r.error('enforcement_type', `${et} is not supported by meshlet`);
  r.done();
  return out;
}
