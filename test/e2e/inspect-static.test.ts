/**
 * `meshlet proxy-config` (the real CLI, spawned) and admin /explain against a real meshlet started
 * from a static bootstrap: tables compared with the known config, filters, -o json, log levels,
 * and explain's answers checked against what real requests through the proxy then do (several
 * virtual hosts, a header match, weighted clusters, an RBAC deny, a 404).
 */
import { execFile } from 'node:child_process';
import http from 'node:http';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ExplainResult } from '../../proxy/admin/explain';
import { bootstrap, HCM_TYPE, httpListener, ROUTER_TYPE, socketAddress, staticCluster, startMeshlet, stopAllMeshlets, type StartedMeshlet } from '../support/meshlet';
import { closeAll, startHttpEcho, type HttpEcho } from '../support/upstreams';

const run = promisify(execFile);
const BIN = path.join(__dirname, '../../bin/meshlet.js');
const RBAC_TYPE = 'type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC';

let m: StartedMeshlet;
let admin: string;
const ups: Record<string, HttpEcho> = {};

function meshletCli(...args: string[]): Promise<{ stdout: string; stderr: string }> {
  return run(process.execPath, [BIN, ...args], { timeout: 20_000, env: { ...process.env, NO_COLOR: '1' } });
}

beforeAll(async () => {
  for (const n of ['reviews-v1', 'reviews-v2', 'reviews-v3', 'ratings', 'fallback']) ups[n] = await startHttpEcho(n);
  const routeConfig = {
    name: 'web-routes',
    virtual_hosts: [
      {
        name: 'reviews',
        domains: ['reviews', 'reviews.default.svc.cluster.local'],
        routes: [
          { name: 'jason', match: { prefix: '/', headers: [{ name: 'end-user', string_match: { exact: 'jason' } }] }, route: { cluster: 'outbound|9080|v2|reviews.default.svc.cluster.local' } },
          {
            name: 'split',
            match: { prefix: '/' },
            route: {
              weighted_clusters: {
                clusters: [
                  { name: 'outbound|9080|v1|reviews.default.svc.cluster.local', weight: 80 },
                  { name: 'outbound|9080|v3|reviews.default.svc.cluster.local', weight: 20 },
                ],
              },
            },
          },
        ],
      },
      {
        name: 'ratings',
        domains: ['*.ratings.example'],
        routes: [
          { name: 'api', match: { path: '/api' }, route: { cluster: 'ratings' } },
          { name: 'admin', match: { prefix: '/admin' }, route: { cluster: 'ratings' } },
        ],
      },
      { name: 'catch-all', domains: ['*'], routes: [{ name: 'default', match: { prefix: '/' }, route: { cluster: 'fallback' } }] },
    ],
  };
  const web = {
    name: 'web',
    address: socketAddress(0),
    traffic_direction: 'OUTBOUND',
    filter_chains: [
      {
        name: 'web-http',
        filters: [
          {
            name: 'envoy.filters.network.http_connection_manager',
            typed_config: {
              '@type': HCM_TYPE,
              stat_prefix: 'web',
              route_config: routeConfig,
              http_filters: [
                {
                  name: 'envoy.filters.http.rbac',
                  typed_config: {
                    '@type': RBAC_TYPE,
                    rules: {
                      action: 'DENY',
                      policies: { 'deny-admin': { permissions: [{ url_path: { path: { prefix: '/admin' } } }], principals: [{ any: true }] } },
                    },
                  },
                },
                { name: 'envoy.filters.http.router', typed_config: { '@type': ROUTER_TYPE } },
              ],
            },
          },
        ],
      },
    ],
  };
  const clusters = [
    staticCluster('outbound|9080|v1|reviews.default.svc.cluster.local', [ups['reviews-v1']!.port]),
    staticCluster('outbound|9080|v2|reviews.default.svc.cluster.local', [ups['reviews-v2']!.port]),
    staticCluster('outbound|9080|v3|reviews.default.svc.cluster.local', [{ port: ups['reviews-v3']!.port, weight: 5 }]),
    staticCluster('ratings', [ups.ratings!.port]),
    staticCluster('fallback', [ups.fallback!.port]),
  ];
  // Two chains told apart by the client's address: 127.0.0.2 gets its own chain.
  const split = httpListener('split', { name: 'split-routes', virtual_hosts: [{ name: 'any', domains: ['*'], routes: [{ match: { prefix: '/' }, route: { cluster: 'fallback' } }] }] });
  const base = (split.filter_chains as Record<string, unknown>[])[0]!;
  split.filter_chains = [
    { ...base, name: 'from-anyone' },
    {
      name: 'from-127.0.0.2',
      filter_chain_match: { source_prefix_ranges: [{ address_prefix: '127.0.0.2', prefix_len: 32 }] },
      filters: [
        {
          name: 'envoy.filters.network.http_connection_manager',
          typed_config: {
            '@type': HCM_TYPE,
            stat_prefix: 'split2',
            route_config: { name: 'special', virtual_hosts: [{ name: 'any', domains: ['*'], routes: [{ match: { prefix: '/' }, route: { cluster: 'ratings' } }] }] },
            http_filters: [{ name: 'envoy.filters.http.router', typed_config: { '@type': ROUTER_TYPE } }],
          },
        },
      ],
    },
  ];
  m = await startMeshlet(bootstrap([web, split], clusters));
  admin = `http://127.0.0.1:${m.adminPort}`;
}, 30_000);

