// End-to-end throughput of seglb against direct-to-backend, HAProxy, nginx and a baseline Node proxy
// (http-proxy-3) in the same run, on loopback: every server is a child process, each scenario runs in
// alternating rounds under every pass (small GET keep-alive, new connection per request, 64 KiB
// responses, 16 KiB POST bodies), medians are printed with same-round ratios, CPU per request and
// peak RSS, and written to bench/results/. The default run (3 rounds) takes about 7 min.
// Run: node bench/http.bench.ts [--quick] [--rounds 3] [--passes get,close,64k,post]
//        [--tool autocannon|wrk|both] [--large-tool wrk] [--duration 3] [--close-duration 2]
//        [--large-duration 2] [--connections 50] [--large-connections 200] [--no-close]
//        [--patience 20] [--nice=-10] [--markdown FILE] [--results-dir DIR] [--readme [FILE]]
//      node bench/http.bench.ts --soak SECONDS       (seglb 250k rules: RSS and heap under load)
//      node bench/http.bench.ts --profile [http|http-250k|tcp][-close] [--duration 10]  (V8 profile of seglb)

import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { type CheckKind, checkAnswer } from './support/checks.ts';
import { summariseCpuProfile } from './support/cpu-profile.ts';
import { machineBusyMs, selfAndReapedCpuMs, treeCpuMs } from './support/cpu-usage.ts';
import {
  fileStamp,
  type MachineInfo,
  machineInfo,
  machineLine,
  machineLines,
  type SourceInfo,
  sourceInfo,
  sourceText,
} from './support/describe.ts';
import { type LoadSpec, runAutocannon, runWrk } from './support/load-tools.ts';
import { heapProbeFlags, sampleRssPeak } from './support/memory.ts';
import { LARGE_PATH, LARGE_RESPONSE_BYTES, POST_BODY_BYTES } from './support/payloads.ts';
import { killAll, setBenchNiceness } from './support/processes.ts';
import {
  fmtInt,
  fmtMB,
  formatMarkdown,
  formatText,
  type Measured,
  perRoundRatio,
  README_END,
  README_START,
  type RowResult,
  replaceReadmeBlock,
  rowResults,
  tableCells,
} from './support/report.ts';
import {
  type BenchServer,
  startBaselineProxy,
  startHaproxy,
  startNginxBackend,
  startNginxProxy,
  startNodeBackend,
  startSeglb,
  which,
  writeCountryIpset,
} from './support/servers.ts';
import { RSS_TARGET_BYTES, runSoak } from './support/soak.ts';

const ROOT = fileURLToPath(new URL('../', import.meta.url));

