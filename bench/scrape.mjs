#!/usr/bin/env node
// Scrape benchmark (issue 18.2): a meshlet process with N static clusters (one of them routed to a
// local upstream) serves a steady closed loop of proxied HTTP/1.1 requests; first for a window
// with no scrapes, then for a window in which GET /stats/prometheus (on the 15090-style
// --stats-port, what Prometheus scrapes) runs back to back. Reports the
// scrape time and the proxied request latency (p50/p99/max) in both windows, so the cost a scrape
// adds to proxied traffic is the difference, the latency of just the requests that overlapped a
// scrape (with --interval MS the scrapes are paced as Prometheus's scrape_interval paces them,
// instead of back to back), and meshlet's own event-loop delay in each window
// (max = the longest stall), measured inside the meshlet process by lib/loop-monitor.cjs. The
// scrapes run in a child process (load/scrape-loop.mjs), so reading the bodies does not slow the
// proxied-load client. One scrape runs before the measured windows (warm-up); the first scrape
// after start-up costs more (bench/SCRAPE.md). Loopback only; bounded in time and requests.
//
//   node bench/scrape.mjs [--clusters 1000,3000,10000] [--seconds 4] [--interval MS] [--gzip]
//                         [--scraper-nice N] [--via stats|agent|listener] [--dist DIR] [--json]
// --gzip: the scraper sends Accept-Encoding: gzip (as Prometheus does) and decodes the body.
// --scraper-nice N: runs the scraper at that nice level (e.g. 19: it then takes CPU only when a
//   core is idle, as a Prometheus on another machine would; on 2 shared cores a full-speed
//   scraper otherwise competes with meshlet and the load client).
//
// Needs `npm run build` (uses dist/, or --dist DIR for a before/after comparison build).
// Figures are in bench/SCRAPE.md.
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : def;
};
const dist = resolve(opt('dist', join(root, 'dist')));
const SIZES = String(opt('clusters', '1000,3000,10000')).split(',').map(Number);
const SECONDS = Number(opt('seconds', '4'));
const INTERVAL = Number(opt('interval', '0'));
const SCRAPER_NICE = Number(opt('scraper-nice', '0'));
const GZIP = args.includes('--gzip');
// --via agent: scrape the agent's merged /stats/prometheus (15020-style --status-port, what Istio's
// prometheus.io annotations point at) instead of the 15090-style --stats-port; --via listener: a
// bootstrap listener that routes /stats/prometheus to the admin port through a prometheus_stats
// cluster with a gzip compressor filter, the shape of Istio's own bootstrap 15090 listener.
const VIA = String(opt('via', 'stats'));
if (!['stats', 'agent', 'listener'].includes(VIA)) throw new Error('--via takes stats, agent or listener');
const JSON_OUT = args.includes('--json');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function upstream() {
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => res.writeHead(200, { 'content-length': 2 }).end('ok'));
  });
  return new Promise((r) => server.listen(0, '127.0.0.1', () => r(server)));
}

/** Istio's bootstrap 15090 listener, in shape: /stats/prometheus → prometheus_stats (the admin) with gzip. */
function statsListener(port) {
  const hcm = 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager';
  return {
    name: 'stats',
    address: { socket_address: { address: '127.0.0.1', port_value: port } },
    filter_chains: [
      {
        filters: [
          {
            name: 'envoy.filters.network.http_connection_manager',
            typed_config: {
              '@type': hcm,
              stat_prefix: 'stats',
              route_config: {
                virtual_hosts: [{ name: 'backend', domains: ['*'], routes: [{ match: { prefix: '/stats/prometheus' }, route: { cluster: 'prometheus_stats' } }] }],
              },
              http_filters: [
                {
                  name: 'envoy.filters.http.compressor.gzip',
                  typed_config: {
                    '@type': 'type.googleapis.com/envoy.extensions.filters.http.compressor.v3.Compressor',
                    compressor_library: { name: 'stats_gzip', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.compression.gzip.compressor.v3.Gzip' } },
                    response_direction_config: { common_config: { content_type: ['text/plain', 'application/openmetrics-text'] } },
                  },
                },
                { name: 'envoy.filters.http.router', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router' } },
              ],
            },
          },
        ],
      },
    ],
  };
}

function bootstrapFor(n, upPort, listenPort, adminPort, listenerPort) {
  const clusters = [];
  for (let i = 0; i < n; i++) {
    const port = i === 0 ? upPort : 20000 + (i % 20000);
    clusters.push({
      name: i === 0 ? 'app' : `outbound|${port}||svc-${i}.bench.svc.cluster.local`,
      type: 'STATIC',
      connect_timeout: '1s',
      load_assignment: {
        cluster_name: `c${i}`,
        endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: port } } } }] }],
      },
    });
  }
  const b = {
    node: { id: 'bench', cluster: 'bench' },
    admin: { address: { socket_address: { address: '127.0.0.1', port_value: adminPort } } },
    static_resources: {
      listeners: [
        {
          name: 'in',
          address: { socket_address: { address: '127.0.0.1', port_value: listenPort } },
          filter_chains: [
            {
              filters: [
                {
                  name: 'envoy.filters.network.http_connection_manager',
                  typed_config: {
                    '@type': 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
                    stat_prefix: 'in',
                    route_config: { virtual_hosts: [{ name: 'all', domains: ['*'], routes: [{ match: { prefix: '/' }, route: { cluster: 'app' } }] }] },
                    http_filters: [{ name: 'envoy.filters.http.router', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router' } }],
                  },
                },
              ],
            },
          ],
        },
      ],
      clusters,
    },
  };
  if (listenerPort !== undefined) {
    b.static_resources.listeners.push(statsListener(listenerPort));
    b.static_resources.clusters.push({
      name: 'prometheus_stats',
      type: 'STATIC',
      connect_timeout: '1s',
      load_assignment: {
        cluster_name: 'prometheus_stats',
        endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: adminPort } } } }] }],
      },
    });
  }
  return b;
}

