// A small HdrHistogram-like latency histogram: log-linear buckets (each power of two split into
// 2^subBits linear sub-buckets), so recording is O(1) with no allocation and the relative error of
// any reported percentile is below 2^-subBits (about 0.8% with the default 7 bits). Values are
// integers in microseconds. Leans towards a fixed memory footprint over exactness.

export class Histogram {
  /**
   * @param {number} [maxValue] largest trackable value (larger values are clamped and counted)
   * @param {number} [subBits] linear sub-buckets per power of two, as bits
   */
  constructor(maxValue = 60_000_000, subBits = 7) {
    this.subBits = subBits;
    this.subCount = 1 << subBits;
    this.maxValue = maxValue;
    const top = Math.ceil(Math.log2(maxValue + 1));
    this.counts = new Float64Array((top + 1) * this.subCount);
    this.total = 0;
    this.min = Number.POSITIVE_INFINITY;
    this.max = 0;
    this.sum = 0;
    this.clamped = 0;
  }

  /** Bucket index of a non-negative integer value. */
  indexOf(v) {
    if (v < this.subCount) return v;
    const exp = 31 - Math.clz32(v); // floor(log2 v) >= subBits
    const shift = exp - this.subBits;
    // bucket group (exp - subBits + 1), linear position inside it from the top subBits bits
    return (shift + 1) * this.subCount + ((v >>> shift) - this.subCount);
  }

  /** Lowest value that maps to bucket index i. */
  valueAt(i) {
    if (i < this.subCount) return i;
    const group = Math.floor(i / this.subCount) - 1; // = shift
    const pos = i % this.subCount;
    return (pos + this.subCount) * 2 ** group;
  }

  /** Highest value that maps to bucket index i (what percentiles report, like HdrHistogram). */
  highestAt(i) {
    return this.valueAt(i + 1) - 1;
  }

  /** Records one value in microseconds. */
  record(us) {
    let v = us < 0 ? 0 : Math.round(us);
    if (v > this.maxValue) {
      v = this.maxValue;
      this.clamped++;
    }
    this.counts[this.indexOf(v)]++;
    this.total++;
    this.sum += v;
    if (v < this.min) this.min = v;
    if (v > this.max) this.max = v;
  }

  /** Value at percentile p (0..100), in microseconds; 0 when empty. */
  percentile(p) {
    if (this.total === 0) return 0;
    const rank = Math.max(1, Math.ceil((p / 100) * this.total));
    let seen = 0;
    for (let i = 0; i < this.counts.length; i++) {
      seen += this.counts[i];
      if (seen >= rank) return Math.min(this.highestAt(i), this.max);
    }
    return this.max;
  }

  mean() {
    return this.total ? this.sum / this.total : 0;
  }

  /** Adds another histogram with the same layout into this one. */
  add(other) {
    for (let i = 0; i < this.counts.length; i++) this.counts[i] += other.counts[i];
    this.total += other.total;
    this.sum += other.sum;
    this.clamped += other.clamped;
    if (other.min < this.min) this.min = other.min;
    if (other.max > this.max) this.max = other.max;
  }

  /** Summary in milliseconds, the unit every report uses. */
  summaryMs() {
    const ms = (us) => Math.round(us) / 1000;
    return {
      count: this.total,
      mean: ms(this.mean()),
      p50: ms(this.percentile(50)),
      p90: ms(this.percentile(90)),
      p99: ms(this.percentile(99)),
      p999: ms(this.percentile(99.9)),
      max: ms(this.max),
    };
  }
}
