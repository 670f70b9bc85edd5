// Unit tests of the load-balancing algorithms as pure objects: exact sequences, distributions, avoid,
// backups, health changes. Socket-level distribution through a real pool is tested elsewhere.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { LbAlgorithm, LbAlgorithmName, PoolMember } from '../../src/pools/algorithm.ts';
import { MAX_MEMBER_WEIGHT, PICK_NONE, selectActiveGroup } from '../../src/pools/algorithm.ts';
import { getAlgorithm, LB_ALGORITHMS } from '../../src/pools/algorithms.ts';

/** The algorithms whose exact sequences this file pins; the others have their own files (contract.test.ts covers all). */
const NAMES: readonly LbAlgorithmName[] = ['round_robin', 'weighted_round_robin', 'least_connections'];
const ALL: readonly LbAlgorithmName[] = [
  ...NAMES,
  'random_two_choices',
  'source_hash',
  'consistent_hash',
  'first',
];
const KEYED: ReadonlySet<LbAlgorithmName> = new Set(['source_hash', 'consistent_hash']);

let nextId = 1;
function member(name: string, weight = 1, backup = false): PoolMember {
  return { id: nextId++, name, weight, inflight: 0, usable: true, backup, maxConnections: 0, key: name };
}

function create(name: LbAlgorithmName, members: readonly PoolMember[]): LbAlgorithm {
  return getAlgorithm(name).create(members);
}

/** One pick as the member name, or 'none'. */
function pickName(alg: LbAlgorithm, avoid: PoolMember | null = null): string {
  const out = alg.pick(avoid, 0);
  return out.kind === 'ok' ? out.member.name : 'none';
}

/** `count` picks, each released at once (no concurrency), as a name → count map. */
function countPicks(alg: LbAlgorithm, count: number, avoid: PoolMember | null = null): Map<string, number> {
  const seen = new Map<string, number>();
  for (let i = 0; i < count; i++) {
    const name = pickName(alg, avoid);
    seen.set(name, (seen.get(name) ?? 0) + 1);
  }
  return seen;
}

function sequence(alg: LbAlgorithm, count: number): string {
  let s = '';
  for (let i = 0; i < count; i++) s += (i ? ' ' : '') + pickName(alg);
  return s;
}

