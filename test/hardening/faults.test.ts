// Backend faults: a backend that dies mid-response, resets, hangs, answers garbage, sends an
// ambiguous response, or closes keep-alive connections right after answering. The client must get
// a correct error (502/504, or a connection closed before the body was complete: never a truncated
// body passed off as whole), and after 10,000 such failures seglb must hold no more sockets, file
// descriptors or heap than before.

import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { describe, test } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { type ClientResult, httpRequest } from '../support/net.ts';
import { startSeglb } from '../support/seglb.ts';
import { FAULTS, type Fault, startFaultBackend } from './support/fault-backend.ts';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/** What the client may see for each fault. */
function acceptable(fault: Fault, r: ClientResult): boolean {
  switch (fault) {
    case '/die':
      // Headers were already sent: the only honest signal left is closing the connection early.
      return r.error !== undefined || (r.status === 200 && r.body.length < 1000 && r.body !== '');
    case '/die-chunked':
      return r.error !== undefined; // no last chunk: the client must see the message was cut
    case '/reset':
    case '/garbage':
    case '/bad-length':
      return r.status === 502;
    case '/hang':
      return r.status === 504;
    case '/early-close':
      return r.status === 200 || r.status === 502;
  }
}

function openFds(): number {
  return readdirSync('/proc/self/fd').length;
}

function activeHandles(): number {
  return (process as unknown as { _getActiveHandles(): unknown[] })._getActiveHandles().length;
}

async function settle(baseline: { fds: number; handles: number }, slack: number, ms: number) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (openFds() <= baseline.fds + slack && activeHandles() <= baseline.handles + slack) return;
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('backend faults', () => {
  test('each fault gets a correct answer, and seglb keeps serving', async () => {
    const backend = await startFaultBackend('127.0.0.91');
    const lb = await startSeglb(`
log: { level: silent }
timeouts: { backend_response_ms: 100, backend_idle_ms: 200 }
segments:
  web:
    vips: [{ listen: "127.0.0.1:0" }]
    pool: p
    backend_subnets: [127.0.0.0/8]
    allow: [{ from: [127.0.0.0/8] }]
pools:
  p:
    backends: [{ address: "${backend.address}" }]
`);
    try {
      for (const fault of FAULTS) {
        const r = await httpRequest({ port: lb.port('web'), path: fault });
        assert.ok(
          acceptable(fault, r),
          `${fault}: got ${JSON.stringify({ status: r.status, error: r.error, body: r.body.slice(0, 60) })}`,
        );
        if (r.status >= 500)
          assert.ok(r.headers['x-request-id'], `${fault}: a seglb error carries a request id`);
      }
      assert.equal((await httpRequest({ port: lb.port('web'), path: '/fine' })).status, 200);
    } finally {
      await lb.stop();
      await backend.close();
    }
  });

  test('10,000 failures leak no socket, file descriptor or memory', { timeout: 90_000 }, async () => {
    const backend = await startFaultBackend('127.0.0.92');
    const lb = await startSeglb(`
log: { level: silent }
timeouts: { backend_response_ms: 50, backend_idle_ms: 100, client_idle_ms: 200 }
limits: { backend_connections: 64 }
segments:
  web:
    vips: [{ listen: "127.0.0.1:0" }]
    pool: p
    backend_subnets: [127.0.0.0/8]
    allow: [{ from: [127.0.0.0/8] }]
pools:
  p:
    backends: [{ address: "${backend.address}" }]
`);
    const port = lb.port('web');
    // Every fault but /hang is cheap; /hang costs backend_response_ms, so it gets a smaller share.
    const mix: Fault[] = [];
    for (const f of FAULTS) for (let i = 0; i < (f === '/hang' ? 4 : 10); i++) mix.push(f);
    const run = async (total: number, concurrency: number) => {
      const bad: string[] = [];
      let next = 0;
      const worker = async (w: number) => {
        while (next < total) {
          const i = next++;
          const fault = mix[i % mix.length] as Fault;
          const r = await httpRequest({ port, path: fault, localAddress: `127.0.4.${(w % 8) + 1}` });
          if (!acceptable(fault, r) && bad.length < 5) bad.push(`${fault}: ${r.status} ${r.error ?? ''}`);
        }
      };
      await Promise.all(Array.from({ length: concurrency }, (_, w) => worker(w)));
      return bad;
    };
    try {
      // Warm up (JIT, undici pool, lazy modules), then take the baseline.
      assert.deepEqual(await run(500, 32), []);
      await new Promise((r) => setTimeout(r, 500));
      gc();
      const baseline = { fds: openFds(), handles: activeHandles(), heap: process.memoryUsage().heapUsed };
      const t0 = performance.now();
      const bad = await run(10_000, 48);
      const took = performance.now() - t0;
      assert.deepEqual(bad, [], 'every failure got a correct answer');
      await settle(baseline, 4, 8000);
      gc();
      const after = { fds: openFds(), handles: activeHandles(), heap: process.memoryUsage().heapUsed };
      const heapGrowthMiB = (after.heap - baseline.heap) / 1024 / 1024;
      process.stdout.write(
        `# 10,000 failures in ${(took / 1000).toFixed(1)} s: fds ${baseline.fds} -> ${after.fds}, handles ${baseline.handles} -> ${after.handles}, heap ${(baseline.heap / 1048576).toFixed(1)} -> ${(after.heap / 1048576).toFixed(1)} MiB; backend saw ${[...backend.seen].map(([k, v]) => `${k} ${v}`).join(', ')}\n`,
      );
      assert.ok(after.fds <= baseline.fds + 4, `open fds ${baseline.fds} -> ${after.fds}`);
      assert.ok(
        after.handles <= baseline.handles + 4,
        `active handles ${baseline.handles} -> ${after.handles}`,
      );
      assert.ok(heapGrowthMiB < 8, `heap grew by ${heapGrowthMiB.toFixed(1)} MiB`);
      const pool = lb.runtime.snapshot.segments.get('web')?.pool;
      assert.equal(pool?.backends[0]?.inflight, 0, 'no backend request left in flight');
      assert.equal(lb.runtime.shared.sourceLimits?.open, 0, 'no client connection left counted');
      assert.equal((await httpRequest({ port, path: '/fine' })).status, 200);
    } finally {
      await lb.stop();
      await backend.close();
    }
  });
});
