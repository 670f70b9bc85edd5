// The hooks a pool offers the cluster, without a cluster: which sticky sets are worth telling peers
// (SourceStickyTable.set), verdict transitions and sticky entries reported to the PoolStateListener,
// and `health_check.cluster_view` (majority or local) deciding with the cluster's view.

import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { createLogger } from '../../src/observe/log.ts';
import { SourceSet } from '../../src/policy/index.ts';
import { BACKEND_FULL, BackendPool, type PickRequest, PoolStateRegistry } from '../../src/pools/index.ts';
import { SourceStickyTable } from '../../src/pools/sticky-table.ts';
import { loadPoolsConfig } from '../support/pool-config.ts';

const log = createLogger({ level: 'silent', format: 'json' });
const registries: PoolStateRegistry[] = [];
after(() => {
  for (const r of registries) r.close();
});

/** Pool `p` (YAML lines indented 4) over backends 10.0.0.1..3:80, with a recording listener. */
function setup(poolYaml: string) {
  const loaded = loadPoolsConfig(`  p:
${poolYaml}
    backends: [{ address: "10.0.0.1:80" }, { address: "10.0.0.2:80" }, { address: "10.0.0.3:80" }]`);
  const registry = new PoolStateRegistry(log);
  registries.push(registry);
  const heard = { health: [] as string[], sticky: [] as string[] };
  registry.setListener({
    healthChanged: (pool, address, verdict) => heard.health.push(`${pool} ${address} ${verdict}`),
    stickySet: (pool, source, address, ttlMs) => heard.sticky.push(`${pool} ${source} ${address} ${ttlMs}`),
  });
  const config = loaded.config.pools['p']!;
  const pool = new BackendPool('p', config, {
    timeouts: loaded.config.timeouts,
    limits: loaded.config.limits,
    subnets: new SourceSet(loaded.backendSubnets.get('web') ?? []),
    observeOutbound: () => {},
    state: registry.prepare('p', config),
  });
  registry.commit(loaded);
  const state = registry.get('p')!;
  state.checker?.stop(); // checks are driven by hand here
  return { pool, state, heard };
}

function req(source = '192.0.2.1'): PickRequest {
  return { source, path: '/', headers: {}, secure: false, setCookie: null };
}

/** Addresses picked over `count` requests (released at once). */
function picked(pool: BackendPool, count = 30): Set<string> {
  const out = new Set<string>();
  for (let i = 0; i < count; i++) {
    const b = pool.tryAcquire(req(`192.0.2.${i + 1}`), null);
    if (b === null || b === BACKEND_FULL) continue;
    out.add(b.address);
    pool.release(b);
  }
  return out;
}

function fail(state: ReturnType<typeof setup>['state'], address: string, times: number, ok = false) {
  const s = state.find(address)!;
  for (let i = 0; i < times; i++) state.reportCheck(s, { ok, at: Date.now(), detail: ok ? 'HTTP 200' : 'x' });
}

const HC = '    health_check: { type: tcp, rise: 1, fall: 1 }';

describe('SourceStickyTable.set: what peers should hear of', () => {
  it('a new or changed mapping, and a refresh once the shared expiry is half gone; not every request', () => {
    const t = new SourceStickyTable(1000, 10);
    assert.equal(t.set('a', 'b1:80', 0), true, 'new');
    assert.equal(t.set('a', 'b1:80', 100), false, 'refresh: peers know it until 1000');
    assert.equal(t.set('a', 'b1:80', 499), false);
    assert.equal(t.set('a', 'b1:80', 500), true, 'half of the shared lifetime gone');
    assert.equal(t.set('a', 'b1:80', 600), false, 'peers now know it until 1500');
    assert.equal(t.set('a', 'b2:80', 700), true, 'moved to another backend');
    assert.equal(t.get('a', 1600), 'b2:80', 'local expiry follows every set');
  });

  it('an entry imported from a peer is known to the peers: no write back until half its life is gone', () => {
    const t = new SourceStickyTable(1000, 10);
    assert.equal(t.import([{ key: 'a', backend: 'b1:80', expiresAt: 1000 }], 0), 1);
    assert.equal(t.set('a', 'b1:80', 100), false);
    assert.equal(t.set('a', 'b1:80', 500), true);
  });
});

describe('PoolState hooks for the cluster', () => {
  it('tells the listener of verdict transitions only, and of sticky entries once, not per request', () => {
    const { pool, state, heard } = setup(`${HC}\n    sticky: { source: { ttl_ms: 60000 } }`);
    fail(state, '10.0.0.1:80', 1);
    fail(state, '10.0.0.1:80', 2); // still down: no news
    fail(state, '10.0.0.1:80', 1, true);
    assert.deepEqual(heard.health, ['p 10.0.0.1:80 down', 'p 10.0.0.1:80 up']);
    for (let i = 0; i < 5; i++) {
      const b = pool.tryAcquire(req('192.0.2.9'), null);
      assert.ok(b !== null && b !== BACKEND_FULL);
      pool.release(b);
    }
    assert.equal(heard.sticky.length, 1, 'five requests, one entry for the peers');
    assert.match(heard.sticky[0] ?? '', /^p 192\.0\.2\.9 10\.0\.0\.\d:80 60000$/);
  });

  it('cluster_view majority: the majority decides both ways; without a view, the local verdict', () => {
    const { pool, state } = setup(
      `${HC.slice(0, -2)}, cluster_view: majority }\n    panic_threshold_percent: 0`,
    );
    assert.equal(state.config.health_check?.cluster_view, 'majority');
    state.setClusterHealth('10.0.0.1:80', 'down');
    assert.deepEqual(picked(pool), new Set(['10.0.0.2:80', '10.0.0.3:80']), 'up here, down by majority');
    assert.equal(pool.status().backends[0]?.health, 'up');
    assert.equal(pool.status().backends[0]?.clusterHealth, 'down');
    assert.equal(pool.status().backends[0]?.usable, false);
    fail(state, '10.0.0.2:80', 1);
    state.setClusterHealth('10.0.0.2:80', 'up');
    assert.deepEqual(picked(pool), new Set(['10.0.0.2:80', '10.0.0.3:80']), 'down here, up by majority');
    state.setClusterHealth('10.0.0.1:80', null);
    state.setClusterHealth('10.0.0.2:80', null);
    assert.deepEqual(picked(pool), new Set(['10.0.0.1:80', '10.0.0.3:80']), 'no view: local verdicts');
    state.setClusterHealth('10.9.9.9:80', 'down'); // not a backend: ignored
  });

  it('cluster_view local (the default): the cluster view is shown but does not decide', () => {
    const { pool, state } = setup(HC);
    assert.equal(state.config.health_check?.cluster_view, 'local');
    for (const a of ['10.0.0.1:80', '10.0.0.2:80', '10.0.0.3:80']) state.setClusterHealth(a, 'down');
    assert.equal(picked(pool).size, 3);
    assert.equal(pool.status().backends[2]?.clusterHealth, 'down');
  });
});
