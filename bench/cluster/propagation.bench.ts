// Cluster sync benchmark, each node a separate process on 127.0.0.x with the default timings:
// propagation latency of quarantine entries to all peers (p50/p99 over 1,000 entries, paced 1 per
// ms and in one burst) for 3 and 5 nodes, beside a plain-TCP hop between the same processes as the
// baseline; sync bandwidth per node at steady state; catch-up time of a node restarted (SIGKILL,
// empty state) while the others hold 100k entries. Targets: p99 < 50 ms, catch-up < 2 s.
// Run: node_modules/.bin/node bench/cluster/propagation.bench.ts [--sizes 3,5] [--entries 100000]

import { type ChildProcess, fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ClusterStatus } from '../../src/cluster/index.ts';

const NODE_SCRIPT = join(import.meta.dirname, 'bench-node.ts');
const args = process.argv.slice(2);
const argOf = (name: string, fallback: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? (args[i + 1] ?? fallback) : fallback;
};
const SIZES = argOf('--sizes', '3,5').split(',').map(Number);
const CATCHUP_ENTRIES = Number(argOf('--entries', '100000'));
const SAMPLES = 1000;
const CATCHUP_ROUNDS = 3;
const IDLE_SECONDS = 10;

class BenchNode {
  readonly child: ChildProcess;
  readonly spawnedAt: number;
  address = '';
  plainPort = 0;
  readyAt = 0;
  #next = 0;
  readonly #waiting = new Map<number, (m: Record<string, unknown>) => void>();

  private constructor(options: object) {
    this.spawnedAt = performance.timeOrigin + performance.now();
    this.child = fork(NODE_SCRIPT, [], {
      env: { ...process.env, SEGLB_BENCH_NODE: JSON.stringify(options) },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    this.child.on('message', (m: Record<string, unknown>) => {
      const id = m['id'] as number | undefined;
      if (id !== undefined) this.#waiting.get(id)?.(m);
    });
  }

  static async start(options: object): Promise<BenchNode> {
    const n = new BenchNode(options);
    const [ready] = (await once(n.child, 'message')) as [Record<string, unknown>];
    n.address = ready['address'] as string;
    n.plainPort = ready['plainPort'] as number;
    n.readyAt = ready['readyAt'] as number;
    return n;
  }

  call(op: string, a: object = {}): Promise<Record<string, unknown>> {
    const id = ++this.#next;
    return new Promise((resolve) => {
      this.#waiting.set(id, resolve);
      this.child.send({ id, op, ...a });
    });
  }

  async status(): Promise<ClusterStatus> {
    return (await this.call('status'))['status'] as ClusterStatus;
  }
}

function pct(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))] as number;
}
function summary(values: number[]): { p50: number; p99: number; max: number } {
  const s = [...values].sort((a, b) => a - b);
  return { p50: pct(s, 0.5), p99: pct(s, 0.99), max: s[s.length - 1] as number };
}
const ms = (v: number) => `${v.toFixed(2)} ms`;
function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

