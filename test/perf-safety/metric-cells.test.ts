// The Istio metric families (proxy/telemetry/cells.ts) replaced prom-client's Counter/Histogram on
// the data path for speed. This proves the exposition is byte-for-byte what prom-client prints
// for the same observations, including reset, label escaping and values past the last bucket —
// both through prom-client's registry and through the families' own stepped rendering, which is
// what /stats/prometheus sends.
import { Counter, Histogram, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { countLoopTurns } from '../support/loop-turns';
import { CounterFamily, HistogramFamily } from '../../proxy/telemetry/cells';
import { renderExposition } from '../../proxy/telemetry/exposition';
import { ISTIO_DURATION_BUCKETS_MS, ISTIO_HTTP_LABELS } from '../../proxy/telemetry/metrics';

type L = (typeof ISTIO_HTTP_LABELS)[number];
const names = [...ISTIO_HTTP_LABELS] as L[];

function labelSet(i: number): Record<L, string> {
  const o = {} as Record<L, string>;
  for (const n of names) o[n] = `${n}-${i}`;
  o.response_code = String(200 + i);
  o.destination_service = i === 2 ? 'we"ird\\svc\nname' : 'svc.ns.svc.cluster.local';
  return o;
}

/** What a scrape sends: the families' own stepped rendering (exposition.ts), not prom-client's. */
async function scraped(r: Registry): Promise<string> {
  const parts: Buffer[] = [];
  await renderExposition(r, (c) => {
    parts.push(c);
  });
  return Buffer.concat(parts).toString('utf8');
}

function both() {
  const a = new Registry();
  const b = new Registry();
  const pc = new Counter({ name: 'istio_requests_total', help: 'Requests', labelNames: names, registers: [a] });
  const ph = new Histogram({ name: 'istio_request_duration_milliseconds', help: 'Duration', labelNames: names, buckets: [...ISTIO_DURATION_BUCKETS_MS], registers: [a] });
  const fc = new CounterFamily('istio_requests_total', 'Requests', names, b);
  const fh = new HistogramFamily('istio_request_duration_milliseconds', 'Duration', names, [...ISTIO_DURATION_BUCKETS_MS], b);
  return { a, b, pc, ph, fc, fh };
}

describe('metric cells print what prom-client prints', () => {
  it('counters and histograms over several label sets, values on and past bucket bounds', async () => {
    const { a, b, pc, ph, fc, fh } = both();
    const values = [0, 0.5, 0.7, 1, 4.99, 5, 25, 999.5, 3_600_000, 9_999_999, 12.25];
    for (let i = 0; i < 3; i++) {
      const ls = labelSet(i);
      const pcc = pc.labels(ls);
      const phc = ph.labels(ls);
      const fcc = fc.labels(ls);
      const fhc = fh.labels(ls);
      for (let k = 0; k <= i * 3; k++) {
        const v = values[(k + i) % values.length]!;
        pcc.inc();
        fcc.inc();
        phc.observe(v);
        fhc.observe(v);
      }
      pcc.inc(7);
      fcc.inc(7);
    }
    const text = await b.metrics();
    expect(text).toBe(await a.metrics());
    expect(await scraped(b)).toBe(await a.metrics());
    expect(text).toContain('istio_request_duration_milliseconds_bucket{le="+Inf"');
    expect(await b.getMetricsAsJSON()).toEqual(await a.getMetricsAsJSON());
  });

  it('a label set appears only once updated, disappears on reset and comes back on the next update', async () => {
    const { a, b, pc, ph, fc, fh } = both();
    const ls = labelSet(1);
    const p = { c: pc.labels(ls), h: ph.labels(ls) };
    const f = { c: fc.labels(ls), h: fh.labels(ls) };
    expect(await b.metrics()).toBe(await a.metrics());
    expect(await b.metrics()).not.toContain('response_code');
    p.c.inc(2);
    f.c.inc(2);
    p.h.observe(3);
    f.h.observe(3);
    expect(await b.metrics()).toBe(await a.metrics());
    a.resetMetrics();
    b.resetMetrics();
    expect(await b.metrics()).toBe(await a.metrics());
    expect(await scraped(b)).toBe(await a.metrics());
    expect(await b.metrics()).not.toContain('response_code');
    p.c.inc();
    f.c.inc();
    p.h.observe(40);
    f.h.observe(40);
    expect(await b.metrics()).toBe(await a.metrics());
    expect(await scraped(b)).toBe(await a.metrics());
    expect(await b.metrics()).toContain('istio_requests_total{');
  });

  it('the same label set twice is one series; bad values never throw on the data path', async () => {
    const { b, fc, fh } = both();
    const c1 = fc.labels(labelSet(0));
    const c2 = fc.labels({ ...labelSet(0) });
    expect(c2).toBe(c1);
    const h = fh.labels(labelSet(0));
    expect(() => h.observe(Number.NaN)).not.toThrow();
    expect(() => h.observe(Number.POSITIVE_INFINITY)).not.toThrow();
    expect(() => c1.inc(-1)).not.toThrow();
    h.observe(2);
    c1.inc();
    const text = await b.metrics();
    expect(text.match(/^istio_requests_total\{/gm)).toHaveLength(1);
    expect(text).toMatch(/istio_request_duration_milliseconds_count\{[^}]*\} 1$/m);
    expect(text).toMatch(/istio_request_duration_milliseconds_sum\{[^}]*\} 2$/m);
    expect(text).toMatch(/^istio_requests_total\{[^}]*\} 1$/m);
    expect(() => fc.labels({ reporter: 'x' } as Record<L, string>)).toThrow(TypeError);
  });
});

it('a scrape renders many Istio label sets in steps: the loop gets turns while one family renders', async () => {
  const { a, b, pc, fh, ph } = both();
  const fc2 = b.getSingleMetric('istio_requests_total') as unknown as CounterFamily<L>;
  for (let i = 0; i < 2_000; i++) {
    const ls = labelSet(i);
    fc2.labels(ls).inc();
    pc.labels(ls).inc();
    fh.labels(ls).observe(i % 50);
    ph.labels(ls).observe(i % 50);
  }
  const turns = countLoopTurns();
  const text = await scraped(b);
  turns.stop();
  expect(text).toBe(await a.metrics());
  // 2,000 histogram label sets are ~46,000 lines: many 2 ms slices on any machine (rendered by
  // prom-client in one go, the loop got 2 turns: the awaits around it).
  expect(turns.count).toBeGreaterThanOrEqual(10);
});
