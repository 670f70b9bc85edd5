// The contract every load-balancing algorithm implements (HAProxy `struct lb_ops` style), plus the
// shared rules all of them obey: backups serve only when no primary is usable (HAProxy `lb_fwrr-t.h`
// keeps an active and a backup group), and a member at its max_connections is skipped (HAProxy
// `srv_dynamic_maxconn`). Algorithms precompute from `selectActiveGroup()` on change.

/** One backend as the algorithms see it. The pool owns these objects and mutates inflight/usable. */
export interface PoolMember {
  /** Stable id, unique within the pool. */
  readonly id: number;
  /** Backend name, as in the config (logs, flow records). */
  readonly name: string;
  /** Relative weight, 1..256 (validated by config; algorithms clamp defensively). */
  readonly weight: number;
  /** Requests/connections currently assigned; the pool increments before onTake, decrements before onRelease. */
  inflight: number;
  /** False while down, draining or in maintenance. Call onMembersChanged() after changing it. */
  usable: boolean;
  /** A backup serves only when no non-backup member is usable. */
  readonly backup: boolean;
  /** Most requests/connections at once; 0 means no limit. A member at its limit is "full" (isFull). */
  readonly maxConnections: number;
  /** Stable identity that hash algorithms place in their tables (the backend address). */
  readonly key: string;
}

/** True when `m` has a connection limit and is at it: picks skip it, the pool queues instead. */
export function isFull(m: PoolMember): boolean {
  return m.maxConnections > 0 && m.inflight >= m.maxConnections;
}

/**
 * What a pick returns; picking never throws (HAProxy `assign_server()` returns a status the same way).
 * `ok` outcomes are shared, frozen objects precomputed per member: read them, never mutate or keep them.
 * `full`: usable members exist but every one is at its max_connections (the caller queues);
 * `none`: no member is usable at all (the caller answers 503).
 */
export type PickOutcome = { kind: 'ok'; member: PoolMember } | { kind: 'full' } | { kind: 'none' };

/** One running instance of an algorithm over one pool's members. Not shared between pools. */
export interface LbAlgorithm {
  /**
   * Picks a usable member that is not full, avoiding `avoid` (the one that just failed, HAProxy's
   * `srvtoavoid`) when another such member of the active group exists; if `avoid` is the only one, it
   * is returned (a retry on the same server beats no server). Returns `{ kind: 'full' }` when usable
   * members exist but all are full, `{ kind: 'none' }` when nothing is usable. Never throws, allocates
   * nothing. A member whose `usable` went false without onMembersChanged() is skipped and triggers the
   * rebuild itself; one that went true is only seen after onMembersChanged().
   * @param avoid - the member that just failed for this request, or null
   * @param hash - a 32-bit unsigned hash of the request key (source address, header, cookie or path),
   *   computed by the pool; read only by algorithms whose descriptor has `needsKey`, others get 0
   */
  pick(avoid: PoolMember | null, hash: number): PickOutcome;
  /** The set of usable members changed (health, drain) or weights changed: rebuild precomputed tables. */
  onMembersChanged(): void;
  /** A request/connection was assigned to `m` (after the pool incremented `m.inflight`). Optional. */
  onTake?(m: PoolMember): void;
  /** A request/connection on `m` ended (after the pool decremented `m.inflight`). Optional. */
  onRelease?(m: PoolMember): void;
}

/** Static facts about an algorithm, so config can check compatibility without creating one. */
export interface LbAlgorithmDescriptor {
  /** The name used in config (`pools.<name>.algorithm`). */
  readonly name: LbAlgorithmName;
  /**
   * True when the algorithm uses weights and a weight change takes effect at the next onMembersChanged()
   * without re-creating it (HAProxy's "dynamic" algorithms); false when weights are ignored.
   */
  readonly dynamicWeights: boolean;
  /** True when picking reads the request key hash (source_hash, consistent_hash): the pool computes it. */
  readonly needsKey: boolean;
  /**
   * Creates an instance over `members`. The array is kept by reference and re-read on every
   * onMembersChanged(), so a pool that edits its list in place must call that afterwards. Does not throw.
   * @param options - per-pool tuning (only consistent_hash reads it); defaults when absent
   */
  create(members: readonly PoolMember[], options?: AlgorithmOptions): LbAlgorithm;
}

