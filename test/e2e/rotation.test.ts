/**
 * Issue 4's rotation acceptance: requests flow continuously for 10 s through two meshlets while
 * the embedded control plane re-issues workload certificates every 2.5 s (pushed over SDS); no
 * request fails, and a new handshake presents the newest serial.
 */
import http from 'node:http';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startMesh, type TestMesh } from '../support/mesh';
import { stopAllMeshlets } from '../support/meshlet';

const MESH = `
trust_domain: cluster.local
services:
  - name: client
    namespace: rot
    ports: [{ name: http, port: 9380, protocol: http, target_port: 19380 }]
  - name: server
    namespace: rot
    ports: [{ name: http, port: 9381, protocol: http, target_port: 19381 }]
workloads:
  - { name: client-v1, namespace: rot, service_account: client, service: client, version: v1, address: "127.0.0.51:19380", inbound_port: 15006, admin_port: 15000 }
  - { name: server-v1, namespace: rot, service_account: server, service: server, version: v1, address: "127.0.0.52:19381", inbound_port: 15006, admin_port: 15000 }
`;

let m: TestMesh;
let app: http.Server;

beforeAll(async () => {
  app = http.createServer((_req, res) => {
    res.writeHead(200);
    res.end('ok');
  });
  await new Promise<void>((r) => app.listen(19381, '127.0.0.52', r));
  m = await startMesh(MESH, ['client-v1', 'server-v1'], { certLifetimeMs: 10 * 60_000, certRotateAfterMs: 2_500 });
});

afterAll(async () => {
  await m?.close();
  await stopAllMeshlets();
  app.closeAllConnections();
  await new Promise((r) => app.close(r));
});

function call(agent: http.Agent | false): Promise<number> {
  return new Promise((resolve) => {
    http
      .get({ host: '127.0.0.51', port: 9381, path: '/', agent, headers: { host: 'server.rot.svc.cluster.local' } }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      })
      .on('error', () => resolve(0));
  });
}

describe('certificate rotation under load', () => {
  it('rotates three times in 10 s with zero failed requests; new handshakes see the new serial', async () => {
    const server = m.sidecars.get('server-v1')!.server;
    const serials: string[] = [server.certs.identity()!.chain[0]!.serialNumber];
    server.certs.on('rotate', (e: { name: string; serial: string }) => {
      if (e.name === 'default') serials.push(e.serial);
    });
    const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
    const statuses: number[] = [];
    const end = Date.now() + 10_500;
    let i = 0;
    while (Date.now() < end && i < 100_000) {
      // Mostly keep-alive traffic, with a fresh downstream connection every 10th request.
      const batch = await Promise.all([call(agent), call(agent), call(i % 10 === 0 ? false : agent)]);
      statuses.push(...batch);
      i++;
    }
    agent.destroy();
    expect(serials.length).toBeGreaterThanOrEqual(4);
    expect(statuses.length).toBeGreaterThan(300);
    expect(statuses.filter((s) => s !== 200)).toEqual([]);

    // A new handshake to the server sidecar presents the latest certificate.
    const ca = m.cp.ca;
    const client = await ca.issueWorkload({ ns: 'rot', sa: 'client' });
    const presented = await new Promise<string>((resolve, reject) => {
      const s = tls.connect({ host: '127.0.0.52', port: 15006, ca: ca.rootCertPem, cert: client.certChainPem, key: client.privateKeyPem, checkServerIdentity: () => undefined, ALPNProtocols: ['http/1.1'] });
      s.on('secureConnect', () => {
        resolve(s.getPeerCertificate().serialNumber);
        s.destroy();
      });
      s.on('error', reject);
    });
    expect(presented.toUpperCase()).toBe(serials[serials.length - 1]!.toUpperCase());
    expect(presented.toUpperCase()).not.toBe(serials[0]!.toUpperCase());
  }, 30_000);
});
