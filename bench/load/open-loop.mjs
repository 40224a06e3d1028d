// Child process: fixed-rate open-loop HTTP/1.1 load over raw keep-alive sockets. Request i is due at
// t0 + i/rate whether or not earlier ones have answered; its latency is measured from that
// scheduled time, so a stalled proxy shows up in the tail instead of slowing the generator down
// (no coordinated omission). A request finding no idle connection opens a new one (up to a cap)
// or waits in a queue, still on its scheduled clock. Generator lateness is included and is the
// same for every target, which is why the report states latency added over `direct`.
// Usage: node open-loop.mjs [HOST:]PORT PATH RATE SECONDS WARMUP_SECONDS BODY_BYTES MAX_CONNECTIONS
import net from 'node:net';
import { Histogram } from '../lib/histogram.mjs';

const [portArg, pathArg, rateArg, secondsArg, warmupArg, bodyArg, maxConnArg] = process.argv.slice(2);
const [host, port] = portArg.includes(':')
  ? [portArg.split(':')[0], Number(portArg.split(':')[1])]
  : ['127.0.0.1', Number(portArg)];
const rate = Number(rateArg);
const warmupCount = Math.round(Number(warmupArg) * rate);
const measureCount = Math.round(Number(secondsArg) * rate);
const total = warmupCount + measureCount;
const intervalMs = 1000 / rate;
const maxConnections = Number(maxConnArg);
const body = Buffer.alloc(Number(bodyArg), 0x62);
const request = Buffer.concat([
  Buffer.from(
    `POST ${pathArg} HTTP/1.1\r\nHost: ${host}:${port}\r\nUser-Agent: meshlet-bench-open-loop\r\nContent-Type: application/octet-stream\r\nContent-Length: ${body.length}\r\n\r\n`,
    'latin1',
  ),
  body,
]);

const hist = new Histogram();
const CRLF2 = Buffer.from('\r\n\r\n');
let completed = 0;
let measuredCompleted = 0;
let errors = 0;
let non2xx = 0;
let lastError = '';
let peakConnections = 0;
/** @type {Conn[]} */
const idle = [];
const conns = new Set();
/** scheduled times waiting for a connection (ring via head index) */
const queue = [];
let queueHead = 0;

class Conn {
  constructor() {
    this.sock = net.connect(port, host);
    this.sock.setNoDelay(true);
    this.buf = null;
    this.due = -1; // scheduled time of the in-flight request, -1 when idle
    this.closeAfter = false;
    this.index = -1;
    this.sock.on('data', (c) => this.onData(c));
    this.sock.on('error', (err) => {
      lastError = err.message;
    });
    this.sock.on('close', () => this.onClose());
    conns.add(this);
    if (conns.size > peakConnections) peakConnections = conns.size;
  }

  send(due, index) {
    this.due = due;
    this.index = index;
    this.sock.write(request);
  }

  onData(chunk) {
    this.buf = this.buf === null ? chunk : Buffer.concat([this.buf, chunk]);
    for (;;) {
      const used = this.responseLength(this.buf);
      if (used < 0) return;
      const status = Number(this.buf.toString('latin1', 9, 12));
      this.buf = used === this.buf.length ? null : this.buf.subarray(used);
      if (this.closeAfter) {
        // The server ends this connection: take it out of the pool before the next send.
        conns.delete(this);
        this.complete(status);
        this.sock.destroy();
        pumpQueue();
        return;
      }
      this.complete(status);
      if (this.buf === null) return;
    }
  }

  complete(status) {
    const due = this.due;
    const index = this.index;
    this.due = -1;
    completed++;
    if (status < 200 || status > 299) non2xx++;
    else if (index >= warmupCount) {
      measuredCompleted++;
      hist.record((performance.now() - due) * 1000);
    }
    if (!this.closeAfter) release(this);
  }

