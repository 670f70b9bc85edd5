// Admin API fuzzing over a real socket: thousands of random payloads (seeded) on every route that
// takes input, valid-looking and not. Every answer must be 200 or a 4xx carrying a code and a
// message (422s with positioned issues); never a 500, a hang or a crash; and a refused change must
// leave the running policy, the runtime operations and the quarantine exactly as they were.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { startSeglbAdmin, type TestSeglbAdmin } from '../support/seglb.ts';
import { INTERESTING_STRINGS, makeRandom, type Random } from './support/mutate.ts';

const SEED = Number(process.env.SEGLB_FUZZ_SEED ?? 0xad1);

const YAML = `
log: { level: silent }
ipsets:
  office: { cidrs: [127.0.0.0/29] }
  partners: { cidrs: [198.51.100.0/24] }
segments:
  web:
    vips: [{ listen: "127.0.0.1:0" }]
    pool: web
    backend_subnets: [127.0.0.0/8]
    allow:
      - { name: office, from: [office] }
    deny:
      - { name: blocked, from: [127.0.0.5] }
  db:
    vips: [{ listen: "127.0.0.1:0", protocol: tcp }]
    pool: web
    backend_subnets: [127.0.0.0/8]
    allow:
      - { name: office, from: [office] }
pools:
  web:
    backends: [{ address: "127.0.0.1:1", name: b1 }]
`;

const SEGMENTS = ['web', 'db', 'nope', 'WEB', '', '..', '%2e%2e', 'web/rules'];
const IPSETS = ['office', 'partners', 'nope', 'any', ''];
const CIDRS = [
  '10.0.0.0/8',
  '10.1.2.3/8',
  '192.0.2.7',
  '::1',
  '2001:db8::/32',
  '::ffff:10.0.0.0/104',
  '0.0.0.0/0',
  'office',
  'not-a-cidr',
  '300.1.1.1',
  '',
  '10.0.0.0/33',
  '127.0.0.0/29',
];

/** A random value of any JSON type. */
function anyJson(rnd: Random, depth = 0): unknown {
  switch (rnd.int(depth > 2 ? 5 : 7)) {
    case 0:
      return null;
    case 1:
      return rnd.pick([0, -1, 1.5, 1e308, 2 ** 53, -0]);
    case 2:
      return rnd.next() < 0.5;
    case 3:
    case 4:
      return rnd.pick(INTERESTING_STRINGS);
    case 5:
      return Array.from({ length: rnd.int(3) }, () => anyJson(rnd, depth + 1));
    default: {
      const o: Record<string, unknown> = {};
      for (let i = 0; i < rnd.int(3); i++)
        o[rnd.pick(['from', 'name', 'paths', 'x', '__proto__'])] = anyJson(rnd, depth + 1);
      return o;
    }
  }
}

/** Sometimes right, sometimes one field off. */
function maybe<T>(rnd: Random, good: T): unknown {
  return rnd.next() < 0.75 ? good : anyJson(rnd);
}

function randomRule(rnd: Random, n: number): unknown {
  const rule: Record<string, unknown> = {
    name: maybe(rnd, `fuzz-${n}`),
    from: maybe(rnd, [rnd.pick(CIDRS)]),
  };
  if (rnd.next() < 0.3) rule.paths = maybe(rnd, [rnd.pick(['/api/*', '/a*b', 'no-slash', '/x'])]);
  if (rnd.next() < 0.2) rule.methods = maybe(rnd, [rnd.pick(['GET', 'get', 'BREW'])]);
  if (rnd.next() < 0.2) rule.hosts = maybe(rnd, [rnd.pick(['a.example', '*.example', 'a*.example'])]);
  if (rnd.next() < 0.1) rule.headers = maybe(rnd, { 'x-env': 'prod' });
  if (rnd.next() < 0.1) rule[rnd.pick(['unknown', 'form', 'path'])] = anyJson(rnd);
  return rule;
}

function randomOp(rnd: Random, n: number): unknown {
  const op = rnd.pick([
    'add_rule',
    'remove_rule',
    'set_mode',
    'add_ipset_entries',
    'remove_ipset_entries',
    'bogus',
  ]);
  const base: Record<string, unknown> = { op: maybe(rnd, op) };
  if (op === 'add_rule' || op === 'remove_rule') {
    base.segment = maybe(rnd, rnd.pick(SEGMENTS));
    base.kind = maybe(rnd, rnd.pick(['allow', 'deny', 'other']));
    if (op === 'add_rule') base.rule = randomRule(rnd, n);
    else base.name = maybe(rnd, rnd.pick(['office', 'blocked', `fuzz-${rnd.int(n + 1)}`, 'nope']));
  } else if (op === 'set_mode') {
    base.segment = maybe(rnd, rnd.pick(SEGMENTS));
    base.mode = maybe(rnd, rnd.pick(['enforce', 'audit', 'off']));
  } else {
    base.ipset = maybe(rnd, rnd.pick(IPSETS));
    base.cidrs = maybe(
      rnd,
      Array.from({ length: 1 + rnd.int(3) }, () => rnd.pick(CIDRS)),
    );
  }
  return base;
}

