/**
 * The bootstrap meshlet builds for itself inside an Istio pod, doing pilot-agent's job: the node
 * from the environment (node-metadata.ts), admin on loopback, and ADS straight to istiod over TLS
 * verified with the mesh root, carrying the pod's projected service-account token as
 * `authorization: Bearer …` (Envoy's file_based_metadata call credentials, re-read when the
 * kubelet rotates it) and istiod's `clusterid` header. Pilot-agent would instead proxy Envoy's
 * ADS through a Unix socket; meshlet has no second process to do that, so it dials istiod itself.
 */
import { type AgentNode, agentNode, type Env, proxyConfigJson } from './node-metadata';

/** The files and defaults Istio's injector mounts and sets. */
export const ISTIO_PATHS = {
  token: '/var/run/secrets/tokens/istio-token',
  rootCert: '/var/run/secrets/istio/root-cert.pem',
  podLabels: '/etc/istio/pod/labels',
  podAnnotations: '/etc/istio/pod/annotations',
} as const;

export const DEFAULT_DISCOVERY_ADDRESS = 'istiod.istio-system.svc:15012';

export interface AgentBootstrapInputs {
  readonly env: Env;
  /** PROXY_CONFIG parsed (YAML or JSON), or undefined. */
  readonly proxyConfig?: unknown;
  readonly podLabelsFile?: string;
  readonly podAnnotationsFile?: string;
  /** Overrides for tests (defaults: ISTIO_PATHS). */
  readonly tokenFile?: string;
  readonly rootCertFile?: string;
  readonly adminPort?: number;
}

export interface AgentBootstrap {
  readonly node: AgentNode;
  readonly discoveryAddress: string;
  /** The admin port the bootstrap binds on 127.0.0.1. */
  readonly adminPort: number;
  /** The Envoy v3 bootstrap (proto-JSON). */
  readonly bootstrap: Record<string, unknown>;
}

/** pilot-agent's inputs → meshlet's bootstrap. */
export function agentBootstrap(inputs: AgentBootstrapInputs): AgentBootstrap {
  const env = inputs.env;
  const pc = (proxyConfigJson(inputs.proxyConfig ?? {}) ?? {}) as Record<string, unknown>;
  // pilot-agent: CA_ADDR / PROXY_CONFIG.discoveryAddress, istiod's TLS port by default.
  const discoveryAddress = (typeof pc.discoveryAddress === 'string' && pc.discoveryAddress) || DEFAULT_DISCOVERY_ADDRESS;
  const proxyConfig = { ...pc, discoveryAddress };
  const ips = (env.INSTANCE_IP ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  const node = agentNode({
    env,
    proxyConfig,
    instanceIps: ips,
    ...(inputs.podLabelsFile !== undefined ? { podLabelsFile: inputs.podLabelsFile } : {}),
    ...(inputs.podAnnotationsFile !== undefined ? { podAnnotationsFile: inputs.podAnnotationsFile } : {}),
  });
  const clusterId = env.ISTIO_META_CLUSTER_ID ?? 'Kubernetes';
  const adminPort = inputs.adminPort ?? (typeof pc.proxyAdminPort === 'number' ? pc.proxyAdminPort : 15000);
  const caHost = discoveryAddress.replace(/:\d+$/, '');
  // The workload certificate, as pilot-agent gets it: a key made here, a CSR to istiod's
  // CreateCertificate authenticated with the same token, renewed at half its lifetime, served as
  // the SDS secret `default` (certs/csr-provider.ts).
  const certProvider = {
    kind: 'istio_csr',
    ca_address: discoveryAddress,
    ca_server_name: caHost,
    token_file: inputs.tokenFile ?? ISTIO_PATHS.token,
    root_cert_file: inputs.rootCertFile ?? ISTIO_PATHS.rootCert,
    trust_domain: env.TRUST_DOMAIN || 'cluster.local',
  };
  const bootstrap = {
    node: { id: node.id, cluster: node.cluster, metadata: { ...node.metadata, MESHLET_CERT_PROVIDER: certProvider } },
    admin: { address: { socket_address: { address: '127.0.0.1', port_value: adminPort } } },
    dynamic_resources: {
      lds_config: { ads: {}, initial_fetch_timeout: '0s', resource_api_version: 'V3' },
      cds_config: { ads: {}, initial_fetch_timeout: '0s', resource_api_version: 'V3' },
      ads_config: {
        api_type: 'GRPC',
        set_node_on_first_message_only: true,
        transport_api_version: 'V3',
        grpc_services: [
          {
            google_grpc: {
              target_uri: discoveryAddress,
              stat_prefix: 'xds-grpc',
              channel_credentials: { ssl_credentials: { root_certs: { filename: inputs.rootCertFile ?? ISTIO_PATHS.rootCert } } },
              call_credentials: [
                {
                  from_plugin: {
                    name: 'envoy.grpc_credentials.file_based_metadata',
                    typed_config: {
                      '@type': 'type.googleapis.com/envoy.config.grpc_credential.v3.FileBasedMetadataConfig',
                      secret_data: { filename: inputs.tokenFile ?? ISTIO_PATHS.token },
                      header_prefix: 'Bearer ',
                    },
                  },
                },
              ],
            },
            // istiod reads the proxy's cluster from this header (pilot-agent's XDS proxy sets it).
            initial_metadata: [{ key: 'clusterid', value: clusterId }],
          },
        ],
      },
    },
    static_resources: { clusters: [] },
  };
  return { node, discoveryAddress, adminPort, bootstrap };
}
