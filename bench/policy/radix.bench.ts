// Benchmark of the radix longest-prefix-match table (src/policy/radix.ts) against linear scans:
// compile time, bytes per prefix and lookups/s on the real country set and on 1M synthetic prefixes.
// Run: node bench/policy/radix.bench.ts  (about 30-60 s; --quick for a smaller synthetic set)

import IPCIDR from 'ip-cidr';
import type { CidrV4, CidrV6 } from '../../src/net/index.ts';
import { formatIPv4, formatIPv6, parseCidrList } from '../../src/net/index.ts';
import { RadixBuilder, type RadixTable } from '../../src/policy/radix.ts';
import { loadCountryBlocks } from '../../test/support/country-blocks.ts';

const QUICK = process.argv.includes('--quick');
const SYNTHETIC = QUICK ? 200_000 : 1_000_000;
const LOOKUPS = 1 << 20; // distinct addresses per lookup run
const RUN_MS = 400; // minimum wall time of each lookup measurement
const LINEAR_MS = 700; // wall time spent on each linear-scan baseline

/** mulberry32: small seeded PRNG so every run measures the same sets. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return (t ^ (t >>> 14)) >>> 0;
  };
}

/** Picks from a weighted table of prefix lengths. */
function lengthPicker(table: [length: number, weight: number][], rand: () => number): () => number {
  const total = table.reduce((s, [, w]) => s + w, 0);
  return () => {
    let r = (rand() / 2 ** 32) * total;
    for (const [len, w] of table) {
      r -= w;
      if (r < 0) return len;
    }
    return table[table.length - 1]![0];
  };
}

function maskOf(len: number): number {
  return len === 0 ? 0 : (-1 << (32 - len)) >>> 0;
}

/** A prefix set in flat arrays (1 or 4 words per prefix). */
interface PrefixSet {
  family: 4 | 6;
  words: Uint32Array;
  lens: Uint8Array;
  values: Int32Array;
  count: number;
}

function fromCidrs(family: 4 | 6, list: readonly (CidrV4 | CidrV6)[], values: readonly number[]): PrefixSet {
  const n = family === 4 ? 1 : 4;
  const set: PrefixSet = {
    family,
    words: new Uint32Array(list.length * n),
    lens: new Uint8Array(list.length),
    values: Int32Array.from(values),
    count: list.length,
  };
  list.forEach((c, i) => {
    if (c.family === 4) set.words[i] = c.v4;
    else set.words.set(c.v6, i * 4);
    set.lens[i] = c.prefixLength;
  });
  return set;
}

/** ~1M IPv4 prefixes shaped like a BGP table: mostly /16-/24, a tail of /25-/32. */
function syntheticV4(count: number, seed: number): PrefixSet {
  const rand = prng(seed);
  const pick = lengthPicker(
    [
      [8, 0.05],
      [12, 0.3],
      [14, 0.6],
      [16, 3],
      [17, 1.5],
      [18, 2.5],
      [19, 4],
      [20, 6],
      [21, 6],
      [22, 11],
      [23, 10],
      [24, 50],
      [25, 1],
      [26, 1],
      [27, 1],
      [28, 0.8],
      [29, 0.8],
      [30, 0.5],
      [32, 1],
    ],
    rand,
  );
  const set: PrefixSet = {
    family: 4,
    words: new Uint32Array(count),
    lens: new Uint8Array(count),
    values: new Int32Array(count),
    count,
  };
  for (let i = 0; i < count; i++) {
    const len = pick();
    // Unicast space 1.0.0.0-223.255.255.255, as routed tables are.
    const addr = (0x01000000 + (rand() % 0xdf000000)) >>> 0;
    set.words[i] = (addr & maskOf(len)) >>> 0;
    set.lens[i] = len;
    set.values[i] = rand() % 1000;
  }
  return set;
}

/**
 * ~1M IPv6 prefixes shaped like a routing table: /29-/64 (and a few /128) under the real /32
 * allocations of the country set (`tops`, first 32 bits), so they cluster as registry space does.
 */
