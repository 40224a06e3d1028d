// HAProxy roles for the bench: single-hop HTTP proxy (keep-alive both sides, connection reuse),
// both halves of an mTLS mesh hop, and a TCP-mode proxy; the HTTP/2 variants of the single hop
// (h2c → h2c) and of the mesh hop (h2c → mTLS with ALPN h2 → h2c). Runs in the foreground (-db) with a
// generated config in the run directory.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { startProcess, waitForPort } from '../lib/procs.mjs';

function head(threads, mode) {
  return `global
  nbthread ${threads}
  maxconn 4096
  ssl-default-bind-options ssl-min-ver TLSv1.3
  ssl-default-server-options ssl-min-ver TLSv1.3
defaults
  mode ${mode}
  timeout connect 5s
  timeout client 300s
  timeout server 300s
  ${mode === 'http' ? 'option http-keep-alive\n  http-reuse always' : ''}
`;
}

async function launch(ctx, name, conf, port) {
  const file = path.join(ctx.dir, `${name}.cfg`);
  writeFileSync(file, conf);
  const proc = startProcess(name, 'haproxy', ['-db', '-f', file]);
  const why = await waitForPort(port, { proc, timeoutMs: 10_000 });
  if (why) {
    await proc.stop();
    throw new Error(why);
  }
  return proc;
}

/** Single-hop HTTP proxy, or a TCP proxy with mode 'tcp'. */
export function startProxy(ctx, { port, upstreamPort, threads, mode = 'http', name = `haproxy-${mode}` }) {
  const conf = `${head(threads, mode)}
frontend fe
  bind 127.0.0.1:${port}
  default_backend be
backend be
  server s1 127.0.0.1:${upstreamPort}
`;
  return launch(ctx, name, conf, port);
}

/** Mesh outbound half: plain HTTP in, mTLS to the inbound half (client cert, peer verified). */
export function startMeshOutbound(ctx, { port, peerPort, threads, certs }) {
  const conf = `${head(threads, 'http')}
frontend fe
  bind 127.0.0.1:${port}
  default_backend be
backend be
  server peer 127.0.0.1:${peerPort} ssl crt ${certs.client.pem} ca-file ${certs.ca} verify required verifyhost localhost sni str(localhost)
`;
  return launch(ctx, 'haproxy-outbound', conf, port);
}

/** Mesh inbound half: mTLS in (client certificate required), plain HTTP to the app. */
export function startMeshInbound(ctx, { port, upstreamPort, threads, certs }) {
  const conf = `${head(threads, 'http')}
frontend fe
  bind 127.0.0.1:${port} ssl crt ${certs.server.pem} ca-file ${certs.ca} verify required
  default_backend be
backend be
  server app 127.0.0.1:${upstreamPort}
`;
  return launch(ctx, 'haproxy-inbound', conf, port);
}

/** HTTP/2 single hop: h2c in (prior knowledge), h2c to the upstream, connections reused. */
export function startH2Proxy(ctx, { port, upstreamPort, threads }) {
  const conf = `${head(threads, 'http')}
frontend fe
  bind 127.0.0.1:${port} proto h2
  default_backend be
backend be
  server s1 127.0.0.1:${upstreamPort} proto h2
`;
  return launch(ctx, 'haproxy-h2', conf, port);
}

/** HTTP/2 mesh outbound half: h2c in, mTLS with ALPN h2 to the inbound half. */
export function startH2MeshOutbound(ctx, { port, peerPort, threads, certs }) {
  const conf = `${head(threads, 'http')}
frontend fe
  bind 127.0.0.1:${port} proto h2
  default_backend be
backend be
  server peer 127.0.0.1:${peerPort} ssl alpn h2 crt ${certs.client.pem} ca-file ${certs.ca} verify required verifyhost localhost sni str(localhost)
`;
  return launch(ctx, 'haproxy-h2-outbound', conf, port);
}

/** HTTP/2 mesh inbound half: mTLS in with ALPN h2 (client certificate required), h2c to the app. */
export function startH2MeshInbound(ctx, { port, upstreamPort, threads, certs }) {
  const conf = `${head(threads, 'http')}
frontend fe
  bind 127.0.0.1:${port} ssl crt ${certs.server.pem} ca-file ${certs.ca} verify required alpn h2
  default_backend be
backend be
  server app 127.0.0.1:${upstreamPort} proto h2
`;
  return launch(ctx, 'haproxy-h2-inbound', conf, port);
}
