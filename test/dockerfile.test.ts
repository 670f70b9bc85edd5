// The Dockerfile's contract, checked without a Docker engine: base image, build and runtime stages,
// non-root user, config path, entrypoint, signals, and a HEALTHCHECK that really runs (against a
// live seglb VIP) with nothing but node. Also that .dockerignore keeps the context lean.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, test } from 'node:test';
import { RECOMMENDED_NODE_FLAGS } from '../src/cli/node-flags.ts';
import { closedPort } from './support/net.ts';
import { startSeglb } from './support/seglb.ts';

const repo = resolve(import.meta.dirname, '..');

interface Instruction {
  readonly keyword: string;
  readonly args: string;
  readonly line: number;
}

/** Dockerfile instructions with continuation lines joined and comments dropped, split per stage. */
function parseDockerfile(text: string): Instruction[][] {
  const stages: Instruction[][] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const start = i + 1;
    let logical = lines[i] ?? '';
    if (/^\s*(#|$)/.test(logical)) continue;
    while (logical.endsWith('\\') && i + 1 < lines.length) {
      logical = `${logical.slice(0, -1)} ${(lines[++i] ?? '').trim()}`;
    }
    const m = /^\s*(\w+)\s+(.*)$/.exec(logical);
    assert.ok(m, `Dockerfile:${start}: cannot parse ${JSON.stringify(logical)}`);
    const ins = { keyword: m[1]!.toUpperCase(), args: m[2]!.trim(), line: start };
    if (ins.keyword === 'FROM') stages.push([]);
    assert.ok(stages.length > 0, `Dockerfile:${start}: ${ins.keyword} before FROM`);
    stages.at(-1)!.push(ins);
  }
  return stages;
}

const stages = parseDockerfile(readFileSync(join(repo, 'Dockerfile'), 'utf8'));
const build = stages[0] ?? [];
const final = stages.at(-1) ?? [];
const all = (stage: Instruction[], keyword: string) => stage.filter((i) => i.keyword === keyword);
const one = (stage: Instruction[], keyword: string) => {
  const found = all(stage, keyword);
  assert.ok(found.length > 0, `the final stage has ${keyword}`);
  return found.at(-1)!;
};
const execForm = (ins: Instruction) => JSON.parse(ins.args) as string[];

/** The HEALTHCHECK's exec-form command (after CMD and the options). */
function healthcheckCommand(): string[] {
  const args = one(final, 'HEALTHCHECK').args;
  const cmd = /(?:^|\s)CMD\s+(\[.*\])\s*$/.exec(args);
  assert.ok(cmd, 'HEALTHCHECK uses the exec form: CMD ["node", ...]');
  return JSON.parse(cmd[1]!) as string[];
}

function runHealthcheck(env: Record<string, string>): Promise<number | null> {
  const [program, ...args] = healthcheckCommand();
  assert.equal(program, 'node', 'the health check needs only node (no curl or wget in node:24-slim)');
  const child = spawn(process.execPath, args, { env: { ...process.env, ...env }, stdio: 'ignore' });
  return new Promise((done) => child.on('close', done));
}

describe('Dockerfile', () => {
  test('multi-stage on node:24-slim: npm ci + npm run build, then production dependencies only', () => {
    assert.ok(stages.length >= 2, 'a build stage and a runtime stage');
    for (const stage of stages) assert.match(stage[0]!.args, /^node:24-slim(\s|$)/);
    const buildRuns = all(build, 'RUN').map((i) => i.args);
    assert.ok(buildRuns.some((r) => /\bnpm ci\b/.test(r)));
    assert.ok(buildRuns.some((r) => /\bnpm run build\b/.test(r)));
    const finalRuns = all(final, 'RUN').map((i) => i.args);
    assert.ok(
      finalRuns.some(
        (r) => /\bnpm ci\b/.test(r) && r.includes('--omit=dev') && r.includes('--ignore-scripts'),
      ),
      'the runtime stage installs production dependencies without install scripts',
    );
    const copies = all(final, 'COPY').map((i) => i.args);
    assert.ok(
      copies.some((c) => c.startsWith('--from=') && c.includes('/app/dist')),
      'dist/ from the build',
    );
    for (const source of ['package.json', 'package-lock.json', 'schema/', 'bin/'])
      assert.ok(
        copies.some((c) => c.split(/\s+/).includes(source)),
        `the runtime stage copies ${source}`,
      );
  });

  test('runs as a non-root user, before the entrypoint', () => {
    const user = one(final, 'USER');
    assert.doesNotMatch(user.args, /^(root|0)(:|$)/);
    assert.ok(user.line < one(final, 'ENTRYPOINT').line);
  });

  test('entrypoint is the launcher on the image node; the config is /etc/seglb/seglb.yaml', () => {
    assert.deepEqual(execForm(one(final, 'ENTRYPOINT')), ['node', '/app/bin/seglb.js']);
    assert.deepEqual(execForm(one(final, 'CMD')), ['run', '-c', '/etc/seglb/seglb.yaml']);
    assert.equal(one(final, 'WORKDIR').args, '/app');
    assert.ok(existsSync(join(repo, 'bin', 'seglb.js')));
  });

  test('STOPSIGNAL SIGTERM (seglb drains on it) and the demo ports exposed', () => {
    assert.equal(one(final, 'STOPSIGNAL').args, 'SIGTERM');
    const ports = all(final, 'EXPOSE').flatMap((i) => i.args.split(/\s+/));
    for (const port of ['8080', '8432']) assert.ok(ports.includes(port), `EXPOSE ${port}`);
  });

  for (const [who, allowed] of [
    ['allows', '127.0.0.0/8'],
    ['denies (seglb resets the connection)', '10.0.0.0/8'],
  ] as const) {
    test(`HEALTHCHECK passes against a live VIP whose policy for 127.0.0.1 ${who}`, async () => {
      assert.doesNotMatch(one(final, 'HEALTHCHECK').args, /\b(curl|wget)\b/);
      const seglb = await startSeglb(`
segments:
  web:
    vips: [{ listen: "127.0.0.1:0" }]
    pool: p
    backend_subnets: [127.0.0.0/8]
    allow: [{ from: [${allowed}] }]
pools:
  p:
    backends: [{ address: "127.0.0.1:1" }]
`);
      try {
        const port = String(seglb.port('web'));
        assert.equal(
          await runHealthcheck({ SEGLB_HEALTHCHECK_HOST: '127.0.0.1', SEGLB_HEALTHCHECK_PORT: port }),
          0,
        );
      } finally {
        await seglb.stop();
      }
    });
  }

  test('HEALTHCHECK fails when nothing listens', async () => {
    const port = String(await closedPort());
    assert.equal(
      await runHealthcheck({ SEGLB_HEALTHCHECK_HOST: '127.0.0.1', SEGLB_HEALTHCHECK_PORT: port }),
      1,
    );
  });

  test('the image sets the health check target defaults', () => {
    const env = all(final, 'ENV')
      .map((i) => i.args)
      .join(' ');
    assert.match(env, /SEGLB_HEALTHCHECK_HOST=127\.0\.0\.1/);
    assert.match(env, /SEGLB_HEALTHCHECK_PORT=8080/);
  });

  test('the image, npm start and npm run seglb run Node with RECOMMENDED_NODE_FLAGS', () => {
    const env = all(final, 'ENV')
      .map((i) => i.args)
      .join(' ');
    const nodeOptions = /NODE_OPTIONS=("[^"]*"|\S+)/.exec(env)?.[1]?.replace(/"/g, '').split(/\s+/) ?? [];
    const scripts = (
      JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8')) as { scripts: Record<string, string> }
    ).scripts;
    for (const flag of RECOMMENDED_NODE_FLAGS) {
      assert.ok(nodeOptions.includes(flag), `Dockerfile NODE_OPTIONS has ${flag}`);
      for (const name of ['start', 'seglb'])
        assert.ok(
          scripts[name]?.startsWith(`node ${RECOMMENDED_NODE_FLAGS.join(' ')} src/cli/main.ts`),
          `npm ${name}: ${scripts[name]}`,
        );
    }
  });

  test('.dockerignore keeps node_modules, dist, .git and bench/data out of the build context', () => {
    const ignored = readFileSync(join(repo, '.dockerignore'), 'utf8')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith('#'));
    for (const entry of ['node_modules', 'dist', '.git', 'bench/data'])
      assert.ok(ignored.includes(entry), `.dockerignore lists ${entry}`);
    for (const needed of [
      'src',
      'bin',
      'schema',
      'conf',
      'package.json',
      'package-lock.json',
      'tsconfig.json',
    ])
      assert.ok(!ignored.includes(needed), `${needed} stays in the build context`);
  });
});
