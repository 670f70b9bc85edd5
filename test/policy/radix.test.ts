// Tests of src/policy/radix.ts: merge/inherit semantics, limits and errors, and agreement with the
// brute-force golden oracle (test/support/linear-matcher.ts) on random rule sets and the real
// country blocks.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SeglbError } from '../../src/errors.ts';
import { parseAddress, parseCidr, parseIPv4, parseIPv6 } from '../../src/net/index.ts';
import { RadixBuilder, type RadixBuildOptions, type RadixTable } from '../../src/policy/radix.ts';
import { loadCountryBlocks } from '../support/country-blocks.ts';
import { LinearMatcher, type OracleSemantics } from '../support/linear-matcher.ts';

function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return (t ^ (t >>> 14)) >>> 0;
  };
}

const LPM: RadixBuildOptions = { merge: (_existing, incoming) => incoming, inherit: (_ancestor, own) => own };

function table(family: 4 | 6, rules: [string, number][], opts: RadixBuildOptions = LPM): RadixTable {
  const b = new RadixBuilder(family);
  for (const [cidr, value] of rules) b.insert(parseCidr(cidr), value);
  return b.build(opts);
}

function lookup(t: RadixTable, address: string): number {
  return t.lookup(parseAddress(address));
}

function throwsCode(fn: () => unknown, code: string): void {
  assert.throws(fn, (e: unknown) => e instanceof SeglbError && e.code === code);
}

/** Masks words to a prefix length (1 word for IPv4, 4 for IPv6). */
function maskWords(words: number[], len: number): number[] {
  return words.map((w, k) => {
    const bits = len - 32 * k;
    return bits <= 0 ? 0 : bits >= 32 ? w >>> 0 : (w & (-1 << (32 - bits))) >>> 0;
  });
}

/** Adds `delta` (+1/-1) to a multi-word address, wrapping around. */
function step(words: number[], delta: 1 | -1): number[] {
  const out = words.slice();
  for (let k = out.length - 1; k >= 0; k--) {
    const v = out[k]! + delta;
    out[k] = v >>> 0;
    if (v >= 0 && v <= 0xffffffff) break;
  }
  return out;
}

function lastAddress(words: number[], len: number): number[] {
  return words.map((w, k) => {
    const bits = len - 32 * k;
    return bits <= 0 ? 0xffffffff : bits >= 32 ? w : (w | ~(-1 << (32 - bits))) >>> 0;
  });
}

function radixLookup(t: RadixTable, words: number[]): number {
  return words.length === 1 ? t.lookupV4(words[0]!) : t.lookupV6(words[0]!, words[1]!, words[2]!, words[3]!);
}

interface RandomRuleSet {
  prefixes: { words: number[]; len: number; value: number }[];
}

/** Random overlapping, nested and duplicated prefixes around a few base addresses. */
function randomRules(family: 4 | 6, count: number, rand: () => number): RandomRuleSet {
  const n = family === 4 ? 1 : 4;
  const max = family === 4 ? 32 : 128;
  const bases: number[][] = [];
  for (let b = 0; b < 1 + (rand() % 6); b++) {
    const words = Array.from({ length: n }, () => rand());
    if (family === 6 && rand() % 2) words[0] = 0x20010db8;
    bases.push(words);
  }
  const prefixes: RandomRuleSet['prefixes'] = [];
  for (let i = 0; i < count; i++) {
    const r = rand() % 20;
    const len =
      r === 0
        ? 0
        : r === 1
          ? max
          : r < 8
            ? rand() % (max + 1)
            : Math.min(max, 8 * (1 + (rand() % (max / 8))));
    let words: number[];
    if (prefixes.length > 0 && rand() % 3 === 0) {
      // Nest under (or duplicate) an existing prefix.
      const parent = prefixes[rand() % prefixes.length]!;
      words = Array.from({ length: n }, () => rand());
      words = words.map((w, k) => {
        const bits = parent.len - 32 * k;
        const m = bits <= 0 ? 0 : bits >= 32 ? 0xffffffff : (-1 << (32 - bits)) >>> 0;
        return ((parent.words[k]! & m) | (w & ~m)) >>> 0;
      });
      const l = Math.min(max, parent.len + (rand() % 3 === 0 ? 0 : rand() % 20));
      prefixes.push({ words: maskWords(words, l), len: l, value: rand() % 50 });
      continue;
    }
    const base = bases[rand() % bases.length]!;
    words = base.map((w) => (rand() % 4 === 0 ? rand() : w));
    prefixes.push({ words: maskWords(words, len), len, value: rand() % 50 });
  }
  return { prefixes };
}