function syntheticV6(count: number, seed: number, tops: Uint32Array): PrefixSet {
  const rand = prng(seed);
  const pick = lengthPicker(
    [
      [29, 1],
      [32, 8],
      [36, 3],
      [40, 6],
      [44, 8],
      [48, 55],
      [52, 2],
      [56, 8],
      [60, 1],
      [64, 6],
      [128, 2],
    ],
    rand,
  );
  const set: PrefixSet = {
    family: 6,
    words: new Uint32Array(count * 4),
    lens: new Uint8Array(count),
    values: new Int32Array(count),
    count,
  };
  for (let i = 0; i < count; i++) {
    const len = pick();
    const w = [tops[rand() % tops.length]!, rand(), rand(), rand()];
    for (let k = 0; k < 4; k++) {
      const bits = len - 32 * k;
      const m = bits <= 0 ? 0 : bits >= 32 ? 0xffffffff : maskOf(bits);
      set.words[i * 4 + k] = (w[k]! & m) >>> 0;
    }
    set.lens[i] = len;
    set.values[i] = rand() % 1000;
  }
  return set;
}

/** Distinct first 32 bits of a set of IPv6 prefixes. */
function allocations(set: PrefixSet): Uint32Array {
  const tops = new Set<number>();
  for (let i = 0; i < set.count; i++) tops.add(set.words[i * 4]!);
  return Uint32Array.from(tops);
}

function toText(set: PrefixSet): string {
  const lines: string[] = new Array(set.count);
  for (let i = 0; i < set.count; i++) {
    lines[i] =
      set.family === 4
        ? `${formatIPv4(set.words[i]!)}/${set.lens[i]}`
        : `${formatIPv6(set.words.subarray(i * 4, i * 4 + 4))}/${set.lens[i]}`;
  }
  return lines.join('\n');
}

const SEMANTICS = {
  merge: (a: number, b: number) => Math.min(a, b),
  inherit: (_a: number, own: number) => own,
};

function build(set: PrefixSet): { table: RadixTable; ms: number } {
  const t0 = performance.now();
  const b = new RadixBuilder(set.family);
  if (set.family === 4) {
    for (let i = 0; i < set.count; i++) b.insertV4(set.words[i]!, set.lens[i]!, set.values[i]!);
  } else {
    for (let i = 0; i < set.count; i++)
      b.insertV6(set.words.subarray(i * 4, i * 4 + 4), set.lens[i]!, set.values[i]!);
  }
  const table = b.build(SEMANTICS);
  return { table, ms: performance.now() - t0 };
}

/** Addresses to look up: uniformly random, or inside a random prefix of the set ("hits"). */
function addresses(set: PrefixSet, hits: boolean, seed: number): Uint32Array {
  const rand = prng(seed);
  const n = set.family === 4 ? 1 : 4;
  const out = new Uint32Array(LOOKUPS * n);
  for (let i = 0; i < LOOKUPS; i++) {
    if (!hits) {
      for (let k = 0; k < n; k++) out[i * n + k] = rand();
      if (n === 4) out[i * 4] = (0x20000000 | (out[i * 4]! & 0x1fffffff)) >>> 0; // global unicast
      continue;
    }
    const p = rand() % set.count;
    const len = set.lens[p]!;
    for (let k = 0; k < n; k++) {
      const bits = len - 32 * k;
      const m = bits <= 0 ? 0 : bits >= 32 ? 0xffffffff : maskOf(bits);
      out[i * n + k] = ((set.words[p * n + k]! & m) | (rand() & ~m)) >>> 0;
    }
  }
  return out;
}

let sink = 0;

/** Lookups per second of `table` over `addrs`, repeated for at least RUN_MS. */
function measureRadix(table: RadixTable, family: 4 | 6, addrs: Uint32Array): number {
  const run = (): number => {
    let s = 0;
    if (family === 4) {
      for (let i = 0; i < addrs.length; i++) s += table.lookupV4(addrs[i]!);
    } else {
      for (let i = 0; i < addrs.length; i += 4) {
        s += table.lookupV6(addrs[i]!, addrs[i + 1]!, addrs[i + 2]!, addrs[i + 3]!);
      }
    }
    return s;
  };
  sink += run(); // warm-up (and JIT)
  let lookups = 0;
  const t0 = performance.now();
  let elapsed = 0;
  do {
    sink += run();
    lookups += addrs.length / (family === 4 ? 1 : 4);
    elapsed = performance.now() - t0;
  } while (elapsed < RUN_MS);
  return (lookups / elapsed) * 1000;
}

