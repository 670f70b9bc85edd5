// `reuse_port: true` on a VIP: two seglb processes listen on the same address:port (SO_REUSEPORT)
// and the kernel spreads new connections across them; when one stops the other keeps serving; a
// process without the option cannot bind the address they hold.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { closedPort, httpRequest, startBackend, type TestBackend } from '../support/net.ts';
import { type SeglbProcess, spawnSeglb, writeConfig } from '../support/seglb.ts';

function config(port: number, backend: string, reusePort: boolean): string {
  return `
log: { level: info, format: json }
segments:
  web:
    vips: [{ listen: "127.0.0.1:${port}", reuse_port: ${reusePort} }]
    pool: p
    backend_subnets: [127.0.0.0/8]
    allow: [{ from: [127.0.0.0/8] }]
pools:
  p: { backends: [{ address: "${backend}" }] }
`;
}

describe('VIPs with reuse_port', { timeout: 60_000 }, () => {
  let a: TestBackend;
  let b: TestBackend;
  let port: number;
  let first: SeglbProcess;
  let second: SeglbProcess;

  before(async () => {
    a = await startBackend('a', '127.0.0.1');
    b = await startBackend('b', '127.0.0.1');
    port = await closedPort();
    first = spawnSeglb(['run', '-c', writeConfig(config(port, a.address, true))]);
    await first.waitForLog('VIP listening');
    second = spawnSeglb(['run', '-c', writeConfig(config(port, b.address, true))]);
    await second.waitForLog('VIP listening');
  });
  after(async () => {
    for (const p of [first, second]) if (p.child.exitCode === null) p.child.kill('SIGTERM');
    await Promise.all([first.exited, second.exited]);
    await a.close();
    await b.close();
  });

  test('two processes share the VIP: new connections reach both', async () => {
    const seen = new Map<string, number>();
    for (let i = 0; i < 40; i++) {
      // A new connection from a new source port each time: the kernel hashes the 4-tuple.
      const r = await httpRequest({ port });
      assert.equal(r.status, 200, r.error);
      seen.set(r.body, (seen.get(r.body) ?? 0) + 1);
    }
    assert.deepEqual([...seen.keys()].sort(), ['a', 'b'], JSON.stringify([...seen]));
  });

  test('a process without reuse_port cannot bind the address the two hold', async () => {
    const third = spawnSeglb(['run', '-c', writeConfig(config(port, a.address, false))]);
    assert.equal(await third.exited, 1);
    const line = third.logs.find((l) => l['code'] === 'SEGLB_LISTENER_BIND');
    assert.match(String(line?.['err']), /EADDRINUSE/);
  });

  test('when one process stops, the other serves every new connection', async () => {
    first.child.kill('SIGTERM');
    assert.equal(await first.exited, 0);
    for (let i = 0; i < 20; i++) {
      const r = await httpRequest({ port });
      assert.equal(r.status, 200, r.error);
      assert.equal(r.body, 'b');
    }
  });
});
