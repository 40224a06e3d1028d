/**
 * Readiness tells the truth while draining (issue 18.5): after POST /drain_listeners every
 * listener refuses connections, so /ready and :15021/healthz/ready answer 503 DRAINING; after
 * POST /healthcheck/fail, server_info.state and envoy_server_state say DRAINING too (Envoy's
 * serverState), and /healthcheck/ok makes the proxy LIVE again.
 */
import { afterAll, expect, it } from 'vitest';
import { bootstrap, httpListener, routes, staticCluster, startMeshlet, stopAllMeshlets } from '../support/meshlet';
import { closeAll, startHttpEcho } from '../support/upstreams';
import { request } from './helpers';

afterAll(async () => {
  await stopAllMeshlets();
  await closeAll();
});

async function start(): Promise<{ admin: number; health: number }> {
  const echo = await startHttpEcho('app');
  const m = await startMeshlet(
    bootstrap([httpListener('in', routes([{ match: { prefix: '/' }, route: { cluster: 'app' } }]))], [staticCluster('app', [echo.port])]),
    { telemetry: { healthPort: 0, portsHost: '127.0.0.1' } },
  );
  return { admin: m.adminPort, health: m.server.telemetry.healthPort };
}

async function state(admin: number): Promise<{ ready: [number, string]; info: string; gauge: string | undefined }> {
  const r = await request(admin, '/ready');
  const info = JSON.parse((await request(admin, '/server_info')).body) as { state: string };
  const prom = await request(admin, '/stats/prometheus');
  return { ready: [r.status, r.body.trim()], info: info.state, gauge: /^envoy_server_state (\d+)$/m.exec(prom.body)?.[1] };
}

it('/healthcheck/fail reports DRAINING everywhere; /healthcheck/ok restores LIVE', async () => {
  const { admin, health } = await start();
  expect(await state(admin)).toEqual({ ready: [200, 'LIVE'], info: 'LIVE', gauge: '0' });
  expect((await request(admin, '/healthcheck/fail', { method: 'POST' })).status).toBe(200);
  expect(await state(admin)).toEqual({ ready: [503, 'DRAINING'], info: 'DRAINING', gauge: '1' });
  const h = await request(health, '/healthz/ready');
  expect([h.status, h.body.trim()]).toEqual([503, 'DRAINING']);
  await request(admin, '/healthcheck/ok', { method: 'POST' });
  expect(await state(admin)).toEqual({ ready: [200, 'LIVE'], info: 'LIVE', gauge: '0' });
});

it('/drain_listeners makes /ready and :15021/healthz/ready answer 503 DRAINING', async () => {
  const { admin, health } = await start();
  expect((await request(health, '/healthz/ready')).status).toBe(200);
  expect((await request(admin, '/drain_listeners?inboundonly&graceful', { method: 'POST' })).status).toBe(200);
  expect(await state(admin)).toEqual({ ready: [503, 'DRAINING'], info: 'DRAINING', gauge: '1' });
  const h = await request(health, '/healthz/ready');
  expect([h.status, h.body.trim()]).toEqual([503, 'DRAINING']);
});
