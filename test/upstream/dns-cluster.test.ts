import { promises as dns } from 'node:dns';
import * as net from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { ClusterConfig } from '../../proxy/config/types';
import type { Cluster, ClusterContext } from '../../proxy/upstream/cluster';
import { ClusterManager } from '../../proxy/upstream/cluster-manager';
import {
  type DnsLookup,
  LogicalDnsCluster,
  type ResolvedAddress,
  resolveFamily,
  StrictDnsCluster,
} from '../../proxy/upstream/dns-cluster';
import { registerDefaultLbPolicies } from '../../proxy/upstream/lb/index';
import { LbRegistry } from '../../proxy/upstream/lb/types';
import { TcpTransportSocketFactory } from '../../proxy/upstream/transport';
import { clusterConfig, recordingPoolFactory } from './fixtures';

function ctx(onInitialized?: (c: Cluster) => void): ClusterContext {
  return {
    lbRegistry: registerDefaultLbPolicies(new LbRegistry()),
    poolFactory: recordingPoolFactory().factory,
    transport: new TcpTransportSocketFactory(),
    addedViaApi: false,
    onInitialized,
  };
}

function dnsConfig(
  type: 'STRICT_DNS' | 'LOGICAL_DNS',
  names: Array<{ name: string; port: number; priority?: number; weight?: number }>,
  over: Partial<ClusterConfig> = {},
): ClusterConfig {
  return clusterConfig({
    name: 'dns',
    type,
    dnsRefreshRateMs: 1000,
    loadAssignment: {
      clusterName: 'dns',
      overprovisioningFactor: 140,
      endpoints: names.map((n) => ({
        priority: n.priority ?? 0,
        lbEndpoints: [
          {
            address: { kind: 'socket', host: n.name, port: n.port },
            hostname: '',
            healthStatus: 'UNKNOWN',
            weight: n.weight ?? 1,
            metadata: {},
          },
        ],
      })),
    },
    ...over,
  });
}

/** A scripted resolver: answers from a table that the test edits; a missing name fails like NXDOMAIN. */
function scripted(table: Record<string, ResolvedAddress[]>): DnsLookup & { calls: string[] } {
  const calls: string[] = [];
  const f = async (hostname: string, family: 0 | 4 | 6) => {
    calls.push(`${hostname}/${family}`);
    const ans = table[hostname];
    if (ans === undefined) throw Object.assign(new Error(`queryA ENOTFOUND ${hostname}`), { code: 'ENOTFOUND' });
    return family === 0 ? ans : ans.filter((a) => a.family === family);
  };
  return Object.assign(f, { calls });
}

const made: Cluster[] = [];
afterEach(() => {
  for (const c of made.splice(0)) c.destroy();
  vi.useRealTimers();
});

function until(cond: () => boolean, ms = 5000): Promise<void> {
  const start = Date.now();
  return new Promise((resolve, reject) => {
    const tick = () => {
      if (cond()) resolve();
      else if (Date.now() - start > ms) reject(new Error('condition not met in time'));
      else setTimeout(tick, 5);
    };
    tick();
  });
}

describe('STRICT_DNS', () => {
  it('resolves localhost with the system resolver to 127.0.0.1 (and ::1 if the system has it)', async () => {
    const expected = (await dns.lookup('localhost', { all: true, verbatim: true })).map((a) => a.address);
    let initialized = false;
    const c = new StrictDnsCluster(
      dnsConfig('STRICT_DNS', [{ name: 'localhost', port: 8080 }], { dnsLookupFamily: 'ALL' }),
      ctx(() => {
        initialized = true;
      }),
    );
    made.push(c);
    expect(c.initialized).toBe(false);
    await until(() => initialized);
    const addrs = c.hosts.map((h) => h.host).sort();
    expect(addrs).toContain('127.0.0.1');
    expect(addrs).toEqual([...new Set(expected)].sort());
    expect(c.hosts.every((h) => h.port === 8080 && h.hostname === 'localhost')).toBe(true);
    expect(c.chooseHost(undefined)?.port).toBe(8080);
  });

  it('re-resolves every dns_refresh_rate, keeps Host objects, and keeps the last answer on failure', async () => {
    vi.useFakeTimers();
    const table: Record<string, ResolvedAddress[]> = {
      'a.svc': [
        { address: '10.0.0.1', family: 4 },
        { address: '10.0.0.2', family: 4 },
      ],
      'b.svc': [{ address: '10.0.1.1', family: 4 }],
    };
    const lookup = scripted(table);
    const c = new StrictDnsCluster(
      dnsConfig(
        'STRICT_DNS',
        [
          { name: 'a.svc', port: 80 },
          { name: 'b.svc', port: 81, priority: 1 },
        ],
        { dnsLookupFamily: 'V4_ONLY' },
      ),
      ctx(),
      { lookup },
    );
    made.push(c);
    await vi.advanceTimersByTimeAsync(0);
    expect(c.initialized).toBe(true);
    expect(c.hosts.map((h) => `${h.key}@${h.priority}`)).toEqual(['10.0.0.1:80@0', '10.0.0.2:80@0', '10.0.1.1:81@1']);
    expect(lookup.calls).toEqual(['a.svc/4', 'b.svc/4']);
    const kept = c.hosts[0];

    table['a.svc'] = [
      { address: '10.0.0.1', family: 4 },
      { address: '10.0.0.3', family: 4 },
    ];
    delete table['b.svc'];
    await vi.advanceTimersByTimeAsync(1000);
    expect(lookup.calls).toHaveLength(4);
    expect(c.hosts.map((h) => h.key)).toEqual(['10.0.0.1:80', '10.0.0.3:80', '10.0.1.1:81']);
    expect(c.hosts[0]).toBe(kept);
  });

  it('warms in the cluster manager until the first lookup completes', async () => {
    let release: (v: ResolvedAddress[]) => void = () => {};
    const lookup: DnsLookup = () => new Promise((r) => (release = r));
    const cm = new ClusterManager({ poolFactory: recordingPoolFactory().factory, dnsLookup: lookup });
    try {
      cm.addOrUpdate(dnsConfig('STRICT_DNS', [{ name: 'slow.svc', port: 80 }]));
      expect(cm.warmingNames()).toEqual(['dns']);
      release([{ address: '10.9.9.9', family: 4 }]);
      await until(() => cm.warmingNames().length === 0);
      expect(cm.get('dns')?.hosts.map((h) => h.key)).toEqual(['10.9.9.9:80']);
    } finally {
      cm.destroy();
    }
  });
});

