/**
 * Issue 4's bad identity inputs, each through a real meshlet and real TLS handshakes:
 *  - over SDS (pushed by a scripted ADS server): an expired `default` certificate and a key that
 *    does not match are NACKed with a readable error_detail (seen in the NACK record and in
 *    /config_dump's error_state); a certificate from another CA is not applied (the store's chain
 *    check). In every case the current certificate keeps being served and mTLS traffic keeps
 *    working;
 *  - wrong SAN on the server side: the client meshlet fails the connection (503, response flag UF,
 *    upstream_transport_failure_reason in the access log) and never sends plaintext;
 *  - a client presenting no certificate is refused by the mTLS listener.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { DevCa, type IssuedCertificate } from '../../certs/dev-ca';
import type { UpdateResult } from '../../certs/store';
import { TYPE_URLS } from '../../xds-client/protos';
import { JsonAdsServer } from '../support/json-ads-server';
import {
  bootstrap,
  HCM_TYPE,
  ROUTER_TYPE,
  socketAddress,
  staticCluster,
  startMeshlet,
  type StartedMeshlet,
  stopAllMeshlets,
} from '../support/meshlet';
import { closeAll, type HttpEcho, startHttpEcho } from '../support/upstreams';
import { ISTIO_JSON_LOG_FORMAT } from '../telemetry/helpers';

const DOWNSTREAM_TLS = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext';
const UPSTREAM_TLS = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext';
const FILE_LOG = 'type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog';
const ADS = { ads: {}, resource_api_version: 'V3' };

let ca: DevCa;
let foreign: DevCa;
let clientCert: IssuedCertificate;
let app: HttpEcho;
let dir: string;

beforeAll(async () => {
  ca = await DevCa.create({ trustDomain: 'cluster.local' });
  foreign = await DevCa.create({ trustDomain: 'cluster.local' });
  clientCert = await ca.issueWorkload({ ns: 'default', sa: 'client' });
  app = await startHttpEcho('app');
  dir = mkdtempSync(join(tmpdir(), 'meshlet-identity-'));
});

afterAll(async () => {
  await stopAllMeshlets();
  await closeAll();
  rmSync(dir, { recursive: true, force: true });
});

function identitySecret(c: { certChainPem: string; privateKeyPem?: string }, keyPem = c.privateKeyPem!): Record<string, unknown> {
  return {
    name: 'default',
    tls_certificate: { certificate_chain: { inline_string: c.certChainPem }, private_key: { inline_string: keyPem } },
  };
}
function rootSecret(rootPem: string): Record<string, unknown> {
  return { name: 'ROOTCA', validation_context: { trusted_ca: { inline_string: rootPem } } };
}

/** Poll `cond` every 20 ms for at most 5 s. */
async function until(what: string, cond: () => boolean): Promise<void> {
  const deadline = Date.now() + 5_000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function getJson(port: number, path: string): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
        let b = '';
        res.on('data', (c) => (b += c));
        res.on('end', () => resolve(JSON.parse(b) as Record<string, unknown>));
      })
      .on('error', reject);
  });
}

