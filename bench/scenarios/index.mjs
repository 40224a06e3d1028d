// The scenario list and how each kind of scenario is measured. A scenario is
// { id, group, label, kind, meshlet?, setup(env) → {port, procs} }; the runner starts it, samples
// the proxy's RSS, measures with the kind's load generator, and stops it. Groups: http (wrk,
// closed loop), h2 (h2load, h2c; single hops and h2 mesh hops), grpc (grpc-js unary), tcp (bulk MB/s), open-loop (fixed rate,
// latency from scheduled send).
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, freePorts, startProcess, waitForPort } from '../lib/procs.mjs';
import { runNodeLoad } from '../load/child.mjs';
import { h2load } from '../load/h2load.mjs';
import { wrk } from '../load/wrk.mjs';
import * as haproxy from '../servers/haproxy.mjs';
import * as meshlet from '../servers/meshlet.mjs';
import { MESH_HOP, SINGLE_HOP } from './proxies.mjs';

const SERVERS = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../servers');
const direct = (portKey) => async (env) => ({ port: env[portKey].port ?? env[portKey], procs: [] });

function build() {
  const list = [];
  list.push({ id: 'direct', group: 'http', label: 'direct (no proxy)', kind: 'wrk', setup: direct('upstream') });
  for (const [name, p] of Object.entries(SINGLE_HOP)) {
    list.push({
      id: `single-hop/${name}`,
      group: 'http',
      hop: 'single-hop',
      proxy: name,
      label: `single-hop ${p.label}`,
      kind: 'wrk',
      meshlet: p.meshlet,
      node: p.node,
      setup: p.start,
    });
  }
  for (const [name, p] of Object.entries(MESH_HOP)) {
    list.push({
      id: `mesh-hop/${name}`,
      group: 'http',
      hop: 'mesh-hop',
      proxy: name,
      label: `mesh-hop ${p.label}`,
      kind: 'wrk',
      meshlet: p.meshlet,
      setup: p.start,
    });
  }

  list.push({
    id: 'h2/direct',
    group: 'h2',
    label: 'HTTP/2 h2c direct',
    kind: 'h2load',
    setup: async (env) => ({ port: env.upstream.h2Port, procs: [] }),
  });
  list.push({
    id: 'h2/meshlet',
    group: 'h2',
    hop: 'h2-single-hop',
    proxy: 'meshlet',
    label: 'HTTP/2 h2c through meshlet (h2 upstream)',
    kind: 'h2load',
    meshlet: true,
    async setup(env) {
      const [port, adminPort] = await freePorts(2);
      const proc = await meshlet.startMeshlet(env.ctx, 'meshlet-h2', {
        port,
        adminPort,
        upstreamPort: env.upstream.h2Port,
        h2Upstream: true,
      });
      return { port, procs: [proc] };
    },
  });

  // The HTTP/2 anchors of issue 20: HAProxy h2c → h2c and the naive node:http2 proxy beside
  // meshlet's single hop, and an h2 mesh hop (mTLS, ALPN h2 between the halves) for both pairs.
  list.push({
    id: 'h2/haproxy',
    group: 'h2',
    hop: 'h2-single-hop',
    proxy: 'haproxy',
    label: 'HTTP/2 h2c through HAProxy (h2c → h2c)',
    kind: 'h2load',
    async setup(env) {
      const port = await freePort();
      const proc = await haproxy.startH2Proxy(env.ctx, {
        port,
        upstreamPort: env.upstream.h2Port,
        threads: env.proxyWorkers,
      });
      return { port, procs: [proc] };
    },
  });
  list.push({
    id: 'h2/node-http2',
    group: 'h2',
    hop: 'h2-single-hop',
    proxy: 'node-http2',
    node: true,
    label: 'HTTP/2 h2c through the naive node:http2 proxy',
    kind: 'h2load',
    async setup(env) {
      const port = await freePort();
      const proc = startProcess('node-h2-proxy', process.execPath, [
        path.join(SERVERS, 'node-h2-proxy.mjs'),
        String(port),
        String(env.upstream.h2Port),
      ]);
      const why = await waitForPort(port, { proc });
      if (why) {
        await proc.stop();
        throw new Error(why);
      }
      return { port, procs: [proc] };
    },
  });
  list.push({
    id: 'h2/mesh-hop/haproxy',
    group: 'h2',
    hop: 'h2-mesh-hop',
    proxy: 'haproxy',
    label: 'HTTP/2 mesh-hop HAProxy pair (mTLS, ALPN h2)',
    kind: 'h2load',
    async setup(env) {
      const [port, inboundPort] = await freePorts(2);
      const opts = { threads: env.proxyWorkers, certs: env.certs };
      const inbound = await haproxy.startH2MeshInbound(env.ctx, {
        ...opts,
        port: inboundPort,
        upstreamPort: env.upstream.h2Port,
      });
      const outbound = await haproxy
        .startH2MeshOutbound(env.ctx, { ...opts, port, peerPort: inboundPort })
        .catch(async (err) => {
          await inbound.stop();
          throw err;
        });
      return { port, procs: [outbound, inbound] };
    },
  });
  list.push({
    id: 'h2/mesh-hop/meshlet',
    group: 'h2',
    hop: 'h2-mesh-hop',
    proxy: 'meshlet',
    label: 'HTTP/2 mesh-hop meshlet pair (mTLS, ALPN h2)',
    kind: 'h2load',
    meshlet: true,
    async setup(env) {
      const [port, inboundPort, a1, a2] = await freePorts(4);
      const procs = await meshlet.startH2MeshPair(env.ctx, {
        port,
        inboundPort,
        upstreamPort: env.upstream.h2Port,
        adminPorts: [a1, a2],
        certs: env.certs,
      });
      return { port, procs };
    },
  });

  list.push({ id: 'grpc/direct', group: 'grpc', label: 'gRPC unary direct', kind: 'grpc', setup: direct('grpcPort') });
  list.push({
    id: 'grpc/meshlet',
    group: 'grpc',
    proxy: 'meshlet',
    label: 'gRPC unary through meshlet',
    kind: 'grpc',
    meshlet: true,
    async setup(env) {
      const [port, adminPort] = await freePorts(2);
      const proc = await meshlet.startMeshlet(env.ctx, 'meshlet-grpc', {
        port,
        adminPort,
        upstreamPort: env.grpcPort,
        h2Upstream: true,
      });
      return { port, procs: [proc] };
    },
  });

  list.push({ id: 'tcp/direct', group: 'tcp', label: 'TCP bulk direct', kind: 'tcp', setup: direct('sinkPort') });
  list.push({
    id: 'tcp/haproxy',
    group: 'tcp',
    proxy: 'haproxy',
    label: 'TCP bulk through HAProxy (mode tcp)',
    kind: 'tcp',
    async setup(env) {
      const port = await freePort();
      const proc = await haproxy.startProxy(env.ctx, {
        port,
        upstreamPort: env.sinkPort,
        threads: env.proxyWorkers,
        mode: 'tcp',
      });
      return { port, procs: [proc] };
    },
  });
  list.push({
    id: 'tcp/node',
    group: 'tcp',
    proxy: 'node-net',
    node: true,
    label: 'TCP bulk through the naive Node net proxy (pipe)',
    kind: 'tcp',
    async setup(env) {
      const port = await freePort();
      const proc = startProcess('node-tcp-proxy', process.execPath, [
        path.join(SERVERS, 'node-tcp-proxy.mjs'),
        String(port),
        String(env.sinkPort),
      ]);
      const why = await waitForPort(port, { proc });
      if (why) {
        await proc.stop();
        throw new Error(why);
      }
      return { port, procs: [proc] };
    },
  });
  list.push({
    id: 'tcp/meshlet',
    group: 'tcp',
    proxy: 'meshlet',
    label: 'TCP bulk through meshlet (tcp_proxy)',
    kind: 'tcp',
    meshlet: true,
    async setup(env) {
      const [port, adminPort] = await freePorts(2);
      const proc = await meshlet.startTcpProxy(env.ctx, { port, adminPort, upstreamPort: env.sinkPort });
      return { port, procs: [proc] };
    },
  });

  list.push({
    id: 'open-loop/direct',
    group: 'open-loop',
    label: 'open-loop direct',
    kind: 'open-loop',
    setup: direct('upstream'),
  });
  for (const [hop, table] of [
    ['single-hop', SINGLE_HOP],
    ['mesh-hop', MESH_HOP],
  ]) {
    for (const name of ['nginx', 'haproxy', 'meshlet']) {
      const p = table[name];
      list.push({
        id: `open-loop/${hop}/${name}`,
        group: 'open-loop',
        hop,
        proxy: name,
        label: `open-loop ${hop} ${p.label}`,
        kind: 'open-loop',
        meshlet: p.meshlet,
        setup: p.start,
      });
    }
  }
  return list;
}

