/**
 * Circuit breakers (Envoy's ResourceManager): one counter with a maximum per resource, built from
 * the cluster's `circuit_breakers.thresholds` entry for the DEFAULT priority.
 *
 * Leans cheap: counters are plain numbers, `canCreate` is a comparison, nothing allocates. The
 * retry resource honours `retry_budget` the way Envoy does: when a budget is configured the limit
 * is `max(budget_percent% × (active + pending requests), min_retry_concurrency)` and
 * `max_retries` is ignored. Overflow is counted in ClusterStats by `tryInc` / `canRetry`, the
 * call sites that actually refuse work; `canCreate` stays a pure check.
 */
import type { CircuitBreakerThresholds } from '../config/types';
import type { ClusterResources, ClusterStats, Resource } from './types';

/** Envoy's circuit-breaker defaults (cluster.proto CircuitBreakers.Thresholds). */
export const DEFAULT_THRESHOLDS: CircuitBreakerThresholds = Object.freeze({
  priority: 'DEFAULT',
  maxConnections: 1024,
  maxPendingRequests: 1024,
  maxRequests: 1024,
  maxRetries: 3,
});

/** Envoy's retry_budget defaults when the message is present but a field is unset. */
export const DEFAULT_RETRY_BUDGET_PERCENT = 20;
export const DEFAULT_MIN_RETRY_CONCURRENCY = 3;

/** Which ClusterStats counter an overflow of a resource increments. */
export type OverflowStat = 'upstreamCxOverflow' | 'upstreamRqPendingOverflow' | 'upstreamRqRetryOverflow';

/** A counter with a fixed maximum. */
export class BasicResource implements Resource {
  count = 0;
  constructor(
    private readonly limit: number,
    protected readonly stats: ClusterStats,
    protected readonly overflowStat: OverflowStat,
  ) {}
  get max(): number {
    return this.limit;
  }
  canCreate(): boolean {
    return this.count < this.max;
  }
  inc(): void {
    this.count++;
  }
  dec(): void {
    if (this.count > 0) this.count--;
  }
  /** inc() when below the limit; otherwise count the overflow in ClusterStats and refuse. */
  tryInc(): boolean {
    if (this.count < this.max) {
      this.count++;
      return true;
    }
    this.stats[this.overflowStat]++;
    return false;
  }
}

/** The retry resource under a retry budget: its maximum follows the current request load. */
export class BudgetRetryResource extends BasicResource {
  constructor(
    private readonly budgetPercent: number,
    private readonly minConcurrency: number,
    private readonly requests: Resource,
    private readonly pending: Resource,
    stats: ClusterStats,
  ) {
    super(0, stats, 'upstreamRqRetryOverflow');
  }
  override get max(): number {
    const budget = Math.floor(((this.requests.count + this.pending.count) * this.budgetPercent) / 100);
    return Math.max(budget, this.minConcurrency);
  }
}

/** The four resources of one cluster (DEFAULT priority), plus the retry check the router uses. */
export class ClusterResourceManager implements ClusterResources {
  readonly connections: BasicResource;
  readonly pendingRequests: BasicResource;
  readonly requests: BasicResource;
  readonly retries: BasicResource;
  /** The thresholds in force (for admin /clusters). */
  readonly thresholds: CircuitBreakerThresholds;

  constructor(
    all: readonly CircuitBreakerThresholds[],
    private readonly stats: ClusterStats,
  ) {
    const t = all.find((x) => x.priority === 'DEFAULT') ?? DEFAULT_THRESHOLDS;
    this.thresholds = t;
    this.connections = new BasicResource(t.maxConnections, stats, 'upstreamCxOverflow');
    this.pendingRequests = new BasicResource(t.maxPendingRequests, stats, 'upstreamRqPendingOverflow');
    // Envoy has no separate request-overflow counter; it reports upstream_rq_pending_overflow.
    this.requests = new BasicResource(t.maxRequests, stats, 'upstreamRqPendingOverflow');
    const budget = t.retryBudget;
    this.retries =
      budget !== undefined
        ? new BudgetRetryResource(
            budget.budgetPercent,
            budget.minRetryConcurrency,
            this.requests,
            this.pendingRequests,
            stats,
          )
        : new BasicResource(t.maxRetries, stats, 'upstreamRqRetryOverflow');
  }

  /** May the router start one more retry? Counts upstream_rq_retry_overflow when not; does not inc(). */
  canRetry(): boolean {
    if (this.retries.canCreate()) return true;
    this.stats.upstreamRqRetryOverflow++;
    return false;
  }
}
