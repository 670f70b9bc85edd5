// Longest-prefix-match table for one address family: built once from (prefix, value) pairs, immutable,
// answering lookupV4/lookupV6 with a few typed-array reads and no allocation.
//
// Design (ideas from Envoy lc_trie.h, bart and poptrie; the code is ours):
//   * nesting is settled at build time: every prefix gets its final value (merge + inherit), then
//     "leaf pushing" spreads it over the slots it covers, so lookup never backtracks;
//   * a direct-indexed root of 2^8 or 2^16 entries, then 8-bit strides;
//   * each 256-slot node is compressed to a 256-bit bitmap of "an entry starts here" plus a packed
//     entry list, indexed by popcount rank; runs of equal leaf values share one entry;
//   * a subtree holding a single prefix, or whose prefixes share more leading bytes, is one small
//     record (path compression), so sparse IPv6 tables do not pay for chains of near-empty nodes;
//   * everything lives in two Int32Arrays (root, nodes): no objects, no BigInt, no per-rule loop;
//     nodes are laid out breadth first, so the levels every lookup crosses share a few pages.
//
// 1. Walk of 203.0.113.77 in an IPv4 table with a 16-bit root:
//
//      address bits  0 ............ 15 | 16 ..... 23 | 24 ..... 31
//                      203   .   0     |     113     |     77
//                            │                │             │
//      root[0xcb00] ─────────┘                │             │
//        └─ entry > 0, even: node at offset e │             │
//             node.slot(113) ─────────────────┘             │
//               └─ entry > 0, even: node at offset e'       │
//                    node.slot(77) ─────────────────────────┘
//                      └─ entry <= 0: leaf, the answer is ~entry
//
// 2. One node, at an even offset `e` of the `nodes` Int32Array (16 header words, then entries):
//
//      e+0     e+1     e+2     e+3           e+14    e+15    e+16 ...
//      ┌───────┬───────┬───────┬───────┬─────┬───────┬───────┬──────────────────────────┐
//      │vec[0] │off[0] │vec[1] │off[1] │ ... │vec[7] │off[7] │ entry 0, entry 1, ...     │
//      └───────┴───────┴───────┴───────┴─────┴───────┴───────┴──────────────────────────┘
//      vec[k] bit j = 1  <=>  an entry starts at slot s = 32k + j (slot 0 always starts one)
//      off[k]         =  16 + (set bits in vec[0..k-1]) - 1
//      entry(s)       =  nodes[e + off[s >> 5] + popcount(vec[s >> 5] & bits 0..(s & 31))]
//
//    The (vec, off) pair a lookup needs is 8 bytes at an even offset, so it never straddles a cache
//    line: one line for the header, usually the same or the next one for the entry.
//
// 3. Entries (the root holds entries too, one per root slot):
//
//      entry <= 0          leaf: value ~entry (the value -1, "no prefix covers this", is entry 0)
//      entry >  0, even    child node at offset entry
//      entry >  0, odd     record at offset entry - 1, reached at bit position p:
//                            IPv4 [key, mask, next, fallback]
//                            IPv6 [len, next, fallback, key words p>>5 .. (len-1)>>5]
//                          address has the record's first len bits ? go on with entry `next`
//                          at bit len : the answer is `fallback`
//
//    A record is path compression. A subtree holding one prefix becomes one record whose `next`
//    is that prefix's leaf (no chain of nearly empty nodes). A subtree whose prefixes all share
//    more bits skips them, in whole bytes, to the node below:
//
//      2001:db8:1::/48, 2001:db8:2::/48 (nothing else under 2001:db8::/32), 16-bit root:
//        root[0x2001] ─► record [len 32, key 0x20010db8] ─► node at bit 32, slots 0x00 0x01 0x02
//        (no nodes at bits 16 and 24: 2001:db9:: fails the key check and gets the fallback)
//
// 4. Leaf pushing and run compression, for 10.0.0.0/8 → A, 10.1.0.0/16 → B, 10.1.2.0/24 → C with
//    an 8-bit root (inherit(x, own) = own here):
//
//      root:         slot 10 → node N1; every other slot → leaf -1
//      N1 (10.x):    slot 0 → A, slot 1 → node N2, slots 2..255 → A
//                    vec bits at slots 0, 1, 2 → 3 entries: [~A, N2, ~A]
//      N2 (10.1.x):  slots 0..1 → B, slot 2 → C, slots 3..255 → B
//                    vec bits at slots 0, 2, 3 → 3 entries: [~B, ~C, ~B]
//
//    The /16 B became two runs around the /24 C: covering prefixes are copied into the gaps of the
//    longer ones, so the first leaf reached is the longest match, with its final (inherited) value.

import { NetError, PolicyError } from '../errors.ts';
import type { Address, Cidr } from '../net/index.ts';

