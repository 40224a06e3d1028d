// Starts meshlet sidecars for the bench and decides whether meshlet scenarios can run at all. The
// proxy is built by others while this harness exists, so every meshlet scenario first asks
// `availability()`; a missing build or a proxy that will not serve becomes "not available: reason"
// in the report, never a failed run. Mesh-hop setups are pluggable (MESH_MODES): static bootstraps
// with TLS transport sockets today; an embedded-control-plane mode plugs in beside it.
import { existsSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { startProcess, waitForPort } from '../lib/procs.mjs';
import { bootstrap } from './meshlet-bootstrap.mjs';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const BIN = path.join(REPO, 'bin/meshlet.js');
const MAIN = path.join(REPO, 'dist/proxy/main.js');

/** Why meshlet cannot be benchmarked right now, or null when its build is present. */
export function buildMissing() {
  if (!existsSync(MAIN)) return 'dist/proxy/main.js missing: run `npm run build` (or pass --build)';
  return null;
}

/** One GET through the proxy; resolves with the status code or an error text. */
export function probe(port, pathName = '/') {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: pathName, agent: false, timeout: 5000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode));
    });
    req.on('timeout', () => req.destroy(new Error('timed out after 5 s')));
    req.on('error', (err) => resolve(err.message));
  });
}

/**
 * Starts one `meshlet proxy` from a generated bootstrap and waits for its listener.
 * @returns {Promise<ReturnType<typeof startProcess>>} throws Error(reason) when it does not come up
 */
export async function startMeshlet(ctx, name, options) {
  const missing = buildMissing();
  if (missing) throw new Error(missing);
  const file = path.join(ctx.dir, `${name}.yaml`);
  writeFileSync(file, stringify(bootstrap({ id: name, ...options })));
  const proc = startProcess(name, process.execPath, [BIN, 'proxy', '--bootstrap', file, '--log-level', 'warn'], {
    cwd: REPO,
  });
  const why = await waitForPort(options.port, { proc, timeoutMs: 15_000 });
  if (why) {
    await proc.stop();
    throw new Error(why);
  }
  return proc;
}

/** Single-hop meshlet: plain HTTP listener → upstream cluster (HTTP/1.1 or h2c). */
export async function startSingleHop(ctx, { port, adminPort, upstreamPort, h2Upstream = false, name = 'meshlet' }) {
  const proc = await startMeshlet(ctx, name, { port, adminPort, upstreamPort, h2Upstream });
  const status = await probe(port);
  if (status !== 200) {
    await proc.stop();
    throw new Error(`probe through ${name} answered ${status}`);
  }
  return proc;
}

/** TCP proxy meshlet: tcp_proxy listener → upstream. */
export function startTcpProxy(ctx, { port, adminPort, upstreamPort }) {
  return startMeshlet(ctx, 'meshlet-tcp', { port, adminPort, upstreamPort, mode: 'tcp' });
}

/**
 * Ways to build a meshlet mesh hop (client → outbound sidecar → mTLS → inbound sidecar → app).
 * Each mode: { describe, available(ctx) → reason|null, start(ctx, ports) → procs[] }.
 */
export const MESH_MODES = {
  static: {
    describe: 'two meshlet processes with static bootstraps and TLS transport sockets (SPIFFE SAN checked)',
    available: () => buildMissing(),
    async start(ctx, { port, inboundPort, upstreamPort, adminPorts, certs }) {
      const inbound = await startMeshlet(ctx, 'meshlet-inbound', {
        port: inboundPort,
        adminPort: adminPorts[0],
        upstreamPort,
        downstreamTls: { identity: certs.server, ca: certs.ca, peerSpiffe: certs.client.spiffe },
      });
      let outbound;
      try {
        outbound = await startMeshlet(ctx, 'meshlet-outbound', {
          port,
          adminPort: adminPorts[1],
          upstreamPort: inboundPort,
          upstreamTls: { identity: certs.client, ca: certs.ca, peerSpiffe: certs.server.spiffe },
        });
      } catch (err) {
        await inbound.stop();
        throw err;
      }
      const status = await probe(port);
      if (status !== 200) {
        await Promise.all([inbound.stop(), outbound.stop()]);
        throw new Error(`probe through the meshlet pair answered ${status}`);
      }
      return [outbound, inbound];
    },
  },
};
