/**
 * The same sidecar-to-sidecar path as mesh.test.ts, with the sidecars on the incremental (delta)
 * ADS variant, and a mesh file edit pushed live: the traffic split moves to the new version.
 */
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startMesh, type TestMesh } from '../support/mesh';
import { stopAllMeshlets } from '../support/meshlet';
import { parseMeshOrThrow } from '../../control-plane/mesh';

const mesh = (v2weight: number) => `
trust_domain: cluster.local
services:
  - name: web
    namespace: shop
    ports: [{ name: http, port: 9280, protocol: http, target_port: 19280 }]
  - name: api
    namespace: shop
    ports: [{ name: http, port: 9281, protocol: http, target_port: 19281 }]
workloads:
  - { name: web-v1, namespace: shop, service_account: web, service: web, version: v1, address: "127.0.0.41:19280", inbound_port: 15006, admin_port: 15000 }
  - { name: api-v1, namespace: shop, service_account: api, service: api, version: v1, address: "127.0.0.42:19281", inbound_port: 15006, admin_port: 15000 }
  - { name: api-v2, namespace: shop, service_account: api, service: api, version: v2, address: "127.0.0.43:19281", inbound_port: 15006, admin_port: 15000 }
traffic:
  - service: api
    namespace: shop
    splits: [${v2weight === 0 ? '{ version: v1, weight: 100 }' : v2weight === 100 ? '{ version: v2, weight: 100 }' : `{ version: v1, weight: ${100 - v2weight} }, { version: v2, weight: ${v2weight} }`}]
`;

let m: TestMesh;
const apps: http.Server[] = [];

beforeAll(async () => {
  for (const [ip, name] of [
    ['127.0.0.42', 'api-v1'],
    ['127.0.0.43', 'api-v2'],
  ] as const) {
    const s = http.createServer((req, res) => {
      res.writeHead(200, { 'x-version': name });
      res.end(name);
    });
    await new Promise<void>((r) => s.listen(19281, ip, r));
    apps.push(s);
  }
  m = await startMesh(mesh(0), ['web-v1', 'api-v1', 'api-v2'], {}, { delta: true });
});

afterAll(async () => {
  await m?.close();
  await stopAllMeshlets();
  for (const s of apps) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});

function call(): Promise<string> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.41', port: 9281, path: '/', agent: false, headers: { host: 'api.shop.svc.cluster.local' } }, (res) => {
        let b = '';
        res.on('data', (c) => {
          b += c;
        });
        res.on('end', () => resolve(`${res.statusCode} ${b}`));
      })
      .on('error', reject);
  });
}

describe('delta ADS sidecars', () => {
  it('serve the mesh and follow a live traffic-split change', async () => {
    for (let i = 0; i < 20; i++) expect(await call()).toBe('200 api-v1');
    m.cp.setMesh(parseMeshOrThrow(mesh(100)).mesh);
    const end = Date.now() + 10_000;
    let last = '';
    while (Date.now() < end) {
      last = await call();
      if (last === '200 api-v2') break;
      await new Promise((res) => setTimeout(res, 20));
    }
    expect(last).toBe('200 api-v2');
    for (let i = 0; i < 20; i++) expect(await call()).toBe('200 api-v2');
  });
});