/** Addresses at and around every prefix's edges, inside them, and anywhere. */
function probeAddresses(family: 4 | 6, set: RandomRuleSet, rand: () => number): number[][] {
  const n = family === 4 ? 1 : 4;
  const out: number[][] = [];
  for (const p of set.prefixes) {
    const last = lastAddress(p.words, p.len);
    out.push(p.words, last, step(p.words, -1), step(last, 1));
    out.push(
      p.words.map(
        (w, k) =>
          ((w & maskWords([0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff], p.len)[k]!) |
            (rand() & ~maskWords([0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff], p.len)[k]!)) >>>
          0,
      ),
    );
  }
  for (let i = 0; i < 50; i++) out.push(Array.from({ length: n }, () => rand()));
  out.push(Array(n).fill(0), Array(n).fill(0xffffffff));
  return out;
}

const SEMANTICS: [string, OracleSemantics][] = [
  ['plain longest match, last insert wins', { merge: (_a, b) => b, inherit: (_a, own) => own }],
  [
    'non-commutative merge and inherit',
    { merge: (a, b) => (a * 7 + b) % 1000, inherit: (anc, own) => (anc * 31 + own * 17 + 1) % 100_000 },
  ],
  // Often returns the ancestor's value: exercises dropping prefixes that change no answer.
  [
    'inherit that often keeps the ancestor',
    { merge: Math.max, inherit: (anc, own) => (own % 3 === 0 ? anc : own) },
  ],
  // Verdict-style flags: deny (1) anywhere above wins, allow bits accumulate.
  ['flag union', { merge: (a, b) => a | b, inherit: (anc, own) => anc | own }],
];

