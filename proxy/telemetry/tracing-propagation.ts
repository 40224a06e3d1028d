/**
 * Reading the caller's trace context: W3C traceparent/tracestate and B3 (single `b3` header or
 * the x-b3-* headers). Writing it upstream is MeshletSpan.inject (tracing.ts) and zipkin.ts.
 */
import { isSpanContextValid, type SpanContext, TraceFlags } from '@opentelemetry/api';
import type { HeaderList } from '../http/codec';
import { getHeader } from '../http/headers';

const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;

/** W3C traceparent → span context (version 00 rules; future versions read leniently). */
export function parseTraceparent(v: string | undefined, tracestate?: string): SpanContext | undefined {
  if (v === undefined) return undefined;
  const m = TRACEPARENT.exec(v.trim().toLowerCase());
  if (!m || m[1] === 'ff' || (m[1] === '00' && m[5] !== undefined)) return undefined;
  const sc: SpanContext = {
    traceId: m[2]!,
    spanId: m[3]!,
    traceFlags: Number.parseInt(m[4]!, 16) & TraceFlags.SAMPLED,
    isRemote: true,
    ...(tracestate ? { traceState: new StaticTraceState(tracestate) } : {}),
  };
  return isSpanContextValid(sc) ? sc : undefined;
}

/** B3 (single `b3` header or the x-b3-* headers) → span context. 64-bit trace ids are padded. */
export function parseB3(h: HeaderList, decide: () => boolean): SpanContext | undefined {
  let traceId: string | undefined;
  let spanId: string | undefined;
  let sampled: string | undefined;
  const single = getHeader(h, 'b3');
  if (single !== undefined) {
    const parts = single.trim().toLowerCase().split('-');
    if (parts.length === 1) return undefined; // sampling-only form ("0", "1", "d")
    [traceId, spanId, sampled] = parts;
  } else {
    traceId = getHeader(h, 'x-b3-traceid')?.trim().toLowerCase();
    spanId = getHeader(h, 'x-b3-spanid')?.trim().toLowerCase();
    const s = getHeader(h, 'x-b3-sampled')?.trim().toLowerCase();
    sampled = getHeader(h, 'x-b3-flags') === '1' ? 'd' : s === 'true' ? '1' : s === 'false' ? '0' : s;
  }
  if (!traceId || !spanId || !/^[0-9a-f]{16}([0-9a-f]{16})?$/.test(traceId) || !/^[0-9a-f]{16}$/.test(spanId))
    return undefined;
  // No sampling decision from the caller: ours (decideSampling) applies.
  const on = sampled === undefined ? decide() : sampled === '1' || sampled === 'd';
  const sc: SpanContext = {
    traceId: traceId.padStart(32, '0'),
    spanId,
    traceFlags: on ? TraceFlags.SAMPLED : TraceFlags.NONE,
    isRemote: true,
  };
  return isSpanContextValid(sc) ? sc : undefined;
}

/** A tracestate passed through as received (meshlet adds no entries of its own). */
class StaticTraceState {
  constructor(private readonly raw: string) {}
  set(): StaticTraceState {
    return this;
  }
  unset(): StaticTraceState {
    return this;
  }
  get(): string | undefined {
    return undefined;
  }
  serialize(): string {
    return this.raw;
  }
}
