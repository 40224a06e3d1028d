/**
 * Issue 15 bug 7: /config_dump must never print key material. Envoy redacts every field marked
 * sensitive ("[redacted]"); meshlet printed `private_key.inline_string` of a static listener.
 * Covers static listeners, clusters and secrets, dynamic (ADS) listeners, clusters and SDS
 * secrets, a rejected listener's error_state, and every ?resource= view; plus the other admin
 * pages that print configuration-derived data.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DevCa, type IssuedCertificate } from '../../certs/dev-ca';
import { redactSecrets } from '../../proxy/admin/redact';
import { JsonAdsServer } from '../support/json-ads-server';
import { adsBootstrap } from '../support/mesh';
import { httpListener, routes, type StartedMeshlet, startMeshlet, staticCluster, stopAllMeshlets } from '../support/meshlet';
import { closeAll } from '../support/upstreams';
import { request } from './helpers';

const T = {
  listener: 'type.googleapis.com/envoy.config.listener.v3.Listener',
  cluster: 'type.googleapis.com/envoy.config.cluster.v3.Cluster',
  secret: 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret',
};
const DOWNSTREAM_TLS = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext';
const UPSTREAM_TLS = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext';

let ads: JsonAdsServer;
let m: StartedMeshlet;
let cert: IssuedCertificate;
/** A distinctive line of each private key: if it shows anywhere, the key leaked. */
let keyMarkers: string[];

function tlsListener(name: string, tlsContext: Record<string, unknown>): Record<string, unknown> {
  const l = httpListener(name, routes([{ match: { prefix: '/' }, direct_response: { status: 200 } }]));
  (l.filter_chains as Record<string, unknown>[])[0]!.transport_socket = {
    name: 'envoy.transport_sockets.tls',
    typed_config: { '@type': DOWNSTREAM_TLS, ...tlsContext },
  };
  return l;
}

function inlineCert(c: IssuedCertificate): Record<string, unknown> {
  return { certificate_chain: { inline_string: c.certChainPem }, private_key: { inline_string: c.privateKeyPem } };
}

beforeAll(async () => {
  const ca = await DevCa.create({ trustDomain: 'cluster.local' });
  cert = await ca.issueWorkload({ ns: 'default', sa: 'server' });
  const other = await ca.issueWorkload({ ns: 'default', sa: 'other' });
  const third = await ca.issueWorkload({ ns: 'default', sa: 'third' });
  keyMarkers = [cert, other, third].map((c) => c.privateKeyPem!.split('\n')[3]!);
  ads = new JsonAdsServer();
  await ads.start();
  ads.set(T.listener, [
    tlsListener('dyn_inline', { common_tls_context: { tls_certificates: [inlineCert(other)] } }),
    tlsListener('dyn_sds', {
      common_tls_context: { tls_certificate_sds_secret_configs: [{ name: 'dyn_cert', sds_config: { ads: {}, resource_api_version: 'V3' } }] },
    }),
  ]);
  ads.set(T.cluster, [
    staticCluster('dyn_upstream', [1], {
      transport_socket: { name: 'envoy.transport_sockets.tls', typed_config: { '@type': UPSTREAM_TLS, common_tls_context: { tls_certificates: [inlineCert(third)] } } },
    }),
  ]);
  ads.set(T.secret, [{ name: 'dyn_cert', tls_certificate: inlineCert(third) }]);

  const raw = adsBootstrap('redact', ads.port);
  const sr = raw.static_resources as Record<string, unknown[]>;
  sr.listeners = [tlsListener('static_tls', { common_tls_context: { tls_certificates: [inlineCert(cert)] } })];
  sr.clusters!.push(
    staticCluster('static_upstream', [1], {
      transport_socket: {
        name: 'envoy.transport_sockets.tls',
        typed_config: { '@type': UPSTREAM_TLS, common_tls_context: { tls_certificates: [{ certificate_chain: { inline_string: cert.certChainPem }, private_key: { inline_bytes: Buffer.from(cert.privateKeyPem!).toString('base64') } }] } },
      },
    }),
  );
  sr.secrets = [{ name: 'static_cert', tls_certificate: inlineCert(other) }];
  m = await startMeshlet(raw);
  // Wait until every dynamic resource is in the dump (the SDS secret comes after its listener).
  const end = Date.now() + 10_000;
  for (;;) {
    const d = await request(m.adminPort, '/config_dump?resource=dynamic_active_secrets');
    if (d.body.includes('dyn_cert') && d.body.includes('ACKED')) break;
    if (Date.now() > end) throw new Error(`dynamic secret never arrived: ${d.body}`);
    await new Promise((r) => setTimeout(r, 50));
  }
});

afterAll(async () => {
  await stopAllMeshlets();
  await ads.stop();
  await closeAll();
});

