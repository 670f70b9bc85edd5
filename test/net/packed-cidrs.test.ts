// Tests of src/net/packed-cidrs.ts (the compact IP-set store every loaded config keeps) and of
// src/memory.ts (returning the memory of a large load to the OS).

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { RECOMMENDED_NODE_FLAGS } from '../../src/cli/node-flags.ts';
import { loadConfigText } from '../../src/config/index.ts';
import { canReleaseHeapMemory, releaseHeapMemory } from '../../src/memory.ts';
import { ipsetSize, PackedCidrMap, parseCidrList } from '../../src/net/index.ts';

const COUNTRIES = new URL('../../bench/data/country-ip-blocks/', import.meta.url);

describe('PackedCidrMap', () => {
  it('gives back every prefix of both families, in order, with canonical text', () => {
    const text = [
      readFileSync(new URL('ipv4/de.cidr', COUNTRIES), 'utf8'),
      readFileSync(new URL('ipv6/de.cidr', COUNTRIES), 'utf8'),
      '0.0.0.0/0\n::/0\n255.255.255.255/32\nffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128\n::ffff:0:0/96\n',
    ].join('\n');
    const parsed = parseCidrList(text);
    assert.equal(parsed.errors.length, 0);
    assert.ok(parsed.cidrs.length > 10_000, `${parsed.cidrs.length} prefixes`);
    const mixed = parsed.cidrs; // IPv4, then IPv6, then both families interleaved
    const packed = new PackedCidrMap(
      new Map([
        ['de', mixed],
        ['empty', []],
      ]),
    );
    assert.equal(packed.size, 2);
    assert.equal(packed.countOf('de'), mixed.length);
    assert.equal(packed.countOf('nope'), 0);
    assert.equal(ipsetSize(packed, 'de'), mixed.length);
    assert.deepEqual(packed.get('empty'), []);
    assert.equal(packed.get('nope'), undefined);
    const back = packed.get('de') ?? [];
    assert.equal(back.length, mixed.length);
    for (let i = 0; i < mixed.length; i++) {
      const a = mixed[i];
      const b = back[i];
      assert.equal(b?.text, a?.text, `prefix ${i}`);
      assert.equal(b?.prefixLength, a?.prefixLength);
      assert.equal(b?.family, a?.family);
      if (a?.family === 4 && b?.family === 4) assert.equal(b.v4, a.v4);
      if (a?.family === 6 && b?.family === 6) assert.deepEqual([...b.v6], [...a.v6]);
    }
    // 8 bytes per IPv4 prefix, 20 per IPv6 prefix.
    const v4 = mixed.filter((c) => c.family === 4).length;
    assert.equal(packed.byteLength, v4 * 8 + (mixed.length - v4) * 20);
    assert.deepEqual([...packed.keys()], ['de', 'empty']);
    assert.deepEqual(
      [...packed].map(([k, v]) => [k, v.length]),
      [
        ['de', mixed.length],
        ['empty', 0],
      ],
    );
  });

  it('is what a loaded config holds, with the IP set sizes the file gave', () => {
    const dir = mkdtempSync(join(tmpdir(), 'seglb-packed-'));
    try {
      const file = join(dir, 'big.cidr');
      writeFileSync(file, readFileSync(new URL('ipv4/us.cidr', COUNTRIES)));
      const expected = parseCidrList(readFileSync(file, 'utf8')).cidrs.length;
      const loaded = loadConfigText(
        `ipsets:
  big: { file: big.cidr }
  small: { cidrs: [192.0.2.0/24, "2001:db8::/32"] }
  both: { union: [big, small] }
segments:
  web:
    vips: [{ listen: "127.0.0.1:0", protocol: http }]
    pool: p
    backend_subnets: [127.0.0.0/8]
    allow: [{ from: [both] }]
pools:
  p: { backends: [{ address: "127.0.0.1:9" }] }
`,
        join(dir, 'seglb.yaml'),
      );
      assert.ok(loaded.ipsets instanceof PackedCidrMap);
      assert.equal(ipsetSize(loaded.ipsets, 'big'), expected);
      assert.equal(ipsetSize(loaded.ipsets, 'both'), expected + 2);
      assert.deepEqual(
        loaded.ipsets.get('small')?.map((c) => c.text),
        ['192.0.2.0/24', '2001:db8::/32'],
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('releaseHeapMemory', () => {
  const exposed = typeof (globalThis as { gc?: unknown }).gc === 'function';
  it('without --expose-gc does nothing (and exposes no gc)', {
    skip: exposed && 'this node runs with --expose-gc',
  }, () => {
    assert.equal(typeof (globalThis as { gc?: unknown }).gc, 'undefined');
    assert.equal(canReleaseHeapMemory(), false);
    assert.equal(releaseHeapMemory(), null);
    assert.equal(typeof (globalThis as { gc?: unknown }).gc, 'undefined');
  });

  it('with --expose-gc returns the pages of a large, dead allocation to the OS', () => {
    // A child node started the way npm start starts seglb.
    const script = `
      import { readFileSync } from 'node:fs';
      const { releaseHeapMemory } = await import(${JSON.stringify(new URL('../../src/memory.ts', import.meta.url).href)});
      const rss = () => Number(/VmRSS:\\s+(\\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))[1]) / 1024;
      let garbage = [];
      for (let i = 0; i < 2_000_000; i++) garbage.push({ i, s: 'x' + i });
      const peak = rss();
      garbage = null;
      const pauseMs = releaseHeapMemory();
      console.log(JSON.stringify({ peak, after: rss(), pauseMs }));
    `;
    const out = execFileSync(
      process.execPath,
      [...RECOMMENDED_NODE_FLAGS, '--input-type=module', '-e', script],
      {
        encoding: 'utf8',
      },
    );
    const { peak, after, pauseMs } = JSON.parse(out) as {
      peak: number;
      after: number;
      pauseMs: number | null;
    };
    assert.equal(typeof pauseMs, 'number');
    // The allocation above is ~150 MB of heap; a plain major GC keeps most of its pages pooled.
    assert.ok(peak - after > 60, `RSS ${peak.toFixed(0)} MB -> ${after.toFixed(0)} MB`);
  });
});
