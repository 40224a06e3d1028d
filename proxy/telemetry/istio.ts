/**
 * Istio standard metrics on the data path: one reporter per HTTP connection manager / TCP proxy,
 * built at config time with everything that does not change per request (reporter kind, local
 * workload labels, the istio.stats config of that listener), and a bounded cache of label cells
 * so a finished stream costs a few Map lookups and four observe() calls — no label objects, no
 * string building.
 *
 * The labels are istio-proxy's (istio-labels.ts): the reporter kind from istio.stats' `reporter`
 * and the listener direction, peers from the metadata exchange (StreamInfo / connection filter
 * state) or the upstream endpoint's `istio.workload`, principals from istio_authn or the
 * certificates, destination_service from the cluster's `istio.services`, the pass-through
 * clusters, or the Host header unless `disable_host_header_fallback`. istio.stats overrides
 * (istio-overrides.ts) drop metrics and change their dimensions. A TCP session reports when it
 * ends and every `tcp_reporting_duration` while it lasts; its labels (and the opened counter)
 * are fixed at its first report, as in Istio.
 *
 * Leans bounded: paths never become labels, and once a reporter has `maxLabelSets` cells new
 * combinations are folded into destination_service="unknown" / peer "unknown" (counted in
 * meshlet_metric_label_overflow_total).
 */
import type { NodeInfo } from '../config/types';
import type { IstioMetricName, IstioStatsConfig } from '../config/filters/istio-stats';
import type { DownstreamConnectionInfo } from '../http/codec';
import { endpointPeer, type PeerMetadata } from '../http/peer-metadata';
import type { StreamInfo } from '../http/stream-info';
import type { TcpSessionRecord } from '../tcp/tcp-proxy';
import { CounterCell, HistogramCell } from './cells';
import { type ExprSubject, IstioOverrides } from './istio-overrides';
import { istioHttpLabels, istioPeerLabels, type LabelFacts, type ReporterKind, serviceNames, type WorkloadLabels } from './istio-labels';
import { ISTIO_HTTP_LABELS, ISTIO_PEER_LABELS, type IstioHttpLabel, type IstioTcpLabel, type MeshletMetrics } from './metrics';

export { type ReporterKind, type WorkloadLabels, workloadFromNode } from './istio-labels';

export type Reporter = 'source' | 'destination';

const UNKNOWN = 'unknown';
const DEFAULT_MAX_LABEL_SETS = 1000;
const OVERFLOW_SERVICE = { host: UNKNOWN, name: UNKNOWN };

/** Namespace of a SPIFFE ID spiffe://<td>/ns/<ns>/sa/<sa>, or "unknown". */
export function namespaceOfPrincipal(principal: string): string {
  const i = principal.indexOf('/ns/');
  if (i < 0) return UNKNOWN;
  const rest = principal.slice(i + 4);
  const j = rest.indexOf('/');
  return (j < 0 ? rest : rest.slice(0, j)) || UNKNOWN;
}

/** Shared facts about the local proxy that every reporter reads. */
export interface LocalIdentity {
  readonly workload: WorkloadLabels;
  /** This proxy's own SPIFFE ID (from its identity certificate), or "" when it has none. */
  localPrincipal(): string;
}

export interface ReporterOptions {
  /** The listener's istio.stats config (undefined = Istio's defaults). */
  readonly stats?: IstioStatsConfig;
  /** For node.metadata[...] dimension expressions. */
  readonly node?: NodeInfo;
  /** A cluster's metadata (istio.services), looked up when a label set is created. */
  readonly clusterMetadata?: (name: string) => Readonly<Record<string, unknown>> | undefined;
  readonly maxLabelSets?: number;
}

/** A peer key for the label cache when there is none. */
const NO_PEER = Object.freeze({}) as PeerMetadata;

/** Peers of a server-side connection: istio_authn's filter state, else the certificates. */
function serverSans(conn: DownstreamConnectionInfo): { peer: string; local: string } {
  const fs = conn.filterState;
  const peer = fs?.peerPrincipal ?? '';
  const local = fs?.localPrincipal ?? '';
  if (peer !== '' || local !== '') return { peer, local };
  const tls = conn.tls;
  return { peer: tls?.peerUriSans?.[0] ?? tls?.peerPrincipal ?? '', local: tls?.localPrincipal ?? '' };
}

