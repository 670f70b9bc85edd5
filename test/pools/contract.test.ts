// The LbAlgorithm contract, checked for every registered algorithm: nothing usable gives none,
// unusable members are never picked, backups only when no primary is usable, avoid, max_connections
// (full members skipped, `full` when all are), frozen shared outcomes, bad weights.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { LbAlgorithm, LbAlgorithmName, PoolMember } from '../../src/pools/algorithm.ts';
import { PICK_FULL, PICK_NONE } from '../../src/pools/algorithm.ts';
import { LB_ALGORITHMS } from '../../src/pools/algorithms.ts';
import { mix32 } from '../../src/pools/key-hash.ts';

let nextId = 1;
function member(name: string, weight = 1, backup = false, maxConnections = 0): PoolMember {
  return {
    id: nextId++,
    name,
    weight,
    inflight: 0,
    usable: true,
    backup,
    maxConnections,
    key: `10.0.0.${nextId}:80|${name}`,
  };
}

/** A varying key hash per pick, so hash algorithms spread over their table like real traffic. */
let counter = 0;
function pickName(alg: LbAlgorithm, avoid: PoolMember | null = null): string {
  const out = alg.pick(avoid, mix32(counter++));
  return out.kind === 'ok' ? out.member.name : out.kind;
}

function names(alg: LbAlgorithm, count: number, avoid: PoolMember | null = null): Set<string> {
  const seen = new Set<string>();
  for (let i = 0; i < count; i++) seen.add(pickName(alg, avoid));
  return seen;
}

for (const name of Object.keys(LB_ALGORITHMS) as LbAlgorithmName[]) {
  const create = (ms: readonly PoolMember[]) => LB_ALGORITHMS[name].create(ms, { hashTableSize: 1009 });
  // `first` always takes the first member with room: spreading needs max_connections.
  const spreads = name !== 'first';

  describe(`${name}: contract`, () => {
    it('returns none when the pool is empty or every member is down', () => {
      assert.equal(create([]).pick(null, 1), PICK_NONE);
      const ms = [member('a'), member('b'), member('c', 1, true)];
      for (const m of ms) m.usable = false;
      const alg = create(ms);
      assert.equal(alg.pick(null, 7), PICK_NONE);
      assert.equal(alg.pick(ms[0]!, 7), PICK_NONE);
    });

    it('never picks an unusable member, and uses the others', () => {
      const ms = [member('a', 3), member('b', 1), member('c', 2)];
      ms[1]!.usable = false;
      const seen = names(create(ms), 2000);
      assert.equal(seen.has('b'), false);
      assert.ok(seen.has('a'));
      if (spreads) assert.ok(seen.has('c'));
    });

    it('uses backups only when every primary is down', () => {
      const ms = [member('p1'), member('p2'), member('b1', 1, true), member('b2', 1, true)];
      const alg = create(ms);
      assert.deepEqual(
        [...names(alg, 500)].filter((n) => n.startsWith('b')),
        [],
      );
      ms[0]!.usable = false;
      alg.onMembersChanged();
      assert.deepEqual([...names(alg, 500)], ['p2']);
      ms[1]!.usable = false;
      alg.onMembersChanged();
      const backups = [...names(alg, 500)].sort();
      assert.deepEqual(backups, spreads ? ['b1', 'b2'] : ['b1']);
      ms[0]!.usable = true;
      alg.onMembersChanged();
      assert.deepEqual([...names(alg, 500)], ['p1']);
    });

    it('avoids the member that just failed when another can take the request', () => {
      const ms = [member('a', 5), member('b', 1), member('c', 1)];
      const alg = create(ms);
      for (const avoid of ms) {
        const seen = names(alg, 500, avoid);
        assert.equal(seen.has(avoid.name), false, `avoid ${avoid.name}`);
        assert.equal(seen.has('none'), false);
      }
    });

    it('returns the avoided member when it is the only usable one', () => {
      const ms = [member('a'), member('b')];
      const alg = create(ms);
      ms[1]!.usable = false;
      alg.onMembersChanged();
      assert.equal(pickName(alg, ms[0]!), 'a');
    });

    it('skips full members and says `full` when every usable member is full', () => {
      const ms = [member('a', 1, false, 2), member('b', 1, false, 1), member('c', 1, true)];
      const alg = create(ms);
      ms[0]!.inflight = 2; // a is full
      assert.deepEqual([...names(alg, 300)], ['b']);
      ms[1]!.inflight = 1; // b too: the backup does not take the overflow
      assert.equal(alg.pick(null, 3), PICK_FULL);
      assert.equal(alg.pick(ms[0]!, 3), PICK_FULL);
      ms[0]!.inflight = 1;
      assert.deepEqual([...names(alg, 300)], ['a']);
      // avoid alone has room: it is still returned rather than `full`
      assert.equal(pickName(alg, ms[0]!), 'a');
      for (const m of ms) m.usable = false;
      alg.onMembersChanged();
      assert.equal(alg.pick(null, 3), PICK_NONE, 'nothing usable is `none`, not `full`');
    });

    it('skips a member that went down without onMembersChanged', () => {
      const ms = [member('a'), member('b'), member('bk', 1, true)];
      const alg = create(ms);
      ms[0]!.usable = false;
      assert.deepEqual([...names(alg, 200)], ['b']);
      ms[1]!.usable = false;
      assert.deepEqual([...names(alg, 200)], ['bk']);
    });

    it('returns shared frozen outcomes', () => {
      const ms = [member('a'), member('b')];
      const alg = create(ms);
      const seen = new Map<PoolMember, unknown>();
      for (let i = 0; i < 100; i++) {
        const out = alg.pick(null, mix32(i));
        assert.equal(out.kind, 'ok');
        if (out.kind !== 'ok') continue;
        assert.ok(Object.isFrozen(out));
        const prev = seen.get(out.member);
        if (prev) assert.equal(out, prev);
        else seen.set(out.member, out);
      }
    });

    it('never throws on out-of-range weights', () => {
      const ms = [member('zero', 0), member('nan', Number.NaN), member('huge', 1e9), member('neg', -1)];
      const seen = names(create(ms), 500);
      assert.equal(seen.has('none'), false);
    });
  });
}
