// The `cluster:` config section: schema defaults equal the library's, the checks a schema cannot
// make (authentication required, key file, certificates against node_id and the CA, timing order),
// the shipped 3-node example loads, and a validated section maps to ClusterNode options.

import assert from 'node:assert/strict';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import {
  CLUSTER_DEFAULTS,
  type ClusterConfigProblem,
  checkClusterConfig,
  clusterNodeOptions,
} from '../../src/cluster/index.ts';
import { type ClusterConfig, loadConfigFile, SCHEMA_URL } from '../../src/config/index.ts';
import type { ConfigError } from '../../src/errors.ts';
import { tempDir, writeConfig } from '../support/seglb.ts';
import { makeClusterCerts, writeKeyFile } from './support.ts';

const ROOT = new URL('../../', import.meta.url).pathname;
const schema = JSON.parse(readFileSync(SCHEMA_URL, 'utf8')) as {
  properties: { cluster: { properties: Record<string, { default?: unknown }> } };
};
const camel = (k: string) => k.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());

function section(extra: Partial<ClusterConfig> = {}): ClusterConfig {
  return {
    listen: '127.0.0.1:9901',
    peers: [],
    heartbeat_ms: 500,
    suspect_ms: 1500,
    dead_ms: 5000,
    anti_entropy_ms: 2000,
    max_frame_bytes: 1_048_576,
    max_queue_bytes: 67_108_864,
    max_entries: 1_000_000,
    tombstone_ms: 86_400_000,
    max_clock_skew_ms: 60_000,
    max_connections: 256,
    ...extra,
  };
}
const messages = (ps: ClusterConfigProblem[]) => ps.map((p) => `${p.path.join('.')}: ${p.message}`);

