/**
 * Outlier detection rules on real Host objects with a controlled clock (interval ticks are driven
 * by calling onInterval, so nothing depends on timing): consecutive 5xx and gateway failures and
 * their enforcing percentages, success-rate ejection, ejection time growing with repeated
 * ejections and capped at max_ejection_time, max_ejection_percent (one host always ejectable),
 * the ejection count decaying while healthy; the panic threshold through a real meshlet; and the
 * decoder's validation errors.
 */
import http from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { decodeOutlierDetection } from '../../proxy/config/envoy/outlier';
import { Issues, Reader } from '../../common/reader';
import type { OutlierDetectionConfig } from '../../proxy/config/types';
import { Host } from '../../proxy/upstream/host';
import { OutlierDetector } from '../../proxy/upstream/outlier';
import { bootstrap, httpListener, routes, startMeshlet, staticCluster, stopAllMeshlets } from '../support/meshlet';
import { closeAll, startHttpEcho } from '../support/upstreams';

function config(over: Record<string, unknown> = {}): OutlierDetectionConfig {
  const issues = new Issues();
  const c = decodeOutlierDetection(new Reader(over, 'od', issues));
  expect(issues.errors).toEqual([]);
  return c;
}

function setup(n: number, over: Record<string, unknown> = {}) {
  const hosts = Array.from({ length: n }, (_, i) => new Host({ kind: 'socket', host: '10.0.0.1', port: 8000 + i }));
  let now = 1_000;
  let rebuilds = 0;
  const d = new OutlierDetector({ hosts, healthChanged: () => rebuilds++ }, config(over), {
    now: () => now,
    random: () => 0.5,
  });
  return {
    hosts,
    d,
    advance: (ms: number) => {
      now += ms;
    },
    rebuilds: () => rebuilds,
  };
}

describe('outlier detection rules', () => {
  it('ejects after consecutive_5xx, a success in between resets the count', () => {
    const { hosts, d, rebuilds } = setup(10, { consecutive_5xx: 3, max_ejection_percent: 100 });
    const h = hosts[0]!;
    d.report(h, 500);
    d.report(h, 500);
    d.report(h, 200);
    d.report(h, 500);
    d.report(h, 500);
    expect(h.outlierEjected).toBe(false);
    d.report(h, 500);
    expect(h.outlierEjected).toBe(true);
    expect(rebuilds()).toBe(1);
    expect(d.stats).toMatchObject({ ejectionsActive: 1, ejectionsTotal: 1, ejectionsEnforcedConsecutive5xx: 1 });
  });

  it('consecutive gateway failures are detected but, by Envoy default (enforcing 0 %), not enforced', () => {
    const def = setup(10, { consecutive_5xx: 100, consecutive_gateway_failure: 2 });
    def.d.report(def.hosts[0]!, 503);
    def.d.report(def.hosts[0]!, 504);
    expect(def.d.stats.ejectionsDetectedConsecutiveGatewayFailure).toBe(1);
    expect(def.hosts[0]!.outlierEjected).toBe(false);

    const on = setup(10, {
      consecutive_5xx: 100,
      consecutive_gateway_failure: 2,
      enforcing_consecutive_gateway_failure: 100,
    });
    on.d.report(on.hosts[0]!, 502);
    on.d.report(on.hosts[0]!, 500); // a non-gateway 5xx breaks the gateway streak
    on.d.report(on.hosts[0]!, 503);
    expect(on.hosts[0]!.outlierEjected).toBe(false);
    on.d.report(on.hosts[0]!, 503);
    expect(on.hosts[0]!.outlierEjected).toBe(true);
    expect(on.d.stats.ejectionsEnforcedConsecutiveGatewayFailure).toBe(1);
  });

  it('enforcing_consecutive_5xx 0 detects without ejecting', () => {
    const { hosts, d } = setup(10, { consecutive_5xx: 2, enforcing_consecutive_5xx: 0 });
    d.report(hosts[0]!, 500);
    d.report(hosts[0]!, 500);
    expect(d.stats.ejectionsDetectedConsecutive5xx).toBe(1);
    expect(hosts[0]!.outlierEjected).toBe(false);
  });

  it('ejection time is base × times ejected, capped at max_ejection_time; the count decays while healthy', () => {
    const { hosts, d, advance } = setup(4, {
      consecutive_5xx: 1,
      interval: '1s',
      base_ejection_time: '10s',
      max_ejection_time: '25s',
      max_ejection_percent: 100,
    });
    const h = hosts[0]!;
    const ejectFor = (): number => {
      d.report(h, 500);
      expect(h.outlierEjected).toBe(true);
      let waited = 0;
      while (h.outlierEjected && waited < 100_000) {
        advance(1_000);
        waited += 1_000;
        d.onInterval();
      }
      return waited;
    };
    expect(ejectFor()).toBe(10_000);
    expect(ejectFor()).toBe(20_000);
    expect(ejectFor()).toBe(25_000); // 3 × 10 s capped at 25 s
    expect(d.ejectionCount(h)).toBe(3);
    // Healthy intervals lower the multiplier again, one per interval.
    d.onInterval();
    d.onInterval();
    expect(d.ejectionCount(h)).toBe(1);
    expect(ejectFor()).toBe(20_000);
  });

  it('max_ejection_percent bounds ejections, but one host can always be ejected', () => {
    const { hosts, d } = setup(4, { consecutive_5xx: 1, max_ejection_percent: 10 });
    d.report(hosts[0]!, 500);
    d.report(hosts[1]!, 500);
    expect(hosts[0]!.outlierEjected).toBe(true);
    expect(hosts[1]!.outlierEjected).toBe(false);
    expect(d.stats.ejectionsOverflow).toBe(1);

    const half = setup(4, { consecutive_5xx: 1, max_ejection_percent: 50 });
    for (const h of half.hosts) half.d.report(h, 500);
    expect(half.hosts.filter((h) => h.outlierEjected)).toHaveLength(2);
  });

  it('success rate: a host far below the mean is ejected on the interval', () => {
    const { hosts, d } = setup(6, {
      consecutive_5xx: 0,
      success_rate_minimum_hosts: 5,
      success_rate_request_volume: 20,
      max_ejection_percent: 100,
    });
    for (const [i, h] of hosts.entries()) {
      for (let k = 0; k < 40; k++) d.report(h, i === 0 ? (k % 2 === 0 ? 500 : 200) : k === 0 ? 503 : 200);
    }
    d.onInterval();
    expect(hosts[0]!.outlierEjected).toBe(true);
    expect(hosts.slice(1).every((h) => !h.outlierEjected)).toBe(true);
    expect(d.stats.ejectionsEnforcedSuccessRate).toBe(1);
  });

  it('success rate needs success_rate_minimum_hosts hosts with enough volume', () => {
    const { hosts, d } = setup(6, {
      consecutive_5xx: 0,
      success_rate_minimum_hosts: 5,
      success_rate_request_volume: 20,
    });
    for (const [i, h] of hosts.entries()) for (let k = 0; k < (i < 4 ? 40 : 5); k++) d.report(h, i === 0 ? 500 : 200);
    d.onInterval();
    expect(hosts.some((h) => h.outlierEjected)).toBe(false);
    expect(d.stats.ejectionsDetectedSuccessRate).toBe(0);
  });

  it('removed hosts are forgotten and release their active ejection', () => {
    const { hosts, d } = setup(3, { consecutive_5xx: 1, max_ejection_percent: 100 });
    d.report(hosts[0]!, 500);
    expect(d.stats.ejectionsActive).toBe(1);
    d.hostsChanged([], [hosts[0]!]);
    expect(d.stats.ejectionsActive).toBe(0);
    d.report(hosts[0]!, 500); // ignored
    expect(d.stats.ejectionsTotal).toBe(1);
  });
});

