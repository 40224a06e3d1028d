/**
 * deploy/kubernetes runs the authenticated path, checked with real gRPC on loopback as far as it
 * can be without a cluster (there is no kube-apiserver here: the API server's JWKS is stood in by
 * a JWKS file and its projected tokens by dev tokens with the same claims and the issuer the
 * manifest names). The CA is made with openssl exactly as the README says; the control plane runs
 * with the manifest's mesh and issuer; each injected pod's bootstrap (from app-injected.yaml, with
 * the pod's mount paths pointed at files here) then
 *  - gets its certificate by CSR with its token, for a key made locally, verifying the control
 *    plane's TLS port against the root ConfigMap's content under the Service's DNS name;
 *  - opens ADS over TLS with its channel and call credentials and receives its configuration and
 *    the trust bundle, never a private key;
 * and a token for another service account gets nothing for that pod's node id.
 */
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { csrProviderConfigFromMetadata, CsrCertificateProvider } from '../../certs/csr-provider';
import { uriSansOf } from '../../certs/identity';
import { CertStore } from '../../certs/store';
import { createDevTokenIssuer, type DevTokenIssuer } from '../../control-plane/dev-tokens';
import { ControlPlaneServer } from '../../control-plane/server';
import { decodeAny } from '../../control-plane/snapshot';
import { decodeBootstrap, parseBootstrapText } from '../../proxy/config/bootstrap';
import { createRegistries } from '../../proxy/registry';
import { grpcClientAuth } from '../../xds-client/grpc-credentials';
import { adsServiceDefinition, type DiscoveryRequestProto, type DiscoveryResponseProto, TYPE_URLS } from '../../xds-client/protos';

const ROOT = join(__dirname, '../..');
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- parsed manifests are walked freely
type Obj = Record<string, any>;
const docs = (p: string): Obj[] => parseAllDocuments(readFileSync(join(ROOT, p), 'utf8')).map((d) => d.toJS() as Obj);
const cpDocs = docs('deploy/kubernetes/control-plane.yaml');
const appDocs = docs('deploy/kubernetes/app-injected.yaml');
const cpArgs: string[] = cpDocs.find((d) => d.kind === 'Deployment')!.spec.template.spec.containers[0].args;
const arg = (f: string) => cpArgs[cpArgs.indexOf(f) + 1]!;
const AdsClient = grpc.makeGenericClientConstructor(adsServiceDefinition(), 'AggregatedDiscoveryService');

let dir: string;
let tokens: DevTokenIssuer;
let cp: ControlPlaneServer;
const clients: grpc.Client[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'meshlet-deploy-auth-'));
  // README: "make the CA once" — the same openssl command.
  const caDir = join(dir, 'ca');
  mkdirSync(caDir);
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '3650',
    '-keyout', join(caDir, 'ca-key.pem'), '-out', join(caDir, 'ca-cert.pem'),
    '-subj', '/O=cluster.local/CN=meshlet root CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
  ], { stdio: 'ignore' });
  copyFileSync(join(caDir, 'ca-cert.pem'), join(caDir, 'root-cert.pem'));
  const meshFile = join(dir, 'mesh.yaml');
  writeFileSync(meshFile, cpDocs.find((d) => d.kind === 'ConfigMap')!.data['mesh.yaml']);
  tokens = await createDevTokenIssuer(join(dir, 'jwks.json'), arg('--token-issuer'));
  cp = await ControlPlaneServer.start({
    meshFile,
    watchMeshFile: false,
    port: 0,
    csrPort: 0,
    caDir,
    // --jwks-uri stands for the API server's keys; the file holds the stand-in's.
    tokenAuth: { jwksFile: tokens.jwksFile, issuer: arg('--token-issuer'), audiences: ['istio-ca'] },
    log: pino({ level: 'silent' }),
  });
}, 30_000);

afterAll(async () => {
  for (const c of clients) c.close();
  await cp?.close();
  rmSync(dir, { recursive: true, force: true });
});

interface Pod {
  readonly sa: string;
  readonly ns: string;
  readonly nodeId: string;
  readonly bootstrapText: string;
}

/** Each injected Deployment's bootstrap with the pod's token and root mounts pointed at files here. */
function pods(): Pod[] {
  return appDocs
    .filter((d) => d.kind === 'Deployment')
    .map((d) => {
      const spec = d.spec.template.spec;
      const cmName = spec.volumes.find((v: Obj) => v.name === 'meshlet-bootstrap').configMap.name;
      const text: string = appDocs.find((x) => x.kind === 'ConfigMap' && x.metadata.name === cmName)!.data['bootstrap.yaml'];
      const nodeId = /\n {2}id: (\S+)/.exec(text)![1]!;
      return { sa: spec.serviceAccountName, ns: d.metadata.namespace, nodeId, bootstrapText: text };
    });
}

/** The pod's files: its token (minted for `tokenSa`) and the root ConfigMap's content. */
function podFiles(p: Pod, tokenSa: string, token: string): { bootstrap: ReturnType<typeof decodeBootstrap>['bootstrap']; serviceHost: string } {
  const podDir = mkdtempSync(join(dir, `${p.nodeId}-${tokenSa}-`));
  writeFileSync(join(podDir, 'istio-token'), token);
  copyFileSync(join(dir, 'ca', 'root-cert.pem'), join(podDir, 'root-cert.pem'));
  const text = p.bootstrapText
    .replaceAll('/var/run/secrets/tokens/istio-token', join(podDir, 'istio-token'))
    .replaceAll('/var/run/secrets/meshlet/root/root-cert.pem', join(podDir, 'root-cert.pem'));
  const { bootstrap, warnings } = decodeBootstrap(parseBootstrapText(text, 'bootstrap.yaml'), { httpFilters: createRegistries().httpFilters });
  expect(warnings).toEqual([]);
  const svc = bootstrap.dynamicResources!.adsConfig!.grpcServices[0]!;
  if (svc.kind !== 'google_grpc') throw new Error('expected google_grpc ADS');
  return { bootstrap, serviceHost: svc.targetUri.split(':')[0]! };
}

