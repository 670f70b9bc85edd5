// BackendPool over its shared PoolState, without sockets: panic mode, backup activation, ejection
// caps, drain and maintenance with stickiness, the max_connections queue, signed cookies, request
// key hashing, state shared by two pools (two segments, or two snapshots) and status().

import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { createLogger } from '../../src/observe/log.ts';
import { SourceSet } from '../../src/policy/index.ts';
import {
  type AssignHandler,
  BACKEND_FULL,
  type Backend,
  BackendPool,
  type PickRequest,
  PoolStateRegistry,
} from '../../src/pools/index.ts';
import { loadPoolsConfig } from '../support/pool-config.ts';

const log = createLogger({ level: 'silent', format: 'json' });
const registries: PoolStateRegistry[] = [];
after(() => {
  for (const r of registries) r.close();
});

/** A pool `p` from YAML lines (indented 4) over backends 10.0.0.1..n:80. */
function setup(poolYaml: string, n = 4, backendYaml = (i: number) => `{ address: "10.0.0.${i}:80" }`) {
  process.env['SEGLB_TEST_STICKY_KEY'] = 'a test key that is long enough';
  const loaded = loadPoolsConfig(`  p:
${poolYaml}
    backends: [${Array.from({ length: n }, (_, i) => backendYaml(i + 1)).join(', ')}]`);
  const registry = new PoolStateRegistry(log);
  registries.push(registry);
  const config = loaded.config.pools['p']!;
  const make = () =>
    new BackendPool('p', config, {
      timeouts: loaded.config.timeouts,
      limits: loaded.config.limits,
      subnets: new SourceSet(loaded.backendSubnets.get('web') ?? []),
      observeOutbound: () => {},
      state: registry.prepare('p', config),
      material: loaded.pools.get('p') ?? null,
    });
  const pool = make();
  registry.commit(loaded);
  const state = registry.get('p')!;
  state.checker?.stop(); // checks are driven by hand here
  return { pool, make, state };
}

function req(source = '192.0.2.1', headers: Record<string, string> | null = {}): PickRequest {
  return { source, path: '/x', headers, secure: false, setCookie: null };
}

/** Names picked for `count` requests, each released at once. */
function picks(pool: BackendPool, count: number, r: () => PickRequest = () => req()): Map<string, number> {
  const out = new Map<string, number>();
  for (let i = 0; i < count; i++) {
    const b = pool.tryAcquire(r(), null);
    const name = b === null ? 'none' : b === BACKEND_FULL ? 'full' : b.name;
    out.set(name, (out.get(name) ?? 0) + 1);
    if (b !== null && b !== BACKEND_FULL) pool.release(b);
  }
  return out;
}

function check(ok: boolean) {
  return { ok, at: Date.now(), detail: ok ? 'HTTP 200' : 'ECONNREFUSED' };
}

const HC = '    health_check: { interval_ms: 3600000, rise: 1, fall: 1 }';

describe('BackendPool: health, panic and backups', () => {
  it('sends only to healthy backends, and to all of them in panic mode', () => {
    const { pool, state } = setup(HC);
    const [b1, b2, b3, b4] = pool.backends as [Backend, Backend, Backend, Backend];
    state.reportCheck(b1.state, check(false));
    assert.deepEqual([...picks(pool, 300).keys()].sort(), ['10.0.0.2:80', '10.0.0.3:80', '10.0.0.4:80']);
    state.reportCheck(b2.state, check(false));
    assert.equal(state.panic, false, '2 of 4 healthy is 50 %: not below the threshold');
    state.reportCheck(b3.state, check(false));
    assert.equal(state.panic, true, '1 of 4 healthy');
    assert.equal(picks(pool, 400).size, 4, 'panic: every backend gets traffic');
    assert.equal(state.counters.panics, 1);
    state.reportCheck(b4.state, check(false));
    assert.equal(picks(pool, 400).size, 4, 'none healthy: still all of them, rather than none');
    state.reportCheck(b1.state, check(true));
    state.reportCheck(b2.state, check(true));
    assert.equal(state.panic, false);
    assert.deepEqual([...picks(pool, 300).keys()].sort(), ['10.0.0.1:80', '10.0.0.2:80']);
    const st = pool.status();
    assert.equal(st.backends[2]?.health, 'down');
    assert.equal(st.backends[0]?.health, 'up');
    assert.equal(st.counters.healthDown, 4);
    assert.equal(st.counters.healthUp, 2);
  });

  it('activates backups when no primary is healthy (no panic then), and panics when they fail too', () => {
    const { pool, state } = setup(
      HC,
      3,
      (i) => `{ address: "10.0.0.${i}:80"${i === 3 ? ', backup: true' : ''} }`,
    );
    const [p1, p2, bk] = pool.backends as [Backend, Backend, Backend];
    assert.equal(picks(pool, 100).has(bk.name), false);
    state.reportCheck(p1.state, check(false));
    assert.deepEqual([...picks(pool, 100).keys()], [p2.name], 'one primary left: the backup still waits');
    state.reportCheck(p2.state, check(false));
    assert.deepEqual([...picks(pool, 100).keys()], [bk.name]);
    assert.equal(state.panic, false);
    state.reportCheck(bk.state, check(false));
    assert.equal(state.panic, true);
    assert.deepEqual([...picks(pool, 100).keys()].sort(), [p1.name, p2.name]);
    state.reportCheck(p2.state, check(true));
    assert.deepEqual([...picks(pool, 100).keys()], [p2.name]);
  });

  it('panic_threshold_percent 0 turns panic off: 503 when nothing is healthy', () => {
    const { pool, state } = setup(`${HC}\n    panic_threshold_percent: 0`, 2);
    for (const b of pool.backends) state.reportCheck(b.state, check(false));
    assert.equal(pool.tryAcquire(req(), null), null);
  });
});

