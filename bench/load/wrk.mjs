// Closed-loop HTTP/1.1 load with wrk (same settings for every HTTP scenario). wrk measures from
// actual send time, so its percentiles carry coordinated omission; the open-loop scenario is the
// one to read for tail latency. Parses the line printed by wrk-report.lua.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { runToEnd } from '../lib/procs.mjs';

const SCRIPT = path.join(path.dirname(fileURLToPath(import.meta.url)), 'wrk-report.lua');

/**
 * @param {string} url
 * @param {{connections: number, threads: number, seconds: number}} s
 * @returns {Promise<{rps: number, requests: number, errors: number, non2xx: number, latencyMs: {p50: number, p90: number, p99: number, p999: number, mean: number, max: number}}>}
 */
export async function wrk(url, s) {
  const args = [
    '-c',
    String(s.connections),
    '-t',
    String(s.threads),
    '-d',
    `${s.seconds}s`,
    '--timeout',
    '5s',
    '-s',
    SCRIPT,
    url,
  ];
  const r = await runToEnd('wrk', args, { timeoutMs: (s.seconds + 30) * 1000 });
  const line = r.stdout.split('\n').find((l) => l.startsWith('WRKJSON '));
  if (!line)
    throw new Error(
      `wrk produced no result (exit ${r.code}${r.timedOut ? ', timed out' : ''}): ${r.stderr.trim() || r.stdout.trim().slice(-300)}`,
    );
  const j = JSON.parse(line.slice(8));
  const ms = (us) => Math.round(us) / 1000;
  const e = j.errors;
  return {
    // Only answers that count: wrk's total includes non-2xx/3xx responses (e.g. a proxy's 503s).
    rps: (j.requests - e.status) / (j.duration_us / 1e6),
    requests: j.requests - e.status,
    responses: j.requests,
    errors: e.connect + e.read + e.write + e.timeout,
    non2xx: e.status,
    latencyMs: {
      mean: ms(j.latency_us.mean),
      p50: ms(j.latency_us.p50),
      p90: ms(j.latency_us.p90),
      p99: ms(j.latency_us.p99),
      p999: ms(j.latency_us.p999),
      max: ms(j.latency_us.max),
    },
  };
}