export const SCENARIOS = Object.freeze(build());

/** `--only a,b`: a name selects a scenario id or every id under it (`tcp`, `single-hop`, `open-loop/mesh-hop`). */
export function selectScenarios(only) {
  if (!only || only.length === 0) return SCENARIOS;
  const picked = SCENARIOS.filter((s) => only.some((n) => s.id === n || s.id.startsWith(`${n}/`)));
  const unknown = only.filter((n) => !SCENARIOS.some((s) => s.id === n || s.id.startsWith(`${n}/`)));
  if (unknown.length)
    throw new Error(`unknown scenario(s): ${unknown.join(', ')}; known: ${SCENARIOS.map((s) => s.id).join(', ')}`);
  return picked;
}

/** Seconds a scenario is expected to take (for the progress bar). */
export function expectedSeconds(s, settings) {
  const warm = s.kind === 'tcp' ? 0 : s.kind === 'open-loop' ? 2 * settings.warmupSeconds : settings.warmupSeconds;
  return settings.seconds + warm + 1;
}

/**
 * Measures one started scenario. Returns the metrics object stored in results.json.
 * @param {object} s scenario
 * @param {{port: number}} target
 * @param {object} env shared environment (upstream ports, sink)
 * @param {object} settings load settings
 */
export async function measure(s, target, env, settings) {
  const m = await measureRaw(s, target, env, settings);
  // A run in which nothing got through is a failure to report, not a number to rank.
  if (s.kind === 'tcp') {
    if (!(m.bytesReceived > 0)) throw new Error(`receiver got 0 of ${m.bytesSent} bytes`);
  } else if (!(m.requests > 0 || m.completed > 0)) {
    throw new Error(
      `no successful request (errors ${m.errors ?? 0}, non-2xx ${m.non2xx ?? 0}${m.lastError ? `, last error: ${m.lastError}` : ''})`,
    );
  }
  return m;
}