// `--profile` alone means the HTTP VIP and `--readme` alone the project's README: give parseArgs
// the value it needs.
const argv = process.argv.slice(2);
for (const [flag, value] of [
  ['--profile', 'http'],
  ['--readme', join(ROOT, 'README.md')],
] as const) {
  const at = argv.indexOf(flag);
  if (at >= 0 && (argv[at + 1] === undefined || argv[at + 1]?.startsWith('--')))
    argv.splice(at + 1, 0, value);
}
const { values: opts } = parseArgs({
  args: argv,
  options: {
    quick: { type: 'boolean', default: false },
    duration: { type: 'string' },
    'close-duration': { type: 'string' },
    'large-duration': { type: 'string' },
    rounds: { type: 'string' },
    passes: { type: 'string', default: 'get,close,64k,post' },
    tool: { type: 'string', default: 'both' },
    'large-tool': { type: 'string', default: 'wrk' },
    connections: { type: 'string', default: '50' },
    'large-connections': { type: 'string', default: '200' },
    'no-close': { type: 'boolean', default: false },
    markdown: { type: 'string' },
    'results-dir': { type: 'string', default: join(ROOT, 'bench/results') },
    readme: { type: 'string' },
    patience: { type: 'string', default: '20' },
    nice: { type: 'string', default: '0' },
    soak: { type: 'string' },
    profile: { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
  allowPositionals: false,
});
const rawProfile = opts.profile;
if (opts.help) {
  process.stdout.write(
    `${readHeader()}\n` +
      'Options (see bench/README.md):\n' +
      '  --quick                one round of short runs (2 s GET, 1 s others, short warm-up); writes only\n' +
      '                         bench/results/quick-<time>.json\n' +
      '  --rounds N             alternating rounds (3; 1 with --quick)\n' +
      '  --passes LIST          of get,close,64k,post (all): small GET keep-alive; new connection per\n' +
      '                         request (wrk only); GET 64 KiB responses; POST 16 KiB bodies\n' +
      '  --tool T               autocannon|wrk|both (both): tools for the get pass\n' +
      '  --large-tool T         autocannon|wrk|both (wrk): tools for the 64k and post passes\n' +
      '  --duration S           get pass run length (3; 2 with --quick; profile 10)\n' +
      '  --close-duration S     close pass run length (2; 1 with --quick)\n' +
      '  --large-duration S     64k and post run length (2; 1 with --quick)\n' +
      '  --connections N        get and close passes (50); --large-connections N: 64k and post (200)\n' +
      '  --no-close             drop the close pass\n' +
      '  --patience S           time to wait for quiet / repeat disturbed runs, whole run (20)\n' +
      '  --nice=N               e.g. --nice=-10 as root: run every benchmark process at that priority\n' +
      '  --markdown FILE        also write the Markdown report to FILE\n' +
      '  --results-dir DIR      where results go (bench/results)\n' +
      '  --readme [FILE]        on a full run (not --quick, >= 3 rounds) replace the block between\n' +
      `                         ${README_START} and ${README_END} of FILE (README.md)\n` +
      '  --soak SECONDS         only seglb (250k rules) under keep-alive load; RSS and heap series\n' +
      '  --profile MODE         http|http-250k|tcp|http-close|http-250k-close|tcp-close\n',
  );
  process.exit(0);
}

const QUICK = opts.quick;
const num = (v: string | undefined, fallback: number, name: string): number => {
  const n = Number(v ?? fallback);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${name} must be a positive number`);
  return n;
};
const DURATION = num(opts.duration, rawProfile ? 10 : QUICK ? 2 : 3, '--duration');
const CLOSE_DURATION = num(opts['close-duration'], QUICK ? 1 : 2, '--close-duration');
const LARGE_DURATION = num(opts['large-duration'], QUICK ? 1 : 2, '--large-duration');
const ROUNDS = Math.round(num(opts.rounds, QUICK ? 1 : 3, '--rounds'));
const CONNECTIONS = Math.round(num(opts.connections, 50, '--connections'));
const LARGE_CONNECTIONS = Math.round(num(opts['large-connections'], 200, '--large-connections'));
/** A run writes latest.md (and may update the README) only when it is full: not quick, >= 3 rounds. */
const FULL = !QUICK && ROUNDS >= 3;
const HOST = '127.0.0.1';
/** Pause between runs, so sockets in TIME_WAIT and deferred work of the last run settle. */
const SETTLE_MS = 300;
/** A run during which other processes used more CPU than this (cores) is repeated (at most twice). */
const MAX_OTHER_CORES = 0.15;
/**
 * Unmeasured load per scenario before the first round: seglb and the baseline (node) need several
 * seconds of load before their JIT tiers settle (measured: ~30% more CPU per request in the first
 * 4 s); the native servers and autocannon itself need little. Node targets also get `large` seconds
 * of each other selected pass.
 */
const WARMUP_SECONDS = QUICK ? { node: 2, other: 1, large: 0 } : { node: 4, other: 1, large: 1 };
/** Target of the 64k and post passes: seglb's HTTP VIP req/s at least this share of HAProxy http's. */
const LARGE_VS_HAPROXY_TARGET = 0.5;
/** Target of every pass: 250k rules within this share of 1 rule (req/s). */
const POLICY_RATIO_TARGET = 0.03;
/**
 * Seconds the whole benchmark may spend waiting for other processes to leave the CPU and repeating
 * runs they disturbed (--patience).
 */
let patienceMs = Number(opts.patience) * 1000;

function readHeader(): string {
  return 'node bench/http.bench.ts: end-to-end throughput, seglb vs direct / HAProxy / nginx / http-proxy-3 on loopback';
}

/** One target of the benchmark. */
interface Scenario {
  readonly name: string;
  readonly port: number;
  readonly proxy: BenchServer | null;
  /** The HAProxy row this one is compared with (same mode), or null. */
  readonly haproxyPeer: string | null;
  /** A node process: longer JIT warm-up. */
  readonly node: boolean;
}

const DIRECT = 'direct to backend';
const HAPROXY_HTTP = 'HAProxy http (nbthread 1)';
const HAPROXY_TCP = 'HAProxy tcp (nbthread 1)';
const SEGLB_1 = 'seglb HTTP VIP, 1 rule';
const SEGLB_250K = 'seglb HTTP VIP, 250k rules';
const SEGLB_TCP = 'seglb TCP VIP, 1 rule';
const NGINX_PROXY = 'nginx proxy (1 worker)';
const BASELINE = 'baseline: http-proxy-3 + keep-alive agent';

type Tool = 'autocannon' | 'wrk';
type PassId = 'get' | 'close' | '64k' | 'post';
const PASS_IDS: readonly PassId[] = ['get', 'close', '64k', 'post'];

/** One kind of load, run against every scenario in every round. */
interface Pass {
  readonly id: PassId;
  readonly tool: Tool;
  readonly connections: number;
  /** Run length, seconds. */
  readonly seconds: number;
  readonly closeEach: boolean;
  readonly method: 'GET' | 'POST';
  readonly path: string;
  /** Request body, bytes (0: none). */
  readonly bodyBytes: number;
  /** The answer check run before the pass is measured. */
  readonly check: CheckKind;
}

function passKey(p: Pass): string {
  return `${p.id}|${p.tool}`;
}

/** "wrk -t1, GET 64 KiB responses". */
function passLabel(p: Pass): string {
  const t = p.tool === 'wrk' ? 'wrk -t1' : 'autocannon';
  const what = {
    get: 'GET keep-alive',
    close: 'GET, new connection per request',
    '64k': `GET ${LARGE_RESPONSE_BYTES / 1024} KiB responses`,
    post: `POST ${POST_BODY_BYTES / 1024} KiB bodies`,
  }[p.id];
  return `${t}, ${what}`;
}

function passTitle(p: Pass): string {
  return `${passLabel(p)}, c=${p.connections}, ${p.seconds} s x ${ROUNDS} round${ROUNDS === 1 ? '' : 's'}`;
}

function parseTools(value: string, option: string): Tool[] {
  const list: Tool[] = value === 'both' ? ['autocannon', 'wrk'] : [value as Tool];
  if (!list.every((t) => t === 'autocannon' || t === 'wrk'))
    throw new Error(`${option} is autocannon|wrk|both`);
  return list;
}

/** The passes to run, in order, with the tools available. */
function planPasses(wrk: string | null): Pass[] {
  const ids = (opts.passes ?? '').split(',').map((s) => s.trim()) as PassId[];
  for (const id of ids) if (!PASS_IDS.includes(id)) throw new Error(`--passes takes ${PASS_IDS.join(',')}`);
  const available = (ts: Tool[]) => ts.filter((t) => t === 'autocannon' || wrk !== null);
  const tools = available(parseTools(opts.tool ?? 'both', '--tool'));
  const largeWanted = parseTools(opts['large-tool'] ?? 'wrk', '--large-tool');
  // The large passes use --large-tool, if available; else whatever --tool gave.
  const large = available(largeWanted).length ? available(largeWanted) : tools;
  if (tools.length === 0) throw new Error('no load generator available');
  const out: Pass[] = [];
  const base = { closeEach: false, method: 'GET' as const, path: '/', bodyBytes: 0 };
  if (ids.includes('get'))
    for (const tool of tools)
      out.push({ ...base, id: 'get', tool, connections: CONNECTIONS, seconds: DURATION, check: 'get' });
  if (ids.includes('close') && !opts['no-close'] && wrk !== null)
    out.push({
      ...base,
      id: 'close',
      tool: 'wrk',
      connections: CONNECTIONS,
      seconds: CLOSE_DURATION,
      closeEach: true,
      check: 'get',
    });
  if (ids.includes('64k'))
    for (const tool of large)
      out.push({
        ...base,
        id: '64k',
        tool,
        connections: LARGE_CONNECTIONS,
        seconds: LARGE_DURATION,
        path: LARGE_PATH,
        check: '64k',
      });
  if (ids.includes('post'))
    for (const tool of large)
      out.push({
        ...base,
        id: 'post',
        tool,
        connections: LARGE_CONNECTIONS,
        seconds: LARGE_DURATION,
        method: 'POST',
        bodyBytes: POST_BODY_BYTES,
        check: 'post',
      });
  return out;
}

/** A target and whether it was met (null: not measured). */
interface Target {
  readonly name: string;
  readonly value: string;
  readonly met: boolean | null;
}

function metText(t: Target): string {
  return t.met === null ? 'not measured' : t.met ? 'met' : 'NOT met';
}

async function main(): Promise<void> {
  const nginx = which('nginx');
  const haproxy = which('haproxy');
  const wrk = which('wrk');
  if (!wrk) process.stdout.write('note: wrk is not installed; autocannon only\n');

  const nice = Number(opts.nice);
  if (!Number.isInteger(nice) || nice < -20 || nice > 19) throw new Error('--nice is an integer -20..19');
  setBenchNiceness(nice);
  const dir = mkdtempSync(join(tmpdir(), 'seglb-bench-'));
  // Also on Ctrl-C and errors (the servers are killed first: processes.ts registered earlier).
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  const countries = writeCountryIpset(dir);
  const started = new Date();
  const machine = machineInfo(nginx, haproxy, wrk);
  const sourceBefore = sourceInfo();
  const command = `node bench/http.bench.ts${argv.length ? ` ${argv.map((a) => (a.startsWith('/') ? shown(a) : a)).join(' ')}` : ''}`;
  const loadBefore = loadavg();
  process.stdout.write(
    `${readHeader()}\n${machineLines(machine)}\nseglb: ${sourceText(sourceBefore)}\n` +
      `${nice ? `benchmark processes at nice ${nice}\n` : ''}loadavg before: ${loadBefore
        .map((l) => l.toFixed(2))
        .join(' ')}\n\n`,
  );

  const backend = nginx ? await startNginxBackend(nginx, dir) : await startNodeBackend();
  const backendName = nginx
    ? `nginx, 1 worker, return 200 "ok", ${LARGE_PATH}: ${LARGE_RESPONSE_BYTES}-byte file`
    : 'node:http (nginx not installed)';

  if (opts.soak !== undefined) {
    await soak(dir, backend, countries.file, wrk, { machine, source: sourceBefore, command, started });
    await shutdown([backend], dir);
    return;
  }
  if (rawProfile !== undefined) {
    await profileSeglb(rawProfile, dir, backend, countries.file, wrk);
    await shutdown([backend], dir);
    return;
  }

  const passes = planPasses(wrk);
  if (passes.length === 0) throw new Error('no pass selected');

  const seglb1 = await startSeglb(dir, backend.httpPort, '1 rule', countries.file);
  const t0 = Date.now();
  const seglb250k = await startSeglb(dir, backend.httpPort, '250k rules', countries.file);
  const bigStartMs = Date.now() - t0;
  const ha = haproxy ? await startHaproxy(haproxy, dir, backend.httpPort) : null;
  const ngx = nginx ? await startNginxProxy(nginx, dir, backend.httpPort) : null;
  const baseline = await startBaselineProxy(backend.httpPort);
  process.stdout.write(
    `backend: ${backendName}; ipset for "250k rules": ${countries.prefixes} prefixes ` +
      `(seglb listening ${(bigStartMs / 1000).toFixed(1)} s after spawn)\n`,
  );

  const haHttp = ha ? HAPROXY_HTTP : null;
  const scenarios: Scenario[] = [
    { name: DIRECT, port: backend.httpPort, proxy: null, haproxyPeer: null, node: false },
    { name: SEGLB_1, port: seglb1.httpPort, proxy: seglb1, haproxyPeer: haHttp, node: true },
    { name: SEGLB_250K, port: seglb250k.httpPort, proxy: seglb250k, haproxyPeer: haHttp, node: true },
    {
      name: SEGLB_TCP,
      port: seglb1.tcpPort as number,
      proxy: seglb1,
      haproxyPeer: ha ? HAPROXY_TCP : null,
      node: true,
    },
  ];
  if (ha) {
    scenarios.push({
      name: HAPROXY_HTTP,
      port: ha.httpPort,
      proxy: ha,
      haproxyPeer: HAPROXY_HTTP,
      node: false,
    });
    scenarios.push({
      name: HAPROXY_TCP,
      port: ha.tcpPort as number,
      proxy: ha,
      haproxyPeer: HAPROXY_TCP,
      node: false,
    });
  }
  if (ngx)
    scenarios.push({ name: NGINX_PROXY, port: ngx.httpPort, proxy: ngx, haproxyPeer: haHttp, node: false });
  scenarios.push({
    name: BASELINE,
    port: baseline.httpPort,
    proxy: baseline,
    haproxyPeer: haHttp,
    node: true,
  });

  // Answer checks: every scenario, for every kind of request a selected pass sends.
  const checks = [...new Set(passes.map((p) => p.check))];
  for (const s of scenarios)
    for (const kind of checks)
      for (const w of await checkAnswer(s.name, s.port, kind, s.proxy?.proc.tail() ?? ''))
        process.stdout.write(`warning: ${w}\n`);
  process.stdout.write(`answer checks passed (${checks.join(', ')})\n`);

  const runSeconds = (p: Pass) => p.seconds + SETTLE_MS / 1000;
  const perRound = passes.reduce((sum, p) => sum + runSeconds(p), 0) * scenarios.length;
  const warmups = (sc: Scenario): { pass: Pass; seconds: number }[] => {
    const first = passes[0] as Pass;
    const out = [{ pass: first, seconds: sc.node ? WARMUP_SECONDS.node : WARMUP_SECONDS.other }];
    if (sc.node && WARMUP_SECONDS.large > 0) {
      for (const p of passes)
        if (p.id !== first.id && !out.some((w) => w.pass.id === p.id))
          out.push({ pass: p, seconds: WARMUP_SECONDS.large });
    }
    return out;
  };
  const warmupSeconds = scenarios.reduce(
    (sum, sc) => sum + warmups(sc).reduce((a, w) => a + w.seconds + SETTLE_MS / 1000, 0),
    0,
  );
  const planned = perRound * ROUNDS + warmupSeconds;
  process.stdout.write(
    `${scenarios.length} scenarios x ${passes.length} passes x ${ROUNDS} round${ROUNDS === 1 ? '' : 's'}: about ` +
      `${(planned / 60).toFixed(1)} min of load (warm-up ${Math.round(warmupSeconds)} s), plus repeats of ` +
      `disturbed runs (at most --patience ${opts.patience} s)\n` +
      passes.map((p) => `  pass: ${passTitle(p)}\n`).join(''),
  );

  // Warm-up: JIT tiers, keep-alive pools and autocannon itself; not measured.
  for (const s of scenarios) {
    for (const w of warmups(s)) {
      await new Promise((r) => setTimeout(r, SETTLE_MS));
      await measureOnce(s, backend, w.pass, wrk, w.seconds);
    }
  }
  process.stdout.write('warm-up done\n');

  const results = new Map<string, Measured[]>();
  const key = (p: Pass, s: Scenario) => `${passKey(p)}|${s.name}`;
  for (let round = 0; round < ROUNDS; round++) {
    // Rotate the order each round so no scenario always runs first or last.
    const order = scenarios.map((_, i) => scenarios[(i + round) % scenarios.length] as Scenario);
    for (const s of order) {
      for (const pass of round % 2 ? [...passes].reverse() : passes) {
        const r = await measure(s, backend, pass, wrk);
        results.set(key(pass, s), [...(results.get(key(pass, s)) ?? []), r]);
        process.stdout.write(
          `round ${round + 1}/${ROUNDS}  ${`${passLabel(pass)} c=${pass.connections}`.padEnd(48)} ${s.name.padEnd(42)} ` +
            `${Math.round(r.rps).toString().padStart(7)} req/s  p50 ${r.p50.toFixed(2)}  p99 ${r.p99.toFixed(2)}  ` +
            `p99.9 ${r.p999.toFixed(2)} ms` +
            `${r.proxyRssPeakBytes === null ? '' : `  RSS ${fmtMB(r.proxyRssPeakBytes)} MB`}` +
            `${r.errors ? `  errors ${r.errors}` : ''}\n`,
        );
        if (pass.id === '64k' && r.bytesPerResponse !== null && r.bytesPerResponse < LARGE_RESPONSE_BYTES)
          process.stdout.write(
            `  warning: ${s.name}: ${Math.round(r.bytesPerResponse)} bytes per response, less than the body\n`,
          );
      }
    }
  }

  // Tables, per pass.
  const md: string[] = [];
  const passResults: { pass: Pass; rows: RowResult[]; targets: Target[] }[] = [];
  process.stdout.write(`\nMedians of ${ROUNDS} round${ROUNDS === 1 ? '' : 's'}:\n`);
  for (const pass of passes) {
    const runsOf = (name: string) => results.get(`${passKey(pass)}|${name}`) ?? [];
    const rows = rowResults(
      scenarios.map((s) => ({ scenario: s.name, runs: runsOf(s.name), haproxyPeer: s.haproxyPeer })),
      DIRECT,
    );
    const targets: Target[] = [];
    const policy = perRoundRatio(runsOf(SEGLB_250K), runsOf(SEGLB_1));
    if (policy.median !== null)
      targets.push({
        name: `250k rules / 1 rule within ${POLICY_RATIO_TARGET * 100}%`,
        value: `${policy.median.toFixed(3)} (${((policy.median - 1) * 100).toFixed(1)}%)`,
        met: Math.abs(policy.median - 1) <= POLICY_RATIO_TARGET,
      });
    if (pass.id === '64k' || pass.id === 'post') {
      for (const name of [SEGLB_1, SEGLB_250K]) {
        const r = rows.find((x) => x.scenario === name)?.vsHaproxy?.median ?? null;
        targets.push({
          name: `${name} >= ${LARGE_VS_HAPROXY_TARGET}x HAProxy http`,
          value: r === null ? 'no HAProxy' : `${r.toFixed(2)}x`,
          met: r === null ? null : r >= LARGE_VS_HAPROXY_TARGET,
        });
      }
    }
    const cells = tableCells(rows);
    const lines = targets.map((t) => `target ${t.name}: ${t.value}: ${metText(t)}`);
    process.stdout.write(`\n${passTitle(pass)}\n${formatText(cells)}\n${lines.join('\n')}\n`);
    md.push(
      `#### ${passTitle(pass)}\n\n${formatMarkdown(cells)}\n\n${lines.map((l) => `- ${l}`).join('\n')}\n`,
    );
    passResults.push({ pass, rows, targets });
  }
  // Memory under load: the highest RSS of the 250k process over every pass.
  const bigRss = passResults
    .map((pr) => pr.rows.find((r) => r.scenario === SEGLB_250K)?.summary.proxyRssPeakBytes ?? null)
    .filter((x): x is number => x !== null);
  const rssTarget: Target = {
    name: 'seglb 250k rules RSS under load < 300 MB',
    value: bigRss.length ? `peak ${(Math.max(...bigRss) / 1e6).toFixed(1)} MB` : 'not measured',
    met: bigRss.length ? Math.max(...bigRss) < RSS_TARGET_BYTES : null,
  };
  process.stdout.write(
    `\ntarget ${rssTarget.name}: ${rssTarget.value}: ${metText(rssTarget)} (growth over time: --soak)\n`,
  );

  const finished = new Date();
  const minutes = ((finished.getTime() - started.getTime()) / 60_000).toFixed(1);
  const sourceAfter = sourceInfo();
  const changed = sourceAfter.srcHash !== sourceBefore.srcHash;
  if (changed) {
    process.stdout.write(
      `\nWARNING: src/ changed during the run (now ${sourceText(sourceAfter)}); the processes ran the version loaded at start.\n`,
    );
  }
  const loadAfter = loadavg();
  const after = `loadavg after: ${loadAfter.map((l) => l.toFixed(2)).join(' ')}; whole run ${minutes} min`;
  process.stdout.write(
    `\nCPU columns: cores used during the run by the proxy process tree / the backend / the load generator / ` +
      `everything else. peak RSS: the proxy process tree, sampled every 250 ms.\n${after}\n`,
  );

  // Results files.
  const summary = summaryTable(passResults);
  const allTargets: (Target & { pass?: string })[] = [
    ...passResults.flatMap((pr) => pr.targets.map((t) => ({ ...t, pass: passLabel(pr.pass) }))),
    rssTarget,
  ];
  const targetLines = allTargets
    .map((t) => `- ${t.pass ? `${t.pass}: ` : ''}${t.name}: ${t.value}: ${metText(t)}`)
    .join('\n');
  const sourceLine = `${sourceText(sourceBefore)}${changed ? ` (src/ changed during the run, to ${sourceAfter.srcHash}; the processes ran the version loaded at start)` : ''}`;
  const report =
    `# seglb end-to-end benchmark, ${started.toISOString().slice(0, 16).replace('T', ' ')} UTC\n\n` +
    `- Command: \`${command}\`\n- Machine: ${machineLine(machine)}\n- seglb: ${sourceLine}\n` +
    `- Backend: ${backendName}; "250k rules": ${countries.prefixes}-prefix ipset\n- ${after}\n\n` +
    `## Summary\n\n${summary}\n\n## Targets\n\n` +
    `${targetLines}\n\n` +
    `## Tables\n\nMedians of ${ROUNDS} rounds; "vs" columns: median of the same-round ratios. ` +
    `Columns: [bench/README.md](../README.md#reading-the-tables).\n\n${md.join('\n')}`;
  const resultsDir = opts['results-dir'] as string;
  mkdirSync(resultsDir, { recursive: true });
  const stamp = fileStamp(started);
  const jsonFile = join(resultsDir, `${FULL ? '' : 'quick-'}${stamp}.json`);
  const json = {
    kind: 'http-bench',
    full: FULL,
    startedAt: started.toISOString(),
    finishedAt: finished.toISOString(),
    command,
    machine: { ...machine, loadavgBefore: loadBefore, loadavgAfter: loadAfter },
    seglb: { ...sourceBefore, srcHashAfter: sourceAfter.srcHash, changedDuringRun: changed },
    options: {
      passes: passes.map((p) => ({ id: p.id, tool: p.tool })),
      rounds: ROUNDS,
      quick: QUICK,
      connections: CONNECTIONS,
      largeConnections: LARGE_CONNECTIONS,
      durations: { get: DURATION, close: CLOSE_DURATION, large: LARGE_DURATION },
      warmupSeconds: WARMUP_SECONDS,
      patienceSeconds: Number(opts.patience),
      nice,
    },
    backend: backendName,
    ipsetPrefixes: countries.prefixes,
    passes: passResults.map((pr) => ({
      label: passLabel(pr.pass),
      ...pr.pass,
      scenarios: pr.rows.map((r) => ({
        ...r,
        runs: results.get(`${passKey(pr.pass)}|${r.scenario}`) ?? [],
      })),
      targets: pr.targets,
    })),
    targets: allTargets,
  };
  writeFileSync(jsonFile, `${JSON.stringify(json, null, 2)}\n`);
  process.stdout.write(`\nresults: ${shown(jsonFile)}`);
  if (FULL) {
    writeFileSync(join(resultsDir, 'latest.md'), report);
    process.stdout.write(`, ${shown(join(resultsDir, 'latest.md'))}`);
  }
  process.stdout.write('\n');
  if (opts.markdown) {
    writeFileSync(opts.markdown, report);
    process.stdout.write(`Markdown written to ${opts.markdown}\n`);
  }
  if (opts.readme !== undefined) {
    if (!FULL) {
      process.stdout.write(
        `note: ${opts.readme} not updated: only a full run (not --quick, >= 3 rounds) does\n`,
      );
    } else {
      const block =
        `End-to-end benchmark of ${started.toISOString().slice(0, 10)} (\`${command}\`, ${ROUNDS} rounds; ` +
        `full tables and every column explained: [bench/results/latest.md](bench/results/latest.md), ` +
        `[bench/README.md](bench/README.md)).\n\n` +
        `- Machine: ${machineLine(machine)}\n- seglb: ${sourceLine}\n\n${summary}\n\n` +
        `req/s: median of the rounds; in brackets: ratio to HAProxy of the same mode (tcp for the TCP VIP) ` +
        `from the same round, median over the rounds.\n\n${targetLines}\n`;
      updateReadme(opts.readme, block);
    }
  }

  const servers = [seglb1, seglb250k, backend, baseline];
  if (ha) servers.push(ha);
  if (ngx) servers.push(ngx);
  await shutdown(servers, dir);
}

