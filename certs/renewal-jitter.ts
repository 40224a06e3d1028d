/**
 * Renewal timing of the CSR provider (csr-provider.ts). How long a CSR-mode sidecar waits before the early renewal a root roll asks for (the trust
 * bundle changed and its leaf was not issued by the bundle's first root). Without a wait every
 * sidecar of a large mesh sends its CSR in the same second; as Istio's agent spreads renewals,
 * the wait is uniform in [0, min(`root_roll_jitter`, ROOT_ROLL_JITTER_LIFE_FRACTION × the leaf's
 * remaining life)], so a short-lived leaf is never left close to expiry. 0 renews at once.
 * The renewal stays guaranteed: the control plane drops the old root only after every connected
 * workload holds a new leaf, so the roll takes up to the jitter longer.
 */

/** Default upper bound of the wait, ms (`root_roll_jitter: 10s`). */
export const DEFAULT_ROOT_ROLL_JITTER_MS = 10_000;

/** The wait never exceeds this fraction of what is left of the current leaf's life. */
export const ROOT_ROLL_JITTER_LIFE_FRACTION = 0.1;

/**
 * The wait in ms before the root roll renewal: `random` in [0, 1) scales the bound
 * min(maxMs, fraction × (notAfter − now)); 0 when maxMs is 0 or the leaf has no life left.
 */
export function rootRollRenewalDelayMs(maxMs: number, notAfter: number, now: number, random: number): number {
  if (!(maxMs > 0)) return 0;
  const bound = Math.min(maxMs, Math.max(0, (notAfter - now) * ROOT_ROLL_JITTER_LIFE_FRACTION));
  return Math.floor(Math.min(Math.max(random, 0), 1) * bound);
}

/**
 * The fraction of a certificate's lifetime after which it is renewed: grace_period_ratio moved by
 * a jitter in [-grace_period_ratio_jitter, +grace_period_ratio_jitter] (`random` in [0, 1)), as
 * Istio's secret manager does.
 */
export function renewalRatio(cfg: { readonly gracePeriodRatio: number; readonly gracePeriodRatioJitter: number }, random: number): number {
  return cfg.gracePeriodRatio + (2 * random - 1) * cfg.gracePeriodRatioJitter;
}
