/**
 * Issue 15 bug 2: file-based xDS (lds_config / cds_config with `path` or `path_config_source`)
 * validated and then ran with nothing. Now, as in Envoy: the files are loaded at start, reloaded
 * when moved into place (atomic rename, `sed -i`, a watched_directory swap), applied through the
 * xDS apply path (a bad file is rejected, shown in /config_dump's error_state, the last good config
 * keeps serving). The configs are Envoy's dynamic-config-fs example and quick-start, with loopback
 * addresses.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { type StartedMeshlet, startMeshlet, stopAllMeshlets } from '../support/meshlet';
import { closeAll, closedPort, type HttpEcho, startHttpEcho } from '../support/upstreams';
import { request } from '../telemetry/helpers';

let dir: string;
let service1: HttpEcho;
let service2: HttpEcho;

/** examples/dynamic-config-fs/configs/lds.yaml (note `filters:` given one mapping, as Envoy accepts). */
const ldsYaml = (port: number) => `resources:
- "@type": type.googleapis.com/envoy.config.listener.v3.Listener
  name: listener_0
  address:
    socket_address:
      address: 127.0.0.1
      port_value: ${port}
  filter_chains:
  - filters:
      name: envoy.filters.network.http_connection_manager
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
        stat_prefix: ingress_http
        http_filters:
        - name: envoy.filters.http.router
        route_config:
          name: local_route
          virtual_hosts:
          - name: local_service
            domains:
            - "*"
            routes:
            - match:
                prefix: "/"
              route:
                cluster: example_proxy_cluster
`;

/** examples/dynamic-config-fs/configs/cds.yaml, "service1" being a loopback port. */
const cdsYaml = (port: number) => `resources:
- "@type": type.googleapis.com/envoy.config.cluster.v3.Cluster
  name: example_proxy_cluster
  connect_timeout: 1s
  type: STRICT_DNS
  load_assignment:
    cluster_name: example_proxy_cluster
    endpoints:
    - lb_endpoints:
      - endpoint:
          address:
            socket_address:
              address: 127.0.0.1
              port_value: ${port}
`;

/** Write by atomic rename, as Envoy's docs ask. */
function moveInto(path: string, text: string): void {
  const tmp = `${path}.tmp`;
  writeFileSync(tmp, text);
  renameSync(tmp, path);
}

async function until(cond: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 25));
  }
}

const upstreamOf = async (port: number) => {
  const r = await request(port, '/').catch(() => undefined);
  return r?.status === 200 ? String(r.headers['x-upstream']) : `status ${r?.status ?? 'error'}`;
};

async function dump(m: StartedMeshlet): Promise<{ configs: Record<string, unknown>[] }> {
  return JSON.parse((await request(m.adminPort, '/config_dump')).body) as { configs: Record<string, unknown>[] };
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'meshlet-xds-file-'));
  service1 = await startHttpEcho('service1');
  service2 = await startHttpEcho('service2');
});

afterAll(async () => {
  await stopAllMeshlets();
  await closeAll();
  rmSync(dir, { recursive: true, force: true });
});

