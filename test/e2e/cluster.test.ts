// Three seglb processes as one cluster (127.0.0.1/.2/.3): a quarantine made through node A's admin
// API refuses the source on B and C; a rule added on A applies on B and C; a node restarted later
// catches up.

import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { closedPort, httpRequest, startBackend, type TestBackend } from '../support/net.ts';
import { type SeglbProcess, spawnSeglb, tempDir } from '../support/seglb.ts';

const TOKEN = 'cluster-test-admin-token-0123456789';
const HOSTS = ['127.0.0.1', '127.0.0.2', '127.0.0.3'] as const;

interface Node {
  proc: SeglbProcess;
  vipPort: number;
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

describe('cluster of three seglb processes', () => {
  let backend: TestBackend;
  let root: string;
  let peers: string[];
  const nodes: Node[] = [];

  async function startNode(i: number): Promise<Node> {
    const dir = join(root, `node${i + 1}`);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'tokens.txt'), `ops admin ${TOKEN}\n`, { mode: 0o600 });
    writeFileSync(join(dir, 'cluster.key'), `${'5e'.repeat(32)}\n`, { mode: 0o600 });
    const file = join(dir, 'seglb.yaml');
    writeFileSync(
      file,
      `
log: { level: info, format: json }
segments:
  web:
    vips: [{ listen: "${HOSTS[i]}:0" }]
    pool: p
    backend_subnets: [127.0.0.0/8]
    allow: [{ name: loopback, from: [127.0.0.0/8] }]
pools:
  p: { backends: [{ address: "${backend.address}" }] }
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
    const vipPort = Number((await proc.waitForLog('VIP listening')).port);
    const adminPort = Number((await proc.waitForLog('admin API listening')).port);
    await proc.waitForLog('seglb started');
    return { proc, vipPort, adminPort, file };
  }

  before(async () => {
    backend = await startBackend('backend', '127.0.0.110');
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
    await backend.close();
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
});