/** The client side's fallback peer: the upstream endpoint's istio.workload metadata. */
function endpointPeerOf(md: Readonly<Record<string, unknown>> | undefined): PeerMetadata | undefined {
  const istio = md?.istio as Record<string, unknown> | undefined;
  const w = istio?.workload;
  return typeof w === 'string' ? endpointPeer(w) : undefined;
}

function reporterKind(side: Reporter, stats: IstioStatsConfig | undefined): ReporterKind {
  if (stats?.reporter === 'SERVER_GATEWAY') return 'gateway';
  return side === 'destination' ? 'server' : 'client';
}

/** A cell no family exports: what a dropped metric records into. */
const DROPPED_COUNTER = new CounterCell({});
const DROPPED_HISTOGRAM = new HistogramCell({}, []);

type Tree = Map<unknown, unknown>;

function leaf<V>(root: Tree, keys: readonly unknown[]): V | undefined {
  let m: Tree | undefined = root;
  for (let i = 0; i < keys.length - 1; i++) {
    m = m.get(keys[i]) as Tree | undefined;
    if (m === undefined) return undefined;
  }
  return m.get(keys[keys.length - 1]) as V | undefined;
}

function setLeaf(root: Tree, keys: readonly unknown[], v: unknown): void {
  let m = root;
  for (let i = 0; i < keys.length - 1; i++) {
    let n = m.get(keys[i]) as Tree | undefined;
    if (n === undefined) {
      n = new Map();
      m.set(keys[i], n);
    }
    m = n;
  }
  m.set(keys[keys.length - 1], v);
}

abstract class BaseReporter {
  protected size = 0;
  readonly kind: ReporterKind;
  protected readonly overrides: IstioOverrides | undefined;
  protected readonly maxLabelSets: number;
  protected readonly hostFallback: boolean;

  constructor(
    protected readonly metrics: MeshletMetrics,
    side: Reporter,
    protected readonly local: LocalIdentity,
    protected readonly opts: ReporterOptions = {},
    tags: readonly string[],
  ) {
    this.kind = reporterKind(side, opts.stats);
    this.maxLabelSets = opts.maxLabelSets ?? DEFAULT_MAX_LABEL_SETS;
    this.hostFallback = !(opts.stats?.disableHostHeaderFallback ?? false);
    const s = opts.stats;
    this.overrides =
      s !== undefined && (s.overrides.size > 0 || s.dropped.size > 0)
        ? new IstioOverrides(s, opts.node ?? { id: '', cluster: '', metadata: {}, userAgentName: '', userAgentVersion: '' }, tags)
        : undefined;
  }

  /** "source" or "destination", the reporter label. */
  get reporter(): Reporter {
    return this.kind === 'client' ? 'source' : 'destination';
  }

  protected full(): boolean {
    if (this.size < this.maxLabelSets) return false;
    this.metrics.labelOverflow.inc();
    return true;
  }

  protected clusterMetadata(name: string): Readonly<Record<string, unknown>> | undefined {
    return name === '' || this.opts.clusterMetadata === undefined ? undefined : this.opts.clusterMetadata(name);
  }

  protected counter<L extends string>(metric: IstioMetricName, family: { labels(l: Readonly<Record<L, string>>): CounterCell; labelsOf(l: Readonly<Record<string, string>>): CounterCell }, std: Record<L, string>, values: readonly string[]): CounterCell {
    const o = this.overrides;
    if (o === undefined) return family.labels(std);
    if (o.dropped(metric)) return DROPPED_COUNTER;
    return o.standard(metric) ? family.labels(std) : family.labelsOf(o.labels(metric, std, values));
  }

  protected histogram<L extends string>(metric: IstioMetricName, family: { labels(l: Readonly<Record<L, string>>): HistogramCell; labelsOf(l: Readonly<Record<string, string>>): HistogramCell }, std: Record<L, string>, values: readonly string[]): HistogramCell {
    const o = this.overrides;
    if (o === undefined) return family.labels(std);
    if (o.dropped(metric)) return DROPPED_HISTOGRAM;
    return o.standard(metric) ? family.labels(std) : family.labelsOf(o.labels(metric, std, values));
  }
}

interface HttpChildren {
  readonly requests: CounterCell;
  readonly duration: HistogramCell;
  readonly requestBytes: HistogramCell;
  readonly responseBytes: HistogramCell;
}

const NO_VALUES: readonly string[] = [];

