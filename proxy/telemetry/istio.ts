/**
 * Istio standard metrics on the data path: one reporter per HTTP connection manager / TCP proxy,
 * built at config time with everything that does not change per request (reporter side, local
 * workload labels), and a bounded cache of prom-client label children so a finished stream costs
 * a few Map lookups and four observe() calls — no label objects, no string building.
 *
 * Label values follow Istio: reporter=source on outbound, destination on inbound; principals
 * from the mTLS identities; workloads from node metadata for the local side and "unknown" for a
 * peer (namespace from its SPIFFE ID); connection_security_policy mutual_tls / none on the
 * destination side and "unknown" on the source side; response_flags as Envoy prints them.
 *
 * Leans bounded: paths never become labels; the service and peer principal come from the
 * cluster or the authority, and once a reporter has `maxLabelSets` children, new combinations
 * are folded into destination_service="unknown" / peer "unknown" (counted in
 * meshlet_metric_label_overflow_total).
 */
import type { NodeInfo } from '../config/types';
import type { StreamInfo } from '../http/stream-info';
import type { TcpSessionRecord } from '../tcp/tcp-proxy';
import type { CounterCell, HistogramCell } from './cells';
import type { IstioHttpLabel, IstioTcpLabel, MeshletMetrics } from './metrics';

export type Reporter = 'source' | 'destination';

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

const UNKNOWN = 'unknown';
const DEFAULT_MAX_LABEL_SETS = 1000;

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

/** Envoy's %REQ(:authority)% without the port (IPv6 brackets kept). */
function hostOf(authority: string): string {
  if (authority.startsWith('[')) {
    const end = authority.indexOf(']');
    return end > 0 ? authority.slice(0, end + 1) : authority;
  }
  const i = authority.indexOf(':');
  return i < 0 ? authority : authority.slice(0, i);
}

/** destination_service, _name and _namespace from an Istio cluster name or a host. */
function serviceLabels(key: string, isIstioCluster: boolean): { service: string; name: string; namespace: string } {
  let host = key;
  if (isIstioCluster) host = key.slice(key.lastIndexOf('|') + 1);
  else host = hostOf(key);
  if (!host) return { service: UNKNOWN, name: UNKNOWN, namespace: UNKNOWN };
  const parts = host.split('.');
  const looksLikeService = parts.length >= 2 && !/^\d+$/.test(parts[parts.length - 1]!);
  return {
    service: host,
    name: looksLikeService ? parts[0]! : host,
    namespace: looksLikeService ? parts[1]! : UNKNOWN,
  };
}

function isIstioCluster(name: string): boolean {
  return name.startsWith('outbound|') || name.startsWith('inbound|');
}

interface HttpChildren {
  readonly requests: CounterCell;
  readonly duration: HistogramCell;
  readonly requestBytes: HistogramCell;
  readonly responseBytes: HistogramCell;
}

interface TcpChildren {
  readonly opened: CounterCell;
  readonly closed: CounterCell;
  readonly sent: CounterCell;
  readonly received: CounterCell;
}

type Level<T> = Map<string, T>;

/** The map under `key`, created when missing. */
function sub<K, V>(m: Map<string, Map<K, V>>, key: string): Map<K, V> {
  let v = m.get(key);
  if (v === undefined) {
    v = new Map<K, V>();
    m.set(key, v);
  }
  return v;
}

/** Shared facts about the local proxy that every reporter reads. */
export interface LocalIdentity {
  readonly workload: WorkloadLabels;
  /** This proxy's own SPIFFE ID (from its identity certificate), or "" when it has none. */
  localPrincipal(): string;
}

abstract class BaseReporter {
  protected size = 0;

  constructor(
    protected readonly metrics: MeshletMetrics,
    readonly reporter: Reporter,
    protected readonly local: LocalIdentity,
    protected readonly maxLabelSets = DEFAULT_MAX_LABEL_SETS,
  ) {}

