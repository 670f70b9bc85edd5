// End-to-end throughput of seglb against direct-to-backend, HAProxy and nginx in the same run, on
// loopback: every server is a child process, each scenario runs in alternating rounds, medians are
// printed with ratios and CPU per request. The default run (both tools, 3 rounds) takes about 3.8 min.
// Run: node bench/http.bench.ts [--duration 3] [--close-duration 2] [--rounds 3]
//        [--tool autocannon|wrk|both] [--connections 50] [--no-close] [--patience 20] [--nice=-10]
//        [--markdown FILE]
//      node bench/http.bench.ts --profile [http|http-250k|tcp][-close] [--duration 10]  (V8 profile of seglb)

import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { get } from 'node:http';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { summariseCpuProfile } from './support/cpu-profile.ts';
import { machineBusyMs, selfAndReapedCpuMs, treeCpuMs } from './support/cpu-usage.ts';
import { type LoadSpec, runAutocannon, runWrk } from './support/load-tools.ts';
import { killAll, setBenchNiceness } from './support/processes.ts';
import {
  formatMarkdown,
  formatText,
  type Measured,
  type Row,
  summarise,
  tableCells,
} from './support/report.ts';
import {
  type BenchServer,
  startHaproxy,
  startNginxBackend,
  startNginxProxy,
  startNodeBackend,
  startSeglb,
  versionOf,
  which,
  writeCountryIpset,
} from './support/servers.ts';

// `--profile` alone means the HTTP VIP: give parseArgs the value it needs.
const argv = process.argv.slice(2);
const bare = argv.indexOf('--profile');
if (bare >= 0 && (argv[bare + 1] === undefined || argv[bare + 1]?.startsWith('--')))
  argv.splice(bare + 1, 0, 'http');
