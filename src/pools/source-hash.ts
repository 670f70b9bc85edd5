// `source_hash`, as HAProxy `balance source` with the default map-based hash: the client address
// hash modulo the total weight picks a slot of a table where each member holds `weight` slots.
// Stable while membership is; a change remaps most keys (use consistent_hash to avoid that).

import type { LbAlgorithm, LbAlgorithmDescriptor, PoolMember } from './algorithm.ts';
import { weightsGcd } from './algorithm.ts';
import { HashTableAlgorithm } from './hash-probe.ts';

/**
 * `source_hash`: the pool hashes the client address (after PROXY protocol / trusted X-Forwarded-For);
 * the slot `hash % sum(weights / gcd)` names the member. A member that is full or just failed gives
 * way to the key's probe sequence (see probeHashTable). O(1) per pick, no allocation; the table is
 * rebuilt at onMembersChanged() (O(total weight)).
 */
export const SOURCE_HASH: LbAlgorithmDescriptor = Object.freeze({
  name: 'source_hash',
  dynamicWeights: true,
  needsKey: true,
  create(members: readonly PoolMember[]): LbAlgorithm {
    return new SourceHash(members);
  },
});

class SourceHash extends HashTableAlgorithm {
  constructor(all: readonly PoolMember[]) {
    super(all);
    this.rebuild();
  }

  protected override buildTable(): Int32Array {
    return buildWeightMap(this.group.weights);
  }
}

/** Member i repeated weights[i]/gcd times, interleaved round-robin style so neighbours differ. */
function buildWeightMap(weights: Int32Array): Int32Array {
  const n = weights.length;
  const g = weightsGcd(weights);
  let total = 0;
  for (let i = 0; i < n; i++) total += weights[i]! / g;
  const table = new Int32Array(total);
  const left = new Int32Array(n);
  for (let i = 0; i < n; i++) left[i] = weights[i]! / g;
  let pos = 0;
  while (pos < total) {
    for (let i = 0; i < n && pos < total; i++) {
      if (left[i]! > 0) {
        left[i]!--;
        table[pos++] = i;
      }
    }
  }
  return table;
}
