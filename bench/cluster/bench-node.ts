// One cluster node process for bench/cluster/propagation.bench.ts, driven over IPC: it writes
// quarantine entries (paced, in a burst, or a bulk fill), records when remote entries arrive, and
// offers a plain-TCP baseline hop (no TLS, framing or merging) between the same processes.

import { createServer, connect as netConnect, type Socket } from 'node:net';
import { ClusterNode, type ClusterNodeOptions } from '../../src/cluster/index.ts';

/** Wall-clock ms with sub-ms resolution, comparable across processes on one machine. */
const now = () => performance.timeOrigin + performance.now();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

type Command = { id: number; op: string; [k: string]: unknown };
const send = (m: object) => process.send?.(m);
const options = JSON.parse(process.env['SEGLB_BENCH_NODE'] ?? '{}') as ClusterNodeOptions;
const startedAt = now();
const node = await ClusterNode.start(options);

let arrivals: [string, number][] = [];
let record = false;
/** Entries reported by change events (the bench never removes any, so this is the live count). */
let held = 0;
let countWaiter: { target: number; resolve: (at: number) => void } | undefined;
node.on('quarantine', (c) => {
  held += c.upserted.length;
  const t = now();
  if (countWaiter && held >= countWaiter.target) {
    countWaiter.resolve(t);
    countWaiter = undefined;
  }
  if (!record || c.origin !== 'remote') return;
  for (const e of c.upserted) arrivals.push([e.cidr, t]);
});

let plainArrivals: [number, number][] = [];
const plain = createServer((s: Socket) => {
  let buf = '';
  s.on('data', (d: Buffer) => {
    const t = now();
    buf += d.toString();
    let nl = buf.indexOf('\n');
    while (nl >= 0) {
      const [id, sent] = buf.slice(0, nl).split(' ');
      plainArrivals.push([Number(id), t - Number(sent)]);
      buf = buf.slice(nl + 1);
      nl = buf.indexOf('\n');
    }
  });
});
plain.listen(0, options.listen.slice(0, options.listen.lastIndexOf(':')));
await new Promise((r) => plain.once('listening', r));
const plainPort = (plain.address() as { port: number }).port;

send({ type: 'ready', address: node.address, plainPort, startMs: now() - startedAt, readyAt: now() });

function cidrOf(prefix: number, i: number): string {
  return `${prefix}.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}/32`;
}

process.on('message', async (cmd: Command) => {
  switch (cmd.op) {
    case 'peers':
      node.setPeers(cmd['peers'] as string[]);
      return send({ id: cmd.id });
    case 'record':
      record = cmd['on'] as boolean;
      arrivals = [];
      return send({ id: cmd.id });
    case 'arrivals':
      return send({ id: cmd.id, arrivals });
    case 'putPaced': {
      const sent: [string, number][] = [];
      for (let i = 0; i < (cmd['count'] as number); i++) {
        const cidr = cidrOf(cmd['prefix'] as number, i);
        sent.push([cidr, now()]);
        node.quarantine.put({ cidr, reason: 'bench', ttlMs: 3_600_000 });
        await sleep(cmd['spacingMs'] as number);
      }
      return send({ id: cmd.id, sent });
    }
    case 'putBurst': {
      const t = now();
      for (let i = 0; i < (cmd['count'] as number); i++) {
        node.quarantine.put({ cidr: cidrOf(cmd['prefix'] as number, i), reason: 'bench', ttlMs: 3_600_000 });
      }
      return send({ id: cmd.id, t });
    }
    case 'fill': {
      const count = cmd['count'] as number;
      for (let i = 0; i < count; i++) {
        node.quarantine.put({
          cidr: cidrOf(cmd['prefix'] as number, i),
          reason: 'bench fill',
          ttlMs: 3_600_000,
        });
        if (i % 5000 === 4999) await new Promise((r) => setImmediate(r));
      }
      return send({ id: cmd.id });
    }
    case 'waitCount': {
      const target = cmd['target'] as number;
      const at =
        held >= target ? now() : await new Promise<number>((resolve) => (countWaiter = { target, resolve }));
      return send({ id: cmd.id, at, held });
    }
    case 'count':
      return send({ id: cmd.id, count: node.quarantine.list().length, at: now() });
    case 'status':
      return send({ id: cmd.id, status: node.status() });
    case 'plainSend': {
      const s = netConnect({ host: cmd['host'] as string, port: cmd['port'] as number });
      s.setNoDelay(true);
      await new Promise((r) => s.once('connect', r));
      for (let i = 0; i < (cmd['count'] as number); i++) {
        s.write(`${i} ${now()}\n`);
        await sleep(cmd['spacingMs'] as number);
      }
      s.end();
      return send({ id: cmd.id });
    }
    case 'plainArrivals': {
      const out = plainArrivals;
      plainArrivals = [];
      return send({ id: cmd.id, arrivals: out });
    }
    case 'stop':
      await node.stop();
      plain.close();
      send({ id: cmd.id });
      process.disconnect();
      return;
  }
});
