// End-to-end tests of the segmentation engine (issue "Segmentation engine") over real loopback
// sockets: clients bind many 127.x.y.z sources; backends count connections and record what they saw,
// proving that a denied client never reached them.

import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pino from 'pino';
import { loadConfigFile } from '../../src/config/index.ts';
import { encodeProxyHeader } from '../../src/listeners/proxy-protocol.ts';
import { LogRateLimiter } from '../../src/observe/log.ts';
import type { SegmentPolicy } from '../../src/policy/index.ts';
import { Runtime } from '../../src/runtime.ts';
import {
  type ClientResult,
  httpRequest,
  rawExchange,
  startBackend,
  type TestBackend,
} from '../support/net.ts';
import { startSeglb, type TestSeglb, tempDir, writeConfig } from '../support/seglb.ts';

const RESET = new Set(['ECONNRESET', 'EPIPE']);

/** Asserts the connection was reset (refused at accept), not answered. */
function assertReset(r: ClientResult | { received: string; ended: string }, what: string): void {
  if ('ended' in r) {
    assert.ok(
      RESET.has(r.ended),
      `${what}: expected a reset, got ${r.ended} with ${JSON.stringify(r.received)}`,
    );
    assert.equal(r.received, '', `${what}: no byte may come back`);
  } else {
    assert.equal(r.status, 0, `${what}: expected a reset, got HTTP ${r.status} ${r.body}`);
    assert.ok(RESET.has(r.error ?? ''), `${what}: expected ECONNRESET/EPIPE, got ${r.error}`);
  }
}

/** The status line's code of a raw HTTP exchange (0 when none came back). */
function rawStatus(r: { received: string }): number {
  const m = /^HTTP\/1\.1 (\d{3})/.exec(r.received);
  return m ? Number(m[1]) : 0;
}

function request(path: string, host = 'example.com', extra = ''): string {
  return `GET ${path} HTTP/1.1\r\nHost: ${host}\r\n${extra}Connection: close\r\n\r\n`;
}

/** Resets a backend's record between tests. */
function clear(...backends: TestBackend[]): void {
  for (const b of backends) {
    b.connections = 0;
    b.seen.length = 0;
  }
}

