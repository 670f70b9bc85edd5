// Runtime changes and restarts: rules, IP-set entries, quarantine and backend states made through
// the API are in force again after a restart with the same state file; GET /diff shows them; an
// operation that no longer applies to a changed file is dropped and reported as drift (API, audit
// trail, log), never silently; an unwritable state file is reported in /status while seglb keeps
// serving, and an unreadable one is kept aside instead of being overwritten.

import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { AuditEntry, RuntimeState } from '../../src/admin/index.ts';
import { type ClientResult, httpRequest, startBackend, type TestBackend } from '../support/net.ts';
import { startSeglbAdmin, type TestSeglbAdmin, tempDir } from '../support/seglb.ts';

function assertReset(r: ClientResult, what: string): void {
  assert.equal(r.status, 0, `${what}: expected a reset, got HTTP ${r.status}`);
}

/** The config of these tests; `withPartners: false` is the changed file (an IP set and a rule gone). */
function config(b1: TestBackend, b2: TestBackend, withPartners = true): string {
  return `
ipsets:
  office: { cidrs: [127.0.0.0/29] }
${withPartners ? '  partners: { cidrs: [127.0.2.0/24] }\n' : ''}segments:
  web:
    vips: [{ listen: "127.0.0.1:0" }]
    pool: web
    backend_subnets: [127.0.0.0/8]
    allow:
      - { name: office, from: [office] }
${withPartners ? '      - { name: partners, from: [partners] }\n' : ''}pools:
  web:
    backends:
      - { address: "${b1.address}", name: b1 }
      - { address: "${b2.address}", name: b2 }
`;
}

