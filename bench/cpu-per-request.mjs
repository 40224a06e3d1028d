#!/usr/bin/env node
// Focused hot-path micro-benchmark: CPU time a proxy process spends per request, the figure that
// stays steady on a shared, noisy machine (throughput moves with whatever else runs; CPU µs per
// request mostly does not). Starts an nginx upstream (13-byte body), one proxy under test, drives
// it with wrk (50 connections) and reads the proxy's utime+stime from /proc/PID/stat before and
// after. Never asserts anything; prints one line per target. Loopback only, bounded by --seconds.
//
//   node bench/cpu-per-request.mjs [--seconds 5] [--targets meshlet,pipe,nginx]
//        [--meshlet-bin /path/bin/meshlet.js] [--node-args "--cpu-prof --cpu-prof-dir=/tmp/prof"]
//        [--concurrency N]
// targets: pipe (bare Node socket pipe), nginx (nginx proxy), http-proxy, reply-from (Node proxies), meshlet (HTTP/1.1 upstream),
// meshlet-h2 (h2c upstream), mtls (outbound → mTLS → inbound meshlet pair; CPU of both summed)
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { stringify } from 'yaml';
import { makeCerts } from './lib/certs.mjs';
import { freePorts, startProcess, stopAll, waitForPort } from './lib/procs.mjs';
import { wrk } from './load/wrk.mjs';
import { bootstrap } from './servers/meshlet-bootstrap.mjs';
import { REPO, probe } from './servers/meshlet.mjs';
import { startProxy, startUpstream } from './servers/nginx.mjs';

const { values: o } = parseArgs({
  options: {
    seconds: { type: 'string', default: '5' },
    targets: { type: 'string', default: 'meshlet' },
    'meshlet-bin': { type: 'string', default: path.join(REPO, 'bin/meshlet.js') },
    'node-args': { type: 'string', default: '' },
    concurrency: { type: 'string', default: '1' },
    connections: { type: 'string', default: '50' },
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

async function main() {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'meshlet-cpu-'));
  const ctx = { dir };
  try {
    const [upPort, h2Port, port, adminPort, inPort, admin2] = await freePorts(6);
    const up = await startUpstream(ctx, { port: upPort, h2Port, workers: 1 });
    for (const target of o.targets.split(',')) {
      let proc;
      let procs = [];
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
      } else if (target === 'meshlet' || target === 'mtls' || target === 'meshlet-h2') {
        const nodeArgs = o['node-args'] ? o['node-args'].split(' ') : [];
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
        if (target === 'meshlet' || target === 'meshlet-h2') {
          const h2Upstream = target === 'meshlet-h2';
          procs = [await start('meshlet', { port, adminPort, upstreamPort: h2Upstream ? h2Port : upPort, h2Upstream })];
        } else {
          const certs = await makeCerts(dir);
          procs = [
            await start('meshlet-inbound', {
              port: inPort,
              adminPort: admin2,
              upstreamPort: upPort,
              downstreamTls: { identity: certs.server, ca: certs.ca, peerSpiffe: certs.client.spiffe },
            }),
          ];
          procs.push(
            await start('meshlet-outbound', {
              port,
              adminPort,
              upstreamPort: inPort,
              upstreamTls: { identity: certs.client, ca: certs.ca, peerSpiffe: certs.server.spiffe },
            }),
          );
        }
      } else throw new Error(`unknown target ${target}`);
      const status = await probe(port);
      if (status !== 200) throw new Error(`probe through ${target} answered ${status}`);
      // warm-up (JIT) then measure
      await wrk(`http://127.0.0.1:${port}/`, { connections: Number(o.connections), threads: 2, seconds: 2 });
      const c0 = procs.reduce((s, p) => s + treeCpu(p.pid), 0);
      const [u0, w0] = [treeCpu(up.pid), reapedChildrenCpu()];
      const r = await wrk(`http://127.0.0.1:${port}/`, { connections: Number(o.connections), threads: 2, seconds });
      const c1 = procs.reduce((s, p) => s + treeCpu(p.pid), 0);
      const [u1, w1] = [treeCpu(up.pid), reapedChildrenCpu()];
      const per = (a, b) => (((b - a) / r.requests) * 1e6).toFixed(1).padStart(6);
      console.log(
        `${target.padEnd(8)} ${Math.round(r.rps).toString().padStart(7)} req/s  ${per(c0, c1)} µs CPU/req  (upstream nginx ${per(u0, u1)}, wrk ${per(w0, w1)})  p50 ${r.latencyMs.p50} ms  p99 ${r.latencyMs.p99} ms  errors ${r.errors} non2xx ${r.non2xx}`,
      );
      if (target !== 'pipe' && target !== 'nginx') {
        // connection reuse: upstream connections opened vs requests (both sides of a pair)
        for (const a of target === 'mtls' ? [adminPort, admin2] : [adminPort]) {
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
