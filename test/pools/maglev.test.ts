// consistent_hash (Maglev): the table is complete and split by weight, independent of config order,
// and adding or removing one of N backends moves about 1/N of the keys (measured here).

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { PoolMember } from '../../src/pools/algorithm.ts';
import { selectActiveGroup } from '../../src/pools/algorithm.ts';
import { hashString } from '../../src/pools/key-hash.ts';
import { buildMaglevTable, CONSISTENT_HASH } from '../../src/pools/maglev.ts';

function member(i: number, weight = 1): PoolMember {
  return {
    id: i,
    name: `b${i}`,
    weight,
    inflight: 0,
    usable: true,
    backup: false,
    maxConnections: 0,
    key: `10.1.0.${i}:8080`,
  };
}

const KEYS = 50_000;

/** The member name each of KEYS request keys maps to. */
function assignments(members: readonly PoolMember[], size = 65537): string[] {
  const alg = CONSISTENT_HASH.create(members, { hashTableSize: size });
  const out: string[] = [];
  for (let k = 0; k < KEYS; k++) {
    const o = alg.pick(null, hashString(`user-${k}`));
    out.push(o.kind === 'ok' ? o.member.name : o.kind);
  }
  return out;
}

function moved(a: readonly string[], b: readonly string[]): number {
  let n = 0;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) n++;
  return n / a.length;
}

describe('consistent_hash (Maglev)', () => {
  it('fills every slot and splits the table by weight', () => {
    const ms = [member(1, 1), member(2, 2), member(3, 1), member(4, 4)];
    const size = 65537;
    const table = buildMaglevTable(selectActiveGroup(ms), size);
    assert.equal(table.length, size);
    const counts = [0, 0, 0, 0];
    for (const i of table) counts[i]!++;
    const total = 8;
    for (const [i, m] of ms.entries()) {
      const share = counts[i]! / size;
      assert.ok(Math.abs(share - m.weight / total) < 0.01, `${m.name}: ${share.toFixed(4)} of the slots`);
    }
  });

  it('maps a key to the same backend every time and whatever the config order', () => {
    const ms = [member(1), member(2), member(3), member(4), member(5)];
    const a = assignments(ms);
    const b = assignments([...ms].reverse());
    assert.equal(moved(a, b), 0);
    assert.equal(moved(a, assignments(ms)), 0);
    const counts = new Map<string, number>();
    for (const n of a) counts.set(n, (counts.get(n) ?? 0) + 1);
    for (const [name, c] of counts) assert.ok(Math.abs(c / KEYS - 0.2) < 0.02, `${name}: ${c}`);
  });

  for (const n of [3, 5, 10, 20]) {
    it(`adding or removing one of ${n} backends moves about 1/N of the keys`, () => {
      const ms = Array.from({ length: n }, (_, i) => member(i + 1));
      const base = assignments(ms);
      const added = assignments([...ms, member(n + 1)]);
      const removed = assignments(ms.slice(1));
      const addFraction = moved(base, added);
      const removeFraction = moved(base, removed);
      // Minimal disruption is 1/(N+1) on add and 1/N on remove; Maglev stays within a few % of it.
      const idealAdd = 1 / (n + 1);
      const idealRemove = 1 / n;
      assert.ok(
        addFraction >= idealAdd * 0.9 && addFraction <= idealAdd * 1.25,
        `add: ${addFraction.toFixed(4)} vs ${idealAdd.toFixed(4)}`,
      );
      assert.ok(
        removeFraction >= idealRemove * 0.9 && removeFraction <= idealRemove * 1.25,
        `remove: ${removeFraction.toFixed(4)} vs ${idealRemove.toFixed(4)}`,
      );
      // Keys of the removed backend must move; every other key should mostly stay.
      const gone = ms[0]!.name;
      for (let i = 0; i < KEYS; i++) if (base[i] === gone) assert.notEqual(removed[i], gone);
    });
  }

  it('a backend going down moves only its keys (plus Maglev noise), and they come back with it', () => {
    const ms = Array.from({ length: 6 }, (_, i) => member(i + 1));
    const alg = CONSISTENT_HASH.create(ms, { hashTableSize: 65537 });
    const pick = () => {
      const out: string[] = [];
      for (let k = 0; k < KEYS; k++) {
        const o = alg.pick(null, hashString(`k${k}`));
        out.push(o.kind === 'ok' ? o.member.name : o.kind);
      }
      return out;
    };
    const before = pick();
    ms[2]!.usable = false;
    alg.onMembersChanged();
    const down = pick();
    assert.ok(!down.includes('b3'));
    assert.ok(moved(before, down) < (1 / 6) * 1.25, `moved ${moved(before, down)}`);
    ms[2]!.usable = true;
    alg.onMembersChanged();
    assert.equal(moved(before, pick()), 0);
  });

  it('sends a key whose backend is avoided to the same fallback every time', () => {
    const ms = Array.from({ length: 5 }, (_, i) => member(i + 1));
    const alg = CONSISTENT_HASH.create(ms, { hashTableSize: 1009 });
    for (let k = 0; k < 200; k++) {
      const h = hashString(`key${k}`);
      const first = alg.pick(null, h);
      assert.equal(first.kind, 'ok');
      if (first.kind !== 'ok') continue;
      const a = alg.pick(first.member, h);
      const b = alg.pick(first.member, h);
      assert.equal(a, b);
      assert.ok(a.kind === 'ok' && a.member !== first.member);
    }
  });
});
