/**
 * Config of `envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication`: providers (issuer,
 * audiences, local or remote JWKS, where tokens come from, what is forwarded), rules per route
 * (a RouteMatch and a JwtRequirement) and the requirement_map used by PerRouteConfig.
 *
 * JWKS given inline are parsed at config time. A bad inline key set is, as in Envoy, a start-up
 * warning and not a config error: the provider then has no valid key and its requests fail with
 * 401 ("Jwks doesn't have any valid public key"). Requirement trees are validated against the
 * provider names.
 */
import { readFileSync } from 'node:fs';
import { dur } from '../../config/envoy/core';
import { decodeRouteMatch } from '../../config/envoy/route';
import { Reader } from '../../../common/reader';
import type { RouteMatch, StringMatcher } from '../../config/types';
import { decodeStringMatcher } from '../../config/envoy/matchers';
import { decodeHttpUri, type HttpUriConfig } from '../../config/filters/grpc-service';

export const JWT_AUTHN_TYPE_NAME = 'envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication';
export const JWT_PER_ROUTE_TYPE_NAME = 'envoy.extensions.filters.http.jwt_authn.v3.PerRouteConfig';

/** One place a token may be found. */
export type TokenLocation =
  | { readonly kind: 'header'; readonly name: string; readonly valuePrefix: string }
  | { readonly kind: 'param'; readonly name: string };

export interface JwtProviderConfig {
  readonly name: string;
  /** Required `iss` when non-empty. */
  readonly issuer: string;
  /** The token's `aud` must contain one of these when non-empty. */
  readonly audiences: readonly string[];
  /** A JWKS document given inline (local_jwks inline_string / filename), already parsed. */
  readonly localJwks?: { readonly keys: readonly Record<string, unknown>[] };
  /** Why the local JWKS is unusable (warned at start-up); every token of this provider fails. */
  readonly localJwksInvalid?: string;
  /** remote_jwks: fetched through `httpUri.cluster` and cached for `cacheDurationMs`. */
  readonly remoteJwks?: { readonly httpUri: HttpUriConfig; readonly cacheDurationMs: number };
  /** from_headers + from_params; Envoy's defaults (Authorization: Bearer, ?access_token=) when both empty. */
  readonly locations: readonly TokenLocation[];
  /** Keep the token in the request (Envoy default false: it is removed). */
  readonly forward: boolean;
  /** Header receiving the base64url payload of a verified token. */
  readonly forwardPayloadHeader: string;
  /**
   * payload_in_metadata: the verified payload goes to dynamic metadata
   * `envoy.filters.http.jwt_authn` under this key (Istio: "payload", read by RBAC's
   * request.auth.claims matchers). Empty = not written.
   */
  readonly payloadInMetadata: string;
  /** normalize_payload_in_metadata.space_delimited_claims: these string claims become lists. */
  readonly spaceDelimitedClaims: readonly string[];
  readonly claimToHeaders: readonly { readonly headerName: string; readonly claimName: string }[];
  readonly clockSkewSeconds: number;
  /** require_expiration: tokens without `exp` fail. */
  readonly requireExpiration: boolean;
  /** pad_forward_payload_header: base64url with `=` padding in forward_payload_header. */
  readonly padForwardPayloadHeader: boolean;
  /** subjects: the token's `sub` must match. */
  readonly subjects?: StringMatcher;
  /** max_lifetime_seconds (0 = unlimited): exp − iat must not exceed it; such tokens need both. */
  readonly maxLifetimeSeconds: number;
  /** clear_route_cache: re-select the route after claims were written to headers. */
  readonly clearRouteCache: boolean;
}

export type JwtRequirement =
  | { readonly kind: 'provider'; readonly provider: string; readonly audiences?: readonly string[] }
  | { readonly kind: 'any'; readonly requirements: readonly JwtRequirement[] }
  | { readonly kind: 'all'; readonly requirements: readonly JwtRequirement[] }
  | { readonly kind: 'allow_missing_or_failed' }
  | { readonly kind: 'allow_missing' };

export interface JwtRule {
  readonly match: RouteMatch;
  /** undefined = no requirement (the route is not checked). */
  readonly requires?: JwtRequirement;
}

export interface JwtAuthnConfig {
  readonly kind: 'jwt_authn';
  readonly providers: ReadonlyMap<string, JwtProviderConfig>;
  readonly rules: readonly JwtRule[];
  readonly requirementMap: ReadonlyMap<string, JwtRequirement>;
  /** Let CORS preflight requests (OPTIONS with origin and access-control-request-method) through. */
  readonly bypassCorsPreflight: boolean;
}

/** PerRouteConfig: disabled, or a requirement_name from the requirement_map. */
export interface JwtPerRoute {
  readonly kind: 'jwt_per_route';
  readonly disabled: boolean;
  readonly requirementName?: string;
}

/** Envoy's default JWKS cache duration (5 minutes). */
export const DEFAULT_JWKS_CACHE_MS = 300_000;