describe('cluster config', () => {
  test('the schema defaults are the library defaults', () => {
    const props = schema.properties.cluster.properties;
    for (const [key, value] of Object.entries(CLUSTER_DEFAULTS)) {
      const snake = Object.keys(props).find((k) => camel(k) === key);
      assert.ok(snake, `${key} has no schema key`);
      assert.equal(props[snake]?.default, value, snake);
    }
    assert.deepEqual(
      Object.keys(section())
        .filter((k) => !['listen', 'peers'].includes(k))
        .map(camel)
        .sort(),
      Object.keys(CLUSTER_DEFAULTS).sort(),
    );
  });

  test('authentication is required, by key file or TLS, not both', () => {
    const dir = tempDir();
    writeKeyFile(dir);
    assert.deepEqual(messages(checkClusterConfig(section(), dir)), [
      'cluster: the cluster channel must be authenticated: set key_file (create it with `openssl rand -hex 32`) or tls',
    ]);
    assert.deepEqual(messages(checkClusterConfig(section({ key_file: 'cluster.key' }), dir)), []);
    const both = checkClusterConfig(
      section({
        key_file: 'cluster.key',
        tls: { cert_file: 'a', key_file: 'b', ca_file: 'c' },
        node_id: 'n1',
      }),
      dir,
    );
    assert.equal(both[0]?.message, 'give key_file or tls, not both');
    assert.equal(both[0]?.code, 'SEGLB_CLUSTER_KEY');
  });

  test('the key file must exist and hold at least 32 bytes of hex', () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'short.key'), 'abcd\n');
    writeFileSync(join(dir, 'text.key'), 'correct horse battery staple correct horse battery staple!!\n');
    const check = (f: string) => messages(checkClusterConfig(section({ key_file: f }), dir));
    assert.match(
      check('missing.key')[0] ?? '',
      /cluster.key_file: cannot read the cluster key file .*missing.key: ENOENT/,
    );
    assert.match(check('short.key')[0] ?? '', /must be 32 to 512 bytes .* got 2 bytes/);
    assert.match(check('text.key')[0] ?? '', /hex digits only/);
  });

  test('a key file or certificate that is not a regular file (/dev/zero, a directory) is refused, not read', () => {
    const dir = tempDir();
    assert.deepEqual(messages(checkClusterConfig(section({ key_file: '/dev/zero' }), dir)), [
      'cluster.key_file: cannot read the cluster key file /dev/zero: not a regular file',
    ]);
    const tls = checkClusterConfig(
      section({ tls: { cert_file: '/dev/zero', key_file: dir, ca_file: '/dev/zero' }, node_id: 'n1' }),
      dir,
    );
    for (const m of messages(tls)) assert.match(m, /not a regular file/);
    assert.equal(messages(tls).length, 3);
  });

  test('certificates must load, match their key, be signed by the CA and carry node_id as CN', () => {
    const dir = tempDir();
    const good = makeClusterCerts(dir, ['n1', 'n2']);
    const other = makeClusterCerts(dir, ['n1'], 'other');
    const tls = (cert: string, key: string, ca: string) => ({ cert_file: cert, key_file: key, ca_file: ca });
    const n1 = good.nodes['n1'] as { cert: string; key: string };
    const n2 = good.nodes['n2'] as { cert: string; key: string };
    assert.deepEqual(
      checkClusterConfig(section({ node_id: 'n1', tls: tls(n1.cert, n1.key, good.ca) }), dir),
      [],
    );
    assert.deepEqual(
      messages(checkClusterConfig(section({ node_id: 'n2', tls: tls(n1.cert, n1.key, good.ca) }), dir)),
      [
        `cluster.tls.cert_file: the certificate's CN is "n1" but the node id is "n2": peers check that they match`,
      ],
    );
    assert.deepEqual(
      messages(checkClusterConfig(section({ node_id: 'n1', tls: tls(n1.cert, n2.key, good.ca) }), dir)),
      ['cluster.tls.key_file: the private key does not match cert_file'],
    );
    assert.deepEqual(
      messages(
        checkClusterConfig(
          section({
            node_id: 'n1',
            tls: tls(other.nodes['n1']?.cert as string, other.nodes['n1']?.key as string, good.ca),
          }),
          dir,
        ),
      ),
      ['cluster.tls.cert_file: the certificate is not signed by ca_file'],
    );
    const missing = checkClusterConfig(
      section({ node_id: 'n1', tls: tls('nope.crt', n1.key, good.ca) }),
      dir,
    );
    assert.match(missing[0]?.message ?? '', /cannot read nope.crt: ENOENT/);
  });

  test('heartbeat_ms < suspect_ms < dead_ms, and a queue that holds a frame', () => {
    const dir = tempDir();
    writeKeyFile(dir);
    const ps = checkClusterConfig(
      section({
        key_file: 'cluster.key',
        heartbeat_ms: 2000,
        suspect_ms: 1500,
        dead_ms: 1000,
        max_queue_bytes: 65_536,
      }),
      dir,
    );
    assert.deepEqual(messages(ps), [
      'cluster.suspect_ms: suspect_ms (1500) must be larger than heartbeat_ms (2000)',
      'cluster.dead_ms: dead_ms (1000) must be larger than suspect_ms (1500)',
      'cluster.max_queue_bytes: max_queue_bytes (65536) must be at least max_frame_bytes (1048576)',
    ]);
  });

  test('in a config file: positioned issues; a VIP on the cluster address is refused', () => {
    const dir = tempDir();
    const file = writeConfig(
      `segments:
  s:
    vips: [{ listen: "127.0.0.1:9901" }]
    pool: p
    backend_subnets: [127.0.0.0/8]
    allow: [{ from: [127.0.0.0/8] }]
pools:
  p: { backends: [{ address: "127.0.0.1:9101" }] }
cluster:
  node_id: a
  peers: [127.0.0.2:9901]
  key_file: nope.key
  dead_ms: 100
`,
      dir,
    );
    assert.throws(
      () => loadConfigFile(file),
      (err: ConfigError) => {
        const lines = err.issues.map((i) => `${i.line}:${i.col} ${i.keyPath}: ${i.message}`);
        assert.equal(lines.length, 3, lines.join('\n'));
        assert.match(
          lines[0] as string,
          /^10:3 cluster\.listen: the cluster sync listener 127\.0\.0\.1:9901 collides with VIP/,
        );
        assert.match(
          lines[1] as string,
          /^12:13 cluster\.key_file: cannot read the cluster key file .*nope\.key: ENOENT$/,
        );
        assert.equal(lines[2], '13:12 cluster.dead_ms: dead_ms (100) must be larger than suspect_ms (1500)');
        assert.equal(err.issues[1]?.code, 'SEGLB_CLUSTER_KEY');
        return true;
      },
    );
  });

  test('the shipped 3-node example loads (with its key in place) and maps to ClusterNode options', () => {
    const dir = tempDir();
    const key = writeKeyFile(dir);
    const nodes = [1, 2, 3].map((n) => {
      const name = `cluster-node${n}.yaml`;
      copyFileSync(join(ROOT, 'conf/examples', name), join(dir, name));
      return loadConfigFile(join(dir, name));
    });
    const opts = nodes.map((l) => clusterNodeOptions(l.config.cluster as ClusterConfig, { configDir: dir }));
    assert.deepEqual(
      opts.map((o) => [o.nodeId, o.listen, o.keyFile]),
      [
        ['node1', '127.0.0.1:9901', key],
        ['node2', '127.0.0.2:9901', key],
        ['node3', '127.0.0.3:9901', key],
      ],
    );
    assert.deepEqual(opts[0]?.peers, ['127.0.0.1:9901', '127.0.0.2:9901', '127.0.0.3:9901']);
    assert.equal(opts[0]?.antiEntropyMs, CLUSTER_DEFAULTS.antiEntropyMs);
  });
});
