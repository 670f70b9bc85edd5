// Hybrid logical clock (Kulkarni et al., "Logical Physical Clocks", 2014): stamps that follow wall
// time, never go backwards and always exceed every stamp this node has seen, so last-writer-wins
// picks the causally later write. Ties between nodes are broken by node id.

/** A hybrid logical clock stamp; total order: wall, then counter, then node id. */
export interface Stamp {
  /** Milliseconds since the epoch (the largest wall time seen, not necessarily this node's). */
  readonly wall: number;
  /** Logical counter within one wall millisecond. */
  readonly counter: number;
  /** Node that made the stamp (tie-break). */
  readonly node: string;
}

/** Orders two stamps: negative when a < b, 0 when equal, positive when a > b. */
export function compareStamps(a: Stamp, b: Stamp): number {
  if (a.wall !== b.wall) return a.wall - b.wall;
  if (a.counter !== b.counter) return a.counter - b.counter;
  return a.node < b.node ? -1 : a.node > b.node ? 1 : 0;
}

/** Largest counter value before the clock refuses to tick within one millisecond. */
const MAX_COUNTER = 0x7fffffff;

/**
 * One node's hybrid clock. `now()` stamps a local event; `observe()` folds in a remote stamp.
 * A remote stamp further ahead of local wall time than `maxSkewMs` is refused (not folded in), so
 * one node with a clock set to next year cannot make every other node's writes lose.
 */
export class HybridClock {
  readonly node: string;
  readonly #physical: () => number;
  readonly #maxSkewMs: number;
  #wall = 0;
  #counter = 0;

  /**
   * @param node - this node's id (tie-break of equal stamps)
   * @param maxSkewMs - how far ahead of local wall time a remote stamp may be
   * @param physical - wall clock in ms (tests pass a fake one)
   */
  constructor(node: string, maxSkewMs: number, physical: () => number = Date.now) {
    this.node = node;
    this.#maxSkewMs = maxSkewMs;
    this.#physical = physical;
  }

  /** A new stamp for a local event, greater than every stamp made or observed before. */
  now(): Stamp {
    const pt = this.#physical();
    if (pt > this.#wall) {
      this.#wall = pt;
      this.#counter = 0;
    } else if (this.#counter < MAX_COUNTER) {
      this.#counter++;
    } else {
      // 2^31 events in one millisecond: borrow the next millisecond rather than overflow.
      this.#wall++;
      this.#counter = 0;
    }
    return { wall: this.#wall, counter: this.#counter, node: this.node };
  }

  /**
   * Folds a remote stamp in, so later local stamps order after it.
   * @returns false (and changes nothing) when the stamp is more than maxSkewMs ahead of local time
   */
  observe(remote: { readonly wall: number; readonly counter: number }): boolean {
    const pt = this.#physical();
    if (remote.wall > pt + this.#maxSkewMs) return false;
    if (remote.wall > this.#wall || (remote.wall === this.#wall && remote.counter > this.#counter)) {
      this.#wall = remote.wall;
      this.#counter = remote.counter;
    }
    return true;
  }

  /** Local physical time in ms (the clock's source), for expiry checks. */
  physical(): number {
    return this.#physical();
  }
}
