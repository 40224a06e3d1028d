/**
 * The CORS filter, `envoy.extensions.filters.http.cors.v3.Cors` (Envoy's envoy.filters.http.cors),
 * with its policies from `envoy.extensions.filters.http.cors.v3.CorsPolicy` in
 * typed_per_filter_config (route, then virtual host) or, when neither level has one, from the
 * `cors` field of the route action and the virtual host (decoded by
 * proxy/config/filters/cors-policy.ts).
 *
 * Envoy's semantics: each setting comes from the first policy in line (route before virtual host)
 * that sets it; `filter_enabled` and `shadow_enabled` come from the first policy only. A request
 * with an Origin is counted as `http.<stat_prefix>.cors.origin_valid` or `origin_invalid`. A
 * preflight (OPTIONS with Origin and Access-Control-Request-Method) is answered by the proxy with
 * 200 and the Access-Control-Allow-* headers — unless the origin is not allowed and
 * `forward_not_matching_preflights` (default true) sends it upstream. Other responses to an
 * allowed origin get Access-Control-Allow-Origin (the request's origin), -Allow-Credentials and
 * -Expose-Headers. In shadow mode (shadow_enabled without filter_enabled) only the stats move.
 *
 * Leans cheap: a route without a policy costs two property reads per request; nothing is
 * allocated unless the request has an Origin header and a policy applies.
 */
import { MeshletError } from '../../../common/errors';
import type { Reader } from '../../../common/reader';
import { decodeCorsPolicy } from '../../config/filters/cors-policy';
import type { CorsPolicyConfig } from '../../config/types';
import type { HeaderList, RequestHead, ResponseHead } from '../codec';
import { FilterStatus, type HttpFilter, type HttpFilterCallbacks, type HttpFilterFactory } from '../filter';
import { getHeader, setHeader } from '../headers';
import { matchString } from '../route-matcher';

export const CORS_TYPE_NAME = 'envoy.extensions.filters.http.cors.v3.Cors';
export const CORS_POLICY_TYPE_NAME = 'envoy.extensions.filters.http.cors.v3.CorsPolicy';

/** Envoy's CORS stats, under `http.<stat_prefix>.cors.`. */
export class CorsStats {
  originValid = 0;
  originInvalid = 0;
  constructor(readonly statPrefix: string) {}
}

const statsByPrefix = new Map<string, CorsStats>();
export function allCorsStats(): readonly CorsStats[] {
  return [...statsByPrefix.values()];
}
function corsStats(prefix: string): CorsStats {
  let s = statsByPrefix.get(prefix);
  if (s === undefined) {
    s = new CorsStats(prefix);
    statsByPrefix.set(prefix, s);
  }
  return s;
}

function isPolicy(v: unknown): v is CorsPolicyConfig {
  return v !== undefined && (v as CorsPolicyConfig).kind === 'cors_policy';
}

class CorsFilter implements HttpFilter {
  /** The policies in Envoy's order: the route's first, then the virtual host's. */
  private p0: CorsPolicyConfig | undefined;
  private p1: CorsPolicyConfig | undefined;
  private isCorsRequest = false;
  private latchedOrigin = '';

  constructor(
    private readonly cb: HttpFilterCallbacks,
    private readonly random: () => number,
  ) {}

