// Child process: the naive `node:http2` reverse proxy, the "best Node" HTTP/2 reference of issue 20.
// h2c in, one h2c session to the upstream, and per request exactly the obvious thing: the server's
// 'stream' event → upstream session.request(headers) → pipe both ways, response headers copied
// back. No pooling beyond the one session, no header rewriting, no error mapping beyond 502/reset.
// Usage: node node-h2-proxy.mjs PORT UPSTREAM_PORT
import http2 from 'node:http2';

const [port, upstreamPort] = process.argv.slice(2).map(Number);
const upstream = http2.connect(`http://127.0.0.1:${upstreamPort}`);
upstream.on('error', () => process.exit(1));
const server = http2.createServer();
server.on('stream', (stream, headers) => {
  const up = upstream.request(headers);
  up.on('response', (h) => stream.destroyed || stream.respond(h));
  stream.pipe(up);
  up.pipe(stream);
  up.on('error', () => stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR));
  stream.on('error', () => up.close(http2.constants.NGHTTP2_CANCEL));
});
server.listen(port, '127.0.0.1', () => process.stdout.write(`listening ${port}\n`));
process.on('SIGTERM', () => process.exit(0));