/** Deterministic PRNG (mulberry32) so load simulations are reproducible. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function assertWithin(actual: number, expected: number, tolerance: number, what: string): void {
  assert.ok(
    Math.abs(actual - expected) <= tolerance,
    `${what}: got ${actual}, expected ${expected} ± ${tolerance}`,
  );
}

describe('registry', () => {
  it('lists every algorithm under its own name with its flags', () => {
    assert.deepEqual(Object.keys(LB_ALGORITHMS).sort(), [...ALL].sort());
    for (const name of ALL) {
      const d = LB_ALGORITHMS[name];
      assert.equal(d.name, name);
      assert.equal(getAlgorithm(name), d);
      assert.equal(d.needsKey, KEYED.has(name));
      assert.ok(Object.isFrozen(d));
    }
    assert.equal(LB_ALGORITHMS.round_robin.dynamicWeights, false);
    assert.equal(LB_ALGORITHMS.weighted_round_robin.dynamicWeights, true);
    assert.equal(LB_ALGORITHMS.least_connections.dynamicWeights, true);
    assert.ok(Object.isFrozen(LB_ALGORITHMS));
  });

  it('gives undefined for unknown names, including inherited object keys', () => {
    for (const name of ['roundrobin', '', 'toString', '__proto__', 'constructor', 'hasOwnProperty']) {
      assert.equal(getAlgorithm(name), undefined, name);
    }
  });
});

describe('selectActiveGroup', () => {
  it('keeps usable primaries in pool order and ignores backups while a primary is usable', () => {
    const a = member('a');
    const b = member('b', 1, true);
    const c = member('c');
    const d = member('d');
    d.usable = false;
    const g = selectActiveGroup([a, b, c, d]);
    assert.deepEqual(g.members, [a, c]);
    assert.equal(g.isBackup, false);
    assert.deepEqual(
      g.outcomes.map((o) => (o.kind === 'ok' ? o.member : null)),
      [a, c],
    );
    assert.ok(g.outcomes.every((o) => Object.isFrozen(o)));
  });

  it('falls back to every usable backup when no primary is usable, and to nothing after that', () => {
    const a = member('a');
    const b1 = member('b1', 1, true);
    const b2 = member('b2', 1, true);
    a.usable = false;
    const g = selectActiveGroup([a, b1, b2]);
    assert.deepEqual(g.members, [b1, b2]);
    assert.equal(g.isBackup, true);
    b1.usable = false;
    b2.usable = false;
    assert.equal(selectActiveGroup([a, b1, b2]).members.length, 0);
    assert.equal(selectActiveGroup([]).members.length, 0);
  });

  it('clamps weights to 1..MAX_MEMBER_WEIGHT as integers', () => {
    const ws = [0, -3, Number.NaN, 1, 2.7, 256, 1000, Number.POSITIVE_INFINITY];
    const g = selectActiveGroup(ws.map((w, i) => member(`m${i}`, w)));
    assert.deepEqual([...g.weights], [1, 1, 1, 1, 2, 256, MAX_MEMBER_WEIGHT, MAX_MEMBER_WEIGHT]);
  });
});

for (const name of NAMES) {
  describe(`${name}: shared contract`, () => {
    it('returns none when the pool is empty or every member is down', () => {
      assert.equal(create(name, []).pick(null, 0), PICK_NONE);
      const ms = [member('a'), member('b'), member('c', 1, true)];
      for (const m of ms) m.usable = false;
      const alg = create(name, ms);
      assert.deepEqual(alg.pick(null, 0), { kind: 'none' });
      assert.deepEqual(alg.pick(ms[0]!, 0), { kind: 'none' });
    });

    it('never picks an unusable member', () => {
      const ms = [member('a', 3), member('b', 1), member('c', 2)];
      ms[1]!.usable = false;
      const counts = countPicks(create(name, ms), 3000);
      assert.equal(counts.get('b'), undefined);
      assert.ok((counts.get('a') ?? 0) > 0 && (counts.get('c') ?? 0) > 0);
    });

    it('uses backups only when every primary is down, and returns to primaries when one recovers', () => {
      const ms = [member('p1'), member('p2'), member('b1', 1, true), member('b2', 1, true)];
      const alg = create(name, ms);
      assert.deepEqual([...countPicks(alg, 1000).keys()].sort(), ['p1', 'p2']);

      ms[0]!.usable = false;
      alg.onMembersChanged();
      assert.deepEqual([...countPicks(alg, 1000).keys()], ['p2']); // one primary left: still no backup

      ms[1]!.usable = false;
      alg.onMembersChanged();
      assert.deepEqual([...countPicks(alg, 1000).keys()].sort(), ['b1', 'b2']);

      ms[0]!.usable = true;
      alg.onMembersChanged();
      assert.deepEqual([...countPicks(alg, 1000).keys()], ['p1']);
    });

    it('avoids the member that just failed when another is usable', () => {
      const ms = [member('a', 5), member('b', 1), member('c', 1)];
      const alg = create(name, ms);
      for (const avoid of ms) {
        const counts = countPicks(alg, 700, avoid);
        assert.equal(counts.get(avoid.name), undefined, `avoid ${avoid.name}`);
        assert.equal(counts.get('none'), undefined);
      }
    });

    it('returns the avoided member when it is the only usable one, rather than none', () => {
      const ms = [member('a'), member('b')];
      const alg = create(name, ms);
      ms[1]!.usable = false;
      alg.onMembersChanged();
      assert.equal(pickName(alg, ms[0]!), 'a');
      // HAProxy srvtoavoid: avoiding the last primary does not open the backup group.
      const withBackup = [member('p'), member('bk', 1, true)];
      assert.equal(pickName(create(name, withBackup), withBackup[0]!), 'p');
    });

    it('ignores an avoid that is not in the active group', () => {
      const ms = [member('a'), member('b'), member('bk', 1, true)];
      const alg = create(name, ms);
      for (const avoid of [ms[2]!, member('stranger')]) {
        const counts = countPicks(alg, 1000, avoid);
        assert.equal(counts.get('a'), 500, avoid.name);
        assert.equal(counts.get('b'), 500, avoid.name);
      }
    });

    it('follows a member going down and coming back up through onMembersChanged', () => {
      const ms = [member('a'), member('b'), member('c')];
      const alg = create(name, ms);
      ms[2]!.usable = false;
      alg.onMembersChanged();
      const down = countPicks(alg, 1200);
      assert.equal(down.get('c'), undefined);
      assert.equal((down.get('a') ?? 0) + (down.get('b') ?? 0), 1200);

      ms[2]!.usable = true;
      alg.onMembersChanged();
      const up = countPicks(alg, 1200);
      for (const m of ms) assertWithin(up.get(m.name) ?? 0, 400, 1, `${m.name} after recovery`);
    });

    it('a member that comes back up is not picked before onMembersChanged (the table is precomputed)', () => {
      const ms = [member('a'), member('b')];
      ms[1]!.usable = false;
      const alg = create(name, ms);
      ms[1]!.usable = true;
      assert.deepEqual([...countPicks(alg, 100).keys()], ['a']);
    });

    it('skips a member that went down without onMembersChanged, and opens backups if needed', () => {
      const ms = [member('a'), member('b'), member('bk', 1, true)];
      const alg = create(name, ms);
      ms[0]!.usable = false; // the pool forgot to announce it
      assert.deepEqual([...countPicks(alg, 100).keys()], ['b']);
      ms[1]!.usable = false;
      assert.deepEqual([...countPicks(alg, 100).keys()], ['bk']);
    });

    it('returns shared frozen outcomes, so a pick allocates nothing', () => {
      const ms = [member('a'), member('b')];
      const alg = create(name, ms);
      const seen = new Map<PoolMember, unknown>();
      for (let i = 0; i < 50; i++) {
        const out = alg.pick(null, 0);
        assert.equal(out.kind, 'ok');
        if (out.kind !== 'ok') continue;
        assert.ok(Object.isFrozen(out));
        const prev = seen.get(out.member);
        if (prev) assert.equal(out, prev);
        else seen.set(out.member, out);
      }
      assert.equal(seen.size, 2);
    });

    it('never throws on out-of-range weights', () => {
      const ms = [member('zero', 0), member('nan', Number.NaN), member('huge', 1e9), member('neg', -1)];
      const counts = countPicks(create(name, ms), 1000);
      assert.equal(counts.get('none'), undefined);
      assert.ok((counts.get('huge') ?? 0) > 0);
    });
  });
}

describe('round_robin', () => {
  it('rotates through members in pool order, ignoring weights', () => {
    const alg = create('round_robin', [member('a', 5), member('b', 1), member('c', 1)]);
    assert.equal(sequence(alg, 7), 'a b c a b c a');
  });

  it('shares 10k picks equally', () => {
    const ms = Array.from({ length: 16 }, (_, i) => member(`m${i}`, i + 1));
    const counts = countPicks(create('round_robin', ms), 10_000);
    for (const m of ms) assertWithin(counts.get(m.name) ?? 0, 10_000 / 16, 1, m.name);
  });

  it('moves the rotation past an avoided member', () => {
    const ms = [member('a'), member('b'), member('c')];
    const alg = create('round_robin', ms);
    assert.equal(pickName(alg), 'a');
    assert.equal(pickName(alg, ms[1]!), 'c');
    assert.equal(pickName(alg), 'a');
  });
});

describe('weighted_round_robin', () => {
  it("follows nginx's smooth sequence for weights 5,1,1: a a b a c a a", () => {
    const alg = create('weighted_round_robin', [member('a', 5), member('b', 1), member('c', 1)]);
    assert.equal(sequence(alg, 14), 'a a b a c a a a a b a c a a');
  });

  it('interleaves 2,1: a b a, not a a b', () => {
    const alg = create('weighted_round_robin', [member('a', 2), member('b', 1)]);
    assert.equal(sequence(alg, 6), 'a b a a b a');
  });

  it('gives each member exactly its share of every full cycle', () => {
    const r = prng(7);
    const ms = Array.from({ length: 16 }, (_, i) => member(`m${i}`, 1 + Math.floor(r() * 20)));
    const total = ms.reduce((s, m) => s + m.weight, 0);
    const counts = countPicks(create('weighted_round_robin', ms), total * 3);
    for (const m of ms) assert.equal(counts.get(m.name), m.weight * 3, m.name);
  });

  it('keeps 10k picks within 1% of the weights', () => {
    const ms = [member('a', 5), member('b', 3), member('c', 2), member('d', 7)];
    const counts = countPicks(create('weighted_round_robin', ms), 10_000);
    for (const m of ms) assertWithin(counts.get(m.name) ?? 0, (10_000 * m.weight) / 17, 100, m.name);
  });

  it('spreads a heavy member instead of bursting it: 9,1,1,1', () => {
    const alg = create('weighted_round_robin', [
      member('a', 9),
      member('b', 1),
      member('c', 1),
      member('d', 1),
    ]);
    assert.equal(sequence(alg, 12), 'a a a b a a c a a d a a');
    // A bursty weighted RR sends 9 in a row; the smooth one's longest run spans a cycle boundary.
    let run = 0;
    let longest = 0;
    for (let i = 0; i < 1200; i++) {
      run = pickName(alg) === 'a' ? run + 1 : 0;
      longest = Math.max(longest, run);
    }
    assert.equal(longest, 5);
  });

  /** Oracle: nginx's loop exactly as ngx_http_upstream_get_peer() runs it, no table, no shortcuts. */
  function nginxSequence(weights: readonly number[], count: number): number[] {
    const current = weights.map(() => 0);
    const total = weights.reduce((s, w) => s + w, 0);
    const out: number[] = [];
    for (let k = 0; k < count; k++) {
      let best = -1;
      for (let i = 0; i < weights.length; i++) {
        current[i]! += weights[i]!;
        if (best < 0 || current[i]! > current[best]!) best = i;
      }
      current[best]! -= total;
      out.push(best);
    }
    return out;
  }

  // 16 members, total ~1700: precomputed cycle (GCD 1). 128 members, total ~23000: too big, so the
  // per-pick step runs. 8 members with weights multiple of 6: the GCD shortens the cycle.
  for (const [label, n, lo, hi, scale] of [
    ['precomputed cycle', 16, 1, 200, 1],
    ['per-pick step (too large for a table)', 128, 100, 256, 1],
    ['cycle reduced by the GCD', 8, 1, 40, 6],
  ] as const) {
    it(`matches nginx's sequence exactly: ${label}`, () => {
      const r = prng(n);
      const weights = Array.from({ length: n }, () => scale * (lo + Math.floor(r() * (hi - lo + 1))));
      const ms = weights.map((w, i) => member(`m${i}`, w));
      const alg = create('weighted_round_robin', ms);
      const count = 3 * weights.reduce((s, w) => s + w, 0);
      const want = nginxSequence(weights, count);
      for (let k = 0; k < count; k++) {
        const out = alg.pick(null, 0);
        if (out.kind !== 'ok' || out.member !== ms[want[k]!]) {
          assert.fail(`pick ${k}: got ${out.kind === 'ok' ? out.member.name : 'none'}, want m${want[k]}`);
        }
      }
    });
  }

  it('handles avoid, a lone member and unannounced failures on the per-pick step path too', () => {
    // 128 members, weights 200..255: too large for a table.
    const ms = Array.from({ length: 128 }, (_, i) => member(`m${i}`, 200 + (i % 56)));
    const alg = create('weighted_round_robin', ms);
    assert.equal(countPicks(alg, 2000, ms[0]!).get('m0'), undefined);
    ms[5]!.usable = false; // not announced
    assert.equal(countPicks(alg, 2000).get('m5'), undefined);
    for (const m of ms) m.usable = m === ms[7]; // unannounced: the heal rebuild finds one member
    assert.equal(pickName(alg, ms[7]!), 'm7');
    for (const m of ms) m.usable = false;
    assert.equal(alg.pick(null, 0), PICK_NONE);
  });

  it('re-reads the member list and weights on onMembersChanged', () => {
    const ms: PoolMember[] = [member('a', 1), member('b', 1)];
    const alg = create('weighted_round_robin', ms);
    assert.equal(sequence(alg, 4), 'a b a b');
    ms[0] = { ...ms[0]!, weight: 3 }; // the pool replaced the member with a new weight
    alg.onMembersChanged();
    const counts = countPicks(alg, 4000);
    assert.equal(counts.get('a'), 3000);
    assert.equal(counts.get('b'), 1000);
  });
});

