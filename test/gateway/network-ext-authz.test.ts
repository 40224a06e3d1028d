/**
 * The network ext_authz filter in front of tcp_proxy, against a real gRPC authorizer
 * (envoy.service.auth.v3.Authorization/Check on @grpc/grpc-js) that decides by the connection's
 * destination port: allowed connections reach a TCP echo server, denied ones are closed, a dead
 * authorizer closes them unless failure_mode_allow; plus config validation.
 */
import tls from 'node:tls';
import type * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DevCa, type IssuedCertificate } from '../../certs/dev-ca';
import { extAuthzStats } from '../../proxy/http/filters/ext-authz-stats';
import { authorizationService, closeServiceClients } from '../../proxy/http/filters/service-client';
import { decodeNetworkExtAuthz } from '../../proxy/config/filters/network-ext-authz';
import {
  bootstrap,
  type StartedMeshlet,
  socketAddress,
  startMeshlet,
  staticCluster,
  stopAllMeshlets,
  TCP_PROXY_TYPE,
} from '../support/meshlet';
import { closeAll, closedPort, rawExchange, startTcpEcho, type TcpEcho } from '../support/upstreams';
import { decodeWith, startGrpcServer, stopGrpcServer } from './helpers';

const NET_EXT_AUTHZ = 'type.googleapis.com/envoy.extensions.filters.network.ext_authz.v3.ExtAuthz';

interface NetCheck {
  attributes: {
    source: { address: { socket_address: { address: string; port_value: number } }; principal: string };
    destination: { address: { socket_address: { address: string; port_value: number } }; principal: string };
  };
}

const TLS_TYPE = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext';
const TRUST = 'cluster.local';

let m: StartedMeshlet;
let tcpEcho: TcpEcho;
let server: grpc.Server | undefined;
const checks: NetCheck[] = [];
let allowedPort = -1;
let mtlsPort = -1;
let ca: DevCa;
let frontend: IssuedCertificate;
let intruder: IssuedCertificate;

function listener(name: string, authz: Record<string, unknown>, chainExtra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    name,
    address: socketAddress(0),
    filter_chains: [
      {
        ...chainExtra,
        filters: [
          { name: 'envoy.filters.network.ext_authz', typed_config: { '@type': NET_EXT_AUTHZ, stat_prefix: `${name}.`, ...authz } },
          { name: 'envoy.filters.network.tcp_proxy', typed_config: { '@type': TCP_PROXY_TYPE, stat_prefix: name, cluster: 'echo' } },
        ],
      },
    ],
  };
}

const NET_RBAC = 'type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC';

/**
 * istiod's TCP CUSTOM pair: network RBAC whose shadow_rules hold the CUSTOM policy
 * (shadow_rules_stat_prefix istio_ext_authz_), then ext_authz gated by filter_enabled_metadata on
 * envoy.filters.network.rbac.
 */
function customListener(name: string, shadowPermission: Record<string, unknown>): Record<string, unknown> {
  const rbac = {
    name: 'envoy.filters.network.rbac',
    typed_config: {
      '@type': NET_RBAC,
      stat_prefix: 'tcp.',
      shadow_rules: {
        action: 'DENY',
        policies: { 'istio-ext-authz-ns[foo]-policy[tcp]-rule[0]': { permissions: [shadowPermission], principals: [{ any: true }] } },
      },
      shadow_rules_stat_prefix: 'istio_ext_authz_',
    },
  };
  const gate = {
    filter: 'envoy.filters.network.rbac',
    path: [{ key: 'istio_ext_authz_shadow_effective_policy_id' }],
    value: { string_match: { prefix: 'istio-ext-authz' } },
  };
  const l = listener(name, { grpc_service: { envoy_grpc: { cluster_name: 'authz' }, timeout: '5s' }, filter_enabled_metadata: gate });
  const chain = (l.filter_chains as { filters: unknown[] }[])[0]!;
  chain.filters.unshift(rbac);
  return l;
}

beforeAll(async () => {
  tcpEcho = await startTcpEcho();
  const g = await startGrpcServer(authorizationService().service, {
    Check: (call: grpc.ServerUnaryCall<NetCheck, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      checks.push(call.request);
      const a = call.request.attributes;
      const port = a.destination.address.socket_address.port_value;
      const ok = port === mtlsPort ? a.source.principal === `spiffe://${TRUST}/ns/default/sa/frontend` : port === allowedPort;
      cb(null, { status: { code: ok ? 0 : 7 } });
    },
  });
  server = g.server;
  ca = await DevCa.create({ trustDomain: TRUST });
  const serverId = await ca.issueWorkload({ ns: 'default', sa: 'payments' });
  frontend = await ca.issueWorkload({ ns: 'default', sa: 'frontend' });
  intruder = await ca.issueWorkload({ ns: 'default', sa: 'intruder' });
  const dead = await closedPort();
  const svc = (cluster: string) => ({ envoy_grpc: { cluster_name: cluster }, timeout: '5s' });
  const tlsChain = {
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
  };
  const raw = bootstrap(
      [
        listener('net_mtls', { grpc_service: svc('authz') }, tlsChain),
        listener('net_allowed', { grpc_service: svc('authz') }),
        listener('net_denied', { grpc_service: svc('authz') }),
        listener('net_down', { grpc_service: svc('dead') }),
        listener('net_down_allow', { grpc_service: svc('dead'), failure_mode_allow: true }),
        customListener('net_custom', { any: true }),
        customListener('net_custom_skip', { destination_port: 1 }),
      ],
      [staticCluster('echo', [tcpEcho.port]), staticCluster('authz', [g.port]), staticCluster('dead', [dead])],
  );
  (raw.static_resources as Record<string, unknown>).secrets = [
    {
      name: 'default',
      tls_certificate: {
        certificate_chain: { inline_string: serverId.certChainPem },
        private_key: { inline_string: serverId.privateKeyPem },
      },
    },
    { name: 'ROOTCA', validation_context: { trusted_ca: { inline_string: ca.rootCertPem } } },
  ];
  m = await startMeshlet(raw);
  allowedPort = m.listenerPort('net_allowed');
  mtlsPort = m.listenerPort('net_mtls');
});

