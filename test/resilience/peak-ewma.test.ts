/**
 * Latency-aware balancing through a real meshlet: with one of three endpoints answering slowly,
 * PEAK_EWMA (linkerd2-proxy's P2C over peak-EWMA latency, fed by the router's observeRtt) sends
 * it a much smaller share of the requests than ROUND_ROBIN does. Shares are compared; nothing
 * asserts on time.
 */
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
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

const REQUESTS = 240;
const CONCURRENCY = 6;
const SLOW_MS = 60;

let m: StartedMeshlet;
let slow: HttpEcho;
let fast1: HttpEcho;
let fast2: HttpEcho;

beforeAll(async () => {
  slow = await startHttpEcho('slow', (_req, res) => {
    setTimeout(() => {
      res.writeHead(200, { 'x-upstream': 'slow', 'content-length': '4' });
      res.end('slow');
    }, SLOW_MS);
    return true;
  });
  fast1 = await startHttpEcho('fast1');
  fast2 = await startHttpEcho('fast2');
  const ports = [slow.port, fast1.port, fast2.port];
  m = await startMeshlet(
    bootstrap(
      [
        httpListener(
          'http',
          routes([
            { match: { prefix: '/rr' }, route: { cluster: 'rr' } },
            { match: { prefix: '/ewma' }, route: { cluster: 'ewma' } },
          ]),
        ),
      ],
      [
        staticCluster('rr', ports, { lb_policy: 'ROUND_ROBIN' }),
        staticCluster('ewma', ports, { lb_policy: 'PEAK_EWMA' }),
      ],
    ),
  );
});

afterAll(async () => {
  await stopAllMeshlets();
  await closeAll();
});

async function shares(path: string): Promise<Record<string, number>> {
  const port = m.listenerPort('http');
  const agent = new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY });
  const counts: Record<string, number> = {};
  let started = 0;
  const worker = async (): Promise<void> => {
    while (started < REQUESTS) {
      started++;
      const up = await new Promise<string>((resolve, reject) => {
        const req = http.request({ host: '127.0.0.1', port, path, agent }, (res) => {
          res.resume();
          res.on('end', () =>
            resolve(res.statusCode === 200 ? String(res.headers['x-upstream']) : `status-${res.statusCode}`),
          );
        });
        req.on('error', reject);
        req.end();
      });
      counts[up] = (counts[up] ?? 0) + 1;
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  agent.destroy();
  return counts;
}

describe('PEAK_EWMA vs ROUND_ROBIN with a slow endpoint', () => {
  it('PEAK_EWMA sends the slow endpoint measurably less traffic', async () => {
    const rr = await shares('/rr');
    const ewma = await shares('/ewma');
    const rrSlow = (rr.slow ?? 0) / REQUESTS;
    const ewmaSlow = (ewma.slow ?? 0) / REQUESTS;
    console.log(
      `[peak-ewma] ROUND_ROBIN ${JSON.stringify(rr)} slow share ${rrSlow.toFixed(3)}; PEAK_EWMA ${JSON.stringify(ewma)} slow share ${ewmaSlow.toFixed(3)}`,
    );
    // Every request succeeded on both clusters.
    expect(Object.keys(rr).every((k) => !k.startsWith('status-'))).toBe(true);
    expect(Object.keys(ewma).every((k) => !k.startsWith('status-'))).toBe(true);
    // Round robin ignores latency: a third of the requests.
    expect(rrSlow).toBeGreaterThan(0.3);
    expect(rrSlow).toBeLessThan(0.37);
    // Peak-EWMA learns the latency and avoids the slow host.
    expect(ewmaSlow).toBeLessThan(rrSlow / 2);
    expect((ewma.fast1 ?? 0) + (ewma.fast2 ?? 0)).toBeGreaterThan(REQUESTS * 0.8);
  });
});
