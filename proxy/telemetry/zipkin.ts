/**
 * The Zipkin parts of tracing (Envoy's `envoy.tracers.zipkin`): B3 injection (x-b3-* headers, as
 * Envoy's Zipkin tracer writes them, through @opentelemetry/propagator-b3), 64-bit trace ids
 * unless `trace_id_128bit`, `shared_span_context` (a server span reuses the span id its caller
 * sent), and export as Zipkin v2 JSON through @opentelemetry/exporter-zipkin to
 * `collector_endpoint` on the collector cluster. tracing.ts builds the spans with the same
 * OpenTelemetry SDK pipeline as for OTLP and calls these helpers; nothing here is loaded unless a
 * Zipkin provider traces.
 *
 * Zipkin ids are hex: a 64-bit trace id is kept by the SDK as 32 hex digits with a zero upper
 * half (what B3 extraction does), and written back as 16 digits on the wire and in the collector's
 * JSON, so the ids a client sent are the ids the collector gets.
 */
import { ROOT_CONTEXT, type SpanContext, trace } from '@opentelemetry/api';
import type { ExportResult } from '@opentelemetry/core';
import type { IdGenerator, ReadableSpan, SpanExporter } from '@opentelemetry/sdk-trace-base';
import type { HeaderList } from '../http/codec';
import { setHeader } from '../http/headers';

type B3Module = typeof import('@opentelemetry/propagator-b3');
let b3: B3Module | undefined;
let multi: InstanceType<B3Module['B3Propagator']> | undefined;

const ZERO_HIGH = '0000000000000000';

/** A 32-digit trace id as Zipkin writes it: 16 digits when 128-bit ids are off and the upper half is zero. */
export function zipkinTraceId(traceId: string, traceId128bit: boolean): string {
  return !traceId128bit && traceId.length === 32 && traceId.startsWith(ZERO_HIGH) ? traceId.slice(16) : traceId;
}

function randomHex(bytes: number): string {
  let s = '';
  for (let i = 0; i < bytes; i++) s += Math.floor(Math.random() * 256).toString(16).padStart(2, '0');
  // An all-zero id is invalid in both B3 and OpenTelemetry.
  return /^0+$/.test(s) ? `${s.slice(0, -1)}1` : s;
}

/** New trace ids of 64 bits (Envoy's default) or 128 bits (`trace_id_128bit`). */
export function zipkinIdGenerator(traceId128bit: boolean): IdGenerator {
  return {
    generateTraceId: () => (traceId128bit ? randomHex(16) : ZERO_HIGH + randomHex(8)),
    generateSpanId: () => randomHex(8),
  };
}

/** What a server span shares with its caller under shared_span_context. */
interface Shared {
  readonly spanId: string;
  readonly parentSpanId: string | undefined;
}
const sharedIds = new WeakMap<object, Shared>();

/**
 * shared_span_context: the span (a SERVER span with a B3 caller) is reported, and propagated,
 * with the caller's span id and the caller's parent (x-b3-parentspanid).
 */
export function shareSpanContext(span: object, callerSpanId: string, callerParentSpanId: string | undefined): void {
  sharedIds.set(span, { spanId: callerSpanId, parentSpanId: callerParentSpanId });
}

/**
 * Write B3 headers for the upstream request: x-b3-traceid, x-b3-spanid, x-b3-sampled (by the
 * B3 propagator) and x-b3-parentspanid (Envoy's Zipkin tracer sends it; the propagator does not).
 */
export function injectB3(h: HeaderList, span: object, sc: SpanContext, parentSpanId: string | undefined, traceId128bit: boolean): void {
  b3 ??= require('@opentelemetry/propagator-b3') as B3Module;
  multi ??= new b3.B3Propagator({ injectEncoding: b3.B3InjectEncoding.MULTI_HEADER });
  const shared = sharedIds.get(span);
  const ctx = trace.setSpanContext(ROOT_CONTEXT, shared ? { ...sc, spanId: shared.spanId } : sc);
  multi.inject(ctx, h, {
    set: (carrier: HeaderList, key: string, value: string) =>
      setHeader(carrier, key, key === 'x-b3-traceid' ? zipkinTraceId(value, traceId128bit) : value),
  });
  const parent = shared ? shared.parentSpanId : parentSpanId;
  if (parent !== undefined) setHeader(h, 'x-b3-parentspanid', parent);
}

/** The span as the collector should see it: Zipkin-width trace id, shared id and parent. */
function zipkinView(s: ReadableSpan, traceId128bit: boolean): ReadableSpan {
  const sc = s.spanContext();
  const shared = sharedIds.get(s);
  const traceId = zipkinTraceId(sc.traceId, traceId128bit);
  const spanContext: SpanContext = { ...sc, traceId, ...(shared ? { spanId: shared.spanId } : {}) };
  let parentSpanContext = s.parentSpanContext;
  if (shared) {
    parentSpanContext = shared.parentSpanId ? { ...sc, traceId, spanId: shared.parentSpanId } : undefined;
  } else if (parentSpanContext) parentSpanContext = { ...parentSpanContext, traceId };
  return {
    name: s.name,
    kind: s.kind,
    spanContext: () => spanContext,
    parentSpanContext,
    startTime: s.startTime,
    endTime: s.endTime,
    status: s.status,
    attributes: s.attributes,
    links: s.links,
    events: s.events,
    duration: s.duration,
    ended: s.ended,
    resource: s.resource,
    instrumentationScope: s.instrumentationScope,
    droppedAttributesCount: s.droppedAttributesCount,
    droppedEventsCount: s.droppedEventsCount,
    droppedLinksCount: s.droppedLinksCount,
  };
}

export interface ZipkinExportOptions {
  /** http://host:port/collector_endpoint (the collector cluster's endpoint). */
  readonly url: string;
  readonly serviceName: string;
  /** collector_hostname: the Host header of the export requests (default: the endpoint). */
  readonly hostname?: string;
  readonly traceId128bit: boolean;
}

/** Zipkin v2 JSON export (HTTP_JSON) through the maintained OpenTelemetry Zipkin exporter. */
export function zipkinExporter(o: ZipkinExportOptions): SpanExporter {
  const { ZipkinExporter } = require('@opentelemetry/exporter-zipkin') as typeof import('@opentelemetry/exporter-zipkin');
  const inner = new ZipkinExporter({
    url: o.url,
    serviceName: o.serviceName,
    ...(o.hostname ? { headers: { host: o.hostname } } : {}),
  });
  return {
    export(spans: ReadableSpan[], done: (r: ExportResult) => void): void {
      inner.export(
        spans.map((s) => zipkinView(s, o.traceId128bit)),
        done,
      );
    },
    shutdown: () => inner.shutdown(),
    forceFlush: () => inner.forceFlush(),
  };
}
