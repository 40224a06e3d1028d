// Child process: GET /stats/prometheus back to back (one fresh connection each, as Prometheus
// does) for SECONDS, then prints {n, bytes, p50, max} (ms). Separate from the proxied-load client
// so reading 23 MB bodies does not delay that client's own event loop.
// Usage: node scrape-loop.mjs ADMIN_PORT SECONDS
import http from 'node:http';

const [port, seconds] = process.argv.slice(2).map(Number);
const end = Date.now() + seconds * 1000;
const times = [];
let bytes = 0;
while (Date.now() < end && times.length < 1000) {
  const t = performance.now();
  bytes = await new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/stats/prometheus', agent: false }, (res) => {
      let n = 0;
      res.on('data', (c) => (n += c.length));
      res.on('end', () => resolve(n));
    });
    req.setTimeout(120_000, () => req.destroy(new Error('scrape timed out')));
    req.on('error', reject);
  });
  times.push(performance.now() - t);
}
times.sort((a, b) => a - b);
const pct = (p) => times[Math.min(times.length - 1, Math.floor((p / 100) * times.length))];
process.stdout.write(`${JSON.stringify({ n: times.length, bytes, p50: pct(50), max: times[times.length - 1] })}\n`);
