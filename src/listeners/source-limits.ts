// Connection limits enforced at accept, beside the segment policy: a process-wide cap on open client
// connections, and per source (an address, or a prefix) a cap on open connections and a token-bucket
// rate of new ones. One limiter per runtime, shared by every VIP, so a source is counted everywhere.

import type { LimitsConfig } from '../config/types.ts';
import { parseCidr, parseIPv4, parseIPv6 } from '../net/index.ts';
import { SourceSet } from '../policy/index.ts';

/** One counted source (address or prefix): its open connections and its token bucket. */
export interface SourceEntry {
  readonly key: string;
  open: number;
  /** Tokens left (a new connection takes one); refilled at rate_per_second up to burst. */
  tokens: number;
  /** Last refill time, ms. */
  refilledAt: number;
}

/** Why a connection was refused by a limit. */
export type LimitRefusal = 'total' | 'source-connections' | 'source-rate';

/**
 * Sources tracked at most. Past this (after dropping idle entries) a new source is let through
 * uncounted (and counted in `untracked`): the process-wide cap still bounds it, and the table
 * stays bounded whatever the number of distinct sources (an IPv6 attacker has many).
 */
export const MAX_TRACKED_SOURCES = 200_000;

/** Plain-number counters, read by status and metrics. */
export interface SourceLimitCounters {
  /** Refused because max_connections_total connections were open. */
  totalRefused: number;
  /** Refused because the source had per_source.max_connections open. */
  sourceConnectionsRefused: number;
  /** Refused because the source's token bucket was empty. */
  sourceRateRefused: number;
  /** Admitted without per-source accounting because the table was full. */
  untracked: number;
}

const scratch = new Uint32Array(4);

/**
 * The limiter. `admitTotal` runs first for every accepted socket, `admitSource` after the policy
 * allowed it; `release`/`releaseTotal` when the socket closes. O(1) per connection, no allocation for
 * IPv4 sources counted per address.
 */
export class SourceLimiter {
  readonly counters: SourceLimitCounters = {
    totalRefused: 0,
    sourceConnectionsRefused: 0,
    sourceRateRefused: 0,
    untracked: 0,
  };
  readonly #table = new Map<string, SourceEntry>();
  #open = 0;
  #lastSweep = 0;
  /** The exempt set compiled for one LimitsConfig object (configs are immutable; a reload makes a new one). */
  #exemptFor: LimitsConfig | null = null;
  #exempt: SourceSet | null = null;

  /** Open client connections counted by admitTotal. */
  get open(): number {
    return this.#open;
  }

  /** Sources currently tracked. */
  get tracked(): number {
    return this.#table.size;
  }

  /**
   * Counts a newly accepted connection against max_connections_total.
   * @returns false when the cap is reached (the caller resets the socket; nothing was counted)
   */
  admitTotal(limits: LimitsConfig): boolean {
    const max = limits.max_connections_total;
    if (max > 0 && this.#open >= max) {
      this.counters.totalRefused++;
      return false;
    }
    this.#open++;
    return true;
  }

  /** Ends a connection counted by admitTotal. */
  releaseTotal(): void {
    this.#open--;
  }

  /**
   * Checks and counts a connection of an allowed source against the per-source limits.
   * @param source - normalised client address
   * @param nowMs - current time (Date.now())
   * @returns the entry to release on close, null when the source is not counted (exempt, no limits
   *   configured, or the table is full), or a refusal
   */
  admitSource(source: string, limits: LimitsConfig, nowMs: number): SourceEntry | LimitRefusal | null {
    const cfg = limits.per_source;
    if (cfg.max_connections === 0 && cfg.rate_per_second === 0) return null;
    if (cfg.exempt.length > 0 && this.#exemptSet(limits).has(source)) return null;
    const key = sourceKey(source, cfg.ipv4_prefix, cfg.ipv6_prefix);
    if (key === null) return null;
    let entry = this.#table.get(key);
    if (entry === undefined) {
      if (this.#table.size >= MAX_TRACKED_SOURCES) {
        this.#sweep(limits, nowMs, true);
        if (this.#table.size >= MAX_TRACKED_SOURCES) {
          this.counters.untracked++;
          return null;
        }
      }
      entry = { key, open: 0, tokens: cfg.burst, refilledAt: nowMs };
      this.#table.set(key, entry);
    }
    if (cfg.rate_per_second > 0) {
      const elapsed = nowMs - entry.refilledAt;
      if (elapsed > 0) {
        entry.tokens = Math.min(cfg.burst, entry.tokens + (elapsed * cfg.rate_per_second) / 1000);
        entry.refilledAt = nowMs;
      }
      if (entry.tokens < 1) {
        this.counters.sourceRateRefused++;
        return 'source-rate';
      }
      entry.tokens -= 1;
    }
    if (cfg.max_connections > 0 && entry.open >= cfg.max_connections) {
      this.counters.sourceConnectionsRefused++;
      return 'source-connections';
    }
    entry.open++;
    return entry;
  }

  /**
   * Ends a connection counted by admitSource. An entry with nothing open is dropped at once when no
   * rate limit needs its bucket; otherwise a later sweep drops it once its bucket is full again.
   */
  release(entry: SourceEntry, limits: LimitsConfig, nowMs: number): void {
    entry.open--;
    if (entry.open > 0) return;
    if (limits.per_source.rate_per_second === 0) this.#table.delete(entry.key);
    else if (this.#table.size > 1024) this.#sweep(limits, nowMs, false);
  }

  /** Drops entries with no open connection whose bucket has refilled (at most once a second unless forced). */
  #sweep(limits: LimitsConfig, nowMs: number, force: boolean): void {
    if (!force && nowMs - this.#lastSweep < 1000) return;
    this.#lastSweep = nowMs;
    const { burst, rate_per_second: rate } = limits.per_source;
    for (const [key, e] of this.#table) {
      if (e.open > 0) continue;
      if (rate === 0 || e.tokens + ((nowMs - e.refilledAt) * rate) / 1000 >= burst) this.#table.delete(key);
    }
  }

  #exemptSet(limits: LimitsConfig): SourceSet {
    if (this.#exemptFor !== limits || this.#exempt === null) {
      this.#exempt = new SourceSet(limits.per_source.exempt.map((c) => parseCidr(c)));
      this.#exemptFor = limits;
    }
    return this.#exempt;
  }
}

/**
 * The counting key of a source: the address itself for a full-length prefix of IPv4, otherwise the
 * masked prefix (`4/10.1.2.0/24`-like keys, `6/` + hex words for IPv6).
 * @returns null when the text is not an IP address (never the case for accepted sockets)
 */
export function sourceKey(source: string, v4Prefix: number, v6Prefix: number): string | null {
  const v4 = parseIPv4(source);
  if (v4 >= 0) {
    if (v4Prefix >= 32) return source;
    const masked = v4Prefix === 0 ? 0 : (v4 & (0xffffffff << (32 - v4Prefix))) >>> 0;
    return `4/${masked}/${v4Prefix}`;
  }
  if (!parseIPv6(source, scratch)) return null;
  let key = '6';
  for (let i = 0; i < 4; i++) {
    const bits = v6Prefix - i * 32;
    if (bits <= 0) break;
    const word = scratch[i] as number;
    const masked = bits >= 32 ? word : (word & (0xffffffff << (32 - bits))) >>> 0;
    key += `/${masked.toString(16)}`;
  }
  return key;
}
