#!/usr/bin/env node
// xDS scale benchmark (issue 3/8): a meshlet process driven over ADS receives 1,000 EDS clusters
// and their 10,000 endpoints. Measures, from the control plane's side, the time from sending a
// response to receiving its ACK (meshlet ACKs after the update is decoded and applied) with the
// meshlet's CPU time over the same span, for the first push and for an update that changes every
// cluster and every endpoint, and the meshlet process's resident memory. Loopback only; bounded.
//
//   node bench/xds-scale.mjs [--clusters 1000] [--endpoints-per-cluster 10] [--json]
//                            [--dist DIR] [--cpu-prof DIR]
//
// Needs `npm run build` (uses dist/, or --dist). Prints a table; --json prints machine-readable
// results. bench/MEMORY.md has the figures and where the memory goes.
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync, mkdtempSync } from 'node:fs';
import { createRequire } from 'node:module';
import { loadavg, tmpdir } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const args = process.argv.slice(2);
const arg = (name, def) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : def;
};
// --dist DIR: a compiled tree other than dist/ (e.g. a before/after comparison build).
const distIdx = args.indexOf('--dist');
const dist = distIdx >= 0 ? resolve(args[distIdx + 1]) : join(root, 'dist');
const grpc = require('@grpc/grpc-js');
const { adsServiceDefinition } = require(join(dist, 'xds-client/protos.js'));
const { jsonToAny } = require(join(dist, 'xds-client/proto-json.js'));
// The meshlet under test runs from `dist` (bin/meshlet.js is a one-line launcher of dist/proxy/main.js).
// --cpu-prof DIR: write a V8 CPU profile of the loaded meshlet to DIR (open in Chrome DevTools).
const profIdx = args.indexOf('--cpu-prof');
const profArgs = profIdx >= 0 ? ['--cpu-prof', '--cpu-prof-dir', resolve(args[profIdx + 1])] : [];
const meshletArgs = (bootstrap, node = []) => [...node, '-e', `require(${JSON.stringify(join(dist, 'proxy/main.js'))}).main(process.argv.slice(1))`, 'proxy', '--bootstrap', bootstrap, '--log-level', 'error'];
const CLUSTERS = arg('clusters', 1000);
const PER = arg('endpoints-per-cluster', 10);
const T = {
  cluster: 'type.googleapis.com/envoy.config.cluster.v3.Cluster',
  cla: 'type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment',
  listener: 'type.googleapis.com/envoy.config.listener.v3.Listener',
};

/** CPU time (user + system, ms) the process has used so far: wall time is noisy on a loaded machine. */
function cpuMs(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(f[11]) + Number(f[12])) * 1000) / 100; // utime + stime in clock ticks (USER_HZ = 100)
  } catch {
    return NaN;
  }
}

