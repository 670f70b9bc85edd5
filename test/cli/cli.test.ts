// The seglb command line as a child process on this Node: --version/--help, usage errors (exit 2),
// check (exit 0 / 2 with positioned errors), explain (exit 0 allow / 1 deny, deciding rule's
// file:line, L7 requests) and run failing on a busy VIP port (exit 1, one clear log line).

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { spawnSeglb, writeConfig } from '../support/seglb.ts';

const ROOT = join(import.meta.dirname, '../..');
const MAIN = join(ROOT, 'src/cli/main.ts');
const DEMO = join(ROOT, 'conf/seglb.yaml');

interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `seglb ARGS` to completion with the Node running this test. */
function cli(args: readonly string[], env: NodeJS.ProcessEnv = process.env): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [MAIN, ...args],
      { cwd: ROOT, env, timeout: 20_000 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : null) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

const USAGE_HINT = 'Run "seglb --help" for the usage.';

describe('cli: version, help and usage errors', () => {
  it('--version and -v print package.json version', async () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
    for (const flag of ['--version', '-v']) {
      const r = await cli([flag]);
      assert.equal(r.code, 0);
      assert.equal(r.stdout, `seglb ${pkg.version}\n`);
      assert.equal(r.stderr, '');
    }
  });

  it('--help, -h and help print the usage on stdout, exit 0', async () => {
    for (const args of [['--help'], ['-h'], ['help'], ['check', '--help']]) {
      const r = await cli(args);
      assert.equal(r.code, 0, args.join(' '));
      assert.match(r.stdout, /^seglb - a load balancer with micro-segmentation/);
      for (const cmd of ['seglb run -c FILE', 'seglb check -c FILE', 'seglb explain -c FILE']) {
        assert.ok(r.stdout.includes(cmd), cmd);
      }
    }
  });

  it('no command prints the usage on stderr and exits 2', async () => {
    const r = await cli([]);
    assert.equal(r.code, 2);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /Usage:/);
  });

  it('exits 2 on usage errors, saying what is wrong', async () => {
    const cases: [string[], RegExp][] = [
      [['frob'], /^seglb: unknown command "frob" \(commands: run, check, explain, ctl\)$/m],
      [['constructor'], /^seglb: unknown command "constructor"/m],
      [['check'], /^seglb: check needs -c FILE$/m],
      [['check', '-c', DEMO, '--bogus'], /^seglb: Unknown option '--bogus'/m],
      [['check', '-c', DEMO, 'extra'], /^seglb: check takes no arguments besides options, got "extra"$/m],
      [['check', '-c', DEMO, '--method', 'GET'], /^seglb: --method is not an option of check$/m],
      [['explain', '-c', DEMO, '--from', '127.0.0.1'], /^seglb: explain needs --segment NAME$/m],
      [['explain', '-c', DEMO, '--segment', 'web'], /^seglb: explain needs --from ADDRESS$/m],
      [
        ['explain', '-c', DEMO, '--segment', 'web', '--from', 'not-an-ip'],
        /^seglb: --from must be an IPv4 or IPv6 address, got "not-an-ip"$/m,
      ],
      [
        ['explain', '-c', DEMO, '--segment', 'nope', '--from', '127.0.0.1'],
        /^seglb: unknown segment "nope" \(segments: web, db\)$/m,
      ],
      [
        ['explain', '-c', DEMO, '--segment', 'web', '--from', '127.0.0.1', '--header', 'no-colon'],
        /^seglb: --header takes NAME:VALUE, got "no-colon"$/m,
      ],
      [['run', '-c', DEMO, '--log-format', 'xml'], /^seglb: --log-format is json or pretty, got "xml"$/m],
      [['run', '-c', DEMO, '--log-level', 'loud'], /^seglb: --log-level is one of trace, .*, got "loud"$/m],
      [['run', '-c', DEMO, '--segment', 'web'], /^seglb: --segment is not an option of run$/m],
    ];
    await Promise.all(
      cases.map(async ([args, expected]) => {
        const r = await cli(args);
        assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
        assert.match(r.stderr, expected, args.join(' '));
        assert.ok(r.stderr.includes(USAGE_HINT), args.join(' '));
        assert.equal(r.stdout, '', args.join(' '));
      }),
    );
  });
});

