#!/usr/bin/env node
// Summarises V8 .cpuprofile files (from `node --cpu-prof`, e.g. through cpu-per-request.mjs
// --node-args="--cpu-prof --cpu-prof-dir=DIR") into the tables bench/PROFILE.md quotes: self time
// by category (Node's http2 JS, streams, timers, meshlet's own directories, GC, idle…) and the top
// functions by self and by inclusive time. Offline only: reads files, starts nothing.
//
//   node bench/profile-summary.mjs FILE.cpuprofile [more…] [--top 25] [--last S] [--per N]
// --last S: only the samples of the last S seconds of the profile (cpu-per-request stops the
//   process right after the measured window, so --last ≈ --seconds leaves out start-up and warm-up).
// --per N: also print the categories as µs per request for N requests in the counted samples.
// --callers NAME: the heaviest stacks (6 frames up) through functions called NAME.
// A FILE.perf.data (cpu-per-request --perf-dir) is summarised by `perf report` self samples grouped
// into kernel, nghttp2, Node's http2 C++ binding, V8 (JIT code, builtins, runtime, GC, compiler),
// malloc and the rest: the native split that --cpu-prof shows only as "(program)".
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

const { values: o, positionals: files } = parseArgs({
  allowPositionals: true,
  options: {
    top: { type: 'string', default: '25' },
    per: { type: 'string' },
    last: { type: 'string' },
    callers: { type: 'string' },
  },
});

/** Category of a call frame: where its self time is charged in the summary. */
function category(cf) {
  const url = cf.url ?? '';
  const fn = cf.functionName;
  if (fn === '(garbage collector)') return 'GC';
  if (fn === '(idle)') return 'idle (waiting in epoll)';
  if (fn === '(program)') return 'program (native, not attributed: libuv, nghttp2 callbacks, syscalls)';
  if (fn === '(root)') return 'root';
  if (url.includes('node:internal/http2')) return 'node:http2 JS (core.js, util.js: Http2Stream objects, header conversion)';
  if (url.includes('node:internal/streams') || url === 'node:stream') return 'node streams (Readable/Writable/Duplex, pipe)';
  if (url.includes('node:internal/timers') || url === 'node:timers') return 'timers';
  if (url.includes('node:internal/process/task_queues') || url.includes('async_hooks')) return 'nextTick / microtasks';
  if (url.includes('node:events') || url.includes('node:internal/event_target')) return 'EventEmitter';
  if (url.includes('node:net') || url.includes('stream_base_commons') || url.includes('node:internal/net')) return 'node:net / StreamBase glue';
  if (url.includes('node:_tls') || url.includes('node:tls')) return 'node:tls JS';
  if (url.startsWith('node:')) return `other node: (${url.replace(/^node:(internal\/)?/, '')})`;
  const dist = /\/dist\/(.+)\/[^/]+\.js$/.exec(url);
  if (dist) return `meshlet ${dist[1]}/`;
  const mod = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (mod) return `package ${mod[1]}`;
  if (url === '') return `native builtins (${fn === '' ? 'anonymous' : 'V8/C++ functions called from JS'})`;
  return `other ${url}`;
}

const label = (cf) => `${cf.functionName || '(anonymous)'} ${(cf.url ?? '').replace(/^.*\/(dist|node_modules)\//, '$1/')}:${cf.lineNumber + 1}`;

const PERF_GROUPS = [
  [/\[k\]/, 'kernel (TCP loopback, epoll, scheduler, page faults)'],
  [/nghttp2_/, 'nghttp2 (C: framing, HPACK, flow control, stream map)'],
  [/node::http2::/, "node::http2 C++ binding (Http2Session/Http2Stream callbacks)"],
  [/JS:/, 'JIT-compiled JS'],
  [/Builtins_/, 'V8 builtins (ICs, calls, object literals)'],
  [/compiler::|Compil|Maglev|Turbofan/, 'V8 optimizing compiler (background thread)'],
  [/Scavenge|Heap|Mark|Sweep|Evacuat|Remembered|heap::/, 'V8 GC'],
  [/v8::/, 'V8 runtime (C++)'],
  [/malloc|free|_int_|tcache|unlink_chunk/, 'malloc/free'],
  [/uv_|uv__/, 'libuv'],
  [/node::/, 'node C++ (StreamBase, BaseObject, AsyncWrap)'],
];

