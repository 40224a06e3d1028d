/**
 * HTTP RBAC end to end through a real meshlet: ALLOW/DENY by path, header and source IP, shadow
 * rules counted only, per-route RBACPerRoute (override and disable), and authorization by the
 * peer's SPIFFE ID over real mTLS with certificates from the development CA.
 */
import http from 'node:http';
import https from 'node:https';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DevCa, type IssuedCertificate } from '../../certs/dev-ca';
import { RbacStats } from '../../proxy/authz/engine';
import { allRbacStats } from '../../proxy/authz/stats';
import type { StreamInfo } from '../../proxy/http/stream-info';
import {
  bootstrap,
  type StartedMeshlet,
  socketAddress,
  startMeshlet,
  staticCluster,
  stopAllMeshlets,
  TCP_PROXY_TYPE,
  filterListener,
} from '../support/meshlet';
import { closeAll, type HttpEcho, startHttpEcho, startTcpEcho, type TcpEcho } from '../support/upstreams';

const RBAC_TYPE = 'type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC';
const RBAC_PER_ROUTE_TYPE = 'type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBACPerRoute';
const NET_RBAC_TYPE = 'type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC';
const TLS_TYPE = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext';
const TRUST = 'cluster.local';

function rbacListener(
  name: string,
  rbac: Record<string, unknown>,
  routeList: Record<string, unknown>[],
  extra: Record<string, unknown> = {},
): Record<string, unknown> {
  return filterListener(name, { name: 'envoy.filters.http.rbac', type: RBAC_TYPE, config: rbac }, routeList, extra);
}

interface Res {
  status: number;
  body: string;
  headers: http.IncomingHttpHeaders;
}

function get(port: number, path: string, headers: Record<string, string> = {}): Promise<Res> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, headers, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => {
        body += c;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
    });
    req.on('error', reject);
    req.end();
  });
}

