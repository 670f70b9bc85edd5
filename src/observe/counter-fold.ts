// Keeps counters monotonic across snapshot swaps. Counters that live on a snapshot (per-rule policy
// counters, backend served/failures) restart at 0 when a reload builds new objects; this folds each
// source object's growth into a running total per label set, so Prometheus never sees a reset.

/** Running totals by key, fed by (key, source object, current value) readings. */
export class CounterFold {
  readonly #totals = new Map<string, number>();
  /** Last value read per source object and key. */
  readonly #last = new WeakMap<object, Map<string, number>>();

  /**
   * Reads a counter: adds its growth since the last reading of the same source to the key's total.
   * A source seen for the first time contributes its whole value.
   * @param key - the label set (stable across reloads, e.g. segment + rule name)
   * @param source - the object that owns the counter (a policy, a backend)
   * @param value - the counter's current value
   * @returns the key's running total
   */
  read(key: string, source: object, value: number): number {
    let last = this.#last.get(source);
    if (last === undefined) {
      last = new Map();
      this.#last.set(source, last);
    }
    const before = last.get(key) ?? 0;
    const total = (this.#totals.get(key) ?? 0) + Math.max(0, value - before);
    last.set(key, value);
    this.#totals.set(key, total);
    return total;
  }

  /** Every key with its total. */
  entries(): IterableIterator<[string, number]> {
    return this.#totals.entries();
  }

  /** A key's total (0 when never read). */
  total(key: string): number {
    return this.#totals.get(key) ?? 0;
  }
}
