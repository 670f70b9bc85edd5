// Allowed traffic under a flood, on loopback: the latency of a legitimate client (keep-alive requests
// and a new connection per request) while nothing else happens, while a flood of connections from
// denied sources (127.1.0.0/16, refused at accept by default deny) runs, and while a flood from a
// few allowed sources is cut by the per-source connection-rate limit. A control phase floods a closed
// port instead (the kernel answers, seglb sees nothing): what is left of the slowdown is the flood
// generator competing for the same 2 cores, not seglb. seglb, the backend and the flood are child
// processes; phases alternate over rounds and the figures pool the rounds.
// Run: node bench/hardening/deny-flood.bench.ts [--seconds 3] [--rounds 3] [--flood 64]

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { treeCpuMs } from '../support/cpu-usage.ts';
import { freePort, startProcess, trackTransient, waitForPort } from '../support/processes.ts';
import { startNginxBackend, startNodeBackend, which } from '../support/servers.ts';

const { values: opts } = parseArgs({
  options: {
    seconds: { type: 'string', default: '3' },
    rounds: { type: 'string', default: '3' },
    flood: { type: 'string', default: '64' },
  },
});
const SECONDS = Number(opts.seconds);
const ROUNDS = Number(opts.rounds);
const FLOOD = Number(opts.flood);
const ROOT = new URL('../../', import.meta.url).pathname;
const PROBE_SOURCE = '127.0.0.2';

type Phase = 'quiet' | 'flood to a closed port (control)' | 'deny flood' | 'rate-limited flood';
const PHASES: readonly Phase[] = [
  'quiet',
  'flood to a closed port (control)',
  'deny flood',
  'rate-limited flood',
];

interface Samples {
  keepAlive: number[];
  fresh: number[];
  errors: number;
  floodAttempts: number;
  floodAccepted: number;
  seglbCpuMs: number;
  ms: number;
}

function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))] ?? Number.NaN;
}

function get(port: number, agent: Agent | false): Promise<number> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const req = request({ host: '127.0.0.1', port, path: '/', agent, localAddress: PROBE_SOURCE }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode === 200 ? performance.now() - t0 : -1));
    });
    req.on('error', () => resolve(-1));
    req.setTimeout(5000, () => req.destroy());
    req.end();
  });
}

/** The legitimate client: 2 keep-alive workers and 2 new-connection workers, closed loop. */
async function probe(port: number, until: number, into: Samples): Promise<void> {
  const agent = new Agent({ keepAlive: true, maxSockets: 2 });
  const worker = async (fresh: boolean) => {
    while (Date.now() < until) {
      const ms = await get(port, fresh ? false : agent);
      if (ms < 0) into.errors++;
      else (fresh ? into.fresh : into.keepAlive).push(ms);
    }
  };
  await Promise.all([worker(false), worker(false), worker(true), worker(true)]);
  agent.destroy();
}