/** How a table combines values; both callbacks run at build time only, never per lookup. */
export interface RadixBuildOptions {
  /**
   * Called when the same prefix is inserted twice: returns the value to keep. `existing` is the
   * value kept so far (the first insertion, or the previous merge result), `incoming` the next
   * insertion's, in insertion order. Must return an integer 0..2^31-1.
   */
  merge(existing: number, incoming: number): number;
  /**
   * Called at build time for every stored prefix that has a covering (shorter) stored prefix:
   * returns the final value of the longer prefix given the final value of its nearest covering
   * prefix. So lookups need no backtracking logic in the caller: the value found by
   * longest-prefix match already includes everything its ancestors said. Called parents-first.
   * Must return an integer 0..2^31-1.
   */
  inherit(ancestor: number, own: number): number;
  /**
   * Width of the direct-indexed root in bits: 8 (1 KiB, for small tables) or 16 (256 KiB, one
   * level fewer per lookup). Default: 16 when the table keeps at least WIDE_ROOT_MIN_PREFIXES
   * prefixes, else 8. Lookup results never depend on it.
   */
  rootBits?: 8 | 16;
  /**
   * Capacity limit of the built table (root + nodes) in bytes; building beyond it throws
   * SEGLB_POLICY_TOO_LARGE. Default DEFAULT_RADIX_MAX_BYTES (1 GiB).
   */
  maxBytes?: number;
}

/** Options of the RadixBuilder constructor. */
export interface RadixBuilderOptions {
  /** Most prefixes insert() accepts (duplicates count). Default DEFAULT_RADIX_MAX_PREFIXES (2^24). */
  maxPrefixes?: number;
}

/** Shape of RadixTable.stats(). */
export interface RadixStats {
  /** Distinct prefixes stored (after merging duplicates). */
  prefixes: number;
  /** Compressed 256-slot nodes (the root array and records not counted). */
  nodes: number;
  /** Records: single-prefix subtrees and skips over shared leading bytes (path compression). */
  records: number;
  /** Bytes of the typed arrays the table holds (root + nodes). */
  bytes: number;
  /** Width of the direct-indexed root, 8 or 16. */
  rootBits: number;
}

/** Default of RadixBuildOptions.maxBytes: 1 GiB. */
export const DEFAULT_RADIX_MAX_BYTES = 2 ** 30;
/** Default of RadixBuilderOptions.maxPrefixes: 16,777,216. */
export const DEFAULT_RADIX_MAX_PREFIXES = 2 ** 24;
/** Tables keeping at least this many prefixes get a 16-bit root unless rootBits says otherwise. */
export const WIDE_ROOT_MIN_PREFIXES = 16384;

const MAX_VALUE = 0x7fffffff;
const HEADER_WORDS = 16;
const RECORD_WORDS_V4 = 4;
const RECORD_HEADER_V6 = 3;

/** Scratch of the node being laid out: its slots' values and its child groups. */
interface NodeScratch {
  slots: Int32Array;
  group: Int32Array; // group index + 1 per slot, 0 when the slot is a leaf
  lo: Int32Array;
  hi: Int32Array;
  slotOf: Int32Array;
  /** Per 32-slot word: 1 when a prefix or child touched it (else every slot holds the fallback). */
  dirty: Uint8Array;
  /** The node being encoded: its entries, vec and off header words, each group's entry index. */
  entries: Int32Array;
  vecs: Int32Array;
  offs: Int32Array;
  entryOf: Int32Array;
}

function newScratch(size: number): NodeScratch {
  return {
    slots: new Int32Array(size),
    group: new Int32Array(size),
    lo: new Int32Array(size),
    hi: new Int32Array(size),
    slotOf: new Int32Array(size),
    dirty: new Uint8Array((size >>> 5) + 1),
    entries: new Int32Array(size),
    vecs: new Int32Array(8),
    offs: new Int32Array(8),
    entryOf: new Int32Array(size),
  };
}

function checkValue(value: number, what: string): number {
  if (!Number.isInteger(value) || value < 0 || value > MAX_VALUE) {
    throw new PolicyError(
      'SEGLB_POLICY_INVALID_ENTRY',
      `${what} must be an integer 0..2147483647, got ${String(value)}`,
    );
  }
  return value;
}

/** Mask of word `w` (0..3) of prefix length `len`, as a signed 32-bit integer. */
function wordMask(len: number, w: number): number {
  const bits = len - 32 * w;
  if (bits <= 0) return 0;
  if (bits >= 32) return -1;
  return -1 << (32 - bits);
}

/**
 * Collects (prefix, value) pairs of one family, then builds an immutable RadixTable.
 * Not thread-safe, not shared: make one per table. build() may be called more than once.
 */
export class RadixBuilder {
  /** 4 or 6. */
  readonly family: 4 | 6;
  readonly #words: number;
  readonly #maxPrefixes: number;
  #keys: Uint32Array;
  #lens: Uint8Array;
  #values: Int32Array;
  #count = 0;