describe('least_connections', () => {
  /** Pick, then count the request as in flight, as the pool does. */
  function take(alg: LbAlgorithm): PoolMember {
    const out = alg.pick(null, 0);
    assert.equal(out.kind, 'ok');
    if (out.kind !== 'ok') throw new Error('unreachable');
    out.member.inflight++;
    return out.member;
  }

  it('prefers the idle member', () => {
    const ms = [member('a'), member('b'), member('c')];
    const alg = create('least_connections', ms);
    ms[0]!.inflight = 5;
    ms[2]!.inflight = 3;
    assert.equal(pickName(alg), 'b');
    ms[1]!.inflight = 4;
    assert.equal(pickName(alg), 'c');
  });

  it('compares in-flight per unit of weight', () => {
    const ms = [member('light', 1), member('heavy', 4)];
    const alg = create('least_connections', ms);
    ms[0]!.inflight = 1;
    ms[1]!.inflight = 3; // 3/4 < 1/1
    assert.equal(pickName(alg), 'heavy');
    ms[1]!.inflight = 5; // 5/4 > 1/1
    assert.equal(pickName(alg), 'light');
  });

  it('fills concurrent requests in proportion to weight', () => {
    const ms = [member('a', 3), member('b', 1), member('c', 4)];
    const alg = create('least_connections', ms);
    for (let i = 0; i < 80; i++) take(alg);
    assert.deepEqual(
      ms.map((m) => m.inflight),
      [30, 10, 40],
    );
  });

  it('rotates among equal members so they share load with no concurrency', () => {
    const ms = [member('a'), member('b'), member('c')];
    const alg = create('least_connections', ms);
    assert.equal(sequence(alg, 6), 'a b c a b c');
    const counts = countPicks(alg, 9000);
    for (const m of ms) assert.equal(counts.get(m.name), 3000, m.name);
  });

  it('keeps 10k picks under steady concurrency within 5% of the weights', () => {
    const ms = [member('a', 1), member('b', 2), member('c', 4)];
    const alg = create('least_connections', ms);
    const r = prng(42);
    const open: PoolMember[] = [];
    const counts = new Map<string, number>();
    for (let i = 0; i < 10_000; i++) {
      const m = take(alg);
      counts.set(m.name, (counts.get(m.name) ?? 0) + 1);
      open.push(m);
      // 28 in flight; a random one completes per new request, so completions follow in-flight shares.
      if (open.length > 28) {
        const j = Math.floor(r() * open.length);
        const done = open[j]!;
        open[j] = open[open.length - 1]!;
        open.pop();
        done.inflight--;
      }
    }
    for (const m of ms) assertWithin(counts.get(m.name) ?? 0, (10_000 * m.weight) / 7, 500, m.name);
  });

  it('needs no onTake/onRelease: it reads inflight live', () => {
    const alg = create('least_connections', [member('a')]);
    assert.equal(alg.onTake, undefined);
    assert.equal(alg.onRelease, undefined);
  });
});
