// HTTP VIPs end to end over loopback: balancing, headers, errors (502/503/504), retries, streaming,
// WebSocket upgrades, client limits.

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { WebSocketServer } from 'ws';
import { closedPort, httpRequest, rawExchange, startBackend, type TestBackend } from '../support/net.ts';
import { startSeglb, type TestSeglb } from '../support/seglb.ts';

function config(pool: string, extra = ''): string {
  return `
log: { level: silent }
timeouts: { backend_response_ms: 500, client_header_ms: 1000 }
segments:
  web:
    vips: [{ listen: "127.0.0.1:0" }]
    pool: p
    backend_subnets: [127.0.0.0/8]
    allow: [{ from: [127.0.0.0/8] }]
${extra}
pools:
  p:
${pool}
`;
}

describe('HTTP VIP: balancing and forwarding', () => {
  let a: TestBackend;
  let b: TestBackend;
  let c: TestBackend;
  let lb: TestSeglb;
  before(async () => {
    [a, b, c] = await Promise.all([
      startBackend('a', '127.0.0.11'),
      startBackend('b', '127.0.0.12'),
      startBackend('c', '127.0.0.13'),
    ]);
    lb = await startSeglb(
      config(`    algorithm: round_robin
    backends: [{ address: "${a.address}" }, { address: "${b.address}" }, { address: "${c.address}" }]`),
    );
  });
  after(async () => {
    await lb.stop();
    await Promise.all([a.close(), b.close(), c.close()]);
  });

  test('round robin visits every backend in turn', async () => {
    const names: string[] = [];
    for (let i = 0; i < 6; i++) names.push((await httpRequest({ port: lb.port('web') })).body);
    assert.deepEqual(names.slice(0, 3).sort(), ['a', 'b', 'c']);
    assert.deepEqual(names.slice(3), names.slice(0, 3));
  });

  test('hop-by-hop headers are removed and X-Forwarded-* set', async () => {
    const res = await httpRequest({
      port: lb.port('web'),
      path: '/hdr',
      localAddress: '127.0.0.2',
      headers: {
        Connection: 'keep-alive, X-Secret-Hop',
        'X-Secret-Hop': 'drop me',
        'Keep-Alive': 'timeout=5',
        TE: 'trailers',
        'X-Forwarded-For': '6.6.6.6',
        'X-Custom': 'kept',
        Host: 'app.example',
      },
    });
    assert.equal(res.status, 200);
    const seen = [a, b, c].flatMap((x) => x.seen).find((s) => s.url === '/hdr');
    assert.ok(seen);
    assert.equal(seen.headers['x-secret-hop'], undefined);
    assert.equal(seen.headers['keep-alive'], undefined);
    assert.equal(seen.headers.te, undefined);
    assert.equal(seen.headers['x-custom'], 'kept');
    assert.equal(
      seen.headers['x-forwarded-for'],
      '127.0.0.2',
      'an untrusted client cannot inject X-Forwarded-For',
    );
    assert.equal(seen.headers['x-forwarded-proto'], 'http');
    assert.equal(seen.headers['x-forwarded-host'], 'app.example');
    assert.equal(seen.headers.host, 'app.example');
  });

  test('request bodies are forwarded (content-length and chunked)', async () => {
    const body = 'x'.repeat(100_000);
    const res = await httpRequest({ port: lb.port('web'), path: '/echo', method: 'POST', body });
    assert.equal(res.status, 200);
    assert.equal(res.body, body);
    const chunked = await new Promise<string>((resolve, reject) => {
      const req = request(
        { port: lb.port('web'), host: '127.0.0.1', path: '/echo', method: 'PUT', agent: false },
        (res) => {
          let got = '';
          res.setEncoding('utf8');
          res.on('data', (d: string) => {
            got += d;
          });
          res.on('end', () => resolve(got));
        },
      );
      req.on('error', reject);
      req.write('part1-');
      setTimeout(() => req.end('part2'), 20);
    });
    assert.equal(chunked, 'part1-part2');
  });

  test('backend status codes and response headers pass through', async () => {
    const res = await httpRequest({ port: lb.port('web'), path: '/status/418' });
    assert.equal(res.status, 418);
    assert.match(String(res.headers['x-backend']), /^[abc]$/);
  });

  test('a malformed request gets 400 and the process keeps serving', async () => {
    const r = await rawExchange(
      lb.port('web'),
      'GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n',
    );
    assert.match(r.received, /^HTTP\/1\.1 400/);
    const dupHost = await rawExchange(lb.port('web'), 'GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n');
    assert.match(dupHost.received, /^HTTP\/1\.1 400/);
    const r2 = await rawExchange(lb.port('web'), 'GARBAGE\r\n\r\n');
    assert.match(r2.received, /^HTTP\/1\.1 400/);
    assert.equal((await httpRequest({ port: lb.port('web') })).status, 200);
  });

  test('a client that never finishes its request head is cut off after client_header_ms (slowloris)', async () => {
    const start = Date.now();
    const r = await rawExchange(lb.port('web'), 'GET / HTTP/1.1\r\nHost: x\r\nX-Slow: 1\r\n', {
      timeoutMs: 5000,
    });
    const took = Date.now() - start;
    assert.notEqual(r.ended, 'timeout', 'seglb must close the connection');
    assert.ok(took >= 900 && took < 3000, `closed after ${took} ms (client_header_ms is 1000)`);
    assert.match(r.received, /^(HTTP\/1\.1 408|)/);
  });

  test('oversized request head gets 431', async () => {
    const res = await httpRequest({ port: lb.port('web'), headers: { 'x-big': 'y'.repeat(20_000) } });
    assert.equal(res.status, 431);
  });
});

