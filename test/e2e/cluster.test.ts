// Three seglb processes as one cluster (127.0.0.1/.2/.3): a quarantine made through node A's admin
// API refuses the source on B and C; a rule added on A applies on B and C; a client stuck to a
// backend on A keeps it on B and C; with `cluster_view: majority` a backend two nodes see down is down
// on the third (and one that only one node sees down stays up); a node restarted later catches up.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { closedPort, httpRequest, startBackend, type TestBackend } from '../support/net.ts';
import { type PoolBackend, startPoolBackend } from '../support/pool-backends.ts';
import { type SeglbProcess, spawnSeglb, tempDir } from '../support/seglb.ts';

const TOKEN = 'cluster-test-admin-token-0123456789';
const MAIN = new URL('../../src/cli/main.ts', import.meta.url).pathname;
const HOSTS = ['127.0.0.1', '127.0.0.2', '127.0.0.3'] as const;

interface Node {
  proc: SeglbProcess;
  vipPort: number;
  /** Every VIP's port by segment: web, sticky, majority, local. */
  ports: Record<string, number>;
  adminPort: number;
  file: string;
}

async function api(
  node: Node,
  method: string,
  path: string,
  body?: unknown,
  // biome-ignore lint/suspicious/noExplicitAny: tests read JSON bodies freely
): Promise<{ status: number; body: any }> {
  const res = await fetch(`http://127.0.0.1:${node.adminPort}${path}`, {
    method,
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: await res.json() };
}

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 5000): Promise<number> {
  const start = performance.now();
  while (performance.now() - start < timeoutMs) {
    if (await check()) return performance.now() - start;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`${what}: not within ${timeoutMs} ms`);
}

/** A pool of one node's GET /status. */
// biome-ignore lint/suspicious/noExplicitAny: tests read JSON bodies freely
async function poolStatus(node: Node, pool: string): Promise<any> {
  // biome-ignore lint/suspicious/noExplicitAny: tests read JSON bodies freely
  return (await api(node, 'GET', '/status')).body.pools.find((p: any) => p.name === pool);
}

/** The bodies (backend names) of `count` requests from `source` to a node's VIP of `segment`. */
async function namesSeen(node: Node, host: string, segment: string, source: string, count = 4) {
  const names = new Set<string>();
  for (let i = 0; i < count; i++) {
    const r = await httpRequest({ host, port: node.ports[segment] as number, localAddress: source });
    assert.equal(r.status, 200, `${segment} via ${host} from ${source}: ${r.status} ${r.error ?? r.body}`);
    names.add(r.body);
  }
  return names;
}

