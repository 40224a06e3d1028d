/**
 * Every metric meshlet exports, declared in one place (prom-client): Istio's standard metrics
 * with Istio's label names and buckets, and Envoy-style server, listener, cluster and xDS stats.
 *
 * One `MeshletMetrics` per MeshletServer (each has its own prom-client Registry, so several
 * meshlets can run in one process, as the tests do). Istio metrics are updated on the data path
 * through cached label children (see istio.ts); Envoy-style stats are read from the counters the
 * components already keep, at scrape time (see stats.ts), so they cost nothing per request.
 *
 * Leans towards Prometheus conventions where they clash with Envoy's raw names: every counter
 * ends in `_total` (promtool's lint requires it), so Envoy's `update_success` is exported as
 * `envoy_cluster_manager_cds_update_success_total`.
 */
import { Counter, Gauge, Registry } from 'prom-client';
import { CounterFamily, HistogramFamily } from './cells';
import { type ChunkSink, renderExposition, type ScrapeScope } from './exposition';
import { ISTIO_PEER_TAGS } from '../config/filters/istio-stats';

/**
 * Work before each rendering: fills `scope` for the families; may return a release to run when
 * that rendering is over (to recycle what it filled).
 */
export type ScrapeHook = (scope: ScrapeScope) => Promise<(() => void) | void>;

/** Scrapes rendering at once; more wait (bounds the work a crowd of scrapers can start). */
const MAX_CONCURRENT_SCRAPES = 4;

/** Istio's default buckets for istio_request_duration_milliseconds (ms). */
export const ISTIO_DURATION_BUCKETS_MS: readonly number[] = [
  0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000,
];

/** Buckets for istio_request_bytes / istio_response_bytes (powers of ten, 1 B … 1 GB). */
export const ISTIO_BYTES_BUCKETS: readonly number[] = [
  1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000, 1000000000,
];

/** Labels shared by Istio's HTTP and TCP metrics (the "peer" half of the label set). */
export const ISTIO_PEER_LABELS = ISTIO_PEER_TAGS;

/** Istio's HTTP/gRPC labels: the peer labels plus the response. */
export const ISTIO_HTTP_LABELS = [...ISTIO_PEER_LABELS, 'response_code', 'grpc_response_status'] as const;

export type IstioHttpLabel = (typeof ISTIO_HTTP_LABELS)[number];
export type IstioTcpLabel = (typeof ISTIO_PEER_LABELS)[number];

export class MeshletMetrics {
  readonly registry = new Registry();

  // ───────────── Istio standard metrics (updated on the data path) ─────────────
  // Plain-number cells rendered at scrape time (cells.ts): prom-client's label children cost
  // a 21-label hash per update, which profiled at a fifth of the CPU of a proxied request.
  readonly requestsTotal: CounterFamily<IstioHttpLabel>;
  readonly requestDuration: HistogramFamily<IstioHttpLabel>;
  readonly requestBytes: HistogramFamily<IstioHttpLabel>;
  readonly responseBytes: HistogramFamily<IstioHttpLabel>;
  readonly tcpSentBytes: CounterFamily<IstioTcpLabel>;
  readonly tcpReceivedBytes: CounterFamily<IstioTcpLabel>;
  readonly tcpOpened: CounterFamily<IstioTcpLabel>;
  readonly tcpClosed: CounterFamily<IstioTcpLabel>;

  // ───────────── meshlet's own telemetry health ─────────────
  /** Spans dropped because the export queue was full or the collector failed. */
  readonly tracingSpansDropped: Counter;
  /** Spans handed to the exporter. */
  readonly tracingSpansExported: Counter;
  /** Streams/sessions whose label set was folded into "unknown" because the label cache was full. */
  readonly labelOverflow: Counter;

