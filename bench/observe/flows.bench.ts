// The cost of flow recording on throughput: the same seglb config with `observe.flows` off, on (ring,
// aggregates, metrics) and on with a JSON-lines flow log, each a child process in front of the same
// node backend, loaded by autocannon (keep-alive) in alternating rounds of the same run. Prints the
// median req/s, latency and seglb CPU per request, with ratios against "flows off".
// Run: node bench/observe/flows.bench.ts [--duration 4] [--rounds 3] [--connections 50]

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { treeCpuMs } from '../support/cpu-usage.ts';
import { type LoadResult, runAutocannon } from '../support/load-tools.ts';
import { freePort, killAll, startProcess, waitForPort } from '../support/processes.ts';
import { median } from '../support/report.ts';
import { startNodeBackend } from '../support/servers.ts';

const { values: opts } = parseArgs({
  options: {
    duration: { type: 'string', default: '4' },
    rounds: { type: 'string', default: '3' },
    connections: { type: 'string', default: '50' },
  },
});
const DURATION = Number(opts.duration);
const ROUNDS = Number(opts.rounds);
const CONNECTIONS = Number(opts.connections);
const HOST = '127.0.0.1';
const ROOT = join(import.meta.dirname, '../..');

interface Scenario {
  readonly name: string;
  readonly observe: string;
  port: number;
  pid: number | undefined;
  readonly runs: (LoadResult & { usPerRequest: number | null })[];
}

async function startSeglb(dir: string, s: Scenario, backendPort: number): Promise<void> {
  s.port = await freePort(HOST);
  const file = join(dir, `${s.name.replace(/\W+/g, '-')}.yaml`);
  writeFileSync(
    file,
    `# written by bench/observe/flows.bench.ts
log: { level: warn }
segments:
  web:
    vips: [{ listen: "${HOST}:${s.port}" }]
    pool: backend
    backend_subnets: [127.0.0.0/8]
    allow: [{ name: loopback, from: [127.0.0.0/8] }]
pools:
  backend:
    backends: [{ address: "${HOST}:${backendPort}" }]
${s.observe}
`,
  );
  const proc = startProcess(`seglb (${s.name})`, process.execPath, [
    join(ROOT, 'src/cli/main.ts'),
    'run',
    '-c',
    file,
    '--log-level',
    'warn',
  ]);
  s.pid = proc.child.pid;
  await waitForPort(proc, HOST, s.port, 60_000);
}

async function load(s: Scenario, seconds: number): Promise<LoadResult & { usPerRequest: number | null }> {
  const before = treeCpuMs(s.pid);
  const r = await runAutocannon({
    url: `http://${HOST}:${s.port}/`,
    connections: CONNECTIONS,
    seconds,
    closeEach: false,
  });
  const after = treeCpuMs(s.pid);
  const cpuMs = before && after ? after.user + after.sys - before.user - before.sys : null;
  const requests = r.rps * seconds;
  return { ...r, usPerRequest: cpuMs === null || requests === 0 ? null : (cpuMs * 1000) / requests };
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'seglb-flows-bench-'));
  const scenarios: Scenario[] = [
    {
      name: 'flows off',
      observe: 'observe: { flows: { enabled: false } }',
      port: 0,
      pid: undefined,
      runs: [],
    },
    { name: 'flows on (ring)', observe: '', port: 0, pid: undefined, runs: [] },
    {
      name: 'flows on + flow log',
      observe: `observe: { flow_log: { file: ${JSON.stringify(join(dir, 'flows.jsonl'))}, max_bytes: 67108864, keep: 1 } }`,
      port: 0,
      pid: undefined,
      runs: [],
    },
  ];
  try {
    const backend = await startNodeBackend();
    for (const s of scenarios) await startSeglb(dir, s, backend.httpPort);
    process.stdout.write(
      `flow recording cost: autocannon -c ${CONNECTIONS}, ${DURATION} s x ${ROUNDS} rounds, alternating; node ${process.version}\n`,
    );
    for (const s of scenarios) await load(s, 2); // warm-up: JIT, keep-alive pools
    for (let round = 0; round < ROUNDS; round++) {
      // Rotate the order each round so no scenario always runs first or last.
      for (let i = 0; i < scenarios.length; i++) {
        const s = scenarios[(i + round) % scenarios.length] as Scenario;
        s.runs.push(await load(s, DURATION));
        await new Promise((r) => setTimeout(r, 300));
      }
    }
    const base = median((scenarios[0] as Scenario).runs.map((r) => r.rps));
    const cells = [
      ['scenario', 'req/s (median)', 'min..max', 'p50 ms', 'p99 ms', 'seglb µs CPU/req', 'vs flows off'],
    ];
    for (const s of scenarios) {
      const rps = median(s.runs.map((r) => r.rps));
      const cpu = s.runs.map((r) => r.usPerRequest).filter((x): x is number => x !== null);
      cells.push([
        s.name,
        rps.toFixed(0),
        `${Math.min(...s.runs.map((r) => r.rps)).toFixed(0)}..${Math.max(...s.runs.map((r) => r.rps)).toFixed(0)}`,
        median(s.runs.map((r) => r.p50)).toFixed(1),
        median(s.runs.map((r) => r.p99)).toFixed(1),
        cpu.length ? median(cpu).toFixed(1) : 'n/a',
        `${((rps / base) * 100).toFixed(1)}%`,
      ]);
      const errors = s.runs.reduce((n, r) => n + r.errors, 0);
      if (errors > 0) process.stdout.write(`warning: ${s.name}: ${errors} errors\n`);
    }
    process.stdout.write(`${table(cells)}\n`);
  } finally {
    killAll();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Fixed-width text table; the first row is the header. */
function table(rows: readonly string[][]): string {
  const widths = (rows[0] as string[]).map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  const line = (r: readonly string[]) =>
    r.map((c, i) => (i === 0 ? c.padEnd(widths[i] as number) : c.padStart(widths[i] as number))).join('  ');
  return [line(rows[0] as string[]), line(widths.map((w) => '-'.repeat(w))), ...rows.slice(1).map(line)].join(
    '\n',
  );
}

await main();
