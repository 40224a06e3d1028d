/**
 * TLS misuse against an mTLS-only meshlet listener (require_client_certificate, SPIFFE workload
 * certificates from the development CA): plaintext HTTP, handshakes that never finish (closed at
 * transport_socket_connect_timeout), a client certificate from another CA, no client certificate,
 * and TLS 1.2 renegotiation. Nothing reaches the upstream from any of them, and a well-behaved
 * mTLS client on its own connection is served throughout.
 */
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DevCa, type IssuedCertificate } from '../../certs/dev-ca';
import { bootstrap, httpListener, routes, staticCluster, startMeshlet, type StartedMeshlet, stopAllMeshlets } from '../support/meshlet';
import { closeAll, type HttpEcho, rawExchange, startHttpEcho } from '../support/upstreams';
import type { GoodResult } from './harness';

const DOWNSTREAM_TLS = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext';

let ca: DevCa;
let foreign: DevCa;
let good: IssuedCertificate;
let stranger: IssuedCertificate;
let echo: HttpEcho;
let m: StartedMeshlet;
let port = 0;
const live = new Set<net.Socket>();

beforeAll(async () => {
  ca = await DevCa.create({ trustDomain: 'cluster.local' });
  foreign = await DevCa.create({ trustDomain: 'cluster.local' });
  const server = await ca.issueWorkload({ ns: 'default', sa: 'server' });
  good = await ca.issueWorkload({ ns: 'default', sa: 'client' });
  stranger = await foreign.issueWorkload({ ns: 'default', sa: 'client' });
  echo = await startHttpEcho('app');
  const l = httpListener('mtls', routes([{ match: { prefix: '/' }, route: { cluster: 'app' } }])) as { filter_chains: Record<string, unknown>[] };
  l.filter_chains[0]!.transport_socket = {
    name: 'envoy.transport_sockets.tls',
    typed_config: {
      '@type': DOWNSTREAM_TLS,
      require_client_certificate: true,
      common_tls_context: {
        tls_certificate_sds_secret_configs: [{ name: 'default' }],
        validation_context_sds_secret_config: { name: 'ROOTCA' },
      },
    },
  };
  l.filter_chains[0]!.transport_socket_connect_timeout = '0.5s';
  const raw = bootstrap([l], [staticCluster('app', [echo.port])]);
  (raw.static_resources as Record<string, unknown>).secrets = [
    { name: 'default', tls_certificate: { certificate_chain: { inline_string: server.certChainPem }, private_key: { inline_string: server.privateKeyPem } } },
    { name: 'ROOTCA', validation_context: { trusted_ca: { inline_string: ca.rootCertPem } } },
  ];
  m = await startMeshlet(raw);
  port = m.listenerPort('mtls');
});

afterAll(async () => {
  for (const s of live) s.destroy();
  await stopAllMeshlets();
  await closeAll();
});

function leaked(): string[] {
  return echo.requests.map((r) => r.url).filter((u) => u !== '/good');
}

function tlsOptions(cert: IssuedCertificate | undefined, extra: tls.ConnectionOptions = {}): tls.ConnectionOptions {
  return {
    host: '127.0.0.1',
    port,
    ca: ca.rootCertPem,
    ...(cert ? { cert: cert.certChainPem, key: cert.privateKeyPem } : {}),
    // SPIFFE certificates carry URI SANs only; identity is checked by the mesh, not by hostname.
    checkServerIdentity: () => undefined,
    ...extra,
  };
}

/** A well-behaved mTLS client on one keep-alive connection, GET /good until stopped (bounded). */
function goodMtls(): { stop(): Promise<GoodResult[]> } {
  const agent = new https.Agent({ keepAlive: true, maxSockets: 1, ca: ca.rootCertPem, cert: good.certChainPem, key: good.privateKeyPem, checkServerIdentity: () => undefined });
  const results: GoodResult[] = [];
  let stopped = false;
  const one = (): Promise<GoodResult> =>
    new Promise((resolve) => {
      const req = https.get({ host: '127.0.0.1', port, path: '/good', agent }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          body += c;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, ok: res.statusCode === 200 && body.includes('"url":"/good"') }));
      });
      req.on('error', (e) => resolve({ status: 0, ok: false, error: e.message }));
    });
  const loop = (async () => {
    do {
      results.push(await one());
      if (!stopped) await new Promise((r) => setTimeout(r, 2));
    } while (!stopped && results.length < 5_000);
  })();
  return {
    async stop() {
      stopped = true;
      await loop;
      agent.destroy();
      return results;
    },
  };
}