/** Istio HTTP metrics for one connection manager. */
export class HttpIstioReporter extends BaseReporter {
  /** cluster → host → peer SAN → peer → upstream peer → flags → code key → expression values → cells. */
  private readonly cache: Tree = new Map();
  private readonly keys: unknown[] = new Array(8);

  constructor(metrics: MeshletMetrics, side: Reporter, local: LocalIdentity, opts: ReporterOptions = {}) {
    super(metrics, side, local, opts, ISTIO_HTTP_LABELS);
  }

  /** Record one finished stream. Never throws on traffic (only on programming errors). */
  record(info: StreamInfo): void {
    const kind = this.kind;
    const route = info.routeName;
    const cluster = route === 'allow_any' || route === 'block_all' ? `\u0000${route}` : info.clusterName;
    const host = this.hostFallback ? info.authority : '';
    let peerSan: string;
    let peer: PeerMetadata | undefined;
    if (kind === 'client') {
      peerSan = info.upstreamPeerPrincipal;
      peer = info.upstreamPeer ?? endpointPeerOf(info.upstreamHostMetadata);
    } else {
      peerSan = serverSans(info.connection).peer;
      peer = info.downstreamPeer;
    }
    const upstreamPeer = kind === 'gateway' ? info.upstreamPeer : undefined;
    const flags = info.responseFlags();
    const codeKey = info.responseCode + 1000 * (info.grpcStatus + 1) + (info.grpc ? 1_000_000 : 0);
    const o = this.overrides;
    const values = o !== undefined && o.hasPlans ? o.evaluate({ http: info }) : NO_VALUES;
    const vkey = o !== undefined && o.perStream ? values.join('\u0001') : '';
    const keys = this.keys;
    keys[0] = cluster;
    keys[1] = host;
    keys[2] = peerSan;
    keys[3] = peer ?? NO_PEER;
    keys[4] = upstreamPeer ?? NO_PEER;
    keys[5] = flags;
    keys[6] = codeKey;
    keys[7] = vkey;
    let ch = leaf<HttpChildren>(this.cache, keys);
    if (ch === undefined) {
      let overflow = false;
      if (this.full()) {
        overflow = true;
        keys[0] = UNKNOWN;
        keys[1] = '';
        keys[2] = '';
        keys[3] = NO_PEER;
        keys[4] = NO_PEER;
        ch = leaf<HttpChildren>(this.cache, keys);
      }
      ch ??= this.create(info, overflow, values);
    }
    ch.requests.inc();
    ch.duration.observe(info.durationMs);
    ch.requestBytes.observe(info.bytesReceived);
    ch.responseBytes.observe(info.bytesSent);
  }

  private create(info: StreamInfo, overflow: boolean, values: readonly string[]): HttpChildren {
    const k = this.keys;
    const client = this.kind === 'client';
    const peerSan = k[2] as string;
    const facts: LabelFacts = {
      kind: this.kind,
      local: this.local.workload,
      peer: k[3] === NO_PEER ? undefined : (k[3] as PeerMetadata),
      ...(k[4] !== NO_PEER ? { upstreamPeer: k[4] as PeerMetadata } : {}),
      peerSan,
      localSan: client ? this.local.localPrincipal() : serverSans(info.connection).local,
      service: overflow ? OVERFLOW_SERVICE : serviceNames(info.clusterName, this.clusterMetadata(info.clusterName), info.routeName, k[1] as string),
      protocol: info.grpc ? 'grpc' : 'http',
      flags: k[5] as string,
    };
    const labels = istioHttpLabels(facts, info.responseCode, info.grpc && info.grpcStatus >= 0 ? String(info.grpcStatus) : '');
    const m = this.metrics;
    const ch: HttpChildren = {
      requests: this.counter<IstioHttpLabel>('requests_total', m.requestsTotal, labels, values),
      duration: this.histogram<IstioHttpLabel>('request_duration_milliseconds', m.requestDuration, labels, values),
      requestBytes: this.histogram<IstioHttpLabel>('request_bytes', m.requestBytes, labels, values),
      responseBytes: this.histogram<IstioHttpLabel>('response_bytes', m.responseBytes, labels, values),
    };
    setLeaf(this.cache, k, ch);
    this.size++;
    return ch;
  }
}

interface TcpChildren {
  readonly opened: CounterCell;
  readonly closed: CounterCell;
  readonly sent: CounterCell;
  readonly received: CounterCell;
}

