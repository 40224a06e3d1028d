/**
 * The load-balancer strategy interface (style rule 4: one interface, registered by name).
 *
 * A cluster keeps one LoadBalancer per priority level and rebuilds it whenever that level's host
 * list or host health changes; `pick` is on the hot path and must not allocate. Priority
 * selection, the panic threshold and circuit breaking live in the cluster, not here: a policy
 * only chooses among the hosts it was built with.
 */
import type { ClusterConfig, LbPolicyName } from '../../config/types';
import type { Host } from '../host';

/** Per-request inputs to a pick. Reuse one object per request; never allocate per pick. */
export interface LbContext {
  /** Hash computed from the route's hash_policy (RING_HASH, MAGLEV); undefined = no affinity. */
  hash?: number;
  /** Hosts to avoid if possible (retry_host_predicate previous_hosts). */
  avoid?: readonly Host[];
}

export interface LoadBalancer {
  /** A host, or undefined when the list is empty. */
  pick(ctx: LbContext | undefined): Host | undefined;
}

export interface LoadBalancerFactory {
  readonly name: LbPolicyName;
  /** Build a balancer over `hosts` (already filtered for health by the cluster). */
  create(hosts: readonly Host[], config: ClusterConfig): LoadBalancer;
}

/** Explicit registry, filled from the composition root (no import side effects). */
export class LbRegistry {
  private readonly factories = new Map<string, LoadBalancerFactory>();
  register(factory: LoadBalancerFactory): this {
    this.factories.set(factory.name, factory);
    return this;
  }
  get(name: string): LoadBalancerFactory | undefined {
    return this.factories.get(name);
  }
  names(): string[] {
    return [...this.factories.keys()];
  }
}