afterAll(async () => {
  await stopAllMeshlets();
  closeServiceClients();
  await stopGrpcServer(server);
  await closeAll();
});

describe('network ext_authz (envoy.service.auth.v3.Authorization per connection)', () => {
  it('an allowed connection reaches the terminal filter; the check carries source and destination', async () => {
    const r = await rawExchange(m.listenerPort('net_allowed'), 'hello through', 1_500);
    expect(r.text).toBe('hello through');
    const c = checks.at(-1)!;
    expect(c.attributes.destination.address.socket_address.port_value).toBe(allowedPort);
    expect(c.attributes.source.address.socket_address.address).toBe('127.0.0.1');
    expect(extAuthzStats('net_allowed.').ok).toBeGreaterThan(0);
  });

  it('a denied connection is closed before any byte reaches the upstream', async () => {
    const before = tcpEcho.received;
    const r = await rawExchange(m.listenerPort('net_denied'), 'let me in', 2_000);
    expect(r.closed).toBe(true);
    expect(r.text).toBe('');
    expect(tcpEcho.received).toBe(before);
    expect(extAuthzStats('net_denied.').denied).toBe(1);
  });

  it('an unreachable authorizer closes the connection, unless failure_mode_allow', async () => {
    const down = await rawExchange(m.listenerPort('net_down'), 'x', 2_000);
    expect(down.closed).toBe(true);
    expect(down.text).toBe('');
    const allowed = await rawExchange(m.listenerPort('net_down_allow'), 'still here', 1_500);
    expect(allowed.text).toBe('still here');
    expect(extAuthzStats('net_down_allow.').failureModeAllowed).toBe(1);
  });
});

/** Send `text` over mTLS with `id` and collect what comes back until the peer closes or goes quiet. */
function tlsExchange(port: number, id: IssuedCertificate, text: string): Promise<{ text: string; closed: boolean }> {
  return new Promise((resolve) => {
    let got = '';
    let timer: NodeJS.Timeout | undefined;
    const c = tls.connect({
      host: '127.0.0.1',
      port,
      ca: ca.rootCertPem,
      cert: id.certChainPem,
      key: id.privateKeyPem,
      checkServerIdentity: () => undefined,
    });
    const done = (closed: boolean): void => {
      clearTimeout(timer);
      c.destroy();
      resolve({ text: got, closed });
    };
    c.on('secureConnect', () => {
      c.write(text);
      timer = setTimeout(() => done(false), 3_000);
    });
    c.on('data', (d: Buffer) => {
      got += d.toString();
      clearTimeout(timer);
      timer = setTimeout(() => done(false), 500);
    });
    c.on('end', () => done(true));
    c.on('error', () => done(true));
  });
}

describe('network ext_authz over mTLS', () => {
  it('the CheckRequest carries both SPIFFE principals; the authorizer decides by the peer identity', async () => {
    const ok = await tlsExchange(mtlsPort, frontend, 'from frontend');
    expect(ok.text).toBe('from frontend');
    const c = checks.at(-1)!;
    expect(c.attributes.source.principal).toBe(`spiffe://${TRUST}/ns/default/sa/frontend`);
    expect(c.attributes.destination.principal).toBe(`spiffe://${TRUST}/ns/default/sa/payments`);
    const denied = await tlsExchange(mtlsPort, intruder, 'from intruder');
    expect(denied.text).toBe('');
    expect(denied.closed).toBe(true);
    expect(checks.at(-1)!.attributes.source.principal).toBe(`spiffe://${TRUST}/ns/default/sa/intruder`);
  });
});

describe("Istio's TCP CUSTOM action: network RBAC shadow rules + ext_authz filter_enabled_metadata", () => {
  it('a connection the CUSTOM policy matches is checked (and denied here), one it does not match skips the authorizer', async () => {
    const before = { ...extAuthzStats('net_custom.') };
    const beforeSkip = { ...extAuthzStats('net_custom_skip.') };
    const n = checks.length;
    const denied = await rawExchange(m.listenerPort('net_custom'), 'custom', 1_500);
    expect(denied.text).toBe('');
    expect(checks.length).toBe(n + 1);
    expect(extAuthzStats('net_custom.').denied - before.denied).toBe(1);

    const through = await rawExchange(m.listenerPort('net_custom_skip'), 'not custom', 1_500);
    expect(through.text).toBe('not custom');
    expect(checks.length).toBe(n + 1);
    expect(extAuthzStats('net_custom_skip.').disabled - beforeSkip.disabled).toBe(1);
  });
});

describe('network ext_authz config validation', () => {
  it('stat_prefix and grpc_service are required; bad fields are errors with their paths', () => {
    const { errors } = decodeWith(decodeNetworkExtAuthz, { filter_enabled_metadata: { path: [] }, transport_api_version: 'V2' });
    expect(errors.map((e) => e.path).sort()).toEqual([
      'typed_config.filter_enabled_metadata.filter',
      'typed_config.filter_enabled_metadata.path',
      'typed_config.filter_enabled_metadata.value',
      'typed_config.grpc_service',
      'typed_config.stat_prefix',
      'typed_config.transport_api_version',
    ]);
  });
});
