/**
 * The Prometheus text exposition of a registry, rendered and sent without holding the event loop:
 * families that can render themselves in steps (the Envoy-style stats, thousands of series per
 * cluster family under Istio) are driven in time slices of SLICE_MS with a setImmediate between
 * slices, so proxied requests keep flowing during a scrape; the rest go through prom-client as
 * before. Text is encoded straight into fixed-size Buffers (CHUNK_BYTES) and each full Buffer is
 * handed to the sink — the HTTP response, with backpressure — while rendering goes on, so a
 * scrape holds one or two chunks instead of the whole body.
 *
 * Why Buffers and streaming (issue 18.2, profiled in bench/SCRAPE.md): the earlier version built
 * each chunk with `+=` (a rope of thousands of pieces) and kept all chunks until the end. A
 * 10,000-cluster body (23 MB) then lived long enough to reach V8's old generation, and every
 * `res.write` flattened a deep rope in `Buffer.byteLength`: the stalls left (0.2–0.5 s each) were
 * those full garbage collections and flattenings, not the rendering.
 *
 * Sending is sliced as well: handing a chunk to the socket is a synchronous `writev` that copies
 * it into the kernel (on loopback the receiver's side of TCP runs in the same call), ~30% of a
 * warm scrape's main-thread time at 10,000 clusters. The chunks one slice of cached segments
 * produces can be megabytes, so they are sent under the same clock (a turn for the loop when the
 * slice is used up, also between chunks) and rendering pauses once MAX_READY_BYTES are waiting.
 *
 * Byte layout is prom-client's: `# HELP`, `# TYPE`, series lines, families separated by a blank
 * line, a final newline.
 */
import type { Registry } from 'prom-client';

/** Longest stretch of rendering work before giving the event loop a turn. */
export const SLICE_MS = 1;
/** Size of one body chunk (bytes). */
export const CHUNK_BYTES = 64 * 1024;
/** Rendered bytes waiting for the sink before rendering pauses to send them (cached segments are cheap to emit, costly to send). */
export const MAX_READY_BYTES = 256 * 1024;
/** A flushed chunk's unused tail is written into next if at least this big. */
const MIN_TAIL_BYTES = 4 * 1024;

/**
 * What one scrape's hooks gathered for its families (e.g. the Envoy stats snapshot), keyed by
 * an object private to the module that owns the entry. Per scrape, so concurrent scrapes never
 * read each other's half-written state.
 */
export type ScrapeScope = Map<object, unknown>;

/** A family that writes its own exposition text, a step at a time (yield = a good place to pause). */
export interface SteppedFamily {
  readonly name: string;
  /** Appends `# HELP`, `# TYPE` and series lines (each ending in "\n" except the last) to `out`. */
  render(out: ChunkWriter, scope: ScrapeScope): Iterator<unknown>;
}

export function isSteppedFamily(m: unknown): m is SteppedFamily {
  return typeof (m as { render?: unknown }).render === 'function';
}

/**
 * Where rendered chunks go, in order. A returned promise is waited for before more is rendered
 * (backpressure); a rejection stops the rendering (e.g. the scraper went away).
 */
export type ChunkSink = (chunk: Buffer) => void | Promise<void>;

/** Encodes text (UTF-8) into CHUNK_BYTES Buffers; full ones wait in `ready` for the sink. */
export class ChunkWriter {
  private buf = Buffer.allocUnsafe(CHUNK_BYTES);
  private pos = 0;
  private ready: Buffer[] = [];
  /** Bytes in `ready`. */
  readyBytes = 0;

  write(s: string): void {
    // A UTF-16 code unit is at most 3 UTF-8 bytes: if it may not fit, start a new chunk.
    if (this.pos + s.length * 3 > this.buf.length) {
      this.flush();
      if (s.length * 3 > CHUNK_BYTES) {
        this.push(Buffer.from(s, 'utf8'));
        return;
      }
      if (s.length * 3 > this.buf.length) this.buf = Buffer.allocUnsafe(CHUNK_BYTES);
    }
    this.pos += this.buf.write(s, this.pos, 'utf8');
  }