  decodeHeaders(head: RequestHead): FilterStatus {
    const entry = this.cb.routeEntry();
    // Envoy acts on route entries only (not on redirects or direct responses).
    if (entry === undefined || entry.route.action.kind !== 'route') return FilterStatus.Continue;
    const r0 = this.cb.perRouteConfigAt(0);
    const r1 = this.cb.perRouteConfigAt(1);
    if (isPolicy(r0) || isPolicy(r1)) {
      this.p0 = isPolicy(r0) ? r0 : (r1 as CorsPolicyConfig);
      this.p1 = isPolicy(r0) && isPolicy(r1) ? r1 : undefined;
    } else {
      // No typed_per_filter_config policy: the route action's and the virtual host's `cors` fields.
      const a = entry.route.action.cors;
      const v = entry.vhost.cors;
      this.p0 = a ?? v;
      this.p1 = a !== undefined ? v : undefined;
    }
    const p0 = this.p0;
    if (p0 === undefined) return FilterStatus.Continue;
    const enabled = p0.filterEnabled === undefined || this.cb.runtime.fractionEnabled(p0.filterEnabled, this.random());
    const shadow = p0.shadowEnabled !== undefined && this.cb.runtime.fractionEnabled(p0.shadowEnabled, this.random());
    if (!enabled && !shadow) return FilterStatus.Continue;

    const origin = getHeader(head.headers, 'origin');
    if (origin === undefined || origin === '') return FilterStatus.Continue;
    const allowed = this.isOriginAllowed(origin);
    const stats = corsStats(this.cb.hcm.statPrefix);
    if (allowed) {
      stats.originValid++;
      this.latchedOrigin = origin;
    } else stats.originInvalid++;
    if (!enabled) return FilterStatus.Continue;
    this.isCorsRequest = true;

    if (head.method !== 'OPTIONS') return FilterStatus.Continue;
    const requestMethod = getHeader(head.headers, 'access-control-request-method');
    if (requestMethod === undefined || requestMethod === '') return FilterStatus.Continue;
    // A preflight. One from a disallowed origin goes upstream unless the policy says otherwise.
    if (!allowed && this.pick('forwardNotMatchingPreflights') !== false) return FilterStatus.Continue;

    const h: HeaderList = [];
    if (allowed) h.push('access-control-allow-origin', origin);
    if (this.pick('allowCredentials') === true) h.push('access-control-allow-credentials', 'true');
    const methods = this.str('allowMethods');
    if (methods !== '') h.push('access-control-allow-methods', methods === '*' ? requestMethod : methods);
    const headers = this.str('allowHeaders');
    if (headers !== '')
      h.push('access-control-allow-headers', headers === '*' ? (getHeader(head.headers, 'access-control-request-headers') ?? '') : headers);
    const maxAge = this.str('maxAge');
    if (maxAge !== '') h.push('access-control-max-age', maxAge);
    if (
      this.pick('allowPrivateNetworkAccess') === true &&
      getHeader(head.headers, 'access-control-request-private-network') === 'true'
    )
      h.push('access-control-allow-private-network', 'true');
    this.cb.sendResponse({ status: 200, headers: h, contentLength: 0 }, undefined, 'cors_response');
    return FilterStatus.StopIteration;
  }

  encodeHeaders(head: ResponseHead): FilterStatus {
    if (!this.isCorsRequest || this.latchedOrigin === '') return FilterStatus.Continue;
    setHeader(head.headers, 'access-control-allow-origin', this.latchedOrigin);
    if (this.pick('allowCredentials') === true) setHeader(head.headers, 'access-control-allow-credentials', 'true');
    const expose = this.str('exposeHeaders');
    if (expose !== '') setHeader(head.headers, 'access-control-expose-headers', expose);
    return FilterStatus.Continue;
  }

  private isOriginAllowed(origin: string): boolean {
    const p0 = this.p0;
    const list = p0 !== undefined && p0.allowOrigins.length > 0 ? p0.allowOrigins : this.p1?.allowOrigins;
    if (list === undefined) return false;
    for (let i = 0; i < list.length; i++) {
      const m = list[i]!;
      if (matchString(m, '*') || matchString(m, origin)) return true;
    }
    return false;
  }

  /** The first policy in line that sets an optional flag. */
  private pick(key: 'allowCredentials' | 'allowPrivateNetworkAccess' | 'forwardNotMatchingPreflights'): boolean | undefined {
    return this.p0?.[key] ?? this.p1?.[key];
  }

  /** The first policy in line with a non-empty value. */
  private str(key: 'allowMethods' | 'allowHeaders' | 'exposeHeaders' | 'maxAge'): string {
    const a = this.p0?.[key] ?? '';
    return a !== '' ? a : (this.p1?.[key] ?? '');
  }
}

/** The filter itself: `Cors` has no fields. Its per-route type is CorsPolicy. */
export function corsFilterFactory(random: () => number = Math.random): HttpFilterFactory<undefined> {
  return {
    typeName: CORS_TYPE_NAME,
    decode(r: Reader): undefined {
      r.done();
      return undefined;
    },
    create(_config: undefined, callbacks: HttpFilterCallbacks): HttpFilter {
      return new CorsFilter(callbacks, random);
    },
  };
}

/**
 * Registered under the CorsPolicy type so typed_per_filter_config entries of that type decode.
 * It is not a filter: naming it in http_filters is a config error.
 */
export const corsPolicyFactory: HttpFilterFactory<undefined> = {
  typeName: CORS_POLICY_TYPE_NAME,
  decode(r: Reader): undefined {
    r.issues.error(r.sub('@type'), `${CORS_POLICY_TYPE_NAME} is only valid in typed_per_filter_config; use ${CORS_TYPE_NAME}`);
    return undefined;
  },
  decodePerRoute: decodeCorsPolicy,
  create(): HttpFilter {
    throw new MeshletError('MESHLET_ERR_INTERNAL', 'CorsPolicy is not an HTTP filter');
  },
};
