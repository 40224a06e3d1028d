/**
 * Distributed tracing with OpenTelemetry JS (Envoy's `envoy.tracers.opentelemetry`): a span per
 * HTTP stream on each side (CLIENT on outbound, SERVER on inbound), W3C `traceparent` /
 * `tracestate` propagated upstream and created when absent, B3 (multi and single header)
 * accepted and kept in step, sampling by the HCM's `tracing` client/random/overall sampling unless
 * the caller already decided (tracing-sampling.ts), export over OTLP — gRPC for the provider's grpc_service, HTTP/protobuf for its
 * http_service (the collector's address comes from the named cluster's first endpoint). Zipkin
 * (`envoy.tracers.zipkin`) uses the same pipeline with B3 propagation and the Zipkin exporter
 * (zipkin.ts).
 *
 * Leans towards never hurting traffic: spans go through a bounded queue in front of the SDK's
 * BatchSpanProcessor; a full queue or a failed export drops spans and counts them
 * (meshlet_tracing_spans_dropped_total), it never waits. With tracing off the connection manager
 * does one `undefined` check per stream and nothing else.
 */
import {
  type Context,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  TraceFlags,
  type Tracer,
  trace,
} from '@opentelemetry/api';
import type { ExportResult } from '@opentelemetry/core';
import type {
  BasicTracerProvider,
  ReadableSpan,
  Span as SdkSpan,
  SpanExporter,
  SpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import type { CustomTag, HcmConfig, NodeInfo, TracingConfig } from '../config/types';
import type { HeaderList, RequestHead } from '../http/codec';
import { getHeader, removeHeader, setHeader } from '../http/headers';
import type { HttpTracer, StreamInfo, StreamSpan } from '../http/stream-info';
import { logger } from '../../common/logger';
import { grpcClientAuth } from '../../xds-client/grpc-credentials';
import type { MeshletMetrics } from './metrics';
import { parseB3, parseTraceparent } from './tracing-propagation';
import { decideSampling, MeshletSampler, SAMPLED_KEY, type SamplingPercents } from './tracing-sampling';
import { injectB3, shareSpanContext, zipkinExporter, zipkinIdGenerator } from './zipkin';

const log = logger('tracing');

// The OpenTelemetry SDK, OTLP exporters and semantic conventions (~15 MiB resident with their
// gRPC/protobuf dependencies) load on the first traced HCM, not at start-up: most sidecars never
// configure tracing. @opentelemetry/api stays a static import (it is small, and prom-client loads
// it anyway). Config validation does not need these modules (config/envoy/tracing.ts).
type Sdk = typeof import('@opentelemetry/sdk-trace-base');
type Sem = typeof import('@opentelemetry/semantic-conventions');
let sdk: Sdk;
let sem: Sem;
let exportSuccess: number;
function loadSdk(): void {
  if (sdk !== undefined) return;
  sdk = require('@opentelemetry/sdk-trace-base') as Sdk;
  sem = require('@opentelemetry/semantic-conventions') as Sem;
  exportSuccess = (require('@opentelemetry/core') as typeof import('@opentelemetry/core')).ExportResultCode.SUCCESS;
}

/** Spans waiting for export (queued + in flight) before new ones are dropped. */
export const DEFAULT_MAX_QUEUED_SPANS = 2048;

export interface TracingOptions {
  /** The bootstrap's `tracing.http` provider (an HCM may name its own). */
  readonly bootstrapProvider?: TracingConfig;
  readonly node: NodeInfo;
  readonly metrics: MeshletMetrics;
  /** host:port of a cluster's first endpoint (envoy_grpc collectors). */
  readonly resolveCluster: (name: string) => string | undefined;
  /** How often the batch processor exports (ms); default 1000. */
  readonly scheduledDelayMs?: number;
  readonly maxQueuedSpans?: number;
}

// ─────────────── export with a bounded queue ───────────────

/** Counts exports and failures, and frees queue slots once a batch is done. */
class CountingExporter implements SpanExporter {
  constructor(
    private readonly inner: SpanExporter,
    private readonly onDone: (spans: number, ok: boolean) => void,
  ) {}
  export(spans: ReadableSpan[], done: (r: ExportResult) => void): void {
    const n = spans.length;
    this.inner.export(spans, (r) => {
      this.onDone(n, r.code === exportSuccess);
      if (r.code !== exportSuccess) log.debug({ spans: n, err: r.error?.message }, 'span export failed');
      done(r);
    });
  }
  shutdown(): Promise<void> {
    return this.inner.shutdown();
  }
  forceFlush(): Promise<void> {
    return this.inner.forceFlush?.() ?? Promise.resolve();
  }
}

/** Admits finished spans into the batch processor only while fewer than `max` are pending. */
class QueueGate implements SpanProcessor {
  private pending = 0;
  constructor(
    private readonly next: SpanProcessor,
    private readonly max: number,
    private readonly metrics: MeshletMetrics,
  ) {}
  onStart(span: SdkSpan, ctx: Context): void {
    this.next.onStart(span, ctx);
  }
  onEnd(span: ReadableSpan): void {
    if (this.pending >= this.max) {
      this.metrics.tracingSpansDropped.inc();
      return;
    }
    this.pending++;
    this.next.onEnd(span);
  }
  release(n: number, ok: boolean): void {
    this.pending = Math.max(0, this.pending - n);
    (ok ? this.metrics.tracingSpansExported : this.metrics.tracingSpansDropped).inc(n);
  }
  forceFlush(): Promise<void> {
    return this.next.forceFlush();
  }
  shutdown(): Promise<void> {
    return this.next.shutdown();
  }
}

// ─────────────── spans ───────────────

/** One stream's span. The router calls inject() per upstream attempt; telemetry calls end(). */
class MeshletSpan implements StreamSpan {
  constructor(
    private readonly span: Span,
    private readonly kind: SpanKind,
    private readonly tracestate: string | undefined,
    private readonly b3: 0 | 1 | 2,
    private readonly info: StreamInfo,
    /**
     * Names the span over the route's decorator. Inbound: the caller's x-envoy-decorator-operation;
     * outbound: the upstream's, from its response.
     */
    private operation: string | undefined,
    /** The HCM's metadata custom tags (read at the end, when the upstream host is known). */
    private readonly metadataTags: readonly CustomTag[] | undefined,
    /** Zipkin: B3 headers only, with this span's parent (for x-b3-parentspanid). */
    private readonly zipkin?: { readonly parentSpanId: string | undefined; readonly traceId128bit: boolean },
  ) {}

  get traceId(): string {
    return this.span.spanContext().traceId;
  }

  inject(h: HeaderList): void {
    const sc = this.span.spanContext();
    // Outbound: the route's decorator operation goes upstream to name the server's span there.
    const d = this.kind === SpanKind.CLIENT ? this.info.route?.decorator : undefined;
    if (d !== undefined && d.propagate) setHeader(h, 'x-envoy-decorator-operation', d.operation);
    if (this.zipkin !== undefined) {
      injectB3(h, this.span, sc, this.zipkin.parentSpanId, this.zipkin.traceId128bit);
      return;
    }
    const sampled = sc.traceFlags & TraceFlags.SAMPLED ? '01' : '00';
    setHeader(h, 'traceparent', `00-${sc.traceId}-${sc.spanId}-${sampled}`);
    if (this.tracestate !== undefined) setHeader(h, 'tracestate', this.tracestate);
    if (this.b3 === 1) {
      setHeader(h, 'b3', `${sc.traceId}-${sc.spanId}-${sampled === '01' ? '1' : '0'}`);
    } else if (this.b3 === 2) {
      setHeader(h, 'x-b3-traceid', sc.traceId);
      setHeader(h, 'x-b3-spanid', sc.spanId);
      setHeader(h, 'x-b3-sampled', sampled === '01' ? '1' : '0');
    }
  }

  encodeHeaders(h: HeaderList): void {
    if (this.kind === SpanKind.SERVER) {
      // Inbound (Envoy's ingress): the route's decorator operation goes back to the caller, to name
      // its client span, unless the caller named this span itself.
      const d = this.info.route?.decorator;
      if (d !== undefined && d.propagate && d.operation !== '' && this.operation === undefined)
        setHeader(h, 'x-envoy-decorator-operation', d.operation);
      return;
    }
    // Outbound (egress): the upstream's operation names this span and goes no further.
    const op = getHeader(h, 'x-envoy-decorator-operation');
    if (op === undefined) return;
    removeHeader(h, 'x-envoy-decorator-operation');
    if (op !== '') this.operation = op;
  }

  end(info: StreamInfo): void {
    const s = this.span;
    if (!s.isRecording()) return;
    const op = this.operation ?? info.route?.decorator?.operation;
    if (op !== undefined) s.updateName(op);
    if (this.metadataTags !== undefined) setMetadataTags(s, info, this.metadataTags);
    const routeTags = info.route?.tracing?.customTags;
    if (routeTags !== undefined) setMetadataTags(s, info, routeTags);
    const code = info.responseCode;
    if (code > 0) s.setAttribute(sem.ATTR_HTTP_RESPONSE_STATUS_CODE, code);
    s.setAttribute('response_flags', info.responseFlags());
    if (info.clusterName) s.setAttribute('upstream_cluster', info.clusterName);
    if (info.upstreamHost) {
      s.setAttribute('upstream_address', info.upstreamHost);
      if (this.kind === SpanKind.CLIENT) s.setAttribute(sem.ATTR_NETWORK_PEER_ADDRESS, info.upstreamHost);
    }
    const peer = this.kind === SpanKind.CLIENT ? info.upstreamPeerPrincipal : info.connection.tls?.peerPrincipal;
    if (peer) s.setAttribute('peer.principal', peer);
    s.setAttribute('request_size', info.bytesReceived);
    s.setAttribute('response_size', info.bytesSent);
    if (info.grpc && info.grpcStatus >= 0) s.setAttribute('rpc.grpc.status_code', info.grpcStatus);
    // OTel HTTP conventions: 5xx is an error on both sides, 4xx only on the client side.
    const error = code === 0 || code >= 500 || (this.kind === SpanKind.CLIENT && code >= 400);
    if (error) s.setStatus({ code: SpanStatusCode.ERROR, message: info.responseCodeDetails || undefined });
    s.end(info.startTime + info.durationMs);
  }
}

/** The tracer for one connection manager. */
class HcmTracer implements HttpTracer {
  constructor(
    private readonly tracer: Tracer,
    private readonly kind: SpanKind,
    private readonly sampling: SamplingPercents,
    private readonly nodeId: string,
    private readonly maxPathTagLength: number,
    private readonly customTags: readonly CustomTag[],
    private readonly zipkin?: TracingConfig['zipkin'],
  ) {
    const m = customTags.filter((t) => t.metadata !== undefined);
    this.metadataTags = m.length > 0 ? m : undefined;
  }

  private readonly metadataTags: readonly CustomTag[] | undefined;

  startSpan(head: RequestHead, info: StreamInfo): StreamSpan {
    const h = head.headers;
    const zipkin = this.zipkin;
    // Zipkin propagates B3 only (single or multi headers in, multi headers out), as Envoy's tracer.
    const tracestate = zipkin ? undefined : getHeader(h, 'tracestate');
    let parent = zipkin ? undefined : parseTraceparent(getHeader(h, 'traceparent'), tracestate);
    let b3: 0 | 1 | 2 = 0;
    if (getHeader(h, 'b3') !== undefined) b3 = 1;
    else if (getHeader(h, 'x-b3-traceid') !== undefined) b3 = 2;
    if (parent === undefined && b3 !== 0) parent = parseB3(h, () => decideSampling(h, this.sampling, info.route?.tracing, info.requestId));
    const ctx =
      parent === undefined
        ? ROOT_CONTEXT.setValue(SAMPLED_KEY, decideSampling(h, this.sampling, info.route?.tracing, info.requestId))
        : trace.setSpanContext(ROOT_CONTEXT, parent);
    // Inbound: a decorator operation from the caller names the span and goes no further (Envoy).
    let operation: string | undefined;
    if (this.kind === SpanKind.SERVER) {
      operation = getHeader(h, 'x-envoy-decorator-operation');
      if (operation !== undefined) removeHeader(h, 'x-envoy-decorator-operation');
      if (operation === '') operation = undefined;
    }
    const conn = info.connection;
    const span = this.tracer.startSpan(
      head.method,
      {
        kind: this.kind,
        startTime: info.startTime,
        attributes: {
          [sem.ATTR_HTTP_REQUEST_METHOD]: head.method,
          [sem.ATTR_URL_PATH]: pathOnly(head.path, this.maxPathTagLength),
          [sem.ATTR_SERVER_ADDRESS]: head.authority,
          [sem.ATTR_NETWORK_PROTOCOL_VERSION]: protocolVersion(head.protocol),
          [sem.ATTR_CLIENT_ADDRESS]: conn.remoteAddress,
          [sem.ATTR_USER_AGENT_ORIGINAL]: info.userAgent || undefined,
          'guid:x-request-id': info.requestId || undefined,
          node_id: this.nodeId,
          component: 'proxy',
        },
      },
      ctx,
    );
    setCustomTags(span, h, this.customTags);
    // The route's tags come after the HCM's: a tag both name takes the route's value.
    const routeTags = info.route?.tracing?.customTags;
    if (routeTags !== undefined) setCustomTags(span, h, routeTags);
    if (zipkin) {
      if (zipkin.sharedSpanContext && parent !== undefined && this.kind === SpanKind.SERVER) {
        shareSpanContext(span, parent.spanId, b3 === 2 ? getHeader(h, 'x-b3-parentspanid')?.trim().toLowerCase() : undefined);
      }
      return new MeshletSpan(span, this.kind, undefined, b3, info, operation, this.metadataTags, { parentSpanId: parent?.spanId, traceId128bit: zipkin.traceId128bit });
    }
    return new MeshletSpan(span, this.kind, parent?.traceState ? tracestate : undefined, b3, info, operation, this.metadataTags);
  }
}

function setCustomTags(span: Span, h: HeaderList, tags: readonly CustomTag[]): void {
  for (let i = 0; i < tags.length; i++) {
    const t = tags[i]!;
    if (t.metadata !== undefined) continue; // at the end (setMetadataTags)
    const v = t.header === undefined ? t.value : (getHeader(h, t.header) ?? t.value);
    if (v !== '') span.setAttribute(t.tag, v);
  }
}

/** Metadata custom tags: the value at the path (strings as they are, others as JSON), else the default. */
function setMetadataTags(span: Span, info: StreamInfo, tags: readonly CustomTag[]): void {
  for (let i = 0; i < tags.length; i++) {
    const t = tags[i]!;
    const m = t.metadata;
    if (m === undefined) continue;
    let v: unknown = m.kind === 'host' ? info.upstreamHostMetadata?.[m.namespace] : info.dynamicMetadataOf(m.namespace);
    for (let j = 0; j < m.path.length && v !== undefined && v !== null; j++)
      v = typeof v === 'object' ? (v as Record<string, unknown>)[m.path[j]!] : undefined;
    const s = v === undefined || v === null ? t.value : typeof v === 'string' ? v : JSON.stringify(v);
    if (s !== '') span.setAttribute(t.tag, s);
  }
}

/** The path without its query, cut to max_path_tag_length (0 = no limit). */
function pathOnly(p: string, max: number): string {
  const q = p.indexOf('?');
  const path = q < 0 ? p : p.slice(0, q);
  return max > 0 && path.length > max ? path.slice(0, max) : path;
}

function protocolVersion(p: string): string {
  return p === 'HTTP/2' ? '2' : p === 'HTTP/1.0' ? '1.0' : p === 'HTTP/3' ? '3' : '1.1';
}

interface Pipeline {
  readonly processor: SpanProcessor;
  /** By Zipkin trace id width (it picks the id generator). */
  readonly providers: Map<string, BasicTracerProvider>;
}

/** Tracing for one MeshletServer: pipelines per collector, tracers per HCM. */
export class TracingService {
  private readonly pipelines = new Map<string, Pipeline>();
  private readonly warned = new Set<string>();

  constructor(private readonly opts: TracingOptions) {}

  /** The tracer for an HCM, or undefined when it does not trace (the common, free case). */
  forHcm(hcm: HcmConfig, reporter: 'source' | 'destination'): HttpTracer | undefined {
    const t = hcm.tracing;
    if (!t) return undefined;
    const provider = t.provider ?? this.opts.bootstrapProvider;
    if (!provider || provider.provider === 'none') return undefined;
    const endpoint = this.endpointOf(provider);
    if (!endpoint) return undefined;
    const tp = this.providerFor(endpoint, provider);
    const tracer = tp.getTracer('meshlet');
    return new HcmTracer(
      tracer,
      reporter === 'source' ? SpanKind.CLIENT : SpanKind.SERVER,
      { client: t.clientSamplingPercent, random: t.randomSamplingPercent, overall: t.overallSamplingPercent },
      this.opts.node.id,
      t.maxPathTagLength,
      t.customTags ?? [],
      provider.zipkin,
    );
  }

  private warnOnce(key: string, msg: string): void {
    if (this.warned.has(key)) return;
    this.warned.add(key);
    log.warn(msg);
  }

  /** The export URL for a provider (http://host:port for gRPC), or undefined (warned once). */
  private endpointOf(p: TracingConfig): { kind: 'grpc' | 'http' | 'zipkin'; url: string } | undefined {
    if (p.provider !== 'opentelemetry' && p.provider !== 'zipkin') {
      this.warnOnce(
        `provider:${p.provider}`,
        `tracing provider ${p.provider} is not supported by meshlet; requests are not traced`,
      );
      return undefined;
    }
    const resolve = (cluster: string): string | undefined => {
      const hp = this.opts.resolveCluster(cluster);
      if (!hp)
        this.warnOnce(
          `cluster:${cluster}`,
          `tracing collector cluster ${cluster} has no endpoint; requests are not traced`,
        );
      return hp;
    };
    const g = p.grpcService;
    if (g) {
      if (g.kind === 'google_grpc')
        return { kind: 'grpc', url: `${g.ssl ? 'https' : 'http'}://${g.targetUri.replace(/^(dns:\/\/\/|ipv4:|ipv6:)/, '')}` };
      const hp = resolve(g.clusterName);
      return hp ? { kind: 'grpc', url: `http://${hp}` } : undefined;
    }
    const h = p.httpService;
    if (p.provider === 'zipkin' && h) {
      const zhp = resolve(h.clusterName);
      return zhp ? { kind: 'zipkin', url: `http://${zhp}${h.path}` } : undefined;
    }
    if (!h) {
      this.warnOnce(
        'no-service',
        'OpenTelemetry tracing provider has neither grpc_service nor http_service; requests are not traced',
      );
      return undefined;
    }
    const hp = resolve(h.clusterName);
    return hp ? { kind: 'http', url: `http://${hp}${h.path}` } : undefined;
  }

  private providerFor(
    endpoint: { kind: 'grpc' | 'http' | 'zipkin'; url: string },
    cfg: TracingConfig,
  ): BasicTracerProvider {
    loadSdk();
    let pl = this.pipelines.get(endpoint.url);
    if (!pl) {
      const timeoutMillis =
        (endpoint.kind === 'grpc' ? cfg.grpcService?.timeoutMs : cfg.httpService?.timeoutMs) || 10_000;
      // initial_metadata and call credentials (TLS channel composed with them) go with each export.
      const auth: Partial<ReturnType<typeof grpcClientAuth>> =
        cfg.grpcService && endpoint.kind === 'grpc' ? grpcClientAuth(require('@grpc/grpc-js') as typeof import('@grpc/grpc-js'), cfg.grpcService) : {};
      const serviceName = cfg.serviceName || this.opts.node.cluster || 'meshlet';
      const z = cfg.zipkin;
      const exporter =
        endpoint.kind === 'zipkin'
          ? zipkinExporter({
              url: endpoint.url,
              serviceName,
              traceId128bit: z?.traceId128bit === true,
              ...(z?.collectorHostname ? { hostname: z.collectorHostname } : {}),
            })
          : endpoint.kind === 'grpc'
          ? new (require('@opentelemetry/exporter-trace-otlp-grpc') as typeof import('@opentelemetry/exporter-trace-otlp-grpc')).OTLPTraceExporter({
              url: endpoint.url,
              timeoutMillis,
              ...(auth.credentials ? { credentials: auth.credentials } : {}),
              ...(auth.metadata ? { metadata: auth.metadata } : {}),
            })
          : new (require('@opentelemetry/exporter-trace-otlp-proto') as typeof import('@opentelemetry/exporter-trace-otlp-proto')).OTLPTraceExporter({ url: endpoint.url, timeoutMillis });
      const max = this.opts.maxQueuedSpans ?? DEFAULT_MAX_QUEUED_SPANS;
      // The exporter reports back to the gate that sits in front of the batch processor using it.
      const ref: { gate?: QueueGate } = {};
      const counting = new CountingExporter(exporter, (n, ok) => ref.gate?.release(n, ok));
      const batch = new sdk.BatchSpanProcessor(counting, {
        // The gate keeps the batch queue below its own limit, so the SDK never drops silently.
        maxQueueSize: max + 1,
        maxExportBatchSize: 512,
        scheduledDelayMillis: this.opts.scheduledDelayMs ?? 1000,
        exportTimeoutMillis: timeoutMillis,
      });
      const gate = new QueueGate(batch, max, this.opts.metrics);
      ref.gate = gate;
      pl = { processor: gate, providers: new Map() };
      this.pipelines.set(endpoint.url, pl);
      log.info({ collector: endpoint.url, transport: endpoint.kind }, endpoint.kind === 'zipkin' ? 'tracing: exporting spans as Zipkin v2 JSON' : 'tracing: exporting spans over OTLP');
    }
    const key = cfg.zipkin?.traceId128bit ? '128' : '';
    let tp = pl.providers.get(key);
    if (!tp) {
      tp = new sdk.BasicTracerProvider({
        resource: (require('@opentelemetry/resources') as typeof import('@opentelemetry/resources')).resourceFromAttributes({
          [sem.ATTR_SERVICE_NAME]: cfg.serviceName || this.opts.node.cluster || 'meshlet',
          'service.instance.id': this.opts.node.id,
        }),
        sampler: new MeshletSampler(sdk.SamplingDecision),
        spanProcessors: [pl.processor],
        ...(endpoint.kind === 'zipkin' ? { idGenerator: zipkinIdGenerator(cfg.zipkin?.traceId128bit === true) } : {}),
      });
      pl.providers.set(key, tp);
    }
    return tp;
  }

  /** Export everything queued now (tests, shutdown). */
  async flush(): Promise<void> {
    await Promise.all([...this.pipelines.values()].map((p) => p.processor.forceFlush().catch(() => undefined)));
  }

  /** Flush (bounded by the export timeout) and stop the exporters. */
  async close(): Promise<void> {
    const all = [...this.pipelines.values()];
    this.pipelines.clear();
    await Promise.all(all.map((p) => p.processor.shutdown().catch(() => undefined)));
  }
}
