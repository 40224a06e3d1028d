/**
 * A PERMISSIVE-style listener written by hand, as an Envoy user would: tls_inspector, a
 * `transport_protocol: tls` chain terminating mTLS and a `raw_buffer` chain, both tcp_proxy to a
 * server-first app (it greets before the client speaks, like SMTP or MySQL). A silent plaintext
 * client reaches the raw_buffer chain once the inspection times out when
 * continue_on_listener_filters_timeout is set, and is closed when it is not (Envoy's default);
 * an mTLS client gets the greeting over TLS.
 */
import net from 'node:net';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DevCa, type IssuedCertificate } from '../../certs/dev-ca';
import { bootstrap, socketAddress, staticCluster, startMeshlet, type StartedMeshlet, stopAllMeshlets, TCP_PROXY_TYPE } from '../support/meshlet';

const DOWNSTREAM_TLS = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext';
const TLS_INSPECTOR = 'type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector';

let ca: DevCa;
let serverCert: IssuedCertificate;
let clientCert: IssuedCertificate;
let greeter: net.Server;
let m: StartedMeshlet;

function tcp(cluster: string): Record<string, unknown> {
  return { name: 'envoy.filters.network.tcp_proxy', typed_config: { '@type': TCP_PROXY_TYPE, stat_prefix: cluster, cluster } };
}

function permissiveListener(name: string, continueOnTimeout: boolean): Record<string, unknown> {
  return {
    name,
    address: socketAddress(0),
    listener_filters: [{ name: 'envoy.filters.listener.tls_inspector', typed_config: { '@type': TLS_INSPECTOR } }],
    listener_filters_timeout: '0.3s',
    continue_on_listener_filters_timeout: continueOnTimeout,
    filter_chains: [
      {
        name: 'mtls',
        filter_chain_match: { transport_protocol: 'tls' },
        transport_socket: {
          name: 'envoy.transport_sockets.tls',
          typed_config: {
            '@type': DOWNSTREAM_TLS,
            common_tls_context: {
              tls_certificates: [{ certificate_chain: { inline_string: serverCert.certChainPem }, private_key: { inline_string: serverCert.privateKeyPem } }],
              validation_context: { trusted_ca: { inline_string: ca.rootCertPem } },
            },
            require_client_certificate: true,
          },
        },
        filters: [tcp('greeter')],
      },
      { name: 'plaintext', filter_chain_match: { transport_protocol: 'raw_buffer' }, filters: [tcp('greeter')] },
    ],
  };
}

beforeAll(async () => {
  ca = await DevCa.create({ trustDomain: 'cluster.local' });
  serverCert = await ca.issueWorkload({ ns: 'default', sa: 'db' });
  clientCert = await ca.issueWorkload({ ns: 'default', sa: 'app' });
  greeter = net.createServer((s) => {
    s.on('error', () => {});
    s.write('220 hello\r\n');
    s.pipe(s);
  });
  await new Promise<void>((r) => greeter.listen(0, '127.0.0.1', r));
  const port = (greeter.address() as net.AddressInfo).port;
  m = await startMeshlet(bootstrap([permissiveListener('continue', true), permissiveListener('strict_timeout', false)], [staticCluster('greeter', [port])]));
});

afterAll(async () => {
  await stopAllMeshlets();
  await new Promise((r) => greeter.close(r));
});

/** Connect without sending anything; resolve with what arrived before close or 5 s. */
function silentClient(port: number): Promise<{ got: string; closed: boolean }> {
  return new Promise((resolve) => {
    let got = '';
    const s = net.connect(port, '127.0.0.1');
    const t = setTimeout(() => {
      s.destroy();
      resolve({ got, closed: false });
    }, 5_000);
    s.on('data', (d) => {
      got += d.toString();
      if (got.includes('\r\n')) {
        clearTimeout(t);
        s.destroy();
        resolve({ got, closed: false });
      }
    });
    s.on('close', () => {
      clearTimeout(t);
      resolve({ got, closed: true });
    });
    s.on('error', () => {});
  });
}

describe('tls_inspector listener with tls and raw_buffer chains', () => {
  it('a silent plaintext client reaches the server-first app after the inspection timeout', async () => {
    const r = await silentClient(m.listenerPort('continue'));
    expect(r.got).toBe('220 hello\r\n');
  });

  it('without continue_on_listener_filters_timeout the silent client is closed (Envoy default)', async () => {
    const l = m.server.listeners.get('strict_timeout')!;
    const before = l.stats.downstreamPreCxTimeout;
    const r = await silentClient(m.listenerPort('strict_timeout'));
    expect(r).toEqual({ got: '', closed: true });
    expect(l.stats.downstreamPreCxTimeout).toBe(before + 1);
  });

  it('an mTLS client is served over TLS on the same port', async () => {
    const got = await new Promise<string>((resolve, reject) => {
      const s = tls.connect({
        host: '127.0.0.1',
        port: m.listenerPort('continue'),
        ca: ca.rootCertPem,
        cert: clientCert.certChainPem,
        key: clientCert.privateKeyPem,
        checkServerIdentity: () => undefined,
      });
      let buf = '';
      s.on('secureConnect', () => s.write('PING\r\n'));
      s.on('data', (d) => {
        buf += d.toString();
        if (buf.includes('PING\r\n')) {
          s.destroy();
          resolve(buf);
        }
      });
      s.setTimeout(5_000, () => s.destroy(new Error('timeout')));
      s.on('error', reject);
    });
    expect(got).toBe('220 hello\r\nPING\r\n');
    // Envoy's ssl.* counters of the listener (issue 18.9), in /stats and in Prometheus form.
    const addr = `127.0.0.1_${m.listenerPort('continue')}`;
    const stats = await (await fetch(`http://127.0.0.1:${m.adminPort}/stats`)).text();
    expect(stats).toMatch(new RegExp(`^listener\\.${addr.replace(/\./g, '\\.')}\\.ssl\\.handshake: [1-9]`, 'm'));
    expect(stats).toContain(`listener.${addr}.ssl.fail_verify_error: 0`);
    const prom = await (await fetch(`http://127.0.0.1:${m.adminPort}/stats/prometheus`)).text();
    expect(prom).toMatch(new RegExp(`^envoy_listener_ssl_handshake_total\\{envoy_listener_address="${addr}"\\} [1-9]`, 'm'));
  });
});
