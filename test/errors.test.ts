// Keeps the error-code registry (src/errors.ts), its documentation (docs/errors.md) and the codes
// used in src/ in step, as fastify's test/internals/errors.test.js does for its error list.

import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import {
  ConfigError,
  ERROR_CODES,
  formatConfigIssue,
  ListenerError,
  NetError,
  PolicyError,
  PoolError,
  RETIRED_CODES,
  SeglbError,
} from '../src/errors.ts';

const ROOT = join(import.meta.dirname, '..');
const DOC = readFileSync(join(ROOT, 'docs/errors.md'), 'utf8');
const CODES = Object.keys(ERROR_CODES);

/** The codes documented under a `## title` section, one `### CODE` heading each. */
function documented(title: string): string[] {
  const start = DOC.indexOf(`\n## ${title}\n`);
  assert.ok(start >= 0, `docs/errors.md has no "## ${title}" section`);
  const end = DOC.indexOf('\n## ', start + 1);
  const section = DOC.slice(start, end < 0 ? undefined : end);
  return [...section.matchAll(/^### (\S+)\s*$/gm)].map((m) => m[1] as string);
}

/** Every .ts file under a folder. */
function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.ts'))
    .map((f) => join(dir, f));
}

describe('error codes', () => {
  it('docs/errors.md documents exactly the codes of ERROR_CODES, in the same order', () => {
    assert.deepEqual(documented('Codes'), CODES);
  });

  it('every documented code says what it means, where it is raised and what to do', () => {
    for (const code of CODES) {
      const start = DOC.indexOf(`### ${code}\n`);
      const next = DOC.indexOf('\n##', start + 1);
      const body = DOC.slice(start, next < 0 ? undefined : next);
      for (const part of ['**Meaning:**', '**Where raised:**', '**What to do:**']) {
        assert.ok(body.includes(part), `${code} lacks ${part}`);
      }
    }
  });

  it('retired codes are documented as retired and never come back', () => {
    const retired = documented('Retired codes');
    assert.deepEqual(retired, [...RETIRED_CODES]);
    for (const code of RETIRED_CODES)
      assert.ok(!CODES.includes(code), `${code} is retired but in ERROR_CODES`);
  });

  it('codes are SEGLB_<AREA>_<WHAT> with a one-line meaning', () => {
    for (const [code, meaning] of Object.entries(ERROR_CODES)) {
      assert.match(code, /^SEGLB_[A-Z]+_[A-Z0-9_]+$/);
      assert.ok(meaning.length > 10 && !meaning.includes('\n'), code);
    }
  });

  it('every SEGLB_ code written in src/ is a registered code', () => {
    const unknown: string[] = [];
    for (const file of sourceFiles(join(ROOT, 'src'))) {
      const text = readFileSync(file, 'utf8');
      for (const m of text.matchAll(/['"`](SEGLB_[A-Z0-9_]+)['"`]/g)) {
        const code = m[1] as string;
        if (!CODES.includes(code)) unknown.push(`${file}: ${code}`);
      }
    }
    assert.deepEqual(unknown, []);
  });
});

describe('error classes', () => {
  it('carry their code and name, and keep the cause', () => {
    const cause = new Error('inner');
    const cases: [SeglbError, string][] = [
      [new SeglbError('SEGLB_CLI_USAGE', 'm', { cause }), 'SeglbError'],
      [new NetError('SEGLB_NET_INVALID_CIDR', 'm', { cause }), 'NetError'],
      [new PolicyError('SEGLB_POLICY_TOO_LARGE', 'm', { cause }), 'PolicyError'],
      [new ListenerError('SEGLB_LISTENER_BIND', 'm', { cause }), 'ListenerError'],
    ];
    for (const [err, name] of cases) {
      assert.ok(err instanceof SeglbError && err instanceof Error);
      assert.equal(err.name, name);
      assert.equal(err.message, 'm');
      assert.equal(err.cause, cause);
      assert.ok(err.code in ERROR_CODES);
    }
    const pool = new PoolError('SEGLB_POOL_OUTBOUND_DENIED', 'denied', 502);
    assert.equal(pool.httpStatus, 502);
    assert.equal(pool.code, 'SEGLB_POOL_OUTBOUND_DENIED');
  });

  it('ConfigError lists every issue as file:line:col key.path: message and copies the first position', () => {
    const err = new ConfigError('SEGLB_CONFIG_INVALID', [
      { file: '/c.yaml', line: 3, col: 5, keyPath: 'segments.web.pool', message: 'pool "x" does not exist' },
      { file: '/c.yaml', line: 1, col: 1, keyPath: '', message: 'missing required key "pools"' },
    ]);
    assert.equal(
      err.message,
      '/c.yaml:3:5 segments.web.pool: pool "x" does not exist\n/c.yaml:1:1 missing required key "pools"',
    );
    assert.deepEqual([err.file, err.line, err.col, err.keyPath], ['/c.yaml', 3, 5, 'segments.web.pool']);
    assert.equal(err.name, 'ConfigError');
    assert.equal(err.issues.length, 2);
    const empty = new ConfigError('SEGLB_CONFIG_INVALID', []);
    assert.deepEqual([empty.file, empty.line, empty.col, empty.keyPath], ['', 0, 0, '']);
    // The specific code of an issue is data, not part of the text.
    assert.equal(
      formatConfigIssue({
        file: 'f',
        line: 1,
        col: 2,
        keyPath: 'k',
        message: 'm',
        code: 'SEGLB_NET_INVALID_CIDR',
      }),
      'f:1:2 k: m',
    );
  });
});
