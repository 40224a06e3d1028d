/**
 * Istio metrics across a real mesh hop: the embedded control plane drives two meshlets over ADS,
 * traffic goes app → front's outbound → mTLS → back's inbound → app. Each side reports its own
 * view: front as reporter=source with the SPIFFE identities of both ends, back as
 * reporter=destination with mutual_tls, and both with their workload labels from node metadata.
 */
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseMeshOrThrow } from '../../control-plane/mesh';
import { ControlPlaneServer } from '../../control-plane/server';
import { adsBootstrap } from '../support/mesh';
import { type StartedMeshlet, startMeshlet, stopAllMeshlets } from '../support/meshlet';
import { request, scrape, select, sum } from './helpers';
import { INSECURE_DEV } from '../support/mesh';

const MESH = `
trust_domain: cluster.local
services:
  - name: front
    namespace: shop
    ports: [{ name: http, port: 9280, protocol: http, target_port: 19280 }]
  - name: back
    namespace: shop
    ports: [{ name: http, port: 9281, protocol: http, target_port: 19281 }]
workloads:
  - { name: front-v1, namespace: shop, service_account: front, service: front, version: v1, address: "127.0.0.41:19280", inbound_port: 15006, admin_port: 15000 }
  - { name: back-v2, namespace: shop, service_account: back, service: back, version: v2, address: "127.0.0.42:19281", inbound_port: 15006, admin_port: 15000 }
`;

let cp: ControlPlaneServer;
let front: StartedMeshlet;
let back: StartedMeshlet;
let backApp: http.Server;

function sidecar(workload: string, app: string, version: string): Promise<StartedMeshlet> {
  const b = adsBootstrap(workload, cp.port);
  const node = b.node as Record<string, unknown>;
  node.metadata = { WORKLOAD_NAME: workload, NAMESPACE: 'shop', LABELS: { app, version } };
  return startMeshlet(b);
}

beforeAll(async () => {
  backApp = http.createServer((req, res) => {
    res.writeHead(req.url === '/teapot' ? 418 : 200, { 'content-type': 'text/plain' });
    res.end('back');
  });
  await new Promise<void>((r) => backApp.listen(19281, '127.0.0.42', r));
  cp = await ControlPlaneServer.start({
    ...INSECURE_DEV,
    mesh: parseMeshOrThrow(MESH, 'test mesh').mesh,
    port: 0,
    watchMeshFile: false,
  });
  front = await sidecar('front-v1', 'front', 'v1');
  back = await sidecar('back-v2', 'back', 'v2');
  await Promise.all([front.server.initialized, back.server.initialized]);
});

afterAll(async () => {
  await stopAllMeshlets();
  await cp?.close();
  backApp?.closeAllConnections();
  await new Promise((r) => backApp?.close(r));
});

const FRONT_ID = 'spiffe://cluster.local/ns/shop/sa/front';
const BACK_ID = 'spiffe://cluster.local/ns/shop/sa/back';

describe('Istio metrics across a meshlet → meshlet hop', () => {
  beforeAll(async () => {
    const headers = { host: 'back.shop.svc.cluster.local:9281' };
    for (let i = 0; i < 3; i++)
      expect((await request(9281, `/hello/${i}`, { host: '127.0.0.41', headers })).status).toBe(200);
    expect((await request(9281, '/teapot', { host: '127.0.0.41', headers })).status).toBe(418);
  });

  it('front reports as source, with both SPIFFE principals and its own workload', async () => {
    const s = await scrape(front.adminPort);
    const ok = select(s, 'istio_requests_total', { reporter: 'source', response_code: '200' });
    expect(ok).toHaveLength(1);
    expect(ok[0]!.value).toBe(3);
    expect(ok[0]!.labels).toMatchObject({
      source_workload: 'front-v1',
      source_workload_namespace: 'shop',
      source_app: 'front',
      source_version: 'v1',
      source_canonical_service: 'front',
      source_canonical_revision: 'v1',
      source_principal: FRONT_ID,
      destination_principal: BACK_ID,
      destination_workload_namespace: 'shop',
      destination_service: 'back.shop.svc.cluster.local',
      destination_service_name: 'back',
      destination_service_namespace: 'shop',
      request_protocol: 'http',
      response_flags: '-',
    });
    expect(
      sum(s, 'istio_requests_total', { reporter: 'source', response_code: '418', destination_principal: BACK_ID }),
    ).toBe(1);
    // No inbound traffic reached front.
    expect(select(s, 'istio_requests_total', { reporter: 'destination' })).toHaveLength(0);
  });

  it('back reports as destination, over mutual TLS, with the caller identity', async () => {
    const s = await scrape(back.adminPort);
    const ok = select(s, 'istio_requests_total', { reporter: 'destination', response_code: '200' });
    expect(ok).toHaveLength(1);
    expect(ok[0]!.value).toBe(3);
    expect(ok[0]!.labels).toMatchObject({
      source_principal: FRONT_ID,
      source_workload_namespace: 'shop',
      source_workload: 'unknown',
      destination_principal: BACK_ID,
      destination_workload: 'back-v2',
      destination_workload_namespace: 'shop',
      destination_app: 'back',
      destination_version: 'v2',
      // No istio.services on the inbound cluster: the Host header as sent, as istio-proxy does.
      destination_service: 'back.shop.svc.cluster.local:9281',
      connection_security_policy: 'mutual_tls',
    });
    expect(sum(s, 'istio_requests_total', { reporter: 'destination', response_code: '418' })).toBe(1);
    expect(sum(s, 'istio_request_duration_milliseconds_count', { reporter: 'destination' })).toBe(4);
  });

  it('exports xDS and control-plane stats from the ADS client', async () => {
    const s = await scrape(front.adminPort);
    expect(sum(s, 'envoy_control_plane_connected_state')).toBe(1);
    expect(sum(s, 'envoy_cluster_manager_cds_update_success_total')).toBeGreaterThanOrEqual(1);
    expect(sum(s, 'envoy_listener_manager_lds_update_success_total')).toBeGreaterThanOrEqual(1);
    expect(sum(s, 'envoy_listener_manager_lds_update_rejected_total')).toBe(0);
    expect(
      sum(s, 'envoy_cluster_upstream_rq_total', { envoy_cluster_name: 'outbound|9281||back.shop.svc.cluster.local' }),
    ).toBe(4);
  });
});
