// The retry budget: retries over the window are at most budget_percent of the requests plus a floor;
// a burst is paid from history; old history leaves the window.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RetryBudget } from '../../src/pools/retry-budget.ts';

describe('retry budget', () => {
  it('allows budget_percent of the requests in the window plus min_retries_per_second × window', () => {
    const b = new RetryBudget({ budget_percent: 20, min_retries_per_second: 1, window_ms: 10_000 });
    const t0 = 1_000_000;
    for (let i = 0; i < 1000; i++) b.deposit(t0);
    assert.equal(b.allowance(t0), 200 + 10);
    let allowed = 0;
    while (b.tryWithdraw(t0)) allowed++;
    assert.equal(allowed, 210, 'a burst of retries is paid from the recent requests');
    assert.equal(b.exhausted, 1);
  });

  it('forgets requests and retries older than the window', () => {
    const b = new RetryBudget({ budget_percent: 50, min_retries_per_second: 0, window_ms: 1000 });
    const t0 = 5_000_000;
    for (let i = 0; i < 100; i++) b.deposit(t0);
    for (let i = 0; i < 50; i++) assert.ok(b.tryWithdraw(t0));
    assert.equal(b.tryWithdraw(t0 + 500), false);
    assert.equal(b.allowance(t0 + 1100), 0, 'the requests left the window');
    b.deposit(t0 + 1100);
    b.deposit(t0 + 1100);
    assert.ok(b.tryWithdraw(t0 + 1100), 'and so did the retries');
    assert.equal(b.tryWithdraw(t0 + 1100), false);
  });

  it('caps a sustained outage at budget_percent of the load', () => {
    const b = new RetryBudget({ budget_percent: 20, min_retries_per_second: 0, window_ms: 10_000 });
    let retries = 0;
    let requests = 0;
    // 60 s of 100 requests per second that all fail and would each retry twice.
    for (let ms = 0; ms < 60_000; ms += 10) {
      b.deposit(ms);
      requests++;
      for (let r = 0; r < 2; r++) if (b.tryWithdraw(ms)) retries++;
    }
    assert.ok(retries / requests <= 0.2 + 0.01, `${retries} retries for ${requests} requests`);
    assert.ok(retries / requests > 0.18);
  });
});
