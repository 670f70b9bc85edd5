// Tests the segment policy compiler: the semantics table, nested prefixes across rules in both
// families, order independence against a brute-force oracle, per-rule counters and request verdicts.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { RuleConfig } from '../../src/config/types.ts';
import { type Cidr, cidrContains, parseCidr } from '../../src/net/index.ts';
import {
  type CompiledRule,
  compileSegmentPolicy,
  DEFAULT_DENY_RULE,
  type RequestAttributes,
  type SegmentPolicy,
  SourceSet,
  unmapCidr,
  VERDICT_ALLOW,
  VERDICT_DENY,
  VERDICT_L7,
} from '../../src/policy/index.ts';

function compile(
  rules: { allow?: RuleConfig[]; deny?: RuleConfig[] },
  mode: 'enforce' | 'audit' = 'enforce',
  ipsets: ReadonlyMap<string, readonly Cidr[]> = new Map(),
): SegmentPolicy {
  return compileSegmentPolicy('seg', { mode, allow: rules.allow ?? [], deny: rules.deny ?? [] }, ipsets);
}

function req(path: string, more: Partial<RequestAttributes> = {}): RequestAttributes {
  return { method: 'GET', path, host: 'example.com', headers: {}, ...more };
}

/** The deciding rule's name for a request from `source`, or 'default-deny'; prefixed by allow/deny. */
function judge(policy: SegmentPolicy, source: string, r: RequestAttributes): string {
  const v = policy.judgeRequest(policy.lookup(source), r);
  return `${v.allowed ? 'allow' : 'deny'}:${policy.ruleName(v.rule)}`;
}

function ruleId(policy: SegmentPolicy, name: string): number {
  const rule = policy.rules.find((r) => r.name === name);
  assert.ok(rule, `no rule ${name}`);
  return rule.id;
}

