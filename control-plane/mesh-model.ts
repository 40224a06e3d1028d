/**
 * The mesh model: the frozen shapes `parseMesh` (mesh.ts) produces, and lookups over them (which
 * workload a proxy node id designates, which app address serves a service port). No validation
 * here; everything in a `Mesh` has already been checked.
 */

export type PortProtocol = 'http' | 'http2' | 'grpc' | 'tcp';

/**
 * Istio's PeerAuthentication mTLS modes for a workload's inbound port: STRICT accepts only mTLS;
 * PERMISSIVE accepts mTLS and plaintext on the same port (told apart by a TLS ClientHello).
 */
export type MtlsMode = 'STRICT' | 'PERMISSIVE';
export const MTLS_MODES: readonly MtlsMode[] = ['STRICT', 'PERMISSIVE'];
export const PROTOCOLS: readonly PortProtocol[] = ['http', 'http2', 'grpc', 'tcp'];

/**
 * How a workload's traffic reaches its sidecar: `none` — the app dials the sidecar's outbound
 * listeners and peers dial its inbound port (loopback meshes); `iptables` — `meshlet iptables`
 * captures the pod's traffic, so the sidecar gets Istio's 15001 virtualOutbound (use_original_dst,
 * per-port virtual listeners, passthrough or blackhole) and 15006 virtualInbound (chains by
 * original destination port, delivery from 127.0.0.6), and peers dial its app ports.
 */
export type CaptureMode = 'none' | 'iptables';
export const CAPTURE_MODES: readonly CaptureMode[] = ['none', 'iptables'];

/** Istio's meshConfig.outboundTrafficPolicy.mode: unknown destinations pass through or are refused. */
export type OutboundTrafficPolicy = 'ALLOW_ANY' | 'REGISTRY_ONLY';
export const OUTBOUND_TRAFFIC_POLICIES: readonly OutboundTrafficPolicy[] = ['ALLOW_ANY', 'REGISTRY_ONLY'];

/** One port of a service (a Kubernetes Service port). */
export interface ServicePort {
  /** Port name (defaults to the protocol). */
  readonly name: string;
  /** The service port clients dial (the outbound listener's port). */
  readonly port: number;
  readonly protocol: PortProtocol;
  /** The app's port on each workload (Kubernetes targetPort). Default: `port`. */
  readonly targetPort: number;
}

export interface MeshService {
  readonly name: string;
  readonly namespace: string;
  /** `<name>.<namespace>.svc.<cluster_domain>` */
  readonly host: string;
  readonly ports: readonly ServicePort[];
}

export interface HostPort {
  readonly host: string;
  readonly port: number;
}

export interface MeshWorkload {
  readonly name: string;
  readonly namespace: string;
  readonly serviceAccount: string;
  /** The service (same namespace) this workload backs. */
  readonly service: string;
  /** Value of the `version` label subsets split on. Default `v1`. */
  readonly version: string;
  /** Where the app listens (one per target port). The first one's IP is the workload IP. */
  readonly addresses: readonly HostPort[];
  /** The workload IP: its sidecar's inbound listener and admin bind here. */
  readonly ip: string;
  /** Sidecar inbound (mTLS) port (Istio 15006). */
  readonly inboundPort: number;
  /** Sidecar admin port (Istio 15000). */
  readonly adminPort: number;
  /** IP the sidecar's outbound listeners bind (at each destination's service port). Default `ip`. */
  readonly outboundIp: string;
  readonly spiffeId: string;
  /** Inbound mTLS mode: the workload's `mtls`, else the mesh's `mtls`, else STRICT. */
  readonly mtls?: MtlsMode;
  /** Traffic capture: the workload's `capture`, else the mesh's, else none. */
  readonly capture?: CaptureMode;
  /** With capture: the virtualOutbound port (Istio 15001), bound on 0.0.0.0 in the pod's namespace. */
  readonly outboundPort?: number;
  /**
   * Without capture: a port on `outboundIp` where the app may use the sidecar as its HTTP proxy
   * (HTTP_PROXY=http://<outbound_ip>:<port>): absolute-form requests routed by host, CONNECT
   * terminated and tunnelled, destinations outside the mesh per outbound_traffic_policy.
   */
  readonly explicitProxyPort?: number;
}

