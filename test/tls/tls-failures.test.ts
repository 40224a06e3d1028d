/**
 * Issue 18.9: TLS failures are visible. Every failure class is counted under Envoy's names
 * (ssl.connection_error, ssl.fail_verify_error, ssl.fail_verify_san, ssl.fail_verify_no_cert,
 * ssl.handshake) on the listener and on the cluster, and logged once at info (rate limited);
 * a client without a certificate where one is required gets the TLS alert during the handshake
 * (openssl s_client, TLS 1.2).
 */
import { spawn } from 'node:child_process';
import net from 'node:net';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DevCa, type IssuedCertificate } from '../../certs/dev-ca';
import { CertStore } from '../../certs/store';
import type { CommonTlsConfig, DownstreamTlsConfig, SanMatcher, UpstreamTlsConfig } from '../../proxy/config/types';
import type { DownstreamConnectionInfo } from '../../proxy/http/codec';
import { TlsContextManager } from '../../proxy/tls/context-manager';
import { terminateDownstreamTls } from '../../proxy/tls/downstream';
import { RateLimitedLog } from '../../proxy/tls/failure-log';
import { TlsTransportSocketFactory } from '../../proxy/tls/upstream';
import { Host } from '../../proxy/upstream/host';
import { SslStats } from '../../proxy/upstream/ssl-stats';
import { TcpTransportSocketFactory } from '../../proxy/upstream/transport';

const TD = 'cluster.local';
const spiffe = (sa: string): string => `spiffe://${TD}/ns/default/sa/${sa}`;
const uri = (sa: string): SanMatcher => ({ sanType: 'URI', matcher: { kind: 'exact', value: spiffe(sa), ignoreCase: false } });

function common(over: Partial<CommonTlsConfig> = {}): CommonTlsConfig {
  return {
    tlsCertificates: [],
    tlsCertificateSdsSecretConfigs: [{ name: 'default' }],
    validationContextSdsSecretConfig: { name: 'ROOTCA' },
    alpnProtocols: [],
    cipherSuites: [],
    ...over,
  };
}

async function store(ca: DevCa, id: IssuedCertificate, chainPem = id.certChainPem): Promise<CertStore> {
  const s = new CertStore();
  expect((await s.update('ROOTCA', { name: 'ROOTCA', validationContext: { trustedCa: { kind: 'inline_string', value: ca.rootCertPem }, matchTypedSubjectAltNames: [], onlyVerifyLeafCertCrl: false } })).ok).toBe(true);
  expect(
    (
      await s.update('default', {
        name: 'default',
        tlsCertificate: { certificateChain: { kind: 'inline_string', value: chainPem }, privateKey: { kind: 'inline_string', value: id.privateKeyPem! } },
      })
    ).ok,
  ).toBe(true);
  return s;
}

interface TlsServer {
  port: number;
  ssl: SslStats;
  server: net.Server;
}

const servers: net.Server[] = [];

async function tlsServer(s: CertStore, cfg: DownstreamTlsConfig): Promise<TlsServer> {
  const mgr = new TlsContextManager(s);
  const ssl = new SslStats();
  const server = net.createServer({ pauseOnConnect: true }, (socket) => {
    socket.on('error', () => {});
    const info: DownstreamConnectionInfo = { id: 1, remoteAddress: '127.0.0.1', remotePort: socket.remotePort ?? 0, localAddress: '127.0.0.1', localPort: 0 };
    terminateDownstreamTls(
      mgr,
      cfg,
      socket,
      info,
      (t) => {
        if (t) t.end('hello');
      },
      ssl,
    );
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as net.AddressInfo).port, ssl, server };
}

/** A node TLS client: resolves with what it read, or the error it got. */
function nodeClient(port: number, id?: IssuedCertificate, ca?: string): Promise<string> {
  return new Promise((resolve) => {
    const c = tls.connect({
      host: '127.0.0.1',
      port,
      ca,
      rejectUnauthorized: false,
      maxVersion: 'TLSv1.2',
      ...(id ? { cert: id.certChainPem, key: id.privateKeyPem } : {}),
    });
    let got = '';
    c.on('data', (d) => (got += d));
    c.on('error', (e: Error & { code?: string }) => resolve(`error ${e.code ?? e.message}`));
    c.on('close', () => resolve(got === '' ? 'closed' : got));
  });
}

/** openssl s_client (TLS 1.2): its whole output. */
function sClient(port: number, args: string[] = []): Promise<string> {
  return new Promise((resolve) => {
    const p = spawn('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-tls1_2', ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (out += d));
    const t = setTimeout(() => p.kill(), 5_000);
    p.on('close', () => {
      clearTimeout(t);
      resolve(out);
    });
    p.stdin.end();
  });
}

let ca: DevCa;
let foreign: DevCa;
let serverId: IssuedCertificate;

beforeAll(async () => {
  ca = await DevCa.create({ trustDomain: TD });
  foreign = await DevCa.create({ trustDomain: TD });
  serverId = await ca.issueWorkload({ ns: 'default', sa: 'reviews' });
});

afterAll(async () => {
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
});

