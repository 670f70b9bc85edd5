// The deny-log rate limiter: at most N lines per second, and the suppressed count always reported.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LogRateLimiter } from '../../src/observe/log.ts';

test('LogRateLimiter allows N per second and carries the suppressed count to the next line', () => {
  const rl = new LogRateLimiter(3);
  const t0 = 10_000;
  assert.deepEqual([rl.take(t0), rl.take(t0 + 1), rl.take(t0 + 2)], [0, 0, 0]);
  assert.equal(rl.take(t0 + 3), -1);
  assert.equal(rl.take(t0 + 4), -1);
  assert.equal(rl.take(t0 + 1000), 2, 'the first line of the next second says 2 were suppressed');
  assert.equal(rl.take(t0 + 1001), 0);
});

test('LogRateLimiter.flush reports a suppressed count once the flood stopped', () => {
  const rl = new LogRateLimiter(1);
  const t0 = 50_000;
  rl.take(t0);
  for (let i = 0; i < 10; i++) rl.take(t0 + 10);
  assert.equal(rl.flush(t0 + 500), 0, 'window still open: the next line may still carry it');
  assert.equal(rl.flush(t0 + 1000), 10);
  assert.equal(rl.flush(t0 + 2000), 0, 'reported once');
});

test('LogRateLimiter with 0 per second suppresses everything', () => {
  const rl = new LogRateLimiter(0);
  assert.equal(rl.take(1), -1);
  assert.equal(rl.flush(2000), 1);
});
