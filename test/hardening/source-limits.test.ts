// Connection limits at accept: the process-wide cap, per-source open-connection caps and
// per-source connection-rate limits (token bucket). A refused connection is reset before a byte is
// read, like a deny, and counted; other sources are unaffected.

import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { describe, test } from 'node:test';
import type { LimitsConfig } from '../../src/config/index.ts';
import { MAX_TRACKED_SOURCES, SourceLimiter, sourceKey } from '../../src/listeners/source-limits.ts';
import { httpRequest, startBackend } from '../support/net.ts';
import { startSeglb } from '../support/seglb.ts';

function limits(perSource: Partial<LimitsConfig['per_source']>, total = 0): LimitsConfig {
  return {
    max_header_bytes: 16384,
    max_connections: 10000,
    backend_connections: 128,
    max_connections_total: total,
    per_source: {
      max_connections: 0,
      rate_per_second: 0,
      burst: 100,
      ipv4_prefix: 32,
      ipv6_prefix: 64,
      exempt: [],
      ...perSource,
    },
  };
}

describe('SourceLimiter', () => {
  test('process-wide cap: admits up to max_connections_total, then refuses until one is released', () => {
    const l = new SourceLimiter();
    const cfg = limits({}, 3);
    assert.equal(
      [1, 2, 3].every(() => l.admitTotal(cfg)),
      true,
    );
    assert.equal(l.admitTotal(cfg), false);
    assert.equal(l.counters.totalRefused, 1);
    l.releaseTotal();
    assert.equal(l.admitTotal(cfg), true);
    assert.equal(l.open, 3);
  });

  test('per-source cap counts each source separately and frees its entry when the last one closes', () => {
    const l = new SourceLimiter();
    const cfg = limits({ max_connections: 2 });
    const a1 = l.admitSource('192.0.2.1', cfg, 0);
    const a2 = l.admitSource('192.0.2.1', cfg, 0);
    assert.equal(l.admitSource('192.0.2.1', cfg, 0), 'source-connections');
    assert.equal(typeof l.admitSource('192.0.2.2', cfg, 0), 'object');
    assert.equal(l.counters.sourceConnectionsRefused, 1);
    assert.ok(a1 && typeof a1 === 'object' && a2 && typeof a2 === 'object');
    l.release(a1, cfg, 0);
    assert.equal(typeof l.admitSource('192.0.2.1', cfg, 0), 'object');
    assert.equal(l.tracked, 2);
  });

  test('token bucket: a burst, then rate_per_second, refilled over time', () => {
    const l = new SourceLimiter();
    const cfg = limits({ rate_per_second: 10, burst: 5 });
    for (let i = 0; i < 5; i++) assert.equal(typeof l.admitSource('198.51.100.9', cfg, 1000), 'object');
    assert.equal(l.admitSource('198.51.100.9', cfg, 1000), 'source-rate');
    assert.equal(l.admitSource('198.51.100.9', cfg, 1050), 'source-rate', 'half a token after 50 ms');
    assert.equal(typeof l.admitSource('198.51.100.9', cfg, 1100), 'object', 'one token after 100 ms');
    assert.equal(l.counters.sourceRateRefused, 2);
    // A long pause refills to burst, never beyond.
    for (let i = 0; i < 5; i++) assert.equal(typeof l.admitSource('198.51.100.9', cfg, 60_000), 'object');
    assert.equal(l.admitSource('198.51.100.9', cfg, 60_000), 'source-rate');
  });

  test('IPv6 sources are counted per /64 by default, IPv4 per address (both configurable)', () => {
    assert.equal(sourceKey('2001:db8:1:2::1', 32, 64), sourceKey('2001:db8:1:2:ffff::9', 32, 64));
    assert.notEqual(sourceKey('2001:db8:1:2::1', 32, 64), sourceKey('2001:db8:1:3::1', 32, 64));
    assert.notEqual(sourceKey('2001:db8:1:2::1', 32, 128), sourceKey('2001:db8:1:2::2', 32, 128));
    assert.equal(sourceKey('10.1.2.3', 32, 64), '10.1.2.3');
    assert.equal(sourceKey('10.1.2.3', 24, 64), sourceKey('10.1.2.200', 24, 64));
    assert.notEqual(sourceKey('10.1.2.3', 24, 64), sourceKey('10.1.3.3', 24, 64));
    const l = new SourceLimiter();
    const cfg = limits({ max_connections: 1 });
    assert.equal(typeof l.admitSource('2001:db8:1:2::1', cfg, 0), 'object');
    assert.equal(l.admitSource('2001:db8:1:2::77', cfg, 0), 'source-connections');
  });

  test('exempt sources are never counted', () => {
    const l = new SourceLimiter();
    const cfg = limits({ max_connections: 1, rate_per_second: 1, burst: 1, exempt: ['203.0.113.0/24'] });
    for (let i = 0; i < 10; i++) assert.equal(l.admitSource('203.0.113.5', cfg, 0), null);
    assert.equal(l.tracked, 0);
  });

  test('the table is bounded: past MAX_TRACKED_SOURCES new sources go uncounted instead of growing it', () => {
    const l = new SourceLimiter();
    const cfg = limits({ rate_per_second: 1, burst: 10 });
    for (let i = 0; i < MAX_TRACKED_SOURCES; i++) {
      const addr = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
      const entry = l.admitSource(addr, cfg, 0);
      assert.ok(entry !== null && typeof entry === 'object');
      l.release(entry, cfg, 0); // closed, but its bucket is not full again yet: still tracked
    }
    assert.equal(l.tracked, MAX_TRACKED_SOURCES);
    assert.equal(l.admitSource('192.0.2.200', cfg, 0), null);
    assert.equal(l.counters.untracked, 1);
    // Once the buckets have refilled (10 s at 1/s), idle entries are dropped and counting resumes.
    assert.equal(typeof l.admitSource('192.0.2.201', cfg, 20_000), 'object');
    assert.ok(l.tracked < 10, String(l.tracked));
  });
});

