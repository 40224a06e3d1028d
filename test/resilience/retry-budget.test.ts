/**
 * Retries cannot amplify an outage: through a real meshlet, with every endpoint failing, a
 * cluster with a retry_budget performs far fewer retries than one with a generous max_retries,
 * and counts the refusals as upstream_rq_retry_overflow. Request bodies (up to the router's
 * replay bound) are replayed intact on retry; larger ones are not retried.
 */
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RETRY_BUFFER_LIMIT } from '../../proxy/http/router/router-state';
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

const CLIENTS = 10;
const BATCHES = 4;
const RETRIES = 5;

let m: StartedMeshlet;
let down: HttpEcho[];
let flaky: HttpEcho;
let steady: HttpEcho;
let flakyFailNext = 0;

const retryPolicy = {
  retry_on: '5xx',
  num_retries: RETRIES,
  retry_back_off: { base_interval: '0.002s', max_interval: '0.01s' },
};

beforeAll(async () => {
  const fail = (name: string) =>
    startHttpEcho(name, (_req, res) => {
      res.writeHead(503, { 'content-length': '0' });
      res.end();
      return true;
    });
  down = [await fail('down1'), await fail('down2')];
  flaky = await startHttpEcho('flaky', (_req, res) => {
    if (flakyFailNext <= 0) return false;
    flakyFailNext--;
    res.writeHead(503, { 'content-length': '0' });
    res.end();
    return true;
  });
  steady = await startHttpEcho('steady');
  const ports = down.map((d) => d.port);
  m = await startMeshlet(
    bootstrap(
      [
        httpListener(
          'http',
          routes([
            { match: { prefix: '/budget' }, route: { cluster: 'budget', retry_policy: retryPolicy } },
            { match: { prefix: '/unbounded' }, route: { cluster: 'unbounded', retry_policy: retryPolicy } },
            {
              match: { prefix: '/replay' },
              route: {
                cluster: 'replay',
                retry_policy: {
                  ...retryPolicy,
                  num_retries: 1,
                  retry_host_predicate: [{ name: 'envoy.retry_host_predicates.previous_hosts' }],
                },
              },
            },
          ], { include_request_attempt_count: true }),
        ),
      ],
      [
        staticCluster('budget', ports, {
          circuit_breakers: {
            thresholds: [{ retry_budget: { budget_percent: { value: 20 }, min_retry_concurrency: 1 } }],
          },
        }),
        staticCluster('unbounded', ports, { circuit_breakers: { thresholds: [{ max_retries: 1000 }] } }),
        staticCluster('replay', [flaky.port, steady.port]),
      ],
    ),
  );
});

afterAll(async () => {
  await stopAllMeshlets();
  await closeAll();
});

function send(path: string, body?: Buffer): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port: m.listenerPort('http'), path, method: body ? 'POST' : 'GET', agent: false },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

async function storm(path: string): Promise<number[]> {
  const statuses: number[] = [];
  for (let b = 0; b < BATCHES; b++)
    statuses.push(...(await Promise.all(Array.from({ length: CLIENTS }, () => send(path)))));
  return statuses;
}

describe('retry budget', () => {
  it('bounds retries during an outage and counts the overflow', async () => {
    const unbounded = await storm('/unbounded');
    const budget = await storm('/budget');
    const u = m.server.clusters.get('unbounded')!.stats;
    const b = m.server.clusters.get('budget')!.stats;
    console.log(
      `[retry budget] requests=${CLIENTS * BATCHES} unbounded: retries=${u.upstreamRqRetry} overflow=${u.upstreamRqRetryOverflow}; ` +
        `budget: retries=${b.upstreamRqRetry} overflow=${b.upstreamRqRetryOverflow}`,
    );
    expect(unbounded.every((s) => s === 503)).toBe(true);
    expect(budget.every((s) => s === 503)).toBe(true);
    // Without a budget every request uses all its retries.
    expect(u.upstreamRqRetry).toBe(CLIENTS * BATCHES * RETRIES);
    expect(u.upstreamRqRetryOverflow).toBe(0);
    // With the budget most retries are refused and counted.
    expect(b.upstreamRqRetryOverflow).toBeGreaterThan(0);
    expect(b.upstreamRqRetry).toBeLessThan(u.upstreamRqRetry / 2);
  });
});

describe('request body replay on retry', () => {
  it('replays a buffered body intact to the next host', async () => {
    const body = Buffer.alloc(20_000, 'x');
    body.write('begin', 0);
    body.write('end', body.length - 3);
    flakyFailNext = 1;
    const steadyBefore = steady.requests.length;
    const flakyBefore = flaky.requests.length;
    // Round robin may start on either host; send until the flaky one has failed once.
    let status = 0;
    for (let i = 0; i < 4 && flakyFailNext > 0; i++) status = await send('/replay', body);
    expect(flakyFailNext).toBe(0);
    expect(status).toBe(200);
    const failedOnFlaky = flaky.requests.slice(flakyBefore).filter((r) => r.body.length === body.length);
    const onSteady = steady.requests.slice(steadyBefore);
    expect(failedOnFlaky.length).toBeGreaterThanOrEqual(1);
    expect(onSteady.at(-1)?.body).toBe(body.toString());
    expect(Number(onSteady.at(-1)?.headers['x-envoy-attempt-count'])).toBe(2);
  });

  it('does not retry a body larger than the replay bound', async () => {
    const big = Buffer.alloc(RETRY_BUFFER_LIMIT + 10_000, 'y');
    const retriesBefore = m.server.clusters.get('replay')!.stats.upstreamRqRetry;
    flakyFailNext = 1;
    let sawFailure = false;
    for (let i = 0; i < 4 && flakyFailNext > 0; i++) {
      const s = await send('/replay', big);
      if (s === 503) sawFailure = true;
    }
    expect(sawFailure).toBe(true);
    expect(m.server.clusters.get('replay')!.stats.upstreamRqRetry).toBe(retriesBefore);
  });
});
