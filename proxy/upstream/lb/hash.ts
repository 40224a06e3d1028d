/**
 * Hashing for the hash-based balancers (RING_HASH, MAGLEV) and for route hash policies.
 *
 * Envoy hashes with 64-bit xxHash. meshlet uses its own 32-bit hash instead: a per-code-unit
 * multiply/xor over the UTF-16 string (FNV-1a's shape with a seed) finished by a 32-bit avalanche
 * (the murmur3 finaliser constants). JavaScript numbers handle 32-bit integer math without
 * BigInt, so hashing a key never allocates. The consequence users may notice: ring positions and
 * Maglev tables differ from Envoy's for the same hosts, so two proxies only agree on affinity
 * when both are meshlet. `LbContext.hash` is read as an unsigned 32-bit value (`>>> 0`).
 *
 * Also home of `isAvoided`, the allocation-free `ctx.avoid` check every picker shares.
 */

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

/** Avalanche a 32-bit value so nearby inputs land far apart. Returns an unsigned 32-bit integer. */
export function mix32(h: number): number {
  let x = h | 0;
  x ^= x >>> 16;
  x = Math.imul(x, 0x85ebca6b);
  x ^= x >>> 13;
  x = Math.imul(x, 0xc2b2ae35);
  x ^= x >>> 16;
  return x >>> 0;
}

/** Hash a string to an unsigned 32-bit integer; `seed` gives independent hash functions. */
export function hashString(s: string, seed = 0): number {
  let h = (FNV_OFFSET ^ Math.imul(seed | 0, 0x9e3779b1)) | 0;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, FNV_PRIME);
  }
  return mix32(h ^ s.length);
}

/** Combine two hashes (route hash policies with several terms), order-sensitive. */
export function combineHashes(a: number, b: number): number {
  return mix32((Math.imul(a | 0, 31) + (b | 0)) | 0);
}

/** true when `host` is in `avoid` (linear scan: avoid lists hold a handful of previous hosts). */
export function isAvoided<T>(host: T, avoid: readonly T[] | undefined): boolean {
  if (avoid === undefined) return false;
  for (let i = 0; i < avoid.length; i++) if (avoid[i] === host) return true;
  return false;
}

/**
 * The first host from `start` (wrapping) that is not in `avoid`; `fallback` when every host is.
 * Pickers use it after their own retries so `ctx.avoid` is honoured whenever another host exists.
 */
export function firstNotAvoided<T>(
  hosts: readonly T[],
  avoid: readonly T[] | undefined,
  start: number,
  fallback: T,
): T {
  const n = hosts.length;
  for (let k = 0; k < n; k++) {
    const h = hosts[(start + k) % n];
    if (!isAvoided(h, avoid)) return h;
  }
  return fallback;
}
