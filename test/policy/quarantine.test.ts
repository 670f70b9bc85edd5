// Tests the quarantine set with a fake clock: add/match/remove, expiry, longest-prefix matching
// (an expired longer entry must not shadow a live shorter one), replacement and input checks.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Quarantine } from '../../src/policy/quarantine.ts';

function fakeClock(start = 1_000_000): { now: () => number; advance: (ms: number) => void } {
  let t = start;
  return { now: () => t, advance: (ms) => (t += ms) };
}

describe('Quarantine', () => {
  test('an empty quarantine matches nothing', () => {
    const q = new Quarantine();
    assert.equal(q.match('127.0.0.7'), undefined);
    assert.equal(q.size, 0);
    assert.deepEqual(q.list(), []);
  });

  test('add an address: it and only it matches, with its reason and times', () => {
    const clock = fakeClock();
    const q = new Quarantine(clock.now);
    const entry = q.add('127.0.0.7', 60_000, 'port scan');
    assert.deepEqual(entry, {
      cidr: '127.0.0.7/32',
      expiresAt: 1_060_000,
      reason: 'port scan',
      addedAt: 1_000_000,
    });
    assert.ok(Object.isFrozen(entry));
    assert.equal(q.match('127.0.0.7'), entry);
    assert.equal(q.match('127.0.0.8'), undefined);
    assert.equal(q.match('::1'), undefined);
    assert.deepEqual(q.list(), [entry]);
  });

  test('prefixes of both families; the longest covering prefix is reported', () => {
    const q = new Quarantine(fakeClock().now);
    q.add('10.0.0.0/8', 60_000, 'wide');
    q.add('10.1.0.0/16', 60_000, 'narrow');
    q.add('2001:db8::/32', 60_000, 'v6');
    assert.equal(q.match('10.1.2.3')?.reason, 'narrow');
    assert.equal(q.match('10.2.0.1')?.reason, 'wide');
    assert.equal(q.match('2001:db8::7')?.reason, 'v6');
    assert.equal(q.match('2001:db9::7'), undefined);
    assert.equal(q.match('11.0.0.1'), undefined);
    assert.equal(q.match('garbage'), undefined);
  });

  test('expiry lifts an entry at once; list() leaves it out; sweep() drops it', () => {
    const clock = fakeClock();
    const q = new Quarantine(clock.now);
    q.add('127.0.0.7', 1000, 'short');
    q.add('127.0.0.8', 5000, 'long');
    clock.advance(999);
    assert.ok(q.match('127.0.0.7'));
    clock.advance(1);
    assert.equal(q.match('127.0.0.7'), undefined, 'expired exactly at expiresAt');
    assert.deepEqual(
      q.list().map((e) => e.cidr),
      ['127.0.0.8/32'],
    );
    assert.ok(q.match('127.0.0.8'));
    clock.advance(10_000);
    assert.equal(q.sweep(), 1);
    assert.equal(q.size, 0);
    assert.equal(q.sweep(), 0);
  });

  test('an expired longer entry does not shadow a live shorter one', () => {
    const clock = fakeClock();
    const q = new Quarantine(clock.now);
    q.add('127.0.0.0/24', 60_000, 'subnet');
    q.add('127.0.0.7', 100, 'host');
    assert.equal(q.match('127.0.0.7')?.reason, 'host');
    clock.advance(200);
    assert.equal(q.match('127.0.0.7')?.reason, 'subnet');
    // Several expired levels above a live one.
    q.add('127.0.0.0/28', 100, 'l28');
    q.add('127.0.0.4/30', 100, 'l30');
    q.add('127.0.0.6/31', 100, 'l31');
    clock.advance(200);
    assert.equal(q.match('127.0.0.6')?.reason, 'subnet');
    assert.equal(q.size, 1);
  });

  test('remove lifts an entry; removing what is not there returns false', () => {
    const q = new Quarantine(fakeClock().now);
    q.add('127.0.0.7', 60_000, 'why');
    q.add('127.0.0.0/24', 60_000, 'subnet');
    assert.equal(q.remove('127.0.0.7'), true);
    assert.equal(q.match('127.0.0.7')?.reason, 'subnet', 'the wider entry still covers it');
    assert.equal(q.remove('127.0.0.7/32'), false);
    assert.equal(q.remove('127.0.0.0/24'), true);
    assert.equal(q.match('127.0.0.7'), undefined);
    assert.equal(q.remove('10.0.0.0/8'), false);
  });

  test('adding the same CIDR again replaces its reason and expiry', () => {
    const clock = fakeClock();
    const q = new Quarantine(clock.now);
    q.add('127.0.0.7', 100, 'first');
    q.add('127.0.0.7/32', 10_000, 'second');
    assert.equal(q.size, 1);
    clock.advance(500);
    assert.equal(q.match('127.0.0.7')?.reason, 'second');
  });

  test('IPv4-mapped IPv6 entries are stored as IPv4 (sources are unmapped at accept)', () => {
    const q = new Quarantine(fakeClock().now);
    const e = q.add('::ffff:127.0.0.7', 60_000, 'mapped');
    assert.equal(e.cidr, '127.0.0.7/32');
    assert.equal(q.match('127.0.0.7'), e);
    q.add('::ffff:10.0.0.0/104', 60_000, 'mapped net');
    assert.equal(q.match('10.2.3.4')?.reason, 'mapped net');
    assert.equal(q.remove('127.0.0.7'), true);
    assert.equal(q.remove('::ffff:10.0.0.0/104'), true);
    assert.equal(q.size, 0);
  });

  test('Infinity means no expiry', () => {
    const clock = fakeClock();
    const q = new Quarantine(clock.now);
    q.add('::1', Number.POSITIVE_INFINITY, 'forever');
    clock.advance(10 * 365 * 86_400_000);
    assert.equal(q.match('::1')?.cidr, '::1/128');
  });

  test('bad input: invalid or non-canonical CIDRs throw coded errors, a non-positive TTL a RangeError', () => {
    const q = new Quarantine(fakeClock().now);
    assert.throws(() => q.add('127.0.0.300', 1000, 'x'), { code: 'SEGLB_NET_INVALID_CIDR' });
    assert.throws(() => q.add('10.1.2.3/8', 1000, 'x'), { code: 'SEGLB_NET_NONCANONICAL_CIDR' });
    assert.throws(() => q.remove('nope'), { code: 'SEGLB_NET_INVALID_CIDR' });
    for (const ttl of [0, -1, Number.NaN]) assert.throws(() => q.add('127.0.0.7', ttl, 'x'), RangeError);
    assert.equal(q.size, 0);
  });

  test('every change bumps version; lookups do not', () => {
    const q = new Quarantine(fakeClock().now);
    const v0 = q.version;
    q.add('127.0.0.7', 1000, 'x');
    q.match('127.0.0.7');
    assert.equal(q.version, v0 + 1);
    q.remove('127.0.0.7');
    assert.equal(q.version, v0 + 2);
  });

  test('two quarantines are independent (no hidden globals)', () => {
    const a = new Quarantine();
    const b = new Quarantine();
    a.add('127.0.0.7', 60_000, 'x');
    assert.ok(a.match('127.0.0.7'));
    assert.equal(b.match('127.0.0.7'), undefined);
  });
});
