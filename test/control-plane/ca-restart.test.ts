/**
 * Issue 18.7: a control-plane restart without --ca-dir keeps the root. Two real processes in a
 * row (`meshlet control-plane`, MESHLET_STATE_DIR pointed at a temporary directory): the TLS port
 * of the second is verified with the root the first wrote, and a sidecar's certificate from the
 * first run still chains to what the second serves. --ephemeral-ca (the old behaviour) does not.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { afterAll, describe, expect, it } from 'vitest';
import { defaultCaDir } from '../../proxy/cli/control-plane';

const BIN = join(__dirname, '../../bin/meshlet.js');
const MESH = join(__dirname, '../../control-plane/examples/bookinfo.yaml');
const state = mkdtempSync(join(tmpdir(), 'meshlet-state-'));
const procs: ChildProcess[] = [];

afterAll(() => {
  for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL');
  rmSync(state, { recursive: true, force: true });
});

/** Start the control plane; resolves with its TLS port once it prints it. */
function start(extra: string[] = []): Promise<{ proc: ChildProcess; tlsPort: number }> {
  const proc = spawn(process.execPath, [BIN, 'control-plane', '--mesh', MESH, '--port', '0', '--tls-port', '0', '--log-level', 'warn', ...extra], {
    env: { ...process.env, MESHLET_STATE_DIR: state },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  procs.push(proc);
  return new Promise((resolve, reject) => {
    let out = '';
    const t = setTimeout(() => reject(new Error(`control plane did not start: ${out}`)), 20_000);
    proc.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
      const m = /over TLS on port (\d+)/.exec(out);
      if (m) {
        clearTimeout(t);
        resolve({ proc, tlsPort: Number(m[1]) });
      }
    });
    proc.once('exit', (code) => reject(new Error(`control plane exited ${code}: ${out}`)));
  });
}

async function stop(proc: ChildProcess): Promise<void> {
  const exited = new Promise((r) => proc.once('exit', r));
  proc.kill('SIGTERM');
  await exited;
}

/** Whether the TLS port's certificate verifies against `rootPem`. */
function verifies(port: number, rootPem: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ca: rootPem, ALPNProtocols: ['h2'] }, () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });
}

describe('the CA survives a restart', () => {
  it('keeps the root in the default state directory, and --ephemeral-ca does not', async () => {
    const dir = defaultCaDir('cluster.local', { MESHLET_STATE_DIR: state });
    const first = await start();
    const root = readFileSync(join(dir, 'root-cert.pem'), 'utf8');
    expect(new X509Certificate(root).ca).toBe(true);
    expect(await verifies(first.tlsPort, root)).toBe(true);
    await stop(first.proc);

    const second = await start();
    expect(readFileSync(join(dir, 'root-cert.pem'), 'utf8')).toBe(root);
    expect(await verifies(second.tlsPort, root)).toBe(true);
    await stop(second.proc);

    const ephemeral = await start(['--ephemeral-ca']);
    expect(await verifies(ephemeral.tlsPort, root)).toBe(false);
    await stop(ephemeral.proc);
  }, 60_000);
});
