// Active health checks of one pool: one probe series per backend, each started at a random point of
// the first interval and repeated every interval ± jitter (HAProxy `spread-checks`), so checks of
// many backends and many seglb nodes do not fire together. Verdicts go to the pool's shared state.

import type { HealthCheckConfig } from '../../config/types.ts';
import type { Endpoint } from '../../net/endpoint.ts';
import type { SourceSet } from '../../policy/index.ts';
import type { BackendState, CheckRecord } from '../backend-state.ts';
import type { BackendTlsOptions } from '../backend-tls.ts';
import { type ProbeOutcome, runProbe } from './probes.ts';
import { parseStatusRanges, type StatusRanges } from './status-ranges.ts';

/** One backend to check. */
export interface CheckedBackend {
  readonly state: BackendState;
  readonly endpoint: Endpoint;
  readonly tls: BackendTlsOptions | null;
}

/** Receives every check result (PoolState applies rise/fall and logs changes). */
export type CheckReporter = (state: BackendState, record: CheckRecord) => void;

/** Runs the checks of one pool until stop(). */
export class HealthChecker {
  readonly #config: HealthCheckConfig;
  readonly #ranges: StatusRanges;
  readonly #backends: readonly CheckedBackend[];
  readonly #subnets: SourceSet;
  readonly #report: CheckReporter;
  readonly #random: () => number;
  readonly #timers = new Set<NodeJS.Timeout>();
  readonly #cancels = new Set<() => void>();
  #stopped = false;
  /** Checks completed (for tests and status). */
  completed = 0;

  /**
   * @param config - the pool's health_check section
   * @param backends - the backends to check (the pool's current config)
   * @param subnets - destinations allowed for the pool (union of its segments' backend_subnets)
   * @param report - called with each result
   * @param random - a source of [0, 1) numbers (tests pass a fixed one)
   */
  constructor(
    config: HealthCheckConfig,
    backends: readonly CheckedBackend[],
    subnets: SourceSet,
    report: CheckReporter,
    random: () => number = Math.random,
  ) {
    this.#config = config;
    this.#ranges = parseStatusRanges(config.http.expect_status);
    this.#backends = backends;
    this.#subnets = subnets;
    this.#report = report;
    this.#random = random;
  }

  /** Schedules the first check of every backend at a random point of the first interval. */
  start(): void {
    for (const b of this.#backends) this.#schedule(b, this.#random() * this.#config.interval_ms);
  }

  /** Stops every timer and cancels probes in flight; no report follows. */
  stop(): void {
    this.#stopped = true;
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
    for (const c of this.#cancels) c();
    this.#cancels.clear();
  }

  #schedule(b: CheckedBackend, delayMs: number): void {
    if (this.#stopped) return;
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      this.#check(b);
    }, delayMs);
    timer.unref();
    this.#timers.add(timer);
  }

  #check(b: CheckedBackend): void {
    if (this.#stopped) return;
    let cancel: (() => void) | null = null;
    let settled = false;
    cancel = runProbe(
      {
        host: b.endpoint.host,
        port: b.endpoint.port,
        config: this.#config,
        ranges: this.#ranges,
        tls: b.tls,
        subnets: this.#subnets,
      },
      (outcome: ProbeOutcome) => {
        settled = true; // the outcome may come before runProbe returns (a refused address)
        if (cancel !== null) this.#cancels.delete(cancel);
        if (this.#stopped) return;
        this.completed++;
        this.#report(b.state, { ok: outcome.ok, at: Date.now(), detail: outcome.detail });
        this.#schedule(b, this.#nextDelay());
      },
    );
    if (!settled) this.#cancels.add(cancel);
  }

  /** interval ± jitter_percent, at random. */
  #nextDelay(): number {
    const c = this.#config;
    const spread = (c.interval_ms * c.jitter_percent) / 100;
    return Math.max(1, c.interval_ms + (this.#random() * 2 - 1) * spread);
  }
}
