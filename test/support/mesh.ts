/**
 * A whole mesh on loopback for tests: the embedded control plane serving a mesh file, and one
 * meshlet per workload started in-process from an ADS bootstrap (node.id = workload name), each
 * with its own 127.0.0.x address as the mesh file says.
 */
import { ControlPlaneServer, type ControlPlaneOptions } from '../../control-plane/server';
import { parseMeshOrThrow } from '../../control-plane/mesh';
import { socketAddress, startMeshlet, type StartedMeshlet } from './meshlet';

/**
 * The control plane's local-development mode: ADS without credentials and workload keys over SDS.
 * Feature tests use it so that a sidecar needs nothing but a node id; the secure default (tokens,
 * CSR, no keys sent) is tested in test/control-plane/cp-security.test.ts and
 * test/identity/csr-token.test.ts.
 */
export const INSECURE_DEV = { insecureSendPrivateKeys: true, insecureAllowUnauthenticatedAds: true } as const;

export interface TestMesh {
  cp: ControlPlaneServer;
  sidecars: Map<string, StartedMeshlet>;
  close(): Promise<void>;
}

/** The bootstrap a sidecar for `workload` uses to reach the control plane over ADS. */
export function adsBootstrap(workload: string, cpPort: number, opts: { delta?: boolean; adminHost?: string } = {}): Record<string, unknown> {
  return {
    node: { id: workload, cluster: workload.replace(/-v\d+$/, '') },
    admin: { address: socketAddress(0, opts.adminHost ?? '127.0.0.1') },
    dynamic_resources: {
      ads_config: {
        api_type: opts.delta ? 'DELTA_GRPC' : 'GRPC',
        transport_api_version: 'V3',
        grpc_services: [{ envoy_grpc: { cluster_name: 'xds-grpc' } }],
      },
      lds_config: { ads: {}, resource_api_version: 'V3' },
      cds_config: { ads: {}, resource_api_version: 'V3' },
      initial_fetch_timeout: '10s',
    },
    static_resources: {
      clusters: [
        {
          name: 'xds-grpc',
          type: 'STATIC',
          connect_timeout: '1s',
          typed_extension_protocol_options: {
            'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
              '@type': 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
              explicit_http_config: { http2_protocol_options: {} },
            },
          },
          load_assignment: { cluster_name: 'xds-grpc', endpoints: [{ lb_endpoints: [{ endpoint: { address: socketAddress(cpPort) } }] }] },
        },
      ],
    },
  };
}

export async function startMesh(
  meshYaml: string,
  workloads: string[],
  cpOpts: Partial<ControlPlaneOptions> = {},
  sidecarOpts: { delta?: boolean } = {},
): Promise<TestMesh> {
  const { mesh } = parseMeshOrThrow(meshYaml, 'test mesh');
  const cp = await ControlPlaneServer.start({ mesh, port: 0, watchMeshFile: false, ...INSECURE_DEV, ...cpOpts });
  const sidecars = new Map<string, StartedMeshlet>();
  for (const w of workloads) {
    const m = await startMeshlet(adsBootstrap(w, cp.port, sidecarOpts));
    sidecars.set(w, m);
  }
  await Promise.all([...sidecars.values()].map((m) => m.server.initialized));
  return {
    cp,
    sidecars,
    close: async () => {
      await Promise.all([...sidecars.values()].map((m) => m.server.close()));
      await cp.close();
    },
  };
}
