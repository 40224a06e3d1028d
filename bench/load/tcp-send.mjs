// Child process: TCP bulk sender. Writes 64 KiB chunks as fast as the socket drains for SECONDS,
// then half-closes and waits for the peer to close. Prints {bytes, ms}.
// Usage: node tcp-send.mjs [HOST:]PORT SECONDS
import net from 'node:net';

const [portArg, secondsArg] = process.argv.slice(2);
const chunk = Buffer.alloc(64 * 1024, 0x5a);
const [host, port] = portArg.includes(':')
  ? [portArg.split(':')[0], Number(portArg.split(':')[1])]
  : ['127.0.0.1', Number(portArg)];
const sock = net.connect(port, host);
let bytes = 0;
let started = 0;
let done = false;

function pump() {
  while (!done) {
    if (performance.now() - started >= Number(secondsArg) * 1000) {
      done = true;
      sock.end();
      return;
    }
    bytes += chunk.length;
    if (!sock.write(chunk)) return; // wait for 'drain'
  }
}

sock.on('connect', () => {
  started = performance.now();
  pump();
});
sock.on('drain', pump);
sock.on('data', () => {});
sock.on('error', (err) => {
  process.stderr.write(`sender: ${err.message}\n`);
  process.exit(1);
});
sock.on('close', () => {
  process.stdout.write(`${JSON.stringify({ bytes, ms: performance.now() - started })}\n`);
  process.exit(0);
});
setTimeout(
  () => {
    process.stderr.write('sender: peer did not close within the bound\n');
    process.exit(1);
  },
  (Number(secondsArg) + 20) * 1000,
).unref();