describe('dynamic-config-fs (lds_config/cds_config with path)', () => {
  let m: StartedMeshlet;
  let port = 0;
  const cds = () => join(dir, 'cds.yaml');

  beforeAll(async () => {
    port = await closedPort();
    writeFileSync(join(dir, 'lds.yaml'), ldsYaml(port));
    writeFileSync(cds(), cdsYaml(service1.port));
    // examples/dynamic-config-fs/envoy.yaml
    const envoyYaml = `node:
  id: id_1
  cluster: test

dynamic_resources:
  cds_config:
    path: ${cds()}
  lds_config:
    path: ${join(dir, 'lds.yaml')}

admin:
  address:
    socket_address:
      address: 127.0.0.1
      port_value: 0
`;
    m = await startMeshlet(parse(envoyYaml) as Record<string, unknown>);
    await m.server.initialized;
  });

  it('serves from the files at start and shows them in /config_dump', async () => {
    expect(m.server.ready).toBe(true);
    expect(await upstreamOf(port)).toBe('service1');
    const clusters = (await dump(m)).configs[1] as { dynamic_active_clusters: { cluster: unknown }[] };
    expect(JSON.stringify(clusters.dynamic_active_clusters)).toContain(`"port_value":${service1.port}`);
  });

  it('follows `sed -i` on cds.yaml (verify.sh), then a rename', async () => {
    execFileSync('sed', ['-i', `s/port_value: ${service1.port}/port_value: ${service2.port}/`, cds()]);
    await until(async () => (await upstreamOf(port)) === 'service2');
    const clusters = (await dump(m)).configs[1] as { dynamic_active_clusters: { cluster: unknown }[] };
    expect(JSON.stringify(clusters.dynamic_active_clusters)).toContain(`"port_value":${service2.port}`);
    moveInto(cds(), cdsYaml(service1.port));
    await until(async () => (await upstreamOf(port)) === 'service1');
  });

  it('rejects a bad file like a NACK: error_state in /config_dump, last good config serving', async () => {
    moveInto(cds(), cdsYaml(service2.port).replace('connect_timeout: 1s', 'connect_timeout: 1s\n  no_such_field: 1'));
    await until(async () => JSON.stringify(await dump(m)).includes('no_such_field'));
    const d = await dump(m);
    const active = (d.configs[1] as { dynamic_active_clusters: { cluster: { name: string }; error_state?: { details: string } }[] }).dynamic_active_clusters;
    const c = active.find((x) => x.cluster.name === 'example_proxy_cluster')!;
    expect(c.error_state?.details).toContain('Cluster "example_proxy_cluster"');
    expect(c.error_state?.details).toContain('no_such_field');
    expect(await upstreamOf(port)).toBe('service1');

    // Not even YAML: the type's error_state says why; still serving.
    moveInto(cds(), 'resources: [ {');
    await until(async () => JSON.stringify(await dump(m)).includes('not valid YAML or JSON'));
    expect(await upstreamOf(port)).toBe('service1');

    // A good file again clears the error.
    moveInto(cds(), cdsYaml(service2.port));
    await until(async () => (await upstreamOf(port)) === 'service2');
    expect(JSON.stringify(await dump(m))).not.toContain('no_such_field');
  });

  it('a removed listener stops, an added one serves', async () => {
    const port2 = await closedPort();
    const two = ldsYaml(port2).replace('name: listener_0', 'name: listener_1');
    moveInto(join(dir, 'lds.yaml'), two);
    await until(async () => (await upstreamOf(port2)) === 'service2');
    await until(() => m.server.listeners.get('listener_0') === undefined);
  });
});

describe('quick-start configuration-dynamic-filesystem, path_config_source with watched_directory', () => {
  it('reloads when the watched directory swaps its data link (Kubernetes ConfigMap style)', async () => {
    const root = join(dir, 'cm');
    mkdirSync(join(root, 'v1'), { recursive: true });
    mkdirSync(join(root, 'v2'), { recursive: true });
    const port = await closedPort();
    writeFileSync(join(root, 'v1', 'lds.yaml'), ldsYaml(port));
    writeFileSync(join(root, 'v1', 'cds.yaml'), cdsYaml(service1.port));
    writeFileSync(join(root, 'v2', 'lds.yaml'), ldsYaml(port));
    writeFileSync(join(root, 'v2', 'cds.yaml'), cdsYaml(service2.port));
    symlinkSync('v1', join(root, '..data'));
    const source = (f: string) => ({ resource_api_version: 'V3', path_config_source: { path: join(root, '..data', f), watched_directory: { path: root } } });
    // docs/root/start/quick-start/_include/envoy-dynamic-filesystem-demo.yaml, with path_config_source.
    const m = await startMeshlet({
      node: { cluster: 'test-cluster', id: 'test-id' },
      dynamic_resources: { cds_config: source('cds.yaml'), lds_config: source('lds.yaml') },
      admin: { address: { socket_address: { address: '127.0.0.1', port_value: 0 } } },
    });
    await m.server.initialized;
    expect(await upstreamOf(port)).toBe('service1');
    symlinkSync('v2', join(root, '..data_tmp'));
    renameSync(join(root, '..data_tmp'), join(root, '..data'));
    await until(async () => (await upstreamOf(port)) === 'service2');
  });
});

describe('validation', () => {
  it('a file source where meshlet does not support one is rejected with its path', async () => {
    const { decodeBootstrap } = await import('../../proxy/config/bootstrap');
    const { createRegistries } = await import('../../proxy/registry');
    expect(() =>
      decodeBootstrap({
        node: { id: 'a', cluster: 'b' },
        dynamic_resources: { cds_config: { path: '/x/cds.yaml' } },
        static_resources: {
          clusters: [{ name: 'c', type: 'EDS', eds_cluster_config: { eds_config: { path_config_source: { path: '/x/eds.yaml' } } } }],
        },
      }, { httpFilters: createRegistries().httpFilters }),
    ).toThrow(/eds_config\.path_config_source: file-based config sources are supported by meshlet for lds_config and cds_config only/);
  });
});
