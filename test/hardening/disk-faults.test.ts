// Disk full and unwritable files: the state file hits ENOSPC (its temp file is a symlink to
// /dev/full), the audit trail's folder is not a folder (ENOTDIR), stdout is /dev/full or a closed
// pipe. Each is reported (status, stderr) and the service goes on: the change is live, traffic flows.

import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, openSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { loadConfigText } from '../../src/config/index.ts';
import { ConfigError } from '../../src/errors.ts';
import { closedPort, httpRequest, startBackend } from '../support/net.ts';
import { startSeglbAdmin, tempDir } from '../support/seglb.ts';

const MAIN = new URL('../../src/cli/main.ts', import.meta.url).pathname;

const YAML = (backend: string, listen = '127.0.0.1:0') => `
log: { level: silent }
ipsets:
  office: { cidrs: [127.0.0.0/29] }
segments:
  web:
    vips: [{ listen: "${listen}" }]
    pool: web
    backend_subnets: [127.0.0.0/8]
    allow:
      - { name: office, from: [office] }
pools:
  web:
    backends: [{ address: "${backend}" }]
`;

describe('files a config names must be regular files', () => {
  test('an IP-set file on /dev/zero or a FIFO as a key file is an error at its key, not a hang', () => {
    const dir = tempDir('seglb-special-');
    execFileSync('mkfifo', [join(dir, 'key.fifo')]);
    writeFileSync(join(dir, 'x.crt'), 'not a certificate');
    const text = `${YAML('127.0.0.1:1')
      .replace(
        'office: { cidrs: [127.0.0.0/29] }',
        'office: { cidrs: [127.0.0.0/29] }\n  zero: { file: /dev/zero }',
      )
      .replace(
        'vips: [{ listen: "127.0.0.1:0" }]',
        'vips: [{ listen: "127.0.0.1:0", protocol: https, tls: { certificates: [{ cert_file: x.crt, key_file: key.fifo }] } }]',
      )}`;
    const t0 = performance.now();
    assert.throws(
      () => loadConfigText(text, join(dir, 'seglb.yaml')),
      (err: unknown) =>
        err instanceof ConfigError &&
        err.issues.some((i) => i.keyPath === 'ipsets.zero.file' && /not a regular file/.test(i.message)) &&
        err.issues.some((i) => /key_file|certificates\[0\]/.test(i.keyPath)),
    );
    assert.ok(performance.now() - t0 < 2000);
  });
});