/** Baseline: the longest match by scanning every prefix (typed arrays, no allocation). */
function measureLinear(set: PrefixSet, addrs: Uint32Array): number {
  const n = set.family === 4 ? 1 : 4;
  const masks = new Uint32Array(set.count * n);
  for (let i = 0; i < set.count; i++) {
    for (let k = 0; k < n; k++) {
      const bits = set.lens[i]! - 32 * k;
      masks[i * n + k] = bits <= 0 ? 0 : bits >= 32 ? 0xffffffff : maskOf(bits);
    }
  }
  const { words, lens, values, count } = set;
  let done = 0;
  const t0 = performance.now();
  let elapsed = 0;
  for (let a = 0; elapsed < LINEAR_MS && a < LOOKUPS; a++) {
    let best = -1;
    let bestLen = -1;
    if (n === 1) {
      const addr = addrs[a]!;
      for (let i = 0; i < count; i++) {
        if ((addr & masks[i]!) >>> 0 === words[i] && lens[i]! > bestLen) {
          best = values[i]!;
          bestLen = lens[i]!;
        }
      }
    } else {
      const a0 = addrs[a * 4]!;
      const a1 = addrs[a * 4 + 1]!;
      const a2 = addrs[a * 4 + 2]!;
      const a3 = addrs[a * 4 + 3]!;
      for (let i = 0; i < count; i++) {
        const o = i * 4;
        if (
          (a0 & masks[o]!) >>> 0 === words[o] &&
          (a1 & masks[o + 1]!) >>> 0 === words[o + 1] &&
          (a2 & masks[o + 2]!) >>> 0 === words[o + 2] &&
          (a3 & masks[o + 3]!) >>> 0 === words[o + 3] &&
          lens[i]! > bestLen
        ) {
          best = values[i]!;
          bestLen = lens[i]!;
        }
      }
    }
    sink += best;
    done++;
    elapsed = performance.now() - t0;
  }
  return (done / elapsed) * 1000;
}

/** Baseline 2: ip-cidr `contains` over every prefix (what a naive implementation would do). */
function measureIpCidr(list: readonly CidrV4[], addrs: Uint32Array): { perSec: number; setupMs: number } {
  const t0 = performance.now();
  const objects = list.map((c) => new IPCIDR(c.text));
  const setupMs = performance.now() - t0;
  let done = 0;
  const t1 = performance.now();
  let elapsed = 0;
  for (let a = 0; elapsed < LINEAR_MS; a++) {
    const text = formatIPv4(addrs[a]!);
    const address = IPCIDR.createAddress(text);
    let hits = 0;
    for (const o of objects) if (o.contains(address)) hits++;
    sink += hits;
    done++;
    elapsed = performance.now() - t1;
  }
  return { perSec: (done / elapsed) * 1000, setupMs };
}

interface Row {
  name: string;
  prefixes: number;
  parseMs: number;
  buildMs: number;
  bytesPerPrefix: number;
  randomPerSec: number;
  hitPerSec: number;
  linearPerSec: number;
}

function bench(name: string, set: PrefixSet, parseMs: number, seed: number): Row {
  const { table, ms } = build(set);
  const stats = table.stats();
  const random = addresses(set, false, seed);
  const hit = addresses(set, true, seed + 1);
  const randomPerSec = measureRadix(table, set.family, random);
  const hitPerSec = measureRadix(table, set.family, hit);
  const linearPerSec = measureLinear(set, hit);
  return {
    name,
    prefixes: stats.prefixes,
    parseMs,
    buildMs: ms,
    bytesPerPrefix: stats.bytes / stats.prefixes,
    randomPerSec,
    hitPerSec,
    linearPerSec,
  };
}

function pad(s: string, n: number): string {
  return s.length >= n ? s : ' '.repeat(n - s.length) + s;
}

