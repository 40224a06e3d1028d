#!/usr/bin/env node
// Memory on the HTTP/2 path (issue 20 item 4): resident memory (VmRSS) a proxy adds per 1,000 idle
// h2c client connections and per 1,000 concurrent h2 streams held open through it. The upstream
// is an h2c server in this process that answers `/` at once and holds `/hold` requests until
// released, so the streams stay open in the proxy on both sides (downstream stream + upstream
// stream). The proxy under test is a separate process; only its RSS is read (/proc/PID/status).
// Never asserts anything; prints one block per target. Loopback only; every wait has a deadline
// and the whole run a hard bound.
//
//   node bench/h2-memory.mjs [--targets meshlet,h2-node] [--connections 1000] [--streams 1000]
//        [--meshlet-bin /path/bin/meshlet.js]
// targets: meshlet (h2c → meshlet → h2c, static bootstrap), h2-node (the naive node:http2 proxy)
// Each phase (idle connections, concurrent streams) runs against a fresh proxy process, so one
// phase's freed heap does not hide the other's growth. The proxy's RSS includes garbage not yet
// collected (it cannot be forced from outside), so each figure is read after a 2 s settle; repeat
// a run to see the spread.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http2 from 'node:http2';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { stringify } from 'yaml';
import { freePorts, startProcess, stopAll, waitForPort } from './lib/procs.mjs';
import { bootstrap } from './servers/meshlet-bootstrap.mjs';
import { REPO } from './servers/meshlet.mjs';

const { values: o } = parseArgs({
  options: {
    targets: { type: 'string', default: 'meshlet,h2-node' },
    connections: { type: 'string', default: '1000' },
    streams: { type: 'string', default: '1000' },
    'meshlet-bin': { type: 'string', default: path.join(REPO, 'bin/meshlet.js') },
  },
});
const CONNECTIONS = Number(o.connections);
const STREAMS = Number(o.streams);
const HARD_BOUND_MS = 240_000;