function rssMiB(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

const clusters = [];
const clas = [];
for (let i = 0; i < CLUSTERS; i++) {
  const name = `svc-${i}`;
  clusters.push({ name, type: 'EDS', connect_timeout: '1s', lb_policy: 'LEAST_REQUEST', eds_cluster_config: { eds_config: { ads: {}, resource_api_version: 'V3' } } });
  const eps = [];
  for (let j = 0; j < PER; j++) {
    const n = i * PER + j;
    eps.push({ endpoint: { address: { socket_address: { address: `10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}`, port_value: 8080 } } } });
  }
  clas.push({ cluster_name: name, endpoints: [{ lb_endpoints: eps }] });
}
// Version 2 of everything (the update figure): every cluster changed (connect_timeout) and every
// endpoint changed (port), so nothing is skipped as unchanged and every cluster is rebuilt.
const clustersV2 = clusters.map((c) => ({ ...c, connect_timeout: '2s' }));
const clasV2 = clas.map((c) => ({
  ...c,
  endpoints: c.endpoints.map((l) => ({
    lb_endpoints: l.lb_endpoints.map((e) => ({ endpoint: { address: { socket_address: { ...e.endpoint.address.socket_address, port_value: 8081 } } } })),
  })),
}));
const t0enc = performance.now();
const encoded = {
  [T.cluster]: clusters.map((c) => jsonToAny({ '@type': T.cluster, ...c })),
  [T.cla]: clas.map((c) => jsonToAny({ '@type': T.cla, ...c })),
  [T.listener]: [],
};
const encodeMs = performance.now() - t0enc;
const encodedV2 = {
  [T.cluster]: clustersV2.map((c) => jsonToAny({ '@type': T.cluster, ...c })),
  [T.cla]: clasV2.map((c) => jsonToAny({ '@type': T.cla, ...c })),
};

let nonce = 0;
/** nonce → { t, at, cpu } when sent; acks: nonce → { at, cpu } when ACKed. */
const sentAt = new Map();
const acks = new Map();
const ackWaiters = new Map();
let adsCall;
function push(call, t, version, resources) {
  const n = String(++nonce);
  sentAt.set(n, { t, at: performance.now(), cpu: cpuMs(proc.pid) });
  call.write({ version_info: version, type_url: t, nonce: n, resources });
  return n;
}
const firstNonce = new Map();
const server = new grpc.Server();
server.addService(adsServiceDefinition(), {
  StreamAggregatedResources: (call) => {
    adsCall = call;
    call.on('data', (req) => {
      const t = req.type_url;
      const n = req.response_nonce;
      if (n && sentAt.has(n) && !acks.has(n) && !req.error_detail) {
        acks.set(n, { at: performance.now(), cpu: cpuMs(proc.pid) });
        ackWaiters.get(n)?.();
      }
      if (req.error_detail) console.error(`NACK ${t}: ${req.error_detail.message}`);
      if (!firstNonce.has(t) && encoded[t]) firstNonce.set(t, push(call, t, '1', encoded[t]));
    });
    call.on('error', () => {});
  },
  DeltaAggregatedResources: (call) => call.end(),
});
const port = await new Promise((res, rej) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? rej(e) : res(p))));

const dir = mkdtempSync(join(tmpdir(), 'meshlet-xds-scale-'));
const boot = join(dir, 'bootstrap.json');
writeFileSync(
  boot,
  JSON.stringify({
    node: { id: 'scale', cluster: 'scale' },
    admin: { address: { socket_address: { address: '127.0.0.1', port_value: 0 } } },
    dynamic_resources: {
      ads_config: { api_type: 'GRPC', transport_api_version: 'V3', grpc_services: [{ envoy_grpc: { cluster_name: 'xds' } }] },
      cds_config: { ads: {}, resource_api_version: 'V3' },
      lds_config: { ads: {}, resource_api_version: 'V3' },
    },
    static_resources: {
      clusters: [
        {
          name: 'xds',
          type: 'STATIC',
          typed_extension_protocol_options: {
            'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
              '@type': 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
              explicit_http_config: { http2_protocol_options: {} },
            },
          },
          load_assignment: { cluster_name: 'xds', endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: port } } } }] }] },
        },
      ],
    },
  }),
);

// Idle memory of a meshlet with no xDS yet: start it against a port nobody answers first? Simpler:
// measure right after start, before the big responses are applied (the first CDS send waits for
// the client's subscription, which comes immediately; so sample a static meshlet separately).
const idle = spawn(process.execPath, meshletArgs(join(root, 'bench/xds-scale-idle.json')), { stdio: 'ignore' });
await new Promise((r) => setTimeout(r, 1500));
const idleRss = rssMiB(idle.pid);
idle.kill('SIGKILL');

