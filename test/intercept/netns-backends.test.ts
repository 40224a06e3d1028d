/**
 * `meshlet iptables` against both iptables backends (legacy and nf_tables), each in a fresh
 * network namespace: the backend auto-detected from `iptables --version`, install twice (one
 * copy), re-install with other options (only the new rules remain), and --cleanup leaving the nat
 * tables exactly as iptables-save printed them before. Skips, with the reason printed, where
 * namespaces or a backend are unavailable.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createNamespace, destroyAll, natTables, netnsSupport, runIn } from './netns';

const ROOT = resolve(__dirname, '../..');
const BIN = join(ROOT, 'bin/meshlet.js');
const support = netnsSupport();
const haveDist = existsSync(join(ROOT, 'dist/proxy/main.js'));
if (!support.ok) console.warn(`[skipped] iptables backend namespace tests: ${support.reason}`);
else if (!haveDist) console.warn('[skipped] iptables backend namespace tests: dist/ is not built (npm run build)');
const has = (bin: string): boolean => spawnSync('sh', ['-c', `command -v ${bin}`]).status === 0;

afterAll(async () => {
  await destroyAll();
});

for (const backend of ['legacy', 'nft'] as const) {
  const bins = [`iptables-${backend}`, `ip6tables-${backend}`, `iptables-${backend}-save`, `ip6tables-${backend}-save`];
  const missing = bins.filter((b) => !has(b));
  const skip = !support.ok || !haveDist || missing.length > 0;
  if (support.ok && missing.length > 0) console.warn(`[skipped] ${backend} backend: ${missing.join(', ')} not installed`);

  describe(`iptables ${backend} backend`, () => {
    it.skipIf(skip)('install is idempotent, re-install replaces, cleanup restores the nat tables exactly', async () => {
      const pod = createNamespace();
      const save = (): string => natTables(pod, `iptables-${backend}-save`, `ip6tables-${backend}-save`);
      const cli = (...args: string[]) => runIn(pod, [process.execPath, BIN, 'iptables', '--backend', backend, ...args]);
      const before = save();

      const first = await cli('-x', '10.96.0.0/12');
      expect(first.code, first.stderr).toBe(0);
      expect(first.stdout).toContain(`(${backend} backend)`);
      const installed = save();
      expect(installed).toContain('-A ISTIO_OUTPUT -d 10.96.0.0/12 -j RETURN');
      expect(installed).toContain('-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006');
      expect(installed.split('--- v6 ---')[1]).toContain('-A ISTIO_OUTPUT -s ::6/128 -o lo -j RETURN');

      const again = await cli('-x', '10.96.0.0/12');
      expect(again.code, again.stderr).toBe(0);
      expect(save()).toBe(installed);

      const other = await cli('-o', '5432', '-i', '10.0.0.0/8');
      expect(other.code, other.stderr).toBe(0);
      const replaced = save();
      expect(replaced).not.toContain('10.96.0.0/12');
      expect(replaced).toContain('-A ISTIO_OUTPUT -p tcp -m tcp --dport 5432 -j RETURN');
      expect(replaced).toContain('-A ISTIO_OUTPUT -d 10.0.0.0/8 -j ISTIO_REDIRECT');
      expect(replaced.match(/-A OUTPUT -p tcp -j ISTIO_OUTPUT/g)?.length).toBe(2); // one per family

      const clean = await cli('--cleanup');
      expect(clean.code, clean.stderr).toBe(0);
      expect(save()).toBe(before);
      // Cleanup of nothing is fine too.
      expect((await cli('--cleanup')).code).toBe(0);
      expect(save()).toBe(before);
    });
  });
}

describe('backend auto-detection', () => {
  it.skipIf(!support.ok || !haveDist)('reports the backend `iptables --version` names', async () => {
    const pod = createNamespace();
    const version = spawnSync('iptables', ['--version'], { encoding: 'utf8' }).stdout;
    const expected = /nf_tables/.test(version) ? 'nft' : 'legacy';
    const r = await runIn(pod, [process.execPath, BIN, 'iptables']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`(${expected} backend)`);
    const c = await runIn(pod, [process.execPath, BIN, 'iptables', '--cleanup']);
    expect(c.code, c.stderr).toBe(0);
    expect(natTables(pod)).not.toContain('ISTIO');
  });
});
