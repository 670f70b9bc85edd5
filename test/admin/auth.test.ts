// Admin API access control over a real socket: no or bad token -> 401 with WWW-Authenticate (also on
// unknown routes, so an anonymous caller learns nothing), too low a role -> 403 on every route of
// each class, nothing changes on a refused call, tokens never reach the log; body limits (413, 400).

import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ADMIN_MAX_BODY_BYTES } from '../../src/admin/index.ts';
import { captureLogger, policyVersion, startSeglbAdminLogged, TEST_TOKENS } from './harness.ts';

const YAML = `
ipsets:
  office: { cidrs: [127.0.0.0/29] }
segments:
  web:
    vips: [{ listen: "127.0.0.1:0" }]
    pool: web
    backend_subnets: [127.0.0.0/8]
    allow:
      - { name: office, from: [office] }
pools:
  web:
    backends: [{ address: "127.0.0.1:1", name: b1 }]
`;

type Role = 'read' | 'operate' | 'admin';

/** Every route with the least role it needs and a body that would be valid. */
const ROUTES: { method: string; path: string; role: Role; body?: unknown }[] = [
  { method: 'GET', path: '/status', role: 'read' },
  { method: 'GET', path: '/segments', role: 'read' },
  { method: 'GET', path: '/segments/web', role: 'read' },
  { method: 'POST', path: '/explain', role: 'read', body: { segment: 'web', source: '127.0.0.1' } },
  { method: 'GET', path: '/ipsets', role: 'read' },
  { method: 'GET', path: '/quarantine', role: 'read' },
  { method: 'GET', path: '/diff', role: 'read' },
  { method: 'GET', path: '/audit', role: 'read' },
  { method: 'GET', path: '/lint', role: 'read' },
  {
    method: 'POST',
    path: '/simulate',
    role: 'read',
    body: { ops: [{ op: 'set_mode', segment: 'web', mode: 'audit' }] },
  },
  { method: 'POST', path: '/quarantine', role: 'operate', body: { cidr: '127.0.0.200', ttl_ms: 60_000 } },
  { method: 'DELETE', path: `/quarantine/${encodeURIComponent('127.0.0.200/32')}`, role: 'operate' },
  { method: 'PUT', path: '/segments/web/mode', role: 'operate', body: { mode: 'audit' } },
  { method: 'PUT', path: '/pools/web/backends/b1/state', role: 'operate', body: { state: 'drain' } },
  {
    method: 'POST',
    path: '/segments/web/rules',
    role: 'admin',
    body: { kind: 'allow', rule: { name: 'x', from: ['127.0.0.9'] } },
  },
  { method: 'DELETE', path: '/segments/web/rules/allow/office', role: 'admin' },
  { method: 'POST', path: '/ipsets/office/entries', role: 'admin', body: { cidrs: ['127.0.0.8/29'] } },
  { method: 'DELETE', path: '/ipsets/office/entries', role: 'admin', body: { cidrs: ['127.0.0.0/29'] } },
  {
    method: 'POST',
    path: '/changes',
    role: 'admin',
    body: { ops: [{ op: 'set_mode', segment: 'web', mode: 'audit' }] },
  },
  { method: 'POST', path: '/reload', role: 'admin' },
];

const RANK: Record<Role, number> = { read: 0, operate: 1, admin: 2 };

