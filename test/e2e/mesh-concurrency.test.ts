/**
 * Concurrent traffic across the mesh hop: many parallel requests make the outbound sidecar open
 * and reconnect several mTLS connections at once. (This caught two real bugs: TLS resumption
 * without a session id context, and lost peer identity on resumed sessions.)
 */
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_WORKLOADS, demoMeshYaml } from '../../proxy/cli/demo-mesh';
import { startMesh, type TestMesh } from '../support/mesh';
import { stopAllMeshlets } from '../support/meshlet';

// The demo's mesh, moved to 127.0.0.7x so it can run beside the demo test.
const shift = (s: string) => s.replace(/127\.0\.0\.6(\d)/g, '127.0.0.7$1');
let m: TestMesh;
const apps: http.Server[] = [];

beforeAll(async () => {
  for (const w of DEMO_WORKLOADS.slice(1)) {
    const s = http.createServer((_q, r) => {
      r.end(JSON.stringify({ version: w.version }));
    });
    await new Promise<void>((r) => s.listen(w.appPort, shift(w.ip), r));
    apps.push(s);
  }
  m = await startMesh(shift(demoMeshYaml()), DEMO_WORKLOADS.map((w) => w.name));
});

afterAll(async () => {
  await m?.close();
  await stopAllMeshlets();
  for (const s of apps) {
    s.closeAllConnections();
    s.close();
  }
});

describe('mesh under concurrency', () => {
  it('answers every one of 960 requests sent 32 at a time, split about 90/10', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
    const codes = new Map<number, number>();
    const versions = new Map<string, number>();
    const one = () =>
      new Promise<void>((res) => {
        http
          .get({ host: '127.0.0.71', port: 9091, path: '/', agent, headers: { host: 'backend.demo.svc.cluster.local' } }, (r) => {
            let b = '';
            r.on('data', (c) => {
              b += c;
            });
            r.on('end', () => {
              codes.set(r.statusCode ?? 0, (codes.get(r.statusCode ?? 0) ?? 0) + 1);
              if (r.statusCode === 200) {
                const v = (JSON.parse(b) as { version: string }).version;
                versions.set(v, (versions.get(v) ?? 0) + 1);
              }
              res();
            });
          })
          .on('error', () => {
            codes.set(0, (codes.get(0) ?? 0) + 1);
            res();
          });
      });
    for (let i = 0; i < 30; i++) await Promise.all(Array.from({ length: 32 }, one));
    agent.destroy();
    expect(Object.fromEntries(codes)).toEqual({ 200: 960 });
    const v2 = versions.get('v2') ?? 0;
    expect(v2).toBeGreaterThan(40);
    expect(v2).toBeLessThan(160);
  }, 60_000);
});