const { values: opts } = parseArgs({
  args: argv,
  options: {
    duration: { type: 'string' },
    'close-duration': { type: 'string', default: '2' },
    rounds: { type: 'string', default: '3' },
    tool: { type: 'string', default: 'both' },
    connections: { type: 'string', default: '50' },
    'no-close': { type: 'boolean', default: false },
    markdown: { type: 'string' },
    patience: { type: 'string', default: '20' },
    nice: { type: 'string', default: '0' },
    profile: { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
  allowPositionals: false,
});
const rawProfile = opts.profile;
if (opts.help) {
  process.stdout.write(
    `${readHeader()}\nOptions: --duration S (keep-alive run, default 3; profile 10), --close-duration S (default 2),\n` +
      `  --rounds N (3), --tool autocannon|wrk|both (both), --connections N (50), --no-close, --patience S (20),\n` +
      `  --nice=N (e.g. --nice=-10 as root: run every benchmark process at that priority),\n` +
      `  --markdown FILE,\n` +
      `  --profile http|http-250k|tcp|http-close|http-250k-close|tcp-close\n`,
  );
  process.exit(0);
}

const DURATION = Number(opts.duration ?? (rawProfile ? 10 : 3));
const CLOSE_DURATION = Number(opts['close-duration']);
const ROUNDS = Number(opts.rounds);
const CONNECTIONS = Number(opts.connections);
const HOST = '127.0.0.1';
/** Pause between runs, so sockets in TIME_WAIT and deferred work of the last run settle. */
const SETTLE_MS = 300;
/** A run during which other processes used more CPU than this (cores) is repeated (at most twice). */
const MAX_OTHER_CORES = 0.15;
/**
 * Unmeasured load per scenario before the first round: seglb (node) needs several seconds of load
 * before its JIT tiers settle (measured: ~30% more CPU per request in the first 4 s); the native
 * servers and autocannon itself need little.
 */
const WARMUP_SECONDS = { seglb: 4, other: 1 };
/**
 * Seconds the whole benchmark may spend waiting for other processes to leave the CPU and repeating
 * runs they disturbed (--patience); keeps the default run under 4 minutes on a shared machine.
 */
let patienceMs = Number(opts.patience) * 1000;

function readHeader(): string {
  return 'node bench/http.bench.ts: end-to-end throughput, seglb vs direct / HAProxy / nginx on loopback';
}

/** One target of the benchmark. */
interface Scenario {
  readonly name: string;
  readonly port: number;
  readonly proxy: BenchServer | null;
  /** The HAProxy row this one is compared with (same mode), or null. */
  readonly haproxyPeer: string | null;
}

const DIRECT = 'direct to backend';
const HAPROXY_HTTP = 'HAProxy http (nbthread 1)';
const HAPROXY_TCP = 'HAProxy tcp (nbthread 1)';
const SEGLB_1 = 'seglb HTTP VIP, 1 rule';
const SEGLB_250K = 'seglb HTTP VIP, 250k rules';
const SEGLB_TCP = 'seglb TCP VIP, 1 rule';
const NGINX_PROXY = 'nginx proxy (1 worker)';

type Tool = 'autocannon' | 'wrk';

async function main(): Promise<void> {
  const nginx = which('nginx');
  const haproxy = which('haproxy');
  const wrk = which('wrk');
  const wanted: Tool[] = opts.tool === 'both' ? ['autocannon', 'wrk'] : [opts.tool as Tool];
  if (!wanted.every((t) => t === 'autocannon' || t === 'wrk'))
    throw new Error('--tool is autocannon|wrk|both');
  const tools = wanted.filter((t) => t === 'autocannon' || wrk !== null);
  if (tools.length < wanted.length) process.stdout.write('note: wrk is not installed; autocannon only\n');
  if (tools.length === 0) throw new Error('no load generator available');

  const nice = Number(opts.nice);
  if (!Number.isInteger(nice) || nice < -20 || nice > 19) throw new Error('--nice is an integer -20..19');
  setBenchNiceness(nice);
  const dir = mkdtempSync(join(tmpdir(), 'seglb-bench-'));
  // Also on Ctrl-C and errors (the servers are killed first: processes.ts registered earlier).
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  const countries = writeCountryIpset(dir);
  const started = Date.now();
  const sourceBefore = describeSource();
  process.stdout.write(
    `${readHeader()}\n${describeMachine(nginx, haproxy, wrk)}\nseglb: ${sourceBefore}\n` +
      `${nice ? `benchmark processes at nice ${nice}\n` : ''}loadavg before: ${loadavg()
        .map((l) => l.toFixed(2))
        .join(' ')}\n\n`,
  );

  const backend = nginx ? await startNginxBackend(nginx, dir) : await startNodeBackend();
  const backendName = nginx ? 'nginx, 1 worker, return 200 "ok"' : 'node:http (nginx not installed)';

  if (rawProfile !== undefined) {
    await profileSeglb(rawProfile, dir, backend, countries.file, tools, wrk);
    await shutdown([backend], dir);
    return;
  }

  const seglb1 = await startSeglb(dir, backend.httpPort, '1 rule', countries.file);
  const t0 = Date.now();
  const seglb250k = await startSeglb(dir, backend.httpPort, '250k rules', countries.file);
  const bigStartMs = Date.now() - t0;
  const ha = haproxy ? await startHaproxy(haproxy, dir, backend.httpPort) : null;
  const ngx = nginx ? await startNginxProxy(nginx, dir, backend.httpPort) : null;
  process.stdout.write(
    `backend: ${backendName}; ipset for "250k rules": ${countries.prefixes} prefixes ` +
      `(seglb listening ${(bigStartMs / 1000).toFixed(1)} s after spawn)\n`,
  );

  const scenarios: Scenario[] = [
    { name: DIRECT, port: backend.httpPort, proxy: null, haproxyPeer: null },
    { name: SEGLB_1, port: seglb1.httpPort, proxy: seglb1, haproxyPeer: ha ? HAPROXY_HTTP : null },
    { name: SEGLB_250K, port: seglb250k.httpPort, proxy: seglb250k, haproxyPeer: ha ? HAPROXY_HTTP : null },
    { name: SEGLB_TCP, port: seglb1.tcpPort as number, proxy: seglb1, haproxyPeer: ha ? HAPROXY_TCP : null },
  ];
  if (ha) {
    scenarios.push({ name: HAPROXY_HTTP, port: ha.httpPort, proxy: ha, haproxyPeer: HAPROXY_HTTP });
    scenarios.push({ name: HAPROXY_TCP, port: ha.tcpPort as number, proxy: ha, haproxyPeer: HAPROXY_TCP });
  }
  if (ngx) scenarios.push({ name: NGINX_PROXY, port: ngx.httpPort, proxy: ngx, haproxyPeer: HAPROXY_HTTP });

  for (const s of scenarios) await checkAnswer(s);

  // Passes: keep-alive with every tool; connection-per-request with wrk only (see load-tools.ts).
  const passes: { tool: Tool; closeEach: boolean }[] = tools.map((tool) => ({ tool, closeEach: false }));
  if (!opts['no-close'] && tools.includes('wrk')) passes.push({ tool: 'wrk', closeEach: true });
  const runSeconds = (closeEach: boolean) => (closeEach ? CLOSE_DURATION : DURATION) + SETTLE_MS / 1000;
  const perRound = passes.reduce((sum, p) => sum + runSeconds(p.closeEach), 0) * scenarios.length;
  const warmup = (sc: Scenario) =>
    sc.name.startsWith('seglb') ? WARMUP_SECONDS.seglb : WARMUP_SECONDS.other;
  const planned = perRound * ROUNDS + scenarios.reduce((sum, sc) => sum + warmup(sc) + SETTLE_MS / 1000, 0);
  process.stdout.write(
    `${scenarios.length} scenarios x ${passes.length} passes x ${ROUNDS} rounds ` +
      `(keep-alive ${DURATION} s, connection-per-request ${CLOSE_DURATION} s, c=${CONNECTIONS}): ` +
      `about ${(planned / 60).toFixed(1)} min of load, plus repeats of disturbed runs\n`,
  );

  // Warm-up: JIT tiers, keep-alive pools and autocannon itself; not measured.
  for (const s of scenarios) {
    await new Promise((r) => setTimeout(r, SETTLE_MS));
    await measureOnce(s, backend, tools[0] as Tool, wrk, false, warmup(s));
  }
  process.stdout.write('warm-up done\n');

  const results = new Map<string, Measured[]>();
  for (let round = 0; round < ROUNDS; round++) {
    // Rotate the order each round so no scenario always runs first or last.
    const order = scenarios.map((_, i) => scenarios[(i + round) % scenarios.length] as Scenario);
    for (const s of order) {
      for (const pass of round % 2 ? [...passes].reverse() : passes) {
        const r = await measure(
          s,
          backend,
          pass.tool,
          wrk,
          pass.closeEach,
          pass.closeEach ? CLOSE_DURATION : DURATION,
        );
        const key = passKey(pass.tool, pass.closeEach, s.name);
        results.set(key, [...(results.get(key) ?? []), r]);
        process.stdout.write(
          `round ${round + 1}/${ROUNDS}  ${passLabel(pass.tool, pass.closeEach).padEnd(30)} ${s.name.padEnd(28)} ` +
            `${Math.round(r.rps).toString().padStart(7)} req/s  p50 ${r.p50.toFixed(2)} ms  p99 ${r.p99.toFixed(2)} ms` +
            `${r.errors ? `  errors ${r.errors}` : ''}\n`,
        );
      }
    }
  }

  const md: string[] = [];
  process.stdout.write(`\nMedians of ${ROUNDS} rounds:\n`);
  for (const pass of passes) {
    const rows: Row[] = scenarios.map((s) => ({
      scenario: s.name,
      runs: results.get(passKey(pass.tool, pass.closeEach, s.name)) ?? [],
      haproxyPeer: s.haproxyPeer,
    }));
    const cells = tableCells(rows, DIRECT);
    const title = `${passLabel(pass.tool, pass.closeEach)}, c=${CONNECTIONS}, ${pass.closeEach ? CLOSE_DURATION : DURATION} s x ${ROUNDS} rounds`;
    const s1 = summarise(results.get(passKey(pass.tool, pass.closeEach, SEGLB_1)) ?? []);
    const sBig = summarise(results.get(passKey(pass.tool, pass.closeEach, SEGLB_250K)) ?? []);
    const ratio = sBig.rps / s1.rps;
    const ratioLine = `250k rules / 1 rule: ${ratio.toFixed(3)} (${((ratio - 1) * 100).toFixed(1)}%; target within 3%)`;
    process.stdout.write(`\n${title}\n${formatText(cells)}\n${ratioLine}\n`);
    md.push(`#### ${title}\n\n${formatMarkdown(cells)}\n\n${ratioLine}\n`);
  }
  const minutes = ((Date.now() - started) / 60_000).toFixed(1);
  const sourceAfter = describeSource();
  if (sourceAfter !== sourceBefore) {
    process.stdout.write(
      `\nWARNING: src/ changed during the run (now ${sourceAfter}); the figures mix versions.\n`,
    );
  }
  const after = `loadavg after: ${loadavg()
    .map((l) => l.toFixed(2))
    .join(' ')}; whole run ${minutes} min`;
  process.stdout.write(
    `\nCPU columns: cores used during the run by the proxy process tree / the backend / the load generator.\n` +
      `${after}\n`,
  );
  if (opts.markdown) {
    writeFileSync(
      opts.markdown,
      `${describeMachine(nginx, haproxy, wrk)}\nseglb: ${sourceBefore}${sourceAfter !== sourceBefore ? ` (src/ changed later, to ${sourceAfter}; the processes ran the version loaded at start)` : ''}\n\nbackend: ${backendName}\n\n${md.join('\n')}\n${after}\n`,
    );
    process.stdout.write(`Markdown written to ${opts.markdown}\n`);
  }
  const servers = [seglb1, seglb250k, backend];
  if (ha) servers.push(ha);
  if (ngx) servers.push(ngx);
  await shutdown(servers, dir);
}

function passKey(tool: Tool, closeEach: boolean, scenario: string): string {
  return `${tool}|${closeEach}|${scenario}`;
}

function passLabel(tool: Tool, closeEach: boolean): string {
  const t = tool === 'wrk' ? 'wrk -t1' : 'autocannon';
  return `${t}, ${closeEach ? 'new connection per request' : 'keep-alive'}`;
}

/**
 * One load run with the CPU used by proxy, backend, load generator and the rest of the machine
 * meanwhile. Other processes on the machine are waited out before the run, and a run they disturbed
 * anyway (more than MAX_OTHER_CORES) is repeated up to twice; the least disturbed attempt is kept.
 * Both only while the run-wide `patienceMs` lasts.
 */
async function measure(
  s: Scenario,
  backend: BenchServer,
  tool: Tool,
  wrk: string | null,
  closeEach: boolean,
  seconds: number,
): Promise<Measured> {
  let best: Measured | null = null;
  for (let attempt = 0; attempt < 3; attempt++) {
    await waitForQuiet();
    const t0 = Date.now();
    const m = await measureOnce(s, backend, tool, wrk, closeEach, seconds);
    if (best === null || (m.otherCores ?? 0) < (best.otherCores ?? 0)) best = m;
    if ((m.otherCores ?? 0) <= MAX_OTHER_CORES || patienceMs <= 0) break;
    patienceMs -= Date.now() - t0;
    process.stdout.write(
      `  (${s.name}: ${m.otherCores?.toFixed(2)} cores used by other processes during the run; repeating)\n`,
    );
  }
  return best as Measured;
}

/** Waits (within `patienceMs`) until the machine's CPU use outside the benchmark drops below MAX_OTHER_CORES. */
async function waitForQuiet(): Promise<void> {
  const t0 = Date.now();
  let announced = false;
  for (;;) {
    const m0 = machineBusyMs();
    await new Promise((r) => setTimeout(r, SETTLE_MS));
    const m1 = machineBusyMs();
    if (m0 === null || m1 === null || (m1 - m0) / SETTLE_MS <= MAX_OTHER_CORES) break;
    if (Date.now() - t0 >= patienceMs) break;
    if (!announced) process.stdout.write('  (waiting for other processes to leave the CPU)\n');
    announced = true;
  }
  patienceMs -= Date.now() - t0 - SETTLE_MS;
}

async function measureOnce(
  s: Scenario,
  backend: BenchServer,
  tool: Tool,
  wrk: string | null,
  closeEach: boolean,
  seconds: number,
): Promise<Measured> {
  const spec: LoadSpec = { url: `http://${HOST}:${s.port}/`, connections: CONNECTIONS, seconds, closeEach };
  const proxyPid = s.proxy?.proc.child.pid;
  const backendPid = backend.proc.child.pid;
  const p0 = treeCpuMs(proxyPid);
  const b0 = treeCpuMs(backendPid);
  const c0 = selfAndReapedCpuMs();
  const m0 = machineBusyMs();
  const t0 = performance.now();
  const r = tool === 'wrk' ? await runWrk(wrk as string, spec) : await runAutocannon(spec);
  const wallMs = performance.now() - t0;
  const p1 = treeCpuMs(proxyPid);
  const b1 = treeCpuMs(backendPid);
  const c1 = selfAndReapedCpuMs();
  const m1 = machineBusyMs();
  const cores = (a: number | null, b: number | null) => (a === null || b === null ? null : (b - a) / wallMs);
  const total = (t: { user: number; sys: number } | null) => (t === null ? null : t.user + t.sys);
  const proxyCores = cores(total(p0), total(p1));
  const proxySysCores = cores(p0?.sys ?? null, p1?.sys ?? null);
  const backendCores = cores(total(b0), total(b1));
  const clientCores = cores(c0, c1);
  const machine = cores(m0, m1);
  const other =
    machine === null
      ? null
      : Math.max(0, machine - (proxyCores ?? 0) - (backendCores ?? 0) - (clientCores ?? 0));
  return { ...r, proxyCores, proxySysCores, backendCores, clientCores, otherCores: other };
}

/** One GET through the scenario must answer 200 "ok" (so a wrong config is not benchmarked). */
function checkAnswer(s: Scenario): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = get({ host: HOST, port: s.port, path: '/', agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => {
        if (res.statusCode === 200 && body === 'ok') resolve();
        else reject(new Error(`${s.name}: expected 200 "ok", got ${res.statusCode} ${JSON.stringify(body)}`));
      });
    });
    req.setTimeout(5000, () => req.destroy(new Error('timeout')));
    req.on('error', (err) => reject(new Error(`${s.name}: ${err.message}\n${s.proxy?.proc.tail() ?? ''}`)));
  });
}

