// Impact before commit: simulate replays the sources seglb has seen (generated here from known
// 127.x sources) against a candidate policy and must name exactly the sources and connection counts
// that would flip; lint must find the too-wide, shadowed, redundant and ineffective rules of a
// prepared config, and nothing else.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { LintFinding, SegmentImpact } from '../../src/admin/index.ts';
import { httpRequest, startBackend, type TestBackend } from '../support/net.ts';
import { startSeglbAdmin, type TestSeglbAdmin } from '../support/seglb.ts';

/** Connections to make before simulating: [segment, source, count]. */
const TRAFFIC: [string, string, number][] = [
  ['web', '127.0.0.1', 3],
  ['web', '127.0.0.2', 1],
  ['web', '127.0.2.10', 2],
  ['web', '127.0.2.20', 1],
  ['web', '127.0.0.5', 1], // denied by name
  ['web', '127.0.9.9', 2], // denied by default
  ['web', '127.0.3.3', 2], // L7 rule only: accepted, judged per request
  ['api', '127.0.0.1', 1],
];

describe('admin API: simulate and lint', { timeout: 60_000 }, () => {
  let lb: TestSeglbAdmin;
  let backend: TestBackend;

  before(async () => {
    backend = await startBackend('be', '127.0.0.1');
    lb = await startSeglbAdmin(`
ipsets:
  office: { cidrs: [127.0.0.0/29] }
  partners: { cidrs: [127.0.2.0/24] }
segments:
  web:
    vips: [{ listen: "127.0.0.1:0" }]
    pool: p
    backend_subnets: [127.0.0.0/8]
    allow:
      - { name: office, from: [office] }
      - { name: partners, from: [partners] }
      - { name: health, from: [127.0.3.0/24], methods: [GET], paths: [/health] }
    deny:
      - { name: blocked, from: [127.0.0.5] }
  api:
    vips: [{ listen: "127.0.0.1:0" }]
    pool: p
    backend_subnets: [127.0.0.0/8]
    allow:
      - { name: office, from: [office] }
pools:
  p:
    backends: [{ address: "${backend.address}" }]
`);
    for (const [segment, from, n] of TRAFFIC) {
      for (let i = 0; i < n; i++)
        await httpRequest({ port: lb.port(segment), localAddress: from, path: '/health' });
    }
  });
  after(async () => {
    await lb.stop();
    await backend.close();
  });

  const simulate = async (ops: unknown[], windowMs?: number) => {
    const res = await lb.api('POST', '/simulate', { ops, window_ms: windowMs }, lb.tokens.read);
    assert.equal(res.status, 200, JSON.stringify(res.body));
    const impact = res.body.impact as SegmentImpact[];
    const of = (segment: string) => {
      const s = impact.find((x) => x.segment === segment);
      assert.ok(s, segment);
      return s;
    };
    return { body: res.body, web: of('web'), api: of('api') };
  };
  const sources = (xs: readonly { source: string; connections: number }[]) =>
    Object.fromEntries(xs.map((x) => [x.source, x.connections]));

  it('replays every seen source: removing a rule newly denies exactly its sources', async () => {
    const version = lb.runtime.snapshot.version;
    const { web, api } = await simulate([
      { op: 'remove_rule', segment: 'web', kind: 'allow', name: 'partners' },
    ]);
    assert.equal(web.sourcesReplayed, 7);
    assert.deepEqual(sources(web.newlyDenied), { '127.0.2.10': 2, '127.0.2.20': 1 });
    assert.equal(web.connectionsNewlyDenied, 3);
    assert.deepEqual(web.newlyAllowed, []);
    assert.equal(api.sourcesReplayed, 1);
    assert.deepEqual(api.newlyDenied, []);
    assert.equal(lb.runtime.snapshot.version, version, 'a simulation changes nothing');
    assert.equal(lb.control.ops.length, 0);
  });

  it('counts newly allowed and newly denied sources of a mixed change', async () => {
    const { web } = await simulate([
      { op: 'add_rule', segment: 'web', kind: 'allow', rule: { name: 'nines', from: ['127.0.9.0/24'] } },
      { op: 'add_rule', segment: 'web', kind: 'deny', rule: { name: 'two', from: ['127.0.0.2'] } },
      { op: 'remove_ipset_entries', ipset: 'office', cidrs: ['127.0.0.0/29'] },
      { op: 'add_ipset_entries', ipset: 'office', cidrs: ['127.0.0.0/30'] },
    ]);
    assert.deepEqual(sources(web.newlyAllowed), { '127.0.9.9': 2 });
    assert.deepEqual(sources(web.newlyDenied), { '127.0.0.2': 1 });
    assert.equal(web.connectionsNewlyAllowed, 2);
    assert.equal(web.connectionsNewlyDenied, 1);
  });

  it('audit mode lets every denied source through; L7-judged sources count as allowed at accept', async () => {
    const { web } = await simulate([{ op: 'set_mode', segment: 'web', mode: 'audit' }]);
    assert.deepEqual(sources(web.newlyAllowed), { '127.0.0.5': 1, '127.0.9.9': 2 });
    assert.deepEqual(web.newlyDenied, []);
    const l7 = await simulate([{ op: 'remove_rule', segment: 'web', kind: 'allow', name: 'health' }]);
    assert.deepEqual(sources(l7.web.newlyDenied), { '127.0.3.3': 2 });
  });

  it('replays only the window asked for', async () => {
    await new Promise((r) => setTimeout(r, 250));
    await httpRequest({ port: lb.port('web'), localAddress: '127.0.2.30' });
    const { web } = await simulate(
      [{ op: 'remove_rule', segment: 'web', kind: 'allow', name: 'partners' }],
      200,
    );
    assert.equal(web.sourcesReplayed, 1);
    assert.deepEqual(sources(web.newlyDenied), { '127.0.2.30': 1 });
  });

  it('refuses an invalid candidate with positioned issues (422) and a bad window (400)', async () => {
    const bad = await lb.api('POST', '/simulate', {
      ops: [{ op: 'add_rule', segment: 'web', kind: 'allow', rule: { name: 'x', from: ['127.0.9.1/24'] } }],
    });
    assert.equal(bad.status, 422);
    assert.equal(bad.body.error.issues[0].keyPath, 'segments.web.allow[3].from[0]');
    const win = await lb.api('POST', '/simulate', {
      ops: [{ op: 'set_mode', segment: 'web', mode: 'audit' }],
      window_ms: -1,
    });
    assert.equal(win.status, 400);
  });

  it('lint finds too-wide, shadowed, redundant and ineffective rules, and nothing else', async () => {
    const clean = await lb.api('GET', '/lint', undefined, lb.tokens.read);
    assert.deepEqual(clean.body, [], 'the running config is clean');
    const { body } = await simulate([
      { op: 'add_rule', segment: 'web', kind: 'allow', rule: { name: 'wide', from: ['10.0.0.0/7'] } },
      { op: 'add_rule', segment: 'web', kind: 'allow', rule: { name: 'wide6', from: ['2001:db8::/31'] } },
      { op: 'add_rule', segment: 'web', kind: 'allow', rule: { name: 'shadowed', from: ['127.0.5.0/24'] } },
      { op: 'add_rule', segment: 'web', kind: 'deny', rule: { name: 'block-4-5', from: ['127.0.4.0/23'] } },
      { op: 'add_rule', segment: 'web', kind: 'allow', rule: { name: 'narrow', from: ['127.0.0.0/30'] } },
      { op: 'add_rule', segment: 'web', kind: 'allow', rule: { name: 'twin-a', from: ['127.0.7.0/24'] } },
      { op: 'add_rule', segment: 'web', kind: 'allow', rule: { name: 'twin-b', from: ['127.0.7.0/24'] } },
      { op: 'add_rule', segment: 'web', kind: 'deny', rule: { name: 'stray', from: ['127.0.99.0/24'] } },
      { op: 'add_rule', segment: 'api', kind: 'allow', rule: { name: 'everyone', from: ['any'] } },
    ]);
    const found = (body.lint as LintFinding[]).map((f) => `${f.segment}/${f.rule}: ${f.kind}`).sort();
    assert.deepEqual(found, [
      'api/everyone: allow_too_wide',
      'api/office: redundant_allow',
      'web/narrow: redundant_allow',
      'web/shadowed: shadowed_by_deny',
      'web/stray: deny_without_effect',
      'web/twin-b: redundant_allow',
      'web/wide6: allow_too_wide',
      'web/wide: allow_too_wide',
    ]);
  });
});
