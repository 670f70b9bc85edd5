// Micro-benchmark of LbAlgorithm.pick for every registered algorithm at 3, 16 and 256 members, against
// a naive baseline of the same algorithm that filters the member list on every pick (no precomputed
// table), then the cost of rebuilding the Maglev table. Prints picks/s and the ratio to the baseline.
// Run: node bench/pools/pick.bench.ts (~20 s).

import type { LbAlgorithm, LbAlgorithmName, PoolMember } from '../../src/pools/algorithm.ts';
import { LB_ALGORITHMS } from '../../src/pools/algorithms.ts';
import { mix32 } from '../../src/pools/key-hash.ts';

/** Pool sizes, and the largest weight: 1..256 weights make smooth WRR too large to precompute. */
const CASES = [
  { members: 3, maxWeight: 10 },
  { members: 16, maxWeight: 10 },
  { members: 256, maxWeight: 10 },
  { members: 256, maxWeight: 256 },
] as const;
const WARMUP_MS = 60;
const MEASURE_MS = 250;
/**
 * Requests kept in flight per member, so least-conn sees a moving load with no idle member (its worst
 * case: a full scan), as a busy pool would give it.
 */
const IN_FLIGHT_PER_MEMBER = 2;

/** A pool of `n` members: weights 1..maxWeight, every 8th one down, the last eighth backups. */
function makeMembers(n: number, maxWeight: number): PoolMember[] {
  const ms: PoolMember[] = [];
  for (let i = 0; i < n; i++) {
    ms.push({
      id: i,
      name: `m${i}`,
      weight: 1 + ((i * 7) % maxWeight),
      inflight: 0,
      usable: n < 8 || i % 8 !== 3,
      backup: n >= 8 && i >= n - n / 8,
      maxConnections: 0,
      key: `10.0.${i >> 8}.${i & 255}:8080`,
    });
  }
  return ms;
}

// --- Naive baselines: the same algorithms written the obvious way, allocating per pick. ---

function activeNaive(members: readonly PoolMember[]): PoolMember[] {
  const primaries = members.filter((m) => m.usable && !m.backup);
  return primaries.length > 0 ? primaries : members.filter((m) => m.usable);
}

function naiveRoundRobin(members: readonly PoolMember[]): LbAlgorithm {
  let next = 0;
  return {
    pick() {
      const group = activeNaive(members);
      const m = group[next++ % group.length];
      return m ? { kind: 'ok', member: m } : { kind: 'none' };
    },
    onMembersChanged() {},
  };
}

function naiveWeightedRoundRobin(members: readonly PoolMember[]): LbAlgorithm {
  const current = new Map<PoolMember, number>();
  return {
    pick() {
      const group = activeNaive(members);
      const total = group.reduce((s, m) => s + m.weight, 0);
      for (const m of group) current.set(m, (current.get(m) ?? 0) + m.weight);
      const best = group.reduce<PoolMember | undefined>(
        (b, m) => (b === undefined || current.get(m)! > current.get(b)! ? m : b),
        undefined,
      );
      if (!best) return { kind: 'none' };
      current.set(best, current.get(best)! - total);
      return { kind: 'ok', member: best };
    },
    onMembersChanged() {},
  };
}

function naiveLeastConnections(members: readonly PoolMember[]): LbAlgorithm {
  return {
    pick() {
      const sorted = activeNaive(members).sort((a, b) => a.inflight / a.weight - b.inflight / b.weight);
      const m = sorted[0];
      return m ? { kind: 'ok', member: m } : { kind: 'none' };
    },
    onMembersChanged() {},
  };
}

function naiveTwoChoices(members: readonly PoolMember[]): LbAlgorithm {
  return {
    pick() {
      const group = activeNaive(members);
      if (group.length === 0) return { kind: 'none' };
      const a = group[Math.floor(Math.random() * group.length)]!;
      const b = group[Math.floor(Math.random() * group.length)]!;
      return { kind: 'ok', member: a.inflight / a.weight <= b.inflight / b.weight ? a : b };
    },
    onMembersChanged() {},
  };
}

/** Hashing the obvious way: the usable members expanded by weight, then hash modulo their count. */
function naiveHash(members: readonly PoolMember[]): LbAlgorithm {
  return {
    pick(_avoid, hash) {
      const slots = activeNaive(members).flatMap((m) => Array<PoolMember>(m.weight).fill(m));
      const m = slots[hash % slots.length];
      return m ? { kind: 'ok', member: m } : { kind: 'none' };
    },
    onMembersChanged() {},
  };
}

