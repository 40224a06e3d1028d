/**
 * Istio's standard metric labels, computed the way istio-proxy's stats filter fills them
 * (source/extensions/filters/http/istio_stats in istio/proxy): which side reports, where the peer
 * comes from, the destination service from the cluster's `istio.services` metadata or the Host
 * header, and the defaults ("unknown", "latest") for what is not known.
 *
 * - server sidecar (reporter="destination"): source_* from the downstream peer's metadata
 *   (metadata exchange), principals from istio_authn's filter state or the TLS certificates,
 *   destination_* from the local node; connection_security_policy mutual_tls when both
 *   principals are known, else none.
 * - client sidecar (reporter="source"): source_* from the local node, destination_* from the
 *   upstream peer (metadata exchange, else the endpoint's `istio.workload` metadata), principal
 *   from the upstream certificate; connection_security_policy "unknown".
 * - server gateway (reporter="destination"): source as the server sidecar; destination workload
 *   and canonical names from the upstream peer, app and version "unknown".
 *
 * The peer's namespace is the one in its SPIFFE ID when there is one, else its metadata's.
 * Computed once per label set (the reporters cache the result); never on every request.
 */
import type { PeerMetadata } from '../http/peer-metadata';
import type { NodeInfo } from '../config/types';
import type { IstioHttpLabel, IstioTcpLabel } from './metrics';

export type ReporterKind = 'client' | 'server' | 'gateway';

const UNKNOWN = 'unknown';
const LATEST = 'latest';

/** The local workload, as Istio reads it from node metadata. */
export interface WorkloadLabels {
  readonly workload: string;
  readonly namespace: string;
  readonly app: string;
  readonly version: string;
  readonly canonicalService: string;
  /** service.istio.io/canonical-revision, else the version label, else "latest" (as Istio). */
  readonly canonicalRevision: string;
  /** node.metadata.CLUSTER_ID (Istio's multi-cluster name, "Kubernetes" by default there). */
  readonly cluster: string;
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' && v !== '' ? v : undefined;
}

/** Istio's node metadata: WORKLOAD_NAME, NAMESPACE, LABELS.app / version / canonical name. */
export function workloadFromNode(node: NodeInfo): WorkloadLabels {
  const md = node.metadata ?? {};
  const labels = (typeof md.LABELS === 'object' && md.LABELS !== null ? md.LABELS : {}) as Record<string, unknown>;
  const workload = str(md.WORKLOAD_NAME) ?? UNKNOWN;
  const app = str(labels.app) ?? str(labels['app.kubernetes.io/name']) ?? UNKNOWN;
  const version = str(labels.version) ?? str(labels['app.kubernetes.io/version']);
  return {
    workload,
    namespace: str(md.NAMESPACE) ?? UNKNOWN,
    app,
    version: version ?? UNKNOWN,
    canonicalService: str(labels['service.istio.io/canonical-name']) ?? (app !== UNKNOWN ? app : workload),
    canonicalRevision: str(labels['service.istio.io/canonical-revision']) ?? version ?? 'latest',
    cluster: str(md.CLUSTER_ID) ?? UNKNOWN,
  };
}

/** Namespace of a SPIFFE ID spiffe://<td>/ns/<ns>/sa/<sa>, or "unknown". */
export function namespaceOfPrincipal(principal: string): string {
  const i = principal.indexOf('/ns/');
  if (i < 0) return UNKNOWN;
  const rest = principal.slice(i + 4);
  const j = rest.indexOf('/');
  return (j < 0 ? rest : rest.slice(0, j)) || UNKNOWN;
}

/** Namespace of a SPIFFE ID spiffe://<td>/ns/<ns>/sa/<sa>, or "". */
function namespaceOfSan(principal: string): string {
  const i = principal.indexOf('/ns/');
  if (i < 0) return '';
  const rest = principal.slice(i + 4);
  const j = rest.indexOf('/');
  return j < 0 ? rest : rest.slice(0, j);
}

const PASSTHROUGH_NAMES = new Set(['BlackHoleCluster', 'PassthroughCluster', 'InboundPassthroughClusterIpv4', 'InboundPassthroughClusterIpv6']);

/** destination_service and destination_service_name before their defaults ("" = not known). */
export interface ServiceNames {
  readonly host: string;
  readonly name: string;
}

const serviceCache = new WeakMap<object, ServiceNames | null>();

/** The first of a cluster's `istio.services` (host, name), or undefined. */
function servicesOf(metadata: Readonly<Record<string, unknown>> | undefined): ServiceNames | undefined {
  if (metadata === undefined) return undefined;
  const hit = serviceCache.get(metadata);
  if (hit !== undefined) return hit ?? undefined;
  let out: ServiceNames | null = null;
  const istio = metadata.istio as Record<string, unknown> | undefined;
  const services = istio?.services;
  if (Array.isArray(services) && services.length > 0 && services[0] !== null && typeof services[0] === 'object') {
    const s = services[0] as Record<string, unknown>;
    const host = typeof s.host === 'string' ? s.host : '';
    const name = typeof s.name === 'string' ? s.name : host.split('.')[0]!;
    out = { host, name };
  }
  serviceCache.set(metadata, out);
  return out ?? undefined;
}

/**
 * The destination service of a stream: the Host header unless the fallback is disabled, replaced
 * by the route (allow_any / block_all), the pass-through clusters' names, or the cluster's
 * `istio.services`. Clusters without that metadata but named like istiod's
 * (`outbound|port|subset|host`) give their host, as the metadata would.
 */
