// Plain round robin over the active group, ignoring weights (HAProxy `balance static-rr` with equal
// weights, nginx `upstream` without `weight=`). The rotation is a cursor into a table rebuilt on change.

import type { LbAlgorithm, LbAlgorithmDescriptor, PickOutcome, PoolMember } from './algorithm.ts';
import { isFull, PICK_FULL, PICK_NONE } from './algorithm.ts';
import { RotatingGroupAlgorithm } from './group-algorithm.ts';

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

/** `next` is the next member to try. */
class RoundRobin extends RotatingGroupAlgorithm {
  override pick(avoid: PoolMember | null, hash: number): PickOutcome {
    const outcome = this.choose(avoid, hash);
    return this.stale ? this.heal(avoid, hash) : outcome;
  }

  protected override choose(avoid: PoolMember | null, _hash: number): PickOutcome {
    const members = this.group.members;
    const n = members.length;
    let avoided = -1;
    let full = false;
    let i = this.next;
    for (let k = 0; k < n; k++) {
      const m = members[i]!;
      if (!m.usable) this.stale = true;
      else if (isFull(m)) full = true;
      else if (m === avoid) avoided = i;
      else return this.#take(i);
      i = i + 1 === n ? 0 : i + 1;
    }
    if (avoided >= 0) return this.#take(avoided);
    return full ? PICK_FULL : PICK_NONE;
  }

  #take(i: number): PickOutcome {
    this.next = i + 1 === this.group.members.length ? 0 : i + 1;
    return this.group.outcomes[i]!;
  }
}
