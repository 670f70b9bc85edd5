// The global quarantine set: addresses and prefixes (with expiry) refused on every VIP before any
// segment policy is consulted. Copy-on-write: each change compiles a new SourceSet and swaps it in
// one assignment, so accept-time lookups never see a half-built table.

import { type Cidr, parseCidr } from '../net/cidr.ts';
import { SourceSet, unmapCidr } from './source-set.ts';

/** One quarantine entry. */
export interface QuarantineEntry {
  /** Canonical CIDR text (a single address is /32 or /128; IPv4-mapped IPv6 is written as IPv4). */
  readonly cidr: string;
  /** Absolute expiry, ms since the epoch; Infinity for no expiry. */
  readonly expiresAt: number;
  /** Why, for operators (never a secret). */
  readonly reason: string;
  /** When it was added, ms since the epoch. */
  readonly addedAt: number;
}

/**
 * The quarantine set. Lookups are one radix walk plus an expiry check; an expired entry stops
 * matching at once and is removed by the next change or `sweep()`.
 */
export class Quarantine {
  #entries: readonly QuarantineEntry[] = [];
  #cidrs: readonly Cidr[] = [];
  #set = new SourceSet([]);
  /** Incremented on every change, so listeners can tell a new quarantine from an old one. */
  version = 0;
  readonly #now: () => number;

  /** @param now - clock in ms (tests pass a fake one) */
  constructor(now: () => number = Date.now) {
    this.#now = now;
  }

  /**
   * Adds (or replaces) an entry.
   * @param cidr - CIDR or address text, canonical form
   * @param ttlMs - lifetime in ms (> 0); Infinity for none
   * @param reason - free text
   * @throws NetError SEGLB_NET_INVALID_CIDR / SEGLB_NET_NONCANONICAL_CIDR for a bad CIDR
   * @throws RangeError when ttlMs is not a positive number (NaN would make an entry that never matches)
   * @returns the entry added
   */
  add(cidr: string, ttlMs: number, reason: string): QuarantineEntry {
    if (!(ttlMs > 0)) throw new RangeError(`ttlMs must be a positive number of milliseconds, got ${ttlMs}`);
    const parsed = unmapCidr(parseCidr(cidr));
    const now = this.#now();
    const entry: QuarantineEntry = Object.freeze({
      cidr: parsed.text,
      expiresAt: now + ttlMs,
      reason,
      addedAt: now,
    });
    this.#rebuild([...this.#live(now).filter((e) => e.cidr !== parsed.text), entry]);
    return entry;
  }

  /**
   * Applies many changes with one rebuild (replicated state from cluster peers: a catch-up of 100k
   * entries must not rebuild 100k times). Invalid CIDRs are skipped and counted.
   * @param upserted - entries with absolute expiry (ms since the epoch; Infinity for none)
   * @param removed - CIDRs to remove
   * @returns how many entries were skipped as invalid
   */
  applyBatch(
    upserted: readonly { cidr: string; expiresAt: number; reason: string; addedAt?: number }[],
    removed: readonly string[],
  ): number {
    const now = this.#now();
    const byCidr = new Map<string, QuarantineEntry>();
    for (const e of this.#live(now)) byCidr.set(e.cidr, e);
    let skipped = 0;
    for (const cidr of removed) {
      try {
        byCidr.delete(unmapCidr(parseCidr(cidr)).text);
      } catch {
        skipped++;
      }
    }
    for (const u of upserted) {
      try {
        const text = unmapCidr(parseCidr(u.cidr)).text;
        if (!(u.expiresAt > now)) {
          byCidr.delete(text);
          continue;
        }
        byCidr.set(
          text,
          Object.freeze({ cidr: text, expiresAt: u.expiresAt, reason: u.reason, addedAt: u.addedAt ?? now }),
        );
      } catch {
        skipped++;
      }
    }
    this.#rebuild([...byCidr.values()]);
    return skipped;
  }

  /**
   * Removes the entry for exactly this CIDR (an address means its /32 or /128).
   * @returns true when one was removed
   * @throws NetError for a bad CIDR, as add()
   */
  remove(cidr: string): boolean {
    const text = unmapCidr(parseCidr(cidr)).text;
    const before = this.#entries.length;
    const kept = this.#entries.filter((e) => e.cidr !== text);
    if (kept.length === before) return false;
    this.#rebuild(kept);
    return true;
  }

  /** Drops expired entries. @returns how many were dropped. */
  sweep(): number {
    const live = this.#live(this.#now());
    const dropped = this.#entries.length - live.length;
    if (dropped > 0) this.#rebuild(live);
    return dropped;
  }

  /** The live entries (expired ones left out). */
  list(): readonly QuarantineEntry[] {
    return this.#live(this.#now());
  }

  /**
   * The live entry covering `source` (longest prefix), if any.
   * @param source - normalised address text
   */
  match(source: string): QuarantineEntry | undefined {
    if (this.#entries.length === 0) return undefined;
    const i = this.#set.lookup(source);
    if (i < 0) return undefined;
    const entry = this.#entries[i] as QuarantineEntry;
    if (entry.expiresAt > this.#now()) return entry;
    // An expired longer prefix may shadow a live shorter one: drop the expired ones and look again.
    this.sweep();
    return this.match(source);
  }

  #live(now: number): QuarantineEntry[] {
    return this.#entries.filter((e) => e.expiresAt > now);
  }

  #rebuild(entries: readonly QuarantineEntry[]): void {
    const cidrs = entries.map((e) => parseCidr(e.cidr));
    const set = new SourceSet(cidrs);
    this.#cidrs = cidrs;
    this.#entries = entries;
    this.#set = set;
    this.version++;
  }

  /** Number of entries held (expired ones included until swept). */
  get size(): number {
    return this.#cidrs.length;
  }
}
