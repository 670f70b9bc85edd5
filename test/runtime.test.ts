// Runtime snapshots: reload swaps the snapshot without dropping requests, keeps unchanged
// listeners, opens new VIPs and closes removed ones.

import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { type AddressInfo, createServer } from 'node:net';
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

test('a reload with two VIPs that cannot bind names both and keeps the running snapshot', async () => {
  const one = await startBackend('one', '127.0.0.93');
  const lb = await startSeglb(cfg(one.address));
  const blockers = await Promise.all([occupy('127.0.0.94'), occupy('127.0.0.95')]);
  try {
    const before = lb.runtime.snapshot.version;
    const [a, b] = blockers.map((s) => `127.0.0.${s.host.split('.')[3]}:${s.port}`) as [string, string];
    writeFileSync(lb.file, cfg(one.address, `, { listen: "${a}" }, { listen: "${b}" }`));
    await assert.rejects(lb.runtime.reload(loadConfigFile(lb.file)), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'SEGLB_LISTENER_BIND');
      assert.match(
        err.message,
        new RegExp(`cannot listen on ${a} \\(segment web\\): EADDRINUSE; cannot listen on ${b} `),
      );
      return true;
    });
    assert.equal(lb.runtime.snapshot.version, before, 'the running snapshot stays');
    assert.equal(lb.runtime.boundVips().length, 1);
    const port = lb.runtime.boundVips()[0]?.port as number;
    assert.equal((await httpRequest({ port })).body, 'one');
  } finally {
    for (const s of blockers) await new Promise((r) => s.server.close(r));
    await lb.stop();
    await one.close();
  }
});

/** A TCP listener holding an address:port, so seglb's bind there fails with EADDRINUSE. */
async function occupy(
  host: string,
): Promise<{ server: import('node:net').Server; host: string; port: number }> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, host, r));
  return { server, host, port: (server.address() as AddressInfo).port };
}

test('a reload whose changed VIP cannot bind keeps the old listener bound and serving', async () => {
  const one = await startBackend('one', '127.0.0.93');
  // Another process's SO_REUSEPORT socket on the same address, as a second seglb would hold it.
  const peer = createServer();
  await new Promise<void>((r) => peer.listen({ host: '127.0.0.96', port: 0, reusePort: true }, r));
  const port = (peer.address() as AddressInfo).port;
  const vip = (reuse: boolean) => `
log: { level: silent }
segments:
  web:
    vips: [{ listen: "127.0.0.96:${port}", reuse_port: ${reuse} }]
    pool: p
    backend_subnets: [127.0.0.0/8]
    allow: [{ from: [127.0.0.0/8] }]
pools:
  p:
    backends: [{ address: "${one.address}" }]
`;
  const lb = await startSeglb(vip(true));
  try {
    writeFileSync(lb.file, vip(false)); // without SO_REUSEPORT the address is taken by the peer
    await assert.rejects(lb.runtime.reload(loadConfigFile(lb.file)), /EADDRINUSE/);
    assert.deepEqual(
      lb.runtime.boundVips().map((v) => `${v.address}:${v.port}`),
      [`127.0.0.96:${port}`],
      'the VIP is bound again',
    );
    peer.close(); // now every new connection goes to seglb
    for (let i = 0; i < 5; i++) {
      const r = await httpRequest({ host: '127.0.0.96', port });
      assert.equal(r.body, 'one', r.error);
    }
  } finally {
    peer.close();
    await lb.stop();
    await one.close();
  }
});