function freePort() {
  return new Promise((r) => {
    const s = http.createServer();
    s.listen(0, '127.0.0.1', () => {
      const p = s.address().port;
      s.close(() => r(p));
    });
  });
}

function get(port, path, agent) {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent }, (res) => {
      let n = 0;
      res.on('data', (c) => (n += c.length));
      res.on('end', () => resolve({ status: res.statusCode, bytes: n }));
    });
    req.setTimeout(60_000, () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

async function waitReady(adminPort) {
  const end = Date.now() + 120_000;
  while (Date.now() < end) {
    try {
      if ((await get(adminPort, '/ready', false)).status === 200) return;
    } catch {
      // not listening yet
    }
    await sleep(200);
  }
  throw new Error('meshlet did not become ready');
}

function pct(sorted, p) {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/** Latency figures of a list of request durations (ms). */
function summary(lat) {
  lat.sort((a, b) => a - b);
  return { n: lat.length, p50: pct(lat, 50), p99: pct(lat, 99), max: lat[lat.length - 1] };
}

/** The durations of the requests (spans [start, end]) that overlapped one of `scrapes` (sorted spans). */
function during(requests, scrapes) {
  const out = [];
  let j = 0;
  for (const [s, e] of requests) {
    while (j < scrapes.length && scrapes[j][1] <= s) j++;
    if (j < scrapes.length && scrapes[j][0] < e) out.push(e - s);
  }
  return summary(out);
}

/** A closed loop of 2 keep-alive clients for `ms`; latencies in ms, and each request's span. */
async function load(port, ms) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 2 });
  const lat = [];
  const spans = [];
  const end = Date.now() + ms;
  let errors = 0;
  const worker = async () => {
    while (Date.now() < end && lat.length < 200_000) {
      const t = performance.now();
      try {
        const r = await get(port, '/x', agent);
        if (r.status !== 200) errors++;
      } catch {
        errors++;
      }
      const now = performance.now();
      lat.push(now - t);
      spans.push([performance.timeOrigin + t, performance.timeOrigin + now]);
    }
  };
  await Promise.all([worker(), worker()]);
  agent.destroy();
  spans.sort((a, b) => a[0] - b[0]);
  return { ...summary(lat), errors, spans };
}

/** Back-to-back scrapes for `seconds` in a child process; resolves with {n, bytes, p50, max}. */
function scrapes(port, seconds) {
  return new Promise((resolve, reject) => {
    const argv = [join(root, 'bench/load/scrape-loop.mjs'), String(port), String(seconds), String(INTERVAL), GZIP ? '1' : '0'];
    const child = spawn(SCRAPER_NICE !== 0 ? 'nice' : process.execPath, SCRAPER_NICE !== 0 ? ['-n', String(SCRAPER_NICE), process.execPath, ...argv] : argv, {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (c) => (out += c));
    const t = setTimeout(() => child.kill('SIGKILL'), (seconds + 150) * 1000);
    child.on('exit', () => {
      clearTimeout(t);
      try {
        resolve(JSON.parse(out.trim().split('\n').pop()));
      } catch {
        reject(new Error(`scrape loop printed no result: ${out.slice(-200)}`));
      }
    });
  });
}

/** Meshlet's event-loop delay since the last call (lib/loop-monitor.cjs, via SIGUSR2). */
function loopDelay(child, lines) {
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve({ max: NaN, p99: NaN }), 5000);
    lines.next = (v) => {
      clearTimeout(t);
      resolve(v);
    };
    child.kill('SIGUSR2');
  });
}

