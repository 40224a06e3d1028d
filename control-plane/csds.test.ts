import { describe, expect, it } from 'vitest';
import { clientConfigs, type StreamStatusLike } from './csds';

const T = (over: Record<string, unknown>) => ({ wildcard: true, names: [], responses: 1, acks: 0, nacks: 0, ...over });

describe('control plane CSDS status per type (what proxy-status shows)', () => {
  const streams: StreamStatusLike[] = [
    {
      nodeId: 'a',
      workload: 'a',
      protocol: 'sotw',
      types: {
        'type.googleapis.com/envoy.config.cluster.v3.Cluster': T({ sentVersion: '3', ackedVersion: '3' }),
        'type.googleapis.com/envoy.config.listener.v3.Listener': T({ sentVersion: '4', ackedVersion: '3', nackedVersion: '4', lastError: 'Listener "x": bad' }),
        'type.googleapis.com/envoy.config.route.v3.RouteConfiguration': T({ sentVersion: '2', ackedVersion: '1' }),
        'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret': T({ responses: 0 }),
      },
    },
    { nodeId: 'b', protocol: 'delta', types: {} },
    { protocol: 'sotw', types: {} },
  ];

  it('SYNCED, ERROR with the NACK reason and rejected version, STALE, NOT_SENT', () => {
    const [a] = clientConfigs(streams, {});
    expect(a!.generic_xds_configs!.map((g) => [g.type_url.split('.').pop(), g.config_status, g.version_info])).toEqual([
      ['Cluster', 'SYNCED', '3'],
      ['Listener', 'ERROR', '3'],
      ['RouteConfiguration', 'STALE', '1'],
      ['Secret', 'NOT_SENT', undefined],
    ]);
    expect(a!.generic_xds_configs![1]!.error_state).toEqual({ details: 'Listener "x": bad', version_info: '4' });
  });

  it('a request naming a node gets only that node; streams without a node are not listed', () => {
    expect(clientConfigs(streams, {}).map((c) => c.node?.id)).toEqual(['a', 'b']);
    expect(clientConfigs(streams, { node: { id: 'b' } }).map((c) => c.node?.id)).toEqual(['b']);
  });
});
