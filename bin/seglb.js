#!/usr/bin/env node
// The installed `seglb` command: runs the compiled CLI (dist/) on Node >= 24, and on an older Node
// re-executes itself with the Node 24 that the `node` dependency ships. Plain JavaScript so that it
// parses on any Node; Node does not strip TypeScript types under node_modules.

import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { constants } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const REQUIRED_MAJOR = 24;
// Set on the re-executed child, so a "Node 24" that turns out older cannot re-exec forever.
const REEXEC_MARK = 'SEGLB_LAUNCHER_REEXEC';
const FORWARDED_SIGNALS = ['SIGTERM', 'SIGINT', 'SIGHUP'];

const launcherPath = fileURLToPath(import.meta.url);
const packageDir = resolve(dirname(launcherPath), '..');
const runningMajor = Number(process.versions.node.split('.')[0]);

if (runningMajor >= REQUIRED_MAJOR) {
  delete process.env[REEXEC_MARK];
  await runCli();
} else if (process.env[REEXEC_MARK]) {
  fail(`the Node that was found as Node ${REQUIRED_MAJOR} is ${process.version} (${process.execPath})`);
} else {
  const node = findBundledNode();
  if (!node) {
    fail(
      `this Node is ${process.version} and the \`node\` dependency holds no Node ${REQUIRED_MAJOR} binary ` +
        `(its install script was skipped; run it with: cd ${packageDir} && npm rebuild node)`,
    );
  } else {
    reexec(node);
  }
}

/**
 * Imports dist/cli/main.js and runs it. main.ts only starts itself when `import.meta.main`, which
 * is false when imported from here, so it is called explicitly and its code becomes the exit code.
 */
async function runCli() {
  const entry = join(packageDir, 'dist', 'cli', 'main.js');
  if (!existsSync(entry)) {
    process.stderr.write(`seglb: ${entry} is missing: run \`npm run build\` in ${packageDir}\n`);
    process.exit(1);
  }
  try {
    const { main } = await import(pathToFileURL(entry).href);
    process.exit(await main(process.argv.slice(2)));
  } catch (err) {
    const e = /** @type {{ code?: unknown, message?: string, stack?: string }} */ (err ?? {});
    const text =
      typeof e.code === 'string' && e.code.startsWith('SEGLB_')
        ? `${e.code}: ${e.message}`
        : (e.stack ?? err);
    process.stderr.write(`seglb: ${text}\n`);
    process.exit(1);
  }
}

/**
 * The Node binary installed by the `node` package (a dependency): its package.json `bin.node`
 * (bin/node, or bin/node.exe on Windows) from wherever npm placed it, else node_modules/.bin/node.
 * @returns {string | undefined}
 */
function findBundledNode() {
  const candidates = [];
  try {
    const pkgJson = createRequire(import.meta.url).resolve('node/package.json');
    const bin = JSON.parse(readFileSync(pkgJson, 'utf8')).bin;
    const rel = typeof bin === 'string' ? bin : bin?.node;
    if (rel) candidates.push(join(dirname(pkgJson), rel));
  } catch {
    // `node` not installed next to this package: try the .bin link below.
  }
  candidates.push(
    join(packageDir, 'node_modules', '.bin', process.platform === 'win32' ? 'node.cmd' : 'node'),
  );
  // The `node` package ships no binary: its install script fetches one, so a skipped script
  // leaves bin/node (and the .bin link's target) absent.
  return candidates.find((file) => existsSync(file));
}

/**
 * Runs this launcher again under `node` and mirrors the child's exit. The child gets its own
 * session (detached) so a terminal Ctrl-C reaches it once, through the forwarding here: seglb
 * treats a second SIGINT as "stop draining, exit now".
 * @param {string} node
 */
function reexec(node) {
  const child = spawn(node, [...process.execArgv, launcherPath, ...process.argv.slice(2)], {
    stdio: 'inherit',
    detached: true,
    env: { ...process.env, [REEXEC_MARK]: '1' },
  });
  for (const signal of FORWARDED_SIGNALS) {
    process.on(signal, () => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    });
  }
  child.on('error', (err) => fail(`could not start ${node}: ${err.message}`));
  child.on('exit', (code, signal) => {
    process.exit(code ?? 128 + (constants.signals[signal] ?? 0));
  });
}

/** @param {string} why */
function fail(why) {
  process.stderr.write(
    `seglb: needs Node.js >= ${REQUIRED_MAJOR}: ${why}.\n` +
      `Install Node ${REQUIRED_MAJOR} (https://nodejs.org), or run this file with it: /path/to/node ${launcherPath} ...\n`,
  );
  process.exit(1);
}
