// The state of one pool that outlives snapshots and is shared by every segment using the pool:
// per-backend health and ejection, the wait queue, the retry budget, the source stickiness table and
// the health checker. It turns check results, traffic reports and the cluster's majority view into
// "usable" flags (with panic mode), logs each change once and counts it; BackendPools read the flags
// when `version` moves.

import type { PoolConfig } from '../config/types.ts';
import type { Logger } from '../observe/log.ts';
import {
  type BackendAdminState,
  BackendState,
  type CheckRecord,
  type HealthVerdict,
} from './backend-state.ts';
import type { CheckedBackend, HealthChecker } from './health/checker.ts';
import {
  type EjectionReason,
  eject,
  ejectionAllowed,
  recordConnectFailure,
  recordResponse,
  unEject,
} from './outlier.ts';
import { RetryBudget } from './retry-budget.ts';
import { SourceStickyTable } from './sticky-table.ts';
import { WaitQueue } from './wait-queue.ts';

/** Event counters of one pool (plain numbers; metrics read them). */
export interface PoolCounters {
  /** Active-check transitions. */
  healthDown: number;
  healthUp: number;
  /** Passive ejections, ejections refused by max_ejection_percent, and returns. */
  ejections: number;
  ejectionsRefused: number;
  ejectionsEnded: number;
  /** Times the pool entered panic mode. */
  panics: number;
  /** Administrative state changes. */
  adminChanges: number;
}

/**
 * What a pool's state tells the cluster (src/admin/cluster-pool-sync.ts implements it;
 * PoolStateRegistry.setListener installs it). Called synchronously from the control plane (checks)
 * and, for stickiness, from the data path, at most once per source per half TTL: implementations
 * must not throw.
 */
export interface PoolStateListener {
  /** An active check changed a backend's verdict (outlier ejections are not reported: they stay local). */
  healthChanged(pool: string, address: string, verdict: HealthVerdict): void;
  /** A source was stuck to a backend, or its entry needs refreshing on the peers (see SourceStickyTable.set). */
  stickySet(pool: string, source: string, address: string, ttlMs: number): void;
}

/** One backend of the current config, as the state computation needs it. */
interface Member {
  readonly state: BackendState;
  readonly backup: boolean;
}

/** One pool's shared state. Created and pruned by PoolStateRegistry. */
export class PoolState {
  readonly name: string;
  readonly #log: Logger;
  #config: PoolConfig;
  readonly #backends = new Map<string, BackendState>();
  #members: Member[] = [];
  /** Bumped whenever a backend's `usable` may have changed; BackendPools re-read their flags then. */
  version = 0;
  /** True while fewer than panic_threshold_percent of the backends are healthy (and no backup is). */
  panic = false;
  readonly queue = new WaitQueue();
  readonly budget: RetryBudget;
  /** Source stickiness, null when `sticky.source` is not configured. */
  sticky: SourceStickyTable | null = null;
  readonly counters: PoolCounters = {
    healthDown: 0,
    healthUp: 0,
    ejections: 0,
    ejectionsRefused: 0,
    ejectionsEnded: 0,
    panics: 0,
    adminChanges: 0,
  };
  /** Told of health verdicts and sticky entries; null without a cluster. */
  listener: PoolStateListener | null = null;
  #checker: HealthChecker | null = null;
  #checkerKey = '';
  readonly #ejectionTimers = new Map<BackendState, NodeJS.Timeout>();
  #closed = false;

  /**
   * @param name - pool name
   * @param config - the pool's config (adopted for good by apply())
   * @param log - where state changes are logged
   */
  constructor(name: string, config: PoolConfig, log: Logger) {
    this.name = name;
    this.#config = config;
    this.#log = log;
    this.budget = new RetryBudget(config.retry_budget);
    this.#configureSticky(config);
  }

  /** The config adopted last. */
  get config(): PoolConfig {
    return this.#config;
  }

