// Request smuggling and ambiguity: each malformed or ambiguous request is sent raw over a socket;
// seglb must answer 4xx/5xx (or close the connection), close the connection, and forward nothing
// of it. A raw recording backend shows exactly what reached it. Node's parser (llhttp) must be in
// its strict mode: nothing here may pass `insecureHTTPParser`.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { isValidHost } from '../../src/listeners/request-checks.ts';
import { httpRequest, rawExchange } from '../support/net.ts';
import { startSeglb, type TestSeglb } from '../support/seglb.ts';
import { type RawBackend, startRawBackend } from './support/raw-backend.ts';

/** A raw request that must be refused, and what the refusal must look like. */
interface RefusedCase {
  readonly name: string;
  readonly raw: string;
  /** Accepted statuses; [] means the connection may also just be closed without an answer. */
  readonly status: readonly number[];
}

const SMUGGLED = 'GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n';

const REFUSED: readonly RefusedCase[] = [
  {
    name: 'CL.TE: Content-Length and Transfer-Encoding',
    raw: `POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${SMUGGLED}`,
    status: [400],
  },
  {
    name: 'TE.CL: Transfer-Encoding then Content-Length',
    raw: `POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n`,
    status: [400],
  },
  {
    name: 'duplicate Content-Length, different values',
    raw: 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 30\r\n\r\na',
    status: [400],
  },
  {
    name: 'duplicate Content-Length, same value',
    raw: 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\na',
    status: [400],
  },
  {
    name: 'Content-Length as a list',
    raw: 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1, 1\r\n\r\na',
    status: [400],
  },
  {
    name: 'Content-Length with a sign',
    raw: 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +1\r\n\r\na',
    status: [400],
  },
  {
    name: 'obs-fold (folded header line)',
    raw: 'GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n',
    status: [400],
  },
  {
    name: 'obs-fold hiding Transfer-Encoding',
    raw: `POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n`,
    status: [400],
  },
  { name: 'bare LF line ends', raw: 'GET / HTTP/1.1\nHost: x\n\n', status: [400] },
  { name: 'bare LF inside the head', raw: 'GET / HTTP/1.1\r\nHost: x\nX-A: b\r\n\r\n', status: [400] },
  {
    name: 'bare CR in a header value',
    raw: 'GET / HTTP/1.1\r\nHost: x\r\nX-A: b\rX-B: c\r\n\r\n',
    status: [400],
  },
  { name: 'NUL in a header value', raw: 'GET / HTTP/1.1\r\nHost: x\r\nX-A: b\x00c\r\n\r\n', status: [400] },
  {
    name: 'invalid chunk size (not hex)',
    raw: 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n',
    status: [400],
  },
  {
    name: 'chunk size overflowing 64 bits',
    raw: 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\nabc\r\n0\r\n\r\n',
    status: [400],
  },
  {
    name: 'negative chunk size',
    raw: 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\nabc\r\n0\r\n\r\n',
    status: [400],
  },
  {
    name: 'chunk size line ended by bare LF',
    raw: 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n',
    status: [400],
  },
  {
    name: 'chunk longer than its size',
    raw: `POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n`,
    status: [400],
  },
  {
    name: 'Transfer-Encoding: chunked, identity',
    raw: 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n3\r\nabc\r\n0\r\n\r\n',
    status: [400],
  },
  {
    name: 'Transfer-Encoding: identity',
    raw: 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\nContent-Length: 3\r\n\r\nabc',
    status: [400],
  },
  {
    name: 'Transfer-Encoding: xchunked',
    raw: 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n',
    status: [400, 501],
  },
  {
    name: 'Transfer-Encoding twice',
    raw: 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n',
    status: [400],
  },
  {
    name: 'space before the colon of Transfer-Encoding',
    raw: 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n',
    status: [400],
  },
  {
    name: 'vertical tab before chunked',
    raw: 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: \x0bchunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n',
    status: [400],
  },
  {
    name: 'Transfer-Encoding: gzip, chunked (a coding seglb would silently drop)',
    raw: 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n',
    status: [501],
  },
  {
    name: 'Transfer-Encoding in an HTTP/1.0 request',
    raw: `POST / HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${SMUGGLED}`,
    status: [400],
  },
  { name: 'HTTP/2.0 in an HTTP/1 request line', raw: 'GET / HTTP/2.0\r\nHost: x\r\n\r\n', status: [505] },
  { name: 'HTTP/1.2', raw: 'GET / HTTP/1.2\r\nHost: x\r\n\r\n', status: [400, 505] },
  { name: 'header name with a space', raw: 'GET / HTTP/1.1\r\nHost: x\r\nX A: b\r\n\r\n', status: [400] },
  { name: 'space before the colon of Host', raw: 'GET / HTTP/1.1\r\nHost : x\r\n\r\n', status: [400] },
  { name: 'no Host header (HTTP/1.1)', raw: 'GET / HTTP/1.1\r\nX-A: b\r\n\r\n', status: [400] },
  { name: 'two Host headers', raw: 'GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n', status: [400] },
  { name: 'Host with a space', raw: 'GET / HTTP/1.1\r\nHost: a b\r\n\r\n', status: [400] },
  {
    name: 'Host with userinfo',
    raw: 'GET / HTTP/1.1\r\nHost: good.example@evil.example\r\n\r\n',
    status: [400],
  },
  { name: 'Host with two ports', raw: 'GET / HTTP/1.1\r\nHost: good.example:80:81\r\n\r\n', status: [400] },
  { name: 'Host with a path', raw: 'GET / HTTP/1.1\r\nHost: good.example/admin\r\n\r\n', status: [400] },
  {
    name: 'absolute-form target naming another host than Host',
    raw: 'GET http://evil.example/ HTTP/1.1\r\nHost: good.example\r\n\r\n',
    status: [400],
  },
  {
    name: 'absolute-form target with userinfo',
    raw: 'GET http://good.example@evil.example/ HTTP/1.1\r\nHost: evil.example\r\n\r\n',
    status: [400],
  },
  {
    name: 'absolute-form target of another scheme',
    raw: 'GET ftp://good.example/ HTTP/1.1\r\nHost: good.example\r\n\r\n',
    status: [400],
  },
  {
    name: 'absolute-form target judged like origin-form (deny on /admin/*)',
    raw: 'GET http://good.example/admin/users HTTP/1.1\r\nHost: good.example\r\nConnection: close\r\n\r\n',
    status: [403],
  },
  {
    name: 'authority-form (CONNECT)',
    raw: 'CONNECT good.example:443 HTTP/1.1\r\nHost: good.example:443\r\n\r\n',
    status: [],
  },
  {
    name: 'request line with a space in the target',
    raw: 'GET /a b HTTP/1.1\r\nHost: x\r\n\r\n',
    status: [400],
  },
  { name: 'lowercase method', raw: 'get / HTTP/1.1\r\nHost: x\r\n\r\n', status: [400] },
  {
    name: 'oversized header (> max_header_bytes)',
    raw: `GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`,
    status: [431],
  },
  {
    name: 'oversized URI (> max_header_bytes)',
    raw: `GET /${'a'.repeat(20_000)} HTTP/1.1\r\nHost: x\r\n\r\n`,
    status: [431],
  },
  {
    name: 'many small headers (> max_header_bytes)',
    raw: `GET / HTTP/1.1\r\nHost: x\r\n${'X-A: b\r\n'.repeat(3000)}\r\n`,
    status: [431],
  },
  { name: 'garbage', raw: '\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03', status: [400] },
];