function printTable(rows: Row[]): void {
  const head = [
    'set',
    'prefixes',
    'parse ms',
    'build ms',
    'B/prefix',
    'random M/s',
    'ns',
    'hit M/s',
    'ns',
    'linear /s',
    'hit ratio',
  ];
  const widths = [24, 9, 9, 9, 9, 11, 6, 9, 6, 10, 10];
  const line = (cells: string[]) =>
    console.log(cells.map((c, i) => (i === 0 ? c.padEnd(widths[0]!) : pad(c, widths[i]!))).join(' '));
  line(head);
  for (const r of rows) {
    line([
      r.name,
      String(r.prefixes),
      r.parseMs.toFixed(0),
      r.buildMs.toFixed(0),
      r.bytesPerPrefix.toFixed(1),
      (r.randomPerSec / 1e6).toFixed(1),
      (1e9 / r.randomPerSec).toFixed(0),
      (r.hitPerSec / 1e6).toFixed(1),
      (1e9 / r.hitPerSec).toFixed(0),
      r.linearPerSec.toFixed(0),
      `${(r.hitPerSec / r.linearPerSec).toFixed(0)}x`,
    ]);
  }
}

const started = performance.now();
console.log(
  `radix bench: node ${process.version}, ${SYNTHETIC} synthetic prefixes per family${QUICK ? ' (--quick)' : ''}`,
);
const rows: Row[] = [];

const countries = loadCountryBlocks();
const c4 = fromCidrs(4, countries.v4, countries.v4Country);
const c6 = fromCidrs(6, countries.v6, countries.v6Country);
// Parse time is for the whole country set (both families), shown on the IPv4 row.
rows.push(bench('country IPv4', c4, countries.parseMs, 11));
rows.push(bench('country IPv6', c6, 0, 21));
{
  const { table } = build(c4);
  const b6 = build(c6);
  const combined = table.stats().bytes + b6.table.stats().bytes;
  console.log(
    `country set: ${countries.lines} lines, ${countries.codes.length} countries, parse ${countries.parseMs.toFixed(0)} ms, ` +
      `${(combined / 1048576).toFixed(1)} MiB for both tables`,
  );
}

/** Wall time of parseCidrList over the text form of a set (the parsed list is dropped at once). */
function parseMs(set: PrefixSet): number {
  const text = toText(set);
  const t0 = performance.now();
  const parsed = parseCidrList(text);
  const ms = performance.now() - t0;
  if (parsed.errorCount > 0 || parsed.cidrs.length !== set.count) {
    throw new Error(`synthetic IPv${set.family} text: ${JSON.stringify(parsed.errors[0])}`);
  }
  return ms;
}

const s4 = syntheticV4(SYNTHETIC, 4);
rows.push(bench(`synthetic IPv4 ${SYNTHETIC / 1e6}M`, s4, parseMs(s4), 31));
const s6 = syntheticV6(SYNTHETIC, 6, allocations(c6));
rows.push(bench(`synthetic IPv6 ${SYNTHETIC / 1e6}M`, s6, parseMs(s6), 41));

console.log('');
printTable(rows);

const ipc = measureIpCidr(countries.v4, addresses(c4, true, 51));
const countryRow = rows[0]!;
console.log('');
console.log(
  `ip-cidr contains() over the ${countries.v4.length} country IPv4 prefixes: ${ipc.perSec.toFixed(1)} lookups/s ` +
    `(setup ${ipc.setupMs.toFixed(0)} ms); radix hit lookups are ${(countryRow.hitPerSec / ipc.perSec).toExponential(1)}x faster`,
);
console.log('');
console.log(
  'parse ms: parseCidrList of the text form; build ms: insert + build (sort, merge, inherit, layout);\n' +
    'random: uniformly random addresses (IPv6: in 2000::/3); hit: an address inside a random stored prefix;\n' +
    'linear /s: longest match by scanning all prefixes in typed arrays, on hit addresses; ratio = radix hit / linear.',
);
console.log(`total ${((performance.now() - started) / 1000).toFixed(1)} s (checksum ${sink})`);