async function waitMesh(nodes: BenchNode[]): Promise<void> {
  for (;;) {
    const st = await Promise.all(nodes.map((n) => n.status()));
    if (st.every((s) => s.peers.filter((p) => p.state === 'alive').length === nodes.length - 1)) return;
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Latency of each entry to every peer, and to the last peer (the entry is everywhere). */
async function collect(peers: BenchNode[], sent: Map<string, number>) {
  const perPeer: number[] = [];
  const toAll = new Map<string, number>();
  for (const p of peers) {
    const arrivals = (await p.call('arrivals'))['arrivals'] as [string, number][];
    for (const [cidr, t] of arrivals) {
      const s = sent.get(cidr);
      if (s === undefined) continue;
      perPeer.push(t - s);
      toAll.set(cidr, Math.max(toAll.get(cidr) ?? 0, t - s));
    }
  }
  return { perPeer: summary(perPeer), toAll: summary([...toAll.values()]), complete: toAll.size };
}

async function run(size: number, keyFile: string): Promise<Record<string, string>> {
  const host = (i: number) => `127.0.0.${10 + i}`;
  const nodes: BenchNode[] = [];
  for (let i = 1; i <= size; i++)
    nodes.push(await BenchNode.start({ nodeId: `b${i}`, listen: `${host(i)}:0`, keyFile }));
  const addresses = nodes.map((n) => n.address);
  await Promise.all(nodes.map((n) => n.call('peers', { peers: addresses })));
  await waitMesh(nodes);
  const [origin, ...peers] = nodes as [BenchNode, ...BenchNode[]];
  const out: Record<string, string> = {};
  let total = 0;
  const waitAll = async (target: number) => Promise.all(nodes.map((n) => n.call('waitCount', { target })));

  // Warm-up (JIT, TLS buffers).
  await origin.call('putBurst', { count: 200, prefix: 11 });
  total += 200;
  await waitAll(total);

  // Paced: one entry per ms.
  await Promise.all(peers.map((p) => p.call('record', { on: true })));
  const paced = (await origin.call('putPaced', { count: SAMPLES, prefix: 12, spacingMs: 1 }))['sent'] as [
    string,
    number,
  ][];
  total += SAMPLES;
  await waitAll(total);
  const p = await collect(peers, new Map(paced));
  out['paced: to all peers p50 / p99 / max'] =
    `${ms(p.toAll.p50)} / ${ms(p.toAll.p99)} / ${ms(p.toAll.max)} (${p.complete} entries)`;
  out['paced: per peer p50 / p99'] = `${ms(p.perPeer.p50)} / ${ms(p.perPeer.p99)}`;

  // Burst: 1,000 entries written in one turn of the event loop.
  await Promise.all(peers.map((q) => q.call('record', { on: true })));
  const t0 = (await origin.call('putBurst', { count: SAMPLES, prefix: 13 }))['t'] as number;
  total += SAMPLES;
  await waitAll(total);
  const burstSent = new Map<string, number>();
  for (let i = 0; i < SAMPLES; i++) burstSent.set(`13.0.${(i >> 8) & 255}.${i & 255}/32`, t0);
  const b = await collect(peers, burstSent);
  out['burst of 1,000 in one tick: on all peers after (p99)'] = ms(b.toAll.p99);
  await Promise.all(peers.map((q) => q.call('record', { on: false })));

  // Baseline: the same hop as plain TCP lines between the same two processes.
  const peer = peers[0] as BenchNode;
  await origin.call('plainSend', { host: host(2), port: peer.plainPort, count: SAMPLES, spacingMs: 1 });
  await new Promise((r) => setTimeout(r, 50));
  const plain = summary(
    ((await peer.call('plainArrivals'))['arrivals'] as [number, number][]).map(([, d]) => d),
  );
  out['baseline plain TCP hop p50 / p99'] = `${ms(plain.p50)} / ${ms(plain.p99)}`;
  out['ratio p99 cluster (to all) / plain hop'] = `${(p.toAll.p99 / plain.p99).toFixed(1)}x`;

  // Fill to 100k+ entries, then steady state: nothing written, heartbeats and digests only.
  const f0 = performance.now();
  await origin.call('fill', { count: CATCHUP_ENTRIES, prefix: 14 });
  total += CATCHUP_ENTRIES;
  await waitAll(total);
  out[`spread of ${CATCHUP_ENTRIES} new entries to all nodes`] = ms(performance.now() - f0);
  await new Promise((r) => setTimeout(r, 3000));
  const c0 = await Promise.all(nodes.map((n) => n.status()));
  const w0 = performance.now();
  await new Promise((r) => setTimeout(r, IDLE_SECONDS * 1000));
  const c1 = await Promise.all(nodes.map((n) => n.status()));
  const secs = (performance.now() - w0) / 1000;
  const rates = c1.map((s, i) => {
    const before = (c0[i] as ClusterStatus).counters;
    return {
      out: (s.counters.bytesOut - before.bytesOut) / secs,
      in: (s.counters.bytesIn - before.bytesIn) / secs,
      frames: (s.counters.framesOut - before.framesOut) / secs,
    };
  });
  const avg = (k: 'out' | 'in' | 'frames') => rates.reduce((a, r) => a + r[k], 0) / rates.length;
  out[`steady state per node (${total} entries held), sent / received`] =
    `${avg('out').toFixed(0)} B/s / ${avg('in').toFixed(0)} B/s (${avg('frames').toFixed(1)} frames/s sent)`;
  const trouble = c1.reduce((a, st, i) => {
    const b = (c0[i] as ClusterStatus).counters;
    const k = st.counters;
    return (
      a +
      k.deadReports -
      b.deadReports +
      k.backpressureDrops -
      b.backpressureDrops +
      k.badFrames -
      b.badFrames
    );
  }, 0);
  const notAlive = c1.reduce((a, st) => a + st.peers.filter((x) => x.state !== 'alive').length, 0);
  out['   links lost during the window / peers not alive at its end'] = `${trouble} / ${notAlive}`;

  // Catch-up: SIGKILL the last node, restart it empty on the same address; a few rounds, as a
  // shared machine makes single runs noisy.
  const catchups: number[] = [];
  const starts: number[] = [];
  for (let round = 0; round < CATCHUP_ROUNDS; round++) {
    const victim = nodes[size - 1] as BenchNode;
    victim.child.kill('SIGKILL');
    await once(victim.child, 'exit');
    const again = await BenchNode.start({
      nodeId: `b${size}`,
      listen: addresses[size - 1],
      keyFile,
      peers: addresses,
    });
    nodes[size - 1] = again;
    const done = (await again.call('waitCount', { target: total }))['at'] as number;
    catchups.push(done - again.readyAt);
    starts.push(again.readyAt - again.spawnedAt);
    await waitMesh(nodes);
  }
  const cu = summary(catchups);
  out[`catch-up of ${total} entries after restart (listening -> complete)`] =
    `median ${ms(median(catchups))}, min ${ms(Math.min(...catchups))}, max ${ms(cu.max)} (${CATCHUP_ROUNDS} restarts)`;
  out['   process start (spawn -> listening), median'] = ms(median(starts));

  for (const n of nodes) {
    await n.call('stop');
  }
  return out;
}

const dir = mkdtempSync(join(tmpdir(), 'seglb-cluster-bench-'));
const keyFile = join(dir, 'cluster.key');
writeFileSync(keyFile, randomBytes(32).toString('hex'), { mode: 0o600 });
console.log(
  `cluster sync benchmark: node ${process.version}, TLS 1.3 PSK, default timings, ${SAMPLES} samples`,
);
for (const size of SIZES) {
  const t0 = performance.now();
  const res = await run(size, keyFile);
  console.log(`\n${size} nodes (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
  const width = Math.max(...Object.keys(res).map((k) => k.length));
  for (const [k, v] of Object.entries(res)) console.log(`  ${k.padEnd(width)}  ${v}`);
}
console.log('\ntargets: p99 propagation < 50 ms, catch-up of 100k entries < 2 s');
