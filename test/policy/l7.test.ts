// Tests L7 rule matching (methods, paths, hosts, headers) and the request-path normalisation that
// keeps `/a/../admin`, `//admin`, `/%61dmin` and friends from slipping past a rule about `/admin`.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { RuleConfig } from '../../src/config/types.ts';
import {
  L7Matcher,
  normaliseRequestPath,
  type RequestAttributes,
  requestPathAsSent,
} from '../../src/policy/l7.ts';

function matcher(rule: Omit<RuleConfig, 'from'>, kind: 'allow' | 'deny' = 'allow'): L7Matcher {
  const m = L7Matcher.fromRule({ from: ['any'], ...rule }, kind);
  assert.ok(m);
  return m;
}

function req(more: Partial<RequestAttributes> = {}): RequestAttributes {
  return { method: 'GET', path: '/', host: 'example.com', headers: {}, ...more };
}

describe('L7Matcher', () => {
  test('a rule without L7 keys has no matcher (it applies to whole connections)', () => {
    assert.equal(L7Matcher.fromRule({ from: ['any'] }), null);
    assert.equal(L7Matcher.fromRule({ from: ['any'], name: 'x' }, 'deny'), null);
  });

  test('methods: any listed method', () => {
    const m = matcher({ methods: ['GET', 'HEAD'] });
    assert.equal(m.matches(req({ method: 'GET' })), true);
    assert.equal(m.matches(req({ method: 'HEAD' })), true);
    assert.equal(m.matches(req({ method: 'POST' })), false);
    assert.equal(m.matches(req({ method: 'get' })), false, 'methods are case-sensitive (RFC 9110 §9.1)');
  });

  test('paths: exact, and prefix when ending in *', () => {
    const m = matcher({ paths: ['/health', '/api/*', '/static*'] });
    assert.equal(m.matches(req({ path: '/health' })), true);
    assert.equal(m.matches(req({ path: '/health/' })), false);
    assert.equal(m.matches(req({ path: '/healthz' })), false);
    assert.equal(m.matches(req({ path: '/api/' })), true);
    assert.equal(m.matches(req({ path: '/api/users/1' })), true);
    assert.equal(m.matches(req({ path: '/api' })), false, '/api/* needs the slash');
    assert.equal(m.matches(req({ path: '/static' })), true);
    assert.equal(m.matches(req({ path: '/staticfiles/a.css' })), true);
    assert.equal(m.matches(req({ path: '/' })), false);
    const all = matcher({ paths: ['/*'] });
    assert.equal(all.matches(req({ path: '/' })), true);
    assert.equal(all.matches(req({ path: '/anything/at/all' })), true);
  });

  test('paths: the path argument overrides req.path (judgeRequest passes the as-sent form)', () => {
    const m = matcher({ paths: ['/admin'] });
    assert.equal(m.matches(req({ path: '/admin' }), '/x'), false);
    assert.equal(m.matches(req({ path: '/x' }), '/admin'), true);
  });

  test('hosts: exact (case-insensitive rule) and *.suffix (not the apex, any depth)', () => {
    const m = matcher({ hosts: ['API.example.com', '*.apps.example.com'] });
    assert.equal(m.matches(req({ host: 'api.example.com' })), true);
    assert.equal(m.matches(req({ host: 'www.example.com' })), false);
    assert.equal(m.matches(req({ host: 'a.apps.example.com' })), true);
    assert.equal(m.matches(req({ host: 'a.b.apps.example.com' })), true);
    assert.equal(m.matches(req({ host: 'apps.example.com' })), false);
    assert.equal(m.matches(req({ host: 'xapps.example.com' })), false);
    assert.equal(m.matches(req({ host: '' })), false);
  });

  test('hosts: a fully qualified name with a trailing dot is the same host', () => {
    const deny = matcher({ hosts: ['admin.example.com', '*.internal.example.com'] }, 'deny');
    assert.equal(deny.matches(req({ host: 'admin.example.com.' })), true);
    assert.equal(deny.matches(req({ host: 'db.internal.example.com.' })), true);
    assert.equal(deny.matches(req({ host: '.' })), false);
  });

  test('headers: exact value (case-sensitive), or * for present; names are case-insensitive', () => {
    const m = matcher({ headers: { 'X-Token': 's3cret', 'x-present': '*' } });
    assert.equal(m.matches(req({ headers: { 'x-token': 's3cret', 'x-present': '' } })), true);
    assert.equal(m.matches(req({ headers: { 'x-token': 'S3CRET', 'x-present': '1' } })), false);
    assert.equal(m.matches(req({ headers: { 'x-token': 's3cret' } })), false, 'x-present missing');
    assert.equal(m.matches(req({ headers: { 'x-present': 'yes' } })), false, 'x-token missing');
    assert.equal(m.matches(req({ headers: { 'x-token': 's3cret, other', 'x-present': '1' } })), false);
    // An array value (set-cookie style): any element.
    assert.equal(m.matches(req({ headers: { 'x-token': ['a', 's3cret'], 'x-present': '1' } })), true);
  });

  test('headers: a deny also matches one element of a repeated (joined) header; an allow does not', () => {
    const deny = matcher({ headers: { 'x-debug': '1' } }, 'deny');
    const allow = matcher({ headers: { 'x-debug': '1' } }, 'allow');
    for (const joined of ['1, 1', '0, 1', '1,0', ' 1 ,2', '2,\t1']) {
      assert.equal(deny.matches(req({ headers: { 'x-debug': joined } })), true, joined);
      assert.equal(allow.matches(req({ headers: { 'x-debug': joined } })), false, joined);
    }
    for (const other of ['11', '0', '1 1', '', ',', '10, 01']) {
      assert.equal(deny.matches(req({ headers: { 'x-debug': other } })), false, other);
    }
  });

  test('all listed conditions must hold (AND), any value within one (OR)', () => {
    const m = matcher({
      methods: ['POST'],
      paths: ['/api/*'],
      hosts: ['api.example.com'],
      headers: { 'x-k': 'v' },
    });
    const ok = req({ method: 'POST', path: '/api/x', host: 'api.example.com', headers: { 'x-k': 'v' } });
    assert.equal(m.matches(ok), true);
    assert.equal(m.matches({ ...ok, method: 'GET' }), false);
    assert.equal(m.matches({ ...ok, path: '/x' }), false);
    assert.equal(m.matches({ ...ok, host: 'www.example.com' }), false);
    assert.equal(m.matches({ ...ok, headers: {} }), false);
  });
});

