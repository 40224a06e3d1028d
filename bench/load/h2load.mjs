// Closed-loop HTTP/2 (h2c, prior knowledge) load with nghttp2's h2load. h2load reports rps and
// mean/max request time, not percentiles, so HTTP/2 rows carry rps and mean latency only.
import { runToEnd } from '../lib/procs.mjs';

/**
 * @param {string} url http:// URL (h2c prior knowledge)
 * @param {{connections: number, streams: number, threads: number, seconds: number}} s
 */
export async function h2load(url, s) {
  const args = [
    '-c',
    String(s.connections),
    '-m',
    String(s.streams),
    '-t',
    String(s.threads),
    '-D',
    String(s.seconds),
    url,
  ];
  const r = await runToEnd('h2load', args, { timeoutMs: (s.seconds + 30) * 1000 });
  const out = r.stdout;
  const fin = /finished in ([\d.]+)(m?s), ([\d.]+) req\/s/.exec(out);
  const reqs =
    /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/.exec(
      out,
    );
  const codes = /status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/.exec(out);
  if (!fin || !reqs)
    throw new Error(`h2load produced no result (exit ${r.code}): ${(r.stderr || out).trim().slice(-300)}`);
  const time = /time for request:\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)/.exec(out);
  const toMs = (v, unit) => Number(v) * (unit === 'us' ? 0.001 : unit === 's' ? 1000 : 1);
  const succeeded = Number(reqs[4]);
  return {
    // Successful requests per second (h2load's own req/s counts failed ones too).
    rps: succeeded / (Number(fin[1]) / (fin[2] === 'ms' ? 1000 : 1)),
    rawRps: Number(fin[3]),
    requests: succeeded,
    errors: Number(reqs[5]) + Number(reqs[6]) + Number(reqs[7]),
    non2xx: codes ? Number(codes[2]) + Number(codes[3]) + Number(codes[4]) : 0,
    latencyMs: time ? { mean: toMs(time[5], time[6]), max: toMs(time[3], time[4]) } : undefined,
    lastError:
      succeeded === 0
        ? `h2load: ${reqs[0]}${/client could not connect|connect error/i.test(out) ? ', connect error' : ''}`
        : '',
  };
}