export interface RetryRule {
  /** num_retries. */
  readonly attempts: number;
  readonly perTryTimeoutMs: number;
  /** Envoy retry_on string. Default `connect-failure,refused-stream,unavailable,cancelled,5xx` (Istio's). */
  readonly retryOn: string;
}

export interface TrafficRule {
  readonly service: string;
  readonly namespace: string;
  /** Weighted version splits; empty = all endpoints of the service. */
  readonly splits: readonly { readonly version: string; readonly weight: number }[];
  readonly retries?: RetryRule;
  /** Route timeout, ms; undefined = Envoy's default (15 s); 0 disables. */
  readonly timeoutMs?: number;
}

export type AuthzSource =
  | {
      readonly kind: 'service_account';
      readonly namespace: string;
      readonly serviceAccount: string;
      readonly spiffeId: string;
    }
  | { readonly kind: 'principal'; readonly spiffeId: string }
  | { readonly kind: 'namespace'; readonly namespace: string }
  | { readonly kind: 'any' };

export interface AuthzRule {
  readonly name: string;
  /** Target service (its workloads enforce the rule on their inbound listener). */
  readonly service: string;
  readonly namespace: string;
  readonly action: 'ALLOW' | 'DENY';
  readonly from: readonly AuthzSource[];
  /** HTTP path prefixes the rule applies to; empty = any (and the only option for tcp ports). */
  readonly paths: readonly string[];
}

export interface Mesh {
  readonly trustDomain: string;
  /** DNS suffix of service hosts. Default `cluster.local`. */
  readonly clusterDomain: string;
  /** Mesh-wide inbound mTLS mode (Istio's mesh-wide PeerAuthentication). Default STRICT. */
  readonly mtls?: MtlsMode;
  /** For captured workloads: what 15001 does with destinations not in the mesh. Default ALLOW_ANY. */
  readonly outboundTrafficPolicy?: OutboundTrafficPolicy;
  readonly services: readonly MeshService[];
  readonly workloads: readonly MeshWorkload[];
  readonly traffic: readonly TrafficRule[];
  readonly authorization: readonly AuthzRule[];
}

/** Find a service by name and namespace. */
export function findService(mesh: Mesh, name: string, namespace: string): MeshService | undefined {
  return mesh.services.find((s) => s.name === name && s.namespace === namespace);
}

/**
 * Find the workload a proxy node id designates. Accepted forms:
 *  - Istio's `sidecar~<ip>~<pod>.<namespace>~<namespace>.svc.cluster.local` (pod = workload name);
 *  - `<name>.<namespace>`;
 *  - `<name>` when that name is unique across namespaces.
 */
export function findWorkload(mesh: Mesh, nodeId: string): MeshWorkload | undefined {
  let id = nodeId;
  if (id.includes('~')) {
    const parts = id.split('~');
    if (parts.length !== 4) return undefined;
    id = parts[2]!;
  }
  const dot = id.indexOf('.');
  if (dot > 0) {
    const n = id.slice(0, dot);
    const ns = id.slice(dot + 1);
    const w = mesh.workloads.find((x) => x.name === n && x.namespace === ns);
    if (w) return w;
  }
  const byName = mesh.workloads.filter((x) => x.name === id);
  return byName.length === 1 ? byName[0] : undefined;
}

/** The app address of `w` serving `port` (by target port, or its single address). */
export function appAddressFor(w: MeshWorkload, port: ServicePort): HostPort {
  return w.addresses.find((a) => a.port === port.targetPort) ?? w.addresses[0]!;
}
