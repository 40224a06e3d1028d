/**
 * JWT authentication, `envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication` (Envoy's
 * envoy.filters.http.jwt_authn), with its per-route `PerRouteConfig`.
 *
 * On request headers the first rule whose match accepts the request gives the requirement (a
 * route's PerRouteConfig may disable the filter or name a requirement_map entry instead). Tokens
 * are taken from each provider's from_headers / from_params (default `Authorization: Bearer` and
 * `?access_token=`) and verified with the `jose` library — signature against the provider's JWKS
 * (inline, or fetched through the named cluster and cached for cache_duration), issuer, audiences,
 * exp/nbf with clock_skew_seconds. Requirements combine as in Envoy (provider_name,
 * provider_and_audiences, requires_any, requires_all, allow_missing, allow_missing_or_failed).
 * A verified token's claims go to claim_to_headers, its payload to forward_payload_header, and the
 * token is removed unless `forward`. Failures answer 401 with Envoy's bodies (`Jwt is missing`,
 * `Jwt verification fails`, `Jwt is expired`, …) and `www-authenticate: Bearer realm="…"`.
 *
 * Leans on the library for all crypto (no hand-written verification); verification is async, so
 * a checked request stops iteration until jose answers. Requests on routes with no requirement
 * cost one rule scan.
 */
import type * as JoseNs from 'jose';
import type { createLocalJWKSet, JSONWebKeySet, JWTPayload } from 'jose';
import type { Reader } from '../../../common/reader';
import type { RouteMatch } from '../../config/types';
import { MeshletError } from '../../../common/errors';
import type { RequestHead } from '../codec';
import { FilterStatus, type HttpFilter, type HttpFilterCallbacks, type HttpFilterFactory } from '../filter';
import { getHeader, removeHeader, setHeader } from '../headers';
import { type CompiledRoute, fullMatchRegex, matchString, PathKind, queryParam, routeMatches } from '../route-matcher';
import type { ClusterLookup } from '../../upstream/types';
import {
  decodeJwtAuthn,
  decodeJwtPerRoute,
  JWT_AUTHN_TYPE_NAME,
  JWT_PER_ROUTE_TYPE_NAME,
  type JwtAuthnConfig,
  type JwtPerRoute,
  type JwtProviderConfig,
  type JwtRequirement,
} from './jwt-config';
import { httpCall } from './service-client';

export { JWT_AUTHN_TYPE_NAME, JWT_PER_ROUTE_TYPE_NAME } from './jwt-config';

// jose loads with the first provider's key set (not when the filter registry is built).
let joseMod: typeof JoseNs | undefined;
function jose(): typeof JoseNs {
  return (joseMod ??= require('jose') as typeof JoseNs);
}

/** Counters: allowed, denied, jwks_fetch_success, jwks_fetch_failed (Envoy's jwt_authn stats). */
export const jwtAuthnStats = { allowed: 0, denied: 0, jwksFetchSuccess: 0, jwksFetchFailed: 0 };

// ───────────────────────────── rule matching ─────────────────────────────

/** A rule's RouteMatch in the shape route-matcher's routeMatches evaluates. */
function compileMatch(m: RouteMatch): CompiledRoute {
  const p = m.path;
  let kind: PathKind = PathKind.Connect;
  let value = '';
  let regex: RegExp | undefined;
  if (p.kind === 'prefix') {
    kind = PathKind.Prefix;
    value = p.value;
  } else if (p.kind === 'path') {
    kind = PathKind.Path;
    value = p.value;
  } else if (p.kind === 'safe_regex') {
    kind = PathKind.Regex;
    regex = fullMatchRegex(p.regex);
  } else if (p.kind === 'path_separated_prefix') {
    kind = PathKind.SeparatedPrefix;
    value = p.value;
  }
  if (!m.caseSensitive) value = value.toLowerCase();
  return { route: undefined as never, vhost: undefined as never, kind, value, caseSensitive: m.caseSensitive, regex, match: m };
}

const compiled = new WeakMap<JwtAuthnConfig, CompiledRoute[]>();
function rulesOf(cfg: JwtAuthnConfig): CompiledRoute[] {
  let c = compiled.get(cfg);
  if (c === undefined) {
    c = cfg.rules.map((r) => compileMatch(r.match));
    compiled.set(cfg, c);
  }
  return c;
}

// ───────────────────────────── key sets ─────────────────────────────

type KeySet = ReturnType<typeof createLocalJWKSet>;
interface RemoteKeys {
  keys: KeySet | undefined;
  expires: number;
  pending: Promise<KeySet> | undefined;
}
const localKeys = new WeakMap<JwtProviderConfig, KeySet>();
const remoteKeys = new WeakMap<JwtProviderConfig, RemoteKeys>();

