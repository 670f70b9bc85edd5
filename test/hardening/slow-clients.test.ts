// Slow clients: slowloris (slow headers), slow body (R-U-Dead-Yet) and slow read, first with plain
// Node sockets (always run), then with slowhttptest (Debian package `slowhttptest`; skipped with a
// message when it is not installed). While each attack runs, a legitimate client from another
// source keeps sending requests: every one must succeed, with sane latency.

import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:http';
import { connect, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { httpRequest, rawExchange, startBackend, type TestBackend } from '../support/net.ts';
import { startSeglb, type TestSeglb } from '../support/seglb.ts';

const LEGIT_SOURCE = '127.0.0.2';

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))] as number;
}

/** Sends requests from the legitimate source until `stop` resolves; returns statuses and latencies. */
async function legitimateTraffic(
  port: number,
  stop: Promise<void>,
): Promise<{ ok: number; failed: string[]; latencies: number[] }> {
  let done = false;
  stop.then(() => {
    done = true;
  });
  const latencies: number[] = [];
  const failed: string[] = [];
  let ok = 0;
  while (!done) {
    const t0 = performance.now();
    const r = await httpRequest({ port, localAddress: LEGIT_SOURCE, path: '/', timeoutMs: 3000 });
    latencies.push(performance.now() - t0);
    if (r.status === 200) ok++;
    else failed.push(r.error ?? String(r.status));
    await new Promise((res) => setTimeout(res, 10));
  }
  latencies.sort((a, b) => a - b);
  return { ok, failed, latencies };
}

/** Statistics of one attack: connections opened, closed by seglb, and how long they lived. */
interface AttackStats {
  opened: number;
  closed: number;
  lifetimes: number[];
}

/**
 * Keeps up to `concurrency` attack connections open from `source` until `stop`, re-opening each one
 * seglb closes. `drive` runs the attack on one connected socket.
 */
function runAttack(
  port: number,
  source: string,
  concurrency: number,
  stop: Promise<void>,
  drive: (s: Socket) => void,
): Promise<AttackStats> {
  const stats: AttackStats = { opened: 0, closed: 0, lifetimes: [] };
  let done = false;
  const open = new Set<Socket>();
  return new Promise((resolve) => {
    const launch = () => {
      if (done) return;
      const started = performance.now();
      const s = connect({ port, host: '127.0.0.1', localAddress: source });
      open.add(s);
      stats.opened++;
      s.on('error', () => {});
      s.on('connect', () => drive(s));
      s.on('close', () => {
        open.delete(s);
        if (done) return;
        stats.closed++;
        stats.lifetimes.push(performance.now() - started);
        setTimeout(launch, 20);
      });
    };
    for (let i = 0; i < concurrency; i++) launch();
    stop.then(() => {
      done = true;
      for (const s of open) s.destroy();
      resolve(stats);
    });
  });
}

/** Slowloris: the request head, one header line at a time, every 200 ms, never finished. */
function slowHeaders(s: Socket): void {
  s.write('GET / HTTP/1.1\r\nHost: x\r\n');
  const timer = setInterval(() => s.write(`X-Slow-${Math.random().toString(36).slice(2)}: 1\r\n`), 200);
  s.on('close', () => clearInterval(timer));
}

/** Slow body: a 1 MB Content-Length announced, then one byte every 1.5 s. */
function slowBody(s: Socket): void {
  s.write('POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\nstart');
  const timer = setInterval(() => s.write('x'), 1500);
  s.on('close', () => clearInterval(timer));
}

/** Slow body, trickling: one byte every 100 ms, never stalled long enough for client_stall_ms. */
function tricklingBody(s: Socket): void {
  s.write('POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n');
  const timer = setInterval(() => s.write('x'), 100);
  s.on('close', () => clearInterval(timer));
}

/**
 * Slow read: asks for 64 MB and reads nothing for 2 s (a paused socket cannot notice a reset), then
 * drains what is left: a connection seglb cut ends long before 64 MB.
 */
