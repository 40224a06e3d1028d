#!/usr/bin/env node
// Where meshlet's resident memory goes (issue 8's memory goals; bench/MEMORY.md): loads the
// compiled proxy stage by stage in this process — the static sidecar's module graph, the xDS side,
// the Envoy descriptors, 1,000 EDS clusters and their 10,000 endpoints — and after each stage
// prints RSS and process.memoryUsage() / V8 heap statistics after a full GC: V8 heap used, heap
// committed per space (new space is where start-up allocation bursts leave committed pages),
// external memory, and code + bytecode. No sockets; bounded.
//
//   node bench/memory-breakdown.mjs [--dist DIR] [--json]
//
// Run it under different V8 flags to see their effect, e.g. NODE_OPTIONS=--max-semi-space-size=1.
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import v8 from 'node:v8';

if (typeof globalThis.gc !== 'function') {
  // Needs --expose-gc for comparable after-GC figures: re-run with it.
  const r = spawnSync(process.execPath, ['--expose-gc', fileURLToPath(import.meta.url), ...process.argv.slice(2)], { stdio: 'inherit' });
  process.exit(r.status ?? 1);
}

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const distIdx = args.indexOf('--dist');
const dist = distIdx >= 0 ? resolve(args[distIdx + 1]) : join(root, 'dist');
const require = createRequire(join(root, 'package.json'));
const MiB = (x) => Math.round((x / 1048576) * 10) / 10;

const rows = [];
function stage(label) {
  globalThis.gc();
  globalThis.gc();
  const m = process.memoryUsage();
  const code = v8.getHeapCodeStatistics();
  const spaces = Object.fromEntries(v8.getHeapSpaceStatistics().map((s) => [s.space_name, MiB(s.space_size)]));
  rows.push({
    stage: label,
    rss: MiB(m.rss),
    heap_used: MiB(m.heapUsed),
    heap_committed: MiB(m.heapTotal),
    new_space: spaces.new_space,
    old_space: spaces.old_space,
    external: MiB(m.external),
    code_and_bytecode: MiB(code.code_and_metadata_size + code.bytecode_and_metadata_size),
  });
}

stage('bare node');
require(join(dist, 'proxy/server.js'));
require(join(dist, 'proxy/cli/proxy.js'));
stage('+ static sidecar module graph (cli/proxy, server)');
require(join(dist, 'proxy/dynamic/xds-config.js'));
require('@grpc/grpc-js');
stage('+ xDS side (xds-config, xds-client, @grpc/grpc-js)');
const protos = require(join(dist, 'xds-client/protos.js'));
protos.adsServiceDefinition();
stage('+ Envoy descriptors (resource Root, ADS service)');
const { ClusterManager } = require(join(dist, 'proxy/upstream/cluster-manager.js'));
const { decodeCluster, decodeClusterLoadAssignment } = require(join(dist, 'proxy/config/envoy/index.js'));
const { createRegistries } = require(join(dist, 'proxy/registry.js'));
const ctx = { httpFilters: createRegistries().httpFilters };
const cm = new ClusterManager({
  poolFactory: () => {
    throw new Error('no traffic in this benchmark');
  },
});
const clas = [];
for (let i = 0; i < 1000; i++) {
  const name = `svc-${i}`;
  cm.addOrUpdate(decodeCluster({ name, type: 'EDS', connect_timeout: '1s', lb_policy: 'LEAST_REQUEST', eds_cluster_config: { eds_config: { ads: {} } } }, ctx).value, { addedViaApi: true });
  const eps = [];
  for (let j = 0; j < 10; j++) {
    const n = i * 10 + j;
    eps.push({ endpoint: { address: { socket_address: { address: `10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}`, port_value: 8080 } } } });
  }
  clas.push(decodeClusterLoadAssignment({ cluster_name: name, endpoints: [{ lb_endpoints: eps }] }, ctx).value);
}
stage('+ 1,000 EDS clusters (warming)');
for (const c of clas) cm.updateEdsService(c.clusterName, c);
stage('+ 10,000 endpoints applied');
cm.destroy();

if (args.includes('--json')) console.log(JSON.stringify(rows));
else {
  console.log(`| stage (NODE_OPTIONS=${process.env.NODE_OPTIONS ?? ''}) | RSS | V8 heap used | heap committed | of which new space | external | code+bytecode |`);
  console.log('|:---|---:|---:|---:|---:|---:|---:|');
  for (const r of rows) console.log(`| ${r.stage} | ${r.rss} | ${r.heap_used} | ${r.heap_committed} | ${r.new_space} | ${r.external} | ${r.code_and_bytecode} |`);
  console.log('\nMiB, after two full GCs at each stage.');
}
process.exit(0);
