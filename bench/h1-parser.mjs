#!/usr/bin/env node
// Micro-benchmark of meshlet's HTTP/1.1 request parser (proxy/http/h1/parser.ts): parses a typical
// keep-alive request (and a small POST) N times on one parser, as a connection would, and prints
// ns per request. Not a test: no assertions on speed. Needs the compiled parser: `npm run build`
// first (or --from DIR pointing at a directory that holds proxy/http/h1/parser.js).
//
//   node bench/h1-parser.mjs [--n 1000000] [--from dist]
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const { values } = parseArgs({
  options: {
    n: { type: 'string', default: '1000000' },
    from: { type: 'string', default: path.join(HERE, '..', 'dist') },
  },
});
const N = Number(values.n);
const require = createRequire(import.meta.url);
let H1Parser;
try {
  ({ H1Parser } = require(path.resolve(values.from, 'proxy/http/h1/parser.js')));
} catch (err) {
  console.error(`cannot load the compiled parser from ${values.from} (run \`npm run build\` first): ${err.message}`);
  process.exit(1);
}

const GET = Buffer.from(
  'GET /api/v1/orders/12345?include=items&limit=10 HTTP/1.1\r\n' +
    'Host: orders.shop.svc.cluster.local:8080\r\n' +
    'User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36\r\n' +
    'Accept: application/json, text/plain, */*\r\n' +
    'Accept-Encoding: gzip, deflate, br\r\n' +
    'Accept-Language: en-US,en;q=0.9\r\n' +
    'Connection: keep-alive\r\n' +
    'X-Request-Id: 3f0c2b9e-8f2d-4b8e-9a51-0d4f5c6e7a81\r\n' +
    'traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n' +
    'Cookie: session=abc123; theme=dark\r\n\r\n',
  'latin1',
);
const POST = Buffer.from(
  'POST /api/v1/orders HTTP/1.1\r\nHost: orders\r\nContent-Type: application/json\r\nContent-Length: 27\r\n\r\n{"sku":"A-1","quantity":2}\n',
  'latin1',
);

let heads = 0;
let bodyBytes = 0;
const handler = {
  onMessageHead(p) {
    heads += p.headers.length;
  },
  onMessageBody(chunk) {
    bodyBytes += chunk.length;
  },
  onMessageTrailers() {},
  onMessageComplete: () => true,
  onParseError(status, detail) {
    throw new Error(`unexpected parse error ${status} ${detail}`);
  },
};

// Wall time is what a user feels; CPU time (user+system of this process) is steadier on a
// shared, busy machine because it leaves out time spent preempted. Both are printed.
function run(name, buf, n) {
  const parser = new H1Parser(true, handler);
  for (let i = 0; i < Math.min(n, 100_000); i++) parser.execute(buf); // warm-up (JIT)
  const c0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) parser.execute(buf);
  const ns = Number(process.hrtime.bigint() - t0) / n;
  const c = process.cpuUsage(c0);
  const cpuNs = ((c.user + c.system) * 1000) / n;
  console.log(
    `${name.padEnd(34)} ${String(buf.length).padStart(5)} B  ${ns.toFixed(0).padStart(6)} ns/request wall  ${cpuNs.toFixed(0).padStart(6)} ns CPU  ${(1e9 / ns / 1e6).toFixed(2)} M req/s`,
  );
  return ns;
}

console.log(`meshlet H1 parser, node ${process.version}, N=${N}`);
run('GET, 9 headers (browser-like)', GET, N);
run('POST, Content-Length body', POST, N);
const three = Buffer.concat([GET, POST, GET]);
const ns = run('3 pipelined requests in one read', three, Math.floor(N / 3));
console.log(`${''.padEnd(34)}          ${(ns / 3).toFixed(0).padStart(6)} ns/request amortised`);
if (heads === 0 || bodyBytes === 0) throw new Error('nothing parsed');