describe('bad workload secrets pushed over SDS', () => {
  let ads: JsonAdsServer;
  let m: StartedMeshlet;
  let good: IssuedCertificate;
  let port = 0;

  beforeAll(async () => {
    good = await ca.issueWorkload({ ns: 'default', sa: 'server' });
    ads = new JsonAdsServer();
    await ads.start();
    ads.set(TYPE_URLS.secret, [rootSecret(ca.rootCertPem), identitySecret(good)]);
    ads.set(TYPE_URLS.listener, [
      {
        name: 'inbound',
        address: socketAddress(0),
        filter_chains: [
          {
            transport_socket: {
              name: 'envoy.transport_sockets.tls',
              typed_config: {
                '@type': DOWNSTREAM_TLS,
                common_tls_context: {
                  tls_certificate_sds_secret_configs: [{ name: 'default', sds_config: ADS }],
                  validation_context_sds_secret_config: { name: 'ROOTCA', sds_config: ADS },
                },
                require_client_certificate: true,
              },
            },
            filters: [
              {
                name: 'envoy.filters.network.http_connection_manager',
                typed_config: {
                  '@type': HCM_TYPE,
                  stat_prefix: 'inbound',
                  route_config: { name: 'r', virtual_hosts: [{ name: 'all', domains: ['*'], routes: [{ match: { prefix: '/' }, route: { cluster: 'app' } }] }] },
                  http_filters: [{ name: 'envoy.filters.http.router', typed_config: { '@type': ROUTER_TYPE } }],
                  forward_client_cert_details: 'SANITIZE_SET',
                  set_current_client_cert_details: { uri: true },
                },
              },
            ],
          },
        ],
      },
    ]);
    const raw = bootstrap([], [staticCluster('app', [app.port]), staticCluster('xds', [ads.port], { typed_extension_protocol_options: h2Options() })], {
      dynamic_resources: {
        ads_config: { api_type: 'GRPC', transport_api_version: 'V3', grpc_services: [{ envoy_grpc: { cluster_name: 'xds' } }] },
        lds_config: ADS,
        initial_fetch_timeout: '5s',
      },
    });
    m = await startMeshlet(raw);
    await m.server.initialized;
    port = m.listenerPort('inbound');
  });

  afterAll(async () => {
    await ads?.stop();
  });

  /** One mTLS request as `client`; the serial the server presented and the app's answer. */
  function mtlsRequest(): Promise<{ status: number; serial: string; xfcc: string }> {
    return new Promise((resolve, reject) => {
      const req = https.get(
        {
          host: '127.0.0.1',
          port,
          path: '/id',
          agent: false,
          ca: ca.rootCertPem,
          cert: clientCert.certChainPem,
          key: clientCert.privateKeyPem,
          checkServerIdentity: () => undefined,
        },
        (res) => {
          const serial = (res.socket as tls.TLSSocket).getPeerCertificate().serialNumber;
          let b = '';
          res.on('data', (c) => (b += c));
          res.on('end', () => {
            const echo = JSON.parse(b) as { headers: Record<string, string> };
            resolve({ status: res.statusCode ?? 0, serial, xfcc: echo.headers['x-forwarded-client-cert'] ?? '' });
          });
        },
      );
      req.on('error', reject);
    });
  }

  it('serves the good certificate to mTLS clients', async () => {
    const r = await mtlsRequest();
    expect(r.status).toBe(200);
    expect(r.serial).toBe(good.serial);
    expect(r.xfcc).toContain('URI=spiffe://cluster.local/ns/default/sa/client');
  });

  it('NACKs an expired certificate with a readable error and keeps serving the current one', async () => {
    const expired = await ca.issueWorkload({ ns: 'default', sa: 'server', lifetimeMs: 60_000, at: Date.now() - 3_600_000 });
    const before = ads.nacks.length;
    ads.set(TYPE_URLS.secret, [rootSecret(ca.rootCertPem), identitySecret(expired)]);
    await until('a NACK', () => ads.nacks.length > before);
    const nack = ads.nacks[ads.nacks.length - 1]!;
    expect(nack.typeUrl).toBe(TYPE_URLS.secret);
    expect(nack.message).toMatch(/default/);
    expect(nack.message).toMatch(/expired/);
    const dump = (await getJson(m.adminPort, '/config_dump?resource=dynamic_active_secrets')) as { configs: { name: string; error_state?: { details: string } }[] };
    const entry = dump.configs.find((s) => s.name === 'default');
    expect(entry?.error_state?.details).toMatch(/expired/);
    const r = await mtlsRequest();
    expect(r.status).toBe(200);
    expect(r.serial).toBe(good.serial);
  });

  it('NACKs a certificate whose private key does not match and keeps serving the current one', async () => {
    const other = await ca.issueWorkload({ ns: 'default', sa: 'server' });
    const third = await ca.issueWorkload({ ns: 'default', sa: 'server' });
    const before = ads.nacks.length;
    ads.set(TYPE_URLS.secret, [rootSecret(ca.rootCertPem), identitySecret(other, third.privateKeyPem)]);
    await until('a NACK', () => ads.nacks.length > before);
    expect(ads.nacks[ads.nacks.length - 1]!.message).toMatch(/private_key does not match/);
    const r = await mtlsRequest();
    expect(r.status).toBe(200);
    expect(r.serial).toBe(good.serial);
    expect(m.server.certs.identity()!.chain[0]!.serialNumber).toBe(good.serial);
  });

  it('does not apply a certificate from another CA; traffic keeps working with the old one', async () => {
    const alien = await foreign.issueWorkload({ ns: 'default', sa: 'server' });
    const results: { name: string; outcome: Promise<UpdateResult> }[] = [];
    const original = m.server.certs.update.bind(m.server.certs);
    const spy = vi.spyOn(m.server.certs, 'update').mockImplementation((name, secret) => {
      const outcome = original(name, secret);
      results.push({ name, outcome });
      return outcome;
    });
    try {
      ads.set(TYPE_URLS.secret, [rootSecret(ca.rootCertPem), identitySecret(alien)]);
      await until('the identity update', () => results.some((r) => r.name === 'default'));
      const outcome = await results.find((r) => r.name === 'default')!.outcome;
      expect(outcome.ok).toBe(false);
      expect(outcome.ok ? '' : outcome.error).toMatch(/does not verify against the trust bundle/);
    } finally {
      spy.mockRestore();
    }
    expect(m.server.certs.identity()!.chain[0]!.serialNumber).toBe(good.serial);
    const certs = (await getJson(m.adminPort, '/certs')) as { certificates: { cert_chain: { serial_number: string }[] }[] };
    expect(certs.certificates[0]!.cert_chain[0]!.serial_number).toBe(good.serial.toLowerCase());
    const r = await mtlsRequest();
    expect(r.status).toBe(200);
    expect(r.serial).toBe(good.serial);
  });

  it('refuses a client that presents no certificate', async () => {
    const before = app.requests.length;
    const outcome = await new Promise<string>((resolve) => {
      const s = tls.connect({ host: '127.0.0.1', port, ca: ca.rootCertPem, checkServerIdentity: () => undefined }, () =>
        s.write('GET /id HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n'),
      );
      let got = '';
      s.setTimeout(5000, () => s.destroy());
      s.on('data', (d) => (got += d.toString()));
      s.on('error', (e) => resolve(`error: ${e.message}`));
      s.on('close', () => resolve(got === '' ? 'closed' : got));
    });
    expect(outcome).not.toMatch(/HTTP\/1\.1 200/);
    expect(app.requests.length).toBe(before);
  });
});

