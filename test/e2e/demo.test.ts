/**
 * README's main command: `meshlet demo` runs a whole mesh and prints a readable summary. Run here
 * with --duration so it exits; checks the summary's facts, not its wording alone.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const BIN = join(__dirname, '../../bin/meshlet.js');

describe('meshlet demo', () => {
  it('starts the mesh, drives traffic and prints what happened', async () => {
    const { code, out } = await new Promise<{ code: number | null; out: string }>((resolve) => {
      const p = spawn(process.execPath, [BIN, 'demo', '--duration', '2', '--rps', '50'], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      p.stdout.on('data', (d) => {
        out += d;
      });
      p.stderr.on('data', (d) => {
        out += d;
      });
      p.on('exit', (c) => resolve({ code: c, out }));
    });
    expect(out).toContain('sidecar frontend');
    const answered = /frontend → backend\s+(\d+) requests answered: (.*)/.exec(out);
    expect(answered, out).not.toBeNull();
    expect(Number(answered![1])).toBeGreaterThan(50);
    expect(answered![2]).toMatch(/v1 \d+/);
    expect(out).toMatch(/frontend → audit\s+(\d+) of \1 calls denied with 403/);
    expect(out).toContain('backend saw the caller as   spiffe://cluster.local/ns/demo/sa/frontend');
    expect(out).toMatch(/failed requests\s+0/);
    expect(out).toMatch(/p50 \d+\.\d+ {2}p90/);
    expect(code).toBe(0);
  }, 120_000);
});
