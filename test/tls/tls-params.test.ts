/**
 * tls_params.ecdh_curves and signature_algorithms were accepted and silently ignored. They now
 * reach OpenSSL: a server limited to P-384 refuses a client that offers only X25519 and accepts
 * one that offers P-384; a name OpenSSL does not know is a config error with its path.
 */
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DevCa } from '../../certs/dev-ca';
import { ConfigError } from '../../common/errors';
import { decodeBootstrap } from '../../proxy/config/bootstrap';
import { bootstrap, type StartedMeshlet, startMeshlet, staticCluster, stopAllMeshlets, tcpListener } from '../support/meshlet';
import { closeAll, type HttpEcho, startHttpEcho } from '../support/upstreams';
import { ctx } from '../config/helpers';

const DOWNSTREAM_TLS = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext';
let m: StartedMeshlet;
let app: HttpEcho;
let certChainPem = '';
let privateKeyPem = '';

function tlsListener(name: string, tlsParams: Record<string, unknown>): Record<string, unknown> {
  const l = tcpListener(name, 'app');
  (l.filter_chains as Record<string, unknown>[])[0]!.transport_socket = {
    name: 'envoy.transport_sockets.tls',
    typed_config: {
      '@type': DOWNSTREAM_TLS,
      common_tls_context: {
        tls_params: tlsParams,
        tls_certificates: [{ certificate_chain: { inline_string: certChainPem }, private_key: { inline_string: privateKeyPem } }],
      },
    },
  };
  return l;
}

beforeAll(async () => {
  const ca = await DevCa.create({ trustDomain: 'cluster.local' });
  const cert = await ca.issueWorkload({ ns: 'default', sa: 'server' });
  certChainPem = cert.certChainPem;
  privateKeyPem = cert.privateKeyPem!;
  app = await startHttpEcho('app');
  m = await startMeshlet(
    bootstrap(
      [
        tlsListener('p384', { ecdh_curves: ['P-384'] }),
        tlsListener('sigalg', { tls_maximum_protocol_version: 'TLSv1_2', signature_algorithms: ['rsa_pss_rsae_sha256'] }),
      ],
      [staticCluster('app', [app.port])],
    ),
  );
});

afterAll(async () => {
  await stopAllMeshlets();
  await closeAll();
});

function handshake(port: number, opts: tls.ConnectionOptions): Promise<string> {
  return new Promise((resolve) => {
    const s = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false, ...opts }, () => {
      const info = s.getEphemeralKeyInfo() as { name?: string } | null;
      const what = `ok ${info?.name ?? ''}`.trim();
      s.destroy();
      resolve(what);
    });
    s.on('error', (e) => resolve(`error ${e.message}`));
  });
}

describe('tls_params', () => {
  it('signature_algorithms limits what the listener signs with', async () => {
    // The dev CA's workload keys are RSA: limited to RSA-PSS, the listener cannot serve a TLS 1.2
    // client that allows only PKCS#1 v1.5 signatures, and serves one that allows PSS.
    expect(await handshake(m.listenerPort('sigalg'), { sigalgs: 'rsa_pkcs1_sha256' })).toMatch(/^error /);
    expect(await handshake(m.listenerPort('sigalg'), { sigalgs: 'rsa_pkcs1_sha256:rsa_pss_rsae_sha256' })).toMatch(/^ok/);
  });

  it('ecdh_curves limits the key-exchange groups the listener accepts', async () => {
    expect(await handshake(m.listenerPort('p384'), { ecdhCurve: 'X25519' })).toMatch(/^error /);
    expect(await handshake(m.listenerPort('p384'), { ecdhCurve: 'P-384:X25519' })).toBe('ok secp384r1');
  });

  it('a name OpenSSL does not know is a config error naming the field', () => {
    const raw = bootstrap([tlsListener('bad', { ecdh_curves: ['P-999'], signature_algorithms: ['no_such_alg'] })], [staticCluster('app', [1])]);
    let err: unknown;
    try {
      decodeBootstrap(raw, ctx());
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const text = (err as Error).message;
    expect(text).toMatch(/tls_params\.ecdh_curves: OpenSSL does not accept \[P-999\]/);
    expect(text).toMatch(/tls_params\.signature_algorithms: OpenSSL does not accept \[no_such_alg\]/);
  });
});