function perfSummary(file) {
  const r = spawnSync('perf', ['report', '-i', file, '--no-children', '--sort', 'sym', '--stdio', '-g', 'none'], {
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
  if (r.status !== 0) throw new Error(`perf report -i ${file}: ${r.stderr.trim().slice(-300)}`);
  const groups = new Map();
  for (const line of r.stdout.split('\n')) {
    const m = /^\s+([\d.]+)%\s+(.*)$/.exec(line);
    if (!m) continue;
    const g = PERF_GROUPS.find(([re]) => re.test(m[2]))?.[1] ?? 'other native (libc, node C++)';
    groups.set(g, (groups.get(g) ?? 0) + Number(m[1]));
  }
  console.log(`\n${file}: perf self samples by group`);
  for (const [g, v] of [...groups].sort((a, b) => b[1] - a[1])) console.log(`  ${v.toFixed(1).padStart(5)}%  ${g}`);
}

for (const file of files) {
  if (file.endsWith('.perf.data')) {
    perfSummary(file);
    continue;
  }
  const prof = JSON.parse(readFileSync(file, 'utf8'));
  const byId = new Map(prof.nodes.map((n) => [n.id, n]));
  const parent = new Map();
  for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const selfUs = new Map();
  let total = 0;
  // sample i happened at startTime + sum(timeDeltas[0..i])
  const from = o.last ? prof.endTime - Number(o.last) * 1e6 : -Infinity;
  let t = prof.startTime;
  for (let i = 0; i < prof.samples.length; i++) {
    const dt = prof.timeDeltas[i] ?? 0;
    t += dt;
    if (t < from) continue;
    selfUs.set(prof.samples[i], (selfUs.get(prof.samples[i]) ?? 0) + dt);
    total += dt;
  }
  const cats = new Map();
  const selfFn = new Map();
  const inclFn = new Map();
  for (const [id, us] of selfUs) {
    const n = byId.get(id);
    const c = category(n.callFrame);
    cats.set(c, (cats.get(c) ?? 0) + us);
    const l = label(n.callFrame);
    selfFn.set(l, (selfFn.get(l) ?? 0) + us);
    // inclusive: every distinct function on the stack once
    const seen = new Set();
    for (let p = id; p !== undefined; p = parent.get(p)) {
      const pl = label(byId.get(p).callFrame);
      if (seen.has(pl)) continue;
      seen.add(pl);
      inclFn.set(pl, (inclFn.get(pl) ?? 0) + us);
    }
  }
  if (o.callers) {
    const stacks = new Map();
    for (const [id, us] of selfUs) {
      const chain = [];
      for (let p = id; p !== undefined && chain.length < 7; p = parent.get(p)) {
        const cf = byId.get(p).callFrame;
        if (chain.length || cf.functionName === o.callers) chain.push(label(cf));
      }
      if (chain.length) stacks.set(chain.join(' < '), (stacks.get(chain.join(' < ')) ?? 0) + us);
    }
    console.log(`\n${file}: stacks through ${o.callers}`);
    for (const [k, us] of [...stacks].sort((a, b) => b[1] - a[1]).slice(0, 10))
      console.log(`  ${(us / 1000).toFixed(0).padStart(6)} ms  ${k}`);
    continue;
  }
  const busy = total - (cats.get('idle (waiting in epoll)') ?? 0);
  const pct = (us, of) => `${((us / of) * 100).toFixed(1).padStart(5)}%`;
  const per = o.per ? Number(o.per) : 0;
  console.log(`\n${file}: ${(total / 1e6).toFixed(2)} s sampled, ${(busy / 1e6).toFixed(2)} s not idle`);
  console.log('\nself time by category (share of non-idle time)');
  for (const [c, us] of [...cats].sort((a, b) => b[1] - a[1])) {
    if (c.startsWith('idle') || c === 'root' || us / busy < 0.001) continue;
    console.log(`  ${pct(us, busy)}  ${per ? `${(us / per).toFixed(1).padStart(7)} µs/req  ` : ''}${c}`);
  }
  const top = Number(o.top);
  console.log(`\ntop ${top} functions by self time (share of non-idle)`);
  for (const [l, us] of [...selfFn].sort((a, b) => b[1] - a[1]).slice(0, top + 2)) {
    if (l.startsWith('(idle)') || l.startsWith('(root)')) continue;
    console.log(`  ${pct(us, busy)}  ${l}`);
  }
  console.log(`\ntop ${top} functions by inclusive time (share of non-idle)`);
  for (const [l, us] of [...inclFn].sort((a, b) => b[1] - a[1]).slice(0, top + 3)) {
    if (l.startsWith('(idle)') || l.startsWith('(root)') || l.startsWith('(program)')) continue;
    console.log(`  ${pct(us, busy)}  ${l}`);
  }
}