/** A path segment: sometimes plain, sometimes percent-encoded oddities (malformed escapes too). */
function pathPart(rnd: Random, choices: readonly string[]): string {
  return rnd.pick([
    ...choices.map(encodeURIComponent),
    '%E0%A4%A',
    '%',
    '%zz',
    '%00',
    '10.0.0.0%2F8',
    '..%2F..%2Fstatus',
    'a'.repeat(500),
  ]);
}

/** One random call: method, path, body (a raw string means "send this text as the body"). */
function randomCall(
  rnd: Random,
  n: number,
): { method: string; path: string; body?: unknown; raw?: string; mutates: boolean } {
  switch (rnd.int(14)) {
    case 0:
    case 1:
    case 2:
      return {
        method: 'POST',
        path: '/changes',
        body: { ops: Array.from({ length: 1 + rnd.int(3) }, () => randomOp(rnd, n)) },
        mutates: true,
      };
    case 3:
      return {
        method: 'POST',
        path: `/segments/${pathPart(rnd, SEGMENTS)}/rules`,
        body: { kind: maybe(rnd, 'allow'), rule: randomRule(rnd, n) },
        mutates: true,
      };
    case 4:
      return {
        method: 'PUT',
        path: `/segments/${pathPart(rnd, SEGMENTS)}/mode`,
        body: { mode: maybe(rnd, rnd.pick(['audit', 'enforce'])) },
        mutates: true,
      };
    case 5:
      return {
        method: rnd.pick(['POST', 'DELETE']),
        path: `/ipsets/${pathPart(rnd, IPSETS)}/entries`,
        body: { cidrs: maybe(rnd, [rnd.pick(CIDRS)]) },
        mutates: true,
      };
    case 6:
      return {
        method: 'DELETE',
        path: `/segments/${pathPart(rnd, SEGMENTS)}/rules/${pathPart(rnd, ['allow', 'deny', 'x'])}/${pathPart(rnd, ['office', `fuzz-${rnd.int(n + 1)}`])}`,
        mutates: true,
      };
    case 7:
      return {
        method: 'POST',
        path: '/quarantine',
        body: {
          cidr: maybe(rnd, rnd.pick(CIDRS)),
          ttl_ms: maybe(rnd, rnd.pick([1000, 60000, 0, -5, 1e300])),
          reason: maybe(rnd, 'fuzz'),
        },
        mutates: true,
      };
    case 8:
      return { method: 'DELETE', path: `/quarantine/${pathPart(rnd, CIDRS)}`, mutates: true };
    case 9:
      return {
        method: 'PUT',
        path: `/pools/${pathPart(rnd, ['web', 'nope'])}/backends/${pathPart(rnd, ['b1', '127.0.0.1:1', 'nope'])}/state`,
        body: { state: maybe(rnd, rnd.pick(['ready', 'drain', 'maintenance', 'dead'])) },
        mutates: true,
      };
    case 10:
      return {
        method: 'POST',
        path: '/explain',
        body: {
          segment: maybe(rnd, rnd.pick(SEGMENTS)),
          source: maybe(rnd, rnd.pick(CIDRS)),
          method: maybe(rnd, 'GET'),
          path: maybe(rnd, rnd.pick(['/', '/a/../admin', '%%', ''])),
          headers: maybe(rnd, { 'x-a': 'b' }),
        },
        mutates: false,
      };
    case 11:
      return {
        method: 'POST',
        path: '/simulate',
        body: { ops: [randomOp(rnd, n)], window_ms: maybe(rnd, 60000) },
        mutates: false,
      };
    case 12:
      return {
        method: rnd.pick(['POST', 'PUT', 'DELETE']),
        path: rnd.pick(['/changes', '/quarantine', '/explain', '/simulate']),
        raw: rnd.pick([
          '{',
          '[]',
          '"x"',
          '1',
          'null',
          '{"ops":',
          `${'['.repeat(5000)}${']'.repeat(5000)}`,
          '\u0000',
          '{"ops":[{"op":"add_rule","segment":"web","kind":"allow","rule":{"name":"__proto__","from":["10.0.0.0/8"]}}]}',
        ]),
        mutates: true,
      };
    default:
      return {
        method: rnd.pick(['GET', 'HEAD', 'OPTIONS', 'PATCH', 'POST']),
        path: rnd.pick([
          '/',
          '/status',
          `/segments/${pathPart(rnd, SEGMENTS)}`,
          `/audit?limit=${rnd.pick(['-1', 'x', '1e9', '5'])}`,
          '/diff',
          '/lint',
          '/../../etc/passwd',
          '//status',
          '/status?%',
        ]),
        mutates: false,
      };
  }
}