describe('HTTP VIP: weighted round robin distribution', () => {
  test('weights 3:1 give a 3:1 split within tolerance', async () => {
    const [a, b] = await Promise.all([
      startBackend('heavy', '127.0.0.21'),
      startBackend('light', '127.0.0.22'),
    ]);
    const lb = await startSeglb(
      config(`    algorithm: weighted_round_robin
    backends: [{ address: "${a.address}", weight: 3 }, { address: "${b.address}", weight: 1 }]`),
    );
    try {
      const counts: Record<string, number> = { heavy: 0, light: 0 };
      for (let i = 0; i < 200; i++) {
        const r = await httpRequest({ port: lb.port('web') });
        counts[r.body] = (counts[r.body] ?? 0) + 1;
      }
      assert.ok(Math.abs((counts.heavy ?? 0) - 150) <= 10, `heavy got ${counts.heavy}`);
      assert.ok(Math.abs((counts.light ?? 0) - 50) <= 10, `light got ${counts.light}`);
    } finally {
      await lb.stop();
      await Promise.all([a.close(), b.close()]);
    }
  });
});

describe('HTTP VIP: least connections', () => {
  test('a slow backend gets fewer of the concurrent requests', async () => {
    const [a, b] = await Promise.all([startBackend('a', '127.0.0.23'), startBackend('b', '127.0.0.24')]);
    const lb = await startSeglb(
      config(`    algorithm: least_connections
    backends: [{ address: "${a.address}" }, { address: "${b.address}" }]`),
    );
    try {
      // The first request pins one backend for 400 ms; the following ones must go to the other.
      const slow = httpRequest({ port: lb.port('web'), path: '/sleep/400' });
      await new Promise((r) => setTimeout(r, 50));
      const fast: string[] = [];
      for (let i = 0; i < 5; i++) fast.push((await httpRequest({ port: lb.port('web') })).body);
      const slowRes = await slow;
      assert.equal(slowRes.status, 200);
      assert.ok(
        fast.every((n) => n !== slowRes.body),
        `fast requests went to ${fast.join(',')} while ${slowRes.body} was busy`,
      );
    } finally {
      await lb.stop();
      await Promise.all([a.close(), b.close()]);
    }
  });
});

describe('HTTP VIP: failures', () => {
  test('a backend that refuses connections is skipped (retried on another)', async () => {
    const good = await startBackend('good', '127.0.0.31');
    const dead = await closedPort('127.0.0.32');
    const lb = await startSeglb(
      config(`    backends: [{ address: "127.0.0.32:${dead}" }, { address: "${good.address}" }]
    retries: 1`),
    );
    try {
      for (let i = 0; i < 6; i++) {
        const r = await httpRequest({
          port: lb.port('web'),
          method: i % 2 ? 'POST' : 'GET',
          body: i % 2 ? 'b' : undefined,
        });
        assert.equal(r.status, 200);
        assert.equal(r.body, 'good');
      }
      const seg = lb.runtime.snapshot.segments.get('web');
      assert.ok((seg?.counters.retries ?? 0) >= 3);
    } finally {
      await lb.stop();
      await good.close();
    }
  });

  test('502 when no backend answers, naming the reason', async () => {
    const dead = await closedPort('127.0.0.33');
    const lb = await startSeglb(config(`    backends: [{ address: "127.0.0.33:${dead}" }]`));
    try {
      const r = await httpRequest({ port: lb.port('web') });
      assert.equal(r.status, 502);
      assert.match(r.body, /refused/);
      assert.ok(r.headers['x-request-id']);
    } finally {
      await lb.stop();
    }
  });

  test('503 when the pool has no usable backend', async () => {
    const a = await startBackend('a', '127.0.0.34');
    const lb = await startSeglb(config(`    backends: [{ address: "${a.address}" }]`));
    try {
      lb.runtime.snapshot.segments.get('web')?.pool.setAdminState(0, 'maintenance');
      const r = await httpRequest({ port: lb.port('web') });
      assert.equal(r.status, 503);
      assert.match(r.body, /no usable backend/);
      assert.equal(a.seen.length, 0);
    } finally {
      await lb.stop();
      await a.close();
    }
  });

  test('504 when the backend does not answer in time', async () => {
    const a = await startBackend('a', '127.0.0.35');
    const lb = await startSeglb(config(`    backends: [{ address: "${a.address}" }]`));
    try {
      const r = await httpRequest({ port: lb.port('web'), path: '/sleep/2000' });
      assert.equal(r.status, 504);
      assert.match(r.body, /timeout/);
    } finally {
      await lb.stop();
      await a.close();
    }
  });

  test('a backend dying mid-response closes the client connection (no hang, no crash)', async () => {
    const broken = createServer((_req, res) => {
      res.writeHead(200, { 'content-length': '1000' });
      res.write('partial');
      setTimeout(() => res.socket?.destroy(), 20);
    });
    broken.listen(0, '127.0.0.36');
    await once(broken, 'listening');
    const port = (broken.address() as AddressInfo).port;
    const lb = await startSeglb(config(`    backends: [{ address: "127.0.0.36:${port}" }]`));
    try {
      const r = await httpRequest({ port: lb.port('web') });
      assert.equal(r.status === 0 || r.error !== undefined || r.body.length < 1000, true);
      const again = await httpRequest({ port: lb.port('web'), timeoutMs: 2000 });
      assert.ok(again.status === 0 || again.body.length < 1000);
    } finally {
      await lb.stop();
      broken.close();
    }
  });
});

