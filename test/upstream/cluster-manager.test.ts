import { afterEach, describe, expect, it, vi } from 'vitest';
import { ConfigError } from '../../common/errors';
import { ClusterManager, type ClusterUpdateEvent, deepEqual } from '../../proxy/upstream/cluster-manager';
import { TcpTransportSocketFactory } from '../../proxy/upstream/transport';
import { assignment, clusterConfig, recordingPoolFactory, tally } from './fixtures';

describe('ClusterManager', () => {
  let cm: ClusterManager | undefined;
  afterEach(() => {
    cm?.destroy();
    cm = undefined;
    vi.useRealTimers();
  });

  it('adds a STATIC cluster that is initialized, round-robins its hosts and uses plain TCP', () => {
    const { factory } = recordingPoolFactory();
    cm = new ClusterManager({ poolFactory: factory });
    const events: ClusterUpdateEvent[] = [];
    cm.onUpdate((e) => events.push(e));
    const cfg = clusterConfig({
      name: 'svc',
      loadAssignment: assignment('svc', [{ port: 1001 }, { port: 1002 }, { port: 1003 }]),
    });
    expect(cm.addOrUpdate(cfg)).toBe('added');
    const c = cm.get('svc');
    expect(c).toBeDefined();
    expect(c?.initialized).toBe(true);
    expect(c?.transport).toBeInstanceOf(TcpTransportSocketFactory);
    expect(c?.hosts.map((h) => h.key)).toEqual(['127.0.0.1:1001', '127.0.0.1:1002', '127.0.0.1:1003']);
    const counts = tally(() => c?.chooseHost(undefined), 300);
    expect([...counts.values()]).toEqual([100, 100, 100]);
    expect(events.map((e) => `${e.kind}:${e.name}`)).toEqual(['added:svc']);
    expect(cm.all().map((x) => x.name)).toEqual(['svc']);
  });

  it('treats an identical config as a no-op and a changed one as make-before-break', () => {
    vi.useFakeTimers();
    const { factory, pools } = recordingPoolFactory();
    cm = new ClusterManager({ poolFactory: factory, drainCheckMs: 100 });
    const cfg = clusterConfig({ name: 'svc', loadAssignment: assignment('svc', [{ port: 1001 }]) });
    cm.addOrUpdate(cfg);
    const first = cm.get('svc');
    // A structurally equal copy is unchanged.
    expect(cm.addOrUpdate(JSON.parse(JSON.stringify(cfg)))).toBe('unchanged');
    expect(cm.get('svc')).toBe(first);

    const host = first?.hosts[0];
    if (first === undefined || host === undefined) throw new Error('no cluster');
    const pool = first.httpPool(host, 'HTTP/1.1') as (typeof pools)[number];
    pool.activeStreams = 1;

    expect(cm.addOrUpdate({ ...cfg, connectTimeoutMs: 1000 })).toBe('updated');
    const second = cm.get('svc');
    expect(second).not.toBe(first);
    expect(second?.config.connectTimeoutMs).toBe(1000);
    // The old cluster drains: no new streams on its pool, but it is not destroyed while busy.
    expect(pool.drained).toBe(true);
    expect(pool.destroyed).toBe(false);
    expect(cm.drainingCount).toBe(1);
    vi.advanceTimersByTime(500);
    expect(pool.destroyed).toBe(false);
    // A request that still held the old cluster gets a pool; it is drained with the rest.
    const late = first.httpPool(host, 'HTTP/2') as (typeof pools)[number];
    late.activeStreams = 1;
    pool.activeStreams = 0;
    vi.advanceTimersByTime(100);
    expect(pool.destroyed).toBe(true);
    expect(late.drained).toBe(true);
    expect(late.destroyed).toBe(false);
    expect(cm.drainingCount).toBe(1);
    late.activeStreams = 0;
    vi.advanceTimersByTime(100);
    expect(late.destroyed).toBe(true);
    expect(cm.drainingCount).toBe(0);
    // The new cluster's pools were never touched.
    expect(pools.filter((p) => p.drained)).toEqual([pool, late]);
  });

  it('removes clusters and tells listeners', () => {
    const { factory } = recordingPoolFactory();
    cm = new ClusterManager({ poolFactory: factory });
    const events: string[] = [];
    cm.onUpdate((e) => events.push(`${e.kind}:${e.name}`));
    cm.addOrUpdate(clusterConfig({ name: 'a', loadAssignment: assignment('a', [{ port: 1 }]) }));
    expect(cm.remove('a')).toBe(true);
    expect(cm.remove('a')).toBe(false);
    expect(cm.get('a')).toBeUndefined();
    expect(events).toEqual(['added:a', 'removed:a']);
  });

  it('keeps an EDS cluster warming until its first assignment, then promotes it', () => {
    const { factory } = recordingPoolFactory();
    cm = new ClusterManager({ poolFactory: factory });
    const events: string[] = [];
    cm.onUpdate((e) => events.push(`${e.kind}:${e.name}`));
    cm.addOrUpdate(clusterConfig({ name: 'eds', type: 'EDS' }), { addedViaApi: true });
    expect(cm.warmingNames()).toEqual(['eds']);
    const warming = cm.get('eds');
    expect(warming?.initialized).toBe(false);
    expect(warming?.chooseHost(undefined)).toBeUndefined();
    expect(events).toEqual([]);
    expect(cm.updateAssignment('eds', assignment('eds', [{ port: 2001 }]))).toBe(true);
    expect(cm.warmingNames()).toEqual([]);
    expect(cm.get('eds')).toBe(warming);
    expect(warming?.initialized).toBe(true);
    expect(warming?.chooseHost(undefined)?.key).toBe('127.0.0.1:2001');
    expect(events).toEqual(['added:eds']);
    // A config change carries the last assignment over, so the new object does not warm again.
    cm.addOrUpdate(clusterConfig({ name: 'eds', type: 'EDS', connectTimeoutMs: 250 }), { addedViaApi: true });
    const next = cm.get('eds');
    expect(next).not.toBe(warming);
    expect(next?.initialized).toBe(true);
    expect(next?.hosts.map((h) => h.key)).toEqual(['127.0.0.1:2001']);
    expect(next?.describe().addedViaApi).toBe(true);
  });

  it('routes an EDS resource to every cluster watching that service name', () => {
    const { factory } = recordingPoolFactory();
    cm = new ClusterManager({ poolFactory: factory });
    cm.addOrUpdate(clusterConfig({ name: 'outbound|80||a', type: 'EDS', edsServiceName: 'a.svc' }));
    cm.addOrUpdate(clusterConfig({ name: 'outbound|81||a', type: 'EDS', edsServiceName: 'a.svc' }));
    cm.addOrUpdate(clusterConfig({ name: 'b', type: 'EDS' }));
    expect(cm.updateEdsService('a.svc', assignment('a.svc', [{ port: 80 }]))).toBe(2);
    expect(cm.warmingNames()).toEqual(['b']);
    expect(cm.get('outbound|81||a')?.hosts.map((h) => h.key)).toEqual(['127.0.0.1:80']);
    expect(cm.updateEdsService('b', assignment('b', [{ port: 90 }]))).toBe(1);
    expect(cm.warmingNames()).toEqual([]);
  });

  it('rejects a TLS cluster without a TLS transport provider, and an unknown lb policy', () => {
    const { factory } = recordingPoolFactory();
    cm = new ClusterManager({ poolFactory: factory });
    const tls = clusterConfig({
      name: 'tls',
      transportSocket: {
        kind: 'upstream_tls',
        common: { tlsCertificates: [], tlsCertificateSdsSecretConfigs: [], alpnProtocols: [], cipherSuites: [] },
        allowRenegotiation: false,
      },
    });
    expect(() => cm?.addOrUpdate(tls)).toThrow(ConfigError);
    const provided = new ClusterManager({
      poolFactory: factory,
      transportProvider: () => new TcpTransportSocketFactory(),
    });
    expect(provided.addOrUpdate(tls)).toBe('added');
    provided.destroy();
    expect(() => cm?.addOrUpdate(clusterConfig({ name: 'x', lbPolicy: 'NOPE' as never }))).toThrow(/not registered/);
  });

  it('creates pools lazily per host and protocol through the injected factory', () => {
    const { factory, pools } = recordingPoolFactory();
    cm = new ClusterManager({ poolFactory: factory });
    cm.addOrUpdate(
      clusterConfig({ name: 'd', upstreamProtocol: 'downstream', loadAssignment: assignment('d', [{ port: 1 }]) }),
    );
    const c = cm.get('d');
    const h = c?.hosts[0];
    if (c === undefined || h === undefined) throw new Error('no cluster');
    expect(pools).toHaveLength(0);
    const p1 = c.httpPool(h, 'HTTP/1.1');
    expect(c.httpPool(h, 'HTTP/1.0')).toBe(p1);
    const p2 = c.httpPool(h, 'HTTP/2');
    expect(p1.protocol).toBe('HTTP/1.1');
    expect(p2.protocol).toBe('HTTP/2');
    expect(pools).toHaveLength(2);
    cm.destroy();
    expect(pools.every((p) => p.destroyed)).toBe(true);
  });

  it('deepEqual compares config trees structurally', () => {
    expect(deepEqual({ a: [1, { b: Buffer.from('x') }], r: /a/i }, { a: [1, { b: Buffer.from('x') }], r: /a/i })).toBe(
      true,
    );
    expect(deepEqual({ a: [1, 2] }, { a: [1, 3] })).toBe(false);
    expect(deepEqual({ a: 1, b: undefined }, { a: 1 })).toBe(true);
    expect(deepEqual(new Set(['a']), new Set(['b']))).toBe(false);
  });
});