describe('compileSegmentPolicy: the semantics table', () => {
  test('hard deny: an unconditional deny beats every allow covering the source', () => {
    const p = compile({
      allow: [
        { name: 'all', from: ['10.0.0.0/8'] },
        { name: 'api', from: ['10.0.0.0/8'], paths: ['/api/*'] },
      ],
      deny: [{ name: 'bad', from: ['10.0.0.0/8'] }],
    });
    const rec = p.lookup('10.1.2.3');
    assert.equal(rec.verdict, VERDICT_DENY);
    assert.equal(p.ruleName(rec.rule), 'bad');
    assert.deepEqual(
      rec.matched.map((id) => p.ruleName(id)),
      ['bad', 'all', 'api'],
    );
    assert.equal(judge(p, '10.1.2.3', req('/api/x')), 'deny:bad');
  });

  test('hard allow: an unconditional allow and no L7 deny allows the connection', () => {
    const p = compile({ allow: [{ name: 'all', from: ['10.0.0.0/8'] }] });
    const rec = p.lookup('10.1.2.3');
    assert.equal(rec.verdict, VERDICT_ALLOW);
    assert.equal(p.ruleName(rec.rule), 'all');
    assert.equal(judge(p, '10.1.2.3', req('/anything')), 'allow:all');
  });

  test('L7 allow only: the connection is accepted and each request needs a matching allow', () => {
    const p = compile({ allow: [{ name: 'api', from: ['10.0.0.0/8'], paths: ['/api/*'] }] });
    const rec = p.lookup('10.1.2.3');
    assert.equal(rec.verdict, VERDICT_L7);
    assert.equal(judge(p, '10.1.2.3', req('/api/users')), 'allow:api');
    assert.equal(judge(p, '10.1.2.3', req('/other')), 'deny:default-deny');
  });

  test('L7 deny + hard allow: accepted; the L7 deny refuses its requests, the rest are allowed', () => {
    const p = compile({
      allow: [{ name: 'all', from: ['10.0.0.0/8'] }],
      deny: [{ name: 'no-admin', from: ['10.0.0.0/8'], paths: ['/admin*'] }],
    });
    assert.equal(p.lookup('10.1.2.3').verdict, VERDICT_L7);
    assert.equal(judge(p, '10.1.2.3', req('/admin/users')), 'deny:no-admin');
    assert.equal(judge(p, '10.1.2.3', req('/home')), 'allow:all');
  });

  test('L7 deny alone allows nothing: the connection is default-denied', () => {
    const p = compile({ deny: [{ name: 'no-admin', from: ['10.0.0.0/8'], paths: ['/admin'] }] });
    const rec = p.lookup('10.1.2.3');
    assert.equal(rec.verdict, VERDICT_DENY);
    assert.equal(rec.rule, DEFAULT_DENY_RULE);
    assert.deepEqual(rec.matched, [ruleId(p, 'no-admin')]);
  });

  test('nothing covers the source: default deny, no matched rules', () => {
    const p = compile({ allow: [{ from: ['10.0.0.0/8'] }] });
    for (const src of ['11.0.0.1', '2001:db8::1', 'not-an-ip', '']) {
      const rec = p.lookup(src);
      assert.equal(rec.verdict, VERDICT_DENY, src);
      assert.equal(rec.rule, DEFAULT_DENY_RULE);
      assert.deepEqual(rec.matched, []);
      assert.equal(p.ruleName(rec.rule), 'default-deny');
    }
    assert.equal(p.lookup('11.0.0.1'), p.defaultRecord);
  });

  test('an L7 deny is tested before the L7 allows (deny beats allow per request too)', () => {
    const p = compile({
      allow: [{ name: 'get', from: ['10.0.0.0/8'], methods: ['GET'] }],
      deny: [{ name: 'no-secret', from: ['10.0.0.0/8'], paths: ['/secret'] }],
    });
    assert.equal(judge(p, '10.0.0.1', req('/secret')), 'deny:no-secret');
    assert.equal(judge(p, '10.0.0.1', req('/public')), 'allow:get');
    assert.equal(judge(p, '10.0.0.1', req('/public', { method: 'POST' })), 'deny:default-deny');
  });

  test('default rule names are allow[N] / deny[N]', () => {
    const p = compile({
      allow: [{ from: ['10.0.0.0/8'] }, { from: ['10.1.0.0/16'] }],
      deny: [{ from: ['10.2.0.0/16'] }],
    });
    assert.deepEqual(
      p.rules.map((r) => r.name),
      ['deny[0]', 'allow[0]', 'allow[1]'],
    );
    assert.deepEqual(
      p.rules.map((r) => [r.kind, r.index]),
      [
        ['deny', 0],
        ['allow', 0],
        ['allow', 1],
      ],
    );
  });
});

