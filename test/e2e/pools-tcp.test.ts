// Backend pools behind TCP VIPs (backends on 127.0.6.x): max_connections with the queue, a dead
// backend skipped and ejected with no failed client connection, source stickiness, TLS to backends.

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdirSync, readFileSync } from 'node:fs';
import { type AddressInfo, connect, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { createServer as createTlsServer } from 'node:tls';
import { makeCert } from '../support/certs.ts';
import { closedPort } from '../support/net.ts';
import { startSeglb, type TestSeglb, tempDir } from '../support/seglb.ts';

const cleanups: (() => unknown)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

/** A TCP backend that writes `NAME\n` on connect and echoes what it gets. */
async function tcpBackend(
  name: string,
  host: string,
): Promise<{ server: Server; port: number; open: Set<Socket> }> {
  const open = new Set<Socket>();
  const server = createServer((s) => {
    open.add(s);
    s.on('close', () => open.delete(s));
    s.on('error', () => {});
    s.write(`${name}\n`);
    s.pipe(s);
  });
  server.listen(0, host);
  await once(server, 'listening');
  cleanups.push(() => {
    for (const s of open) s.destroy();
    server.close();
  });
  return { server, port: (server.address() as AddressInfo).port, open };
}

function config(pool: string): string {
  return `
log: { level: silent }
timeouts: { backend_connect_ms: 300 }
segments:
  db:
    vips: [{ listen: "127.0.0.1:0", protocol: tcp }]
    pool: p
    backend_subnets: [127.0.0.0/8]
    allow: [{ from: [127.0.0.0/8] }]
pools:
  p:
${pool}
`;
}

async function seglb(yaml: string, dir?: string): Promise<TestSeglb> {
  const lb = await startSeglb(yaml, dir);
  cleanups.push(() => lb.stop());
  return lb;
}

/** Connects and resolves with the first line (the backend's name), or the way the connection ended. */
function firstLine(
  port: number,
  localAddress?: string,
  timeoutMs = 2000,
): Promise<{ line: string; socket: Socket }> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port, localAddress });
    let buf = '';
    const timer = setTimeout(() => resolve({ line: 'timeout', socket: s }), timeoutMs);
    s.on('data', (d: Buffer) => {
      buf += d.toString();
      const nl = buf.indexOf('\n');
      if (nl >= 0) {
        clearTimeout(timer);
        resolve({ line: buf.slice(0, nl), socket: s });
      }
    });
    s.on('close', () => {
      clearTimeout(timer);
      resolve({ line: buf === '' ? 'closed' : buf, socket: s });
    });
    s.on('error', () => {});
  });
}

describe('pools on TCP VIPs', () => {
  test('max_connections: one connection waits in the queue, one beyond it is closed', async () => {
    const b = await tcpBackend('t1', '127.0.6.1');
    const lb = await seglb(
      config(
        `    queue_size: 1\n    queue_timeout_ms: 2000\n    backends: [{ address: "127.0.6.1:${b.port}", max_connections: 1 }]`,
      ),
    );
    const port = lb.port('db');
    const one = await firstLine(port);
    assert.equal(one.line, 't1');
    const waiting = firstLine(port, undefined, 3000);
    await new Promise((r) => setTimeout(r, 100));
    const third = await firstLine(port);
    assert.equal(third.line, 'closed', 'queue full: closed at once');
    assert.equal(b.open.size, 1, 'the backend never saw more than max_connections');
    one.socket.destroy();
    const second = await waiting;
    assert.equal(second.line, 't1', 'the queued connection went through when a slot freed');
    second.socket.destroy();
  });

  test('a dead backend is skipped and ejected; no client connection fails', async () => {
    const alive = await tcpBackend('alive', '127.0.6.2');
    const dead = await closedPort('127.0.6.3');
    const lb = await seglb(
      config(`    outlier_detection: { consecutive_connect_failures: 2, max_ejection_percent: 50 }
    backends: [{ address: "127.0.6.3:${dead}" }, { address: "127.0.6.2:${alive.port}" }]`),
    );
    for (let i = 0; i < 10; i++) {
      const r = await firstLine(lb.port('db'));
      assert.equal(r.line, 'alive');
      r.socket.destroy();
    }
    const pool = lb.runtime.snapshot.segments.get('db')?.pool;
    const st = pool?.status();
    assert.equal(st?.counters.ejections, 1);
    assert.ok(st?.backends[0]?.ejectedUntil);
    assert.equal(st?.backends[0]?.failures, 2, 'after ejection the dead backend is not dialled any more');
  });

  test('source stickiness: a client address keeps its backend', async () => {
    const a = await tcpBackend('a', '127.0.6.4');
    const b = await tcpBackend('b', '127.0.6.5');
    const lb = await seglb(
      config(`    sticky: { source: { ttl_ms: 60000 } }
    backends: [{ address: "127.0.6.4:${a.port}" }, { address: "127.0.6.5:${b.port}" }]`),
    );
    const seen = new Map<string, Set<string>>();
    for (let round = 0; round < 4; round++) {
      for (const client of ['127.0.7.1', '127.0.7.2', '127.0.7.3']) {
        const r = await firstLine(lb.port('db'), client);
        r.socket.destroy();
        if (!seen.has(client)) seen.set(client, new Set());
        seen.get(client)?.add(r.line);
      }
    }
    for (const [client, names] of seen) assert.equal(names.size, 1, `${client}: ${[...names]}`);
    assert.equal(lb.runtime.snapshot.segments.get('db')?.pool.status().stickyEntries, 3);
  });

  test('TLS to the backend from a TCP VIP', async () => {
    const dir = tempDir();
    mkdirSync(join(dir, 'certs'));
    const cert = makeCert(join(dir, 'certs'), 'db', ['db.internal']);
    const server = createTlsServer(
      { cert: readFileSync(cert.cert, 'utf8'), key: readFileSync(cert.key, 'utf8') },
      (s) => {
        s.write('tls-db\n');
        s.on('error', () => {});
      },
    );
    server.listen(0, '127.0.6.6');
    await once(server, 'listening');
    cleanups.push(() => server.close());
    const port = (server.address() as AddressInfo).port;
    const lb = await seglb(
      config(`    tls: { servername: db.internal, ca_file: certs/db.crt }
    backends: [{ address: "127.0.6.6:${port}" }]`),
      dir,
    );
    const r = await firstLine(lb.port('db'));
    assert.equal(r.line, 'tls-db');
    r.socket.destroy();
  });
});