function slowRead(s: Socket): void {
  s.pause();
  s.write('GET /big/67108864 HTTP/1.1\r\nHost: x\r\n\r\n');
  let received = 0;
  s.on('data', (d: Buffer) => {
    received += d.length;
  });
  const timer = setTimeout(() => s.resume(), 2000);
  s.on('close', () => {
    clearTimeout(timer);
    (s as Socket & { received?: number }).received = received;
  });
}

describe('slow clients (Node sockets): legitimate traffic keeps flowing', () => {
  let backend: TestBackend;
  let lb: TestSeglb;
  let baselineP50 = 0;
  let baselineP99 = 0;
  before(async () => {
    backend = await startBackend('b', '127.0.0.81');
    lb = await startSeglb(`
log: { level: silent }
timeouts: { client_header_ms: 1000, client_stall_ms: 700, client_request_ms: 2500, client_idle_ms: 1000 }
limits: { per_source: { max_connections: 20 } }
segments:
  web:
    vips: [{ listen: "127.0.0.1:0" }]
    pool: p
    backend_subnets: [127.0.0.0/8]
    allow: [{ from: [127.0.0.0/8] }]
pools:
  p:
    backends: [{ address: "${backend.address}" }]
`);
    const base = await legitimateTraffic(lb.port('web'), new Promise((r) => setTimeout(r, 800)));
    baselineP50 = percentile(base.latencies, 50);
    baselineP99 = percentile(base.latencies, 99);
  });
  after(async () => {
    await lb.stop();
    await backend.close();
  });

  async function underAttack(
    name: string,
    attacks: { source: string; concurrency: number; drive: (s: Socket) => void }[],
    ms: number,
  ): Promise<AttackStats[]> {
    const stop = new Promise<void>((r) => setTimeout(r, ms));
    const [legit, ...stats] = await Promise.all([
      legitimateTraffic(lb.port('web'), stop),
      ...attacks.map((a) => runAttack(lb.port('web'), a.source, a.concurrency, stop, a.drive)),
    ]);
    const p50 = percentile(legit.latencies, 50);
    const p99 = percentile(legit.latencies, 99);
    process.stdout.write(
      `# ${name}: legitimate ${legit.ok} ok, ${legit.failed.length} failed; p50 ${p50.toFixed(1)} ms, p99 ${p99.toFixed(1)} ms (baseline p99 ${baselineP99.toFixed(1)} ms); attack connections opened ${stats.map((s) => s.opened).join('/')}, closed by seglb ${stats.map((s) => s.closed).join('/')}\n`,
    );
    assert.deepEqual(legit.failed, [], `${name}: legitimate requests failed`);
    assert.ok(legit.ok >= 20, `${name}: only ${legit.ok} legitimate requests went through`);
    // Sane, not fast: the machine is shared (attackers, seglb, backend and this client on 2 cores).
    assert.ok(p50 < Math.max(50, baselineP50 * 10), `${name}: legitimate p50 ${p50.toFixed(1)} ms`);
    assert.ok(p99 < Math.max(750, baselineP99 * 20), `${name}: legitimate p99 ${p99.toFixed(1)} ms`);
    return stats;
  }

  test('slowloris: heads never finished are cut at client_header_ms; the source is capped at 20', async () => {
    const refusedBefore = lb.runtime.shared.sourceLimits?.counters.sourceConnectionsRefused ?? 0;
    const [s] = await underAttack(
      'slowloris',
      [{ source: '127.0.0.21', concurrency: 60, drive: slowHeaders }],
      3000,
    );
    assert.ok(s);
    const refused = (lb.runtime.shared.sourceLimits?.counters.sourceConnectionsRefused ?? 0) - refusedBefore;
    assert.ok(refused >= 40, `per-source cap refused ${refused}`);
    // The ones that got in were closed after about client_header_ms, not left open.
    const longLived = s.lifetimes.filter((t) => t > 150);
    assert.ok(longLived.length >= 10, 'some slowloris connections were accepted');
    assert.ok(Math.max(...longLived) < 2600, `lived up to ${Math.max(...longLived).toFixed(0)} ms`);
  });

  test('slow body: a stalled upload is cut at client_stall_ms, a trickling one at client_request_ms', async () => {
    const stalledBefore = lb.runtime.shared.counters.clientStalled ?? 0;
    const [stalled, trickling] = await underAttack(
      'slow body',
      [
        { source: '127.0.0.22', concurrency: 20, drive: slowBody },
        { source: '127.0.0.24', concurrency: 20, drive: tricklingBody },
      ],
      4000,
    );
    assert.ok(stalled && trickling);
    assert.ok(stalled.closed >= 20, `stalled uploads closed: ${stalled.closed}`);
    assert.ok(Math.max(...stalled.lifetimes) < 2000, `stalled lived ${Math.max(...stalled.lifetimes)} ms`);
    assert.ok((lb.runtime.shared.counters.clientStalled ?? 0) - stalledBefore >= 20);
    assert.ok(trickling.closed >= 20, `trickling uploads closed: ${trickling.closed}`);
    assert.ok(Math.max(...trickling.lifetimes) < 4000);
  });

  test('slow read: a client that does not read its response is cut at client_stall_ms', async () => {
    const stalledBefore = lb.runtime.shared.counters.clientStalled ?? 0;
    // 10 readers: each makes seglb fill ~10 MB of loopback socket buffers before it stalls.
    const [s] = await underAttack(
      'slow read',
      [{ source: '127.0.0.23', concurrency: 10, drive: slowRead }],
      3500,
    );
    assert.ok(s);
    assert.ok(s.closed >= 10, `slow readers closed: ${s.closed}`);
    // Paused for 2 s, then they find the connection already reset (not 64 MB waiting for them).
    assert.ok(Math.max(...s.lifetimes) < 3200, `slow readers lived up to ${Math.max(...s.lifetimes)} ms`);
    assert.ok((lb.runtime.shared.counters.clientStalled ?? 0) - stalledBefore >= 10);
  });

  test('afterwards nothing is left behind: no backend request in flight, no counted connection', async () => {
    await new Promise((r) => setTimeout(r, 300));
    const pool = lb.runtime.snapshot.segments.get('web')?.pool;
    assert.equal(pool?.backends[0]?.inflight, 0);
    assert.equal(lb.runtime.shared.sourceLimits?.open, 0);
    assert.equal(lb.runtime.shared.sourceLimits?.tracked, 0);
    assert.equal((await httpRequest({ port: lb.port('web'), localAddress: LEGIT_SOURCE })).status, 200);
  });
});

