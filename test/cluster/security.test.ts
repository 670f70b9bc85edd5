// The sync channel's defences, over real sockets: a peer with the wrong key (or no TLS at all) is
// refused and logged; replayed frames and hellos from an old epoch are rejected; garbage and
// oversized frames drop the link and are reported; a hello must match the identity the handshake
// proved; mutual TLS with node certificates works and refuses a foreign CA or a wrong CN.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { connect as netConnect } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { type TLSSocket, connect as tlsConnect } from 'node:tls';
import { clientTlsOptions } from '../../src/cluster/auth.ts';
import { encodeFrame, type Frame, FrameDecoder, type MessageType, MSG } from '../../src/cluster/frame.ts';
import { ClusterNode } from '../../src/cluster/index.ts';
import { tempDir } from '../support/seglb.ts';
import { captureLog, FAST, makeClusterCerts, stopAll, waitFor, waitForMesh } from './support.ts';

/** A hand-driven client that holds the cluster key: it can send any frame it likes. */
class Rogue {
  readonly socket: TLSSocket;
  readonly frames: Frame[] = [];
  readonly closed: Promise<unknown>;
  readonly identity: string;
  epoch: number;
  seq = 0;

  private constructor(socket: TLSSocket, identity: string, epoch: number) {
    this.socket = socket;
    this.identity = identity;
    this.epoch = epoch;
    const dec = new FrameDecoder(1 << 24);
    socket.on('data', (c: Buffer) => this.frames.push(...dec.push(c)));
    socket.on('error', () => {});
    this.closed = once(socket, 'close');
  }

  static async connect(
    node: ClusterNode,
    key: Buffer,
    identity: string,
    epoch = Date.now() * 1024,
  ): Promise<Rogue> {
    const [host, port] = node.address.split(':') as [string, string];
    const socket = tlsConnect({
      ...clientTlsOptions({ kind: 'psk', key }, identity),
      host,
      port: Number(port),
    });
    await once(socket, 'secureConnect');
    return new Rogue(socket, identity, epoch);
  }

  /** Encodes the next frame (next sequence number unless one is given). */
  frame(type: MessageType, body: object, opts: { seq?: number; node?: string } = {}): Buffer {
    const seq = opts.seq ?? ++this.seq;
    return encodeFrame(
      1,
      type,
      opts.node ?? this.identity,
      this.epoch,
      seq,
      Buffer.from(JSON.stringify(body)),
    );
  }

  hello(opts: { node?: string } = {}): Buffer {
    return this.frame(
      MSG.HELLO,
      { protoMin: 1, protoMax: 1, listen: 'rogue:1', clock: { wall: Date.now(), counter: 0 } },
      opts,
    );
  }

  /** Whether the node sent a BYE with this reason. */
  gotBye(reason: string): boolean {
    return this.frames.some((f) => f.type === MSG.BYE && JSON.parse(f.payload.toString()).reason === reason);
  }
}

const quarantineEntry = (cidr: string) => ({
  ks: 'quarantine',
  entries: [[cidr, Date.now(), 0, 'rogue', null, { reason: 'from rogue', addedAt: Date.now() }]],
});

