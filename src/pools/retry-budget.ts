// The per-pool retry budget: over a sliding window, retries may be at most budget_percent of the
// requests started, plus a floor of min_retries_per_second (Finagle's RetryBudget). A sustained
// outage then costs the backends at most (1 + budget_percent/100) times the load, not (1 + retries)
// times, while the burst of retries when one backend dies (all its requests in flight reset at once)
// is paid from the recent history and goes through.

import type { RetryBudgetConfig } from '../config/types.ts';

/** Slots of the sliding window: its resolution is window_ms / SLOTS. */
const SLOTS = 10;

/**
 * One pool's budget, shared by every segment and snapshot using the pool.
 *
 * Envoy's `retry_budget` caps *concurrent* retries at a share of concurrent requests. When a backend
 * is killed, every request in flight on it resets in the same few milliseconds, so such a cap fails
 * exactly the requests a retry would save: bench/pools/failover.bench.ts with that cap failed 33–39
 * requests per run at Envoy's 20 % and 7–15 at 50 %; counting over a window failed none.
 */
export class RetryBudget {
  #config: RetryBudgetConfig;
  readonly #deposits = new Float64Array(SLOTS);
  readonly #withdrawals = new Float64Array(SLOTS);
  #sumDeposits = 0;
  #sumWithdrawals = 0;
  #slot = 0;
  /** Start (ms) of the current slot. */
  #slotStart = 0;
  /** Requests (HTTP) and connections (TCP) in flight to the pool (for status). */
  active = 0;
  /** Of those, the ones that were retried (for status). */
  retrying = 0;
  /** Retries refused because the budget was spent. */
  exhausted = 0;

  constructor(config: RetryBudgetConfig) {
    this.#config = config;
  }

  /** Applies a new config (reload); the window's history stays. */
  configure(config: RetryBudgetConfig): void {
    this.#config = config;
  }

  /** A request or connection starts (one deposit). */
  deposit(now: number): void {
    this.#advance(now);
    this.#deposits[this.#slot]!++;
    this.#sumDeposits++;
  }

  /** Retries the window allows in total right now. */
  allowance(now: number): number {
    this.#advance(now);
    const c = this.#config;
    return (c.budget_percent * this.#sumDeposits) / 100 + (c.min_retries_per_second * c.window_ms) / 1000;
  }

  /**
   * A request wants a retry. @returns true (and counts it) when the window's budget allows; false
   * (counted in `exhausted`) when it is spent: the caller answers with the original error.
   */
  tryWithdraw(now: number): boolean {
    if (this.#sumWithdrawals + 1 > this.allowance(now)) {
      this.exhausted++;
      return false;
    }
    this.#withdrawals[this.#slot]!++;
    this.#sumWithdrawals++;
    return true;
  }

  /** Retries counted in the current window. */
  get withdrawn(): number {
    return this.#sumWithdrawals;
  }

  /** Moves the window to `now`, dropping slots that fell out of it. */
  #advance(now: number): void {
    const slotMs = this.#config.window_ms / SLOTS;
    if (now - this.#slotStart < slotMs) return;
    const steps = Math.min(SLOTS, Math.floor((now - this.#slotStart) / slotMs));
    for (let k = 0; k < steps; k++) {
      this.#slot = this.#slot + 1 === SLOTS ? 0 : this.#slot + 1;
      this.#sumDeposits -= this.#deposits[this.#slot]!;
      this.#sumWithdrawals -= this.#withdrawals[this.#slot]!;
      this.#deposits[this.#slot] = 0;
      this.#withdrawals[this.#slot] = 0;
    }
    this.#slotStart = steps === SLOTS ? now : this.#slotStart + steps * slotMs;
  }
}