function which(cmd: string): string | null {
  try {
    return execFileSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' }).trim() || null;
  } catch {
    return null;
  }
}

const SLOWHTTPTEST = which('slowhttptest');
/** slowhttptest colours its report; the escape sequences are stripped for the diagnostic line. */
const ANSI_COLOUR = new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*m`, 'g');

describe('slow clients (slowhttptest)', {
  skip: SLOWHTTPTEST
    ? false
    : 'slowhttptest is not installed (apt-get install -y slowhttptest); the Node-socket attacks above still ran',
}, () => {
  let backend: TestBackend;
  let lb: TestSeglb;
  before(async () => {
    backend = await startBackend('b', '127.0.0.82');
    // The tool connects from 127.0.0.1 only, 300 connections: the default per-source cap (100, below
    // backend_connections) refuses most, and the timeouts cut the ones it lets in.
    lb = await startSeglb(`
log: { level: silent }
timeouts: { client_header_ms: 1500, client_stall_ms: 1000, client_request_ms: 3000, client_idle_ms: 1000 }
limits: { per_source: { max_connections: 100 } }
segments:
  web:
    vips: [{ listen: "127.0.0.1:0" }]
    pool: p
    backend_subnets: [127.0.0.0/8]
    allow: [{ from: [127.0.0.0/8] }]
pools:
  p:
    backends: [{ address: "${backend.address}" }]
