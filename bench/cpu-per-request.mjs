#!/usr/bin/env node
// Focused hot-path micro-benchmark: CPU time a proxy process spends per request, the figure that
// stays steady on a shared, noisy machine (throughput moves with whatever else runs; CPU µs per
// request mostly does not). Starts an nginx upstream (13-byte body, HTTP/1.1 and h2c), one proxy
// under test, drives it (wrk -c 50 for HTTP/1.1 clients, h2load -c 10 -m 10 for h2c clients, the
// bench's grpc-js client for gRPC) and reads the proxy's utime+stime from /proc/PID/stat before
// and after. Never asserts anything; prints one line per target. Loopback only, bounded by
// --seconds (and every load generator by a hard timeout).
//
//   node bench/cpu-per-request.mjs [--seconds 5] [--warmup 2] [--targets meshlet,pipe,nginx]
//        [--meshlet-bin /path/bin/meshlet.js] [--node-args "--cpu-prof --cpu-prof-dir=/tmp/prof"]
//        [--concurrency N] [--h2-connections 10] [--h2-streams 10] [--grpc-concurrency 50]
// HTTP/1.1 clients (wrk): pipe (bare Node socket pipe), nginx (nginx proxy), http-proxy, reply-from
//   (Node proxies), meshlet (HTTP/1.1 upstream), meshlet-h2 (h2c upstream), mtls (outbound → mTLS →
//   inbound meshlet pair; CPU of both summed)
// h2c clients (h2load; issue 20): h2-meshlet (h2c → meshlet → h2c upstream), h2-node (the naive
//   node:http2 proxy of bench/servers/node-h2-proxy.mjs), h2-haproxy (h2c → h2c, one thread),
//   h2-mtls (meshlet pair, mTLS with ALPN h2 between them, h2c to the app; both summed),
//   h2-haproxy-mtls (the same with HAProxy), h2-direct (no proxy: the upstream's and h2load's cost)
// gRPC unary (grpc-js client, 50 calls in flight on 2 channels → grpc-js server; the "upstream"
//   column is the gRPC server): grpc-direct, grpc-meshlet (h2c → meshlet → h2c)
// --node-args applies to the Node processes under test (meshlet, h2-node).
// --perf-dir DIR: `perf record -g` of the processes under test during the measured window only, one
//   DIR/<target>.perf.data per target (add --node-args=--perf-basic-prof for JS frame names; read it
//   with `perf report -i FILE --no-children --sort dso,sym`).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { stringify } from 'yaml';
import { makeCerts } from './lib/certs.mjs';
import { freePorts, runToEnd, startProcess, stopAll, waitForPort } from './lib/procs.mjs';
import { runNodeLoad } from './load/child.mjs';
import { h2load } from './load/h2load.mjs';
import { wrk } from './load/wrk.mjs';
import * as haproxy from './servers/haproxy.mjs';
import { bootstrap } from './servers/meshlet-bootstrap.mjs';
import { REPO, probe } from './servers/meshlet.mjs';
import { startProxy, startUpstream } from './servers/nginx.mjs';

const { values: o } = parseArgs({
  options: {
    seconds: { type: 'string', default: '5' },
    warmup: { type: 'string', default: '2' },
    targets: { type: 'string', default: 'meshlet' },
    'meshlet-bin': { type: 'string', default: path.join(REPO, 'bin/meshlet.js') },
    'node-args': { type: 'string', default: '' },
    concurrency: { type: 'string', default: '1' },
    connections: { type: 'string', default: '50' },
    'h2-connections': { type: 'string', default: '10' },
    'h2-streams': { type: 'string', default: '10' },
    'grpc-concurrency': { type: 'string', default: '50' },
    'perf-dir': { type: 'string' },
  },
});
const seconds = Number(o.seconds);
const CLK = 100; // USER_HZ on Linux

/** utime+stime in seconds of a process and its children that have been waited for. */
function cpuSeconds(pid) {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return (Number(rest[11]) + Number(rest[12])) / CLK;
}

