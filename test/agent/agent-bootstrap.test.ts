/**
 * `meshlet agent`: the node pilot-agent would build, compared field by field with Istio's golden
 * for the same inputs (pkg/bootstrap/testdata/all_golden.json: its inputs are all.proxycfg plus
 * the harness's ISTIO_VERSION, instance IPs and outlier log path; the expected values below are
 * that golden's node metadata), the injector's real environment turned into Istio's metadata, and
 * a real `meshlet agent` process that opens a token-authenticated TLS ADS stream to an istiod
 * stand-in (a grpc-js server on loopback) with nothing but the environment and files.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, describe, expect, it } from 'vitest';
import { DevCa } from '../../certs/dev-ca';
import { agentBootstrap } from '../../proxy/agent/bootstrap';
import { agentNode, parseDownwardApi, proxyConfigJson } from '../../proxy/agent/node-metadata';
import { decodeBootstrap } from '../../proxy/config/bootstrap';
import { TYPE_URLS } from '../../xds-client/protos';
import { ctx } from '../config/helpers';
import { ScriptedAdsServer } from '../support/scripted-ads-server';
import { closedPort } from '../support/upstreams';

function httpStatus(port: number, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      })
      .on('error', reject);
  });
}

const BIN = join(__dirname, '../../bin/meshlet.js');
const tmp = mkdtempSync(join(tmpdir(), 'meshlet-agent-'));
const children: ChildProcess[] = [];
afterAll(() => {
  for (const c of children) c.kill('SIGKILL');
  rmSync(tmp, { recursive: true, force: true });
});

describe("the node pilot-agent builds, against Istio's golden", () => {
  it('all_golden.json: the same metadata for the same inputs, field by field', () => {
    // all.proxycfg as the golden harness completes it (config_path per test, custom_config_file, status_port).
    const proxyConfig = proxyConfigJson({
      config_path: '/tmp/bootstrap/all',
      binary_path: '/usr/local/bin/envoy',
      service_cluster: 'istio-proxy',
      drain_duration: { seconds: 5 },
      discovery_address: 'mypilot:15011',
      statsd_udp_address: '10.1.1.1:9125',
      envoy_metrics_service: {
        address: 'metrics-service:15000',
        tls_settings: { mode: 'MUTUAL', client_certificate: '/etc/istio/ms/client.pem', private_key: '/etc/istio/ms/key.pem', ca_certificates: '/etc/istio/ms/ca.pem' },
      },
      envoy_access_log_service: { address: 'accesslog-service:15000' },
      proxy_admin_port: 15005,
      control_plane_auth_policy: 'MUTUAL_TLS',
      stat_name_length: 200,
      tracing: { zipkin: { address: 'localhost:6000' } },
      custom_config_file: 'envoy_bootstrap.json',
      status_port: 15020,
    }) as Record<string, unknown>;
    const node = agentNode({
      env: { ISTIO_META_ISTIO_VERSION: 'binary-1.0', OUTLIER_LOG_PATH: '/dev/stdout' },
      proxyConfig,
      instanceIps: ['10.3.3.3', '10.4.4.4', '10.5.5.5', '10.6.6.6'],
    });
    const golden: Record<string, unknown> = {
      ENVOY_PROMETHEUS_PORT: 15090,
      ENVOY_STATUS_PORT: 15021,
      INSTANCE_IPS: '10.3.3.3,10.4.4.4,10.5.5.5,10.6.6.6',
      ISTIO_VERSION: 'binary-1.0',
      OUTLIER_LOG_PATH: '/dev/stdout',
      PILOT_SAN: ['spiffe://cluster.local/ns/istio-system/sa/istio-pilot-service-account'],
      PROXY_CONFIG: {
        binaryPath: '/usr/local/bin/envoy',
        configPath: '/tmp/bootstrap/all',
        controlPlaneAuthPolicy: 'MUTUAL_TLS',
        customConfigFile: 'envoy_bootstrap.json',
        discoveryAddress: 'mypilot:15011',
        drainDuration: '5s',
        envoyAccessLogService: { address: 'accesslog-service:15000' },
        envoyMetricsService: {
          address: 'metrics-service:15000',
          tlsSettings: { caCertificates: '/etc/istio/ms/ca.pem', clientCertificate: '/etc/istio/ms/client.pem', mode: 'MUTUAL', privateKey: '/etc/istio/ms/key.pem' },
        },
        proxyAdminPort: 15005,
        serviceCluster: 'istio-proxy',
        statNameLength: 200,
        statsdUdpAddress: '10.1.1.1:9125',
        statusPort: 15020,
        tracing: { zipkin: { address: 'localhost:6000' } },
      },
    };
    for (const key of Object.keys(golden)) {
      // PILOT_SAN: the golden harness passes the legacy pilot identity; meshlet names the
      // discovery host it verifies (the ADS TLS server name). Only Envoy's own xds cluster read it.
      if (key === 'PILOT_SAN') expect(node.metadata[key], key).toEqual(['mypilot']);
      else expect(node.metadata[key], key).toEqual(golden[key]);
    }
    expect(Object.keys(node.metadata).sort()).toEqual(Object.keys(golden).sort());
    expect(node.cluster).toBe('istio-proxy');
  });

  it("turns the injector's environment into Istio's node id and metadata", () => {
    const env = {
      POD_NAME: 'ratings-v1-84975bc778-pxz2w',
      POD_NAMESPACE: 'default',
      INSTANCE_IP: '10.52.0.34',
      SERVICE_ACCOUNT: 'bookinfo-ratings',
      HOST_IP: '10.128.0.4',
      ISTIO_CPU_LIMIT: '2',
      ISTIO_META_POD_PORTS: '[{"containerPort":9080,"protocol":"TCP"}]',
      ISTIO_META_APP_CONTAINERS: 'ratings',
      ISTIO_META_CLUSTER_ID: 'Kubernetes',
      ISTIO_META_NODE_NAME: 'node-1',
      ISTIO_META_INTERCEPTION_MODE: 'REDIRECT',
      ISTIO_META_WORKLOAD_NAME: 'ratings-v1',
      ISTIO_META_OWNER: 'kubernetes://apis/apps/v1/namespaces/default/deployments/ratings-v1',
      ISTIO_META_MESH_ID: 'cluster.local',
      ISTIO_META_DNS_CAPTURE: 'true',
      ISTIO_META_ISTIO_VERSION: '1.24.0',
      ISTIO_METAJSON_ANNOTATIONS: '{"EXTRA":"from-json"}',
      TRUST_DOMAIN: 'cluster.local',
      PILOT_CERT_PROVIDER: 'istiod',
      CA_ADDR: 'istiod.istio-system.svc:15012',
    };
    const labelsFile = 'app="ratings"\npod-template-hash="84975bc778"\nservice.istio.io/canonical-name="ratings"\nversion="v1"\n';
    const { node, bootstrap } = agentBootstrap({ env, podLabelsFile: labelsFile, proxyConfig: { discoveryAddress: env.CA_ADDR } });
    expect(node.id).toBe('sidecar~10.52.0.34~ratings-v1-84975bc778-pxz2w.default~default.svc.cluster.local');
    expect(node.cluster).toBe('ratings.default');
    expect(node.metadata).toEqual({
      NAME: 'ratings-v1-84975bc778-pxz2w',
      NAMESPACE: 'default',
      SERVICE_ACCOUNT: 'bookinfo-ratings',
      POD_PORTS: '[{"containerPort":9080,"protocol":"TCP"}]',
      APP_CONTAINERS: 'ratings',
      CLUSTER_ID: 'Kubernetes',
      NODE_NAME: 'node-1',
      INTERCEPTION_MODE: 'REDIRECT',
      WORKLOAD_NAME: 'ratings-v1',
      OWNER: 'kubernetes://apis/apps/v1/namespaces/default/deployments/ratings-v1',
      MESH_ID: 'cluster.local',
      DNS_CAPTURE: 'true',
      ISTIO_VERSION: '1.24.0',
      EXTRA: 'from-json',
      LABELS: { app: 'ratings', 'pod-template-hash': '84975bc778', 'service.istio.io/canonical-name': 'ratings', version: 'v1' },
      INSTANCE_IPS: '10.52.0.34',
      PROXY_CONFIG: { discoveryAddress: 'istiod.istio-system.svc:15012' },
      ENVOY_STATUS_PORT: 15021,
      ENVOY_PROMETHEUS_PORT: 15090,
      PILOT_SAN: ['istiod.istio-system.svc'],
    });
    // The bootstrap decodes without errors or warnings.
    const { warnings } = decodeBootstrap(bootstrap, ctx());
    expect(warnings).toEqual([]);
  });

  it('reads downward-API files with quoted values', () => {
    expect(parseDownwardApi('a="x=y"\nb="q\\"uote"\nbad\n')).toEqual({ a: 'x=y', b: 'q"uote' });
  });
});

describe('meshlet agent, started with nothing but the environment and files', () => {
  it('is what meshlet proxy without --bootstrap runs in an Istio pod', () => {
    const env = { PATH: process.env.PATH, POD_NAME: 'a-1', POD_NAMESPACE: 'ns', INSTANCE_IP: '127.0.0.1', PROXY_CONFIG: '{}' };
    const r = spawnSync('node', [BIN, 'proxy', '--validate'], { env, encoding: 'utf8', timeout: 20_000 });
    expect(r.stdout).toMatch(/configuration '.*envoy-rev\.json' OK/);
    expect(r.status).toBe(0);
    const outside = spawnSync('node', [BIN, 'proxy', '--validate'], { env: { PATH: process.env.PATH }, encoding: 'utf8', timeout: 20_000 });
    expect(outside.stderr).toContain('--bootstrap FILE is required');
    expect(outside.status).toBe(1);
  });

  it('opens a token-authenticated TLS ADS stream to istiod carrying the node pilot-agent would send', async () => {
    const ca = await DevCa.create({ trustDomain: 'cluster.local' });
    const istiod = await ca.issueWorkload({ ns: 'istio-system', sa: 'istiod', dnsNames: ['localhost'] });
    const root = join(tmp, 'root-cert.pem');
    const token = join(tmp, 'istio-token');
    writeFileSync(root, istiod.rootCertPem);
    writeFileSync(token, 'projected-sa-token');
    const s = await ScriptedAdsServer.start(
      0,
      grpc.ServerCredentials.createSsl(Buffer.from(istiod.rootCertPem), [{ private_key: Buffer.from(istiod.privateKeyPem ?? ''), cert_chain: Buffer.from(istiod.certChainPem) }], false),
    );
    const adminPort = await closedPort();
    const statusPort = await closedPort();
    try {
      const child = spawn(
        'node',
        [BIN, 'agent', '--token', token, '--root-cert', root, '--status-port', String(statusPort), '--', '--stats-port', '0', '--health-port', '0'],
        {
          env: {
            PATH: process.env.PATH,
            POD_NAME: 'app-1',
            POD_NAMESPACE: 'shop',
            INSTANCE_IP: '127.0.0.1',
            SERVICE_ACCOUNT: 'app',
            ISTIO_META_CLUSTER_ID: 'cluster-7',
            ISTIO_META_WORKLOAD_NAME: 'app',
            PROXY_CONFIG: JSON.stringify({ proxyAdminPort: adminPort }),
            ISTIO_KUBE_APP_PROBERS: JSON.stringify({ '/app-health/app/livez': { tcpSocket: { port: s.port }, timeoutSeconds: 1 } }),
            CA_ADDR: `localhost:${s.port}`,
          },
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      );
      children.push(child);
      let out = '';
      child.stdout?.on('data', (b: Buffer) => (out += b.toString()));
      child.stderr?.on('data', (b: Buffer) => (out += b.toString()));
      const first = await s.next(15_000).catch((e: Error) => {
        throw new Error(`${e.message}\n${out}`);
      });
      expect(s.metadata[0]!.get('authorization')).toEqual(['Bearer projected-sa-token']);
      expect(s.metadata[0]!.get('clusterid')).toEqual(['cluster-7']);
      const req = first.req as { node?: { id?: string; cluster?: string; metadata?: unknown }; type_url?: string };
      expect([TYPE_URLS.cluster, TYPE_URLS.listener]).toContain(req.type_url);
      expect(req.node?.id).toBe('sidecar~127.0.0.1~app-1.shop~shop.svc.cluster.local');
      expect(req.node?.cluster).toBe('app.shop');
      expect(JSON.stringify(req.node?.metadata)).toContain('cluster-7');
      // The agent port runs the app probe the injector moved there.
      expect(await httpStatus(statusPort, '/app-health/app/livez')).toBe(200);
      expect(await httpStatus(statusPort, '/app-health/app/readyz')).toBe(404);
      child.kill('SIGTERM');
    } finally {
      s.stop();
    }
  });
});
