/**
 * Decoder for envoy.config.endpoint.v3.ClusterLoadAssignment (inline load_assignment and EDS):
 * localities, priorities (contiguous from 0, at most 128), lb_endpoints with address, hostname,
 * health-check port, health status, weight and metadata, and policy.overprovisioning_factor.
 * Envoy defaults: endpoint weight 1, overprovisioning factor 140.
 */
import type { Reader } from '../../../common/reader';
import type { ClusterLoadAssignment, HealthStatus, LbEndpoint, LocalityLbEndpoints } from '../types';
import type { DecodeContext } from './context';
import { decodeAddress, decodeLocality, decodeMetadata, enumOf } from './core';

const HEALTH = [
  'UNKNOWN',
  'HEALTHY',
  'UNHEALTHY',
  'DRAINING',
  'TIMEOUT',
  'DEGRADED',
] as const satisfies readonly HealthStatus[];

export interface EndpointOptions {
  /** DNS clusters carry hostnames; STATIC and EDS endpoints must be IP addresses. */
  readonly allowHostname?: boolean;
  /** Why an IP is required, for the error message. */
  readonly ipHint?: string;
}

function decodeLbEndpoint(r: Reader, opts: EndpointOptions): LbEndpoint | undefined {
  const which = r.oneof(['endpoint', 'endpoint_name'] as const);
  let address: LbEndpoint['address'] | undefined;
  let hostname = '';
  let healthCheckPort: number | undefined;
  if (which === undefined) r.error('endpoint', 'is required');
  else if (which === 'endpoint_name') r.error(which, 'named endpoints are not supported by meshlet');
  else {
    const e = r.obj('endpoint');
    if (e) {
      const ar = e.obj('address');
      if (!ar) e.error('address', 'is required');
      address = ar ? decodeAddress(ar, { allowHostname: opts.allowHostname, ipHint: opts.ipHint }) : undefined;
      hostname = e.str('hostname', '');
      const hc = e.obj('health_check_config');
      if (hc) {
        healthCheckPort = hc.optInt('port_value', 0, 65535) || undefined;
        hc.done();
      }
      e.done();
    }
  }
  const healthStatus = enumOf(r, 'health_status', HEALTH, 'UNKNOWN');
  const weight = r.int('load_balancing_weight', 1, 1, 0xffffffff);
  const metadata = decodeMetadata(r);
  r.done();
  if (!address) return undefined;
  return { address, hostname, healthStatus, weight, ...(healthCheckPort ? { healthCheckPort } : {}), metadata };
}

/** envoy.config.endpoint.v3.ClusterLoadAssignment */
export function decodeClusterLoadAssignmentR(
  r: Reader,
  _ctx: DecodeContext,
  opts: EndpointOptions = {},
): ClusterLoadAssignment {
  const clusterName = r.requiredStr('cluster_name');
  const endpoints: LocalityLbEndpoints[] = [];
  const priorities = new Set<number>();
  for (const l of r.arr('endpoints')) {
    const lr = l.obj('locality');
    const locality = lr ? decodeLocality(lr) : undefined;
    const lbEndpoints: LbEndpoint[] = [];
    for (const e of l.arr('lb_endpoints')) {
      const v = decodeLbEndpoint(e, opts);
      if (v) lbEndpoints.push(v);
    }
    const loadBalancingWeight = l.optInt('load_balancing_weight', 1, 0xffffffff);
    const priority = l.int('priority', 0, 0, 128);
    if (l.has('leds_cluster_locality_config'))
      l.error('leds_cluster_locality_config', 'LEDS is not supported by meshlet');
    l.raw('leds_cluster_locality_config');
    const lm = l.has('metadata') ? decodeMetadata(l) : undefined;
    l.done();
    priorities.add(priority);
    endpoints.push({
      ...(locality ? { locality } : {}),
      ...(lm && Object.keys(lm).length > 0 ? { metadata: lm } : {}),
      lbEndpoints,
      ...(loadBalancingWeight !== undefined ? { loadBalancingWeight } : {}),
      priority,
    });
  }
  const max = Math.max(-1, ...priorities);
  for (let p = 0; p <= max; p++) {
    if (!priorities.has(p)) {
      r.error(
        'endpoints',
        `priorities must be contiguous from 0: priority ${p} has no endpoints but priority ${max} does`,
      );
      break;
    }
  }
  let overprovisioningFactor = 140;
  const pol = r.obj('policy');
  if (pol) {
    overprovisioningFactor = pol.int('overprovisioning_factor', 140, 1, 0xffffffff);
    if (pol.list('drop_overloads').length > 0) pol.error('drop_overloads', 'is not supported by meshlet');
    pol.done();
  }
  r.done();
  return { clusterName, endpoints, overprovisioningFactor };
}

/** Number of lb_endpoints across all localities. */
export function endpointCount(cla: ClusterLoadAssignment): number {
  let n = 0;
  for (const l of cla.endpoints) n += l.lbEndpoints.length;
  return n;
}