describe('panic threshold with outliers ejected (through meshlet)', () => {
  afterEach(async () => {
    await stopAllMeshlets();
    await closeAll();
  });

  it('when too few hosts are healthy, the cluster balances over all of them again', async () => {
    let bad = true;
    const mk = (name: string) =>
      startHttpEcho(name, (_req, res) => {
        if (!bad || name === 'good') return false;
        res.writeHead(503, { 'x-upstream': name, 'content-length': '0' });
        res.end();
        return true;
      });
    const ups = [await mk('good'), await mk('bad1'), await mk('bad2')];
    const m = await startMeshlet(
      bootstrap(
        [httpListener('http', routes([{ match: { prefix: '/' }, route: { cluster: 'svc' } }]))],
        [
          staticCluster(
            'svc',
            ups.map((u) => u.port),
            { outlier_detection: { consecutive_5xx: 2, base_ejection_time: '30s', max_ejection_percent: 100 } },
          ),
        ],
      ),
    );
    const port = m.listenerPort('http');
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const send = () =>
      new Promise<string>((resolve, reject) => {
        const req = http.request({ host: '127.0.0.1', port, path: '/', agent }, (res) => {
          res.resume();
          res.on('end', () => resolve(String(res.headers['x-upstream'])));
        });
        req.on('error', reject);
        req.end();
      });
    for (let i = 0; i < 12; i++) await send();
    const cluster = m.server.clusters.get('svc')!;
    // Both bad hosts ejected: 1 of 3 healthy is below the 50 % panic threshold.
    expect(cluster.hosts.filter((h) => h.outlierEjected)).toHaveLength(2);
    const panicBefore = cluster.stats.lbHealthyPanic;
    bad = false;
    const seen = new Set<string>();
    for (let i = 0; i < 12; i++) seen.add(await send());
    agent.destroy();
    expect(seen).toEqual(new Set(['good', 'bad1', 'bad2']));
    expect(cluster.stats.lbHealthyPanic - panicBefore).toBe(12);
  });
});

describe('outlier_detection config validation', () => {
  it('reports bad durations and ranges', () => {
    const issues = new Issues();
    decodeOutlierDetection(
      new Reader(
        {
          interval: '0s',
          base_ejection_time: '10s',
          max_ejection_time: '5s',
          max_ejection_percent: 101,
          enforcing_success_rate: -1,
        },
        'od',
        issues,
      ),
    );
    expect(issues.errors.map((e) => e.path)).toEqual(
      expect.arrayContaining([
        'od.interval',
        'od.max_ejection_time',
        'od.max_ejection_percent',
        'od.enforcing_success_rate',
      ]),
    );
  });

  it("uses Envoy's defaults", () => {
    expect(config()).toMatchObject({
      consecutive5xx: 5,
      consecutiveGatewayFailure: 5,
      intervalMs: 10_000,
      baseEjectionTimeMs: 30_000,
      maxEjectionTimeMs: 300_000,
      maxEjectionPercent: 10,
      enforcingConsecutive5xx: 100,
      enforcingConsecutiveGatewayFailure: 0,
      enforcingSuccessRate: 100,
      successRateMinimumHosts: 5,
      successRateRequestVolume: 100,
      successRateStdevFactor: 1900,
    });
  });
});
