// Tests explainVerdict: the outcome, the deciding rule with its position, every matched rule,
// quarantine first, audit mode, L7 connections with and without a request, IPv4-mapped sources.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { SegmentConfig } from '../../src/config/types.ts';
import {
  compileSegmentPolicy,
  explainVerdict,
  Quarantine,
  type SegmentPolicy,
} from '../../src/policy/index.ts';

const where = (kind: 'allow' | 'deny', index: number) =>
  `seglb.yaml:${kind === 'allow' ? 10 + index : 20 + index}:7`;

function policy(mode: 'enforce' | 'audit' = 'enforce'): SegmentPolicy {
  const seg: Pick<SegmentConfig, 'mode' | 'allow' | 'deny'> = {
    mode,
    allow: [
      { name: 'net', from: ['10.0.0.0/8'] },
      { name: 'host', from: ['10.1.2.3'] },
      { name: 'api', from: ['192.0.2.0/24'], paths: ['/api/*'], methods: ['GET'] },
      { name: 'v6', from: ['2001:db8::/32'] },
    ],
    deny: [
      { name: 'lab', from: ['10.1.2.0/24'] },
      { name: 'no-admin', from: ['2001:db8:1::/48'], paths: ['/admin'] },
    ],
  };
  return compileSegmentPolicy('web', seg, new Map());
}

describe('explainVerdict', () => {
  test('reports the deciding rule (with file:line:col) and every matched rule', () => {
    const e = explainVerdict(policy(), '10.1.2.3', undefined, where);
    assert.equal(e.segment, 'web');
    assert.equal(e.source, '10.1.2.3');
    assert.equal(e.verdict, 'deny');
    assert.equal(e.enforced, true);
    assert.equal(e.connection, 'deny');
    assert.deepEqual(e.decidingRule, { name: 'lab', kind: 'deny', where: 'seglb.yaml:20:7', l7: false });
    assert.deepEqual(e.matchedRules.map((r) => `${r.kind}:${r.name}@${r.where}`).sort(), [
      'allow:host@seglb.yaml:11:7',
      'allow:net@seglb.yaml:10:7',
      'deny:lab@seglb.yaml:20:7',
    ]);
    assert.match(e.reason, /deny rule/);
  });

  test('allow: the deciding allow rule', () => {
    const e = explainVerdict(policy(), '10.9.9.9', undefined, where);
    assert.equal(e.verdict, 'allow');
    assert.equal(e.connection, 'allow');
    assert.equal(e.decidingRule?.name, 'net');
    assert.deepEqual(
      e.matchedRules.map((r) => r.name),
      ['net'],
    );
  });

  test('default deny: no deciding rule, no matched rules', () => {
    const e = explainVerdict(policy(), '203.0.113.1', undefined, where);
    assert.equal(e.verdict, 'deny');
    assert.equal(e.decidingRule, null);
    assert.deepEqual(e.matchedRules, []);
    assert.match(e.reason, /default deny/);
  });

  test('IPv4-mapped IPv6 text is normalised before judging', () => {
    const e = explainVerdict(policy(), '::ffff:10.9.9.9', undefined, where);
    assert.equal(e.source, '10.9.9.9');
    assert.equal(e.verdict, 'allow');
  });

  test('L7 connection with a request: the request decides', () => {
    const p = policy();
    const ok = explainVerdict(p, '192.0.2.5', { method: 'get', path: '/api/x?y=1' }, where);
    assert.equal(ok.connection, 'l7');
    assert.equal(ok.verdict, 'allow');
    assert.equal(ok.decidingRule?.name, 'api');
    assert.equal(ok.decidingRule?.l7, true);
    const post = explainVerdict(p, '192.0.2.5', { method: 'POST', path: '/api/x' }, where);
    assert.equal(post.verdict, 'deny');
    assert.equal(post.decidingRule, null);
    assert.match(post.reason, /default deny/);
    const denied = explainVerdict(p, '2001:db8:1::9', { path: '/x/../admin' }, where);
    assert.equal(denied.verdict, 'deny');
    assert.equal(denied.decidingRule?.name, 'no-admin');
    assert.match(denied.reason, /deny rule matches/);
    const other = explainVerdict(p, '2001:db8:1::9', { path: '/home' }, where);
    assert.equal(other.verdict, 'allow');
    assert.equal(other.decidingRule?.name, 'v6');
  });

  test('L7 connection with a request: a target in another form must be allowed in both forms', () => {
    const e = explainVerdict(policy(), '192.0.2.5', { method: 'GET', path: '/admin/../api/x' }, where);
    assert.equal(e.verdict, 'deny');
  });

  test('L7 connection without a request: reported as l7, not allowed outright', () => {
    const e = explainVerdict(policy(), '192.0.2.5', undefined, where);
    assert.equal(e.connection, 'l7');
    assert.equal(e.verdict, 'deny');
    assert.match(e.reason, /each request is judged/);
  });

  test('audit mode: a deny is reported as not enforced', () => {
    const e = explainVerdict(policy('audit'), '10.1.2.3', undefined, where);
    assert.equal(e.mode, 'audit');
    assert.equal(e.verdict, 'deny');
    assert.equal(e.enforced, false);
    const allowed = explainVerdict(policy('audit'), '10.9.9.9', undefined, where);
    assert.equal(allowed.enforced, true);
  });

  test('quarantine comes first and names its reason and prefix', () => {
    const q = new Quarantine();
    q.add('10.9.0.0/16', 60_000, 'scanner');
    const e = explainVerdict(policy(), '10.9.9.9', undefined, where, q);
    assert.equal(e.verdict, 'deny');
    assert.equal(e.enforced, true);
    assert.equal(e.decidingRule, null);
    assert.match(e.reason, /quarantined \(10\.9\.0\.0\/16\): scanner/);
    assert.deepEqual(
      e.matchedRules.map((r) => r.name),
      ['net'],
    );
    // Quarantine is enforced even in audit mode.
    assert.equal(explainVerdict(policy('audit'), '10.9.9.9', undefined, where, q).enforced, true);
  });
});