describe('downstream TLS failures', () => {
  it('counts each class under Envoy names and lets good clients through', async () => {
    const cfg: DownstreamTlsConfig = {
      kind: 'downstream_tls',
      common: common({ validationContext: { matchTypedSubjectAltNames: [uri('productpage'), uri('expired')], onlyVerifyLeafCertCrl: false } }),
      requireClientCertificate: true,
      handshakeTimeoutMs: 2_000,
    };
    const srv = await tlsServer(await store(ca, serverId), cfg);
    const good = await ca.issueWorkload({ ns: 'default', sa: 'productpage' });
    const wrongSan = await ca.issueWorkload({ ns: 'default', sa: 'ratings' });
    const unknownCa = await foreign.issueWorkload({ ns: 'default', sa: 'productpage' });
    const expired = await ca.issueWorkload({ ns: 'default', sa: 'expired', at: Date.now() - 7_200_000, lifetimeMs: 3_600_000 });

    expect(await nodeClient(srv.port, good)).toBe('hello');
    expect(srv.ssl.handshake).toBe(1);
    expect(await nodeClient(srv.port, wrongSan)).not.toBe('hello');
    expect(srv.ssl.failVerifySan).toBe(1);
    expect(await nodeClient(srv.port, unknownCa)).not.toBe('hello');
    expect(await nodeClient(srv.port, expired)).not.toBe('hello');
    expect(srv.ssl.failVerifyError).toBe(2);
    expect(await nodeClient(srv.port)).not.toBe('hello');
    expect(srv.ssl.failVerifyNoCert).toBe(1);
    // A client that is not speaking TLS at all.
    await new Promise<void>((resolve) => {
      const s = net.connect(srv.port, '127.0.0.1', () => s.write('GET / HTTP/1.1\r\n\r\n'));
      s.on('error', () => {});
      s.on('close', () => resolve());
    });
    expect(srv.ssl.connectionError).toBe(5);
    expect(srv.ssl.handshake).toBe(1);
  });

  it('a TLS 1.2 client without a certificate gets a handshake alert, not an EOF after the handshake', async () => {
    const cfg: DownstreamTlsConfig = { kind: 'downstream_tls', common: common(), requireClientCertificate: true, handshakeTimeoutMs: 2_000 };
    const srv = await tlsServer(await store(ca, serverId), cfg);
    const out = await sClient(srv.port);
    // OpenSSL reports the alert the server sent (handshake_failure / certificate required).
    expect(out).toMatch(/alert|SSL alert number/i);
    expect(out).not.toMatch(/Verify return code: 0 \(ok\)[\s\S]*hello/);
    expect(srv.ssl.failVerifyNoCert).toBe(1);
  });
});

describe('upstream TLS failures', () => {
  it('counts cluster ssl.* by class', async () => {
    const srvCfg: DownstreamTlsConfig = { kind: 'downstream_tls', common: common(), requireClientCertificate: false, handshakeTimeoutMs: 2_000 };
    const srv = await tlsServer(await store(ca, serverId), srvCfg);
    const clientId = await ca.issueWorkload({ ns: 'default', sa: 'productpage' });
    const connect = (f: TlsTransportSocketFactory): Promise<string> =>
      new Promise((resolve) => {
        f.connect(new Host({ kind: 'socket', host: '127.0.0.1', port: srv.port }), { timeoutMs: 2_000 }, (err, conn) => {
          conn?.socket.destroy();
          resolve(err ? err.detail : 'ok');
        });
      });
    const factory = (s: CertStore, sa: string): TlsTransportSocketFactory => {
      const cfg: UpstreamTlsConfig = {
        kind: 'upstream_tls',
        common: common({ validationContext: { matchTypedSubjectAltNames: [uri(sa)], onlyVerifyLeafCertCrl: false } }),
        allowRenegotiation: false,
      };
      return new TlsTransportSocketFactory(new TcpTransportSocketFactory(), cfg, new TlsContextManager(s));
    };
    const ok = factory(await store(ca, clientId), 'reviews');
    expect(await connect(ok)).toBe('ok');
    expect(ok.ssl.handshake).toBe(1);
    const san = factory(await store(ca, clientId), 'details');
    expect(await connect(san)).toMatch(/does not match/);
    expect(san.ssl.failVerifySan).toBe(1);
    const other = await foreign.issueWorkload({ ns: 'default', sa: 'productpage' });
    const unknown = factory(await store(foreign, other), 'reviews');
    expect(await connect(unknown)).toMatch(/certificate|verify|issuer/i);
    expect(unknown.ssl.failVerifyError).toBe(1);
    expect(unknown.ssl.connectionError).toBe(1);
  });
});

describe('failure log', () => {
  it('writes at most N lines a second and reports how many it dropped', () => {
    const lines: Record<string, unknown>[] = [];
    const fake = { isLevelEnabled: () => true, info: (o: Record<string, unknown>) => lines.push(o) } as never;
    let now = 1_000_000;
    const l = new RateLimitedLog(fake, 3, () => now);
    for (let i = 0; i < 10; i++) l.info({ i }, 'failed');
    expect(lines.length).toBe(3);
    now += 1_000;
    l.info({ i: 10 }, 'failed');
    expect(lines[3]).toEqual({ i: 10, suppressed: 7 });
  });
});
