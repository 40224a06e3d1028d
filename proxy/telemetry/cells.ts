/**
 * Counter and histogram families for metrics updated on every request (Istio's standard metrics):
 * each label set is a "cell" of plain numbers that the data path bumps directly, and the family
 * turns its cells into prom-client's exposition structure only when scraped.
 *
 * Why not prom-client's own Counter/Histogram: their label children re-hash and re-validate all
 * 21 Istio labels on every inc()/observe() (a ~600-character key string built per call), which
 * profiled at about a fifth of meshlet's CPU per proxied request (bench/PROFILE.md). Here the
 * labels are validated and hashed once, when a cell is created (control-path cost), and an update
 * is an add and a short bucket scan.
 *
 * The families register with a prom-client Registry like any metric (they implement the
 * `get`/`getForPromString`/`reset` surface the Registry calls), so the text they produce is the
 * same as prom-client's Counter/Histogram would produce for the same observations: a label set
 * appears once it has been updated, histograms print cumulative `le` buckets, `+Inf`, `_sum`,
 * `_count`. Leans data-plane-safe: a non-finite value is ignored, never thrown.
 */
import type { Metric, Registry } from 'prom-client';
import { type ChunkWriter, escapeHelp, escapeLabelValue, formatValue } from './exposition';

/** Cells written between pauses when a scrape renders a family in steps. */
const CELLS_PER_STEP = 32;

/** A cell's labels as exposition text (`a="x",b="y"`), built on its first scrape and kept. */
function flatLabels(cell: { readonly labels: Readonly<Record<string, string>>; flat?: string }): string {
  let s = cell.flat;
  if (s === undefined) {
    s = '';
    for (const [n, v] of Object.entries(cell.labels)) s += `${s === '' ? '' : ','}${n}="${escapeLabelValue(v)}"`;
    cell.flat = s;
  }
  return s;
}

type Labels<L extends string> = Readonly<Record<L, string>>;

/** One label set of a counter. */
export class CounterCell {
  /** Cumulative value since creation or the last reset. */
  value = 0;
  /** Whether the series exists (updated since creation or the last reset). */
  seen = false;
  /** The labels as exposition text, once scraped (flatLabels). */
  flat: string | undefined = undefined;

  constructor(readonly labels: Readonly<Record<string, string>>) {}

  /** Add `v` (default 1); negative or non-finite values are ignored. */
  inc(v = 1): void {
    if (v >= 0 && v !== Number.POSITIVE_INFINITY) {
      this.value += v;
      this.seen = true;
    }
  }
}

/** One label set of a histogram. */
export class HistogramCell {
  /** Observations per bucket (not cumulative); index i counts values ≤ bounds[i] and > bounds[i-1]. */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;
  /** The labels as exposition text, once scraped (flatLabels). */
  flat: string | undefined = undefined;

  constructor(
    readonly labels: Readonly<Record<string, string>>,
    private readonly bounds: readonly number[],
  ) {
    this.counts = new Float64Array(bounds.length);
  }

  /** Record one value; NaN/±Infinity are ignored (prom-client would throw). */
  observe(v: number): void {
    if (!Number.isFinite(v)) return;
    const b = this.bounds;
    const n = b.length;
    for (let i = 0; i < n; i++) {
      if (v <= b[i]!) {
        this.counts[i]!++;
        break;
      }
    }
    this.sum += v;
    this.count++;
  }

  reset(): void {
    this.counts.fill(0);
    this.sum = 0;
    this.count = 0;
  }
}

interface ExportValue {
  value: number;
  labels: Record<string, string | number>;
  metricName?: string;
  sharedLabels?: Readonly<Record<string, string>>;
  exemplar?: null;
}

interface Exported {
  name: string;
  help: string;
  type: 'counter' | 'histogram';
  values: ExportValue[];
  aggregator: 'sum';
}

abstract class Family<L extends string, C> {
  protected readonly cells = new Map<string, C>();
  readonly aggregator = 'sum' as const;

  constructor(
    readonly name: string,
    readonly help: string,
    readonly labelNames: readonly L[],
    registry: Registry,
  ) {
    registry.registerMetric(this as unknown as Metric);
  }

  /** The cell for one complete label set (validated and keyed here, once). */
  labels(labels: Labels<L>): C {
    let key = '';
    for (const n of this.labelNames) {
      const v = labels[n];
      if (typeof v !== 'string') throw new TypeError(`${this.name}: label ${n} missing`);
      key += `${n}\u0000${v}\u0001`;
    }
    let cell = this.cells.get(key);
    if (cell === undefined) {
      const copy: Record<string, string> = {};
      for (const n of this.labelNames) copy[n] = labels[n];
      cell = this.create(copy);
      this.cells.set(key, cell);
    }
    return cell;
  }