/** Connects from `localAddress` and reports whether seglb kept (open) or reset the connection. */
async function openFrom(port: number, localAddress: string): Promise<{ socket: Socket; kept: boolean }> {
  const socket = connect({ port, host: '127.0.0.1', localAddress });
  socket.on('error', () => {});
  // A refused connection is reset at once (no byte read), sometimes before 'connect' is even
  // reported; an accepted one stays open.
  const kept = await new Promise<boolean>((resolve) => {
    socket.once('close', () => resolve(false));
    socket.once('connect', () => setTimeout(() => resolve(!socket.destroyed), 150));
  });
  return { socket, kept };
}

const CONFIG = (limitsYaml: string, backend: string) => `
log: { level: silent }
timeouts: { client_header_ms: 5000 }
limits:
${limitsYaml}
segments:
  web:
    vips: [{ listen: "127.0.0.1:0" }, { listen: "127.0.0.1:0" }]
    pool: p
    backend_subnets: [127.0.0.0/8]
    allow: [{ from: [127.0.0.0/8] }]
    trusted_proxies: [127.0.3.3]
pools:
  p:
    backends: [{ address: "${backend}" }]
`;

describe('limits at accept, end to end', () => {
  test('per-source cap: the source over it is reset at accept, other sources still served', async () => {
    const backend = await startBackend('b', '127.0.0.71');
    const lb = await startSeglb(CONFIG('  per_source: { max_connections: 4 }', backend.address));
    const held: Socket[] = [];
    try {
      for (let i = 0; i < 4; i++) {
        const r = await openFrom(lb.port('web', i % 2), '127.0.1.1');
        assert.ok(r.kept, `connection ${i} should be accepted`);
        held.push(r.socket);
      }
      // The fifth, on either VIP: reset before a byte is read.
      const fifth = await openFrom(lb.port('web', 1), '127.0.1.1');
      assert.equal(fifth.kept, false);
      const viaHttp = await httpRequest({ port: lb.port('web'), localAddress: '127.0.1.1' });
      assert.equal(viaHttp.error, 'ECONNRESET');
      // Another source is unaffected, and so is a trusted proxy.
      assert.equal((await httpRequest({ port: lb.port('web'), localAddress: '127.0.1.2' })).status, 200);
      assert.equal((await httpRequest({ port: lb.port('web'), localAddress: '127.0.3.3' })).status, 200);
      const limiter = lb.runtime.shared.sourceLimits;
      assert.ok(limiter);
      assert.equal(limiter.counters.sourceConnectionsRefused, 2);
      assert.equal(backend.connections > 0, true);
      // Closing one frees a slot.
      held.pop()?.destroy();
      await new Promise((r) => setTimeout(r, 50));
      assert.equal((await httpRequest({ port: lb.port('web'), localAddress: '127.0.1.1' })).status, 200);
    } finally {
      for (const s of held) s.destroy();
      await lb.stop();
      await backend.close();
    }
  });

  test('per-source connection rate: a burst, then refusals, then allowed again as tokens refill', async () => {
    const backend = await startBackend('b', '127.0.0.72');
    const lb = await startSeglb(CONFIG('  per_source: { rate_per_second: 5, burst: 5 }', backend.address));
    try {
      const statuses: (number | string)[] = [];
      for (let i = 0; i < 10; i++) {
        const r = await httpRequest({ port: lb.port('web'), localAddress: '127.0.1.3' });
        statuses.push(r.status || (r.error ?? ''));
      }
      assert.deepEqual(statuses.slice(0, 5), [200, 200, 200, 200, 200]);
      assert.ok(statuses.slice(5).includes('ECONNRESET'), statuses.join(','));
      // Another source has its own bucket.
      assert.equal((await httpRequest({ port: lb.port('web'), localAddress: '127.0.1.4' })).status, 200);
      await new Promise((r) => setTimeout(r, 450));
      assert.equal((await httpRequest({ port: lb.port('web'), localAddress: '127.0.1.3' })).status, 200);
      assert.ok((lb.runtime.shared.sourceLimits?.counters.sourceRateRefused ?? 0) >= 1);
    } finally {
      await lb.stop();
      await backend.close();
    }
  });

  test('process-wide cap over all VIPs', async () => {
    const backend = await startBackend('b', '127.0.0.73');
    const lb = await startSeglb(CONFIG('  max_connections_total: 3', backend.address));
    const held: Socket[] = [];
    try {
      for (let i = 0; i < 3; i++) {
        const r = await openFrom(lb.port('web', i % 2), `127.0.2.${i + 1}`);
        assert.ok(r.kept);
        held.push(r.socket);
      }
      const over = await openFrom(lb.port('web', 1), '127.0.2.9');
      assert.equal(over.kept, false);
      assert.equal(lb.runtime.shared.sourceLimits?.counters.totalRefused, 1);
      for (const s of held) s.destroy();
      held.length = 0;
      await new Promise((r) => setTimeout(r, 50));
      assert.equal((await httpRequest({ port: lb.port('web'), localAddress: '127.0.2.9' })).status, 200);
      assert.equal(lb.runtime.shared.sourceLimits?.open, 0);
    } finally {
      for (const s of held) s.destroy();
      await lb.stop();
      await backend.close();
    }
  });
});

