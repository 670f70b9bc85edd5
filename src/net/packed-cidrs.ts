// A compact, read-only store of named CIDR lists: what the running snapshot keeps of the parsed IP
// sets once the matchers are compiled. A parsed prefix is an object with a text string (and, for
// IPv6, a Uint32Array): about 170 bytes of heap each, 40 MB for the 246k-prefix country set, kept
// for the process lifetime only so that GET /lint and GET /ipsets can read them. Packed, the same
// list is 8 bytes per IPv4 prefix and 20 per IPv6 prefix in one Uint32Array; a list is decoded back
// into Cidr objects only when asked for (admin reads, not the data path).

import { formatIPv4, formatIPv6 } from './address.ts';
import type { Cidr, CidrV4, CidrV6 } from './cidr.ts';

/** Header word of an IPv6 entry: this bit set, prefix length in the low byte. */
const V6_TAG = 0x100;

/**
 * Named CIDR lists packed into Uint32Arrays, read through the ReadonlyMap interface.
 *
 * Each entry is a header word (prefix length 0..128 in bits 0-7, bit 8 set for IPv6) followed by
 * the network address: one word for IPv4, four big-endian words for IPv6. Order is preserved.
 * `get` decodes a list into fresh Cidr objects whose `text` is the canonical form (RFC 5952 for
 * IPv6), which may differ in spelling from the file (`2001:DB8::/32` comes back `2001:db8::/32`).
 */
export class PackedCidrMap implements ReadonlyMap<string, readonly Cidr[]> {
  readonly #lists = new Map<string, { readonly words: Uint32Array; readonly count: number }>();

  /** @param source - the lists to pack (not kept) */
  constructor(source: ReadonlyMap<string, readonly Cidr[]>) {
    for (const [name, cidrs] of source) {
      let n = 0;
      for (const c of cidrs) n += c.family === 4 ? 2 : 5;
      const words = new Uint32Array(n);
      let i = 0;
      for (const c of cidrs) {
        if (c.family === 4) {
          words[i++] = c.prefixLength;
          words[i++] = c.v4;
        } else {
          words[i++] = V6_TAG | c.prefixLength;
          words.set(c.v6, i);
          i += 4;
        }
      }
      this.#lists.set(name, { words, count: cidrs.length });
    }
  }

  get size(): number {
    return this.#lists.size;
  }

  /** Prefixes in list `name` without decoding it; 0 for an unknown name. */
  countOf(name: string): number {
    return this.#lists.get(name)?.count ?? 0;
  }

