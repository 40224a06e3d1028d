/**
 * package.json's entry points named dist/proxy/index.js, which no build ever produced: `require('meshlet')`
 * failed. Every path package.json names (main, types, bin, exports) must exist after `npm run build`,
 * and the main entry must load and offer `main(argv)`, the CLI the bin launcher calls.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const root = path.resolve(__dirname, '../..');
const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as {
  main: string;
  types: string;
  bin: Record<string, string>;
  exports: Record<string, string | Record<string, string>>;
};

function named(): string[] {
  const out = [pkg.main, pkg.types, ...Object.values(pkg.bin)];
  for (const [k, v] of Object.entries(pkg.exports)) {
    if (k.includes('*')) continue;
    out.push(...(typeof v === 'string' ? [v] : Object.values(v)));
  }
  return out;
}

describe('package.json entry points', () => {
  it('name only files the build produces', () => {
    const missing = named().filter((f) => !existsSync(path.join(root, f)));
    expect(missing).toEqual([]);
  });

  it('the main entry loads and offers main(argv)', () => {
    const req = createRequire(path.join(root, 'package.json'));
    const mod = req(path.join(root, pkg.main)) as { main?: unknown };
    expect(typeof mod.main).toBe('function');
  });
});