async function whileServed(fn: () => Promise<void>): Promise<void> {
  const g = goodMtls();
  await fn();
  const results = await g.stop();
  expect(results.length).toBeGreaterThan(0);
  expect(results.filter((r) => !r.ok)).toEqual([]);
  expect(leaked()).toEqual([]);
}

/** Try an mTLS handshake and a request; report how far it got. */
function attempt(opts: tls.ConnectionOptions, path = '/attack/tls'): Promise<{ secure: boolean; response: string; error?: string }> {
  return new Promise((resolve) => {
    let secure = false;
    let response = '';
    let error: string | undefined;
    const s = tls.connect(opts);
    live.add(s);
    s.on('secureConnect', () => {
      secure = true;
      s.write(`GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
    });
    s.on('data', (d) => {
      response += d.toString('latin1');
    });
    s.on('error', (e) => {
      error = e.message;
    });
    s.on('close', () => {
      live.delete(s);
      resolve({ secure, response, error });
    });
  });
}

describe('TLS misuse on an mTLS-only port', () => {
  it('plaintext HTTP is not answered as HTTP; the connection is closed and nothing is forwarded', async () => {
    await whileServed(async () => {
      const r = await rawExchange(port, 'GET /attack/plain HTTP/1.1\r\nHost: x\r\n\r\n', 5_000);
      expect(r.closed).toBe(true);
      expect(r.text.startsWith('HTTP/')).toBe(false);
    });
  });

  it('a handshake that never finishes is closed at transport_socket_connect_timeout', async () => {
    await whileServed(async () => {
      // A TLS record header promising a ClientHello that never comes, and a silent connection.
      const partial = rawExchange(port, Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00]), 20_000);
      const silent = rawExchange(port, Buffer.alloc(0), 20_000);
      const started = Date.now();
      const [a, b] = await Promise.all([partial, silent]);
      expect(a.closed).toBe(true);
      expect(b.closed).toBe(true);
      // Generous bound: closed by the 0.5 s timeout, not by the 20 s idle guard of the helper.
      expect(Date.now() - started).toBeLessThan(15_000);
      expect(m.server.listeners.get('mtls')).toBeDefined();
    });
  });

  it('a client certificate from another CA fails the handshake', async () => {
    await whileServed(async () => {
      const r = await attempt(tlsOptions(stranger));
      expect(r.response).toBe('');
      expect(r.error ?? 'closed').toBeTruthy();
    });
  });

  it('a client without a certificate fails the handshake', async () => {
    await whileServed(async () => {
      const r = await attempt(tlsOptions(undefined));
      expect(r.response).toBe('');
    });
  });

  it('TLS 1.2 renegotiation is refused and the connection closed; the proxy keeps serving', async () => {
    await whileServed(async () => {
      const s = tls.connect(tlsOptions(good, { maxVersion: 'TLSv1.2' }));
      live.add(s);
      let closed = false;
      s.on('error', () => {});
      s.on('close', () => {
        closed = true;
        live.delete(s);
      });
      await new Promise<void>((r) => s.once('secureConnect', () => r()));
      expect(s.getProtocol()).toBe('TLSv1.2');
      // A first request on the connection works.
      const first = await new Promise<string>((resolve) => {
        let text = '';
        const onData = (d: Buffer): void => {
          text += d.toString('latin1');
          if (text.includes('"url":"/good"')) {
            s.off('data', onData);
            resolve(text);
          }
        };
        s.on('data', onData);
        s.write('GET /good HTTP/1.1\r\nHost: x\r\n\r\n');
      });
      expect(first.startsWith('HTTP/1.1 200')).toBe(true);
      // Ask for renegotiation a few times (bounded): node servers refuse client-initiated renegotiation.
      const outcome = await new Promise<string>((resolve) => {
        const ok = s.renegotiate({ rejectUnauthorized: false }, (err) => resolve(err ? `error: ${err.message}` : 'renegotiated'));
        if (!ok) resolve('not started');
        s.once('close', () => resolve('closed'));
        setTimeout(() => resolve(closed ? 'closed' : 'pending'), 10_000).unref();
      });
      expect(outcome).not.toBe('renegotiated');
      for (let i = 0; i < 5000 && !closed; i++) await new Promise((r) => setTimeout(r, 2));
      expect(closed).toBe(true);
      // The proxy survived: a new connection is served.
      const after = await attempt(tlsOptions(good), '/good');
      expect(after.secure).toBe(true);
      expect(after.response.startsWith('HTTP/1.1 200')).toBe(true);
    });
  });
});
