// Cluster nodes over real TLS sockets on 127.0.0.x: a quarantine made on one node reaches the others
// (time to converge measured), replicated state of every kind, failure detection that never blocks,
// a restarted node catching up, and partitions (forwarders that stop forwarding) that heal with no
// entry lost.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { ClusterNode, type PeerEvent } from '../../src/cluster/index.ts';
import { Quarantine } from '../../src/policy/index.ts';
import {
  captureLog,
  FAST,
  type Forwarder,
  startCluster,
  startForwarder,
  stopAll,
  waitFor,
  waitForMesh,
} from './support.ts';

const cidrs = (n: ClusterNode) =>
  n.quarantine
    .list()
    .map((e) => e.cidr)
    .sort();

describe('cluster: replicated state', () => {
  const nodes: ClusterNode[] = [];
  after(() => stopAll(nodes));

  test('a quarantine made on n1 reaches n2 and n3, and so does its removal (time to converge measured)', async (t) => {
    nodes.push(...(await startCluster(3)));
    const [a, b, c] = nodes as [ClusterNode, ClusterNode, ClusterNode];
    const t0 = performance.now();
    const entry = a.quarantine.put({ cidr: '192.0.2.7', reason: 'port scan', ttlMs: 60_000 });
    assert.equal(entry.cidr, '192.0.2.7/32');
    await waitFor(
      () => b.quarantine.get('192.0.2.7') !== undefined && c.quarantine.get('192.0.2.7/32') !== undefined,
    );
    const converged = performance.now() - t0;
    t.diagnostic(`quarantine converged on 3 nodes in ${converged.toFixed(1)} ms`);
    assert.ok(converged < 500, `${converged} ms`);
    assert.deepEqual(b.quarantine.get('192.0.2.7'), entry, 'the same entry, expiry and reason included');

    const t1 = performance.now();
    assert.equal(c.quarantine.remove('192.0.2.7'), true);
    assert.equal(c.quarantine.remove('192.0.2.7'), false);
    await waitFor(() => a.quarantine.list().length === 0 && b.quarantine.list().length === 0);
    t.diagnostic(`removal converged in ${(performance.now() - t1).toFixed(1)} ms`);
  });

  test('change events: local ones at once with origin "local", remote ones batched; a Quarantine fed by them blocks on every node without echo', async () => {
    const [a, b, c] = nodes as [ClusterNode, ClusterNode, ClusterNode];
    // The runtime's wiring: every change, local or remote, is applied to the node's Quarantine.
    const local = new Map<ClusterNode, Quarantine>();
    const seen: string[] = [];
    for (const n of [a, b, c]) {
      const q = new Quarantine();
      local.set(n, q);
      n.on('quarantine', (change) => {
        seen.push(`${n.nodeId}:${change.origin}:${change.upserted.length}+${change.removed.length}-`);
        for (const e of change.upserted) q.add(e.cidr, e.expiresAt - Date.now(), e.reason);
        for (const cidr of change.removed) q.remove(cidr);
      });
    }
    const written = b.status().counters.entriesWritten;
    a.quarantine.put({ cidr: '198.51.100.0/24', reason: 'abuse', ttlMs: 60_000 });
    assert.deepEqual(seen, ['n1:local:1+0-'], 'the local change is reported synchronously');
    assert.equal(local.get(a)?.match('198.51.100.9')?.reason, 'abuse');
    for (let i = 0; i < 50; i++) a.quarantine.put({ cidr: `203.0.113.${i}`, ttlMs: 60_000 });
    await waitFor(() => [b, c].every((n) => local.get(n)?.size === 51));
    assert.equal(local.get(c)?.match('198.51.100.200')?.reason, 'abuse');
    assert.ok(
      seen.filter((s) => s.startsWith('n2:')).length < 51,
      `remote changes come in batches: ${seen.filter((s) => s.startsWith('n2:')).join(' ')}`,
    );
    assert.equal(b.status().counters.entriesWritten, written, 'applying a remote change writes nothing back');
    for (const n of [a, b, c]) n.removeAllListeners('quarantine');
  });

  test('runtime policy changes are listed in the same order everywhere; health has a majority view; stickiness is shared', async () => {
    const [a, b, c] = nodes as [ClusterNode, ClusterNode, ClusterNode];
    a.policy.put('op-1', { kind: 'deny', segment: 'web', from: ['192.0.2.0/24'] });
    b.policy.put('op-2', { kind: 'allow', segment: 'api', from: ['10.0.0.0/8'] });
    c.policy.put('op-3', [1, 2, 3]);
    assert.throws(() => a.policy.put('op-x', null), { code: 'SEGLB_CLUSTER_INVALID_ENTRY' });
    assert.throws(() => a.policy.put('op-y', { big: 'x'.repeat(600_000) }), {
      code: 'SEGLB_CLUSTER_INVALID_ENTRY',
    });
    const order = (n: ClusterNode) => n.policy.list().map((p) => p.id);
    await waitFor(() => [a, b, c].every((n) => n.policy.list().length === 3));
    assert.deepEqual(order(b), order(a));
    assert.deepEqual(order(c), order(a));
    assert.deepEqual(c.policy.get('op-1')?.op, { kind: 'deny', segment: 'web', from: ['192.0.2.0/24'] });
    b.policy.remove('op-1');
    await waitFor(() => a.policy.get('op-1') === undefined && c.policy.get('op-1') === undefined);

    a.health.report('web', '10.1.0.11:8080', 'down');
    b.health.report('web', '10.1.0.11:8080', 'down');
    c.health.report('web', '10.1.0.11:8080', 'up');
    await waitFor(() =>
      [a, b, c].every(
        (n) => n.health.view('web', '10.1.0.11:8080').up + n.health.view('web', '10.1.0.11:8080').down === 3,
      ),
    );
    const view = c.health.view('web', '10.1.0.11:8080');
    assert.deepEqual(view, {
      up: 1,
      down: 2,
      byNode: { n1: 'down', n2: 'down', n3: 'up' },
      majority: 'down',
    });
    assert.equal(a.health.list().filter((r) => r.pool === 'web').length, 3);

    assert.equal(a.sticky.set('192.0.2.50', 'web-2', 60_000), true);
    assert.equal(
      a.sticky.set('192.0.2.50', 'web-2', 60_000),
      false,
      'a fresh identical mapping is not re-sent',
    );
    await waitFor(() => c.sticky.get('192.0.2.50') === 'web-2');
    assert.equal(b.sticky.get('192.0.2.51'), undefined);
    assert.throws(() => a.sticky.set('k', 'b', Number.POSITIVE_INFINITY), {
      code: 'SEGLB_CLUSTER_INVALID_ENTRY',
    });
  });

  test('policy versions: divergence is reported in status and as an event, and clears', async () => {
    const [a, b, c] = nodes as [ClusterNode, ClusterNode, ClusterNode];
    for (const n of [a, b, c]) n.setPolicyVersion('v1');
    await waitFor(() => a.status().policy.versions['v1']?.length === 3);
    assert.equal(a.status().policy.agreed, true);
    const events: boolean[] = [];
    a.on('divergence', (d) => events.push(d.agreed));
    c.setPolicyVersion('v2');
    await waitFor(() => !a.status().policy.agreed);
    assert.deepEqual(a.status().policy, {
      version: 'v1',
      agreed: false,
      versions: { v1: ['n1', 'n2'], v2: ['n3'] },
      divergent: ['n3'],
    });
    assert.equal(a.status().peers.find((p) => p.nodeId === 'n3')?.policyVersion, 'v2');
    c.setPolicyVersion('v1');
    await waitFor(() => a.status().policy.agreed);
    assert.deepEqual(events, [false, true]);
  });

  test('bad writes are refused with typed errors', () => {
    const a = nodes[0] as ClusterNode;
    assert.throws(() => a.quarantine.put({ cidr: '10.1.2.3/8' }), { code: 'SEGLB_CLUSTER_INVALID_ENTRY' });
    assert.throws(() => a.quarantine.put({ cidr: '10.0.0.1', ttlMs: 0 }), {
      code: 'SEGLB_CLUSTER_INVALID_ENTRY',
    });
    assert.throws(() => a.quarantine.put({ cidr: '10.0.0.1', ttlMs: Number.NaN }), {
      code: 'SEGLB_CLUSTER_INVALID_ENTRY',
    });
    assert.throws(() => a.quarantine.put({ cidr: '10.0.0.1', expiresAt: 5 }), {
      code: 'SEGLB_CLUSTER_INVALID_ENTRY',
    });
    assert.throws(() => a.health.report('web', 'b', 'sideways' as 'up'), {
      code: 'SEGLB_CLUSTER_INVALID_ENTRY',
    });
    assert.equal(a.quarantine.put({ cidr: '::ffff:192.0.2.9' }).cidr, '192.0.2.9/32', 'IPv4-mapped is IPv4');
    assert.equal(a.quarantine.put({ cidr: '2001:db8::/32' }).expiresAt, Number.POSITIVE_INFINITY);
  });

  test('one link per pair of nodes, and a node listed in its own peers list skips itself', async () => {
    for (const n of nodes) {
      await waitFor(
        () =>
          n.status().peers.length === 2 &&
          n.status().peers.every((p) => p.state === 'alive' && p.rttMs !== null),
        3000,
        `${n.nodeId} to list exactly its two peers, alive`,
      );
    }
    // n1 dialled n2 and n3 (the smaller id's link is kept); n3 accepted both of its links.
    assert.deepEqual(
      (nodes[2] as ClusterNode).status().peers.map((p) => p.link),
      ['in', 'in'],
    );
  });
});