describe('compileSegmentPolicy: nested prefixes across rules', () => {
  test('IPv4: /8 allow, /24 deny inside it, /32 allow inside the /24 — the /32 is still denied', () => {
    const p = compile({
      allow: [
        { name: 'net', from: ['10.0.0.0/8'] },
        { name: 'host', from: ['10.1.2.3'] },
      ],
      deny: [{ name: 'lab', from: ['10.1.2.0/24'] }],
    });
    const host = p.lookup('10.1.2.3');
    assert.equal(host.verdict, VERDICT_DENY);
    assert.equal(p.ruleName(host.rule), 'lab');
    assert.deepEqual(host.matched.map((id) => p.ruleName(id)).sort(), ['host', 'lab', 'net']);
    const lab = p.lookup('10.1.2.4');
    assert.equal(lab.verdict, VERDICT_DENY);
    assert.deepEqual(lab.matched.map((id) => p.ruleName(id)).sort(), ['lab', 'net']);
    // Either side of the /24, inside the /8.
    for (const src of ['10.1.1.255', '10.1.3.0', '10.0.0.0', '10.255.255.255']) {
      const rec = p.lookup(src);
      assert.equal(rec.verdict, VERDICT_ALLOW, src);
      assert.equal(p.ruleName(rec.rule), 'net');
    }
    assert.equal(p.lookup('11.0.0.0').verdict, VERDICT_DENY);
    assert.equal(p.lookup('9.255.255.255').verdict, VERDICT_DENY);
  });

  test('IPv6: /32 allow, /48 deny inside it, /128 allow inside the /48', () => {
    const p = compile({
      allow: [
        { name: 'net', from: ['2001:db8::/32'] },
        { name: 'host', from: ['2001:db8:1::1'] },
      ],
      deny: [{ name: 'lab', from: ['2001:db8:1::/48'] }],
    });
    assert.equal(p.ruleName(p.lookup('2001:db8:1::1').rule), 'lab');
    assert.equal(p.lookup('2001:db8:1::1').verdict, VERDICT_DENY);
    assert.equal(p.lookup('2001:db8:1:ffff::1').verdict, VERDICT_DENY);
    assert.equal(p.lookup('2001:db8:2::1').verdict, VERDICT_ALLOW);
    assert.equal(p.lookup('2001:db8::').verdict, VERDICT_ALLOW);
    assert.equal(p.lookup('2001:db9::1').verdict, VERDICT_DENY);
    // Any accepted IPv6 text form.
    assert.equal(p.lookup('2001:0DB8:0002:0000:0000:0000:0000:0001').verdict, VERDICT_ALLOW);
  });

  test('a more specific allow does not lift a wider hard deny; a wider allow does not lift a narrower deny', () => {
    const p = compile({
      allow: [{ name: 'inner', from: ['192.0.2.128/25'] }],
      deny: [{ name: 'outer', from: ['192.0.2.0/24'] }],
    });
    assert.equal(p.lookup('192.0.2.200').verdict, VERDICT_DENY);
    assert.equal(p.ruleName(p.lookup('192.0.2.200').rule), 'outer');
  });

  test('an L7 allow nested in a hard allow: the hard allow wins, requests need no L7 match', () => {
    const p = compile({
      allow: [
        { name: 'net', from: ['10.0.0.0/8'] },
        { name: 'api', from: ['10.1.0.0/16'], paths: ['/api/*'] },
      ],
    });
    assert.equal(p.lookup('10.1.0.1').verdict, VERDICT_ALLOW);
    assert.equal(p.ruleName(p.lookup('10.1.0.1').rule), 'net');
  });

  test('an L7 deny nested in a hard allow makes only the inner prefix L7', () => {
    const p = compile({
      allow: [{ name: 'net', from: ['10.0.0.0/8'] }],
      deny: [{ name: 'no-admin', from: ['10.9.0.0/16'], paths: ['/admin'] }],
    });
    assert.equal(p.lookup('10.1.0.1').verdict, VERDICT_ALLOW);
    assert.equal(p.lookup('10.9.0.1').verdict, VERDICT_L7);
    assert.equal(judge(p, '10.9.0.1', req('/admin')), 'deny:no-admin');
    assert.equal(judge(p, '10.9.0.1', req('/x')), 'allow:net');
  });
});