describe('cli: check', () => {
  it('accepts conf/seglb.yaml and prints segments, VIPs and pools', async () => {
    const r = await cli(['check', '-c', DEMO]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, '');
    const out = r.stdout;
    assert.ok(out.startsWith(`${DEMO}: OK\n`), out);
    assert.match(out, /^segments \(2\):$/m);
    assert.match(out, /^ {2}web {2}mode=enforce {2}pool=web {2}rules: 2 allow, 1 deny/m);
    assert.match(out, /^ {4}VIP http:\/\/127\.0\.0\.1:8080$/m);
    assert.match(out, /^ {4}VIP tcp:\/\/127\.0\.0\.1:8432$/m);
    assert.match(out, /^pools \(2\):$/m);
    assert.match(
      out,
      /^ {2}web {2}weighted_round_robin \(demo backends\): 127\.0\.0\.1:9101 w=2, 127\.0\.0\.1:9102$/m,
    );
    assert.match(out, /^ipsets \(2\): office=2, monitoring=1$/m);
  });

  it('rejects a bad file with exit 2 and every positioned error on stderr', async () => {
    const file = writeConfig(
      [
        'segments:',
        '  web:',
        '    vips: [{ listen: 127.0.0.1:8080, protocol: ftp }]',
        '    pool: p',
        '    backend_subnets: [10.1.2.3/8]',
        'pools:',
        '  p: { backends: [{ address: 10.0.0.1:80 }], algorthm: round_robin }',
        '',
      ].join('\n'),
    );
    const r = await cli(['check', '-c', file]);
    assert.equal(r.code, 2);
    assert.equal(r.stdout, '');
    assert.equal(
      r.stderr,
      [
        `${file}:3:48 segments.web.vips[0].protocol: must be one of http, https, tcp (got "ftp")`,
        `${file}:5:23 segments.web.backend_subnets[0]: 10.1.2.3/8 has host bits set; did you mean 10.0.0.0/8?`,
        `${file}:7:46 pools.p.algorthm: unknown key "algorthm"; did you mean "algorithm"?`,
        'seglb: configuration rejected (3 problems, SEGLB_CONFIG_INVALID)',
        '',
      ].join('\n'),
    );
  });

  it('reports YAML syntax errors and unreadable files with exit 2', async () => {
    const bad = writeConfig('segments:\n  web: [a, b\n');
    const yamlErr = await cli(['check', '-c', bad]);
    assert.equal(yamlErr.code, 2);
    assert.match(
      yamlErr.stderr,
      new RegExp(`^${bad.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:\\d+:\\d+ YAML: `, 'm'),
    );
    assert.match(yamlErr.stderr, /SEGLB_CONFIG_YAML\)$/m);
    const missing = await cli(['check', '-c', join(ROOT, 'no-such-config.yaml')]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /no-such-config\.yaml: cannot read config file: no such file \(ENOENT\)/);
    assert.match(missing.stderr, /SEGLB_CONFIG_READ\)$/m);
  });
});

