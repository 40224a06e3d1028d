#!/usr/bin/env node
// meshlet's benchmark runner (`npm run bench [-- --quick] [--only name,…]`). Owns the whole run:
// checks/installs the external tools, starts the shared upstream (nginx) and helper servers on
// 127.0.0.1 with free ports, runs each scenario (start its proxies → measure → stop them) with a
// progress bar, stops everything (also on Ctrl-C) and writes results.md, results.json and
// latency.svg. Leans towards finishing the run: a scenario whose prerequisite is missing is
// reported "not available: reason" and the run goes on. It makes no assertions about speed.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { makeCerts } from './lib/certs.mjs';
import { ensureTools } from './lib/deps.mjs';
import { machineInfo } from './lib/machine.mjs';
import { freePorts, killAll, startProcess, stopAll, treeRssKiB, waitForPort } from './lib/procs.mjs';
import { Progress } from './lib/progress.mjs';
import { ratios, renderMarkdown } from './report/markdown.mjs';
import { renderSvg } from './report/svg.mjs';
import { expectedSeconds, measure, SCENARIOS, selectScenarios } from './scenarios/index.mjs';
import { buildMissing, MESH_MODES, meshletBin, useMeshletBin, useMeshletConcurrency } from './servers/meshlet.mjs';
import * as nginx from './servers/nginx.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, '..');

const USAGE = `Usage: npm run bench [-- options]   (node bench/run.mjs [options])

  --quick               short run (3 s per scenario, 1 s warm-up) for CI-sized checks
  --only a,b,…          run only these scenarios; a name selects an id or everything under it
                        (e.g. --only direct,single-hop,tcp/meshlet)
  --seconds N           measured seconds per scenario (default 10, quick 3)
  --warmup N            warm-up seconds per scenario (default 2, quick 1)
  --rounds N            run every scenario N times, interleaved, and report the median round
                        (default 1; use 3 on a machine that is busy with other work)
  --proxy-workers N     worker processes/threads for nginx, HAProxy and meshlet (--concurrency) under test (default 1)
  --meshlet-mode M      how to build the meshlet mesh hop: ${Object.keys(MESH_MODES).join(', ')} (default static)
  --meshlet-bin FILE    meshlet launcher to benchmark (default bin/meshlet.js, which runs ../dist)
  --build               run \`npm run build\` first so dist/ has the current meshlet
  --out DIR             where to write results (default bench/results)
  --selftest            run \`direct\` for ~1 s to prove the tooling works; writes to a temp dir
  --list                list scenario ids and exit
  -h, --help            this text

Scenarios: ${SCENARIOS.map((s) => s.id).join(', ')}`;

function parse() {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean' },
      only: { type: 'string' },
      seconds: { type: 'string' },
      warmup: { type: 'string' },
      'proxy-workers': { type: 'string' },
      'meshlet-mode': { type: 'string' },
      build: { type: 'boolean' },
      'meshlet-bin': { type: 'string' },
      rounds: { type: 'string' },
      out: { type: 'string' },
      selftest: { type: 'boolean' },
      list: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  return values;
}

function toolVersions() {
  const v = (cmd, args, re) => {
    const r = spawnSync(cmd, args, { encoding: 'utf8' });
    const m = re.exec(`${r.stdout}${r.stderr}`);
    return m ? m[1] : 'unknown';
  };
  return {
    nginx: v('nginx', ['-v'], /nginx\/(\S+)/),
    haproxy: v('haproxy', ['-v'], /version (\S+)/),
    wrk: v('wrk', ['-v'], /wrk (\S+)/),
    h2load: v('h2load', ['--version'], /nghttp2\/(\S+)/),
    openssl: v('openssl', ['version'], /OpenSSL (\S+)/),
  };
}