/**
 * Runs seglb under `node --cpu-prof` with `DURATION` s of keep-alive load (connection-per-request for
 * *-close modes) and prints where its CPU time went.
 */
async function profileSeglb(
  mode: string,
  dir: string,
  backend: BenchServer,
  countryFile: string,
  tools: readonly Tool[],
  wrk: string | null,
): Promise<void> {
  const modes = ['http', 'http-250k', 'tcp', 'http-close', 'http-250k-close', 'tcp-close'];
  if (!modes.includes(mode)) throw new Error(`--profile is one of ${modes.join(', ')}`);
  const profDir = join(dir, 'prof');
  const seglb = await startSeglb(
    dir,
    backend.httpPort,
    mode.startsWith('http-250k') ? '250k rules' : '1 rule',
    countryFile,
    ['--cpu-prof', `--cpu-prof-dir=${profDir}`],
  );
  const closeEach = mode.endsWith('-close');
  const tool: Tool = tools.includes('wrk') ? 'wrk' : 'autocannon';
  if (closeEach && tool !== 'wrk') throw new Error('connection-per-request profiling needs wrk');
  const s: Scenario = {
    name: `seglb ${mode}`,
    port: mode.startsWith('tcp') ? (seglb.tcpPort as number) : seglb.httpPort,
    proxy: seglb,
    haproxyPeer: null,
  };
  await checkAnswer(s);
  await measureOnce(s, backend, tool, wrk, closeEach, WARMUP_SECONDS.seglb);
  await waitForQuiet();
  const r = await measureOnce(s, backend, tool, wrk, closeEach, DURATION);
  await seglb.proc.stop(10_000);
  const file = readdirSync(profDir).find((f) => f.endsWith('.cpuprofile'));
  if (!file) throw new Error(`no profile written:\n${seglb.proc.tail()}`);
  const root = new URL('../', import.meta.url).href;
  const sum = summariseCpuProfile(join(profDir, file), root);
  const pct = (x: number) => `${(x * 100).toFixed(1)}%`.padStart(6);
  const out: string[] = [
    `seglb: ${describeSource()}`,
    `profile of ${s.name} under ${passLabel(tool, closeEach)}, c=${CONNECTIONS}, ${DURATION} s: ` +
      `${Math.round(r.rps)} req/s, p50 ${r.p50.toFixed(2)} ms, p99 ${r.p99.toFixed(2)} ms`,
    `seglb used ${r.proxyCores?.toFixed(2)} cores (${(((r.proxySysCores ?? 0) / (r.proxyCores || 1)) * 100).toFixed(0)}% in the kernel), ` +
      `${(((r.proxyCores ?? 0) * 1e6) / r.rps).toFixed(1)} us CPU per request; other processes on the machine ${r.otherCores?.toFixed(2)} cores`,
    `V8 samples the main thread's wall time: ${(sum.totalMs / 1000).toFixed(1)} s over the process lifetime (start-up included);`,
    'time in a syscall (writev, writeLatin1String) includes kernel TCP work and being preempted there.',
    '',
    'by category:',
    ...sum.categories.map((c) => `  ${pct(c.share)}  ${c.category}`),
    '',
    'top 25 functions by self time:',
    ...sum.functions.slice(0, 25).map((f) => `  ${pct(f.share)}  ${f.name}  ${f.where}`),
    '',
    'top 15 seglb src/ functions by self time:',
    ...sum.functions
      .filter((f) => f.category === 'seglb src/')
      .slice(0, 15)
      .map((f) => `  ${pct(f.share)}  ${f.name}  ${f.where}`),
    '',
    'top 15 seglb src/ functions by total time (self + what they call):',
    ...sum.srcInclusive.slice(0, 15).map((f) => `  ${pct(f.share)}  ${f.name}  ${f.where}`),
  ];
  const keep = join(tmpdir(), `seglb-${mode}-${Date.now()}.cpuprofile`);
  copyFileSync(join(profDir, file), keep);
  out.push('', `profile kept at ${keep} (open in Chrome DevTools > Performance)`);
  process.stdout.write(`${out.join('\n')}\n`);
}

