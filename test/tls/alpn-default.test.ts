/**
 * Issue 15 bug 5: a TLS listener without alpn_protocols negotiated h2. Envoy does not negotiate
 * ALPN then, so a curl offering h2 through a tcp_proxy TLS listener to an HTTP/1.1 backend works.
 */
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DevCa } from '../../certs/dev-ca';
import { bootstrap, type StartedMeshlet, startMeshlet, staticCluster, stopAllMeshlets, tcpListener } from '../support/meshlet';
import { closeAll, type HttpEcho, startHttpEcho } from '../support/upstreams';

const DOWNSTREAM_TLS = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext';
let m: StartedMeshlet;
let app: HttpEcho;

beforeAll(async () => {
  const ca = await DevCa.create({ trustDomain: 'cluster.local' });
  const cert = await ca.issueWorkload({ ns: 'default', sa: 'server' });
  app = await startHttpEcho('app');
  const tlsCtx = (alpn?: string[]) => ({
    name: 'envoy.transport_sockets.tls',
    typed_config: {
      '@type': DOWNSTREAM_TLS,
      common_tls_context: {
        tls_certificates: [{ certificate_chain: { inline_string: cert.certChainPem }, private_key: { inline_string: cert.privateKeyPem } }],
        ...(alpn ? { alpn_protocols: alpn } : {}),
      },
    },
  });
  const plain = tcpListener('plain', 'app');
  (plain.filter_chains as Record<string, unknown>[])[0]!.transport_socket = tlsCtx();
  const h2 = tcpListener('h2', 'app');
  (h2.filter_chains as Record<string, unknown>[])[0]!.transport_socket = tlsCtx(['h2', 'http/1.1']);
  m = await startMeshlet(bootstrap([plain, h2], [staticCluster('app', [app.port])]));
});

afterAll(async () => {
  await stopAllMeshlets();
  await closeAll();
});

function exchange(port: number): Promise<{ alpn: string | false; reply: string }> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false, ALPNProtocols: ['h2', 'http/1.1'] }, () => {
      const alpn = s.alpnProtocol ?? false;
      let reply = '';
      s.on('data', (c: Buffer) => {
        reply += c.toString();
        if (reply.includes('\r\n\r\n')) {
          s.destroy();
          resolve({ alpn, reply });
        }
      });
      s.write('GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n');
    });
    s.on('error', reject);
  });
}

describe('downstream TLS ALPN', () => {
  it('negotiates no ALPN without alpn_protocols, and HTTP/1.1 through tcp_proxy works', async () => {
    const r = await exchange(m.listenerPort('plain'));
    expect(r.alpn).toBe(false);
    expect(r.reply).toMatch(/^HTTP\/1\.1 200/);
  });

  it('negotiates from alpn_protocols when set', async () => {
    const r = await exchange(m.listenerPort('h2'));
    expect(r.alpn).toBe('h2');
  });
});
