// Failover under load: autocannon against seglb (a child process) with three backends (child
// processes) while one backend is SIGKILLed and restarted. Prints the failed requests (target 0), the
// time from the kill to the backend being taken out (passive ejection and active health check), and
// the time from the restart to its return, beside a baseline run of the same load with no kill.
// Run: node bench/pools/failover.bench.ts [--duration 10] [--connections 50] [--kill-at 3] [--restart-at 6]
// (~35 s; FAILOVER_DEBUG=1 also prints seglb's log messages by count).

import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import {
  freePort,
  type ManagedProcess,
  startProcess,
  trackTransient,
  waitForPort,
} from '../support/processes.ts';

const { values } = parseArgs({
  options: {
    duration: { type: 'string', default: '10' },
    connections: { type: 'string', default: '50' },
    'kill-at': { type: 'string', default: '3' },
    'restart-at': { type: 'string', default: '6' },
  },
});
const DURATION_S = Number(values.duration);
const CONNECTIONS = Number(values.connections);
const KILL_AT_MS = Number(values['kill-at']) * 1000;
const RESTART_AT_MS = Number(values['restart-at']) * 1000;
const ROOT = join(import.meta.dirname, '../..');
const NODE = process.execPath;

interface AutocannonResult {
  requests: { total: number; average: number };
  latency: { p50: number; p99: number; max: number };
  duration: number;
  errors: number;
  timeouts: number;
  non2xx: number;
  statusCodeStats?: Record<string, { count: number }>;
}
type Autocannon = ((
  opts: Record<string, unknown>,
  cb: (err: Error | null, r: AutocannonResult) => void,
) => unknown) & {
  track?: unknown;
};
const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon;

function load(url: string): Promise<AutocannonResult> {
  return new Promise((resolve, reject) => {
    autocannon(
      { url, connections: CONNECTIONS, pipelining: 1, duration: DURATION_S, timeout: 5 },
      (err, r) => (err ? reject(err) : resolve(r)),
    );
  });
}

/** One JSON log line of seglb. */
interface LogLine {
  time: number;
  msg: string;
  address?: string;
}