/** A path relative to the working directory when inside it, else absolute. */
function shown(file: string): string {
  const r = relative(process.cwd(), file);
  return r.startsWith('..') ? file : r;
}

/** Replaces the marked block of the README; prints a note when the markers are missing. */
function updateReadme(file: string, block: string): void {
  if (!existsSync(file)) {
    process.stdout.write(`note: ${file} does not exist; README not updated\n`);
    return;
  }
  const next = replaceReadmeBlock(readFileSync(file, 'utf8'), block);
  if (next === null) {
    process.stdout.write(
      `note: ${file} has no ${README_START} ... ${README_END} block; README not updated\n`,
    );
    return;
  }
  writeFileSync(file, next);
  process.stdout.write(`README block updated in ${file}\n`);
}

/**
 * One compact Markdown table over all passes: a column per pass (wrk when it ran, else autocannon;
 * GET keep-alive with both tools) with req/s and the same-round ratio to HAProxy, then CPU µs per request of the GET keep-alive pass,
 * the highest RSS and the errors over all passes.
 */
function summaryTable(passResults: readonly { pass: Pass; rows: RowResult[] }[]): string {
  const chosen: { pass: Pass; rows: RowResult[] }[] = [];
  for (const id of PASS_IDS) {
    const of = passResults.filter((pr) => pr.pass.id === id);
    // GET keep-alive is shown for both tools (the issue quotes wrk's ratios beside autocannon's).
    if (id === 'get') chosen.push(...of.filter((pr) => pr.pass.tool === 'autocannon'));
    const pick = of.find((pr) => pr.pass.tool === 'wrk') ?? (id === 'get' ? undefined : of[0]);
    if (pick) chosen.push(pick);
  }
  const cpuPass =
    chosen.find((c) => c.pass.id === 'get' && c.pass.tool === 'wrk') ??
    chosen.find((c) => c.pass.id === 'get') ??
    chosen[0];
  const header = [
    'scenario',
    ...chosen.map((c) => `${passLabel(c.pass)}, c=${c.pass.connections}`),
    `proxy CPU us/req (${cpuPass ? passLabel(cpuPass.pass) : '-'})`,
    'peak RSS MB',
    'errors (all passes)',
  ];
  const names = [...new Set(passResults.flatMap((pr) => pr.rows.map((r) => r.scenario)))];
  const cells = names.map((name) => {
    const cols = chosen.map((c) => {
      const r = c.rows.find((x) => x.scenario === name);
      if (!r) return '';
      const v = r.vsHaproxy?.median;
      return `${fmtInt(r.summary.rps)}${v == null ? '' : ` (${v.toFixed(2)}x)`}`;
    });
    const us = cpuPass?.rows.find((x) => x.scenario === name)?.summary.proxyUsPerRequest ?? null;
    const rss = passResults
      .map((pr) => pr.rows.find((x) => x.scenario === name)?.summary.proxyRssPeakBytes ?? null)
      .filter((x): x is number => x !== null);
    const errors = passResults.reduce(
      (sum, pr) => sum + (pr.rows.find((x) => x.scenario === name)?.summary.errors ?? 0),
      0,
    );
    return [
      name,
      ...cols,
      us === null ? '' : us.toFixed(1),
      rss.length ? fmtMB(Math.max(...rss)) : '',
      String(errors),
    ];
  });
  return formatMarkdown(cells, header);
}

