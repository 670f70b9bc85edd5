// A last-writer-wins map: one register per key, the highest hybrid-clock stamp wins, removal is a
// tombstone, entries expire. Merging is commutative, associative and idempotent, so replicas that
// saw the same writes in any order hold the same map. Also computes the bucketed digest that
// anti-entropy compares.

import { compareStamps, type Stamp } from './hlc.ts';

/** Number of digest buckets (a power of two); part of the wire protocol (version 1). */
export const DIGEST_BUCKETS = 1024;

/** One register: the latest write of a key. */
export interface Register<V> {
  readonly key: string;
  readonly stamp: Stamp;
  /**
   * Live value: when it stops being visible (ms since the epoch; Infinity for never).
   * Tombstone: when the removal was made.
   */
  readonly expiresAt: number;
  /** The value; null for a tombstone (a removal). */
  readonly value: V | null;
  /** Digest bucket of the key. */
  readonly bucket: number;
  /** 64-bit fingerprint of (key, stamp), as two 32-bit halves. */
  readonly fpA: number;
  readonly fpB: number;
}

/** What merging one register did. */
export type MergeOutcome = 'applied' | 'stale' | 'full';

/** A keyspace's digest: per-bucket fingerprints and the root (XOR of all, and the count). */
export interface Digest {
  readonly rootA: number;
  readonly rootB: number;
  readonly count: number;
  /** [a0, b0, a1, b1, ...] for DIGEST_BUCKETS buckets; 0,0 for an empty bucket. */
  readonly buckets: Uint32Array;
}

