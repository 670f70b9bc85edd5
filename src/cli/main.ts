#!/usr/bin/env node
// The seglb command line: run, check, explain, ctl (src/cli/ctl.ts), --version, --help. Exit codes:
// 0 ok (explain: allow), 1 runtime failure (explain: deny; ctl: API error), 2 invalid config or usage.

import { dirname } from 'node:path';
import { parseArgs } from 'node:util';
import type { LoadedConfig, LogConfig } from '../config/index.ts';
import { ConfigError, formatConfigIssue, PolicyError, SeglbError } from '../errors.ts';
import { parseAddress } from '../net/index.ts';
import type { Logger } from '../observe/log.ts';
import type { Runtime } from '../runtime.ts';
import { packageVersion } from '../version.ts';
import { showExplain } from './ctl-show.ts';

// The config loader (Ajv, yaml), the policy compiler and the runtime (undici, pino, listeners) are
// imported when a command needs them: --version, --help and usage errors answer in about 0.1 s
// instead of 0.7 s, and check/explain never load the data plane.

const USAGE = `seglb - a load balancer with micro-segmentation

Usage:
  seglb run -c FILE [--log-format json|pretty] [--log-level LEVEL]
      Start seglb. SIGHUP re-reads FILE (a bad file is reported, the running config stays);
      SIGTERM/SIGINT stop accepting and drain in-flight requests (timeouts.shutdown_grace_ms), exit 0.
  seglb check -c FILE
      Validate FILE and print a summary of segments, VIPs and pools. Exit 0 valid, 2 invalid.
  seglb explain -c FILE --segment NAME --from ADDRESS [--method M] [--path P] [--host H] [--header K:V]...
      Print the verdict for a source (and request), the deciding rule (file:line) and every rule
      that matched. Exit 0 allow, 1 deny, 2 invalid config or usage.
  seglb ctl COMMAND ... [--admin URL] [--token-file FILE] [--json]
      Talk to a running seglb's admin API: status, explain, quarantine list|add|remove,
      segment mode, rule add|remove, ipset list|add|remove, backend state, reload, diff, audit,
      lint, simulate. "seglb ctl --help" lists them. Exit 0 ok, 1 API error, 2 usage.
  seglb --version | --help

Errors in FILE are printed as  file:line:col key.path: message  (all of them at once).
`;

/** Package version (re-exported for callers of the CLI module). */
export { packageVersion };

/** Options each command accepts besides -c/--config (an option of another command is a usage error). */
const COMMAND_OPTIONS: Readonly<Record<string, readonly string[]>> = {
  run: ['log-format', 'log-level'],
  check: [],
  explain: ['segment', 'from', 'method', 'path', 'host', 'header'],
};

const LOG_LEVELS: readonly string[] = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'];

/** A wrong command line: printed with a pointer to --help, exit 2. */
function usageError(message: string): SeglbError {
  return new SeglbError('SEGLB_CLI_USAGE', message);
}

/**
 * Runs the CLI.
 * @param argv - arguments after the program name
 * @returns the exit code (run: resolves only when stopped by a signal)
 */