  constructor() {
    const registers = [this.registry];
    const labelNames = ISTIO_HTTP_LABELS as unknown as IstioHttpLabel[];
    const tcpLabels = ISTIO_PEER_LABELS as unknown as IstioTcpLabel[];
    const reg = this.registry;
    this.requestsTotal = new CounterFamily('istio_requests_total', 'Requests processed by the proxy', labelNames, reg);
    this.requestDuration = new HistogramFamily(
      'istio_request_duration_milliseconds',
      'Duration of requests (ms)',
      labelNames,
      [...ISTIO_DURATION_BUCKETS_MS],
      reg,
    );
    this.requestBytes = new HistogramFamily(
      'istio_request_bytes',
      'Size of HTTP request bodies',
      labelNames,
      [...ISTIO_BYTES_BUCKETS],
      reg,
    );
    this.responseBytes = new HistogramFamily(
      'istio_response_bytes',
      'Size of HTTP response bodies',
      labelNames,
      [...ISTIO_BYTES_BUCKETS],
      reg,
    );
    this.tcpSentBytes = new CounterFamily(
      'istio_tcp_sent_bytes_total',
      'Bytes sent during response in case of a TCP connection',
      tcpLabels,
      reg,
    );
    this.tcpReceivedBytes = new CounterFamily(
      'istio_tcp_received_bytes_total',
      'Bytes received during request in case of a TCP connection',
      tcpLabels,
      reg,
    );
    this.tcpOpened = new CounterFamily('istio_tcp_connections_opened_total', 'TCP connections opened', tcpLabels, reg);
    this.tcpClosed = new CounterFamily('istio_tcp_connections_closed_total', 'TCP connections closed', tcpLabels, reg);
    this.tracingSpansDropped = new Counter({
      name: 'meshlet_tracing_spans_dropped_total',
      help: 'Spans dropped: export queue full or the collector unreachable',
      registers,
    });
    this.tracingSpansExported = new Counter({
      name: 'meshlet_tracing_spans_exported_total',
      help: 'Spans exported to the collector',
      registers,
    });
    this.labelOverflow = new Counter({
      name: 'meshlet_metric_label_overflow_total',
      help: 'Streams and sessions reported with service/peer "unknown" because the label cache was full',
      registers,
    });
  }

  /** A gauge whose value is computed at scrape time. */
  gauge<L extends string>(
    name: string,
    help: string,
    labelNames: readonly L[],
    collect: (g: Gauge<L>) => void,
  ): Gauge<L> {
    return new Gauge<L>({
      name,
      help,
      labelNames: [...labelNames],
      registers: [this.registry],
      collect(this: Gauge<L>) {
        this.reset();
        collect(this);
      },
    });
  }

  /**
   * A counter whose value is read at scrape time from a component's own monotonic counter
   * (Envoy-style stats). `reset_counters` is honoured by subtracting a baseline (see stats.ts).
   */
  counter<L extends string>(
    name: string,
    help: string,
    labelNames: readonly L[],
    collect: (c: Counter<L>) => void,
  ): Counter<L> {
    return new Counter<L>({
      name,
      help,
      labelNames: [...labelNames],
      registers: [this.registry],
      collect(this: Counter<L>) {
        this.reset();
        collect(this);
      },
    });
  }

  /** Work to do before each rendering (gathering the Envoy-style stats snapshot). */
  private readonly scrapeHooks: ScrapeHook[] = [];
  /** Renderings in progress, and scrapes waiting for a free one. */
  private activeScrapes = 0;
  private readonly waitingScrapes: (() => void)[] = [];

  onScrape(hook: ScrapeHook): void {
    this.scrapeHooks.push(hook);
  }

  /**
   * Prometheus text exposition of everything, streamed into `sink` chunk by chunk while it is
   * rendered in time slices, so the event loop keeps serving traffic (exposition.ts). Each scrape
   * has its own scope (snapshot), so concurrent scrapes are independent and a scraper that stops
   * reading holds only its own; at most MAX_CONCURRENT_SCRAPES render at once, the rest wait.
   */
  async prometheusStream(sink: ChunkSink): Promise<void> {
    if (this.activeScrapes >= MAX_CONCURRENT_SCRAPES) await new Promise<void>((r) => this.waitingScrapes.push(r));
    else this.activeScrapes++;
    const releases: (() => void)[] = [];
    try {
      const scope: ScrapeScope = new Map();
      for (const hook of this.scrapeHooks) {
        const release = await hook(scope);
        if (release !== undefined) releases.push(release);
      }
      await renderExposition(this.registry, sink, scope);
    } finally {
      for (const r of releases) r();
      const next = this.waitingScrapes.shift();
      if (next !== undefined) next();
      else this.activeScrapes--;
    }
  }

  /** The exposition as one string (tests, small registries). */
  async prometheus(): Promise<string> {
    const parts: Buffer[] = [];
    await this.prometheusStream((c) => {
      parts.push(c);
    });
    return Buffer.concat(parts).toString('utf8');
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