async function one(n) {
  const up = await upstream();
  const listenPort = await freePort();
  const adminPort = await freePort();
  const statsPort = await freePort();
  const statusPort = await freePort();
  const listenerPort = VIA === 'listener' ? await freePort() : undefined;
  const scrapePort = VIA === 'agent' ? statusPort : VIA === 'listener' ? listenerPort : statsPort;
  const dir = mkdtempSync(join(tmpdir(), 'meshlet-scrape-'));
  const file = join(dir, 'bootstrap.json');
  writeFileSync(file, JSON.stringify(bootstrapFor(n, up.address().port, listenPort, adminPort, listenerPort)));
  const child = spawn(
    process.execPath,
    [
      '-r',
      join(root, 'bench/lib/loop-monitor.cjs'),
      '-e',
      `require(${JSON.stringify(join(dist, 'proxy/main.js'))}).main(process.argv.slice(1))`,
      'proxy',
      '--bootstrap',
      file,
      '--stats-port',
      String(statsPort),
      '--status-port',
      String(statusPort),
      '--log-level',
      'error',
    ],
    { stdio: ['ignore', 'inherit', 'pipe'] },
  );
  const lines = { next: undefined };
  let errBuf = '';
  child.stderr.on('data', (c) => {
    errBuf += c;
    let i;
    while ((i = errBuf.indexOf('\n')) >= 0) {
      const line = errBuf.slice(0, i);
      errBuf = errBuf.slice(i + 1);
      if (line.startsWith('LOOPDELAY ')) lines.next?.(JSON.parse(line.slice(10)));
      else process.stderr.write(`${line}\n`);
    }
  });
  try {
    await waitReady(adminPort);
    await load(listenPort, 1000); // warm-up
    // One scrape first, as a Prometheus that scrapes every 15 s has done long before: the first
    // one after start-up also compiles the render path and builds the label caches.
    await get(scrapePort, '/stats/prometheus', false);
    await loopDelay(child, lines); // starts the quiet window
    const quiet = await load(listenPort, SECONDS * 1000);
    const quietLoop = await loopDelay(child, lines);
    // the scrape loop runs a little longer than the proxied load, so scrapes cover the window
    const scraping = scrapes(scrapePort, SECONDS + 1);
    const busy = await load(listenPort, SECONDS * 1000);
    const busyLoop = await loopDelay(child, lines);
    const scrape = await scraping;
    const overlapped = during(busy.spans, scrape.spans);
    delete quiet.spans;
    delete busy.spans;
    delete scrape.spans;
    return { clusters: n, quiet, busy, overlapped, scrape, quietLoop, busyLoop };
  } finally {
    child.kill('SIGKILL');
    up.close();
  }
}

const results = [];
for (const n of SIZES) results.push(await one(n));
if (JSON_OUT) {
  console.log(JSON.stringify({ load: loadavg(), results }, null, 2));
} else {
  const f = (x) => (Number.isFinite(x) ? x.toFixed(1) : '-');
  const pace = `${INTERVAL > 0 ? `one scrape every ${INTERVAL} ms` : 'scrapes back to back'}${GZIP ? ', gzip' : ''}${SCRAPER_NICE ? `, scraper nice ${SCRAPER_NICE}` : ''}, via the ${{ agent: 'agent port (15020-style)', listener: 'Istio-style 15090 listener to the admin', stats: 'stats port (15090-style)' }[VIA]}`;
  console.log(`load average ${loadavg().map((x) => x.toFixed(2)).join(' ')}; ${SECONDS} s per window; ${pace}; dist ${dist}`);
  console.log(
    'clusters | scrapes | scrape p50 ms | scrape max ms | body KiB (on the wire) | no scrape p50/p99/max ms | scraping p50/p99/max ms | overlapping a scrape p50/p99/max ms (n) | requests (quiet/scraping) | meshlet loop delay p99/max ms, quiet | scraping',
  );
  for (const r of results) {
    console.log(
      `${r.clusters} | ${r.scrape.n} | ${f(r.scrape.p50)} | ${f(r.scrape.max)} | ${(r.scrape.bytes / 1024).toFixed(0)} (${(r.scrape.wireBytesPerScrape / 1024).toFixed(0)}) | ` +
        `${f(r.quiet.p50)}/${f(r.quiet.p99)}/${f(r.quiet.max)} | ${f(r.busy.p50)}/${f(r.busy.p99)}/${f(r.busy.max)} | ` +
        `${f(r.overlapped.p50)}/${f(r.overlapped.p99)}/${f(r.overlapped.max)} (${r.overlapped.n}) | ${r.quiet.n}/${r.busy.n} | ` +
        `${f(r.quietLoop.p99)}/${f(r.quietLoop.max)} | ${f(r.busyLoop.p99)}/${f(r.busyLoop.max)}`,
    );
  }
}
