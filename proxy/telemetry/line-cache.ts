/**
 * Rendered series lines of one Prometheus family, kept from scrape to scrape in segments of
 * SEGMENT_LINES lines, each an exact-size Buffer: a segment whose label sets and values are the
 * same as at the last scrape is sent as the Buffer it was (no string built, nothing allocated);
 * only segments with a changed value (or label set, or line count) are rendered again.
 *
 * Why (issue 18.2, bench/SCRAPE.md): at 10,000 clusters a scrape wrote ~240,000 short-lived line
 * strings (23 MB); the young-generation GCs they caused were the 5–30 ms stalls left while
 * scraping. Most per-cluster counters of a large mesh do not move between two scrapes (most of
 * those clusters see no traffic), so a warm scrape now renders only what changed.
 *
 * Cost: the family's body is kept off the V8 heap (Buffers), about the size of its text (~1 KB
 * per cluster over all cluster families), plus one label reference and one number per line.
 *
 * Invalidation is by comparison, not by trusting a generation counter: a segment is reused only
 * if every line's label string and value are === to last time (value changes, resets, clusters
 * added, removed or renamed all show up there).
 */
import type { ChunkWriter } from './exposition';
import { formatValue } from './exposition';

/** Lines per cached segment (a segment is also the unit re-rendered when one of its lines changes). */
export const SEGMENT_LINES = 128;

export class LineCache {
  private labels: string[] = [];
  /** Values by line (a typed array: no boxed numbers for the young-generation GC to copy). */
  private values = new Float64Array(SEGMENT_LINES);
  private segments: (Buffer | undefined)[] = [];
  private segmentLines: number[] = [];
  /** Lines emitted so far by the rendering in progress, and where its open segment starts. */
  private n = 0;
  private segStart = 0;
  private dirty = false;
  private out: ChunkWriter | undefined;
  /** Segments rendered again / reused by the last rendering (tests and benches read these). */
  rendered = 0;
  reused = 0;

  constructor(private readonly name: string) {}

  /** True while a rendering uses the cache (a concurrent scrape must render without it). */
  get busy(): boolean {
    return this.out !== undefined;
  }

  begin(out: ChunkWriter): void {
    this.out = out;
    this.n = 0;
    this.segStart = 0;
    this.dirty = false;
    this.rendered = 0;
    this.reused = 0;
  }

  /** One series line, in exposition order. */
  emit(labels: string, value: number): void {
    const i = this.n++;
    if (i >= this.labels.length) {
      this.labels.push(labels);
      if (i >= this.values.length) {
        const grown = new Float64Array(this.values.length * 2);
        grown.set(this.values);
        this.values = grown;
      }
      this.values[i] = value;
      this.dirty = true;
    } else if (this.labels[i] !== labels || this.values[i] !== value) {
      this.labels[i] = labels;
      this.values[i] = value;
      this.dirty = true;
    }
    if (this.n - this.segStart === SEGMENT_LINES) this.closeSegment();
  }

  /**
   * Rows `from` to `to` (excluded) of table columns, as emit() for each line: row i gives one line
   * per column c, labels[i * columns.length + c] with columns[c][i].
   */
  emitRows(labels: readonly string[], columns: readonly Float64Array[], from: number, to: number): void {
    const w = columns.length;
    if (w === 1) {
      const values = columns[0]!;
      for (let i = from; i < to; i++) this.emit(labels[i]!, values[i]!);
      return;
    }
    for (let i = from; i < to; i++) for (let c = 0; c < w; c++) this.emit(labels[i * w + c]!, columns[c]![i]!);
  }

  /** Sends the last (partial) segment and forgets lines beyond this rendering's count. */
  end(): void {
    if (this.n > this.segStart) this.closeSegment();
    const n = this.n;
    if (this.labels.length !== n) this.labels.length = n;
    const segs = Math.ceil(n / SEGMENT_LINES);
    if (this.segments.length !== segs) {
      this.segments.length = segs;
      this.segmentLines.length = segs;
    }
    this.out = undefined;
  }

  /** Abandons the rendering in progress (its scrape failed): the cache stays consistent. */
  abort(): void {
    // Lines already compared were stored; segments not closed keep their old Buffers, which no
    // longer match the stored lines: drop them so the next rendering renders them again.
    const seg = Math.floor(this.segStart / SEGMENT_LINES);
    this.segments.length = Math.min(this.segments.length, seg);
    this.segmentLines.length = this.segments.length;
    this.out = undefined;
  }

  private closeSegment(): void {
    const s = Math.floor(this.segStart / SEGMENT_LINES);
    const lines = this.n - this.segStart;
    let buf = this.segments[s];
    if (this.dirty || buf === undefined || this.segmentLines[s] !== lines) {
      const name = this.name;
      let text = '';
      for (let i = this.segStart; i < this.n; i++) text += `\n${name}${this.labels[i]!} ${formatValue(this.values[i]!)}`;
      buf = Buffer.from(text, 'utf8');
      this.segments[s] = buf;
      this.segmentLines[s] = lines;
      this.rendered++;
    } else this.reused++;
    this.out!.writeBuffer(buf);
    this.segStart = this.n;
    this.dirty = false;
  }
}
