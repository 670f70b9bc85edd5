// TCP VIPs end to end: L4 proxying with half-close, retry on refused backends, idle timeout,
// accept-time refusal.

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { type AddressInfo, createServer, type Server } from 'node:net';
import { describe, test } from 'node:test';
import { closedPort, rawConnect, rawExchange } from '../support/net.ts';
import { startSeglb } from '../support/seglb.ts';

/** A TCP backend: answers `NAME:` + what it received, after the client half-closes. */
async function halfCloseBackend(
  name: string,
  host: string,
): Promise<{ server: Server; port: number; accepted: () => number }> {
  let accepted = 0;
  const server = createServer({ allowHalfOpen: true }, (s) => {
    accepted++;
    const chunks: Buffer[] = [];
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('end', () => {
      // The client's FIN arrived; our direction is still open.
      s.end(`${name}:${Buffer.concat(chunks).toString()}`);
    });
    s.on('error', () => {});
  });
  server.listen(0, host);
  await once(server, 'listening');
  return { server, port: (server.address() as AddressInfo).port, accepted: () => accepted };
}

function cfg(backends: string, extra = ''): string {
  return `
log: { level: silent }
timeouts: { backend_connect_ms: 500 ${extra} }
segments:
  db:
    vips: [{ listen: "127.0.0.1:0", protocol: tcp }]
    pool: p
    backend_subnets: [127.0.0.0/8]
    allow: [{ from: [127.0.0.0/29] }]
pools:
  p:
    retries: 1
    backends: [${backends}]
`;
}

describe('TCP VIP', () => {
  test('bytes flow both ways and a half-close is carried to the backend', async () => {
    const b = await halfCloseBackend('db1', '127.0.0.71');
    const lb = await startSeglb(cfg(`{ address: "127.0.0.71:${b.port}" }`));
    try {
      const s = await rawConnect(lb.port('db'));
      s.write('hello ');
      s.end('world'); // half-close: we can still read
      const chunks: Buffer[] = [];
      s.on('data', (c: Buffer) => chunks.push(c));
      await once(s, 'end');
      assert.equal(Buffer.concat(chunks).toString(), 'db1:hello world');
    } finally {
      await lb.stop();
      b.server.close();
    }
  });

  test('a refused backend is skipped for the next one', async () => {
    const dead = await closedPort('127.0.0.72');
    const b = await halfCloseBackend('alive', '127.0.0.73');
    const lb = await startSeglb(
      cfg(`{ address: "127.0.0.72:${dead}" }, { address: "127.0.0.73:${b.port}" }`),
    );
    try {
      for (let i = 0; i < 4; i++) {
        const s = await rawConnect(lb.port('db'));
        s.end('ping');
        const chunks: Buffer[] = [];
        s.on('data', (c: Buffer) => chunks.push(c));
        await once(s, 'end');
        assert.equal(Buffer.concat(chunks).toString(), 'alive:ping');
      }
      assert.ok((lb.runtime.snapshot.segments.get('db')?.counters.retries ?? 0) >= 1);
    } finally {
      await lb.stop();
      b.server.close();
    }
  });

  test('with no backend reachable the client connection is closed, not left hanging', async () => {
    const dead = await closedPort('127.0.0.74');
    const lb = await startSeglb(cfg(`{ address: "127.0.0.74:${dead}" }`));
    try {
      const r = await rawExchange(lb.port('db'), 'x', { timeoutMs: 3000 });
      assert.notEqual(r.ended, 'timeout');
      assert.equal(r.received, '');
    } finally {
      await lb.stop();
    }
  });

  test('an idle connection is closed after tcp_idle_ms', async () => {
    const b = await halfCloseBackend('idle', '127.0.0.75');
    const lb = await startSeglb(cfg(`{ address: "127.0.0.75:${b.port}" }`, ', tcp_idle_ms: 300'));
    try {
      const start = Date.now();
      const r = await rawExchange(lb.port('db'), 'x', { timeoutMs: 3000 });
      const took = Date.now() - start;
      assert.notEqual(r.ended, 'timeout');
      assert.ok(took >= 250 && took < 2500, `closed after ${took} ms`);
    } finally {
      await lb.stop();
      b.server.close();
    }
  });

  test('a denied source is reset at accept and the backend never sees a connection', async () => {
    const b = await halfCloseBackend('guarded', '127.0.0.76');
    const lb = await startSeglb(cfg(`{ address: "127.0.0.76:${b.port}" }`));
    try {
      const r = await rawExchange(lb.port('db'), 'secret', { localAddress: '127.0.0.9', timeoutMs: 3000 });
      assert.ok(r.ended === 'ECONNRESET' || r.ended === 'EPIPE', `ended with ${r.ended}`);
      assert.equal(b.accepted(), 0);
    } finally {
      await lb.stop();
      b.server.close();
    }
  });
});
