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
import { freePorts, startProcess, waitForPort } from '../lib/procs.mjs';
import { bootstrap } from './meshlet-bootstrap.mjs';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
let BIN = path.join(REPO, 'bin/meshlet.js');

/** Benchmarks another meshlet build: a launcher laid out like bin/meshlet.js (../dist beside it). */
export function useMeshletBin(file) {
  BIN = path.resolve(file);
}

let CONCURRENCY = 1;

/** Worker processes per meshlet (`--concurrency`), matching nginx/HAProxy's `--proxy-workers`. */
export function useMeshletConcurrency(n) {
  CONCURRENCY = n;
}

/** The launcher being benchmarked. */
export function meshletBin() {
  return BIN;
}

/** Why meshlet cannot be benchmarked right now, or null when its build is present. */
export function buildMissing() {
  if (!existsSync(BIN)) return `${BIN} missing`;
  const main = path.join(path.dirname(BIN), '../dist/proxy/main.js');
  if (!existsSync(main)) return `${path.relative(REPO, main)} missing: run \`npm run build\` (or pass --build)`;
  return null;
}

/** One GET through the proxy; resolves with the status code or an error text. */
export function probe(port, pathName = '/', host = '127.0.0.1') {
  return new Promise((resolve) => {
    const req = http.get({ host, port, path: pathName, agent: false, timeout: 5000 }, (res) => {
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
  const args = [BIN, 'proxy', '--bootstrap', file, '--log-level', 'warn'];
  if (CONCURRENCY > 1) args.push('--concurrency', String(CONCURRENCY));
  const proc = startProcess(name, process.execPath, args, { cwd: REPO });
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
 * Each mode: { describe, available(ctx) → reason|null, start(ctx, ports) → { procs, host?, port? } }
 * where host:port (default 127.0.0.1:ports.port) is where the client sends traffic.
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
      return { procs: [outbound, inbound] };
    },
  },
  'control-plane': {
    describe:
      'the embedded control plane (meshlet control-plane) serving a two-workload mesh over ADS; two meshlet sidecars with mTLS via SDS',
    available: () => buildMissing(),
    start: startControlPlaneMesh,
  },
};

/**
 * HTTP/2 mesh hop: client (h2c) → outbound meshlet → mTLS with ALPN h2 → inbound meshlet → h2c
 * app, the way Istio sidecars talk to each other. Static bootstraps, SPIFFE SAN checked.
 */
export async function startH2MeshPair(ctx, { port, inboundPort, upstreamPort, adminPorts, certs }) {
  const inbound = await startMeshlet(ctx, 'meshlet-h2-inbound', {
    port: inboundPort,
    adminPort: adminPorts[0],
    upstreamPort,
    h2Upstream: true,
    downstreamTls: { identity: certs.server, ca: certs.ca, peerSpiffe: certs.client.spiffe, alpn: ['h2', 'http/1.1'] },
  });
  let outbound;
  try {
    outbound = await startMeshlet(ctx, 'meshlet-h2-outbound', {
      port,
      adminPort: adminPorts[1],
      upstreamPort: inboundPort,
      h2Upstream: true,
      upstreamTls: { identity: certs.client, ca: certs.ca, peerSpiffe: certs.server.spiffe, alpn: ['h2'] },
    });
  } catch (err) {
    await inbound.stop();
    throw err;
  }
  const status = await probe(port);
  if (status !== 200) {
    await Promise.all([inbound.stop(), outbound.stop()]);
    throw new Error(`probe through the meshlet h2 pair answered ${status}`);
  }
  return [outbound, inbound];
}

/**
 * Mesh hop through the embedded control plane: a mesh file with a `bench-client` workload (the
 * load generator's side) and a `bench-app` workload (the upstream nginx), one control plane, and
 * one sidecar per workload bootstrapped only with ADS. The client's sidecar exposes the app's
 * service on its outbound IP (127.0.0.2) at the service port; the app's sidecar terminates mTLS on
 * its inbound port. Certificates come from the control plane's CA, not from `certs`.
 */
async function startControlPlaneMesh(ctx, { upstreamPort }) {
  const [cpPort, clientSvcPort, clientAppPort, appSvcPort, in1, in2, ad1, ad2] = await freePorts(8);
  const mesh = {
    trust_domain: 'cluster.local',
    services: [
      {
        name: 'bench-client',
        namespace: 'bench',
        ports: [{ name: 'http', port: clientSvcPort, protocol: 'http', target_port: clientAppPort }],
      },
      {
        name: 'bench-app',
        namespace: 'bench',
        ports: [{ name: 'http', port: appSvcPort, protocol: 'http', target_port: upstreamPort }],
      },
    ],
    workloads: [
      {
        name: 'bench-client-v1',
        namespace: 'bench',
        service_account: 'bench-client',
        service: 'bench-client',
        version: 'v1',
        address: `127.0.0.1:${clientAppPort}`,
        inbound_port: in1,
        admin_port: ad1,
        outbound_ip: '127.0.0.2',
      },
      {
        name: 'bench-app-v1',
        namespace: 'bench',
        service_account: 'bench-app',
        service: 'bench-app',
        version: 'v1',
        address: `127.0.0.1:${upstreamPort}`,
        inbound_port: in2,
        admin_port: ad2,
        outbound_ip: '127.0.0.3',
      },
    ],
  };
  const meshFile = path.join(ctx.dir, 'bench-mesh.yaml');
  writeFileSync(meshFile, stringify(mesh));
  const cp = startProcess(
    'meshlet-control-plane',
    process.execPath,
    [BIN, 'control-plane', '--mesh', meshFile, '--port', String(cpPort), '--tls-port', 'off', '--insecure-allow-unauthenticated-ads', '--insecure-send-private-keys', '--log-level', 'warn'],
    { cwd: REPO },
  );
  const procs = [cp];
  const fail = async (reason) => {
    await Promise.all(procs.map((p) => p.stop()));
    throw new Error(reason);
  };
  const cpWhy = await waitForPort(cpPort, { proc: cp, timeoutMs: 15_000 });
  if (cpWhy) return fail(cpWhy);
  for (const [id, admin] of [
    ['bench-app-v1', ad2],
    ['bench-client-v1', ad1],
  ]) {
    const file = path.join(ctx.dir, `${id}.yaml`);
    writeFileSync(file, stringify(adsBootstrap(id, admin, cpPort)));
    procs.push(
      startProcess(`meshlet-${id}`, process.execPath, [BIN, 'proxy', '--bootstrap', file, '--log-level', 'warn'], {
        cwd: REPO,
      }),
    );
  }
  // Listeners arrive over xDS, so poll the client's outbound listener until a request gets through.
  const host = '127.0.0.2';
  const deadline = Date.now() + 30_000;
  let last = 'no answer';
  while (Date.now() < deadline) {
    const dead = procs.find((p) => p.child.exitCode !== null || p.child.signalCode !== null);
    if (dead) return fail(`${dead.name} exited: ${dead.lastLine() || 'no output'}`);
    last = await probe(appSvcPort, '/', host);
    // Memory is the two sidecars' (the control plane is not on the data path).
    if (last === 200) return { procs, memoryProcs: procs.slice(1), host, port: appSvcPort };
    await new Promise((r) => setTimeout(r, 250));
  }
  return fail(`no 200 through the control-plane mesh within 30 s (last: ${last})`);
}

/** A sidecar bootstrap with nothing static but the ADS cluster, as Istio's pilot-agent writes. */
function adsBootstrap(id, adminPort, cpPort) {
  return {
    node: { id, cluster: id.replace(/-v1$/, '') },
    admin: { address: { socket_address: { address: '127.0.0.1', port_value: adminPort } } },
    dynamic_resources: {
      ads_config: {
        api_type: 'GRPC',
        transport_api_version: 'V3',
        grpc_services: [{ envoy_grpc: { cluster_name: 'xds-grpc' } }],
      },
      lds_config: { ads: {}, resource_api_version: 'V3' },
      cds_config: { ads: {}, resource_api_version: 'V3' },
    },
    static_resources: {
      clusters: [
        {
          name: 'xds-grpc',
          type: 'STATIC',
          connect_timeout: '1s',
          typed_extension_protocol_options: {
            'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
              '@type': 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
              explicit_http_config: { http2_protocol_options: {} },
            },
          },
          load_assignment: {
            cluster_name: 'xds-grpc',
            endpoints: [
              {
                lb_endpoints: [
                  { endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: cpPort } } } },
                ],
              },
            ],
          },
        },
      ],
    },
  };
}