async function shutdown(servers: readonly BenchServer[], dir: string): Promise<void> {
  await Promise.all(servers.map((s) => s.proc.stop()));
  killAll();
  rmSync(dir, { recursive: true, force: true });
}

/**
 * What code was measured: the commit, whether src/ has uncommitted changes, and a hash of src/'s
 * contents (compared at the end of the run, since others may edit src/ meanwhile).
 */
function describeSource(): string {
  const root = fileURLToPath(new URL('../', import.meta.url));
  const git = (args: string[]) =>
    spawnSync('git', ['-C', root, ...args], { encoding: 'utf8' }).stdout?.trim() ?? '';
  const commit = git(['rev-parse', '--short', 'HEAD']) || 'unknown';
  const dirty = git(['status', '--porcelain', '--', 'src']) !== '';
  return `${commit}${dirty ? ' + uncommitted src/ changes' : ''}, src/ content hash ${hashTree(join(root, 'src'))}`;
}

function hashTree(dir: string): string {
  const h = createHash('sha256');
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) h.update(p).update(readFileSync(p));
    }
  };
  walk(dir);
  return h.digest('hex').slice(0, 12);
}

function describeMachine(nginx: string | null, haproxy: string | null, wrk: string | null): string {
  const cpu = cpus();
  let acVersion = '?';
  try {
    const pkg = new URL('../node_modules/autocannon/package.json', import.meta.url);
    acVersion = (JSON.parse(readFileSync(pkg, 'utf8')) as { version: string }).version;
  } catch {
    // not installed: reported as '?'
  }
  const parts = [
    `machine: ${cpu.length} cores (${cpu[0]?.model.trim() ?? '?'}), Linux, loopback only`,
    `node ${process.version}; autocannon ${acVersion}`,
    wrk ? versionOf(wrk, ['--version']).replace(/ Copyright.*/, '') : 'wrk: not installed',
    haproxy ? versionOf(haproxy, ['-v']).replace(/ - https.*/, '') : 'haproxy: not installed',
    nginx ? versionOf(nginx, ['-v']) : 'nginx: not installed',
  ];
  return parts.join('\n');
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`http.bench: ${(err as Error).stack ?? String(err)}\n`);
    killAll();
    process.exit(1);
  },
);
