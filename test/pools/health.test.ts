// Active health checks over real sockets on 127.x: TCP and HTTP checks with rise/fall, status
// ranges, body match and Host header, TLS to the backend, jittered start, the outbound check, one
// checker per pool however many segments use it, and state kept across a config change.

import assert from 'node:assert/strict';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { type LoadedConfig, loadConfigText } from '../../src/config/index.ts';
import { createLogger } from '../../src/observe/log.ts';
import { PoolStateRegistry } from '../../src/pools/index.ts';
import { makeCert } from '../support/certs.ts';
import { hitsOf, type PoolBackend, startPoolBackend, waitFor } from '../support/pool-backends.ts';
import { tempDir } from '../support/seglb.ts';

const log = createLogger({ level: 'silent', format: 'json' });
const cleanups: (() => unknown)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

function load(
  pool: string,
  backends: readonly string[],
  opts: { subnets?: string; segments?: number; dir?: string } = {},
): LoadedConfig {
  const segs = Array.from(
    { length: opts.segments ?? 1 },
    (_, i) => `
  s${i}:
    vips: [{ listen: "127.0.0.1:0" }]
    pool: p
    backend_subnets: [${opts.subnets ?? '127.0.0.0/8'}]
    allow: [{ from: [any] }]`,
  ).join('');
  const text = `
log: { level: silent }
segments:${segs}
pools:
  p:
${pool}
    backends: [${backends.map((a) => `{ address: "${a}" }`).join(', ')}]
`;
  return loadConfigText(text, join(opts.dir ?? '/tmp', 'seglb.yaml'));
}

async function backend(
  name: string,
  host: string,
  tls?: { cert: string; key: string },
): Promise<PoolBackend> {
  const b = await startPoolBackend(name, host, tls);
  cleanups.push(() => b.close());
  return b;
}

function registry(loaded: LoadedConfig): PoolStateRegistry {
  const r = new PoolStateRegistry(log);
  cleanups.push(() => r.close());
  r.commit(loaded);
  return r;
}

function healthOf(r: PoolStateRegistry, address: string) {
  return r.get('p')?.find(address);
}

