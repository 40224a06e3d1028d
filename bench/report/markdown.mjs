// Turns results.json's object into the markdown report (results.md, also printed). Every relative
// number is against a reference measured in the same run: single-hop proxies against nginx
// single-hop, meshlet also against the best Node proxy, mesh hops against the nginx pair, protocol
// scenarios against their direct run, open-loop latency as "added over direct".

const fmt = {
  int: (n) => (n === undefined || n === null || Number.isNaN(n) ? '—' : Math.round(n).toLocaleString('en-US')),
  ms: (n) => (n === undefined || n === null ? '—' : n < 10 ? n.toFixed(3) : n < 100 ? n.toFixed(2) : n.toFixed(1)),
  ratio: (a, b) => (a && b ? `${(a / b).toFixed(2)}×` : '—'),
  added: (a, b) => (a === undefined || b === undefined ? '—' : `${a - b >= 0 ? '+' : ''}${fmt.ms(a - b)}`),
  mib: (kib) => (kib ? (kib / 1024).toFixed(1) : '—'),
};

const ok = (r) => r && r.status === 'ok';
const byId = (results) => Object.fromEntries(results.scenarios.map((s) => [s.id, s]));

/** Computes the headline ratios (also stored in results.json). */
export function ratios(results) {
  const s = byId(results);
  const rps = (id) => (ok(s[id]) ? s[id].metrics.rps : undefined);
  const nodeIds = ['single-hop/http-proxy', 'single-hop/reply-from'].filter((id) => ok(s[id]));
  const bestNode = nodeIds.sort((a, b) => rps(b) - rps(a))[0];
  const r = (a, b) => (a && b ? a / b : undefined);
  const mb = (id) => (ok(s[id]) ? s[id].metrics.mbPerSec : undefined);
  return {
    'single-hop meshlet / nginx': r(rps('single-hop/meshlet'), rps('single-hop/nginx')),
    'single-hop meshlet / HAProxy': r(rps('single-hop/meshlet'), rps('single-hop/haproxy')),
    [`single-hop meshlet / best Node proxy${bestNode ? ` (${s[bestNode].label.replace('single-hop ', '')})` : ''}`]: r(
      rps('single-hop/meshlet'),
      bestNode && rps(bestNode),
    ),
    'mesh-hop meshlet / nginx pair': r(rps('mesh-hop/meshlet'), rps('mesh-hop/nginx')),
    'mesh-hop meshlet / HAProxy pair': r(rps('mesh-hop/meshlet'), rps('mesh-hop/haproxy')),
    'HTTP/2 meshlet / direct': r(rps('h2/meshlet'), rps('h2/direct')),
    'HTTP/2 single-hop meshlet / HAProxy h2c→h2c': r(rps('h2/meshlet'), rps('h2/haproxy')),
    'HTTP/2 single-hop meshlet / naive node:http2 proxy': r(rps('h2/meshlet'), rps('h2/node-http2')),
    'HTTP/2 mesh-hop meshlet pair / HAProxy pair (mTLS, ALPN h2)': r(
      rps('h2/mesh-hop/meshlet'),
      rps('h2/mesh-hop/haproxy'),
    ),
    'gRPC meshlet / direct': r(rps('grpc/meshlet'), rps('grpc/direct')),
    'TCP meshlet / direct': r(mb('tcp/meshlet'), mb('tcp/direct')),
    'TCP meshlet / HAProxy': r(mb('tcp/meshlet'), mb('tcp/haproxy')),
    'TCP meshlet / naive Node net proxy': r(mb('tcp/meshlet'), mb('tcp/node')),
  };
}

function table(header, rows) {
  const lines = [`| ${header.join(' | ')} |`, `|${header.map((_h, i) => (i === 0 ? ':---' : '---:')).join('|')}|`];
  for (const row of rows) lines.push(`| ${row.join(' | ')} |`);
  return lines.join('\n');
}

function unavailable(r) {
  return r.status === 'not available' ? `not available: ${r.reason}` : `failed: ${r.reason}`;
}

function errCell(m) {
  const n = (m.errors ?? 0) + (m.non2xx ?? 0);
  return n ? `${fmt.int(n)} ⚠` : '0';
}

