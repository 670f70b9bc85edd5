// The state of one backend that outlives snapshots: administrative state, active-check verdict,
// passive ejection and traffic counters. Keyed by pool name + address in the PoolState the Runtime
// owns, so a reload keeps it for every backend that remains and two segments sharing a pool see one.

/** Administrative state: `drain` takes no new work except sticky clients; `maintenance` takes none. */
export type BackendAdminState = 'ready' | 'drain' | 'maintenance';

/** The active health check's verdict. Backends start `up` (as HAProxy servers do) until `fall` failures. */
export type HealthVerdict = 'up' | 'down';

/** The last active check of a backend. */
export interface CheckRecord {
  readonly ok: boolean;
  /** ms since the epoch. */
  readonly at: number;
  /** What was seen: `HTTP 200`, `ECONNREFUSED`, `timeout after 1000 ms` ... */
  readonly detail: string;
}

/** Mutable per-backend state; only PoolState and the BackendPools of its pool change it. */
export class BackendState {
  readonly pool: string;
  /** `host:port` as configured: the key within the pool. */
  readonly address: string;
  /** Name as in the latest config (logs). */
  name: string;

  adminState: BackendAdminState = 'ready';

  /** Active checks: verdict, consecutive results, last check. */
  health: HealthVerdict = 'up';
  checkStreakOk = 0;
  checkStreakFailed = 0;
  lastCheck: CheckRecord | null = null;
  /**
   * How the live cluster nodes that report this backend see it (their majority), set by the cluster
   * link on every change; null without a cluster or reports. Decides only with `cluster_view: majority`.
   */
  clusterHealth: HealthVerdict | null = null;

  /** Passive checks (outlier detection). */
  consecutiveConnectFailures = 0;
  consecutive5xx = 0;
  /** ms since the epoch until which the backend is ejected; 0 when it is not. */
  ejectedUntil = 0;
  /** Ejections in a row: the next one lasts (streak + 1) × base_ejection_ms. */
  ejectionStreak = 0;
  /** When the last ejection ended (ms); a long quiet time resets the streak. */
  returnedAt = 0;

  /** Requests/connections in flight over every segment and snapshot. */
  inflight = 0;
  /** Requests/connections assigned. */
  served = 0;
  /** Connection failures (refused, timed out, lost before a response). */
  failures = 0;
  /** 5xx responses seen (the backend's, and seglb's 502/504 for it). */
  responses5xx = 0;
  /** Ejections so far. */
  ejections = 0;
  /** Up/down transitions of the active check so far. */
  transitions = 0;

  /** Derived by PoolState: in service (health up, not ejected). */
  healthy = true;
  /** Derived by PoolState: new work may be sent here (healthy and ready, or panic mode). */
  usable = true;

  constructor(pool: string, address: string, name: string) {
    this.pool = pool;
    this.address = address;
    this.name = name;
  }

  /** True while an ejection lasts. */
  isEjected(now: number): boolean {
    return this.ejectedUntil > now;
  }

  /**
   * Counts one active check result against the rise/fall thresholds (HAProxy semantics: `fall`
   * consecutive failures take an up backend down, `rise` consecutive successes bring it back).
   * @returns the new verdict when it changed, else null
   */
  recordCheck(record: CheckRecord, rise: number, fall: number): HealthVerdict | null {
    this.lastCheck = record;
    if (record.ok) {
      this.checkStreakOk++;
      this.checkStreakFailed = 0;
      if (this.health === 'down' && this.checkStreakOk >= rise) {
        this.health = 'up';
        this.transitions++;
        return 'up';
      }
    } else {
      this.checkStreakFailed++;
      this.checkStreakOk = 0;
      if (this.health === 'up' && this.checkStreakFailed >= fall) {
        this.health = 'down';
        this.transitions++;
        return 'down';
      }
    }
    return null;
  }
}
