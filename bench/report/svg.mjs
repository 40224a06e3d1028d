// Draws latency.svg: one panel per latency source (open-loop at a fixed rate, closed-loop wrk,
// gRPC), one row per scenario, four bars per row (p50, p90, p99, p99.9) on a shared logarithmic
// millisecond axis so sub-millisecond medians and long tails are both readable. Plain SVG text,
// no dependencies; values are printed at the end of each bar.

const COLORS = { p50: '#4c78a8', p90: '#54a24b', p99: '#f58518', p999: '#e45756' };
const NAMES = { p50: 'p50', p90: 'p90', p99: 'p99', p999: 'p99.9' };
const KEYS = ['p50', 'p90', 'p99', 'p999'];

const esc = (t) => String(t).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const fmtMs = (v) => (v < 1 ? v.toFixed(3) : v < 10 ? v.toFixed(2) : v < 100 ? v.toFixed(1) : v.toFixed(0));

/**
 * @param {object} results the results.json object
 * @returns {string} SVG document
 */
export function renderSvg(results) {
  const panels = [
    {
      title: `Open loop: ${results.settings.openLoop.rate} req/s, 1 KiB, latency from scheduled send (no coordinated omission)`,
      filter: (r) => r.kind === 'open-loop',
      label: (r) => r.label.replace(/^open-loop /, ''),
    },
    {
      title: `Closed loop: wrk ${results.settings.wrk.connections} connections, ${results.settings.wrk.threads} threads (saturation; includes coordinated omission)`,
      filter: (r) => r.kind === 'wrk',
      label: (r) => r.label,
    },
    {
      title: `gRPC unary: ${results.settings.grpc.concurrency} calls in flight (closed loop)`,
      filter: (r) => r.kind === 'grpc',
      label: (r) => r.label,
    },
  ]
    .map((p) => ({ ...p, rows: results.scenarios.filter(p.filter) }))
    .filter((p) => p.rows.length > 0);

  const values = [];
  for (const p of panels)
    for (const r of p.rows)
      if (r.status === 'ok')
        for (const k of KEYS) if (r.metrics.latencyMs?.[k] > 0) values.push(r.metrics.latencyMs[k]);
  const lo = 10 ** Math.floor(Math.log10(Math.max(0.001, Math.min(...values, 1))));
  const hi = 10 ** Math.ceil(Math.log10(Math.max(...values, 1) * 1.05));

  const W = 1100;
  const labelW = 330;
  const x0 = labelW + 10;
  const x1 = W - 90;
  const barH = 9;
  const rowH = KEYS.length * (barH + 2) + 14;
  const x = (v) =>
    x0 + ((Math.log10(Math.max(v, lo)) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) * (x1 - x0);

  const parts = [];
  let y = 0;
  const m = results.machine;
  parts.push(
    `<text x="${W / 2}" y="28" text-anchor="middle" class="title">meshlet bench — request latency percentiles (milliseconds, log scale)</text>`,
  );
  parts.push(
    `<text x="${W / 2}" y="48" text-anchor="middle" class="sub">${esc(`${m.cpu}, ${m.cores} cores, ${m.kernel}, Node ${m.node} — ${m.date.slice(0, 16).replace('T', ' ')} UTC${results.settings.quick ? ' — quick run' : ''}`)}</text>`,
  );
  // legend
  let lx = W / 2 - 170;
  for (const k of KEYS) {
    parts.push(
      `<rect x="${lx}" y="60" width="14" height="14" fill="${COLORS[k]}"/><text x="${lx + 20}" y="72" class="legend">${NAMES[k]}</text>`,
    );
    lx += 90;
  }
  y = 95;

  const ticks = [];
  for (let d = lo; d <= hi * 1.0001; d *= 10) for (const f of [1, 2, 5]) if (d * f <= hi * 1.0001) ticks.push(d * f);

  for (const p of panels) {
    parts.push(`<text x="16" y="${y + 16}" class="panel">${esc(p.title)}</text>`);
    y += 28;
    const top = y;
    const height = p.rows.length * rowH;
    // grid and axis
    for (const t of ticks) {
      const major = Math.abs(Math.log10(t) - Math.round(Math.log10(t))) < 1e-9;
      parts.push(
        `<line x1="${x(t).toFixed(1)}" y1="${top}" x2="${x(t).toFixed(1)}" y2="${top + height}" class="${major ? 'grid-major' : 'grid'}"/>`,
      );
      parts.push(
        `<text x="${x(t).toFixed(1)}" y="${top + height + 14}" text-anchor="middle" class="tick">${t >= 1 ? t : Number(t.toPrecision(1))}</text>`,
      );
    }
    parts.push(
      `<text x="${(x0 + x1) / 2}" y="${top + height + 30}" text-anchor="middle" class="axis">latency (ms)</text>`,
    );
    p.rows.forEach((r, i) => {
      const ry = top + i * rowH;
      if (i % 2 === 1) parts.push(`<rect x="8" y="${ry}" width="${W - 16}" height="${rowH}" class="band"/>`);
      parts.push(
        `<text x="${labelW}" y="${ry + rowH / 2 + 4}" text-anchor="end" class="label">${esc(p.label(r))}</text>`,
      );
      if (r.status !== 'ok') {
        const why = `${r.status}: ${r.reason}`;
        parts.push(
          `<text x="${x0 + 6}" y="${ry + rowH / 2 + 4}" class="na">${esc(why.length > 110 ? `${why.slice(0, 107)}…` : why)}</text>`,
        );
        return;
      }
      const bad = (r.metrics.errors ?? 0) + (r.metrics.non2xx ?? 0);
      if (bad > 0) {
        // Latency of a run with failures describes the failures too: say so next to the label.
        parts.push(
          `<text x="${labelW}" y="${ry + rowH / 2 + 18}" text-anchor="end" class="na">⚠ ${bad.toLocaleString('en-US')} errors / non-2xx</text>`,
        );
      }
      KEYS.forEach((k, j) => {
        const v = r.metrics.latencyMs?.[k];
        if (!(v > 0)) return;
        const by = ry + 7 + j * (barH + 2);
        parts.push(
          `<rect x="${x0}" y="${by}" width="${Math.max(1, x(v) - x0).toFixed(1)}" height="${barH}" fill="${COLORS[k]}"><title>${esc(`${p.label(r)} ${NAMES[k]} ${fmtMs(v)} ms`)}</title></rect>`,
        );
        parts.push(`<text x="${(x(v) + 4).toFixed(1)}" y="${by + barH - 1}" class="value">${fmtMs(v)}</text>`);
      });
    });
    parts.push(`<line x1="${x0}" y1="${top}" x2="${x0}" y2="${top + height}" class="axisline"/>`);
    y = top + height + 48;
  }

  const H = y;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="Helvetica, Arial, sans-serif">
<style>
  .title { font-size: 18px; font-weight: bold; fill: #222; }
  .sub { font-size: 12px; fill: #555; }
  .panel { font-size: 14px; font-weight: bold; fill: #222; }
  .label { font-size: 12px; fill: #222; }
  .legend { font-size: 12px; fill: #222; }
  .tick { font-size: 11px; fill: #444; }
  .axis { font-size: 12px; fill: #444; }
  .value { font-size: 9px; fill: #333; }
  .na { font-size: 11px; fill: #a33; font-style: italic; }
  .grid { stroke: #e3e3e3; stroke-width: 1; }
  .grid-major { stroke: #bbb; stroke-width: 1; }
  .axisline { stroke: #444; stroke-width: 1; }
  .band { fill: #f6f6f6; }
</style>
<rect width="100%" height="100%" fill="#fff"/>
${parts.join('\n')}
</svg>
`;
}