  /** The peer labels (everything but the response) for one service/peer/flags combination. */
  protected peerLabels(
    serviceKey: string,
    peerPrincipal: string,
    localPrincipal: string,
    flags: string,
    protocol: string,
    mtls: boolean,
  ): Record<IstioTcpLabel, string> {
    const svc =
      serviceKey === UNKNOWN
        ? { service: UNKNOWN, name: UNKNOWN, namespace: UNKNOWN }
        : serviceLabels(serviceKey, isIstioCluster(serviceKey));
    const w = this.local.workload;
    const peer = peerPrincipal || UNKNOWN;
    const peerNs = peerPrincipal ? namespaceOfPrincipal(peerPrincipal) : UNKNOWN;
    const me = localPrincipal || UNKNOWN;
    const src = this.reporter === 'source';
    return {
      reporter: this.reporter,
      source_workload: src ? w.workload : UNKNOWN,
      source_workload_namespace: src ? w.namespace : peerNs,
      source_principal: src ? me : peer,
      source_app: src ? w.app : UNKNOWN,
      source_version: src ? w.version : UNKNOWN,
      source_canonical_service: src ? w.canonicalService : UNKNOWN,
      source_canonical_revision: src ? w.canonicalRevision : UNKNOWN,
      source_cluster: src ? w.cluster : UNKNOWN,
      destination_workload: src ? UNKNOWN : w.workload,
      destination_workload_namespace: src ? peerNs : w.namespace,
      destination_principal: src ? peer : me,
      destination_app: src ? UNKNOWN : w.app,
      destination_version: src ? UNKNOWN : w.version,
      destination_canonical_service: src ? UNKNOWN : w.canonicalService,
      destination_canonical_revision: src ? UNKNOWN : w.canonicalRevision,
      destination_cluster: src ? UNKNOWN : w.cluster,
      destination_service: svc.service,
      destination_service_name: svc.name,
      destination_service_namespace: svc.namespace,
      request_protocol: protocol,
      response_flags: flags,
      // Istio reports the policy on the server side only; the client side says "unknown".
      connection_security_policy: src ? UNKNOWN : mtls ? 'mutual_tls' : 'none',
    };
  }

  protected full(): boolean {
    if (this.size < this.maxLabelSets) return false;
    this.metrics.labelOverflow.inc();
    return true;
  }
}

/** Istio HTTP metrics for one connection manager. */
export class HttpIstioReporter extends BaseReporter {
  /** service key → peer principal → response flags → (code, grpc status, grpc) → children. */
  private readonly cache: Level<Level<Level<Map<number, HttpChildren>>>> = new Map();

  /** Record one finished stream. Never throws on traffic (only on programming errors). */
  record(info: StreamInfo): void {
    const src = this.reporter === 'source';
    const cluster = info.clusterName;
    let serviceKey = src && isIstioCluster(cluster) ? cluster : info.authority || cluster || UNKNOWN;
    let peer = src ? info.upstreamPeerPrincipal : (info.connection.tls?.peerPrincipal ?? '');
    const flags = info.responseFlags();
    const codeKey = info.responseCode + 1000 * (info.grpcStatus + 1) + (info.grpc ? 1_000_000 : 0);
    let ch = this.cache.get(serviceKey)?.get(peer)?.get(flags)?.get(codeKey);
    if (ch === undefined) {
      if (this.full()) {
        serviceKey = UNKNOWN;
        peer = '';
        ch = this.cache.get(serviceKey)?.get(peer)?.get(flags)?.get(codeKey);
      }
      ch ??= this.create(serviceKey, peer, flags, codeKey, info);
    }
    ch.requests.inc();
    ch.duration.observe(info.durationMs);
    ch.requestBytes.observe(info.bytesReceived);
    ch.responseBytes.observe(info.bytesSent);
  }

