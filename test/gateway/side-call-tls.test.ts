/**
 * Issue 18.10: side calls use their cluster's transport_socket like every other upstream
 * connection. Each service here speaks only mTLS (it requires a client certificate from the mesh
 * CA): the remote JWKS / ext_authz HTTP endpoint (HTTPS), the ext_authz and rate limit gRPC
 * services, and the gRPC health service. The clusters carry an UpstreamTlsContext with the
 * client certificate, the trusted CA and the server's SPIFFE ID; a cluster that expects another
 * identity must fail (the SAN check applies to side calls too).
 */
import https from 'node:https';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DevCa, type IssuedCertificate } from '../../certs/dev-ca';
import type { GrpcTarget } from '../../proxy/config/filters/grpc-service';
import { authorizationService, closeServiceClients, httpCall, rateLimitService, unaryCall } from '../../proxy/http/filters/service-client';
import { bootstrap, type StartedMeshlet, startMeshlet, staticCluster, stopAllMeshlets } from '../support/meshlet';

const TD = 'cluster.local';
const UPSTREAM_TLS = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext';
const H2 = { typed_extension_protocol_options: { 'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': { '@type': 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions', explicit_http_config: { http2_protocol_options: {} } } } };

let ca: DevCa;
let serverId: IssuedCertificate;
let clientId: IssuedCertificate;
let httpsServer: https.Server;
let grpcServer: grpc.Server;
let httpsPort = 0;
let grpcPort = 0;
let m: StartedMeshlet;
const seenClients: string[] = [];

function tlsSocket(expectSa: string): Record<string, unknown> {
  return {
    name: 'envoy.transport_sockets.tls',
    typed_config: {
      '@type': UPSTREAM_TLS,
      common_tls_context: {
        tls_certificates: [{ certificate_chain: { inline_string: clientId.certChainPem }, private_key: { inline_string: clientId.privateKeyPem } }],
        validation_context: {
          trusted_ca: { inline_string: ca.rootCertPem },
          match_typed_subject_alt_names: [{ san_type: 'URI', matcher: { exact: `spiffe://${TD}/ns/default/sa/${expectSa}` } }],
        },
      },
    },
  };
}

function target(cluster: string): GrpcTarget {
  return { clusterName: cluster, authority: cluster, timeoutMs: 3_000, initialMetadata: [] };
}

beforeAll(async () => {
  ca = await DevCa.create({ trustDomain: TD });
  serverId = await ca.issueWorkload({ ns: 'default', sa: 'authz' });
  clientId = await ca.issueWorkload({ ns: 'default', sa: 'gateway' });
  httpsServer = https.createServer(
    { cert: serverId.certChainPem, key: serverId.privateKeyPem, ca: ca.rootCertPem, requestCert: true, rejectUnauthorized: true },
    (req, res) => {
      const peer = (req.socket as import('node:tls').TLSSocket).getPeerCertificate();
      seenClients.push(peer.subjectaltname ?? '');
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ keys: [], path: req.url }));
    },
  );
  await new Promise<void>((r) => httpsServer.listen(0, '127.0.0.1', r));
  httpsPort = (httpsServer.address() as { port: number }).port;

  grpcServer = new grpc.Server();
  grpcServer.addService(authorizationService().service, {
    Check: (_call: unknown, cb: (e: null, r: unknown) => void) => cb(null, { status: { code: 0 }, ok_response: {} }),
  });
  grpcServer.addService(rateLimitService().service, {
    ShouldRateLimit: (_call: unknown, cb: (e: null, r: unknown) => void) => cb(null, { overall_code: 'OVER_LIMIT' }),
  });
  grpcServer.register(
    '/grpc.health.v1.Health/Check',
    (_call: unknown, cb: (e: null, r: Buffer) => void) => cb(null, Buffer.from([0x08, 0x01])), // SERVING
    (b: Buffer) => b,
    (b: Buffer) => b,
    'unary',
  );
  const creds = grpc.ServerCredentials.createSsl(Buffer.from(ca.rootCertPem), [{ cert_chain: Buffer.from(serverId.certChainPem), private_key: Buffer.from(serverId.privateKeyPem!) }], true);
  grpcPort = await new Promise<number>((resolve, reject) => grpcServer.bindAsync('127.0.0.1:0', creds, (e, p) => (e ? reject(e) : resolve(p))));

  m = await startMeshlet(
    bootstrap(
      [],
      [
        staticCluster('https_svc', [httpsPort], { transport_socket: tlsSocket('authz') }),
        staticCluster('https_wrong_id', [httpsPort], { transport_socket: tlsSocket('someone-else') }),
        staticCluster('grpc_svc', [grpcPort], { ...H2, transport_socket: tlsSocket('authz') }),
        staticCluster('grpc_wrong_id', [grpcPort], { ...H2, transport_socket: tlsSocket('someone-else') }),
        staticCluster('grpc_hc', [grpcPort], {
          ...H2,
          transport_socket: tlsSocket('authz'),
          health_checks: [{ timeout: '1s', interval: '0.1s', no_traffic_interval: '0.1s', unhealthy_threshold: 1, healthy_threshold: 1, grpc_health_check: {} }],
        }),
      ],
    ),
  );
});

afterAll(async () => {
  closeServiceClients();
  await stopAllMeshlets();
  httpsServer.closeAllConnections();
  await new Promise((r) => httpsServer.close(r));
  grpcServer.forceShutdown();
});

function grpcCall(cluster: string, service: 'auth' | 'ratelimit', method: string): Promise<string> {
  return new Promise((resolve) => {
    unaryCall(m.server.clusters, target(cluster), service, method, {}, (err, res) => resolve(err ? `error: ${err.message}` : JSON.stringify(res)));
  });
}

describe('side calls over the cluster transport socket (mTLS-only services)', () => {
  it('HTTP side calls (remote JWKS, ext_authz http_service) use the cluster TLS and client certificate', async () => {
    const r = await httpCall(m.server.clusters, 'https_svc', { method: 'GET', path: '/.well-known/jwks.json', host: 'idp.example', headers: [], timeoutMs: 3_000 });
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body.toString()).path).toBe('/.well-known/jwks.json');
    expect(seenClients.at(-1)).toContain(`spiffe://${TD}/ns/default/sa/gateway`);
    await expect(
      httpCall(m.server.clusters, 'https_wrong_id', { method: 'GET', path: '/x', host: 'idp.example', headers: [], timeoutMs: 3_000 }),
    ).rejects.toThrow(/does not match/);
  });

  it('gRPC side calls (ext_authz, rate limit service) use the cluster TLS and check the server identity', async () => {
    const check = await grpcCall('grpc_svc', 'auth', 'Check');
    expect(check).toMatch(/"status"/);
    const rl = await grpcCall('grpc_svc', 'ratelimit', 'ShouldRateLimit');
    expect(rl).toContain('OVER_LIMIT');
    expect(await grpcCall('grpc_wrong_id', 'auth', 'Check')).toMatch(/^error: /);
  });

  it('gRPC health checks use the cluster TLS', async () => {
    const h = m.server.clusters.get('grpc_hc')!.hosts[0]!;
    const by = Date.now() + 10_000;
    while (h.failedActiveHealthCheck && Date.now() < by) await new Promise((r) => setTimeout(r, 50));
    expect(h.failedActiveHealthCheck).toBe(false);
  });
});
