/**
 * Network RBAC through a real meshlet (denied TCP connections are closed before the TCP proxy
 * dials the upstream; allowed ones are proxied), plus the RBAC engine's matching rules and the
 * config validation errors of both RBAC filters.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AuthzInput, RbacEngine, RbacStats } from '../../proxy/authz/engine';
import { allRbacStats } from '../../proxy/authz/stats';
import { decodeBootstrap } from '../../proxy/config/bootstrap';
import { Issues, Reader } from '../../common/reader';
import type { RbacConfig } from '../../proxy/config/types';
import { ConfigError } from '../../common/errors';
import type { DownstreamConnectionInfo, RequestHead } from '../../proxy/http/codec';
import { rbacFilterFactory, rbacPerRouteFactory } from '../../proxy/http/filters/rbac';
import { createRegistries } from '../../proxy/registry';
import {
  bootstrap,
  type StartedMeshlet,
  socketAddress,
  startMeshlet,
  staticCluster,
  stopAllMeshlets,
  TCP_PROXY_TYPE,
} from '../support/meshlet';
import { closeAll, rawExchange, startTcpEcho, type TcpEcho } from '../support/upstreams';

const NET_RBAC_TYPE = 'type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC';

function tcpRbacListener(name: string, rbac: Record<string, unknown>): Record<string, unknown> {
  return {
    name,
    address: socketAddress(0),
    filter_chains: [
      {
        filters: [
          { name: 'envoy.filters.network.rbac', typed_config: { '@type': NET_RBAC_TYPE, stat_prefix: name, ...rbac } },
          {
            name: 'envoy.filters.network.tcp_proxy',
            typed_config: { '@type': TCP_PROXY_TYPE, stat_prefix: name, cluster: 'echo' },
          },
        ],
      },
    ],
  };
}

let m: StartedMeshlet;
let echo: TcpEcho;

beforeAll(async () => {
  echo = await startTcpEcho();
  m = await startMeshlet(
    bootstrap(
      [
        tcpRbacListener('tcp-deny', {
          rules: {
            action: 'DENY',
            policies: {
              loopback: {
                permissions: [{ any: true }],
                principals: [{ source_ip: { address_prefix: '127.0.0.0', prefix_len: 8 } }],
              },
            },
          },
        }),
        tcpRbacListener('tcp-allow', {
          rules: {
            action: 'ALLOW',
            policies: {
              // destination_port 1 never matches, so not_rule admits every real port.
              'not-port-1': {
                permissions: [{ not_rule: { destination_port: 1 } }],
                principals: [{ remote_ip: { address_prefix: '127.0.0.1', prefix_len: 32 } }],
              },
            },
          },
        }),
        tcpRbacListener('tcp-header', {
          // Header rules never match a bare connection: an ALLOW on a header admits nobody.
          rules: {
            action: 'ALLOW',
            policies: {
              hdr: { permissions: [{ header: { name: 'x-any', present_match: true } }], principals: [{ any: true }] },
            },
          },
        }),
      ],
      [staticCluster('echo', [echo.port])],
    ),
  );
});

afterAll(async () => {
  await stopAllMeshlets();
  await closeAll();
});

function netStats(prefix: string): RbacStats {
  const s = allRbacStats().find((x) => x.kind === 'network' && x.name === `${prefix}.rbac.`);
  if (!s) throw new Error(`no stats for ${prefix}`);
  return s;
}

describe('network RBAC filter', () => {
  it('closes a denied connection without reaching the upstream', async () => {
    const before = echo.connections;
    const r = await rawExchange(m.listenerPort('tcp-deny'), 'hello', 2_000);
    expect(r.closed).toBe(true);
    expect(r.text).toBe('');
    expect(echo.connections).toBe(before);
    expect(netStats('tcp-deny').denied).toBe(1);
    expect(netStats('tcp-deny').allowed).toBe(0);
  });

  it('proxies an allowed connection', async () => {
    const r = await rawExchange(m.listenerPort('tcp-allow'), 'ping', 500);
    expect(r.text).toBe('ping');
    expect(netStats('tcp-allow').allowed).toBe(1);
  });

  it('never matches header rules on a connection (ALLOW on a header admits nobody)', async () => {
    const r = await rawExchange(m.listenerPort('tcp-header'), 'x', 2_000);
    expect(r.closed).toBe(true);
    expect(r.text).toBe('');
    expect(netStats('tcp-header').denied).toBe(1);
  });
});

// ───────────── engine ─────────────

const conn = (over: Partial<DownstreamConnectionInfo> = {}): DownstreamConnectionInfo => ({
  id: 1,
  remoteAddress: '::ffff:10.1.2.3',
  remotePort: 5555,
  localAddress: '10.9.9.9',
  localPort: 8080,
  ...over,
});

const head = (path: string, headers: string[] = []): RequestHead => ({
  method: 'GET',
  path,
  authority: 'svc',
  scheme: 'http',
  protocol: 'HTTP/1.1',
  headers,
  contentLength: 0,
});

function engine(rbac: Record<string, unknown>): RbacEngine {
  const issues = new Issues();
  const cfg = rbacFilterFactory.decode(new Reader(rbac, '', issues)) as RbacConfig;
  expect(issues.errors).toEqual([]);
  return new RbacEngine(cfg, new RbacStats('t', 'http'));
}

describe('RBAC engine', () => {
  it('matches CIDRs on IPv4-mapped addresses, destination ip/port from the original destination, and SNI', () => {
    const e = engine({
      rules: {
        action: 'ALLOW',
        policies: {
          p: {
            permissions: [
              {
                and_rules: {
                  rules: [
                    { destination_ip: { address_prefix: '192.168.0.0', prefix_len: 16 } },
                    { destination_port: 9080 },
                    { requested_server_name: { suffix: '.svc.cluster.local' } },
                  ],
                },
              },
            ],
            principals: [{ direct_remote_ip: { address_prefix: '10.0.0.0', prefix_len: 8 } }],
          },
        },
      },
    });
    const input: AuthzInput = {
      connection: conn({
        originalDst: { address: '192.168.1.7', port: 9080 },
        tls: { sni: 'reviews.default.svc.cluster.local' },
      }),
      head: head('/'),
    };
    expect(e.evaluate(input)).toBe(true);
    expect(e.lastPolicy).toBe('p');
    expect(
      e.evaluate({
        connection: conn({ originalDst: { address: '192.168.1.7', port: 9081 }, tls: { sni: 'x.svc.cluster.local' } }),
        head: head('/'),
      }),
    ).toBe(false);
    expect(
      e.evaluate({
        connection: conn({
          remoteAddress: '11.0.0.1',
          originalDst: { address: '192.168.1.7', port: 9080 },
          tls: { sni: 'a.svc.cluster.local' },
        }),
        head: head('/'),
      }),
    ).toBe(false);
    expect(e.stats.allowed).toBe(1);
    expect(e.stats.denied).toBe(2);
  });

  it('authenticated matches URI SANs, DNS SANs then subject; without a name any verified peer', () => {
    const e = engine({
      rules: {
        action: 'ALLOW',
        policies: {
          anyPeer: { permissions: [{ url_path: { path: { exact: '/peer' } } }], principals: [{ authenticated: {} }] },
          named: {
            permissions: [{ any: true }],
            principals: [{ authenticated: { principal_name: { exact: 'db.internal' } } }],
          },
        },
      },
    });
    const tlsPeer = { peerPrincipal: 'spiffe://td/ns/a/sa/b', peerUriSans: ['spiffe://td/ns/a/sa/b'] };
    expect(e.evaluate({ connection: conn({ tls: tlsPeer }), head: head('/peer?q') })).toBe(true);
    expect(e.evaluate({ connection: conn({ tls: {} }), head: head('/peer') })).toBe(false);
    expect(
      e.evaluate({ connection: conn({ tls: { ...tlsPeer, peerDnsSans: ['db.internal'] } }), head: head('/x') }),
    ).toBe(true);
    expect(e.lastPolicy).toBe('named');
    expect(e.evaluate({ connection: conn(), head: head('/peer') })).toBe(false);
  });

  it('LOG admits everything and counts matches; no rules admits everything', () => {
    const log = engine({
      rules: { action: 'LOG', policies: { all: { permissions: [{ any: true }], principals: [{ any: true }] } } },
    });
    expect(log.evaluate({ connection: conn(), head: head('/') })).toBe(true);
    expect(log.stats.logged).toBe(1);
    const open = engine({ shadow_rules: { action: 'ALLOW', policies: {} } });
    expect(open.evaluate({ connection: conn(), head: head('/') })).toBe(true);
    expect(open.stats.shadowDenied).toBe(1);
  });

  it('or_ids / not_id / header principals and url_path ignoring the query', () => {
    const e = engine({
      rules: {
        action: 'DENY',
        policies: {
          p: {
            permissions: [{ url_path: { path: { exact: '/admin' } } }],
            principals: [
              {
                or_ids: {
                  ids: [
                    { header: { name: 'x-user', string_match: { prefix: 'evil' } } },
                    { not_id: { source_ip: { address_prefix: '10.0.0.0', prefix_len: 8 } } },
                  ],
                },
              },
            ],
          },
        },
      },
    });
    expect(e.evaluate({ connection: conn(), head: head('/admin?x=1', ['x-user', 'evil-bob']) })).toBe(false);
    expect(e.evaluate({ connection: conn(), head: head('/admin', ['x-user', 'alice']) })).toBe(true);
    expect(e.evaluate({ connection: conn({ remoteAddress: '8.8.8.8' }), head: head('/admin') })).toBe(false);
    expect(e.evaluate({ connection: conn({ remoteAddress: '8.8.8.8' }), head: head('/public') })).toBe(true);
  });
});

// ───────────── config validation ─────────────

function decodeHttp(raw: Record<string, unknown>) {
  const issues = new Issues();
  rbacFilterFactory.decode(new Reader(raw, 'typed_config', issues));
  return issues;
}

describe('RBAC config validation', () => {
  it('reports every bad field of the HTTP filter with its path', () => {
    const issues = decodeHttp({
      rules: {
        action: 'MAYBE',
        policies: {
          a: { permissions: [], principals: [{ any: true }] },
          b: { permissions: [{ metadata: {} }], principals: [{ source_ip: { address_prefix: 'not-an-ip' } }] },
          c: { permissions: [{ any: true }], principals: [{ any: true }], condition: { call_expr: {} } },
        },
      },
      matcher: {},
    });
    const paths = issues.errors.map((e) => e.path);
    expect(paths).toEqual(
      expect.arrayContaining([
        'typed_config.rules.action',
        'typed_config.rules.policies.a.permissions',
        'typed_config.rules.policies.b.permissions[0].metadata.filter',
        'typed_config.rules.policies.b.principals[0].source_ip.address_prefix',
        'typed_config.rules.policies.c.condition',
        'typed_config.matcher',
      ]),
    );
  });

  it('RBACPerRoute is only valid per route, and the RBAC type is refused per route', () => {
    const issues = new Issues();
    rbacPerRouteFactory.decode(new Reader({}, 'http_filters[0].typed_config', issues));
    expect(issues.errors[0]?.message).toMatch(/only valid in typed_per_filter_config/);
    const i2 = new Issues();
    rbacFilterFactory.decodePerRoute!(new Reader({ rules: {} }, 'tpfc', i2));
    expect(i2.errors[0]?.message).toMatch(/RBACPerRoute/);
    const i3 = new Issues();
    const ok = rbacPerRouteFactory.decodePerRoute!(new Reader({ rbac: { rules: { action: 'DENY' } } }, 'tpfc', i3));
    expect(i3.errors).toEqual([]);
    expect(ok).toMatchObject({ kind: 'rbac_per_route', config: { rules: { action: 'DENY', policies: [] } } });
  });

  it('the network filter requires stat_prefix and rejects CONTINUOUS enforcement', () => {
    const raw = bootstrap(
      [
        {
          name: 'l',
          address: socketAddress(0),
          filter_chains: [
            {
              filters: [
                {
                  name: 'rbac',
                  typed_config: { '@type': NET_RBAC_TYPE, enforcement_type: 'CONTINUOUS', rules: { action: 'ALLOW' } },
                },
                { name: 'tcp', typed_config: { '@type': TCP_PROXY_TYPE, stat_prefix: 't', cluster: 'echo' } },
              ],
            },
          ],
        },
      ],
      [staticCluster('echo', [1])],
    );
    let err: unknown;
    try {
      decodeBootstrap(raw, { httpFilters: createRegistries().httpFilters });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const paths = (err as ConfigError).issues.map((i) => i.path);
    expect(paths.some((p) => p.endsWith('typed_config.stat_prefix'))).toBe(true);
    expect(paths.some((p) => p.endsWith('typed_config.enforcement_type'))).toBe(true);
  });
});