  private create(serviceKey: string, peer: string, flags: string, codeKey: number, info: StreamInfo): HttpChildren {
    const mtls = info.connection.tls?.peerPrincipal !== undefined;
    const localPrincipal =
      this.reporter === 'source' ? this.local.localPrincipal() : (info.connection.tls?.localPrincipal ?? '');
    const labels: Record<IstioHttpLabel, string> = {
      ...this.peerLabels(serviceKey, peer, localPrincipal, flags, info.grpc ? 'grpc' : 'http', mtls),
      response_code: String(info.responseCode),
      grpc_response_status: info.grpc && info.grpcStatus >= 0 ? String(info.grpcStatus) : '',
    };
    const m = this.metrics;
    const ch: HttpChildren = {
      requests: m.requestsTotal.labels(labels),
      duration: m.requestDuration.labels(labels),
      requestBytes: m.requestBytes.labels(labels),
      responseBytes: m.responseBytes.labels(labels),
    };
    sub(sub(sub(this.cache, serviceKey), peer), flags).set(codeKey, ch);
    this.size++;
    return ch;
  }
}

/** Istio TCP metrics for one TCP proxy. */
export class TcpIstioReporter extends BaseReporter {
  /** service key → peer principal → response flags → children. */
  private readonly cache: Level<Level<Map<string, TcpChildren>>> = new Map();

  /** A connection was accepted (labels from what is known at that point). */
  opened(info: TcpSessionRecord['info'], cluster: string): void {
    const peer = this.reporter === 'source' ? '' : (info.tls?.peerPrincipal ?? '');
    this.children(cluster, peer, '-', info).opened.inc();
  }

  /** A session ended: bytes and the close, with the upstream identity when it connected. */
  closed(rec: TcpSessionRecord): void {
    const peer = this.reporter === 'source' ? (rec.upstreamPrincipal ?? '') : (rec.info.tls?.peerPrincipal ?? '');
    const ch = this.children(rec.cluster, peer, rec.flags || '-', rec.info);
    ch.closed.inc();
    if (rec.bytesSent > 0) ch.sent.inc(rec.bytesSent);
    if (rec.bytesReceived > 0) ch.received.inc(rec.bytesReceived);
  }

  private children(cluster: string, peerIn: string, flags: string, info: TcpSessionRecord['info']): TcpChildren {
    let key = cluster || UNKNOWN;
    let peer = peerIn;
    let ch = this.cache.get(key)?.get(peer)?.get(flags);
    if (ch !== undefined) return ch;
    if (this.full()) {
      key = UNKNOWN;
      peer = '';
      ch = this.cache.get(key)?.get(peer)?.get(flags);
      if (ch !== undefined) return ch;
    }
    const mtls = info.tls?.peerPrincipal !== undefined;
    const localPrincipal = this.reporter === 'source' ? this.local.localPrincipal() : (info.tls?.localPrincipal ?? '');
    const labels = this.peerLabels(key, peer, localPrincipal, flags, 'tcp', mtls);
    const m = this.metrics;
    ch = {
      opened: m.tcpOpened.labels(labels),
      closed: m.tcpClosed.labels(labels),
      sent: m.tcpSentBytes.labels(labels),
      received: m.tcpReceivedBytes.labels(labels),
    };
    sub(sub(this.cache, key), peer).set(flags, ch);
    this.size++;
    return ch;
  }
}

/**
 * Which side a listener reports as: its traffic_direction, else its name / stat prefix (Istio's
 * `inbound…` / `outbound…`), else `fallback` — "source" for Istio metrics (Istio's stats filter
 * treats an unspecified direction as the client side), "destination" for tracing (Envoy names an
 * undirected connection manager's spans ingress).
 */
export function reporterFor(direction: string | undefined, names: readonly string[], fallback: Reporter = 'source'): Reporter {
  if (direction === 'INBOUND') return 'destination';
  if (direction === 'OUTBOUND') return 'source';
  for (const n of names) {
    if (n.startsWith('inbound')) return 'destination';
    if (n.startsWith('outbound')) return 'source';
  }
  return fallback;
}
