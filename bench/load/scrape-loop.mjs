// Child process: GET /stats/prometheus (one fresh connection each, as Prometheus does) for
// SECONDS, back to back or, with INTERVAL_MS, one scrape starting every INTERVAL_MS (as
// Prometheus's scrape_interval); then prints {n, bytes, p50, max, spans} (ms; spans = each
// scrape's [start, end] on the shared clock performance.timeOrigin + performance.now()).
// Separate from the proxied-load client so reading 23 MB bodies does not delay that client's
// own event loop.
// GZIP=1: sends `Accept-Encoding: gzip` as Prometheus does and decodes the body (bytes = decoded).
// Usage: node scrape-loop.mjs ADMIN_PORT SECONDS [INTERVAL_MS] [GZIP]
import http from 'node:http';
import { createGunzip } from 'node:zlib';

const [port, seconds, interval = 0, gzip = 0] = process.argv.slice(2).map(Number);
let wire = 0;
const end = Date.now() + seconds * 1000;
const times = [];
const spans = [];
let bytes = 0;
while (Date.now() < end && times.length < 1000) {
  if (interval > 0 && times.length > 0) {
    const next = spans[spans.length - 1][0] - performance.timeOrigin + interval;
    const now = performance.now();
    if (next > now) await new Promise((r) => setTimeout(r, next - now));
  }
  const t0 = performance.now();
  bytes = await new Promise((resolve, reject) => {
    const headers = gzip === 1 ? { 'accept-encoding': 'gzip' } : {};
    const req = http.get({ host: '127.0.0.1', port, path: '/stats/prometheus', agent: false, headers }, (res) => {
      let n = 0;
      const body = res.headers['content-encoding'] === 'gzip' ? res.pipe(createGunzip()) : res;
      res.on('data', (c) => (wire += c.length));
      body.on('data', (c) => (n += c.length));
      body.on('end', () => resolve(n));
      body.on('error', reject);
    });
    req.setTimeout(120_000, () => req.destroy(new Error('scrape timed out')));
    req.on('error', reject);
  });
  const t1 = performance.now();
  times.push(t1 - t0);
  spans.push([performance.timeOrigin + t0, performance.timeOrigin + t1]);
}
times.sort((a, b) => a - b);
const pct = (p) => times[Math.min(times.length - 1, Math.floor((p / 100) * times.length))];
process.stdout.write(`${JSON.stringify({ n: times.length, bytes, p50: pct(50), max: times[times.length - 1], wireBytesPerScrape: wire / times.length, spans })}\n`);
