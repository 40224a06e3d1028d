/**
 * Run sizes for the property-based fuzz suite: a few hundred runs per property in CI (seconds),
 * many more with `npm run fuzz` (FUZZ_RUNS, default there 20000). FUZZ_SEED replays a failure
 * (fast-check prints the seed and path of every counterexample).
 */
import type fc from 'fast-check';

export const RUNS = Math.max(1, Number(process.env.FUZZ_RUNS ?? 200) || 200);

/** fast-check parameters for one property; `scale` shrinks costly properties (real sockets). */
export function params<T>(scale = 1): fc.Parameters<T> {
  const seed = process.env.FUZZ_SEED;
  return {
    numRuns: Math.max(10, Math.round(RUNS * scale)),
    ...(seed !== undefined && seed !== '' ? { seed: Number(seed) } : {}),
  };
}

/** A vitest timeout that grows with the number of runs. */
export function timeoutFor(scale = 1, perRunMs = 20): number {
  return Math.max(30_000, Math.round(RUNS * scale * perRunMs));
}
