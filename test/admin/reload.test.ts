// Reload through the admin API under load: 50 reloads (two valid files alternating, every fifth file
// invalid and refused) while autocannon and keep-alive clients from other sources send requests;
// not one request may fail, each valid file is in force right after its reload, and an invalid file
// leaves the running policy (version, hash, verdicts) exactly as it was.

import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { after, before, describe, it } from 'node:test';
import { httpRequest, startBackend, type TestBackend } from '../support/net.ts';
import { startSeglbAdmin, type TestSeglbAdmin, tempDir } from '../support/seglb.ts';
import { KeepAliveClient } from './harness.ts';

/** The part of autocannon's result this test reads. */
interface AutocannonResult {
  requests: { total: number };
  errors: number;
  timeouts: number;
  non2xx: number;
  resets: number;
  mismatches: number;
}
type Autocannon = (
  opts: Record<string, unknown>,
  cb: (err: Error | null, result: AutocannonResult) => void,
) => { stop(): void };

const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon;

const ADMIN = 'admin:\n  listen: "127.0.0.1:0"\n  tokens_file: tokens.txt\n';

/** A valid config; `variant` decides which extra source (127.0.30.x or 127.0.31.x) is allowed. */
function validFile(variant: 'a' | 'b', backend: string): string {
  const extra =
    variant === 'a'
      ? '      - { name: only-a, from: [127.0.30.0/24] }\n    deny:\n      - { name: deny-a, from: [127.0.0.200] }'
      : '      - { name: only-b, from: [b-extra] }\n      - { name: health, from: [127.0.32.0/24], methods: [GET], paths: [/health] }';
  // Variant b also changes a backend timeout, so its pools cannot take over a's keep-alive
  // connections to the backend: every reload builds new undici pools and closes the old ones.
  const timeouts =
    variant === 'a' ? '{ client_idle_ms: 30000 }' : '{ client_idle_ms: 30000, backend_response_ms: 20000 }';
  return `# variant ${variant}
timeouts: ${timeouts}
ipsets:
  load: { cidrs: [127.0.0.0/25] }
  b-extra: { cidrs: [127.0.31.0/24] }
segments:
  web:
    vips: [{ listen: "127.0.0.1:0" }]
    pool: web
    backend_subnets: [127.0.0.0/8]
    revoke: after_request
    allow:
      - { name: load, from: [load] }
${extra}
pools:
  web:
    backends: [{ address: "${backend}", name: be }]
${ADMIN}`;
}

/** Invalid files: a YAML error, a value error, an unknown key, a missing IP set. */
function invalidFile(n: number, backend: string): string {
  const good = validFile('a', backend);
  switch (n % 4) {
    case 0:
      return `${good}\nsegments: [oops\n`;
    case 1:
      return good.replace('127.0.30.0/24', '127.0.30.1/24');
    case 2:
      return good.replace('    pool: web', '    pool: web\n    pools: web');
    default:
      return good.replace('from: [load]', 'from: [lode]');
  }
}

