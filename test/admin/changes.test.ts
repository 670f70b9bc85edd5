// Policy and runtime changes through the admin API, checked on the data path over loopback: each
// change class (rules, mode, IP-set entries, batched changes, quarantine, backend states) takes
// effect on the next connection; an invalid change is refused whole (422 with file:line:col issues,
// versions unchanged); every change lands in the audit trail (API and file) with actor and versions.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, beforeEach, describe, it } from 'node:test';
import type { AuditEntry } from '../../src/admin/index.ts';
import { type ClientResult, httpRequest, startBackend, type TestBackend } from '../support/net.ts';
import { startSeglbAdmin, type TestSeglbAdmin } from '../support/seglb.ts';

const RESET = new Set(['ECONNRESET', 'EPIPE']);

function assertReset(r: ClientResult, what: string): void {
  assert.equal(r.status, 0, `${what}: expected a reset, got HTTP ${r.status}`);
  assert.ok(RESET.has(r.error ?? ''), `${what}: expected ECONNRESET, got ${r.error}`);
}

describe('admin API: changes take effect on the data path', { timeout: 60_000 }, () => {
  let lb: TestSeglbAdmin;
  let b1: TestBackend;
  let b2: TestBackend;
  const get = (from: string, path = '/') => httpRequest({ port: lb.port('web'), localAddress: from, path });
  const version = () => lb.runtime.snapshot.version;

  before(async () => {
    b1 = await startBackend('b1', '127.0.0.1');
    b2 = await startBackend('b2', '127.0.0.1');
    lb = await startSeglbAdmin(`
ipsets:
  office: { cidrs: [127.0.0.0/29] }
  partners: { cidrs: [127.0.2.0/24] }
segments:
  web:
    vips: [{ listen: "127.0.0.1:0" }]
    pool: web
    backend_subnets: [127.0.0.0/8]
    allow:
      - { name: office, from: [office] }
      - { name: partners, from: [partners] }
pools:
  web:
    backends:
      - { address: "${b1.address}", name: b1 }
      - { address: "${b2.address}", name: b2 }
`);
  });
  after(async () => {
    await lb.stop();
    await b1.close();
    await b2.close();
  });
  beforeEach(() => {
    for (const b of [b1, b2]) {
      b.connections = 0;
      b.seen.length = 0;
    }
  });

  it('a rule added through the API takes effect on the next connection', async () => {
    assertReset(await get('127.0.1.9'), 'before the change');
    const v = version();
    const res = await lb.api('POST', '/segments/web/rules', {
      kind: 'allow',
      rule: { name: 'ops-team', from: ['127.0.1.0/24'] },
    });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal(res.body.version, v + 1);
    assert.match(res.body.hash, /^[0-9a-f]{16}$/);
    assert.equal((await get('127.0.1.9')).status, 200);
    // An L7 rule: only GET /health from 127.0.3.0/24.
    await lb.api('POST', '/segments/web/rules', {
      kind: 'allow',
      rule: { name: 'health', from: ['127.0.3.0/24'], methods: ['GET'], paths: ['/health'] },
    });
    assert.equal((await get('127.0.3.1', '/health')).status, 200);
    assert.equal((await get('127.0.3.1', '/other')).status, 403);
    // And a deny beats it at once.
    await lb.api('POST', '/segments/web/rules', {
      kind: 'deny',
      rule: { name: 'no-9', from: ['127.0.1.9'] },
    });
    assertReset(await get('127.0.1.9'), 'denied by the new deny rule');
    assert.equal((await get('127.0.1.10')).status, 200);
  });

  it('removing a rule through the API refuses its sources on the next connection', async () => {
    assert.equal((await get('127.0.2.7')).status, 200);
    const res = await lb.api('DELETE', '/segments/web/rules/allow/partners');
    assert.equal(res.status, 200);
    assertReset(await get('127.0.2.7'), 'after removing the partners rule');
    const missing = await lb.api('DELETE', '/segments/web/rules/allow/partners');
    assert.equal(missing.status, 404);
    assert.equal(missing.body.error.code, 'SEGLB_ADMIN_NOT_FOUND');
    assert.equal((await lb.api('DELETE', '/segments/nope/rules/allow/x')).status, 404);
    const dup = await lb.api('POST', '/segments/web/rules', {
      kind: 'allow',
      rule: { name: 'office', from: ['any'] },
    });
    assert.equal(dup.status, 400, 'a second rule with the same name');
  });

  it('an invalid change is refused whole with positioned issues; the running policy stays', async () => {
    const v = version();
    const hash = lb.runtime.snapshot.hash;
    const opsBefore = lb.control.ops.length;
    const res = await lb.api('POST', '/segments/web/rules', {
      kind: 'allow',
      rule: { name: 'typo', from: ['127.0.4.9/16', 'ofice'] },
    });
    assert.equal(res.status, 422, JSON.stringify(res.body));
    assert.equal(res.body.error.code, 'SEGLB_ADMIN_INVALID_CHANGE');
    const issues = res.body.error.issues as {
      file: string;
      line: number;
      col: number;
      keyPath: string;
      message: string;
    }[];
    assert.equal(issues.length, 2);
    assert.equal(issues[0]?.file, lb.file);
    assert.ok(
      issues.every((i) => i.line > 0 && i.col > 0),
      'issues carry line and column',
    );
    assert.match(issues[0]?.keyPath ?? '', /^segments\.web\.allow\[\d+\]\.from\[0\]$/);
    assert.match(issues[0]?.message ?? '', /host bits set; did you mean 127\.0\.0\.0\/16\?/);
    assert.match(issues[1]?.message ?? '', /IP set "ofice" does not exist; did you mean "office"\?/);
    assert.equal(version(), v);
    assert.equal(lb.runtime.snapshot.hash, hash);
    assert.equal(lb.control.ops.length, opsBefore);
    assertReset(await get('127.0.4.9'), 'the refused rule is not in force');
    assert.equal((await get('127.0.0.2')).status, 200, 'the old policy still serves');
    // An unknown segment in the path is a 404, an unknown IP set too.
    assert.equal((await lb.api('PUT', '/segments/nope/mode', { mode: 'audit' })).status, 404);
    assert.equal((await lb.api('POST', '/ipsets/nope/entries', { cidrs: ['127.0.0.8'] })).status, 404);
    assert.equal(version(), v);
  });

  it('switching a segment to audit lets denied sources pass (logged), and back to enforce', async () => {
    assertReset(await get('127.0.5.5'), 'enforce');
    const res = await lb.api('PUT', '/segments/web/mode', { mode: 'audit' }, lb.tokens.operate);
    assert.equal(res.status, 200);
    assert.equal(lb.runtime.snapshot.segments.get('web')?.config.mode, 'audit');
    assert.equal((await get('127.0.5.5')).status, 200);
    await lb.api('PUT', '/segments/web/mode', { mode: 'enforce' }, lb.tokens.operate);
    assertReset(await get('127.0.5.5'), 'enforce again');
  });

  it('IP-set entries added and removed through the API change who is allowed', async () => {
    assertReset(await get('127.0.6.1'), 'not in office yet');
    const add = await lb.api('POST', '/ipsets/office/entries', { cidrs: ['127.0.6.0/24', '127.0.7.1'] });
    assert.equal(add.status, 200, JSON.stringify(add.body));
    assert.equal((await get('127.0.6.1')).status, 200);
    assert.equal((await get('127.0.7.1')).status, 200);
    const rm = await lb.api('DELETE', '/ipsets/office/entries', { cidrs: ['127.0.6.0/24'] });
    assert.equal(rm.status, 200);
    assertReset(await get('127.0.6.1'), 'removed from office');
    assert.equal((await get('127.0.7.1')).status, 200);
    const conflict = await lb.api('DELETE', '/ipsets/office/entries', { cidrs: ['127.0.6.0/24'] });
    assert.equal(conflict.status, 409);
    assert.equal(conflict.body.error.code, 'SEGLB_ADMIN_CONFLICT');
    const bad = await lb.api('POST', '/ipsets/office/entries', { cidrs: ['127.0.6.1/24'] });
    assert.equal(bad.status, 422);
    assert.match(bad.body.error.issues[0].keyPath, /^ipsets\.office\.cidrs\[\d+\]$/);
  });

  it('a batch of changes is applied atomically: one version, or nothing at all', async () => {
    const v = version();
    const failed = await lb.api('POST', '/changes', {
      ops: [
        { op: 'add_rule', segment: 'web', kind: 'allow', rule: { name: 'batch-a', from: ['127.0.8.0/24'] } },
        { op: 'set_mode', segment: 'web', mode: 'audit' },
        { op: 'add_rule', segment: 'web', kind: 'allow', rule: { name: 'batch-b', from: ['nosuchset'] } },
      ],
    });
    assert.equal(failed.status, 422);
    assert.equal(version(), v, 'nothing applied');
    assert.equal(lb.runtime.snapshot.segments.get('web')?.config.mode, 'enforce');
    assertReset(await get('127.0.8.1'), 'the first op of a refused batch is not in force');
    const missing = await lb.api('POST', '/changes', {
      ops: [
        { op: 'add_rule', segment: 'web', kind: 'allow', rule: { name: 'batch-a', from: ['127.0.8.0/24'] } },
        { op: 'remove_rule', segment: 'web', kind: 'deny', name: 'never-was' },
      ],
    });
    assert.equal(missing.status, 404);
    assert.equal(version(), v);

    const ok = await lb.api('POST', '/changes', {
      ops: [
        { op: 'add_rule', segment: 'web', kind: 'allow', rule: { name: 'batch-a', from: ['127.0.8.0/24'] } },
        { op: 'add_rule', segment: 'web', kind: 'deny', rule: { name: 'batch-b', from: ['127.0.8.8'] } },
        { op: 'add_ipset_entries', ipset: 'partners', cidrs: ['127.0.9.0/24'] },
      ],
    });
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    assert.equal(ok.body.version, v + 1, 'one version for the whole batch');
    assert.equal((await get('127.0.8.1')).status, 200);
    assertReset(await get('127.0.8.8'), 'the batch deny');
    const entry = lb.control.audit.recent(1)[0];
    assert.ok(entry);
    assert.equal(entry.action, 'policy_ops');
    assert.equal((entry.change as unknown[]).length, 3);
  });

  it('quarantine through the API refuses a source everywhere, with expiry, and can be lifted', async () => {
    assert.equal((await get('127.0.0.3')).status, 200);
    const add = await lb.api(
      'POST',
      '/quarantine',
      { cidr: '127.0.0.3', ttl_ms: 600, reason: 'scanner' },
      lb.tokens.operate,
    );
    assert.equal(add.status, 200);
    assert.equal(add.body.entry.cidr, '127.0.0.3/32');
    assert.equal(add.body.entry.reason, 'scanner');
    assertReset(await get('127.0.0.3'), 'quarantined');
    const list = await lb.api('GET', '/quarantine', undefined, lb.tokens.read);
    assert.deepEqual(
      list.body.map((e: { cidr: string }) => e.cidr),
      ['127.0.0.3/32'],
    );
    await new Promise((r) => setTimeout(r, 700));
    assert.equal((await get('127.0.0.3')).status, 200, 'the entry expired');
    await lb.api('POST', '/quarantine', { cidr: '127.0.0.0/30' }, lb.tokens.operate);
    assertReset(await get('127.0.0.1'), 'quarantined prefix, no expiry');
    const gone = await lb.api(
      'DELETE',
      `/quarantine/${encodeURIComponent('127.0.0.0/30')}`,
      undefined,
      lb.tokens.operate,
    );
    assert.equal(gone.status, 200);
    assert.equal((await get('127.0.0.1')).status, 200);
    assert.equal(
      (await lb.api('DELETE', '/quarantine/127.0.0.77', undefined, lb.tokens.operate)).status,
      404,
    );
  });

  it('backend states: drain and maintenance take a backend out of rotation, ready puts it back', async () => {
    const spread = async () => {
      const names: string[] = [];
      for (let i = 0; i < 6; i++) names.push((await get('127.0.0.2')).body);
      return new Set(names);
    };
    assert.deepEqual(await spread(), new Set(['b1', 'b2']));
    const drain = await lb.api('PUT', '/pools/web/backends/b1/state', { state: 'drain' }, lb.tokens.operate);
    assert.equal(drain.status, 200);
    assert.deepEqual(drain.body, { pool: 'web', backend: 'b1', state: 'drain', persisted: true });
    assert.deepEqual(await spread(), new Set(['b2']));
    // By address works as well as by name.
    await lb.api('PUT', `/pools/web/backends/${encodeURIComponent(b2.address)}/state`, {
      state: 'maintenance',
    });
    await lb.api('PUT', '/pools/web/backends/b1/state', { state: 'ready' });
    assert.deepEqual(await spread(), new Set(['b1']));
    const status = await lb.api('GET', '/status', undefined, lb.tokens.read);
    const backends = status.body.pools[0].backends as { name: string; adminState: string; usable: boolean }[];
    assert.deepEqual(
      backends.map((b) => [b.name, b.adminState, b.usable]),
      [
        ['b1', 'ready', true],
        ['b2', 'maintenance', false],
      ],
    );
    // Every backend out: 503. A policy change (new snapshot) keeps the states.
    await lb.api('PUT', '/pools/web/backends/b1/state', { state: 'drain' });
    assert.equal((await get('127.0.0.2')).status, 503);
    await lb.api('PUT', '/segments/web/mode', { mode: 'enforce' });
    assert.equal((await get('127.0.0.2')).status, 503, 'states survive a snapshot swap');
    await lb.api('PUT', '/pools/web/backends/b1/state', { state: 'ready' });
    await lb.api('PUT', '/pools/web/backends/b2/state', { state: 'ready' });
    assert.deepEqual(await spread(), new Set(['b1', 'b2']));
    assert.equal((await lb.api('PUT', '/pools/web/backends/b9/state', { state: 'drain' })).status, 404);
    assert.equal((await lb.api('PUT', '/pools/nope/backends/b1/state', { state: 'drain' })).status, 404);
  });

  it('explain answers like the CLI, with the deciding rule position', async () => {
    const res = await lb.api('POST', '/explain', { segment: 'web', source: '127.0.0.2' }, lb.tokens.read);
    assert.equal(res.status, 200);
    assert.equal(res.body.verdict, 'allow');
    assert.equal(res.body.decidingRule.name, 'office');
    assert.match(res.body.decidingRule.where, /seglb\.yaml:\d+:\d+$/);
    const l7 = await lb.api('POST', '/explain', {
      segment: 'web',
      source: '127.0.3.4',
      method: 'POST',
      path: '/health',
    });
    assert.equal(l7.body.verdict, 'deny');
    assert.equal(l7.body.connection, 'l7');
  });

  it('records every change in the audit trail with actor and versions, readable via API and file', async () => {
    const res = await lb.api('GET', '/audit?limit=1000', undefined, lb.tokens.read);
    assert.equal(res.status, 200);
    const entries = res.body as AuditEntry[];
    const fromFile = readFileSync(lb.control.audit.file as string, 'utf8')
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l) as AuditEntry);
    assert.deepEqual(fromFile, entries, 'the file and the API hold the same trail');
    const actions = entries.map((e) => e.action);
    for (const a of [
      'add_rule',
      'remove_rule',
      'set_mode',
      'add_ipset_entries',
      'remove_ipset_entries',
      'policy_ops',
      'quarantine_add',
      'quarantine_remove',
      'backend_state',
    ]) {
      assert.ok(actions.includes(a), `audit has ${a}`);
    }
    for (const e of entries) {
      assert.match(e.time, /^\d{4}-\d\d-\d\dT/);
      assert.match(e.actor, /^token:(operate1|admin1)$/);
      assert.ok(e.newVersion >= e.oldVersion);
    }
    const modes = entries.filter((e) => e.action === 'set_mode');
    assert.equal(modes[0]?.actor, 'token:operate1');
    assert.equal(modes[0]?.newVersion, (modes[0]?.oldVersion ?? 0) + 1);
    assert.notEqual(modes[0]?.newHash, modes[0]?.oldHash);
    // Policy changes are numbered without gaps: each new version is the previous one + 1.
    const policy = entries.filter((e) => e.newVersion !== e.oldVersion);
    for (let i = 1; i < policy.length; i++)
      assert.equal(policy[i]?.oldVersion, policy[i - 1]?.newVersion, 'versions chain');
    // Refused changes are not in the trail.
    assert.ok(!JSON.stringify(entries).includes('typo'));
    const last = await lb.api('GET', '/audit?limit=2', undefined, lb.tokens.read);
    assert.deepEqual(last.body, entries.slice(-2));
    for (const bad of ['-2', '0', '1.5', 'many', '5000'])
      assert.equal((await lb.api('GET', `/audit?limit=${bad}`)).status, 400, `limit=${bad}`);
  });
});
