/** Protocol detection outcomes and time are exported in /stats and /stats/prometheus. */
import http from 'node:http';
import { afterAll, describe, expect, it } from 'vitest';
import { bootstrap, httpListener, routes, staticCluster, startMeshlet, stopAllMeshlets } from '../support/meshlet';
import { closeAll, startHttpEcho } from '../support/upstreams';

afterAll(async () => {
  await stopAllMeshlets();
  await closeAll();
});

function get(port: number, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
        let b = '';
        res.on('data', (c) => {
          b += c;
        });
        res.on('end', () => resolve(b));
      })
      .on('error', reject);
  });
}

describe('protocol detection metrics', () => {
  it('counts an HTTP/1.1 detection on a listener with the http_inspector', async () => {
    const up = await startHttpEcho('up');
    const l = httpListener('sniffed', routes([{ match: { prefix: '/' }, route: { cluster: 'up' } }]));
    l.listener_filters = [
      { name: 'envoy.filters.listener.http_inspector', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.listener.http_inspector.v3.HttpInspector' } },
    ];
    const m = await startMeshlet(bootstrap([l], [staticCluster('up', [up.port])]));
    const before = Number(/protocol_detection\.http1: (\d+)/.exec(await get(m.adminPort, '/stats'))?.[1] ?? 0);
    expect(await get(m.listenerPort('sniffed'), '/x')).toContain('"upstream":"up"');
    const stats = await get(m.adminPort, '/stats');
    expect(Number(/protocol_detection\.http1: (\d+)/.exec(stats)?.[1])).toBe(before + 1);
    expect(Number(/protocol_detection\.duration_ms_count: (\d+)/.exec(stats)?.[1])).toBeGreaterThanOrEqual(1);
    const prom = await get(m.adminPort, '/stats/prometheus');
    expect(prom).toMatch(/meshlet_protocol_detection_total\{outcome="http1"\} [1-9]/);
  });
});

describe('filter counters', () => {
  it('exports RBAC allowed and denied decisions', async () => {
    const up = await startHttpEcho('up2');
    const l = httpListener('rbac', routes([{ match: { prefix: '/' }, route: { cluster: 'up2' } }]), {
      http_filters: [
        {
          name: 'envoy.filters.http.rbac',
          typed_config: {
            '@type': 'type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC',
            rules: { action: 'DENY', policies: { 'no-admin': { permissions: [{ url_path: { path: { prefix: '/admin' } } }], principals: [{ any: true }] } } },
          },
        },
        { name: 'envoy.filters.http.router', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router' } },
      ],
    });
    const m = await startMeshlet(bootstrap([l], [staticCluster('up2', [up.port])]));
    await get(m.listenerPort('rbac'), '/ok');
    await get(m.listenerPort('rbac'), '/admin/x');
    await get(m.listenerPort('rbac'), '/admin/y');
    const stats = await get(m.adminPort, '/stats');
    // Envoy's names: http.<stat_prefix>.rbac.<rules_stat_prefix>allowed|denied.
    expect(stats).toMatch(/^http\.rbac\.rbac\.denied: 2$/m);
    expect(stats).toMatch(/^http\.rbac\.rbac\.allowed: 1$/m);
    const prom = await get(m.adminPort, '/stats/prometheus');
    expect(prom).toMatch(/meshlet_rbac_total\{kind="http",filter="http.rbac.rbac",decision="denied"\} 2/);
  });
});
