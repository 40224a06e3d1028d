/**
 * `meshlet wait [--admin URL] [--timeout S]`: block until the proxy answers 200 on /ready, for
 * holding an application until its sidecar is ready (Istio's `pilot-agent wait`, used with
 * holdApplicationUntilProxyStarts). Exit 0 when ready; exit 1 with a message naming the last
 * answer when the timeout passes.
 *
 * Leans patient and cheap: one GET per period on a fresh connection, each bounded by the time
 * left, no retries in between.
 */
import http from 'node:http';
import { parseCommandArgs } from './args';

const USAGE = `meshlet wait [--admin URL] [--timeout SECONDS] [--period MS]

      --admin URL          the proxy's admin address (default http://127.0.0.1:15000);
                           a port's /healthz/ready (15021) works too: http://127.0.0.1:15021/healthz/ready
      --timeout SECONDS    give up after this long (default 60)
      --period MS          time between attempts (default 500)`;

/** One readiness probe: the status code, or the connection error's message. */
function probe(url: URL, timeoutMs: number): Promise<{ status?: number; error?: string; body?: string }> {
  return new Promise((resolve) => {
    const req = http.get(url, { agent: false, timeout: Math.max(1, timeoutMs) }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        if (body.length < 200) body += c;
      });
      res.on('end', () => resolve({ status: res.statusCode, body: body.trim() }));
      res.on('error', (err) => resolve({ error: err.message }));
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', (err: NodeJS.ErrnoException) => resolve({ error: err.code ?? err.message }));
  });
}

export async function runWait(argv: string[]): Promise<number> {
  const args = parseCommandArgs(argv, USAGE, {
    admin: { type: 'string' },
    timeout: { type: 'string' },
    period: { type: 'string' },
  });
  if (!args) return 0;
  const timeoutS = args.timeout === undefined ? 60 : Number(args.timeout);
  const periodMs = args.period === undefined ? 500 : Number(args.period);
  if (!Number.isFinite(timeoutS) || timeoutS < 0) {
    process.stderr.write('meshlet wait: --timeout must be a non-negative number of seconds\n');
    return 1;
  }
  if (!Number.isFinite(periodMs) || periodMs < 10) {
    process.stderr.write('meshlet wait: --period must be at least 10 ms\n');
    return 1;
  }
  let url: URL;
  try {
    url = new URL(typeof args.admin === 'string' ? args.admin : 'http://127.0.0.1:15000');
  } catch {
    process.stderr.write(`meshlet wait: --admin ${String(args.admin)} is not a URL\n`);
    return 1;
  }
  if (url.protocol !== 'http:') {
    process.stderr.write('meshlet wait: --admin must be an http:// URL\n');
    return 1;
  }
  if (url.pathname === '/' || url.pathname === '') url.pathname = '/ready';
  const deadline = Date.now() + timeoutS * 1000;
  let last = 'no answer yet';
  for (let attempt = 1; ; attempt++) {
    // At least 250 ms per probe, so a slow start-up cannot turn a refused connection into a "timed out".
    const r = await probe(url, Math.max(250, Math.min(deadline - Date.now(), 5_000)));
    if (r.status === 200) {
      process.stdout.write(
        `meshlet wait: proxy ready (${url.href}) after ${attempt} attempt${attempt === 1 ? '' : 's'}\n`,
      );
      return 0;
    }
    last = r.status !== undefined ? `HTTP ${r.status}${r.body ? ` ${r.body}` : ''}` : (r.error ?? 'error');
    if (attempt === 1) {
      process.stdout.write(
        `meshlet wait: proxy not ready yet (${last}); retrying every ${periodMs} ms for up to ${timeoutS}s\n`,
      );
    }
    const left = deadline - Date.now();
    if (left <= 0) break;
    await new Promise((res) => setTimeout(res, Math.min(periodMs, left)));
  }
  process.stderr.write(`meshlet wait: proxy not ready after ${timeoutS}s (${url.href}; last answer: ${last})\n`);
  return 1;
}
