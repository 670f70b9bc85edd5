// The seglb process under signals: SIGTERM drains in-flight requests and exits 0; SIGHUP reloads
// the file, and a bad file leaves the running configuration untouched.

import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { httpRequest, startBackend } from '../support/net.ts';
import { spawnSeglb, writeConfig } from '../support/seglb.ts';

function cfg(backend: string): string {
  return `
log: { level: info, format: json }
timeouts: { shutdown_grace_ms: 5000 }
segments:
  web:
    vips: [{ listen: "127.0.0.1:0" }]
    pool: p
    backend_subnets: [127.0.0.0/8]
    allow: [{ from: [127.0.0.0/8] }]
pools:
  p:
    backends: [{ address: "${backend}" }]
`;
}

describe('signals', () => {
  test('SIGTERM: stop accepting, finish in-flight requests, exit 0', async () => {
    const backend = await startBackend('slow', '127.0.0.81');
    const file = writeConfig(cfg(backend.address));
    const p = spawnSeglb(['run', '-c', file]);
    try {
      const port = Number((await p.waitForLog('VIP listening')).port);
      const inflight = httpRequest({ port, path: '/sleep/700' });
      await new Promise((r) => setTimeout(r, 200));
      p.child.kill('SIGTERM');
      await p.waitForLog(/no longer accepting connections/);
      const late = await httpRequest({ port });
      assert.equal(late.error, 'ECONNREFUSED', 'no new connections once stopping');
      const res = await inflight;
      assert.equal(res.status, 200, 'the in-flight request completes');
      assert.equal(res.body, 'slow');
      assert.equal(await p.exited, 0);
    } finally {
      p.child.kill('SIGKILL');
      await backend.close();
    }
  });

  test('SIGHUP: a bad file is reported and the running config stays; a good one is applied', async () => {
    const one = await startBackend('one', '127.0.0.82');
    const two = await startBackend('two', '127.0.0.83');
    const file = writeConfig(cfg(one.address));
    const p = spawnSeglb(['run', '-c', file]);
    try {
      const port = Number((await p.waitForLog('VIP listening')).port);
      assert.equal((await httpRequest({ port })).body, 'one');

      writeFileSync(file, `${cfg(two.address)}\nbogus_key: 1\n`);
      p.child.kill('SIGHUP');
      const rejected = await p.waitForLog(/reload rejected/);
      assert.match(JSON.stringify(rejected.issues), /seglb\.yaml:\d+:\d+ bogus_key: unknown key/);
      assert.equal((await httpRequest({ port })).body, 'one', 'old config still serving');

      writeFileSync(file, cfg(two.address));
      p.child.kill('SIGHUP');
      await p.waitForLog('configuration applied');
      assert.equal((await httpRequest({ port })).body, 'two', 'same VIP, new pool');
      p.child.kill('SIGTERM');
      assert.equal(await p.exited, 0);
    } finally {
      p.child.kill('SIGKILL');
      await Promise.all([one.close(), two.close()]);
    }
  });
});