describe('cluster: failures', () => {
  test('a node killed without warning is reported dead, writes go on, and once restarted it catches up', async (t) => {
    const { log, lines } = captureLog();
    const key = randomBytes(32);
    const nodes = await startCluster(3, { key, log });
    const [a, b] = nodes as [ClusterNode, ClusterNode];
    let c = nodes[2] as ClusterNode;
    try {
      for (let i = 0; i < 200; i++) a.quarantine.put({ cidr: `10.9.${i}.0/24`, ttlMs: 600_000 });
      await waitFor(() => c.quarantine.list().length === 200);
      const address = c.address;
      const events: PeerEvent[] = [];
      a.on('peer', (e) => events.push(e));
      const killedAt = performance.now();
      await c.stop({ announce: false });

      // Writes while n3 is down never wait for it.
      const w0 = performance.now();
      for (let i = 0; i < 100; i++) b.quarantine.put({ cidr: `10.8.${i}.0/24`, ttlMs: 600_000 });
      a.quarantine.remove('10.9.0.0/24');
      assert.ok(performance.now() - w0 < 100, 'writes are local');
      await waitFor(() => a.status().peers.find((p) => p.nodeId === 'n3')?.state === 'dead', 3000);
      const detected = performance.now() - killedAt;
      t.diagnostic(`dead peer detected in ${detected.toFixed(0)} ms (dead_ms ${FAST.deadMs})`);
      assert.ok(detected >= FAST.deadMs - 50 && detected < FAST.deadMs + 1500, `${detected}`);
      assert.deepEqual(
        events.map((e) => e.state),
        ['suspect', 'dead'],
      );
      assert.ok(lines.some((l) => l['code'] === 'SEGLB_CLUSTER_PEER_DEAD' && l['peer'] === 'n3'));
      assert.equal(
        a.status().policy.versions['null']?.includes('n3'),
        false,
        'a dead node counts for nothing',
      );

      // Restarted (a new epoch, empty state) on the same address: it catches up with everything.
      const sentBefore = [a, b].map((n) => n.status().counters.bytesOut);
      const r0 = performance.now();
      c = await ClusterNode.start({
        ...FAST,
        nodeId: 'n3',
        listen: address,
        key,
        peers: [a.address, b.address],
      });
      nodes[2] = c;
      await waitFor(() => c.quarantine.list().length === 299, 3000);
      t.diagnostic(`restarted node caught up with 299 entries in ${(performance.now() - r0).toFixed(0)} ms`);
      assert.equal(c.quarantine.get('10.9.0.0/24'), undefined, 'a removal made while it was down applies');
      assert.deepEqual(cidrs(c), cidrs(a));
      // It pulled from one peer; the other had nothing left to send (no second copy of the state).
      const sent = [a, b]
        .map((n, i) => n.status().counters.bytesOut - (sentBefore[i] as number))
        .sort((x, y) => x - y);
      assert.ok((sent[0] as number) < (sent[1] as number) / 3, `bytes sent by n1 and n2: ${sent.join(', ')}`);
      t.diagnostic(`bytes sent to the restarted node by its two peers: ${sent.join(' and ')}`);
      await waitForMesh([a, b, c]);
      assert.equal(a.status().peers.find((p) => p.nodeId === 'n3')?.epoch, c.epoch);
    } finally {
      await stopAll([...nodes.slice(0, 2), c]);
    }
  });

  test('a dead or unreachable peer is reported and nothing blocks', async () => {
    const { log, lines } = captureLog();
    const key = randomBytes(32);
    const black = await startForwarder('127.0.0.1:9', '127.0.0.4');
    black.cut(); // accepts and never answers: the TLS handshake times out
    const a = await ClusterNode.start({
      ...FAST,
      nodeId: 'lonely',
      listen: '127.0.0.5:0',
      key,
      log,
      peers: ['127.0.0.6:1', black.address],
    });
    try {
      const t0 = performance.now();
      a.quarantine.put({ cidr: '192.0.2.1' });
      assert.ok(performance.now() - t0 < 20);
      await waitFor(() => a.status().peers.every((p) => p.state === 'dead'), 3000);
      const st = a.status();
      assert.equal(st.peers.length, 2);
      assert.equal(st.peers.find((p) => p.address === '127.0.0.6:1')?.lastError, 'ECONNREFUSED');
      assert.ok(lines.filter((l) => l['code'] === 'SEGLB_CLUSTER_PEER_DEAD').length >= 2);
      const s0 = performance.now();
      await a.stop();
      assert.ok(performance.now() - s0 < 200, 'stop does not wait for dead peers');
    } finally {
      await a.stop();
      await black.close();
    }
  });

  test('a partition heals and every entry written on either side survives; conflicting writes resolve the same everywhere', async (t) => {
    const key = randomBytes(32);
    const opts = { ...FAST, key };
    const n1 = await ClusterNode.start({ ...opts, nodeId: 'n1', listen: '127.0.0.1:0' });
    const n2 = await ClusterNode.start({ ...opts, nodeId: 'n2', listen: '127.0.0.2:0' });
    const n3 = await ClusterNode.start({ ...opts, nodeId: 'n3', listen: '127.0.0.3:0' });
    const nodes = [n1, n2, n3];
    // Every link to n1 goes through a forwarder, so n1 can be cut off from both others.
    const to1from2 = await startForwarder(n1.address);
    const to1from3 = await startForwarder(n1.address);
    const to2from1 = await startForwarder(n2.address);
    const to3from1 = await startForwarder(n3.address);
    const forwarders: Forwarder[] = [to1from2, to1from3, to2from1, to3from1];
    try {
      n1.setPeers([to2from1.address, to3from1.address]);
      n2.setPeers([to1from2.address, n3.address]);
      n3.setPeers([to1from3.address, n2.address]);
      await waitForMesh(nodes);
      for (let i = 0; i < 20; i++) n1.quarantine.put({ cidr: `10.0.${i}.0/24`, ttlMs: 600_000 });
      await waitFor(() => nodes.every((n) => n.quarantine.list().length === 20));

      for (const f of forwarders) f.cut();
      await waitFor(
        () =>
          n1.status().peers.every((p) => p.state === 'dead') &&
          [n2, n3].every((n) => n.status().peers.find((p) => p.nodeId === 'n1')?.state === 'dead'),
        3000,
        'both sides to see the partition',
      );
      // Both sides write, including the same keys with different values.
      for (let i = 0; i < 100; i++)
        n1.quarantine.put({ cidr: `10.1.${i}.0/24`, reason: 'side 1', ttlMs: 600_000 });
      for (let i = 0; i < 100; i++)
        n2.quarantine.put({ cidr: `10.2.${i}.0/24`, reason: 'side 2', ttlMs: 600_000 });
      n1.quarantine.put({ cidr: '192.0.2.1', reason: 'n1 wrote first', ttlMs: 600_000 });
      await sleep(5);
      n3.quarantine.put({ cidr: '192.0.2.1', reason: 'n3 wrote last', ttlMs: 600_000 });
      n1.quarantine.remove('10.0.0.0/24');
      n2.quarantine.remove('10.0.1.0/24');
      await waitFor(() => n3.quarantine.list().length === 20 + 100 + 1 - 1);
      assert.equal(n1.quarantine.list().length, 20 + 100 + 1 - 1, 'n1 kept its own writes');

      const h0 = performance.now();
      for (const f of forwarders) f.heal();
      const expected = 20 + 100 + 100 + 1 - 2;
      await waitFor(() => nodes.every((n) => n.quarantine.list().length === expected), 5000, 'convergence');
      t.diagnostic(`partition healed: converged in ${(performance.now() - h0).toFixed(0)} ms`);
      assert.deepEqual(cidrs(n2), cidrs(n1));
      assert.deepEqual(cidrs(n3), cidrs(n1));
      for (const n of nodes) {
        assert.equal(n.quarantine.get('192.0.2.1')?.reason, 'n3 wrote last', n.nodeId);
        assert.equal(n.quarantine.get('10.0.0.0/24'), undefined);
        assert.equal(n.quarantine.get('10.0.1.0/24'), undefined);
      }
      await waitForMesh(nodes);
    } finally {
      await stopAll(nodes);
      await Promise.all(forwarders.map((f) => f.close()));
    }
  });

  test('a partition between two nodes only: state still flows through the third, and the pair reconnects', async () => {
    const key = randomBytes(32);
    const n1 = await ClusterNode.start({ ...FAST, key, nodeId: 'n1', listen: '127.0.0.1:0' });
    const n2 = await ClusterNode.start({ ...FAST, key, nodeId: 'n2', listen: '127.0.0.2:0' });
    const n3 = await ClusterNode.start({ ...FAST, key, nodeId: 'n3', listen: '127.0.0.3:0' });
    const nodes = [n1, n2, n3];
    const to2 = await startForwarder(n2.address);
    const to1 = await startForwarder(n1.address);
    try {
      n1.setPeers([to2.address, n3.address]);
      n2.setPeers([to1.address, n3.address]);
      n3.setPeers([n1.address, n2.address]);
      await waitForMesh(nodes);
      to1.cut();
      to2.cut();
      await waitFor(() => n1.status().peers.find((p) => p.nodeId === 'n2')?.state === 'dead', 3000);
      for (let i = 0; i < 50; i++) n1.quarantine.put({ cidr: `172.16.${i}.0/24`, ttlMs: 600_000 });
      // n2 hears of them from n3 through anti-entropy, although n1 cannot reach it.
      await waitFor(() => n2.quarantine.list().length === 50, 3000, 'relay through n3');
      to1.heal();
      to2.heal();
      await waitForMesh(nodes, 5000);
    } finally {
      await stopAll(nodes);
      await Promise.all([to1.close(), to2.close()]);
    }
  });

  test('a node whose clock runs far ahead cannot win conflicts: its entries are refused and reported', async () => {
    const key = randomBytes(32);
    const { log, lines } = captureLog();
    const a = await ClusterNode.start({
      ...FAST,
      nodeId: 'n1',
      listen: '127.0.0.1:0',
      key,
      log,
      maxClockSkewMs: 10_000,
    });
    const ahead = await ClusterNode.start({
      ...FAST,
      nodeId: 'n2',
      listen: '127.0.0.2:0',
      key,
      now: () => Date.now() + 120_000,
      peers: [a.address],
    });
    try {
      await waitForMesh([a, ahead]);
      ahead.quarantine.put({ cidr: '0.0.0.0/0', reason: 'from the future' });
      await waitFor(() => a.status().counters.clockSkew > 0);
      assert.equal(a.quarantine.list().length, 0);
      assert.ok(lines.some((l) => l['code'] === 'SEGLB_CLUSTER_CLOCK_SKEW'));
    } finally {
      await stopAll([a, ahead]);
    }
  });

  test('two nodes configured with the same id refuse each other and say why', async () => {
    const key = randomBytes(32);
    const { log, lines } = captureLog();
    const a = await ClusterNode.start({ ...FAST, nodeId: 'twin', listen: '127.0.0.1:0', key, log });
    const b = await ClusterNode.start({
      ...FAST,
      nodeId: 'twin',
      listen: '127.0.0.2:0',
      key,
      peers: [a.address],
    });
    try {
      await waitFor(() => lines.some((l) => /uses this node's id twin/.test(String(l['error']))));
      assert.equal(a.status().peers.length, 0);
      assert.equal(b.status().peers[0]?.state, 'connecting', 'not mistaken for itself: it keeps trying');
    } finally {
      await stopAll([a, b]);
    }
  });

  test('start-up errors are typed: a taken port, a missing or short key, bad options', async () => {
    const key = randomBytes(32);
    const a = await ClusterNode.start({ ...FAST, nodeId: 'a', listen: '127.0.0.1:0', key });
    try {
      await assert.rejects(ClusterNode.start({ ...FAST, nodeId: 'b', listen: a.address, key }), {
        code: 'SEGLB_CLUSTER_BIND',
        message: /EADDRINUSE/,
      });
      await assert.rejects(
        ClusterNode.start({ nodeId: 'b', listen: '127.0.0.1:0', keyFile: '/nonexistent/key' }),
        {
          code: 'SEGLB_CLUSTER_KEY',
        },
      );
      await assert.rejects(ClusterNode.start({ nodeId: 'b', listen: '127.0.0.1:0', key: randomBytes(16) }), {
        code: 'SEGLB_CLUSTER_KEY',
      });
      await assert.rejects(ClusterNode.start({ nodeId: 'b', listen: '127.0.0.1:0' }), {
        code: 'SEGLB_CLUSTER_KEY',
      });
      await assert.rejects(ClusterNode.start({ nodeId: 'bad id', listen: '127.0.0.1:0', key }), TypeError);
      await assert.rejects(
        ClusterNode.start({ nodeId: 'b', listen: '127.0.0.1:0', key, suspectMs: 100, deadMs: 50 }),
        RangeError,
      );
    } finally {
      await a.stop();
    }
  });

  test('five nodes converge on writes made on all of them at once', async () => {
    const nodes = await startCluster(5);
    try {
      nodes.forEach((n, i) => {
        for (let j = 0; j < 40; j++) n.quarantine.put({ cidr: `10.${i}.${j}.0/24`, ttlMs: 600_000 });
        n.sticky.set(`client-${i}`, `backend-${i}`, 600_000);
      });
      await waitFor(() =>
        nodes.every((n) => n.quarantine.list().length === 200 && n.sticky.list().length === 5),
      );
      for (const n of nodes) assert.deepEqual(cidrs(n), cidrs(nodes[0] as ClusterNode));
    } finally {
      await stopAll(nodes);
    }
  });
});
