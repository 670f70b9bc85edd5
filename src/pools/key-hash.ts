// 32-bit hashing for the hash-based algorithms and request keys: FNV-1a over UTF-16 code units with
// murmur3's fmix32 finaliser (avalanche, so `hash % tableSize` spreads evenly), and a xorshift32
// generator for random picks. No allocation: strings are read with charCodeAt.

/** FNV-1a 32-bit offset basis. */
const FNV_OFFSET = 0x811c9dc5;
/** FNV-1a 32-bit prime. */
const FNV_PRIME = 0x01000193;

/**
 * Hashes a string to an unsigned 32-bit integer.
 * @param text - any string (each UTF-16 code unit is hashed as two bytes)
 * @param seed - a different seed gives an independent hash of the same text (Maglev's offset/skip)
 */
export function hashString(text: string, seed = 0): number {
  let h = (FNV_OFFSET ^ seed) >>> 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    h = Math.imul(h ^ (c & 0xff), FNV_PRIME);
    h = Math.imul(h ^ (c >>> 8), FNV_PRIME);
  }
  return mix32(h);
}

/**
 * Hashes `text.slice(start, end)` without slicing (cookie values, paths before `?`).
 * Same result as `hashString(text.slice(start, end))`.
 */
export function hashRange(text: string, start: number, end: number): number {
  let h = FNV_OFFSET >>> 0;
  for (let i = start; i < end; i++) {
    const c = text.charCodeAt(i);
    h = Math.imul(h ^ (c & 0xff), FNV_PRIME);
    h = Math.imul(h ^ (c >>> 8), FNV_PRIME);
  }
  return mix32(h);
}

/** murmur3 fmix32: a bijective 32-bit mixer; also used to derive probe sequences from one hash. */
export function mix32(x: number): number {
  let h = x >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** A xorshift32 pseudo-random generator (not for secrets): fast, allocation-free, seedable for tests. */
export class XorShift32 {
  /** The state lives in a typed array: a uint32 in a plain field would be boxed on every store. */
  readonly #state = new Uint32Array(1);
  /** @param seed - any integer; 0 is replaced (xorshift would stay at 0 for ever) */
  constructor(seed: number = (Math.random() * 0x100000000) >>> 0) {
    this.#state[0] = seed >>> 0 || 0x9e3779b9;
  }
  /** The next unsigned 32-bit value. */
  next(): number {
    let x = this.#state[0]!;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.#state[0] = x;
    return x >>> 0;
  }
}