  /** Byte length of the first complete response in buf, or -1 if incomplete. Sets closeAfter. */
  responseLength(buf) {
    const headEnd = buf.indexOf(CRLF2);
    if (headEnd < 0) return -1;
    const head = buf.toString('latin1', 0, headEnd).toLowerCase();
    this.closeAfter = /\r\nconnection:\s*close/.test(head);
    let pos = headEnd + 4;
    if (/\r\ntransfer-encoding:[^\r]*chunked/.test(head)) {
      for (;;) {
        const lineEnd = buf.indexOf('\r\n', pos, 'latin1');
        if (lineEnd < 0) return -1;
        const size = Number.parseInt(buf.toString('latin1', pos, lineEnd), 16);
        if (size === 0) {
          // no trailers expected: the terminating empty line follows
          const end = buf.indexOf('\r\n', lineEnd + 2, 'latin1');
          return end < 0 ? -1 : end + 2;
        }
        pos = lineEnd + 2 + size + 2;
        if (pos > buf.length) return -1;
      }
    }
    const m = /\r\ncontent-length:\s*(\d+)/.exec(head);
    const len = m ? Number(m[1]) : 0;
    return buf.length >= pos + len ? pos + len : -1;
  }

  onClose() {
    this.closeAfter = true;
    conns.delete(this);
    const at = idle.indexOf(this);
    if (at >= 0) idle.splice(at, 1);
    if (this.due >= 0) {
      errors++;
      this.due = -1;
      completed++;
      if (!lastError) lastError = 'connection closed with a request in flight';
      pumpQueue();
    }
  }
}

function release(conn) {
  if (queueHead < queue.length) {
    const item = queue[queueHead++];
    if (queueHead > 4096 && queueHead * 2 > queue.length) {
      queue.splice(0, queueHead);
      queueHead = 0;
    }
    conn.send(item.due, item.index);
  } else {
    idle.push(conn);
  }
}

function pumpQueue() {
  while (queueHead < queue.length && conns.size < maxConnections) {
    const item = queue[queueHead++];
    new Conn().send(item.due, item.index);
  }
}

function dispatch(due, index) {
  const conn = idle.pop();
  if (conn) return conn.send(due, index);
  if (conns.size < maxConnections) return new Conn().send(due, index);
  queue.push({ due, index });
}

let t0 = 0;
let scheduled = 0;
function tick() {
  const now = performance.now();
  let due = t0 + scheduled * intervalMs;
  while (due <= now && scheduled < total) {
    dispatch(due, scheduled);
    scheduled++;
    due = t0 + scheduled * intervalMs;
  }
  if (scheduled < total) setTimeout(tick, Math.max(0, due - performance.now()));
  else waitForTail();
}

function waitForTail() {
  const deadline = performance.now() + 5000;
  const check = () => {
    if (completed >= total || performance.now() >= deadline) return report();
    setTimeout(check, 20);
  };
  check();
}

function report() {
  const timeouts = total - completed;
  const out = {
    targetRate: rate,
    achievedRate: measuredCompleted / Number(secondsArg),
    scheduled: total,
    measured: measureCount,
    completed: measuredCompleted,
    errors,
    non2xx,
    timeouts,
    lastError,
    peakConnections,
    latencyMs: hist.summaryMs(),
  };
  for (const c of conns) c.sock.destroy();
  process.stdout.write(`${JSON.stringify(out)}\n`);
  process.exit(0);
}

// Open a small warm pool before the clock starts, so the first requests do not all pay connect.
const warm = Math.min(8, maxConnections);
let ready = 0;
for (let i = 0; i < warm; i++) {
  const c = new Conn();
  c.sock.once('connect', () => {
    idle.push(c);
    if (++ready === warm) {
      clearTimeout(connectBound);
      t0 = performance.now();
      tick();
    }
  });
}
const connectBound = setTimeout(() => {
  process.stderr.write(`open-loop: could not connect to ${host}:${port}: ${lastError}\n`);
  process.exit(1);
}, 10_000);
// Hard bound on the whole run.
setTimeout(() => report(), (Number(secondsArg) + Number(warmupArg) + 15) * 1000).unref();
