/**
 * The Prometheus text exposition of a registry, rendered without holding the event loop: families
 * that can render themselves in steps (the Envoy-style stats, thousands of series per cluster
 * family under Istio) are driven in time slices of SLICE_MS with a setImmediate between slices,
 * so proxied requests keep flowing during a scrape; the rest go through prom-client as before.
 * The output is a list of chunks (about CHUNK_CHARS each) that the HTTP layer writes with
 * backpressure instead of one string the size of the whole body.
 *
 * Byte layout is prom-client's: `# HELP`, `# TYPE`, series lines, families separated by a blank
 * line, a final newline.
 */
import type { Registry } from 'prom-client';

/** Longest stretch of rendering work before giving the event loop a turn. */
export const SLICE_MS = 2;
/** Target size of one body chunk (characters). */
const CHUNK_CHARS = 64 * 1024;

/** A family that writes its own exposition text, a step at a time (yield = a good place to pause). */
export interface SteppedFamily {
  readonly name: string;
  /** Appends `# HELP`, `# TYPE` and series lines (each ending in "\n" except the last) to `out`. */
  render(out: ChunkWriter): Iterator<unknown>;
}

export function isSteppedFamily(m: unknown): m is SteppedFamily {
  return typeof (m as { render?: unknown }).render === 'function';
}

/** Collects text into chunks of about CHUNK_CHARS. */
export class ChunkWriter {
  readonly chunks: string[] = [];
  private cur = '';

  write(s: string): void {
    this.cur += s;
    if (this.cur.length >= CHUNK_CHARS) {
      this.chunks.push(this.cur);
      this.cur = '';
    }
  }

  finish(): string[] {
    if (this.cur.length > 0) this.chunks.push(this.cur);
    this.cur = '';
    return this.chunks;
  }
}

/** Gives the event loop a turn (I/O callbacks run before setImmediate callbacks). */
export function yieldToLoop(): Promise<void> {
  return new Promise((r) => setImmediate(r));
}

/** Drive `it` to completion, pausing for the event loop whenever a slice is used up. */
export async function drive(it: Iterator<unknown>, sliceMs = SLICE_MS): Promise<void> {
  let start = performance.now();
  for (;;) {
    if (it.next().done === true) return;
    if (performance.now() - start >= sliceMs) {
      await yieldToLoop();
      start = performance.now();
    }
  }
}

/** The whole registry as exposition text chunks, in registration order. */
export async function renderExposition(registry: Registry): Promise<string[]> {
  const out = new ChunkWriter();
  let first = true;
  for (const metric of registry.getMetricsAsArray()) {
    if (!first) out.write('\n\n');
    first = false;
    if (isSteppedFamily(metric)) await drive(metric.render(out));
    else out.write(await registry.getSingleMetricAsString((metric as { name: string }).name));
  }
  out.write('\n');
  return out.finish();
}

/** prom-client's number format (getValueAsString). */
export function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'Nan';
  if (!Number.isFinite(v)) return v > 0 ? '+Inf' : '-Inf';
  return `${v}`;
}

/** prom-client's label value escaping. */
export function escapeLabelValue(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

/** prom-client's HELP escaping. */
export function escapeHelp(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}
