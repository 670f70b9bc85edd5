// Unhandled exceptions and rejections: seglb logs them (fatal, with stack, code, version, uptime)
// and exits 1 for its supervisor to restart it; it never dies silently and never carries on in an
// unknown state. The fault is injected by a test-only preload (support/fault-preload.ts) into a
// real `seglb run` child, so no production code path exists to trigger it.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { closedPort, httpRequest, startBackend } from '../support/net.ts';
import { tempDir } from '../support/seglb.ts';

const MAIN = new URL('../../src/cli/main.ts', import.meta.url).pathname;
const PRELOAD = new URL('./support/fault-preload.ts', import.meta.url).pathname;

async function crashWith(kind: 'exception' | 'rejection') {
  const backend = await startBackend('b', '127.0.0.100');
  const port = await closedPort();
  const file = join(tempDir('seglb-crash-'), 'seglb.yaml');
  writeFileSync(
    file,
    `log: { level: info }
segments:
  web:
    vips: [{ listen: "127.0.0.1:${port}" }]
    pool: p
    backend_subnets: [127.0.0.0/8]
    allow: [{ from: [127.0.0.0/8] }]
pools:
  p:
    backends: [{ address: "${backend.address}" }]
`,
  );
  const child = spawn(
    process.execPath,
    ['--import', PRELOAD, MAIN, 'run', '-c', file, '--log-format', 'json'],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, SEGLB_TEST_FAULT: kind },
    },
  );
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const exited = once(child, 'exit');
  try {
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline && !stdout.includes('"seglb started"'))
      await new Promise((r) => setTimeout(r, 50));
    assert.ok(stdout.includes('"seglb started"'), `did not start: ${stderr}`);
    assert.equal((await httpRequest({ port })).status, 200);
    child.kill('SIGUSR2');
    const [code] = (await exited) as [number | null];
    const lines = stdout
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    return { code, crash: lines.find((l) => l.event === 'crash'), stderr };
  } finally {
    child.kill('SIGKILL');
    await backend.close();
  }
}

describe('unhandled faults', () => {
  test('an uncaught exception is logged with its context and the process exits 1', async () => {
    const { code, crash } = await crashWith('exception');
    assert.equal(code, 1);
    assert.ok(crash, 'a crash log line');
    assert.equal(crash.level, 60, 'fatal');
    assert.equal(crash.msg, 'uncaught exception: exiting for the supervisor to restart');
    const err = crash.err as { message: string; code: string; stack: string; name: string };
    assert.equal(err.message, 'boom from the crash test');
    assert.equal(err.code, 'ETESTCRASH');
    assert.match(err.stack, /fault-preload/);
    assert.match(String(crash.version), /^\d+\.\d+\.\d+/);
    assert.ok(Number(crash.uptimeMs) > 0);
  });

  test('an unhandled rejection is logged with its stack and the process exits 1', async () => {
    const { code, crash } = await crashWith('rejection');
    assert.equal(code, 1);
    assert.ok(crash);
    assert.equal(crash.msg, 'unhandled rejection: exiting for the supervisor to restart');
    const err = crash.err as { message: string; stack: string };
    assert.equal(err.message, 'rejection from the crash test');
    assert.match(err.stack, /fault-preload/);
  });
});
