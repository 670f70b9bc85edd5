// Weighted least connections, after HAProxy `balance leastconn` (src/lb_fwlc.c): the member with the
// fewest in-flight requests per unit of weight wins; equal members take turns.

import type { LbAlgorithm, LbAlgorithmDescriptor, PickOutcome, PoolMember } from './algorithm.ts';
import { isFull, PICK_FULL, PICK_NONE } from './algorithm.ts';
import { RotatingGroupAlgorithm } from './group-algorithm.ts';

/**
 * `least_connections`: picks the active-group member with the lowest `inflight / weight` (compared as
 * `a.inflight * b.weight < b.inflight * a.weight`, integers only). Ties go round robin: the scan starts
 * after the previous winner, so idle or equally loaded members share the load instead of the first one
 * taking everything. Under steady concurrency in-flight counts settle in proportion to weights.
 *
 * HAProxy (lb_fwlc.c `fwlc_queue_srv()`) keys busy servers on `(inflight + 1) / weight`, which tilts
 * towards heavy servers a little further, and idle ones on 0 so they tie and rotate as here; seglb
 * keeps the plain ratio.
 * HAProxy keeps a tree updated on every take/release (O(log n)); this is a linear scan that stops at the
 * first idle member, reading `inflight` live (bench/pools/pick.bench.ts: ~35 ns at 3 busy members, ~80 ns
 * at 16, ~1 µs at 256). Reading live means no onTake/onRelease hooks to miss and nothing to drift when
 * requests started under an older snapshot's instance end under a newer one; weights are
 * read at onMembersChanged(). Full members are skipped; `avoid` is skipped unless it is the only
 * usable member with room. No allocation.
 */
export const LEAST_CONNECTIONS: LbAlgorithmDescriptor = Object.freeze({
  name: 'least_connections',
  dynamicWeights: true,
  needsKey: false,
  create(members: readonly PoolMember[]): LbAlgorithm {
    return new WeightedLeastConnections(members);
  },
});

/** Scans start at `next`: just after the last winner. */
class WeightedLeastConnections extends RotatingGroupAlgorithm {
  override pick(avoid: PoolMember | null, hash: number): PickOutcome {
    const outcome = this.choose(avoid, hash);
    return this.stale ? this.heal(avoid, hash) : outcome;
  }

  protected override choose(avoid: PoolMember | null, _hash: number): PickOutcome {
    const { members, weights, outcomes } = this.group;
    const n = members.length;
    let best = -1;
    let bestInflight = 0;
    let bestWeight = 1;
    let avoided = -1;
    let full = false;
    let i = this.next;
    for (let k = 0; k < n; k++) {
      const m = members[i]!;
      if (!m.usable) this.stale = true;
      else if (isFull(m)) full = true;
      else if (m === avoid) avoided = i;
      else {
        const w = weights[i]!;
        if (best < 0 || m.inflight * bestWeight < bestInflight * w) {
          best = i;
          bestInflight = m.inflight;
          bestWeight = w;
          if (bestInflight === 0) break; // nothing beats idle; the rotation breaks the tie
        }
      }
      i = i + 1 === n ? 0 : i + 1;
    }
    if (best < 0) best = avoided;
    if (best < 0) return full ? PICK_FULL : PICK_NONE;
    this.next = best + 1 === n ? 0 : best + 1;
    return outcomes[best]!;
  }
}
