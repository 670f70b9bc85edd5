// Tests the merge rules: hybrid clock ordering, last-writer-wins with tombstones, expiry and the
// grace period, convergence of replicas fed the same registers in any order (with duplicates), and
// the bucketed digest that finds exactly the keys that differ.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { compareStamps, HybridClock, type Stamp } from '../../src/cluster/hlc.ts';
import { fromWire, QUARANTINE, STICKY, toWire } from '../../src/cluster/keyspaces.ts';
import {
  DIGEST_BUCKETS,
  differingBuckets,
  isVisible,
  LwwMap,
  makeRegister,
  type Register,
  sparseBuckets,
} from '../../src/cluster/lww-map.ts';

/** A seeded PRNG (mulberry32) so a failure can be replayed. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const NOW = 1_800_000_000_000;

describe('hybrid logical clock', () => {
  test('stamps only grow, even when the wall clock stands still or goes back', () => {
    let t = NOW;
    const clock = new HybridClock('a', 60_000, () => t);
    const s1 = clock.now();
    const s2 = clock.now();
    t -= 5000;
    const s3 = clock.now();
    assert.ok(compareStamps(s1, s2) < 0 && compareStamps(s2, s3) < 0);
    assert.equal(s3.wall, NOW);
    assert.equal(s3.counter, 2);
  });

  test('a stamp observed from a peer orders later local stamps after it; too far ahead is refused', () => {
    const t = NOW;
    const clock = new HybridClock('a', 60_000, () => t);
    assert.ok(clock.observe({ wall: NOW + 30_000, counter: 4 }));
    const s = clock.now();
    assert.deepEqual([s.wall, s.counter], [NOW + 30_000, 5]);
    assert.equal(clock.observe({ wall: NOW + 61_000, counter: 0 }), false);
    assert.equal(clock.now().wall, NOW + 30_000);
  });

  test('equal wall and counter: the node id breaks the tie', () => {
    const a: Stamp = { wall: 1, counter: 0, node: 'a' };
    const b: Stamp = { wall: 1, counter: 0, node: 'b' };
    assert.ok(compareStamps(a, b) < 0 && compareStamps(b, a) > 0 && compareStamps(a, a) === 0);
  });
});

describe('last-writer-wins map', () => {
  const stamp = (wall: number, node = 'a', counter = 0): Stamp => ({ wall, counter, node });

  test('the higher stamp wins in either order; equal stamps are idempotent', () => {
    const older = makeRegister('k', stamp(NOW), Number.POSITIVE_INFINITY, 'old');
    const newer = makeRegister('k', stamp(NOW, 'b'), Number.POSITIVE_INFINITY, 'new');
    for (const order of [
      [older, newer],
      [newer, older],
      [newer, older, newer, older],
    ]) {
      const m = new LwwMap<string>('t', 1000, 10);
      for (const r of order) m.merge(r, NOW);
      assert.equal(m.get('k', NOW), 'new');
    }
    const m = new LwwMap<string>('t', 1000, 10);
    assert.equal(m.merge(older, NOW), 'applied');
    assert.equal(m.merge(older, NOW), 'stale');
  });

  test('a tombstone hides the value and beats an older copy that arrives later', () => {
    const m = new LwwMap<string>('t', 60_000, 10);
    m.merge(makeRegister<string>('k', stamp(NOW + 10), NOW + 10, null), NOW + 10);
    assert.equal(m.merge(makeRegister('k', stamp(NOW), Number.POSITIVE_INFINITY, 'v'), NOW + 20), 'stale');
    assert.equal(m.get('k', NOW + 20), undefined);
    assert.equal(m.size, 1, 'the tombstone is kept');
    assert.equal(m.sweep(NOW + 10 + 60_000), 1, 'and forgotten after the grace period');
  });

  test('an expired value stops being visible at once, and is kept for the grace period to win over older copies', () => {
    const m = new LwwMap<string>('t', 5000, 10);
    m.merge(makeRegister('k', stamp(NOW, 'b'), NOW + 100, 'short'), NOW);
    assert.equal(m.get('k', NOW + 99), 'short');
    assert.equal(m.get('k', NOW + 100), undefined);
    // An older write with a longer life arrives late: it must not come back.
    assert.equal(m.merge(makeRegister('k', stamp(NOW, 'a'), NOW + 1_000_000, 'older'), NOW + 200), 'stale');
    assert.equal(m.get('k', NOW + 200), undefined);
    // A register past its retention is not stored, but still removes what it supersedes.
    const n = new LwwMap<string>('t', 5000, 10);
    n.merge(makeRegister('k', stamp(NOW), Number.POSITIVE_INFINITY, 'v'), NOW);
    assert.equal(n.merge(makeRegister<string>('k', stamp(NOW + 1), NOW + 1, null), NOW + 10_000), 'applied');
    assert.equal(n.size, 0);
  });

  test('maxEntries bounds the map; replacing an existing key is always allowed', () => {
    const m = new LwwMap<string>('t', 0, 2);
    m.merge(makeRegister('a', stamp(NOW), Number.POSITIVE_INFINITY, '1'), NOW);
    m.merge(makeRegister('b', stamp(NOW), Number.POSITIVE_INFINITY, '1'), NOW);
    assert.equal(m.merge(makeRegister('c', stamp(NOW), Number.POSITIVE_INFINITY, '1'), NOW), 'full');
    assert.equal(m.merge(makeRegister('a', stamp(NOW + 1), Number.POSITIVE_INFINITY, '2'), NOW), 'applied');
    assert.ok(!m.hasRoom('c') && m.hasRoom('a'));
  });

  test('replicas fed the same registers in any order, with duplicates, converge (1000 random runs)', () => {
    for (let seed = 1; seed <= 1000; seed++) {
      const rand = rng(seed);
      const writes: Register<string>[] = [];
      for (let i = 0; i < 30; i++) {
        const key = `k${Math.floor(rand() * 6)}`;
        const node = ['a', 'b', 'c'][Math.floor(rand() * 3)] as string;
        const wall = NOW + Math.floor(rand() * 20);
        const dead = rand() < 0.3;
        const exp = dead ? wall : rand() < 0.2 ? NOW + 5 : Number.POSITIVE_INFINITY;
        // A node never issues one stamp twice: the counter keeps every write's stamp unique.
        writes.push(makeRegister(key, stamp(wall, node, i), exp, dead ? null : `v${i}`));
      }
      const replicas = [0, 1, 2].map(() => new LwwMap<string>('t', 1_000_000, 1000));
      for (const r of replicas) {
        const order = [...writes, ...writes.slice(0, 10)].sort(() => rand() - 0.5);
        for (const w of order) r.merge(w, NOW + 10);
      }
      const view = (m: LwwMap<string>) =>
        [...m.registers()]
          .map((r) => `${r.key}=${r.value}@${r.stamp.wall}.${r.stamp.counter}.${r.stamp.node}`)
          .sort();
      const [r0, r1, r2] = replicas as [LwwMap<string>, LwwMap<string>, LwwMap<string>];
      assert.deepEqual(view(r1), view(r0), `seed ${seed}`);
      assert.deepEqual(view(r2), view(r0), `seed ${seed}`);
      const d0 = r0.digest(Number.POSITIVE_INFINITY);
      assert.equal(differingBuckets(d0, sparseBuckets(r2.digest(Number.POSITIVE_INFINITY))).count, 0);
    }
  });
});

describe('digest', () => {
  test('finds exactly the buckets of the keys that differ, out of 10,000', () => {
    const a = new LwwMap<string>('t', 0, 100_000);
    const b = new LwwMap<string>('t', 0, 100_000);
    for (let i = 0; i < 10_000; i++) {
      const reg = makeRegister(
        `key-${i}`,
        { wall: NOW, counter: i, node: 'a' },
        Number.POSITIVE_INFINITY,
        'v',
      );
      a.merge(reg, NOW);
      b.merge(reg, NOW);
    }
    const changed = makeRegister(
      'key-77',
      { wall: NOW + 1, counter: 0, node: 'b' },
      Number.POSITIVE_INFINITY,
      'w',
    );
    const added = makeRegister(
      'new-key',
      { wall: NOW + 1, counter: 1, node: 'b' },
      Number.POSITIVE_INFINITY,
      'w',
    );
    b.merge(changed, NOW);
    b.merge(added, NOW);
    const da = a.digest(Number.POSITIVE_INFINITY);
    const db = b.digest(Number.POSITIVE_INFINITY);
    assert.notEqual(da.rootA, db.rootA);
    const { marked, count } = differingBuckets(da, sparseBuckets(db));
    assert.equal(count, changed.bucket === added.bucket ? 1 : 2);
    const push = b.registersInBuckets(marked);
    assert.ok(push.length < 30, `only the differing buckets are sent (${push.length} of ${b.size})`);
    for (const r of push) a.merge(r, NOW);
    assert.equal(differingBuckets(a.digest(Number.POSITIVE_INFINITY), sparseBuckets(db)).count, 0);
    assert.equal(a.get('key-77', NOW), 'w');
    // Writes at or after `before` are left out of the digest (still in flight as deltas).
    assert.equal(b.digest(NOW + 1).count, 9_999);
    assert.equal(sparseBuckets(new LwwMap('e', 0, 1).digest(Number.POSITIVE_INFINITY)).length, 0);
    assert.equal(DIGEST_BUCKETS & (DIGEST_BUCKETS - 1), 0);
  });
});

describe('wire form', () => {
  test('round trip, and every field of a peer register is checked', () => {
    const reg = makeRegister('10.0.0.0/8', { wall: NOW, counter: 2, node: 'n1' }, NOW + 5, {
      reason: 'scan',
      addedAt: NOW,
    });
    const back = fromWire(QUARANTINE, JSON.parse(JSON.stringify(toWire(reg))));
    assert.deepEqual(back, reg);
    const tomb = makeRegister('k', { wall: NOW, counter: 0, node: 'n1' }, NOW, null);
    assert.deepEqual(fromWire(STICKY, toWire(tomb)), tomb);
    assert.ok(!isVisible(tomb, NOW - 1));
    for (const bad of [
      ['10.1.0.0/8', NOW, 0, 'n1', null, { reason: '', addedAt: 1 }], // host bits set
      ['10.0.0.1', NOW, 0, 'n1', null, { reason: '', addedAt: 1 }], // not canonical (needs /32)
      ['10.0.0.0/8', -1, 0, 'n1', null, { reason: '', addedAt: 1 }],
      ['10.0.0.0/8', NOW, 0, 'bad id!', null, { reason: '', addedAt: 1 }],
      ['10.0.0.0/8', NOW, 0, 'n1', null, { reason: 5, addedAt: 1 }],
      ['10.0.0.0/8', NOW, 0, 'n1', null], // a tombstone must say when it was made
      ['10.0.0.0/8', NOW, 0.5, 'n1', null, { reason: '', addedAt: 1 }],
      'not an array',
    ]) {
      assert.equal(fromWire(QUARANTINE, bad), undefined, JSON.stringify(bad));
    }
  });
});