describe('dns_lookup_family', () => {
  const both = scripted({
    dual: [
      { address: '10.0.0.1', family: 4 },
      { address: 'fd00::1', family: 6 },
    ],
    v4: [{ address: '10.0.0.2', family: 4 }],
  });
  it.each([
    ['AUTO', 'dual', ['fd00::1']],
    ['AUTO', 'v4', ['10.0.0.2']],
    ['V4_PREFERRED', 'dual', ['10.0.0.1']],
    ['V4_ONLY', 'dual', ['10.0.0.1']],
    ['V6_ONLY', 'dual', ['fd00::1']],
    ['ALL', 'dual', ['10.0.0.1', 'fd00::1']],
  ] as const)('%s on %s', async (fam, name, want) => {
    expect(await resolveFamily(both, name, fam)).toEqual(want);
  });
  it('passes IP literals through without a lookup', async () => {
    const l = scripted({});
    expect(await resolveFamily(l, '192.0.2.7', 'AUTO')).toEqual(['192.0.2.7']);
    expect(l.calls).toEqual([]);
  });
});

describe('LOGICAL_DNS', () => {
  it('keeps one logical host across re-resolution and dials the newest address', async () => {
    vi.useFakeTimers();
    const table: Record<string, ResolvedAddress[]> = {
      'api.ext': [
        { address: '10.0.0.1', family: 4 },
        { address: '10.0.0.2', family: 4 },
      ],
    };
    const c = new LogicalDnsCluster(
      dnsConfig('LOGICAL_DNS', [{ name: 'api.ext', port: 443 }], { dnsLookupFamily: 'V4_ONLY' }),
      ctx(),
      { lookup: scripted(table) },
    );
    made.push(c);
    expect(c.initialized).toBe(false);
    await vi.advanceTimersByTimeAsync(0);
    expect(c.initialized).toBe(true);
    expect(c.hosts).toHaveLength(1);
    const h = c.hosts[0];
    expect(h.key).toBe('api.ext:443');
    expect(h.connectAddress).toBe('10.0.0.1');
    table['api.ext'] = [{ address: '10.0.0.9', family: 4 }];
    await vi.advanceTimersByTimeAsync(1000);
    expect(c.hosts[0]).toBe(h);
    expect(h.connectAddress).toBe('10.0.0.9');
  });

  it('connects through the transport to the resolved loopback address', async () => {
    const server = net.createServer((s) => s.end('ok'));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as net.AddressInfo).port;
    try {
      const c = new LogicalDnsCluster(
        dnsConfig('LOGICAL_DNS', [{ name: 'localhost', port }], { dnsLookupFamily: 'V4_ONLY' }),
        ctx(),
      );
      made.push(c);
      await until(() => c.initialized);
      const host = c.chooseHost(undefined);
      if (host === undefined) throw new Error('no host');
      expect(host.connectAddress).toBe('127.0.0.1');
      const data = await new Promise<string>((resolve, reject) => {
        c.transport.connect(host, { timeoutMs: 2000 }, (err, conn) => {
          if (err || !conn) return reject(new Error(err?.detail));
          conn.socket.once('data', (d) => {
            resolve(d.toString());
            conn.socket.destroy();
          });
        });
      });
      expect(data).toBe('ok');
    } finally {
      server.close();
    }
  });
});
