// Security defaults: the admin API refuses a non-loopback address without TLS unless explicitly
// allowed; secrets (TLS private keys from files and the environment, admin tokens, a wrong bearer
// token sent by a client) never reach the logs, the audit trail or the state file; secret files
// readable by group or others are warned about by `seglb run` and `seglb check`.

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { loadConfigText, secretFileWarnings } from '../../src/config/index.ts';
import { ConfigError } from '../../src/errors.ts';
import { makeCert } from '../support/certs.ts';
import { closedPort, startBackend } from '../support/net.ts';
import { tempDir } from '../support/seglb.ts';

const MAIN = new URL('../../src/cli/main.ts', import.meta.url).pathname;

const BASE = `
segments:
  web:
    vips: [{ listen: "127.0.0.1:0" }]
    pool: p
    backend_subnets: [127.0.0.0/8]
    allow: [{ from: [127.0.0.0/8] }]
pools:
  p:
    backends: [{ address: "127.0.0.1:1" }]
`;

function adminDir(): string {
  const dir = tempDir('seglb-sec-');
  writeFileSync(join(dir, 'tokens.txt'), `ops admin ${'s'.repeat(32)}\n`, { mode: 0o600 });
  return dir;
}

describe('admin listener on a non-loopback address', () => {
  const load = (dir: string, admin: string) =>
    loadConfigText(`${BASE}admin:\n${admin}`, join(dir, 'seglb.yaml'));

  test('refused without TLS, naming admin.listen with its position', () => {
    const dir = adminDir();
    for (const listen of [
      '0.0.0.0:9900',
      '"[::]:9900"',
      '10.0.5.1:9900',
      'admin.example.com:9900',
      '"[::ffff:10.0.0.1]:9900"',
    ]) {
      assert.throws(
        () => load(dir, `  listen: ${listen}\n  tokens_file: tokens.txt\n`),
        (err: unknown) =>
          err instanceof ConfigError &&
          err.issues.some(
            (i) =>
              i.keyPath === 'admin.listen' &&
              i.line > 0 &&
              i.col > 0 &&
              /allow_insecure_remote/.test(i.message),
          ),
        listen,
      );
    }
  });

  test('accepted on loopback, with TLS, or with admin.allow_insecure_remote: true', () => {
    const dir = adminDir();
    for (const listen of ['127.0.0.1:0', '127.9.9.9:0', '"[::1]:0"', 'localhost:0', '"[::ffff:127.0.0.1]:0"'])
      assert.ok(load(dir, `  listen: ${listen}\n  tokens_file: tokens.txt\n`));
    assert.ok(load(dir, '  listen: 0.0.0.0:0\n  tokens_file: tokens.txt\n  allow_insecure_remote: true\n'));
    makeCert(dir, 'admin', ['admin.example.com']);
    assert.ok(
      load(
        dir,
        '  listen: 0.0.0.0:0\n  tokens_file: tokens.txt\n  tls: { cert_file: admin.crt, key_file: admin.key }\n',
      ),
    );
  });

  test('`seglb run` refuses to start (exit 2) and says why', () => {
    const dir = adminDir();
    const file = join(dir, 'seglb.yaml');
    writeFileSync(file, `${BASE}admin:\n  listen: 0.0.0.0:0\n  tokens_file: tokens.txt\n`);
    const r = spawnSync(process.execPath, [MAIN, 'run', '-c', file], { encoding: 'utf8', timeout: 20_000 });
    assert.equal(r.status, 2);
    assert.match(
      r.stderr,
      /admin\.listen: the admin API would listen on non-loopback 0\.0\.0\.0:0 without TLS/,
    );
  });
});

describe('file permissions of secrets', () => {
  test('group/world-readable key and token files are reported, 0600 ones are not', () => {
    const dir = adminDir();
    const loose = makeCert(dir, 'loose', ['loose.example']);
    const tight = makeCert(dir, 'tight', ['tight.example']);
    chmodSync(loose.key, 0o644);
    chmodSync(tight.key, 0o600);
    chmodSync(join(dir, 'tokens.txt'), 0o640);
    const loaded = loadConfigText(
      `${BASE.replace(
        'vips: [{ listen: "127.0.0.1:0" }]',
        `vips:
      - { listen: "127.0.0.1:0", protocol: https, tls: { certificates: [{ cert_file: loose.crt, key_file: loose.key }, { cert_file: tight.crt, key_file: tight.key, servernames: [tight.example] }] } }`,
      )}admin:\n  tokens_file: tokens.txt\n`,
      join(dir, 'seglb.yaml'),
    );
    const warnings = secretFileWarnings(loaded.config, dir);
    assert.deepEqual(
      warnings.map((w) => [w.keyPath, w.mode]),
      [
        ['segments.web.vips[0].tls.certificates[0].key_file', '0644'],
        ['admin.tokens_file', '0640'],
      ],
    );
    assert.match(warnings[0]?.message ?? '', /chmod 600/);
    // `seglb check` prints them to stderr and still exits 0.
    const file = join(dir, 'seglb.yaml');
    writeFileSync(file, `${BASE}admin:\n  tokens_file: tokens.txt\n`);
    const r = spawnSync(process.execPath, [MAIN, 'check', '-c', file], { encoding: 'utf8', timeout: 20_000 });
    assert.equal(r.status, 0);
    assert.match(r.stderr, /warning: .*tokens\.txt \(admin\.tokens_file\) holds a secret but has mode 0640/);
  });
});

