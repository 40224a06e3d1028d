/**
 * typed_per_filter_config (route, virtual host, weighted cluster): each entry is handed to the
 * HTTP filter factory registered for its type, through `decodePerRoute`. The
 * envoy.config.route.v3.FilterConfig wrapper is understood (is_optional turns an unknown type
 * into a warning, as in Envoy).
 */
import { Reader } from '../../../common/reader';
import type { DecodeContext } from './context';
import { ambientMessage, innerTypeName } from './unsupported';

const T_FILTER_CONFIG = 'envoy.config.route.v3.FilterConfig';

/**
 * Runs a foreign decoder (a filter factory) on `r`, then reports r's unread keys exactly once,
 * whether or not the factory already called `done()` itself.
 */
export function runForeign<T>(r: Reader, decode: (r: Reader) => T): T {
  const before = r.issues.warnings.length;
  const out = decode(r);
  r.done();
  const seen = new Set<string>();
  const w = r.issues.warnings;
  for (let i = before; i < w.length; ) {
    const k = `${w[i]!.path}\u0000${w[i]!.message}`;
    if (seen.has(k)) w.splice(i, 1);
    else {
      seen.add(k);
      i++;
    }
  }
  return out;
}

export function decodeTypedPerFilterConfig(r: Reader, ctx: DecodeContext): Record<string, unknown> {
  const m = r.map('typed_per_filter_config');
  const out: Record<string, unknown> = {};
  if (!m) return out;
  const base = r.sub('typed_per_filter_config');
  for (const [name, raw] of Object.entries(m)) {
    const er = Reader.of(raw, `${base}.${name}`, r.issues);
    const any = er?.asAny();
    if (!er || !any) continue;
    let inner = any;
    let optional = false;
    if (any.type === T_FILTER_CONFIG) {
      optional = er.bool('is_optional', false);
      if (er.bool('disabled', false)) er.error('disabled', 'disabling a filter per route is not supported by meshlet');
      const c = er.any('config');
      er.done();
      // A FilterConfig without config carries only flags; Envoy skips it.
      if (!c) continue;
      inner = c;
    }
    const f = ctx.httpFilters.get(inner.type);
    if (!f) {
      if (optional)
        inner.reader.issues.warn(
          inner.reader.sub('@type'),
          `unknown filter config type ${inner.type}, ignored (is_optional)`,
        );
      else inner.reader.issues.error(inner.reader.sub('@type'), `unsupported filter config type ${inner.type}`);
      continue;
    }
    const decodePerRoute = f.decodePerRoute;
    if (!decodePerRoute) {
      // A TypedStruct names the filter it wraps (istiod's HBONE connect_authority is one).
      const url = inner.reader.has('type_url') ? inner.reader.str('type_url', '') : '';
      inner.reader.ignore('type_url', 'value');
      inner.reader.issues.error(
        inner.reader.sub('@type'),
        (url && ambientMessage(innerTypeName(url), `per-route TypedStruct of ${JSON.stringify(url)}`)) ||
          `filter ${inner.type}${url ? ` with type_url ${url}` : ''} does not support per-route configuration`,
      );
      continue;
    }
    out[name] = runForeign(inner.reader, (x) => decodePerRoute.call(f, x));
  }
  return out;
}
