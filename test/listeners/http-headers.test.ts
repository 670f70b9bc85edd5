// Tests header rewriting for the reverse proxy: hop-by-hop and Connection-listed removal, the
// X-Forwarded-* rules for trusted and untrusted peers, and the right-to-left X-Forwarded-For walk.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  buildDownstreamHeaders,
  buildUpstreamHeaders,
  clientFromForwardedFor,
  connectionListed,
  type ForwardingInfo,
  isHopByHop,
} from '../../src/listeners/http-headers.ts';
import { parseCidr } from '../../src/net/index.ts';
import { SourceSet } from '../../src/policy/index.ts';

const UNTRUSTED: ForwardingInfo = {
  client: '192.0.2.10',
  peer: '192.0.2.10',
  trusted: false,
  proto: 'http',
  xff: true,
  xfProto: true,
  xfHost: true,
};
const TRUSTED: ForwardingInfo = { ...UNTRUSTED, client: '198.51.100.7', peer: '10.0.0.1', trusted: true };

/** The header list as [name, value] pairs. */
function pairs(flat: readonly string[]): [string, string][] {
  const out: [string, string][] = [];
  for (let i = 0; i < flat.length; i += 2) out.push([flat[i] as string, flat[i + 1] as string]);
  return out;
}

function values(flat: readonly string[], name: string): string[] {
  return pairs(flat)
    .filter(([n]) => n.toLowerCase() === name)
    .map(([, v]) => v);
}

describe('isHopByHop / connectionListed', () => {
  test('the RFC 9110 §7.6.1 set plus keep-alive and proxy-connection', () => {
    for (const h of [
      'connection',
      'keep-alive',
      'proxy-connection',
      'transfer-encoding',
      'te',
      'trailer',
      'upgrade',
      'proxy-authenticate',
      'proxy-authorization',
      'http2-settings',
    ]) {
      assert.equal(isHopByHop(h), true, h);
    }
    for (const h of ['host', 'content-length', 'authorization', 'x-forwarded-for', 'cookie']) {
      assert.equal(isHopByHop(h), false, h);
    }
  });

  test('Connection tokens, lowercase; keep-alive and close alone need no set', () => {
    assert.equal(connectionListed(undefined), null);
    assert.equal(connectionListed('keep-alive'), null);
    assert.equal(connectionListed('Close'), null);
    assert.equal(connectionListed('close, keep-alive'), null);
    assert.deepEqual(connectionListed('close, X-Secret ,  x-other'), new Set(['x-secret', 'x-other']));
  });
});

