/**
 * Envoy's ext_authz counters, `<stat_prefix>ext_authz.ok|denied|error|failure_mode_allowed|disabled`,
 * shared by the HTTP filter and the network filter (proxy/listeners/network-ext-authz.ts) and read
 * by telemetry through gateway-stats.ts. Process-wide by stat prefix, as Envoy's stats scope.
 */

/** Envoy's ext_authz stats: ok, denied, error, failure_mode_allowed, disabled. */
export class ExtAuthzStats {
  ok = 0;
  denied = 0;
  error = 0;
  failureModeAllowed = 0;
  /** Requests filter_enabled / filter_enabled_metadata left unchecked (HTTP filter). */
  disabled = 0;
  constructor(readonly statPrefix: string) {}
}

const statsByPrefix = new Map<string, ExtAuthzStats>();

/** Counters `<stat_prefix>ext_authz.*` (shared by the HTTP and network filters). */
export function extAuthzStats(prefix: string): ExtAuthzStats {
  let s = statsByPrefix.get(prefix);
  if (s === undefined) {
    s = new ExtAuthzStats(prefix);
    statsByPrefix.set(prefix, s);
  }
  return s;
}

export function allExtAuthzStats(): readonly ExtAuthzStats[] {
  return [...statsByPrefix.values()];
}
