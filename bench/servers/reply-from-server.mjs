// Child process: a single-hop reverse proxy built on fastify + @fastify/reply-from (undici pool
// upstream, keep-alive both sides). Usage: node reply-from-server.mjs PORT TARGET_URL
import replyFrom from '@fastify/reply-from';
import Fastify from 'fastify';

const [port, target] = process.argv.slice(2);
const app = Fastify({ logger: false, keepAliveTimeout: 120_000 });
// Forward bodies as raw streams instead of parsing them.
app.removeAllContentTypeParsers();
app.addContentTypeParser('*', (_req, payload, done) => done(null, payload));
await app.register(replyFrom, {
  base: target,
  undici: { connections: 128, pipelining: 1, keepAliveTimeout: 60_000 },
});
app.all('/*', (req, reply) => reply.from(req.url));
await app.listen({ port: Number(port), host: '127.0.0.1' });
process.stdout.write(`listening ${port}\n`);
process.on('SIGTERM', () => app.close().then(() => process.exit(0)));
