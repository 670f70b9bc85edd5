// `consistent_hash` with a Maglev lookup table (Eisenbud et al., NSDI 2016; Envoy `maglev_lb.cc`):
// each member fills table slots along its own permutation of the table, so adding or removing one of
// N members moves about 1/N of the keys, and every member gets its weight's share of the slots.

import type {
  ActiveGroup,
  AlgorithmOptions,
  LbAlgorithm,
  LbAlgorithmDescriptor,
  PoolMember,
} from './algorithm.ts';
import { DEFAULT_HASH_TABLE_SIZE } from './algorithm.ts';
import { HashTableAlgorithm } from './hash-probe.ts';
import { hashString } from './key-hash.ts';

/**
 * `consistent_hash`: the pool hashes the configured key (source address, a header, a cookie or the
 * path); the key's slot in the Maglev table names the member. The table is rebuilt at
 * onMembersChanged() from the usable active group only (as Envoy rebuilds on host health changes), in
 * O(M log M) for M slots (a few ms for 65537; bench/pools/pick.bench.ts); a pick is one table read. A member that is full or just
 * failed gives way to the key's probe sequence (see probeHashTable).
 *
 * Each member's permutation comes from its `key` (the backend address), not its position, and
 * members enter the build sorted by key, so the table does not depend on config order and a
 * membership change disturbs only the slots it must (test/pools/maglev.test.ts measures it).
 */
export const CONSISTENT_HASH: LbAlgorithmDescriptor = Object.freeze({
  name: 'consistent_hash',
  dynamicWeights: true,
  needsKey: true,
  create(members: readonly PoolMember[], options?: AlgorithmOptions): LbAlgorithm {
    return new MaglevHash(members, options?.hashTableSize ?? DEFAULT_HASH_TABLE_SIZE);
  },
});

class MaglevHash extends HashTableAlgorithm {
  readonly #size: number;

  constructor(all: readonly PoolMember[], size: number) {
    super(all);
    this.#size = size;
    this.rebuild();
  }

  protected override buildTable(): Int32Array {
    return buildMaglevTable(this.group, this.#size);
  }
}

/**
 * Builds the Maglev table: slot → index into `group.members`.
 * @param group - active group (weights clamped to 1..256)
 * @param size - number of slots M, a prime (the permutations only cover the table when M is prime)
 * @returns an Int32Array of length M, or of length 0 when the group is empty
 *
 * Member i has offset = h0(key) mod M and skip = h1(key) mod (M − 1) + 1; its permutation visits
 * offset, offset + skip, offset + 2·skip ... (mod M). Members take turns claiming the next free slot
 * of their permutation; with weights, a member takes a turn in round r only while
 * r · weight ≥ claimed · maxWeight (Envoy's weighted Maglev), so slots split in proportion to weight.
 */
export function buildMaglevTable(group: ActiveGroup, size: number): Int32Array {
  const n = group.members.length;
  if (n === 0) return new Int32Array(0);
  const order = group.members.map((_m, i) => i);
  order.sort((a, b) => {
    const ka = group.members[a]!.key;
    const kb = group.members[b]!.key;
    return ka < kb ? -1 : ka > kb ? 1 : a - b;
  });
  // Slot arithmetic stays in int32: offset, skip < size ≤ 5000011, so offset + skip < 2^31.
  const next = new Int32Array(n);
  const skip = new Int32Array(n);
  const target = new Float64Array(n);
  let maxWeight = 1;
  for (let i = 0; i < n; i++) if (group.weights[i]! > maxWeight) maxWeight = group.weights[i]!;
  for (let i = 0; i < n; i++) {
    const key = group.members[i]!.key;
    next[i] = hashString(key, 0) % size;
    skip[i] = (hashString(key, 0x5bd1e995) % (size - 1)) + 1;
  }
  const table = new Int32Array(size).fill(-1);
  let filled = 0;
  for (let round = 1; filled < size; round++) {
    for (let k = 0; k < n && filled < size; k++) {
      const i = order[k]!;
      const w = group.weights[i]!;
      if (round * w < target[i]!) continue;
      target[i]! += maxWeight;
      const step = skip[i]!;
      let c = next[i]!;
      while (table[c] !== -1) {
        c += step;
        if (c >= size) c -= size;
      }
      table[c] = i;
      c += step;
      next[i] = c >= size ? c - size : c;
      filled++;
    }
  }
  return table;
}
