/**
 * Where telemetry finds the RBAC filters' counters. Each configured RBAC filter registers its
 * RbacStats under its Envoy stat name; filters with the same name share one counter set (as
 * Envoy's stats scope would). Process-wide on purpose: admin /stats and the Prometheus exporter
 * read every filter's counters without a reference to the listener that owns it.
 */
import { RbacStats } from './engine';

const byName = new Map<string, RbacStats>();

/**
 * The shared counters for an RBAC filter stat name (created on first use). `shadowName` prefixes
 * the shadow counters: Envoy names them after shadow_rules_stat_prefix, not the rules prefix
 * (`rbac.<rules_stat_prefix>allowed`, `rbac.<shadow_rules_stat_prefix>shadow_allowed`).
 */
export function rbacStatsFor(name: string, kind: 'http' | 'network', shadowName = name): RbacStats {
  const key = `${kind}:${name}|${shadowName}`;
  let s = byName.get(key);
  if (s === undefined) {
    s = new RbacStats(name, kind, shadowName);
    byName.set(key, s);
  }
  return s;
}

/** Every RBAC filter's counters, for telemetry (`<name>allowed`, `<name>denied`, …). */
export function allRbacStats(): readonly RbacStats[] {
  return [...byName.values()];
}
