/**
 * The network ext_authz filter in front of tcp_proxy, against a real gRPC authorizer
 * (envoy.service.auth.v3.Authorization/Check on @grpc/grpc-js) that decides by the connection's
 * destination port: allowed connections reach a TCP echo server, denied ones are closed, a dead
 * authorizer closes them unless failure_mode_allow; plus config validation.
 */
import type * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { extAuthzStats } from '../../proxy/http/filters/ext-authz';
import { authorizationService, closeServiceClients } from '../../proxy/http/filters/service-client';
import { decodeNetworkExtAuthz } from '../../proxy/listeners/network-ext-authz';
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
    source: { address: { socket_address: { address: string; port_value: number } } };
    destination: { address: { socket_address: { address: string; port_value: number } } };
  };
}

let m: StartedMeshlet;
let tcpEcho: TcpEcho;
let server: grpc.Server | undefined;
const checks: NetCheck[] = [];
let allowedPort = -1;

function listener(name: string, authz: Record<string, unknown>): Record<string, unknown> {
  return {
    name,
    address: socketAddress(0),
    filter_chains: [
      {
        filters: [
          { name: 'envoy.filters.network.ext_authz', typed_config: { '@type': NET_EXT_AUTHZ, stat_prefix: `${name}.`, ...authz } },
          { name: 'envoy.filters.network.tcp_proxy', typed_config: { '@type': TCP_PROXY_TYPE, stat_prefix: name, cluster: 'echo' } },
        ],
      },
    ],
  };
}

beforeAll(async () => {
  tcpEcho = await startTcpEcho();
  const g = await startGrpcServer(authorizationService().service, {
    Check: (call: grpc.ServerUnaryCall<NetCheck, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      checks.push(call.request);
      const port = call.request.attributes.destination.address.socket_address.port_value;
      cb(null, { status: { code: port === allowedPort ? 0 : 7 } });
    },
  });
  server = g.server;
  const dead = await closedPort();
  const svc = (cluster: string) => ({ envoy_grpc: { cluster_name: cluster }, timeout: '5s' });
  m = await startMeshlet(
    bootstrap(
      [
        listener('net_allowed', { grpc_service: svc('authz') }),
        listener('net_denied', { grpc_service: svc('authz') }),
        listener('net_down', { grpc_service: svc('dead') }),
        listener('net_down_allow', { grpc_service: svc('dead'), failure_mode_allow: true }),
      ],
      [staticCluster('echo', [tcpEcho.port]), staticCluster('authz', [g.port]), staticCluster('dead', [dead])],
    ),
  );
  allowedPort = m.listenerPort('net_allowed');
});

afterAll(async () => {
  await stopAllMeshlets();
  closeServiceClients();
  await stopGrpcServer(server);
  await closeAll();
});

describe('network ext_authz (envoy.service.auth.v3.Authorization per connection)', () => {
  it('an allowed connection reaches the terminal filter; the check carries source and destination', async () => {
    const r = await rawExchange(m.listenerPort('net_allowed'), 'hello through', 300);
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
    const allowed = await rawExchange(m.listenerPort('net_down_allow'), 'still here', 300);
    expect(allowed.text).toBe('still here');
    expect(extAuthzStats('net_down_allow.').failureModeAllowed).toBe(1);
  });
});

describe('network ext_authz config validation', () => {
  it('stat_prefix and grpc_service are required; unsupported fields are errors', () => {
    const { errors } = decodeWith(decodeNetworkExtAuthz, { filter_enabled_metadata: {}, transport_api_version: 'V2' });
    expect(errors.map((e) => e.path).sort()).toEqual([
      'typed_config.filter_enabled_metadata',
      'typed_config.grpc_service',
      'typed_config.stat_prefix',
      'typed_config.transport_api_version',
    ]);
  });
});