afterAll(async () => {
  await stopAllMeshlets();
  await closeAll();
});

function send(pathname: string, host: string, headers: Record<string, string> = {}): Promise<{ status: number; upstream?: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: m.listenerPort('web'), path: pathname, headers: { host, ...headers }, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, upstream: res.headers['x-upstream'] as string | undefined }));
    });
    req.on('error', reject);
    req.end();
  });
}

async function explain(url: string, ...extra: string[]): Promise<ExplainResult> {
  const { stdout } = await meshletCli('proxy-config', 'explain', url, '--admin', admin, '--listener', 'web', '-o', 'json', ...extra);
  return JSON.parse(stdout) as ExplainResult;
}

describe('proxy-config explain matches what real requests do', () => {
  it('a header match picks the v2 route; the real request lands on v2', async () => {
    const e = await explain('http://reviews:9080/reviews/1', '-H', 'end-user: jason');
    expect(e.listener?.name).toBe('web');
    expect(e.filterChain?.name).toBe('web-http');
    expect(e.virtualHost).toMatchObject({ name: 'reviews' });
    expect(e.virtualHost?.why).toContain('exact domain "reviews"');
    expect(e.routes.map((r) => [r.name, r.matched])).toEqual([['jason', true]]);
    expect(e.clusters).toEqual([{ name: 'outbound|9080|v2|reviews.default.svc.cluster.local' }]);
    expect(e.upstream[0]!.endpoints).toEqual([{ address: `127.0.0.1:${ups['reviews-v2']!.port}`, health: 'healthy', weight: 1, priority: 0, locality: '' }]);
    expect(e.rbac).toEqual([{ filter: 'envoy.filters.http.rbac', action: 'DENY', allowed: true, perRoute: false }]);
    const real = await send('/reviews/1', 'reviews:9080', { 'end-user': 'jason' });
    expect(real).toEqual({ status: 200, upstream: 'reviews-v2' });
  });

  it('without the header the first route fails on it and the weighted split decides; real requests only reach v1/v3', async () => {
    const e = await explain('http://reviews.default.svc.cluster.local:9080/reviews/1', '-H', 'end-user: mike');
    expect(e.routes[0]).toMatchObject({ name: 'jason', matched: false });
    expect(e.routes[0]!.failed).toContain('header end-user exact "jason" fails');
    expect(e.routes[0]!.failed).toContain('"mike"');
    expect(e.routes[1]).toMatchObject({ name: 'split', matched: true });
    expect(e.clusters).toEqual([
      { name: 'outbound|9080|v1|reviews.default.svc.cluster.local', weight: 80, percent: 80 },
      { name: 'outbound|9080|v3|reviews.default.svc.cluster.local', weight: 20, percent: 20 },
    ]);
    expect(e.upstream[1]!.endpoints[0]!.weight).toBe(5);
    const seen = new Set<string>();
    for (let i = 0; i < 40; i++) seen.add((await send('/reviews/1', 'reviews.default.svc.cluster.local:9080', { 'end-user': 'mike' })).upstream ?? 'none');
    expect([...seen].every((u) => u === 'reviews-v1' || u === 'reviews-v3')).toBe(true);
    expect(seen.has('reviews-v1')).toBe(true);
  });

  it('a wildcard virtual host and an RBAC deny: explain says 403, the real request gets 403', async () => {
    const e = await explain('http://eu.ratings.example/admin/users');
    expect(e.virtualHost?.name).toBe('ratings');
    expect(e.virtualHost?.why).toContain('wildcard "*.ratings.example"');
    expect(e.routes.map((r) => [r.name, r.matched])).toEqual([
      ['api', false],
      ['admin', true],
    ]);
    expect(e.routes[0]!.failed).toBe('path /api does not match /admin/users');
    expect(e.rbac).toEqual([{ filter: 'envoy.filters.http.rbac', action: 'DENY', policy: 'deny-admin', allowed: false, perRoute: false }]);
    expect(e.verdict).toContain('403');
    expect((await send('/admin/users', 'eu.ratings.example')).status).toBe(403);
    const ok = await explain('http://eu.ratings.example/api');
    expect(ok.verdict).toBe('routed to ratings');
    expect(await send('/api', 'eu.ratings.example')).toEqual({ status: 200, upstream: 'ratings' });
  });

  it('an unknown host falls to the catch-all; a path no route matches is a 404 in both', async () => {
    const e = await explain('http://other.example/x');
    expect(e.virtualHost?.why).toContain('catch-all');
    expect(e.clusters).toEqual([{ name: 'fallback' }]);
    expect((await send('/x', 'other.example')).upstream).toBe('fallback');
    const nr = await explain('http://a.ratings.example/nothing');
    expect(nr.verdict).toContain('404');
    expect((await send('/nothing', 'a.ratings.example')).status).toBe(404);
  });

  it('prints the decision path as text', async () => {
    const { stdout } = await meshletCli('proxy-config', 'explain', 'http://eu.ratings.example/admin', '--admin', admin, '--listener', 'web');
    expect(stdout).toContain('VHost     ratings');
    expect(stdout).toContain('✘ #0 api [path /api]  path /api does not match /admin');
    expect(stdout).toContain('RBAC      envoy.filters.http.rbac: DENY (DENY, policy deny-admin)');
    expect(stdout).toMatch(/Verdict {3}403 RBAC: access denied/);
  });
});