export function serviceNames(
  cluster: string,
  clusterMetadata: Readonly<Record<string, unknown>> | undefined,
  routeName: string,
  host: string,
): ServiceNames {
  let svcHost = host;
  let svcName = host;
  if (routeName === 'block_all') svcName = 'BlackHoleCluster';
  else if (routeName === 'allow_any') svcName = 'PassthroughCluster';
  else if (PASSTHROUGH_NAMES.has(cluster)) svcName = cluster;
  else {
    const s = servicesOf(clusterMetadata);
    if (s !== undefined) {
      svcHost = s.host;
      svcName = s.name;
    } else if (cluster.startsWith('outbound|')) {
      const h = cluster.slice(cluster.lastIndexOf('|') + 1);
      if (h !== '') {
        svcHost = h;
        svcName = h.split('.')[0]!;
      }
    }
  }
  return { host: svcHost, name: svcName };
}

export interface LabelFacts {
  readonly kind: ReporterKind;
  readonly local: WorkloadLabels;
  /** The downstream peer (server, gateway) or the upstream peer (client). */
  readonly peer: PeerMetadata | undefined;
  /** Gateway only: the upstream peer. */
  readonly upstreamPeer?: PeerMetadata;
  readonly peerSan: string;
  readonly localSan: string;
  readonly service: ServiceNames;
  readonly protocol: string;
  readonly flags: string;
}

const or = (v: string | undefined, def: string): string => (v !== undefined && v !== '' ? v : def);

/** The peer ("connection") half of Istio's labels. */
export function istioPeerLabels(f: LabelFacts): Record<IstioTcpLabel, string> {
  const w = f.local;
  const peer = f.peer;
  const peerNs = or(namespaceOfSan(f.peerSan), peer?.namespace ?? '');
  if (f.kind === 'client') {
    return {
      reporter: 'source',
      source_workload: w.workload,
      source_workload_namespace: w.namespace,
      source_principal: or(f.localSan, UNKNOWN),
      source_app: w.app,
      source_version: w.version,
      source_canonical_service: w.canonicalService,
      source_canonical_revision: w.canonicalRevision,
      source_cluster: w.cluster,
      destination_workload: or(peer?.workload, UNKNOWN),
      destination_workload_namespace: or(peerNs, UNKNOWN),
      destination_principal: or(f.peerSan, UNKNOWN),
      destination_app: or(peer?.app, UNKNOWN),
      destination_version: or(peer?.version, UNKNOWN),
      destination_canonical_service: or(peer?.canonicalService, UNKNOWN),
      destination_canonical_revision: or(peer?.canonicalRevision, LATEST),
      destination_cluster: or(peer?.cluster, UNKNOWN),
      destination_service: or(f.service.host, UNKNOWN),
      destination_service_name: or(f.service.name, UNKNOWN),
      destination_service_namespace: or(peerNs, UNKNOWN),
      request_protocol: f.protocol,
      response_flags: f.flags,
      connection_security_policy: UNKNOWN,
    };
  }
  const mtls = f.peerSan !== '' && f.localSan !== '';
  const source = {
    reporter: 'destination',
    source_workload: or(peer?.workload, UNKNOWN),
    source_workload_namespace: or(peerNs, UNKNOWN),
    source_principal: or(f.peerSan, UNKNOWN),
    source_app: or(peer?.app, UNKNOWN),
    source_version: or(peer?.version, UNKNOWN),
    source_canonical_service: or(peer?.canonicalService, UNKNOWN),
    source_canonical_revision: or(peer?.canonicalRevision, LATEST),
    source_cluster: or(peer?.cluster, UNKNOWN),
  };
  if (f.kind === 'gateway') {
    const up = f.upstreamPeer;
    const canonical = or(up?.canonicalService, UNKNOWN);
    return {
      ...source,
      destination_workload: or(up?.workload, UNKNOWN),
      destination_workload_namespace: w.namespace,
      destination_principal: or(f.localSan, UNKNOWN),
      destination_app: UNKNOWN,
      destination_version: UNKNOWN,
      destination_canonical_service: canonical,
      destination_canonical_revision: or(up?.canonicalRevision, UNKNOWN),
      destination_cluster: w.cluster,
      destination_service: or(f.service.host, canonical),
      destination_service_name: or(f.service.name, canonical),
      destination_service_namespace: w.namespace,
      request_protocol: f.protocol,
      response_flags: f.flags,
      connection_security_policy: mtls ? 'mutual_tls' : 'none',
    };
  }
  return {
    ...source,
    destination_workload: w.workload,
    destination_workload_namespace: w.namespace,
    destination_principal: or(f.localSan, UNKNOWN),
    destination_app: w.app,
    destination_version: w.version,
    destination_canonical_service: w.canonicalService,
    destination_canonical_revision: w.canonicalRevision,
    destination_cluster: w.cluster,
    destination_service: or(f.service.host, w.canonicalService),
    destination_service_name: or(f.service.name, w.canonicalService),
    destination_service_namespace: w.namespace,
    request_protocol: f.protocol,
    response_flags: f.flags,
    connection_security_policy: mtls ? 'mutual_tls' : 'none',
  };
}

/** The full HTTP label set. */
export function istioHttpLabels(f: LabelFacts, responseCode: number, grpcStatus: string): Record<IstioHttpLabel, string> {
  return { ...istioPeerLabels(f), response_code: String(responseCode), grpc_response_status: grpcStatus };
}