/** Quarantine entries that cannot expire during one call (short fuzz TTLs expire on their own). */
function lasting(lb: TestSeglbAdmin): string {
  const soon = Date.now() + 30_000;
  return JSON.stringify(
    lb.runtime.quarantine
      .list()
      .filter((e) => e.expiresAt > soon)
      .map((e) => e.cidr),
  );
}

describe('admin API fuzzing', () => {
  test('thousands of random calls: 200 or a coded 4xx, never a 500 or a partial change', {
    timeout: 90_000,
  }, async () => {
    const lb = await startSeglbAdmin(YAML);
    const rnd = makeRandom(SEED);
    const statuses = new Map<number, number>();
    const failures: string[] = [];
    const budgetMs = 25_000;
    const started = performance.now();
    let cases = 0;
    try {
      while (cases < 4000 && performance.now() - started < budgetMs) {
        const call = randomCall(rnd, cases);
        const before = {
          version: lb.runtime.snapshot.version,
          hash: lb.runtime.snapshot.hash,
          ops: JSON.stringify(lb.control.ops),
          quarantine: lasting(lb),
        };
        const headers: Record<string, string> = { authorization: `Bearer ${lb.tokens.admin}` };
        let body: string | undefined;
        if (call.raw !== undefined) body = call.raw;
        else if (call.body !== undefined) body = JSON.stringify(call.body);
        if (body !== undefined) headers['content-type'] = 'application/json';
        let status: number;
        let text: string;
        try {
          const res = await fetch(lb.adminUrl + call.path, {
            method: call.method,
            headers,
            body: call.method === 'GET' || call.method === 'HEAD' ? undefined : body,
            signal: AbortSignal.timeout(5000),
          });
          status = res.status;
          text = await res.text();
        } catch (err) {
          failures.push(`${call.method} ${call.path}: no answer (${String(err)})`);
          break;
        }
        cases++;
        statuses.set(status, (statuses.get(status) ?? 0) + 1);
        const where = `${call.method} ${call.path} ${body?.slice(0, 300) ?? ''}`;
        if (![200, 400, 404, 405, 409, 413, 422].includes(status)) {
          failures.push(`${where} -> ${status} ${text.slice(0, 300)}`);
          if (failures.length >= 5) break;
          continue;
        }
        if (status !== 200 && call.method !== 'HEAD') {
          let parsed: {
            error?: { code?: unknown; message?: unknown; issues?: { line: number; col: number }[] };
          };
          try {
            parsed = JSON.parse(text);
          } catch {
            failures.push(`${where} -> ${status} with a body that is not JSON: ${text.slice(0, 200)}`);
            continue;
          }
          const e = parsed.error;
          if (
            typeof e?.code !== 'string' ||
            !/^SEGLB_[A-Z_]+$/.test(e.code) ||
            typeof e.message !== 'string' ||
            !e.message
          )
            failures.push(`${where} -> ${status} without a code and message: ${text.slice(0, 200)}`);
          if (
            status === 422 &&
            !(Array.isArray(e?.issues) && e.issues.every((i) => i.line >= 1 && i.col >= 1))
          )
            failures.push(`${where} -> 422 without positioned issues: ${text.slice(0, 300)}`);
          if (call.mutates) {
            const now = {
              version: lb.runtime.snapshot.version,
              hash: lb.runtime.snapshot.hash,
              ops: JSON.stringify(lb.control.ops),
              quarantine: lasting(lb),
            };
            if (JSON.stringify(now) !== JSON.stringify(before))
              failures.push(`${where} -> ${status} but the running state changed`);
          }
        } else if (status === 200 && lb.runtime.snapshot.version !== before.version) {
          if (lb.runtime.snapshot.version !== before.version + 1)
            failures.push(
              `${where} -> 200 moved the policy version by ${lb.runtime.snapshot.version - before.version}`,
            );
        }
        if (failures.length >= 5) break;
      }
      // Still healthy afterwards.
      const status = await lb.api('GET', '/status');
      assert.equal(status.status, 200);
      assert.equal(
        typeof status.body.limits?.sourceRateRefused,
        'number',
        'status shows the connection limits',
      );
      process.stdout.write(
        `# admin fuzz: ${cases} calls in ${((performance.now() - started) / 1000).toFixed(1)} s (seed ${SEED}); statuses ${[
          ...statuses,
        ]
          .sort((a, b) => a[0] - b[0])
          .map(([s, n]) => `${s}x${n}`)
          .join(' ')}; policy version ${lb.runtime.snapshot.version}\n`,
      );
      assert.deepEqual(failures, []);
      assert.ok(cases >= 1500, `only ${cases} calls`);
    } finally {
      await lb.stop();
    }
  });
});
