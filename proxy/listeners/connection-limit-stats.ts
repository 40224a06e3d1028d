/**
 * Counters of the connection_limit network filter under Envoy's names
 * (`connection_limit.<stat_prefix>.limited_connections`, `.active_connections`). Filters with the
 * same stat_prefix share one set, as Envoy's stats scope would. Process-wide like the RBAC
 * counters, so telemetry reads them without a reference to the listener that owns the filter.
 */
export class ConnectionLimitStats {
  /** Connections refused because the limit was reached. */
  limitedConnections = 0;
  /** Connections currently admitted by filters with this prefix. */
  activeConnections = 0;

  constructor(readonly statPrefix: string) {}
}

const byPrefix = new Map<string, ConnectionLimitStats>();

export function connectionLimitStatsFor(statPrefix: string): ConnectionLimitStats {
  let s = byPrefix.get(statPrefix);
  if (s === undefined) {
    s = new ConnectionLimitStats(statPrefix);
    byPrefix.set(statPrefix, s);
  }
  return s;
}

export function allConnectionLimitStats(): readonly ConnectionLimitStats[] {
  return [...byPrefix.values()];
}
