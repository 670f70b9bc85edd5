// The scaffolding every load-balancing algorithm shares: the active group precomputed from the pool's
// members, rebuilt with the algorithm's own tables on onMembersChanged(), and the self-healing pick
// (a pick that meets a member gone unusable since the last rebuild rebuilds and picks once more).

import {
  type ActiveGroup,
  type LbAlgorithm,
  type PickOutcome,
  type PoolMember,
  selectActiveGroup,
} from './algorithm.ts';

/**
 * Base class of the algorithms (HAProxy keeps the same split: `lb_ops` callbacks over a server group
 * that the core maintains). A subclass implements choose(), one allocation-free pick over `group` that
 * sets `stale` when it meets a member whose `usable` went false without onMembersChanged(), and
 * rebuild(), which recomputes its tables from `group`; its constructor calls rebuild() once its own
 * fields are set (when rebuild() needs them).
 *
 * pick() is written in each algorithm's class, always as
 * `const outcome = this.choose(avoid, hash); return this.stale ? this.heal(avoid, hash) : outcome;`,
 * so each algorithm's pick has inline caches of its own. One pick() here, shared, cost 6–10 ns more
 * per pick once several algorithms had run in one process (its `this.choose` call turned
 * megamorphic; bench/pools/pick.bench.ts).
 */
export abstract class GroupAlgorithm implements LbAlgorithm {
  /** Every member of the pool, usable or not, in pool order (the pool's array, kept by reference). */
  protected readonly all: readonly PoolMember[];
  /** The members picks choose from now: see selectActiveGroup(). */
  protected group: ActiveGroup;
  /** Set by choose() when it met a member that went unusable since the last rebuild. */
  protected stale = false;

  constructor(all: readonly PoolMember[]) {
    this.all = all;
    this.group = selectActiveGroup(all);
  }

  abstract pick(avoid: PoolMember | null, hash: number): PickOutcome;

  onMembersChanged(): void {
    this.group = selectActiveGroup(this.all);
    this.stale = false;
    this.rebuild();
  }

  /**
   * The rare end of pick(): choose() met a member gone unusable, a health change the pool has not
   * announced yet. Rebuilds, then chooses once more.
   */
  protected heal(avoid: PoolMember | null, hash: number): PickOutcome {
    this.onMembersChanged();
    return this.choose(avoid, hash);
  }

  /** One pick over `group` (see LbAlgorithm.pick); sets `stale` rather than rebuilding itself. */
  protected abstract choose(avoid: PoolMember | null, hash: number): PickOutcome;

  /** Recomputes the algorithm's tables from the new `group`. */
  protected abstract rebuild(): void;
}

/**
 * An algorithm whose scans start at a cursor that moves past each winner (round robin, and least
 * connections' tie rotation). A rebuild keeps the cursor's place rather than restarting at member 0,
 * so frequent rebuilds (flapping health) don't favour the first members.
 */
export abstract class RotatingGroupAlgorithm extends GroupAlgorithm {
  /** Index in the group where the next scan starts. */
  protected next = 0;

  protected override rebuild(): void {
    const n = this.group.members.length;
    this.next = n === 0 ? 0 : this.next % n;
  }
}