describe('BackendPool: outlier ejection', () => {
  it('ejects after consecutive connection failures, never more than max_ejection_percent', () => {
    const { pool, state } = setup(
      '    outlier_detection: { consecutive_connect_failures: 2, max_ejection_percent: 50, base_ejection_ms: 60000 }',
    );
    const [b1, b2, b3] = pool.backends as [Backend, Backend, Backend];
    pool.reportConnectFailure(b1);
    pool.reportConnectFailure(b1);
    assert.equal(state.counters.ejections, 1);
    assert.equal(picks(pool, 200).has(b1.name), false);
    pool.reportConnectFailure(b2);
    pool.reportConnectFailure(b2);
    pool.reportConnectFailure(b3);
    pool.reportConnectFailure(b3);
    assert.equal(state.counters.ejections, 2);
    assert.equal(state.counters.ejectionsRefused, 1, '3 of 4 would be 75 %');
    assert.deepEqual([...picks(pool, 200).keys()].sort(), [b3.name, '10.0.0.4:80']);
    const st = pool.status();
    assert.ok((st.backends[0]?.ejectedUntil ?? 0) > Date.now());
    assert.equal(st.backends[0]?.healthy, false);
    assert.equal(st.backends[2]?.ejectedUntil, null);
  });

  it('returns an ejected backend to service when its time is up', async () => {
    const { pool, state } = setup(
      '    outlier_detection: { consecutive_connect_failures: 1, base_ejection_ms: 40 }',
      2,
    );
    const [b1] = pool.backends as [Backend];
    pool.reportConnectFailure(b1);
    assert.equal(picks(pool, 50).has(b1.name), false);
    await new Promise((r) => setTimeout(r, 80));
    assert.equal(state.counters.ejectionsEnded, 1);
    assert.ok(picks(pool, 50).has(b1.name));
  });
});

describe('BackendPool: ejection and active checks together', () => {
  it('a passing active check ends an ejection early (Envoy), keeping the streak', () => {
    const { pool, state } = setup(
      `${HC}\n    outlier_detection: { consecutive_connect_failures: 1, base_ejection_ms: 60000 }`,
      2,
    );
    const [b1] = pool.backends as [Backend];
    pool.reportConnectFailure(b1);
    assert.equal(picks(pool, 20).has(b1.name), false);
    state.reportCheck(b1.state, check(true));
    assert.ok(picks(pool, 20).has(b1.name), 'back in service');
    assert.equal(state.counters.ejectionsEnded, 1);
    pool.reportConnectFailure(b1);
    assert.ok(
      (pool.status().backends[0]?.ejectedUntil ?? 0) - Date.now() > 100_000,
      'second ejection: 2 × base',
    );
  });
});

describe('BackendPool: drain, maintenance and stickiness', () => {
  it('drain: no new clients, sticky ones stay; maintenance: nobody', () => {
    const { pool } = setup('    sticky: { source: {} }', 2);
    const first = pool.tryAcquire(req('198.51.100.7'), null) as Backend;
    pool.release(first);
    pool.setAdminState(first.id, 'drain');
    for (let i = 0; i < 20; i++) {
      const again = pool.tryAcquire(req('198.51.100.7'), null) as Backend;
      assert.equal(again, first, 'a sticky client follows its backend into drain');
      pool.release(again);
    }
    const others = picks(pool, 50, () => req(`203.0.113.${Math.floor(Math.random() * 250)}`));
    assert.equal(others.has(first.name), false, 'no new client goes to a draining backend');
    pool.setAdminState(first.id, 'maintenance');
    const moved = pool.tryAcquire(req('198.51.100.7'), null) as Backend;
    assert.notEqual(moved, first);
    assert.equal(pool.status().backends[first.id]?.adminState, 'maintenance');
  });

  it('a signed cookie sticks; a tampered one is ignored and replaced', () => {
    const { pool } = setup('    sticky: { cookie: { name: srv, key_env: SEGLB_TEST_STICKY_KEY } }', 3);
    const r1 = req();
    const b = pool.tryAcquire(r1, null) as Backend;
    pool.release(b);
    assert.ok(r1.setCookie?.startsWith('srv='));
    const value = (r1.setCookie ?? '').slice(4, (r1.setCookie ?? '').indexOf(';'));
    for (let i = 0; i < 10; i++) {
      const r = req('192.0.2.99', { cookie: `x=1; srv=${value}` });
      const again = pool.tryAcquire(r, null) as Backend;
      assert.equal(again, b);
      assert.equal(r.setCookie, null, 'a valid cookie is not set again');
      pool.release(again);
    }
    const forged = `${value.slice(0, -2)}${value.endsWith('AA') ? 'BB' : 'AA'}`;
    const seen = new Set<string>();
    for (let i = 0; i < 30; i++) {
      const r = req('192.0.2.99', { cookie: `srv=${forged}` });
      const got = pool.tryAcquire(r, null) as Backend;
      seen.add(got.name);
      assert.ok(r.setCookie?.startsWith('srv=') && !r.setCookie.includes(forged), 'replaced');
      pool.release(got);
    }
    assert.equal(seen.size, 3, 'a tampered cookie is ignored: plain balancing');
  });
});