export async function main(argv: readonly string[]): Promise<number> {
  try {
    return await dispatch(argv);
  } catch (err) {
    if (err instanceof SeglbError && err.code === 'SEGLB_CLI_USAGE') {
      process.stderr.write(`seglb: ${err.message}\nRun "seglb --help" for the usage.\n`);
      return 2;
    }
    if (err instanceof PolicyError) {
      // A policy that validates but cannot be compiled (too large) is still an invalid config.
      process.stderr.write(`seglb: ${err.code}: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
}

async function dispatch(argv: readonly string[]): Promise<number> {
  // `ctl` has its own options and subcommands (src/cli/ctl.ts); it never loads a config.
  if (argv[0] === 'ctl') {
    const { ctl } = await import('./ctl.ts');
    return ctl(argv.slice(1));
  }
  let parsed: ReturnType<typeof parseCli>;
  try {
    parsed = parseCli(argv);
  } catch (err) {
    throw usageError((err as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.version) {
    process.stdout.write(`seglb ${packageVersion()}\n`);
    return 0;
  }
  const command = positionals[0];
  if (values.help || command === 'help') {
    process.stdout.write(USAGE);
    return 0;
  }
  if (command === undefined) {
    // No command is a usage error: the usage goes to stderr so a script's stdout stays clean.
    process.stderr.write(USAGE);
    return 2;
  }
  const accepted = Object.hasOwn(COMMAND_OPTIONS, command) ? COMMAND_OPTIONS[command] : undefined;
  if (!accepted) throw usageError(`unknown command "${command}" (commands: run, check, explain, ctl)`);
  if (positionals.length > 1) {
    throw usageError(`${command} takes no arguments besides options, got ${JSON.stringify(positionals[1])}`);
  }
  for (const [name, value] of Object.entries(values)) {
    if (value !== undefined && name !== 'config' && !accepted.includes(name)) {
      throw usageError(`--${name} is not an option of ${command}`);
    }
  }
  if (!values.config) throw usageError(`${command} needs -c FILE`);
  if (command === 'run') checkLogOptions(values);
  if (command === 'explain') checkExplainOptions(values);
  const { loadConfigFile } = await import('../config/index.ts');
  let loaded: LoadedConfig;
  try {
    loaded = loadConfigFile(values.config);
  } catch (err) {
    return reportConfigError(err);
  }
  if (command === 'check') return check(loaded);
  if (command === 'explain') return explain(loaded, values);
  return run(loaded, values);
}

/** Usage checks of run's options that need no config (so a typo is reported before any file is read). */
function checkLogOptions(values: CliValues): void {
  const format = values['log-format'];
  if (format !== undefined && format !== 'json' && format !== 'pretty') {
    throw usageError(`--log-format is json or pretty, got ${JSON.stringify(format)}`);
  }
  const level = values['log-level'];
  if (level !== undefined && !LOG_LEVELS.includes(level)) {
    throw usageError(`--log-level is one of ${LOG_LEVELS.join(', ')}, got ${JSON.stringify(level)}`);
  }
}

/** Usage checks of explain's options that need no config. */
function checkExplainOptions(values: CliValues): void {
  if (!values.segment) throw usageError('explain needs --segment NAME');
  if (!values.from) throw usageError('explain needs --from ADDRESS');
  try {
    parseAddress(values.from);
  } catch {
    throw usageError(`--from must be an IPv4 or IPv6 address, got ${JSON.stringify(values.from)}`);
  }
  for (const h of values.header ?? []) {
    if (h.indexOf(':') <= 0) throw usageError(`--header takes NAME:VALUE, got ${JSON.stringify(h)}`);
  }
}

function parseCli(argv: readonly string[]) {
  return parseArgs({
    args: [...argv],
    allowPositionals: true,
    strict: true,
    options: {
      config: { type: 'string', short: 'c' },
      help: { type: 'boolean', short: 'h' },
      version: { type: 'boolean', short: 'v' },
      'log-format': { type: 'string' },
      'log-level': { type: 'string' },
      segment: { type: 'string' },
      from: { type: 'string' },
      method: { type: 'string' },
      path: { type: 'string' },
      host: { type: 'string' },
      header: { type: 'string', multiple: true },
    },
  });
}

type CliValues = ReturnType<typeof parseCli>['values'];

function reportConfigError(err: unknown): number {
  if (err instanceof ConfigError) {
    process.stderr.write(`${err.message}\n`);
    process.stderr.write(
      `seglb: configuration rejected (${err.issues.length} problem${err.issues.length === 1 ? '' : 's'}, ${err.code})\n`,
    );
    return 2;
  }
  throw err;
}

async function check(loaded: LoadedConfig): Promise<number> {
  const { compileSegmentPolicy } = await import('../policy/index.ts');
  const { secretFileWarnings } = await import('../config/index.ts');
  for (const w of secretFileWarnings(loaded.config, dirname(loaded.file)))
    process.stderr.write(`seglb: warning: ${w.message}\n`);
  const cfg = loaded.config;
  const out: string[] = [`${loaded.file}: OK`];
  out.push(`segments (${Object.keys(cfg.segments).length}):`);
  for (const [name, seg] of Object.entries(cfg.segments)) {
    const policy = compileSegmentPolicy(name, seg, loaded.ipsets);
    out.push(
      `  ${name}  mode=${seg.mode}  pool=${seg.pool}  rules: ${seg.allow.length} allow, ${seg.deny.length} deny (${policy.prefixCount} prefixes)  backend_subnets: ${seg.backend_subnets.join(', ')}`,
    );
    for (const vip of seg.vips)
      out.push(
        `    VIP ${vip.protocol}://${vip.listen}${vip.proxy_protocol ? ' (PROXY protocol from trusted)' : ''}`,
      );
  }
  out.push(`pools (${Object.keys(cfg.pools).length}):`);
  for (const [name, pool] of Object.entries(cfg.pools)) {
    const backends = pool.backends.map(
      (b) => `${b.address}${b.weight !== 1 ? ` w=${b.weight}` : ''}${b.backup ? ' backup' : ''}`,
    );
    out.push(`  ${name}  ${pool.algorithm}${pool.demo ? ' (demo backends)' : ''}: ${backends.join(', ')}`);
  }
  out.push(
    `ipsets (${loaded.ipsets.size}): ${[...loaded.ipsets].map(([n, c]) => `${n}=${c.length}`).join(', ') || 'none'}`,
  );
  process.stdout.write(`${out.join('\n')}\n`);
  return 0;
}

async function explain(loaded: LoadedConfig, values: CliValues): Promise<number> {
  const { compileSegmentPolicy, explainVerdict } = await import('../policy/index.ts');
  const segName = values.segment as string;
  const from = values.from as string;
  const segments = loaded.config.segments;
  const seg = Object.hasOwn(segments, segName) ? segments[segName] : undefined;
  if (!seg) {
    throw usageError(`unknown segment "${segName}" (segments: ${Object.keys(segments).join(', ')})`);
  }
  const policy = compileSegmentPolicy(segName, seg, loaded.ipsets);
  const headers: Record<string, string> = {};
  for (const h of values.header ?? []) {
    const i = h.indexOf(':');
    headers[h.slice(0, i).trim()] = h.slice(i + 1).trim();
  }
  const hasRequest =
    values.method !== undefined ||
    values.path !== undefined ||
    values.host !== undefined ||
    values.header !== undefined;
  const where = (kind: 'allow' | 'deny', index: number) => {
    const pos = loaded.positionOf(['segments', segName, kind, index]);
    return `${loaded.file}:${pos.line}:${pos.col}`;
  };
  const e = explainVerdict(
    policy,
    from,
    hasRequest ? { method: values.method, path: values.path, host: values.host, headers } : undefined,
    where,
  );
  process.stdout.write(`${showExplain(e)}\n`);
  return e.verdict === 'allow' ? 0 : 1;
}

async function run(loaded: LoadedConfig, values: CliValues): Promise<number> {
  const [{ Runtime }, { createLogger }, admin] = await Promise.all([
    import('../runtime.ts'),
    import('../observe/log.ts'),
    import('../admin/index.ts'),
  ]);
  // Both were checked by checkLogOptions (or come from the schema-validated config).
  const logFormat = (values['log-format'] ?? loaded.config.log.format) as 'json' | 'pretty';
  const logLevel = (values['log-level'] ?? loaded.config.log.level) as LogConfig['level'];
  const log = createLogger({ format: logFormat, level: logLevel });
  installCrashHandlers(log);
  const { secretFileWarnings } = await import('../config/index.ts');
  for (const w of secretFileWarnings(loaded.config, dirname(loaded.file)))
    log.warn({ file: w.file, keyPath: w.keyPath, mode: w.mode }, w.message);
  // Signal handlers go in before start-up, so a SIGTERM that arrives while VIPs are being bound
  // is honoured (stop once started) instead of killing the process without a drain.
  let control: InstanceType<typeof admin.PolicyControl> | undefined;
  let pendingStop: string | undefined;
  let stopRequested: ((signal: string) => void) | undefined;
  let stopping = false;
  let reloading = Promise.resolve();
  const onStopSignal = (signal: string) => {
    if (stopping) {
      log.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    if (stopRequested) stopRequested(signal);
    else pendingStop = signal;
  };
  process.on('SIGTERM', () => onStopSignal('SIGTERM'));
  process.on('SIGINT', () => onStopSignal('SIGINT'));
  process.on('SIGHUP', () => {
    const c = control;
    if (c) reloading = reloading.then(() => reloadFromFile(c, log));
  });
  const adminCfg = loaded.config.admin;
  const stateFile = adminCfg?.state_file ?? null;
  let prepared: ReturnType<typeof admin.prepareConfig>;
  try {
    // The file plus the runtime changes saved by the admin API (those that no longer apply: drift).
    prepared = admin.prepareConfig(loaded.file, stateFile, log, loaded);
  } catch (err) {
    return reportConfigError(err);
  }
  let runtime: Runtime;
  let adminServer: InstanceType<typeof admin.AdminServer> | undefined;
  try {
    runtime = await Runtime.start(prepared.loaded, log);
  } catch (err) {
    log.fatal({ code: (err as SeglbError).code, err: (err as Error).message }, 'seglb could not start');
    return 1;
  }
  control = new admin.PolicyControl(runtime, prepared, stateFile, adminCfg?.audit_file ?? null, log);
  if (adminCfg) adminServer = new admin.AdminServer(control, log);
  // Detectors quarantine through the controller (persisted, audited); /metrics, /flows, /events
  // and the dashboard join the admin listener when there is one.
  admin.wireObserve(control, adminServer ?? null);
  let adminPort: number | null = null;
  if (adminCfg && adminServer) {
    try {
      const bound = await adminServer.listen();
      adminPort = bound.port;
      log.info(
        { address: bound.address, port: bound.port, tls: prepared.loaded.adminTls !== null },
        'admin API listening',
      );
    } catch (err) {
      log.fatal(
        {
          code: 'SEGLB_LISTENER_BIND',
          err: `cannot listen on ${adminCfg.listen}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`,
        },
        'seglb could not start',
      );
      await runtime.stop(0);
      return 1;
    }
  }
  // The cluster sync channel: its own listener, never behind a VIP or a segment policy.
  let cluster: import('../admin/index.ts').ClusterLink | undefined;
  const clusterCfg = prepared.loaded.config.cluster;
  if (clusterCfg) {
    try {
      cluster = await admin.ClusterLink.start(clusterCfg, dirname(loaded.file), control, log);
      log.info(
        { nodeId: cluster.node.nodeId, listen: cluster.node.address, peers: clusterCfg.peers },
        'cluster sync listening',
      );
    } catch (err) {
      log.fatal({ code: (err as SeglbError).code, err: (err as Error).message }, 'seglb could not start');
      await Promise.all([runtime.stop(0), adminServer?.close()]);
      return 1;
    }
  }
  const started = runtime;
  log.info({ version: packageVersion(), config: loaded.file, node: process.version }, 'seglb started');
  printDemoHints(started, prepared.loaded, adminPort, (await import('../policy/index.ts')).VERDICT_DENY);
  return new Promise<number>((resolve) => {
    stopRequested = (signal: string) => {
      stopping = true;
      const grace = started.snapshot.loaded.config.timeouts.shutdown_grace_ms;
      log.info({ signal, graceMs: grace }, 'stopping: draining in-flight requests');
      Promise.all([started.stop(grace), adminServer?.close(), cluster?.stop()]).then(
        () => {
          log.info('stopped');
          resolve(0);
        },
        (err: unknown) => {
          log.error({ err: String(err) }, 'error while stopping');
          resolve(1);
        },
      );
    };
    if (pendingStop !== undefined) stopRequested(pendingStop);
  });
}

/** SIGHUP: re-reads the file (runtime changes re-applied); a bad file is logged and the running config stays. */
async function reloadFromFile(
  control: import('../admin/index.ts').PolicyControl,
  log: Logger,
): Promise<void> {
  try {
    await control.reloadFile('signal:SIGHUP');
  } catch (err) {
    if (err instanceof ConfigError) {
      log.error(
        { code: err.code, issues: err.issues.map(formatConfigIssue) },
        'reload rejected: configuration invalid; the running configuration stays',
      );
      return;
    }
    log.error(
      { code: (err as SeglbError).code, err: (err as Error).message },
      'reload failed; the running configuration stays',
    );
  }
}

function printDemoHints(
  runtime: Runtime,
  loaded: LoadedConfig,
  adminPort: number | null,
  verdictDeny: number,
): void {
  const lines: string[] = [];
  const hostOf = (address: string) =>
    address.includes(':')
      ? `[${address === '::' ? '::1' : address}]`
      : address === '0.0.0.0'
        ? '127.0.0.1'
        : address;
  for (const v of runtime.boundVips()) {
    const seg = runtime.snapshot.segments.get(v.segment);
    const demoPool = seg?.pool.config.demo === true;
    const url = `${v.protocol === 'https' ? 'https' : 'http'}://${hostOf(v.address)}:${v.port}/`;
    if (v.protocol === 'tcp' && !demoPool) continue; // nothing curl can show on an arbitrary TCP service
    const note = v.protocol === 'tcp' ? ' (TCP VIP, HTTP demo backend)' : '';
    lines.push(
      `  curl -s${v.protocol === 'https' ? 'k' : ''} ${url.padEnd(28)} # segment ${v.segment}${note}`,
    );
    // Show a refused source only when the policy really refuses it (reset at accept).
    if (v.protocol === 'http' && seg && seg.policy.mode === 'enforce') {
      const denied = ['127.0.0.9', '127.0.0.99', '127.0.3.3'].find(
        (a) => seg.policy.lookup(a).verdict === verdictDeny,
      );
      if (denied && !v.address.includes(':')) {
        lines.push(`  curl -s --interface ${denied} ${url}   # a source the policy denies: connection reset`);
      }
    }
  }
  const demo = Object.values(loaded.config.pools).some((p) => p.demo);
  const out: string[] = [];
  if (lines.length)
    out.push(`seglb is running${demo ? ' with demo backends' : ''} (pid ${process.pid}). Try:`, ...lines);
  else out.push(`seglb is running (pid ${process.pid}).`);
  if (adminPort !== null)
    out.push(`Admin API: http://127.0.0.1:${adminPort}/status (bearer token), dashboard: /dashboard`);
  out.push(
    `Stop with Ctrl-C or kill -TERM ${process.pid} (drains in-flight requests). Reload with: kill -HUP ${process.pid}`,
  );
  process.stderr.write(`\n${out.join('\n')}\n\n`);
}

/**
 * An unexpected exception or unhandled rejection is logged (fatal, with its stack, code, the seglb
 * version and uptime) and the process exits 1, for a supervisor (systemd, Docker, Kubernetes) to
 * restart it: state after an unknown fault is not trusted, so seglb does not try to recover. When
 * the log itself cannot be written (stdout closed or full) the line goes to stderr instead, and the
 * exit happens either way. See docs/security.md.
 */
function installCrashHandlers(log: Logger): void {
  const crash = (kind: string, err: unknown) => {
    const e = err instanceof Error ? err : undefined;
    const context = {
      event: 'crash',
      kind,
      err: {
        name: e?.name,
        message: e ? e.message : String(err),
        code: (e as NodeJS.ErrnoException | undefined)?.code,
        stack: e?.stack,
      },
      version: packageVersion(),
      uptimeMs: Math.round(process.uptime() * 1000),
    };
    const msg = `${kind}: exiting for the supervisor to restart`;
    try {
      log.fatal(context, msg);
    } catch {
      try {
        process.stderr.write(`seglb: ${msg}: ${JSON.stringify(context)}\n`);
      } catch {
        // Nowhere left to report; the exit code still tells the supervisor.
      }
    }
    process.exit(1);
  };
  process.on('uncaughtException', (err) => crash('uncaught exception', err));
  process.on('unhandledRejection', (err) => crash('unhandled rejection', err));
}

if (import.meta.main) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(
        `seglb: ${err instanceof SeglbError ? `${err.code}: ${err.message}` : String((err as Error)?.stack ?? err)}\n`,
      );
      process.exit(1);
    },
  );
}
