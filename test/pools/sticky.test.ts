// Session persistence parts: the source TTL table (get/set/expire, bounded, export/import for
// cluster peers) and the signed cookie (one value per backend; anything else is ignored).

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { cookieValue, StickyCookie } from '../../src/pools/sticky-cookie.ts';
import { SourceStickyTable } from '../../src/pools/sticky-table.ts';

describe('SourceStickyTable', () => {
  it('remembers a backend until the TTL passes, refreshed by set', () => {
    const t = new SourceStickyTable(1000, 10);
    t.set('10.0.0.1', 'b1:80', 0);
    assert.equal(t.get('10.0.0.1', 999), 'b1:80');
    assert.equal(t.get('10.0.0.1', 1000), undefined, 'expired at ttl');
    assert.equal(t.size, 0, 'an expired entry is dropped on get');
    t.set('10.0.0.2', 'b1:80', 0);
    t.set('10.0.0.2', 'b1:80', 800); // refresh
    assert.equal(t.get('10.0.0.2', 1500), 'b1:80');
    t.set('10.0.0.2', 'b2:80', 1600); // moved to another backend
    assert.equal(t.get('10.0.0.2', 1700), 'b2:80');
  });

  it('expire() drops expired entries oldest first and keeps the live ones', () => {
    const t = new SourceStickyTable(100, 100);
    for (let i = 0; i < 10; i++) t.set(`10.0.0.${i}`, 'b:80', i * 10);
    assert.equal(t.expire(145), 5);
    assert.equal(t.size, 5);
    assert.equal(t.get('10.0.0.5', 145), 'b:80');
  });

  it('is bounded: the least recently refreshed entry goes first', () => {
    const t = new SourceStickyTable(10_000, 3);
    t.set('a', 'x:1', 0);
    t.set('b', 'x:1', 1);
    t.set('c', 'x:1', 2);
    t.set('a', 'y:1', 3); // a moves to the end
    t.set('d', 'x:1', 4);
    assert.equal(t.size, 3);
    assert.equal(t.get('b', 5), undefined);
    assert.equal(t.get('a', 5), 'y:1');
    t.configure(10_000, 1);
    assert.equal(t.size, 1);
    assert.equal(t.get('d', 5), 'x:1');
  });

  it('exports live entries and imports a peer’s, keeping the later expiry', () => {
    const a = new SourceStickyTable(1000, 100);
    a.set('10.0.0.1', 'b1:80', 0);
    a.set('10.0.0.2', 'b2:80', 500);
    const exported = a.export(600);
    assert.deepEqual(exported, [
      { key: '10.0.0.1', backend: 'b1:80', expiresAt: 1000 },
      { key: '10.0.0.2', backend: 'b2:80', expiresAt: 1500 },
    ]);
    const b = new SourceStickyTable(1000, 100);
    b.set('10.0.0.2', 'b9:80', 700); // newer locally: kept
    assert.equal(b.import([...exported, { key: 'old', backend: 'b1:80', expiresAt: 10 }], 700), 1);
    assert.equal(b.get('10.0.0.1', 700), 'b1:80');
    assert.equal(b.get('10.0.0.2', 700), 'b9:80');
    assert.equal(b.get('old', 700), undefined);
  });
});

describe('StickyCookie', () => {
  const key = Buffer.from('0123456789abcdef0123456789abcdef');
  const cookie = new StickyCookie('web', 'srv', key, ['10.0.0.1:80', '10.0.0.2:80'], 3600);

  it('issues one opaque value per backend and reads it back', () => {
    const v1 = cookie.valueFor('10.0.0.1:80');
    const v2 = cookie.valueFor('10.0.0.2:80');
    assert.ok(v1 && v2 && v1 !== v2);
    assert.doesNotMatch(v1, /10\.0\.0/);
    assert.equal(cookie.lookup(`a=1; srv=${v2}; b=2`), '10.0.0.2:80');
    assert.equal(cookie.lookup(`srv="${v1}"`), '10.0.0.1:80');
    assert.equal(
      cookie.setCookieFor('10.0.0.1:80', false),
      `srv=${v1}; Path=/; HttpOnly; SameSite=Lax; Max-Age=3600`,
    );
    assert.match(cookie.setCookieFor('10.0.0.1:80', true) ?? '', /; Secure$/);
  });

  it('ignores tampered values, other keys, other pools and absent cookies', () => {
    const v1 = cookie.valueFor('10.0.0.1:80') ?? '';
    const flipped = (v1[0] === 'A' ? 'B' : 'A') + v1.slice(1);
    assert.equal(cookie.lookup(`srv=${flipped}`), null);
    assert.equal(cookie.lookup('srv=10.0.0.2:80'), null, 'an address is not a valid value');
    const otherKey = new StickyCookie(
      'web',
      'srv',
      Buffer.from('another key of 32 bytes, really!'),
      ['10.0.0.1:80'],
      0,
    );
    assert.equal(cookie.lookup(`srv=${otherKey.valueFor('10.0.0.1:80')}`), null);
    const otherPool = new StickyCookie('api', 'srv', key, ['10.0.0.1:80'], 0);
    assert.equal(cookie.lookup(`srv=${otherPool.valueFor('10.0.0.1:80')}`), null);
    assert.equal(cookie.lookup(undefined), null);
    assert.equal(cookie.lookup('xsrv=abc; srvx=def'), null);
  });

  it('parses cookie headers per RFC 6265', () => {
    assert.equal(cookieValue('a=1;b=2', 'b'), '2');
    assert.equal(cookieValue('a=1;  b=2 ', 'b'), '2');
    assert.equal(cookieValue('ab=1; b=2', 'b'), '2');
    assert.equal(cookieValue('a=1', 'b'), null);
    assert.equal(cookieValue('b=', 'b'), '');
  });
});
