// Runtime snapshots: reload swaps the snapshot without dropping requests, keeps unchanged
// listeners, opens new VIPs and closes removed ones.

import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { test } from 'node:test';
import { loadConfigFile } from '../src/config/index.ts';
import { httpRequest, startBackend } from './support/net.ts';
import { startSeglb } from './support/seglb.ts';

function cfg(backend: string, extraVip = ''): string {
  return `
log: { level: silent }
segments:
  web:
    vips: [{ listen: "127.0.0.1:0" }${extraVip}]
    pool: p
    backend_subnets: [127.0.0.0/8]
    allow: [{ from: [127.0.0.0/8] }]
pools:
  p:
    backends: [{ address: "${backend}" }]
`;
}

function get(port: number, agent: Agent): Promise<{ status: number; body: string }> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path: '/', agent }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        body += d;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', (e) => resolve({ status: 0, body: String(e) }));
    req.end();
  });
}

test('reloads under traffic drop no request and switch pools atomically', async () => {
  const [one, two] = await Promise.all([
    startBackend('one', '127.0.0.91'),
    startBackend('two', '127.0.0.92'),
  ]);
  const lb = await startSeglb(cfg(one.address));
  const port = lb.port('web');
  const agent = new Agent({ keepAlive: true, maxSockets: 8 });
  try {
    let running = true;
    const results: { status: number; body: string }[] = [];
    const clients = Array.from({ length: 8 }, async () => {
      while (running) results.push(await get(port, agent));
    });
    for (let i = 0; i < 6; i++) {
      await new Promise((r) => setTimeout(r, 60));
      writeFileSync(lb.file, cfg(i % 2 === 0 ? two.address : one.address));
      const snap = await lb.runtime.reload(loadConfigFile(lb.file));
      assert.equal(snap.version, i + 2);
    }
    await new Promise((r) => setTimeout(r, 60));
    running = false;
    await Promise.all(clients);
    const failed = results.filter((r) => r.status !== 200);
    assert.equal(failed.length, 0, `failed: ${JSON.stringify(failed.slice(0, 3))}`);
    assert.ok(results.length > 50, `only ${results.length} requests ran`);
    assert.equal(lb.port('web'), port, 'the VIP listener was kept across reloads');
    const last = await get(port, agent);
    assert.equal(last.body, 'one', 'the last applied config (6th reload: pool "one") serves');
  } finally {
    agent.destroy();
    await lb.stop();
    await Promise.all([one.close(), two.close()]);
  }
});

test('reload opens added VIPs and closes removed ones', async () => {
  const one = await startBackend('one', '127.0.0.93');
  const lb = await startSeglb(cfg(one.address));
  try {
    writeFileSync(lb.file, cfg(one.address, ', { listen: "127.0.0.2:0" }'));
    await lb.runtime.reload(loadConfigFile(lb.file));
    const second = lb.runtime.boundVips().find((v) => v.address === '127.0.0.2');
    assert.ok(second, 'the added VIP is bound');
    assert.equal((await httpRequest({ host: '127.0.0.2', port: second.port })).body, 'one');
    writeFileSync(lb.file, cfg(one.address));
    await lb.runtime.reload(loadConfigFile(lb.file));
    assert.equal(lb.runtime.boundVips().length, 1);
    const gone = await httpRequest({ host: '127.0.0.2', port: second.port });
    assert.equal(gone.error, 'ECONNREFUSED');
  } finally {
    await lb.stop();
    await one.close();
  }
});
