/**
 * Issue 15 bug 6: ORIGINAL_DST with original_dst_lb_config.http_header_name ":authority" never
 * found a host (503, upstream_cx_none_healthy): the pseudo-header was looked up among the
 * ordinary headers. Envoy reads the request's authority.
 *
 * upstream_port_override was accepted and ignored: the request went to the port it named.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bootstrap, httpListener, routes, type StartedMeshlet, startMeshlet, stopAllMeshlets } from '../support/meshlet';
import { closeAll, type HttpEcho, startHttpEcho } from '../support/upstreams';
import { request } from '../telemetry/helpers';

let m: StartedMeshlet;
let app: HttpEcho;
let other: HttpEcho;

beforeAll(async () => {
  app = await startHttpEcho('app');
  other = await startHttpEcho('other');
  m = await startMeshlet(
    bootstrap(
      [
        httpListener('l', routes([{ match: { prefix: '/' }, route: { cluster: 'od' } }])),
        httpListener('o', routes([{ match: { prefix: '/' }, route: { cluster: 'od-override' } }])),
      ],
      [
        {
          name: 'od',
          type: 'ORIGINAL_DST',
          lb_policy: 'CLUSTER_PROVIDED',
          connect_timeout: '1s',
          original_dst_lb_config: { use_http_header: true, http_header_name: ':authority' },
        },
        {
          name: 'od-override',
          type: 'ORIGINAL_DST',
          lb_policy: 'CLUSTER_PROVIDED',
          connect_timeout: '1s',
          original_dst_lb_config: { use_http_header: true, http_header_name: ':authority', upstream_port_override: other.port },
        },
      ],
    ),
  );
});

afterAll(async () => {
  await stopAllMeshlets();
  await closeAll();
});

describe('ORIGINAL_DST from :authority', () => {
  it('routes to the host:port the request names', async () => {
    const r = await request(m.listenerPort('l'), '/x', { headers: { host: `127.0.0.1:${app.port}` } });
    expect(r.status).toBe(200);
    expect(r.headers['x-upstream']).toBe('app');
    expect(app.requests.at(-1)?.url).toBe('/x');
  });

  it('upstream_port_override keeps the address and replaces the port', async () => {
    const r = await request(m.listenerPort('o'), '/y', { headers: { host: `127.0.0.1:${app.port}` } });
    expect(r.status).toBe(200);
    expect(r.headers['x-upstream']).toBe('other');
    expect(other.requests.at(-1)?.url).toBe('/y');
  });
});
