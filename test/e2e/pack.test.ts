// The published package: `npm pack`, `npm install -g` of the tarball into a temp prefix, then the
// installed `seglb` command (bin/seglb.js over compiled dist/) runs --version, check and run.
// Skips, saying why, only when npm cannot reach its registry.

import assert from 'node:assert/strict';
import { type SpawnOptions, spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { delimiter, join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { tempDir } from '../support/seglb.ts';

const repo = resolve(import.meta.dirname, '../..');
const version = (JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8')) as { version: string }).version;

// Set by `npm run`/`npm test` about this project; the user's own npm_config_* settings stay.
const NPM_RUN_VARS =
  /^(npm_(lifecycle|package)_|npm_(command|execpath|node_execpath)$|npm_config_(local_prefix|global_prefix|prefix|call|user_agent|npm_version|node_gyp)$|INIT_CWD$|NODE$)/;

/**
 * The environment of a shell outside npm: `npm test` puts node_modules/.bin (with Node 24) first on
 * PATH and describes this project in npm_* variables; both are removed so npm and the installed
 * command find the machine's own npm and node, as after a real global install.
 */
function systemEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!NPM_RUN_VARS.test(key)) env[key] = value;
  }
  env.PATH = (process.env.PATH ?? '')
    .split(delimiter)
    .filter((dir) => dir && !/node_modules[/\\]\.bin$|node-gyp-bin$/.test(dir))
    .join(delimiter);
  return env;
}

interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion (killed after timeoutMs). */
function runCommand(cmd: string, args: string[], opts: SpawnOptions & { timeoutMs?: number } = {}) {
  return new Promise<RunResult>((done, fail) => {
    const child = spawn(cmd, args, { env: systemEnv(), ...opts, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (d: Buffer) => (stdout += d));
    child.stderr?.on('data', (d: Buffer) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
    child.on('error', fail);
    child.on('close', (code) => {
      clearTimeout(timer);
      done({ code, stdout, stderr });
    });
  });
}

const work = tempDir('seglb-pack-');
const prefix = join(work, 'prefix');
const installed = join(prefix, 'lib', 'node_modules', 'seglb');
const seglbBin = join(prefix, 'bin', 'seglb');
let skipReason: string | undefined;

describe('npm package (npm pack + npm install -g)', () => {
  before(async () => {
    // No retries: an unreachable registry answers in well under a second instead of ~30 s.
    const ping = await runCommand('npm', ['ping', '--fetch-retries=0', '--fetch-timeout=20000'], {
      cwd: work,
      timeoutMs: 30_000,
    });
    if (ping.code !== 0) {
      const why =
        ping.stderr.match(/FetchError: (.*)/)?.[1] ??
        ping.stderr.match(/npm error code (\S+)/)?.[1] ??
        (ping.code === null ? 'no answer within 30 s' : ping.stderr.trim().split('\n').at(-1));
      skipReason = `npm cannot reach its registry (npm ping: ${why}); the package install cannot be tested`;
      return;
    }
    const pack = await runCommand('npm', ['pack', '--pack-destination', work], {
      cwd: repo,
      timeoutMs: 120_000,
    });
    assert.equal(pack.code, 0, `npm pack failed:\n${pack.stdout}\n${pack.stderr}`);
    const tarball = readdirSync(work).find((f) => f.endsWith('.tgz'));
    assert.ok(tarball, 'npm pack wrote a tarball');
    // --prefer-offline: packages already in the npm cache are not re-validated against the
    // registry, which keeps a warm install to a few seconds.
    const install = await runCommand(
      'npm',
      [
        'install',
        '-g',
        '--prefix',
        prefix,
        '--no-audit',
        '--no-fund',
        '--prefer-offline',
        join(work, tarball),
      ],
      { cwd: work, timeoutMs: 240_000 },
    );
    assert.equal(install.code, 0, `npm install -g failed:\n${install.stdout}\n${install.stderr}`);
  });

  after(() => rmSync(work, { recursive: true, force: true }));

  test('ships compiled JavaScript, the launcher, the schema and the example config; not src/', (t) => {
    if (skipReason) return t.skip(skipReason);
    for (const file of ['bin/seglb.js', 'dist/cli/main.js', 'schema/seglb.schema.json', 'conf/seglb.yaml'])
      assert.ok(existsSync(join(installed, file)), `${file} is in the package`);
    assert.equal(existsSync(join(installed, 'src')), false, 'src/ is not shipped');
    assert.equal(existsSync(join(installed, 'test')), false, 'test/ is not shipped');
    assert.ok(existsSync(seglbBin), `${seglbBin} is linked`);
  });

  test('seglb --version on the PATH node (older than 24: re-executed under the bundled Node 24)', async (t) => {
    if (skipReason) return t.skip(skipReason);
    const r = await runCommand(seglbBin, ['--version']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `seglb ${version}\n`);
  });

  test('seglb --version under Node 24 directly', async (t) => {
    if (skipReason) return t.skip(skipReason);
    const r = await runCommand(process.execPath, [join(installed, 'bin', 'seglb.js'), '--version']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `seglb ${version}\n`);
  });

  test('seglb check accepts the shipped example config (exit 0)', async (t) => {
    if (skipReason) return t.skip(skipReason);
    const r = await runCommand(seglbBin, ['check', '-c', join(installed, 'conf', 'seglb.yaml')]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /seglb\.yaml: OK/);
  });

  test('seglb check rejects a broken file with a positioned error (exit 2)', async (t) => {
    if (skipReason) return t.skip(skipReason);
    const file = join(work, 'broken.yaml');
    writeFileSync(
      file,
      [
        'segments:',
        '  web:',
        '    vips: [{ listen: "127.0.0.1:0" }]',
        '    pool: p',
        '    backend_subnets: [127.0.0.0/8]',
        '    allow: [{ from: [10.0.0.0/33] }]',
        'pools:',
        '  p:',
        '    backends: [{ address: "127.0.0.1:1" }]',
        '',
      ].join('\n'),
    );
    const r = await runCommand(seglbBin, ['check', '-c', file]);
    assert.equal(r.code, 2, r.stderr);
    // file:line:col key.path: the line and key of the bad CIDR (the column is the validator's business).
    assert.ok(
      r.stderr
        .split('\n')
        .some((l) => /^(.*):6:\d+ segments\.web\.allow\[0\]\.from\[0\]: /.exec(l)?.[1] === file),
      `positioned error expected, got:\n${r.stderr}`,
    );
  });

  test('seglb run through the launcher: SIGTERM reaches seglb, which drains and exits 0', async (t) => {
    if (skipReason) return t.skip(skipReason);
    const file = join(work, 'run.yaml');
    writeFileSync(
      file,
      `log: { level: info, format: json }
segments:
  web:
    vips: [{ listen: "127.0.0.1:0" }]
    pool: p
    backend_subnets: [127.0.0.0/8]
    allow: [{ from: [127.0.0.0/8] }]
pools:
  p:
    backends: [{ address: "127.0.0.1:1" }]
`,
    );
    const child = spawn(seglbBin, ['run', '-c', file], {
      env: systemEnv(),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const exited = new Promise<number | null>((r) => child.on('close', r));
    let out = '';
    let seglbPid: number | undefined;
    let nodeVersion = '';
    let port = 0;
    try {
      await new Promise<void>((started, fail) => {
        const timer = setTimeout(() => fail(new Error(`seglb did not start:\n${out}`)), 30_000);
        child.stdout.on('data', (d: Buffer) => {
          out += d;
          if (seglbPid) return;
          const lines = out.split('\n').slice(0, -1); // complete lines only
          const vip = lines.find((l) => l.includes('"VIP listening"'));
          const line = lines.find((l) => l.includes('"seglb started"'));
          if (vip && line) {
            port = (JSON.parse(vip) as { port: number }).port;
            const log = JSON.parse(line) as { pid: number; node: string };
            seglbPid = log.pid;
            nodeVersion = log.node;
            clearTimeout(timer);
            started();
          }
        });
        child.stderr.on('data', (d: Buffer) => (out += d));
      });
      assert.ok(
        Number(nodeVersion.slice(1).split('.')[0]) >= 24,
        `seglb runs on Node >= 24, not ${nodeVersion}`,
      );
      // seglb installs its signal handlers just after logging "seglb started"; a request answered
      // (502: the backend refuses) proves its event loop has turned since, so they are in place.
      const res = await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(10_000) });
      await res.arrayBuffer();
      assert.equal(res.status, 502);
      child.kill('SIGTERM');
      assert.equal(await exited, 0, out);
      assert.match(out, /"signal":"SIGTERM"/);
      assert.match(out, /"msg":"stopped"/);
    } finally {
      child.kill('SIGKILL');
      // Under re-execution seglb is the launcher's child, in its own session: kill it directly.
      if (seglbPid && seglbPid !== child.pid) {
        try {
          process.kill(seglbPid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    }
  });
});
