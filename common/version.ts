/** meshlet's version, read once from package.json (found upwards from this file, src or dist). */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

function findPackageJson(): string {
  let dir = __dirname;
  for (let i = 0; i < 6; i++) {
    const p = join(dir, 'package.json');
    if (existsSync(p)) return p;
    dir = dirname(dir);
  }
  throw new Error('package.json not found');
}

/** The installed package's root directory (where package.json and bin/ are). */
export function packageRoot(): string {
  return dirname(findPackageJson());
}

export const VERSION: string = (JSON.parse(readFileSync(findPackageJson(), 'utf8')) as { version: string }).version;
