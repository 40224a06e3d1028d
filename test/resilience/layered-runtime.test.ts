/**
 * layered_runtime through a real meshlet: a static layer and an admin layer, admin GET /runtime
 * (Envoy's JSON shape) and POST /runtime_modify, honoured by the fault filter's runtime keys and
 * a route's runtime_fraction and local_ratelimit's filter_enabled on the next request; disk and RTDS layers rejected with their path.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Issues, Reader } from '../../common/reader';
import { Runtime } from '../../common/runtime';
import { decodeLayeredRuntime } from '../../proxy/config/envoy/runtime';
import { bootstrap, httpListener, routes, type StartedMeshlet, startMeshlet, staticCluster, stopAllMeshlets } from '../support/meshlet';
import { closeAll, type HttpEcho, startHttpEcho } from '../support/upstreams';
import { request } from '../telemetry/helpers';

const FAULT = 'type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault';
const ROUTER = 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router';

let m: StartedMeshlet;
let stable: HttpEcho;
let canary: HttpEcho;

beforeAll(async () => {
  stable = await startHttpEcho('stable');
  canary = await startHttpEcho('canary');
  const rc = routes([
    {
      match: { prefix: '/', runtime_fraction: { default_value: { numerator: 0 }, runtime_key: 'routing.canary' } },
      route: { cluster: 'canary' },
    },
    { match: { prefix: '/' }, route: { cluster: 'stable' } },
  ]);
  m = await startMeshlet(
    bootstrap(
      [
        httpListener('web', rc, {
          http_filters: [
            {
              name: 'envoy.filters.http.fault',
              typed_config: {
                '@type': FAULT,
                abort: { http_status: 503, percentage: { numerator: 0 } },
                headers: [{ name: 'x-faultable', present_match: true }],
              },
            },
            { name: 'envoy.filters.http.router', typed_config: { '@type': ROUTER } },
          ],
        }),
        httpListener('limited', routes([{ match: { prefix: '/' }, route: { cluster: 'stable' } }]), {
          http_filters: [
            {
              name: 'envoy.filters.http.local_ratelimit',
              typed_config: {
                '@type': 'type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit',
                stat_prefix: 'rl',
                token_bucket: { max_tokens: 1, tokens_per_fill: 1, fill_interval: '3600s' },
                filter_enabled: { runtime_key: 'local_rate_limit_enabled', default_value: { numerator: 0 } },
                filter_enforced: { runtime_key: 'local_rate_limit_enforced', default_value: { numerator: 100 } },
              },
            },
            { name: 'envoy.filters.http.router', typed_config: { '@type': ROUTER } },
          ],
        }),
      ],
      [staticCluster('stable', [stable.port]), staticCluster('canary', [canary.port])],
      {
        layered_runtime: {
          layers: [
            { name: 'base', static_layer: { fault: { http: { abort: { http_status: 418 } } }, misc: { flag: true } } },
            { name: 'admin', admin_layer: {} },
          ],
        },
      },
    ),
  );
});

afterAll(async () => {
  await stopAllMeshlets();
  await closeAll();
});

async function admin(path: string, method = 'GET'): Promise<{ status: number; body: string }> {
  const r = await request(m.adminPort, path, { method });
  return { status: r.status, body: r.body };
}

async function upstreamsOf(n: number, headers: Record<string, string> = {}): Promise<Record<string, number>> {
  const seen: Record<string, number> = {};
  for (let i = 0; i < n; i++) {
    const r = await request(m.listenerPort('web'), '/x', { headers });
    const who = r.status === 200 ? String(r.headers['x-upstream']) : String(r.status);
    seen[who] = (seen[who] ?? 0) + 1;
  }
  return seen;
}

describe('layered_runtime', () => {
  it('GET /runtime shows the layers and every key with its value per layer', async () => {
    const r = await admin('/runtime');
    expect(r.status).toBe(200);
    const doc = JSON.parse(r.body) as { layers: string[]; entries: Record<string, { layer_values: string[]; final_value: string }> };
    expect(doc.layers).toEqual(['base', 'admin']);
    expect(doc.entries['fault.http.abort.http_status']).toEqual({ layer_values: ['418', ''], final_value: '418' });
    expect(doc.entries['misc.flag']).toEqual({ layer_values: ['true', ''], final_value: 'true' });
  });

  it("route runtime_fraction follows its runtime key: 0 % by default, all requests once the admin layer says 100", async () => {
    expect(await upstreamsOf(10)).toEqual({ stable: 10 });
    expect((await admin('/runtime_modify?routing.canary=100', 'POST')).body).toBe('OK\n');
    expect(await upstreamsOf(10)).toEqual({ canary: 10 });
    // An empty value removes the override: back to the default.
    await admin('/runtime_modify?routing.canary=', 'POST');
    expect(await upstreamsOf(10)).toEqual({ stable: 10 });
  });

  it('the fault filter reads its percentage and status under Envoy runtime keys', async () => {
    expect(await upstreamsOf(5, { 'x-faultable': '1' })).toEqual({ stable: 5 });
    await admin('/runtime_modify?fault.http.abort.abort_percent=100', 'POST');
    // The status comes from the static layer (418), the percentage from the admin layer.
    expect(await upstreamsOf(5, { 'x-faultable': '1' })).toEqual({ 418: 5 });
    expect(await upstreamsOf(3)).toEqual({ stable: 3 });
    await admin('/runtime_modify?fault.http.abort.http_status=502', 'POST');
    expect(await upstreamsOf(3, { 'x-faultable': '1' })).toEqual({ 502: 3 });
    const doc = JSON.parse((await admin('/runtime')).body) as { entries: Record<string, { layer_values: string[]; final_value: string }> };
    expect(doc.entries['fault.http.abort.http_status']).toEqual({ layer_values: ['418', '502'], final_value: '502' });
    await admin('/runtime_modify?fault.http.abort.abort_percent=&fault.http.abort.http_status=', 'POST');
    expect(await upstreamsOf(3, { 'x-faultable': '1' })).toEqual({ stable: 3 });
  });

  it("local_ratelimit's filter_enabled follows its runtime_key", async () => {
    const port = m.listenerPort('limited');
    for (let i = 0; i < 3; i++) expect((await request(port, '/')).status).toBe(200);
    await admin('/runtime_modify?local_rate_limit_enabled=100', 'POST');
    expect((await request(port, '/')).status).toBe(200); // the one token
    expect((await request(port, '/')).status).toBe(429);
    await admin('/runtime_modify?local_rate_limit_enforced=0', 'POST');
    expect((await request(port, '/')).status).toBe(200);
    await admin('/runtime_modify?local_rate_limit_enabled=&local_rate_limit_enforced=', 'POST');
  });

  it('POST /runtime_modify without keys answers usage (400); GET is refused', async () => {
    const r = await admin('/runtime_modify', 'POST');
    expect(r.status).toBe(400);
    expect(r.body).toMatch(/^usage: \/runtime_modify\?key1=value1/);
    expect((await admin('/runtime_modify?a=1')).status).toBe(405);
  });
});

describe('layered_runtime config', () => {
  function decode(raw: unknown): { layers: ReturnType<typeof decodeLayeredRuntime>; issues: Issues } {
    const issues = new Issues();
    const layers = decodeLayeredRuntime(Reader.of(raw, 'layered_runtime', issues)!);
    return { layers, issues };
  }

  it('rejects disk and RTDS layers, lists, a second admin layer and duplicate names, with paths', () => {
    const { issues } = decode({
      layers: [
        { name: 'a', static_layer: { x: [1, 2] } },
        { name: 'disk', disk_layer: { symlink_root: '/srv/runtime' } },
        { name: 'rtds', rtds_layer: { name: 'r' } },
        { name: 'adm', admin_layer: {} },
        { name: 'adm', admin_layer: {} },
      ],
    });
    expect(issues.errors.map((e) => e.path)).toEqual([
      'layered_runtime.layers[0].static_layer.x',
      'layered_runtime.layers[1].disk_layer',
      'layered_runtime.layers[2].rtds_layer',
      'layered_runtime.layers[4].name',
      'layered_runtime.layers[4].admin_layer',
    ]);
  });

  it('flattens the static layer; FractionalPercent values and integer numerators both drive fractions', () => {
    const { layers, issues } = decode({
      layers: [{ name: 's', static_layer: { a: { b: { numerator: 5, denominator: 'TEN_THOUSAND' } }, c: 30 } }],
    });
    expect(issues.errors).toEqual([]);
    const rt = new Runtime(layers);
    expect(rt.get('a.b')).toEqual({ numerator: 5, denominator: 'TEN_THOUSAND' });
    const def = { numerator: 0, denominator: 'MILLION' as const };
    // 5 / 10,000: random 0.0004 is in, 0.0005 is out.
    expect(rt.fractionEnabled({ ...def, runtimeKey: 'a.b' }, 0.0004)).toBe(true);
    expect(rt.fractionEnabled({ ...def, runtimeKey: 'a.b' }, 0.0005)).toBe(false);
    // An integer runtime value is a numerator over the default's denominator (30 / 1,000,000).
    expect(rt.fractionEnabled({ ...def, runtimeKey: 'c' }, 0.000029)).toBe(true);
    expect(rt.fractionEnabled({ ...def, runtimeKey: 'c' }, 0.00003)).toBe(false);
    expect(rt.modify([['x', '1']])).toBe(false);
  });
});
