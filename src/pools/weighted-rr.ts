// Smooth weighted round robin, as nginx's `ngx_http_upstream_get_peer()`: picks are interleaved in
// proportion to weight (5,1,1 gives a a b a c a a), not sent in bursts to the heaviest member.
// Like HAProxy's lb_map, the whole cycle is precomputed on change, so a pick is one table read.

import type { LbAlgorithm, LbAlgorithmDescriptor, PickOutcome, PoolMember } from './algorithm.ts';
import { isFull, PICK_FULL, PICK_NONE, weightsGcd } from './algorithm.ts';
import { GroupAlgorithm } from './group-algorithm.ts';

/**
 * Largest `cycle length × members` for which the cycle is precomputed: about a millisecond of work per
 * rebuild. Every pool of up to 256 members with a total weight up to 4096 gets a table (HAProxy's
 * lb_map grows the same way, O(total weight × servers)); larger ones run nginx's O(members) step.
 */
const MAX_CYCLE_BUILD_STEPS = 1 << 20;

/**
 * `weighted_round_robin`: nginx's smooth weighted round robin over the active group. Per step, every
 * candidate's `current` grows by its weight, the largest `current` wins (first in pool order on a tie)
 * and drops by the sum of the weights. Over every `sum(weights)` picks with no avoids each member gets
 * exactly its weight's share, spread as evenly as possible.
 *
 * onMembersChanged() reads the weights, divides them by their GCD and precomputes one full cycle (HAProxy
 * `recalc_server_map()` style), so a pick is a table read; pools too large for a table (see
 * MAX_CYCLE_BUILD_STEPS) run the same step per pick, as nginx does. Either way the sequence restarts
 * from the top after a rebuild, as after an nginx reload. `avoid` is skipped (nginx skips peers already
 * tried) unless it is the only usable member with room; full members sit their turn out. Unlike nginx, there is no `effective_weight` back-off on
 * failure: health and outlier detection decide `usable` instead. No allocation per pick.
 */
export const WEIGHTED_ROUND_ROBIN: LbAlgorithmDescriptor = Object.freeze({
  name: 'weighted_round_robin',
  dynamicWeights: true,
  needsKey: false,
  create(members: readonly PoolMember[]): LbAlgorithm {
    return new SmoothWeightedRoundRobin(members);
  },
});

class SmoothWeightedRoundRobin extends GroupAlgorithm {
  /** One smooth cycle as group indices, or null when too large to precompute (then #step runs). */
  #cycle: Int32Array | null = null;
  /** Next position in #cycle. */
  #pos = 0;
  /** nginx's `current_weight` per group member, used only without a table. */
  #current: Int32Array = new Int32Array(0);

  constructor(all: readonly PoolMember[]) {
    super(all);
    this.rebuild();
  }

  override pick(avoid: PoolMember | null, hash: number): PickOutcome {
    const outcome = this.choose(avoid, hash);
    return this.stale ? this.heal(avoid, hash) : outcome;
  }

  protected override rebuild(): void {
    this.#cycle = buildSmoothCycle(this.group.weights);
    this.#pos = 0;
    this.#current = new Int32Array(this.group.members.length);
  }

  protected override choose(avoid: PoolMember | null, _hash: number): PickOutcome {
    return this.#cycle === null ? this.#step(avoid) : this.#next(avoid);
  }

  /** Table path: the next cycle entry that is usable and not `avoid`. */
  #next(avoid: PoolMember | null): PickOutcome {
    const cycle = this.#cycle!;
    const { members, outcomes } = this.group;
    const len = cycle.length;
    let p = this.#pos;
    let avoided = -1;
    let full = false;
    for (let k = 0; k < len; k++) {
      const i = cycle[p]!;
      p = p + 1 === len ? 0 : p + 1;
      const m = members[i]!;
      if (!m.usable) this.stale = true;
      else if (isFull(m)) full = true;
      else if (m === avoid) avoided = i;
      else {
        this.#pos = p;
        return outcomes[i]!;
      }
    }
    if (avoided >= 0) return outcomes[avoided]!;
    return full ? PICK_FULL : PICK_NONE;
  }

  /** Scan path: one step of nginx's loop; `avoid` and stale members sit the round out. */
  #step(avoid: PoolMember | null): PickOutcome {
    const { members, weights, outcomes } = this.group;
    const current = this.#current;
    const n = members.length;
    let total = 0;
    let best = -1;
    let bestCurrent = 0;
    let avoided = -1;
    let full = false;
    for (let i = 0; i < n; i++) {
      const m = members[i]!;
      if (!m.usable) {
        this.stale = true;
        continue;
      }
      if (isFull(m)) {
        full = true;
        continue;
      }
      if (m === avoid) {
        avoided = i;
        continue;
      }
      const w = weights[i]!;
      const c = current[i]! + w;
      current[i] = c;
      total += w;
      if (best < 0 || c > bestCurrent) {
        best = i;
        bestCurrent = c;
      }
    }
    if (best < 0) {
      if (avoided >= 0) return outcomes[avoided]!; // nginx: a lone peer skips the maths
      return full ? PICK_FULL : PICK_NONE;
    }
    current[best] = bestCurrent - total;
    return outcomes[best]!;
  }
}

/**
 * One full cycle of smooth weighted round robin as member indices, or null when
 * `cycle × members` exceeds MAX_CYCLE_BUILD_STEPS. Dividing by the GCD keeps the sequence (every
 * `current` scales by the same factor) and shortens the cycle; after `sum(weights)` steps every
 * `current` is back to 0, so the cycle repeats exactly.
 */
function buildSmoothCycle(weights: Int32Array): Int32Array | null {
  const n = weights.length;
  if (n === 0) return new Int32Array(0);
  const g = weightsGcd(weights);
  const reduced = new Int32Array(n);
  let total = 0;
  for (let i = 0; i < n; i++) total += reduced[i] = weights[i]! / g;
  if (total * n > MAX_CYCLE_BUILD_STEPS) return null;
  const cycle = new Int32Array(total);
  const current = new Int32Array(n);
  for (let k = 0; k < total; k++) {
    let best = 0;
    for (let i = 0; i < n; i++) {
      const c = (current[i]! += reduced[i]!);
      if (c > current[best]!) best = i;
    }
    current[best]! -= total;
    cycle[k] = best;
  }
  return cycle;
}