/** One SotW exchange over the pod's own ADS credentials (TLS to the Service name, bearer token). */
async function ads(p: Pod, bootstrap: ReturnType<typeof decodeBootstrap>['bootstrap'], serviceHost: string) {
  const svc = bootstrap.dynamicResources!.adsConfig!.grpcServices[0]!;
  const auth = grpcClientAuth(grpc, svc);
  expect(auth.secure).toBe(true);
  const c = new AdsClient(`127.0.0.1:${cp.csrPort}`, auth.credentials!, { 'grpc.ssl_target_name_override': serviceHost });
  clients.push(c);
  const stream = (c as unknown as { StreamAggregatedResources(): grpc.ClientDuplexStream<DiscoveryRequestProto, DiscoveryResponseProto> }).StreamAggregatedResources();
  const responses: DiscoveryResponseProto[] = [];
  const error = await new Promise<grpc.ServiceError | undefined>((resolve) => {
    stream.on('data', (r: DiscoveryResponseProto) => {
      responses.push(r);
      if (responses.length === 3) resolve(undefined);
    });
    stream.on('error', (e: grpc.ServiceError) => resolve(e));
    setTimeout(() => resolve(undefined), 10_000);
    const node = { id: p.nodeId };
    stream.write({ node, type_url: TYPE_URLS.cluster, resource_names: [] } as DiscoveryRequestProto);
    stream.write({ node, type_url: TYPE_URLS.listener, resource_names: [] } as DiscoveryRequestProto);
    stream.write({ node, type_url: TYPE_URLS.secret, resource_names: ['default', 'ROOTCA'] } as DiscoveryRequestProto);
  });
  stream.cancel();
  return { responses, error };
}

describe('deploy/kubernetes: the injected pods on the authenticated path', () => {
  it('each pod gets its certificate by CSR (key made locally) and its configuration over TLS ADS with its token', async () => {
    const all = pods();
    expect(all.map((p) => p.nodeId).sort()).toEqual(['backend-v1.shop', 'frontend.shop']);
    for (const p of all) {
      const { bootstrap, serviceHost } = podFiles(p, p.sa, await tokens.mint(p.ns, p.sa));
      expect(serviceHost).toBe('meshlet-control-plane.meshlet-system.svc');
      // The CSR provider from the bootstrap's node metadata, CA address pointed at loopback.
      const cfg = csrProviderConfigFromMetadata(bootstrap.node.metadata)!;
      expect(cfg.caServerName).toBe(serviceHost);
      const store = new CertStore();
      const provider = new CsrCertificateProvider(store, { ...cfg, caAddress: `127.0.0.1:${cp.csrPort}` });
      try {
        expect(await provider.refresh()).toBe(true);
      } finally {
        provider.close();
      }
      const id = store.identity('default')!;
      expect(uriSansOf(new X509Certificate(id.certChainPem).subjectAltName)).toEqual([`spiffe://cluster.local/ns/${p.ns}/sa/${p.sa}`]);
      expect(new X509Certificate(id.certChainPem).checkIssued(new X509Certificate(readFileSync(join(dir, 'ca', 'root-cert.pem'))))).toBe(true);

      const { responses, error } = await ads(p, bootstrap, serviceHost);
      expect(error).toBeUndefined();
      const types = responses.map((r) => r.type_url);
      expect(types).toEqual(expect.arrayContaining([TYPE_URLS.cluster, TYPE_URLS.listener, TYPE_URLS.secret]));
      expect(responses.find((r) => r.type_url === TYPE_URLS.listener)!.resources!.length).toBeGreaterThan(0);
      const secrets = responses.filter((r) => r.type_url === TYPE_URLS.secret).flatMap((r) => (r.resources ?? []).map((a) => decodeAny(a)));
      expect(secrets.map((s) => s.name)).toEqual(['ROOTCA']);
      expect(JSON.stringify(secrets)).not.toContain('PRIVATE KEY');
    }
  }, 60_000);

  it("a token of another service account gets nothing for a pod's node id, and no certificate for it", async () => {
    const backend = pods().find((p) => p.nodeId === 'backend-v1.shop')!;
    const { bootstrap, serviceHost } = podFiles(backend, 'frontend', await tokens.mint('shop', 'frontend'));
    const { responses, error } = await ads(backend, bootstrap, serviceHost);
    expect(error?.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(responses).toEqual([]);
    const cfg = csrProviderConfigFromMetadata(bootstrap.node.metadata)!;
    const store = new CertStore();
    const provider = new CsrCertificateProvider(store, {
      ...cfg,
      caAddress: `127.0.0.1:${cp.csrPort}`,
      spiffeId: 'spiffe://cluster.local/ns/shop/sa/backend',
    });
    try {
      expect(await provider.refresh()).toBe(false);
    } finally {
      provider.close();
    }
    expect(store.identity('default')).toBeUndefined();
  }, 60_000);
});
