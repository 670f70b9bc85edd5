// source_hash: one client address, one backend; addresses spread by weight over the map.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { PoolMember } from '../../src/pools/algorithm.ts';
import { hashString } from '../../src/pools/key-hash.ts';
import { SOURCE_HASH } from '../../src/pools/source-hash.ts';

function member(name: string, weight = 1): PoolMember {
  return { id: 0, name, weight, inflight: 0, usable: true, backup: false, maxConnections: 0, key: name };
}

describe('source_hash', () => {
  it('sends one address to one backend, and addresses in proportion to weight', () => {
    const ms = [member('a', 1), member('b', 2), member('c', 1)];
    const alg = SOURCE_HASH.create(ms);
    const counts = new Map<string, number>();
    const n = 20_000;
    for (let i = 0; i < n; i++) {
      const h = hashString(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`);
      const a = alg.pick(null, h);
      const b = alg.pick(null, h);
      assert.equal(a, b);
      if (a.kind === 'ok') counts.set(a.member.name, (counts.get(a.member.name) ?? 0) + 1);
    }
    for (const m of ms) {
      const share = (counts.get(m.name) ?? 0) / n;
      assert.ok(Math.abs(share - m.weight / 4) < 0.02, `${m.name}: ${share.toFixed(3)}`);
    }
  });

  it('moves an address off a down backend, and back when it recovers', () => {
    // Map-based hashing (HAProxy's default): a membership change remaps; consistent_hash does not.
    const ms = [member('a'), member('b'), member('c')];
    const alg = SOURCE_HASH.create(ms);
    const h = hashString('192.0.2.7');
    const first = alg.pick(null, h);
    assert.equal(first.kind, 'ok');
    if (first.kind !== 'ok') return;
    first.member.usable = false;
    alg.onMembersChanged();
    const moved = alg.pick(null, h);
    assert.ok(moved.kind === 'ok' && moved.member !== first.member);
    first.member.usable = true;
    alg.onMembersChanged();
    const back = alg.pick(null, h);
    assert.ok(back.kind === 'ok' && back.member === first.member);
  });
});
