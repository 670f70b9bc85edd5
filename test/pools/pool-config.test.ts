// Pool configuration checks beyond the schema: hash key names, a prime Maglev table, status ranges,
// duplicate backends, the sticky-cookie key (file or environment, long enough) and the backend CA.

import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { loadConfigText } from '../../src/config/index.ts';
import { ConfigError } from '../../src/errors.ts';
import { tempDir } from '../support/seglb.ts';

function load(pool: string, dir = tempDir()) {
  return loadConfigText(
    `segments:
  web:
    vips: [{ listen: "127.0.0.1:0" }]
    pool: p
    backend_subnets: [10.0.0.0/8]
    allow: [{ from: [any] }]
pools:
  p:
${pool}
`,
    join(dir, 'seglb.yaml'),
  );
}

/** The issues of a rejected pool, as `line:col key: message`. */
function issues(pool: string, dir?: string): string[] {
  try {
    load(pool, dir);
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    return err.issues.map((i) => `${i.line}:${i.col} ${i.keyPath}: ${i.message}`);
  }
  return [];
}

const BACKENDS = '    backends: [{ address: "10.0.0.1:80" }, { address: "10.0.0.2:80" }]';

describe('pool config checks', () => {
  it('applies the documented defaults', () => {
    const p = load(BACKENDS).config.pools['p']!;
    assert.equal(p.algorithm, 'round_robin');
    assert.deepEqual(p.hash, { key: 'source', table_size: 65537 });
    assert.deepEqual(p.retry_budget, { budget_percent: 20, min_retries_per_second: 10, window_ms: 10000 });
    assert.deepEqual(p.outlier_detection, {
      consecutive_connect_failures: 3,
      consecutive_5xx: 0,
      base_ejection_ms: 30000,
      max_ejection_ms: 300000,
      max_ejection_percent: 10,
    });
    assert.equal(p.queue_size, 100);
    assert.equal(p.queue_timeout_ms, 5000);
    assert.equal(p.panic_threshold_percent, 50);
    assert.equal(p.health_check, undefined);
    assert.equal(p.backends[0]?.max_connections, 0);
    const hc = load(`    health_check: { type: http }\n${BACKENDS}`).config.pools['p']?.health_check;
    assert.deepEqual(hc, {
      type: 'http',
      interval_ms: 2000,
      timeout_ms: 1000,
      rise: 2,
      fall: 3,
      jitter_percent: 10,
      cluster_view: 'local',
      http: { method: 'GET', path: '/', expect_status: ['200-399'] },
    });
  });

  it('needs a name for header and cookie keys, and refuses one for source and path', () => {
    assert.deepEqual(issues(`    algorithm: consistent_hash\n    hash: { key: header }\n${BACKENDS}`), [
      '10:11 pools.p.hash: hash key header needs a name (the header to hash)',
    ]);
    assert.deepEqual(
      issues(`    algorithm: consistent_hash\n    hash: { key: path, name: x }\n${BACKENDS}`),
      ['10:24 pools.p.hash.name: name is only for hash key header or cookie, not path'],
    );
  });

  it('wants a prime Maglev table and names the nearest primes', () => {
    assert.deepEqual(issues(`    algorithm: consistent_hash\n    hash: { table_size: 65536 }\n${BACKENDS}`), [
      '10:25 pools.p.hash.table_size: 65536 is not a prime (Maglev needs one); nearest primes: 65521, 65537',
    ]);
  });

  it('refuses empty status ranges and a backend listed twice', () => {
    assert.deepEqual(
      issues(`    health_check: { type: http, http: { expect_status: ["399-200"] } }
    backends: [{ address: "10.0.0.1:80" }, { address: "10.0.0.1:80", weight: 2 }]`),
      [
        '9:57 pools.p.health_check.http.expect_status[0]: range 399-200 is empty (399 > 200)',
        '10:55 pools.p.backends[1].address: backend 10.0.0.1:80 is listed twice (also backends[0]); give it one entry with a weight',
      ],
    );
  });

  it('reads the sticky-cookie key from a file or the environment, at least 16 bytes', () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'short.key'), 'too short\n');
    writeFileSync(join(dir, 'good.key'), 'sixteen bytes or more, trailing newline ignored\n');
    const ok = load(`    sticky: { cookie: { key_file: good.key } }\n${BACKENDS}`, dir);
    assert.equal(ok.pools.get('p')?.stickyKey?.toString(), 'sixteen bytes or more, trailing newline ignored');
    assert.deepEqual(issues(`    sticky: { cookie: { key_file: short.key } }\n${BACKENDS}`, dir), [
      '9:35 pools.p.sticky.cookie.key_file: the HMAC key has 9 bytes; at least 16 are needed',
    ]);
    assert.match(
      issues(`    sticky: { cookie: { key_file: missing.key } }\n${BACKENDS}`, dir)[0] ?? '',
      /cannot read .*missing\.key: ENOENT/,
    );
    assert.match(
      issues(`    sticky: { cookie: {} }\n${BACKENDS}`)[0] ?? '',
      /the HMAC key is missing: give exactly one of key_file or key_env/,
    );
    delete process.env['SEGLB_TEST_UNSET_KEY'];
    assert.match(
      issues(`    sticky: { cookie: { key_env: SEGLB_TEST_UNSET_KEY } }\n${BACKENDS}`)[0] ?? '',
      /SEGLB_TEST_UNSET_KEY is not set/,
    );
  });

  it('reads the backend CA bundle and refuses one that is not PEM', () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'bad.pem'), 'not a certificate');
    assert.match(
      issues(`    tls: { ca_file: bad.pem }\n${BACKENDS}`, dir)[0] ?? '',
      /pools\.p\.tls\.ca_file: .*bad\.pem is not a PEM CA bundle/,
    );
    assert.match(
      issues(`    tls: { ca_file: none.pem }\n${BACKENDS}`, dir)[0] ?? '',
      /cannot read .*none\.pem: ENOENT/,
    );
  });
});