class JwksFetchError extends Error {}
/** The provider's inline JWKS was unusable (warned at start-up): Envoy's JwksNoValidKeys. */
class JwksNoValidKeysError extends Error {}

/** The provider's key set: inline, or the cached remote document (fetched through its cluster). */
export function keySetFor(p: JwtProviderConfig, clusters: ClusterLookup | undefined): KeySet | Promise<KeySet> {
  if (p.localJwksInvalid !== undefined) throw new JwksNoValidKeysError(p.localJwksInvalid);
  if (p.localJwks !== undefined) {
    let k = localKeys.get(p);
    if (k === undefined) {
      k = jose().createLocalJWKSet(p.localJwks as unknown as JSONWebKeySet);
      localKeys.set(p, k);
    }
    return k;
  }
  const remote = p.remoteJwks!;
  let st = remoteKeys.get(p);
  if (st === undefined) {
    st = { keys: undefined, expires: 0, pending: undefined };
    remoteKeys.set(p, st);
  }
  if (st.keys !== undefined && Date.now() < st.expires) return st.keys;
  if (st.pending !== undefined) return st.pending;
  const state = st;
  const url = new URL(remote.httpUri.uri);
  state.pending = httpCall(clusters, remote.httpUri.cluster, {
    method: 'GET',
    path: url.pathname + url.search,
    host: url.host,
    headers: ['accept', 'application/json'],
    timeoutMs: remote.httpUri.timeoutMs,
  })
    .then((res) => {
      if (res.status !== 200) throw new JwksFetchError(`JWKS endpoint answered ${res.status}`);
      const doc = JSON.parse(res.body.toString('utf8')) as JSONWebKeySet;
      if (!Array.isArray(doc.keys)) throw new JwksFetchError('JWKS document has no keys');
      const keys = jose().createLocalJWKSet(doc);
      state.keys = keys;
      state.expires = Date.now() + remote.cacheDurationMs;
      jwtAuthnStats.jwksFetchSuccess++;
      return keys;
    })
    .catch((err: unknown) => {
      jwtAuthnStats.jwksFetchFailed++;
      throw err instanceof JwksFetchError ? err : new JwksFetchError((err as Error).message);
    })
    .finally(() => {
      state.pending = undefined;
    });
  return state.pending;
}

// ───────────────────────────── verification ─────────────────────────────

interface Verdict {
  readonly ok: boolean;
  readonly missing: boolean;
  readonly message: string;
}
const OK: Verdict = { ok: true, missing: false, message: '' };
const MISSING: Verdict = { ok: false, missing: true, message: 'Jwt is missing' };
const FAILS: Verdict = { ok: false, missing: false, message: 'Jwt verification fails' };

/** Envoy's status messages for jose's errors. */
function failure(err: unknown): Verdict {
  let message = 'Jwt verification fails';
  const joseErrors = jose().errors;
  if (err instanceof joseErrors.JWTExpired) message = 'Jwt is expired';
  else if (err instanceof joseErrors.JWTClaimValidationFailed) {
    if (err.claim === 'iss') message = 'Jwt issuer is not configured';
    else if (err.claim === 'aud') message = 'Audiences in Jwt are not allowed';
    else if (err.claim === 'nbf') message = 'Jwt not yet valid';
    else if (err.claim === 'exp') message = 'Jwt is expired';
  } else if (err instanceof joseErrors.JWKSNoMatchingKey) message = 'Jwks doesn\'t have key to match kid or alg from Jwt';
  else if (err instanceof joseErrors.JWSInvalid || err instanceof joseErrors.JWTInvalid)
    message = 'Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections';
  else if (err instanceof JwksFetchError) message = 'Jwks remote fetch is failed';
  else if (err instanceof JwksNoValidKeysError) message = "Jwks doesn't have any valid public key";
  return { ok: false, missing: false, message };
}

interface Extracted {
  readonly token: string;
  readonly from: { kind: 'header' | 'param'; name: string };
}

function extract(p: JwtProviderConfig, head: RequestHead): Extracted | undefined {
  for (const loc of p.locations) {
    if (loc.kind === 'header') {
      const v = getHeader(head.headers, loc.name);
      if (v === undefined) continue;
      if (loc.valuePrefix === '') return { token: v.trim(), from: loc };
      if (v.length > loc.valuePrefix.length && v.slice(0, loc.valuePrefix.length).toLowerCase() === loc.valuePrefix.toLowerCase())
        return { token: v.slice(loc.valuePrefix.length).trim(), from: loc };
    } else {
      const v = queryParam(head.path, loc.name);
      if (v !== undefined && v !== '') return { token: safeDecode(v), from: loc };
    }
  }
  return undefined;
}

