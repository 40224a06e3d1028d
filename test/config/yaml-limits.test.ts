/**
 * Issue 18.4 and 18.8: YAML from outside is parsed bounded, linear and without throwing.
 * - An alias bomb in the mesh file is reported by parseMesh (it threw ReferenceError "Excessive
 *   alias count" before), and a running control plane that reads one keeps its previous mesh.
 * - The same bomb in a bootstrap is a ConfigError with the reason.
 * - Duplicate keys are still found (the `yaml` package's quadratic uniqueKeys check is off; ours
 *   is one pass), with their line; a 50,000-key mapping parses to the right value.
 * - Input over the size limit is refused with its size and the limit.
 * Timing is measured in bench/yaml-keys.mjs, not asserted here.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { parseYaml } from '../../common/yaml';
import { ConfigError } from '../../common/errors';
import { parseMesh } from '../../control-plane/mesh';
import { ControlPlaneServer } from '../../control-plane/server';
import { parseBootstrapText } from '../../proxy/config/bootstrap';
import { INSECURE_DEV } from '../support/mesh';

const MESH = `trust_domain: cluster.local
services:
  - name: web
    namespace: yb
    ports: [{ name: http, port: 9090, protocol: http }]
workloads:
  - { name: web-v1, namespace: yb, service_account: web, service: web, address: "127.0.0.171:19090" }
`;

/** The classic "billion laughs": 10 levels of 10 aliases each. */
function bomb(): string {
  const lines = ['a0: &a0 [x, x, x, x, x, x, x, x, x, x]'];
  for (let i = 1; i < 10; i++) lines.push(`a${i}: &a${i} [${Array.from({ length: 10 }, () => `*a${i - 1}`).join(', ')}]`);
  return `${lines.join('\n')}\n`;
}

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('alias bombs', () => {
  it('parseMesh reports a bomb instead of throwing', () => {
    const r = parseMesh(`${MESH}${bomb()}`);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.errors[0]!.message).toMatch(/alias/i);
  });

  it('a running control plane keeps serving its mesh when the file becomes a bomb', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'meshlet-yaml-'));
    dirs.push(dir);
    const file = join(dir, 'mesh.yaml');
    writeFileSync(file, MESH);
    const cp = await ControlPlaneServer.start({ meshFile: file, port: 0, watchMeshFile: false, log: pino({ level: 'silent' }), ...INSECURE_DEV });
    try {
      writeFileSync(file, `${MESH}${bomb()}`);
      const r = await cp.reload();
      expect(r.ok).toBe(false);
      if (!r.ok) expect(r.error).toMatch(/invalid YAML: .*alias/i);
      expect(cp.mesh.workloads.map((w) => w.name)).toEqual(['web-v1']);
      // Still alive and still applying valid edits.
      writeFileSync(file, MESH.replace('web-v1', 'web-v2'));
      expect(await cp.reload()).toEqual({ ok: true, changed: true });
      expect(cp.mesh.workloads.map((w) => w.name)).toEqual(['web-v2']);
    } finally {
      await cp.close();
    }
  });

  it('a bootstrap bomb is a ConfigError naming the problem', () => {
    let err: unknown;
    try {
      parseBootstrapText(bomb(), 'b.yaml');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).issues[0]!.message).toMatch(/alias/i);
  });

  it('a few aliases are fine', () => {
    expect(parseYaml('a: &x { k: 1 }\nb: *x\nc: { <<: *x, j: 2 }\n')).toEqual({ ok: true, value: { a: { k: 1 }, b: { k: 1 }, c: { k: 1, j: 2 } } });
  });
});

describe('duplicate keys, found in one pass', () => {
  it('reports each repeated key with its line, in nested mappings too', () => {
    const r = parseYaml('a: 1\nb:\n  c: 1\n  c: 2\na: 3\n');
    expect(r).toEqual({
      ok: false,
      errors: [
        { path: 'line 4', message: 'invalid YAML: map keys must be unique ("c" repeats)' },
        { path: 'line 5', message: 'invalid YAML: map keys must be unique ("a" repeats)' },
      ],
    });
    const m = parseMesh(`${MESH}trust_domain: other.local\n`);
    expect(m.ok).toBe(false);
    if (!m.ok) expect(m.errors).toEqual([{ path: 'line 8', message: 'invalid YAML: map keys must be unique ("trust_domain" repeats)' }]);
  });

  it('merge keys may repeat', () => {
    expect(parseYaml('x: &x { a: 1 }\ny: &y { b: 2 }\nz:\n  <<: *x\n  <<: *y\n')).toMatchObject({ ok: true, value: { z: { a: 1, b: 2 } } });
  });

  it('a 50,000-key mapping parses to the right value, and a duplicate at its end is found', () => {
    const n = 50_000;
    const lines: string[] = [];
    for (let i = 0; i < n; i++) lines.push(`k${i}: ${i}`);
    const r = parseYaml(`${lines.join('\n')}\n`);
    expect(r.ok).toBe(true);
    const v = (r as { value: Record<string, number> }).value;
    expect(Object.keys(v)).toHaveLength(n);
    expect(v.k0).toBe(0);
    expect(v[`k${n - 1}`]).toBe(n - 1);
    const dup = parseYaml(`${lines.join('\n')}\nk17: again\n`);
    expect(dup).toEqual({ ok: false, errors: [{ path: `line ${n + 1}`, message: 'invalid YAML: map keys must be unique ("k17" repeats)' }] });
  }, 60_000);
});

describe('size limit', () => {
  it('refuses input over the limit with its size', () => {
    expect(parseYaml('a: 1234567890\n', { maxBytes: 8 })).toEqual({
      ok: false,
      errors: [{ path: '(file)', message: 'is 14 bytes, over the 8-byte limit for YAML input' }],
    });
  });

  it('a bootstrap over 16 MiB is refused before parsing, YAML or JSON', () => {
    const big = `{"node": {"id": "x"}, "pad": "${'x'.repeat(16 * 1024 * 1024)}"}`;
    for (const name of ['b.json', 'b.yaml']) {
      let err: unknown;
      try {
        parseBootstrapText(big, name);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).issues[0]!.message).toMatch(/over the 16777216-byte limit/);
    }
  });
});
