/**
 * Locality-aware host choice inside one priority level, as Envoy's load balancers do it
 * (load_balancer_impl.cc; "locality weighted load balancing" and "zone aware routing" in the
 * architecture docs):
 *
 *  - locality_weighted_lb_config: a locality is chosen first, by an EDF schedule over
 *    effective weight = load_balancing_weight × min(1, overprovisioning × healthy / total);
 *    localities without a weight get no traffic. Then the policy picks inside it.
 *  - zone-aware routing (a local cluster named by cluster_manager.local_cluster_name, no
 *    locality weighting): with the share of healthy hosts per locality upstream (U) and of the
 *    local cluster (L), all traffic stays in the local locality when U[local] ≥ L[local];
 *    otherwise U[local]/L[local] of it does and the rest goes to the other localities in
 *    proportion to their residual capacity max(0, U[i] − L[i]). Skipped (every host of the level
 *    balanced together) below min_cluster_size upstream hosts, in panic, when the local cluster
 *    has no healthy host or the local locality has no healthy upstream host, and for the
 *    requests outside routing_enabled.
 *
 * Everything is computed on rebuild (and, for zone-aware, when the local cluster's membership
 * version moves); a pick is a couple of random draws and array walks.
 */
import type { ClusterConfig, Locality, ZoneAwareLbConfig } from '../config/types';
import type { Host } from './host';
import { EdfScheduler } from './lb/round-robin';
import type { LbContext, LoadBalancer, LoadBalancerFactory } from './lb/types';

export function localityKey(l: Locality | undefined): string {
  return l === undefined ? '' : `${l.region}/${l.zone}/${l.subZone}`;
}

/** What zone-aware routing reads of the local cluster. */
export interface LocalClusterView {
  /** Changes whenever the local cluster's hosts or their health change. */
  readonly version: number;
  /** The proxy's own locality (the bootstrap node's). */
  readonly localityKey: string;
  /** Healthy hosts of the local cluster (every priority), per locality key. */
  healthyByLocality(): ReadonlyMap<string, number>;
}

/** Envoy's zone_aware_lb_config defaults. */
export const DEFAULT_ZONE_AWARE: ZoneAwareLbConfig = { routingEnabledPercent: 100, minClusterSize: 6, failTrafficOnPanic: false };

/** One locality of a level: its hosts and a balancer over the usable ones. */
interface LocalityGroup {
  readonly key: string;
  readonly weight: number;
  readonly total: number;
  readonly healthy: number;
  readonly lb: LoadBalancer | undefined;
}

function groupsOf(
  all: readonly Host[],
  usable: readonly Host[],
  factory: LoadBalancerFactory,
  config: ClusterConfig,
): LocalityGroup[] {
  const order: string[] = [];
  const byKey = new Map<string, { all: Host[]; usable: Host[]; weight: number }>();
  for (const h of all) {
    const k = localityKey(h.locality);
    let g = byKey.get(k);
    if (g === undefined) {
      g = { all: [], usable: [], weight: h.localityWeight ?? 0 };
      byKey.set(k, g);
      order.push(k);
    }
    g.all.push(h);
  }
  for (const h of usable) byKey.get(localityKey(h.locality))?.usable.push(h);
  return order.map((key) => {
    const g = byKey.get(key)!;
    let healthy = 0;
    for (const h of g.all) if (h.healthy) healthy++;
    return {
      key,
      weight: g.weight,
      total: g.all.length,
      healthy,
      lb: g.usable.length > 0 ? factory.create(g.usable, config) : undefined,
    };
  });
}

/** Picks a host of a level through its localities: locality weighted, or zone aware. */
export interface LocalityPicker {
  pick(ctx: LbContext | undefined, random: () => number): Host | undefined;
}

/** locality_weighted_lb_config. undefined when no locality has an effective weight. */
export function localityWeightedPicker(
  all: readonly Host[],
  usable: readonly Host[],
  panic: boolean,
  overprovisioningFactor: number,
  factory: LoadBalancerFactory,
  config: ClusterConfig,
): LocalityPicker | undefined {
  const groups = groupsOf(all, usable, factory, config).filter((g) => g.lb !== undefined);
  // In panic every host is usable, so availability does not scale the weights.
  const effective = groups.map((g) =>
    g.weight * (panic ? 1 : Math.min(1, (overprovisioningFactor / 100) * (g.total === 0 ? 0 : g.healthy / g.total))),
  );
  const live = groups.filter((_, i) => effective[i]! > 0);
  const weights = effective.filter((w) => w > 0);
  if (live.length === 0) return undefined;
  const edf = new EdfScheduler(live.length, (i) => weights[i]!);
  return {
    pick(ctx) {
      for (let tries = 0; tries < live.length; tries++) {
        const h = live[edf.pick()]!.lb!.pick(ctx);
        if (h !== undefined) return h;
      }
      return undefined;
    },
  };
}

/**
 * Zone-aware routing for priority 0. `fallback` balances every usable host of the level (when
 * routing does not apply); undefined is returned when it never applies to this level.
 */
export function zoneAwarePicker(
  all: readonly Host[],
  usable: readonly Host[],
  panic: boolean,
  local: () => LocalClusterView | undefined,
  zc: ZoneAwareLbConfig,
  fallback: LoadBalancer,
  factory: LoadBalancerFactory,
  config: ClusterConfig,
): LocalityPicker | undefined {
  if (panic || all.length < zc.minClusterSize) return undefined;
  const groups = groupsOf(all, usable, factory, config);
  let version = -1;
  /** -1: no locality routing; else the local group index and the residual table. */
  let localIndex = -1;
  let localShare = 0; // basis points of traffic kept local (10000 = all)
  let residual = new Float64Array(0);
  let residualTotal = 0;

  const recompute = (view: LocalClusterView): void => {
    version = view.version;
    localIndex = groups.findIndex((g) => g.key === view.localityKey);
    const localHealthy = view.healthyByLocality();
    let localTotal = 0;
    for (const n of localHealthy.values()) localTotal += n;
    let upTotal = 0;
    for (const g of groups) upTotal += g.healthy;
    if (localIndex < 0 || localTotal === 0 || upTotal === 0 || groups[localIndex]!.healthy === 0) {
      localIndex = -1;
      return;
    }
    const up = groups.map((g) => (10000 * g.healthy) / upTotal);
    const lo = groups.map((g) => (10000 * (localHealthy.get(g.key) ?? 0)) / localTotal);
    if (up[localIndex]! >= lo[localIndex]!) {
      localShare = 10000;
      residualTotal = 0;
      return;
    }
    localShare = (10000 * up[localIndex]!) / lo[localIndex]!;
    residual = new Float64Array(groups.length);
    residualTotal = 0;
    for (let i = 0; i < groups.length; i++) {
      if (i !== localIndex) residualTotal += Math.max(0, up[i]! - lo[i]!);
      residual[i] = residualTotal;
    }
  };

  return {
    pick(ctx, random) {
      const view = local();
      if (view === undefined) return fallback.pick(ctx);
      if (view.version !== version) recompute(view);
      if (localIndex < 0 || random() * 100 >= zc.routingEnabledPercent) return fallback.pick(ctx);
      let chosen = localIndex;
      if (localShare < 10000 && random() * 10000 >= localShare && residualTotal > 0) {
        const r = random() * residualTotal;
        for (let i = 0; i < groups.length; i++) {
          if (i !== localIndex && r < residual[i]!) {
            chosen = i;
            break;
          }
        }
      }
      return groups[chosen]!.lb?.pick(ctx) ?? fallback.pick(ctx);
    },
  };
}
