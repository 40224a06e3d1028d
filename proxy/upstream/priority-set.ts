/**
 * Priority levels of one cluster and the choice between them, computed the way Envoy does
 * (load_balancer_impl.cc, "priority levels" and "panic threshold" in the architecture docs):
 *
 *  - health(P) = min(100, overprovisioning_factor × healthy(P) / total(P)), integer percent,
 *    with the factor as a percentage (Envoy default 140, i.e. 1.4).
 *  - normalized total health N = min(100, Σ health(P)). Each level gets
 *    load(P) = min(remaining, health(P) × 100 / N) in order, so a level that is not fully healthy
 *    spills the rest of its traffic to the next one; rounding leftovers go to the first level
 *    with health.
 *  - Panic: only when N < 100, a level whose healthy share is below healthy_panic_threshold
 *    balances across all of its hosts (DRAINING ones excluded). When N = 0 every level panics and
 *    load follows host counts (Envoy's "total panic"); a threshold of 0 disables panic, so then
 *    nothing is chosen and the router answers 503 UH.
 *
 * Inside a level, locality weighting or zone-aware routing (locality.ts) choose the locality
 * first when configured (not for the hash policies, which Envoy keeps locality-blind).
 *
 * Everything is computed on rebuild (membership or health change). `choose` is the hot path: one
 * random draw (or the request hash), a scan over a handful of levels, the level's `pick`.
 */
import type { ClusterConfig } from '../config/types';
import type { Host } from './host';
import type { LbContext, LoadBalancer, LoadBalancerFactory } from './lb/types';
import type { ClusterStats } from './types';
import { DEFAULT_ZONE_AWARE, type LocalClusterView, type LocalityPicker, localityWeightedPicker, zoneAwarePicker } from './locality';

/** One priority level after a rebuild. */
export interface PriorityLevel {
  readonly priority: number;
  /** Every host at this priority, in assignment order. */
  readonly hosts: readonly Host[];
  readonly healthyCount: number;
  /** Envoy's health value for the level, 0–100. */
  readonly health: number;
  /** Share of traffic this level receives, 0–100. */
  readonly load: number;
  readonly panic: boolean;
  /** Hosts the balancer was built over: the healthy ones, or all non-draining ones in panic. */
  readonly lbHosts: readonly Host[];
  readonly lb: LoadBalancer | undefined;
  /** Locality first (locality weighted / zone aware); undefined: `lb` over every usable host. */
  readonly picker: LocalityPicker | undefined;
}

const NO_HOST: LocalityPicker = { pick: () => undefined };

/** Policies that hash to a host: locality-blind, as in Envoy. */
const HASH_POLICIES = new Set(['RING_HASH', 'MAGLEV']);

export class PrioritySet {
  levels: readonly PriorityLevel[] = [];
  /** Cumulative loads, parallel to `levels`. */
  private cumulative = new Float64Array(0);

  constructor(
    private readonly factory: LoadBalancerFactory,
    private readonly config: ClusterConfig,
    private readonly stats: ClusterStats,
    private readonly random: () => number = Math.random,
    /** The local cluster (cluster_manager.local_cluster_name), for zone-aware routing. */
    private readonly local?: () => LocalClusterView | undefined,
  ) {}

