// Child process: the naive Node TCP proxy, the "best Node" reference for TCP bulk throughput.
// Per connection exactly the obvious thing: connect to the upstream, pipe both ways, half-close
// passed on by pipe(). No accounting, no timers, no cluster logic: what Node's stream layer costs.
// Usage: node node-tcp-proxy.mjs PORT UPSTREAM_PORT
import net from 'node:net';

const [port, upstreamPort] = process.argv.slice(2).map(Number);
const server = net.createServer((down) => {
  const up = net.connect(upstreamPort, '127.0.0.1');
  down.pipe(up);
  up.pipe(down);
  up.on('error', () => down.destroy());
  down.on('error', () => up.destroy());
});
server.listen(port, '127.0.0.1', () => process.stdout.write(`listening ${port}\n`));
process.on('SIGTERM', () => process.exit(0));