  /**
   * @param family - 4 or 6: which insert method applies and which lookup the table answers
   * @param options.maxPrefixes - capacity (default 2^24)
   */
  constructor(family: 4 | 6, options?: RadixBuilderOptions) {
    if (family !== 4 && family !== 6) {
      throw new PolicyError('SEGLB_POLICY_INVALID_ENTRY', `family must be 4 or 6, got ${String(family)}`);
    }
    this.family = family;
    this.#words = family === 4 ? 1 : 4;
    this.#maxPrefixes = options?.maxPrefixes ?? DEFAULT_RADIX_MAX_PREFIXES;
    this.#keys = new Uint32Array(16 * this.#words);
    this.#lens = new Uint8Array(16);
    this.#values = new Int32Array(16);
  }

  /** Number of insert calls so far (duplicates included). */
  get size(): number {
    return this.#count;
  }

  /**
   * Adds a parsed prefix (from parseCidr / parseCidrList).
   * @param value - integer 0..2^31-1, typically the index of an interned verdict record
   * @throws PolicyError SEGLB_POLICY_INVALID_ENTRY when the family differs from the builder's or
   *   the value is out of range; PolicyError SEGLB_POLICY_TOO_LARGE beyond maxPrefixes
   */
  insert(c: Cidr, value: number): void {
    if (c.family !== this.family) {
      throw new PolicyError(
        'SEGLB_POLICY_INVALID_ENTRY',
        `cannot insert IPv${c.family} prefix ${c.text} into an IPv${this.family} table`,
      );
    }
    if (c.family === 4) this.insertV4(c.v4, c.prefixLength, value);
    else this.insertV6(c.v6, c.prefixLength, value);
  }

  /**
   * Adds an IPv4 prefix.
   * @param addr - network address, unsigned (or signed) 32-bit integer, host bits zero
   * @param prefixLength - 0..32
   * @param value - integer 0..2^31-1
   * @throws NetError SEGLB_NET_NONCANONICAL_CIDR when host bits are set
   * @throws PolicyError SEGLB_POLICY_INVALID_ENTRY (wrong family, bad length or value) or
   *   SEGLB_POLICY_TOO_LARGE (beyond maxPrefixes)
   */
  insertV4(addr: number, prefixLength: number, value: number): void {
    if (this.family !== 4) {
      throw new PolicyError('SEGLB_POLICY_INVALID_ENTRY', 'insertV4 called on an IPv6 table');
    }
    this.#checkLength(prefixLength, 32);
    checkValue(value, 'a radix value');
    if (!Number.isInteger(addr) || addr < -0x80000000 || addr > 0xffffffff) {
      throw new PolicyError('SEGLB_POLICY_INVALID_ENTRY', `not a 32-bit address: ${String(addr)}`);
    }
    const a = addr >>> 0;
    if ((a & ~wordMask(prefixLength, 0)) !== 0) {
      throw new NetError(
        'SEGLB_NET_NONCANONICAL_CIDR',
        `prefix with address 0x${a.toString(16)} has host bits set beyond /${prefixLength}`,
      );
    }
    const i = this.#grow();
    this.#keys[i] = a;
    this.#lens[i] = prefixLength;
    this.#values[i] = value;
  }

  /**
   * Adds an IPv6 prefix.
   * @param words - 4 big-endian 32-bit words of the network address, host bits zero
   * @param prefixLength - 0..128
   * @param value - integer 0..2^31-1
   * @throws as insertV4
   */
  insertV6(words: ArrayLike<number>, prefixLength: number, value: number): void {
    if (this.family !== 6) {
      throw new PolicyError('SEGLB_POLICY_INVALID_ENTRY', 'insertV6 called on an IPv4 table');
    }
    this.#checkLength(prefixLength, 128);
    checkValue(value, 'a radix value');
    if (words.length < 4)
      throw new PolicyError('SEGLB_POLICY_INVALID_ENTRY', 'an IPv6 address needs 4 words');
    for (let w = 0; w < 4; w++) {
      if (((words[w]! >>> 0) & ~wordMask(prefixLength, w)) !== 0) {
        throw new NetError(
          'SEGLB_NET_NONCANONICAL_CIDR',
          `IPv6 prefix has host bits set beyond /${prefixLength}`,
        );
      }
    }
    const i = this.#grow();
    const k = i * 4;
    this.#keys[k] = words[0]!;
    this.#keys[k + 1] = words[1]!;
    this.#keys[k + 2] = words[2]!;
    this.#keys[k + 3] = words[3]!;
    this.#lens[i] = prefixLength;
    this.#values[i] = value;
  }