function meshletVersion() {
  try {
    const rev = execFileSync('git', ['-C', REPO, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
    const bin = path.relative(REPO, meshletBin());
    return `commit ${rev}${buildMissing() ? ' (not built)' : ''}${bin === 'bin/meshlet.js' ? '' : ` (build run: ${meshletBin()})`}`;
  } catch {
    return 'unknown commit';
  }
}

async function main() {
  let opts;
  try {
    opts = parse();
  } catch (err) {
    process.stderr.write(`${err.message}\n\n${USAGE}\n`);
    return 2;
  }
  if (opts.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  if (opts.list) {
    for (const s of SCENARIOS) process.stdout.write(`${s.id.padEnd(32)} ${s.label}\n`);
    return 0;
  }
  const selftest = Boolean(opts.selftest);
  const quick = Boolean(opts.quick) || selftest;
  let scenarios;
  try {
    scenarios = selftest
      ? selectScenarios(['direct'])
      : selectScenarios(
          opts.only
            ?.split(',')
            .map((x) => x.trim())
            .filter(Boolean),
        );
  } catch (err) {
    process.stderr.write(`${err.message}\n`);
    return 2;
  }
  const num = (v, d) => {
    if (v === undefined) return d;
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0) throw new Error(`not a number: ${v}`);
    return n;
  };
  const cores = os.availableParallelism ? os.availableParallelism() : os.cpus().length;
  const settings = {
    quick,
    selftest,
    seconds: num(opts.seconds, selftest ? 1 : quick ? 3 : 10),
    warmupSeconds: num(opts.warmup, selftest ? 0 : quick ? 1 : 2),
    rounds: Math.max(1, Math.floor(num(opts.rounds, 1))),
    upstreamWorkers: cores,
    proxyWorkers: num(opts['proxy-workers'], 1),
    meshletMode: opts['meshlet-mode'] ?? 'static',
    wrk: { connections: 50, threads: 2 },
    h2load: { connections: 10, streams: 10, threads: 2 },
    grpc: { concurrency: 50, channels: 2, payloadBytes: 13 },
    openLoop: { rate: 1000, bodyBytes: 1024, maxConnections: 256 },
  };
  const log = (line) => process.stderr.write(`${line}\n`);

  if (opts['meshlet-bin']) useMeshletBin(opts['meshlet-bin']);
  if (!ensureTools(log)) return 1;
  if (opts.build) {
    log('building meshlet (npm run build) …');
    const b = spawnSync('npm', ['run', 'build'], { cwd: REPO, stdio: 'inherit' });
    if (b.status !== 0) log('build failed: meshlet scenarios will use whatever dist/ holds');
  }

  const dir = mkdtempSync(path.join(os.tmpdir(), 'meshlet-bench-'));
  const outDir = opts.out
    ? path.resolve(opts.out)
    : selftest
      ? mkdtempSync(path.join(os.tmpdir(), 'meshlet-bench-selftest-'))
      : path.join(HERE, 'results');
  const progress = new Progress(scenarios.length * settings.rounds);
  let interrupted = false;
  const onSignal = (sig) => {
    if (interrupted) return;
    interrupted = true;
    progress.finish();
    log(`\n${sig}: stopping every server and load generator …`);
    killAll('SIGTERM');
    setTimeout(() => {
      killAll('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
      process.exit(130);
    }, 1500);
  };
  process.on('SIGINT', () => onSignal('SIGINT'));
  process.on('SIGTERM', () => onSignal('SIGTERM'));

  useMeshletConcurrency(settings.proxyWorkers); // meshlet --concurrency N, like nginx's worker_processes
  const env = { ctx: { dir }, proxyWorkers: settings.proxyWorkers, meshletMode: settings.meshletMode };
  const results = {
    machine: machineInfo(),
    settings,
    tools: toolVersions(),
    meshlet: meshletVersion(),
    scenarios: [],
    ratios: {},
  };
  try {
    log(
      `meshlet bench: ${scenarios.length} scenario(s), ${settings.seconds}s each after ${settings.warmupSeconds}s warm-up; upstream nginx ${settings.upstreamWorkers} worker(s) (one per core), proxies under test ${settings.proxyWorkers} worker(s)`,
    );
    env.certs = makeCerts(dir);
    const [up, h2, grpcPort, sinkPort] = await freePorts(4);
    await nginx.startUpstream(env.ctx, { port: up, h2Port: h2, workers: settings.upstreamWorkers });
    env.upstream = { port: up, h2Port: h2 };
    if (scenarios.some((s) => s.kind === 'grpc')) {
      const g = startProcess('grpc-server', process.execPath, [
        path.join(HERE, 'servers/grpc-server.mjs'),
        String(grpcPort),
      ]);
      const why = await waitForPort(grpcPort, { proc: g });
      if (why) throw new Error(why);
      env.grpcPort = grpcPort;
    }
    if (scenarios.some((s) => s.kind === 'tcp')) {
      const sink = startProcess('tcp-sink', process.execPath, [
        path.join(HERE, 'servers/tcp-sink.mjs'),
        String(sinkPort),
      ]);
      const why = await waitForPort(sinkPort, { proc: sink });
      if (why) throw new Error(why);
      env.sinkPort = sinkPort;
      env.nextSinkResult = (timeoutMs) =>
        new Promise((resolve, reject) => {
          let buf = '';
          const onData = (c) => {
            buf += c.toString();
            const line = buf.split('\n').find((l) => l.startsWith('{'));
            if (line) {
              cleanup();
              resolve(JSON.parse(line));
            }
          };
          const t = setTimeout(() => {
            cleanup();
            reject(new Error('TCP receiver reported nothing within the bound'));
          }, timeoutMs);
          const cleanup = () => {
            clearTimeout(t);
            sink.child.stdout.off('data', onData);
          };
          sink.child.stdout.on('data', onData);
        });
    }

    const attempts = new Map(scenarios.map((s) => [s.id, []]));
    for (let round = 1; round <= settings.rounds && !interrupted; round++) {
      for (const s of scenarios) {
        if (interrupted) break;
        const tries = attempts.get(s.id);
        // A missing prerequisite does not come back in the next round.
        if (tries.length && tries[0].status === 'not available') {
          progress.skip();
          continue;
        }
        progress.begin(
          settings.rounds > 1 ? `${s.label} (round ${round}/${settings.rounds})` : s.label,
          expectedSeconds(s, settings),
        );
        const a = await runOnce(s, env, settings);
        tries.push(a);
        progress.end(a.status === 'ok' ? summary(s.kind, a.metrics) : `${a.status}: ${a.reason}`);
      }
    }
    for (const s of scenarios) {
      const tries = attempts.get(s.id);
      if (tries.length === 0) continue; // interrupted before it ran
      results.scenarios.push({
        id: s.id,
        group: s.group,
        kind: s.kind,
        label: s.label,
        hop: s.hop,
        proxy: s.proxy,
        ...combine(s.kind, tries),
      });
    }
  } catch (err) {
    progress.finish();
    log(`bench could not run: ${oneLine(err)}`);
    await stopAll();
    rmSync(dir, { recursive: true, force: true });
    return 1;
  }
  progress.finish();
  await stopAll();
  if (interrupted) return 130;

  results.ratios = ratios(results);
  const md = renderMarkdown(results);
  mkdirSync(outDir, { recursive: true });
  writeFileSync(path.join(outDir, 'results.json'), `${JSON.stringify(results, null, 2)}\n`);
  writeFileSync(path.join(outDir, 'results.md'), md);
  writeFileSync(path.join(outDir, 'latency.svg'), renderSvg(results));
  process.stdout.write(`\n${md}`);
  log(`wrote ${path.relative(process.cwd(), outDir) || '.'}/results.md, results.json, latency.svg`);
  rmSync(dir, { recursive: true, force: true });

  if (selftest) {
    const d = results.scenarios.find((r) => r.id === 'direct');
    const good = d?.status === 'ok' && d.metrics.requests > 0 && d.metrics.errors === 0 && d.metrics.non2xx === 0;
    log(
      good
        ? `selftest: ok (${Math.round(d.metrics.rps)} req/s direct)`
        : `selftest: FAILED (${d ? (d.reason ?? JSON.stringify(d.metrics)) : 'no result'})`,
    );
    return good ? 0 : 1;
  }
  return 0;
}

/** Starts one scenario, measures it once (sampling the proxies' RSS), stops it. Never throws. */
async function runOnce(s, env, settings) {
  const missing = s.meshlet ? buildMissing() : null;
  if (missing) return { status: 'not available', reason: missing };
  let target;
  try {
    target = await s.setup(env);
  } catch (err) {
    return { status: 'not available', reason: oneLine(err) };
  }
  const pids = (target.memoryProcs ?? target.procs).map((p) => p.pid);
  let sampler;
  let memory;
  try {
    if (pids.length) {
      const idle = await sumRss(pids);
      memory = { idleKiB: idle, peakKiB: idle };
      sampler = setInterval(async () => {
        const now = await sumRss(pids);
        if (now > memory.peakKiB) memory.peakKiB = now;
      }, 250);
    }
    const metrics = await measure(s, target, env, settings);
    return { status: 'ok', metrics, memory };
  } catch (err) {
    return { status: 'failed', reason: oneLine(err) };
  } finally {
    if (sampler) clearInterval(sampler);
    await Promise.all(target.procs.map((p) => p.stop()));
  }
}

/** The number a round is ranked by: throughput, or p99 for open-loop latency. */
function primary(kind, m) {
  if (kind === 'tcp') return m.mbPerSec;
  if (kind === 'open-loop') return m.latencyMs.p99;
  return m.rps;
}

/**
 * Folds the rounds of one scenario into its reported entry: the round with the median primary
 * number (all rounds' numbers are kept in `rounds`), or the last failure when no round succeeded.
 */
function combine(kind, tries) {
  const good = tries.filter((t) => t.status === 'ok');
  const rounds = tries.map((t) => (t.status === 'ok' ? primary(kind, t.metrics) : t.status));
  if (good.length === 0)
    return { status: tries[tries.length - 1].status, reason: tries[tries.length - 1].reason, rounds };
  const sorted = [...good].sort((a, b) => primary(kind, a.metrics) - primary(kind, b.metrics));
  const median = sorted[Math.floor((sorted.length - 1) / 2)];
  return { status: 'ok', metrics: median.metrics, memory: median.memory, rounds };
}

async function sumRss(pids) {
  let total = 0;
  for (const pid of pids) total += (await treeRssKiB(pid)) ?? 0;
  return total;
}

function oneLine(err) {
  const text = err instanceof Error ? err.message : String(err);
  const line = text.replace(/\s+/g, ' ').trim();
  return line.length > 240 ? `${line.slice(0, 237)}…` : line;
}

function summary(kind, m) {
  const bad = (m.errors ?? 0) + (m.non2xx ?? 0);
  const warn = bad ? ` (${bad} errors)` : '';
  if (kind === 'tcp') return `${Math.round(m.mbPerSec)} MB/s${warn}`;
  if (kind === 'open-loop')
    return `p50 ${m.latencyMs.p50} ms, p99 ${m.latencyMs.p99} ms, p99.9 ${m.latencyMs.p999} ms${warn}`;
  return `${Math.round(m.rps).toLocaleString('en-US')} req/s${m.latencyMs?.p99 !== undefined ? `, p99 ${m.latencyMs.p99} ms` : ''}${warn}`;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  async (err) => {
    process.stderr.write(`bench: ${err?.stack ?? err}\n`);
    await stopAll();
    process.exitCode = 1;
  },
);