describe('segmentation engine, end to end', () => {
  let lb: TestSeglb;
  const b: Record<string, TestBackend> = {};
  const names = ['conn', 'order', 'any', 'l7', 'audit', 'dual', 'pp', 'pptcp', 'xff', 'out'] as const;

  const policy = (segment: string): SegmentPolicy => {
    const seg = lb.runtime.snapshot.segments.get(segment);
    assert.ok(seg, segment);
    return seg.policy;
  };
  const counters = (segment: string) => {
    const seg = lb.runtime.snapshot.segments.get(segment);
    assert.ok(seg, segment);
    return seg.counters;
  };
  const ruleCount = (segment: string, kind: 'allowed' | 'denied' | 'auditDenied', rule: string): number => {
    const p = policy(segment);
    const r = p.rules.find((x) => x.name === rule);
    assert.ok(r, `${segment}: no rule ${rule}`);
    return p[kind][r.id] as number;
  };
  const get = (
    segment: string,
    localAddress: string,
    opts: Partial<Parameters<typeof httpRequest>[0]> = {},
  ) => httpRequest({ port: lb.port(segment), localAddress, ...opts });

  before(async () => {
    for (const n of names) b[n] = await startBackend(n);
    const dir = tempDir();
    mkdirSync(join(dir, 'ipsets'));
    writeFileSync(
      join(dir, 'ipsets', 'lab.txt'),
      '# lab hosts, one per line\n127.0.2.0/24   # the lab subnet\n\n  127.0.3.5\n# 127.0.3.6 is commented out\n',
    );
    const orderRules = {
      allow: [
        '{ name: a, from: [127.0.8.0/24] }',
        '{ name: b, from: [127.0.8.128/25] }',
        '{ name: c, from: [127.0.9.0/24], paths: ["/api/*"] }',
      ],
      deny: [
        '{ name: d, from: [127.0.8.64/26] }',
        '{ name: e, from: [127.0.8.200] }',
        '{ name: f, from: [127.0.8.0/24, 127.0.9.0/24], paths: ["/admin"] }',
      ],
    };
    const list = (items: string[]) => `[${items.join(', ')}]`;
    const yaml = `
ipsets:
  lab-inline: { cidrs: [127.0.1.0/24] }
  lab-file: { file: ipsets/lab.txt }
  lab-a: { cidrs: [127.0.4.0/24] }
  lab-b: { cidrs: [127.0.5.1] }
  lab-union: { union: [lab-a, lab-b], cidrs: [127.0.6.0/24] }
segments:
  conn:
    vips: [{ listen: "127.0.0.1:0" }]
    pool: conn
    backend_subnets: [127.0.0.0/8]
    allow:
      - { name: pair, from: [127.0.0.2, 127.0.0.3] }
      - { name: inline-set, from: [lab-inline] }
      - { name: file-set, from: [lab-file] }
      - { name: union-set, from: [lab-union] }
    deny:
      - { name: both, from: [127.0.0.3] }
  ordered:
    vips: [{ listen: "127.0.0.1:0" }]
    pool: order
    backend_subnets: [127.0.0.0/8]
    allow: ${list(orderRules.allow)}
    deny: ${list(orderRules.deny)}
  shuffled:
    vips: [{ listen: "127.0.0.1:0" }]
    pool: order
    backend_subnets: [127.0.0.0/8]
    allow: ${list([...orderRules.allow].reverse())}
    deny: ${list([orderRules.deny[2] as string, orderRules.deny[0] as string, orderRules.deny[1] as string])}
  any:
    vips: [{ listen: "127.0.0.1:0" }]
    pool: any
    backend_subnets: [127.0.0.0/8]
    allow: [{ name: world, from: [any] }]
  l7:
    vips: [{ listen: "127.0.0.1:0" }]
    pool: l7
    backend_subnets: [127.0.0.0/8]
    allow:
      - { name: read-api, from: [127.0.0.20], methods: [GET, HEAD], paths: ["/api/*", /health] }
      - { name: admin-host, from: [127.0.0.21], hosts: [admin.example.com] }
      - { name: wild-host, from: [127.0.0.22], hosts: ["*.example.com"] }
      - { name: token, from: [127.0.0.23], headers: { X-Token: s3cret } }
      - { name: present, from: [127.0.0.24], headers: { x-present: "*" } }
      - { name: all, from: [127.0.0.25] }
      - { name: public, from: [127.0.0.26], paths: ["/public/*"] }
    deny:
      - { name: no-admin, from: [127.0.0.0/8], paths: [/admin, "/admin/*"] }
      - { name: no-debug, from: [127.0.0.25], headers: { x-debug: "1" } }
      - { name: no-internal, from: [127.0.0.25], hosts: [internal.example.com] }
  audit:
    mode: audit
    vips: [{ listen: "127.0.0.1:0" }]
    pool: audit
    backend_subnets: [127.0.0.0/8]
    allow:
      - { name: ok, from: [127.0.0.2] }
      - { name: api, from: [127.0.0.4], paths: ["/api/*"] }
    deny:
      - { name: bad, from: [127.0.0.3] }
      - { name: no-admin, from: [127.0.0.4], paths: [/api/admin] }
  dual:
    vips: [{ listen: "[::]:0" }]
    pool: dual
    backend_subnets: [127.0.0.0/8]
    allow:
      - { name: loop4, from: [127.0.0.0/8] }
      - { name: v6-get, from: ["::1"], methods: [GET] }
    deny:
      - { name: d3, from: [127.0.0.3] }
      - { name: mapped, from: ["::ffff:127.0.0.4"] }
  pp:
    vips: [{ listen: "127.0.0.1:0", proxy_protocol: { trusted: [127.0.0.1] } }]
    pool: pp
    backend_subnets: [127.0.0.0/8]
    allow: [{ name: ok, from: [127.0.0.2, 127.0.0.4] }]
    deny: [{ name: bad, from: [127.0.0.3] }]
  pptcp:
    vips: [{ listen: "127.0.0.1:0", protocol: tcp, proxy_protocol: { trusted: [127.0.0.1] } }]
    pool: pptcp
    backend_subnets: [127.0.0.0/8]
    allow: [{ name: ok, from: [127.0.0.2, 127.0.0.4] }]
    deny: [{ name: bad, from: [127.0.0.3] }]
  xff:
    vips: [{ listen: "127.0.0.1:0" }]
    pool: xff
    backend_subnets: [127.0.0.0/8]
    trusted_proxies: [127.0.0.1]
    allow: [{ name: ok, from: [127.0.0.2, 127.0.0.4] }]
    deny: [{ name: bad, from: [127.0.0.3] }]
  outdeny:
    vips: [{ listen: "127.0.0.1:0" }]
    pool: out
    backend_subnets: [10.0.0.0/8]
    allow: [{ from: [any] }]
  outdenytcp:
    vips: [{ listen: "127.0.0.1:0", protocol: tcp }]
    pool: out
    backend_subnets: [10.0.0.0/8]
    allow: [{ from: [any] }]
  outok:
    vips: [{ listen: "127.0.0.1:0" }]
    pool: out
    backend_subnets: [127.0.0.0/8, "::1/128"]
    allow: [{ from: [any] }]
  outoktcp:
    vips: [{ listen: "127.0.0.1:0", protocol: tcp }]
    pool: out
    backend_subnets: [127.0.0.0/8, "::1/128"]
    allow: [{ from: [any] }]
pools:
${names
  .filter((n) => n !== 'out')
  .map((n) => `  ${n}: { backends: [{ address: "${(b[n] as TestBackend).address}" }] }`)
  .join('\n')}
  out: { retries: 0, backends: [{ address: "localhost:${(b.out as TestBackend).port}" }] }
`;
    lb = await startSeglb(yaml, dir);
  });

  after(async () => {
    await lb?.stop();
    await Promise.all(Object.values(b).map((x) => x.close()));
  });

  describe('connection verdicts at accept', () => {
    test('denied sources are reset before any byte is read; the backend never sees them', async () => {
      clear(b.conn as TestBackend);
      const denied = ['127.0.0.3', '127.0.0.9', '127.0.3.6', '127.0.5.2', '127.0.7.1'];
      for (const src of denied) assertReset(await get('conn', src), src);
      for (const src of denied) {
        assertReset(await rawExchange(lb.port('conn'), request('/raw'), { localAddress: src }), `raw ${src}`);
      }
      assert.equal(b.conn?.connections, 0);
      assert.deepEqual(b.conn?.seen, []);
      // Enforce mode counts them in denied: deny beats allow for 127.0.0.3, the rest default-deny.
      assert.equal(ruleCount('conn', 'denied', 'both'), 2);
      assert.equal(policy('conn').defaultDenied, 8);
      assert.equal(ruleCount('conn', 'allowed', 'pair'), 0);
    });

    test('allowed sources reach the backend: single addresses and IP sets (inline, file with comments, union)', async () => {
      clear(b.conn as TestBackend);
      const allowed: [string, string][] = [
        ['127.0.0.2', 'pair'],
        ['127.0.1.9', 'inline-set'],
        ['127.0.2.9', 'file-set'],
        ['127.0.3.5', 'file-set'],
        ['127.0.4.9', 'union-set'],
        ['127.0.5.1', 'union-set'],
        ['127.0.6.1', 'union-set'],
      ];
      for (const [src] of allowed) {
        const r = await get('conn', src, { path: `/from/${src}` });
        assert.equal(r.status, 200, `${src}: ${r.error ?? r.body}`);
        assert.equal(r.body, 'conn');
      }
      assert.deepEqual(
        b.conn?.seen.map((s) => [s.url, s.headers['x-forwarded-for']]),
        allowed.map(([src]) => [`/from/${src}`, src]),
      );
      assert.equal(ruleCount('conn', 'allowed', 'pair'), 1);
      assert.equal(ruleCount('conn', 'allowed', 'file-set'), 2);
      assert.equal(ruleCount('conn', 'allowed', 'union-set'), 3);
    });

    test('rules are order-independent: a segment with the rules shuffled gives the same verdicts', async () => {
      const sources = [
        '127.0.8.1',
        '127.0.8.65',
        '127.0.8.130',
        '127.0.8.200',
        '127.0.8.201',
        '127.0.9.1',
        '127.0.10.1',
      ];
      const outcome = (r: ClientResult) =>
        r.status === 0 && RESET.has(r.error ?? '') ? 'reset' : String(r.status);
      const seen: string[] = [];
      for (const src of sources) {
        for (const path of ['/', '/admin', '/api/x']) {
          const a = outcome(await get('ordered', src, { path }));
          const c = outcome(await get('shuffled', src, { path }));
          assert.equal(a, c, `${src} ${path}`);
          seen.push(`${src}${path}=${a}`);
        }
      }
      assert.deepEqual(seen, [
        '127.0.8.1/=200',
        '127.0.8.1/admin=403',
        '127.0.8.1/api/x=200',
        '127.0.8.65/=reset',
        '127.0.8.65/admin=reset',
        '127.0.8.65/api/x=reset',
        '127.0.8.130/=200',
        '127.0.8.130/admin=403',
        '127.0.8.130/api/x=200',
        '127.0.8.200/=reset',
        '127.0.8.200/admin=reset',
        '127.0.8.200/api/x=reset',
        '127.0.8.201/=200',
        '127.0.8.201/admin=403',
        '127.0.8.201/api/x=200',
        '127.0.9.1/=403',
        '127.0.9.1/admin=403',
        '127.0.9.1/api/x=200',
        '127.0.10.1/=reset',
        '127.0.10.1/admin=reset',
        '127.0.10.1/api/x=reset',
      ]);
    });

    test('any allows every source', async () => {
      for (const src of ['127.0.0.2', '127.1.2.3', '127.255.255.254']) {
        const r = await get('any', src);
        assert.equal(r.status, 200, src);
      }
    });
  });

  describe('L7 conditions', () => {
    const cases: [string, Partial<Parameters<typeof httpRequest>[0]>, number, string][] = [
      ['127.0.0.20', { path: '/api/users' }, 200, 'prefix path, GET'],
      ['127.0.0.20', { path: '/api/users', method: 'HEAD' }, 200, 'prefix path, HEAD'],
      ['127.0.0.20', { path: '/api/users', method: 'POST' }, 403, 'method not listed'],
      ['127.0.0.20', { path: '/health' }, 200, 'exact path'],
      ['127.0.0.20', { path: '/health/x' }, 403, 'exact path only'],
      ['127.0.0.20', { path: '/api' }, 403, 'prefix needs the slash'],
      ['127.0.0.20', { path: '/api/x?q=/admin' }, 200, 'query is not the path'],
      ['127.0.0.21', { headers: { host: 'admin.example.com' } }, 200, 'exact host'],
      ['127.0.0.21', { headers: { host: 'ADMIN.Example.com:8080' } }, 200, 'host case and port'],
      ['127.0.0.21', { headers: { host: 'www.example.com' } }, 403, 'other host'],
      ['127.0.0.22', { headers: { host: 'a.example.com' } }, 200, 'wildcard host'],
      ['127.0.0.22', { headers: { host: 'a.b.example.com' } }, 200, 'wildcard host, deeper'],
      ['127.0.0.22', { headers: { host: 'example.com' } }, 403, 'wildcard does not cover the apex'],
      ['127.0.0.22', { headers: { host: 'example.org' } }, 403, 'wildcard, other domain'],
      ['127.0.0.23', { headers: { 'x-token': 's3cret' } }, 200, 'header value'],
      ['127.0.0.23', { headers: { 'x-token': 'wrong' } }, 403, 'header wrong value'],
      ['127.0.0.23', {}, 403, 'header missing'],
      ['127.0.0.24', { headers: { 'x-present': 'anything' } }, 200, 'header *'],
      ['127.0.0.24', {}, 403, 'header * missing'],
      ['127.0.0.25', { path: '/home' }, 200, 'hard allow + L7 deny: other paths'],
      ['127.0.0.25', { path: '/admin' }, 403, 'L7 deny'],
      ['127.0.0.25', { path: '/admin/users' }, 403, 'L7 deny prefix'],
      ['127.0.0.25', { path: '/home', headers: { 'x-debug': '1' } }, 403, 'L7 deny on a header'],
      ['127.0.0.25', { headers: { host: 'internal.example.com' } }, 403, 'L7 deny on a host'],
      ['127.0.0.25', { headers: { host: 'internal.example.com.' } }, 403, 'L7 deny on a host, trailing dot'],
      ['127.0.0.20', { path: '/admin' }, 403, 'L7 deny beats L7 allow'],
      ['127.0.0.26', { path: '/public/x' }, 200, 'public'],
      ['127.0.0.26', { path: '/public/./x' }, 200, 'public, dot segment still public'],
    ];

    test('methods, paths, hosts and headers decide each request; refused ones never reach the backend', async () => {
      clear(b.l7 as TestBackend);
      const forwarded: string[] = [];
      for (const [src, opts, want, what] of cases) {
        const path = opts.path ?? '/';
        const r = await get('l7', src, opts);
        assert.equal(
          r.status,
          want,
          `${what}: ${src} ${opts.method ?? 'GET'} ${path} -> ${r.status} ${r.error ?? r.body}`,
        );
        if (want === 200) forwarded.push(path);
      }
      assert.deepEqual(
        b.l7?.seen.map((s) => s.url),
        forwarded,
      );
    });

    test('a refused request gets 403 with a short reason and a request id (header and body)', async () => {
      const r = await get('l7', '127.0.0.25', { path: '/admin' });
      assert.equal(r.status, 403);
      const id = r.headers['x-request-id'];
      assert.equal(typeof id, 'string');
      assert.match(id as string, /^[0-9a-f-]{36}$/);
      assert.ok(r.body.includes(id as string), r.body);
      assert.match(r.body, /^403 Forbidden: request not allowed by segment policy/);
      assert.ok(r.body.length < 200, 'short');
      assert.equal(r.headers['content-type'], 'text/plain; charset=utf-8');
      const again = await get('l7', '127.0.0.25', { path: '/admin' });
      assert.notEqual(again.headers['x-request-id'], id, 'a fresh id per request');
    });

    test('a source with only an L7 deny covering it is reset at accept (default deny)', async () => {
      const before = b.l7?.connections;
      assertReset(await get('l7', '127.0.0.30', { path: '/home' }), '127.0.0.30');
      assert.equal(b.l7?.connections, before);
    });

    test('path normalisation cannot be used to bypass a deny', async () => {
      clear(b.l7 as TestBackend);
      const port = lb.port('l7');
      const targets = [
        '/a/../admin',
        '//admin',
        '/%61dmin',
        '/adm%69n',
        '/./admin',
        '/x/%2e%2e/admin',
        '/x/..%2Fadmin',
        '/x/..%5cadmin',
        '/x/..\\admin',
        '/admin?x=1',
        '/admin/',
        '///admin//users',
        'http://example.com/x/../admin',
      ];
      for (const target of targets) {
        const r = await rawExchange(port, request(target), { localAddress: '127.0.0.25' });
        assert.equal(rawStatus(r), 403, `${target}: ${r.received.split('\r\n')[0]}`);
        assert.match(r.received, /x-request-id: [0-9a-f-]{36}/);
      }
      // An allow for /public/* cannot be stretched to a path the backend may see as /admin/...
      for (const target of [
        '/admin/../public/x',
        '/public/../admin',
        '/public/..%2Fadmin',
        '/public/%2e%2e/admin',
      ]) {
        const r = await rawExchange(port, request(target), { localAddress: '127.0.0.26' });
        assert.equal(rawStatus(r), 403, `${target}: ${r.received.split('\r\n')[0]}`);
      }
      assert.deepEqual(b.l7?.seen, []);
      assert.ok(ruleCount('l7', 'denied', 'no-admin') >= targets.length);
    });

    test('two Host headers: only the first (the judged one) reaches the backend', async () => {
      clear(b.l7 as TestBackend);
      const r = await rawExchange(
        lb.port('l7'),
        'GET /dup HTTP/1.1\r\nHost: admin.example.com\r\nHost: www.example.com\r\nConnection: close\r\n\r\n',
        { localAddress: '127.0.0.21' },
      );
      if (rawStatus(r) === 200) {
        assert.deepEqual(
          b.l7?.seen.map((s) => s.headers.host),
          ['admin.example.com'],
        );
      } else {
        assert.equal(rawStatus(r), 400, r.received.split('\r\n')[0]);
        assert.deepEqual(b.l7?.seen, []);
      }
    });
  });

  describe('audit mode', () => {
    test('denied traffic passes and is counted in auditDenied / defaultAuditDenied, never in denied', async () => {
      clear(b.audit as TestBackend);
      const results = [
        await get('audit', '127.0.0.3'),
        await get('audit', '127.0.0.9'),
        await get('audit', '127.0.0.4', { path: '/api/admin' }),
        await get('audit', '127.0.0.4', { path: '/other' }),
        await get('audit', '127.0.0.4', { path: '/api/ok' }),
        await get('audit', '127.0.0.2'),
      ];
      assert.deepEqual(
        results.map((r) => r.status),
        [200, 200, 200, 200, 200, 200],
      );
      assert.equal(b.audit?.seen.length, 6);
      assert.equal(ruleCount('audit', 'auditDenied', 'bad'), 1);
      assert.equal(ruleCount('audit', 'auditDenied', 'no-admin'), 1);
      assert.equal(policy('audit').defaultAuditDenied, 2);
      assert.equal(ruleCount('audit', 'allowed', 'ok'), 1);
      assert.equal(ruleCount('audit', 'allowed', 'api'), 1);
      assert.deepEqual([...policy('audit').denied], [0, 0, 0, 0]);
      assert.equal(policy('audit').defaultDenied, 0);
      assert.equal(counters('audit').responses403, 0);
    });
  });

  describe('quarantine', () => {
    test('a quarantined source is reset at accept on every segment; remove lifts it', async () => {
      clear(b.any as TestBackend, b.dual as TestBackend);
      assert.equal((await get('any', '127.0.0.7')).status, 200);
      assert.equal((await get('dual', '127.0.0.7')).status, 200);
      clear(b.any as TestBackend, b.dual as TestBackend);
      const before = lb.runtime.shared.counters.quarantineDenied;
      lb.runtime.quarantine.add('127.0.0.7', 60_000, 'port scan');
      assertReset(await get('any', '127.0.0.7'), 'any');
      assertReset(await get('dual', '127.0.0.7'), 'dual');
      assertReset(await rawExchange(lb.port('any'), request('/'), { localAddress: '127.0.0.7' }), 'raw');
      assert.equal((await get('any', '127.0.0.8')).status, 200, 'only the quarantined address');
      assert.equal(lb.runtime.shared.counters.quarantineDenied - before, 3);
      assert.deepEqual(
        b.any?.seen.map((s) => s.headers['x-forwarded-for']),
        ['127.0.0.8'],
      );
      assert.deepEqual(b.dual?.seen, []);
      assert.equal(lb.runtime.quarantine.remove('127.0.0.7'), true);
      assert.equal((await get('any', '127.0.0.7')).status, 200);
      assert.equal((await get('dual', '127.0.0.7')).status, 200);
    });

    test('expiry lifts a quarantine', async () => {
      lb.runtime.quarantine.add('127.0.0.7', 300, 'short');
      assertReset(await get('any', '127.0.0.7'), 'during');
      await sleep(350);
      assert.equal((await get('any', '127.0.0.7')).status, 200);
    });

    test('a longer expired entry does not shadow a shorter live one', async () => {
      lb.runtime.quarantine.add('127.0.7.0/24', 60_000, 'subnet');
      lb.runtime.quarantine.add('127.0.7.7', 100, 'host');
      assertReset(await get('any', '127.0.7.7'), 'both live');
      await sleep(150);
      assertReset(await get('any', '127.0.7.7'), 'the /24 still covers it');
      assert.equal(lb.runtime.quarantine.remove('127.0.7.0/24'), true);
      assert.equal((await get('any', '127.0.7.7')).status, 200);
    });

    test('a client behind a trusted proxy is quarantined by its X-Forwarded-For address (403)', async () => {
      clear(b.xff as TestBackend);
      lb.runtime.quarantine.add('127.0.0.4', 60_000, 'behind the proxy');
      try {
        const r = await get('xff', '127.0.0.1', { headers: { 'x-forwarded-for': '127.0.0.4' } });
        assert.equal(r.status, 403);
        assert.deepEqual(b.xff?.seen, []);
      } finally {
        lb.runtime.quarantine.remove('127.0.0.4');
      }
    });
  });

  describe('dual-stack VIP [::]:0', () => {
    test('IPv4 clients are judged as 127.0.0.x and the backend sees X-Forwarded-For without ::ffff:', async () => {
      clear(b.dual as TestBackend);
      const count = (kind: 'allowed' | 'denied', rule: string) => ruleCount('dual', kind, rule);
      const before = [count('allowed', 'loop4'), count('denied', 'd3'), count('denied', 'mapped')];
      const r = await get('dual', '127.0.0.2', { host: '127.0.0.1' });
      assert.equal(r.status, 200);
      assertReset(await get('dual', '127.0.0.3', { host: '127.0.0.1' }), '127.0.0.3 (IPv4 deny rule)');
      assertReset(
        await get('dual', '127.0.0.4', { host: '127.0.0.1' }),
        '127.0.0.4 (rule written ::ffff:127.0.0.4)',
      );
      assert.deepEqual(
        b.dual?.seen.map((s) => s.headers['x-forwarded-for']),
        ['127.0.0.2'],
      );
      assert.deepEqual(
        [count('allowed', 'loop4'), count('denied', 'd3'), count('denied', 'mapped')],
        before.map((n) => n + 1),
      );
    });

    test('an IPv6 client from ::1 is judged by the IPv6 rules', async () => {
      clear(b.dual as TestBackend);
      const ok = await get('dual', '::1', { host: '::1' });
      assert.equal(ok.status, 200, ok.error);
      const post = await get('dual', '::1', { host: '::1', method: 'POST' });
      assert.equal(post.status, 403);
      assert.deepEqual(
        b.dual?.seen.map((s) => [s.method, s.headers['x-forwarded-for']]),
        [['GET', '::1']],
      );
      assert.equal(ruleCount('dual', 'allowed', 'v6-get'), 1);
    });
  });

  describe('PROXY protocol', () => {
    const body = (path: string) => Buffer.from(request(path));
    const header = (version: 1 | 2, source: string, port: number) =>
      encodeProxyHeader(version, { address: source, port: 40000 }, { address: '127.0.0.1', port });

    test('from a trusted peer, v1 and v2 headers are believed: the carried source is judged', async () => {
      clear(b.pp as TestBackend);
      const port = lb.port('pp');
      for (const v of [1, 2] as const) {
        const ok = await rawExchange(port, Buffer.concat([header(v, '127.0.0.4', port), body(`/v${v}`)]), {
          localAddress: '127.0.0.1',
        });
        assert.equal(rawStatus(ok), 200, `v${v}: ${ok.received.split('\r\n')[0]} ${ok.ended}`);
        for (const src of ['127.0.0.3', '127.0.0.9', '2001:db8::1']) {
          const r = await rawExchange(port, Buffer.concat([header(v, src, port), body('/denied')]), {
            localAddress: '127.0.0.1',
          });
          assertReset(r, `v${v} ${src}`);
        }
      }
      // IPv4-mapped in a TCP6 header is normalised like any other source.
      const mapped = Buffer.from(`PROXY TCP6 ::ffff:127.0.0.4 ::ffff:127.0.0.1 40000 ${port}\r\n`);
      const m = await rawExchange(port, Buffer.concat([mapped, body('/mapped')]), {
        localAddress: '127.0.0.1',
      });
      assert.equal(rawStatus(m), 200);
      assert.deepEqual(
        b.pp?.seen.map((s) => [s.url, s.headers['x-forwarded-for']]),
        [
          ['/v1', '127.0.0.4'],
          ['/v2', '127.0.0.4'],
          ['/mapped', '127.0.0.4'],
        ],
      );
      assert.equal(ruleCount('pp', 'denied', 'bad'), 2);
    });

    test('from a trusted peer, PROXY UNKNOWN means the peer itself; garbage closes the connection', async () => {
      const port = lb.port('pp');
      const unknown = await rawExchange(port, Buffer.concat([Buffer.from('PROXY UNKNOWN\r\n'), body('/')]), {
        localAddress: '127.0.0.1',
      });
      assertReset(unknown, '127.0.0.1 itself is not allowed');
      const before = lb.runtime.shared.counters.proxyHeaderInvalid;
      const garbage = await rawExchange(port, body('/no-header'), { localAddress: '127.0.0.1' });
      assert.equal(rawStatus(garbage), 0, garbage.received);
      assert.equal(lb.runtime.shared.counters.proxyHeaderInvalid, before + 1);
    });

    test('from an untrusted peer the header is not read: a spoof is judged on the real address', async () => {
      clear(b.pp as TestBackend);
      const port = lb.port('pp');
      for (const v of [1, 2] as const) {
        // Not allowed itself, claiming an allowed source: reset.
        assertReset(
          await rawExchange(port, Buffer.concat([header(v, '127.0.0.4', port), body('/spoof')]), {
            localAddress: '127.0.0.5',
          }),
          `v${v} from 127.0.0.5`,
        );
        // Allowed itself: the PROXY line reaches the HTTP parser, which answers 400; nothing is forwarded.
        const r = await rawExchange(port, Buffer.concat([header(v, '127.0.0.3', port), body('/spoof')]), {
          localAddress: '127.0.0.2',
        });
        assert.equal(rawStatus(r), 400, `v${v}: ${r.received.split('\r\n')[0]}`);
      }
      assert.equal(b.pp?.connections, 0);
      assert.deepEqual(b.pp?.seen, []);
    });

    test('a TCP VIP: trusted headers are consumed and believed, untrusted ones are not read', async () => {
      clear(b.pptcp as TestBackend);
      const port = lb.port('pptcp');
      for (const v of [1, 2] as const) {
        const ok = await rawExchange(port, Buffer.concat([header(v, '127.0.0.4', port), body(`/tcp${v}`)]), {
          localAddress: '127.0.0.1',
        });
        assert.equal(rawStatus(ok), 200, `v${v}: ${ok.received.split('\r\n')[0]} ${ok.ended}`);
        assertReset(
          await rawExchange(port, Buffer.concat([header(v, '127.0.0.3', port), body('/denied')]), {
            localAddress: '127.0.0.1',
          }),
          `v${v} carrying 127.0.0.3`,
        );
        assertReset(
          await rawExchange(port, Buffer.concat([header(v, '127.0.0.4', port), body('/spoof')]), {
            localAddress: '127.0.0.5',
          }),
          `v${v} spoof from 127.0.0.5`,
        );
      }
      // The backend got exactly the payloads after the header, never a PROXY line.
      assert.deepEqual(
        b.pptcp?.seen.map((s) => s.url),
        ['/tcp1', '/tcp2'],
      );
      assert.equal(ruleCount('pptcp', 'allowed', 'ok'), 2);
      assert.equal(ruleCount('pptcp', 'denied', 'bad'), 2);
      // From an allowed but untrusted peer the bytes are just payload: the backend's parser refuses them.
      const before = b.pptcp?.seen.length;
      const r = await rawExchange(port, Buffer.concat([header(1, '127.0.0.4', port), body('/payload')]), {
        localAddress: '127.0.0.2',
      });
      assert.equal(rawStatus(r), 400, r.received.split('\r\n')[0]);
      assert.equal(b.pptcp?.seen.length, before);
    });
  });

  describe('X-Forwarded-For trust', () => {
    test('from a trusted proxy the right-most untrusted X-Forwarded-For address is judged', async () => {
      clear(b.xff as TestBackend);
      const via = (xff: string | undefined, path: string) =>
        get('xff', '127.0.0.1', { path, headers: xff === undefined ? {} : { 'x-forwarded-for': xff } });
      assert.equal((await via('127.0.0.3', '/bad')).status, 403, 'judged as 127.0.0.3 (denied)');
      assert.equal((await via('127.0.0.4', '/ok')).status, 200, 'judged as 127.0.0.4 (allowed)');
      assert.equal((await via('127.0.0.3, 127.0.0.4', '/ok-right-most')).status, 200);
      assert.equal((await via('127.0.0.4, 127.0.0.3', '/bad-right-most')).status, 403);
      assert.equal((await via('127.0.0.9', '/default')).status, 403, 'default deny');
      assert.equal((await via(undefined, '/proxy-itself')).status, 403, 'no XFF: the proxy, not allowed');
      assert.equal((await via('not-an-ip', '/garbage')).status, 403);
      assert.deepEqual(
        b.xff?.seen.map((s) => [s.url, s.headers['x-forwarded-for']]),
        [
          ['/ok', '127.0.0.4, 127.0.0.1'],
          ['/ok-right-most', '127.0.0.3, 127.0.0.4, 127.0.0.1'],
        ],
      );
      assert.equal(ruleCount('xff', 'allowed', 'ok'), 2);
      assert.equal(ruleCount('xff', 'denied', 'bad'), 2);
    });

    test('from an untrusted source the header is ignored: judged on the real address, replaced for the backend', async () => {
      clear(b.xff as TestBackend);
      assertReset(
        await get('xff', '127.0.0.5', { headers: { 'x-forwarded-for': '127.0.0.4' } }),
        'spoof from 127.0.0.5',
      );
      assertReset(
        await get('xff', '127.0.0.3', { headers: { 'x-forwarded-for': '127.0.0.4' } }),
        'spoof from 127.0.0.3',
      );
      const r = await get('xff', '127.0.0.2', {
        path: '/replaced',
        headers: {
          'x-forwarded-for': '127.0.0.3, 10.9.9.9',
          'x-forwarded-proto': 'https',
          'x-forwarded-host': 'evil',
        },
      });
      assert.equal(r.status, 200);
      const seen = b.xff?.seen[0];
      assert.equal(seen?.url, '/replaced');
      assert.equal(seen?.headers['x-forwarded-for'], '127.0.0.2');
      assert.equal(seen?.headers['x-forwarded-proto'], 'http');
      assert.equal(seen?.headers['x-forwarded-host'], '127.0.0.1:' + lb.port('xff'));
      assert.equal(b.xff?.seen.length, 1);
    });

    test("Connection: X-Forwarded-For from a client cannot strip seglb's own X-Forwarded-For", async () => {
      clear(b.xff as TestBackend);
      const direct = await get('xff', '127.0.0.2', {
        path: '/direct',
        headers: { connection: 'close, X-Forwarded-For, Host', 'x-forwarded-for': '127.0.0.4' },
      });
      assert.equal(direct.status, 200);
      const proxied = await get('xff', '127.0.0.1', {
        path: '/proxied',
        headers: { connection: 'X-Forwarded-For', 'x-forwarded-for': '127.0.0.4' },
      });
      assert.equal(proxied.status, 200);
      assert.deepEqual(
        b.xff?.seen.map((s) => [s.url, s.headers['x-forwarded-for'], s.headers.host]),
        [
          ['/direct', '127.0.0.2', `127.0.0.1:${lb.port('xff')}`],
          ['/proxied', '127.0.0.4, 127.0.0.1', `127.0.0.1:${lb.port('xff')}`],
        ],
      );
    });
  });

  describe('outbound segmentation', () => {
    test('a hostname backend resolving outside backend_subnets: 502 naming the reason, no connection attempt', async () => {
      clear(b.out as TestBackend);
      const before = counters('outdeny').outboundDenied;
      const r = await get('outdeny', '127.0.0.2');
      assert.equal(r.status, 502);
      assert.match(
        r.body,
        /backend localhost \(resolved to (127\.0\.0\.1|::1)\) is outside the segment's backend_subnets/,
      );
      assert.match(r.body, /request id [0-9a-f-]{36}/);
      assert.equal(typeof r.headers['x-request-id'], 'string');
      assert.equal(counters('outdeny').outboundDenied, before + 1);
      assert.equal(counters('outdeny').responses502, 1);
      assert.equal(b.out?.connections, 0);
    });

    test('the same on a TCP VIP: the client connection is closed, no connection attempt', async () => {
      clear(b.out as TestBackend);
      const before = counters('outdenytcp').outboundDenied;
      const r = await rawExchange(lb.port('outdenytcp'), request('/tcp'), { localAddress: '127.0.0.2' });
      assert.equal(r.received, '');
      assert.notEqual(r.ended, 'timeout');
      assert.equal(counters('outdenytcp').outboundDenied, before + 1);
      assert.equal(b.out?.connections, 0);
    });

    test('backend_subnets covering 127.0.0.0/8 and ::1: the hostname backend is reached (HTTP and TCP)', async () => {
      clear(b.out as TestBackend);
      const r = await get('outok', '127.0.0.2', { path: '/http' });
      assert.equal(r.status, 200, r.body);
      assert.equal(r.body, 'out');
      const t = await rawExchange(lb.port('outoktcp'), request('/tcp'), { localAddress: '127.0.0.2' });
      assert.equal(rawStatus(t), 200, t.received);
      assert.deepEqual(
        b.out?.seen.map((s) => s.url),
        ['/http', '/tcp'],
      );
      assert.equal(counters('outok').outboundDenied, 0);
      assert.equal(counters('outoktcp').outboundDenied, 0);
    });
  });
});

