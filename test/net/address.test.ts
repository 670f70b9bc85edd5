// Tests of src/net/address.ts: IPv4/IPv6 parsing and formatting, source normalisation, checked
// against node:net and the WHATWG URL serialiser on random input.

import assert from 'node:assert/strict';
import { isIPv4, isIPv6 } from 'node:net';
import { describe, it } from 'node:test';
import { SeglbError } from '../../src/errors.ts';
import {
  formatAddress,
  formatIPv4,
  formatIPv6,
  normaliseSource,
  parseAddress,
  parseIPv4,
  parseIPv6,
  unmapV4,
} from '../../src/net/index.ts';

/** Seeded PRNG (mulberry32), so a failure reproduces. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return (t ^ (t >>> 14)) >>> 0;
  };
}

function v6(s: string): number[] | null {
  const out = new Uint32Array(4);
  return parseIPv6(s, out) ? Array.from(out) : null;
}

describe('parseIPv4', () => {
  it('parses dotted quads to unsigned 32-bit integers', () => {
    assert.equal(parseIPv4('0.0.0.0'), 0);
    assert.equal(parseIPv4('10.0.0.1'), 0x0a000001);
    assert.equal(parseIPv4('192.0.2.255'), 0xc00002ff);
    assert.equal(parseIPv4('255.255.255.255'), 0xffffffff);
    assert.equal(parseIPv4('128.0.0.0'), 2 ** 31);
  });

  it('returns -1 for everything else, including leading zeros', () => {
    for (const bad of [
      '',
      '1.2.3',
      '1.2.3.4.',
      '.1.2.3.4',
      '1..2.3',
      '1.2.3.4.5',
      '256.0.0.0',
      '1.2.3.1000',
      '01.2.3.4',
      '1.2.3.00',
      '010.0.0.1',
      ' 1.2.3.4',
      '1.2.3.4 ',
      '+1.2.3.4',
      '1.2.3.-4',
      '1.2.3.4/32',
      '0x1.2.3.4',
      '١.2.3.4',
      '::1',
      '1.2.3.4%eth0',
    ]) {
      assert.equal(parseIPv4(bad), -1, bad);
    }
  });

  it('agrees with node:net isIPv4 on random strings', () => {
    const rand = prng(1);
    const alphabet = '0123456789..';
    for (let i = 0; i < 20_000; i++) {
      let s = '';
      const len = 1 + (rand() % 16);
      for (let k = 0; k < len; k++) s += alphabet[rand() % alphabet.length];
      assert.equal(parseIPv4(s) >= 0, isIPv4(s), s);
    }
  });

  it('round-trips with formatIPv4', () => {
    const rand = prng(2);
    for (let i = 0; i < 10_000; i++) {
      const n = rand();
      const text = formatIPv4(n);
      assert.ok(isIPv4(text));
      assert.equal(parseIPv4(text), n);
    }
    assert.equal(formatIPv4(-1), '255.255.255.255');
  });
});

describe('parseIPv6', () => {
  it('parses the RFC 4291 text forms into big-endian words', () => {
    assert.deepEqual(v6('::'), [0, 0, 0, 0]);
    assert.deepEqual(v6('::1'), [0, 0, 0, 1]);
    assert.deepEqual(v6('1::'), [0x00010000, 0, 0, 0]);
    assert.deepEqual(v6('2001:db8::1'), [0x20010db8, 0, 0, 1]);
    assert.deepEqual(v6('2001:DB8:0:0:8:800:200C:417A'), [0x20010db8, 0, 0x00080800, 0x200c417a]);
    assert.deepEqual(v6('1:2:3:4:5:6:7:8'), [0x00010002, 0x00030004, 0x00050006, 0x00070008]);
    assert.deepEqual(v6('1:2:3:4:5:6:7::'), [0x00010002, 0x00030004, 0x00050006, 0x00070000]);
    assert.deepEqual(v6('::2:3:4:5:6:7:8'), [0x00000002, 0x00030004, 0x00050006, 0x00070008]);
    assert.deepEqual(
      v6('ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff'),
      [0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff],
    );
    assert.deepEqual(v6('0001:02:003::'), [0x00010002, 0x00030000, 0, 0]);
  });

  it('parses an embedded IPv4 tail', () => {
    assert.deepEqual(v6('::ffff:192.0.2.1'), [0, 0, 0xffff, 0xc0000201]);
    assert.deepEqual(v6('::FFFF:1.2.3.4'), [0, 0, 0xffff, 0x01020304]);
    assert.deepEqual(v6('64:ff9b::198.51.100.7'), [0x0064ff9b, 0, 0, 0xc6336407]);
    assert.deepEqual(v6('1:2:3:4:5:6:1.2.3.4'), [0x00010002, 0x00030004, 0x00050006, 0x01020304]);
    assert.deepEqual(v6('::1.2.3.4'), [0, 0, 0, 0x01020304]);
  });

  it('accepts and ignores a zone id', () => {
    assert.deepEqual(v6('fe80::1%eth0'), [0xfe800000, 0, 0, 1]);
    assert.deepEqual(v6('fe80::1%25'), [0xfe800000, 0, 0, 1]);
    assert.equal(v6('fe80::1%'), null);
    assert.equal(v6('%eth0'), null);
  });

  it('rejects malformed text and leaves out untouched', () => {
    for (const bad of [
      '',
      ':',
      ':::',
      '1:::2',
      '1::2::3',
      ':1::',
      '1:',
      '1::2:',
      ':1:2:3:4:5:6:7:8',
      '1:2:3:4:5:6:7',
      '1:2:3:4:5:6:7:8:9',
      '1::2:3:4:5:6:7:8',
      '12345::',
      'g::',
      '::ffff:1.2.3',
      '::ffff:01.2.3.4',
      '::1.2.3.4:5',
      '1.2.3.4::',
      '1:2:3:4:5:6:7:1.2.3.4',
      '::ffff:1.2.3.4.5',
      ' ::1',
      '::1 ',
      '1.2.3.4',
      '[::1]',
    ]) {
      const out = new Uint32Array([7, 7, 7, 7]);
      assert.equal(parseIPv6(bad, out), false, bad);
      assert.deepEqual(Array.from(out), [7, 7, 7, 7], bad);
    }
  });

  it('agrees with node:net isIPv6 on random strings', () => {
    const rand = prng(3);
    const alphabet = '0123456789abcdefABCDEF::::::....';
    for (let i = 0; i < 30_000; i++) {
      let s = '';
      const len = 1 + (rand() % 30);
      for (let k = 0; k < len; k++) s += alphabet[rand() % alphabet.length];
      assert.equal(v6(s) !== null, isIPv6(s), s);
    }
  });

  it('agrees with node:net and the WHATWG URL parser on random valid addresses', () => {
    const rand = prng(4);
    const out = new Uint32Array(4);
    for (let i = 0; i < 10_000; i++) {
      // Random groups, many zeros, random compression and case.
      const groups: string[] = [];
      for (let g = 0; g < 8; g++) {
        const r = rand();
        const value = r % 3 === 0 ? 0 : r % 3 === 1 ? rand() & 0xf : rand() & 0xffff;
        let text = value.toString(16);
        if (rand() % 4 === 0) text = text.padStart(4, '0');
        groups.push(rand() % 2 ? text.toUpperCase() : text);
      }
      let text = groups.join(':');
      const from = rand() % 8;
      const to = from + (rand() % (8 - from));
      if (rand() % 2 && groups.slice(from, to + 1).every((g) => /^0+$/.test(g))) {
        text = `${groups.slice(0, from).join(':')}::${groups.slice(to + 1).join(':')}`;
      }
      assert.ok(isIPv6(text), text);
      assert.ok(parseIPv6(text, out), text);
      const canonical = formatIPv6(out);
      const mapped = out[0] === 0 && out[1] === 0 && out[2] === 0xffff;
      if (!mapped) assert.equal(`[${canonical}]`, new URL(`http://[${text}]/`).hostname, text);
      const again = new Uint32Array(4);
      assert.ok(parseIPv6(canonical, again));
      assert.deepEqual(again, out);
    }
  });
});

describe('formatIPv6', () => {
  it('writes RFC 5952 canonical text', () => {
    assert.equal(formatIPv6([0, 0, 0, 0]), '::');
    assert.equal(formatIPv6([0, 0, 0, 1]), '::1');
    assert.equal(formatIPv6([0x00010000, 0, 0, 0]), '1::');
    assert.equal(formatIPv6([0x20010db8, 0, 0, 1]), '2001:db8::1');
    // A single zero group is not compressed (RFC 5952 §4.2.2).
    assert.equal(formatIPv6([0x20010db8, 0x00000001, 0x00010001, 0x00010001]), '2001:db8:0:1:1:1:1:1');
    // The longest run wins (§4.2.3) ...
    assert.equal(formatIPv6([0x20010000, 0x00010000, 0, 0x00000001]), '2001:0:1::1');
    // ... and the first one on a tie.
    assert.equal(formatIPv6([0x20010db8, 0, 0x00010000, 0x00000001]), '2001:db8::1:0:0:1');
    assert.equal(
      formatIPv6([0xabcdef01, 0x23456789, 0xabcdef01, 0x23456789]),
      'abcd:ef01:2345:6789:abcd:ef01:2345:6789',
    );
    // IPv4-mapped addresses get a dotted tail (§5).
    assert.equal(formatIPv6([0, 0, 0xffff, 0xc0000201]), '::ffff:192.0.2.1');
    assert.equal(formatIPv6(new Uint32Array([0xfe800000, 0, 0, 1])), 'fe80::1');
  });
});

describe('normaliseSource', () => {
  it('unmaps IPv4-mapped IPv6 in any case', () => {
    assert.equal(normaliseSource('::ffff:192.0.2.1'), '192.0.2.1');
    assert.equal(normaliseSource('::FFFF:10.0.0.1'), '10.0.0.1');
    assert.equal(normaliseSource('::fFfF:255.255.255.255'), '255.255.255.255');
  });

  it('returns anything else unchanged', () => {
    for (const s of [
      '192.0.2.1',
      '::1',
      '2001:db8::1',
      '::ffff:1.2.3',
      '::ffff:0102:0304',
      '::ffff:1.2.3.4%eth0',
      '::fffe:1.2.3.4',
      '::ffff:01.2.3.4',
      '0:0:0:0:0:ffff:1.2.3.4',
      '',
      'not an address',
    ]) {
      assert.equal(normaliseSource(s), s);
    }
  });
});

describe('unmapV4', () => {
  it('returns the embedded address only for ::ffff:0:0/96', () => {
    assert.equal(unmapV4([0, 0, 0xffff, 0xc0000201]), 0xc0000201);
    assert.equal(unmapV4([0, 0, 0xffff, 0xffffffff]), 0xffffffff);
    assert.equal(unmapV4([0, 0, 0, 0xc0000201]), -1);
    assert.equal(unmapV4([0x20010db8, 0, 0xffff, 1]), -1);
  });
});

describe('parseAddress', () => {
  it('returns a discriminated union', () => {
    assert.deepEqual(parseAddress('10.1.2.3'), { family: 4, v4: 0x0a010203 });
    const a = parseAddress('2001:db8::1');
    assert.equal(a.family, 6);
    if (a.family === 6) assert.deepEqual(Array.from(a.v6), [0x20010db8, 0, 0, 1]);
    assert.equal(parseAddress('fe80::1%eth0').family, 6);
    assert.equal(formatAddress(parseAddress('2001:0DB8::0001')), '2001:db8::1');
    assert.equal(formatAddress(parseAddress('192.0.2.1')), '192.0.2.1');
  });

  it('throws NetError SEGLB_NET_INVALID_ADDRESS', () => {
    for (const bad of ['', 'localhost', '1.2.3.256', '1::2::3', '10.0.0.0/8']) {
      assert.throws(
        () => parseAddress(bad),
        (e: unknown) =>
          e instanceof SeglbError && e.name === 'NetError' && e.code === 'SEGLB_NET_INVALID_ADDRESS',
        bad,
      );
    }
  });
});