describe('buildUpstreamHeaders', () => {
  test('drops hop-by-hop headers and expect, keeps the rest in order with their case', () => {
    const out = buildUpstreamHeaders(
      [
        'Host',
        'example.com',
        'Connection',
        'keep-alive',
        'Keep-Alive',
        'timeout=5',
        'Transfer-Encoding',
        'chunked',
        'TE',
        'trailers',
        'Upgrade',
        'h2c',
        'Proxy-Authorization',
        'Basic eA==',
        'Proxy-Connection',
        'keep-alive',
        'Expect',
        '100-continue',
        'X-Custom',
        'a',
        'x-custom',
        'b',
        'Accept',
        '*/*',
      ],
      { ...UNTRUSTED, xfProto: false, xfHost: false },
    );
    assert.deepEqual(pairs(out), [
      ['Host', 'example.com'],
      ['X-Custom', 'a'],
      ['x-custom', 'b'],
      ['Accept', '*/*'],
      ['x-forwarded-for', '192.0.2.10'],
    ]);
  });

  test('headers listed in Connection are removed', () => {
    const out = buildUpstreamHeaders(
      ['Host', 'h', 'Connection', 'close, X-Secret', 'X-Secret', 'x', 'X-Kept', 'y'],
      UNTRUSTED,
    );
    assert.deepEqual(values(out, 'x-secret'), []);
    assert.deepEqual(values(out, 'x-kept'), ['y']);
  });

  test('every Connection header counts, in any order', () => {
    const out = buildUpstreamHeaders(
      [
        'Host',
        'h',
        'Connection',
        'X-A',
        'Connection',
        'close',
        'connection',
        'x-b',
        'X-A',
        '1',
        'X-B',
        '2',
        'X-C',
        '3',
      ],
      UNTRUSTED,
    );
    assert.deepEqual(values(out, 'x-a'), []);
    assert.deepEqual(values(out, 'x-b'), []);
    assert.deepEqual(values(out, 'x-c'), ['3']);
    const down = buildDownstreamHeaders([
      'Connection',
      'X-A',
      'Connection',
      'keep-alive',
      'X-A',
      '1',
      'X-C',
      '3',
    ]);
    assert.deepEqual(pairs(down), [['X-C', '3']]);
  });

  test('a client cannot make seglb drop its own X-Forwarded-* or Host through Connection', () => {
    const out = buildUpstreamHeaders(
      [
        'Host',
        'example.com',
        'Connection',
        'X-Forwarded-For, x-forwarded-proto, X-Forwarded-Host, Host',
        'X-Forwarded-For',
        '203.0.113.66',
      ],
      UNTRUSTED,
    );
    assert.deepEqual(values(out, 'x-forwarded-for'), ['192.0.2.10']);
    assert.deepEqual(values(out, 'x-forwarded-proto'), ['http']);
    assert.deepEqual(values(out, 'x-forwarded-host'), ['example.com']);
    assert.deepEqual(values(out, 'host'), ['example.com']);
  });

  test('only the first Host header is forwarded (the one node parsed and the rules judged)', () => {
    const out = buildUpstreamHeaders(['Host', 'public.example.com', 'host', 'admin.example.com'], UNTRUSTED);
    assert.deepEqual(values(out, 'host'), ['public.example.com']);
    assert.deepEqual(values(out, 'x-forwarded-host'), ['public.example.com']);
  });

  test('untrusted peer: incoming X-Forwarded-* are discarded and replaced', () => {
    const out = buildUpstreamHeaders(
      [
        'Host',
        'example.com',
        'X-Forwarded-For',
        '127.0.0.1',
        'x-forwarded-for',
        '10.0.0.1',
        'X-Forwarded-Proto',
        'https',
        'X-Forwarded-Host',
        'evil.example',
      ],
      UNTRUSTED,
    );
    assert.deepEqual(values(out, 'x-forwarded-for'), ['192.0.2.10']);
    assert.deepEqual(values(out, 'x-forwarded-proto'), ['http']);
    assert.deepEqual(values(out, 'x-forwarded-host'), ['example.com']);
  });

  test('trusted proxy: X-Forwarded-For kept (duplicates joined) and the peer appended; proto/host kept', () => {
    const out = buildUpstreamHeaders(
      [
        'Host',
        'internal:8080',
        'X-Forwarded-For',
        '198.51.100.7',
        'X-Forwarded-For',
        '10.0.0.9',
        'X-Forwarded-Proto',
        'https',
        'X-Forwarded-Host',
        'www.example.com',
      ],
      TRUSTED,
    );
    assert.deepEqual(values(out, 'x-forwarded-for'), ['198.51.100.7, 10.0.0.9, 10.0.0.1']);
    assert.deepEqual(values(out, 'x-forwarded-proto'), ['https']);
    assert.deepEqual(values(out, 'x-forwarded-host'), ['www.example.com']);
  });

  test('trusted proxy without X-Forwarded-* headers: seglb sets them from the client', () => {
    const out = buildUpstreamHeaders(['Host', 'example.com'], {
      ...TRUSTED,
      client: '10.0.0.1',
      proto: 'https',
    });
    assert.deepEqual(values(out, 'x-forwarded-for'), ['10.0.0.1']);
    assert.deepEqual(values(out, 'x-forwarded-proto'), ['https']);
    assert.deepEqual(values(out, 'x-forwarded-host'), ['example.com']);
  });

  test('forwarded headers switched off: untrusted ones are still dropped, trusted XFF passes unchanged', () => {
    const off = { xff: false, xfProto: false, xfHost: false };
    const raw = ['Host', 'h', 'X-Forwarded-For', '203.0.113.1', 'X-Forwarded-Proto', 'https'];
    const untrusted = buildUpstreamHeaders(raw, { ...UNTRUSTED, ...off });
    assert.deepEqual(pairs(untrusted), [['Host', 'h']]);
    const trusted = buildUpstreamHeaders(raw, { ...TRUSTED, ...off });
    assert.deepEqual(values(trusted, 'x-forwarded-for'), ['203.0.113.1']);
    assert.deepEqual(values(trusted, 'x-forwarded-proto'), []);
  });

  test('no Host header: no X-Forwarded-Host from an untrusted client', () => {
    const out = buildUpstreamHeaders(['X-Forwarded-Host', 'evil.example'], UNTRUSTED);
    assert.deepEqual(values(out, 'x-forwarded-host'), []);
  });
});

