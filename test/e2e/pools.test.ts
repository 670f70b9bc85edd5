// Backend pools end to end over loopback (HTTP VIPs, real backends on 127.0.3.x): distribution per
// algorithm, a backend killed under load (zero client errors, ejected), health checks with
// rise/fall, backup activation, panic mode, signed sticky cookies, drain, max_connections with the
// queue, TLS to backends, and health state kept across a reload.

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { WebSocketServer } from 'ws';
import { loadConfigFile } from '../../src/config/index.ts';
import type { BackendPool } from '../../src/pools/index.ts';
import { makeCert } from '../support/certs.ts';
import { httpRequest } from '../support/net.ts';
import { type PoolBackend, startPoolBackend, waitFor } from '../support/pool-backends.ts';
import { startSeglb, type TestSeglb, tempDir } from '../support/seglb.ts';

const cleanups: (() => unknown)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

async function backends(names: readonly string[], base: number): Promise<PoolBackend[]> {
  const bs = await Promise.all(names.map((n, i) => startPoolBackend(n, `127.0.3.${base + i}`)));
  cleanups.push(() => Promise.all(bs.map((b) => b.close())));
  return bs;
}

function config(pool: string, extraTimeouts = ''): string {
  return `
log: { level: silent }
timeouts: { backend_connect_ms: 300, backend_response_ms: 2000${extraTimeouts} }
segments:
  web:
    vips: [{ listen: "127.0.0.1:0" }]
    pool: p
    backend_subnets: [127.0.0.0/8]
    allow: [{ from: [127.0.0.0/8] }]
pools:
  p:
${pool}
`;
}

function list(bs: readonly PoolBackend[], extra: (b: PoolBackend, i: number) => string = () => ''): string {
  return `    backends: [${bs.map((b, i) => `{ address: "${b.address}", name: ${b.name}${extra(b, i)} }`).join(', ')}]`;
}

async function seglb(yaml: string, dir?: string): Promise<TestSeglb> {
  const lb = await startSeglb(yaml, dir);
  cleanups.push(() => lb.stop());
  return lb;
}

function poolOf(lb: TestSeglb): BackendPool {
  const seg = lb.runtime.snapshot.segments.get('web');
  assert.ok(seg);
  return seg.pool;
}

/** GET over a keep-alive agent. */
function get(
  port: number,
  agent: Agent | false,
  path = '/',
  headers: Record<string, string> = {},
  localAddress?: string,
): Promise<{ status: number; body: string; headers: Record<string, string | string[] | undefined> }> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path, agent, headers, localAddress }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        body += d;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
      res.on('error', () => resolve({ status: 0, body: 'response error', headers: {} }));
    });
    req.on('error', (e) => resolve({ status: 0, body: String(e), headers: {} }));
    req.end();
  });
}