function getTls(port: number, path: string, id: IssuedCertificate, ca: string): Promise<Res> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: '127.0.0.1',
        port,
        path,
        agent: false,
        ca,
        cert: id.certChainPem,
        key: id.privateKeyPem,
        // The server certificate carries a SPIFFE URI SAN, not a DNS name.
        checkServerIdentity: () => undefined,
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c) => {
          body += c;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

let m: StartedMeshlet;
let echo: HttpEcho;
let tcpEcho: TcpEcho;
let ca: DevCa;
let frontend: IssuedCertificate;
let intruder: IssuedCertificate;
const streams: StreamInfo[] = [];

const ROUTE_ALL = [{ match: { prefix: '/' }, route: { cluster: 'echo' } }];

beforeAll(async () => {
  echo = await startHttpEcho('echo');
  tcpEcho = await startTcpEcho();
  ca = await DevCa.create({ trustDomain: TRUST });
  const server = await ca.issueWorkload({ ns: 'default', sa: 'reviews' });
  frontend = await ca.issueWorkload({ ns: 'default', sa: 'frontend' });
  intruder = await ca.issueWorkload({ ns: 'default', sa: 'intruder' });

  const listeners = [
    rbacListener(
      'allow',
      {
        rules_stat_prefix: 'allow_',
        rules: {
          action: 'ALLOW',
          policies: {
            public: { permissions: [{ url_path: { path: { prefix: '/public' } } }], principals: [{ any: true }] },
            admins: {
              permissions: [{ any: true }],
              principals: [{ header: { name: 'x-role', string_match: { exact: 'admin' } } }],
            },
          },
        },
        shadow_rules: {
          action: 'DENY',
          policies: { 'shadow-all': { permissions: [{ any: true }], principals: [{ any: true }] } },
        },
      },
      [
        {
          match: { prefix: '/open' },
          route: { cluster: 'echo' },
          // RBACPerRoute without `rbac` disables the filter on this route.
          typed_per_filter_config: { 'envoy.filters.http.rbac': { '@type': RBAC_PER_ROUTE_TYPE } },
        },
        {
          match: { prefix: '/strict' },
          route: { cluster: 'echo' },
          typed_per_filter_config: {
            'envoy.filters.http.rbac': {
              '@type': RBAC_PER_ROUTE_TYPE,
              rbac: {
                rules: {
                  action: 'DENY',
                  policies: { everyone: { permissions: [{ any: true }], principals: [{ any: true }] } },
                },
              },
            },
          },
        },
        ...ROUTE_ALL,
      ],
    ),
    rbacListener(
      'deny-ip',
      {
        rules_stat_prefix: 'denyip_',
        rules: {
          action: 'DENY',
          policies: {
            'loopback-internal': {
              permissions: [{ url_path: { path: { prefix: '/internal' } } }],
              principals: [{ source_ip: { address_prefix: '127.0.0.1', prefix_len: 32 } }],
            },
            'xff-ten': {
              permissions: [{ url_path: { path: { prefix: '/xff' } } }],
              principals: [{ remote_ip: { address_prefix: '10.0.0.0', prefix_len: 8 } }],
            },
            'ten-net': {
              permissions: [{ any: true }],
              principals: [{ direct_remote_ip: { address_prefix: '10.0.0.0', prefix_len: 8 } }],
            },
            'not-get': {
              permissions: [{ not_rule: { header: { name: ':method', string_match: { exact: 'GET' } } } }],
              principals: [{ remote_ip: { address_prefix: '127.0.0.0', prefix_len: 8 } }],
            },
          },
        },
      },
      ROUTE_ALL,
    ),
    rbacListener(
      'mtls',
      {
        rules_stat_prefix: 'mtls_',
        rules: {
          action: 'ALLOW',
          policies: {
            frontend: {
              permissions: [
                {
                  and_rules: {
                    rules: [{ header: { name: ':method', string_match: { exact: 'GET' } } }, { any: true }],
                  },
                },
              ],
              principals: [
                { authenticated: { principal_name: { exact: `spiffe://${TRUST}/ns/default/sa/frontend` } } },
              ],
            },
          },
        },
      },
      ROUTE_ALL,
      {
        transport_socket: {
          name: 'envoy.transport_sockets.tls',
          typed_config: {
            '@type': TLS_TYPE,
            require_client_certificate: true,
            common_tls_context: {
              tls_certificate_sds_secret_configs: [{ name: 'default' }],
              validation_context_sds_secret_config: { name: 'ROOTCA' },
            },
          },
        },
      },
    ),
  ];
  listeners.push({
    name: 'tcp-mtls',
    address: socketAddress(0),
    filter_chains: [
      {
        transport_socket: {
          name: 'envoy.transport_sockets.tls',
          typed_config: {
            '@type': TLS_TYPE,
            require_client_certificate: true,
            common_tls_context: {
              tls_certificate_sds_secret_configs: [{ name: 'default' }],
              validation_context_sds_secret_config: { name: 'ROOTCA' },
            },
          },
        },
        filters: [
          {
            name: 'envoy.filters.network.rbac',
            typed_config: {
              '@type': NET_RBAC_TYPE,
              stat_prefix: 'tcp_mtls',
              rules: {
                action: 'ALLOW',
                policies: {
                  frontend: {
                    permissions: [{ any: true }],
                    principals: [
                      { authenticated: { principal_name: { exact: `spiffe://${TRUST}/ns/default/sa/frontend` } } },
                    ],
                  },
                },
              },
            },
          },
          { name: 'tcp', typed_config: { '@type': TCP_PROXY_TYPE, stat_prefix: 'tcp_mtls', cluster: 'tcp-echo' } },
        ],
      },
    ],
  });
  const raw = bootstrap(listeners, [staticCluster('echo', [echo.port]), staticCluster('tcp-echo', [tcpEcho.port])]);
  (raw.static_resources as Record<string, unknown>).secrets = [
    {
      name: 'default',
      tls_certificate: {
        certificate_chain: { inline_string: server.certChainPem },
        private_key: { inline_string: server.privateKeyPem },
      },
    },
    { name: 'ROOTCA', validation_context: { trusted_ca: { inline_string: ca.rootCertPem } } },
  ];
  m = await startMeshlet(raw, { onHttpStream: (i) => streams.push(i) });
});

afterAll(async () => {
  await stopAllMeshlets();
  await closeAll();
});

/** An HTTP RBAC filter's counters; they exist from its first request (they need the HCM's stat_prefix). */
function stats(name: string) {
  return allRbacStats().find((x) => x.name === name && x.kind === 'http') ?? new RbacStats(name, 'http', '');
}

describe('HTTP RBAC filter', () => {
  it('ALLOW admits by url_path or header and denies the rest with 403 and flag RBAC', async () => {
    const port = m.listenerPort('allow');
    const before = { ...stats('http.allow.rbac.allow_') };
    const served = echo.requests.length;

    const pub = await get(port, '/public/page?x=1');
    expect(pub.status).toBe(200);
    const denied = await get(port, '/private');
    expect(denied.status).toBe(403);
    expect(denied.body).toBe('RBAC: access denied');
    const admin = await get(port, '/private', { 'x-role': 'admin' });
    expect(admin.status).toBe(200);
    const wrongRole = await get(port, '/private', { 'x-role': 'guest' });
    expect(wrongRole.status).toBe(403);

    // Denied requests never reached the upstream.
    expect(echo.requests.length - served).toBe(2);
    const after = stats('http.allow.rbac.allow_');
    expect(after.allowed - before.allowed).toBe(2);
    expect(after.denied - before.denied).toBe(2);
    // Shadow rules deny everything but only count.
    expect(after.shadowDenied - before.shadowDenied).toBe(4);
    const info = streams.find((s) => s.path === '/private' && s.hasResponseFlag('RBAC'));
    expect(info?.responseCodeDetails).toBe('rbac_access_denied_matched_policy[none]');
    expect(info?.metadata('envoy.filters.http.rbac.shadow_engine_result')).toBe('denied');
    expect(info?.metadata('envoy.filters.http.rbac.shadow_effective_policy_id')).toBe('shadow-all');
    // Envoy's dynamic metadata (no shadow_rules_stat_prefix here: the bare key names), and the
    // shadow counters under Envoy's name, http.<stat_prefix>.rbac.<shadow_rules_stat_prefix>, not
    // after the rules prefix.
    expect(info?.dynamicMetadataOf('envoy.filters.http.rbac')).toEqual({
      shadow_engine_result: 'denied',
      shadow_effective_policy_id: 'shadow-all',
    });
    expect(after.name).toBe('http.allow.rbac.allow_');
    expect(after.shadowName).toBe('http.allow.rbac.');
  });

  it('RBACPerRoute disables the filter on one route and replaces the rules on another', async () => {
    const port = m.listenerPort('allow');
    expect((await get(port, '/open/anything')).status).toBe(200);
    const strict = await get(port, '/strict', { 'x-role': 'admin' });
    expect(strict.status).toBe(403);
    expect(streams.find((s) => s.path === '/strict')?.responseCodeDetails).toBe(
      'rbac_access_denied_matched_policy[everyone]',
    );
  });

  it('DENY by source IP and path, by CIDR that does not match, and by a not_rule on :method', async () => {
    const port = m.listenerPort('deny-ip');
    const before = { ...stats('http.deny-ip.rbac.denyip_') };
    const internal = await get(port, '/internal/metrics');
    expect(internal.status).toBe(403);
    expect(streams.find((s) => s.path === '/internal/metrics')?.responseCodeDetails).toBe(
      'rbac_access_denied_matched_policy[loopback-internal]',
    );
    expect((await get(port, '/other')).status).toBe(200);
    const post = await new Promise<number>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port, path: '/other', method: 'POST', agent: false }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      });
      req.on('error', reject);
      req.end('x');
    });
    expect(post).toBe(403);
    const after = stats('http.deny-ip.rbac.denyip_');
    expect(after.denied - before.denied).toBe(2);
    expect(after.allowed - before.allowed).toBe(1);
  });

  it('remote_ip follows x-forwarded-for (use_remote_address false), direct_remote_ip does not', async () => {
    const port = m.listenerPort('deny-ip');
    expect((await get(port, '/xff')).status).toBe(200);
    const viaProxy = await get(port, '/xff/a', { 'x-forwarded-for': '10.1.2.3' });
    expect(viaProxy.status).toBe(403);
    expect(streams.find((s) => s.path === '/xff/a')?.responseCodeDetails).toBe(
      'rbac_access_denied_matched_policy[xff-ten]',
    );
    // direct_remote_ip (policy ten-net) looks at the socket peer, 127.0.0.1: not denied by XFF.
    expect((await get(port, '/any', { 'x-forwarded-for': '10.1.2.3' })).status).toBe(200);
  });

  it('authorizes the peer SPIFFE ID over mTLS', async () => {
    const port = m.listenerPort('mtls');
    const ok = await getTls(port, '/hello', frontend, ca.rootCertPem);
    expect(ok.status).toBe(200);
    const echoed = JSON.parse(ok.body) as { url: string };
    expect(echoed.url).toBe('/hello');
    const no = await getTls(port, '/hello', intruder, ca.rootCertPem);
    expect(no.status).toBe(403);
    expect(no.body).toBe('RBAC: access denied');
    const s = stats('http.mtls.rbac.mtls_');
    expect(s.allowed).toBeGreaterThanOrEqual(1);
    expect(s.denied).toBeGreaterThanOrEqual(1);
  });

  it('network RBAC admits a TCP connection by the peer SPIFFE ID and closes the others', async () => {
    const port = m.listenerPort('tcp-mtls');
    const exchange = (id: IssuedCertificate): Promise<{ text: string; closed: boolean }> =>
      new Promise((resolve) => {
        let text = '';
        let timer: NodeJS.Timeout | undefined;
        const s = tls.connect({
          host: '127.0.0.1',
          port,
          ca: ca.rootCertPem,
          cert: id.certChainPem,
          key: id.privateKeyPem,
          checkServerIdentity: () => undefined,
        });
        const done = (closed: boolean): void => {
          clearTimeout(timer);
          s.destroy();
          resolve({ text, closed });
        };
        s.on('secureConnect', () => {
          s.write('hello');
          timer = setTimeout(() => done(false), 1_000);
        });
        s.on('data', (d) => {
          text += d.toString();
          if (text === 'hello') done(false);
        });
        s.on('end', () => done(true));
        s.on('error', () => done(true));
      });
    const before = tcpEcho.connections;
    expect(await exchange(frontend)).toEqual({ text: 'hello', closed: false });
    const denied = await exchange(intruder);
    expect(denied.text).toBe('');
    expect(denied.closed).toBe(true);
    expect(tcpEcho.connections - before).toBe(1);
    const st = allRbacStats().find((x) => x.kind === 'network' && x.name === 'tcp_mtls.rbac.');
    expect(st).toMatchObject({ allowed: 1, denied: 1 });
  });
});