/** A local JWKS document, or why it is unusable (Envoy warns and starts; see the file comment). */
function parseJwks(text: string): { keys: Record<string, unknown>[] } | string {
  let v: { keys?: unknown };
  try {
    v = JSON.parse(text) as { keys?: unknown };
  } catch (e) {
    return `is not valid JSON: ${(e as Error).message}`;
  }
  if (!v || typeof v !== 'object' || !Array.isArray(v.keys) || v.keys.length === 0) {
    return 'is not a JWKS document with a non-empty "keys" list';
  }
  if (!v.keys.every((k) => k !== null && typeof k === 'object' && typeof (k as { kty?: unknown }).kty === 'string')) {
    return 'has a key without "kty"';
  }
  return { keys: v.keys as Record<string, unknown>[] };
}

function decodeProvider(name: string, r: Reader): JwtProviderConfig | undefined {
  const issuer = r.str('issuer', '');
  const audiences = r.strList('audiences');
  const which = r.oneof(['local_jwks', 'remote_jwks'] as const);
  if (which === undefined) r.issues.error(r.path, 'one of local_jwks, remote_jwks must be set');
  let localJwks: JwtProviderConfig['localJwks'];
  let localJwksInvalid: string | undefined;
  let remoteJwks: JwtProviderConfig['remoteJwks'];
  if (which === 'local_jwks') {
    const l = r.obj('local_jwks');
    if (l) {
      const src = l.oneof(['inline_string', 'inline_bytes', 'filename'] as const);
      let text: string | undefined;
      if (src === 'inline_string') text = l.str(src, '');
      else if (src === 'inline_bytes') text = Buffer.from(l.str(src, ''), 'base64').toString('utf8');
      else if (src === 'filename') {
        const file = l.str(src, '');
        try {
          // Control plane: reading the key file at config time is the point of validating here.
          text = readFileSync(file, 'utf8');
        } catch (e) {
          l.error(src, `cannot read ${JSON.stringify(file)}: ${(e as Error).message}`);
        }
      } else l.issues.error(l.path, 'one of inline_string, inline_bytes, filename must be set');
      if (text !== undefined && src !== undefined) {
        const parsed = parseJwks(text);
        if (typeof parsed === 'string') {
          localJwksInvalid = parsed;
          l.issues.warn(l.sub(src), `${parsed}; provider ${JSON.stringify(name)} has no valid key and its requests fail with 401`);
        } else localJwks = parsed;
      }
      l.done();
    }
  } else if (which === 'remote_jwks') {
    const rj = r.obj('remote_jwks');
    if (rj) {
      const hu = rj.obj('http_uri');
      if (!hu) rj.error('http_uri', 'is required');
      const httpUri = hu ? decodeHttpUri(hu) : undefined;
      const cacheDurationMs = dur(rj, 'cache_duration', DEFAULT_JWKS_CACHE_MS);
      // async_fetch only changes when the first fetch happens; meshlet fetches on first use.
      rj.ignore('async_fetch');
      rj.done();
      if (httpUri) remoteJwks = { httpUri, cacheDurationMs };
    }
  }
  const locations: TokenLocation[] = [];
  for (const h of r.arr('from_headers')) {
    const hn = h.requiredStr('name').toLowerCase();
    const valuePrefix = h.str('value_prefix', '');
    h.done();
    if (hn) locations.push({ kind: 'header', name: hn, valuePrefix });
  }
  for (const p of r.strList('from_params')) locations.push({ kind: 'param', name: p });
  if (r.list('from_cookies').length > 0) r.error('from_cookies', 'is not supported by meshlet');
  if (locations.length === 0) {
    locations.push({ kind: 'header', name: 'authorization', valuePrefix: 'Bearer ' });
    locations.push({ kind: 'param', name: 'access_token' });
  }
  const forward = r.bool('forward', false);
  const forwardPayloadHeader = r.str('forward_payload_header', '').toLowerCase();
  const payloadInMetadata = r.str('payload_in_metadata', '');
  const norm = r.obj('normalize_payload_in_metadata');
  const spaceDelimitedClaims = norm ? norm.strList('space_delimited_claims') : [];
  norm?.done();
  const claimToHeaders: { headerName: string; claimName: string }[] = [];
  for (const c of r.arr('claim_to_headers')) {
    const headerName = c.requiredStr('header_name').toLowerCase();
    const claimName = c.requiredStr('claim_name');
    c.done();
    if (headerName && claimName) claimToHeaders.push({ headerName, claimName });
  }
  const clockSkewSeconds = r.int('clock_skew_seconds', 60, 0, 86_400);
  const requireExpiration = r.bool('require_expiration', false);
  const padForwardPayloadHeader = r.bool('pad_forward_payload_header', false);
  const subjects = r.obj('subjects');
  const subjectMatcher = subjects ? decodeStringMatcher(subjects) : undefined;
  const maxLifetimeSeconds = r.int('max_lifetime_seconds', 0, 0, 0xffffffff);
  const clearRouteCache = r.bool('clear_route_cache', false);
  // A cache of verified tokens only saves work; metadata options are left to warn.
  r.ignore('jwt_cache_config');
  r.done();
  if (!localJwks && !remoteJwks && localJwksInvalid === undefined) return undefined;
  return {
    name,
    issuer,
    audiences,
    ...(localJwks ? { localJwks } : {}),
    ...(localJwksInvalid !== undefined ? { localJwksInvalid } : {}),
    ...(remoteJwks ? { remoteJwks } : {}),
    locations,
    forward,
    forwardPayloadHeader,
    payloadInMetadata,
    spaceDelimitedClaims,
    claimToHeaders,
    clockSkewSeconds,
    requireExpiration,
    padForwardPayloadHeader,
    ...(subjectMatcher ? { subjects: subjectMatcher } : {}),
    maxLifetimeSeconds,
    clearRouteCache,
  };
}