describe('explain: filter chain selection', () => {
  function sendFrom(localAddress: string): Promise<string | undefined> {
    return new Promise((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port: m.listenerPort('split'), path: '/', localAddress, agent: false }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.headers['x-upstream'] as string | undefined));
      });
      req.on('error', reject);
      req.end();
    });
  }

  it('names the chain a client address selects and why the other lost; real connections agree', async () => {
    const special = await explain('http://any.example/', '--listener', 'split', '--source', '127.0.0.2:40000');
    expect(special.filterChain?.name).toBe('from-127.0.0.2');
    expect(special.filterChain?.candidates).toEqual([
      { name: 'from-anyone', chosen: false, reason: 'source_prefix_ranges: a more specific chain matched' },
      { name: 'from-127.0.0.2', chosen: true },
    ]);
    expect(special.clusters).toEqual([{ name: 'ratings' }]);
    expect(await sendFrom('127.0.0.2')).toBe('ratings');
    const plain = await explain('http://any.example/', '--listener', 'split', '--source', '127.0.0.1');
    expect(plain.filterChain?.candidates).toEqual([
      { name: 'from-anyone', chosen: true },
      { name: 'from-127.0.0.2', chosen: false, reason: 'source_prefix_ranges does not match' },
    ]);
    expect(plain.clusters).toEqual([{ name: 'fallback' }]);
    expect(await sendFrom('127.0.0.1')).toBe('fallback');
  });
});