`);
  });
  after(async () => {
    await lb.stop();
    await backend.close();
  });

  /** Runs slowhttptest for `seconds` with `args`; resolves with its last status lines. */
  function slowhttptest(args: readonly string[], seconds: number): Promise<string> {
    return new Promise((resolve) => {
      const child = spawn(SLOWHTTPTEST as string, [...args, '-l', String(seconds), '-p', '2'], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
      });
      child.stderr.on('data', (d: Buffer) => {
        out += d.toString();
      });
      const killer = setTimeout(() => child.kill('SIGKILL'), (seconds + 10) * 1000);
      child.on('exit', () => {
        clearTimeout(killer);
        resolve(out);
      });
    });
  }

  for (const [name, flags, path] of [
    ['slowloris (-H)', ['-H', '-i', '1', '-x', '24'], '/'],
    ['slow body (-B)', ['-B', '-i', '2', '-s', '100000'], '/upload'],
    ['slow read (-X)', ['-X', '-k', '4', '-n', '2', '-w', '16', '-y', '64', '-z', '16'], '/big/4000000'],
  ] as const) {
    test(`${name}: legitimate requests keep succeeding`, async () => {
      const url = `http://127.0.0.1:${lb.port('web')}${path}`;
      const seconds = 5;
      const tool = slowhttptest([...flags, '-c', '300', '-r', '150', '-u', url], seconds);
      await new Promise((r) => setTimeout(r, 1000)); // let the attack build up
      const legit = await legitimateTraffic(
        lb.port('web'),
        new Promise((r) => setTimeout(r, (seconds - 1.5) * 1000)),
      );
      const out = await tool;
      const last = out
        .split('\n')
        .filter((l) => /connected|closed|pending|available/i.test(l))
        .slice(-4)
        .map((l) => l.replace(ANSI_COLOUR, '').trim())
        .join('; ');
      const p99 = percentile(legit.latencies, 99);
      process.stdout.write(
        `# slowhttptest ${name}: legitimate ${legit.ok} ok, ${legit.failed.length} failed, p99 ${p99.toFixed(1)} ms; tool: ${last}\n`,
      );
      assert.deepEqual(legit.failed, []);
      assert.ok(legit.ok >= 20);
      // Served during the 5 s attack, not queued behind it. Not a speed target: the bound is half
      // the attack's length, so a 2-core machine shared with other work (p99 1.8 s measured once,
      // 7-20 ms when quiet) does not fail it, and a proxy that stalls for the attack does.
      assert.ok(p99 < (seconds * 1000) / 2, `legitimate p99 ${p99.toFixed(1)} ms`);
    });
  }
});

describe('pipelining', () => {
  test('a client pipelining 8 requests holds one backend request at a time, answered in order', async () => {
    let inFlight = 0;
    let maxInFlight = 0;
    const backend = createServer((req, res) => {
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      setTimeout(() => {
        inFlight--;
        res.end(req.url);
      }, 30);
    });
    backend.listen(0, '127.0.0.83');
    await once(backend, 'listening');
    const port = (backend.address() as { port: number }).port;
    const lb = await startSeglb(`
log: { level: silent }
segments:
  web:
    vips: [{ listen: "127.0.0.1:0" }]
    pool: p
    backend_subnets: [127.0.0.0/8]
    allow: [{ from: [127.0.0.0/8] }]
pools:
  p:
    backends: [{ address: "127.0.0.83:${port}" }]
`);
    try {
      const raw = Array.from(
        { length: 8 },
        (_, i) => `GET /p${i} HTTP/1.1\r\nHost: x\r\n${i === 7 ? 'Connection: close\r\n' : ''}\r\n`,
      ).join('');
      const r = await rawExchange(lb.port('web'), raw);
      const bodies = [...r.received.matchAll(/\r\n\r\n(\/p\d)/g)].map((m) => m[1]);
      assert.deepEqual(bodies, ['/p0', '/p1', '/p2', '/p3', '/p4', '/p5', '/p6', '/p7']);
      assert.equal(maxInFlight, 1);
    } finally {
      await lb.stop();
      backend.closeAllConnections();
      backend.close();
    }
  });
});