describe('admin API: reload under load', { timeout: 60_000 }, () => {
  let lb: TestSeglbAdmin;
  let backend: TestBackend;
  const dir = tempDir();

  before(async () => {
    backend = await startBackend('be', '127.0.0.1');
    // startSeglbAdmin appends its own admin section unless given one; the files written below carry
    // the same section, so the file on disk always matches what a reload reads.
    const text = validFile('a', backend.address);
    lb = await startSeglbAdmin(text.slice(0, text.indexOf(ADMIN)), dir, ADMIN);
  });
  after(async () => {
    await lb.stop();
    await backend.close();
  });

  const probe = async (from: string, path = '/') =>
    (await httpRequest({ port: lb.port('web'), localAddress: from, path, timeoutMs: 2000 })).status;

  it('50 reloads (10 invalid) while clients send keep-alive requests: 0 failed requests', {
    timeout: 30_000,
  }, async () => {
    const url = `http://127.0.0.1:${lb.port('web')}/`;
    let loadResult: AutocannonResult | undefined;
    let stopLoad = () => {};
    const loadDone = new Promise<void>((resolve, reject) => {
      const instance = autocannon({ url, connections: 8, pipelining: 1, duration: 60 }, (err, r) => {
        if (err) reject(err);
        else {
          loadResult = r;
          resolve();
        }
      });
      stopLoad = () => instance.stop();
    });
    // Keep-alive clients from other sources in the "load" set: re-judged after every swap.
    let running = true;
    const ka = { sent: 0, failed: 0, reused: 0, statuses: new Map<number, number>() };
    const loops = ['127.0.0.7', '127.0.0.42', '127.0.0.99'].map(async (from) => {
      const client = new KeepAliveClient(lb.port('web'), from);
      while (running) {
        const r = await client.request();
        ka.sent++;
        if (r.reused) ka.reused++;
        if (r.status !== 200) {
          await new Promise((res) => setTimeout(res, 5));
          ka.failed++;
          ka.statuses.set(r.status, (ka.statuses.get(r.status) ?? 0) + 1);
        }
      }
      client.close();
    });

    const stopAll = async () => {
      running = false;
      stopLoad();
      await Promise.all(loops);
      await loadDone;
    };
    let valid = 0;
    let invalid = 0;
    let reloadMs = 0;
    try {
      await new Promise((r) => setTimeout(r, 300));
      const started = Date.now();
      let variant: 'a' | 'b' = 'a';
      for (let i = 1; i <= 50; i++) {
        const before = lb.runtime.snapshot;
        if (i % 5 === 0) {
          writeFileSync(lb.file, invalidFile(i / 5, backend.address));
          const res = await lb.api('POST', '/reload');
          assert.equal(res.status, 422, `reload ${i} of an invalid file: ${JSON.stringify(res.body)}`);
          assert.equal(res.body.error.code, 'SEGLB_ADMIN_INVALID_CHANGE');
          const issue = res.body.error.issues[0];
          assert.equal(issue.file, lb.file);
          assert.ok(issue.line > 0, 'positioned');
          assert.equal(lb.runtime.snapshot, before, 'the running snapshot stays');
          invalid++;
        } else {
          variant = variant === 'a' ? 'b' : 'a';
          writeFileSync(lb.file, validFile(variant, backend.address));
          const res = await lb.api('POST', '/reload');
          assert.equal(res.status, 200, `reload ${i}: ${JSON.stringify(res.body)}`);
          assert.equal(res.body.version, before.version + 1);
          valid++;
        }
        // The file in force decides: a new connection from 127.0.30.1 / 127.0.31.1 is allowed or reset.
        if (i % 3 === 0) {
          assert.equal(
            await probe('127.0.30.1'),
            variant === 'a' ? 200 : 0,
            `after reload ${i} (${variant})`,
          );
          assert.equal(
            await probe('127.0.31.1'),
            variant === 'b' ? 200 : 0,
            `after reload ${i} (${variant})`,
          );
        }
        await new Promise((r) => setTimeout(r, 20));
      }
      reloadMs = Date.now() - started;
      await new Promise((r) => setTimeout(r, 200));
    } finally {
      await stopAll();
    }
    const ac = loadResult as AutocannonResult;
    const acFailed = ac.errors + ac.timeouts + ac.non2xx + ac.resets + ac.mismatches;
    console.log(
      `# reload under load: ${valid} valid + ${invalid} invalid reloads in ${reloadMs} ms; autocannon ${ac.requests.total} requests (8 keep-alive connections), ${acFailed} failed; keep-alive clients ${ka.sent} requests (${ka.reused} on a reused connection), ${ka.failed} failed`,
    );
    assert.equal(valid, 40);
    assert.equal(invalid, 10);
    assert.equal(acFailed, 0, `autocannon: ${JSON.stringify(ac)}`);
    assert.equal(ka.failed, 0, `keep-alive clients: ${JSON.stringify([...ka.statuses])}`);
    assert.ok(ac.requests.total > 500, 'a meaningful amount of load ran');
    assert.ok(ka.reused > ka.sent * 0.9, 'the keep-alive connections survived the reloads');
    const reloads = lb.control.audit.recent(1000).filter((e) => e.action === 'reload');
    assert.equal(reloads.length, 40, 'each applied reload is audited (refused ones are not)');
  });

  it('a bad reload keeps the old policy: same version, hash and verdicts', async () => {
    writeFileSync(lb.file, validFile('b', backend.address));
    assert.equal((await lb.api('POST', '/reload')).status, 200);
    const before = lb.runtime.snapshot;
    assert.equal(await probe('127.0.32.5', '/health'), 200);
    assert.equal(await probe('127.0.32.5', '/other'), 403);
    const bad = validFile('b', backend.address).replace('paths: [/health]', 'paths: [health]');
    writeFileSync(lb.file, bad);
    const res = await lb.api('POST', '/reload');
    assert.equal(res.status, 422);
    const issue = res.body.error.issues[0];
    assert.match(issue.keyPath, /^segments\.web\.allow\[2\]\.paths\[0\]$/);
    const lines = bad.split('\n');
    const line = lines.findIndex((l) => l.includes('paths: [health]')) + 1;
    assert.equal(issue.line, line, 'the position is in the file as written');
    assert.equal(issue.col, (lines[line - 1] ?? '').indexOf('[health]') + 2);
    const status = await lb.api('GET', '/status', undefined, lb.tokens.read);
    assert.equal(status.body.policy.version, before.version);
    assert.equal(status.body.policy.hash, before.hash);
    assert.equal(await probe('127.0.32.5', '/health'), 200);
    assert.equal(await probe('127.0.31.9'), 200);
    assert.equal(await probe('127.0.30.9'), 0);
    // A file that cannot be read at all is refused the same way.
    writeFileSync(lb.file, '');
    const empty = await lb.api('POST', '/reload');
    assert.equal(empty.status, 422);
    assert.equal(lb.runtime.snapshot, before);
  });
});
