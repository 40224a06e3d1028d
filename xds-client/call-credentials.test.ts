/**
 * gRPC call credentials and initial metadata on the ADS stream, against a real @grpc/grpc-js
 * server on loopback (TLS with a mesh root, or a Unix socket): what istiod sees on port 15012 is
 * `authorization: Bearer <projected token>` over TLS verified with the mesh root. The services
 * are decoded from bootstrap text by the real decoder, so the config path is tested too.
 */
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DevCa, type IssuedCertificate } from '../certs/dev-ca';
import { decodeBootstrap } from '../proxy/config/bootstrap';
import type { GrpcService } from '../common/config-types';
import { ConfigError } from '../common/errors';
import { ctx } from '../test/config/helpers';
import { ScriptedAdsServer } from '../test/support/scripted-ads-server';
import { listenerType, RecordingWatcher } from '../test/support/xds-fixtures';
import { type ResolvedCluster, XdsClient } from './client';
import { TYPE_URLS } from './protos';

const LDS = TYPE_URLS.listener;
const tmp = mkdtempSync(join(tmpdir(), 'meshlet-callcreds-'));
const servers: ScriptedAdsServer[] = [];
const clients: XdsClient[] = [];
const https: http.Server[] = [];

afterEach(() => {
  for (const c of clients.splice(0)) c.close();
  for (const s of servers.splice(0)) s.stop();
  for (const h of https.splice(0)) h.close();
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** The ADS grpc_service of a bootstrap whose ads_config holds `service` (decoded for real). */
function adsService(service: Record<string, unknown>, extra: Record<string, unknown> = {}): GrpcService {
  const { bootstrap } = decodeBootstrap(
    {
      node: { id: 'sidecar~127.0.0.1~a.default~default.svc.cluster.local', cluster: 'a.default' },
      dynamic_resources: { ads_config: { api_type: 'GRPC', grpc_services: [service] } },
      ...extra,
    },
    ctx({ baseDir: tmp }),
  );
  return bootstrap.dynamicResources!.adsConfig!.grpcServices[0]!;
}

function decodeErrors(service: Record<string, unknown>): string[] {
  try {
    adsService(service);
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return (e as ConfigError).issues.map((i) => `${i.path}: ${i.message}`);
  }
  throw new Error('expected a ConfigError');
}

function client(service: GrpcService, opts: { resolveCluster?: (n: string) => ResolvedCluster | undefined } = {}): XdsClient {
  const c = new XdsClient({
    node: { id: 'n1', cluster: 'c', metadata: {}, userAgentName: 'meshlet', userAgentVersion: '' },
    dynamicResources: {
      adsConfig: { apiType: 'GRPC', grpcServices: [service], setNodeOnFirstMessageOnly: true },
      initialFetchTimeoutMs: 0,
    },
    backoff: { baseMs: 20, maxMs: 100 },
    ...opts,
  });
  c.registerType(listenerType);
  clients.push(c);
  c.watch(LDS, '*', new RecordingWatcher());
  return c;
}

/** Replace a file the way the kubelet rotates a projected token: write aside, rename over. */
function rotate(path: string, content: string): void {
  writeFileSync(`${path}.new`, content);
  renameSync(`${path}.new`, path);
}

describe('call credentials on the ADS stream', () => {
  let ca: DevCa;
  let istiod: IssuedCertificate;
  let rootFile: string;
  let tls: () => grpc.ServerCredentials;

  beforeAll(async () => {
    ca = await DevCa.create({ trustDomain: 'cluster.local' });
    istiod = await ca.issueWorkload({ ns: 'istio-system', sa: 'istiod', dnsNames: ['istiod.istio-system.svc', 'localhost'] });
    rootFile = join(tmp, 'root-cert.pem');
    writeFileSync(rootFile, istiod.rootCertPem);
    tls = () =>
      grpc.ServerCredentials.createSsl(
        Buffer.from(istiod.rootCertPem),
        [{ private_key: Buffer.from(istiod.privateKeyPem ?? ''), cert_chain: Buffer.from(istiod.certChainPem) }],
        false,
      );
  });

  function istiodService(port: number, tokenFile: string): Record<string, unknown> {
    return {
      google_grpc: {
        target_uri: `localhost:${port}`,
        stat_prefix: 'xds-grpc',
        channel_credentials: { ssl_credentials: { root_certs: { filename: rootFile } } },
        call_credentials: [
          {
            from_plugin: {
              name: 'envoy.grpc_credentials.file_based_metadata',
              typed_config: {
                '@type': 'type.googleapis.com/envoy.config.grpc_credential.v3.FileBasedMetadataConfig',
                secret_data: { filename: tokenFile },
                header_prefix: 'Bearer ',
              },
            },
          },
        ],
      },
      initial_metadata: [{ key: 'x-istio-cluster', value: 'Kubernetes' }],
    };
  }

  it('sends authorization: Bearer <token file> over TLS verified with the mesh root, and re-reads a rotated token', async () => {
    const s = await ScriptedAdsServer.start(0, tls());
    servers.push(s);
    const tokenFile = join(tmp, 'istio-token-1');
    writeFileSync(tokenFile, 'tok-1\n');
    const c = client(adsService(istiodService(s.port, tokenFile)));
    c.start();
    await s.next();
    expect(s.metadata[0]!.get('authorization')).toEqual(['Bearer tok-1']);
    expect(s.metadata[0]!.get('x-istio-cluster')).toEqual(['Kubernetes']);
    rotate(tokenFile, 'tok-2');
    s.endStream();
    await s.waitForStream(2);
    expect(s.metadata[1]!.get('authorization')).toEqual(['Bearer tok-2']);
  });

  it('opens no stream while the token file is missing, and connects once it appears', async () => {
    const s = await ScriptedAdsServer.start(0, tls());
    servers.push(s);
    const tokenFile = join(tmp, 'istio-token-late');
    const c = client(adsService(istiodService(s.port, tokenFile)));
    c.start();
    await new Promise((r) => setTimeout(r, 150));
    expect(s.streamCount).toBe(0);
    writeFileSync(tokenFile, 'late-token');
    await s.waitForStream(1);
    expect(s.metadata[0]!.get('authorization')).toEqual(['Bearer late-token']);
  });

  it('does not talk to a server whose certificate is not from the mesh root', async () => {
    const other = await DevCa.create({ trustDomain: 'cluster.local' });
    const fake = await other.issueWorkload({ ns: 'istio-system', sa: 'istiod', dnsNames: ['localhost'] });
    const s = await ScriptedAdsServer.start(
      0,
      grpc.ServerCredentials.createSsl(null, [{ private_key: Buffer.from(fake.privateKeyPem ?? ''), cert_chain: Buffer.from(fake.certChainPem) }], false),
    );
    servers.push(s);
    const tokenFile = join(tmp, 'istio-token-fake');
    writeFileSync(tokenFile, 'secret');
    const c = client(adsService(istiodService(s.port, tokenFile)));
    c.start();
    await new Promise((r) => setTimeout(r, 400));
    expect(s.streamCount).toBe(0);
    expect(c.connected).toBe(false);
  });

  it('sends an access_token, Google IAM headers and binary initial metadata', async () => {
    const s = await ScriptedAdsServer.start(0, tls());
    servers.push(s);
    const svc = adsService({
      google_grpc: {
        target_uri: `localhost:${s.port}`,
        stat_prefix: 'ads',
        channel_credentials: { ssl_credentials: { root_certs: { inline_string: istiod.rootCertPem } } },
        call_credentials: [
          { access_token: 'static-token' },
          { google_iam: { authorization_token: 'iam-tok', authority_selector: 'sel' } },
        ],
      },
      initial_metadata: [{ key: 'X-Trace-Bin', raw_value: Buffer.from([1, 2, 255]).toString('base64') }],
    });
    client(svc).start();
    await s.next();
    const md = s.metadata[0]!;
    expect(md.get('authorization')).toEqual(['Bearer static-token']);
    expect(md.get('x-goog-iam-authorization-token')).toEqual(['iam-tok']);
    expect(md.get('x-goog-iam-authority-selector')).toEqual(['sel']);
    expect(md.get('x-trace-bin')).toEqual([Buffer.from([1, 2, 255])]);
  });

  it('exchanges the subject token at an STS endpoint (RFC 8693) and reuses the access token', async () => {
    const forms: URLSearchParams[] = [];
    const sts = http.createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        forms.push(new URLSearchParams(body));
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ access_token: `exchanged-${forms.length}`, issued_token_type: 'urn:ietf:params:oauth:token-type:access_token', token_type: 'Bearer', expires_in: 3600 }));
      });
    });
    https.push(sts);
    await new Promise<void>((r) => sts.listen(0, '127.0.0.1', r));
    const subject = join(tmp, 'subject-token');
    writeFileSync(subject, 'k8s-jwt');
    const s = await ScriptedAdsServer.start(0, tls());
    servers.push(s);
    const svc = adsService({
      google_grpc: {
        target_uri: `localhost:${s.port}`,
        stat_prefix: 'ads',
        channel_credentials: { ssl_credentials: { root_certs: { filename: rootFile } } },
        call_credentials: [
          {
            sts_service: {
              token_exchange_service_uri: `http://127.0.0.1:${(sts.address() as AddressInfo).port}/token`,
              scope: 'https://www.googleapis.com/auth/cloud-platform',
              subject_token_path: subject,
              subject_token_type: 'urn:ietf:params:oauth:token-type:jwt',
            },
          },
        ],
      },
    });
    client(svc).start();
    await s.next();
    expect(s.metadata[0]!.get('authorization')).toEqual(['Bearer exchanged-1']);
    expect(Object.fromEntries(forms[0]!)).toEqual({
      grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange',
      scope: 'https://www.googleapis.com/auth/cloud-platform',
      subject_token: 'k8s-jwt',
      subject_token_type: 'urn:ietf:params:oauth:token-type:jwt',
    });
    s.endStream();
    await s.waitForStream(2);
    expect(s.metadata[1]!.get('authorization')).toEqual(['Bearer exchanged-1']);
    expect(forms).toHaveLength(1);
  });

  it('sends a token over local credentials on a Unix socket, and initial_metadata on envoy_grpc', async () => {
    const sock = join(tmp, 'xds.sock');
    const s = await ScriptedAdsServer.start(`unix:${sock}`, grpc.ServerCredentials.createInsecure());
    servers.push(s);
    const svc = adsService({
      google_grpc: {
        target_uri: `unix:${sock}`,
        stat_prefix: 'ads',
        channel_credentials: { local_credentials: {} },
        call_credentials: [{ access_token: 'uds-token' }],
      },
    });
    client(svc).start();
    await s.next();
    expect(s.metadata[0]!.get('authorization')).toEqual(['Bearer uds-token']);

    // envoy_grpc to a static cluster whose endpoint is a pipe (Istio's xds-grpc cluster shape).
    const e = adsService(
      { envoy_grpc: { cluster_name: 'xds-grpc' }, initial_metadata: [{ key: 'x-meshlet', value: 'yes' }] },
      {
        static_resources: {
          clusters: [
            {
              name: 'xds-grpc',
              type: 'STATIC',
              load_assignment: { cluster_name: 'xds-grpc', endpoints: [{ lb_endpoints: [{ endpoint: { address: { pipe: { path: sock } } } }] }] },
            },
          ],
        },
      },
    );
    client(e, { resolveCluster: () => ({ address: '', port: 0, path: sock }) }).start();
    await s.waitForStream(2);
    expect(s.metadata[1]!.get('x-meshlet')).toEqual(['yes']);
    expect(s.metadata[1]!.get('authorization')).toEqual([]);
  });
});