describe('cluster: authentication and frame checks', () => {
  const key = randomBytes(32);
  const { log, lines } = captureLog();
  let node: ClusterNode;
  before(async () => {
    node = await ClusterNode.start({ ...FAST, nodeId: 'n1', listen: '127.0.0.1:0', key, log });
  });
  after(() => node.stop());
  const counters = () => node.status().counters;

  test('a node with the wrong key is refused on both sides and logged; nothing crosses', async () => {
    const intruder = await ClusterNode.start({
      ...FAST,
      nodeId: 'intruder',
      listen: '127.0.0.9:0',
      key: randomBytes(32),
      peers: [node.address],
    });
    try {
      intruder.quarantine.put({ cidr: '0.0.0.0/0', reason: 'block everything' });
      await waitFor(() => counters().authFailures >= 1 && intruder.status().counters.authFailures >= 1, 3000);
      const logged = lines.find((l) => l['event'] === 'cluster-auth-failed');
      assert.equal(logged?.['code'], 'SEGLB_CLUSTER_AUTH');
      assert.equal(logged?.['remote'], '127.0.0.9');
      assert.equal(node.quarantine.list().length, 0);
      assert.equal(node.status().peers.length, 0);
    } finally {
      await intruder.stop();
    }
  });

  test('a client that does not speak TLS at all is refused and counted', async () => {
    const before = counters().authFailures;
    const [host, port] = node.address.split(':') as [string, string];
    const s = netConnect({ host, port: Number(port), localAddress: '127.0.0.8' });
    s.on('error', () => {});
    s.end('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    await once(s, 'close');
    await waitFor(() => counters().authFailures > before);
  });

  test('a frame replayed on its link is rejected and the link dropped; a hello from an older epoch too', async () => {
    const rogue = await Rogue.connect(node, key, 'rogue');
    rogue.socket.write(rogue.hello());
    await waitFor(() => rogue.frames.some((f) => f.type === MSG.HELLO));
    const entries = rogue.frame(MSG.ENTRIES, quarantineEntry('192.0.2.66/32'));
    rogue.socket.write(entries);
    await waitFor(() => node.quarantine.get('192.0.2.66') !== undefined);
    const replays = counters().replaysRejected;
    rogue.socket.write(entries); // the same bytes again: sequence number 2 twice
    await rogue.closed;
    assert.equal(counters().replaysRejected, replays + 1);
    const logged = lines.findLast((l) => l['event'] === 'cluster-link-dropped');
    assert.equal(logged?.['code'], 'SEGLB_CLUSTER_REPLAY');
    assert.match(String(logged?.['error']), /sequence number 2 already seen/);

    // A recording of an earlier run of "rogue" (an older epoch) is refused at its hello.
    const old = await Rogue.connect(node, key, 'rogue', rogue.epoch - 1);
    old.socket.write(old.hello());
    old.socket.write(old.frame(MSG.ENTRIES, quarantineEntry('192.0.2.67/32')));
    await old.closed;
    assert.ok(old.gotBye('stale-epoch'));
    assert.equal(node.quarantine.get('192.0.2.67'), undefined);
    assert.equal(counters().replaysRejected, replays + 2);

    // Skipping ahead is refused as well (frames are never lost on a TCP stream).
    const skip = await Rogue.connect(node, key, 'rogue', rogue.epoch + 1);
    skip.socket.write(skip.hello());
    skip.socket.write(skip.frame(MSG.PING, { t: 1 }, { seq: 5 }));
    await skip.closed;
    assert.equal(counters().replaysRejected, replays + 3);
  });

  test('garbage after the handshake drops the link and is reported', async () => {
    const badFrames = counters().badFrames;
    const rogue = await Rogue.connect(node, key, 'garbler');
    rogue.socket.write(rogue.hello());
    rogue.socket.write(randomBytes(64));
    await rogue.closed;
    assert.equal(counters().badFrames, badFrames + 1);
    assert.equal(
      lines.findLast((l) => l['event'] === 'cluster-link-dropped')?.['code'],
      'SEGLB_CLUSTER_FRAME',
    );

    // Well-framed but not JSON, and JSON of the wrong shape.
    for (const payload of [Buffer.from('{{{'), Buffer.from('{"ks":"quarantine"}')]) {
      const r = await Rogue.connect(node, key, 'garbler', Date.now() * 1024 + badFrames + payload.length);
      r.socket.write(r.hello());
      r.socket.write(encodeFrame(1, MSG.ENTRIES, 'garbler', r.epoch, 2, payload));
      await r.closed;
    }
    assert.equal(counters().badFrames, badFrames + 3);
  });

  test('an oversized frame is refused from its header, without waiting for its body', async () => {
    const badFrames = counters().badFrames;
    const rogue = await Rogue.connect(node, key, 'bigmouth');
    rogue.socket.write(rogue.hello());
    const header = rogue.frame(MSG.ENTRIES, {}).subarray(0, 24);
    header.writeUInt32BE(50 * 1024 * 1024, 4); // announces 50 MiB; max_frame_bytes is 1 MiB
    rogue.socket.write(header);
    await rogue.closed;
    assert.equal(counters().badFrames, badFrames + 1);
    assert.match(
      String(lines.findLast((l) => l['event'] === 'cluster-link-dropped')?.['error']),
      /exceeds max_frame_bytes/,
    );
  });

  test('a hello claiming another node id than the PSK identity is an authentication failure', async () => {
    const authFailures = counters().authFailures;
    const rogue = await Rogue.connect(node, key, 'mallory');
    rogue.socket.write(rogue.hello({ node: 'n2' }));
    await rogue.closed;
    assert.equal(counters().authFailures, authFailures + 1);
    assert.match(
      String(lines.findLast((l) => l['event'] === 'cluster-link-dropped')?.['error']),
      /proved node mallory/,
    );
  });

  test('the first message must be a hello, and entries of a keyspace a node may not write are dropped', async () => {
    const rogue = await Rogue.connect(node, key, 'eve');
    rogue.socket.write(rogue.frame(MSG.PING, { t: 1 }));
    await rogue.closed;
    const r2 = await Rogue.connect(node, key, 'eve', Date.now() * 1024 + 999);
    r2.socket.write(r2.hello());
    // eve may not write n1's health reports or membership.
    const invalid = node.status().counters.invalidEntries;
    r2.socket.write(
      r2.frame(MSG.ENTRIES, {
        ks: 'health',
        entries: [['n1\u0000web\u0000b1', Date.now(), 0, 'eve', null, 'down']],
      }),
    );
    r2.socket.write(
      r2.frame(MSG.ENTRIES, { ks: 'members', entries: [['n1', Date.now(), 0, 'eve', null, {}]] }),
    );
    await waitFor(() => node.status().counters.invalidEntries === invalid + 2);
    assert.equal(node.health.list().length, 0);
    r2.socket.destroy();
  });
});

describe('cluster: mutual TLS with node certificates', () => {
  test('nodes with certificates from the cluster CA converge; a foreign CA and a wrong CN are refused', async () => {
    const dir = tempDir('seglb-cluster-tls-');
    const good = makeClusterCerts(dir, ['n1', 'n2', 'n3', 'n4']);
    const foreign = makeClusterCerts(dir, ['n5'], 'other-ca');
    const tlsOf = (id: string, certs = good) => ({
      certFile: certs.nodes[id]?.cert as string,
      keyFile: certs.nodes[id]?.key as string,
      caFile: certs.ca,
    });
    const nodes: ClusterNode[] = [];
    for (const id of ['n1', 'n2', 'n3']) {
      nodes.push(
        await ClusterNode.start({ ...FAST, nodeId: id, listen: `127.0.0.${id.slice(1)}:0`, tls: tlsOf(id) }),
      );
    }
    const outsiders: ClusterNode[] = [];
    try {
      for (const n of nodes) n.setPeers(nodes.map((m) => m.address));
      await waitForMesh(nodes);
      nodes[0]?.quarantine.put({ cidr: '192.0.2.0/28', reason: 'mtls' });
      await waitFor(() => nodes.every((n) => n.quarantine.get('192.0.2.0/28')?.reason === 'mtls'));

      const n1 = nodes[0] as ClusterNode;
      // Signed by another CA: the handshake fails.
      outsiders.push(
        await ClusterNode.start({
          ...FAST,
          nodeId: 'n5',
          listen: '127.0.0.5:0',
          tls: tlsOf('n5', foreign),
          peers: [n1.address],
        }),
      );
      // A valid certificate, but for n4, used by a node calling itself n9.
      outsiders.push(
        await ClusterNode.start({
          ...FAST,
          nodeId: 'n9',
          listen: '127.0.0.6:0',
          tls: tlsOf('n4'),
          peers: [n1.address],
        }),
      );
      await waitFor(() => n1.status().counters.authFailures >= 2, 3000);
      await sleep(100);
      assert.deepEqual(
        n1
          .status()
          .peers.map((p) => p.nodeId)
          .sort(),
        ['n2', 'n3'],
      );
      for (const o of outsiders) assert.equal(o.quarantine.list().length, 0);
    } finally {
      await stopAll([...nodes, ...outsiders]);
    }
  });
});
