// random_two_choices: weighted draws, the less loaded of two wins; distribution by weight with no
// concurrency, and load-aware under concurrency.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { PoolMember } from '../../src/pools/algorithm.ts';
import { XorShift32 } from '../../src/pools/key-hash.ts';
import { createPowerOfTwoChoices } from '../../src/pools/p2c.ts';

function member(name: string, weight = 1): PoolMember {
  return { id: 0, name, weight, inflight: 0, usable: true, backup: false, maxConnections: 0, key: name };
}

describe('random_two_choices', () => {
  it('follows the weights when nothing is in flight (within 3%)', () => {
    const ms = [member('a', 3), member('b', 1), member('c', 4)];
    const alg = createPowerOfTwoChoices(ms, new XorShift32(42));
    const counts = new Map<string, number>();
    const n = 40_000;
    for (let i = 0; i < n; i++) {
      const o = alg.pick(null, 0);
      assert.equal(o.kind, 'ok');
      if (o.kind === 'ok') counts.set(o.member.name, (counts.get(o.member.name) ?? 0) + 1);
    }
    for (const m of ms) {
      const share = (counts.get(m.name) ?? 0) / n;
      assert.ok(Math.abs(share - m.weight / 8) < 0.03, `${m.name}: ${share.toFixed(3)}`);
    }
  });

  it('sends to the less loaded of its two draws, so a busy member gets little', () => {
    const ms = [member('a'), member('b'), member('c'), member('d')];
    ms[0]!.inflight = 50; // a is slow: its requests pile up
    const alg = createPowerOfTwoChoices(ms, new XorShift32(7));
    let toA = 0;
    for (let i = 0; i < 4000; i++) {
      const o = alg.pick(null, 0);
      if (o.kind !== 'ok') continue;
      if (o.member.name === 'a') toA++;
      else {
        o.member.inflight++;
        if (o.member.inflight > 10) o.member.inflight = 10; // others complete quickly
      }
    }
    // a only wins when both draws are a: 1/16 of the time at most.
    assert.ok(toA < 4000 / 16 + 60, `a got ${toA}`);
  });

  it('keeps in-flight counts near the weights under steady concurrency', () => {
    const ms = [member('a', 1), member('b', 2), member('c', 1)];
    const alg = createPowerOfTwoChoices(ms, new XorShift32(9));
    const ring: PoolMember[] = [];
    const served = new Map<string, number>();
    for (let i = 0; i < 20_000; i++) {
      const o = alg.pick(null, 0);
      if (o.kind !== 'ok') continue;
      o.member.inflight++;
      served.set(o.member.name, (served.get(o.member.name) ?? 0) + 1);
      ring.push(o.member);
      if (ring.length > 40) ring.shift()!.inflight--;
    }
    const total = 20_000;
    for (const m of ms) {
      const share = (served.get(m.name) ?? 0) / total;
      assert.ok(Math.abs(share - m.weight / 4) < 0.05, `${m.name}: ${share.toFixed(3)}`);
    }
  });
});
