// Preloaded into a process under test (`node -r bench/lib/loop-monitor.cjs …`) to measure its own
// event-loop stalls from the inside: perf_hooks.monitorEventLoopDelay at 1 ms resolution. On
// SIGUSR2 it writes one line `LOOPDELAY {"max":…,"p99":…,"p50":…,"mean":…}` (ms) to stderr and
// starts a new window. Used by bench/scrape.mjs; adds one 1 ms timer's worth of work.
'use strict';
const { monitorEventLoopDelay } = require('node:perf_hooks');

const h = monitorEventLoopDelay({ resolution: 1 });
h.enable();
process.on('SIGUSR2', () => {
  const ms = (ns) => Math.round((ns / 1e6) * 100) / 100;
  process.stderr.write(`LOOPDELAY ${JSON.stringify({ max: ms(h.max), p99: ms(h.percentile(99)), p50: ms(h.percentile(50)), mean: ms(h.mean) })}\n`);
  h.reset();
});