const proc = spawn(process.execPath, meshletArgs(boot, profArgs), { stdio: ['ignore', 'ignore', 'inherit'] });
const deadline = setTimeout(() => {
  console.error('xds-scale: timed out after 120 s');
  proc.kill('SIGKILL');
  process.exit(1);
}, 120_000);
const waitNonce = (n) => new Promise((res) => (acks.has(n) ? res() : ackWaiters.set(n, res)));
const waitFirst = async (t) => {
  while (!firstNonce.has(t)) await new Promise((r) => setTimeout(r, 10));
  await waitNonce(firstNonce.get(t));
  return firstNonce.get(t);
};
const took = (n) => ({ ms: acks.get(n).at - sentAt.get(n).at, cpu: acks.get(n).cpu - sentAt.get(n).cpu });
const cds1 = took(await waitFirst(T.cluster));
const eds1 = took(await waitFirst(T.cla));
await new Promise((r) => setTimeout(r, 500));
const loadedRss = rssMiB(proc.pid);
// The update: version 2 of every cluster, then of every assignment (warm process, protos loaded).
const nCds2 = push(adsCall, T.cluster, '2', encodedV2[T.cluster]);
await waitNonce(nCds2);
const nEds2 = push(adsCall, T.cla, '2', encodedV2[T.cla]);
await waitNonce(nEds2);
const cds2 = took(nCds2);
const eds2 = took(nEds2);
await new Promise((r) => setTimeout(r, 500));
const updatedRss = rssMiB(proc.pid);
proc.kill('SIGTERM');
clearTimeout(deadline);
if (profArgs.length) await new Promise((r) => proc.once('exit', r)); // the profile is written on exit
server.forceShutdown();

const result = {
  date: new Date().toISOString(),
  clusters: CLUSTERS,
  endpoints: CLUSTERS * PER,
  cds_send_to_ack_ms: Math.round(cds1.ms),
  eds_send_to_ack_ms: Math.round(eds1.ms),
  cds_cpu_ms: Math.round(cds1.cpu),
  eds_cpu_ms: Math.round(eds1.cpu),
  cds_update_send_to_ack_ms: Math.round(cds2.ms),
  eds_update_send_to_ack_ms: Math.round(eds2.ms),
  cds_update_cpu_ms: Math.round(cds2.cpu),
  eds_update_cpu_ms: Math.round(eds2.cpu),
  rss_idle_mib: Math.round(idleRss * 10) / 10,
  rss_loaded_mib: Math.round(loadedRss * 10) / 10,
  rss_after_update_mib: Math.round(updatedRss * 10) / 10,
  control_plane_encode_ms: Math.round(encodeMs),
  load_average: loadavg().map((x) => Math.round(x * 10) / 10),
};
if (args.includes('--json')) console.log(JSON.stringify(result));
else {
  const r = result;
  console.log(`| xDS scale (${CLUSTERS} clusters, ${CLUSTERS * PER} endpoints; load average ${r.load_average.join(' ')}) | wall | meshlet CPU |`);
  console.log('|:---|---:|---:|');
  console.log(`| first CDS response → ACK (decoded, validated, clusters created) | ${r.cds_send_to_ack_ms} ms | ${r.cds_cpu_ms} ms |`);
  console.log(`| first EDS response → ACK (all assignments applied) | ${r.eds_send_to_ack_ms} ms | ${r.eds_cpu_ms} ms |`);
  console.log(`| CDS update (every cluster changed) → ACK | ${r.cds_update_send_to_ack_ms} ms | ${r.cds_update_cpu_ms} ms |`);
  console.log(`| EDS update (every endpoint changed) → ACK | ${r.eds_update_send_to_ack_ms} ms | ${r.eds_update_cpu_ms} ms |`);
  console.log(`| RSS idle (static bootstrap, no xDS) | ${r.rss_idle_mib} MiB | |`);
  console.log(`| RSS with all clusters and endpoints loaded | ${r.rss_loaded_mib} MiB | |`);
  console.log(`| RSS after the update | ${r.rss_after_update_mib} MiB | |`);
  console.log('\nCPU time is user + system of the meshlet process from /proc (10 ms ticks); wall time includes the wait for a loaded machine.');
}
process.exit(0);
