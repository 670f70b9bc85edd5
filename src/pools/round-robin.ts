// Plain round robin over the active group, ignoring weights (HAProxy `balance static-rr` with equal
// weights, nginx `upstream` without `weight=`). The rotation is a cursor into a table rebuilt on change.

import type {
  ActiveGroup,
  LbAlgorithm,
  LbAlgorithmDescriptor,
  PickOutcome,
  PoolMember,
} from './algorithm.ts';
import { isFull, PICK_FULL, PICK_NONE, selectActiveGroup } from './algorithm.ts';

/**
 * `round_robin`: each usable member of the active group in turn, one request each, weights ignored.
 * Over k·n picks with no avoids every member is picked exactly k times. `avoid` and full members are
 * skipped (the cursor moves past them); `avoid` is still returned when it is the only usable member
 * with room. O(1) per pick while members have room, no allocation.
 */
export const ROUND_ROBIN: LbAlgorithmDescriptor = Object.freeze({
  name: 'round_robin',
  dynamicWeights: false,
  needsKey: false,
  create(members: readonly PoolMember[]): LbAlgorithm {
    return new RoundRobin(members);
  },
});

class RoundRobin implements LbAlgorithm {
  readonly #all: readonly PoolMember[];
  #group: ActiveGroup;
  /** Index in the group of the next member to try. */
  #next = 0;
  /** Set by #scan when it met a member that went unusable since the last rebuild. */
  #stale = false;

  constructor(all: readonly PoolMember[]) {
    this.#all = all;
    this.#group = selectActiveGroup(all);
  }

  pick(avoid: PoolMember | null, _hash: number): PickOutcome {
    const outcome = this.#scan(avoid);
    if (!this.#stale) return outcome;
    this.onMembersChanged(); // a health change the pool has not announced yet: heal and retry once
    return this.#scan(avoid);
  }

  onMembersChanged(): void {
    this.#group = selectActiveGroup(this.#all);
    this.#stale = false;
    // Keep the rotation where it was rather than restarting at member 0, so frequent rebuilds
    // (flapping health) don't favour the first members.
    const n = this.#group.members.length;
    this.#next = n === 0 ? 0 : this.#next % n;
  }

  #scan(avoid: PoolMember | null): PickOutcome {
    const members = this.#group.members;
    const n = members.length;
    let avoided = -1;
    let full = false;
    let i = this.#next;
    for (let k = 0; k < n; k++) {
      const m = members[i]!;
      if (!m.usable) this.#stale = true;
      else if (isFull(m)) full = true;
      else if (m === avoid) avoided = i;
      else return this.#take(i);
      i = i + 1 === n ? 0 : i + 1;
    }
    if (avoided >= 0) return this.#take(avoided);
    return full ? PICK_FULL : PICK_NONE;
  }

  #take(i: number): PickOutcome {
    this.#next = i + 1 === this.#group.members.length ? 0 : i + 1;
    return this.#group.outcomes[i]!;
  }
}