describe('compileSegmentPolicy: families, IP sets and any', () => {
  test('IPv4 rules never cover IPv6 sources and the other way round', () => {
    const p = compile({
      allow: [
        { name: 'v4', from: ['0.0.0.0/0'] },
        { name: 'v6', from: ['2001:db8::/32'] },
      ],
    });
    assert.equal(p.ruleName(p.lookup('203.0.113.9').rule), 'v4');
    assert.equal(p.ruleName(p.lookup('2001:db8::9').rule), 'v6');
    assert.equal(p.lookup('::1').verdict, VERDICT_DENY);
    // The policy expects normalised sources: an unnormalised IPv4-mapped address is an IPv6 source.
    assert.equal(p.lookup('::ffff:203.0.113.9').verdict, VERDICT_DENY);
  });

  test('IPv4-mapped IPv6 rule prefixes apply to the IPv4 sources they name (sources are unmapped)', () => {
    const p = compile({
      allow: [
        { name: 'net', from: ['::ffff:10.0.0.0/104'] },
        { name: 'v6', from: ['::/0'] },
      ],
      deny: [{ name: 'host', from: ['::ffff:10.1.2.3'] }],
    });
    assert.equal(p.ruleName(p.lookup('10.9.9.9').rule), 'net');
    assert.equal(p.ruleName(p.lookup('10.1.2.3').rule), 'host');
    assert.equal(p.lookup('10.1.2.3').verdict, VERDICT_DENY);
    // ::/0 is IPv6 only: it is wider than the mapped block, so it is not rewritten.
    assert.equal(p.lookup('192.0.2.1').verdict, VERDICT_DENY);
    assert.equal(p.ruleName(p.lookup('2001:db8::1').rule), 'v6');
  });

  test('SourceSet (trusted proxies, backend subnets) unmaps IPv4-mapped prefixes too', () => {
    const set = new SourceSet([parseCidr('::ffff:127.0.0.0/104'), parseCidr('::1/128')]);
    assert.equal(set.has('127.0.0.5'), true);
    assert.equal(set.has('::1'), true);
    assert.equal(set.has('10.0.0.1'), false);
    assert.equal(unmapCidr(parseCidr('::ffff:0:0/96')).text, '0.0.0.0/0');
    assert.equal(unmapCidr(parseCidr('::ffff:10.0.0.0/104')).text, '10.0.0.0/8');
    assert.equal(unmapCidr(parseCidr('::/64')).text, '::/64');
    assert.equal(unmapCidr(parseCidr('64:ff9b::/96')).text, '64:ff9b::/96');
  });

  test('any covers every source of both families', () => {
    const p = compile({ allow: [{ name: 'world', from: ['any'] }], deny: [{ from: ['::1'] }] });
    for (const src of ['0.0.0.0', '255.255.255.255', '127.0.0.1', '::', '2001:db8::1', 'ffff::1']) {
      assert.equal(p.lookup(src).verdict, VERDICT_ALLOW, src);
    }
    assert.equal(p.lookup('::1').verdict, VERDICT_DENY);
  });

  test('IP-set names expand to their prefixes; a rule may mix sets and CIDRs', () => {
    const ipsets = new Map([
      ['office', [parseCidr('192.0.2.0/24'), parseCidr('2001:db8:1::/48')]],
      ['empty', []],
    ]);
    const p = compile(
      {
        allow: [{ name: 'staff', from: ['office', '198.51.100.7', 'empty'] }],
        deny: [{ from: ['192.0.2.66'] }],
      },
      'enforce',
      ipsets,
    );
    assert.equal(p.lookup('192.0.2.1').verdict, VERDICT_ALLOW);
    assert.equal(p.lookup('2001:db8:1::5').verdict, VERDICT_ALLOW);
    assert.equal(p.lookup('198.51.100.7').verdict, VERDICT_ALLOW);
    assert.equal(p.lookup('198.51.100.8').verdict, VERDICT_DENY);
    assert.equal(p.lookup('192.0.2.66').verdict, VERDICT_DENY);
  });

  test('duplicate prefixes across rules are merged: the record holds both rules', () => {
    const p = compile({
      allow: [
        { name: 'a', from: ['10.0.0.0/8'] },
        { name: 'b', from: ['10.0.0.0/8'] },
      ],
    });
    assert.deepEqual(
      p.lookup('10.0.0.1').matched.map((id) => p.ruleName(id)),
      ['a', 'b'],
    );
    assert.equal(p.prefixCount, 1);
  });
});

// --- Order independence against a brute-force oracle -------------------------------------------

function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return (t ^ (t >>> 14)) >>> 0;
  };
}

function shuffle<T>(list: readonly T[], rand: () => number): T[] {
  const out = [...list];
  for (let i = out.length - 1; i > 0; i--) {
    const j = rand() % (i + 1);
    [out[i], out[j]] = [out[j] as T, out[i] as T];
  }
  return out;
}

/** A random prefix inside 10.0.0.0/16 (so rules overlap a lot). */
function randomPrefix(rand: () => number): string {
  const len = 16 + (rand() % 17);
  const addr = (0x0a000000 | (rand() & 0xffff)) >>> 0;
  const mask = len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0;
  const a = (addr & mask) >>> 0;
  return `${a >>> 24}.${(a >>> 16) & 255}.${(a >>> 8) & 255}.${a & 255}/${len}`;
}

const L7_CHOICES: Partial<RuleConfig>[] = [
  {},
  {},
  { paths: ['/api/*'] },
  { methods: ['POST'] },
  { paths: ['/admin'] },
];

