/**
 * The bootstrap `meshlet inject` writes, end to end on loopback: the embedded control plane
 * serves a one-workload mesh; a meshlet started from the injected bootstrap (its `xds-grpc`
 * cluster reaches the control plane by host name, `localhost`, as it would reach
 * meshlet-control-plane.meshlet-system.svc in a cluster) is selected by its `<name>.<namespace>`
 * node id, receives listeners, clusters, endpoints and its SPIFFE certificate, becomes ready, and
 * carries a request from its outbound listener through its own mTLS inbound listener to the app.
 * Only the admin port is changed (to 0), so parallel tests cannot collide on 15000.
 */
import http from 'node:http';
import net from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { parseMesh } from '../../control-plane/mesh';
import { ControlPlaneServer } from '../../control-plane/server';
import { parseBootstrapText } from '../../proxy/config/bootstrap';
import { injectYaml } from '../../proxy/inject/inject';
import { startMeshlet, stopAllMeshlets } from '../support/meshlet';
import { closeAll, startHttpEcho } from '../support/upstreams';
import { INSECURE_DEV } from '../support/mesh';

let cp: ControlPlaneServer | undefined;
afterAll(async () => {
  await stopAllMeshlets();
  await cp?.close();
  await closeAll();
});

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

function get(port: number, path: string, host?: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent: false, headers: host ? { host } : {}, timeout: 5_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        body += c;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (e) => resolve({ status: 0, body: e.message }));
  });
}

describe('an injected bootstrap against the embedded control plane', () => {
  it('gets its configuration and certificate, becomes ready and serves over mTLS', async () => {
    const app = await startHttpEcho('backend-app');
    const [svcPort, inboundPort, adminPort] = [await freePort(), await freePort(), await freePort()];
    const mesh = parseMesh(`
trust_domain: cluster.local
services:
  - { name: backend, namespace: shop, ports: [{ name: http, port: ${svcPort}, protocol: http, target_port: ${app.port} }] }
workloads:
  - { name: backend-v1, namespace: shop, service_account: backend, service: backend, version: v1,
      address: "127.0.0.1:${app.port}", inbound_port: ${inboundPort}, admin_port: ${adminPort} }
`);
    expect(mesh.ok ? [] : mesh.errors).toEqual([]);
    if (!mesh.ok) return;
    cp = await ControlPlaneServer.start({ mesh: mesh.mesh, host: '127.0.0.1', port: 0, ...INSECURE_DEV });

    const out = injectYaml(
      `apiVersion: apps/v1
kind: Deployment
metadata: { name: backend-v1, namespace: shop }
spec:
  selector: { matchLabels: { app: backend } }
  template:
    metadata: { labels: { app: backend, version: v1 } }
    spec: { containers: [{ name: app, image: example/backend:1 }] }
`,
      {
        image: 'meshlet:test',
        initImage: 'meshlet-init:test',
        controlPlane: `localhost:${cp.port}`,
        proxyUid: 1337,
        nativeSidecar: true,
        defaultNamespace: 'default',
        drainTimeS: 1,
        version: 'test',
      },
    );
    const cm = parseAllDocuments(out.yaml)
      .map((d) => d.toJS() as { kind: string; data?: Record<string, string> })
      .find((d) => d.kind === 'ConfigMap')!;
    const raw = parseBootstrapText(cm.data!['bootstrap.yaml']!, 'bootstrap.yaml') as {
      admin: { address: { socket_address: { port_value: number } } };
    };
    expect(raw.admin.address.socket_address.port_value).toBe(15000);
    raw.admin.address.socket_address.port_value = 0;

    const m = await startMeshlet(raw as unknown as Record<string, unknown>);
    expect(m.warnings).toEqual([]);
    const deadline = Date.now() + 20_000;
    let ready = await get(m.adminPort, '/ready');
    while (ready.status !== 200 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
      ready = await get(m.adminPort, '/ready');
    }
    expect(ready.status).toBe(200);
    expect(ready.body.trim()).toBe('LIVE');

    const certs = JSON.parse((await get(m.adminPort, '/certs')).body) as {
      certificates: { cert_chain: { subject_alt_names: { uri?: string }[] }[] }[];
    };
    expect(certs.certificates[0]!.cert_chain[0]!.subject_alt_names).toContainEqual({ uri: 'spiffe://cluster.local/ns/shop/sa/backend' });

    const r = await get(svcPort, '/items', 'backend.shop.svc.cluster.local');
    expect(r.status).toBe(200);
    const seen = JSON.parse(r.body) as { upstream: string; headers: Record<string, string> };
    expect(seen.upstream).toBe('backend-app');
    // The inbound side terminated mTLS: the app sees the caller's verified SPIFFE ID.
    expect(seen.headers['x-forwarded-client-cert']).toContain('URI=spiffe://cluster.local/ns/shop/sa/backend');
  });
});
