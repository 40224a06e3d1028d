/**
 * The original-destination resolver for redirected connections: loads the optional native addon
 * (native/original_dst.c, built at install by scripts/build-native.js) and turns it into the
 * listener layer's OriginalDstResolver (SO_ORIGINAL_DST / IP6T_SO_ORIGINAL_DST on the accepted
 * socket's fd).
 *
 * Leans towards running anyway: when the addon is missing or cannot load, `loadOriginalDst()`
 * says why and the proxy runs in explicit mode (no interception; HTTP_PROXY-style use of the
 * outbound port still works). The resolver itself never throws: no fd, no NAT record, or an
 * unexpected answer all mean "not intercepted".
 */
import { existsSync } from 'node:fs';
import type { Socket } from 'node:net';
import { resolve } from 'node:path';
import type { OriginalDstResolver } from '../listeners/listener';

interface Addon {
  getOriginalDst(fd: number): { address: string; port: number } | null;
}

export type OriginalDstLoad =
  | { readonly ok: true; readonly resolver: OriginalDstResolver; readonly path: string }
  | { readonly ok: false; readonly reason: string };

/**
 * Where the addon may be: $MESHLET_ORIGINAL_DST_ADDON when set (only there), else build/Release
 * next to the package root, from source or from dist/.
 */
function candidates(): string[] {
  const env = process.env.MESHLET_ORIGINAL_DST_ADDON;
  if (env) return [env];
  return ['../..', '../../..'].map((up) => resolve(__dirname, up, 'build', 'Release', 'original_dst.node'));
}

let cached: OriginalDstLoad | undefined;

/** Load the addon once; `ok: false` carries a one-line reason for the start-up warning. */
export function loadOriginalDst(): OriginalDstLoad {
  if (cached) return cached;
  if (process.platform !== 'linux') {
    cached = { ok: false, reason: `SO_ORIGINAL_DST is Linux-only (platform ${process.platform})` };
    return cached;
  }
  const tried: string[] = [];
  for (const p of candidates()) {
    if (!existsSync(p)) {
      tried.push(p);
      continue;
    }
    try {
      const addon = require(p) as Addon;
      if (typeof addon.getOriginalDst !== 'function') throw new Error('getOriginalDst is missing');
      cached = { ok: true, resolver: resolverFor(addon), path: p };
      return cached;
    } catch (e) {
      cached = { ok: false, reason: `native addon ${p} failed to load: ${(e as Error).message}` };
      return cached;
    }
  }
  cached = {
    ok: false,
    reason: `native addon not built (looked for ${tried.join(', ')}; run \`node scripts/build-native.js\`)`,
  };
  return cached;
}

/** The resolver over an addon (exported for tests with a real addon). */
export function resolverFor(addon: Addon): OriginalDstResolver {
  return (socket: Socket) => {
    const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
    if (typeof fd !== 'number' || fd < 0) return undefined;
    let od: { address: string; port: number } | null;
    try {
      od = addon.getOriginalDst(fd);
    } catch {
      return undefined;
    }
    if (!od || typeof od.address !== 'string' || !(od.port > 0)) return undefined;
    const address = od.address.startsWith('::ffff:') ? od.address.slice(7) : od.address;
    return { address, port: od.port };
  };
}