describe('normaliseRequestPath', () => {
  const cases: [string, string][] = [
    ['/', '/'],
    ['/admin', '/admin'],
    ['/admin?x=1', '/admin'],
    ['/admin#frag', '/admin'],
    ['/a/../admin', '/admin'],
    ['/a/b/../../admin', '/admin'],
    ['/../admin', '/admin'],
    ['/../../../admin', '/admin'],
    ['//admin', '/admin'],
    ['///admin//x', '/admin/x'],
    ['/./admin', '/admin'],
    ['/admin/.', '/admin/'],
    ['/admin/..', '/'],
    ['/admin/', '/admin/'],
    ['/%61dmin', '/admin'],
    ['/%41%44%4d%49%4e', '/ADMIN'],
    ['/%2e%2e/admin', '/admin'],
    ['/x/%2E%2E/admin', '/admin'],
    ['/x/.%2e/admin', '/admin'],
    ['/x/..%2Fadmin', '/admin'],
    ['/x/..%2fadmin', '/admin'],
    ['/x/..%5Cadmin', '/admin'],
    ['/x/..\\admin', '/admin'],
    ['/x\\..\\admin', '/admin'],
    ['/%7Euser', '/~user'],
    ['/a%2db_c.d~e', '/a-b_c.d~e'],
    ['/a%20b', '/a%20b'],
    ['/a%3fb', '/a%3Fb'],
    ['/a%25b', '/a%25b'],
    ['/a%252e%252e/admin', '/a%252e%252e/admin'],
    ['/a%zzb', '/a%25zzb'],
    ['/%%61a', '/%25aa'],
    ['/100%', '/100%25'],
    ['/..%2e/admin', '/.../admin'],
    ['http://example.com/a/../admin?q', '/admin'],
    ['http://example.com', '/'],
    ['http://example.com?x=/admin', '/'],
    ['https://user@example.com:8443//admin', '/admin'],
    ['http://example.com\\admin', '/admin'],
    ['*', '*'],
  ];
  for (const [input, want] of cases) {
    test(`${JSON.stringify(input)} -> ${JSON.stringify(want)}`, () => {
      assert.equal(normaliseRequestPath(input), want);
    });
  }

  test('a clean path is returned as is (no copy on the hot path)', () => {
    const p = '/api/v1/users';
    assert.equal(normaliseRequestPath(p), p);
  });

  test('idempotent on random targets, and always starts with /', () => {
    const alphabet = [
      '/',
      '.',
      '..',
      '%2e',
      '%2F',
      '%5c',
      '\\',
      'a',
      'admin',
      '%61',
      '%25',
      '%',
      '?',
      '//',
      '~',
    ];
    let seed = 12345;
    const rand = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed;
    };
    for (let i = 0; i < 2000; i++) {
      let target = '/';
      const n = 1 + (rand() % 10);
      for (let k = 0; k < n; k++) target += alphabet[rand() % alphabet.length];
      const once = normaliseRequestPath(target);
      assert.equal(once.charCodeAt(0), 47, target);
      assert.equal(normaliseRequestPath(once), once, `not idempotent on ${target}`);
      assert.ok(
        !once.includes('//') && !once.includes('\\') && !/\/\.\.?(\/|$)/.test(once),
        `${target} -> ${once}`,
      );
    }
  });
});

describe('requestPathAsSent', () => {
  test('drops the query and fragment, decodes nothing, reduces absolute-form to its path', () => {
    assert.equal(requestPathAsSent('/a/../b?x=1'), '/a/../b');
    assert.equal(requestPathAsSent('/%61dmin#x'), '/%61dmin');
    assert.equal(requestPathAsSent('/plain'), '/plain');
    assert.equal(requestPathAsSent('http://h:80/a//b?c'), '/a//b');
    assert.equal(requestPathAsSent('http://h\\a'), '\\a');
    assert.equal(requestPathAsSent('http://h?x=/y'), '/');
    assert.equal(requestPathAsSent('http://h#/y'), '/');
    assert.equal(requestPathAsSent('*'), '*');
    assert.equal(requestPathAsSent('garbage'), '/');
  });
});
