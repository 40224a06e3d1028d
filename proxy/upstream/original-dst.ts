/**
 * ORIGINAL_DST: the cluster whose hosts are wherever the intercepted connection was going. Hosts
 * are created on demand by `hostForOriginalDst(address, port)` (the listener's SO_ORIGINAL_DST or,
 * with `original_dst_header`, the header the router reads) and cleaned up every cleanup_interval
 * (Envoy default 5 s) once they have not been used for a whole interval and carry no requests or
 * connections. lb_policy is CLUSTER_PROVIDED: `chooseHost` has no destination to go by and
 * returns undefined; callers use `hostForOriginalDst`.
 *
 * `upstream_port_override` replaces the destination's port (the address is kept), wherever the
 * destination came from.
 *
 * Lookups are two Map gets (address, then port) so the per-request path builds no key string.
 */
import type { ClusterConfig } from '../config/types';
import { Cluster, type ClusterContext } from './cluster';
import { Host } from './host';
import type { LbContext } from './lb/types';

/** Envoy's default cleanup_interval for ORIGINAL_DST clusters. */
export const DEFAULT_CLEANUP_INTERVAL_MS = 5000;

interface Entry {
  readonly host: Host;
  used: boolean;
}

export class OriginalDstCluster extends Cluster {
  private readonly byAddress = new Map<string, Map<number, Entry>>();
  private readonly timer: NodeJS.Timeout;

  constructor(config: ClusterConfig, ctx: ClusterContext) {
    super(config, ctx);
    this.rebuild();
    this.markInitialized();
    const every = config.cleanupIntervalMs > 0 ? config.cleanupIntervalMs : DEFAULT_CLEANUP_INTERVAL_MS;
    this.timer = setInterval(() => this.cleanup(), every);
    this.timer.unref();
  }

  override chooseHost(_ctx: LbContext | undefined): Host | undefined {
    return undefined;
  }

  hostForOriginalDst(address: string, dstPort: number): Host {
    // original_dst_lb_config.upstream_port_override: same address, the configured port.
    const port = this.config.originalDstPortOverride ?? dstPort;
    let ports = this.byAddress.get(address);
    if (ports === undefined) {
      ports = new Map();
      this.byAddress.set(address, ports);
    }
    let e = ports.get(port);
    if (e === undefined) {
      const host = new Host({ kind: 'socket', host: address, port });
      e = { host, used: true };
      ports.set(port, e);
      this.replaceHosts([...this.hosts, host], [host]);
    }
    e.used = true;
    return e.host;
  }

  /** Drop hosts unused since the previous pass (Envoy's "used" flag), unless still busy. */
  cleanup(): void {
    const keep: Host[] = [];
    let removed = false;
    for (const [address, ports] of this.byAddress) {
      for (const [port, e] of ports) {
        if (e.used || e.host.activeRequests > 0 || e.host.activeConnections > 0) {
          e.used = false;
          keep.push(e.host);
        } else {
          ports.delete(port);
          removed = true;
        }
      }
      if (ports.size === 0) this.byAddress.delete(address);
    }
    if (removed) this.replaceHosts(keep, []);
  }

  protected override stopTimers(): void {
    clearInterval(this.timer);
  }
}