/** Per-pool algorithm settings from the config. */
export interface AlgorithmOptions {
  /** Slots of the consistent-hash (Maglev) table: a prime (`pools.NAME.hash.table_size`). */
  readonly hashTableSize: number;
}

/** Envoy's default Maglev table size (a prime): keys move by ~1/N with up to a few hundred backends. */
export const DEFAULT_HASH_TABLE_SIZE = 65537;

/** Names of the available algorithms; `algorithms.ts` maps each to its descriptor. */
export type LbAlgorithmName =
  | 'round_robin'
  | 'weighted_round_robin'
  | 'least_connections'
  | 'random_two_choices'
  | 'source_hash'
  | 'consistent_hash'
  | 'first';

/** The shared `{ kind: 'none' }` outcome (frozen), so no pick allocates. */
export const PICK_NONE: PickOutcome = Object.freeze({ kind: 'none' });

/** The shared `{ kind: 'full' }` outcome (frozen). */
export const PICK_FULL: PickOutcome = Object.freeze({ kind: 'full' });

/** Upper bound of a member weight (HAProxy's is 256 too). */
export const MAX_MEMBER_WEIGHT = 256;

/**
 * The members an algorithm picks from right now, precomputed when membership changes. Index `i` of
 * `members`, `weights` and `outcomes` describe the same member.
 */
export interface ActiveGroup {
  /** Usable primaries in pool order; if none is usable, the usable backups; possibly empty. */
  readonly members: readonly PoolMember[];
  /** `members[i].weight`, truncated and clamped to 1..MAX_MEMBER_WEIGHT (NaN becomes 1). */
  readonly weights: Int32Array;
  /** A frozen `{ kind: 'ok', member: members[i] }`, so pick returns without allocating. */
  readonly outcomes: readonly PickOutcome[];
  /** True when `members` are backups because no primary is usable. */
  readonly isBackup: boolean;
}

/**
 * Selects the group to balance over: the usable non-backup members, or, when none is usable, all the
 * usable backups. HAProxy by default sends to the first backup only unless `option allbackups`; seglb
 * always balances over every usable backup. Allocates; call it from onMembersChanged(), not per pick.
 * @param all - every member of the pool, usable or not, in pool order
 * @returns the active group; `members` is empty when no member at all is usable
 */
export function selectActiveGroup(all: readonly PoolMember[]): ActiveGroup {
  const primaries: PoolMember[] = [];
  const backups: PoolMember[] = [];
  for (const m of all) {
    if (!m.usable) continue;
    (m.backup ? backups : primaries).push(m);
  }
  const isBackup = primaries.length === 0;
  const members = Object.freeze(isBackup ? backups : primaries);
  const weights = new Int32Array(members.length);
  const outcomes: PickOutcome[] = [];
  for (let i = 0; i < members.length; i++) {
    const m = members[i]!;
    weights[i] = clampWeight(m.weight);
    outcomes.push(Object.freeze({ kind: 'ok', member: m }));
  }
  return { members, weights, outcomes: Object.freeze(outcomes), isBackup };
}

/** Truncates to an integer in 1..MAX_MEMBER_WEIGHT, so a bad weight can't poison the pick arithmetic. */
function clampWeight(weight: number): number {
  if (!(weight >= 1)) return 1; // also catches NaN
  return weight >= MAX_MEMBER_WEIGHT ? MAX_MEMBER_WEIGHT : Math.trunc(weight);
}

/** Greatest common divisor of the weights (0 for none): tables divide by it to stay short. */
export function weightsGcd(weights: Int32Array): number {
  let g = 0;
  for (let i = 0; i < weights.length; i++) {
    let b = weights[i]!;
    while (b !== 0) {
      const r = g % b;
      g = b;
      b = r;
    }
  }
  return g;
}
