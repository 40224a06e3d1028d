/**
 * Per-owner stats as a table: one row per owner (a cluster), one column per stat. A stats source
 * with thousands of owners (clusterStatsSource) writes a whole row at a time instead of one call
 * per stat, and a scrape's snapshot keeps the rows column by column: one names array shared by
 * all the table's families and one Float64Array per stat, both recycled from scrape to scrape.
 *
 * Why (issue 18.2): at 10,000 clusters the per-stat path (a sink call, two Map lookups for the
 * group and one for its arrays, per stat per cluster: ~900,000 lookups) was ~40% of a warm
 * scrape's main-thread CPU. A table is looked up once per scrape; a row is a plain copy.
 */

/** The shape of a table: which stats its columns hold. */
export interface StatsTable {
  /** The table's key in a StatsSnapshot. */
  readonly id: string;
  /** Family of the Envoy names: a cell's name is `${scope}.${tag}.${stat}` (cluster.<name>.upstream_rq_total). */
  readonly scope: 'cluster';
  /** Envoy stat names by column. */
  readonly stats: readonly string[];
  /** Columns [0, counters) are counters (rebased after reset_counters); the rest are gauges. */
  readonly counters: number;
}

/**
 * One scrape's rows of a table: row i belongs to `tags[i]` and holds `columns[j][i]` for stat j.
 * `n` is the rows written by the scrape in progress (tags is cut to it at the end; a column may
 * be longer, its spare capacity is kept for the next scrape).
 */
export interface TableSnapshot {
  readonly tags: string[];
  columns: Float64Array[];
  n: number;
}

/** Where a source writes a table's rows. `row[j]` is the raw value of column j, read during the call. */
export interface TableWriter {
  row(tag: string, row: Float64Array): void;
}

/** The column of `stat` in `table` (throws when the table has none: a wiring mistake). */
export function columnOf(table: StatsTable, stat: string): number {
  const j = table.stats.indexOf(stat);
  if (j < 0) throw new Error(`stats table ${table.id} has no column ${stat}`);
  return j;
}

export function newTableSnapshot(table: StatsTable): TableSnapshot {
  return { tags: [], columns: table.stats.map(() => new Float64Array(64)), n: 0 };
}

/**
 * Writes rows into a recycled TableSnapshot: tags are overwritten in place (the array stays in
 * V8's old generation, see EnvoyStats.snapshot), columns are grown by doubling and kept.
 * `baseline` (the counter columns at the last reset, by row tag) is given only when there is one.
 */
export class TableSnapshotWriter implements TableWriter {
  constructor(
    private readonly snap: TableSnapshot,
    private readonly table: StatsTable,
    private readonly baseline: ReadonlyMap<string, Float64Array> | undefined,
  ) {}

  row(tag: string, row: Float64Array): void {
    const s = this.snap;
    const i = s.n++;
    if (i < s.tags.length) s.tags[i] = tag;
    else s.tags.push(tag);
    let cols = s.columns;
    if (i >= cols[0]!.length) cols = grow(s);
    const width = cols.length;
    const base = this.baseline?.get(tag);
    if (base === undefined) {
      // No reset, or a row that had none then: counters relative to zero, i.e. max(0, raw).
      if (this.baseline === undefined) for (let j = 0; j < width; j++) cols[j]![i] = row[j]!;
      else for (let j = 0; j < width; j++) cols[j]![i] = j < this.table.counters ? Math.max(0, row[j]!) : row[j]!;
      return;
    }
    const counters = this.table.counters;
    for (let j = 0; j < width; j++) {
      const raw = row[j]!;
      cols[j]![i] = j < counters ? Math.max(0, raw - base[j]!) : raw;
    }
  }
}

/** Cuts the recycled tags array to the rows the scrape wrote. */
export function endTableSnapshot(s: TableSnapshot): void {
  if (s.tags.length !== s.n) s.tags.length = s.n;
}

function grow(s: TableSnapshot): Float64Array[] {
  s.columns = s.columns.map((c) => {
    const g = new Float64Array(c.length * 2);
    g.set(c);
    return g;
  });
  return s.columns;
}
