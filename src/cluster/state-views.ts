// Typed views over the replicated keyspaces, as the runtime and admin API use them: quarantine
// entries, runtime policy changes, backend health per node with its majority view, and source
// stickiness. Each checks its input, then hands one register write to the node.

import { ClusterError } from '../errors.ts';
import type { QuarantineEntry } from '../policy/index.ts';
import type { Stamp } from './hlc.ts';
import {
  type BackendState,
  canonicalCidr,
  healthKey,
  type KeyspaceName,
  MAX_KEY_LENGTH,
  MAX_REASON_LENGTH,
  type QuarantineValue,
  splitHealthKey,
} from './keyspaces.ts';
import type { LwwMap, Register } from './lww-map.ts';

/** What the views need from the node. */
export interface KeyspaceStore {
  readonly nodeId: string;
  /** Local physical time, ms. */
  now(): number;
  map<V>(ks: KeyspaceName): LwwMap<V>;
  /**
   * Writes one register (value null: a removal) with a fresh stamp, replicates it and reports the
   * change. @returns the register written
   * @throws ClusterError SEGLB_CLUSTER_STATE_FULL
   */
  write<V>(ks: KeyspaceName, key: string, value: V | null, expiresAt: number): Register<V>;
  /** Node ids counted for majority views: this node and peers that are alive or suspect. */
  liveNodes(): ReadonlySet<string>;
  /** Largest JSON value (bytes) a policy change may have. */
  readonly maxValueBytes: number;
}

function invalid(message: string): ClusterError {
  return new ClusterError('SEGLB_CLUSTER_INVALID_ENTRY', message);
}

/** Expiry from `ttlMs` or `expiresAt` (absolute), Infinity when neither is given. */
function expiryOf(now: number, ttlMs: number | undefined, expiresAt: number | undefined): number {
  if (ttlMs !== undefined && expiresAt !== undefined) throw invalid('give ttlMs or expiresAt, not both');
  if (ttlMs !== undefined) {
    if (!(ttlMs > 0)) throw invalid(`ttlMs must be a positive number of milliseconds, got ${ttlMs}`);
    return ttlMs === Number.POSITIVE_INFINITY ? ttlMs : Math.ceil(now + ttlMs);
  }
  if (expiresAt !== undefined) {
    if (!(expiresAt > now)) throw invalid(`expiresAt ${expiresAt} is not in the future`);
    return expiresAt === Number.POSITIVE_INFINITY ? expiresAt : Math.ceil(expiresAt);
  }
  return Number.POSITIVE_INFINITY;
}

/** A quarantine entry as a register. */
export function quarantineEntryOf(reg: Register<QuarantineValue>): QuarantineEntry {
  const v = reg.value as QuarantineValue;
  return Object.freeze({ cidr: reg.key, expiresAt: reg.expiresAt, reason: v.reason, addedAt: v.addedAt });
}

/** The cluster-wide quarantine set (same entry shape as src/policy's Quarantine). */
export class QuarantineView {
  readonly #store: KeyspaceStore;
  constructor(store: KeyspaceStore) {
    this.#store = store;
  }

  /**
   * Adds or replaces the entry of a CIDR on every node.
   * @param entry.cidr - CIDR or address (canonicalised: `10.0.0.1` is `10.0.0.1/32`)
   * @param entry.ttlMs - lifetime (or give `expiresAt`; neither: no expiry)
   * @throws ClusterError SEGLB_CLUSTER_INVALID_ENTRY, SEGLB_CLUSTER_STATE_FULL
   */
  put(entry: { cidr: string; reason?: string; ttlMs?: number; expiresAt?: number }): QuarantineEntry {
    const cidr = canonicalCidr(entry.cidr);
    if (cidr === undefined) throw invalid(`${entry.cidr} is not a valid canonical CIDR or address`);
    const reason = entry.reason ?? '';
    if (typeof reason !== 'string' || reason.length > MAX_REASON_LENGTH) {
      throw invalid(`reason must be a string of at most ${MAX_REASON_LENGTH} characters`);
    }
    const now = this.#store.now();
    const expiresAt = expiryOf(now, entry.ttlMs, entry.expiresAt);
    const reg = this.#store.write<QuarantineValue>('quarantine', cidr, { reason, addedAt: now }, expiresAt);
    return quarantineEntryOf(reg);
  }