/** FNV-1a over the UTF-16 code units of a string, from a given offset basis. */
function fnv1a(text: string, basis: number): number {
  let h = basis;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** MurmurHash3's 32-bit finaliser: spreads every input bit over the output. */
function fmix32(x: number): number {
  let h = x;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

const TWO_32 = 0x1_0000_0000;

/**
 * 32-bit fingerprint of (key hash, stamp): the stamp's numbers folded into the key's hash one at a
 * time. Part of the wire protocol (digests compare them), version 1.
 */
function fingerprint(keyHash: number, stamp: Stamp, nodeHash: number): number {
  let h = fmix32(keyHash ^ (stamp.wall % TWO_32));
  h = fmix32(h ^ Math.floor(stamp.wall / TWO_32));
  h = fmix32(h ^ stamp.counter);
  return fmix32(h ^ nodeHash);
}

const BASIS_A = 0x811c9dc5;
const BASIS_B = 0x050c5d1f;

/**
 * Builds a register, computing its bucket and fingerprint.
 * @param expiresAt - see Register.expiresAt
 */
export function makeRegister<V>(key: string, stamp: Stamp, expiresAt: number, value: V | null): Register<V> {
  const keyA = fnv1a(key, BASIS_A);
  const keyB = fnv1a(key, BASIS_B);
  return {
    key,
    stamp,
    expiresAt,
    value,
    bucket: keyA & (DIGEST_BUCKETS - 1),
    fpA: fingerprint(keyA, stamp, fnv1a(stamp.node, BASIS_A)),
    fpB: fingerprint(keyB, stamp, fnv1a(stamp.node, BASIS_B)),
  };
}

/** True when the register holds a value that has not expired at `now`. */
export function isVisible(reg: Register<unknown> | undefined, now: number): boolean {
  return reg !== undefined && reg.value !== null && reg.expiresAt > now;
}

/**
 * The map. Expired values and tombstones are kept `graceMs` longer (Cassandra's gc_grace idea): a
 * replica cut off for less than that cannot bring back a value that was removed or overwritten,
 * because the newer register is still there to win the comparison.
 */
export class LwwMap<V> {
  readonly name: string;
  readonly #registers = new Map<string, Register<V>>();
  readonly #graceMs: number;
  readonly #maxEntries: number;

  /**
   * @param name - keyspace name (for reports)
   * @param graceMs - how long tombstones and expired values are kept to win over older copies
   * @param maxEntries - most registers held (live, expired and tombstones)
   */
  constructor(name: string, graceMs: number, maxEntries: number) {
    this.name = name;
    this.#graceMs = graceMs;
    this.#maxEntries = maxEntries;
  }

  /** Registers held, tombstones and expired values included. */
  get size(): number {
    return this.#registers.size;
  }

  /** The register of a key (possibly a tombstone or expired). */
  register(key: string): Register<V> | undefined {
    return this.#registers.get(key);
  }

  /** The visible value of a key at `now`, if any. */
  get(key: string, now: number): V | undefined {
    const reg = this.#registers.get(key);
    return reg !== undefined && reg.value !== null && reg.expiresAt > now ? reg.value : undefined;
  }

  /** Every register (for digests, pushes and listing). */
  registers(): IterableIterator<Register<V>> {
    return this.#registers.values();
  }

  /** Whether the map could take a register for this key without exceeding maxEntries. */
  hasRoom(key: string): boolean {
    return this.#registers.size < this.#maxEntries || this.#registers.has(key);
  }

  /**
   * Merges one register: it replaces the current one only if its stamp is greater. A register whose
   * retention already ended is not stored, but still removes an older one it supersedes.
   * @param now - local physical time in ms
   * @param cur - the key's current register, when the caller already looked it up
   */
  merge(
    reg: Register<V>,
    now: number,
    cur: Register<V> | undefined = this.#registers.get(reg.key),
  ): MergeOutcome {
    if (cur !== undefined && compareStamps(reg.stamp, cur.stamp) <= 0) return 'stale';
    if (reg.expiresAt + this.#graceMs <= now) {
      if (cur !== undefined) this.#registers.delete(reg.key);
      return 'applied';
    }
    if (cur === undefined && this.#registers.size >= this.#maxEntries) return 'full';
    this.#registers.set(reg.key, reg);
    return 'applied';
  }

  /** Forgets registers whose retention ended. @returns how many were dropped */
  sweep(now: number): number {
    let dropped = 0;
    for (const [key, reg] of this.#registers) {
      if (reg.expiresAt + this.#graceMs <= now) {
        this.#registers.delete(key);
        dropped++;
      }
    }
    return dropped;
  }

  /**
   * The digest of the registers stamped before `before` (ms). Anti-entropy rounds leave out the
   * most recent writes, which are still in flight as deltas, so two replicas compare equal as soon
   * as they agree on everything older.
   * @param before - only registers with stamp.wall < before count; Infinity for all
   */
  digest(before: number): Digest {
    const buckets = new Uint32Array(DIGEST_BUCKETS * 2);
    let rootA = 0;
    let rootB = 0;
    let count = 0;
    for (const reg of this.#registers.values()) {
      if (reg.stamp.wall >= before) continue;
      const i = reg.bucket * 2;
      buckets[i] = (buckets[i] as number) ^ reg.fpA;
      buckets[i + 1] = (buckets[i + 1] as number) ^ reg.fpB;
      rootA ^= reg.fpA;
      rootB ^= reg.fpB;
      count++;
    }
    return { rootA: rootA >>> 0, rootB: rootB >>> 0, count, buckets };
  }

  /** Registers whose key falls into one of the marked buckets (index -> true). */
  registersInBuckets(marked: Uint8Array): Register<V>[] {
    const out: Register<V>[] = [];
    for (const reg of this.#registers.values()) if (marked[reg.bucket] === 1) out.push(reg);
    return out;
  }
}

/**
 * Marks the buckets whose fingerprints differ between a local digest and a remote one.
 * @param remote - the remote digest's buckets in sparse form: [index, a, b, index, a, b, ...]
 * @returns per bucket 1 when it differs, and how many differ
 */
export function differingBuckets(
  local: Digest,
  remote: readonly number[],
): { marked: Uint8Array; count: number } {
  const theirs = new Uint32Array(DIGEST_BUCKETS * 2);
  for (let i = 0; i + 2 < remote.length; i += 3) {
    const idx = remote[i] as number;
    theirs[idx * 2] = remote[i + 1] as number;
    theirs[idx * 2 + 1] = remote[i + 2] as number;
  }
  const marked = new Uint8Array(DIGEST_BUCKETS);
  let count = 0;
  for (let b = 0; b < DIGEST_BUCKETS; b++) {
    if (local.buckets[b * 2] !== theirs[b * 2] || local.buckets[b * 2 + 1] !== theirs[b * 2 + 1]) {
      marked[b] = 1;
      count++;
    }
  }
  return { marked, count };
}

/** A digest's non-empty buckets in sparse form [index, a, b, ...], for the wire. */
export function sparseBuckets(digest: Digest): number[] {
  const out: number[] = [];
  for (let b = 0; b < DIGEST_BUCKETS; b++) {
    const a = digest.buckets[b * 2] as number;
    const c = digest.buckets[b * 2 + 1] as number;
    if (a !== 0 || c !== 0) out.push(b, a, c);
  }
  return out;
}
