// The registry of load-balancing algorithms: name → descriptor. Config validates `algorithm:` against
// these names and checks compatibility from the descriptor flags (needsKey, dynamicWeights).

import type { LbAlgorithmDescriptor, LbAlgorithmName } from './algorithm.ts';
import { FIRST } from './first.ts';
import { LEAST_CONNECTIONS } from './least-conn.ts';
import { CONSISTENT_HASH } from './maglev.ts';
import { RANDOM_TWO_CHOICES } from './p2c.ts';
import { ROUND_ROBIN } from './round-robin.ts';
import { SOURCE_HASH } from './source-hash.ts';
import { WEIGHTED_ROUND_ROBIN } from './weighted-rr.ts';

/** Every algorithm seglb offers, by config name (frozen). Adding one means adding a file and a line here. */
export const LB_ALGORITHMS: Readonly<Record<LbAlgorithmName, LbAlgorithmDescriptor>> = Object.freeze({
  round_robin: ROUND_ROBIN,
  weighted_round_robin: WEIGHTED_ROUND_ROBIN,
  least_connections: LEAST_CONNECTIONS,
  random_two_choices: RANDOM_TWO_CHOICES,
  source_hash: SOURCE_HASH,
  consistent_hash: CONSISTENT_HASH,
  first: FIRST,
});

/**
 * Looks an algorithm up by config name.
 * @param name - a known name (typed) gives its descriptor; any other string gives `undefined`
 *   (own keys only, so `'toString'` or `'__proto__'` never resolve to something)
 */
export function getAlgorithm(name: LbAlgorithmName): LbAlgorithmDescriptor;
export function getAlgorithm(name: string): LbAlgorithmDescriptor | undefined;
export function getAlgorithm(name: string): LbAlgorithmDescriptor | undefined {
  return Object.hasOwn(LB_ALGORITHMS, name) ? LB_ALGORITHMS[name as LbAlgorithmName] : undefined;
}
