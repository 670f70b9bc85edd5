// first: fill backends in pool order up to max_connections (HAProxy `balance first`).

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { PoolMember } from '../../src/pools/algorithm.ts';
import { PICK_FULL } from '../../src/pools/algorithm.ts';
import { FIRST } from '../../src/pools/first.ts';

function member(name: string, maxConnections: number): PoolMember {
  return { id: 0, name, weight: 1, inflight: 0, usable: true, backup: false, maxConnections, key: name };
}

describe('first', () => {
  it('fills the first backend, then the next, then says full', () => {
    const ms = [member('a', 2), member('b', 3), member('c', 1)];
    const alg = FIRST.create(ms);
    const order: string[] = [];
    for (let i = 0; i < 6; i++) {
      const o = alg.pick(null, 0);
      assert.equal(o.kind, 'ok');
      if (o.kind !== 'ok') continue;
      o.member.inflight++;
      order.push(o.member.name);
    }
    assert.deepEqual(order, ['a', 'a', 'b', 'b', 'b', 'c']);
    assert.equal(alg.pick(null, 0), PICK_FULL);
    ms[1]!.inflight--; // a slot frees on b: the next request goes there, not to a later backend
    const o = alg.pick(null, 0);
    assert.ok(o.kind === 'ok' && o.member.name === 'b');
  });

  it('without max_connections sends everything to the first usable backend', () => {
    const ms = [member('a', 0), member('b', 0)];
    const alg = FIRST.create(ms);
    for (let i = 0; i < 10; i++) {
      const o = alg.pick(null, 0);
      assert.ok(o.kind === 'ok' && o.member.name === 'a');
    }
    ms[0]!.usable = false;
    alg.onMembersChanged();
    const o = alg.pick(null, 0);
    assert.ok(o.kind === 'ok' && o.member.name === 'b');
  });
});
