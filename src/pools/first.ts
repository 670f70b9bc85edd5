// `first`, as HAProxy `balance first`: the first member in pool order with a free connection slot
// takes the request, so traffic packs onto as few backends as possible (the rest can be powered down
// or kept cold). Meant for pools whose backends have max_connections.

import type { LbAlgorithm, LbAlgorithmDescriptor, PickOutcome, PoolMember } from './algorithm.ts';
import { isFull, PICK_FULL, PICK_NONE } from './algorithm.ts';
import { GroupAlgorithm } from './group-algorithm.ts';

/**
 * `first`: scans the active group in pool order and returns the first member that is not full and
 * not `avoid` (then `avoid` if it alone has room). Without max_connections every request goes to the
 * first usable member. Weights are ignored. O(position of the first free member), no allocation.
 */
export const FIRST: LbAlgorithmDescriptor = Object.freeze({
  name: 'first',
  dynamicWeights: false,
  needsKey: false,
  create(members: readonly PoolMember[]): LbAlgorithm {
    return new FirstAvailable(members);
  },
});

class FirstAvailable extends GroupAlgorithm {
  override pick(avoid: PoolMember | null, hash: number): PickOutcome {
    const outcome = this.choose(avoid, hash);
    return this.stale ? this.heal(avoid, hash) : outcome;
  }

  protected override rebuild(): void {} // the group is the whole table

  protected override choose(avoid: PoolMember | null, _hash: number): PickOutcome {
    const { members, outcomes } = this.group;
    let avoided = -1;
    let full = false;
    for (let i = 0; i < members.length; i++) {
      const m = members[i]!;
      if (!m.usable) this.stale = true;
      else if (isFull(m)) full = true;
      else if (m === avoid) avoided = i;
      else return outcomes[i]!;
    }
    if (avoided >= 0) return outcomes[avoided]!;
    return full ? PICK_FULL : PICK_NONE;
  }
}
