// Child process: TCP bulk receiver. Counts bytes per connection and prints one JSON line per
// finished connection that carried data ({bytes, ms} from first byte to end). Usage: node tcp-sink.mjs PORT
import net from 'node:net';

const port = Number(process.argv[2]);
const server = net.createServer((sock) => {
  let bytes = 0;
  let first = 0;
  sock.on('data', (chunk) => {
    if (bytes === 0) first = performance.now();
    bytes += chunk.length;
  });
  sock.on('end', () => {
    const ms = bytes ? performance.now() - first : 0;
    // Readiness probes connect and close without data: only real transfers are reported.
    if (bytes > 0) process.stdout.write(`${JSON.stringify({ bytes, ms })}\n`);
    sock.end();
  });
  sock.on('error', () => {});
});
server.listen(port, '127.0.0.1', () => process.stdout.write(`listening ${port}\n`));
process.on('SIGTERM', () => process.exit(0));