describe('request smuggling and ambiguity: refused, and nothing reaches the backend', () => {
  let backend: RawBackend;
  let lb: TestSeglb;
  before(async () => {
    backend = await startRawBackend('127.0.0.61');
    lb = await startSeglb(`
log: { level: silent }
timeouts: { client_header_ms: 2000 }
segments:
  web:
    vips: [{ listen: "127.0.0.1:0" }]
    pool: p
    backend_subnets: [127.0.0.0/8]
    allow: [{ from: [127.0.0.0/8] }]
    deny: [{ name: no-admin, from: [any], paths: ["/admin/*"] }]
pools:
  p:
    backends: [{ address: "${backend.address}" }]
`);
  });
  after(async () => {
    await lb.stop();
    await backend.close();
  });

  for (const c of REFUSED) {
    test(c.name, async () => {
      const before = backend.all().length;
      const r = await rawExchange(lb.port('web'), Buffer.from(c.raw, 'latin1'), { timeoutMs: 3000 });
      const statusLine = r.received.split('\r\n')[0] ?? '';
      if (c.status.length === 0) {
        assert.equal(r.received, '', `expected the connection closed without an answer, got ${statusLine}`);
      } else {
        const status = Number(/^HTTP\/1\.1 (\d{3}) /.exec(statusLine)?.[1]);
        assert.ok(c.status.includes(status), `status line ${JSON.stringify(statusLine)}, want ${c.status}`);
        // Exactly one answer: a smuggled second request must never be parsed and answered.
        assert.equal(r.received.match(/HTTP\/1\.1 \d{3} /g)?.length, 1, r.received);
      }
      assert.notEqual(r.ended, 'timeout', 'seglb must close the connection after refusing');
      // Give a (wrongly) forwarded request time to arrive before checking.
      await new Promise((res) => setTimeout(res, 20));
      assert.equal(backend.all().slice(before), '', 'nothing of a refused request may reach the backend');
    });
  }

  test('nothing smuggled ever reached the backend, and seglb still serves', async () => {
    assert.ok(!backend.all().includes('/smuggled'));
    assert.ok(!backend.all().includes('SMUGGLED'));
    const r = await httpRequest({ port: lb.port('web'), path: '/fine' });
    assert.equal(r.status, 200);
    assert.ok(backend.requestLines().includes('GET /fine HTTP/1.1'));
  });
});

