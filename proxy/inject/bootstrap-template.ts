/**
 * The sidecar bootstrap `meshlet inject` writes for a Kubernetes workload: an Envoy v3 Bootstrap
 * with the workload's node identity and Istio telemetry metadata, admin on loopback (15000), and
 * ADS to the control plane over a static (or DNS) `xds-grpc` cluster. Everything else — with the
 * mesh file's `capture: iptables`, Istio's 15001 virtualOutbound and 15006 virtualInbound — comes
 * from the control plane, as Istio's bootstrap leaves it to istiod.
 *
 * Pure text generation; it leans towards what an Istio user would recognise, and the tests feed
 * its output through the real bootstrap decoder.
 */
import { isIP } from 'node:net';

/** Istio's port conventions, shared by the bootstrap, the sidecar container and the init container. */
export const MESH_PORTS = {
  admin: 15000,
  outbound: 15001,
  inbound: 15006,
  health: 15021,
  prometheus: 15090,
  /** Istio's agent port; never captured inbound (kept in the exclusion list for compatibility). */
  agent: 15020,
} as const;

export interface SidecarBootstrapOptions {
  /** node.id: the mesh file's workload, `<name>.<namespace>`. */
  readonly nodeId: string;
  /** node.cluster: the service the workload backs. */
  readonly cluster: string;
  readonly namespace: string;
  /** Istio's WORKLOAD_NAME metadata (telemetry's source/destination_workload). */
  readonly workloadName: string;
  /** Pod labels telemetry reads (Istio's LABELS metadata): app, version. */
  readonly labels: Readonly<Record<string, string>>;
  /** `host:port` of the control plane's ADS port (embedded: 15010). */
  readonly controlPlane: string;
  /** Address the admin port binds (default 127.0.0.1; the demo gives each workload its own IP). */
  readonly adminAddress?: string;
  /**
   * The authenticated path (the control plane's default): ADS and certificates over the control
   * plane's TLS port, with the pod's service-account token. Absent = plaintext ADS to
   * `controlPlane`, which only a control plane in insecure development mode accepts.
   */
  readonly secure?: SecureControlPlane;
}

/** Where the token and the mesh root are in the pod, and the control plane's TLS port. */
export interface SecureControlPlane {
  /** `host:port` of the TLS port (ADS + CreateCertificate; embedded: 15012). The host is checked against its certificate. */
  readonly address: string;
  /** The projected service-account token (audience istio-ca), re-read when the kubelet rotates it. */
  readonly tokenFile: string;
  /** PEM root(s) the control plane's certificate is verified against. */
  readonly rootCertFile: string;
}

/** Splits `host:port` (IPv6 in brackets); throws with a usage message on anything else. */
export function splitHostPort(v: string): { host: string; port: number } {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(v) ?? /^([^:\s]+):(\d+)$/.exec(v);
  const port = m ? Number(m[2]) : Number.NaN;
  if (!m || !Number.isInteger(port) || port < 1 || port > 65535)
    throw new Error(`control plane address ${JSON.stringify(v)} must be host:port, e.g. meshlet-control-plane.meshlet-system.svc.cluster.local:15010`);
  return { host: m[1]!, port };
}

/** Quotes a YAML scalar only when it needs it. */
function q(v: string): string {
  return /^[A-Za-z0-9_.\-/]+$/.test(v) && !/^(true|false|null|yes|no|on|off|~|[\d.]+)$/i.test(v) ? v : JSON.stringify(v);
}

/** The bootstrap YAML text for one workload. */
export function sidecarBootstrapYaml(o: SidecarBootstrapOptions): string {
  const cp = splitHostPort(o.controlPlane);
  const type = isIP(cp.host) ? 'STATIC' : 'STRICT_DNS';
  const sec = o.secure;
  if (sec) splitHostPort(sec.address);
  // Secure: the key is generated here and certified by CSR with the token (as istio-agent does),
  // ADS carries the same token over TLS. The file-based call credential is Envoy's own.
  const certProvider = sec
    ? `
    MESHLET_CERT_PROVIDER:
      kind: istio_csr
      ca_address: ${q(sec.address)}
      ca_server_name: ${q(splitHostPort(sec.address).host)}
      token_file: ${q(sec.tokenFile)}
      root_cert_file: ${q(sec.rootCertFile)}`
    : '';
  const ads = sec
    ? `    grpc_services:
    - google_grpc:
        target_uri: ${q(sec.address)}
        stat_prefix: xds-grpc
        channel_credentials: { ssl_credentials: { root_certs: { filename: ${q(sec.rootCertFile)} } } }
        call_credentials:
        - from_plugin:
            name: envoy.grpc_credentials.file_based_metadata
            typed_config:
              "@type": type.googleapis.com/envoy.config.grpc_credential.v3.FileBasedMetadataConfig
              secret_data: { filename: ${q(sec.tokenFile)} }
              header_prefix: "Bearer "`
    : '    grpc_services: [{ envoy_grpc: { cluster_name: xds-grpc } }]';
  const staticResources = sec
    ? ''
    : `static_resources:
  clusters:
  - name: xds-grpc
    type: ${type}
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: { http2_protocol_options: {} }
    load_assignment:
      cluster_name: xds-grpc
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: ${q(cp.host)}, port_value: ${cp.port} } } } }] }]
`;
  return `# meshlet sidecar bootstrap (Envoy v3 Bootstrap), written by \`meshlet inject\`.
node:
  id: ${q(o.nodeId)}
  cluster: ${q(o.cluster)}
  metadata:
    NAMESPACE: ${q(o.namespace)}
    WORKLOAD_NAME: ${q(o.workloadName)}
    CLUSTER_ID: Kubernetes
    LABELS: {${Object.entries(o.labels).map(([k, v]) => ` ${q(k)}: ${q(v)}`).join(',')} }${certProvider}
admin:
  address: { socket_address: { address: ${o.adminAddress ?? '127.0.0.1'}, port_value: ${MESH_PORTS.admin} } }
dynamic_resources:
  ads_config:
    api_type: GRPC
    transport_api_version: V3
${ads}
  lds_config: { ads: {}, resource_api_version: V3 }
  cds_config: { ads: {}, resource_api_version: V3 }
${staticResources}`;
}