  /** The health checker running for the pool, or null (tests read `completed`). */
  get checker(): HealthChecker | null {
    return this.#checker;
  }

  /**
   * The state of a backend, created on first use (a reload adding a backend). Safe while older
   * snapshots still run: it changes nothing that exists.
   */
  backend(address: string, name: string): BackendState {
    let s = this.#backends.get(address);
    if (s === undefined) {
      s = new BackendState(this.name, address, name);
      this.#backends.set(address, s);
    }
    return s;
  }

  /** The state of a backend of the current config, if there is one. */
  find(address: string): BackendState | undefined {
    return this.#backends.get(address);
  }

  /**
   * Adopts a config once its snapshot is live: backends no longer listed are forgotten (requests in
   * flight on them finish on the objects they hold), names, budget and sticky limits are updated and
   * the usable flags recomputed.
   */
  apply(config: PoolConfig): void {
    this.#config = config;
    const keep = new Set<string>();
    this.#members = config.backends.map((b) => {
      keep.add(b.address);
      const state = this.backend(b.address, b.name ?? b.address);
      state.name = b.name ?? b.address;
      return { state, backup: b.backup };
    });
    for (const [address, s] of this.#backends) {
      if (keep.has(address)) continue;
      this.#backends.delete(address);
      const t = this.#ejectionTimers.get(s);
      if (t) clearTimeout(t);
      this.#ejectionTimers.delete(s);
    }
    this.budget.configure(config.retry_budget);
    this.#configureSticky(config);
    this.#changed();
  }

  /**
   * (Re)starts active checks when their settings or the backends changed; stops them when the pool
   * no longer has `health_check` (every backend then counts as up again).
   * @param backends - the backends to check, with endpoint and TLS options
   * @param key - identity of the check settings (config, addresses, subnets, CA); unchanged: nothing happens
   * @param create - builds the checker (given this pool's reporter)
   */
  ensureChecker(
    key: string,
    create: ((report: (s: BackendState, r: CheckRecord) => void) => HealthChecker) | null,
  ): void {
    if (key === this.#checkerKey && (create === null) === (this.#checker === null)) return;
    this.#checker?.stop();
    this.#checker = null;
    this.#checkerKey = key;
    if (create === null) {
      let changed = false;
      for (const { state } of this.#members) {
        if (state.health === 'down') changed = true;
        state.health = 'up';
        state.checkStreakOk = 0;
        state.checkStreakFailed = 0;
      }
      if (changed) this.#changed();
      return;
    }
    this.#checker = create((s, r) => this.reportCheck(s, r));
    this.#checker.start();
  }

  /**
   * An active check result (from the checker). A passing check of an up backend also ends a passive
   * ejection early, as Envoy does by default (`successful_active_health_check_uneject_host`): the
   * ejection streak stays, so a backend that passes checks but keeps failing traffic is ejected for
   * longer each time.
   */
  reportCheck(s: BackendState, record: CheckRecord): void {
    const hc = this.#config.health_check;
    if (this.#closed || hc === undefined) return;
    const verdict: HealthVerdict | null = s.recordCheck(record, hc.rise, hc.fall);
    const log = { pool: this.name, backend: s.name, address: s.address, check: record.detail };
    if (verdict === 'down') {
      this.counters.healthDown++;
      this.#log.warn(log, `backend down: ${hc.fall} failed health checks`);
    } else if (verdict === 'up') {
      this.counters.healthUp++;
      this.#log.info(log, `backend up: ${hc.rise} passed health checks`);
    }
    const now = Date.now();
    const unEjected = record.ok && s.health === 'up' && s.isEjected(now);
    if (unEjected) {
      const t = this.#ejectionTimers.get(s);
      if (t) clearTimeout(t);
      this.#ejectionTimers.delete(s);
      unEject(s, now);
      this.counters.ejectionsEnded++;
      this.#log.info(log, 'backend back from ejection: health check passed');
    }
    if (verdict !== null || unEjected) this.#changed();
    if (verdict !== null) this.listener?.healthChanged(this.name, s.address, verdict);
  }

  /**
   * The cluster's majority view of a backend changed (ClusterPoolSync, on `health` and peer events).
   * With `cluster_view: majority` it replaces this node's verdict; a change of the effective verdict is
   * logged and the usable flags recomputed. Unknown addresses are ignored.
   * @param verdict - the majority of the live nodes reporting the backend, or null (no report)
   */
  setClusterHealth(address: string, verdict: HealthVerdict | null): void {
    const s = this.#backends.get(address);
    if (s === undefined || s.clusterHealth === verdict) return;
    const before = this.verdictOf(s);
    s.clusterHealth = verdict;
    const after = this.verdictOf(s);
    if (after === before) return;
    const log = { pool: this.name, backend: s.name, address: s.address, local: s.health, cluster: verdict };
    if (after === 'down') this.#log.warn(log, 'backend down: the majority of cluster nodes see it down');
    else this.#log.info(log, 'backend up: the majority of cluster nodes see it up');
    this.#changed();
  }

  /**
   * The health verdict that counts for `s`: this node's active checks, or with
   * `health_check.cluster_view: majority` the cluster's majority when there is one.
   */
  verdictOf(s: BackendState): HealthVerdict {
    const hc = this.#config.health_check;
    return hc?.cluster_view === 'majority' && s.clusterHealth !== null ? s.clusterHealth : s.health;
  }

  /** A source was stuck to a backend and peers should hear of it (BackendPool, after SourceStickyTable.set). */
  stuck(source: string, address: string): void {
    const ttl = this.#config.sticky?.source?.ttl_ms;
    if (this.listener !== null && ttl !== undefined) this.listener.stickySet(this.name, source, address, ttl);
  }

  /** A connection to `s` failed (refused, timed out, reset before a response). */
  reportConnectFailure(s: BackendState): void {
    const reason = recordConnectFailure(s, this.#config.outlier_detection);
    if (reason !== null) this.#tryEject(s, reason);
  }

  /** `s` answered `status` (or seglb answered 502/504 for it after the connection worked). */
  reportResponse(s: BackendState, status: number): void {
    const reason = recordResponse(s, status, this.#config.outlier_detection);
    if (reason !== null) this.#tryEject(s, reason);
  }

  /** A TCP connection to `s` was established. */
  reportConnected(s: BackendState): void {
    s.consecutiveConnectFailures = 0;
  }

  /** Sets a backend's administrative state (admin API, tests); logged and counted when it changes. */
  setAdminState(s: BackendState, state: BackendAdminState): void {
    if (s.adminState === state) return;
    const was = s.adminState;
    s.adminState = state;
    this.counters.adminChanges++;
    this.#log.info(
      { pool: this.name, backend: s.name, address: s.address, from: was, to: state },
      `backend ${state}`,
    );
    this.#changed();
  }

  /** Stops checks and timers (Runtime.stop, or the pool left the config). */
  close(): void {
    this.#closed = true;
    this.#checker?.stop();
    this.#checker = null;
    for (const t of this.#ejectionTimers.values()) clearTimeout(t);
    this.#ejectionTimers.clear();
  }

  /** Drops expired source-stickiness entries (called once a second by the registry). */
  sweep(now: number): void {
    this.sticky?.expire(now);
  }

  #tryEject(s: BackendState, reason: EjectionReason): void {
    const now = Date.now();
    if (this.#closed || s.isEjected(now) || !this.#backends.has(s.address)) return;
    let ejected = 0;
    for (const m of this.#members) if (m.state.isEjected(now)) ejected++;
    const od = this.#config.outlier_detection;
    if (!ejectionAllowed(ejected, this.#members.length, od.max_ejection_percent)) {
      this.counters.ejectionsRefused++;
      // Reset the streak so the refusal is logged once per threshold crossing, not per failure.
      s.consecutiveConnectFailures = 0;
      s.consecutive5xx = 0;
      this.#log.warn(
        {
          pool: this.name,
          backend: s.name,
          address: s.address,
          reason,
          ejected,
          maxPercent: od.max_ejection_percent,
        },
        'backend not ejected: max_ejection_percent reached',
      );
      return;
    }
    const ms = eject(s, od, now);
    this.counters.ejections++;
    this.#log.warn(
      {
        pool: this.name,
        backend: s.name,
        address: s.address,
        reason,
        ejectionMs: ms,
        streak: s.ejectionStreak,
      },
      `backend ejected for ${ms} ms (${reason === '5xx' ? 'consecutive 5xx' : 'consecutive connection failures'})`,
    );
    const timer = setTimeout(() => {
      this.#ejectionTimers.delete(s);
      if (this.#closed) return;
      unEject(s, Date.now());
      this.counters.ejectionsEnded++;
      this.#log.info({ pool: this.name, backend: s.name, address: s.address }, 'backend back from ejection');
      this.#changed();
    }, ms);
    timer.unref();
    this.#ejectionTimers.set(s, timer);
    this.#changed();
  }

  /**
   * Recomputes healthy/usable flags and panic mode, bumps the version and offers capacity to the
   * queue. Panic (Envoy's panic threshold): when fewer than panic_threshold_percent of the ready
   * primaries are healthy and no backup is healthy, every ready primary is used, healthy or not,
   * because spreading over all beats overloading the few left or answering 503 to everyone. With
   * healthy backups there is no panic: backups serve once no primary is healthy (HAProxy's rule).
   */
  #changed(): void {
    const now = Date.now();
    let primaries = 0;
    let healthyPrimaries = 0;
    let backups = 0;
    let healthyBackups = 0;
    for (const { state: s, backup } of this.#members) {
      s.healthy = this.verdictOf(s) === 'up' && !s.isEjected(now);
      if (s.adminState !== 'ready') continue;
      if (backup) {
        backups++;
        if (s.healthy) healthyBackups++;
      } else {
        primaries++;
        if (s.healthy) healthyPrimaries++;
      }
    }
    const threshold = this.#config.panic_threshold_percent;
    let panicGroup: 'primary' | 'backup' | null = null;
    if (threshold > 0 && healthyBackups === 0) {
      if (primaries > 0 && healthyPrimaries * 100 < threshold * primaries) panicGroup = 'primary';
      else if (primaries === 0 && backups > 0) panicGroup = 'backup'; // a pool of backups only
    }
    for (const { state: s, backup } of this.#members) {
      if (s.adminState !== 'ready') s.usable = false;
      else if (panicGroup !== null && backup === (panicGroup === 'backup')) s.usable = true;
      else s.usable = s.healthy;
    }
    const panic = panicGroup !== null;
    if (panic !== this.panic) {
      this.panic = panic;
      if (panic) {
        this.counters.panics++;
        this.#log.warn(
          { pool: this.name, healthy: healthyPrimaries, primaries, thresholdPercent: threshold },
          'pool in panic mode: too few healthy backends, sending to all of them',
        );
      } else this.#log.info({ pool: this.name }, 'pool left panic mode');
    }
    this.version++;
    this.queue.serve();
  }

  #configureSticky(config: PoolConfig): void {
    const source = config.sticky?.source;
    if (source === undefined) this.sticky = null;
    else if (this.sticky === null) this.sticky = new SourceStickyTable(source.ttl_ms, source.max_entries);
    else this.sticky.configure(source.ttl_ms, source.max_entries);
  }
}

/** What a pool's health checks are built from (see PoolStateRegistry.commit). */
export interface CheckSetup {
  readonly backends: readonly CheckedBackend[];
  readonly key: string;
}