function safeDecode(v: string): string {
  try {
    return decodeURIComponent(v);
  } catch {
    return v;
  }
}

/** Claim by dotted name ("a.b"), as a header value (strings as is, lists joined by ","). */
function claimValue(payload: JWTPayload, name: string): string | undefined {
  let v: unknown = payload;
  for (const part of name.split('.')) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<string, unknown>)[part];
  }
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return v.join(',');
  return undefined;
}

function removeParam(path: string, name: string): string {
  const q = path.indexOf('?');
  if (q < 0) return path;
  const kept = path
    .slice(q + 1)
    .split('&')
    .filter((kv) => kv.split('=', 1)[0] !== name);
  return kept.length === 0 ? path.slice(0, q) : `${path.slice(0, q)}?${kept.join('&')}`;
}

/** The dynamic metadata namespace jwt_authn writes (Envoy's filter name). */
export const JWT_AUTHN_METADATA_NS = 'envoy.filters.http.jwt_authn';

/** The payload as Envoy puts it in metadata: space-delimited string claims listed become lists. */
function normalizedPayload(payload: JWTPayload, spaceDelimited: readonly string[]): Record<string, unknown> {
  if (spaceDelimited.length === 0) return payload;
  const out: Record<string, unknown> = { ...payload };
  for (const c of spaceDelimited) {
    const v = out[c];
    if (typeof v === 'string') out[c] = v.split(' ').filter((x) => x !== '');
  }
  return out;
}

/** One request's verification work: each provider's token is verified at most once. */
class Verification {
  private readonly results = new Map<string, Promise<Verdict>>();
  /** Verified tokens, applied to the request once the requirement passes. */
  readonly verified: { p: JwtProviderConfig; e: Extracted; payload: JWTPayload; raw: string }[] = [];

  constructor(
    private readonly cfg: JwtAuthnConfig,
    private readonly head: RequestHead,
    private readonly clusters: ClusterLookup | undefined,
  ) {}

  provider(name: string, audiences: readonly string[] | undefined): Promise<Verdict> {
    const key = audiences ? `${name}\u0000${audiences.join(',')}` : name;
    let r = this.results.get(key);
    if (r === undefined) {
      r = this.verify(this.cfg.providers.get(name)!, audiences);
      this.results.set(key, r);
    }
    return r;
  }

  private async verify(p: JwtProviderConfig, audiences: readonly string[] | undefined): Promise<Verdict> {
    const e = extract(p, this.head);
    if (e === undefined) return MISSING;
    try {
      const keys = await keySetFor(p, this.clusters);
      const aud = audiences ?? p.audiences;
      const { payload } = await jose().jwtVerify(e.token, keys, {
        ...(p.issuer ? { issuer: p.issuer } : {}),
        ...(aud.length > 0 ? { audience: [...aud] } : {}),
        clockTolerance: p.clockSkewSeconds,
        ...(p.requireExpiration ? { requiredClaims: ['exp'] } : {}),
      });
      if (p.subjects !== undefined && (typeof payload.sub !== 'string' || !matchString(p.subjects, payload.sub))) return FAILS;
      if (p.maxLifetimeSeconds > 0) {
        const { exp, iat } = payload;
        if (exp === undefined || iat === undefined || exp - iat > p.maxLifetimeSeconds) return FAILS;
      }
      this.verified.push({ p, e, payload, raw: e.token });
      return OK;
    } catch (err) {
      return failure(err);
    }
  }

  /** Envoy's requirement semantics. */
  async check(req: JwtRequirement): Promise<Verdict> {
    switch (req.kind) {
      case 'provider':
        return this.provider(req.provider, req.audiences);
      case 'any': {
        const vs = await Promise.all(req.requirements.map((r) => this.check(r)));
        if (vs.some((v) => v.ok)) return OK;
        return vs.find((v) => !v.missing) ?? MISSING;
      }
      case 'all': {
        const vs = await Promise.all(req.requirements.map((r) => this.check(r)));
        return vs.find((v) => !v.ok) ?? OK;
      }
      case 'allow_missing_or_failed':
        await Promise.all([...this.cfg.providers.keys()].map((n) => this.provider(n, undefined)));
        return OK;
      case 'allow_missing': {
        const vs = await Promise.all([...this.cfg.providers.keys()].map((n) => this.provider(n, undefined)));
        return vs.find((v) => !v.ok && !v.missing) ?? OK;
      }
    }
  }