/** CPU of this process's waited-for children (cutime+cstime): wrk, once it has exited. */
function reapedChildrenCpu() {
  const f = readFileSync('/proc/self/stat', 'utf8');
  const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return (Number(rest[13]) + Number(rest[14])) / CLK;
}

/** CPU of a process and all its live descendants (workers of --concurrency, nginx workers). */
function treeCpu(pid) {
  let total = 0;
  const seen = new Set();
  const walk = (p) => {
    if (seen.has(p)) return;
    seen.add(p);
    try {
      total += cpuSeconds(p);
      for (const t of readFileSync(`/proc/${p}/task/${p}/children`, 'utf8').trim().split(/\s+/)) if (t) walk(Number(t));
    } catch {
      /* gone */
    }
  };
  walk(pid);
  return total;
}

/** Bare Node socket pipe: the floor for any Node proxy (one upstream connection per client). */
function startPipe(port, upstreamPort) {
  const code = `const net=require('net');net.createServer({noDelay:true},(c)=>{const u=net.connect(${upstreamPort},'127.0.0.1');u.setNoDelay(true);c.pipe(u).pipe(c);c.on('error',()=>u.destroy());u.on('error',()=>c.destroy());}).listen(${port},'127.0.0.1');`;
  return startProcess('pipe', process.execPath, ['-e', code]);
}

const H2_TARGETS = new Set(['h2-meshlet', 'h2-node', 'h2-haproxy', 'h2-mtls', 'h2-haproxy-mtls', 'h2-direct']);
const GRPC_TARGETS = new Set(['grpc-direct', 'grpc-meshlet']);
const nodeArgs = o['node-args'] ? o['node-args'].split(' ') : [];

/** Load for one target: wrk (HTTP/1.1), h2load (h2c prior knowledge) or the grpc-js client. */
async function drive(kind, port, secs) {
  if (kind === 'h2load') {
    const r = await h2load(`http://127.0.0.1:${port}/`, {
      connections: Number(o['h2-connections']),
      streams: Number(o['h2-streams']),
      threads: 2,
      seconds: secs,
    });
    return { ...r, latency: `mean ${r.latencyMs?.mean} ms` };
  }
  if (kind === 'grpc') {
    const g = Number(o['grpc-concurrency']);
    const r = await runNodeLoad('grpc-load.mjs', [`127.0.0.1:${port}`, String(g), '2', String(secs), '13'], (secs + 30) * 1000);
    return { ...r, non2xx: 0, latency: `p50 ${r.latencyMs.p50} ms  p99 ${r.latencyMs.p99} ms` };
  }
  const r = await wrk(`http://127.0.0.1:${port}/`, { connections: Number(o.connections), threads: 2, seconds: secs });
  return { ...r, latency: `p50 ${r.latencyMs.p50} ms  p99 ${r.latencyMs.p99} ms` };
}

