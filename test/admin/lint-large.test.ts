// Lint and the policy hash over large IP sets, which stay packed (src/net/packed-cidrs.ts): a rule
// over more than LINT_MAX_PREFIXES prefixes is reported as skipped with the right reason and never
// compared pairwise; the policy hash does not depend on the order of a set's file.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { LINT_MAX_PREFIXES, lintConfig } from '../../src/admin/impact.ts';
import { loadConfigText } from '../../src/config/index.ts';
import { policyHash } from '../../src/runtime.ts';

const dir = mkdtempSync(join(tmpdir(), 'seglb-lint-large-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** `n` distinct /24s in 100.64.0.0/10 and 198.18.0.0/15 (never loopback). */
function prefixes(n: number): string[] {
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(`100.${64 + ((i >> 8) & 63)}.${i & 255}.0/24`);
  return out;
}

function load(files: Record<string, string[]>, rules: string): ReturnType<typeof loadConfigText> {
  for (const [name, lines] of Object.entries(files)) writeFileSync(join(dir, name), `${lines.join('\n')}\n`);
  return loadConfigText(
    `ipsets:
${Object.keys(files)
  .map((f) => `  ${f.replace('.cidr', '')}: { file: ${f} }`)
  .join('\n')}
segments:
  web:
    vips: [{ listen: "127.0.0.1:0" }]
    pool: p
    backend_subnets: [127.0.0.0/8]
${rules}
pools:
  p: { backends: [{ address: "127.0.0.1:9" }] }
`,
    join(dir, 'seglb.yaml'),
  );
}

describe('lint with large IP sets', () => {
  const n = LINT_MAX_PREFIXES + 1000;

  it('a small allow beside a large deny is skipped because of the deny rules, and says so', () => {
    const loaded = load(
      { big: prefixes(n) },
      `    allow: [{ name: office, from: [127.0.0.0/29] }]
    deny: [{ name: countries, from: [big] }]`,
    );
    const found = lintConfig(loaded);
    assert.deepEqual(
      found.map((f) => [f.rule, f.kind, f.message]),
      [
        [
          'office',
          'skipped_large_rule',
          `not compared with the deny rules: they hold ${n} prefixes, more than ${LINT_MAX_PREFIXES}`,
        ],
      ],
    );
  });

  it('a large allow is skipped with its own count, and a too-wide prefix inside it is still found', () => {
    const loaded = load(
      { many: [...prefixes(n), '10.0.0.0/7'] },
      `    allow: [{ name: partners, from: [many] }]
    deny: [{ name: one, from: [127.0.0.9] }]`,
    );
    const found = lintConfig(loaded).map((f) => [f.rule, f.kind, f.message]);
    assert.deepEqual(found, [
      ['partners', 'allow_too_wide', 'allows 10.0.0.0/7, wider than /8'],
      ['partners', 'skipped_large_rule', `${n + 1} prefixes, more than ${LINT_MAX_PREFIXES}: not compared`],
    ]);
  });
});

describe('policy hash over packed IP sets', () => {
  const rules = `    allow: [{ name: lo, from: [127.0.0.0/8] }]
    deny: [{ name: countries, from: [big] }]`;
  const base = [...prefixes(3000), '2001:db8::/32', '2001:db8:1::/48', '2001:db8::/33', '192.0.2.0/24'];

  it('is the same for the same prefixes in another order, and changes with one prefix', () => {
    const a = policyHash(load({ big: base }, rules));
    const b = policyHash(load({ big: [...base].reverse() }, rules));
    const c = policyHash(load({ big: [...base.slice(1), '100.127.255.0/24'] }, rules));
    const d = policyHash(
      load({ big: base.map((p) => (p === '2001:db8::/33' ? '2001:db8:8000::/33' : p)) }, rules),
    );
    assert.equal(a, b);
    assert.notEqual(a, c);
    assert.notEqual(a, d);
    assert.match(a, /^[0-9a-f]{16}$/);
  });
});