const REQUIREMENT_KEYS = [
  'provider_name',
  'provider_and_audiences',
  'requires_any',
  'requires_all',
  'allow_missing_or_failed',
  'allow_missing',
] as const;

export function decodeRequirement(r: Reader, providers: ReadonlySet<string>): JwtRequirement | undefined {
  const which = r.oneof(REQUIREMENT_KEYS);
  let out: JwtRequirement | undefined;
  const known = (key: string, name: string, at: Reader) => {
    if (!providers.has(name)) at.error(key, `unknown provider ${JSON.stringify(name)}`);
    return providers.has(name);
  };
  switch (which) {
    case undefined:
      r.issues.error(r.path, `one of ${REQUIREMENT_KEYS.join(', ')} must be set`);
      break;
    case 'provider_name': {
      const p = r.str(which, '');
      if (known(which, p, r)) out = { kind: 'provider', provider: p };
      break;
    }
    case 'provider_and_audiences': {
      const pa = r.obj(which);
      if (pa) {
        const p = pa.requiredStr('provider_name');
        const audiences = pa.strList('audiences');
        pa.done();
        if (p && known('provider_name', p, pa)) out = { kind: 'provider', provider: p, audiences };
      }
      break;
    }
    case 'requires_any':
    case 'requires_all': {
      const l = r.obj(which);
      if (l) {
        const list = l.arr('requirements');
        if (list.length < 2) l.error('requirements', 'needs at least 2 requirements');
        const reqs: JwtRequirement[] = [];
        for (const x of list) {
          const v = decodeRequirement(x, providers);
          if (v) reqs.push(v);
        }
        l.done();
        if (reqs.length === list.length && reqs.length >= 2) out = { kind: which === 'requires_any' ? 'any' : 'all', requirements: reqs };
      }
      break;
    }
    default:
      r.obj(which)?.done();
      out = { kind: which };
  }
  r.done();
  return out;
}

export function decodeJwtAuthn(r: Reader): JwtAuthnConfig {
  const providers = new Map<string, JwtProviderConfig>();
  const raw = r.map('providers') ?? {};
  const names = new Set(Object.keys(raw));
  const base = r.sub('providers');
  for (const [name, v] of Object.entries(raw)) {
    const pr = Reader.of(v, `${base}.${name}`, r.issues);
    const p = pr ? decodeProvider(name, pr) : undefined;
    if (p) providers.set(name, p);
  }
  const rules: JwtRule[] = [];
  for (const rule of r.arr('rules')) {
    const mr = rule.obj('match');
    if (!mr) rule.error('match', 'is required');
    const match = mr ? decodeRouteMatch(mr) : undefined;
    const rq = rule.obj('requires');
    const requires = rq ? decodeRequirement(rq, names) : undefined;
    if (rule.has('requirement_name')) rule.error('requirement_name', 'is not supported by meshlet; use requires');
    rule.raw('requirement_name');
    rule.done();
    if (match) rules.push({ match, ...(requires ? { requires } : {}) });
  }
  const requirementMap = new Map<string, JwtRequirement>();
  const rm = r.map('requirement_map') ?? {};
  for (const [name, v] of Object.entries(rm)) {
    const rr = Reader.of(v, `${r.sub('requirement_map')}.${name}`, r.issues);
    const req = rr ? decodeRequirement(rr, names) : undefined;
    if (req) requirementMap.set(name, req);
  }
  const bypassCorsPreflight = r.bool('bypass_cors_preflight', false);
  if (r.has('filter_state_rules')) r.error('filter_state_rules', 'is not supported by meshlet');
  r.raw('filter_state_rules');
  r.done();
  return { kind: 'jwt_authn', providers, rules, requirementMap, bypassCorsPreflight };
}

export function decodeJwtPerRoute(r: Reader): JwtPerRoute {
  const which = r.oneof(['disabled', 'requirement_name'] as const);
  if (which === undefined) r.issues.error(r.path, 'one of disabled, requirement_name must be set');
  const disabled = which === 'disabled' ? r.bool('disabled', false) : false;
  const requirementName = which === 'requirement_name' ? r.str('requirement_name', '') : undefined;
  r.done();
  return Object.freeze({ kind: 'jwt_per_route', disabled, ...(requirementName ? { requirementName } : {}) });
}
