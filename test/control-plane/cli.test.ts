/** `meshlet control-plane` argument handling and mesh validation at start-up. */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { runControlPlane } from '../../proxy/cli/control-plane';

let dir: string | undefined;
afterEach(async () => {
  vi.restoreAllMocks();
  if (dir) await rm(dir, { recursive: true, force: true });
  dir = undefined;
});

function capture() {
  const out: string[] = [];
  const err: string[] = [];
  vi.spyOn(process.stdout, 'write').mockImplementation((s) => {
    out.push(String(s));
    return true;
  });
  vi.spyOn(process.stderr, 'write').mockImplementation((s) => {
    err.push(String(s));
    return true;
  });
  return { out, err };
}

describe('meshlet control-plane', () => {
  it('validates the example mesh', async () => {
    const { out } = capture();
    const code = await runControlPlane([
      '--mesh',
      join(__dirname, '../../control-plane/examples/bookinfo.yaml'),
      '--validate',
    ]);
    expect(code).toBe(0);
    expect(out.join('')).toMatch(/valid \(4 services, 5 workloads\)/);
  });

  it('reports every problem of an invalid mesh with its path and exits 1', async () => {
    dir = await mkdtemp(join(tmpdir(), 'meshlet-cli-'));
    const file = join(dir, 'bad.yaml');
    await writeFile(
      file,
      'services:\n  - name: a\n    ports: [{ port: 99999 }]\nworkloads:\n  - { name: w, service: b, address: "127.0.0.2:1" }\n',
    );
    const { err } = capture();
    expect(await runControlPlane(['--mesh', file])).toBe(1);
    const text = err.join('');
    expect(text).toMatch(/invalid mesh file/);
    expect(text).toMatch(/services\[0\]\.ports\[0\]\.port: must be between 1 and 65535/);
    expect(text).toMatch(/workloads\[0\]\.service: unknown service "b"/);
  });

  it("refuses to start when a workload has no address for one of its service's target ports", async () => {
    dir = await mkdtemp(join(tmpdir(), 'meshlet-cli-'));
    const file = join(dir, 'bad.yaml');
    await writeFile(
      file,
      'services:\n  - name: a\n    ports: [{ port: 80, protocol: http }, { port: 81, protocol: tcp }]\n' +
        'workloads:\n  - { name: a1, service: a, address: "127.0.0.2:80" }\n',
    );
    const { err } = capture();
    expect(await runControlPlane(['--mesh', file, '--validate'])).toBe(1);
    expect(err.join('')).toMatch(/workloads\[0\]\.address: workload a1 has no address for port 81 of service a \(target_port 81\)/);
  });

  it('requires --mesh and checks --port', async () => {
    const { err } = capture();
    expect(await runControlPlane([])).toBe(1);
    expect(await runControlPlane(['--mesh', 'x.yaml', '--port', 'abc'])).toBe(1);
    expect(err.join('')).toMatch(/--mesh FILE is required[\s\S]*--port must be an integer/);
  });
});