  /** Forward claims / payload (headers, dynamic metadata) and strip tokens that are not forwarded. */
  apply(cb: HttpFilterCallbacks): void {
    const h = this.head;
    for (const { p, e, payload, raw } of this.verified) {
      if (p.payloadInMetadata) cb.setDynamicMetadata?.(JWT_AUTHN_METADATA_NS, p.payloadInMetadata, normalizedPayload(payload, p.spaceDelimitedClaims));
      for (const c of p.claimToHeaders) {
        const v = claimValue(payload, c.claimName);
        if (v !== undefined) setHeader(h.headers, c.headerName, v);
      }
      if (p.forwardPayloadHeader) {
        const seg = raw.split('.')[1] ?? '';
        setHeader(h.headers, p.forwardPayloadHeader, p.padForwardPayloadHeader ? seg + '='.repeat((4 - (seg.length % 4)) % 4) : seg);
      }
      if (!p.forward) {
        if (e.from.kind === 'header') removeHeader(h.headers, e.from.name);
        else h.path = removeParam(h.path, e.from.name);
      }
    }
  }
}

// ───────────────────────────── the filter ─────────────────────────────

class JwtAuthnFilter implements HttpFilter {
  private done = false;
  private pending = false;
  private syncResult: FilterStatus = FilterStatus.Continue;

  constructor(
    private readonly cfg: JwtAuthnConfig,
    private readonly cb: HttpFilterCallbacks,
  ) {}

  private requirement(head: RequestHead): JwtRequirement | undefined {
    const per = this.cb.perRouteConfig() as JwtPerRoute | undefined;
    if (per !== undefined && per.kind === 'jwt_per_route') {
      if (per.disabled) return undefined;
      if (per.requirementName !== undefined) return this.cfg.requirementMap.get(per.requirementName);
    }
    const rules = rulesOf(this.cfg);
    for (let i = 0; i < rules.length; i++) if (routeMatches(rules[i]!, head)) return this.cfg.rules[i]!.requires;
    return undefined;
  }

  decodeHeaders(head: RequestHead): FilterStatus {
    if (
      this.cfg.bypassCorsPreflight &&
      head.method === 'OPTIONS' &&
      getHeader(head.headers, 'origin') !== undefined &&
      getHeader(head.headers, 'access-control-request-method') !== undefined
    )
      return FilterStatus.Continue;
    const req = this.requirement(head);
    if (req === undefined) return FilterStatus.Continue;
    const v = new Verification(this.cfg, head, this.cb.clusters);
    this.pending = true;
    v.check(req).then(
      (verdict) => this.onVerdict(head, v, verdict),
      (err: unknown) => this.onVerdict(head, v, failure(err)),
    );
    return this.pending ? FilterStatus.StopIteration : this.syncResult;
  }

  onDestroy(): void {
    this.done = true;
  }

  private onVerdict(head: RequestHead, v: Verification, verdict: Verdict): void {
    if (this.done) return;
    this.pending = false;
    if (verdict.ok) {
      jwtAuthnStats.allowed++;
      v.apply(this.cb);
      if (v.verified.some((x) => x.p.clearRouteCache)) this.cb.clearRouteCache();
      this.cb.continueDecoding();
      return;
    }
    jwtAuthnStats.denied++;
    const realm = `${head.scheme}://${head.authority}${head.path.split('?', 1)[0]}`;
    const www = verdict.missing ? `Bearer realm="${realm}"` : `Bearer realm="${realm}", error="invalid_token"`;
    this.syncResult = FilterStatus.StopIteration;
    this.cb.sendLocalReply(401, verdict.message, ['www-authenticate', www], undefined, `jwt_authn_access_denied{${verdict.message.replace(/ /g, '_')}}`);
  }
}

export const jwtAuthnFilterFactory: HttpFilterFactory<JwtAuthnConfig> = {
  typeName: JWT_AUTHN_TYPE_NAME,
  decode: decodeJwtAuthn,
  decodePerRoute(r: Reader): unknown {
    r.issues.error(r.path, `use ${JWT_PER_ROUTE_TYPE_NAME} for per-route jwt_authn configuration`);
    return undefined;
  },
  create(config: JwtAuthnConfig, callbacks: HttpFilterCallbacks): HttpFilter {
    return new JwtAuthnFilter(config, callbacks);
  },
};

/** Registered so typed_per_filter_config PerRouteConfig entries decode; not a filter itself. */
export const jwtPerRouteFactory: HttpFilterFactory<undefined> = {
  typeName: JWT_PER_ROUTE_TYPE_NAME,
  decode(r: Reader): undefined {
    r.issues.error(r.sub('@type'), `${JWT_PER_ROUTE_TYPE_NAME} is only valid in typed_per_filter_config`);
    return undefined;
  },
  decodePerRoute: decodeJwtPerRoute,
  create(): HttpFilter {
    throw new MeshletError('MESHLET_ERR_INTERNAL', 'jwt_authn PerRouteConfig is not an HTTP filter');
  },
};