  /** Recompute levels, loads, panic flags and balancers from scratch. */
  rebuild(hosts: readonly Host[], overprovisioningFactor: number, panicThresholdPercent: number): void {
    let maxPriority = -1;
    for (const h of hosts) if (h.priority > maxPriority) maxPriority = h.priority;
    const byLevel: Host[][] = [];
    for (let p = 0; p <= maxPriority; p++) byLevel.push([]);
    for (const h of hosts) byLevel[h.priority].push(h);

    const n = byLevel.length;
    const healthy = new Array<number>(n);
    const health = new Array<number>(n);
    let sumHealth = 0;
    for (let p = 0; p < n; p++) {
      const list = byLevel[p];
      let c = 0;
      for (const h of list) if (h.healthy) c++;
      healthy[p] = c;
      health[p] = list.length === 0 ? 0 : Math.min(100, Math.floor((overprovisioningFactor * c) / list.length));
      sumHealth += health[p];
    }
    const normalized = Math.min(100, sumHealth);
    const load = new Array<number>(n).fill(0);
    const panic = new Array<boolean>(n).fill(false);
    const threshold = Math.min(100, Math.max(0, panicThresholdPercent));

    if (normalized === 0) {
      if (threshold > 0) {
        // Total panic: every level panics; load follows host counts.
        let total = 0;
        for (const l of byLevel) total += l.length;
        if (total > 0) {
          let remaining = 100;
          for (let p = 0; p < n; p++) {
            load[p] = Math.floor((100 * byLevel[p].length) / total);
            remaining -= load[p];
            panic[p] = true;
          }
          for (let p = 0; p < n && remaining > 0; p++) {
            if (byLevel[p].length > 0) {
              load[p] += remaining;
              remaining = 0;
            }
          }
        }
      } else if (n > 0) {
        load[0] = 100;
      }
    } else {
      let remaining = 100;
      for (let p = 0; p < n; p++) {
        load[p] = Math.min(remaining, Math.floor((health[p] * 100) / normalized));
        remaining -= load[p];
      }
      for (let p = 0; p < n && remaining > 0; p++) {
        if (health[p] > 0) {
          load[p] += remaining;
          remaining = 0;
        }
      }
      if (normalized < 100) {
        for (let p = 0; p < n; p++) {
          const total = byLevel[p].length;
          const healthyPct = total === 0 ? 0 : (100 * healthy[p]) / total;
          panic[p] = healthyPct < threshold;
        }
      }
    }

    const levels: PriorityLevel[] = [];
    const cumulative = new Float64Array(n);
    let acc = 0;
    for (let p = 0; p < n; p++) {
      const list = byLevel[p];
      const lbHosts = panic[p] ? list.filter((h) => !h.draining) : list.filter((h) => h.healthy);
      acc += load[p];
      cumulative[p] = acc;
      const lb = lbHosts.length > 0 ? this.factory.create(lbHosts, this.config) : undefined;
      levels.push(
        Object.freeze({
          priority: p,
          hosts: list,
          healthyCount: healthy[p],
          health: health[p],
          load: load[p],
          panic: panic[p],
          lbHosts,
          lb,
          picker: lb !== undefined ? this.pickerFor(p, list, lbHosts, panic[p]!, overprovisioningFactor, lb) : undefined,
        }),
      );
    }
    this.levels = levels;
    this.cumulative = cumulative;
  }

  private pickerFor(
    p: number,
    all: readonly Host[],
    usable: readonly Host[],
    panic: boolean,
    overprovisioningFactor: number,
    lb: LoadBalancer,
  ): LocalityPicker | undefined {
    const cfg = this.config;
    if (HASH_POLICIES.has(this.factory.name)) return undefined;
    if (cfg.localityWeightedLb) {
      // No locality with an effective weight: the level has nothing to offer (as Envoy).
      return localityWeightedPicker(all, usable, panic, overprovisioningFactor, this.factory, cfg) ?? NO_HOST;
    }
    if (p !== 0 || this.local === undefined) return undefined;
    const zc = cfg.zoneAware ?? DEFAULT_ZONE_AWARE;
    if (panic && zc.failTrafficOnPanic) return NO_HOST;
    return zoneAwarePicker(all, usable, panic, this.local, zc, lb, this.factory, cfg);
  }

  /** Pick a host: choose a level by load (by the request hash when there is one), then its balancer. */
  choose(ctx: LbContext | undefined): Host | undefined {
    const levels = this.levels;
    const n = levels.length;
    if (n === 0) return undefined;
    const hash = ctx?.hash;
    const r = hash !== undefined ? (hash >>> 0) % 100 : this.random() * 100;
    let chosen = n - 1;
    for (let p = 0; p < n; p++) {
      if (r < this.cumulative[p]) {
        chosen = p;
        break;
      }
    }
    const level = levels[chosen];
    if (level.lb !== undefined) {
      const h = level.picker !== undefined ? level.picker.pick(ctx, this.random) : level.lb.pick(ctx);
      if (h !== undefined) {
        if (level.panic) this.stats.lbHealthyPanic++;
        return h;
      }
    }
    // The chosen level had nothing to offer (e.g. only draining hosts): try the others in order.
    for (let p = 0; p < n; p++) {
      const l = levels[p];
      if (p === chosen || l.lb === undefined || l.load === 0) continue;
      const h = l.picker !== undefined ? l.picker.pick(ctx, this.random) : l.lb.pick(ctx);
      if (h !== undefined) {
        if (l.panic) this.stats.lbHealthyPanic++;
        return h;
      }
    }
    return undefined;
  }
}