describe('HTTP VIP: streaming', () => {
  test('a 1 GiB request body and a 1 GiB response stream through with bounded memory', async () => {
    const a = await startBackend('a', '127.0.0.41');
    const lb = await startSeglb(config(`    backends: [{ address: "${a.address}" }]`));
    try {
      const GiB = 1024 * 1024 * 1024;
      const rssBefore = process.memoryUsage().rss;
      let peak = rssBefore;
      const sampler = setInterval(() => {
        peak = Math.max(peak, process.memoryUsage().rss);
      }, 50);
      // Response: 1 GiB from the backend, counted by the client.
      const received = await new Promise<number>((resolve, reject) => {
        const req = request(
          { port: lb.port('web'), host: '127.0.0.1', path: `/big/${GiB}`, agent: false },
          (res) => {
            let n = 0;
            res.on('data', (c: Buffer) => {
              n += c.length;
            });
            res.on('end', () => resolve(n));
            res.on('error', reject);
          },
        );
        req.on('error', reject);
        req.end();
      });
      assert.equal(received, GiB);
      // Request: 1 GiB upload, counted by the backend.
      const status = await new Promise<number>((resolve, reject) => {
        const req = request(
          {
            port: lb.port('web'),
            host: '127.0.0.1',
            path: '/upload',
            method: 'POST',
            agent: false,
            headers: { 'content-length': GiB },
          },
          (res) => {
            res.resume();
            res.on('end', () => resolve(res.statusCode ?? 0));
          },
        );
        req.on('error', reject);
        const chunk = Buffer.alloc(256 * 1024, 98);
        let left = GiB;
        const pump = () => {
          while (left > 0) {
            left -= chunk.length;
            if (!req.write(chunk)) {
              req.once('drain', pump);
              return;
            }
          }
          req.end();
        };
        pump();
      });
      clearInterval(sampler);
      assert.equal(status, 200);
      assert.equal(a.seen.find((s) => s.url === '/upload')?.bodyBytes, GiB);
      // The test process holds client, proxy and backend: all three stream, so growth stays far below 1 GiB.
      const growthMiB = (peak - rssBefore) / 1024 / 1024;
      assert.ok(growthMiB < 200, `RSS grew by ${growthMiB.toFixed(0)} MiB while streaming 2 GiB`);
    } finally {
      await lb.stop();
      await a.close();
    }
  });
});

describe('HTTP VIP: WebSocket', () => {
  test('WebSocket echo through the proxy (http-proxy-3 upgrade path)', async () => {
    const wss = new WebSocketServer({ host: '127.0.0.51', port: 0 });
    await once(wss, 'listening');
    wss.on('connection', (ws, req) => {
      ws.on('message', (m) => ws.send(`echo:${m.toString()} xff=${req.headers['x-forwarded-for']}`));
    });
    const port = (wss.address() as AddressInfo).port;
    const lb = await startSeglb(config(`    backends: [{ address: "127.0.0.51:${port}" }]`));
    try {
      const ws = new WebSocket(`ws://127.0.0.1:${lb.port('web')}/chat`);
      await new Promise<void>((resolve, reject) => {
        ws.onopen = () => resolve();
        ws.onerror = () => reject(new Error('websocket failed to open'));
      });
      const reply = new Promise<string>((resolve) => {
        ws.onmessage = (e) => resolve(String(e.data));
      });
      ws.send('hello');
      assert.equal(await reply, 'echo:hello xff=127.0.0.1');
      ws.close();
    } finally {
      await lb.stop();
      wss.close();
    }
  });
});
