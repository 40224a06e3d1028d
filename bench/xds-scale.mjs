#!/usr/bin/env node
// xDS scale benchmark (issue 3/8): a meshlet process driven over ADS receives 1,000 EDS clusters
// and their 10,000 endpoints. Measures, from the control plane's side, the time from sending a
// response to receiving its ACK (meshlet ACKs after the update is decoded and applied), and the
// meshlet process's resident memory before and after. Loopback only; bounded in time.
//
//   node bench/xds-scale.mjs [--clusters 1000] [--endpoints-per-cluster 10] [--json]
//
// Needs `npm run build` (uses dist/). Prints a table; --json prints machine-readable results.
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync, mkdtempSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import http from 'node:http';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const grpc = require('@grpc/grpc-js');
const { adsServiceDefinition } = require(join(root, 'dist/xds-client/protos.js'));
const { jsonToAny } = require(join(root, 'dist/xds-client/proto-json.js'));

const args = process.argv.slice(2);
const arg = (name, def) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : def;
};
const CLUSTERS = arg('clusters', 1000);
const PER = arg('endpoints-per-cluster', 10);
const T = {
  cluster: 'type.googleapis.com/envoy.config.cluster.v3.Cluster',
  cla: 'type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment',
  listener: 'type.googleapis.com/envoy.config.listener.v3.Listener',
};

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
const t0enc = performance.now();
const encoded = {
  [T.cluster]: clusters.map((c) => jsonToAny({ '@type': T.cluster, ...c })),
  [T.cla]: clas.map((c) => jsonToAny({ '@type': T.cla, ...c })),
  [T.listener]: [],
};
const encodeMs = performance.now() - t0enc;

let nonce = 0;
const sentAt = new Map();
const ackAt = new Map();
let resolveAck;
const server = new grpc.Server();
server.addService(adsServiceDefinition(), {
  StreamAggregatedResources: (call) => {
    const sent = new Set();
    call.on('data', (req) => {
      const t = req.type_url;
      if (req.response_nonce && sentAt.has(req.response_nonce) && !req.error_detail) {
        ackAt.set(t, performance.now());
        resolveAck?.(t);
      }
      if (req.error_detail) console.error(`NACK ${t}: ${req.error_detail.message}`);
      if (!sent.has(t) && encoded[t]) {
        sent.add(t);
        const n = String(++nonce);
        sentAt.set(n, { t, at: performance.now() });
        call.write({ version_info: '1', type_url: t, nonce: n, resources: encoded[t] });
      }
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
const idle = spawn(process.execPath, [join(root, 'bin/meshlet.js'), 'proxy', '--bootstrap', join(root, 'bench/xds-scale-idle.json'), '--log-level', 'error'], { stdio: 'ignore' });
await new Promise((r) => setTimeout(r, 1500));
const idleRss = rssMiB(idle.pid);
idle.kill('SIGKILL');

const proc = spawn(process.execPath, [join(root, 'bin/meshlet.js'), 'proxy', '--bootstrap', boot, '--log-level', 'error'], { stdio: ['ignore', 'ignore', 'inherit'] });
const deadline = setTimeout(() => {
  console.error('xds-scale: timed out after 120 s');
  proc.kill('SIGKILL');
  process.exit(1);
}, 120_000);
const waitAck = (t) =>
  new Promise((res) => {
    if (ackAt.has(t)) return res();
    const prev = resolveAck;
    resolveAck = (x) => {
      prev?.(x);
      if (x === t) res();
    };
  });
await waitAck(T.cluster);
await waitAck(T.cla);
const sentOf = (t) => [...sentAt.values()].find((s) => s.t === t).at;
const cdsMs = ackAt.get(T.cluster) - sentOf(T.cluster);
const edsMs = ackAt.get(T.cla) - sentOf(T.cla);
await new Promise((r) => setTimeout(r, 500));
global.gc?.();
const loadedRss = rssMiB(proc.pid);
proc.kill('SIGTERM');
clearTimeout(deadline);
server.forceShutdown();

const result = {
  date: new Date().toISOString(),
  clusters: CLUSTERS,
  endpoints: CLUSTERS * PER,
  cds_send_to_ack_ms: Math.round(cdsMs),
  eds_send_to_ack_ms: Math.round(edsMs),
  rss_idle_mib: Math.round(idleRss * 10) / 10,
  rss_loaded_mib: Math.round(loadedRss * 10) / 10,
  control_plane_encode_ms: Math.round(encodeMs),
};
if (args.includes('--json')) console.log(JSON.stringify(result));
else {
  console.log(`| xDS scale (${CLUSTERS} clusters, ${CLUSTERS * PER} endpoints) | value |`);
  console.log('|:---|---:|');
  console.log(`| CDS response → ACK (decoded, validated, clusters created) | ${result.cds_send_to_ack_ms} ms |`);
  console.log(`| EDS response → ACK (all assignments applied) | ${result.eds_send_to_ack_ms} ms |`);
  console.log(`| RSS idle (static bootstrap, no xDS) | ${result.rss_idle_mib} MiB |`);
  console.log(`| RSS with all clusters and endpoints loaded | ${result.rss_loaded_mib} MiB |`);
}
process.exit(0);
