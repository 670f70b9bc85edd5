// Weighted power of two random choices, as Envoy's LEAST_REQUEST (`choice_count: 2`): draw two
// members at random in proportion to weight and send to the one with fewer requests in flight per
// unit of weight. Near least-connections balance with O(log n) work and no herd on one idle member.

import type { LbAlgorithm, LbAlgorithmDescriptor, PickOutcome, PoolMember } from './algorithm.ts';
import { isFull, PICK_FULL, PICK_NONE } from './algorithm.ts';
import { GroupAlgorithm } from './group-algorithm.ts';
import { XorShift32 } from './key-hash.ts';

/**
 * `random_two_choices`: two weighted random draws (binary search over cumulative weights, precomputed
 * at onMembersChanged()), then the lower `inflight / weight` wins (first draw on a tie, so with no
 * concurrency picks follow the weights). When neither draw can take the request (avoid, full, or gone
 * unusable), a scan from a random start takes the best member with room, as least_connections would.
 * Envoy draws uniformly and weighs in its EDF scheduler instead; drawing by weight keeps one pick
 * O(log n). No allocation per pick.
 */
export const RANDOM_TWO_CHOICES: LbAlgorithmDescriptor = Object.freeze({
  name: 'random_two_choices',
  dynamicWeights: true,
  needsKey: false,
  create(members: readonly PoolMember[]): LbAlgorithm {
    return new PowerOfTwoChoices(members, new XorShift32());
  },
});

/**
 * Creates the algorithm with a given random generator (tests use a seeded one for reproducible
 * sequences); RANDOM_TWO_CHOICES.create seeds from Math.random().
 */
export function createPowerOfTwoChoices(members: readonly PoolMember[], random: XorShift32): LbAlgorithm {
  return new PowerOfTwoChoices(members, random);
}

class PowerOfTwoChoices extends GroupAlgorithm {
  readonly #random: XorShift32;
  /** cumulative[i] = weights[0] + ... + weights[i]. */
  #cumulative: Int32Array = new Int32Array(0);

  constructor(all: readonly PoolMember[], random: XorShift32) {
    super(all);
    this.#random = random;
    this.rebuild();
  }

  override pick(avoid: PoolMember | null, hash: number): PickOutcome {
    const outcome = this.choose(avoid, hash);
    return this.stale ? this.heal(avoid, hash) : outcome;
  }

  protected override rebuild(): void {
    this.#cumulative = cumulate(this.group.weights);
  }

  protected override choose(avoid: PoolMember | null, _hash: number): PickOutcome {
    const group = this.group;
    const members = group.members;
    if (members.length === 0) return PICK_NONE;
    const weights = group.weights;
    const outcomes = group.outcomes;
    const a = this.#draw();
    const b = this.#draw();
    const ma = members[a]!;
    const mb = members[b]!;
    if (!ma.usable || !mb.usable) this.stale = true;
    const okA = ma.usable && ma !== avoid && !isFull(ma);
    const okB = mb.usable && mb !== avoid && !isFull(mb);
    if (okA && okB) {
      // Integers only: a.inflight / wa <= b.inflight / wb.
      return ma.inflight * weights[b]! <= mb.inflight * weights[a]! ? outcomes[a]! : outcomes[b]!;
    }
    if (okA) return outcomes[a]!;
    if (okB) return outcomes[b]!;
    return this.#scan(avoid);
  }

  /** Index of a member drawn in proportion to weight. */
  #draw(): number {
    const c = this.#cumulative;
    const total = c[c.length - 1]!;
    if (c.length === 1) return 0;
    // >>> 1 keeps the value an int32, so % is an integer modulo rather than a float one.
    const r = (this.#random.next() >>> 1) % total;
    let lo = 0;
    let hi = c.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (c[mid]! > r) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  }

  /** Fallback: least inflight/weight among members with room, from a random start. */
  #scan(avoid: PoolMember | null): PickOutcome {
    const { members, weights, outcomes } = this.group;
    const n = members.length;
    let best = -1;
    let avoided = -1;
    let full = false;
    let i = (this.#random.next() >>> 1) % n;
    for (let k = 0; k < n; k++) {
      const m = members[i]!;
      if (!m.usable) this.stale = true;
      else if (isFull(m)) full = true;
      else if (m === avoid) avoided = i;
      else if (best < 0 || m.inflight * weights[best]! < members[best]!.inflight * weights[i]!) best = i;
      i = i + 1 === n ? 0 : i + 1;
    }
    if (best < 0) best = avoided;
    if (best >= 0) return outcomes[best]!;
    return full ? PICK_FULL : PICK_NONE;
  }
}

function cumulate(weights: Int32Array): Int32Array {
  const out = new Int32Array(weights.length);
  let sum = 0;
  for (let i = 0; i < weights.length; i++) {
    sum += weights[i]!;
    out[i] = sum;
  }
  return out;
}
