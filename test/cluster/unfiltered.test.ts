// The sync channel is never subject to segmentation: with a segment that denies every source and a
// cluster-wide quarantine of 0.0.0.0/0 applied to a running seglb, clients of the VIP on the same
// addresses are reset, while nodes keep syncing and a new node still joins.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { ClusterNode } from '../../src/cluster/index.ts';
import { httpRequest, startBackend } from '../support/net.ts';
import { startSeglb } from '../support/seglb.ts';
import { FAST, startCluster, stopAll, waitFor, waitForMesh } from './support.ts';

test('a deny-everything segment and a quarantine of every address leave the cluster channel working', async () => {
  const backend = await startBackend('web', '127.0.0.20');
  const lb = await startSeglb(`
log: { level: silent }
segments:
  web:
    vips: [{ listen: "127.0.0.1:0" }]
    pool: p
    backend_subnets: [127.0.0.0/8]
    allow: [{ from: [any] }]
    deny: [{ name: everyone, from: [any] }]
pools:
  p:
    backends: [{ address: "${backend.address}" }]
`);
  const key = randomBytes(32);
  const nodes = await startCluster(3, { key });
  let late: ClusterNode | undefined;
  try {
    const [n1, n2, n3] = nodes as [ClusterNode, ClusterNode, ClusterNode];
    // The runtime's wiring on the node that shares the VIP's address.
    n1.on('quarantine', (c) => {
      for (const e of c.upserted) lb.runtime.quarantine.add(e.cidr, e.expiresAt - Date.now(), e.reason);
      for (const cidr of c.removed) lb.runtime.quarantine.remove(cidr);
    });
    n2.quarantine.put({ cidr: '0.0.0.0/0', reason: 'lockdown', ttlMs: 60_000 });
    n2.quarantine.put({ cidr: '::/0', reason: 'lockdown', ttlMs: 60_000 });
    await waitFor(() => lb.runtime.quarantine.match('127.0.0.2')?.reason === 'lockdown');
    const r = await httpRequest({ port: lb.port('web'), host: '127.0.0.1', localAddress: '127.0.0.2' });
    assert.equal(r.status, 0, 'the VIP refuses the client');
    assert.equal(backend.connections, 0);

    // Same addresses, cluster port: still syncing, and a new node can join.
    n3.quarantine.put({ cidr: '198.51.100.1', reason: 'after lockdown' });
    await waitFor(
      () =>
        n1.quarantine.get('198.51.100.1') !== undefined && n2.quarantine.get('198.51.100.1') !== undefined,
    );
    late = await ClusterNode.start({
      ...FAST,
      nodeId: 'n4',
      listen: '127.0.0.4:0',
      key,
      peers: [n1.address],
    });
    await waitFor(() => late?.quarantine.list().length === 3, 3000, 'the new node to catch up');
    await waitForMesh(nodes);
  } finally {
    await stopAll([...nodes, late]);
    await lb.stop();
    await backend.close();
  }
});
