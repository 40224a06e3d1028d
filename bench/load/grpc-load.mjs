// Child process: closed-loop gRPC unary load with @grpc/grpc-js. Keeps `concurrency` calls in
// flight on `channels` channels for `seconds`, then prints {rps, requests, errors, latencyMs}.
// Usage: node grpc-load.mjs HOST:PORT CONCURRENCY CHANNELS SECONDS PAYLOAD_BYTES
import grpc from '@grpc/grpc-js';
import { Histogram } from '../lib/histogram.mjs';
import { BENCH_SERVICE } from '../servers/grpc-service.mjs';

const [target, concurrencyArg, channelsArg, secondsArg, payloadArg] = process.argv.slice(2);
const concurrency = Number(concurrencyArg);
const seconds = Number(secondsArg);
const payload = Buffer.alloc(Number(payloadArg), 0x61);
const Client = grpc.makeGenericClientConstructor(BENCH_SERVICE, 'Bench');
const clients = [];
for (let i = 0; i < Number(channelsArg); i++) {
  // Distinct channel options keep grpc-js from sharing one subchannel between the clients.
  clients.push(new Client(target, grpc.credentials.createInsecure(), { 'grpc.bench.channel': i }));
}

const hist = new Histogram();
let requests = 0;
let errors = 0;
let lastError = '';
let stopping = false;
let inFlight = 0;
let endAt = 0;

function call(client) {
  if (stopping) return;
  inFlight++;
  const start = performance.now();
  client.Echo(payload, { deadline: Date.now() + 10_000 }, (err) => {
    inFlight--;
    if (err) {
      errors++;
      lastError = err.message;
    } else {
      requests++;
      hist.record((performance.now() - start) * 1000);
    }
    if (performance.now() >= endAt) stopping = true;
    if (!stopping) call(client);
    else if (inFlight === 0) finish();
  });
}

let started = 0;
function finish() {
  const elapsed = (performance.now() - started) / 1000;
  for (const c of clients) c.close();
  process.stdout.write(
    `${JSON.stringify({ rps: requests / elapsed, requests, errors, lastError, latencyMs: hist.summaryMs() })}\n`,
  );
  process.exit(0);
}

// Connect every channel before the clock starts.
await Promise.all(
  clients.map(
    (c) =>
      new Promise((resolve, reject) => c.waitForReady(Date.now() + 10_000, (err) => (err ? reject(err) : resolve()))),
  ),
).catch((err) => {
  process.stderr.write(`channel not ready: ${err.message}\n`);
  process.exit(1);
});
started = performance.now();
endAt = started + seconds * 1000;
for (let i = 0; i < concurrency; i++) call(clients[i % clients.length]);
// Hard bound: never outlive the run by more than the call deadline.
setTimeout(
  () => {
    stopping = true;
    finish();
  },
  (seconds + 12) * 1000,
).unref();
