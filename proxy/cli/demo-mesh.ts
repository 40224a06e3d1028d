/**
 * The demo's mesh: four workloads on 127.0.0.61–64, the mesh file the embedded control plane
 * serves, and the Envoy-shaped ADS bootstrap each sidecar starts from (the one `meshlet inject`
 * writes: node id, admin, ads_config to a static xds-grpc cluster over HTTP/2).
 */
import { sidecarBootstrapYaml } from '../inject/bootstrap-template';

export interface DemoWorkload {
  readonly name: string;
  readonly service: string;
  readonly version: string;
  readonly serviceAccount: string;
  readonly ip: string;
  readonly appPort: number;
  readonly adminPort: number;
}

export const DEMO_WORKLOADS: readonly DemoWorkload[] = [
  { name: 'frontend', service: 'frontend', version: 'v1', serviceAccount: 'frontend', ip: '127.0.0.61', appPort: 18090, adminPort: 15000 },
  { name: 'backend-v1', service: 'backend', version: 'v1', serviceAccount: 'backend', ip: '127.0.0.62', appPort: 18091, adminPort: 15000 },
  { name: 'backend-v2', service: 'backend', version: 'v2', serviceAccount: 'backend', ip: '127.0.0.63', appPort: 18091, adminPort: 15000 },
  { name: 'audit', service: 'audit', version: 'v1', serviceAccount: 'audit', ip: '127.0.0.64', appPort: 18092, adminPort: 15000 },
];

export function demoMeshYaml(): string {
  const w = DEMO_WORKLOADS.map(
    (x) =>
      `  - { name: ${x.name}, namespace: demo, service_account: ${x.serviceAccount}, service: ${x.service}, version: ${x.version}, address: "${x.ip}:${x.appPort}", inbound_port: 15006, admin_port: ${x.adminPort} }`,
  ).join('\n');
  return `# The meshlet demo mesh: frontend calls backend (90/10 between v1 and v2); audit only accepts ops.
trust_domain: cluster.local
services:
  - name: frontend
    namespace: demo
    ports: [{ name: http, port: 9090, protocol: http, target_port: 18090 }]
  - name: backend
    namespace: demo
    ports: [{ name: http, port: 9091, protocol: http, target_port: 18091 }]
  - name: audit
    namespace: demo
    ports: [{ name: http, port: 9092, protocol: http, target_port: 18092 }]
workloads:
${w}
traffic:
  - service: backend
    namespace: demo
    splits: [{ version: v1, weight: 90 }, { version: v2, weight: 10 }]
    timeout: 2s
    retries: { attempts: 2, per_try_timeout: 1s, retry_on: "connect-failure,reset,5xx" }
authorization:
  - name: backend-from-frontend
    service: backend
    namespace: demo
    action: ALLOW
    from: [{ service_account: frontend }]
  - name: audit-only-from-ops
    service: audit
    namespace: demo
    action: ALLOW
    from: [{ service_account: ops }]
`;
}

/** The sidecar bootstrap for one demo workload: the same template `meshlet inject` writes. */
export function demoBootstrap(w: DemoWorkload, cpPort: number): string {
  return sidecarBootstrapYaml({
    nodeId: `${w.name}.demo`,
    cluster: w.service,
    namespace: 'demo',
    workloadName: w.name,
    labels: { app: w.service, version: w.version },
    controlPlane: `127.0.0.1:${cpPort}`,
    adminAddress: w.ip,
  });
}