describe('cli: explain', () => {
  // Line numbers below are asserted: keep this text as is.
  const file = writeConfig(
    [
      'segments:', // 1
      '  web:', // 2
      '    vips: [{ listen: 127.0.0.1:0 }]', // 3
      '    pool: p', // 4
      '    backend_subnets: [127.0.0.0/8]', // 5
      '    allow:', // 6
      '      - name: office', // 7
      '        from: [10.0.0.0/8]', // 8
      '      - name: health', // 9
      '        from: [192.0.2.0/24]', // 10
      '        methods: [GET]', // 11
      '        paths: [/health]', // 12
      '    deny:', // 13
      '      - name: blocked', // 14
      '        from: [10.9.0.0/16]', // 15
      '  lab:', // 16
      '    mode: audit', // 17
      '    vips: [{ listen: 127.0.0.1:0 }]', // 18
      '    pool: p', // 19
      '    backend_subnets: [127.0.0.0/8]', // 20
      '    allow: [{ from: ["2001:db8::/32"] }]', // 21
      'pools:', // 22
      '  p: { backends: [{ address: 127.0.0.1:9000 }] }', // 23
      '',
    ].join('\n'),
  );
  const explain = (...args: string[]) => cli(['explain', '-c', file, ...args]);

  it('exits 0 for an allowed source and names the deciding rule with file:line:col', async () => {
    const r = await explain('--segment', 'web', '--from', '10.1.2.3');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(
      r.stdout,
      [
        'segment web (mode enforce), source 10.1.2.3',
        'verdict: ALLOW  [connection: allow]',
        'reason: an allow rule covers this source',
        `deciding rule: allow office at ${file}:7:9`,
        'matched rules (1):',
        `  allow office at ${file}:7:9`,
        '',
      ].join('\n'),
    );
  });

  it('exits 1 for a denied source: deny beats allow, with every matched rule', async () => {
    const r = await explain('--segment', 'web', '--from', '10.9.1.1');
    assert.equal(r.code, 1);
    assert.match(r.stdout, /^verdict: DENY {2}\[connection: deny\]$/m);
    assert.ok(r.stdout.includes(`deciding rule: deny blocked at ${file}:14:9\n`), r.stdout);
    assert.ok(
      r.stdout.includes(
        `matched rules (2):\n  deny blocked at ${file}:14:9\n  allow office at ${file}:7:9\n`,
      ),
    );
  });

  it('exits 1 with the default deny when no rule covers the source', async () => {
    const r = await explain('--segment', 'web', '--from', '172.16.0.1');
    assert.equal(r.code, 1);
    assert.match(r.stdout, /^reason: no allow rule covers this source \(default deny\)$/m);
    assert.match(r.stdout, /^deciding rule: none \(default deny\)$/m);
    assert.match(r.stdout, /^matched rules \(0\):$/m);
  });

  it('judges an HTTP request against L7 rules with --method/--path', async () => {
    const ok = await explain(
      '--segment',
      'web',
      '--from',
      '192.0.2.7',
      '--method',
      'GET',
      '--path',
      '/health',
    );
    assert.equal(ok.code, 0, ok.stdout);
    assert.match(ok.stdout, /^verdict: ALLOW {2}\[connection: l7\]$/m);
    assert.ok(ok.stdout.includes(`deciding rule: allow health (L7) at ${file}:9:9\n`), ok.stdout);

    const wrongMethod = await explain(
      '--segment',
      'web',
      '--from',
      '192.0.2.7',
      '--method',
      'POST',
      '--path',
      '/health',
    );
    assert.equal(wrongMethod.code, 1);
    assert.match(wrongMethod.stdout, /^reason: no allow rule matches this request \(default deny\)$/m);

    const wrongPath = await explain(
      '--segment',
      'web',
      '--from',
      '192.0.2.7',
      '--method',
      'GET',
      '--path',
      '/admin',
    );
    assert.equal(wrongPath.code, 1);
  });

  it('normalises IPv4-mapped IPv6 sources and reports audit mode', async () => {
    const mapped = await explain('--segment', 'web', '--from', '::ffff:10.1.2.3');
    assert.equal(mapped.code, 0);
    assert.match(mapped.stdout, /^segment web \(mode enforce\), source 10\.1\.2\.3$/m);

    const v6 = await explain('--segment', 'lab', '--from', '2001:db8::1');
    assert.equal(v6.code, 0);
    assert.ok(v6.stdout.includes(`deciding rule: allow allow[0] at ${file}:21:13\n`), v6.stdout);

    const audited = await explain('--segment', 'lab', '--from', '10.1.2.3');
    assert.equal(audited.code, 1);
    assert.match(audited.stdout, /^verdict: DENY \(audit mode: logged, not enforced\)/m);
  });
});

describe('cli: run', () => {
  it('exits 1 with one clear log line when a VIP port is already in use', async () => {
    const blocker = createServer();
    blocker.listen(0, '127.0.0.1');
    await once(blocker, 'listening');
    const port = (blocker.address() as { port: number }).port;
    try {
      const file = writeConfig(
        [
          'log: { format: json }',
          'segments:',
          '  web:',
          `    vips: [{ listen: "127.0.0.1:${port}" }]`,
          '    pool: p',
          '    backend_subnets: [127.0.0.0/8]',
          '    allow: [{ from: [any] }]',
          'pools:',
          '  p: { backends: [{ address: 127.0.0.1:9000 }] }',
          '',
        ].join('\n'),
      );
      const proc = spawnSeglb(['run', '-c', file]);
      const line = await proc.waitForLog('seglb could not start');
      assert.equal(await proc.exited, 1);
      assert.equal(line['code'], 'SEGLB_LISTENER_BIND');
      assert.equal(line['level'], 60);
      assert.match(String(line['err']), new RegExp(`127\\.0\\.0\\.1:${port}.*EADDRINUSE`));
      assert.ok(!proc.logs.some((l) => l['msg'] === 'seglb started'));
    } finally {
      blocker.close();
    }
  });

  it('exits 2 without starting anything when the config is invalid', async () => {
    const file = writeConfig('segments: {}\npools: {}\n');
    const r = await cli(['run', '-c', file]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /segments: must not be empty/);
    assert.match(r.stderr, /SEGLB_CONFIG_INVALID\)$/m);
  });
});
