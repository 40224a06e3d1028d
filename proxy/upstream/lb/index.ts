/**
 * The built-in load-balancing policies, registered explicitly by the composition root (style
 * rule 4: no import side effects). CLUSTER_PROVIDED is not a balancer: ORIGINAL_DST clusters pick
 * hosts by destination address themselves.
 */
import { leastRequestFactory } from './least-request';
import { maglevFactory } from './maglev';
import { peakEwmaFactory } from './peak-ewma';
import { randomFactory } from './random';
import { ringHashFactory } from './ring-hash';
import { roundRobinFactory } from './round-robin';
import type { LbRegistry } from './types';

export { leastRequestFactory, maglevFactory, peakEwmaFactory, randomFactory, ringHashFactory, roundRobinFactory };

/** Register ROUND_ROBIN, LEAST_REQUEST, RANDOM, RING_HASH, MAGLEV and PEAK_EWMA. */
export function registerDefaultLbPolicies(registry: LbRegistry): LbRegistry {
  return registry
    .register(roundRobinFactory)
    .register(leastRequestFactory)
    .register(randomFactory)
    .register(ringHashFactory)
    .register(maglevFactory)
    .register(peakEwmaFactory);
}