  /**
   * The cell for a label set that differs from the family's standard names (istio.stats
   * dimension overrides: tags removed or added). Keyed by names and values in the given order.
   */
  labelsOf(labels: Readonly<Record<string, string>>): C {
    let key = '\u0002';
    for (const n of Object.keys(labels)) key += `${n}\u0000${labels[n]!}\u0001`;
    let cell = this.cells.get(key);
    if (cell === undefined) {
      cell = this.create({ ...labels });
      this.cells.set(key, cell);
    }
    return cell;
  }

  protected abstract create(labels: Record<string, string>): C;
  abstract reset(): void;
  abstract getForPromString(): Exported;

  /** prom-client's JSON form: labels and shared labels merged. */
  get(): Promise<Exported> {
    const e = this.getForPromString();
    for (const v of e.values) {
      if (v.sharedLabels) {
        v.labels = { ...v.sharedLabels, ...v.labels };
        delete v.sharedLabels;
      }
    }
    return Promise.resolve(e);
  }
}

/** A counter family (Prometheus `counter`). */
export class CounterFamily<L extends string> extends Family<L, CounterCell> {
  readonly type = 'counter' as const;

  protected create(labels: Record<string, string>): CounterCell {
    return new CounterCell(labels);
  }

  reset(): void {
    for (const c of this.cells.values()) {
      c.value = 0;
      c.seen = false;
    }
  }

  /**
   * The exposition text in steps (a scrape yields between them; exposition.ts), byte for byte
   * what prom-client prints from getForPromString (test/perf-safety/metric-cells.test.ts).
   */
  *render(out: ChunkWriter): Generator<void> {
    out.write(`# HELP ${this.name} ${escapeHelp(this.help)}\n# TYPE ${this.name} ${this.type}`);
    let n = 0;
    for (const c of this.cells.values()) {
      if (!c.seen) continue;
      const flat = flatLabels(c);
      out.write(`\n${this.name}${flat === '' ? '' : `{${flat}}`} ${formatValue(c.value)}`);
      if (++n % CELLS_PER_STEP === 0) yield;
    }
  }

  getForPromString(): Exported {
    const values: ExportValue[] = [];
    for (const c of this.cells.values()) if (c.seen) values.push({ value: c.value, labels: c.labels });
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator };
  }
}

/** A histogram family (Prometheus `histogram`) with fixed upper bounds. */
export class HistogramFamily<L extends string> extends Family<L, HistogramCell> {
  readonly type = 'histogram' as const;

  constructor(
    name: string,
    help: string,
    labelNames: readonly L[],
    readonly buckets: readonly number[],
    registry: Registry,
  ) {
    super(name, help, labelNames, registry);
  }

  protected create(labels: Record<string, string>): HistogramCell {
    return new HistogramCell(labels, this.buckets);
  }

  reset(): void {
    for (const c of this.cells.values()) c.reset();
  }

  /** As CounterFamily.render: prom-client's text for the same cells, in steps. */
  *render(out: ChunkWriter): Generator<void> {
    out.write(`# HELP ${this.name} ${escapeHelp(this.help)}\n# TYPE ${this.name} ${this.type}`);
    const bucket = `\n${this.name}_bucket{le="`;
    const les = this.buckets.map((b) => `${b}`);
    let n = 0;
    for (const c of this.cells.values()) {
      if (c.count === 0) continue;
      const flat = flatLabels(c);
      const tail = flat === '' ? '"} ' : `",${flat}} `;
      const shared = flat === '' ? ' ' : `{${flat}} `;
      let acc = 0;
      for (let i = 0; i < les.length; i++) {
        acc += c.counts[i]!;
        out.write(`${bucket}${les[i]!}${tail}${formatValue(acc)}`);
      }
      out.write(`${bucket}+Inf${tail}${formatValue(c.count)}`);
      out.write(`\n${this.name}_sum${shared}${formatValue(c.sum)}`);
      out.write(`\n${this.name}_count${shared}${formatValue(c.count)}`);
      if (++n % CELLS_PER_STEP === 0) yield;
    }
  }

  getForPromString(): Exported {
    const values: ExportValue[] = [];
    const bucket = `${this.name}_bucket`;
    for (const c of this.cells.values()) {
      if (c.count === 0) continue;
      let acc = 0;
      for (let i = 0; i < this.buckets.length; i++) {
        acc += c.counts[i]!;
        values.push({ value: acc, labels: { le: this.buckets[i]! }, metricName: bucket, sharedLabels: c.labels, exemplar: null });
      }
      values.push({ value: c.count, labels: { le: '+Inf' }, metricName: bucket, sharedLabels: c.labels, exemplar: null });
      values.push({ value: c.sum, labels: {}, metricName: `${this.name}_sum`, sharedLabels: c.labels });
      values.push({ value: c.count, labels: {}, metricName: `${this.name}_count`, sharedLabels: c.labels });
    }
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator };
  }
}