describe('admin API: runtime changes survive a restart; drift is reported', { timeout: 60_000 }, () => {
  let b1: TestBackend;
  let b2: TestBackend;
  const dir = tempDir();
  let lb: TestSeglbAdmin | undefined;

  /** Starts seglb in `d`, stopping the previous one first (also when an earlier test failed). */
  const start = async (yaml: string, d: string, adminYaml?: string) => {
    await lb?.stop();
    lb = undefined;
    lb = await startSeglbAdmin(yaml, d, adminYaml);
    return lb;
  };
  const get = (from: string) => httpRequest({ port: (lb as TestSeglbAdmin).port('web'), localAddress: from });
  const servedBy = async (from: string, n = 6) => {
    const seen = new Set<string>();
    for (let i = 0; i < n; i++) seen.add((await get(from)).body);
    return seen;
  };

  before(async () => {
    b1 = await startBackend('b1', '127.0.0.1');
    b2 = await startBackend('b2', '127.0.0.1');
  });
  after(async () => {
    await lb?.stop();
    await b1.close();
    await b2.close();
  });

  it('makes runtime changes of every kind', async () => {
    lb = await start(config(b1, b2), dir);
    const ok = (r: { status: number; body: unknown }) => assert.equal(r.status, 200, JSON.stringify(r.body));
    ok(
      await lb.api('POST', '/segments/web/rules', {
        kind: 'allow',
        rule: { name: 'ops', from: ['127.0.40.0/24'] },
      }),
    );
    ok(await lb.api('POST', '/ipsets/partners/entries', { cidrs: ['127.0.41.0/24'] }));
    ok(await lb.api('PUT', '/segments/web/mode', { mode: 'enforce' }));
    ok(await lb.api('POST', '/quarantine', { cidr: '127.0.0.6', reason: 'incident 42', ttl_ms: 3_600_000 }));
    ok(await lb.api('POST', '/quarantine', { cidr: '127.0.0.5', ttl_ms: 300 }));
    ok(await lb.api('PUT', '/pools/web/backends/b2/state', { state: 'maintenance' }));
    assert.equal((await get('127.0.40.1')).status, 200);
    assert.deepEqual(await servedBy('127.0.0.1'), new Set(['b1']));
    const state = JSON.parse(readFileSync(join(dir, 'seglb.state.json'), 'utf8')) as RuntimeState;
    assert.equal(state.policy_ops.length, 3);
    assert.deepEqual(
      state.quarantine.map((q) => q.cidr),
      ['127.0.0.6/32', '127.0.0.5/32'],
    );
    assert.deepEqual(state.backend_states, [['web', b2.address, 'maintenance']]);
    await lb.stop();
    lb = undefined;
  });

  it('has them all in force after a restart with the same state file, and /diff lists them', async () => {
    await new Promise((r) => setTimeout(r, 350)); // the 300 ms quarantine entry expires meanwhile
    lb = await start(config(b1, b2), dir);
    assert.equal((await get('127.0.40.1')).status, 200, 'API rule');
    assert.equal((await get('127.0.41.7')).status, 200, 'API IP-set entry');
    assertReset(await get('127.0.0.6'), 'quarantine restored');
    assert.equal((await get('127.0.0.5')).status, 200, 'an entry that expired while stopped is gone');
    assert.deepEqual(await servedBy('127.0.0.1'), new Set(['b1']), 'b2 still in maintenance');
    const q = await lb.api('GET', '/quarantine', undefined, lb.tokens.read);
    assert.deepEqual(
      q.body.map((e: { cidr: string; reason: string }) => [e.cidr, e.reason]),
      [['127.0.0.6/32', 'incident 42']],
    );
    const diff = await lb.api('GET', '/diff', undefined, lb.tokens.read);
    assert.equal(diff.status, 200);
    assert.equal(diff.body.file, lb.file);
    assert.equal(diff.body.persistedTo, join(dir, 'seglb.state.json'));
    assert.deepEqual(
      diff.body.runtimeOps.map((o: { op: string }) => o.op),
      ['add_rule', 'add_ipset_entries', 'set_mode'],
    );
    assert.deepEqual(diff.body.drift, []);
    assert.match(diff.body.effective, /name: ops/);
    assert.match(diff.body.effective, /127\.0\.41\.0\/24/);
    const status = await lb.api('GET', '/status', undefined, lb.tokens.read);
    assert.equal(status.body.policy.runtimeOps, 3);
    assert.equal(status.body.policy.drift, 0);
    // The audit trail was read back from its file.
    const audit = await lb.api('GET', '/audit', undefined, lb.tokens.read);
    assert.deepEqual(
      (audit.body as AuditEntry[]).map((e) => e.action),
      ['add_rule', 'add_ipset_entries', 'set_mode', 'quarantine_add', 'quarantine_add', 'backend_state'],
    );
    await lb.stop();
    lb = undefined;
  });

  it('reports an operation that no longer applies to the changed file as drift', async () => {
    // The file loses the IP set "partners" (and the rule using it): the saved entry op cannot apply.
    lb = await start(config(b1, b2, false), dir);
    assert.equal((await get('127.0.40.1')).status, 200, 'the other ops still apply');
    assertReset(await get('127.0.41.7'), 'the drifted op is not in force');
    const diff = await lb.api('GET', '/diff', undefined, lb.tokens.read);
    assert.deepEqual(
      diff.body.runtimeOps.map((o: { op: string }) => o.op),
      ['add_rule', 'set_mode'],
    );
    assert.equal(diff.body.drift.length, 1);
    assert.deepEqual(diff.body.drift[0].op, {
      op: 'add_ipset_entries',
      ipset: 'partners',
      cidrs: ['127.0.41.0/24'],
    });
    assert.match(diff.body.drift[0].error, /IP set partners does not exist/);
    const status = await lb.api('GET', '/status', undefined, lb.tokens.read);
    assert.equal(status.body.policy.drift, 1);
    const last = (await lb.api('GET', '/audit?limit=1', undefined, lb.tokens.read)).body[0] as AuditEntry;
    assert.equal(last.actor, 'startup');
    assert.equal(last.action, 'drift');
    // The state file now holds only the ops in force (the drifted one is in the audit trail).
    const state = JSON.parse(readFileSync(join(dir, 'seglb.state.json'), 'utf8')) as RuntimeState;
    assert.equal(state.policy_ops.length, 2);
    await lb.stop();
    lb = undefined;
  });

  it('POST /reload reports drift when the file changes under a runtime op', async () => {
    lb = await start(config(b1, b2), dir);
    const added = await lb.api('POST', '/segments/web/rules', {
      kind: 'deny',
      rule: { name: 'temp-block', from: ['127.0.0.4'] },
    });
    assert.equal(added.status, 200);
    assertReset(await get('127.0.0.4'), 'denied by the API rule');
    // Someone writes a rule of the same name into the file: the API op cannot be applied again.
    writeFileSync(
      lb.file,
      readFileSync(lb.file, 'utf8').replace(
        '      - { name: office, from: [office] }\n',
        '      - { name: office, from: [office] }\n    deny:\n      - { name: temp-block, from: [127.0.0.3] }\n',
      ),
    );
    const res = await lb.api('POST', '/reload');
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal(res.body.drift.length >= 1, true);
    const d = (res.body.drift as { op: { op: string; rule?: { name: string } }; error: string }[]).find(
      (x) => x.op.rule?.name === 'temp-block',
    );
    assert.ok(d, 'the shadowed op is reported');
    assert.match(d.error, /already has a deny rule named "temp-block"/);
    assert.equal((await get('127.0.0.4')).status, 200, 'the file now decides');
    assertReset(await get('127.0.0.3'), "the file's rule is in force");
    await lb.stop();
    lb = undefined;
  });

  it('keeps serving when the state file cannot be written, and says so in /status', async () => {
    const d = tempDir();
    writeFileSync(join(d, 'blocker'), 'a file where a directory should be\n');
    lb = await start(
      config(b1, b2),
      d,
      'admin:\n  listen: "127.0.0.1:0"\n  tokens_file: tokens.txt\n  state_file: blocker/state.json\n  audit_file: blocker/audit.jsonl\n',
    );
    const res = await lb.api('POST', '/segments/web/rules', {
      kind: 'allow',
      rule: { name: 'ops', from: ['127.0.40.0/24'] },
    });
    assert.equal(res.status, 200, 'the change is applied');
    assert.equal(res.body.persisted, false, 'and the caller is told it is not persisted');
    assert.equal((await get('127.0.40.1')).status, 200, 'and live');
    const status = await lb.api('GET', '/status', undefined, lb.tokens.read);
    assert.match(status.body.state.writeError, /^ENOTDIR: /);
    assert.equal(status.body.state.file, join(d, 'blocker/state.json'));
    assert.ok(status.body.state.auditWriteFailures >= 1);
    const q = await lb.api('POST', '/quarantine', { cidr: '127.0.0.6' }, lb.tokens.operate);
    assert.equal(q.status, 200);
    assert.equal(q.body.persisted, false);
    // The trail is still readable from memory.
    const audit = await lb.api('GET', '/audit', undefined, lb.tokens.read);
    assert.deepEqual(
      audit.body.map((e: AuditEntry) => e.action),
      ['add_rule', 'quarantine_add'],
    );
    // Once the disk is fixed, the next change writes everything and the error clears.
    rmSync(join(d, 'blocker'));
    mkdirSync(join(d, 'blocker'));
    const fixed = await lb.api('PUT', '/pools/web/backends/b1/state', { state: 'ready' });
    assert.equal(fixed.body.persisted, true);
    const after = await lb.api('GET', '/status', undefined, lb.tokens.read);
    assert.equal(after.body.state.writeError, null);
    const saved = JSON.parse(readFileSync(join(d, 'blocker/state.json'), 'utf8')) as RuntimeState;
    assert.equal(saved.policy_ops.length, 1, 'the earlier change is persisted with the next one');
    assert.equal(saved.quarantine.length, 1);
    await lb.stop();
    lb = undefined;
  });

  it('keeps an unreadable state file aside instead of overwriting it', async () => {
    const d = tempDir();
    writeFileSync(join(d, 'seglb.state.json'), '{ "policy_ops": [ truncated');
    lb = await start(config(b1, b2), d);
    assert.equal((await get('127.0.0.1')).status, 200, 'starts from the file alone');
    await lb.api('PUT', '/segments/web/mode', { mode: 'enforce' });
    const aside = readdirSync(d).filter((f) => f.startsWith('seglb.state.json.unreadable-'));
    assert.equal(aside.length, 1);
    assert.equal(readFileSync(join(d, aside[0] as string), 'utf8'), '{ "policy_ops": [ truncated');
    assert.ok(existsSync(join(d, 'seglb.state.json')));
    await lb.stop();
    lb = undefined;
  });
});
