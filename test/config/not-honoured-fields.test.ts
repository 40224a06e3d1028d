/**
 * Fields meshlet read and dropped without a word (`Reader.ignore`) although they change what
 * Envoy does. Each is now a start-up warning naming its path ("not supported by meshlet,
 * ignored"); fields that change nothing in meshlet warn "accepted, but has no effect" with the
 * reason. Listener, filter chain and route metadata (istiod writes it on every resource) is warned
 * once per configuration.
 */
import { describe, expect, it } from 'vitest';
import { decodeBootstrap } from '../../proxy/config/bootstrap';
import { bootstrap, httpListener, routes } from '../support/meshlet';
import { createRegistries } from '../../proxy/registry';
import { ctx } from './helpers';

describe('fields that change Envoy behaviour are never dropped silently', () => {
  it('warns for each, with its path, and accepts the config', () => {
    const cluster = {
      name: 'c',
      type: 'STATIC',
      connect_timeout: '1s',
      alt_stat_name: 'other',
      per_connection_buffer_limit_bytes: 32768,
      circuit_breakers: { thresholds: [{ max_connections: 5, track_remaining: true }], per_host_thresholds: [{ max_connections: 1 }] },
      common_lb_config: { update_merge_window: '1s', ignore_new_hosts_until_first_hc: true },
      upstream_connection_options: { tcp_keepalive: {} },
      typed_extension_protocol_options: {
        'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
          '@type': 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
          common_http_protocol_options: { max_connection_duration: '60s' },
          upstream_http_protocol_options: { auto_sni: true },
          explicit_http_config: { http_protocol_options: {} },
        },
      },
      load_assignment: { cluster_name: 'c', endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: 1 } } } }] }] },
    };
    const raw = bootstrap([httpListener('l', routes([{ match: { prefix: '/' }, route: { cluster: 'c', priority: 'HIGH' } }]))], [cluster as never]);
    (raw as { admin?: Record<string, unknown> }).admin = { ...((raw as { admin?: Record<string, unknown> }).admin ?? {}), profile_path: '/tmp/p' };
    const { warnings } = decodeBootstrap(raw, ctx());
    const paths = warnings.map((w) => `${w.path}: ${w.message}`);
    for (const field of [
      'admin.profile_path',
      '.alt_stat_name',
      '.track_remaining',
      '.per_host_thresholds',
      '.ignore_new_hosts_until_first_hc',
      '.max_connection_duration',
      '.auto_sni',
      '.route.priority',
    ])
      expect(paths.find((p) => p.includes(`${field}: not supported by meshlet, ignored`)), field).toBeDefined();
    expect(paths.find((p) => p.includes('common_lb_config.update_merge_window: accepted, but has no effect in meshlet'))).toBeDefined();
  });

  it('fields that do nothing in meshlet warn with their path and the reason (stats_flush_interval, max_program_size, content_type)', () => {
    const raw = bootstrap(
      [
        httpListener('l', routes([{ match: { safe_regex: { google_re2: { max_program_size: 100 }, regex: '/a.*' } }, route: { cluster: 'c' } }]), {
          access_log: [
            {
              name: 'envoy.access_loggers.stdout',
              typed_config: {
                '@type': 'type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog',
                log_format: { text_format: '%RESPONSE_CODE%\n', content_type: 'text/plain' },
              },
            },
          ],
        }),
      ],
      [{ name: 'c', type: 'STATIC', connect_timeout: '1s', load_assignment: { cluster_name: 'c', endpoints: [] } } as never],
    );
    (raw as Record<string, unknown>).stats_flush_interval = '5s';
    const { warnings } = decodeBootstrap(raw, ctx());
    const paths = warnings.map((w) => `${w.path}: ${w.message}`);
    for (const field of ['stats_flush_interval', 'google_re2.max_program_size', 'log_format.content_type'])
      expect(paths.find((p) => p.includes(`${field}: accepted, but has no effect in meshlet`)), `${field} in\n${paths.join('\n')}`).toBeDefined();
  });

  it('listener, filter chain and route metadata warn once per configuration, not once per resource', () => {
    const md = { filter_metadata: { istio: { config: '/apis/networking.istio.io/v1/namespaces/default/virtual-service/r' } } };
    const l = httpListener('l', routes([
      { match: { prefix: '/a' }, route: { cluster: 'c' }, metadata: md },
      { match: { prefix: '/' }, route: { cluster: 'c' }, metadata: md },
    ])) as Record<string, unknown>;
    l.metadata = md;
    (l.filter_chains as Record<string, unknown>[])[0]!.metadata = md;
    const cluster = { name: 'c', type: 'STATIC', connect_timeout: '1s', metadata: { filter_metadata: { istio: { services: [{ host: 'c.default.svc.cluster.local', name: 'c', namespace: 'default' }] } } }, load_assignment: { cluster_name: 'c', endpoints: [] } };
    const { warnings } = decodeBootstrap(bootstrap([l as never], [cluster as never]), ctx());
    const md1 = warnings.filter((w) => w.path.endsWith('.metadata'));
    expect(md1).toHaveLength(1);
    expect(md1[0]!.message).toMatch(/^accepted, but has no effect in meshlet: nothing in meshlet reads listener, filter chain or route metadata .*\(warned once\)$/);
    // Cluster metadata is read (istio.services): no warning about it.
    expect(warnings.filter((w) => w.path.includes('clusters'))).toEqual([]);
  });

  it('fault filter_metadata, ext_authz emit_filter_state_stats and istio.stats scope timing warn instead of vanishing', () => {
    const T = 'type.googleapis.com/';
    const raw = bootstrap(
      [
        httpListener('l', routes([{ match: { prefix: '/' }, route: { cluster: 'c' } }]), {
          http_filters: [
            { name: 'f', typed_config: { '@type': `${T}envoy.extensions.filters.http.fault.v3.HTTPFault`, filter_metadata: { a: 'b' } } },
            {
              name: 'a',
              typed_config: {
                '@type': `${T}envoy.extensions.filters.http.ext_authz.v3.ExtAuthz`,
                grpc_service: { envoy_grpc: { cluster_name: 'c' } },
                transport_api_version: 'V3',
                emit_filter_state_stats: true,
              },
            },
            { name: 's', typed_config: { '@type': `${T}stats.PluginConfig`, rescoping_duration: '60s' } },
            { name: 'envoy.filters.http.router', typed_config: { '@type': `${T}envoy.extensions.filters.http.router.v3.Router` } },
          ],
        }),
      ],
      [{ name: 'c', type: 'STATIC', connect_timeout: '1s', load_assignment: { cluster_name: 'c', endpoints: [] } } as never],
    );
    const { warnings } = decodeBootstrap(raw, { httpFilters: createRegistries().httpFilters });
    const lines = warnings.map((w) => `${w.path}: ${w.message}`);
    expect(lines.find((l) => l.includes('typed_config.filter_metadata: not supported by meshlet, ignored')), lines.join('\n')).toBeDefined();
    expect(lines.find((l) => l.includes('emit_filter_state_stats: accepted, but has no effect in meshlet'))).toBeDefined();
    expect(lines.find((l) => l.includes('rescoping_duration / scope_grace_period_duration'))).toBeDefined();
  });
});