export function renderMarkdown(results) {
  const { machine, settings } = results;
  const s = byId(results);
  const present = (ids) => ids.filter((id) => s[id]);
  const out = [];
  out.push('# meshlet benchmark results', '');
  out.push(
    `- **Date**: ${machine.date}${settings.quick ? ' — **quick run** (short durations; for checking the tooling, not for quoting)' : ''}`,
  );
  out.push(
    `- **Machine**: ${machine.cpu}, ${machine.cores} cores, ${machine.memoryGiB} GiB, ${machine.kernel}, Node ${machine.node}${machine.loadAvg1m !== undefined ? `; load average ${machine.loadAvg1m} at start` : ''}`,
  );
  out.push(
    `- **Tools**: ${Object.entries(results.tools)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ')}; meshlet ${results.meshlet}`,
  );
  out.push(
    `- **Processes**: upstream nginx ${settings.upstreamWorkers} worker process(es) (one per core); every proxy under test ${settings.proxyWorkers} worker/thread (nginx worker_processes, HAProxy nbthread, meshlet --concurrency; Node proxies are one process; meshlet mesh hop built with \`--meshlet-mode ${settings.meshletMode}\`); load generators share the same ${machine.cores} cores, so absolute numbers are a floor and ratios are what to compare.`,
  );
  if (settings.rounds > 1) {
    out.push(
      `- **Rounds**: every scenario ran ${settings.rounds} times, interleaved; each row is its median round by req/s (MB/s; p99 for open-loop), every round is in results.json.`,
    );
  }
  out.push(
    `- **Upstream**: nginx \`return 200\` with a 13-byte body (1 KiB on /kib), HTTP/1.1 keep-alive and h2c; every scenario ends there.`,
  );
  out.push('');

  const ratioRows = Object.entries(results.ratios)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => [k, `**${v.toFixed(2)}×**`]);
  if (ratioRows.length) {
    out.push('## Headline ratios (same run)', '', table(['comparison', 'ratio'], ratioRows), '');
  }

  const w = settings.wrk;
  const http = present(['direct', ...Object.keys(s).filter((id) => /^(single|mesh)-hop\//.test(id))]);
  if (http.length) {
    out.push(
      `## HTTP/1.1 closed loop — wrk -c ${w.connections} -t ${w.threads} -d ${settings.seconds}s, GET / (13 B)`,
      '',
    );
    const ref = (r) =>
      r.hop === 'single-hop' ? s['single-hop/nginx'] : r.hop === 'mesh-hop' ? s['mesh-hop/nginx'] : undefined;
    const rows = http.map((id) => {
      const r = s[id];
      if (!ok(r)) return [r.label, unavailable(r), '', '', '', '', '', '', ''];
      const m = r.metrics;
      const rf = ref(r);
      let vs =
        id === 'direct'
          ? 'reference'
          : ok(rf)
            ? `${fmt.ratio(m.rps, rf.metrics.rps)} ${r.hop === 'mesh-hop' ? 'nginx pair' : 'nginx'}`
            : '—';
      if (id === 'single-hop/meshlet') {
        const node = ['single-hop/http-proxy', 'single-hop/reply-from']
          .filter((n) => ok(s[n]))
          .sort((a, b) => s[b].metrics.rps - s[a].metrics.rps)[0];
        if (node) vs += `, ${fmt.ratio(m.rps, s[node].metrics.rps)} best Node`;
      }
      const dir = ok(s.direct) ? `${((m.rps / s.direct.metrics.rps) * 100).toFixed(0)}%` : '—';
      const l = m.latencyMs;
      return [
        r.label,
        fmt.int(m.rps),
        vs,
        dir,
        fmt.ms(l.p50),
        fmt.ms(l.p90),
        fmt.ms(l.p99),
        fmt.ms(l.p999),
        errCell(m),
      ];
    });
    out.push(
      table(
        ['scenario', 'ok req/s', 'vs reference', '% of direct', 'p50 ms', 'p90 ms', 'p99 ms', 'p99.9 ms', 'errors'],
        rows,
      ),
      '',
    );
    out.push(
      'wrk latencies are closed-loop (they include coordinated omission); read the open-loop table for tail latency.',
      '',
    );
  }

  const h2 = present(Object.keys(s).filter((id) => id.startsWith('h2/')));
  if (h2.length) {
    const h = settings.h2load;
    out.push(`## HTTP/2 (h2c) — h2load -c ${h.connections} -m ${h.streams} -t ${h.threads} -D ${settings.seconds}`, '');
    // Single hops against HAProxy h2c → h2c (meshlet also against the naive node:http2 proxy),
    // h2 mesh hops against the HAProxy pair; every row also against h2c direct.
    const ref = (r) =>
      r.hop === 'h2-single-hop'
        ? ['h2/haproxy', 'HAProxy']
        : r.hop === 'h2-mesh-hop'
          ? ['h2/mesh-hop/haproxy', 'HAProxy pair']
          : undefined;
    const rows = h2.map((id) => {
      const r = s[id];
      if (!ok(r)) return [r.label, unavailable(r), '', '', '', ''];
      const m = r.metrics;
      const rf = ref(r);
      let vs = id === 'h2/direct' ? '' : rf && ok(s[rf[0]]) ? `${fmt.ratio(m.rps, s[rf[0]].metrics.rps)} ${rf[1]}` : '—';
      if (id === 'h2/meshlet' && ok(s['h2/node-http2']))
        vs += `, ${fmt.ratio(m.rps, s['h2/node-http2'].metrics.rps)} naive node:http2`;
      return [
        r.label,
        fmt.int(m.rps),
        vs,
        id === 'h2/direct' ? 'reference' : ok(s['h2/direct']) ? fmt.ratio(m.rps, s['h2/direct'].metrics.rps) : '—',
        fmt.ms(m.latencyMs?.mean),
        errCell(m),
      ];
    });
    out.push(table(['scenario', 'ok req/s', 'vs reference', 'vs direct', 'mean ms', 'errors'], rows), '');
  }

  const grpc = present(['grpc/direct', 'grpc/meshlet']);
  if (grpc.length) {
    const g = settings.grpc;
    out.push(
      `## gRPC unary — @grpc/grpc-js, ${g.concurrency} calls in flight on ${g.channels} channels, ${g.payloadBytes} B messages, ${settings.seconds}s`,
      '',
    );
    const rows = grpc.map((id) => {
      const r = s[id];
      if (!ok(r)) return [r.label, unavailable(r), '', '', '', '', ''];
      const m = r.metrics;
      return [
        r.label,
        fmt.int(m.rps),
        id === 'grpc/direct'
          ? 'reference'
          : ok(s['grpc/direct'])
            ? fmt.ratio(m.rps, s['grpc/direct'].metrics.rps)
            : '—',
        fmt.ms(m.latencyMs.p50),
        fmt.ms(m.latencyMs.p99),
        fmt.ms(m.latencyMs.p999),
        errCell(m),
      ];
    });
    out.push(table(['scenario', 'calls/s', 'vs direct', 'p50 ms', 'p99 ms', 'p99.9 ms', 'errors'], rows), '');
  }

  const tcp = present(['tcp/direct', 'tcp/haproxy', 'tcp/node', 'tcp/meshlet']);
  if (tcp.length) {
    out.push(
      `## TCP bulk throughput — one connection, 64 KiB writes, ${settings.seconds}s, Node sender → Node receiver`,
      '',
    );
    const rows = tcp.map((id) => {
      const r = s[id];
      if (!ok(r)) return [r.label, unavailable(r), '', ''];
      const m = r.metrics;
      return [
        r.label,
        fmt.int(m.mbPerSec),
        id === 'tcp/direct'
          ? 'reference'
          : ok(s['tcp/direct'])
            ? fmt.ratio(m.mbPerSec, s['tcp/direct'].metrics.mbPerSec)
            : '—',
        m.errors ? 'byte count mismatch ⚠' : 'all bytes delivered',
      ];
    });
    out.push(table(['scenario', 'MB/s', 'vs direct', 'check'], rows), '');
  }

  const ol = present(Object.keys(s).filter((id) => id.startsWith('open-loop/')));
  if (ol.length) {
    const o = settings.openLoop;
    out.push(
      `## Open-loop latency — ${fmt.int(o.rate)} req/s fixed rate, POST ${o.bodyBytes} B → ${o.bodyBytes} B, ${settings.seconds}s after ${settings.warmupSeconds}s warm-up, measured from the scheduled send time`,
      '',
    );
    const d = ok(s['open-loop/direct']) ? s['open-loop/direct'].metrics.latencyMs : undefined;
    const rows = ol.map((id) => {
      const r = s[id];
      if (!ok(r)) return [r.label, unavailable(r), '', '', '', '', '', '', '', ''];
      const m = r.metrics;
      const l = m.latencyMs;
      const add = (k) => (id === 'open-loop/direct' ? 'reference' : d ? fmt.added(l[k], d[k]) : '—');
      return [
        r.label,
        fmt.ms(l.p50),
        fmt.ms(l.p90),
        fmt.ms(l.p99),
        fmt.ms(l.p999),
        add('p50'),
        add('p99'),
        add('p999'),
        fmt.int(m.achievedRate),
        errCell(m),
      ];
    });
    out.push(
      "An added latency below zero means this machine's run-to-run noise is larger than the proxy's cost at that percentile; every round is in results.json.",
      '',
    );
    out.push(
      table(
        [
          'scenario',
          'p50 ms',
          'p90 ms',
          'p99 ms',
          'p99.9 ms',
          'added p50',
          'added p99',
          'added p99.9',
          'achieved req/s',
          'errors',
        ],
        rows,
      ),
      '',
    );
  }

  const mem = results.scenarios.filter(
    (r) => ok(r) && r.memory && (r.kind === 'wrk' || r.kind === 'h2load') && r.id !== 'direct' && r.id !== 'h2/direct',
  );
  if (mem.length) {
    out.push(
      '## Memory — VmRSS of the proxy process tree (/proc/PID/status), idle after start and peak under the wrk (h2load for HTTP/2) load',
      '',
    );
    const rows = mem.map((r) => [r.label, fmt.mib(r.memory.idleKiB), fmt.mib(r.memory.peakKiB)]);
    out.push(table(['proxy', 'idle MiB', 'under load MiB'], rows), '');
  }

  const missing = results.scenarios.filter((r) => !ok(r));
  if (missing.length) {
    out.push('## Not measured', '');
    for (const r of missing) out.push(`- \`${r.id}\` — ${unavailable(r)}`);
    out.push('');
  }
  return `${out.join('\n')}\n`;
}