describe('buildDownstreamHeaders', () => {
  test('drops hop-by-hop and Connection-listed response headers; accepts Buffers', () => {
    const out = buildDownstreamHeaders([
      Buffer.from('Content-Type'),
      Buffer.from('text/plain'),
      'Connection',
      'keep-alive, X-Internal',
      'X-Internal',
      'secret',
      'Keep-Alive',
      'timeout=5',
      'Transfer-Encoding',
      'chunked',
      'Set-Cookie',
      'a=1',
      'Set-Cookie',
      'b=2',
    ]);
    assert.deepEqual(pairs(out), [
      ['Content-Type', 'text/plain'],
      ['Set-Cookie', 'a=1'],
      ['Set-Cookie', 'b=2'],
    ]);
  });
});

describe('clientFromForwardedFor (right-to-left walk)', () => {
  const trusted = new SourceSet([parseCidr('10.0.0.0/8'), parseCidr('2001:db8:ffff::/48')]);

  test('no header: the peer itself', () => {
    assert.equal(clientFromForwardedFor(undefined, '10.0.0.1', trusted), '10.0.0.1');
  });

  test('the right-most entry that is not a trusted proxy; left-most (client-supplied) entries are ignored', () => {
    assert.equal(clientFromForwardedFor('198.51.100.7', '10.0.0.1', trusted), '198.51.100.7');
    assert.equal(clientFromForwardedFor('203.0.113.66, 198.51.100.7', '10.0.0.1', trusted), '198.51.100.7');
    assert.equal(
      clientFromForwardedFor('198.51.100.7, 10.0.0.2, 10.0.0.3', '10.0.0.1', trusted),
      '198.51.100.7',
    );
    assert.equal(
      clientFromForwardedFor('1.1.1.1,198.51.100.7 ,10.0.0.2', '10.0.0.1', trusted),
      '198.51.100.7',
    );
  });

  test('repeated headers (array) are walked as one list', () => {
    assert.equal(
      clientFromForwardedFor(['203.0.113.66', '198.51.100.7, 10.0.0.2'], '10.0.0.1', trusted),
      '198.51.100.7',
    );
  });

  test('IPv6 and IPv4-mapped entries are normalised', () => {
    assert.equal(clientFromForwardedFor('2001:db8::5, 2001:db8:ffff::1', '10.0.0.1', trusted), '2001:db8::5');
    assert.equal(clientFromForwardedFor('::ffff:198.51.100.7', '10.0.0.1', trusted), '198.51.100.7');
    assert.equal(clientFromForwardedFor('::ffff:10.0.0.5', '10.0.0.1', trusted), '10.0.0.5');
  });

  test('all entries trusted: the left-most one', () => {
    assert.equal(clientFromForwardedFor('10.0.0.7, 10.0.0.8', '10.0.0.1', trusted), '10.0.0.7');
  });

  test('an entry that is not a bare address stops the walk at the last trusted hop', () => {
    for (const bad of [
      'unknown',
      '',
      'garbage',
      '198.51.100.7:1234',
      '[2001:db8::5]',
      'fe80::1%eth0',
      '1.2',
      ':::',
      '010.0.0.1',
    ]) {
      assert.equal(clientFromForwardedFor(bad, '10.0.0.1', trusted), '10.0.0.1', bad);
      assert.equal(clientFromForwardedFor(`198.51.100.7, ${bad}`, '10.0.0.1', trusted), '10.0.0.1', bad);
      assert.equal(clientFromForwardedFor(`${bad}, 10.0.0.9`, '10.0.0.1', trusted), '10.0.0.9', bad);
    }
  });
});
