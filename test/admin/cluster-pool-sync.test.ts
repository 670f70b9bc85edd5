// ClusterPoolSync between two in-process cluster nodes, each with its own pool registry: verdicts
// reported and majority views applied, sticky entries imported into the right pool, and what a
// reload changes (reports withdrawn, a new sticky table filled from the cluster).

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ClusterPoolSync } from '../../src/admin/cluster-pool-sync.ts';
import type { ClusterNode } from '../../src/cluster/index.ts';
import type { LoadedConfig } from '../../src/config/index.ts';
import { createLogger } from '../../src/observe/log.ts';
import { PoolStateRegistry } from '../../src/pools/index.ts';
import { startCluster, stopAll, waitFor } from '../cluster/support.ts';
import { loadPoolsConfig } from '../support/pool-config.ts';

const log = createLogger({ level: 'silent', format: 'json' });
const B1 = '10.0.0.1:80';
const B2 = '10.0.0.2:80';

/** Pool p (checked, majority view, source stickiness) and pool q (given as YAML lines). */
function config(p: string, q = '    backends: [{ address: "10.0.0.1:80" }]'): LoadedConfig {
  return loadPoolsConfig(`  p:
${p}
    sticky: { source: { ttl_ms: 60000 } }
    backends: [{ address: "${B1}" }, { address: "${B2}" }]
  q:
${q}`);
}

/** Checks that never run on their own (the first comes at a random point of the first hour). */
const CHECKED =
  '    health_check: { type: tcp, interval_ms: 3600000, rise: 1, fall: 1, cluster_view: majority }';

describe('ClusterPoolSync', () => {
  let nodes: ClusterNode[] = [];
  const registries: PoolStateRegistry[] = [];
  const syncs: ClusterPoolSync[] = [];

  before(async () => {
    nodes = await startCluster(2);
    for (const node of nodes) {
      const registry = new PoolStateRegistry(log);
      registry.commit(config(CHECKED));
      const sync = new ClusterPoolSync(node, registry, log);
      sync.attach();
      registries.push(registry);
      syncs.push(sync);
    }
  });

  after(async () => {
    for (const s of syncs) s.detach();
    for (const r of registries) r.close();
    await stopAll(nodes);
  });

  it('reports each node its verdicts and applies the majority view (a tie: the own verdict)', async () => {
    const [n1, n2] = nodes as [ClusterNode, ClusterNode];
    const [r1, r2] = registries as [PoolStateRegistry, PoolStateRegistry];
    await waitFor(() => n2.health.view('p', B1).up === 2, 3000, 'both nodes report B1 up');
    assert.equal(n1.health.view('q', B1).up, 0, 'no checks in q: no report');
    const p1 = r1.get('p')!;
    p1.reportCheck(p1.find(B1)!, { ok: false, at: Date.now(), detail: 'ECONNREFUSED' });
    await waitFor(() => n2.health.view('p', B1).down === 1, 3000, 'n2 hears of it');
    assert.equal(p1.find(B1)?.clusterHealth, 'down', 'on n1 the tie goes to its own verdict');
    assert.equal(r2.get('p')?.find(B1)?.clusterHealth, 'up', 'and on n2 to its own');
    const p2 = r2.get('p')!;
    p2.reportCheck(p2.find(B1)!, { ok: false, at: Date.now(), detail: 'ECONNREFUSED' });
    await waitFor(() => p1.find(B1)?.clusterHealth === 'down' && p2.find(B1)?.clusterHealth === 'down');
    p1.reportCheck(p1.find(B1)!, { ok: true, at: Date.now(), detail: 'connected' });
    await waitFor(() => p2.find(B1)?.clusterHealth === 'down' && p1.find(B1)?.clusterHealth === 'up');
    assert.equal(p1.find(B1)?.usable, true, 'up here; the tie goes to this node');
  });

  it('imports a peer sticky entry into the pool it belongs to, under the client address', async () => {
    const [n1] = nodes as [ClusterNode, ClusterNode];
    const [r1, r2] = registries as [PoolStateRegistry, PoolStateRegistry];
    const p1 = r1.get('p')!;
    assert.equal(p1.sticky?.set('192.0.2.7', B2, Date.now()), true);
    p1.stuck('192.0.2.7', B2);
    assert.equal(n1.sticky.get('p|192.0.2.7'), B2);
    await waitFor(() => r2.get('p')?.sticky?.get('192.0.2.7', Date.now()) === B2, 3000, 'entry on n2');
    assert.equal(r2.get('p')?.sticky?.size, 1);
  });

  it('a reload without checks withdraws the reports; a new sticky table is filled from the cluster', async () => {
    const [, n2] = nodes as [ClusterNode, ClusterNode];
    const [r1] = registries as [PoolStateRegistry, PoolStateRegistry];
    assert.equal(r1.get('q')?.sticky, null);
    (nodes[1] as ClusterNode).sticky.set('q|192.0.2.8', B1, 60_000);
    await waitFor(() => (nodes[0] as ClusterNode).sticky.get('q|192.0.2.8') === B1);
    r1.commit(config('', '    sticky: { source: {} }\n    backends: [{ address: "10.0.0.1:80" }]'));
    assert.equal(r1.get('q')?.sticky?.size, 0, 'the entry came before the table existed');
    (syncs[0] as ClusterPoolSync).snapshotChanged();
    assert.equal(r1.get('q')?.sticky?.get('192.0.2.8', Date.now()), B1);
    await waitFor(() => n2.health.view('p', B1).byNode['n1'] === undefined, 3000, 'n1 report withdrawn');
    assert.equal(n2.health.view('p', B2).byNode['n1'], undefined);
    assert.equal(r1.get('p')?.find(B1)?.clusterHealth, 'down', 'the view is still shown (n2 says down)');
    assert.equal(r1.get('p')?.find(B1)?.usable, true, 'but without cluster_view it does not decide');
  });
});
