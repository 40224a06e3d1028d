/**
 * The mesh path end to end: the embedded control plane drives two (three) meshlets over ADS;
 * app → outbound meshlet → mTLS with SPIFFE identities → inbound meshlet → app. Authorization
 * rules from the mesh file are enforced on the inbound side.
 */
import http from 'node:http';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startMesh, type TestMesh } from '../support/mesh';
import { stopAllMeshlets } from '../support/meshlet';

const MESH = `
trust_domain: cluster.local
services:
  - name: front
    namespace: default
    ports: [{ name: http, port: 9180, protocol: http, target_port: 19180 }]
  - name: back
    namespace: default
    ports: [{ name: http, port: 9181, protocol: http, target_port: 19181 }]
  - name: intruder
    namespace: default
    ports: [{ name: http, port: 9182, protocol: http, target_port: 19182 }]
workloads:
  - { name: front-v1, namespace: default, service_account: front, service: front, version: v1, address: "127.0.0.31:19180", inbound_port: 15006, admin_port: 15000 }
  - { name: back-v1, namespace: default, service_account: back, service: back, version: v1, address: "127.0.0.32:19181", inbound_port: 15006, admin_port: 15000 }
  - { name: intruder-v1, namespace: default, service_account: intruder, service: intruder, version: v1, address: "127.0.0.33:19182", inbound_port: 15006, admin_port: 15000 }
authorization:
  - name: back-from-front
    service: back
    action: ALLOW
    from: [{ service_account: front }]
`;

let mesh: TestMesh;
let backApp: http.Server;
const seenAtBack: http.IncomingHttpHeaders[] = [];

beforeAll(async () => {
  backApp = http.createServer((req, res) => {
    seenAtBack.push(req.headers);
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end(`back saw ${req.url}`);
  });
  await new Promise<void>((r) => backApp.listen(19181, '127.0.0.32', r));
  mesh = await startMesh(MESH, ['front-v1', 'back-v1', 'intruder-v1']);
});

afterAll(async () => {
  await mesh?.close();
  await stopAllMeshlets();
  backApp.closeAllConnections();
  await new Promise((r) => backApp.close(r));
});

function request(host: string, port: number, path: string): Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    http
      .get({ host, port, path, agent: false, headers: { host: `back.default.svc.cluster.local:${port}` } }, (res) => {
        let body = '';
        res.on('data', (c) => {
          body += c;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
      })
      .on('error', reject);
  });
}

describe('meshlet ↔ meshlet through the embedded control plane', () => {
  it('is ready once the initial xDS configuration is applied', () => {
    for (const m of mesh.sidecars.values()) expect(m.server.state).toBe('LIVE');
  });

  it('carries app traffic over mTLS and shows the caller SPIFFE identity to the callee', async () => {
    const r = await request('127.0.0.31', 9181, '/hello');
    expect(r.status).toBe(200);
    expect(r.body).toBe('back saw /hello');
    const xfcc = String(seenAtBack[seenAtBack.length - 1]!['x-forwarded-client-cert'] ?? '');
    expect(xfcc).toContain('URI=spiffe://cluster.local/ns/default/sa/front');
    expect(xfcc).toContain('By=spiffe://cluster.local/ns/default/sa/back');
  });

  it('denies a caller the authorization rules do not allow with 403', async () => {
    const before = seenAtBack.length;
    const r = await request('127.0.0.33', 9181, '/hello');
    expect(r.status).toBe(403);
    expect(r.body).toBe('RBAC: access denied');
    expect(seenAtBack.length).toBe(before);
  });

  it('refuses plaintext on the STRICT inbound port', async () => {
    const before = seenAtBack.length;
    const closed = await new Promise<string>((resolve) => {
      let got = '';
      const s = net.connect(15006, '127.0.0.32', () => s.write('GET /hello HTTP/1.1\r\nhost: back\r\n\r\n'));
      s.on('data', (d) => {
        got += d.toString();
      });
      s.on('close', () => resolve(got));
      s.on('error', () => {});
    });
    expect(closed).not.toContain('200');
    expect(seenAtBack.length).toBe(before);
  });

  it('shows dynamic resources in /config_dump', async () => {
    const front = mesh.sidecars.get('front-v1')!;
    const dump = await new Promise<{ configs: Record<string, unknown>[] }>((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port: front.adminPort, path: '/config_dump' }, (res) => {
          let b = '';
          res.on('data', (c) => {
            b += c;
          });
          res.on('end', () => resolve(JSON.parse(b)));
        })
        .on('error', reject);
    });
    const clusters = dump.configs.find((c) => String(c['@type']).endsWith('ClustersConfigDump')) as { dynamic_active_clusters: { cluster: { name: string } }[] };
    expect(clusters.dynamic_active_clusters.map((c) => c.cluster.name)).toContain('outbound|9181|v1|back.default.svc.cluster.local');
    const listeners = dump.configs.find((c) => String(c['@type']).endsWith('ListenersConfigDump')) as { dynamic_listeners: { name: string; active_state?: unknown }[] };
    expect(listeners.dynamic_listeners.some((l) => l.active_state !== undefined)).toBe(true);
  });
});