describe('state and audit files that cannot be written', () => {
  test('ENOSPC on the state file and ENOTDIR on the audit trail: reported, change live, traffic flows', async () => {
    const backend = await startBackend('b', '127.0.0.97');
    const dir = tempDir('seglb-disk-');
    writeFileSync(join(dir, 'not-a-folder'), 'x');
    const state = join(dir, 'state.json');
    const lb = await startSeglbAdmin(
      YAML(backend.address),
      dir,
      `admin:\n  listen: "127.0.0.1:0"\n  tokens_file: tokens.txt\n  state_file: state.json\n  audit_file: not-a-folder/audit.jsonl\n`,
    );
    // StateStore writes `<file>.tmp-<pid>` then renames it: make that temp file the full device.
    const tmp = `${state}.tmp-${process.pid}`;
    symlinkSync('/dev/full', tmp);
    try {
      const denied = await httpRequest({ port: lb.port('web'), localAddress: '127.0.0.9' });
      assert.equal(denied.error, 'ECONNRESET', '127.0.0.9 is not allowed yet');
      const change = await lb.api('POST', '/ipsets/office/entries', { cidrs: ['127.0.0.9'] });
      assert.equal(change.status, 200, JSON.stringify(change.body));
      // The change is live even though it could not be persisted...
      assert.equal((await httpRequest({ port: lb.port('web'), localAddress: '127.0.0.9' })).status, 200);
      // ...and the failure is reported.
      const status = await lb.api('GET', '/status');
      assert.match(String(status.body.state.writeError), /ENOSPC/);
      assert.ok(status.body.state.auditWriteFailures >= 1);
      assert.ok(!existsSync(state), 'no half-written state file');
      // Space again: the next change persists everything, and the error clears.
      rmSync(tmp);
      assert.equal((await lb.api('POST', '/ipsets/office/entries', { cidrs: ['127.0.0.10'] })).status, 200);
      const after = await lb.api('GET', '/status');
      assert.equal(after.body.state.writeError, null);
      const saved = JSON.parse(readFileSync(state, 'utf8')) as { policy_ops: { cidrs?: string[] }[] };
      // Both changes are persisted (the log is compacted: two adds to one set become one op).
      assert.deepEqual(saved.policy_ops.flatMap((o) => o.cidrs ?? []).sort(), ['127.0.0.10', '127.0.0.9']);
    } finally {
      rmSync(tmp, { force: true });
      await lb.stop();
      await backend.close();
    }
  });

  test('a state or audit file that is a device or FIFO is refused at load, naming the key', () => {
    const dir = tempDir('seglb-disk-');
    writeFileSync(join(dir, 'tokens.txt'), `a admin ${'t'.repeat(24)}\n`);
    for (const [key, path] of [
      ['state_file', '/dev/null'],
      ['audit_file', '/dev/zero'],
    ] as const) {
      const text = `${YAML('127.0.0.1:1')}admin:\n  tokens_file: tokens.txt\n  ${key}: ${path}\n`;
      assert.throws(
        () => loadConfigText(text, join(dir, 'seglb.yaml')),
        (err: unknown) =>
          err instanceof ConfigError &&
          err.issues.some(
            (i) => i.keyPath === `admin.${key}` && i.line > 0 && /not a regular file/.test(i.message),
          ),
      );
    }
  });
});

/** Starts `seglb run` with stdout going to `stdout`; resolves once the VIP answers. */
async function runWithStdout(stdout: 'pipe' | number, dir: string, port: number, backend: string) {
  const file = join(dir, 'seglb.yaml');
  writeFileSync(file, YAML(backend, `127.0.0.1:${port}`).replace('level: silent', 'level: info'));
  const child = spawn(process.execPath, [MAIN, 'run', '-c', file, '--log-format', 'json'], {
    stdio: ['ignore', stdout, 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const exited = once(child, 'exit').then(([code]) => code as number | null);
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    const r = await httpRequest({ port, timeoutMs: 500 });
    if (r.status === 200) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  return { child, exited, stderr: () => stderr };
}

describe('a log that cannot be written', () => {
  test('stdout on a full disk (/dev/full): seglb starts, serves and logs denies without dying', async () => {
    const backend = await startBackend('b', '127.0.0.98');
    const port = await closedPort();
    const full = openSync('/dev/full', 'w');
    const run = await runWithStdout(full, tempDir('seglb-logfull-'), port, backend.address);
    try {
      for (let i = 0; i < 50; i++) {
        // Denied connections log a line each (rate-limited); allowed ones are forwarded.
        await httpRequest({ port, localAddress: '127.0.0.9' });
        assert.equal((await httpRequest({ port })).status, 200);
      }
      assert.equal(run.child.exitCode, null, 'still running');
      assert.match(run.stderr(), /log write failed \(ENOSPC\)/);
      run.child.kill('SIGTERM');
      assert.equal(await run.exited, 0);
    } finally {
      run.child.kill('SIGKILL');
      await backend.close();
    }
  });

  test('stdout a pipe whose reader went away (EPIPE): seglb keeps serving', async () => {
    const backend = await startBackend('b', '127.0.0.99');
    const port = await closedPort();
    const run = await runWithStdout('pipe', tempDir('seglb-logpipe-'), port, backend.address);
    try {
      run.child.stdout?.destroy();
      for (let i = 0; i < 50; i++) {
        await httpRequest({ port, localAddress: '127.0.0.9' });
        assert.equal((await httpRequest({ port })).status, 200);
      }
      assert.equal(run.child.exitCode, null, 'still running');
      run.child.kill('SIGTERM');
      assert.equal(await run.exited, 0);
    } finally {
      run.child.kill('SIGKILL');
      await backend.close();
    }
  });
});
