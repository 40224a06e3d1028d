#!/usr/bin/env node
/*
 * Builds the optional native addon (native/original_dst.c → build/Release/original_dst.node) at
 * install time with node-gyp. The addon only adds SO_ORIGINAL_DST support for transparent
 * interception; without it meshlet runs in explicit-proxy mode. So a failed build never fails
 * `npm ci`: it prints a clear note and exits 0.
 *
 * Uses the node-gyp that npm ships (npm_config_node_gyp during lifecycle scripts) and, when the
 * Node headers are installed next to the running node (e.g. /usr/include/node), points node-gyp
 * at them so no header download is needed.
 */
'use strict';
const { spawnSync } = require('node:child_process');
const { existsSync } = require('node:fs');
const { dirname, join, resolve } = require('node:path');

const root = resolve(__dirname, '..');

function note(msg) {
  process.stderr.write(`meshlet: native original-destination addon not built (${msg}).\n`);
  process.stderr.write('meshlet: transparent interception (SO_ORIGINAL_DST) is unavailable; explicit-proxy mode still works.\n');
}

function findNodeGyp() {
  const candidates = [
    process.env.npm_config_node_gyp,
    join(dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
    join(dirname(process.execPath), 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
  ];
  for (const c of candidates) if (c && existsSync(c)) return c;
  try {
    return require.resolve('node-gyp/bin/node-gyp.js');
  } catch {
    return undefined;
  }
}

function main() {
  if (process.env.MESHLET_SKIP_NATIVE) return note('MESHLET_SKIP_NATIVE is set');
  if (process.platform !== 'linux') return note(`SO_ORIGINAL_DST is Linux-only; platform is ${process.platform}`);
  const gyp = findNodeGyp();
  if (!gyp) return note('node-gyp not found');
  const args = [gyp, 'rebuild'];
  const prefix = resolve(dirname(process.execPath), '..');
  if (existsSync(join(prefix, 'include', 'node', 'node_api.h'))) args.push(`--nodedir=${prefix}`);
  const r = spawnSync(process.execPath, args, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8', timeout: 180_000 });
  if (r.status !== 0) {
    const tail = `${r.stdout ?? ''}${r.stderr ?? ''}`.trim().split('\n').slice(-8).join('\n');
    if (tail) process.stderr.write(`${tail}\n`);
    return note(`node-gyp exited with ${r.status ?? r.signal ?? r.error?.message}`);
  }
  process.stdout.write('meshlet: built native original-destination addon (build/Release/original_dst.node)\n');
}

try {
  main();
} catch (e) {
  note(e && e.message ? e.message : String(e));
}
process.exitCode = 0;
