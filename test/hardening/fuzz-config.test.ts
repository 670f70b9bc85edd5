// Config fuzzing: thousands of random mutations (seeded, so a failure can be replayed) of the
// shipped configs (conf/seglb.yaml, conf/examples/*.yaml, and the full example of docs/config.md).
// Loading must either succeed or throw a ConfigError whose every issue names a file:line:col; an
// accepted config must compile; nothing may throw anything else or hang. Then a few hundred mutated
// files are applied to a running seglb through reload: a rejected one changes nothing.

import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, test } from 'node:test';
import { PolicyControl, prepareConfig } from '../../src/admin/index.ts';
import { loadConfigText, secretFileWarnings } from '../../src/config/index.ts';
import { ConfigError, formatConfigIssue, PolicyError } from '../../src/errors.ts';
import { parseEndpoint } from '../../src/net/index.ts';
import { createLogger } from '../../src/observe/log.ts';
import { compileSegmentPolicy } from '../../src/policy/index.ts';
import { Runtime } from '../../src/runtime.ts';
import { startBackend } from '../support/net.ts';
import { tempDir } from '../support/seglb.ts';
import { makeRandom, mutateYaml } from './support/mutate.ts';

const SEED = Number(process.env.SEGLB_FUZZ_SEED ?? 0x5e61b);
const ROOT = new URL('../../', import.meta.url).pathname;

/** The corpus: shipped configs, each with the folder it is validated in (relative paths). */
function corpus(): { name: string; text: string }[] {
  const out = [{ name: 'conf/seglb.yaml', text: readFileSync(join(ROOT, 'conf/seglb.yaml'), 'utf8') }];
  const examples = join(ROOT, 'conf/examples');
  if (existsSync(examples)) {
    for (const f of readdirSync(examples)
      .filter((n) => /\.ya?ml$/.test(n))
      .sort())
      out.push({ name: `conf/examples/${f}`, text: readFileSync(join(examples, f), 'utf8') });
  }
  const doc = readFileSync(join(ROOT, 'docs/config.md'), 'utf8');
  const block = /## A full example\n[\s\S]*?```yaml\n([\s\S]*?)\n```/.exec(doc);
  if (block?.[1]) out.push({ name: 'docs/config.md (full example)', text: block[1] });
  return out;
}

/** Checks one candidate text; returns a failure description or null. */
function checkOne(text: string, file: string): { failure: string | null; accepted: boolean } {
  let loaded: ReturnType<typeof loadConfigText>;
  try {
    loaded = loadConfigText(text, file);
  } catch (err) {
    if (!(err instanceof ConfigError))
      return { failure: `threw ${String((err as Error)?.stack ?? err)}`, accepted: false };
    if (err.issues.length === 0) return { failure: 'ConfigError without issues', accepted: false };
    for (const issue of err.issues) {
      if (!(issue.line >= 1 && issue.col >= 1) || !issue.file || !issue.message)
        return { failure: `issue without a position: ${JSON.stringify(issue)}`, accepted: false };
      if (!formatConfigIssue(issue).startsWith(`${issue.file}:${issue.line}:${issue.col} `))
        return { failure: `badly formatted issue: ${formatConfigIssue(issue)}`, accepted: false };
    }
    return { failure: null, accepted: false };
  }
  try {
    for (const [name, seg] of Object.entries(loaded.config.segments))
      compileSegmentPolicy(name, seg, loaded.ipsets);
    secretFileWarnings(loaded.config, dirname(file));
  } catch (err) {
    if (!(err instanceof PolicyError))
      return {
        failure: `accepted but failed to compile: ${String((err as Error)?.stack ?? err)}`,
        accepted: true,
      };
  }
  return { failure: null, accepted: true };
}