/** `count` sequential GETs: backend name → count. */
async function spread(
  port: number,
  count: number,
  opts: { headers?: (i: number) => Record<string, string>; from?: (i: number) => string } = {},
) {
  const agent = opts.from ? false : new Agent({ keepAlive: true, maxSockets: 1 });
  const counts = new Map<string, number>();
  for (let i = 0; i < count; i++) {
    const r = await get(port, agent, '/', opts.headers?.(i) ?? {}, opts.from?.(i));
    const key = r.status === 200 ? r.body : `status ${r.status}`;
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  if (agent) agent.destroy();
  return counts;
}

function near(actual: number | undefined, expected: number, tolerance: number, what: string): void {
  assert.ok(
    Math.abs((actual ?? 0) - expected) <= tolerance,
    `${what}: got ${actual ?? 0}, expected ${expected} ± ${tolerance}`,
  );
}

describe('pools: distribution per algorithm', () => {
  test('round robin, weighted round robin, random two choices (by weight), first', async () => {
    const bs = await backends(['a', 'b', 'c'], 1);
    const weights = (_: PoolBackend, i: number) => `, weight: ${[3, 1, 2][i]}`;
    const rr = await seglb(config(`    algorithm: round_robin\n${list(bs)}`));
    const c1 = await spread(rr.port('web'), 300);
    for (const b of bs) assert.equal(c1.get(b.name), 100, `round_robin ${b.name}`);
    const wrr = await seglb(config(`    algorithm: weighted_round_robin\n${list(bs, weights)}`));
    const c2 = await spread(wrr.port('web'), 300);
    assert.deepEqual([c2.get('a'), c2.get('b'), c2.get('c')], [150, 50, 100]);
    const p2c = await seglb(config(`    algorithm: random_two_choices\n${list(bs, weights)}`));
    const c3 = await spread(p2c.port('web'), 600);
    near(c3.get('a'), 300, 60, 'p2c a');
    near(c3.get('b'), 100, 45, 'p2c b');
    near(c3.get('c'), 200, 55, 'p2c c');
    const first = await seglb(config(`    algorithm: first\n${list(bs)}`));
    assert.deepEqual([...(await spread(first.port('web'), 30)).entries()], [['a', 30]]);
  });

  test('source hash: one client address, one backend; addresses spread over all', async () => {
    const bs = await backends(['a', 'b', 'c'], 4);
    const lb = await seglb(config(`    algorithm: source_hash\n${list(bs)}`));
    const perClient = await spread(lb.port('web'), 60, { from: (i) => `127.0.4.${1 + (i % 3)}` });
    assert.ok(perClient.size <= 3);
    for (let c = 1; c <= 3; c++) {
      const one = await spread(lb.port('web'), 5, { from: () => `127.0.4.${c}` });
      assert.equal(one.size, 1, `client 127.0.4.${c} stays on one backend`);
    }
    const many = await spread(lb.port('web'), 240, { from: (i) => `127.0.${5 + (i >> 8)}.${i & 255}` });
    for (const b of bs) near(many.get(b.name), 80, 40, `source_hash ${b.name}`);
  });

  test('consistent hash on a header: a key stays put; one backend going down moves only its keys', async () => {
    const bs = await backends(['a', 'b', 'c', 'd'], 7);
    const lb = await seglb(
      config(`    algorithm: consistent_hash\n    hash: { key: header, name: x-user }\n${list(bs)}`),
    );
    const port = lb.port('web');
    const agent = new Agent({ keepAlive: true, maxSockets: 4 });
    const before: string[] = [];
    for (let u = 0; u < 200; u++) before.push((await get(port, agent, '/', { 'x-user': `u${u}` })).body);
    const counts = new Map<string, number>();
    for (const n of before) counts.set(n, (counts.get(n) ?? 0) + 1);
    for (const b of bs) near(counts.get(b.name), 50, 25, `keys on ${b.name}`);
    poolOf(lb).setAdminState(1, 'maintenance'); // b out
    const after: string[] = [];
    for (let u = 0; u < 200; u++) after.push((await get(port, agent, '/', { 'x-user': `u${u}` })).body);
    let moved = 0;
    for (let u = 0; u < 200; u++) {
      if (before[u] === 'b') assert.notEqual(after[u], 'b');
      else if (after[u] !== before[u]) moved++;
    }
    assert.ok(moved <= 10, `${moved} keys of other backends moved`);
    agent.destroy();
  });
});

describe('pools: failures', () => {
  test('a backend killed under load is ejected; idempotent GETs see zero errors', async (t) => {
    const bs = await backends(['k1', 'k2', 'k3'], 11);
    const lb = await seglb(
      config(
        `    algorithm: round_robin
    retries: 2
    outlier_detection: { consecutive_connect_failures: 2, base_ejection_ms: 400 }
    health_check: { interval_ms: 100, timeout_ms: 100, rise: 2, fall: 2 }
${list(bs)}`,
      ),
    );
    const port = lb.port('web');
    const agent = new Agent({ keepAlive: true, maxSockets: 16 });
    let running = true;
    const results: number[] = [];
    const errors: string[] = [];
    const loops = Array.from({ length: 16 }, async () => {
      while (running) {
        const r = await get(port, agent, '/');
        results.push(r.status);
        if (r.status !== 200) errors.push(`${r.status} ${r.body}`);
      }
    });
    await new Promise((r) => setTimeout(r, 250));
    const killedAt = Date.now();
    await bs[0]!.kill();
    const pool = poolOf(lb);
    const downAfter = await waitFor(() => pool.status().backends[0]?.usable === false, 3000);
    assert.ok(downAfter >= 0, 'the killed backend is taken out');
    const servedAtKill = bs[0]!.served;
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(bs[0]!.served, servedAtKill);
    await bs[0]!.restart();
    const backAfter = await waitFor(() => pool.status().backends[0]?.usable === true, 5000);
    await new Promise((r) => setTimeout(r, 200));
    running = false;
    await Promise.all(loops);
    agent.destroy();
    assert.deepEqual(errors.slice(0, 5), [], `${errors.length} failed of ${results.length}`);
    assert.ok(results.length > 300, `only ${results.length} requests`);
    assert.ok(backAfter >= 0, 'the restarted backend returns to service');
    assert.ok(bs[0]!.served > servedAtKill, 'and gets traffic again');
    const st = pool.status();
    assert.ok(st.counters.ejections + st.counters.healthDown >= 1);
    t.diagnostic(
      `kill -> out of service in ${downAfter} ms; back in service ${backAfter} ms after restart; ${results.length} requests, 0 failed (${Date.now() - killedAt} ms from kill to end)`,
    );
  });

  test('consecutive 5xx eject a backend (outlier detection) until its time is up', async () => {
    const bs = await backends(['x1', 'x2'], 30);
    const lb = await seglb(
      config(
        `    outlier_detection: { consecutive_5xx: 3, base_ejection_ms: 150, max_ejection_percent: 50 }\n${list(bs)}`,
      ),
    );
    const port = lb.port('web');
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    // /status/500 makes both answer 500; x1 reaches 3 in a row first and is ejected.
    for (let i = 0; i < 6; i++) await get(port, agent, '/status/500');
    const st = poolOf(lb).status();
    assert.equal(st.counters.ejections, 1, 'one ejected; the other is kept by max_ejection_percent');
    assert.equal(st.counters.ejectionsRefused, 1);
    assert.ok(st.backends[0]?.ejectedUntil, 'x1 ejected');
    const during = await spread(port, 6);
    assert.deepEqual([...during.keys()], ['x2']);
    assert.ok((await waitFor(() => poolOf(lb).status().backends[0]?.usable === true, 2000)) >= 0);
    assert.equal((await spread(port, 6)).get('x1'), 3, 'back in rotation');
    agent.destroy();
  });

  test('HTTP health checks: fall takes a backend out, rise brings it back', async () => {
    const bs = await backends(['h1', 'h2'], 14);
    const lb = await seglb(
      config(
        `    health_check: { type: http, interval_ms: 40, rise: 2, fall: 2, http: { path: /health } }\n${list(bs)}`,
      ),
    );
    const pool = poolOf(lb);
    bs[0]!.healthStatus = 500;
    assert.ok((await waitFor(() => pool.status().backends[0]?.health === 'down')) >= 0);
    const c = await spread(lb.port('web'), 20);
    assert.deepEqual([...c.keys()], ['h2']);
    bs[0]!.healthStatus = 200;
    assert.ok((await waitFor(() => pool.status().backends[0]?.health === 'up')) >= 0);
    assert.equal((await spread(lb.port('web'), 20)).get('h1'), 10);
  });

  test('backups serve only when no primary is healthy; panic sends to all when too few are', async () => {
    const bs = await backends(['p1', 'p2', 'p3', 'p4', 'bk'], 16);
    const hc = '    health_check: { type: http, interval_ms: 30, rise: 1, fall: 1, http: { path: /health } }';
    const lb = await seglb(config(`${hc}\n${list(bs, (_, i) => (i === 4 ? ', backup: true' : ''))}`));
    const pool = poolOf(lb);
    const port = lb.port('web');
    assert.equal((await spread(port, 40)).has('bk'), false);
    for (const b of bs.slice(0, 4)) b.healthStatus = 503;
    assert.ok(
      (await waitFor(() =>
        pool
          .status()
          .backends.slice(0, 4)
          .every((b) => b.health === 'down'),
      )) >= 0,
    );
    assert.deepEqual([...(await spread(port, 20)).keys()], ['bk'], 'backup activated');
    assert.equal(pool.status().panic, false);
    bs[4]!.healthStatus = 503;
    assert.ok((await waitFor(() => pool.status().panic)) >= 0, 'no healthy backup: panic');
    const panicked = await spread(port, 40);
    assert.deepEqual(
      [...panicked.keys()].sort(),
      ['p1', 'p2', 'p3', 'p4'],
      'panic: every primary, healthy or not',
    );
    bs[0]!.healthStatus = 200;
    bs[1]!.healthStatus = 200;
    assert.ok((await waitFor(() => !pool.status().panic)) >= 0, '2 of 4 healthy: panic over');
    assert.deepEqual([...(await spread(port, 20)).keys()].sort(), ['p1', 'p2']);
  });
});

describe('pools: sessions, drain and limits', () => {
  test('signed sticky cookie: honoured when valid, ignored and replaced when tampered', async () => {
    const bs = await backends(['s1', 's2', 's3'], 21);
    const dir = tempDir();
    writeFileSync(join(dir, 'sticky.key'), 'e2e sticky key, thirty-two bytes\n');
    const lb = await seglb(
      config(`    sticky: { cookie: { name: srv, key_file: sticky.key } }\n${list(bs)}`),
      dir,
    );
    const port = lb.port('web');
    const first = await get(port, false);
    const setCookie = String(first.headers['set-cookie'] ?? '');
    assert.match(setCookie, /^srv=[A-Za-z0-9_-]{22}; Path=\/; HttpOnly; SameSite=Lax$/);
    const value = setCookie.slice(4, 26);
    for (let i = 0; i < 12; i++) {
      const r = await get(port, false, '/', { cookie: `srv=${value}` });
      assert.equal(r.body, first.body);
      assert.equal(r.headers['set-cookie'], undefined);
    }
    const tampered = `${value.slice(0, 21)}${value.endsWith('A') ? 'B' : 'A'}`;
    const seen = new Set<string>();
    for (let i = 0; i < 12; i++) {
      const r = await get(port, false, '/', { cookie: `srv=${tampered}` });
      seen.add(r.body);
      assert.match(String(r.headers['set-cookie']), /^srv=/, 'a new, valid cookie is issued');
      assert.doesNotMatch(String(r.headers['set-cookie']), new RegExp(tampered));
    }
    assert.equal(seen.size, 3, 'the tampered cookie picked nothing: plain round robin');
  });

  test('drain: in-flight requests finish, no new ones arrive, sticky clients still may', async () => {
    const bs = await backends(['d1', 'd2'], 24);
    const lb = await seglb(
      config(`    algorithm: first\n    sticky: { source: { ttl_ms: 60000 } }\n${list(bs)}`),
    );
    const port = lb.port('web');
    const slow = get(port, false, '/sleep/400', {}, '127.0.5.1');
    await waitFor(() => poolOf(lb).status().backends[0]?.inflight === 1);
    assert.ok(lb.runtime.setBackendState('p', 'd1', 'drain'));
    const fresh = await spread(port, 10, { from: (i) => `127.0.5.${10 + i}` });
    assert.deepEqual([...fresh.keys()], ['d2'], 'new clients go elsewhere');
    assert.equal((await get(port, false, '/', {}, '127.0.5.1')).body, 'd1', 'the sticky client stays');
    const done = await slow;
    assert.equal(done.status, 200);
    assert.equal(done.body, 'd1', 'the in-flight request finished on the draining backend');
    assert.ok(lb.runtime.setBackendState('p', 'd1', 'maintenance'));
    assert.equal(
      (await get(port, false, '/', {}, '127.0.5.1')).body,
      'd2',
      'maintenance: even sticky clients move',
    );
    assert.equal(poolOf(lb).status().backends[0]?.adminState, 'maintenance');
  });

  test('max_connections and the queue: waiting, 503 when full, 503 on queue timeout', async () => {
    const [b] = await backends(['q1'], 26);
    const lb = await seglb(
      config(`    queue_size: 2\n    queue_timeout_ms: 1000\n${list([b!], () => ', max_connections: 2')}`),
    );
    const port = lb.port('web');
    const started = Date.now();
    const results = await Promise.all(
      Array.from({ length: 5 }, () => httpRequest({ port, path: '/sleep/200' })),
    );
    const statuses = results.map((r) => r.status).sort();
    assert.deepEqual(statuses, [200, 200, 200, 200, 503]);
    const refused = results.find((r) => r.status === 503);
    assert.match(refused?.body ?? '', /queue of pool p is full/);
    assert.ok(Date.now() - started >= 380, 'the queued requests waited for a slot');
    assert.equal(b!.served, 4);
    const lb2 = await seglb(
      config(`    queue_size: 5\n    queue_timeout_ms: 100\n${list([b!], () => ', max_connections: 1')}`),
    );
    const r2 = await Promise.all([
      httpRequest({ port: lb2.port('web'), path: '/sleep/400' }),
      httpRequest({ port: lb2.port('web') }),
    ]);
    assert.equal(r2[0].status, 200);
    assert.equal(r2[1].status, 503);
    assert.match(r2[1].body, /queue timeout/);
    assert.equal(poolOf(lb2).status().queueTimedOut, 1);
  });

  test('TLS to backends, verified against ca_file and servername', async () => {
    const dir = tempDir();
    mkdirSync(join(dir, 'certs'));
    const cert = makeCert(join(dir, 'certs'), 'api', ['api.internal']);
    const b = await startPoolBackend('secure', '127.0.3.27', {
      cert: readFileSync(cert.cert, 'utf8'),
      key: readFileSync(cert.key, 'utf8'),
    });
    cleanups.push(() => b.close());
    const lb = await seglb(
      config(`    tls: { servername: api.internal, ca_file: certs/api.crt }\n${list([b])}`),
      dir,
    );
    const r = await httpRequest({ port: lb.port('web') });
    assert.equal(r.status, 200);
    assert.equal(r.body, 'secure');
    const bad = await seglb(
      config(`    tls: { servername: wrong.internal, ca_file: certs/api.crt }\n    retries: 0\n${list([b])}`),
      dir,
    );
    const r2 = await httpRequest({ port: bad.port('web') });
    assert.equal(r2.status, 502, 'a certificate for another name is refused');
  });

  test('WebSocket upgrades: TLS to the backend with the pool servername; 503 when every backend is full', async () => {
    const dir = tempDir();
    mkdirSync(join(dir, 'certs'));
    const cert = makeCert(join(dir, 'certs'), 'ws', ['ws.internal']);
    const server = createHttpsServer({
      cert: readFileSync(cert.cert, 'utf8'),
      key: readFileSync(cert.key, 'utf8'),
    });
    const wss = new WebSocketServer({ server });
    wss.on('connection', (ws) => ws.on('message', (m) => ws.send(`tls-echo:${m.toString()}`)));
    server.listen(0, '127.0.3.33');
    await once(server, 'listening');
    cleanups.push(() => {
      wss.close();
      server.close();
    });
    const port = (server.address() as AddressInfo).port;
    const lb = await seglb(
      config(`    tls: { servername: ws.internal, ca_file: certs/ws.crt }
    backends: [{ address: "127.0.3.33:${port}", max_connections: 1 }]`),
      dir,
    );
    const open = (): Promise<WebSocket | string> =>
      new Promise((resolve) => {
        const ws = new WebSocket(`ws://127.0.0.1:${lb.port('web')}/chat`);
        ws.onopen = () => resolve(ws);
        ws.onerror = () => resolve('refused');
      });
    const ws = await open();
    assert.ok(ws instanceof WebSocket, 'the upgrade went through over TLS');
    const reply = new Promise<string>((resolve) => {
      ws.onmessage = (e) => resolve(String(e.data));
    });
    ws.send('hi');
    assert.equal(await reply, 'tls-echo:hi');
    assert.equal(poolOf(lb).status().backends[0]?.inflight, 1, 'the tunnel holds its slot');
    assert.equal(await open(), 'refused', 'the only backend is at max_connections: the upgrade is refused');
    ws.close();
  });

  test('health and ejection state survive a reload for backends that remain', async () => {
    const bs = await backends(['r1', 'r2', 'r3'], 28);
    const hc = '    health_check: { type: http, interval_ms: 50, rise: 2, fall: 1, http: { path: /health } }';
    const lb = await seglb(config(`${hc}\n${list(bs)}`));
    bs[0]!.healthStatus = 500;
    assert.ok((await waitFor(() => poolOf(lb).status().backends[0]?.health === 'down')) >= 0);
    const stateBefore = lb.runtime.pools.get('p')?.find(bs[0]!.address);
    writeFileSync(lb.file, config(`${hc}\n    retries: 2\n${list(bs)}`));
    await lb.runtime.reload(loadConfigFile(lb.file));
    assert.equal(lb.runtime.pools.get('p')?.find(bs[0]!.address), stateBefore);
    assert.equal(poolOf(lb).status().backends[0]?.health, 'down', 'still down right after the reload');
    const c = await spread(lb.port('web'), 20);
    assert.equal(c.has('r1'), false);
    writeFileSync(lb.file, config(`${hc}\n${list(bs.slice(1))}`));
    await lb.runtime.reload(loadConfigFile(lb.file));
    assert.equal(
      lb.runtime.pools.get('p')?.find(bs[0]!.address),
      undefined,
      'a removed backend is forgotten',
    );
  });
});