describe('call credentials decoding', () => {
  it('refuses call credentials on a plaintext channel (a bearer token is never sent in the clear)', () => {
    expect(decodeErrors({ google_grpc: { target_uri: '127.0.0.1:15010', stat_prefix: 'x', call_credentials: [{ access_token: 't' }] } })).toEqual([
      'dynamic_resources.ads_config.grpc_services[0].google_grpc.call_credentials: call credentials need channel_credentials ssl_credentials or local_credentials; they are never sent over plaintext',
    ]);
  });

  it('names unsupported credentials and plugins by path', () => {
    const ssl = { ssl_credentials: {} };
    expect(
      decodeErrors({
        google_grpc: {
          target_uri: 'istiod:15012',
          stat_prefix: 'x',
          channel_credentials: ssl,
          call_credentials: [
            { google_compute_engine: {} },
            { from_plugin: { name: 'custom', typed_config: { '@type': 'type.googleapis.com/google.protobuf.Struct' } } },
            { sts_service: { token_exchange_service_uri: 'ftp://x', subject_token_path: '/t', subject_token_type: 'jwt' } },
          ],
        },
        initial_metadata: [{ key: ':authority', value: 'x' }],
      }),
    ).toEqual([
      'dynamic_resources.ads_config.grpc_services[0].initial_metadata[0].key: :authority may not be set as gRPC metadata',
      'dynamic_resources.ads_config.grpc_services[0].google_grpc.call_credentials[0].google_compute_engine: google_compute_engine call credentials (Google Cloud) are not supported by meshlet',
      'dynamic_resources.ads_config.grpc_services[0].google_grpc.call_credentials[1].from_plugin.typed_config: call credentials plugin type google.protobuf.Struct is not supported by meshlet',
      'dynamic_resources.ads_config.grpc_services[0].google_grpc.call_credentials[2].sts_service.token_exchange_service_uri: must be an http:// or https:// URI, got "ftp://x"',
    ]);
  });
});