describe('config fuzzing', () => {
  test('thousands of mutated configs: accepted, or rejected with file:line:col; never a crash or a hang', {
    timeout: 60_000,
  }, () => {
    const dir = tempDir('seglb-fuzz-');
    const file = join(dir, 'seglb.yaml');
    const seeds = corpus();
    const rnd = makeRandom(SEED);
    const budgetMs = 20_000;
    const started = performance.now();
    let cases = 0;
    let accepted = 0;
    let slowest = 0;
    const failures: string[] = [];
    while (cases < 6000 && performance.now() - started < budgetMs) {
      const base = seeds[cases % seeds.length] as { name: string; text: string };
      const mutations = 1 + rnd.int(4);
      let text = base.text;
      for (let m = 0; m < mutations; m++) text = mutateYaml(text, rnd);
      const t0 = performance.now();
      const r = checkOne(text, file);
      const took = performance.now() - t0;
      slowest = Math.max(slowest, took);
      cases++;
      if (r.accepted) accepted++;
      if (took > 2000) failures.push(`case ${cases} (${base.name}, seed ${SEED}) took ${took.toFixed(0)} ms`);
      if (r.failure && failures.length < 5)
        failures.push(
          `case ${cases} (${base.name}, seed ${SEED}): ${r.failure}\n--- text ---\n${text.slice(0, 2000)}`,
        );
    }
    process.stdout.write(
      `# config fuzz: ${cases} cases in ${((performance.now() - started) / 1000).toFixed(1)} s (seed ${SEED}), ${accepted} accepted, slowest ${slowest.toFixed(0)} ms\n`,
    );
    assert.deepEqual(failures, []);
    assert.ok(cases >= 2000, `only ${cases} cases ran`);
  });

  test('a mutated file applied by reload: rejected ones change nothing, accepted ones apply whole', {
    timeout: 60_000,
  }, async () => {
    const backend = await startBackend('b', '127.0.0.95');
    const dir = tempDir('seglb-fuzz-reload-');
    const file = join(dir, 'seglb.yaml');
    const base = `log: { level: silent }
ipsets:
  office: { cidrs: [127.0.0.0/29, "::1"] }
  monitoring: { cidrs: [127.0.1.0/24] }
segments:
  web:
    vips: [{ listen: "127.0.0.1:0" }]
    pool: web
    backend_subnets: [127.0.0.0/8]
    allow:
      - { name: office, from: [office] }
      - { name: health, from: [monitoring], methods: [GET], paths: [/health] }
    deny:
      - { name: blocked, from: [127.0.0.5] }
pools:
  web:
    algorithm: weighted_round_robin
    backends: [{ address: "${backend.address}", weight: 2 }]
`;
    writeFileSync(file, base);
    const log = createLogger({ level: 'silent', format: 'json' });
    const prepared = prepareConfig(file, null, log);
    const runtime = await Runtime.start(prepared.loaded, log);
    const control = new PolicyControl(runtime, prepared, null, null, log);
    const rnd = makeRandom(SEED + 1);
    let rejected = 0;
    let applied = 0;
    let skipped = 0;
    try {
      for (let i = 0; i < 300; i++) {
        let text = base;
        for (let m = 0; m < 1 + rnd.int(3); m++) text = mutateYaml(text, rnd);
        if (!safeToApply(text, file)) {
          skipped++;
          continue;
        }
        writeFileSync(file, text);
        const before = {
          version: runtime.snapshot.version,
          text: control.effectiveText(),
          hash: runtime.snapshot.hash,
        };
        try {
          const snap = await control.reloadFile('fuzz');
          assert.equal(snap.version, before.version + 1);
          assert.equal(runtime.snapshot, snap, 'an accepted file is applied whole');
          applied++;
        } catch (err) {
          assert.ok(err instanceof ConfigError, `reload threw ${String((err as Error)?.stack ?? err)}`);
          assert.equal(runtime.snapshot.version, before.version, 'a rejected file changes nothing');
          assert.equal(runtime.snapshot.hash, before.hash);
          assert.equal(control.effectiveText(), before.text);
          rejected++;
        }
      }
      process.stdout.write(
        `# reload fuzz: ${applied} applied, ${rejected} rejected, ${skipped} not applied (would bind a real port)\n`,
      );
      assert.ok(rejected > 50 && applied > 5, `${applied} applied, ${rejected} rejected`);
    } finally {
      await runtime.stop(0);
      await backend.close();
    }
  });
});

/**
 * A mutated file may be applied to the running test seglb only if it binds nothing but ephemeral
 * loopback ports and starts nothing (no admin, cluster or demo backends); invalid files are always
 * safe (they never get past validation).
 */
function safeToApply(text: string, file: string): boolean {
  let loaded: ReturnType<typeof loadConfigText>;
  try {
    loaded = loadConfigText(text, file);
  } catch {
    return true;
  }
  const c = loaded.config;
  if (c.admin || c.cluster || Object.values(c.pools).some((p) => p.demo)) return false;
  return Object.values(c.segments).every((s) =>
    s.vips.every((v) => {
      const ep = parseEndpoint(v.listen, true);
      return ep.port === 0 && ep.host.startsWith('127.');
    }),
  );
}