describe('unambiguous requests reach the backend in one canonical form', () => {
  let backend: RawBackend;
  let lb: TestSeglb;
  before(async () => {
    backend = await startRawBackend('127.0.0.62');
    lb = await startSeglb(`
log: { level: silent }
segments:
  web:
    vips: [{ listen: "127.0.0.1:0" }]
    pool: p
    backend_subnets: [127.0.0.0/8]
    allow: [{ from: [127.0.0.0/8] }]
    deny: [{ name: no-admin, from: [any], paths: ["/admin/*"] }]
pools:
  p:
    backends: [{ address: "${backend.address}" }]
`);
  });
  after(async () => {
    await lb.stop();
    await backend.close();
  });

  /** The bytes of the backend connection that carried `line`. */
  const connectionWith = (line: string) => {
    const c = backend.connections.find((x) => x.bytes.includes(line));
    assert.ok(c, `the backend never saw ${line}`);
    return c.bytes;
  };

  test('a chunked body is forwarded with exactly one framing header and the same bytes', async () => {
    const r = await rawExchange(
      lb.port('web'),
      'POST /chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\n\r\n',
    );
    assert.match(r.received, /^HTTP\/1\.1 200 /);
    const bytes = connectionWith('POST /chunked HTTP/1.1');
    const head = bytes.slice(0, bytes.indexOf('\r\n\r\n')).toLowerCase();
    const framing = (head.match(/\r\n(content-length|transfer-encoding):/g) ?? []).length;
    assert.equal(framing, 1, head);
    const body = bytes.slice(bytes.indexOf('\r\n\r\n') + 4);
    const decoded = head.includes('transfer-encoding: chunked')
      ? body.replace(/(^|\r\n)[0-9a-f]+(;[^\r]*)?\r\n/g, '').replace(/\r\n$/, '')
      : body;
    assert.equal(decoded.replace(/\r\n/g, ''), 'abcde');
  });

  test('Content-Length bodies keep their length', async () => {
    const r = await rawExchange(
      lb.port('web'),
      'POST /cl HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello',
    );
    assert.match(r.received, /^HTTP\/1\.1 200 /);
    const bytes = connectionWith('POST /cl HTTP/1.1');
    assert.match(bytes.toLowerCase(), /\r\ncontent-length: 5\r\n/);
    assert.ok(!/transfer-encoding/i.test(bytes));
    assert.ok(bytes.endsWith('\r\n\r\nhello'));
  });

  test('an absolute-form target naming the Host is forwarded in origin-form', async () => {
    const r = await rawExchange(
      lb.port('web'),
      'GET http://Good.Example:80/ok?q=1 HTTP/1.1\r\nHost: good.example\r\nConnection: close\r\n\r\n',
    );
    assert.match(r.received, /^HTTP\/1\.1 200 /);
    const bytes = connectionWith('GET /ok?q=1 HTTP/1.1');
    assert.match(bytes, /\r\nhost: good\.example\r\n/i);
  });

  test('pipelined requests are judged one by one (the second, denied, never reaches the backend)', async () => {
    const r = await rawExchange(
      lb.port('web'),
      'GET /first HTTP/1.1\r\nHost: x\r\n\r\nGET /admin/secret HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
    );
    const statuses = [...r.received.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => m[1]);
    assert.deepEqual(statuses, ['200', '403']);
    assert.ok(backend.requestLines().includes('GET /first HTTP/1.1'));
    assert.ok(!backend.all().includes('/admin/secret'));
  });

  test('an h2c upgrade is served as a plain request: no Upgrade or HTTP2-Settings reach the backend', async () => {
    const r = await rawExchange(
      lb.port('web'),
      'GET /h2c HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings, close\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n',
    );
    assert.match(r.received, /^HTTP\/1\.1 200 /);
    const bytes = connectionWith('GET /h2c HTTP/1.1');
    const head = bytes.slice(0, bytes.indexOf('\r\n\r\n')).toLowerCase();
    assert.ok(!head.includes('upgrade'), head);
    assert.ok(!head.includes('http2-settings'), head);
  });
});

describe('isValidHost', () => {
  test('host[:port] per RFC 9110 §7.2, nothing else', () => {
    for (const ok of [
      '',
      'a',
      'www.example.com',
      'www.example.com:8080',
      '10.1.2.3:80',
      '[::1]',
      '[2001:db8::1]:443',
      'xn--bcher-kva.example',
      'a_b.example:',
      "a!$&'()*+,;=%41",
    ])
      assert.equal(isValidHost(ok), true, ok);
    for (const bad of [
      'a b',
      'a@b',
      'a/b',
      'a\\b',
      'a?b',
      'a#b',
      'a:b:c',
      'a:123456',
      'a:8o',
      '[::1',
      '[::1]x',
      '[zz::1]',
      'é.example',
      'a\tb',
    ])
      assert.equal(isValidHost(bad), false, bad);
  });
});