/** What a live session has reported so far. */
interface TcpProgress {
  readonly ch: TcpChildren;
  sent: number;
  received: number;
}

/** Istio TCP metrics for one TCP proxy. */
export class TcpIstioReporter extends BaseReporter {
  /** cluster → peer SAN → peer → flags → expression values → cells. */
  private readonly cache: Tree = new Map();
  private readonly keys: unknown[] = new Array(5);
  private readonly sessions = new WeakMap<DownstreamConnectionInfo, TcpProgress>();

  constructor(metrics: MeshletMetrics, side: Reporter, local: LocalIdentity, opts: ReporterOptions = {}) {
    super(metrics, side, local, opts, ISTIO_PEER_LABELS);
  }

  /** Every tcp_reporting_duration of a live session. */
  progress(rec: TcpSessionRecord): void {
    this.report(rec, false);
  }

  /** A session ended: the rest of its bytes and the close. */
  closed(rec: TcpSessionRecord): void {
    this.report(rec, true);
  }

  private report(rec: TcpSessionRecord, end: boolean): void {
    let p = this.sessions.get(rec.info);
    if (p === undefined) {
      // First report: the labels are fixed now (Istio reports the open once the peer is known).
      p = { ch: this.children(rec), sent: 0, received: 0 };
      p.ch.opened.inc();
      if (!end) this.sessions.set(rec.info, p);
    }
    const ds = rec.bytesSent - p.sent;
    const dr = rec.bytesReceived - p.received;
    if (ds > 0) p.ch.sent.inc(ds);
    if (dr > 0) p.ch.received.inc(dr);
    p.sent = rec.bytesSent;
    p.received = rec.bytesReceived;
    if (end) {
      p.ch.closed.inc();
      this.sessions.delete(rec.info);
    }
  }

  private children(rec: TcpSessionRecord): TcpChildren {
    const kind = this.kind;
    let peerSan: string;
    let peer: PeerMetadata | undefined;
    if (kind === 'client') {
      peerSan = rec.upstreamPrincipal ?? '';
      peer = rec.upstreamPeer ?? endpointPeerOf(rec.upstreamHostMetadata);
    } else {
      peerSan = serverSans(rec.info).peer;
      peer = rec.info.filterState?.downstreamPeer;
    }
    const flags = rec.flags || '-';
    const o = this.overrides;
    const subject: ExprSubject = { tcp: rec };
    const values = o !== undefined && o.hasPlans ? o.evaluate(subject) : NO_VALUES;
    const keys = this.keys;
    keys[0] = rec.cluster || UNKNOWN;
    keys[1] = peerSan;
    keys[2] = peer ?? NO_PEER;
    keys[3] = flags;
    keys[4] = o !== undefined && o.perStream ? values.join('\u0001') : '';
    let ch = leaf<TcpChildren>(this.cache, keys);
    if (ch !== undefined) return ch;
    let overflow = false;
    if (this.full()) {
      overflow = true;
      keys[0] = UNKNOWN;
      keys[1] = '';
      keys[2] = NO_PEER;
      ch = leaf<TcpChildren>(this.cache, keys);
      if (ch !== undefined) return ch;
    }
    const cluster = rec.cluster;
    const facts: LabelFacts = {
      kind,
      local: this.local.workload,
      peer: keys[2] === NO_PEER ? undefined : (keys[2] as PeerMetadata),
      peerSan: keys[1] as string,
      localSan: kind === 'client' ? this.local.localPrincipal() : serverSans(rec.info).local,
      service: overflow ? OVERFLOW_SERVICE : serviceNames(cluster, this.clusterMetadata(cluster), '', ''),
      protocol: 'tcp',
      flags,
    };
    const labels = istioPeerLabels(facts);
    const m = this.metrics;
    ch = {
      opened: this.counter<IstioTcpLabel>('tcp_connections_opened_total', m.tcpOpened, labels, values),
      closed: this.counter<IstioTcpLabel>('tcp_connections_closed_total', m.tcpClosed, labels, values),
      sent: this.counter<IstioTcpLabel>('tcp_sent_bytes_total', m.tcpSentBytes, labels, values),
      received: this.counter<IstioTcpLabel>('tcp_received_bytes_total', m.tcpReceivedBytes, labels, values),
    };
    setLeaf(this.cache, keys, ch);
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
