/**
 * Decoder of a CORS policy: `envoy.extensions.filters.http.cors.v3.CorsPolicy` (the
 * typed_per_filter_config of envoy.filters.http.cors) and the route-level
 * `envoy.config.route.v3.CorsPolicy` (the `cors` field of a virtual host or route, which Envoy
 * still reads when no typed_per_filter_config policy is present). Both messages have the same
 * fields; the runtime side is proxy/http/filters/cors.ts.
 *
 * Fractions are `RuntimeFractionalPercent`, read against the layered runtime per request.
 */
import type { Reader } from '../../../common/reader';
import type { CorsPolicyConfig, StringMatcher } from '../types';
import { ALWAYS, decodeRuntimeFraction, NEVER } from '../envoy/runtime';
import { decodeStringMatcher } from '../envoy/matchers';

/** Fields of the v2 CorsPolicy that v3 removed: Envoy rejects them, so does meshlet. */
const REMOVED: Readonly<Record<string, string>> = {
  allow_origin: 'allow_origin_string_match',
  allow_origin_regex: 'allow_origin_string_match',
  enabled: 'filter_enabled',
};

function optBool(r: Reader, key: string): boolean | undefined {
  return r.has(key) ? r.bool(key, false) : undefined;
}

/** envoy.extensions.filters.http.cors.v3.CorsPolicy / envoy.config.route.v3.CorsPolicy. */
export function decodeCorsPolicy(r: Reader): CorsPolicyConfig {
  const allowOrigins: StringMatcher[] = [];
  for (const m of r.arr('allow_origin_string_match')) {
    const sm = decodeStringMatcher(m);
    if (sm) allowOrigins.push(sm);
  }
  for (const [k, instead] of Object.entries(REMOVED)) {
    if (r.has(k)) r.error(k, `was removed in the v3 API; use ${instead}`);
    r.raw(k);
  }
  const allowCredentials = optBool(r, 'allow_credentials');
  const allowPrivateNetworkAccess = optBool(r, 'allow_private_network_access');
  const forwardNotMatchingPreflights = optBool(r, 'forward_not_matching_preflights');
  const filterEnabled = r.has('filter_enabled') ? decodeRuntimeFraction(r, 'filter_enabled', ALWAYS) : undefined;
  const shadowEnabled = r.has('shadow_enabled') ? decodeRuntimeFraction(r, 'shadow_enabled', NEVER) : undefined;
  const out: CorsPolicyConfig = {
    kind: 'cors_policy',
    allowOrigins,
    allowMethods: r.str('allow_methods', ''),
    allowHeaders: r.str('allow_headers', ''),
    exposeHeaders: r.str('expose_headers', ''),
    maxAge: r.str('max_age', ''),
    ...(allowCredentials !== undefined ? { allowCredentials } : {}),
    ...(allowPrivateNetworkAccess !== undefined ? { allowPrivateNetworkAccess } : {}),
    ...(forwardNotMatchingPreflights !== undefined ? { forwardNotMatchingPreflights } : {}),
    ...(filterEnabled ? { filterEnabled } : {}),
    ...(shadowEnabled ? { shadowEnabled } : {}),
  };
  r.done();
  return out;
}