async function main() {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'meshlet-cpu-'));
  const ctx = { dir };
  let certs;
  let grpcServer;
  try {
    const [upPort, h2Port, port, adminPort, inPort, admin2, grpcPort] = await freePorts(7);
    const up = await startUpstream(ctx, { port: upPort, h2Port, workers: 1 });
    const start = async (name, opts) => {
      const file = path.join(dir, `${name}.yaml`);
      writeFileSync(file, stringify(bootstrap({ id: name, ...opts })));
      const args = [...nodeArgs, o['meshlet-bin'], 'proxy', '--bootstrap', file, '--log-level', 'warn', '--drain-time-s', '0'];
      if (o.concurrency !== '1') args.push('--concurrency', o.concurrency);
      const p = startProcess(name, process.execPath, args, { cwd: REPO });
      const why = await waitForPort(opts.port, { proc: p, timeoutMs: 15_000 });
      if (why) throw new Error(`${name}: ${why} ${p.output.stderr}`);
      return p;
    };
    /** The meshlet mTLS pair; `h2`: ALPN h2 and HTTP/2 on both clusters, h2c app. */
    const meshletPair = async (h2) => {
      certs ??= makeCerts(dir);
      const inbound = await start('meshlet-inbound', {
        port: inPort,
        adminPort: admin2,
        upstreamPort: h2 ? h2Port : upPort,
        h2Upstream: h2,
        downstreamTls: {
          identity: certs.server,
          ca: certs.ca,
          peerSpiffe: certs.client.spiffe,
          alpn: h2 ? ['h2', 'http/1.1'] : undefined,
        },
      });
      const outbound = await start('meshlet-outbound', {
        port,
        adminPort,
        upstreamPort: inPort,
        h2Upstream: h2,
        upstreamTls: { identity: certs.client, ca: certs.ca, peerSpiffe: certs.server.spiffe, alpn: h2 ? ['h2'] : undefined },
      });
      return [inbound, outbound];
    };
    for (const target of o.targets.split(',')) {
      let proc;
      let procs = [];
      let upstreamPid = up.pid;
      const kind = H2_TARGETS.has(target) ? 'h2load' : GRPC_TARGETS.has(target) ? 'grpc' : 'wrk';
      let loadPort = port;
      if (kind === 'grpc' && !grpcServer) {
        grpcServer = startProcess('grpc-server', process.execPath, [path.join(REPO, 'bench/servers/grpc-server.mjs'), String(grpcPort)]);
        const why = await waitForPort(grpcPort, { proc: grpcServer });
        if (why) throw new Error(why);
      }
      if (kind === 'grpc') upstreamPid = grpcServer.pid;
      if (target === 'pipe') {
        proc = startPipe(port, upPort);
        await waitForPort(port, { proc });
        procs = [proc];
      } else if (target === 'http-proxy' || target === 'reply-from') {
        // the Node proxies of the bench, started exactly as bench/scenarios/proxies.mjs does
        const script = path.join(REPO, 'bench/servers', `${target}-server.mjs`);
        proc = startProcess(target, process.execPath, [script, String(port), `http://127.0.0.1:${upPort}`]);
        await waitForPort(port, { proc });
        procs = [proc];
      } else if (target === 'nginx') {
        proc = await startProxy(ctx, { port, upstreamPort: upPort, workers: 1 });
        procs = [proc];
      } else if (target === 'meshlet' || target === 'meshlet-h2') {
        const h2Upstream = target === 'meshlet-h2';
        procs = [await start('meshlet', { port, adminPort, upstreamPort: h2Upstream ? h2Port : upPort, h2Upstream })];
      } else if (target === 'mtls') {
        procs = await meshletPair(false);
      } else if (target === 'h2-meshlet') {
        procs = [await start('meshlet', { port, adminPort, upstreamPort: h2Port, h2Upstream: true })];
      } else if (target === 'h2-mtls') {
        procs = await meshletPair(true);
      } else if (target === 'grpc-meshlet') {
        procs = [await start('meshlet', { port, adminPort, upstreamPort: grpcPort, h2Upstream: true })];
      } else if (target === 'h2-node') {
        const script = path.join(REPO, 'bench/servers/node-h2-proxy.mjs');
        proc = startProcess(target, process.execPath, [...nodeArgs, script, String(port), String(h2Port)]);
        await waitForPort(port, { proc });
        procs = [proc];
      } else if (target === 'h2-haproxy') {
        procs = [await haproxy.startH2Proxy(ctx, { port, upstreamPort: h2Port, threads: 1 })];
      } else if (target === 'h2-haproxy-mtls') {
        certs ??= makeCerts(dir);
        const inbound = await haproxy.startH2MeshInbound(ctx, { port: inPort, upstreamPort: h2Port, threads: 1, certs });
        procs = [inbound, await haproxy.startH2MeshOutbound(ctx, { port, peerPort: inPort, threads: 1, certs })];
      } else if (target === 'h2-direct') {
        loadPort = h2Port;
      } else if (target === 'grpc-direct') {
        loadPort = grpcPort;
      } else throw new Error(`unknown target ${target}`);
      if (kind === 'wrk') {
        const status = await probe(port);
        if (status !== 200) throw new Error(`probe through ${target} answered ${status}`);
      }
      // warm-up (JIT, pools) then measure
      const warm = await drive(kind, loadPort, Number(o.warmup));
      if (!(warm.requests > 0)) throw new Error(`${target}: no successful request in the warm-up (${warm.lastError ?? ''})`);
      const c0 = procs.reduce((s, p) => s + treeCpu(p.pid), 0);
      const [u0, w0] = [treeCpu(upstreamPid), reapedChildrenCpu()];
      const perf =
        o['perf-dir'] && procs.length
          ? runToEnd(
              'perf',
              ['record', '-F', '1999', '-g', '-o', path.join(o['perf-dir'], `${target}.perf.data`), '-p', procs.map((p) => p.pid).join(','), '--', 'sleep', String(seconds)],
              { timeoutMs: (seconds + 30) * 1000 },
            )
          : undefined;
      const r = await drive(kind, loadPort, seconds);
      if (perf) {
        const pr = await perf;
        if (pr.code !== 0) console.error(`perf record: exit ${pr.code} ${pr.stderr.trim().slice(-300)}`);
      }
      const c1 = procs.reduce((s, p) => s + treeCpu(p.pid), 0);
      const [u1, w1] = [treeCpu(upstreamPid), reapedChildrenCpu()];
      const per = (a, b) => (((b - a) / r.requests) * 1e6).toFixed(1).padStart(6);
      const upName = kind === 'grpc' ? 'grpc server' : 'upstream nginx';
      const loadName = kind === 'wrk' ? 'wrk' : kind === 'h2load' ? 'h2load' : 'grpc client';
      console.log(
        `${target.padEnd(15)} ${Math.round(r.rps).toString().padStart(7)} req/s  ${per(c0, c1)} µs CPU/req  (${upName} ${per(u0, u1)}, ${loadName} ${per(w0, w1)})  ${r.latency}  errors ${r.errors} non2xx ${r.non2xx}`,
      );
      if (procs.length && !['pipe', 'nginx', 'h2-node', 'h2-haproxy', 'h2-haproxy-mtls', 'http-proxy', 'reply-from'].includes(target)) {
        // connection reuse: upstream connections opened vs requests (both sides of a pair)
        for (const a of procs.length === 2 ? [adminPort, admin2] : [adminPort]) {
          const stats = await fetch(`http://127.0.0.1:${a}/stats`).then((x) => x.text(), () => '');
          const cx = stats.split('\n').filter((l) => /upstream_cx_total|upstream_rq_total|ssl.handshake/.test(l) && !/: 0$/.test(l));
          console.log(`  admin ${a}: ${cx.join('; ')}`);
          if (o.concurrency !== '1') {
            // how the kernel (SCHED_NONE) or the primary (rr) spread connections over workers
            const ws = await fetch(`http://127.0.0.1:${a}/workers`).then((x) => x.json(), () => ({ workers: [] }));
            const per = [];
            for (const w of ws.workers) {
              const st = await fetch(`http://127.0.0.1:${w.admin_port}/stats`).then((x) => x.text(), () => '');
              const m = st.match(/^listener\.[^\n]*downstream_cx_total: (\d+)$/m);
              per.push(m ? Number(m[1]) : 0);
            }
            console.log(`  connections per worker: ${per.join(' / ')}`);
          }
        }
      }
      for (const p of procs.reverse()) await p.stop();
      if (procs.length === 0) continue;
      // the port is reused by the next target
      await new Promise((res) => {
        const s = net.connect(port, '127.0.0.1');
        s.on('error', res);
        s.on('connect', () => {
          s.destroy();
          setTimeout(res, 300);
        });
      });
    }
  } finally {
    await stopAll();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch(async (err) => {
  console.error(err);
  await stopAll();
  process.exit(1);
});
