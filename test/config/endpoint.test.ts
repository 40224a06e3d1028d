import { describe, expect, it } from 'vitest';
import { decodeClusterLoadAssignment } from '../../proxy/config/envoy';
import { ctx } from './helpers';

function ep(address: string, port = 80, extra: Record<string, unknown> = {}) {
  return { endpoint: { address: { socket_address: { address, port_value: port } } }, ...extra };
}

describe('decodeClusterLoadAssignment', () => {
  it('decodes localities, priorities, weights, health and metadata', () => {
    const raw = {
      cluster_name: 'outbound|80||reviews',
      endpoints: [
        {
          locality: { region: 'us-east1', zone: 'us-east1-b', sub_zone: 'rack1' },
          load_balancing_weight: 3,
          lb_endpoints: [
            ep('10.0.0.1', 8080, {
              health_status: 'HEALTHY',
              load_balancing_weight: 5,
              metadata: { filter_metadata: { 'envoy.transport_socket_match': { tlsMode: 'istio' } } },
            }),
            {
              endpoint: {
                address: { socket_address: { address: '10.0.0.2', port_value: 8080 } },
                hostname: 'pod-2',
                health_check_config: { port_value: 9090 },
              },
              health_status: 'DRAINING',
            },
          ],
        },
        { priority: 1, lb_endpoints: [ep('fd00::1', 8080)] },
      ],
      policy: { overprovisioning_factor: 200 },
    };
    const { value, errors, warnings } = decodeClusterLoadAssignment(raw, ctx());
    expect(errors).toEqual([]);
    expect(warnings).toEqual([]);
    expect(value).toEqual({
      clusterName: 'outbound|80||reviews',
      overprovisioningFactor: 200,
      endpoints: [
        {
          locality: { region: 'us-east1', zone: 'us-east1-b', subZone: 'rack1' },
          loadBalancingWeight: 3,
          priority: 0,
          lbEndpoints: [
            {
              address: { kind: 'socket', host: '10.0.0.1', port: 8080 },
              hostname: '',
              healthStatus: 'HEALTHY',
              weight: 5,
              metadata: { 'envoy.transport_socket_match': { tlsMode: 'istio' } },
            },
            {
              address: { kind: 'socket', host: '10.0.0.2', port: 8080 },
              hostname: 'pod-2',
              healthStatus: 'DRAINING',
              weight: 1,
              healthCheckPort: 9090,
              metadata: {},
            },
          ],
        },
        {
          priority: 1,
          lbEndpoints: [
            {
              address: { kind: 'socket', host: 'fd00::1', port: 8080 },
              hostname: '',
              healthStatus: 'UNKNOWN',
              weight: 1,
              metadata: {},
            },
          ],
        },
      ],
    });
    expect(Object.isFrozen(value!.endpoints[0]!.lbEndpoints[0]!.address)).toBe(true);
  });

  it.each([
    [{ endpoints: [] }, [{ path: 'cluster_name', message: 'is required' }]],
    [
      { cluster_name: 'c', endpoints: [{ priority: 1, lb_endpoints: [ep('10.0.0.1')] }] },
      [
        {
          path: 'endpoints',
          message: 'priorities must be contiguous from 0: priority 0 has no endpoints but priority 1 does',
        },
      ],
    ],
    [
      { cluster_name: 'c', endpoints: [{ priority: 129, lb_endpoints: [] }] },
      [{ path: 'endpoints[0].priority', message: 'must be between 0 and 128, got 129' }],
    ],
    [
      { cluster_name: 'c', endpoints: [{ load_balancing_weight: 0, lb_endpoints: [] }] },
      [{ path: 'endpoints[0].load_balancing_weight', message: 'must be between 1 and 4294967295, got 0' }],
    ],
    [
      { cluster_name: 'c', endpoints: [{ lb_endpoints: [ep('pod.internal')] }] },
      [
        {
          path: 'endpoints[0].lb_endpoints[0].endpoint.address.socket_address.address',
          message: 'malformed IP address: "pod.internal" (EDS endpoints must be IP addresses)',
        },
      ],
    ],
    [
      {
        cluster_name: 'c',
        endpoints: [{ lb_endpoints: [ep('10.0.0.1', 80, { load_balancing_weight: 0, health_status: 'SICK' })] }],
      },
      [
        {
          path: 'endpoints[0].lb_endpoints[0].health_status',
          message: 'unknown value "SICK" (expected one of UNKNOWN, HEALTHY, UNHEALTHY, DRAINING, TIMEOUT, DEGRADED)',
        },
        {
          path: 'endpoints[0].lb_endpoints[0].load_balancing_weight',
          message: 'must be between 1 and 4294967295, got 0',
        },
      ],
    ],
    [
      { cluster_name: 'c', endpoints: [{ lb_endpoints: [{}] }] },
      [{ path: 'endpoints[0].lb_endpoints[0].endpoint', message: 'is required' }],
    ],
    [
      { cluster_name: 'c', policy: { overprovisioning_factor: 0 } },
      [{ path: 'policy.overprovisioning_factor', message: 'must be between 1 and 4294967295, got 0' }],
    ],
  ])('reports endpoint error %#', (raw, expected) => {
    const res = decodeClusterLoadAssignment(raw, ctx());
    expect(res.errors).toEqual(expected);
    expect(res.warnings).toEqual([]);
    expect(res.value).toBeUndefined();
  });
});
