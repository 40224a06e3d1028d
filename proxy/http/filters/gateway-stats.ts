/**
 * One flat view of the gateway filters' counters for telemetry (/stats, Prometheus): ext_authz
 * (HTTP and network), global rate limit, jwt_authn, cache and TypeScript filters, under Envoy's
 * stat names where Envoy has them (`<stat_prefix>ext_authz.ok`, `jwt_authn.allowed`, …) and
 * `typescript_filter.<stat_prefix>.*` / `cache.<n>.*` for meshlet's own.
 *
 * Leans read-only and cheap: it walks the counters the filters already keep; nothing is
 * registered at import.
 */
import { allCacheStats } from './cache';
import { compressionCounters } from './compression-stats';
import { allExtAuthzStats } from './ext-authz-stats';
import { jwtAuthnStats } from './jwt-authn';
import { allRateLimitStats } from './ratelimit';
import { allTypeScriptFilterStats } from './typescript';
import { allLoadedFilters } from './typescript-loader';

export interface GatewayCounter {
  readonly name: string;
  readonly value: number;
}

export function gatewayFilterCounters(): GatewayCounter[] {
  const out: GatewayCounter[] = [];
  const c = (name: string, value: number): void => {
    out.push({ name, value });
  };
  for (const s of allExtAuthzStats()) {
    const p = `${s.statPrefix}ext_authz.`;
    c(`${p}ok`, s.ok);
    c(`${p}denied`, s.denied);
    c(`${p}error`, s.error);
    c(`${p}failure_mode_allowed`, s.failureModeAllowed);
    c(`${p}disabled`, s.disabled);
  }
  for (const s of allRateLimitStats()) {
    const p = `ratelimit.${s.domain}.`;
    c(`${p}ok`, s.ok);
    c(`${p}over_limit`, s.overLimit);
    c(`${p}error`, s.error);
    c(`${p}failure_mode_allowed`, s.failureModeAllowed);
  }
  c('jwt_authn.allowed', jwtAuthnStats.allowed);
  c('jwt_authn.denied', jwtAuthnStats.denied);
  c('jwt_authn.jwks_fetch_success', jwtAuthnStats.jwksFetchSuccess);
  c('jwt_authn.jwks_fetch_failed', jwtAuthnStats.jwksFetchFailed);
  allCacheStats().forEach((s, i) => {
    const p = `cache.${i}.`;
    c(`${p}hits`, s.hits);
    c(`${p}misses`, s.misses);
    c(`${p}validated`, s.validated);
    c(`${p}inserts`, s.inserts);
    c(`${p}evictions`, s.evictions);
    c(`${p}bypassed`, s.bypassed);
  });
  for (const s of allTypeScriptFilterStats()) {
    const p = `typescript_filter.${s.statPrefix}.`;
    c(`${p}requests`, s.requests);
    c(`${p}errors`, s.errors);
    c(`${p}timeouts`, s.timeouts);
    c(`${p}local_replies`, s.localReplies);
  }
  compressionCounters(c);
  const reloads = new Map<string, { reloads: number; failures: number }>();
  for (const l of allLoadedFilters()) {
    const key = l.file;
    const r = reloads.get(key) ?? { reloads: 0, failures: 0 };
    r.reloads += l.stats.reloads;
    r.failures += l.stats.reloadFailures;
    reloads.set(key, r);
  }
  for (const [file, r] of reloads) {
    const name = file.slice(file.lastIndexOf('/') + 1).replace(/\.[^.]+$/, '');
    c(`typescript_filter.${name}.reloads`, r.reloads);
    c(`typescript_filter.${name}.reload_failures`, r.failures);
  }
  return out;
}