/** An HTTPS call that trusts the test's self-signed certificates. */
function httpsCall(
  port: number,
  path: string,
  opts: { method?: string; token?: string; body?: string; servername?: string } = {},
) {
  return new Promise<number>((resolve) => {
    const req = httpsRequest(
      {
        host: '127.0.0.1',
        port,
        path,
        method: opts.method ?? 'GET',
        rejectUnauthorized: false,
        servername: opts.servername,
        headers: {
          ...(opts.token ? { authorization: `Bearer ${opts.token}` } : {}),
          ...(opts.body ? { 'content-type': 'application/json' } : {}),
        },
        agent: false,
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('error', () => resolve(0));
    req.end(opts.body);
  });
}

describe('secrets never logged', () => {
  test('a run with TLS keys (file and env), admin TLS and tokens: no secret in logs, audit or state', {
    timeout: 60_000,
  }, async () => {
    const backend = await startBackend('b', '127.0.0.101');
    const dir = tempDir('seglb-secrets-');
    const www = makeCert(dir, 'www', ['www.example']);
    const api = makeCert(dir, 'api', ['api.example']);
    const admin = makeCert(dir, 'admin', ['admin.example']);
    chmodSync(www.key, 0o644); // also exercises the permission warning
    const apiKey = readFileSync(api.key, 'utf8');
    const tokens = { admin: `adm-${'A1b2C3d4'.repeat(4)}`, read: `rd-${'Z9y8X7w6'.repeat(4)}` };
    writeFileSync(join(dir, 'tokens.txt'), `ops admin ${tokens.admin}\nviewer read ${tokens.read}\n`, {
      mode: 0o600,
    });
    const wrongToken = `wrong-${'Q5r6S7t8'.repeat(4)}`;
    const [vipPort, adminPort] = [await closedPort(), await closedPort()];
    const file = join(dir, 'seglb.yaml');
    const config = (apiKeyFile: boolean) => `
log: { level: trace }
ipsets:
  office: { cidrs: [127.0.0.0/8] }
segments:
  web:
    vips:
      - listen: "127.0.0.1:${vipPort}"
        protocol: https
        tls:
          certificates:
            - { cert_file: www.crt, key_file: www.key }
            - { cert_file: api.crt, ${apiKeyFile ? 'key_file: broken.key' : 'key_env: SEGLB_TEST_API_KEY'}, servernames: [api.example] }
    pool: p
    backend_subnets: [127.0.0.0/8]
    allow: [{ name: office, from: [office] }]
pools:
  p:
    backends: [{ address: "${backend.address}" }]
admin:
  listen: "127.0.0.1:${adminPort}"
  tokens_file: tokens.txt
  tls: { cert_file: admin.crt, key_file: admin.key }
`;
    writeFileSync(file, config(false));
    const child = spawn(process.execPath, [MAIN, 'run', '-c', file, '--log-format', 'json'], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, SEGLB_TEST_API_KEY: apiKey },
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      out += d.toString();
    });
    const exited = once(child, 'exit');
    try {
      const deadline = Date.now() + 15_000;
      while (Date.now() < deadline && !out.includes('"admin API listening"'))
        await new Promise((r) => setTimeout(r, 50));
      assert.ok(out.includes('"admin API listening"'), out.slice(-2000));
      // Traffic through both certificates, admin calls with good, wrong and low-role tokens.
      assert.equal(await httpsCall(vipPort, '/'), 200);
      assert.equal(await httpsCall(vipPort, '/?token=not-logged-either', { servername: 'api.example' }), 200);
      assert.equal(await httpsCall(adminPort, '/status', { token: tokens.read }), 200);
      assert.equal(await httpsCall(adminPort, '/status', { token: wrongToken }), 401);
      assert.equal(await httpsCall(adminPort, '/reload', { method: 'POST', token: tokens.read }), 403);
      assert.equal(
        await httpsCall(adminPort, '/ipsets/office/entries', {
          method: 'POST',
          token: tokens.admin,
          body: '{"cidrs":["10.9.0.0/16"]}',
        }),
        200,
      );
      assert.equal(await httpsCall(adminPort, '/reload', { method: 'POST', token: tokens.admin }), 200);
      // A reload whose key does not load (a PEM whose body is garbage): reported by file name only.
      writeFileSync(
        join(dir, 'broken.key'),
        `-----BEGIN PRIVATE KEY-----\n${apiKey.split('\n')[2]}\n-----END PRIVATE KEY-----\n`,
      );
      writeFileSync(file, config(true));
      child.kill('SIGHUP');
      const until = Date.now() + 10_000;
      while (Date.now() < until && !out.includes('reload rejected'))
        await new Promise((r) => setTimeout(r, 50));
      assert.ok(out.includes('reload rejected'), 'the broken key was reported');
      assert.ok(out.includes('broken.key'), 'by its file name');
      assert.ok(/holds a secret but has mode 0644/.test(out), 'the 0644 key was warned about');
      child.kill('SIGTERM');
      await exited;

      const audit = readFileSync(join(dir, 'seglb.audit.jsonl'), 'utf8');
      const state = readFileSync(join(dir, 'seglb.state.json'), 'utf8');
      const secrets = [
        tokens.admin,
        tokens.read,
        wrongToken,
        'not-logged-either',
        'PRIVATE KEY',
        // A line from the middle of each private key's base64 body.
        ...[readFileSync(www.key, 'utf8'), apiKey, readFileSync(admin.key, 'utf8')].map(
          (k) => k.split('\n')[2] as string,
        ),
      ];
      for (const [where, text] of [
        ['logs', out],
        ['audit trail', audit],
        ['state file', state],
      ] as const) {
        for (const secret of secrets)
          assert.ok(!text.includes(secret), `${where} contain a secret (${secret.slice(0, 12)}...)`);
      }
      assert.ok(out.length > 2000, 'the run did log (trace level)');
    } finally {
      child.kill('SIGKILL');
      await backend.close();
    }
  });
});
