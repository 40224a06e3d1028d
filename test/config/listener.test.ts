import { describe, expect, it } from 'vitest';
import { decodeListener } from '../../proxy/config/envoy';
import { ctx, hcm, listener, TCP_PROXY_TYPE, TYPE_PREFIX } from './helpers';

const RBAC_TYPE = `${TYPE_PREFIX}envoy.extensions.filters.network.rbac.v3.RBAC`;
const LIMIT_TYPE = `${TYPE_PREFIX}envoy.extensions.filters.network.connection_limit.v3.ConnectionLimit`;
const TLS_INSPECTOR = `${TYPE_PREFIX}envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector`;

function tcpFilter(cluster = 'c') {
  return {
    name: 'envoy.filters.network.tcp_proxy',
    typed_config: { '@type': TCP_PROXY_TYPE, stat_prefix: 'tcp', cluster },
  };
}

describe('decodeListener', () => {
  it('applies Envoy defaults and names an unnamed listener <ip>_<port>', () => {
    const { value, errors, warnings } = decodeListener(listener({ name: undefined }), ctx());
    expect(errors).toEqual([]);
    expect(warnings).toEqual([]);
    expect(value).toMatchObject({
      name: '0.0.0.0_8080',
      address: { kind: 'socket', host: '0.0.0.0', port: 8080 },
      useOriginalDst: false,
      bindToPort: true,
      listenerFilters: [],
      listenerFiltersTimeoutMs: 15_000,
      continueOnListenerFiltersTimeout: false,
      perConnectionBufferLimitBytes: 1_048_576,
      trafficDirection: 'UNSPECIFIED',
      accessLog: [],
    });
    expect(Object.isFrozen(value)).toBe(true);
  });

  it('decodes filter chain matches, listener filters, TLS and every network filter', () => {
    const raw = {
      name: 'virtualInbound',
      address: { socket_address: { address: '::', port_value: 15006, ipv4_compat: true } },
      use_original_dst: true,
      traffic_direction: 'INBOUND',
      listener_filters: [
        { name: 'envoy.filters.listener.original_dst' },
        { name: 'tls', typed_config: { '@type': TLS_INSPECTOR } },
        { name: 'envoy.filters.listener.http_inspector' },
      ],
      listener_filters_timeout: { seconds: 1, nanos: 500_000_000 },
      continue_on_listener_filters_timeout: true,
      filter_chains: [
        {
          name: 'mtls',
          filter_chain_match: {
            destination_port: 8080,
            prefix_ranges: [{ address_prefix: '10.0.0.0', prefix_len: 8 }],
            server_names: ['*.example.com', 'API.example.com'],
            transport_protocol: 'tls',
            application_protocols: ['istio-peer-exchange', 'h2'],
            source_prefix_ranges: [{ address_prefix: '::1', prefix_len: 128 }],
            source_ports: [1234],
          },
          transport_socket_connect_timeout: '3s',
          transport_socket: {
            name: 'envoy.transport_sockets.tls',
            typed_config: {
              '@type': `${TYPE_PREFIX}envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext`,
              require_client_certificate: true,
              common_tls_context: {
                tls_certificate_sds_secret_configs: [{ name: 'default', sds_config: { ads: {} } }],
                validation_context_sds_secret_config: { name: 'ROOTCA', sds_config: { ads: {} } },
                alpn_protocols: ['h2', 'http/1.1'],
              },
            },
          },
          filters: [
            { name: 'limit', typed_config: { '@type': LIMIT_TYPE, stat_prefix: 'limit', max_connections: 10 } },
            {
              name: 'rbac',
              typed_config: {
                '@type': RBAC_TYPE,
                stat_prefix: 'tcp.',
                rules: {
                  action: 'DENY',
                  policies: { p: { permissions: [{ destination_port: 22 }], principals: [{ any: true }] } },
                },
              },
            },
            { name: 'envoy.filters.network.http_connection_manager', typed_config: hcm() },
          ],
        },
        { name: 'plain', filter_chain_match: { transport_protocol: 'raw_buffer' }, filters: [tcpFilter()] },
      ],
      default_filter_chain: { filters: [tcpFilter('passthrough')] },
    };
    const { value, errors, warnings } = decodeListener(raw, ctx());
    expect(errors).toEqual([]);
    expect(warnings).toEqual([]);
    expect(value!.address).toEqual({ kind: 'socket', host: '::', port: 15006, ipv4Compat: true });
    expect(value!.listenerFilters).toEqual([
      { kind: 'original_dst' },
      { kind: 'tls_inspector' },
      { kind: 'http_inspector' },
    ]);
    expect(value!.listenerFiltersTimeoutMs).toBe(1500);
    const [mtls, plain] = value!.filterChains;
    expect(mtls!.match).toEqual({
      destinationPort: 8080,
      prefixRanges: [{ addressPrefix: '10.0.0.0', prefixLen: 8 }],
      serverNames: ['*.example.com', 'api.example.com'],
      transportProtocol: 'tls',
      applicationProtocols: ['istio-peer-exchange', 'h2'],
      sourcePrefixRanges: [{ addressPrefix: '::1', prefixLen: 128 }],
      sourcePorts: [1234],
    });
    expect(mtls!.transportSocket).toMatchObject({
      kind: 'downstream_tls',
      requireClientCertificate: true,
      handshakeTimeoutMs: 3000,
      common: {
        tlsCertificateSdsSecretConfigs: [{ name: 'default', sdsConfig: { kind: 'ads' } }],
        validationContextSdsSecretConfig: { name: 'ROOTCA', sdsConfig: { kind: 'ads' } },
        alpnProtocols: ['h2', 'http/1.1'],
      },
    });
    expect(mtls!.filters.map((f) => f.kind)).toEqual(['connection_limit', 'rbac', 'http_connection_manager']);
    expect(mtls!.filters[0]).toEqual({ kind: 'connection_limit', name: 'limit', statPrefix: 'limit', maxConnections: 10 });
    const h = mtls!.filters[2]!;
    expect(h.kind === 'http_connection_manager' && h.hcm.trafficDirection).toBe('INBOUND');
    expect(plain!.transportSocket).toBeUndefined();
    expect(value!.defaultFilterChain!.filters[0]).toMatchObject({
      kind: 'tcp_proxy',
      tcp: { cluster: { kind: 'cluster', name: 'passthrough' } },
    });
  });

  it('accepts a pipe address and a raw_buffer transport socket', () => {
    const raw = {
      name: 'uds',
      address: { pipe: { path: '/tmp/meshlet.sock' } },
      filter_chains: [
        {
          filters: [tcpFilter()],
          transport_socket: {
            name: 'raw',
            typed_config: { '@type': `${TYPE_PREFIX}envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer` },
          },
        },
      ],
    };
    const { value, errors } = decodeListener(raw, ctx());
    expect(errors).toEqual([]);
    expect(value!.address).toEqual({ kind: 'pipe', path: '/tmp/meshlet.sock' });
    expect(value!.filterChains[0]!.transportSocket).toBeUndefined();
  });

  it.each([
    [{ address: undefined }, [{ path: 'address', message: 'is required' }]],
    [
      { address: { socket_address: { address: 'localhost', port_value: 80 } } },
      [
        {
          path: 'address.socket_address.address',
          message: 'malformed IP address: "localhost" (a listener binds an IP address)',
        },
      ],
    ],
    [
      { address: { socket_address: { address: '0.0.0.0', port_value: 70000 } } },
      [{ path: 'address.socket_address.port_value', message: 'must be between 0 and 65535, got 70000' }],
    ],
    [
      { address: { socket_address: { address: '0.0.0.0', port_value: 53, protocol: 'UDP' } } },
      [{ path: 'address.socket_address.protocol', message: 'UDP is not supported by meshlet' }],
    ],
    [{ address: {} }, [{ path: 'address', message: 'one of socket_address, pipe must be set' }]],
    [{ filter_chains: [] }, [{ path: 'filter_chains', message: 'no filter chains specified' }]],
    [
      { traffic_direction: 'SIDEWAYS' },
      [
        {
          path: 'traffic_direction',
          message: 'unknown value "SIDEWAYS" (expected one of UNSPECIFIED, INBOUND, OUTBOUND)',
        },
      ],
    ],
    [
      { listener_filters: [{ name: 'envoy.filters.listener.magic' }] },
      [
        {
          path: 'listener_filters[0].name',
          message: 'unsupported listener filter "envoy.filters.listener.magic" (set typed_config)',
        },
      ],
    ],
    [
      { listener_filters: [{ name: 'x', typed_config: { '@type': `${TYPE_PREFIX}acme.Sniffer`, value: 'AAAA' } }] },
      [{ path: 'listener_filters[0].typed_config.@type', message: 'unsupported listener filter type acme.Sniffer' }],
    ],
  ])('reports listener error %#', (patch, expected) => {
    const { value, errors, warnings } = decodeListener({ ...listener(), ...patch }, ctx());
    expect(value).toBeUndefined();
    expect(errors).toEqual(expected);
    expect(warnings).toEqual([]);
  });

  it('requires exactly one terminal filter, last', () => {
    const raw = {
      name: 'l',
      address: { socket_address: { address: '0.0.0.0', port_value: 1 } },
      filter_chains: [
        {
          filters: [
            tcpFilter(),
            { name: 'limit', typed_config: { '@type': LIMIT_TYPE, stat_prefix: 's', max_connections: 1 } },
          ],
        },
        { filter_chain_match: { destination_port: 2 }, filters: [] },
      ],
    };
    const { errors } = decodeListener(raw, ctx());
    expect(errors).toEqual([
      {
        path: 'filter_chains[0].filters[0]',
        message:
          'terminal filter named envoy.filters.network.tcp_proxy of type envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy must be the last filter in a network filter chain',
      },
      {
        path: 'filter_chains[0].filters[1]',
        message:
          'non-terminal filter named limit of type envoy.extensions.filters.network.connection_limit.v3.ConnectionLimit is the last filter in a network filter chain',
      },
      {
        path: 'filter_chains[1].filters',
        message: 'a filter chain needs a terminal filter (http_connection_manager or tcp_proxy) as its last filter',
      },
    ]);
  });

  it('reports unknown network filter types by name, and duplicate matches', () => {
    const raw = {
      name: 'l',
      address: { socket_address: { address: '0.0.0.0', port_value: 1 } },
      filter_chains: [
        {
          filters: [
            {
              name: 'redis',
              typed_config: { '@type': `${TYPE_PREFIX}envoy.extensions.filters.network.redis_proxy.v3.RedisProxy` },
            },
          ],
        },
        { name: 'a', filters: [tcpFilter()] },
        { name: 'a', filters: [tcpFilter()] },
      ],
    };
    const { errors } = decodeListener(raw, ctx());
    expect(errors).toEqual([
      {
        path: 'filter_chains[0].filters[0].typed_config.@type',
        message: 'unsupported network filter type envoy.extensions.filters.network.redis_proxy.v3.RedisProxy',
      },
      {
        path: 'filter_chains[2].filter_chain_match',
        message: 'multiple filter chains with the same matching rules are defined (also filter_chains[1])',
      },
    ]);
  });

  it('validates filter chain match fields', () => {
    const raw = {
      name: 'l',
      address: { socket_address: { address: '0.0.0.0', port_value: 1 } },
      listener_filters: [{ name: 'envoy.filters.listener.tls_inspector' }],
      filter_chains: [
        {
          filter_chain_match: {
            destination_port: 0,
            server_names: ['foo.*.com'],
            prefix_ranges: [
              { address_prefix: 'ten.0.0.0', prefix_len: 8 },
              { address_prefix: '10.0.0.0', prefix_len: 33 },
            ],
            source_ports: [0],
            source_type: 'EXTERNAL',
          },
          filters: [tcpFilter()],
        },
      ],
    };
    expect(decodeListener(raw, ctx()).errors).toEqual([
      { path: 'filter_chains[0].filter_chain_match.destination_port', message: 'must be between 1 and 65535, got 0' },
      {
        path: 'filter_chains[0].filter_chain_match.prefix_ranges[0].address_prefix',
        message: 'malformed IP address: "ten.0.0.0"',
      },
      {
        path: 'filter_chains[0].filter_chain_match.prefix_ranges[1].prefix_len',
        message: 'must be at most 32 for an IPv4 prefix, got 33',
      },
      {
        path: 'filter_chains[0].filter_chain_match.server_names[0]',
        message: 'partial wildcards are not supported in server_names: "foo.*.com"',
      },
      { path: 'filter_chains[0].filter_chain_match.source_ports[0]', message: 'expected a port (1-65535), got 0' },
      { path: 'filter_chains[0].filter_chain_match.source_type', message: 'EXTERNAL is not supported by meshlet' },
    ]);
  });

  it('warns when SNI matching is used without the tls_inspector, and about unsupported fields', () => {
    const raw = {
      name: 'l',
      address: { socket_address: { address: '0.0.0.0', port_value: 1 } },
      enable_reuse_port: true,
      filter_chains: [{ filter_chain_match: { server_names: ['a.com'] }, filters: [tcpFilter()] }],
    };
    const { errors, warnings } = decodeListener(raw, ctx());
    expect(errors).toEqual([]);
    expect(warnings).toEqual([
      {
        path: 'filter_chains[0].filter_chain_match',
        message:
          'server_names, transport_protocol "tls" and application_protocols need the tls_inspector listener filter: meshlet added it to this listener',
      },
      { path: 'enable_reuse_port', message: 'not supported by meshlet, ignored' },
    ]);
  });

  it('rejects a downstream TLS context without certificates or with the wrong direction', () => {
    const ts = (typed: Record<string, unknown>) => ({
      name: 'l',
      address: { socket_address: { address: '0.0.0.0', port_value: 1 } },
      filter_chains: [
        { filters: [tcpFilter()], transport_socket: { name: 'envoy.transport_sockets.tls', typed_config: typed } },
      ],
    });
    const down = `${TYPE_PREFIX}envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext`;
    const up = `${TYPE_PREFIX}envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext`;
    expect(decodeListener(ts({ '@type': down, require_client_certificate: true }), ctx()).errors).toEqual([
      {
        path: 'filter_chains[0].transport_socket.typed_config.common_tls_context',
        message: 'no TLS certificates found for server context',
      },
      {
        path: 'filter_chains[0].transport_socket.typed_config.require_client_certificate',
        message: 'requires a validation context to verify client certificates against',
      },
    ]);
    expect(decodeListener(ts({ '@type': up }), ctx()).errors).toEqual([
      {
        path: 'filter_chains[0].transport_socket.typed_config.@type',
        message: `expected envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext for a downstream transport socket, got envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext`,
      },
    ]);
    expect(decodeListener(ts({ '@type': `${TYPE_PREFIX}acme.Alts` }), ctx()).errors).toEqual([
      {
        path: 'filter_chains[0].transport_socket.typed_config.@type',
        message: 'unsupported transport socket type acme.Alts',
      },
    ]);
  });

  it('decodes the connection_limit filter and reports its required fields', () => {
    const raw = {
      name: 'l',
      address: { socket_address: { address: '0.0.0.0', port_value: 1 } },
      filter_chains: [{ filters: [{ name: 'limit', typed_config: { '@type': LIMIT_TYPE } }, tcpFilter()] }],
    };
    expect(decodeListener(raw, ctx()).errors).toEqual([
      { path: 'filter_chains[0].filters[0].typed_config.stat_prefix', message: 'is required' },
      { path: 'filter_chains[0].filters[0].typed_config.max_connections', message: 'is required' },
    ]);
  });
});