describe('cluster of three seglb processes', () => {
  let backend: TestBackend;
  /** Round robin with source stickiness. */
  let sticky1: TestBackend;
  let sticky2: TestBackend;
  /**
   * Health-checked with `GET /hc` and `body_contains: "[nodeN]"` on node N, and they answer their
   * name: so h1 passes only node3's checks, h2 fails only node1's. Real checks, deterministic views.
   */
  let h1: PoolBackend;
  let h2: PoolBackend;
  let root: string;
  let peers: string[];
  const nodes: Node[] = [];

  async function startNode(i: number): Promise<Node> {
    const dir = join(root, `node${i + 1}`);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'tokens.txt'), `ops admin ${TOKEN}\n`, { mode: 0o600 });
    writeFileSync(join(dir, 'cluster.key'), `${'5e'.repeat(32)}\n`, { mode: 0o600 });
    const file = join(dir, 'seglb.yaml');
    // One segment per pool; hp and hl check the same backends, hp by the majority view.
    const segments = Object.entries({ web: 'p', sticky: 'sp', majority: 'hp', local: 'hl' }).map(
      ([name, pool]) => `  ${name}:
    vips: [{ listen: "${HOSTS[i]}:0" }]
    pool: ${pool}
    backend_subnets: [127.0.0.0/8]
    allow: [{ name: loopback, from: [127.0.0.0/8] }]`,
    );
    const checked = (view: string) => `
    panic_threshold_percent: 0
    health_check:
      { type: http, interval_ms: 100, rise: 1, fall: 1, cluster_view: ${view}, http: { path: /hc, body_contains: "[node${i + 1}]" } }
    backends: [{ address: "${h1.address}", name: h1 }, { address: "${h2.address}", name: h2 }]`;
    writeFileSync(
      file,
      `
log: { level: info, format: json }
segments:
${segments.join('\n')}
pools:
  p: { backends: [{ address: "${backend.address}" }] }
  sp:
    sticky: { source: { ttl_ms: 600000 } }
    backends: [{ address: "${sticky1.address}" }, { address: "${sticky2.address}" }]
  hp: ${checked('majority')}
  hl: ${checked('local')}
admin: { listen: "127.0.0.1:0", tokens_file: tokens.txt }
cluster:
  node_id: node${i + 1}
  listen: "${peers[i]}"
  peers: [${peers.map((p) => `"${p}"`).join(', ')}]
  key_file: cluster.key
  heartbeat_ms: 200
  suspect_ms: 600
  dead_ms: 1500
`,
    );
    const proc = spawnSeglb(['run', '-c', file]);
    const adminPort = Number((await proc.waitForLog('admin API listening')).port);
    await proc.waitForLog('seglb started');
    const ports: Record<string, number> = {};
    for (const l of proc.logs) if (l.msg === 'VIP listening') ports[String(l.segment)] = Number(l.port);
    return { proc, vipPort: ports['web'] as number, ports, adminPort, file };
  }

  before(async () => {
    backend = await startBackend('backend', '127.0.0.110');
    sticky1 = await startBackend('sticky-1', '127.0.0.111');
    sticky2 = await startBackend('sticky-2', '127.0.0.112');
    h1 = await startPoolBackend('h1[node3]', '127.0.0.113');
    h2 = await startPoolBackend('h2[node2][node3]', '127.0.0.114');
    root = tempDir();
    peers = await Promise.all(HOSTS.map(async (h) => `${h}:${await closedPort(h)}`));
    for (let i = 0; i < 3; i++) nodes.push(await startNode(i));
    // All three see each other.
    await waitFor(
      'peers up',
      async () => {
        const s = await api(nodes[0] as Node, 'GET', '/status');
        return (
          (s.body.cluster?.peers ?? []).filter((p: { state: string }) => p.state === 'alive').length === 2
        );
      },
      10_000,
    );
  });

  after(async () => {
    for (const n of nodes) n.proc.child.kill('SIGKILL');
    await Promise.all([backend, sticky1, sticky2, h1, h2].map((b) => b.close()));
  });

  test('nodes that agree log no policy divergence, and each peer state change once', async () => {
    for (const n of nodes) {
      const alive = () =>
        new Set(n.proc.logs.filter((l) => l['msg'] === 'cluster peer is alive').map((l) => l['peer']));
      await waitFor('both peers seen alive', async () => alive().size === 2, 15_000);
      const msgs = n.proc.logs.map((l) => String(l['msg']));
      assert.deepEqual(
        msgs.filter((m) => /different polic/.test(m)),
        [],
        'no divergence warning while every node runs the same policy',
      );
      // One line per change, from the cluster node (a second, 'cluster peer state', came from the
      // admin link). A peer may flap alive -> suspect -> alive while 3 nodes start on 2 cores.
      assert.deepEqual(
        msgs.filter((m) => m === 'cluster peer state'),
        [],
      );
    }
  });

  test('a quarantine made on node A refuses the source on B and C', async () => {
    const [a, b, c] = nodes as [Node, Node, Node];
    for (const n of [b, c]) {
      const ok = await httpRequest({
        host: HOSTS[nodes.indexOf(n)],
        port: n.vipPort,
        localAddress: '127.0.0.66',
      });
      assert.equal(ok.status, 200);
    }
    const start = performance.now();
    const res = await api(a, 'POST', '/quarantine', {
      cidr: '127.0.0.66',
      ttl_ms: 60_000,
      reason: 'cluster test',
    });
    assert.equal(res.status, 200);
    for (const n of [b, c]) {
      await waitFor('quarantine on peer', async () => {
        const r = await httpRequest({
          host: HOSTS[nodes.indexOf(n)],
          port: n.vipPort,
          localAddress: '127.0.0.66',
        });
        return r.error === 'ECONNRESET' || r.error === 'EPIPE';
      });
    }
    const ms = performance.now() - start;
    console.log(`# quarantine converged on B and C in ${ms.toFixed(1)} ms (incl. client probes)`);
    const other = await httpRequest({ host: HOSTS[1], port: b.vipPort, localAddress: '127.0.0.67' });
    assert.equal(other.status, 200, 'other sources unaffected');
    const listed = await api(c, 'GET', '/quarantine');
    assert.ok(listed.body.some((e: { cidr: string }) => e.cidr === '127.0.0.66/32'));
  });

  test('a rule added on node A applies on B and C; every node reports the same policy hash', async () => {
    const [a, b, c] = nodes as [Node, Node, Node];
    const res = await api(a, 'POST', '/segments/web/rules', {
      kind: 'deny',
      rule: { name: 'no-70', from: ['127.0.0.70'] },
    });
    assert.equal(res.status, 200);
    for (const n of [b, c]) {
      await waitFor('rule on peer', async () => {
        const r = await httpRequest({
          host: HOSTS[nodes.indexOf(n)],
          port: n.vipPort,
          localAddress: '127.0.0.70',
        });
        return r.error === 'ECONNRESET' || r.error === 'EPIPE';
      });
    }
    await waitFor(
      'policy agreed',
      async () => (await api(b, 'GET', '/status')).body.cluster?.policy?.agreed === true,
    );
    const hashes = await Promise.all(
      nodes.map(async (n) => (await api(n, 'GET', '/status')).body.policy.hash),
    );
    assert.equal(new Set(hashes).size, 1, `hashes differ: ${hashes.join(' ')}`);
    const audit = await api(c, 'GET', '/audit');
    assert.ok(
      audit.body.some((e: { actor: string }) => e.actor.startsWith('cluster:')),
      'audited as a cluster change',
    );
  });

  test('seglb ctl status on node A shows the cluster: its node, agreement, both peers alive', async () => {
    const a = nodes[0] as Node;
    const status = () =>
      new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
        execFile(
          process.execPath,
          [MAIN, 'ctl', '--admin', `http://127.0.0.1:${a.adminPort}`, 'status'],
          { env: { PATH: process.env.PATH ?? '', SEGLB_TOKEN: TOKEN }, timeout: 20_000 },
          (err, stdout, stderr) =>
            resolve({ code: err ? (typeof err.code === 'number' ? err.code : null) : 0, stdout, stderr }),
        );
      });
    const alivePeers = (stdout: string) =>
      stdout.split('\n').filter((l) => /^\s+\S+\s+127\.0\.0\.[23]:\d+\s+alive\s/.test(l)).length;
    let out = await status();
    // A peer may be briefly 'suspect' on a loaded machine: ask again until both show alive.
    for (let i = 0; i < 20 && alivePeers(out.stdout) < 2; i++) {
      await new Promise((r) => setTimeout(r, 250));
      out = await status();
    }
    assert.equal(out.code, 0, out.stderr);
    assert.match(out.stdout, /^cluster: node \S+ on 127\.0\.0\.1:\d+; policy agreed$/m);
    assert.equal(alivePeers(out.stdout), 2, out.stdout);
  });

  test('a client stuck to a backend on node A is sent to it by B and C (source stickiness)', async () => {
    const [a, b, c] = nodes as [Node, Node, Node];
    // A's round robin gives its first client sticky-1, so the second one, ours, gets sticky-2;
    // B and C, balancing on their own, would give their first client sticky-1.
    assert.deepEqual(await namesSeen(a, HOSTS[0], 'sticky', '127.0.0.81', 1), new Set(['sticky-1']));
    const start = performance.now();
    assert.deepEqual(await namesSeen(a, HOSTS[0], 'sticky', '127.0.0.80'), new Set(['sticky-2']));
    for (const n of [b, c]) {
      await waitFor('sticky entries on peer', async () => (await poolStatus(n, 'sp')).stickyEntries === 2);
    }
    console.log(`# sticky entries on B and C ${(performance.now() - start).toFixed(1)} ms after A set them`);
    for (const n of [b, c]) {
      const host = HOSTS[nodes.indexOf(n)] as string;
      assert.deepEqual(await namesSeen(n, host, 'sticky', '127.0.0.80'), new Set(['sticky-2']));
      assert.deepEqual(await namesSeen(n, host, 'sticky', '127.0.0.81'), new Set(['sticky-1']));
    }
  });

  test('cluster_view majority: a backend two of three nodes see down is down on the third', async () => {
    const [a, , c] = nodes as [Node, Node, Node];
    // h1: down on node1 and node2, up on node3. h2: down on node1 only.
    await waitFor('majority views on node3', async () => {
      const [v1, v2] = (await poolStatus(c, 'hp')).backends;
      return v1.health === 'up' && v1.clusterHealth === 'down' && !v1.usable && v2.clusterHealth === 'up';
    });
    assert.deepEqual(
      await namesSeen(c, HOSTS[2], 'majority', '127.0.0.90', 6),
      new Set(['h2[node2][node3]']),
    );
    // Both views are in /metrics: node3's own checks say up, the cluster's majority down.
    const metrics = await (
      await fetch(`http://127.0.0.1:${c.adminPort}/metrics`, {
        headers: { authorization: `Bearer ${TOKEN}` },
      })
    ).text();
    assert.match(metrics, /^seglb_backend_health\{pool="hp",backend="h1",view="local"\} 1$/m);
    assert.match(metrics, /^seglb_backend_health\{pool="hp",backend="h1",view="cluster"\} 0$/m);
    assert.match(metrics, /^seglb_backend_health\{pool="hp",backend="h2",view="cluster"\} 1$/m);
    // Node1 sees both down; by the majority h2 is up, so node1 keeps sending to it.
    await waitFor('majority views on node1', async () => {
      const [v1, v2] = (await poolStatus(a, 'hp')).backends;
      return v1.health === 'down' && v2.health === 'down' && v2.clusterHealth === 'up' && v2.usable;
    });
    assert.deepEqual(
      await namesSeen(a, HOSTS[0], 'majority', '127.0.0.90', 6),
      new Set(['h2[node2][node3]']),
    );
    // The same backends with cluster_view local (the default): node3 keeps h1, node1 has nothing.
    await waitFor('local views on node3', async () => {
      const [v1, v2] = (await poolStatus(c, 'hl')).backends;
      return v1.health === 'up' && v1.clusterHealth === 'down' && v1.usable && v2.usable;
    });
    assert.equal((await namesSeen(c, HOSTS[2], 'local', '127.0.0.90', 6)).size, 2);
    const none = await httpRequest({
      host: HOSTS[0],
      port: a.ports['local'] as number,
      localAddress: '127.0.0.90',
    });
    assert.equal(none.status, 503);
  });

  test('a node killed and restarted catches up', async () => {
    const c = nodes[2] as Node;
    c.proc.child.kill('SIGKILL');
    await c.proc.exited;
    const a = nodes[0] as Node;
    await api(a, 'POST', '/quarantine', { cidr: '127.0.0.68', ttl_ms: 60_000, reason: 'while C was down' });
    const restarted = await startNode(2);
    nodes[2] = restarted;
    const ms = await waitFor(
      'catch-up',
      async () => {
        const r = await httpRequest({ host: HOSTS[2], port: restarted.vipPort, localAddress: '127.0.0.68' });
        return r.error === 'ECONNRESET' || r.error === 'EPIPE';
      },
      10_000,
    );
    console.log(
      `# restarted node refused the source quarantined while it was down after ${ms.toFixed(0)} ms`,
    );
    const q = await api(restarted, 'GET', '/quarantine');
    assert.ok(
      q.body.some((e: { cidr: string }) => e.cidr === '127.0.0.66/32'),
      'older entries too',
    );
  });

  test('the restarted node has the sticky entries and the majority views back', async () => {
    const c = nodes[2] as Node;
    await waitFor(
      'sticky entries on the restarted node',
      async () => (await poolStatus(c, 'sp')).stickyEntries === 2,
    );
    assert.deepEqual(await namesSeen(c, HOSTS[2], 'sticky', '127.0.0.80'), new Set(['sticky-2']));
    await waitFor('majority view on the restarted node', async () => {
      const [v1] = (await poolStatus(c, 'hp')).backends;
      return v1.clusterHealth === 'down' && !v1.usable;
    });
  });
});
