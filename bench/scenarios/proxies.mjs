// The proxies under test, each behind one shape: start(env) → { port, procs } listening on
// 127.0.0.1 and forwarding to the shared upstream. Every setup either resolves ready (a probe has
// succeeded or the port accepts) or throws Error(reason), which the runner reports as
// "not available: reason". Proxies get `env.proxyWorkers` workers/threads (Node ones are one
// process by nature), stated in the report.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, freePorts, startProcess, waitForPort } from '../lib/procs.mjs';
import * as haproxy from '../servers/haproxy.mjs';
import * as meshlet from '../servers/meshlet.mjs';
import * as nginx from '../servers/nginx.mjs';

const SERVERS = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../servers');

async function nodeProxy(env, script, name) {
  const port = await freePort();
  const proc = startProcess(name, process.execPath, [
    path.join(SERVERS, script),
    String(port),
    `http://127.0.0.1:${env.upstream.port}`,
  ]);
  const why = await waitForPort(port, { proc });
  if (why) {
    await proc.stop();
    throw new Error(why);
  }
  const status = await meshlet.probe(port);
  if (status !== 200) {
    await proc.stop();
    throw new Error(`probe through ${name} answered ${status}`);
  }
  return { port, procs: [proc] };
}

/** Single-hop HTTP/1.1 proxies, keyed by scenario name. */
export const SINGLE_HOP = {
  nginx: {
    label: 'nginx',
    async start(env) {
      const port = await freePort();
      const proc = await nginx.startProxy(env.ctx, {
        port,
        upstreamPort: env.upstream.port,
        workers: env.proxyWorkers,
      });
      return { port, procs: [proc] };
    },
  },
  haproxy: {
    label: 'HAProxy',
    async start(env) {
      const port = await freePort();
      const proc = await haproxy.startProxy(env.ctx, {
        port,
        upstreamPort: env.upstream.port,
        threads: env.proxyWorkers,
      });
      return { port, procs: [proc] };
    },
  },
  'http-proxy': {
    label: 'http-proxy (Node)',
    node: true,
    start: (env) => nodeProxy(env, 'http-proxy-server.mjs', 'http-proxy'),
  },
  'reply-from': {
    label: '@fastify/reply-from (Node)',
    node: true,
    start: (env) => nodeProxy(env, 'reply-from-server.mjs', 'reply-from'),
  },
  meshlet: {
    label: 'meshlet',
    meshlet: true,
    async start(env) {
      const [port, adminPort] = await freePorts(2);
      const proc = await meshlet.startSingleHop(env.ctx, { port, adminPort, upstreamPort: env.upstream.port });
      return { port, procs: [proc] };
    },
  },
};

/** Mesh hops: client → outbound proxy → mTLS → inbound proxy → upstream. */
export const MESH_HOP = {
  nginx: {
    label: 'nginx pair (mTLS)',
    async start(env) {
      const [port, inboundPort] = await freePorts(2);
      const inbound = await nginx.startMeshInbound(env.ctx, {
        port: inboundPort,
        upstreamPort: env.upstream.port,
        workers: env.proxyWorkers,
        certs: env.certs,
      });
      const outbound = await nginx
        .startMeshOutbound(env.ctx, { port, peerPort: inboundPort, workers: env.proxyWorkers, certs: env.certs })
        .catch(async (err) => {
          await inbound.stop();
          throw err;
        });
      return { port, procs: [outbound, inbound] };
    },
  },
  haproxy: {
    label: 'HAProxy pair (mTLS)',
    async start(env) {
      const [port, inboundPort] = await freePorts(2);
      const inbound = await haproxy.startMeshInbound(env.ctx, {
        port: inboundPort,
        upstreamPort: env.upstream.port,
        threads: env.proxyWorkers,
        certs: env.certs,
      });
      const outbound = await haproxy
        .startMeshOutbound(env.ctx, { port, peerPort: inboundPort, threads: env.proxyWorkers, certs: env.certs })
        .catch(async (err) => {
          await inbound.stop();
          throw err;
        });
      return { port, procs: [outbound, inbound] };
    },
  },
  meshlet: {
    label: 'meshlet pair (mTLS)',
    meshlet: true,
    async start(env) {
      const mode = meshlet.MESH_MODES[env.meshletMode];
      if (!mode)
        throw new Error(
          `unknown meshlet mesh mode "${env.meshletMode}" (known: ${Object.keys(meshlet.MESH_MODES).join(', ')})`,
        );
      const missing = mode.available(env.ctx);
      if (missing) throw new Error(missing);
      const [port, inboundPort, a1, a2] = await freePorts(4);
      const started = await mode.start(env.ctx, {
        port,
        inboundPort,
        upstreamPort: env.upstream.port,
        adminPorts: [a1, a2],
        certs: env.certs,
      });
      return { port: started.port ?? port, host: started.host, procs: started.procs, memoryProcs: started.memoryProcs };
    },
  },
};
