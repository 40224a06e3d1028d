/**
 * Issue 7's acceptance test: endpoint churn under continuous traffic through a real meshlet.
 *
 * Seven real HTTP upstreams behind an EDS cluster with outlier detection (enough that, with three
 * of them out, the healthy share stays above Envoy's 50 % panic threshold — below it Envoy, and
 * meshlet, deliberately balance over every host again). While a bounded number of
 * GET requests flows (4 concurrent clients), a new endpoint E is added over EDS, endpoint A is
 * killed, endpoint B starts answering 503 and endpoint C is marked DRAINING over EDS.
 *  - With retries (retry_on 5xx/reset/connect-failure, previous_hosts, a retry budget), no
 *    request fails.
 *  - Without retries, failures happen only until both outliers are ejected; every request that
 *    started after that succeeds.
 * The counts are printed (console.log) for the issue note.
 */
import http from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import type { ClusterLoadAssignment, HealthStatus } from '../../proxy/config/types';
import type { Cluster } from '../../proxy/upstream/cluster';
import {
  bootstrap,
  httpListener,
  routes,
  type StartedMeshlet,
  startMeshlet,
  staticCluster,
  stopAllMeshlets,
} from '../support/meshlet';
import { closeAll, type HttpEcho, startHttpEcho } from '../support/upstreams';

afterEach(async () => {
  await stopAllMeshlets();
  await closeAll();
});

const TOTAL = 400;
const CONCURRENCY = 4;

interface Outcome {
  status: number;
  upstream: string;
  /** Both outliers (A and B) were ejected when the request started. */
  afterEjection: boolean;
}

function get(port: number, agent: http.Agent): Promise<{ status: number; upstream: string }> {
  return new Promise((resolve) => {
    const req = http.request({ host: '127.0.0.1', port, path: '/work', agent }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, upstream: String(res.headers['x-upstream'] ?? '') }));
      res.on('error', () => resolve({ status: -1, upstream: '' }));
    });
    req.on('error', () => resolve({ status: -1, upstream: '' }));
    req.setTimeout(10_000, () => req.destroy());
    req.end();
  });
}

function cla(ups: readonly HttpEcho[], health: Partial<Record<string, HealthStatus>>): ClusterLoadAssignment {
  return {
    clusterName: 'svc',
    overprovisioningFactor: 140,
    endpoints: [
      {
        priority: 0,
        lbEndpoints: ups.map((u) => ({
          address: { kind: 'socket' as const, host: '127.0.0.1', port: u.port },
          hostname: '',
          healthStatus: health[u.name] ?? 'HEALTHY',
          weight: 1,
          metadata: {},
        })),
      },
    ],
  };
}

interface ChurnResult {
  outcomes: Outcome[];
  failures: number;
  failuresAfterEjection: number;
  servedBy: Record<string, number>;
  cluster: Cluster;
  drainingServedAfterDrain: number;
}

