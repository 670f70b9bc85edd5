// Shares pool state between this node's pools and the cluster: each node's active-check verdicts go
// to the `health` keyspace and the majority view comes back into the pools; source-stickiness
// entries go to the `sticky` keyspace (keyed `POOL|CLIENT`) and peers' entries are imported into the
// right pool's table, so a client keeps its backend when it lands on another node.

import type { ClusterNode } from '../cluster/index.ts';
import type { Logger } from '../observe/log.ts';
import type {
  HealthVerdict,
  PoolStateListener,
  PoolStateRegistry,
  SourceStickyTable,
  StickyEntry,
} from '../pools/index.ts';

/** Least time between two log lines about sticky entries the cluster refused (a full table). */
const STICKY_ERROR_LOG_MS = 10_000;

/**
 * The cluster key of a sticky entry. Pool names never contain `|` (config pattern), so the first `|`
 * separates the pool from the client address.
 */
export function stickyClusterKey(pool: string, source: string): string {
  return `${pool}|${source}`;
}

function splitStickyKey(key: string): [pool: string, source: string] | undefined {
  const i = key.indexOf('|');
  return i > 0 && i < key.length - 1 ? [key.slice(0, i), key.slice(i + 1)] : undefined;
}

/** `pool NUL address`: a backend within the registry. */
function backendKey(pool: string, address: string): string {
  return `${pool}\u0000${address}`;
}

/**
 * Connects a ClusterNode to the runtime's PoolStateRegistry, both ways. Local changes reach the
 * cluster through the registry's listener (PoolStateListener); remote ones are applied to the pools
 * and never written back, so nothing echoes. Majority views are computed on `health` and `peer`
 * events and after reloads, never on the data path: pools read a precomputed `usable` flag.
 */
export class ClusterPoolSync implements PoolStateListener {
  readonly #node: ClusterNode;
  readonly #pools: PoolStateRegistry;
  readonly #log: Logger;
  /** Backends this node reports a verdict for (`pool NUL address`): those with active checks. */
  #reported = new Set<string>();
  /** Each pool's sticky table as last seen, so a table created by a reload is filled from the cluster. */
  readonly #tables = new Map<string, SourceStickyTable>();
  #stickyErrorLoggedAt = 0;
  #stickyErrors = 0;

  constructor(node: ClusterNode, pools: PoolStateRegistry, log: Logger) {
    this.#node = node;
    this.#pools = pools;
    this.#log = log;
  }

