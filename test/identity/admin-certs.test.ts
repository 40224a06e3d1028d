/**
 * Admin `/certs` after a rotation, through the admin port: the current workload certificate
 * (serial, SPIFFE URI SAN, not-after) and the trust bundle, in Envoy's JSON shape, follow the
 * certificates the embedded control plane re-issues over SDS.
 */
import http from 'node:http';
import { X509Certificate } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RotationEvent } from '../../certs/store';
import { startMesh, type TestMesh } from '../support/mesh';
import { stopAllMeshlets } from '../support/meshlet';

const MESH = `
trust_domain: cluster.local
services:
  - name: certsvc
    namespace: adm
    ports: [{ name: http, port: 9580, protocol: http, target_port: 19580 }]
workloads:
  - { name: certsvc-v1, namespace: adm, service_account: certsvc, service: certsvc, address: "127.0.0.151:19580" }
`;

interface EnvoyCert {
  path: string;
  serial_number: string;
  subject_alt_names: Record<string, string>[];
  days_until_expiration: string;
  valid_from: string;
  expiration_time: string;
}

let mesh: TestMesh;

beforeAll(async () => {
  mesh = await startMesh(MESH, ['certsvc-v1'], { certLifetimeMs: 10 * 60_000, certRotateAfterMs: 1_500 });
});

afterAll(async () => {
  await mesh?.close();
  await stopAllMeshlets();
});

function certs(port: number): Promise<{ certificates: { ca_cert: EnvoyCert[]; cert_chain: EnvoyCert[] }[] }> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: '/certs', agent: false }, (res) => {
        let b = '';
        res.on('data', (c) => (b += c));
        res.on('end', () => resolve(JSON.parse(b)));
      })
      .on('error', reject);
  });
}

describe('admin /certs', () => {
  it('shows the rotated workload certificate and the trust bundle', async () => {
    const sidecar = mesh.sidecars.get('certsvc-v1')!;
    const first = sidecar.server.certs.identity()!.chain[0]!.serialNumber;
    const rotated = await new Promise<RotationEvent>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('no rotation within 10 s')), 10_000);
      const on = (e: RotationEvent): void => {
        if (e.name !== 'default' || e.serial === first) return;
        clearTimeout(t);
        sidecar.server.certs.off('rotate', on);
        resolve(e);
      };
      sidecar.server.certs.on('rotate', on);
    });
    expect(rotated.previousSerial).toBe(first);

    const body = await certs(sidecar.adminPort);
    expect(body.certificates).toHaveLength(1);
    const [entry] = body.certificates;
    const leaf = entry!.cert_chain[0]!;
    const current = sidecar.server.certs.identity()!.chain[0]!;
    expect(current.serialNumber).not.toBe(first);
    expect(leaf.path).toBe('secret:default');
    expect(leaf.serial_number).toBe(current.serialNumber.toLowerCase());
    expect(leaf.subject_alt_names).toEqual([{ uri: 'spiffe://cluster.local/ns/adm/sa/certsvc' }]);
    expect(leaf.expiration_time).toBe(new Date(current.validTo).toISOString());
    // 10-minute certificates: zero whole days left, and not-after in the future.
    expect(leaf.days_until_expiration).toBe('0');
    expect(Date.parse(leaf.expiration_time)).toBeGreaterThan(Date.now());

    const root = new X509Certificate(mesh.cp.ca.rootCertPem);
    expect(entry!.ca_cert).toHaveLength(1);
    expect(entry!.ca_cert[0]!.path).toBe('secret:ROOTCA');
    expect(entry!.ca_cert[0]!.serial_number).toBe(root.serialNumber.toLowerCase());
    expect(entry!.ca_cert[0]!.expiration_time).toBe(new Date(root.validTo).toISOString());
  });
});
