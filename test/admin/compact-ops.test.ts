// compactOps: an operation log collapses to its net effect, and applying the compacted log gives
// exactly the same configuration as applying the whole history.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parse } from 'yaml';
import { applyPolicyOps, compactOps, type PolicyOp } from '../../src/admin/ops.ts';

const FILE = `
ipsets:
  office: { cidrs: [10.0.0.0/8] }
segments:
  web:
    mode: enforce
    allow: [{ name: office, from: [office] }]
`;

test('add then remove of the same rule leaves nothing; a file rule removal stays', () => {
  const ops: PolicyOp[] = [
    { op: 'add_rule', segment: 'web', kind: 'deny', rule: { name: 'tmp', from: ['192.0.2.1'] } },
    { op: 'remove_rule', segment: 'web', kind: 'deny', name: 'tmp' },
    { op: 'remove_rule', segment: 'web', kind: 'allow', name: 'office' },
  ];
  assert.deepEqual(compactOps(ops), [ops[2]]);
  // Same configuration (an emptied `deny: []` and no `deny` mean the same: the schema default is []).
  const norm = (text: string) => {
    const web = (parse(text) as { segments: { web: Record<string, unknown> } }).segments.web;
    if (Array.isArray(web.deny) && web.deny.length === 0) delete web.deny;
    return web;
  };
  assert.deepEqual(norm(applyPolicyOps(FILE, compactOps(ops))), norm(applyPolicyOps(FILE, ops)));
});

test('only the last mode per segment is kept', () => {
  const ops: PolicyOp[] = [
    { op: 'set_mode', segment: 'web', mode: 'audit' },
    { op: 'set_mode', segment: 'web', mode: 'enforce' },
    { op: 'set_mode', segment: 'web', mode: 'audit' },
  ];
  assert.deepEqual(compactOps(ops), [ops[2]]);
});

test('30,000 IP-set entries added and removed again compact to nothing', () => {
  const cidrs = Array.from({ length: 30_000 }, (_, i) => `10.${(i >> 8) & 255}.${i & 255}.0/24`);
  const ops: PolicyOp[] = [
    { op: 'add_ipset_entries', ipset: 'office', cidrs },
    { op: 'remove_ipset_entries', ipset: 'office', cidrs },
  ];
  assert.deepEqual(compactOps(ops), []);
});

test('random histories of IP-set edits apply the same compacted or not', () => {
  let seed = 7;
  const rnd = (n: number) => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  const pool = ['192.0.2.0/24', '198.51.100.0/24', '203.0.113.0/24', '10.0.0.0/8'];
  for (let round = 0; round < 200; round++) {
    const ops: PolicyOp[] = [];
    // Track what the set holds so every removal is valid (apply refuses removing absent entries).
    const held = new Set(['10.0.0.0/8']);
    for (let k = 0; k < 8; k++) {
      const c = pool[rnd(pool.length)] as string;
      if (held.has(c) && rnd(2) === 0) {
        ops.push({ op: 'remove_ipset_entries', ipset: 'office', cidrs: [c] });
        held.delete(c);
      } else if (!held.has(c)) {
        ops.push({ op: 'add_ipset_entries', ipset: 'office', cidrs: [c] });
        held.add(c);
      }
    }
    const full = applyPolicyOps(FILE, ops);
    const compact = applyPolicyOps(FILE, compactOps(ops));
    const setOf = (text: string) =>
      new Set(
        /cidrs: \[([^\]]*)\]/
          .exec(text)?.[1]
          ?.split(',')
          .map((x) => x.trim())
          .filter(Boolean),
      );
    assert.deepEqual(setOf(compact), setOf(full), JSON.stringify(ops));
  }
});