/** The semantics table, stated literally over the rules covering the address. */
function oracle(
  rules: readonly (RuleConfig & { kind: 'allow' | 'deny' })[],
  source: string,
  r: RequestAttributes,
): boolean {
  const m = rules.filter((rule) => rule.from.some((f) => cidrContains(parseCidr(f), source)));
  const isL7 = (rule: RuleConfig) => !!(rule.paths || rule.methods || rule.hosts || rule.headers);
  const l7match = (rule: RuleConfig) =>
    (!rule.paths ||
      rule.paths.some((p) => (p.endsWith('*') ? r.path.startsWith(p.slice(0, -1)) : r.path === p))) &&
    (!rule.methods || rule.methods.includes(r.method));
  if (m.some((x) => x.kind === 'deny' && !isL7(x))) return false;
  if (!m.some((x) => x.kind === 'allow')) return false;
  if (m.some((x) => x.kind === 'deny' && isL7(x) && l7match(x))) return false;
  return m.some((x) => x.kind === 'allow' && (!isL7(x) || l7match(x)));
}

describe('compileSegmentPolicy: rules are order-independent', () => {
  test('random rule sets, shuffled: same verdicts, and the verdicts agree with the oracle', () => {
    const rand = prng(7);
    const requests = [req('/api/x'), req('/admin'), req('/other', { method: 'POST' }), req('/')];
    for (let round = 0; round < 40; round++) {
      const rules: (RuleConfig & { kind: 'allow' | 'deny' })[] = [];
      const n = 2 + (rand() % 10);
      for (let i = 0; i < n; i++) {
        const kind = rand() % 3 === 0 ? 'deny' : 'allow';
        const from = [randomPrefix(rand)];
        if (rand() % 4 === 0) from.push(randomPrefix(rand));
        rules.push({ kind, name: `r${i}`, from, ...L7_CHOICES[rand() % L7_CHOICES.length] });
      }
      const build = (list: typeof rules) =>
        compile({
          allow: list.filter((r) => r.kind === 'allow').map(({ kind: _k, ...r }) => r),
          deny: list.filter((r) => r.kind === 'deny').map(({ kind: _k, ...r }) => r),
        });
      const a = build(rules);
      const b = build(shuffle(rules, rand));
      const sources: string[] = [];
      for (const rule of rules) {
        const c = parseCidr(rule.from[0] as string);
        const base = c.family === 4 ? c.v4 : 0;
        for (const off of [0, 1, 255, 256, 65535]) {
          const x = (base + off) >>> 0;
          sources.push(`${x >>> 24}.${(x >>> 16) & 255}.${(x >>> 8) & 255}.${x & 255}`);
        }
      }
      sources.push('10.0.0.0', '10.0.255.255', '10.1.0.0', '9.255.255.255');
      for (const src of sources) {
        const ra = a.lookup(src);
        const rb = b.lookup(src);
        assert.equal(ra.verdict, rb.verdict, `round ${round} ${src}`);
        assert.deepEqual(
          ra.matched.map((id) => a.ruleName(id)).sort(),
          rb.matched.map((id) => b.ruleName(id)).sort(),
        );
        for (const r of requests) {
          const va = a.judgeRequest(ra, r).allowed;
          assert.equal(va, b.judgeRequest(rb, r).allowed, `round ${round} ${src} ${r.method} ${r.path}`);
          assert.equal(va, oracle(rules, src, r), `oracle round ${round} ${src} ${r.method} ${r.path}`);
        }
      }
    }
  });
});