/** seglb as a child process; its JSON log lines are collected. */
function startSeglb(config: string): { child: ChildProcess; logs: LogLine[] } {
  const child = spawn(NODE, [join(ROOT, 'src/cli/main.ts'), 'run', '-c', config, '--log-format', 'json'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  trackTransient(child);
  const logs: LogLine[] = [];
  let buffer = '';
  child.stdout?.setEncoding('utf8');
  child.stdout?.on('data', (d: string) => {
    buffer += d;
    for (let nl = buffer.indexOf('\n'); nl >= 0; nl = buffer.indexOf('\n')) {
      const line = buffer.slice(0, nl);
      buffer = buffer.slice(nl + 1);
      try {
        logs.push(JSON.parse(line) as LogLine);
      } catch {
        // not JSON
      }
    }
  });
  child.stderr?.resume();
  return { child, logs };
}

async function startBackend(port: number): Promise<ManagedProcess> {
  const p = startProcess(`backend:${port}`, NODE, [
    join(ROOT, 'bench/support/node-backend.ts'),
    String(port),
  ]);
  await waitForPort(p, '127.0.0.1', port);
  return p;
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'seglb-failover-'));
  const ports = await Promise.all([freePort(), freePort(), freePort()]);
  const backends = await Promise.all(ports.map((p) => startBackend(p)));
  const vip = await freePort();
  const pool = `    algorithm: round_robin
    retries: 2
    health_check: { type: http, interval_ms: 1000, timeout_ms: 500, rise: 2, fall: 3, http: { path: / } }
    outlier_detection: { consecutive_connect_failures: 3, base_ejection_ms: 2000 }`;
  const file = join(dir, 'seglb.yaml');
  writeFileSync(
    file,
    `log: { level: info, format: json }
segments:
  web:
    vips: [{ listen: "127.0.0.1:${vip}" }]
    pool: p
    backend_subnets: [127.0.0.0/8]
    allow: [{ from: [127.0.0.0/8] }]
pools:
  p:
${pool}
    backends: [${ports.map((p, i) => `{ address: "127.0.0.1:${p}", name: b${i + 1} }`).join(', ')}]
`,
  );
  const lb = startSeglb(file);
  const seglbProc = {
    child: lb.child,
    name: 'seglb',
    tail: () => '',
    stop: async () => {},
  } as ManagedProcess;
  await waitForPort(seglbProc, '127.0.0.1', vip);
  const url = `http://127.0.0.1:${vip}/`;

  console.log(
    `failover bench: autocannon -c ${CONNECTIONS} for ${DURATION_S} s per run, 3 node backends, seglb child process`,
  );
  console.log(`pool:\n${pool}\n`);
  await load(url).catch(() => undefined); // warm-up (JIT, keep-alive pools)

  const baseline = await load(url);
  const killed = ports[0]!;
  const victim = backends[0]!;
  let killAt = 0;
  let restartAt = 0;
  let restarted: ManagedProcess | null = null;
  const run = load(url);
  const killTimer = setTimeout(() => {
    killAt = Date.now();
    victim.child.kill('SIGKILL');
  }, KILL_AT_MS);
  const restartTimer = setTimeout(async () => {
    restartAt = Date.now();
    restarted = await startBackend(killed);
  }, RESTART_AT_MS);
  const failover = await run;
  clearTimeout(killTimer);
  clearTimeout(restartTimer);
  await new Promise((r) => setTimeout(r, 200));

  const address = `127.0.0.1:${killed}`;
  const about = lb.logs.filter((l) => l.address === address);
  const first = (re: RegExp, after: number) => about.find((l) => re.test(l.msg) && l.time >= after)?.time;
  const ejectedAt = first(/^backend ejected/, killAt);
  const downAt = first(/^backend down/, killAt);
  const backFromEjection = first(/^backend back from ejection/, restartAt);
  const upAt = first(/^backend up/, restartAt);
  const returnedAt = Math.max(backFromEjection ?? restartAt, upAt ?? restartAt);
  const failed = (r: AutocannonResult) => r.errors + r.timeouts + r.non2xx;
  const codes = (r: AutocannonResult) =>
    Object.entries(r.statusCodeStats ?? {})
      .map(([c, s]) => `${c}:${s.count}`)
      .join(' ');
  const row = (name: string, r: AutocannonResult) =>
    `${name.padEnd(22)} ${String(r.requests.total).padStart(8)} ${(r.requests.total / r.duration).toFixed(0).padStart(8)} ${String(failed(r)).padStart(7)} ${String(r.latency.p50).padStart(6)} ${String(r.latency.p99).padStart(6)} ${String(r.latency.max).padStart(7)}   ${codes(r)}`;
  console.log(
    `${'run'.padEnd(22)} ${'requests'.padStart(8)} ${'req/s'.padStart(8)} ${'failed'.padStart(7)} ${'p50ms'.padStart(6)} ${'p99ms'.padStart(6)} ${'max ms'.padStart(7)}   status codes`,
  );
  console.log(row('baseline (no kill)', baseline));
  console.log(row('kill + restart b1', failover));
  console.log('');
  const ms = (t: number | undefined, from: number) => (t === undefined ? 'not seen' : `${t - from} ms`);
  console.log(`b1 SIGKILLed at +${KILL_AT_MS / 1000} s, restarted at +${RESTART_AT_MS / 1000} s`);
  console.log(`kill -> marked down (passive ejection):   ${ms(ejectedAt, killAt)}`);
  console.log(`kill -> marked down (active check, fall): ${ms(downAt, killAt)}`);
  console.log(
    `restart -> back in service:              ${backFromEjection === undefined && upAt === undefined ? 'not seen' : `${returnedAt - restartAt} ms`}`,
  );
  console.log(
    `failed requests during kill/restart: ${failed(failover)} (target 0); ratio to baseline req/s: ${(failover.requests.total / failover.duration / (baseline.requests.total / baseline.duration)).toFixed(2)}`,
  );

  if (process.env['FAILOVER_DEBUG']) {
    const byMsg = new Map<string, number>();
    for (const l of lb.logs) {
      const k = `${l.msg} ${(l as { code?: string }).code ?? ''}`;
      byMsg.set(k, (byMsg.get(k) ?? 0) + 1);
    }
    console.log(byMsg);
  }
  lb.child.kill('SIGTERM');
  await once(lb.child, 'exit');
  for (const b of [...backends.slice(1), restarted as ManagedProcess | null]) await b?.stop(1000);
}

await main();
process.exit(0);