describe('BackendPool: max_connections and the queue', () => {
  class Handler implements AssignHandler {
    assigned: Backend | null = null;
    rejected: string | null = null;
    onAssigned(b: Backend): void {
      this.assigned = b;
    }
    onRejected(_status: 503, reason: string): void {
      this.rejected = reason;
    }
  }

  it('queues when every backend is full, serves in order as slots free, refuses beyond queue_size', async () => {
    const { pool, state } = setup(
      '    queue_size: 2\n    queue_timeout_ms: 60',
      2,
      (i) => `{ address: "10.0.0.${i}:80", max_connections: 1 }`,
    );
    const h = Array.from({ length: 6 }, () => new Handler());
    assert.equal(pool.assign(req(), null, h[0]!), null);
    assert.equal(pool.assign(req(), null, h[1]!), null);
    assert.ok(h[0]!.assigned && h[1]!.assigned && h[0]!.assigned !== h[1]!.assigned);
    assert.ok(pool.assign(req(), null, h[2]!), 'queued');
    assert.ok(pool.assign(req(), null, h[3]!), 'queued');
    assert.equal(pool.assign(req(), null, h[4]!), null);
    assert.match(h[4]!.rejected ?? '', /queue of pool p is full/);
    assert.equal(state.queue.length, 2);
    pool.release(h[0]!.assigned!);
    assert.equal(h[2]!.assigned, h[0]!.assigned, 'the first waiter takes the freed slot');
    assert.equal(h[3]!.assigned, null);
    await new Promise((r) => setTimeout(r, 100));
    assert.match(h[3]!.rejected ?? '', /queue timeout/);
    assert.equal(state.queue.length, 0);
    const st = pool.status();
    assert.equal(st.queueTimedOut, 1);
    assert.equal(st.queueRejected, 1);
    // A waiter that gives up (client gone) leaves the queue.
    const ticket = pool.assign(req(), null, h[5]!);
    assert.ok(ticket);
    ticket.cancel();
    pool.release(h[1]!.assigned!);
    assert.equal(h[5]!.assigned, null);
  });

  it('counts max_connections over every pool object sharing the state (segments, snapshots)', () => {
    const { pool, make } = setup(
      '    queue_size: 0',
      1,
      (i) => `{ address: "10.0.0.${i}:80", max_connections: 2 }`,
    );
    const other = make();
    const a = pool.tryAcquire(req(), null);
    const b = other.tryAcquire(req(), null);
    assert.ok(a !== null && a !== BACKEND_FULL && b !== null && b !== BACKEND_FULL);
    assert.equal(pool.tryAcquire(req(), null), BACKEND_FULL);
    assert.equal(other.tryAcquire(req(), null), BACKEND_FULL);
    const h = new Handler();
    pool.assign(req(), null, h);
    assert.match(h.rejected ?? '', /at max_connections/);
    other.release(b);
    assert.equal(pool.status().backends[0]?.inflight, 1);
  });
});

describe('BackendPool: request keys', () => {
  it('consistent_hash on a header keeps a key on one backend; a request without it is spread', () => {
    const { pool } = setup('    algorithm: consistent_hash\n    hash: { key: header, name: X-User }', 5);
    for (let u = 0; u < 20; u++) {
      const seen = picks(pool, 10, () => req(`192.0.2.${u}`, { 'x-user': `user-${u}` }));
      assert.equal(seen.size, 1);
    }
    assert.ok(picks(pool, 200, () => req('192.0.2.1', {})).size > 1);
  });

  it('consistent_hash on a cookie and on the path', () => {
    const byCookie = setup('    algorithm: consistent_hash\n    hash: { key: cookie, name: sid }', 5).pool;
    const byPath = setup('    algorithm: consistent_hash\n    hash: { key: path }', 5).pool;
    for (let u = 0; u < 10; u++) {
      assert.equal(picks(byCookie, 5, () => req(`192.0.2.${u * 3}`, { cookie: `a=b; sid=s${u}` })).size, 1);
      const p = `/item/${u}`;
      const seen = new Set<string>();
      for (const q of ['', '?a=1', '?b=2']) {
        const b = byPath.tryAcquire({ ...req(), path: p + q }, null) as Backend;
        seen.add(b.name);
        byPath.release(b);
      }
      assert.equal(seen.size, 1, 'the query is not part of the path key');
    }
  });
});