function expectNoKey(body: string): void {
  expect(body).not.toContain('PRIVATE KEY');
  expect(body).not.toContain(Buffer.from(cert.privateKeyPem!).toString('base64').slice(0, 40));
  for (const k of keyMarkers) expect(body).not.toContain(k);
}

describe('/config_dump redacts secrets as Envoy does', () => {
  it('redacts keys in the full dump, with and without EDS', async () => {
    for (const path of ['/config_dump', '/config_dump?include_eds']) {
      const r = await request(m.adminPort, path);
      expect(r.status).toBe(200);
      expectNoKey(r.body);
      // the certificates (public) are still shown, the keys are "[redacted]"
      expect(r.body).toContain('BEGIN CERTIFICATE');
      expect(r.body).toContain('"inline_string": "[redacted]"');
      // inline_bytes are bytes: Envoy writes the bytes of "[redacted]"
      expect(r.body).toContain(`"inline_bytes": "${Buffer.from('[redacted]').toString('base64')}"`);
    }
  });

  it('redacts every ?resource= view', async () => {
    const views = ['static_listeners', 'static_clusters', 'static_secrets', 'dynamic_listeners', 'dynamic_active_clusters', 'dynamic_active_secrets'];
    for (const v of views) {
      const r = await request(m.adminPort, `/config_dump?resource=${v}`);
      expect(r.status).toBe(200);
      const configs = (JSON.parse(r.body) as { configs: unknown[] }).configs;
      expect(configs.length, v).toBeGreaterThan(0);
      expectNoKey(r.body);
      expect(/\[redacted\]|W3JlZGFjdGVkXQ==/.test(r.body), v).toBe(true);
    }
    const secrets = JSON.parse((await request(m.adminPort, '/config_dump?resource=dynamic_active_secrets')).body) as {
      configs: { name: string; secret: { tls_certificate: Record<string, { inline_string?: string }> } }[];
    };
    const dyn = secrets.configs.find((c) => c.name === 'dyn_cert')!;
    expect(dyn.secret.tls_certificate.private_key).toEqual({ inline_string: '[redacted]' });
    expect(dyn.secret.tls_certificate.certificate_chain!.inline_string).toContain('BEGIN CERTIFICATE');
  });

  it('redacts a rejected resource in error_state.failed_configuration', async () => {
    // Same listener name, an address that cannot be valid: NACKed, shown as error_state.
    const bad = tlsListener('dyn_inline', { common_tls_context: { tls_certificates: [inlineCert(cert)] } });
    bad.address = { socket_address: { address: 'not-an-ip', port_value: 1 } };
    ads.set(T.listener, [bad]);
    const end = Date.now() + 10_000;
    while (ads.nacks.length === 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
    expect(ads.nacks.length).toBeGreaterThan(0);
    const r = await request(m.adminPort, '/config_dump');
    expect(r.body).toContain('failed_configuration');
    expectNoKey(r.body);
  });

  it('other admin pages print no key material', async () => {
    for (const path of ['/certs', '/listeners', '/listeners?format=json', '/clusters', '/clusters?format=json', '/server_info']) {
      const r = await request(m.adminPort, path);
      expect(r.status, path).toBe(200);
      expectNoKey(r.body);
    }
  });
});

describe('redactSecrets', () => {
  it('follows Envoy: sensitive subtrees lose strings and scalars, the rest stays', () => {
    const out = redactSecrets({
      tls_certificate: { private_key: { filename: '/k.pem' }, password: { inline_string: 'pw' }, certificate_chain: { filename: '/c.pem' } },
      privateKey: { inlineString: 'camel' },
      session_ticket_keys: { keys: [{ inline_bytes: 'AAAA' }] },
      generic_secret: { secret: { inline_string: 's' } },
      google_grpc: { call_credentials: [{ access_token: 'tok' }] },
      typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.basic_auth.v3.BasicAuth', users: { inline_string: 'u:{SHA}x' } },
      password: 'not a TLS password field: kept',
      keys: ['kept'],
    });
    expect(out).toEqual({
      tls_certificate: { private_key: { filename: '[redacted]' }, password: { inline_string: '[redacted]' }, certificate_chain: { filename: '/c.pem' } },
      privateKey: { inlineString: '[redacted]' },
      session_ticket_keys: { keys: [{ inline_bytes: Buffer.from('[redacted]').toString('base64') }] },
      generic_secret: { secret: { inline_string: '[redacted]' } },
      google_grpc: { call_credentials: [{ access_token: '[redacted]' }] },
      typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.basic_auth.v3.BasicAuth', users: { inline_string: '[redacted]' } },
      password: 'not a TLS password field: kept',
      keys: ['kept'],
    });
  });
});