  #checkLength(prefixLength: number, max: number): void {
    if (!Number.isInteger(prefixLength) || prefixLength < 0 || prefixLength > max) {
      throw new PolicyError(
        'SEGLB_POLICY_INVALID_ENTRY',
        `prefix length must be an integer 0..${max}, got ${String(prefixLength)}`,
      );
    }
  }

  #grow(): number {
    const i = this.#count;
    if (i >= this.#maxPrefixes) {
      throw new PolicyError(
        'SEGLB_POLICY_TOO_LARGE',
        `more than ${this.#maxPrefixes} prefixes in one IPv${this.family} table`,
      );
    }
    if (i === this.#lens.length) {
      const cap = Math.min(i * 2, this.#maxPrefixes);
      const keys = new Uint32Array(cap * this.#words);
      keys.set(this.#keys);
      this.#keys = keys;
      const lens = new Uint8Array(cap);
      lens.set(this.#lens);
      this.#lens = lens;
      const values = new Int32Array(cap);
      values.set(this.#values);
      this.#values = values;
    }
    this.#count = i + 1;
    return i;
  }

  /**
   * Builds the immutable table: sorts the prefixes, merges duplicates, computes final values
   * (inherit, parents first), drops prefixes whose final value equals their parent's (they
   * change no answer), and lays out the compressed trie.
   * Cost: O(n) sorting (LSD radix) and settling, layout O(n + 256 · nodes) at worst; 0.25–0.6 s per million
   * prefixes on the 2-vCPU test machine (docs/matcher.md).
   * The builder is left unchanged.
   * @throws PolicyError SEGLB_POLICY_INVALID_ENTRY when merge/inherit return a value outside
   *   0..2^31-1; SEGLB_POLICY_TOO_LARGE when the table would exceed `opts.maxBytes`
   */
  build(opts: RadixBuildOptions): RadixTable {
    const kept = this.#settle(this.#sortedRecords(), opts);
    const rootBits = opts.rootBits ?? (kept.count >= WIDE_ROOT_MIN_PREFIXES ? 16 : 8);
    if (rootBits !== 8 && rootBits !== 16) {
      throw new PolicyError(
        'SEGLB_POLICY_INVALID_ENTRY',
        `rootBits must be 8 or 16, got ${String(rootBits)}`,
      );
    }
    const maxBytes = opts.maxBytes ?? DEFAULT_RADIX_MAX_BYTES;
    const rootBytes = 4 << rootBits;
    if (maxBytes < rootBytes + 64) {
      throw new PolicyError(
        'SEGLB_POLICY_TOO_LARGE',
        `maxBytes ${maxBytes} is below the ${rootBytes}-byte root`,
      );
    }
    const layout = new TrieLayout(this.family, kept, maxBytes - rootBytes);
    const root = layout.buildRoot(rootBits);
    return new RadixTable(
      this.family,
      rootBits,
      root,
      layout.finish(),
      kept.distinct,
      layout.nodeCount,
      layout.recordCount,
    );
  }

  /**
   * Stable LSD radix sort by (address, prefix length), 16 bits per pass, moving whole records
   * (key words, length, value) so that every pass, and #settle after it, reads memory in order.
   * The result lists every prefix after all prefixes that cover it (pre-order), duplicates in
   * insertion order. Returns records of `words + 2` int32s: key words, length, value.
   */
  #sortedRecords(): Int32Array {
    const n = this.#count;
    const words = this.#words;
    const stride = words + 2;
    let src = new Int32Array(n * stride);
    let dst = new Int32Array(n * stride);
    const keys = this.#keys;
    const lens = this.#lens;
    const values = this.#values;
    for (let i = 0, o = 0; i < n; i++, o += stride) {
      for (let w = 0; w < words; w++) src[o + w] = keys[i * words + w]!;
      src[o + words] = lens[i]!;
      src[o + words + 1] = values[i]!;
    }
    const count = new Uint32Array(65537);
    // Least significant key first: the prefix length, then the address from its last 16 bits up.
    const passes: [field: number, shift: number][] = [[words, 0]];
    for (let w = words - 1; w >= 0; w--) passes.push([w, 0], [w, 16]);
    for (const [field, shift] of passes) {
      count.fill(0);
      for (let o = field; o < n * stride; o += stride) count[((src[o]! >>> shift) & 0xffff) + 1]!++;
      let skip = false;
      for (let d = 1; d <= 65536; d++) {
        if (count[d] === n) skip = true; // one digit for all: this pass would not reorder
        count[d]! += count[d - 1]!;
      }
      if (skip) continue;
      for (let o = 0; o < n * stride; o += stride) {
        const to = count[(src[o + field]! >>> shift) & 0xffff]!++ * stride;
        for (let k = 0; k < stride; k++) dst[to + k] = src[o + k]!;
      }
      [src, dst] = [dst, src];
    }
    return src;
  }

  /** Merges duplicates, applies inherit parents-first and drops prefixes that change no answer. */
  #settle(records: Int32Array, opts: RadixBuildOptions): SettledPrefixes {
    const n = this.#count;
    const words = this.#words;
    const stride = words + 2;
    const outKeys = new Uint32Array(n * words);
    const outLens = new Uint8Array(n);
    const outValues = new Int32Array(n);
    // Stack of covering prefixes: record offset, length, final value (nesting depth <= 129).
    const stackAt = new Int32Array(130);
    const stackLen = new Int32Array(130);
    const stackFinal = new Int32Array(130);
    let depth = 0;
    let kept = 0;
    let distinct = 0;
    let i = 0;
    while (i < n) {
      const at = i * stride;
      const len = records[at + words]!;
      let own = records[at + words + 1]!;
      let next = i + 1;
      while (
        next < n &&
        records[next * stride + words] === len &&
        sameKey(records, words, at, next * stride)
      ) {
        own = checkValue(opts.merge(own, records[next * stride + words + 1]!), 'merge() result');
        next++;
      }
      i = next;
      distinct++;
      while (depth > 0 && !covers(records, words, stackAt[depth - 1]!, stackLen[depth - 1]!, at)) depth--;
      let final = own;
      let redundant = false;
      if (depth > 0) {
        const parent = stackFinal[depth - 1]!;
        final = checkValue(opts.inherit(parent, own), 'inherit() result');
        redundant = final === parent;
      }
      stackAt[depth] = at;
      stackLen[depth] = len;
      stackFinal[depth] = final;
      depth++;
      if (redundant) continue;
      for (let w = 0; w < words; w++) outKeys[kept * words + w] = records[at + w]!;
      outLens[kept] = len;
      outValues[kept] = final;
      kept++;
    }
    return { keys: outKeys, lens: outLens, values: outValues, count: kept, distinct };
  }
}

/** True when the records at offsets a and b have the same key words. */
function sameKey(records: Int32Array, words: number, a: number, b: number): boolean {
  for (let w = 0; w < words; w++) if (records[a + w] !== records[b + w]) return false;
  return true;
}

/** True when the prefix (record at p, len) covers the address of the record at q. */
function covers(records: Int32Array, words: number, p: number, len: number, q: number): boolean {
  for (let w = 0; w < words; w++) {
    const m = wordMask(len, w);
    if (m === 0) return true;
    if (((records[q + w]! ^ records[p + w]!) & m) !== 0) return false;
  }
  return true;
}

/** Prefixes in pre-order with final values, redundant ones removed. */
interface SettledPrefixes {
  keys: Uint32Array;
  lens: Uint8Array;
  values: Int32Array;
  /** Prefixes kept. */
  count: number;
  /** Distinct prefixes before redundant ones were dropped. */
  distinct: number;
}

/**
 * Lays settled prefixes out as the compressed trie (see the file header). Used once per build.
 * Nodes are laid out level by level (breadth first), so the upper levels, which every lookup
 * crosses, sit together in a few pages and stay cached; a skip record is followed directly by
 * the subtree it leads to, since both are always read together.
 */
class TrieLayout {
  readonly #words: number;
  readonly #p: SettledPrefixes;
  readonly #maxWords: number;
  readonly #scratch = newScratch(256);
  #nodes: Int32Array;
  #top = 2; // offsets are even and > 0 (0 would read as a leaf)
  // FIFO of subtrees still to lay out: (p, lo, hi, fallback, target) per item; target >= 0 is the
  // nodes index that receives the subtree's entry, target < 0 the root slot ~target.
  #queue = new Int32Array(5 * 1024);
  #head = 0;
  #tail = 0;
  nodeCount = 0;
  recordCount = 0;

  constructor(family: 4 | 6, prefixes: SettledPrefixes, maxBytes: number) {
    this.#words = family === 4 ? 1 : 4;
    this.#p = prefixes;
    // Offsets are int32 entries: the nodes array can never pass 2^31 words (8 GiB).
    this.#maxWords = Math.min(Math.floor(maxBytes / 4), 2 ** 31 - 2);
    this.#nodes = new Int32Array(Math.min(Math.max(64, prefixes.count * 4), this.#maxWords));
  }

  /** The `stride`-bit slot of prefix i's address at bit position p (strides never cross words). */
  #slot(i: number, p: number, stride: number): number {
    const word = this.#p.keys[i * this.#words + (p >>> 5)]!;
    return (word >>> (32 - (p & 31) - stride)) & ((1 << stride) - 1);
  }

  /**
   * Fills `s.slots` for the node at bit position p covering prefixes [lo, hi) and groups the
   * prefixes longer than the node into per-slot child ranges. Returns the number of groups.
   */
  #scan(s: NodeScratch, p: number, stride: number, lo: number, hi: number, fallback: number): number {
    const lens = this.#p.lens;
    const values = this.#p.values;
    const limit = p + stride;
    s.slots.fill(fallback);
    s.group.fill(0);
    s.dirty.fill(0);
    let groups = 0;
    let i = lo;
    while (i < hi) {
      const len = lens[i]!;
      const slot = this.#slot(i, p, stride);
      if (len <= limit) {
        // Pre-order: covering prefixes come first, so longer ones overwrite them.
        const end = slot + (1 << (limit - len));
        s.slots.fill(values[i]!, slot, end);
        s.dirty.fill(1, slot >>> 5, ((end - 1) >>> 5) + 1);
        i++;
        continue;
      }
      let j = i + 1;
      while (j < hi && lens[j]! > limit && this.#slot(j, p, stride) === slot) j++;
      s.lo[groups] = i;
      s.hi[groups] = j;
      s.slotOf[groups] = slot;
      groups++;
      s.group[slot] = groups;
      s.dirty[slot >>> 5] = 1;
      i = j;
    }
    return groups;
  }

  /** Builds the direct-indexed root of 2^rootBits entries, then every level below it. */
  buildRoot(rootBits: number): Int32Array {
    const size = 1 << rootBits;
    const s = newScratch(size);
    const groups = this.#scan(s, 0, rootBits, 0, this.#p.count, -1);
    const root = new Int32Array(size);
    for (let slot = 0; slot < size; slot++) root[slot] = ~s.slots[slot]!;
    for (let g = 0; g < groups; g++) {
      const slot = s.slotOf[g]!;
      this.#enqueue(rootBits, s.lo[g]!, s.hi[g]!, s.slots[slot]!, ~slot);
    }
    while (this.#head < this.#tail) {
      const h = this.#head;
      this.#head = h + 5;
      // #child may enqueue (and so move the queue): read the item first.
      const p = this.#queue[h]!;
      const lo = this.#queue[h + 1]!;
      const hi = this.#queue[h + 2]!;
      const fallback = this.#queue[h + 3]!;
      const target = this.#queue[h + 4]!;
      const entry = this.#child(p, lo, hi, fallback);
      if (target < 0) root[~target] = entry;
      else this.#nodes[target] = entry;
    }
    return root;
  }

  #enqueue(p: number, lo: number, hi: number, fallback: number, target: number): void {
    let q = this.#queue;
    if (this.#tail + 5 > q.length) {
      // Drop what was consumed; grow when more than half is still pending.
      const pending = this.#tail - this.#head;
      const next = pending * 2 + 5 > q.length ? new Int32Array(q.length * 2) : q;
      next.set(q.subarray(this.#head, this.#tail));
      this.#queue = q = next;
      this.#head = 0;
      this.#tail = pending;
    }
    const t = this.#tail;
    q[t] = p;
    q[t + 1] = lo;
    q[t + 2] = hi;
    q[t + 3] = fallback;
    q[t + 4] = target;
    this.#tail = t + 5;
  }

  /**
   * Entry for the subtree at bit position p holding prefixes [lo, hi) under `fallback`:
   * a leaf record for a single prefix, a skip record when every prefix shares bits beyond p + 8
   * (path compression, in whole 8-bit steps), else a node.
   */
  #child(p: number, lo: number, hi: number, fallback: number): number {
    const lens = this.#p.lens;
    if (hi - lo === 1) return this.#record(p, lo, lens[lo]!, ~this.#p.values[lo]!, fallback);
    let common = this.#commonBits(lo, hi - 1);
    for (let i = lo; i < hi; i++) if (lens[i]! < common) common = lens[i]!;
    const skipTo = common & ~7;
    if (skipTo <= p) return this.#node(p, lo, hi, fallback);
    // Every prefix lies under the first skipTo bits of prefix lo. One of them may be exactly that
    // long (the shortest, so sorted first): it becomes the fallback of the inner subtree.
    let inner = fallback;
    let start = lo;
    if (lens[lo] === skipTo) {
      inner = this.#p.values[lo]!;
      start = lo + 1;
    }
    const record = this.#record(p, lo, skipTo, 0, fallback);
    const entry = this.#child(skipTo, start, hi, inner);
    this.#nodes[record + (this.#words === 1 ? 1 : 0)] = entry; // the record's `next` word
    return record;
  }

  /** Number of leading address bits prefixes a and b share. */
  #commonBits(a: number, b: number): number {
    const words = this.#words;
    const keys = this.#p.keys;
    for (let w = 0; w < words; w++) {
      const x = keys[a * words + w]! ^ keys[b * words + w]!;
      if (x !== 0) return 32 * w + Math.clz32(x);
    }
    return 32 * words;
  }

  /**
   * A record (odd entry) at bit position p: "if the address has the first `len` bits of prefix i,
   * continue with `entry` (a leaf: the answer) at bit len, else the answer is `fallback`".
   * IPv6 records keep only the key words from p on: the path already matched the bits before p.
   */
  #record(p: number, i: number, len: number, entry: number, fallback: number): number {
    const words = this.#words;
    const keys = this.#p.keys;
    let at: number;
    if (words === 1) {
      at = this.#alloc(RECORD_WORDS_V4);
      const n = this.#nodes;
      const mask = wordMask(len, 0);
      n[at] = keys[i]! & mask;
      n[at + 1] = mask;
      n[at + 2] = entry;
      n[at + 3] = fallback;
    } else {
      const first = p >>> 5;
      const last = (len - 1) >>> 5;
      at = this.#alloc(RECORD_HEADER_V6 + last - first + 1);
      const n = this.#nodes;
      n[at] = len;
      n[at + 1] = entry;
      n[at + 2] = fallback;
      for (let w = first; w <= last; w++)
        n[at + RECORD_HEADER_V6 + w - first] = keys[i * 4 + w]! & wordMask(len, w);
    }
    this.recordCount++;
    return at + 1;
  }

  /** A 256-slot node; returns its even entry, or a leaf entry when the subtree is uniform. */
  #node(p: number, lo: number, hi: number, fallback: number): number {
    const s = this.#scratch;
    const groups = this.#scan(s, p, 8, lo, hi, fallback);
    const slots = s.slots;
    const group = s.group;
    const entries = s.entries;
    // Entries in slot order: every child slot, and every leaf slot that starts a new run. A word
    // no prefix touched holds the fallback in all 32 slots: at most one entry, found in O(1).
    let e = 0;
    let previous = 0;
    let afterChild = true;
    for (let k = 0; k < 8; k++) {
      s.offs[k] = HEADER_WORDS + e - 1;
      if (s.dirty[k] === 0) {
        if (afterChild || previous !== fallback) {
          s.vecs[k] = 1;
          entries[e++] = ~fallback;
          previous = fallback;
          afterChild = false;
        } else {
          s.vecs[k] = 0;
        }
        continue;
      }
      let vec = 0;
      for (let bit = 0, slot = k << 5; bit < 32; bit++, slot++) {
        const g = group[slot]!;
        if (g !== 0) {
          vec |= 1 << bit;
          s.entryOf[g - 1] = e;
          entries[e++] = 0;
          afterChild = true;
        } else if (afterChild || slots[slot] !== previous) {
          vec |= 1 << bit;
          previous = slots[slot]!;
          entries[e++] = ~previous;
          afterChild = false;
        }
      }
      s.vecs[k] = vec;
    }
    if (groups === 0 && e === 1) return entries[0]!; // uniform: no node needed
    const base = this.#alloc(HEADER_WORDS + e);
    const n = this.#nodes;
    for (let k = 0; k < 8; k++) {
      n[base + 2 * k] = s.vecs[k]!;
      n[base + 2 * k + 1] = s.offs[k]!;
    }
    n.set(entries.subarray(0, e), base + HEADER_WORDS);
    this.nodeCount++;
    // Children with several prefixes wait for their level (breadth-first layout). A child with a
    // single prefix is a small record laid out right behind its node: same pages, so a lookup
    // that has just read the node finds the record's page mapped and likely cached.
    for (let g = 0; g < groups; g++) {
      const glo = s.lo[g]!;
      const ghi = s.hi[g]!;
      const target = base + HEADER_WORDS + s.entryOf[g]!;
      const under = slots[s.slotOf[g]!]!;
      if (ghi - glo === 1) {
        // Allocate first: #record may replace this.#nodes, which the assignment target reads.
        const entry = this.#record(p + 8, glo, this.#p.lens[glo]!, ~this.#p.values[glo]!, under);
        this.#nodes[target] = entry;
      } else {
        this.#enqueue(p + 8, glo, ghi, under, target);
      }
    }
    return base;
  }

  /** Reserves `size` words at an even offset, growing the array up to maxWords. */
  #alloc(size: number): number {
    const at = this.#top;
    const end = at + size + (size & 1);
    if (end > this.#nodes.length) {
      if (end > this.#maxWords) {
        throw new PolicyError(
          'SEGLB_POLICY_TOO_LARGE',
          `the radix table needs more than its ${this.#maxWords * 4}-byte node budget (RadixBuildOptions.maxBytes)`,
        );
      }
      const grown = new Int32Array(Math.min(Math.max(end, this.#nodes.length * 2), this.#maxWords));
      grown.set(this.#nodes);
      this.#nodes = grown;
    }
    this.#top = end;
    return at;
  }

  /** The nodes array trimmed to its used length. */
  finish(): Int32Array {
    return this.#nodes.slice(0, this.#top);
  }
}

/**
 * An immutable longest-prefix-match table of one family. Made by RadixBuilder.build(); lookups
 * allocate nothing and cost one root read plus at most one node per remaining 8 bits of the
 * longest stored prefix (IPv4: 2 with a 16-bit root; IPv6 /48: 4).
 */
export class RadixTable {
  /** 4 or 6: the family this table answers; the other family's lookup returns -1. */
  readonly family: 4 | 6;
  /** Distinct prefixes inserted (duplicates merged). */
  readonly prefixCount: number;
  readonly #root: Int32Array;
  readonly #nodes: Int32Array;
  readonly #key = new Int32Array(4);
  readonly #rootBits: number;
  readonly #nodeCount: number;
  readonly #recordCount: number;

  /** Internal: use RadixBuilder.build(). */
  constructor(
    family: 4 | 6,
    rootBits: number,
    root: Int32Array,
    nodes: Int32Array,
    prefixCount: number,
    nodeCount: number,
    recordCount: number,
  ) {
    this.family = family;
    this.prefixCount = prefixCount;
    this.#root = root;
    this.#nodes = nodes;
    this.#rootBits = rootBits;
    this.#nodeCount = nodeCount;
    this.#recordCount = recordCount;
    Object.freeze(this);
  }

  /**
   * Longest-prefix match of an IPv4 address.
   * @param addr - the address as an unsigned (or signed) 32-bit integer, e.g. from parseIPv4
   * @returns the final value of the longest stored prefix covering `addr`, or -1 when none does
   *   (always -1 on an IPv6 table)
   */
  lookupV4(addr: number): number {
    if (this.family !== 4) return -1;
    const nodes = this.#nodes;
    let p = this.#rootBits; // address bits consumed
    let e = this.#root[addr >>> (32 - p)]!;
    while (e > 0) {
      if ((e & 1) !== 0) {
        // Record [key, mask, entry, fallback] at e - 1.
        const mask = nodes[e]!;
        if ((addr & mask) !== nodes[e - 1]) return nodes[e + 2]!;
        p = Math.clz32(~mask);
        e = nodes[e + 1]!;
        continue;
      }
      const b = (addr >>> (24 - p)) & 255;
      const o = e + ((b >>> 5) << 1);
      // Popcount of vec bits 0..(b & 31): shift the higher bits out, then count (SWAR).
      let x = nodes[o]! << (31 - (b & 31));
      x = (x - ((x >>> 1) & 0x55555555)) | 0;
      x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
      x = (x + (x >>> 4)) & 0x0f0f0f0f;
      e = nodes[e + nodes[o + 1]! + (Math.imul(x, 0x01010101) >>> 24)]!;
      p += 8;
    }
    return ~e;
  }

  /**
   * Longest-prefix match of an IPv6 address given as 4 big-endian 32-bit words (from parseIPv6).
   * @returns the final value of the longest stored prefix covering the address, or -1 when none
   *   does (always -1 on an IPv4 table)
   */
  lookupV6(w0: number, w1: number, w2: number, w3: number): number {
    if (this.family !== 6) return -1;
    const nodes = this.#nodes;
    // The words go to a preallocated scratch so each step indexes them without branching.
    const key = this.#key;
    key[0] = w0;
    key[1] = w1;
    key[2] = w2;
    key[3] = w3;
    let p = this.#rootBits; // address bits consumed
    let e = this.#root[w0 >>> (32 - p)]!;
    while (e > 0) {
      if ((e & 1) !== 0) {
        // Record [len, next, fallback, key words p>>5 .. (len-1)>>5] at e - 1; the bits before p
        // already matched on the way down, so whole words compare except the last one.
        const r = e - 1;
        const len = nodes[r]!;
        const last = (len - 1) >>> 5;
        let k = r + 3;
        for (let w = p >>> 5; w < last; w++, k++) if (key[w] !== nodes[k]) return nodes[r + 2]!;
        if (((key[last]! ^ nodes[k]!) & (-1 << (31 - ((len - 1) & 31)))) !== 0) return nodes[r + 2]!;
        p = len;
        e = nodes[r + 1]!;
        continue;
      }
      const b = (key[p >>> 5]! >>> (24 - (p & 31))) & 255;
      const o = e + ((b >>> 5) << 1);
      let x = nodes[o]! << (31 - (b & 31));
      x = (x - ((x >>> 1) & 0x55555555)) | 0;
      x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
      x = (x + (x >>> 4)) & 0x0f0f0f0f;
      e = nodes[e + nodes[o + 1]! + (Math.imul(x, 0x01010101) >>> 24)]!;
      p += 8;
    }
    return ~e;
  }

  /** True when some stored prefix covers the IPv4 address (lookupV4(addr) !== -1). */
  containsV4(addr: number): boolean {
    return this.lookupV4(addr) !== -1;
  }

  /** True when some stored prefix covers the IPv6 address (lookupV6(...) !== -1). */
  containsV6(w0: number, w1: number, w2: number, w3: number): boolean {
    return this.lookupV6(w0, w1, w2, w3) !== -1;
  }

  /**
   * Longest-prefix match of a parsed address of either family (convenience for tools and tests;
   * the hot path calls lookupV4/lookupV6 directly).
   * @returns the value, or -1 when no prefix covers it or the family differs
   */
  lookup(addr: Address): number {
    if (addr.family === 4) return this.lookupV4(addr.v4);
    const v = addr.v6;
    return this.lookupV6(v[0]!, v[1]!, v[2]!, v[3]!);
  }

  /** Size figures: `{ prefixes, nodes, records, bytes, rootBits }` (see RadixStats). */
  stats(): RadixStats {
    return {
      prefixes: this.prefixCount,
      nodes: this.#nodeCount,
      records: this.#recordCount,
      bytes: this.#root.byteLength + this.#nodes.byteLength,
      rootBits: this.#rootBits,
    };
  }
}
