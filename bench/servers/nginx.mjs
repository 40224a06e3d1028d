// nginx roles for the bench: the upstream every scenario hits (fixed 13-byte body, keep-alive,
// h2c port), a single-hop reverse proxy, and the two halves of an mTLS mesh hop. Config is
// generated per run into the run's private directory; nginx runs in the foreground (daemon off).
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { startProcess, waitForPort } from '../lib/procs.mjs';

/** The upstream's fixed answer: 13 bytes. */
export const SMALL_BODY = 'Hello, World\n';
/** The open-loop scenario's answer: 1 KiB. */
export const KIB_BODY = `${'x'.repeat(1023)}\n`;

function common(dir, name, workers) {
  const isRoot = process.getuid?.() === 0;
  return [
    // Workers must read the run directory (mode 0700); as root keep them root, as a user they are us.
    isRoot ? 'user root root;' : '',
    'daemon off;',
    'master_process on;',
    `worker_processes ${workers};`,
    `pid ${path.join(dir, `${name}.pid`)};`,
    `error_log ${path.join(dir, `${name}-error.log`)} warn;`,
    'worker_rlimit_nofile 65536;',
    'events { worker_connections 8192; multi_accept on; }',
  ].join('\n');
}

function httpCommon(dir, name) {
  return [
    'access_log off;',
    'default_type text/plain;',
    'keepalive_requests 10000000;',
    'keepalive_timeout 300s;',
    `client_body_temp_path ${path.join(dir, `${name}-body`)};`,
    `proxy_temp_path ${path.join(dir, `${name}-proxy`)};`,
    `fastcgi_temp_path ${path.join(dir, `${name}-fcgi`)};`,
    `uwsgi_temp_path ${path.join(dir, `${name}-uwsgi`)};`,
    `scgi_temp_path ${path.join(dir, `${name}-scgi`)};`,
  ].join('\n  ');
}

const PROXY_LOCATION = `location / {
      proxy_pass $SCHEME://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering on;
      $EXTRA
    }`;

async function launch(ctx, name, conf, ports) {
  const file = path.join(ctx.dir, `${name}.conf`);
  writeFileSync(file, conf);
  const proc = startProcess(name, 'nginx', ['-p', ctx.dir, '-c', file, '-e', path.join(ctx.dir, `${name}-error.log`)]);
  for (const port of ports) {
    const why = await waitForPort(port, { proc, timeoutMs: 10_000 });
    if (why) {
      await proc.stop();
      throw new Error(why);
    }
  }
  return proc;
}

/**
 * Upstream: HTTP/1.1 keep-alive on `port`, h2c (prior knowledge) on `h2Port`.
 * GET/POST / → 200 with 13 bytes; /kib → 200 with 1 KiB.
 */
export function startUpstream(ctx, { port, h2Port, workers }) {
  const routes = `location = /kib { return 200 "${KIB_BODY.replace(/\n/, '\\n')}"; }
    location / { return 200 "${SMALL_BODY.replace(/\n/, '\\n')}"; }`;
  const conf = `${common(ctx.dir, 'nginx-upstream', workers)}
http {
  ${httpCommon(ctx.dir, 'nginx-upstream')}
  http2_max_concurrent_streams 256;
  server {
    listen 127.0.0.1:${port} backlog=4096;
    ${routes}
  }
  server {
    listen 127.0.0.1:${h2Port} http2 backlog=4096;
    ${routes}
  }
}
`;
  return launch(ctx, 'nginx-upstream', conf, [port, h2Port]);
}

/** Single-hop reverse proxy: plain HTTP in, keep-alive pool to the upstream. */
export function startProxy(ctx, { port, upstreamPort, workers, name = 'nginx-proxy' }) {
  const conf = `${common(ctx.dir, name, workers)}
http {
  ${httpCommon(ctx.dir, name)}
  upstream app { server 127.0.0.1:${upstreamPort}; keepalive 128; keepalive_requests 10000000; keepalive_timeout 300s; }
  server {
    listen 127.0.0.1:${port} backlog=4096;
    ${PROXY_LOCATION.replace('$SCHEME', 'http').replace('$EXTRA', '')}
  }
}
`;
  return launch(ctx, name, conf, [port]);
}

/** Mesh outbound half: plain HTTP from the app, mTLS (client cert, verified peer) to the inbound half. */
export function startMeshOutbound(ctx, { port, peerPort, workers, certs }) {
  const name = 'nginx-outbound';
  const tls = [
    `proxy_ssl_certificate ${certs.client.cert};`,
    `proxy_ssl_certificate_key ${certs.client.key};`,
    `proxy_ssl_trusted_certificate ${certs.ca};`,
    'proxy_ssl_verify on;',
    'proxy_ssl_name localhost;',
    'proxy_ssl_server_name on;',
    'proxy_ssl_session_reuse on;',
    'proxy_ssl_protocols TLSv1.3;',
  ].join('\n      ');
  const conf = `${common(ctx.dir, name, workers)}
http {
  ${httpCommon(ctx.dir, name)}
  upstream app { server 127.0.0.1:${peerPort}; keepalive 128; keepalive_requests 10000000; keepalive_timeout 300s; }
  server {
    listen 127.0.0.1:${port} backlog=4096;
    ${PROXY_LOCATION.replace('$SCHEME', 'https').replace('$EXTRA', tls)}
  }
}
`;
  return launch(ctx, name, conf, [port]);
}

/** Mesh inbound half: mTLS in (client certificate required and verified), plain HTTP to the app. */
export function startMeshInbound(ctx, { port, upstreamPort, workers, certs }) {
  const name = 'nginx-inbound';
  const conf = `${common(ctx.dir, name, workers)}
http {
  ${httpCommon(ctx.dir, name)}
  upstream app { server 127.0.0.1:${upstreamPort}; keepalive 128; keepalive_requests 10000000; keepalive_timeout 300s; }
  server {
    listen 127.0.0.1:${port} ssl backlog=4096;
    ssl_certificate ${certs.server.cert};
    ssl_certificate_key ${certs.server.key};
    ssl_client_certificate ${certs.ca};
    ssl_verify_client on;
    ssl_protocols TLSv1.3;
    ssl_session_cache shared:inbound:10m;
    ${PROXY_LOCATION.replace('$SCHEME', 'http').replace('$EXTRA', '')}
  }
}
`;
  return launch(ctx, name, conf, [port]);
}
