#!/usr/bin/env node
// In-process scrape stalls (issue 18.2): one meshlet (from dist/, or DIST=dir) with N static
// clusters in this process, a 1 ms interval timer beside it, K back-to-back GET /stats/prometheus
// through the admin port; prints each scrape's time, the process's CPU time during it (all
// threads and the in-process reader included: steadier than wall time on a loaded box) and its
// longest event-loop stalls (gaps between timer ticks above T ms), after a 1 s window with no scrape (the noise floor). No
// proxied traffic: this isolates what a scrape itself holds
// the loop for; bench/scrape.mjs measures proxied latency. The in-process reader of the body is
// included in the stalls (it is small: counting bytes). Bounded: K ≤ 50, each scrape ≤ 120 s.
//
//   N=10000 K=6 T=3 [DIST=dir] node bench/scrape-stalls.cjs      (after npm run build)
//   node --cpu-prof bench/scrape-stalls.cjs                        to profile the scrapes
'use strict';
const http = require('node:http');
const path = require('node:path');

const dist = path.resolve(process.env.DIST || path.join(__dirname, '..', 'dist'));
const { decodeBootstrap } = require(path.join(dist, 'proxy/config/bootstrap'));
const { createRegistries } = require(path.join(dist, 'proxy/registry'));
const { MeshletServer } = require(path.join(dist, 'proxy/server'));
const N = Number(process.env.N || 10000);
const K = Math.min(50, Number(process.env.K || 6));
const T = Number(process.env.T || 3);

function scrape(port) {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/stats/prometheus', agent: false }, (r) => {
      let n = 0;
      r.on('data', (d) => (n += d.length));
      r.on('end', () => resolve(n));
    });
    req.setTimeout(120_000, () => req.destroy(new Error('scrape timed out')));
    req.on('error', reject);
  });
}

async function main() {
  const clusters = [];
  for (let i = 0; i < N; i++) {
    clusters.push({
      name: `outbound|${9000 + (i % 20000)}||svc-${i}.bench.svc.cluster.local`,
      type: 'STATIC',
      connect_timeout: '1s',
      load_assignment: {
        cluster_name: `c${i}`,
        endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: 20000 + (i % 20000) } } } }] }],
      },
    });
  }
  const raw = {
    node: { id: 'bench', cluster: 'bench' },
    admin: { address: { socket_address: { address: '127.0.0.1', port_value: 0 } } },
    static_resources: { listeners: [], clusters },
  };
  const registries = createRegistries();
  const { bootstrap } = decodeBootstrap(raw, { httpFilters: registries.httpFilters });
  const server = new MeshletServer({ bootstrap, rawBootstrap: raw, registries });
  await server.start();
  let stalls = [];
  let last = performance.now();
  const iv = setInterval(() => {
    const now = performance.now();
    if (now - last > T) stalls.push(now - last);
    last = now;
  }, 1);
  console.log(`${N} clusters, ${K} scrapes, stalls over ${T} ms; dist ${dist}`);
  // Noise floor: the same timer for 1 s with no scrape (a loaded box deschedules the process too).
  stalls = [];
  await new Promise((r) => setTimeout(r, 1000));
  stalls.sort((a, b) => b - a);
  console.log(`quiet 1 s: ${stalls.length} stalls, longest ${stalls.slice(0, 3).map((x) => x.toFixed(0)).join(', ') || '-'} ms`);
  for (let k = 0; k < K; k++) {
    stalls = [];
    const t = performance.now();
    const cpu0 = process.cpuUsage();
    const bytes = await scrape(server.admin.port);
    const ms = performance.now() - t;
    const cpu = process.cpuUsage(cpu0);
    stalls.sort((a, b) => b - a);
    console.log(
      `scrape ${k + 1}: ${ms.toFixed(0)} ms (process CPU ${((cpu.user + cpu.system) / 1000).toFixed(0)} ms), ${(bytes / 1048576).toFixed(1)} MiB; ${stalls.length} stalls, longest ${stalls.slice(0, 3).map((x) => x.toFixed(0)).join(', ') || '-'} ms`,
    );
  }
  clearInterval(iv);
  await server.close();
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
