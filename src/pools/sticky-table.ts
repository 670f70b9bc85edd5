// Source-IP stickiness: client address → backend address with a time to live, bounded in size
// (HAProxy `stick-table type ip ... expire`). Entries export and import as plain records, and set()
// says when an entry is worth telling cluster peers about, so they can share it.

/** One entry as exported: the shape of the cluster's replicated sticky keyspace. */
export interface StickyEntry {
  /** The client address. */
  readonly key: string;
  /** The backend address (`host:port`) it sticks to. */
  readonly backend: string;
  /** ms since the epoch. */
  readonly expiresAt: number;
}

interface Slot {
  backend: string;
  expiresAt: number;
  /** The expiry peers last heard of (set() said so, or the entry came from them); 0: never. */
  shared: number;
}

/**
 * A TTL table. Map insertion order is refresh order: every set() moves the key to the end with a
 * fresh expiry, so with one TTL the first entries are the first to expire and expire() stops at the
 * first live one; when full, the least recently refreshed entry is dropped. A refresh of an entry
 * whose expiry is still more than half a TTL away only updates it in place (no reordering), which
 * keeps a busy client from churning the map. Imported entries keep their own expiry and join the end,
 * so the order is then approximate: get() still never returns an expired entry.
 */
export class SourceStickyTable {
  #ttlMs: number;
  #maxEntries: number;
  readonly #entries = new Map<string, Slot>();

  /**
   * @param ttlMs - lifetime after the last set(), ms
   * @param maxEntries - most entries kept
   */
  constructor(ttlMs: number, maxEntries: number) {
    this.#ttlMs = ttlMs;
    this.#maxEntries = maxEntries;
  }

  /** Applies new limits (a reload); extra entries are dropped oldest first. */
  configure(ttlMs: number, maxEntries: number): void {
    this.#ttlMs = ttlMs;
    this.#maxEntries = maxEntries;
    this.#trim();
  }

  /** Entries held (expired ones not yet swept included). */
  get size(): number {
    return this.#entries.size;
  }

  /** The backend of `key`, or undefined when there is none or it expired (then it is removed). */
  get(key: string, now: number): string | undefined {
    const slot = this.#entries.get(key);
    if (slot === undefined) return undefined;
    if (slot.expiresAt <= now) {
      this.#entries.delete(key);
      return undefined;
    }
    return slot.backend;
  }

  /**
   * Maps `key` to `backend` for one TTL from `now`.
   * @returns true when cluster peers should hear of it: the mapping is new or changed, or the expiry
   *   they last heard of is less than half a TTL away (the cluster's own rate limit, so a busy
   *   client costs one write per half TTL); false for a refresh they need not know about
   */
  set(key: string, backend: string, now: number): boolean {
    const expiresAt = now + this.#ttlMs;
    const slot = this.#entries.get(key);
    if (slot !== undefined) {
      if (slot.backend === backend && slot.expiresAt - now > this.#ttlMs / 2) {
        slot.expiresAt = expiresAt;
        return this.#share(slot, now);
      }
      this.#entries.delete(key);
      if (slot.backend !== backend) slot.shared = 0;
      slot.backend = backend;
      slot.expiresAt = expiresAt;
      this.#entries.set(key, slot);
      return this.#share(slot, now);
    }
    this.#entries.set(key, { backend, expiresAt, shared: expiresAt });
    this.#trim();
    return true;
  }

  /** Forgets `key`. @returns true when it was there */
  delete(key: string): boolean {
    return this.#entries.delete(key);
  }

  /**
   * Drops expired entries from the front (see the class comment).
   * @returns how many were dropped
   */
  expire(now: number): number {
    let dropped = 0;
    for (const [key, slot] of this.#entries) {
      if (slot.expiresAt > now) break;
      this.#entries.delete(key);
      dropped++;
    }
    return dropped;
  }

  /** Every live entry, oldest refresh first. */
  export(now: number): StickyEntry[] {
    const out: StickyEntry[] = [];
    for (const [key, slot] of this.#entries)
      if (slot.expiresAt > now) out.push({ key, backend: slot.backend, expiresAt: slot.expiresAt });
    return out;
  }

  /**
   * Merges entries (from a peer): an entry replaces a local one only when it expires later; expired
   * entries are skipped. @returns how many were taken
   */
  import(entries: Iterable<StickyEntry>, now: number): number {
    let taken = 0;
    for (const e of entries) {
      if (!(e.expiresAt > now) || typeof e.key !== 'string' || typeof e.backend !== 'string') continue;
      const mine = this.#entries.get(e.key);
      if (mine !== undefined && mine.expiresAt >= e.expiresAt) continue;
      if (mine !== undefined) this.#entries.delete(e.key);
      this.#entries.set(e.key, {
        backend: e.backend,
        expiresAt: Math.min(e.expiresAt, now + this.#ttlMs),
        shared: e.expiresAt,
      });
      taken++;
    }
    this.#trim();
    return taken;
  }

  /** True (and remembered) when the expiry peers know of is less than half a TTL away. */
  #share(slot: Slot, now: number): boolean {
    if (slot.shared - now > this.#ttlMs / 2) return false;
    slot.shared = slot.expiresAt;
    return true;
  }

  #trim(): void {
    if (this.#entries.size <= this.#maxEntries) return;
    for (const key of this.#entries.keys()) {
      this.#entries.delete(key);
      if (this.#entries.size <= this.#maxEntries) return;
    }
  }
}
