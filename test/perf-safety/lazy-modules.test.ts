// Idle memory (bench/MEMORY.md): heavy modules load only when the configuration needs them — gRPC
// and the Envoy protos with dynamic_resources, the OpenTelemetry SDK and exporters with a traced
// HCM, node-forge with a CSR provider, undici/jose with gateway filters, yaml for YAML bootstraps.
// This runs the compiled proxy (dist/, built by `npm test`) in a fresh process, so the module graph
// is Node's own, and checks what a static sidecar loaded; and that a bad tracing config is still
// reported at start-up although the tracing modules are not loaded to validate it.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const ROOT = join(__dirname, '../..');
const MAIN = join(ROOT, 'dist/proxy/main.js');
const HEAVY = [
  '@grpc/grpc-js',
  '@grpc/proto-loader',
  'protobufjs',
  '@opentelemetry/sdk-trace-base',
  '@opentelemetry/exporter-trace-otlp-grpc',
  '@opentelemetry/exporter-trace-otlp-proto',
  'node-forge',
  'undici',
  'jose',
  'yaml',
];

/** Run `meshlet proxy` from dist in a child that reports its loaded packages once started. */
const PROBE = `
const { main } = require(${JSON.stringify(MAIN)});
main(process.argv.slice(1));
const seen = () => {
  const pk = new Set();
  for (const f of Object.keys(require.cache)) {
    const m = /node_modules\\/((?:@[^/]+\\/)?[^/]+)/.exec(f);
    if (m) pk.add(m[1]);
  }
  return [...pk];
};
const t = setInterval(() => {
  if (Object.keys(require.cache).some((f) => f.endsWith('/proxy/server.js'))) {
    clearInterval(t);
    setTimeout(() => { process.stdout.write(JSON.stringify(seen()) + '\\n'); process.exit(0); }, 300);
  }
}, 20);
setTimeout(() => process.exit(3), 20000).unref();
`;

/** Just run the command. */
const PLAIN = `require(${JSON.stringify(MAIN)}).main(process.argv.slice(1));`;

function run(script: string, args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const child: ChildProcess = spawn(process.execPath, ['-e', script, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout!.on('data', (d) => (out += d));
    child.stderr!.on('data', (d) => (err += d));
    const kill = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.on('exit', (code) => {
      clearTimeout(kill);
      resolve({ code, out, err });
    });
  });
}

describe.skipIf(!existsSync(MAIN))('a static sidecar does not load what its configuration does not use', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'meshlet-lazy-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('JSON bootstrap with a listener, a cluster and admin: no gRPC, protobuf, OpenTelemetry SDK, forge, undici, jose or yaml', async () => {
    const file = join(dir, 'static.json');
    writeFileSync(
      file,
      JSON.stringify({
        node: { id: 'n', cluster: 'c' },
        admin: { address: { socket_address: { address: '127.0.0.1', port_value: 0 } } },
        static_resources: {
          listeners: [
            {
              name: 'l',
              address: { socket_address: { address: '127.0.0.1', port_value: 0 } },
              filter_chains: [{ filters: [{ name: 'envoy.filters.network.tcp_proxy', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy', stat_prefix: 't', cluster: 'up' } }] }],
            },
          ],
          clusters: [
            {
              name: 'up',
              type: 'STATIC',
              load_assignment: { cluster_name: 'up', endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: 9 } } } }] }] },
            },
          ],
        },
      }),
    );
    const r = await run(PROBE, ['proxy', '--bootstrap', file, '--log-level', 'error']);
    expect(r.code, r.err).toBe(0);
    const loaded = JSON.parse(r.out.trim().split('\n').pop()!) as string[];
    expect(loaded).toContain('pino'); // the probe saw the real module graph
    expect(loaded.filter((p) => HEAVY.includes(p))).toEqual([]);
  });

  it('a bad tracing provider is still reported at start-up, with every field', async () => {
    const file = join(dir, 'bad-tracing.json');
    writeFileSync(
      file,
      JSON.stringify({
        node: { id: 'n', cluster: 'c' },
        tracing: {
          http: {
            name: 'envoy.tracers.opentelemetry',
            typed_config: {
              '@type': 'type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig',
              grpc_service: { envoy_grpc: { cluster_name: '' } },
              service_name: 5,
            },
          },
        },
        static_resources: { listeners: [], clusters: [] },
      }),
    );
    const r = await run(PLAIN, ['proxy', '--bootstrap', file, '--log-level', 'error']);
    expect(r.code).toBe(1);
    expect(r.err).toContain('tracing.http.typed_config.grpc_service.envoy_grpc.cluster_name');
    expect(r.err).toContain('tracing.http.typed_config.service_name');
  });
});