function flood(
  port: number,
  prefix: string,
  sources: number,
): Promise<{ attempts: number; accepted: number }> {
  return new Promise((resolve) => {
    const child = spawn(
      process.execPath,
      [
        join(ROOT, 'bench/hardening/flood-client.ts'),
        String(port),
        prefix,
        String(SECONDS),
        String(FLOOD),
        String(sources),
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    trackTransient(child);
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.on('exit', () => {
      try {
        resolve(JSON.parse(out) as { attempts: number; accepted: number });
      } catch {
        resolve({ attempts: 0, accepted: 0 });
      }
    });
  });
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'seglb-deny-flood-'));
  const nginx = which('nginx');
  const backend = nginx ? await startNginxBackend(nginx, dir) : await startNodeBackend();
  const port = await freePort();
  const closed = await freePort();
  const file = join(dir, 'seglb.yaml');
  writeFileSync(
    file,
    `# written by bench/hardening/deny-flood.bench.ts
log: { level: warn, format: json }
limits:
  per_source: { rate_per_second: 20, burst: 20, exempt: [${PROBE_SOURCE}] }
segments:
  web:
    vips: [{ listen: "127.0.0.1:${port}" }]
    pool: p
    backend_subnets: [127.0.0.0/8]
    allow: [{ name: local, from: [127.0.0.0/24, 127.2.0.0/16] }]
pools:
  p:
    backends: [{ address: "127.0.0.1:${backend.httpPort}" }]
`,
  );
  const seglb = startProcess('seglb', process.execPath, [join(ROOT, 'src/cli/main.ts'), 'run', '-c', file]);
  try {
    await waitForPort(seglb, '127.0.0.1', port, 15_000);
    // Warm-up: JIT, keep-alive pools.
    await probe(port, Date.now() + 1500, {
      keepAlive: [],
      fresh: [],
      errors: 0,
      floodAttempts: 0,
      floodAccepted: 0,
      seglbCpuMs: 0,
      ms: 0,
    });
    const samples = new Map<Phase, Samples>(
      PHASES.map((p) => [
        p,
        { keepAlive: [], fresh: [], errors: 0, floodAttempts: 0, floodAccepted: 0, seglbCpuMs: 0, ms: 0 },
      ]),
    );
    for (let round = 0; round < ROUNDS; round++) {
      // Rotate the order each round, so drift in the machine's load does not favour one phase.
      const order = PHASES.map((_, i) => PHASES[(i + round) % PHASES.length] as Phase);
      for (const phase of order) {
        const s = samples.get(phase) as Samples;
        const cpu0 = treeCpuMs(seglb.child.pid);
        const t0 = Date.now();
        const until = t0 + SECONDS * 1000;
        const [, f] = await Promise.all([
          probe(port, until, s),
          phase === 'quiet'
            ? Promise.resolve({ attempts: 0, accepted: 0 })
            : phase === 'deny flood'
              ? flood(port, '127.1', 62_500)
              : phase === 'rate-limited flood'
                ? flood(port, '127.2', 4)
                : flood(closed, '127.1', 62_500),
        ]);
        const cpu1 = treeCpuMs(seglb.child.pid);
        s.floodAttempts += f.attempts;
        s.floodAccepted += f.accepted;
        s.ms += Date.now() - t0;
        if (cpu0 && cpu1) s.seglbCpuMs += cpu1.user + cpu1.sys - cpu0.user - cpu0.sys;
        await new Promise((r) => setTimeout(r, 300)); // TIME_WAIT and deferred work settle
      }
    }
    const quiet = samples.get('quiet') as Samples;
    // seglb CPU per legitimate request when quiet, to take the probe's share out of the flood phases.
    const cpuPerRequest = quiet.seglbCpuMs / (quiet.keepAlive.length + quiet.fresh.length);
    const rows = PHASES.map((phase) => {
      const s = samples.get(phase) as Samples;
      const secs = s.ms / 1000;
      return {
        phase,
        floodPerSec: s.floodAttempts / secs,
        acceptedPerSec: s.floodAccepted / secs,
        cpu: s.seglbCpuMs / s.ms,
        ka: [percentile(s.keepAlive, 50), percentile(s.keepAlive, 99), s.keepAlive.length / secs],
        fresh: [percentile(s.fresh, 50), percentile(s.fresh, 99), s.fresh.length / secs],
        errors: s.errors,
        usPerRefused:
          s.floodAttempts > 0
            ? ((s.seglbCpuMs - (s.keepAlive.length + s.fresh.length) * cpuPerRequest) * 1000) /
              s.floodAttempts
            : Number.NaN,
      };
    });
    const f = (n: number, d = 2) => (Number.isFinite(n) ? n.toFixed(d) : '-');
    const out: string[] = [
      `deny-flood bench: ${ROUNDS} rounds x ${SECONDS} s per phase, flood concurrency ${FLOOD}, backend ${nginx ? 'nginx' : 'node'}; legitimate client ${PROBE_SOURCE}: 2 keep-alive + 2 new-connection workers`,
      '',
      '| phase | flood conn/s | flood accepted/s | seglb CPU (cores) | seglb us per flood conn | keep-alive p50 / p99 ms | req/s | new-conn p50 / p99 ms | req/s | errors |',
      '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
      ...rows.map(
        (r) =>
          `| ${r.phase} | ${f(r.floodPerSec, 0)} | ${f(r.acceptedPerSec, 0)} | ${f(r.cpu)} | ${r.phase.includes('control') ? '-' : f(r.usPerRefused, 1)} | ${f(r.ka[0] as number)} / ${f(r.ka[1] as number)} | ${f(r.ka[2] as number, 0)} | ${f(r.fresh[0] as number)} / ${f(r.fresh[1] as number)} | ${f(r.fresh[2] as number, 0)} | ${r.errors} |`,
      ),
      '',
    ];
    for (const r of rows.slice(1)) {
      const q = rows[0] as (typeof rows)[number];
      out.push(
        `${r.phase} / quiet: keep-alive p50 x${f((r.ka[0] as number) / (q.ka[0] as number))}, p99 x${f((r.ka[1] as number) / (q.ka[1] as number))}; new-connection p50 x${f((r.fresh[0] as number) / (q.fresh[0] as number))}, p99 x${f((r.fresh[1] as number) / (q.fresh[1] as number))}`,
      );
    }
    process.stdout.write(`${out.join('\n')}\n`);
  } finally {
    await seglb.stop();
    await backend.proc.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