  /** Bytes of packed storage over all lists (the Uint32Arrays' byteLength). */
  get byteLength(): number {
    let n = 0;
    for (const l of this.#lists.values()) n += l.words.byteLength;
    return n;
  }

  /**
   * Feeds list `name` to `update` in a canonical order, without decoding it into objects or
   * strings: the IPv4 prefixes sorted by (address, length), then the IPv6 ones sorted by their words
   * and length, each as its packed words. Two lists holding the same prefixes in any order feed the
   * same bytes (the policy hash peers compare; src/runtime.ts policyHash).
   */
  digestInto(name: string, update: (bytes: Uint8Array) => void): void {
    const l = this.#lists.get(name);
    if (l === undefined) return;
    const starts: number[] = [];
    for (let i = 0; i < l.words.length; i += ((l.words[i] as number) & V6_TAG) === 0 ? 2 : 5) starts.push(i);
    const w = l.words;
    const isV6 = (i: number) => ((w[i] as number) & V6_TAG) !== 0;
    starts.sort((a, b) => {
      const fa = isV6(a) ? 1 : 0;
      const fb = isV6(b) ? 1 : 0;
      if (fa !== fb) return fa - fb;
      const n = fa ? 4 : 1;
      for (let k = 1; k <= n; k++) {
        const d = (w[a + k] as number) - (w[b + k] as number);
        if (d !== 0) return d;
      }
      return ((w[a] as number) & 0xff) - ((w[b] as number) & 0xff);
    });
    const sorted = new Uint32Array(w.length);
    let o = 0;
    for (const i of starts) {
      const n = isV6(i) ? 5 : 2;
      sorted.set(w.subarray(i, i + n), o);
      o += n;
    }
    update(new Uint8Array(sorted.buffer));
  }

  has(name: string): boolean {
    return this.#lists.has(name);
  }

  /** The list decoded into new Cidr objects (a new array on every call), or undefined. */
  get(name: string): readonly Cidr[] | undefined {
    const l = this.#lists.get(name);
    return l === undefined ? undefined : decode(l.words, l.count);
  }

  keys(): MapIterator<string> {
    return this.#lists.keys();
  }

  *values(): MapIterator<readonly Cidr[]> {
    for (const l of this.#lists.values()) yield decode(l.words, l.count);
  }

  *entries(): MapIterator<[string, readonly Cidr[]]> {
    for (const [name, l] of this.#lists) yield [name, decode(l.words, l.count)];
  }

  [Symbol.iterator](): MapIterator<[string, readonly Cidr[]]> {
    return this.entries();
  }

  forEach(
    fn: (value: readonly Cidr[], key: string, map: ReadonlyMap<string, readonly Cidr[]>) => void,
    thisArg?: unknown,
  ): void {
    for (const [name, cidrs] of this.entries()) fn.call(thisArg, cidrs, name, this);
  }
}

/**
 * A decoded IPv4 prefix. `text` is formatted on first read, so decoding a list for the compiler
 * (which never reads it) allocates one small object per prefix and no string.
 */
class DecodedV4 implements CidrV4 {
  readonly family = 4 as const;
  readonly prefixLength: number;
  readonly v4: number;
  #text: string | undefined;
  constructor(prefixLength: number, v4: number) {
    this.prefixLength = prefixLength;
    this.v4 = v4;
  }
  get text(): string {
    this.#text ??= `${formatIPv4(this.v4)}/${this.prefixLength}`;
    return this.#text;
  }
  toJSON(): { family: 4; prefixLength: number; v4: number; text: string } {
    return { family: 4, prefixLength: this.prefixLength, v4: this.v4, text: this.text };
  }
}

/** A decoded IPv6 prefix (see DecodedV4). */
class DecodedV6 implements CidrV6 {
  readonly family = 6 as const;
  readonly prefixLength: number;
  readonly v6: Uint32Array;
  #text: string | undefined;
  constructor(prefixLength: number, v6: Uint32Array) {
    this.prefixLength = prefixLength;
    this.v6 = v6;
  }
  get text(): string {
    this.#text ??= `${formatIPv6(this.v6)}/${this.prefixLength}`;
    return this.#text;
  }
  toJSON(): { family: 6; prefixLength: number; v6: number[]; text: string } {
    return { family: 6, prefixLength: this.prefixLength, v6: [...this.v6], text: this.text };
  }
}

function decode(words: Uint32Array, count: number): Cidr[] {
  const out: Cidr[] = new Array(count);
  let i = 0;
  for (let k = 0; k < count; k++) {
    const head = words[i++] as number;
    if ((head & V6_TAG) === 0) {
      out[k] = new DecodedV4(head & 0xff, words[i++] as number);
    } else {
      // A view, not a copy: the packed words are never written after construction.
      out[k] = new DecodedV6(head & 0xff, words.subarray(i, i + 4));
      i += 4;
    }
  }
  return out;
}

/**
 * Prefixes in IP set `name` of `ipsets`: counted without decoding when the map is a PackedCidrMap
 * (as every loaded config's is); 0 for an unknown name.
 */
export function ipsetSize(ipsets: ReadonlyMap<string, readonly Cidr[]>, name: string): number {
  return ipsets instanceof PackedCidrMap ? ipsets.countOf(name) : (ipsets.get(name)?.length ?? 0);
}