  /**
   * Reports this node's verdicts, withdraws stale reports of its own, imports the sticky entries the
   * cluster holds, computes every majority view, then follows changes both ways.
   */
  attach(): void {
    const node = this.#node;
    node.on('health', (set) => {
      for (const r of set.upserted) {
        this.#refreshView(r.pool, r.backend);
        // A report of ours from an earlier run (pulled from a peer after a restart) for a backend
        // this run does not check: withdraw it.
        if (set.origin === 'remote' && r.node === node.nodeId) this.#reassert(r.pool, r.backend, r.state);
      }
      for (const r of set.removed) this.#refreshView(r.pool, r.backend);
    });
    node.on('sticky', (set) => {
      if (set.origin === 'local') return;
      this.#importSticky(set.upserted, null);
      for (const key of set.removed) {
        const parts = splitStickyKey(key);
        if (parts !== undefined) this.#pools.get(parts[0])?.sticky?.delete(parts[1]);
      }
    });
    node.on('peer', () => this.#refreshAllViews()); // the set of live nodes, hence every majority, moved
    this.#pools.setListener(this);
    this.#reportAll();
    for (const r of node.health.list()) {
      if (r.node === node.nodeId) this.#reassert(r.pool, r.backend, r.state);
    }
    this.#importSticky(node.sticky.list(), null);
    this.#rememberTables();
    this.#refreshAllViews();
  }

  /**
   * A new snapshot is live: reports (or withdraws) verdicts for the new set of checked backends,
   * fills new sticky tables from the cluster and recomputes the majority views.
   */
  snapshotChanged(): void {
    this.#reportAll();
    const fresh = new Set<string>();
    for (const [name, p] of this.#pools.entries()) {
      if (p.sticky !== null && this.#tables.get(name) !== p.sticky) fresh.add(name);
    }
    if (fresh.size > 0) this.#importSticky(this.#node.sticky.list(), fresh);
    this.#rememberTables();
    this.#refreshAllViews();
  }

  /** Stops telling the cluster (the node stops). */
  detach(): void {
    this.#pools.setListener(null);
  }

  healthChanged(pool: string, address: string, verdict: HealthVerdict): void {
    this.#report(pool, address, verdict);
  }

  stickySet(pool: string, source: string, address: string, ttlMs: number): void {
    try {
      this.#node.sticky.set(stickyClusterKey(pool, source), address, ttlMs);
    } catch (err) {
      // A full sticky table would fail every new client: log once in a while, with the count.
      this.#stickyErrors++;
      const now = Date.now();
      if (now - this.#stickyErrorLoggedAt < STICKY_ERROR_LOG_MS) return;
      this.#stickyErrorLoggedAt = now;
      this.#log.warn({ pool, err: String(err), failed: this.#stickyErrors }, 'sticky entries not replicated');
      this.#stickyErrors = 0;
    }
  }

  #report(pool: string, address: string, verdict: HealthVerdict): void {
    try {
      this.#node.health.report(pool, address, verdict);
    } catch (err) {
      this.#log.error({ pool, backend: address, err: String(err) }, 'backend health not replicated');
    }
  }

  /** Reports the verdict of every checked backend (a write only when it changed), withdraws the rest. */
  #reportAll(): void {
    const reported = new Set<string>();
    for (const [name, p] of this.#pools.entries()) {
      if (p.checker === null) continue;
      for (const b of p.config.backends) {
        const s = p.find(b.address);
        if (s === undefined) continue;
        this.#report(name, b.address, s.health);
        reported.add(backendKey(name, b.address));
      }
    }
    for (const key of this.#reported) {
      if (reported.has(key)) continue;
      const [pool, address] = key.split('\u0000') as [string, string];
      this.#forget(pool, address);
    }
    this.#reported = reported;
  }

  /** Our own report `state` is in the cluster: correct it when this run says otherwise. */
  #reassert(pool: string, address: string, state: HealthVerdict): void {
    if (!this.#reported.has(backendKey(pool, address))) {
      this.#forget(pool, address);
      return;
    }
    const s = this.#pools.get(pool)?.find(address);
    if (s !== undefined && s.health !== state) this.#report(pool, address, s.health);
  }

  #forget(pool: string, address: string): void {
    try {
      this.#node.health.forget(pool, address);
    } catch (err) {
      this.#log.error({ pool, backend: address, err: String(err) }, 'backend health report not withdrawn');
    }
  }

  #refreshView(pool: string, address: string): void {
    const p = this.#pools.get(pool);
    if (p === undefined || p.find(address) === undefined) return;
    p.setClusterHealth(address, this.#node.health.view(pool, address).majority ?? null);
  }

  #refreshAllViews(): void {
    for (const [name, p] of this.#pools.entries()) {
      for (const b of p.config.backends) this.#refreshView(name, b.address);
    }
  }

  /**
   * Imports cluster sticky entries into the pools' tables (an entry replaces a local one only when it
   * expires later), grouped per pool.
   * @param only - pool names to import for, or null for all
   */
  #importSticky(entries: readonly StickyEntry[], only: ReadonlySet<string> | null): void {
    const byPool = new Map<string, StickyEntry[]>();
    for (const e of entries) {
      const parts = splitStickyKey(e.key);
      if (parts === undefined || (only !== null && !only.has(parts[0]))) continue;
      let list = byPool.get(parts[0]);
      if (list === undefined) byPool.set(parts[0], (list = []));
      list.push({ key: parts[1], backend: e.backend, expiresAt: e.expiresAt });
    }
    const now = Date.now();
    for (const [pool, list] of byPool) this.#pools.get(pool)?.sticky?.import(list, now);
  }

  #rememberTables(): void {
    this.#tables.clear();
    for (const [name, p] of this.#pools.entries()) if (p.sticky !== null) this.#tables.set(name, p.sticky);
  }
}