  /** Appends a ready-made Buffer (a cached segment), after what was written before it; it is sent as is. */
  writeBuffer(b: Buffer): void {
    this.flush();
    this.push(b);
  }

  /** Full chunks so far (the caller sends them); the one being filled stays. */
  take(): Buffer[] {
    const out = this.ready;
    this.ready = [];
    this.readyBytes = 0;
    return out;
  }

  /** Moves the chunk being filled (if any) to the ready list. */
  flush(): void {
    if (this.pos === 0) return;
    this.push(this.buf.subarray(0, this.pos));
    // The rest of the chunk is reused for what follows (a family header between two cached
    // segments is a few bytes: not worth a fresh 64 KiB each).
    this.buf = this.buf.length - this.pos >= MIN_TAIL_BYTES ? this.buf.subarray(this.pos) : Buffer.allocUnsafe(CHUNK_BYTES);
    this.pos = 0;
  }

  private push(b: Buffer): void {
    this.ready.push(b);
    this.readyBytes += b.length;
  }
}

/** Gives the event loop a turn (I/O callbacks run before setImmediate callbacks). */
export function yieldToLoop(): Promise<void> {
  return new Promise((r) => setImmediate(r));
}

/**
 * A time budget shared by every step of one job: `due()` says the slice is used up (or `full()`
 * says enough output waits), `pause()` runs `onPause` (send what is ready, under the same clock:
 * it calls `turn()` whenever `spent()`), gives the loop a turn and starts a new slice. One clock
 * for the whole rendering matters: many small families (1,000 clusters × 24 families of about
 * 1 ms each) must not each get a fresh slice and run back to back.
 */
export class Slicer {
  private start = performance.now();

  constructor(
    private readonly onPause?: (slicer: Slicer) => Promise<void>,
    private readonly full?: () => boolean,
    private readonly sliceMs = SLICE_MS,
  ) {}

  /** The slice's time is used up. */
  spent(): boolean {
    return performance.now() - this.start >= this.sliceMs;
  }

  due(): boolean {
    return this.spent() || (this.full !== undefined && this.full());
  }

  /** Gives the event loop a turn and starts a new slice. */
  async turn(): Promise<void> {
    await yieldToLoop();
    this.start = performance.now();
  }

  async pause(): Promise<void> {
    if (this.onPause !== undefined) await this.onPause(this);
    await this.turn();
  }
}

/** Drive `it` to completion, pausing for the event loop whenever the slice is used up. */
export async function drive(it: Iterator<unknown>, slicer: Slicer = new Slicer()): Promise<void> {
  try {
    for (;;) {
      if (it.next().done === true) return;
      if (slicer.due()) await slicer.pause();
    }
  } catch (err) {
    // Let the generator's finally blocks run (a family releases what it holds, e.g. its cache).
    it.return?.();
    throw err;
  }
}

/** Renders the whole registry, in registration order, into `sink` as it goes. */
export async function renderExposition(registry: Registry, sink: ChunkSink, scope: ScrapeScope = new Map()): Promise<void> {
  const out = new ChunkWriter();
  // A write that resolves from a 'drain' event continues in the poll phase: the slice that
  // started before is long spent there, so the next chunk waits for a turn of its own.
  const send = async (slicer: Slicer): Promise<void> => {
    for (const c of out.take()) {
      if (slicer.spent()) await slicer.turn();
      await sink(c);
    }
  };
  const slicer = new Slicer(send, () => out.readyBytes >= MAX_READY_BYTES);
  let first = true;
  for (const metric of registry.getMetricsAsArray()) {
    if (!first) out.write('\n\n');
    first = false;
    if (isSteppedFamily(metric)) await drive(metric.render(out, scope), slicer);
    else out.write(await registry.getSingleMetricAsString((metric as { name: string }).name));
    if (slicer.due()) await slicer.pause();
  }
  out.write('\n');
  out.flush();
  await send(slicer);
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