describe('RadixTable semantics', () => {
  it('finds the longest match among nested prefixes', () => {
    const t = table(4, [
      ['10.0.0.0/8', 1],
      ['10.1.0.0/16', 2],
      ['10.1.2.0/24', 3],
      ['10.1.2.128/25', 4],
      ['192.0.2.7/32', 5],
    ]);
    assert.equal(lookup(t, '10.0.0.0'), 1);
    assert.equal(lookup(t, '10.255.255.255'), 1);
    assert.equal(lookup(t, '10.1.0.0'), 2);
    assert.equal(lookup(t, '10.1.2.0'), 3);
    assert.equal(lookup(t, '10.1.2.127'), 3);
    assert.equal(lookup(t, '10.1.2.128'), 4);
    assert.equal(lookup(t, '10.1.3.0'), 2);
    assert.equal(lookup(t, '11.0.0.0'), -1);
    assert.equal(lookup(t, '192.0.2.7'), 5);
    assert.equal(lookup(t, '192.0.2.6'), -1);
    assert.equal(t.containsV4(parseIPv4('10.9.9.9')), true);
    assert.equal(t.containsV4(parseIPv4('9.9.9.9')), false);
    assert.equal(t.prefixCount, 5);
  });

  it('handles /0 and host routes in both families', () => {
    const t4 = table(4, [
      ['0.0.0.0/0', 7],
      ['255.255.255.255/32', 8],
      ['0.0.0.0/32', 9],
    ]);
    assert.equal(lookup(t4, '1.2.3.4'), 7);
    assert.equal(lookup(t4, '255.255.255.255'), 8);
    assert.equal(lookup(t4, '255.255.255.254'), 7);
    assert.equal(lookup(t4, '0.0.0.0'), 9);
    const t6 = table(6, [
      ['::/0', 1],
      ['2001:db8::/32', 2],
      ['2001:db8::1/128', 3],
      ['ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128', 4],
    ]);
    assert.equal(lookup(t6, '::'), 1);
    assert.equal(lookup(t6, '2001:db8::'), 2);
    assert.equal(lookup(t6, '2001:db8::1'), 3);
    assert.equal(lookup(t6, '2001:db8::2'), 2);
    assert.equal(lookup(t6, '2001:db9::1'), 1);
    assert.equal(lookup(t6, 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff'), 4);
    assert.equal(lookup(t6, 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe'), 1);
  });

  it('answers -1 on an empty table and for the other family', () => {
    const empty = new RadixBuilder(4).build(LPM);
    assert.equal(lookup(empty, '1.2.3.4'), -1);
    assert.equal(empty.prefixCount, 0);
    const t4 = table(4, [['0.0.0.0/0', 1]]);
    const t6 = table(6, [['::/0', 1]]);
    assert.equal(t4.lookupV6(0, 0, 0, 0), -1);
    assert.equal(t6.lookupV4(0), -1);
    assert.equal(lookup(t4, '::'), -1);
    assert.equal(t6.containsV6(0, 0, 0, 0), true);
  });

  it('merges duplicates in insertion order', () => {
    const calls: [number, number][] = [];
    const t = table(
      4,
      [
        ['10.0.0.0/8', 1],
        ['10.0.0.0/8', 2],
        ['192.0.2.0/24', 5],
        ['10.0.0.0/8', 3],
      ],
      {
        merge: (existing, incoming) => {
          calls.push([existing, incoming]);
          return existing * 10 + incoming;
        },
        inherit: (_a, own) => own,
      },
    );
    assert.deepEqual(calls, [
      [1, 2],
      [12, 3],
    ]);
    assert.equal(lookup(t, '10.0.0.1'), 123);
    assert.equal(t.prefixCount, 2);
  });

  it('calls inherit parents first, once per covered prefix, and stores its result', () => {
    const calls: [number, number][] = [];
    const t = table(
      6,
      [
        ['2001:db8:1:2::/64', 4],
        ['2001:db8::/32', 1],
        ['2001:db8:1::/48', 2],
        ['2001:db9::/32', 8],
      ],
      {
        merge: (a) => a,
        inherit: (ancestor, own) => {
          calls.push([ancestor, own]);
          return ancestor | own;
        },
      },
    );
    assert.deepEqual(calls, [
      [1, 2],
      [3, 4],
    ]);
    assert.equal(lookup(t, '2001:db8:1:2::5'), 7);
    assert.equal(lookup(t, '2001:db8:1:3::'), 3);
    assert.equal(lookup(t, '2001:db8:2::'), 1);
    assert.equal(lookup(t, '2001:db9::'), 8);
  });

  it('compresses single-prefix subtrees and skips shared leading bytes', () => {
    // Two /48s alone under a /32 that is itself stored: the skip record's inner subtree gets the
    // /32's value as its fallback.
    const t = table(6, [
      ['2001:db8::/32', 1],
      ['2001:db8:1::/48', 2],
      ['2001:db8:2::/48', 3],
      ['2a00:1450:4001:800::200e/128', 4],
    ]);
    assert.equal(lookup(t, '2001:db8:1::9'), 2);
    assert.equal(lookup(t, '2001:db8:2:ffff::'), 3);
    assert.equal(lookup(t, '2001:db8:3::'), 1);
    assert.equal(lookup(t, '2001:db8:ffff::'), 1);
    assert.equal(lookup(t, '2001:db9:1::'), -1);
    assert.equal(lookup(t, '2001:db7:1::'), -1);
    assert.equal(lookup(t, '2a00:1450:4001:800::200e'), 4);
    assert.equal(lookup(t, '2a00:1450:4001:800::200f'), -1);
    assert.equal(lookup(t, '2a00:1450:4001:801::200e'), -1);
    const stats = t.stats();
    assert.ok(stats.records >= 2, JSON.stringify(stats));
  });

  it('is immutable and reports its size', () => {
    const t = table(4, [['10.0.0.0/8', 1]]);
    assert.ok(Object.isFrozen(t));
    const stats = t.stats();
    assert.equal(stats.prefixes, 1);
    assert.equal(stats.rootBits, 8);
    assert.ok(stats.bytes >= 1024);
  });

  it('can build again after more inserts', () => {
    const b = new RadixBuilder(4);
    b.insert(parseCidr('10.0.0.0/8'), 1);
    const first = b.build(LPM);
    b.insert(parseCidr('10.1.0.0/16'), 2);
    const second = b.build(LPM);
    assert.equal(lookup(first, '10.1.0.0'), 1);
    assert.equal(lookup(second, '10.1.0.0'), 2);
    assert.equal(b.size, 2);
  });
});

describe('RadixBuilder errors and limits', () => {
  it('rejects bad entries with SEGLB_POLICY_INVALID_ENTRY', () => {
    const b4 = new RadixBuilder(4);
    throwsCode(() => b4.insert(parseCidr('::/0'), 1), 'SEGLB_POLICY_INVALID_ENTRY');
    throwsCode(() => b4.insertV6([0, 0, 0, 0], 0, 1), 'SEGLB_POLICY_INVALID_ENTRY');
    throwsCode(() => b4.insertV4(0, 33, 1), 'SEGLB_POLICY_INVALID_ENTRY');
    throwsCode(() => b4.insertV4(0, 1.5, 1), 'SEGLB_POLICY_INVALID_ENTRY');
    throwsCode(() => b4.insertV4(0, 8, -1), 'SEGLB_POLICY_INVALID_ENTRY');
    throwsCode(() => b4.insertV4(0, 8, 2 ** 31), 'SEGLB_POLICY_INVALID_ENTRY');
    throwsCode(() => b4.insertV4(0, 8, 0.5), 'SEGLB_POLICY_INVALID_ENTRY');
    throwsCode(() => b4.insertV4(2 ** 32, 8, 1), 'SEGLB_POLICY_INVALID_ENTRY');
    const b6 = new RadixBuilder(6);
    throwsCode(() => b6.insertV6([0, 0, 0, 0], 129, 1), 'SEGLB_POLICY_INVALID_ENTRY');
    throwsCode(() => b6.insertV4(0, 0, 1), 'SEGLB_POLICY_INVALID_ENTRY');
    throwsCode(() => new RadixBuilder(5 as 4), 'SEGLB_POLICY_INVALID_ENTRY');
    assert.equal(b4.size, 0);
    assert.equal(b6.size, 0);
  });

  it('rejects host bits with SEGLB_NET_NONCANONICAL_CIDR', () => {
    throwsCode(
      () => new RadixBuilder(4).insertV4(parseIPv4('10.1.0.0'), 8, 1),
      'SEGLB_NET_NONCANONICAL_CIDR',
    );
    const w = new Uint32Array(4);
    parseIPv6('2001:db8::1', w);
    throwsCode(() => new RadixBuilder(6).insertV6(w, 64, 1), 'SEGLB_NET_NONCANONICAL_CIDR');
  });

  it('rejects merge/inherit results out of range', () => {
    const b = new RadixBuilder(4);
    b.insertV4(0, 0, 1);
    b.insertV4(0, 0, 2);
    b.insertV4(parseIPv4('10.0.0.0'), 8, 3);
    throwsCode(() => b.build({ merge: () => -1, inherit: (_a, o) => o }), 'SEGLB_POLICY_INVALID_ENTRY');
    throwsCode(() => b.build({ merge: (a) => a, inherit: () => 2 ** 31 }), 'SEGLB_POLICY_INVALID_ENTRY');
    throwsCode(() => b.build({ merge: (a) => a, inherit: () => Number.NaN }), 'SEGLB_POLICY_INVALID_ENTRY');
  });

  it('throws SEGLB_POLICY_TOO_LARGE beyond maxPrefixes or maxBytes', () => {
    const b = new RadixBuilder(4, { maxPrefixes: 3 });
    b.insertV4(0, 0, 1);
    b.insertV4(0, 1, 1);
    b.insertV4(0x80000000, 1, 1);
    throwsCode(() => b.insertV4(0, 2, 1), 'SEGLB_POLICY_TOO_LARGE');
    const big = new RadixBuilder(4);
    for (let i = 0; i < 4096; i++) big.insertV4((i << 12) >>> 0, 20 + (i % 13), i);
    throwsCode(() => big.build({ ...LPM, maxBytes: 4096 }), 'SEGLB_POLICY_TOO_LARGE');
    assert.ok(big.build(LPM).prefixCount > 0);
  });
});

describe('RadixTable agrees with the linear oracle', () => {
  for (const family of [4, 6] as const) {
    for (const [name, semantics] of SEMANTICS) {
      it(`IPv${family}, ${name}, random rule sets`, () => {
        const rand = prng(family * 1000 + name.length);
        for (let round = 0; round < 40; round++) {
          const size = round < 10 ? 1 + round : 10 + (rand() % 300);
          const set = randomRules(family, size, rand);
          const oracle = new LinearMatcher(family, semantics);
          const builder = new RadixBuilder(family);
          for (const p of set.prefixes) {
            oracle.insert(p.words, p.len, p.value);
            if (family === 4) builder.insertV4(p.words[0]!, p.len, p.value);
            else builder.insertV6(p.words, p.len, p.value);
          }
          const tables = [
            builder.build({ ...semantics, rootBits: 8 }),
            builder.build({ ...semantics, rootBits: 16 }),
          ];
          assert.equal(tables[0]!.prefixCount, oracle.size);
          for (const addr of probeAddresses(family, set, rand)) {
            const want = oracle.lookup(addr);
            for (const t of tables) {
              const got = radixLookup(t, addr);
              if (got !== want) {
                assert.fail(
                  `round ${round}, rootBits ${t.stats().rootBits}: lookup(${addr.map((w) => w.toString(16)).join(':')}) = ${got}, oracle ${want}\n` +
                    set.prefixes
                      .map((p) => `${p.words.map((w) => w.toString(16)).join(':')}/${p.len} = ${p.value}`)
                      .join('\n'),
                );
              }
            }
          }
        }
      });
    }
  }
});

describe('RadixTable on the real country blocks', () => {
  const data = loadCountryBlocks();
  const semantics: OracleSemantics = { merge: Math.min, inherit: (_a, own) => own };

  for (const family of [4, 6] as const) {
    it(`IPv${family}: matches the oracle and stays small`, () => {
      const cidrs = family === 4 ? data.v4 : data.v6;
      const countries = family === 4 ? data.v4Country : data.v6Country;
      const builder = new RadixBuilder(family);
      const oracle = new LinearMatcher(family, semantics);
      cidrs.forEach((c, i) => {
        builder.insert(c, countries[i]!);
        oracle.insert(c.family === 4 ? [c.v4] : c.v6, c.prefixLength, countries[i]!);
      });
      const t = builder.build(semantics);
      const narrow = builder.build({ ...semantics, rootBits: 8 });
      const stats = t.stats();
      assert.equal(stats.prefixes, oracle.size);
      assert.equal(stats.rootBits, 16);
      assert.ok(stats.bytes / stats.prefixes < 100, `${stats.bytes / stats.prefixes} bytes per prefix`);

      // Every prefix edge through both layouts: they must agree with each other ...
      for (const c of cidrs) {
        const words = c.family === 4 ? [c.v4] : Array.from(c.v6);
        for (const a of [words, lastAddress(words, c.prefixLength), step(words, -1)]) {
          assert.equal(radixLookup(t, a), radixLookup(narrow, a));
        }
      }
      // ... and with the oracle on a sample (the oracle scans every prefix per lookup).
      const rand = prng(family);
      for (let i = 0; i < 300; i++) {
        const c = cidrs[rand() % cidrs.length]!;
        const words = c.family === 4 ? [c.v4] : Array.from(c.v6);
        const probes = [
          words,
          lastAddress(words, c.prefixLength),
          step(lastAddress(words, c.prefixLength), 1),
        ];
        if (family === 4) probes.push([rand()]);
        else probes.push([0x20000000 | (rand() & 0x1fffffff), rand(), rand(), rand()]);
        for (const a of probes) assert.equal(radixLookup(t, a), oracle.lookup(a), a.join(':'));
      }
    });
  }
});