describe('health checks', () => {
  it('HTTP: fall failures take a backend down, rise successes bring it back', async () => {
    const b = await backend('h1', '127.0.1.1');
    const r = registry(
      load(
        '    health_check: { type: http, interval_ms: 20, timeout_ms: 200, rise: 2, fall: 3, http: { path: /health } }',
        [b.address],
      ),
    );
    const s = healthOf(r, b.address)!;
    assert.ok((await waitFor(() => s.checkStreakOk >= 2)) >= 0);
    assert.equal(s.health, 'up');
    b.healthStatus = 503;
    assert.ok((await waitFor(() => s.health === 'down')) >= 0, 'down after 3 failures');
    assert.match(s.lastCheck?.detail ?? '', /HTTP 503 \(expected 200-399\)/);
    assert.equal(s.checkStreakFailed >= 3, true);
    b.healthStatus = 200;
    assert.ok((await waitFor(() => s.health === 'up')) >= 0);
    assert.equal(r.get('p')?.counters.healthDown, 1);
    assert.equal(r.get('p')?.counters.healthUp, 1);
    assert.equal(s.transitions, 2);
  });

  it('HTTP: expected status ranges, body match, method and Host header', async () => {
    const b = await backend('h2', '127.0.1.2');
    const r = registry(
      load(
        `    health_check:
      type: http
      interval_ms: 20
      fall: 1
      rise: 1
      http: { method: GET, path: /health, host: health.example, expect_status: ["204", "200-200"], body_contains: "h2 ok" }`,
        [b.address],
      ),
    );
    const s = healthOf(r, b.address)!;
    assert.ok((await waitFor(() => s.lastCheck?.ok === true)) >= 0, String(s.lastCheck?.detail));
    assert.deepEqual(b.lastHealthCheck, { method: 'GET', host: 'health.example' });
    b.healthStatus = 201; // outside the ranges
    assert.ok((await waitFor(() => s.health === 'down')) >= 0);
    b.healthStatus = 200;
    assert.ok((await waitFor(() => s.health === 'up')) >= 0);
    const body = load(
      '    health_check: { type: http, interval_ms: 20, fall: 1, http: { path: /health, body_contains: nope } }',
      [b.address],
    );
    const r2 = registry(body);
    const s2 = healthOf(r2, b.address)!;
    assert.ok((await waitFor(() => s2.health === 'down')) >= 0);
    assert.match(s2.lastCheck?.detail ?? '', /body lacks/);
  });

  it('TCP: a refused connection counts as a failure; a listening port as a success', async () => {
    const b = await backend('t1', '127.0.1.3');
    const r = registry(
      load('    health_check: { interval_ms: 20, timeout_ms: 200, rise: 1, fall: 2 }', [b.address]),
    );
    const s = healthOf(r, b.address)!;
    assert.ok((await waitFor(() => s.lastCheck?.ok === true)) >= 0);
    await b.kill();
    assert.ok((await waitFor(() => s.health === 'down')) >= 0);
    assert.equal(s.lastCheck?.detail, 'ECONNREFUSED');
    await b.restart();
    assert.ok((await waitFor(() => s.health === 'up')) >= 0);
  });

  it('TLS: the check verifies the backend certificate against ca_file and servername', async () => {
    const dir = tempDir();
    mkdirSync(join(dir, 'certs'));
    const cert = makeCert(join(dir, 'certs'), 'backend', ['backend.internal']);
    const b = await backend('tls', '127.0.1.4', {
      cert: readFileSync(cert.cert, 'utf8'),
      key: readFileSync(cert.key, 'utf8'),
    });
    const good = registry(
      load(
        `    tls: { servername: backend.internal, ca_file: certs/backend.crt }
    health_check: { type: http, interval_ms: 20, fall: 1, rise: 1, http: { path: /health } }`,
        [b.address],
        { dir },
      ),
    );
    const s = healthOf(good, b.address)!;
    assert.ok((await waitFor(() => s.lastCheck?.ok === true)) >= 0, String(s.lastCheck?.detail));
    const wrongName = registry(
      load(
        `    tls: { servername: other.internal, ca_file: certs/backend.crt }
    health_check: { type: tcp, interval_ms: 20, fall: 1, http: {} }`,
        [b.address],
        { dir },
      ),
    );
    const s2 = healthOf(wrongName, b.address)!;
    assert.ok((await waitFor(() => s2.health === 'down')) >= 0);
    assert.match(s2.lastCheck?.detail ?? '', /ERR_TLS_CERT_ALTNAME_INVALID|altname/i);
  });

  it('checks only destinations inside backend_subnets (the outbound check runs first)', async () => {
    const b = await backend('outside', '127.0.0.1');
    // A hostname is checked at dial time, on the address it resolves to (config load cannot).
    const address = `localhost:${b.port}`;
    const r = registry(
      load('    health_check: { interval_ms: 20, fall: 1 }', [address], { subnets: '127.0.2.0/24' }),
    );
    const s = healthOf(r, address)!;
    assert.ok((await waitFor(() => s.health === 'down')) >= 0);
    assert.equal(s.lastCheck?.detail, 'SEGLB_POOL_OUTBOUND_DENIED');
    assert.equal(b.connections, 0, 'no SYN to a destination outside the segment');
  });

  it('checks a pool used by three segments once, with a jittered start', async () => {
    const bs = await Promise.all([1, 2, 3, 4, 5].map((i) => backend(`j${i}`, `127.0.1.${10 + i}`)));
    const firstAt = new Map<string, number>();
    const start = Date.now();
    const loaded = load(
      '    health_check: { type: http, interval_ms: 200, jitter_percent: 0, http: { path: /health } }',
      bs.map((b) => b.address),
      { segments: 3 },
    );
    const r = registry(loaded);
    const poll = setInterval(() => {
      for (const b of bs)
        if (hitsOf(b, '/health') > 0 && !firstAt.has(b.name)) firstAt.set(b.name, Date.now() - start);
    }, 2);
    await new Promise((res) => setTimeout(res, 1050));
    clearInterval(poll);
    for (const b of bs) {
      const n = hitsOf(b, '/health');
      assert.ok(n >= 4 && n <= 6, `${b.name}: ${n} checks in ~1 s at 200 ms (one series, not three)`);
    }
    const times = [...firstAt.values()].sort((a, b) => a - b);
    assert.equal(times.length, 5);
    assert.ok(
      times.every((t) => t <= 230),
      `first checks within the first interval: ${times}`,
    );
    assert.ok(times[4]! - times[0]! > 20, `first checks spread out: ${times}`);
    // Re-committing the same config keeps the running checker (no burst of new checks).
    const checker = r.get('p')?.checker;
    r.commit(loaded);
    assert.equal(r.get('p')?.checker, checker);
  });
});
