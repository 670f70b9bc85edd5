// Shared lookup of the hash-table algorithms (source_hash, consistent_hash): the key's slot first,
// then a fixed probe sequence derived from the key, then a scan. The same key always meets the same
// fallback member, so a key whose backend is full or just failed still lands in one place. Both
// algorithms extend HashTableAlgorithm and only say how their table is built.

import {
  type ActiveGroup,
  isFull,
  PICK_FULL,
  PICK_NONE,
  type PickOutcome,
  type PoolMember,
} from './algorithm.ts';
import { GroupAlgorithm } from './group-algorithm.ts';
import { mix32 } from './key-hash.ts';

/** Golden-ratio step between probe hashes. */
const PROBE_STEP = 0x9e3779b9;

/** What a table lookup found; `stale` says a member had gone unusable (the caller rebuilds). */
export interface ProbeResult {
  outcome: PickOutcome;
  stale: boolean;
}

/**
 * Looks a key hash up in a table of active-group indices.
 * @param table - slots holding indices into `group.members` (every index in range); empty when the
 *   group is empty
 * @param group - the active group the table was built from
 * @param hash - unsigned 32-bit key hash
 * @param avoid - member to skip unless it is the only one with room
 * @param out - reused result object (no allocation per pick)
 * Tries the key's slot, then up to `2 * members + 4` probe slots (mix32 of hash + k·φ), then every
 * member from the key's slot on. Full members are skipped; `full` is returned when only full (or
 * none) usable members remain and at least one is full.
 */
export function probeHashTable(
  table: Int32Array,
  group: ActiveGroup,
  hash: number,
  avoid: PoolMember | null,
  out: ProbeResult,
): ProbeResult {
  const { members, outcomes } = group;
  const n = members.length;
  out.stale = false;
  if (n === 0 || table.length === 0) {
    out.outcome = PICK_NONE;
    return out;
  }
  const len = table.length;
  // >>> 1 keeps the operand an int32 (an uint32 above 2^31 would make % a float modulo); the table
  // is at most 5000011 slots, so 31 bits still spread evenly.
  const first = table[(hash >>> 1) % len]!;
  let avoided = -1;
  let full = false;
  const probes = 2 * n + 4;
  let index = first;
  for (let k = 0; k <= probes; k++) {
    if (k > 0) index = table[(mix32((hash + Math.imul(k, PROBE_STEP)) | 0) >>> 1) % len]!;
    const m = members[index]!;
    if (!m.usable) out.stale = true;
    else if (isFull(m)) full = true;
    else if (m === avoid) avoided = index;
    else {
      out.outcome = outcomes[index]!;
      return out;
    }
  }
  let i = first;
  for (let k = 0; k < n; k++) {
    i = i + 1 === n ? 0 : i + 1;
    const m = members[i]!;
    if (!m.usable) out.stale = true;
    else if (isFull(m)) full = true;
    else if (m === avoid) avoided = i;
    else {
      out.outcome = outcomes[i]!;
      return out;
    }
  }
  out.outcome = avoided >= 0 ? outcomes[avoided]! : full ? PICK_FULL : PICK_NONE;
  return out;
}

const EMPTY_TABLE = new Int32Array(0);

/**
 * An algorithm whose pick is a lookup of the key hash in a table of active-group indices
 * (probeHashTable). Subclasses build the table from `group` in buildTable() and call rebuild() at the
 * end of their constructor.
 */
export abstract class HashTableAlgorithm extends GroupAlgorithm {
  #table: Int32Array = EMPTY_TABLE;
  readonly #result: ProbeResult = { outcome: PICK_NONE, stale: false };

  override pick(avoid: PoolMember | null, hash: number): PickOutcome {
    const outcome = this.choose(avoid, hash);
    return this.stale ? this.heal(avoid, hash) : outcome;
  }

  protected override rebuild(): void {
    this.#table = this.buildTable();
  }

  protected override choose(avoid: PoolMember | null, hash: number): PickOutcome {
    const r = probeHashTable(this.#table, this.group, hash, avoid, this.#result);
    this.stale = r.stale;
    return r.outcome;
  }

  /** The table for the current `group`: slots holding indices into `group.members`. */
  protected abstract buildTable(): Int32Array;
}
