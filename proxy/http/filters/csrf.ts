/**
 * The CSRF filter, `envoy.extensions.filters.http.csrf.v3.CsrfPolicy` (Envoy's
 * envoy.filters.http.csrf; the same type is its typed_per_filter_config, most specific wins).
 *
 * Envoy's semantics: for a modifying request (POST, PUT, DELETE, PATCH) the source origin — the
 * host and port of Origin, else of Referer — must equal the target origin (the Host / :authority)
 * or match one of `additional_origins`. A request without a source counts
 * `http.<stat_prefix>.csrf.missing_source_origin` (and `request_invalid`), a mismatch
 * `request_invalid`, a match `request_valid`. An invalid request is answered 403 `Invalid origin`
 * (details `csrf_origin_mismatch`) when `filter_enabled` applies; in shadow mode (`shadow_enabled`
 * without `filter_enabled`) it is only counted. Both fractions are read against the layered
 * runtime per request.
 *
 * Leans cheap: a GET, or a policy that is off, costs a string comparison; nothing is allocated
 * unless the request is a modifying one with an absolute-URL origin.
 */
import type { Reader } from '../../../common/reader';
import type { RuntimeFraction } from '../../../common/runtime';
import { decodeStringMatcher } from '../../config/envoy/matchers';
import { decodeRuntimeFraction, NEVER } from '../../config/envoy/runtime';
import type { StringMatcher } from '../../config/types';
import type { RequestHead } from '../codec';
import { FilterStatus, type HttpFilter, type HttpFilterCallbacks, type HttpFilterFactory } from '../filter';
import { getHeader } from '../headers';
import { matchString } from '../route-matcher';

export const CSRF_TYPE_NAME = 'envoy.extensions.filters.http.csrf.v3.CsrfPolicy';

export interface CsrfPolicyConfig {
  readonly kind: 'csrf';
  readonly filterEnabled: RuntimeFraction;
  /** undefined = no shadow mode. */
  readonly shadowEnabled?: RuntimeFraction;
  readonly additionalOrigins: readonly StringMatcher[];
}

/** Envoy's CSRF stats, under `http.<stat_prefix>.csrf.`. */
export class CsrfStats {
  missingSourceOrigin = 0;
  requestInvalid = 0;
  requestValid = 0;
  constructor(readonly statPrefix: string) {}
}

const statsByPrefix = new Map<string, CsrfStats>();
export function allCsrfStats(): readonly CsrfStats[] {
  return [...statsByPrefix.values()];
}
function csrfStats(prefix: string): CsrfStats {
  let s = statsByPrefix.get(prefix);
  if (s === undefined) {
    s = new CsrfStats(prefix);
    statsByPrefix.set(prefix, s);
  }
  return s;
}

export function decodeCsrfPolicy(r: Reader): CsrfPolicyConfig {
  if (!r.has('filter_enabled')) r.error('filter_enabled', 'is required');
  const filterEnabled = decodeRuntimeFraction(r, 'filter_enabled', NEVER);
  const shadowEnabled = r.has('shadow_enabled') ? decodeRuntimeFraction(r, 'shadow_enabled', NEVER) : undefined;
  const additionalOrigins: StringMatcher[] = [];
  for (const m of r.arr('additional_origins')) {
    const sm = decodeStringMatcher(m);
    if (sm) additionalOrigins.push(sm);
  }
  r.done();
  return { kind: 'csrf', filterEnabled, ...(shadowEnabled ? { shadowEnabled } : {}), additionalOrigins };
}

/**
 * Envoy's hostAndPort(): the authority of an absolute URL ("https://a.example:8443/x" →
 * "a.example:8443"); a value that is not an absolute URL is taken as it is.
 */
export function hostAndPort(v: string): string {
  const s = v.indexOf('://');
  if (s <= 0) return v;
  let e = s + 3;
  while (e < v.length) {
    const c = v.charCodeAt(e);
    if (c === 47 /* / */ || c === 63 /* ? */ || c === 35 /* # */) break;
    e++;
  }
  return e === s + 3 ? v : v.slice(s + 3, e);
}

function isModifyMethod(m: string): boolean {
  return m === 'POST' || m === 'PUT' || m === 'DELETE' || m === 'PATCH';
}

class CsrfFilter implements HttpFilter {
  constructor(
    private readonly config: CsrfPolicyConfig,
    private readonly cb: HttpFilterCallbacks,
    private readonly random: () => number,
  ) {}

  decodeHeaders(head: RequestHead): FilterStatus {
    if (!isModifyMethod(head.method)) return FilterStatus.Continue;
    const per = this.cb.perRouteConfig() as CsrfPolicyConfig | undefined;
    const p = per !== undefined && per.kind === 'csrf' ? per : this.config;
    const rt = this.cb.runtime;
    const enabled = rt.fractionEnabled(p.filterEnabled, this.random());
    const shadow = p.shadowEnabled !== undefined && rt.fractionEnabled(p.shadowEnabled, this.random());
    if (!enabled && !shadow) return FilterStatus.Continue;

    const stats = csrfStats(this.cb.hcm.statPrefix);
    let valid = true;
    const origin = getHeader(head.headers, 'origin');
    let source = origin !== undefined && origin !== '' ? hostAndPort(origin) : '';
    if (source === '') {
      const referer = getHeader(head.headers, 'referer');
      source = referer !== undefined && referer !== '' ? hostAndPort(referer) : '';
    }
    if (source === '') {
      valid = false;
      stats.missingSourceOrigin++;
    }
    if (!this.isValid(source, head.authority, p)) {
      valid = false;
      stats.requestInvalid++;
    }
    if (valid) {
      stats.requestValid++;
      return FilterStatus.Continue;
    }
    if (!enabled) return FilterStatus.Continue;
    this.cb.sendLocalReply(403, 'Invalid origin', undefined, undefined, 'csrf_origin_mismatch');
    return FilterStatus.StopIteration;
  }

  private isValid(source: string, target: string, p: CsrfPolicyConfig): boolean {
    // The target origin is the Host (Envoy builds "<scheme>://<host>" and takes its authority back).
    if (source === target) return true;
    const list = p.additionalOrigins;
    for (let i = 0; i < list.length; i++) if (matchString(list[i]!, source)) return true;
    return false;
  }
}

export function csrfFilterFactory(random: () => number = Math.random): HttpFilterFactory<CsrfPolicyConfig> {
  return {
    typeName: CSRF_TYPE_NAME,
    decode: decodeCsrfPolicy,
    decodePerRoute: decodeCsrfPolicy,
    create(config: CsrfPolicyConfig, callbacks: HttpFilterCallbacks): HttpFilter {
      return new CsrfFilter(config, callbacks, random);
    },
  };
}