function h2Options(): Record<string, unknown> {
  return {
    'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
      '@type': 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
      explicit_http_config: { http2_protocol_options: {} },
    },
  };
}

describe('wrong SAN on the server side', () => {
  it('fails the upstream connection with UF and a transport failure reason; nothing is sent in plaintext', async () => {
    const wrong = await ca.issueWorkload({ ns: 'default', sa: 'impostor' });
    // The peer: a TCP server that records each connection's first byte, then serves TLS on it
    // with the impostor's certificate and records any decrypted bytes.
    const received: string[] = [];
    const firstBytes: number[] = [];
    const secureContext = tls.createSecureContext({ cert: wrong.certChainPem, key: wrong.privateKeyPem, ca: ca.rootCertPem });
    const peer = net.createServer({ pauseOnConnect: true }, (raw) => {
      raw.on('error', () => {});
      raw.once('data', (d: Buffer) => {
        firstBytes.push(d[0]!);
        raw.pause();
        raw.unshift(d);
        const t = new tls.TLSSocket(raw, { isServer: true, secureContext, requestCert: true, rejectUnauthorized: true });
        t.on('data', (c: Buffer) => received.push(c.toString()));
        t.on('error', () => {});
      });
      raw.resume();
    });
    await new Promise<void>((r) => peer.listen(0, '127.0.0.1', r));
    const peerPort = (peer.address() as { port: number }).port;
    const logFile = join(dir, 'san.log');
    try {
      const m = await startMeshlet(
        bootstrap(
          [
            {
              name: 'out',
              address: socketAddress(0),
              filter_chains: [
                {
                  filters: [
                    {
                      name: 'envoy.filters.network.http_connection_manager',
                      typed_config: {
                        '@type': HCM_TYPE,
                        stat_prefix: 'out',
                        route_config: { name: 'r', virtual_hosts: [{ name: 'all', domains: ['*'], routes: [{ match: { prefix: '/' }, route: { cluster: 'peer' } }] }] },
                        http_filters: [{ name: 'envoy.filters.http.router', typed_config: { '@type': ROUTER_TYPE } }],
                        access_log: [
                          {
                            name: 'envoy.access_loggers.file',
                            typed_config: { '@type': FILE_LOG, path: logFile, log_format: { json_format: ISTIO_JSON_LOG_FORMAT } },
                          },
                        ],
                      },
                    },
                  ],
                },
              ],
            },
          ],
          [
            staticCluster('peer', [peerPort], {
              transport_socket: {
                name: 'envoy.transport_sockets.tls',
                typed_config: {
                  '@type': UPSTREAM_TLS,
                  common_tls_context: {
                    tls_certificates: [
                      { certificate_chain: { inline_string: clientCert.certChainPem }, private_key: { inline_string: clientCert.privateKeyPem } },
                    ],
                    validation_context: {
                      trusted_ca: { inline_string: ca.rootCertPem },
                      match_typed_subject_alt_names: [{ san_type: 'URI', matcher: { exact: 'spiffe://cluster.local/ns/default/sa/reviews' } }],
                    },
                  },
                  sni: 'outbound_.9080_._.reviews.default.svc.cluster.local',
                },
              },
            }),
          ],
        ),
      );
      const r = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        http
          .get({ host: '127.0.0.1', port: m.listenerPort('out'), path: '/x', agent: false }, (res) => {
            let b = '';
            res.on('data', (c) => (b += c));
            res.on('end', () => resolve({ status: res.statusCode ?? 0, body: b }));
          })
          .on('error', reject);
      });
      expect(r.status).toBe(503);
      expect(r.body).toMatch(/^upstream connect error or disconnect\/reset before headers\. reset reason: connection failure/);
      let rec: Record<string, unknown> | undefined;
      await until('the access log record', () => {
        const text = existsSync(logFile) ? readFileSync(logFile, 'utf8').trim() : '';
        if (text === '') return false;
        rec = JSON.parse(text.split('\n').pop()!) as Record<string, unknown>;
        return true;
      });
      expect(rec).toMatchObject({ response_code: 503, response_flags: 'UF', upstream_cluster: 'peer' });
      expect(String(rec!.upstream_transport_failure_reason)).toMatch(/spiffe:\/\/cluster\.local\/ns\/default\/sa\/impostor.*does not match/);
      // Every connection the peer saw began with a TLS handshake record (0x16), and no request
      // bytes ever arrived: the client gave up after verifying the server's identity.
      expect(firstBytes.length).toBeGreaterThan(0);
      expect(firstBytes.every((b) => b === 0x16)).toBe(true);
      expect(received.join('')).toBe('');
    } finally {
      await new Promise((r) => peer.close(r));
    }
  });
});
