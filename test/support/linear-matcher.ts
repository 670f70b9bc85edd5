// Golden oracle for the radix matcher: a brute-force linear scan that states the merge/inherit
// semantics in the most literal way (bart's golden table idea). Slow on purpose; tests only.

/** The callbacks the radix table takes, with the same meaning. */
export interface OracleSemantics {
  merge(existing: number, incoming: number): number;
  inherit(ancestor: number, own: number): number;
}

/**
 * Stores prefixes as plain numbers and answers a lookup by scanning all of them:
 * 1. duplicates (same address and length) are merged in insertion order;
 * 2. the prefixes covering the address are sorted shortest first: p1 ⊂ ... ⊂ pk;
 * 3. final(p1) = own(p1), final(pi) = inherit(final(p(i-1)), own(pi)); the answer is final(pk),
 *    or -1 when nothing covers the address.
 */
export class LinearMatcher {
  readonly family: 4 | 6;
  readonly #semantics: OracleSemantics;
  readonly #byKey = new Map<string, { words: number[]; len: number; value: number }>();
  #frozen: { words: Uint32Array; lens: Uint8Array; values: Int32Array; count: number } | null = null;

  constructor(family: 4 | 6, semantics: OracleSemantics) {
    this.family = family;
    this.#semantics = semantics;
  }

  /** Adds a prefix; `words` has 1 (IPv4) or 4 (IPv6) unsigned 32-bit words, host bits zero. */
  insert(words: ArrayLike<number>, len: number, value: number): void {
    const w = Array.from(words, (x) => x >>> 0);
    const key = `${w.join(',')}/${len}`;
    const old = this.#byKey.get(key);
    if (old) old.value = this.#semantics.merge(old.value, value);
    else this.#byKey.set(key, { words: w, len, value });
    this.#frozen = null;
  }

  /** Number of distinct prefixes. */
  get size(): number {
    return this.#byKey.size;
  }

  #freeze() {
    if (this.#frozen) return this.#frozen;
    const n = this.family === 4 ? 1 : 4;
    const list = [...this.#byKey.values()];
    const words = new Uint32Array(list.length * n);
    const lens = new Uint8Array(list.length);
    const values = new Int32Array(list.length);
    list.forEach((e, i) => {
      for (let k = 0; k < n; k++) words[i * n + k] = e.words[k] ?? 0;
      lens[i] = e.len;
      values[i] = e.value;
    });
    this.#frozen = { words, lens, values, count: list.length };
    return this.#frozen;
  }

  /** The answer for one address (1 or 4 words), by brute force. */
  lookup(addr: ArrayLike<number>): number {
    const { words, lens, values, count } = this.#freeze();
    const n = this.family === 4 ? 1 : 4;
    const hits: number[] = [];
    for (let i = 0; i < count; i++) {
      let inside = true;
      for (let k = 0; k < n && inside; k++) {
        const bits = lens[i]! - 32 * k;
        if (bits <= 0) break;
        const mask = bits >= 32 ? 0xffffffff : (0xffffffff << (32 - bits)) >>> 0;
        if (((addr[k] ?? 0) & mask) >>> 0 !== words[i * n + k]) inside = false;
      }
      if (inside) hits.push(i);
    }
    if (hits.length === 0) return -1;
    hits.sort((a, b) => lens[a]! - lens[b]!);
    let final = values[hits[0]!]!;
    for (let h = 1; h < hits.length; h++) final = this.#semantics.inherit(final, values[hits[h]!]!);
    return final;
  }
}