function naiveFirst(members: readonly PoolMember[]): LbAlgorithm {
  return {
    pick() {
      const m = activeNaive(members).find((x) => x.maxConnections === 0 || x.inflight < x.maxConnections);
      return m ? { kind: 'ok', member: m } : { kind: 'none' };
    },
    onMembersChanged() {},
  };
}

const NAIVE: Record<LbAlgorithmName, (members: readonly PoolMember[]) => LbAlgorithm> = {
  round_robin: naiveRoundRobin,
  weighted_round_robin: naiveWeightedRoundRobin,
  least_connections: naiveLeastConnections,
  random_two_choices: naiveTwoChoices,
  source_hash: naiveHash,
  consistent_hash: naiveHash,
  first: naiveFirst,
};

// --- Measurement ---

let checksum = 0;

/** Picks for `ms` milliseconds, taking and releasing like a pool; returns picks per second. */
function run(alg: LbAlgorithm, ms: number, inFlight: number): number {
  const ring: (PoolMember | undefined)[] = new Array(inFlight).fill(undefined);
  let slot = 0;
  let picks = 0;
  const start = performance.now();
  let now = start;
  while (now - start < ms) {
    for (let i = 0; i < 1024; i++) {
      const out = alg.pick(null, mix32(picks + i));
      if (out.kind !== 'ok') continue;
      const m = out.member;
      m.inflight++;
      alg.onTake?.(m);
      const old = ring[slot];
      if (old) {
        old.inflight--;
        alg.onRelease?.(old);
      }
      ring[slot] = m;
      slot = slot + 1 === inFlight ? 0 : slot + 1;
      checksum += m.id;
    }
    picks += 1024;
    now = performance.now();
  }
  return (picks * 1000) / (now - start);
}

function measure(
  create: (members: readonly PoolMember[]) => LbAlgorithm,
  n: number,
  maxWeight: number,
): number {
  const inFlight = Math.max(32, IN_FLIGHT_PER_MEMBER * n);
  run(create(makeMembers(n, maxWeight)), WARMUP_MS, inFlight);
  return run(create(makeMembers(n, maxWeight)), MEASURE_MS, inFlight);
}

function fmt(rate: number): string {
  return rate >= 1e6 ? `${(rate / 1e6).toFixed(2)} M` : `${(rate / 1e3).toFixed(1)} k`;
}

const rows: string[][] = [
  ['algorithm', 'members', 'weights', 'picks/s', 'ns/pick', 'naive picks/s', 'vs naive'],
];
for (const name of Object.keys(LB_ALGORITHMS) as LbAlgorithmName[]) {
  for (const { members: n, maxWeight } of CASES) {
    const rate = measure(LB_ALGORITHMS[name].create, n, maxWeight);
    const naive = measure(NAIVE[name], n, maxWeight);
    rows.push([
      name,
      String(n),
      `1..${maxWeight}`,
      fmt(rate),
      (1e9 / rate).toFixed(1),
      fmt(naive),
      `${(rate / naive).toFixed(1)}x`,
    ]);
  }
}

const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
for (const r of rows)
  console.log(r.map((cell, c) => (c < 3 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  '));
console.log(
  `\n(max(32, ${IN_FLIGHT_PER_MEMBER} x members) requests in flight; 1 in 8 members down, last eighth backups; checksum ${checksum % 1000})`,
);

// --- Rebuild cost of the hash tables (paid on every health, drain or weight change) ---

console.log('\nconsistent_hash table rebuild (Maglev, 65537 slots) vs source_hash map rebuild:');
for (const n of [3, 16, 256]) {
  for (const name of ['consistent_hash', 'source_hash'] as const) {
    const ms = makeMembers(n, 10);
    const alg = LB_ALGORITHMS[name].create(ms);
    for (let i = 0; i < 3; i++) alg.onMembersChanged();
    const rounds = 20;
    const start = performance.now();
    for (let i = 0; i < rounds; i++) alg.onMembersChanged();
    console.log(
      `  ${name.padEnd(16)} ${String(n).padStart(4)} members: ${((performance.now() - start) / rounds).toFixed(2)} ms per rebuild`,
    );
  }
}