describe('SegmentPolicy.judgeRequest', () => {
  test('ALLOW and DENY records give their deciding rule (a client behind a trusted proxy), no allocation', () => {
    const p = compile({
      allow: [{ name: 'all', from: ['10.0.0.0/8'] }],
      deny: [{ name: 'bad', from: ['10.6.0.0/16'] }],
    });
    const allowed = p.judgeRequest(p.lookup('10.0.0.1'), req('/'));
    assert.deepEqual(allowed, { allowed: true, rule: ruleId(p, 'all') });
    assert.equal(p.judgeRequest(p.lookup('10.0.0.2'), req('/x')), allowed, 'the same frozen object');
    assert.ok(Object.isFrozen(allowed));
    assert.deepEqual(p.judgeRequest(p.lookup('10.6.0.1'), req('/')), {
      allowed: false,
      rule: ruleId(p, 'bad'),
    });
    assert.deepEqual(p.judgeRequest(p.defaultRecord, req('/')), { allowed: false, rule: DEFAULT_DENY_RULE });
  });

  test('a target sent in another form must be allowed in both forms (no bypass through a non-normalising backend)', () => {
    const p = compile({
      allow: [{ name: 'public', from: ['10.0.0.0/8'], paths: ['/public/*'] }],
      deny: [{ name: 'no-admin', from: ['10.0.0.0/8'], paths: ['/admin', '/admin/*'] }],
    });
    const rec = p.lookup('10.0.0.1');
    const at = (raw: string, path: string) => {
      const v = p.judgeRequest(rec, req(path, { rawPath: raw }));
      return `${v.allowed ? 'allow' : 'deny'}:${p.ruleName(v.rule)}`;
    };
    // Normalises to an allowed path, but a backend that routes on the raw target sees /admin/...
    assert.equal(at('/admin/../public/x', '/public/x'), 'deny:no-admin');
    assert.equal(at('/x/../public/y', '/public/y'), 'deny:default-deny');
    // Normalises to a denied path: the normalised form decides.
    assert.equal(at('/public/../admin', '/admin'), 'deny:no-admin');
    // A query string alone is not another form.
    assert.equal(at('/public/x?a=../../admin', '/public/x'), 'allow:public');
    assert.equal(at('/public/./x', '/public/x'), 'allow:public');
    assert.equal(at('http://h/public/x', '/public/x'), 'allow:public');
  });

  test('judgeRequest on every record shape never throws and allocates a verdict only from the rule table', () => {
    const p = compile({
      allow: [{ name: 'h', from: ['10.0.0.0/8'], hosts: ['*.example.com'] }],
      deny: [{ name: 'hd', from: ['10.0.0.0/8'], headers: { 'x-debug': '1' } }],
    });
    const rec = p.lookup('10.0.0.1');
    const v1 = p.judgeRequest(rec, req('/', { host: 'a.example.com' }));
    const v2 = p.judgeRequest(rec, req('/z', { host: 'b.example.com' }));
    assert.equal(v1, v2);
    assert.equal(v1, (p.rules[ruleId(p, 'h')] as CompiledRule).verdict);
  });
});

describe('SegmentPolicy counters', () => {
  test('enforce: allowed and denied per rule, default denies separately', () => {
    const p = compile({
      allow: [{ name: 'a', from: ['10.0.0.0/8'] }],
      deny: [{ name: 'd', from: ['10.9.0.0/16'] }],
    });
    const a = ruleId(p, 'a');
    const d = ruleId(p, 'd');
    p.count(true, a);
    p.count(true, a);
    p.count(false, d);
    p.count(false, DEFAULT_DENY_RULE);
    p.count(false, DEFAULT_DENY_RULE);
    p.count(false, DEFAULT_DENY_RULE);
    p.count(true, DEFAULT_DENY_RULE); // nothing to count against
    assert.equal(p.allowed[a], 2);
    assert.equal(p.denied[d], 1);
    assert.equal(p.defaultDenied, 3);
    assert.deepEqual([...p.auditDenied], [0, 0]);
    assert.equal(p.defaultAuditDenied, 0);
  });

  test('audit: would-be denies are counted in auditDenied / defaultAuditDenied, never in denied', () => {
    const p = compile(
      { allow: [{ name: 'a', from: ['10.0.0.0/8'] }], deny: [{ name: 'd', from: ['10.9.0.0/16'] }] },
      'audit',
    );
    const d = ruleId(p, 'd');
    p.count(false, d);
    p.count(false, d);
    p.count(false, DEFAULT_DENY_RULE);
    assert.equal(p.auditDenied[d], 2);
    assert.equal(p.defaultAuditDenied, 1);
    assert.deepEqual([...p.denied], [0, 0]);
    assert.equal(p.defaultDenied, 0);
    assert.equal(p.mode, 'audit');
  });

  test('two compiled policies keep separate counters (no hidden globals)', () => {
    const rules = { allow: [{ name: 'a', from: ['10.0.0.0/8'] }] };
    const p1 = compile(rules);
    const p2 = compile(rules);
    p1.count(true, 0);
    assert.equal(p1.allowed[0], 1);
    assert.equal(p2.allowed[0], 0);
  });
});
