/**
 * The SO_ORIGINAL_DST addon and resolver on real sockets (no NAT here: a direct connection has no
 * redirect, so the answer is "none" or the socket's own local address, never anything else; bad
 * fds are "none", never a throw), and the `meshlet proxy` start-up line when the addon is missing
 * (one warn line, explicit mode) versus present (no warning). The redirected case is covered in
 * netns-capture.test.ts.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadOriginalDst, resolverFor } from '../../proxy/intercept/original-dst';

const ROOT = resolve(__dirname, '../..');
const ADDON = join(ROOT, 'build/Release/original_dst.node');
const haveAddon = existsSync(ADDON);
if (!haveAddon) console.warn(`[skipped] SO_ORIGINAL_DST addon tests: ${ADDON} is not built (npm ci / node scripts/build-native.js builds it)`);
const haveDist = existsSync(join(ROOT, 'dist/proxy/main.js'));
if (!haveDist) console.warn('[skipped] meshlet proxy start-up tests: dist/ is not built (npm run build)');

const procs: ChildProcess[] = [];
const servers: net.Server[] = [];
const dirs: string[] = [];
afterAll(async () => {
  for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL');
  for (const s of servers) await new Promise((r) => s.close(r));
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'meshlet-od-'));
  dirs.push(d);
  return d;
}

async function acceptedPair(host: string): Promise<{ server: net.Socket; client: net.Socket; port: number }> {
  const srv = net.createServer();
  servers.push(srv);
  await new Promise<void>((r) => srv.listen(0, host, r));
  const port = (srv.address() as net.AddressInfo).port;
  const accepted = new Promise<net.Socket>((r) => srv.once('connection', r));
  const client = net.connect(port, host);
  const server = await accepted;
  return { server, client, port };
}

describe('original destination addon', () => {
  it.skipIf(!haveAddon)('loads and resolves a direct connection to nothing or to its own address', async () => {
    const od = loadOriginalDst();
    expect(od.ok, od.ok ? '' : od.reason).toBe(true);
    if (!od.ok) return;
    for (const host of ['127.0.0.1', '::1']) {
      const { server, client, port } = await acceptedPair(host);
      const r = od.resolver(server);
      if (r !== undefined) expect(r).toEqual({ address: host, port });
      client.destroy();
      server.destroy();
    }
  });

  it.skipIf(!haveAddon)('bad fds are "not intercepted", never an exception', () => {
    const addon = require(ADDON) as { getOriginalDst(fd: number): unknown };
    expect(addon.getOriginalDst(-1)).toBeNull();
    expect(addon.getOriginalDst(999_999)).toBeNull();
    const f = join(tempDir(), 'file');
    writeFileSync(f, 'x');
    const fd = openSync(f, 'r');
    try {
      expect(addon.getOriginalDst(fd)).toBeNull();
    } finally {
      closeSync(fd);
    }
    expect((addon.getOriginalDst as (x: unknown) => unknown)('nope')).toBeNull();
    // A socket without a handle (already destroyed) resolves to undefined.
    const resolver = resolverFor(addon as never);
    const s = new net.Socket();
    expect(resolver(s)).toBeUndefined();
  });
});

describe('meshlet proxy start-up', () => {
  const bootstrapFile = (): string => {
    const dir = tempDir();
    const f = join(dir, 'bootstrap.json');
    writeFileSync(
      f,
      JSON.stringify({
        node: { id: 'od-test', cluster: 'od' },
        static_resources: {
          listeners: [
            {
              name: 'virtualOutbound',
              address: { socket_address: { address: '127.0.0.1', port_value: 0 } },
              use_original_dst: true,
              filter_chains: [
                {
                  filters: [
                    {
                      name: 'envoy.filters.network.tcp_proxy',
                      typed_config: {
                        '@type': 'type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy',
                        stat_prefix: 'PassthroughCluster',
                        cluster: 'PassthroughCluster',
                      },
                    },
                  ],
                },
              ],
            },
          ],
          clusters: [{ name: 'PassthroughCluster', type: 'ORIGINAL_DST', lb_policy: 'CLUSTER_PROVIDED', connect_timeout: '1s' }],
        },
      }),
    );
    return f;
  };

  /** Start the proxy, collect output until it has started, then stop it. */
  function startupOutput(env: Record<string, string>): Promise<string> {
    return new Promise((resolveP, reject) => {
      const p = spawn(process.execPath, [join(ROOT, 'bin/meshlet.js'), 'proxy', '-c', bootstrapFile()], {
        env: { ...process.env, MESHLET_LOG_LEVEL: 'info', ...env },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      procs.push(p);
      let out = '';
      const t = setTimeout(() => {
        p.kill('SIGKILL');
        reject(new Error(`no start-up within 15 s: ${out}`));
      }, 15_000);
      const onData = (c: Buffer): void => {
        out += c;
        if (out.includes('meshlet started')) {
          clearTimeout(t);
          p.kill('SIGTERM');
          resolveP(out);
        }
      };
      p.stdout.on('data', onData);
      p.stderr.on('data', onData);
    });
  }

  it.skipIf(!haveDist)('without the addon: one warn line naming the reason, and it runs in explicit mode', async () => {
    const out = await startupOutput({ MESHLET_ORIGINAL_DST_ADDON: '/nonexistent/original_dst.node' });
    const warns = out
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { level: number; msg: string })
      .filter((r) => r.level === 40);
    expect(warns.length).toBe(1);
    expect(warns[0]!.msg).toMatch(/original destination unavailable .*\/nonexistent\/original_dst\.node.*running in explicit mode/);
  });

  it.skipIf(!haveDist || !haveAddon)('with the addon: no warning', async () => {
    const out = await startupOutput({ MESHLET_ORIGINAL_DST_ADDON: '' });
    expect(out).not.toMatch(/original destination unavailable/);
    expect(out).toContain('meshlet started');
  });
});
