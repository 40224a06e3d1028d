/**
 * DNS-backed clusters.
 *
 * STRICT_DNS: every hostname in load_assignment is resolved (dns.promises.lookup, all addresses,
 * honouring dns_lookup_family) every dns_refresh_rate; each address becomes a host carrying the
 * endpoint's port, weight, priority and locality. Results are diffed by address, so unchanged
 * hosts keep their pools and counters. A failed lookup keeps that hostname's last good answer.
 *
 * LOGICAL_DNS: one hostname, one logical host keyed by "name:port". Each resolution sets the
 * host's `connectAddress` to the first address, so new connections go to the latest IP while
 * existing connections are left alone (Envoy's semantics; good for large DNS-balanced services).
 *
 * Both warm (`initialized === false`) until their first round of lookups completes, even if it
 * fails, as Envoy does. respect_dns_ttl is not honoured: Node's lookup does not return TTLs.
 */
import { promises as dns } from 'node:dns';
import { isIP } from 'node:net';
import type { Address, ClusterConfig, LbEndpoint, LocalityLbEndpoints } from '../config/types';
import { Cluster, type ClusterContext, DEFAULT_OVERPROVISIONING_FACTOR } from './cluster';
import { Host } from './host';

/** A resolved address. */
export interface ResolvedAddress {
  readonly address: string;
  readonly family: number;
}

/** DNS lookup used by DNS clusters; `family` 0 = any. Defaults to dns.promises.lookup({all: true}). */
export type DnsLookup = (hostname: string, family: 0 | 4 | 6) => Promise<readonly ResolvedAddress[]>;

export const defaultDnsLookup: DnsLookup = (hostname, family) =>
  dns.lookup(hostname, { all: true, family, verbatim: true });

/** Envoy's default dns_refresh_rate. */
export const DEFAULT_DNS_REFRESH_MS = 5000;

type Family = ClusterConfig['dnsLookupFamily'];

/** Resolve `hostname` and apply dns_lookup_family; IP literals are returned as they are. */
export async function resolveFamily(lookup: DnsLookup, hostname: string, fam: Family): Promise<string[]> {
  const ipv = isIP(hostname);
  if (ipv !== 0) return [hostname];
  const res = await lookup(hostname, fam === 'V4_ONLY' ? 4 : fam === 'V6_ONLY' ? 6 : 0);
  const v4: string[] = [];
  const v6: string[] = [];
  for (const r of res) {
    const list = r.family === 6 ? v6 : v4;
    if (!list.includes(r.address)) list.push(r.address);
  }
  switch (fam) {
    case 'V4_ONLY':
      return v4;
    case 'V6_ONLY':
      return v6;
    case 'AUTO': // Envoy: IPv6 first, fall back to IPv4
      return v6.length > 0 ? v6 : v4;
    case 'V4_PREFERRED':
      return v4.length > 0 ? v4 : v6;
    default:
      return [...v4, ...v6];
  }
}

/** Options DNS clusters take beyond the common context. */
export interface DnsClusterOptions {
  readonly lookup?: DnsLookup;
}

abstract class DnsClusterBase extends Cluster {
  protected readonly lookup: DnsLookup;
  private timer: NodeJS.Timeout | undefined;
  protected stopped = false;

  constructor(config: ClusterConfig, ctx: ClusterContext, opts: DnsClusterOptions) {
    super(config, ctx);
    this.lookup = opts.lookup ?? defaultDnsLookup;
    this.rebuild();
  }

  /** Begin resolving (called by the subclass constructor once its fields are set). */
  protected start(): void {
    void this.refresh();
  }

  /** One round of lookups; schedules the next round. Never rejects. */
  async refresh(): Promise<void> {
    if (this.stopped) return;
    try {
      await this.resolveOnce();
    } catch {
      // resolveOnce keeps the last good answers; nothing else to do on the data plane.
    }
    if (this.stopped) return;
    this.markInitialized();
    const every = this.config.dnsRefreshRateMs > 0 ? this.config.dnsRefreshRateMs : DEFAULT_DNS_REFRESH_MS;
    this.timer = setTimeout(() => void this.refresh(), every);
    this.timer.unref();
  }