describe('deny logs are rate limited (log.deny_log_per_second)', () => {
  test('LogRateLimiter: N lines per second, then the suppressed count on the next allowed line', () => {
    const limiter = new LogRateLimiter(3);
    const t0 = 1_000_000;
    assert.deepEqual(
      Array.from({ length: 10 }, (_, i) => limiter.take(t0 + i)),
      [0, 0, 0, -1, -1, -1, -1, -1, -1, -1],
    );
    assert.equal(limiter.take(t0 + 999), -1);
    assert.equal(limiter.take(t0 + 1000), 8, 'first line of the next second carries the count');
    assert.equal(limiter.take(t0 + 1001), 0);
    assert.equal(limiter.take(t0 + 1002), 0);
    assert.equal(limiter.take(t0 + 1003), -1);
    const off = new LogRateLimiter(0);
    assert.equal(off.take(t0), -1);
    assert.equal(off.take(t0 + 5000), -1);
  });

  test('a flood of 200 denied connections writes at most N deny lines, then a line with the suppressed count', async (t) => {
    const lines: Record<string, unknown>[] = [];
    const stream = new Writable({
      write(chunk: Buffer, _enc, cb) {
        for (const line of chunk.toString().split('\n')) if (line) lines.push(JSON.parse(line));
        cb();
      },
    });
    const perSecond = 5;
    const file = writeConfig(`
log: { deny_log_per_second: ${perSecond} }
segments:
  web:
    vips: [{ listen: "127.0.0.1:0" }]
    pool: p
    backend_subnets: [127.0.0.0/8]
    allow: [{ from: [127.0.0.2] }]
pools:
  p: { backends: [{ address: "127.0.0.1:9" }] }
`);
    // Freeze the clock the limiter reads, so the flood falls in one window whatever the machine's speed.
    t.mock.timers.enable({ apis: ['Date'], now: 1_000_000 });
    const rt = await Runtime.start(loadConfigFile(file), pino({ level: 'info' }, stream));
    try {
      const port = rt.boundVips()[0]?.port as number;
      for (let i = 0; i < 200; i += 50) {
        const batch = Array.from({ length: 50 }, (_, k) =>
          rawExchange(port, 'x', { localAddress: `127.0.${1 + ((i + k) >> 8)}.${(i + k) & 255}` }),
        );
        for (const r of await Promise.all(batch)) assertReset(r, 'flood');
      }
      const denies = () => lines.filter((l) => l.event === 'deny');
      assert.equal(denies().length, perSecond);
      assert.ok(
        denies().every((l) => l.suppressed === 0 && l.segment === 'web' && l.rule === 'default-deny'),
      );
      assert.equal(rt.snapshot.segments.get('web')?.policy.defaultDenied, 200);
      t.mock.timers.tick(1000);
      assertReset(await rawExchange(port, 'x', { localAddress: '127.0.3.1' }), 'after the window');
      const last = denies().at(-1);
      assert.equal(denies().length, perSecond + 1);
      assert.equal(last?.suppressed, 200 - perSecond);
      assert.equal(last?.source, '127.0.3.1');
    } finally {
      t.mock.timers.reset();
      await rt.stop(0);
    }
  });
});