describe('admin API: authentication and roles', { timeout: 60_000 }, () => {
  const logs = captureLogger();
  let lb: Awaited<ReturnType<typeof startSeglbAdminLogged>>;

  const call = async (
    method: string,
    path: string,
    opts: { body?: unknown; raw?: string; authorization?: string; token?: string | null } = {},
  ) => {
    const headers: Record<string, string> = {};
    const token = opts.token === undefined ? TEST_TOKENS.admin : opts.token;
    if (opts.authorization !== undefined) headers.authorization = opts.authorization;
    else if (token !== null) headers.authorization = `Bearer ${token}`;
    const body = opts.raw ?? (opts.body === undefined ? undefined : JSON.stringify(opts.body));
    const res = await fetch(lb.adminUrl + path, { method, headers, body });
    const text = await res.text();
    return { status: res.status, headers: res.headers, body: text ? JSON.parse(text) : undefined };
  };

  before(async () => {
    lb = await startSeglbAdminLogged(YAML, logs.log);
  });
  after(() => lb.stop());

  it('answers 401 with WWW-Authenticate without a token, on every route', async () => {
    for (const r of ROUTES) {
      const res = await call(r.method, r.path, { body: r.body, token: null });
      assert.equal(res.status, 401, `${r.method} ${r.path}`);
      assert.equal(res.headers.get('www-authenticate'), 'Bearer realm="seglb"');
      assert.equal(res.body.error.code, 'SEGLB_ADMIN_UNAUTHORIZED');
    }
  });

  it('answers 401 to a wrong token, a malformed header and a non-Bearer scheme', async () => {
    const wrong = [
      `Bearer ${TEST_TOKENS.admin}x`,
      `Bearer ${TEST_TOKENS.admin.slice(0, -1)}`,
      'Bearer',
      `Basic ${Buffer.from(`admin1:${TEST_TOKENS.admin}`).toString('base64')}`,
      `Bearer ${TEST_TOKENS.admin} extra`,
      TEST_TOKENS.admin,
    ];
    for (const authorization of wrong) {
      const res = await call('GET', '/status', { authorization });
      assert.equal(res.status, 401, authorization);
      assert.equal(res.headers.get('www-authenticate'), 'Bearer realm="seglb"');
    }
    // The scheme is case-insensitive (RFC 9110 §11.1).
    assert.equal((await call('GET', '/status', { authorization: `bearer ${TEST_TOKENS.read}` })).status, 200);
  });

  it('answers 401, not 404 or 405, for unknown routes and methods without a valid token', async () => {
    for (const [method, path] of [
      ['GET', '/nope'],
      ['GET', '/segments/web/rules/allow'],
      ['PATCH', '/status'],
      ['GET', '/../etc/passwd'],
      ['DELETE', '/quarantine/%E0%A4%A'],
      ['GET', '/segments/%ZZ'],
    ] as const) {
      assert.equal((await call(method, path, { token: null })).status, 401, `${method} ${path}`);
      assert.equal((await call(method, path, { token: 'not-a-token-at-all-xx' })).status, 401);
    }
    // With a valid token the caller learns the truth.
    assert.equal((await call('GET', '/nope', { token: TEST_TOKENS.read })).status, 404);
    assert.equal((await call('PATCH', '/status', { token: TEST_TOKENS.read })).status, 405);
    assert.equal((await call('GET', '/segments/%ZZ', { token: TEST_TOKENS.read })).status, 400);
  });

  it('answers 403 to a role below the route class, and changes nothing', async () => {
    const version = policyVersion(lb.control);
    let refused = 0;
    for (const r of ROUTES) {
      for (const role of ['read', 'operate'] as const) {
        if (RANK[role] >= RANK[r.role]) continue;
        const res = await call(r.method, r.path, { body: r.body, token: TEST_TOKENS[role] });
        assert.equal(res.status, 403, `${role} on ${r.method} ${r.path}`);
        assert.equal(res.body.error.code, 'SEGLB_ADMIN_FORBIDDEN');
        assert.match(res.body.error.message, new RegExp(`needs the ${r.role} role`));
        refused++;
      }
    }
    assert.equal(refused, 2 * 6 + 4, 'operate routes refuse read; admin routes refuse read and operate');
    assert.equal(policyVersion(lb.control), version);
    assert.equal(lb.control.ops.length, 0);
    assert.equal(lb.runtime.quarantine.list().length, 0);
    assert.deepEqual(lb.runtime.backendStates(), []);
    assert.equal(lb.control.audit.recent().length, 0, 'a refused call is not an audited change');
  });

  it('lets each role through on its own class (read on read routes, operate on operate routes)', async () => {
    for (const r of ROUTES) {
      if (r.role === 'admin') continue;
      const res = await call(r.method, r.path, { body: r.body, token: TEST_TOKENS[r.role] });
      assert.equal(res.status, 200, `${r.role} on ${r.method} ${r.path}: ${JSON.stringify(res.body)}`);
    }
    // Roles include the ones below: admin may read and operate.
    assert.equal((await call('GET', '/status', { token: TEST_TOKENS.admin })).status, 200);
    assert.equal(
      (
        await call('PUT', '/pools/web/backends/b1/state', {
          body: { state: 'ready' },
          token: TEST_TOKENS.admin,
        })
      ).status,
      200,
    );
  });

  it('answers 413 to a body over the limit and keeps the connection usable for the next call', async () => {
    const big = JSON.stringify({ ops: [], pad: 'x'.repeat(ADMIN_MAX_BODY_BYTES) });
    const res = await call('POST', '/changes', { raw: big });
    assert.equal(res.status, 413);
    assert.equal(res.body.error.code, 'SEGLB_ADMIN_BAD_REQUEST');
    // A chunked body (no Content-Length) that grows past the limit.
    const chunked = await fetch(`${lb.adminUrl}/changes`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TEST_TOKENS.admin}` },
      body: new Blob([big]).stream(),
      duplex: 'half',
    } as RequestInit);
    assert.equal(chunked.status, 413);
    await chunked.text();
    for (let i = 0; i < 3; i++) assert.equal((await call('GET', '/status')).status, 200);
  });

  it('answers 400 to bad JSON and to bodies of the wrong shape', async () => {
    const cases: [string, string, string, RegExp][] = [
      ['POST', '/changes', '{"ops": [', /not valid JSON/],
      ['POST', '/changes', '[]', /"ops" must be a non-empty list/],
      ['POST', '/changes', '{"ops": [{"op": "drop_table"}]}', /"op" must be one of/],
      ['POST', '/segments/web/rules', '{"kind": "maybe", "rule": {"name": "a", "from": ["any"]}}', /"kind"/],
      ['POST', '/segments/web/rules', '{"kind": "allow", "rule": {"from": ["any"]}}', /needs a "name"/],
      ['PUT', '/segments/web/mode', '{"mode": "loud"}', /"mode" must be enforce or audit/],
      ['POST', '/quarantine', '{"cidr": "127.0.0.9", "ttl_ms": -5}', /ttl_ms/],
      ['POST', '/quarantine', '{"cidr": "127.0.0.9/8"}', /host bits/],
      ['PUT', '/pools/web/backends/b1/state', '{"state": "off"}', /ready, drain or maintenance/],
      ['POST', '/explain', '{"segment": "web"}', /"source"/],
      [
        'POST',
        '/explain',
        '{"segment": "web", "source": "banana"}',
        /"source" must be an IPv4 or IPv6 address/,
      ],
      ['GET', '/audit?limit=-3', '', /"limit"/],
    ];
    const version = policyVersion(lb.control);
    for (const [method, path, raw, message] of cases) {
      const res = await call(method, path, { raw: raw || undefined });
      assert.equal(res.status, 400, `${method} ${path} ${raw}: ${JSON.stringify(res.body)}`);
      assert.match(res.body.error.message, message);
    }
    assert.equal(policyVersion(lb.control), version);
  });

  it('picks up a changed tokens file at the next reload (rotation without a restart)', async () => {
    const tokensFile = join(dirname(lb.control.file), 'tokens.txt');
    const fresh = 'n'.repeat(24);
    const before = readFileSync(tokensFile, 'utf8');
    writeFileSync(tokensFile, `${before}new1 read ${fresh}\n`);
    assert.equal((await call('GET', '/status', { token: fresh })).status, 401, 'not before the reload');
    assert.equal((await call('POST', '/reload')).status, 200);
    assert.equal((await call('GET', '/status', { token: fresh })).status, 200);
    // Revoking: take the line out and reload.
    writeFileSync(tokensFile, before);
    assert.equal((await call('POST', '/reload')).status, 200);
    assert.equal((await call('GET', '/status', { token: fresh })).status, 401);
    // A broken tokens file is refused like any invalid config; the old tokens keep working.
    writeFileSync(tokensFile, `${before}broken line\n`);
    const bad = await call('POST', '/reload');
    assert.equal(bad.status, 422);
    assert.equal(bad.body.error.issues[0].file, tokensFile);
    assert.ok(!JSON.stringify(bad.body).includes(TEST_TOKENS.admin), 'no token text in the error');
    assert.equal((await call('GET', '/status', { token: TEST_TOKENS.read })).status, 200);
    writeFileSync(tokensFile, before);
  });

  it('never writes a token to the log (only its name)', () => {
    const text = logs.text();
    for (const token of Object.values(TEST_TOKENS)) {
      assert.ok(!text.includes(token), 'a token reached the log');
      // Not even a long piece of one.
      assert.ok(!text.includes(token.slice(-16)), 'part of a token reached the log');
    }
    const lines = logs.lines();
    const calls = lines.filter((l) => l.msg === 'admin call');
    assert.ok(calls.length > 10, 'admin calls are logged');
    assert.ok(
      calls.every((l) =>
        ['token:read1', 'token:operate1', 'token:admin1', 'token:new1'].includes(l.actor as string),
      ),
    );
    assert.ok(lines.some((l) => l.status === 401 && l.code === 'SEGLB_ADMIN_UNAUTHORIZED'));
    assert.ok(lines.some((l) => l.status === 403 && l.code === 'SEGLB_ADMIN_FORBIDDEN'));
    assert.ok(!text.includes('Bearer '), 'no Authorization header value in the log');
  });
});