async function runChurn(withRetries: boolean): Promise<ChurnResult> {
  let bFailing = false;
  const a = await startHttpEcho('a');
  const b = await startHttpEcho('b', (_req, res) => {
    if (!bFailing) return false;
    res.writeHead(503, { 'x-upstream': 'b', 'content-length': '4' });
    res.end('down');
    return true;
  });
  const c = await startHttpEcho('c');
  const d = await startHttpEcho('d');
  const f = await startHttpEcho('f');
  const g = await startHttpEcho('g');
  const e = await startHttpEcho('e');

  const route: Record<string, unknown> = { cluster: 'svc', timeout: '5s' };
  if (withRetries) {
    route.retry_policy = {
      retry_on: '5xx,reset,connect-failure',
      num_retries: 3,
      retry_host_predicate: [{ name: 'envoy.retry_host_predicates.previous_hosts' }],
      retry_back_off: { base_interval: '0.005s', max_interval: '0.02s' },
    };
  }
  const m: StartedMeshlet = await startMeshlet(
    bootstrap(
      [httpListener('http', routes([{ match: { prefix: '/' }, route }]))],
      [
        staticCluster('svc', [a.port], {
          outlier_detection: {
            consecutive_5xx: 3,
            interval: '0.1s',
            base_ejection_time: '30s',
            max_ejection_percent: 50,
          },
          circuit_breakers: {
            thresholds: [{ retry_budget: { budget_percent: { value: 25 }, min_retry_concurrency: 5 } }],
          },
        }),
      ],
    ),
  );
  // Turn the cluster into an EDS cluster fed the way the xDS client feeds it.
  const base = m.server.clusters.get('svc')!.config;
  m.server.clusters.addOrUpdate({ ...base, type: 'EDS', loadAssignment: undefined }, { addedViaApi: true });
  m.server.clusters.updateAssignment('svc', cla([a, b, c, d, f, g], {}));
  const cluster = m.server.clusters.get('svc')!;
  expect(cluster.config.type).toBe('EDS');
  const hostOf = (u: HttpEcho) => cluster.hosts.find((h) => h.port === u.port)!;
  const hostA = hostOf(a);
  const hostB = hostOf(b);

  const port = m.listenerPort('http');
  const agent = new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY });
  const outcomes: Outcome[] = [];
  let started = 0;
  let completed = 0;
  let cServedAtDrain = -1;
  const events: [number, () => void][] = [
    [60, () => m.server.clusters.updateAssignment('svc', cla([a, b, c, d, f, g, e], {}))],
    [
      120,
      () => {
        a.server.closeAllConnections();
        a.server.close();
      },
    ],
    [
      180,
      () => {
        bFailing = true;
      },
    ],
    [
      240,
      () => {
        m.server.clusters.updateAssignment('svc', cla([a, b, c, d, f, g, e], { c: 'DRAINING' }));
        cServedAtDrain = c.requests.length;
      },
    ],
  ];
  const worker = async (): Promise<void> => {
    while (started < TOTAL) {
      started++;
      const afterEjection = hostA.outlierEjected && hostB.outlierEjected;
      const r = await get(port, agent);
      outcomes.push({ ...r, afterEjection });
      completed++;
      while (events.length > 0 && completed >= events[0]![0]) events.shift()![1]();
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  agent.destroy();

  const servedBy: Record<string, number> = {};
  for (const o of outcomes) if (o.status === 200) servedBy[o.upstream] = (servedBy[o.upstream] ?? 0) + 1;
  const failed = outcomes.filter((o) => o.status !== 200);
  return {
    outcomes,
    failures: failed.length,
    failuresAfterEjection: failed.filter((o) => o.afterEjection).length,
    servedBy,
    cluster,
    drainingServedAfterDrain: c.requests.length - cServedAtDrain,
  };
}

describe('endpoint churn under load', () => {
  it('with retries: kill, 503, DRAINING and a new endpoint — no idempotent request fails', async () => {
    const r = await runChurn(true);
    const od = r.cluster.outlier!.stats;
    console.log(
      `[churn with retries] requests=${r.outcomes.length} failures=${r.failures} retries=${r.cluster.stats.upstreamRqRetry} ` +
        `retry_overflow=${r.cluster.stats.upstreamRqRetryOverflow} ejections=${od.ejectionsTotal} servedBy=${JSON.stringify(r.servedBy)}`,
    );
    expect(r.outcomes).toHaveLength(TOTAL);
    expect(r.failures).toBe(0);
    expect(r.cluster.stats.upstreamRqRetry).toBeGreaterThan(0);
    // Both bad endpoints were ejected by outlier detection; the new endpoint took traffic.
    expect(od.ejectionsEnforcedConsecutive5xx).toBeGreaterThanOrEqual(2);
    expect(r.servedBy.e ?? 0).toBeGreaterThan(0);
    expect(r.servedBy.b ?? 0).toBeGreaterThan(0); // before it turned bad
    expect(r.drainingServedAfterDrain).toBeLessThanOrEqual(CONCURRENCY); // at most requests already in flight
  });

  it('without retries: failures stop once the outliers are ejected', async () => {
    const r = await runChurn(false);
    const od = r.cluster.outlier!.stats;
    const afterEjection = r.outcomes.filter((o) => o.afterEjection);
    console.log(
      `[churn without retries] requests=${r.outcomes.length} failures=${r.failures} ` +
        `failures_after_ejection=${r.failuresAfterEjection} requests_after_ejection=${afterEjection.length} ` +
        `ejections=${od.ejectionsTotal} servedBy=${JSON.stringify(r.servedBy)}`,
    );
    expect(r.outcomes).toHaveLength(TOTAL);
    expect(r.failures).toBeGreaterThan(0);
    // consecutive_5xx 3 for each of the two outliers, plus requests in flight when A was killed.
    expect(r.failures).toBeLessThanOrEqual(3 * 2 + CONCURRENCY * 2);
    expect(od.ejectionsEnforcedConsecutive5xx).toBeGreaterThanOrEqual(2);
    expect(afterEjection.length).toBeGreaterThanOrEqual(100);
    expect(r.failuresAfterEjection).toBe(0);
    expect(r.drainingServedAfterDrain).toBeLessThanOrEqual(CONCURRENCY);
  });
});