const rssMiB = (pid) => {
  const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `cond` every 50 ms until true or the deadline; throws with `what` on timeout. */
async function until(cond, what, ms = 30_000) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/** The in-process h2c upstream: `/` → 200 at once; `/hold` → held until release(). */
function startUpstream(port) {
  const held = [];
  const server = http2.createServer({ settings: { maxConcurrentStreams: 100_000 } });
  server.on('stream', (stream, headers) => {
    stream.on('error', () => {});
    if (headers[':path'] === '/hold') held.push(stream);
    else {
      stream.respond({ ':status': 200 });
      stream.end('ok\n');
    }
  });
  server.on('session', (s) => s.on('error', () => {}));
  return new Promise((resolve) =>
    server.listen(port, '127.0.0.1', () =>
      resolve({
        server,
        held,
        release() {
          for (const s of held.splice(0)) if (!s.destroyed) s.respond({ ':status': 200 }, { endStream: true });
        },
      }),
    ),
  );
}

/** One h2c client connection (prior knowledge), resolved once SETTINGS are exchanged. */
function connect(port) {
  return new Promise((resolve, reject) => {
    const s = http2.connect(`http://127.0.0.1:${port}`);
    s.once('remoteSettings', () => resolve(s));
    s.once('error', reject);
  });
}

/** A request on `session`; resolves with its status once the response has ended. */
function get(session, p) {
  return new Promise((resolve) => {
    const req = session.request({ ':path': p });
    let status = 0;
    req.on('response', (h) => (status = h[':status']));
    req.on('error', () => resolve(-1));
    req.on('close', () => resolve(status));
    req.resume();
    req.end();
  });
}

async function startTarget(target, dir, port, adminPort, upstreamPort) {
  if (target === 'meshlet') {
    const file = path.join(dir, 'meshlet.yaml');
    writeFileSync(file, stringify(bootstrap({ id: 'meshlet', port, adminPort, upstreamPort, h2Upstream: true })));
    const p = startProcess('meshlet', process.execPath, [o['meshlet-bin'], 'proxy', '--bootstrap', file, '--log-level', 'warn'], { cwd: REPO });
    const why = await waitForPort(port, { proc: p, timeoutMs: 15_000 });
    if (why) throw new Error(why);
    return p;
  }
  if (target === 'h2-node') {
    const script = path.join(REPO, 'bench/servers/node-h2-proxy.mjs');
    const p = startProcess(target, process.execPath, [script, String(port), String(upstreamPort)]);
    const why = await waitForPort(port, { proc: p });
    if (why) throw new Error(why);
    return p;
  }
  throw new Error(`unknown target ${target}`);
}

async function measure(target, dir, phase) {
  const [port, adminPort, upstreamPort] = await freePorts(3);
  const up = await startUpstream(upstreamPort);
  const proc = await startTarget(target, dir, port, adminPort, upstreamPort);
  const sessions = [];
  try {
    // warm-up: JIT, the upstream connection pool
    const warm = await connect(port);
    for (let i = 0; i < 200; i++) await get(warm, '/');
    warm.close();
    await sleep(2000);
    const base = rssMiB(proc.pid);
    const f = (x) => x.toFixed(1).padStart(6);
    const line = (what, mib, extra = '') => console.log(`  ${what.padEnd(46)} ${f(mib)} MiB${extra}`);
    console.log(`${target}, ${phase}`);
    line('RSS after warm-up', base);

    if (phase === 'connections') {
      // idle connections: each completes one request, then stays open with no stream
    for (let i = 0; i < CONNECTIONS; i += 50) {
      const batch = await Promise.all(Array.from({ length: Math.min(50, CONNECTIONS - i) }, () => connect(port)));
      const st = await Promise.all(batch.map((s) => get(s, '/')));
      if (st.some((x) => x !== 200)) throw new Error(`idle-connection request answered ${st.find((x) => x !== 200)}`);
      sessions.push(...batch);
    }
    await sleep(2000);
    const idle = rssMiB(proc.pid);
    line(`with ${CONNECTIONS} idle h2c connections`, idle, `  (+${f(idle - base)} MiB = ${f(((idle - base) * 1024) / CONNECTIONS)} KiB per connection)`);
    for (const s of sessions.splice(0)) s.close();
    await sleep(2000);
    line('2 s after closing them', rssMiB(proc.pid));
    return;
    }

    // concurrent streams held open at the upstream, spread over connections within the
    //    proxy's advertised max_concurrent_streams
    const probe = await connect(port);
    const perConn = Math.min(100, probe.remoteSettings.maxConcurrentStreams ?? 100);
    probe.close();
    const conns = Math.ceil(STREAMS / perConn);
    for (let i = 0; i < conns; i++) sessions.push(await connect(port));
    const done = [];
    for (let i = 0; i < STREAMS; i++) done.push(get(sessions[i % conns], '/hold'));
    await until(() => up.held.length >= STREAMS, `${STREAMS} streams held at the upstream (have ${up.held.length})`);
    await sleep(2000);
    const streams = rssMiB(proc.pid);
    line(`with ${STREAMS} concurrent streams (${conns} connections)`, streams, `  (+${f(streams - base)} MiB = ${f(((streams - base) * 1024) / STREAMS)} KiB per stream)`);
    up.release();
    const statuses = await Promise.race([Promise.all(done), sleep(30_000).then(() => null)]);
    if (!statuses) throw new Error('held streams not answered within 30 s of release');
    const ok = statuses.filter((x) => x === 200).length;
    for (const s of sessions.splice(0)) s.close();
    await sleep(2000);
    line(`2 s after they completed (${ok}/${STREAMS} answered 200)`, rssMiB(proc.pid));
  } finally {
    for (const s of sessions) s.destroy();
    up.server.close();
    await proc.stop();
  }
}

async function main() {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'meshlet-h2mem-'));
  const bound = setTimeout(async () => {
    console.error(`h2-memory: hard bound of ${HARD_BOUND_MS / 1000} s reached, stopping`);
    await stopAll();
    process.exit(1);
  }, HARD_BOUND_MS);
  try {
    for (const target of o.targets.split(','))
      for (const phase of ['connections', 'streams']) await measure(target, dir, phase);
  } finally {
    clearTimeout(bound);
    await stopAll();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch(async (err) => {
  console.error(err);
  await stopAll();
  process.exit(1);
});
