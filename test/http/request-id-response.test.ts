/**
 * always_set_request_id_in_response through a real meshlet: with it, every response (proxied or a
 * local reply) carries the request's x-request-id, the generated one or the caller's; without
 * it, none does; and a request without one (generate_request_id false) gets none back, as Envoy.
 */
import { afterAll, expect, it } from 'vitest';
import { bootstrap, httpListener, routes, startMeshlet, staticCluster, stopAllMeshlets } from '../support/meshlet';
import { closeAll, startHttpEcho } from '../support/upstreams';
import { request } from '../telemetry/helpers';

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

afterAll(async () => {
  await stopAllMeshlets();
  await closeAll();
});

it('always_set_request_id_in_response returns the x-request-id on every response, only when the request has one', async () => {
  const app = await startHttpEcho('app');
  const table = routes([{ match: { prefix: '/app' }, route: { cluster: 'app' } }]);
  const m = await startMeshlet(
    bootstrap(
      [
        httpListener('rid_always', table, { always_set_request_id_in_response: true }),
        httpListener('rid_default', table),
        httpListener('rid_none', table, { always_set_request_id_in_response: true, generate_request_id: false }),
      ],
      [staticCluster('app', [app.port])],
    ),
  );
  const always = m.listenerPort('rid_always');
  // Generated: the one the app saw comes back.
  const gen = await request(always, '/app/1');
  expect(gen.status).toBe(200);
  expect(String(gen.headers['x-request-id'])).toMatch(UUID_RE);
  expect(app.requests[app.requests.length - 1]!.headers['x-request-id']).toBe(gen.headers['x-request-id']);
  // The caller's own (internal: no use_remote_address, so it is kept).
  expect((await request(always, '/app/2', { headers: { 'x-request-id': 'rid-caller' } })).headers['x-request-id']).toBe('rid-caller');
  // A local reply (no route: 404) carries it too.
  const local = await request(always, '/nowhere', { headers: { 'x-request-id': 'rid-local' } });
  expect(local.status).toBe(404);
  expect(local.headers['x-request-id']).toBe('rid-local');

  // Default false: not returned.
  const def = await request(m.listenerPort('rid_default'), '/app/3', { headers: { 'x-request-id': 'rid-def' } });
  expect(def.status).toBe(200);
  expect(def.headers['x-request-id']).toBeUndefined();

  // No x-request-id on the request (none sent, none generated): none on the response.
  const none = await request(m.listenerPort('rid_none'), '/app/4');
  expect(none.status).toBe(200);
  expect(none.headers['x-request-id']).toBeUndefined();
  expect(app.requests[app.requests.length - 1]!.headers['x-request-id']).toBeUndefined();
});