/**
 * One load run with the CPU used by proxy, backend, load generator and the rest of the machine
 * meanwhile. Other processes on the machine are waited out before the run, and a run they disturbed
 * anyway (more than MAX_OTHER_CORES) is repeated up to twice; the least disturbed attempt is kept.
 * Both only while the run-wide `patienceMs` lasts.
 */
async function measure(s: Scenario, backend: BenchServer, pass: Pass, wrk: string | null): Promise<Measured> {
  let best: Measured | null = null;
  for (let attempt = 0; attempt < 3; attempt++) {
    await waitForQuiet();
    const t0 = Date.now();
    const m = await measureOnce(s, backend, pass, wrk, pass.seconds);
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

function loadSpec(port: number, pass: Pass, seconds: number): LoadSpec {
  return {
    url: `http://${HOST}:${port}${pass.path}`,
    connections: pass.connections,
    seconds,
    closeEach: pass.closeEach,
    method: pass.method,
    bodyBytes: pass.bodyBytes,
  };
}

async function measureOnce(
  s: Scenario,
  backend: BenchServer,
  pass: Pass,
  wrk: string | null,
  seconds: number,
): Promise<Measured> {
  const spec = loadSpec(s.port, pass, seconds);
  const proxyPid = s.proxy?.proc.child.pid;
  const backendPid = backend.proc.child.pid;
  const sampler = sampleRssPeak(proxyPid);
  let proxyRssPeakBytes: number | null = null;
  const p0 = treeCpuMs(proxyPid);
  const b0 = treeCpuMs(backendPid);
  const c0 = selfAndReapedCpuMs();
  const m0 = machineBusyMs();
  const t0 = performance.now();
  let r: Awaited<ReturnType<typeof runWrk>>;
  try {
    r = pass.tool === 'wrk' ? await runWrk(wrk as string, spec) : await runAutocannon(spec);
  } finally {
    proxyRssPeakBytes = sampler.stop();
  }
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
  return {
    ...r,
    proxyCores,
    proxySysCores,
    backendCores,
    clientCores,
    otherCores: other,
    proxyRssPeakBytes,
  };
}

/**
 * --soak SECONDS: only seglb with the 250k policy (heap probe preloaded) under keep-alive load;
 * prints the memory series and the targets, and writes bench/results/soak-<time>.json.
 */
async function soak(
  dir: string,
  backend: BenchServer,
  countryFile: string,
  wrk: string | null,
  run: { machine: MachineInfo; source: SourceInfo; command: string; started: Date },
): Promise<void> {
  const seconds = Number(opts.soak);
  if (!Number.isFinite(seconds) || seconds < 5) throw new Error('--soak takes a number of seconds >= 5');
  const seglb = await startSeglb(dir, backend.httpPort, '250k rules', countryFile, heapProbeFlags());
  for (const kind of ['get', '64k'] as const)
    await checkAnswer('seglb (250k rules)', seglb.httpPort, kind, seglb.proc.tail());
  const tool: Tool = wrk && opts.tool !== 'autocannon' ? 'wrk' : 'autocannon';
  const result = await runSoak({
    seconds,
    connections: CONNECTIONS,
    seglb,
    toolName: tool === 'wrk' ? 'wrk -t1' : 'autocannon',
    run: (spec) => (tool === 'wrk' ? runWrk(wrk as string, spec) : runAutocannon(spec)),
    write: (line) => process.stdout.write(`${line}\n`),
  });
  await seglb.proc.stop(10_000);
  const sourceAfter = sourceInfo();
  if (sourceAfter.srcHash !== run.source.srcHash)
    process.stdout.write(`WARNING: src/ changed during the run (now ${sourceText(sourceAfter)})\n`);
  const resultsDir = opts['results-dir'] as string;
  mkdirSync(resultsDir, { recursive: true });
  const file = join(resultsDir, `soak-${fileStamp(run.started)}.json`);
  writeFileSync(
    file,
    `${JSON.stringify(
      {
        kind: 'soak',
        startedAt: run.started.toISOString(),
        finishedAt: new Date().toISOString(),
        command: run.command,
        machine: run.machine,
        seglb: { ...run.source, srcHashAfter: sourceAfter.srcHash },
        ...result,
      },
      null,
      2,
    )}\n`,
  );
  process.stdout.write(`results: ${shown(file)}\n`);
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
  const tools = parseTools(opts.tool ?? 'both', '--tool').filter((t) => t === 'autocannon' || wrk !== null);
  const tool: Tool = tools.includes('wrk') ? 'wrk' : 'autocannon';
  if (closeEach && tool !== 'wrk') throw new Error('connection-per-request profiling needs wrk');
  const s: Scenario = {
    name: `seglb ${mode}`,
    port: mode.startsWith('tcp') ? (seglb.tcpPort as number) : seglb.httpPort,
    proxy: seglb,
    haproxyPeer: null,
    node: true,
  };
  const pass: Pass = {
    id: closeEach ? 'close' : 'get',
    tool,
    connections: CONNECTIONS,
    seconds: DURATION,
    closeEach,
    method: 'GET',
    path: '/',
    bodyBytes: 0,
    check: 'get',
  };
  await checkAnswer(s.name, s.port, 'get', seglb.proc.tail());
  await measureOnce(s, backend, pass, wrk, WARMUP_SECONDS.node);
  await waitForQuiet();
  const r = await measureOnce(s, backend, pass, wrk, DURATION);
  await seglb.proc.stop(10_000);
  const file = readdirSync(profDir).find((f) => f.endsWith('.cpuprofile'));
  if (!file) throw new Error(`no profile written:\n${seglb.proc.tail()}`);
  const root = new URL('../', import.meta.url).href;
  const sum = summariseCpuProfile(join(profDir, file), root);
  const pct = (x: number) => `${(x * 100).toFixed(1)}%`.padStart(6);
  const out: string[] = [
    `seglb: ${sourceText(sourceInfo())}`,
    `profile of ${s.name} under ${passLabel(pass)}, c=${CONNECTIONS}, ${DURATION} s: ` +
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

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`http.bench: ${(err as Error).stack ?? String(err)}\n`);
    killAll();
    process.exit(1);
  },
);