  /**
   * Removes the entry of exactly this CIDR on every node (a tombstone).
   * @returns true when a live entry was removed
   */
  remove(cidr: string): boolean {
    const key = canonicalCidr(cidr);
    if (key === undefined) throw invalid(`${cidr} is not a valid canonical CIDR or address`);
    const map = this.#store.map<QuarantineValue>('quarantine');
    if (map.get(key, this.#store.now()) === undefined) return false;
    this.#store.write('quarantine', key, null, this.#store.now());
    return true;
  }

  /** The live entry of exactly this CIDR. */
  get(cidr: string): QuarantineEntry | undefined {
    const key = canonicalCidr(cidr);
    const reg = key === undefined ? undefined : this.#store.map<QuarantineValue>('quarantine').register(key);
    return reg !== undefined && reg.value !== null && reg.expiresAt > this.#store.now()
      ? quarantineEntryOf(reg)
      : undefined;
  }

  /** Every live entry. */
  list(): QuarantineEntry[] {
    const now = this.#store.now();
    const out: QuarantineEntry[] = [];
    for (const reg of this.#store.map<QuarantineValue>('quarantine').registers()) {
      if (reg.value !== null && reg.expiresAt > now) out.push(quarantineEntryOf(reg));
    }
    return out;
  }
}

/** One runtime policy change: an opaque JSON operation under an id, as the admin API made it. */
export interface PolicyOp {
  readonly id: string;
  readonly op: unknown;
  /** When it was made; list() is in this order, the same on every node. */
  readonly stamp: Stamp;
  readonly expiresAt: number;
}

function policyOpOf(reg: Register<unknown>): PolicyOp {
  return Object.freeze({ id: reg.key, op: reg.value, stamp: reg.stamp, expiresAt: reg.expiresAt });
}

/** Runtime policy changes replicated to every node. */
export class PolicyView {
  readonly #store: KeyspaceStore;
  constructor(store: KeyspaceStore) {
    this.#store = store;
  }

  /**
   * Adds or replaces the change `id`.
   * @param op - any JSON value but null (it is stored and returned as is)
   * @throws ClusterError SEGLB_CLUSTER_INVALID_ENTRY (bad id, not JSON, too large), SEGLB_CLUSTER_STATE_FULL
   */
  put(id: string, op: unknown, opts: { ttlMs?: number } = {}): PolicyOp {
    if (typeof id !== 'string' || id.length === 0 || id.length > 128)
      throw invalid('a policy change id is 1 to 128 characters');
    let text: string | undefined;
    try {
      text = JSON.stringify(op);
    } catch (err) {
      throw invalid(`policy change ${id} is not JSON: ${String(err)}`);
    }
    if (text === undefined || op === null)
      throw invalid(`policy change ${id} must be a JSON value other than null`);
    if (Buffer.byteLength(text) > this.#store.maxValueBytes) {
      throw invalid(`policy change ${id} is larger than ${this.#store.maxValueBytes} bytes`);
    }
    // Stored as parsed back from JSON, so this node holds exactly what the peers receive.
    const value: unknown = JSON.parse(text);
    const expiresAt = expiryOf(this.#store.now(), opts.ttlMs, undefined);
    return policyOpOf(this.#store.write('policy', id, value, expiresAt));
  }

  /** Removes the change `id` everywhere. @returns true when it existed */
  remove(id: string): boolean {
    if (this.#store.map('policy').get(id, this.#store.now()) === undefined) return false;
    this.#store.write('policy', id, null, this.#store.now());
    return true;
  }

  /** The change `id`, if live. */
  get(id: string): PolicyOp | undefined {
    const reg = this.#store.map('policy').register(id);
    return reg !== undefined && reg.value !== null && reg.expiresAt > this.#store.now()
      ? policyOpOf(reg)
      : undefined;
  }

  /** Every live change, oldest first by hybrid-clock stamp: the same order on every node. */
  list(): PolicyOp[] {
    const now = this.#store.now();
    const out: PolicyOp[] = [];
    for (const reg of this.#store.map('policy').registers()) {
      if (reg.value !== null && reg.expiresAt > now) out.push(policyOpOf(reg));
    }
    return out.sort((a, b) =>
      a.stamp.wall !== b.stamp.wall
        ? a.stamp.wall - b.stamp.wall
        : a.stamp.counter !== b.stamp.counter
          ? a.stamp.counter - b.stamp.counter
          : a.stamp.node < b.stamp.node
            ? -1
            : a.stamp.node > b.stamp.node
              ? 1
              : 0,
    );
  }
}

/** One node's view of one backend. */
export interface HealthReport {
  readonly node: string;
  readonly pool: string;
  readonly backend: string;
  readonly state: BackendState;
}

/** How the live nodes see one backend. */
export interface HealthView {
  readonly up: number;
  readonly down: number;
  /** Each live node's report. */
  readonly byNode: Readonly<Record<string, BackendState>>;
  /**
   * The strict majority of live nodes' reports; on a tie, this node's own report; undefined when
   * no live node reported.
   */
  readonly majority: BackendState | undefined;
}

/** Backend health as each node sees it; each node writes only its own reports. */
export class HealthState {
  readonly #store: KeyspaceStore;
  constructor(store: KeyspaceStore) {
    this.#store = store;
  }

  /**
   * Reports this node's view of a backend (replicated only when it changed).
   * @throws ClusterError SEGLB_CLUSTER_INVALID_ENTRY
   */
  report(pool: string, backend: string, state: BackendState): void {
    if (state !== 'up' && state !== 'down')
      throw invalid(`backend state must be "up" or "down", got ${String(state)}`);
    const key = this.#key(pool, backend);
    if (this.#store.map<BackendState>('health').get(key, this.#store.now()) === state) return;
    this.#store.write('health', key, state, Number.POSITIVE_INFINITY);
  }

  /** Withdraws this node's report (the backend left the configuration). */
  forget(pool: string, backend: string): void {
    const key = this.#key(pool, backend);
    if (this.#store.map('health').get(key, this.#store.now()) === undefined) return;
    this.#store.write('health', key, null, this.#store.now());
  }

  /** Live nodes' reports on one backend and the majority view. */
  view(pool: string, backend: string): HealthView {
    const live = this.#store.liveNodes();
    const map = this.#store.map<BackendState>('health');
    const now = this.#store.now();
    const byNode: Record<string, BackendState> = {};
    let up = 0;
    let down = 0;
    for (const node of live) {
      const state = map.get(healthKey(node, pool, backend), now);
      if (state === undefined) continue;
      byNode[node] = state;
      if (state === 'up') up++;
      else down++;
    }
    const majority =
      up > down ? 'up' : down > up ? 'down' : up === 0 ? undefined : byNode[this.#store.nodeId];
    return { up, down, byNode, majority };
  }

  /** Every live report held (all nodes, dead ones included). */
  list(): HealthReport[] {
    const now = this.#store.now();
    const out: HealthReport[] = [];
    for (const reg of this.#store.map<BackendState>('health').registers()) {
      if (reg.value === null || reg.expiresAt <= now) continue;
      const parts = splitHealthKey(reg.key);
      if (parts) out.push({ node: parts[0], pool: parts[1], backend: parts[2], state: reg.value });
    }
    return out;
  }

  #key(pool: string, backend: string): string {
    if (typeof pool !== 'string' || pool.length === 0 || pool.includes('\u0000'))
      throw invalid('bad pool name');
    if (typeof backend !== 'string' || backend.length === 0 || backend.includes('\u0000')) {
      throw invalid('bad backend name');
    }
    const key = healthKey(this.#store.nodeId, pool, backend);
    if (key.length > MAX_KEY_LENGTH) throw invalid('pool and backend names are too long');
    return key;
  }
}

/** One stickiness entry. */
export interface StickyEntry {
  readonly key: string;
  readonly backend: string;
  readonly expiresAt: number;
}

/** Source-IP stickiness (key -> backend with a time to live), shared by every node. */
export class StickyTable {
  readonly #store: KeyspaceStore;
  constructor(store: KeyspaceStore) {
    this.#store = store;
  }

  /**
   * Maps `key` (a source address, or a hash of one) to `backend` for `ttlMs`. Refreshing the same
   * mapping is replicated only once half its lifetime has passed, so a busy client costs the
   * cluster one message per half TTL, not one per request.
   * @returns true when a write was replicated
   * @throws ClusterError SEGLB_CLUSTER_INVALID_ENTRY, SEGLB_CLUSTER_STATE_FULL
   */
  set(key: string, backend: string, ttlMs: number): boolean {
    if (typeof key !== 'string' || key.length === 0 || key.length > MAX_KEY_LENGTH)
      throw invalid('bad sticky key');
    if (typeof backend !== 'string' || backend.length === 0 || backend.length > MAX_KEY_LENGTH) {
      throw invalid('bad backend');
    }
    if (!(ttlMs > 0) || ttlMs === Number.POSITIVE_INFINITY)
      throw invalid('a sticky entry needs a finite ttlMs > 0');
    const now = this.#store.now();
    const reg = this.#store.map<string>('sticky').register(key);
    if (reg !== undefined && reg.value === backend && reg.expiresAt - now > ttlMs / 2) return false;
    this.#store.write('sticky', key, backend, Math.ceil(now + ttlMs));
    return true;
  }

  /** The backend of `key`, if a live entry exists (a map lookup: fine on the data path). */
  get(key: string): string | undefined {
    return this.#store.map<string>('sticky').get(key, this.#store.now());
  }

  /** Removes the entry everywhere. @returns true when a live one existed */
  remove(key: string): boolean {
    if (this.get(key) === undefined) return false;
    this.#store.write('sticky', key, null, this.#store.now());
    return true;
  }

  /** Every live entry. */
  list(): StickyEntry[] {
    const now = this.#store.now();
    const out: StickyEntry[] = [];
    for (const reg of this.#store.map<string>('sticky').registers()) {
      if (reg.value !== null && reg.expiresAt > now)
        out.push({ key: reg.key, backend: reg.value, expiresAt: reg.expiresAt });
    }
    return out;
  }
}