async function measureRaw(s, target, env, settings) {
  const host = target.host ?? '127.0.0.1';
  // Loopback only, whatever a setup returns: the bench never sends traffic anywhere else.
  if (!host.startsWith('127.')) throw new Error(`refusing non-loopback target ${host}`);
  const hostPort = `${host}:${target.port}`;
  const url = `http://${hostPort}/`;
  switch (s.kind) {
    case 'wrk': {
      const w = settings.wrk;
      if (settings.warmupSeconds > 0) await wrk(url, { ...w, seconds: settings.warmupSeconds });
      return wrk(url, { ...w, seconds: settings.seconds });
    }
    case 'h2load': {
      const h = settings.h2load;
      if (settings.warmupSeconds > 0) await h2load(url, { ...h, seconds: settings.warmupSeconds });
      return h2load(url, { ...h, seconds: settings.seconds });
    }
    case 'grpc': {
      const g = settings.grpc;
      const args = (sec) => [hostPort, String(g.concurrency), String(g.channels), String(sec), String(g.payloadBytes)];
      if (settings.warmupSeconds > 0)
        await runNodeLoad('grpc-load.mjs', args(settings.warmupSeconds), (settings.warmupSeconds + 30) * 1000);
      return runNodeLoad('grpc-load.mjs', args(settings.seconds), (settings.seconds + 30) * 1000);
    }
    case 'tcp': {
      const received = env.nextSinkResult((settings.seconds + 20) * 1000);
      const sent = await runNodeLoad(
        'tcp-send.mjs',
        [hostPort, String(settings.seconds)],
        (settings.seconds + 30) * 1000,
      );
      const got = await received.catch((err) => ({ bytes: 0, ms: 0, error: err.message }));
      return {
        mbPerSec: got.ms > 0 ? got.bytes / 1e6 / (got.ms / 1000) : 0,
        bytesSent: sent.bytes,
        bytesReceived: got.bytes,
        seconds: got.ms / 1000,
        errors: got.bytes === sent.bytes ? 0 : 1,
      };
    }
    case 'open-loop': {
      const o = settings.openLoop;
      // Closed-loop warm-up first (JIT, connection pools, TLS sessions), so the fixed-rate run
      // measures a warm proxy rather than its cold start; then the generator's own warm-up.
      if (settings.warmupSeconds > 0) await wrk(url, { ...settings.wrk, seconds: settings.warmupSeconds });
      const r = await runNodeLoad(
        'open-loop.mjs',
        [
          hostPort,
          '/kib',
          String(o.rate),
          String(settings.seconds),
          String(settings.warmupSeconds),
          String(o.bodyBytes),
          String(o.maxConnections),
        ],
        (settings.seconds + settings.warmupSeconds + 40) * 1000,
      );
      return { ...r, errors: r.errors + r.timeouts, non2xx: r.non2xx };
    }
    default:
      throw new Error(`unknown scenario kind ${s.kind}`);
  }
}
