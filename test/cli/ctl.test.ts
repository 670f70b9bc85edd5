// `seglb ctl` as a child process against a running in-process seglb with its admin API: commands
// end to end (text and --json), exit codes (0 ok, 1 API error with code and positioned issues or an
// unreachable API, 2 usage), and the token rules (file or SEGLB_TOKEN, never the command line).

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmodSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ctl as runCtl } from '../../src/cli/ctl.ts';
import { makeCert } from '../support/certs.ts';
import { closedPort, httpRequest, startBackend, type TestBackend } from '../support/net.ts';
import { startSeglbAdmin, type TestSeglbAdmin, tempDir } from '../support/seglb.ts';

const MAIN = join(import.meta.dirname, '../../src/cli/main.ts');

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

describe('seglb ctl', { timeout: 60_000 }, () => {
  let lb: TestSeglbAdmin;
  let backend: TestBackend;
  const dir = tempDir('seglb-ctl-');
  const tokenFile = join(dir, 'admin.token');
  const readTokenFile = join(dir, 'read.token');

  /** Spawns `seglb ctl ARGS` (asynchronously: the API under test runs in this process). */
  const spawnCtl = (args: readonly string[], env: Record<string, string> = {}): Promise<Run> =>
    new Promise((resolve) => {
      execFile(
        process.execPath,
        [MAIN, 'ctl', ...args],
        { env: { PATH: process.env.PATH ?? '', SEGLB_ADMIN: lb.adminUrl, ...env }, timeout: 20_000 },
        (err, stdout, stderr) => {
          const code = err ? (typeof err.code === 'number' ? err.code : null) : 0;
          resolve({ code, stdout, stderr });
        },
      );
    });
  /** Runs the same code in this process (a spawn costs ~0.5 s on a busy machine). */
  const ctl = async (args: readonly string[], env: Record<string, string> = {}): Promise<Run> => {
    let stdout = '';
    let stderr = '';
    const code = await runCtl(args, {
      stdout: (t) => {
        stdout += t;
      },
      stderr: (t) => {
        stderr += t;
      },
      env: { SEGLB_ADMIN: lb.adminUrl, ...env },
    });
    return { code, stdout, stderr };
  };
  const admin = (...args: string[]) => ctl(['--token-file', tokenFile, ...args]);

  before(async () => {
    backend = await startBackend('be', '127.0.0.1');
    lb = await startSeglbAdmin(`
ipsets:
  office: { cidrs: [127.0.0.0/29] }
segments:
  web:
    vips: [{ listen: "127.0.0.1:0" }]
    pool: web
    backend_subnets: [127.0.0.0/8]
    allow:
      - { name: office, from: [office] }
      - { name: health, from: [127.0.3.0/24], methods: [GET], paths: [/health] }
pools:
  web:
    backends: [{ address: "${backend.address}", name: be }]
`);
    writeFileSync(tokenFile, `# admin token for tests\n${lb.tokens.admin}\n`, { mode: 0o600 });
    writeFileSync(readTokenFile, `${lb.tokens.read}\n`, { mode: 0o600 });
    // A little traffic for simulate.
    await httpRequest({ port: lb.port('web'), localAddress: '127.0.0.2' });
    await httpRequest({ port: lb.port('web'), localAddress: '127.0.0.2' });
  });
  after(async () => {
    await lb.stop();
    await backend.close();
  });

  it('status: text by default, the API JSON with --json; token from SEGLB_TOKEN', async () => {
    const r = await spawnCtl(['status'], { SEGLB_TOKEN: lb.tokens.read });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^seglb \d+\.\d+\.\d+, up /);
    assert.match(r.stdout, /policy version 1 \(hash [0-9a-f]{16}\); 0 runtime changes, 0 drift/);
    assert.match(r.stdout, /^\s+web\s+enforce\s+2\s/m);
    assert.match(r.stdout, /^\s+be\s+127\.0\.0\.1:\d+\s+ready\s+up\s+yes/m);
    assert.match(r.stdout, /^cluster: not configured$/m);
    const j = await spawnCtl(['--json', 'status'], { SEGLB_TOKEN: lb.tokens.read });
    assert.equal(j.code, 0);
    assert.equal(JSON.parse(j.stdout).policy.version, 1);
  });

  it('explain prints the verdict and the deciding rule with its position', async () => {
    const r = await admin(
      'explain',
      '--segment',
      'web',
      '--from',
      '127.0.3.9',
      '--method',
      'GET',
      '--path',
      '/health',
    );
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^verdict: ALLOW/m);
    assert.match(r.stdout, /^deciding rule: allow health \(L7\) at .*seglb\.yaml:\d+:\d+$/m);
    const deny = await admin('explain', '--segment', 'web', '--from', '127.0.9.9');
    assert.equal(deny.code, 0, 'the call succeeded; the verdict is in the output');
    assert.match(deny.stdout, /^verdict: DENY/m);
  });

  it('rule add / remove change the policy; an invalid rule exits 1 with positioned issues', async () => {
    const add = await admin(
      'rule',
      'add',
      'web',
      'allow',
      'ops',
      '--from',
      '127.0.40.0/24, 127.0.41.1',
      '--methods',
      'get,head',
    );
    assert.equal(add.code, 0, add.stderr);
    assert.match(
      add.stdout,
      /^segment web: allow rule "ops" added; policy version 2 \(hash [0-9a-f]{16}\)$/m,
    );
    assert.equal((await httpRequest({ port: lb.port('web'), localAddress: '127.0.41.1' })).status, 200);
    assert.equal(
      (await httpRequest({ port: lb.port('web'), localAddress: '127.0.41.1', method: 'POST' })).status,
      403,
    );
    const bad = await spawnCtl([
      '--token-file',
      tokenFile,
      'rule',
      'add',
      'web',
      'deny',
      'oops',
      '--from',
      '127.0.50.1/16,offfice',
    ]);
    assert.equal(bad.code, 1);
    assert.equal(bad.stdout, '');
    assert.match(
      bad.stderr,
      /^seglb ctl: SEGLB_ADMIN_INVALID_CHANGE \(HTTP 422\): the change would make the configuration invalid \(2 problems/,
    );
    assert.match(
      bad.stderr,
      /^ {2}\S+seglb\.yaml:\d+:\d+ segments\.web\.deny\[0\]\.from\[0\]: 127\.0\.50\.1\/16 has host bits set; did you mean 127\.0\.0\.0\/16\?$/m,
    );
    assert.match(bad.stderr, /did you mean "office"\?$/m);
    assert.equal(lb.runtime.snapshot.version, 2, 'nothing applied');
    const rm = await admin('rule', 'remove', 'web', 'allow', 'ops');
    assert.equal(rm.code, 0, rm.stderr);
    const again = await admin('rule', 'remove', 'web', 'allow', 'ops');
    assert.equal(again.code, 1);
    assert.match(again.stderr, /SEGLB_ADMIN_NOT_FOUND \(HTTP 404\)/);
  });

  it('quarantine add (with --ttl and --reason), list and remove', async () => {
    const add = await admin('quarantine', 'add', '127.0.0.6', '--ttl', '30m', '--reason', 'port scan');
    assert.equal(add.code, 0, add.stderr);
    assert.match(
      add.stdout,
      /^quarantined 127\.0\.0\.6\/32 until \S+ \(port scan\); 0 open connections closed\n$/,
    );
    const list = await admin('quarantine', 'list');
    assert.match(list.stdout, /^CIDR\s+EXPIRES\s+REASON$/m);
    assert.match(list.stdout, /^127\.0\.0\.6\/32\s+\S+Z \(in (29m \d+s|30m)\)\s+port scan$/m);
    const entry = lb.runtime.quarantine.list()[0];
    assert.ok(entry && Math.abs(entry.expiresAt - Date.now() - 30 * 60_000) < 10_000, '--ttl 30m');
    assert.equal((await httpRequest({ port: lb.port('web'), localAddress: '127.0.0.6' })).status, 0);
    const rm = await admin('quarantine', 'remove', '127.0.0.6');
    assert.equal(rm.code, 0, rm.stderr);
    assert.equal((await admin('quarantine', 'list')).stdout, 'no quarantine entries\n');
    const bad = await admin('quarantine', 'add', '127.0.0.6', '--ttl', 'soon');
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--ttl takes a duration like 90s, 30m, 1h or 7d, got "soon"/);
  });

  it('segment mode, ipset add/remove/list and backend state', async () => {
    const mode = await admin('segment', 'mode', 'web', 'audit');
    assert.equal(mode.code, 0, mode.stderr);
    assert.match(mode.stdout, /^segment web: mode audit; policy version \d+/);
    assert.equal((await admin('segment', 'mode', 'web', 'enforce')).code, 0);
    const add = await admin('ipset', 'add', 'office', '127.0.60.0/24', '127.0.61.1');
    assert.equal(add.code, 0, add.stderr);
    assert.equal((await httpRequest({ port: lb.port('web'), localAddress: '127.0.61.1' })).status, 200);
    const list = await admin('ipset', 'list');
    assert.match(list.stdout, /^office\s+3\s+127\.0\.0\.0\/29,127\.0\.60\.0\/24,127\.0\.61\.1\s+-\s+-$/m);
    assert.equal((await admin('ipset', 'remove', 'office', '127.0.61.1')).code, 0);
    const conflict = await admin('ipset', 'remove', 'office', '127.0.61.1');
    assert.equal(conflict.code, 1);
    assert.match(conflict.stderr, /SEGLB_ADMIN_CONFLICT \(HTTP 409\)/);
    const drain = await admin('backend', 'state', 'web', 'be', 'drain');
    assert.equal(drain.code, 0, drain.stderr);
    assert.equal(drain.stdout, 'pool web backend be: drain\n');
    assert.equal((await httpRequest({ port: lb.port('web'), localAddress: '127.0.0.2' })).status, 503);
    assert.equal((await admin('backend', 'state', 'web', 'be', 'ready')).code, 0);
    assert.equal((await admin('backend', 'state', 'web', 'be', 'off')).code, 2);
  });

  it('diff, audit, lint, simulate and reload', async () => {
    const diff = await admin('diff');
    assert.equal(diff.code, 0, diff.stderr);
    assert.match(diff.stdout, /^runtime changes on top of it: \d+ \(kept in \S+seglb\.state\.json\)$/m);
    // 127.0.61.1 was added and removed again: the compacted log keeps only the net change.
    assert.match(diff.stdout, /^ {2}\d+\. add 127\.0\.60\.0\/24 to IP set office$/m);
    assert.match(diff.stdout, /^drift \(no longer applies to the file, not in force\): none$/m);
    const audit = await admin('audit', '--limit', '2');
    assert.equal(audit.code, 0);
    const lines = audit.stdout.trimEnd().split('\n');
    assert.equal(lines.length, 2);
    assert.match(
      lines[1] ?? '',
      /^\S+Z {2}token:admin1 {2}backend_state {2}v\d+ {2}\{"pool":"web","backend":"be","state":"ready"\}$/,
    );
    const lint = await admin('lint');
    assert.equal(lint.stdout, 'lint: no findings\n');
    const opsFile = join(dir, 'ops.json');
    writeFileSync(
      opsFile,
      JSON.stringify([{ op: 'remove_rule', segment: 'web', kind: 'allow', name: 'office' }]),
    );
    const sim = await admin('simulate', '--ops', opsFile, '--window', '15m');
    assert.equal(sim.code, 0, sim.stderr);
    assert.match(sim.stdout, /^replaying the sources seen in the last 15m:$/m);
    assert.match(sim.stdout, /^ {4}newly denied: 127\.0\.0\.2 \(\d+\) = \d+ connections$/m);
    assert.match(sim.stdout, /^lint of the candidate: no findings$/m);
    const reload = await admin('reload');
    assert.equal(reload.code, 0, reload.stderr);
    assert.match(reload.stdout, /^reloaded: policy version \d+ \(hash [0-9a-f]{16}\)\n$/);
  });

  it('exits 1 on a role too low, an unreachable API, and shows the error as JSON with --json', async () => {
    const weak = await ctl([
      '--token-file',
      readTokenFile,
      'rule',
      'add',
      'web',
      'allow',
      'x',
      '--from',
      '127.0.70.1',
    ]);
    assert.equal(weak.code, 1);
    assert.match(
      weak.stderr,
      /^seglb ctl: SEGLB_ADMIN_FORBIDDEN \(HTTP 403\): this call needs the admin role; token read1 has read$/m,
    );
    const json = await ctl(['--json', '--token-file', readTokenFile, 'segment', 'mode', 'web', 'audit']);
    assert.equal(json.code, 1);
    assert.equal(JSON.parse(json.stdout).error.code, 'SEGLB_ADMIN_FORBIDDEN');
    const bad = await ctl(['status'], { SEGLB_TOKEN: 'wrong-token-wrong-token' });
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /SEGLB_ADMIN_UNAUTHORIZED \(HTTP 401\)/);
    const port = await closedPort();
    const down = await ctl(['--admin', `http://127.0.0.1:${port}`, 'status'], {
      SEGLB_TOKEN: lb.tokens.read,
    });
    assert.equal(down.code, 1);
    assert.match(down.stderr, /cannot reach the admin API at http:\/\/127\.0\.0\.1:\d+: ECONNREFUSED/);
  });

  it('exits 2 on usage errors, and never takes a token on the command line', async () => {
    const cases: [string[], RegExp][] = [
      [['status', '--token', 'abc'], /--token is not accepted \(it would show in ps\)/],
      [['status', `--token=${lb.tokens.admin}`], /--token is not accepted/],
      [['frob'], /unknown command "frob"/],
      [['quarantine'], /quarantine needs one of: list, add, remove/],
      [['rule', 'add', 'web', 'allow'], /rule add takes SEGMENT allow\|deny NAME/],
      [['rule', 'add', 'web', 'allow', 'x'], /rule add needs --from/],
      [['status', '--limit', '3'], /--limit is not an option of status/],
      [['audit', '--limit', 'lots'], /--limit is a whole number/],
      [['explain', '--from', '127.0.0.1'], /explain needs --segment NAME/],
      [['simulate', '--ops', join(dir, 'missing.json')], /--ops \S+missing\.json: ENOENT/],
      [['ipset', 'add', 'office'], /ipset add takes NAME CIDR\.\.\./],
      [['--admin', 'ftp://x', 'status'], /--admin must be an http:\/\/ or https:\/\/ URL/],
    ];
    const spawned = await Promise.all(
      [['status', '--token', 'abc'], ['frob']].map((args) => spawnCtl(['--token-file', tokenFile, ...args])),
    );
    assert.deepEqual(
      spawned.map((r) => r.code),
      [2, 2],
    );
    assert.match(spawned[0]?.stderr ?? '', /^seglb ctl: --token is not accepted/);
    assert.match(spawned[1]?.stderr ?? '', /Run "seglb ctl --help" for the usage\.$/m);
    for (const [args, message] of cases) {
      const r = await ctl(['--token-file', tokenFile, ...args]);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, message, args.join(' '));
      assert.ok(!r.stderr.includes(lb.tokens.admin), 'the token is never echoed');
    }
    const none = await ctl(['status']);
    assert.equal(none.code, 2);
    assert.match(none.stderr, /no token: pass --token-file FILE or set SEGLB_TOKEN/);
    // The server's tokens file (NAME ROLE TOKEN) is not a client token file.
    const serverFile = await ctl(['--token-file', join(lb.file, '../tokens.txt'), 'status']);
    assert.equal(serverFile.code, 2);
    assert.match(serverFile.stderr, /expected the token alone on its line/);
    const help = await spawnCtl(['--help']);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /^seglb ctl - the admin API from the command line/);
  });

  it('talks HTTPS to an admin API with admin.tls, trusting its certificate with --ca', async () => {
    const tlsDir = tempDir('seglb-ctl-tls-');
    const { cert, key } = makeCert(tlsDir, 'admin', ['localhost']);
    const secure = await startSeglbAdmin(
      `
segments:
  s:
    vips: [{ listen: "127.0.0.1:0" }]
    pool: p
    backend_subnets: [127.0.0.0/8]
    allow: [{ name: a, from: [127.0.0.1] }]
pools:
  p:
    backends: [{ address: "${backend.address}" }]
`,
      tlsDir,
      `admin:\n  listen: "127.0.0.1:0"\n  tokens_file: tokens.txt\n  tls: { cert_file: ${cert}, key_file: ${key} }\n`,
    );
    try {
      const port = (secure.admin.server.address() as AddressInfo).port;
      const url = `https://localhost:${port}`;
      const ok = await ctl(['--admin', url, '--ca', cert, 'lint'], { SEGLB_TOKEN: secure.tokens.read });
      assert.equal(ok.code, 0, ok.stderr);
      assert.equal(ok.stdout, 'lint: no findings\n');
      const untrusted = await ctl(['--admin', url, 'lint'], { SEGLB_TOKEN: secure.tokens.read });
      assert.equal(untrusted.code, 1);
      assert.match(untrusted.stderr, /cannot reach the admin API at https:\/\/localhost:\d+: \w*SELF_SIGNED/);
    } finally {
      await secure.stop();
    }
  });

  it('warns when the token file is readable by others', async () => {
    const loose = join(dir, 'loose.token');
    writeFileSync(loose, `${lb.tokens.read}\n`);
    chmodSync(loose, 0o644);
    const r = await ctl(['--token-file', loose, 'lint']);
    assert.equal(r.code, 0);
    assert.match(r.stderr, /warning: \S+loose\.token is readable by other users; chmod 600 it/);
  });
});
