// Checks for the external tools the bench needs and installs them from Debian when running as root.
// Leans towards saying exactly what is missing: without root it prints the apt packages and the
// runner exits non-zero, rather than skipping scenarios silently.
import { spawnSync } from 'node:child_process';

/** tool binary → Debian package that ships it */
export const TOOLS = Object.freeze({
  nginx: 'nginx',
  haproxy: 'haproxy',
  wrk: 'wrk',
  h2load: 'nghttp2-client',
  openssl: 'openssl',
});

function have(bin) {
  return spawnSync('sh', ['-c', `command -v ${bin}`], { stdio: 'ignore' }).status === 0;
}

/** @returns {string[]} Debian packages whose tools are missing */
export function missingPackages() {
  const pkgs = new Set();
  for (const [bin, pkg] of Object.entries(TOOLS)) if (!have(bin)) pkgs.add(pkg);
  return [...pkgs];
}

/**
 * Ensures every tool is present. Installs with apt-get (after one `apt-get update`) when root.
 * @param {(line: string) => void} log
 * @returns {boolean} true when everything is present afterwards
 */
export function ensureTools(log) {
  const missing = missingPackages();
  if (missing.length === 0) return true;
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  if (!isRoot) {
    log(`missing Debian packages: ${missing.join(' ')}`);
    log(`install them with: sudo apt-get update && sudo apt-get install -y ${missing.join(' ')}`);
    return false;
  }
  log(`installing Debian packages: ${missing.join(' ')} (apt-get update, then apt-get install)`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const upd = spawnSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env, timeout: 300_000 });
  if (upd.status !== 0) {
    log('apt-get update failed');
    return false;
  }
  const inst = spawnSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...missing], {
    stdio: 'inherit',
    env,
    timeout: 600_000,
  });
  if (inst.status !== 0) {
    log(`apt-get install ${missing.join(' ')} failed`);
    return false;
  }
  const still = missingPackages();
  if (still.length) log(`still missing after install: ${still.join(' ')}`);
  return still.length === 0;
}