  protected abstract resolveOnce(): Promise<void>;

  protected override stopTimers(): void {
    this.stopped = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }
}

interface DnsTarget {
  readonly group: LocalityLbEndpoints;
  readonly endpoint: LbEndpoint;
  readonly hostname: string;
  readonly port: number;
  /** Last good resolution. */
  addresses: string[];
}

export class StrictDnsCluster extends DnsClusterBase {
  private readonly targets: DnsTarget[] = [];

  constructor(config: ClusterConfig, ctx: ClusterContext, opts: DnsClusterOptions = {}) {
    super(config, ctx, opts);
    for (const group of config.loadAssignment?.endpoints ?? []) {
      for (const e of group.lbEndpoints) {
        if (e.address.kind !== 'socket') continue;
        this.targets.push({ group, endpoint: e, hostname: e.address.host, port: e.address.port, addresses: [] });
      }
    }
    this.start();
  }

  protected async resolveOnce(): Promise<void> {
    const fam = this.config.dnsLookupFamily;
    await Promise.all(
      this.targets.map(async (t) => {
        try {
          t.addresses = await resolveFamily(this.lookup, t.hostname, fam);
        } catch {
          // Keep the previous answer for this hostname (Envoy keeps hosts on resolution failure).
        }
      }),
    );
    if (this.stopped) return;
    const groups: LocalityLbEndpoints[] = [];
    for (const t of this.targets) {
      const lbEndpoints: LbEndpoint[] = t.addresses.map((ip) => {
        const address: Address = { kind: 'socket', host: ip, port: t.port };
        return { ...t.endpoint, address, hostname: t.endpoint.hostname || t.hostname };
      });
      groups.push({
        locality: t.group.locality,
        lbEndpoints,
        loadBalancingWeight: t.group.loadBalancingWeight,
        priority: t.group.priority,
      });
    }
    this.updateAssignment({
      clusterName: this.name,
      endpoints: groups,
      overprovisioningFactor: this.config.loadAssignment?.overprovisioningFactor ?? DEFAULT_OVERPROVISIONING_FACTOR,
    });
  }
}

export class LogicalDnsCluster extends DnsClusterBase {
  private readonly target: DnsTarget | undefined;
  private logicalHost: Host | undefined;

  constructor(config: ClusterConfig, ctx: ClusterContext, opts: DnsClusterOptions = {}) {
    super(config, ctx, opts);
    const group = config.loadAssignment?.endpoints.find((g) => g.lbEndpoints.length > 0);
    const e = group?.lbEndpoints[0];
    if (group !== undefined && e !== undefined && e.address.kind === 'socket') {
      this.target = { group, endpoint: e, hostname: e.address.host, port: e.address.port, addresses: [] };
    }
    this.start();
  }

  protected async resolveOnce(): Promise<void> {
    const t = this.target;
    if (t === undefined) return;
    const addrs = await resolveFamily(this.lookup, t.hostname, this.config.dnsLookupFamily);
    if (this.stopped || addrs.length === 0) return;
    t.addresses = addrs;
    if (this.logicalHost === undefined) {
      const h = new Host(t.endpoint.address, {
        weight: t.endpoint.weight,
        priority: t.group.priority,
        locality: t.group.locality,
        hostname: t.endpoint.hostname || t.hostname,
        metadata: t.endpoint.metadata,
        health: t.endpoint.healthStatus,
      });
      h.connectAddress = addrs[0];
      this.logicalHost = h;
      this.replaceHosts([h], [h]);
    } else {
      // Same logical host, new IP for new connections; live connections stay where they are.
      this.logicalHost.connectAddress = addrs[0];
    }
  }
}
