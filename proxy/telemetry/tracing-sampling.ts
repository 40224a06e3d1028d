/**
 * Envoy's sampling decision for a request that carries none from its caller: none without an
 * x-request-id starting with 8 hex digits (Envoy's "not traceable"), else force-traced when
 * it has `x-client-trace-id` and client_sampling lets it through, or when an internal caller sent
 * `x-envoy-force-trace` (with an x-request-id), else random_sampling; then
 * overall_sampling caps whatever was decided (Envoy's tracing.client_enabled,
 * tracing.random_sampling and tracing.global_enabled). A caller's decision (a sampled flag in
 * traceparent or B3) is followed as it is, as Envoy's OpenTelemetry and Zipkin tracers do.
 */
import { type Context, createContextKey, isSpanContextValid, TraceFlags, trace } from '@opentelemetry/api';
import type { Sampler, SamplingResult } from '@opentelemetry/sdk-trace-base';
import type { HeaderList } from '../http/codec';
import { getHeader } from '../http/headers';

/** Percentages 0–100 from the HCM tracing block. */
export interface SamplingPercents {
  readonly client: number;
  readonly random: number;
  readonly overall: number;
}

/** A route's own tracing percentages; each one set replaces the HCM's. */
export interface RouteSampling {
  readonly clientSamplingPercent?: number;
  readonly randomSamplingPercent?: number;
  readonly overallSamplingPercent?: number;
}

function roll(percent: number): boolean {
  return percent >= 100 || (percent > 0 && Math.random() * 100 < percent);
}

/** Envoy's UUID request-id extension reads an integer from the first 8 characters, as hex. */
function traceableRequestId(id: string): boolean {
  if (id.length < 8) return false;
  for (let i = 0; i < 8; i++) {
    const c = id.charCodeAt(i);
    if (!((c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x66) || (c >= 0x41 && c <= 0x46))) return false;
  }
  return true;
}

/**
 * Our decision for a request whose caller did not decide; false without an x-request-id (Envoy
 * traces no such request). `x-envoy-force-trace` forces it as Envoy does: it is only still there
 * on an internal request (the connection manager removes it from external ones, edge-headers.ts).
 */
export function decideSampling(
  h: HeaderList,
  p: SamplingPercents,
  route: RouteSampling | undefined,
  requestId: string,
): boolean {
  // Envoy: a request without an x-request-id (generate_request_id false and none sent), or whose
  // x-request-id does not start with 8 hex digits (the UUID extension reads no integer from it), is
  // not traceable: no sampling applies (a caller's sampled traceparent / B3 is still followed).
  if (!traceableRequestId(requestId)) return false;
  const client = route?.clientSamplingPercent ?? p.client;
  const random = route?.randomSamplingPercent ?? p.random;
  const overall = route?.overallSamplingPercent ?? p.overall;
  const forced =
    (getHeader(h, 'x-client-trace-id') !== undefined && roll(client)) ||
    getHeader(h, 'x-envoy-force-trace') !== undefined;
  return (forced || roll(random)) && roll(overall);
}

/** Set in the span's start context to carry decideSampling()'s answer into the sampler. */
export const SAMPLED_KEY = createContextKey('meshlet.sampled');

/** The SDK's SamplingDecision values (the SDK module loads lazily). */
export interface Decisions {
  readonly NOT_RECORD: number;
  readonly RECORD_AND_SAMPLED: number;
}

/** The caller's decision when there is one, else ours (SAMPLED_KEY in the start context). */
export class MeshletSampler implements Sampler {
  constructor(private readonly d: Decisions) {}
  shouldSample(ctx: Context): SamplingResult {
    const parent = trace.getSpanContext(ctx);
    const on =
      parent !== undefined && isSpanContextValid(parent)
        ? (parent.traceFlags & TraceFlags.SAMPLED) !== 0
        : ctx.getValue(SAMPLED_KEY) === true;
    return { decision: (on ? this.d.RECORD_AND_SAMPLED : this.d.NOT_RECORD) as SamplingResult['decision'] };
  }
  toString(): string {
    return 'MeshletSampler';
  }
}