describe('per-source limits behind a PROXY protocol peer', () => {
  test('the proxied client is the source that is counted, not the proxy', async () => {
    const backend = await startBackend('b', '127.0.0.74');
    const lb = await startSeglb(`
log: { level: silent }
limits: { per_source: { max_connections: 1 } }
segments:
  db:
    vips: [{ listen: "127.0.0.1:0", protocol: tcp, proxy_protocol: { trusted: [127.0.0.1] } }]
    pool: p
    backend_subnets: [127.0.0.0/8]
    allow: [{ from: [192.0.2.0/24] }]
pools:
  p:
    backends: [{ address: "${backend.address}" }]
`);
    const held: Socket[] = [];
    /** A connection through the "proxy" (127.0.0.1) for client `client`; true when seglb kept it. */
    const viaProxy = (client: string) =>
      new Promise<boolean>((resolve) => {
        const s = connect({ port: lb.port('db'), host: '127.0.0.1' });
        held.push(s);
        s.on('error', () => {});
        s.once('close', () => resolve(false));
        s.once('connect', () => {
          s.write(`PROXY TCP4 ${client} 127.0.0.1 40000 5432\r\n`);
          setTimeout(() => resolve(!s.destroyed), 200);
        });
      });
    try {
      assert.equal(await viaProxy('192.0.2.1'), true);
      assert.equal(await viaProxy('192.0.2.1'), false, 'the same client over the cap');
      assert.equal(await viaProxy('192.0.2.2'), true, 'another client through the same proxy');
      assert.equal(lb.runtime.shared.sourceLimits?.counters.sourceConnectionsRefused, 1);
    } finally {
      for (const s of held) s.destroy();
      await lb.stop();
      await backend.close();
    }
  });
});