describe('proxy-config tables against the running config', () => {
  it('clusters: istioctl columns, parsed from Istio cluster names, with filters', async () => {
    const { stdout } = await meshletCli('proxy-config', 'clusters', '--admin', admin);
    const lines = stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^SERVICE FQDN\s+PORT\s+SUBSET\s+DIRECTION\s+TYPE\s+DESTINATION RULE$/);
    expect(lines.slice(1).map((l) => l.split(/\s{3,}/))).toEqual([
      ['fallback', '-', '-', '-', 'STATIC', '-'],
      ['ratings', '-', '-', '-', 'STATIC', '-'],
      ['reviews.default.svc.cluster.local', '9080', 'v1', 'outbound', 'STATIC', '-'],
      ['reviews.default.svc.cluster.local', '9080', 'v2', 'outbound', 'STATIC', '-'],
      ['reviews.default.svc.cluster.local', '9080', 'v3', 'outbound', 'STATIC', '-'],
    ]);
    const v2 = await meshletCli('proxy-config', 'clusters', '--admin', admin, '--fqdn', 'reviews', '--subset', 'v2');
    expect(v2.stdout.trimEnd().split('\n')).toHaveLength(2);
    const asJson = JSON.parse((await meshletCli('proxy-config', 'clusters', '--admin', admin, '--direction', 'outbound', '-o', 'json')).stdout) as { name: string }[];
    expect(asJson.map((c) => c.name)).toEqual([1, 2, 3].map((v) => `outbound|9080|v${v}|reviews.default.svc.cluster.local`));
  });

  it('listeners and routes', async () => {
    const l = (await meshletCli('proxy-config', 'listeners', '--admin', admin, '--name', 'web')).stdout.trimEnd().split('\n');
    expect(l[0]).toMatch(/^ADDRESSES\s+PORT\s+MATCH\s+DESTINATION$/);
    expect(l[1]).toMatch(/^127\.0\.0\.1\s+0\s+ALL\s+Inline Route: reviews\/reviews\.default\.svc\.cluster\.local \/\*, \/\*; \*\.ratings\.example \/api, \/admin\*; \/\*$/);
    const both = (await meshletCli('proxy-config', 'listeners', '--admin', admin, '--name', 'split')).stdout.trimEnd().split('\n');
    expect(both.slice(1).map((x) => x.split(/\s{3,}/).slice(2))).toEqual([
      ['ALL', 'Cluster: fallback'],
      ['Addr: 127.0.0.2/32 (source)', 'Cluster: ratings'],
    ]);
    const r = (await meshletCli('proxy-config', 'routes', '--admin', admin, '--name', 'web-routes')).stdout.trimEnd().split('\n');
    expect(r[0]).toMatch(/^NAME\s+VHOST NAME\s+DOMAINS\s+MATCH\s+VIRTUAL SERVICE$/);
    expect(r.slice(1).map((x) => x.split(/\s{3,}/))).toEqual([
      ['web-routes', 'reviews', 'reviews +1 more...', '/*', '-'],
      ['web-routes', 'reviews', 'reviews +1 more...', '/*', '-'],
      ['web-routes', 'ratings', '*.ratings.example', '/api', '-'],
      ['web-routes', 'ratings', '*.ratings.example', '/admin*', '-'],
      ['web-routes', 'catch-all', '*', '/*', '-'],
    ]);
  });

  it('endpoints with health, outlier check and LB weight; --status and --cluster filter', async () => {
    const { stdout } = await meshletCli('proxy-config', 'endpoints', '--admin', admin, '--cluster', 'outbound|9080|v3|reviews.default.svc.cluster.local');
    const rows = stdout.trimEnd().split('\n');
    expect(rows[0]).toMatch(/^ENDPOINT\s+STATUS\s+OUTLIER CHECK\s+LB WEIGHT\s+CLUSTER$/);
    expect(rows[1]!.split(/\s{3,}/)).toEqual([`127.0.0.1:${ups['reviews-v3']!.port}`, 'HEALTHY', 'OK', '5', 'outbound|9080|v3|reviews.default.svc.cluster.local']);
    const unhealthy = await meshletCli('proxy-config', 'endpoints', '--admin', admin, '--status', 'unhealthy');
    expect(unhealthy.stdout.trimEnd().split('\n')).toHaveLength(1);
    const all = await meshletCli('proxy-config', 'endpoints', '--admin', admin, '--status', 'healthy', '-o', 'yaml');
    expect(all.stdout.match(/^- endpoint:/gm)).toHaveLength(5);
  });

  it('all prints every table', async () => {
    const { stdout } = await meshletCli('proxy-config', 'all', '--admin', admin);
    for (const h of [/^SERVICE FQDN\s+PORT/m, /^ADDRESSES\s+PORT/m, /^NAME\s+VHOST NAME/m, /^ENDPOINT\s+STATUS/m, /^RESOURCE NAME\s+TYPE/m]) expect(stdout).toMatch(h);
  });

  it('log reads and sets levels through POST /logging', async () => {
    const read = await meshletCli('proxy-config', 'log', '--admin', admin);
    expect(read.stdout).toMatch(/^active loggers:/);
    const set = await meshletCli('proxy-config', 'log', '--admin', admin, '--level', 'admin:debug');
    expect(set.stdout).toContain('levels updated:');
    expect(set.stdout).toMatch(/ {2}admin: debug/);
    await meshletCli('proxy-config', 'log', '--admin', admin, '--level', 'admin:info');
  });

  it('bootstrap prints the bootstrap as loaded; errors name the admin address', async () => {
    const b = JSON.parse((await meshletCli('proxy-config', 'bootstrap', '--admin', admin)).stdout) as { bootstrap: { node: { id: string } } };
    expect(b.bootstrap.node.id).toBe('test-node');
    await expect(meshletCli('proxy-config', 'clusters', '--admin', 'http://127.0.0.1:1')).rejects.toMatchObject({ stderr: expect.stringContaining('cannot reach the admin port at http://127.0.0.1:1') });
    // --pod goes through kubectl port-forward; with no cluster to reach, kubectl's reason is shown.
    await expect(run(process.execPath, [BIN, 'proxy-config', 'clusters', '--pod', 'nope.default'], { timeout: 30_000, env: { ...process.env, KUBECONFIG: '/nonexistent' } })).rejects.toMatchObject({
      stderr: expect.stringMatching(/kubectl/),
    });
    await expect(meshletCli('proxy-config', 'clusters', '--admin', admin, '--direction', 'sideways')).rejects.toMatchObject({ stderr: expect.stringContaining('--direction must be inbound or outbound') });
  });
});
