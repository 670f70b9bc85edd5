// Config loading from real files in temp folders: every problem reported at once as
// `file:line:col key.path: message` (positions checked against the YAML written here), the semantic
// checks (addresses, CIDRs, listeners, pools, subnets, L7, IP sets, TLS), defaults and freezing.

import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { type LoadedConfig, loadConfigFile, loadConfigText, SCHEMA_URL } from '../../src/config/index.ts';
import { ConfigError, type ConfigIssue, type ErrorCode } from '../../src/errors.ts';
import { makeCert } from '../support/certs.ts';
import { tempDir, writeConfig } from '../support/seglb.ts';

/**
 * Strips the first newline and the common indentation, so a test's YAML can be indented with the
 * code while its line 1 is the first line after the backtick.
 */
function yaml(strings: TemplateStringsArray, ...values: unknown[]): string {
  // Dedent the literal text only: interpolated blocks (like POOL) keep their own indentation.
  const HOLE = '\u0000';
  const raw = strings.raw.join(HOLE).replace(/^\n/, '');
  const indents = raw
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => /^ */.exec(l)?.[0].length ?? 0);
  const cut = Math.min(...indents);
  const parts = raw
    .split('\n')
    .map((l) => l.slice(cut))
    .join('\n')
    .split(HOLE);
  return parts.reduce((out, part, i) => out + String(values[i - 1]) + part);
}

/** Loads `text` as a config file and returns the ConfigError it must be rejected with. */
function rejected(text: string, dir = tempDir()): { file: string; err: ConfigError } {
  const file = writeConfig(text, dir);
  try {
    loadConfigFile(file);
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    return { file, err };
  }
  assert.fail(`config was accepted:\n${text}`);
}

/** The error's lines with the file path replaced by F (the message is one line per issue). */
function lines(file: string, err: ConfigError): string[] {
  return err.message.split('\n').map((l) => (l.startsWith(file) ? `F${l.slice(file.length)}` : l));
}

/** The one issue at `keyPath` (fails when there is none or more than one). */
function issueAt(err: ConfigError, keyPath: string): ConfigIssue {
  const found = err.issues.filter((i) => i.keyPath === keyPath);
  assert.equal(found.length, 1, `expected one issue at ${keyPath}, got:\n${err.message}`);
  return found[0] as ConfigIssue;
}

function assertIssue(
  err: ConfigError,
  keyPath: string,
  expected: { line: number; col: number; message?: RegExp | string; code?: ErrorCode },
): void {
  const i = issueAt(err, keyPath);
  assert.deepEqual(
    { line: i.line, col: i.col },
    { line: expected.line, col: expected.col },
    `${keyPath}: ${i.message}`,
  );
  if (typeof expected.message === 'string') assert.equal(i.message, expected.message);
  else if (expected.message) assert.match(i.message, expected.message);
  if (expected.code) assert.equal(i.code, expected.code);
}

/** A valid config around one segment body (lines 1-2 are `segments:` / `  web:`). */
function oneSegment(body: string, tail = ''): string {
  return `segments:\n  web:\n${body}${tail}`;
}

const POOL = 'pools:\n  p:\n    backends: [{ address: 127.0.0.1:9000 }]\n';

describe('config: every problem is reported at once, positioned', () => {
  it('reports schema and semantic problems together with exact file:line:col key.path: message', () => {
    const { file, err } = rejected(yaml`
      log:
        levle: debug
      timeouts:
        client_header_ms: fast
      ipsets:
        office:
          cidrs: [10.1.2.3/8]
      segments:
        web:
          vips:
            - listen: 127.0.0.1:8080
            - listen: 127.0.0.1:8080
          pool: web
          backend_subnets: [10.0.0.0/8]
          allow:
            - from: [ofice]
      pools:
        web:
          backends:
            - address: 10.0.0.1:80
    `);
    assert.equal(err.code, 'SEGLB_CONFIG_INVALID');
    assert.deepEqual(lines(file, err), [
      'F:2:3 log.levle: unknown key "levle"; did you mean "level"?',
      'F:4:21 timeouts.client_header_ms: must be an integer, got string "fast"',
      'F:7:13 ipsets.office.cidrs[0]: 10.1.2.3/8 has host bits set; did you mean 10.0.0.0/8?',
      'F:12:17 segments.web.vips[1].listen: VIP of segment web 127.0.0.1:8080 collides with VIP of segment web 127.0.0.1:8080 (segments.web.vips[0].listen, line 11)',
      'F:16:16 segments.web.allow[0].from[0]: IP set "ofice" does not exist; did you mean "office"?',
    ]);
    assert.equal(err.issues.length, 5);
    // The first issue's position is also on the error itself.
    assert.deepEqual([err.file, err.line, err.col, err.keyPath], [file, 2, 3, 'log.levle']);
  });

  it('keeps checking the valid parts when some entries fail the schema, without cascades', () => {
    const { file, err } = rejected(yaml`
      ipsets:
        broken: { cidrs: 10.0.0.0/8 }
      segments:
        web:
          vips: [{ listen: 127.0.0.1:8080 }]
          pool: p
          backend_subnets: [127.0.0.0/8]
          allow: [{ from: [broken, 10.0.0.1/8] }]
      pools:
        p:
          backends: [{ address: 127.0.0.1:9000, weight: 0 }]
    `);
    // The broken set and pool are reported once each; the rule's bad CIDR is still found, and
    // references to the broken set and pool are not reported as missing.
    assert.deepEqual(lines(file, err), [
      'F:2:20 ipsets.broken.cidrs: must be an array, got string "10.0.0.0/8"',
      'F:8:30 segments.web.allow[0].from[1]: 10.0.0.1/8 has host bits set; did you mean 10.0.0.0/8?',
      'F:11:51 pools.p.backends[0].weight: must be >= 1 (got 0)',
    ]);
  });

  it('blanks only the failing VIP, rule or backend: its siblings are still checked', () => {
    const { file, err } = rejected(yaml`
      segments:
        web:
          vips:
            - { listen: 127.0.0.1:8080, protocol: htp }
            - { listen: 127.0.0.1:8081 }
            - { listen: 127.0.0.1:8081 }
          pool: p
          backend_subnets: [127.0.0.0/8]
          allow:
            - { from: [any], methods: [get] }
            - { from: [10.0.0.1/8] }
          trusted_proxies: [127.0.0.1]
      pools:
        p:
          backends:
            - { address: 127.0.0.1:9000, weight: 1000 }
            - { address: 10.0.0.1:80 }
    `);
    assert.deepEqual(lines(file, err), [
      'F:4:45 segments.web.vips[0].protocol: must be one of http, https, tcp (got "htp")',
      'F:6:19 segments.web.vips[2].listen: VIP of segment web 127.0.0.1:8081 collides with VIP of segment web 127.0.0.1:8081 (segments.web.vips[1].listen, line 5)',
      'F:10:34 segments.web.allow[0].methods[0]: "get" must match pattern "^[A-Z]{1,20}$"',
      'F:11:18 segments.web.allow[1].from[0]: 10.0.0.1/8 has host bits set; did you mean 10.0.0.0/8?',
      'F:16:44 pools.p.backends[0].weight: must be <= 256 (got 1000)',
      'F:17:20 pools.p.backends[1].address: backend 10.0.0.1:80 is outside backend_subnets of segment web (127.0.0.0/8)',
    ]);
  });

  it('reports a missing required key at the map that lacks it', () => {
    const { file, err } = rejected(yaml`
      segments:
        web:
          vips: [{ listen: 127.0.0.1:8080 }]
          backend_subnets: [127.0.0.0/8]
      ${POOL}
    `);
    assert.deepEqual(lines(file, err), ['F:3:5 segments.web: missing required key "pool"']);
  });

  it('reports an empty file as missing segments and pools at 1:1', () => {
    const { file, err } = rejected('');
    assert.deepEqual(lines(file, err), [
      'F:1:1 missing required key "segments"',
      'F:1:1 missing required key "pools"',
    ]);
  });
});

describe('config: unknown keys', () => {
  it('names the closest known key ("did you mean")', () => {
    const { file, err } = rejected(yaml`
      segment: {}
      segments:
        web:
          vips:
            - listen: 127.0.0.1:8080
              protcol: tcp
          pool: p
          backend_subnet: [127.0.0.0/8]
      ${POOL}
    `);
    assert.deepEqual(lines(file, err), [
      'F:1:1 segment: unknown key "segment"; did you mean "segments"?',
      'F:4:5 segments.web: missing required key "backend_subnets"',
      'F:6:9 segments.web.vips[0].protcol: unknown key "protcol"; did you mean "protocol"?',
      'F:8:5 segments.web.backend_subnet: unknown key "backend_subnet"; did you mean "backend_subnets"?',
    ]);
  });

  it('lists the known keys when nothing is close', () => {
    const { err } = rejected(
      `log:\n  verbosity: 3\n${oneSegment('    vips: [{listen: 127.0.0.1:1}]\n    pool: p\n    backend_subnets: [127.0.0.0/8]\n', POOL)}`,
    );
    assertIssue(err, 'log.verbosity', {
      line: 2,
      col: 3,
      message: 'unknown key "verbosity"; known keys: level, format, deny_log_per_second',
    });
  });

  it('rejects a map key that is not a valid name', () => {
    const { err } = rejected(yaml`
      ipsets:
        "9lives": { cidrs: [10.0.0.0/8] }
      segments:
        web:
          vips: [{ listen: 127.0.0.1:8080 }]
          pool: p
          backend_subnets: [127.0.0.0/8]
      ${POOL}
    `);
    assert.equal(err.issues.length, 1, err.message);
    assertIssue(err, 'ipsets["9lives"]', { line: 2, col: 3, message: /invalid name "9lives"/ });
  });
});

describe('config: wrong types and values', () => {
  it('names the expected type and what was found, at the value', () => {
    const { file, err } = rejected(yaml`
      limits:
        max_connections: "100"
      segments:
        web:
          mode: enforcing
          vips: { listen: 127.0.0.1:8080 }
          pool: p
          backend_subnets: 127.0.0.0/8
          forwarded_headers: { x_forwarded_for: "yes" }
      pools:
        p:
          retries: 9
          backends: [{ address: 127.0.0.1:9000 }]
    `);
    assert.deepEqual(lines(file, err), [
      'F:2:20 limits.max_connections: must be an integer, got string "100"',
      'F:5:11 segments.web.mode: must be one of enforce, audit (got "enforcing")',
      'F:6:11 segments.web.vips: must be an array, got a map',
      'F:8:22 segments.web.backend_subnets: must be an array, got string "127.0.0.0/8"',
      'F:9:43 segments.web.forwarded_headers.x_forwarded_for: must be a boolean, got string "yes"',
      'F:12:14 pools.p.retries: must be <= 5 (got 9)',
    ]);
  });

  it('names a number too large for a double (1e400 reads as Infinity) instead of calling it null', () => {
    const { file, err } = rejected(yaml`
      limits:
        max_connections: 1e400
        backend_connections: -1e400
      segments:
        web:
          vips: [{ listen: 127.0.0.1:8080 }]
          pool: p
          backend_subnets: [127.0.0.0/8]
      pools:
        p:
          backends: [{ address: 127.0.0.1:9000 }]
    `);
    assert.deepEqual(lines(file, err), [
      'F:2:20 limits.max_connections: must be an integer, got number Infinity (out of range)',
      'F:3:24 limits.backend_connections: must be an integer, got number -Infinity (out of range)',
    ]);
  });

  it('checks patterns of L7 values', () => {
    const { err } = rejected(yaml`
      segments:
        web:
          vips: [{ listen: 127.0.0.1:8080 }]
          pool: p
          backend_subnets: [127.0.0.0/8]
          allow:
            - from: [any]
              methods: [get]
              paths: [api/*, /a*b]
      ${POOL}
    `);
    assertIssue(err, 'segments.web.allow[0].methods[0]', {
      line: 8,
      col: 19,
      message: /"get" must match pattern/,
    });
    assertIssue(err, 'segments.web.allow[0].paths[0]', {
      line: 9,
      col: 17,
      message: /"api\/\*" must match pattern/,
    });
    // Only reported once the schema passes for the segment (it does not here): no /a*b issue yet.
    assert.equal(err.issues.length, 2, err.message);
  });
});

describe('config: addresses and CIDRs', () => {
  it('rejects malformed listen and backend endpoints with SEGLB_NET_INVALID_ENDPOINT', () => {
    const { err } = rejected(yaml`
      segments:
        web:
          vips:
            - listen: 127.0.0.1
            - listen: "::1:8080"
            - listen: 127.0.0.1:70000
            - listen: localhost:8080
            - listen: 127.0.0.01:8080
          pool: p
          backend_subnets: [127.0.0.0/8]
      pools:
        p:
          backends: [{ address: "[::1]8080" }, { address: 999.1.1.1:80 }]
      admin: { listen: "127.0.0.1:70000", tokens_file: tokens.txt }
    `);
    const at = (i: number) => issueAt(err, `segments.web.vips[${i}].listen`);
    assert.equal(at(0).message, '"127.0.0.1" is not a valid endpoint: expected HOST:PORT');
    assert.match(at(1).message, /must be written in brackets, e\.g\. \[::1\]:80/);
    assert.match(at(2).message, /port must be a number 1-65535/);
    assert.equal(at(3).message, 'a VIP must listen on an IP address, not a hostname');
    assert.match(at(4).message, /127\.0\.0\.01 is not an IPv4 address/);
    assert.deepEqual([at(0).line, at(0).col], [4, 17]);
    assert.deepEqual([at(4).line, at(4).col], [8, 17]);
    for (const i of [0, 1, 2, 4]) assert.equal(at(i).code, 'SEGLB_NET_INVALID_ENDPOINT');
    assertIssue(err, 'pools.p.backends[0].address', { line: 13, col: 27, message: /not a valid endpoint/ });
    assertIssue(err, 'pools.p.backends[1].address', {
      line: 13,
      col: 53,
      message: /999\.1\.1\.1 is not an IPv4 address/,
      code: 'SEGLB_NET_INVALID_ENDPOINT',
    });
    assertIssue(err, 'admin.listen', { line: 14, col: 18, message: /port must be a number 1-65535/ });
  });

  it('rejects malformed CIDRs in ipsets, rules, trusted proxies and backend_subnets', () => {
    const { file, err } = rejected(yaml`
      ipsets:
        a: { cidrs: [10.0.0.0/33, 10.0.0.0/08, "2001:db8::/129", 10.0.0] }
      segments:
        web:
          vips: [{ listen: 127.0.0.1:8080 }]
          pool: p
          backend_subnets: [127.0.0.0/8, "127.0.0.0 /8"]
          trusted_proxies: [10.0.0.1/33]
          allow: [{ from: ["10.0.0.0/-1"] }]
      ${POOL}
    `);
    assert.deepEqual(
      err.issues.map((i) => `${i.line}:${i.col} ${i.keyPath} ${i.code}`),
      [
        '2:16 ipsets.a.cidrs[0] SEGLB_NET_INVALID_CIDR',
        '2:29 ipsets.a.cidrs[1] SEGLB_NET_INVALID_CIDR',
        '2:42 ipsets.a.cidrs[2] SEGLB_NET_INVALID_CIDR',
        '2:60 ipsets.a.cidrs[3] SEGLB_NET_INVALID_CIDR',
        '7:36 segments.web.backend_subnets[1] SEGLB_NET_INVALID_CIDR',
        '8:23 segments.web.trusted_proxies[0] SEGLB_NET_INVALID_CIDR',
        '9:22 segments.web.allow[0].from[0] SEGLB_NET_INVALID_CIDR',
      ],
      lines(file, err).join('\n'),
    );
    assert.match(issueAt(err, 'ipsets.a.cidrs[0]').message, /prefix length must be a decimal 0\.\.32/);
  });

  it('names the canonical form of a CIDR with host bits set (IPv4 and IPv6)', () => {
    const { file, err } = rejected(
      oneSegment(
        '    vips: [{ listen: 127.0.0.1:8080 }]\n    pool: p\n    backend_subnets: [127.0.0.1/8]\n' +
          '    allow: [{ from: [10.1.2.3/8, "2001:db8::1/32", 192.168.1.1/24] }]\n',
        POOL,
      ),
    );
    assert.deepEqual(lines(file, err), [
      'F:5:23 segments.web.backend_subnets[0]: 127.0.0.1/8 has host bits set; did you mean 127.0.0.0/8?',
      'F:6:22 segments.web.allow[0].from[0]: 10.1.2.3/8 has host bits set; did you mean 10.0.0.0/8?',
      'F:6:34 segments.web.allow[0].from[1]: 2001:db8::1/32 has host bits set; did you mean 2001:db8::/32?',
      'F:6:52 segments.web.allow[0].from[2]: 192.168.1.1/24 has host bits set; did you mean 192.168.1.0/24?',
    ]);
    for (const i of err.issues) assert.equal(i.code, 'SEGLB_NET_NONCANONICAL_CIDR');
  });
});

describe('config: listener collisions', () => {
  /** A config with one VIP per listen address, each in its own segment, plus optional extra YAML. */
  function vips(listens: readonly (string | { listen: string; ipv6_only: boolean })[], extra = ''): string {
    const segs = listens
      .map((l, i) => {
        const vip =
          typeof l === 'string'
            ? `{ listen: "${l}" }`
            : `{ listen: "${l.listen}", ipv6_only: ${l.ipv6_only} }`;
        return `  s${i}:\n    vips: [${vip}]\n    pool: p\n    backend_subnets: [127.0.0.0/8]\n`;
      })
      .join('');
    return `segments:\n${segs}${POOL}${extra}`;
  }

  it('rejects the same address:port on two VIPs (across segments)', () => {
    const { err } = rejected(vips(['127.0.0.1:8080', '127.0.0.1:8080']));
    assertIssue(err, 'segments.s1.vips[0].listen', {
      line: 7,
      col: 22,
      message:
        'VIP of segment s1 127.0.0.1:8080 collides with VIP of segment s0 127.0.0.1:8080 (segments.s0.vips[0].listen, line 3)',
      code: 'SEGLB_LISTENER_BIND',
    });
  });

  it('rejects a VIP on the admin or cluster listener address', () => {
    const { file, err } = rejected(
      vips(
        ['127.0.0.1:9900', '127.0.0.1:9901'],
        'admin: { tokens_file: tokens.txt }\ncluster: { listen: "127.0.0.1:9901", key_file: cluster.key }\n',
      ),
    );
    // admin.listen takes its default (127.0.0.1:9900): positioned at the admin map that omits it.
    assert.deepEqual(lines(file, err), [
      'F:13:8 admin.listen: the admin listener 127.0.0.1:9900 collides with VIP of segment s0 127.0.0.1:9900 (segments.s0.vips[0].listen, line 3)',
      'F:14:20 cluster.listen: the cluster sync listener 127.0.0.1:9901 collides with VIP of segment s1 127.0.0.1:9901 (segments.s1.vips[0].listen, line 7)',
    ]);
  });

  it('rejects 0.0.0.0:P together with 127.0.0.1:P, in either order', () => {
    for (const order of [
      ['0.0.0.0:8080', '127.0.0.1:8080'],
      ['127.0.0.1:8080', '0.0.0.0:8080'],
    ]) {
      const { err } = rejected(vips(order));
      assert.equal(err.issues.length, 1, err.message);
      assert.match(err.issues[0]?.message ?? '', /collides with VIP of segment s0/);
    }
    // Different ports, or the IPv4 wildcard against an IPv6 address: no collision.
    loadConfigFile(writeConfig(vips(['0.0.0.0:8080', '127.0.0.1:8081', '[::1]:8080'])));
  });

  it('treats [::]:P as dual-stack (collides with 0.0.0.0:P) unless ipv6_only', () => {
    const { err } = rejected(vips(['[::]:8080', '0.0.0.0:8080']));
    assert.match(err.issues[0]?.message ?? '', /0\.0\.0\.0:8080 collides with VIP of segment s0 \[::\]:8080/);
    assert.equal(rejected(vips(['127.0.0.1:8080', '[::]:8080'])).err.issues.length, 1);
    assert.equal(rejected(vips(['[::1]:8080', '[::]:8080'])).err.issues.length, 1);
    // Another spelling of the same address is the same bind.
    assert.equal(rejected(vips(['[0::0]:8080', '0.0.0.0:8080'])).err.issues.length, 1);
    assert.equal(rejected(vips(['[::ffff:127.0.0.1]:8080', '127.0.0.1:8080'])).err.issues.length, 1);
    // An IPv6-only wildcard leaves the IPv4 port free.
    loadConfigFile(writeConfig(vips([{ listen: '[::]:8080', ipv6_only: true }, '0.0.0.0:8080'])));
  });

  it('never reports port 0 (ephemeral) listeners', () => {
    loadConfigFile(writeConfig(vips(['127.0.0.1:0', '127.0.0.1:0', '0.0.0.0:0'])));
  });
});

describe('config: pools and backend subnets', () => {
  it('rejects a segment whose pool does not exist, suggesting a close name', () => {
    const { err } = rejected(
      oneSegment(
        '    vips: [{ listen: 127.0.0.1:8080 }]\n    pool: pp\n    backend_subnets: [127.0.0.0/8]\n',
        POOL,
      ),
    );
    assertIssue(err, 'segments.web.pool', {
      line: 4,
      col: 11,
      message: 'pool "pp" does not exist; did you mean "p"?',
    });
    const far = rejected(
      oneSegment(
        '    vips: [{ listen: 127.0.0.1:8080 }]\n    pool: other\n    backend_subnets: [127.0.0.0/8]\n',
        POOL,
      ),
    ).err;
    assertIssue(far, 'segments.web.pool', {
      line: 4,
      col: 11,
      message: 'pool "other" does not exist (pools: p)',
    });
  });

  it('rejects a static backend outside the segment backend_subnets; hostnames wait for dial time', () => {
    const { file, err } = rejected(yaml`
      segments:
        web:
          vips: [{ listen: 127.0.0.1:8080 }]
          pool: p
          backend_subnets: [10.0.0.0/8, "2001:db8::/32"]
      pools:
        p:
          backends:
            - address: 10.1.1.1:80
            - address: 192.168.0.1:80
            - address: "[2001:db8::5]:80"
            - address: "[2001:db9::5]:80"
            - address: backend.internal:80
    `);
    assert.deepEqual(lines(file, err), [
      'F:10:18 pools.p.backends[1].address: backend 192.168.0.1:80 is outside backend_subnets of segment web (10.0.0.0/8, 2001:db8::/32)',
      'F:12:18 pools.p.backends[3].address: backend [2001:db9::5]:80 is outside backend_subnets of segment web (10.0.0.0/8, 2001:db8::/32)',
    ]);
  });
});

describe('config: L7 keys', () => {
  it('rejects L7 conditions on a segment with a tcp VIP, naming them all', () => {
    const { file, err } = rejected(yaml`
      segments:
        db:
          vips: [{ listen: 127.0.0.1:5432, protocol: tcp }]
          pool: p
          backend_subnets: [127.0.0.0/8]
          trusted_proxies: [10.0.0.0/8]
          allow:
            - from: [10.0.0.0/8]
            - from: [any]
              paths: [/x]
              methods: [GET]
      ${POOL}
    `);
    assert.deepEqual(lines(file, err), [
      'F:6:5 segments.db.trusted_proxies: trusted_proxies (X-Forwarded-For) applies to HTTP VIPs only; use proxy_protocol on a tcp VIP',
      'F:11:9 segments.db.allow[1].methods: L7 conditions (methods, paths) need HTTP VIPs, but segment db has a tcp VIP',
    ]);
  });

  it('accepts L7 conditions on HTTP segments but checks path and host wildcards', () => {
    const { err } = rejected(yaml`
      segments:
        web:
          vips: [{ listen: 127.0.0.1:8080 }]
          pool: p
          backend_subnets: [127.0.0.0/8]
          allow:
            - from: [any]
              methods: [GET]
              paths: [/api/*, /a*b]
              hosts: [api.example.com, "*.example.com", "a.*.com"]
              headers: { x-env: prod }
      ${POOL}
    `);
    assert.equal(err.issues.length, 2, err.message);
    assertIssue(err, 'segments.web.allow[0].paths[1]', { line: 9, col: 25, message: /only a trailing \*/ });
    assertIssue(err, 'segments.web.allow[0].hosts[2]', {
      line: 10,
      col: 51,
      message: /one leading wildcard label/,
    });
  });

  it('refuses rule hosts with a port or spaces, bad header names and paths with spaces (rules that could never match)', () => {
    const { err } = rejected(yaml`
      segments:
        web:
          vips: [{ listen: 127.0.0.1:8080 }]
          pool: p
          backend_subnets: [127.0.0.0/8]
          deny:
            - from: [any]
              hosts: ["admin.example.com:443", "exa mple.com", "a..b", "[2001:db8::1]", 192.0.2.1]
              headers: { "bad header": "x", x-ok: "y" }
              paths: ["/a b", /fine]
      ${POOL}
    `);
    assert.equal(err.issues.length, 5, err.message);
    assertIssue(err, 'segments.web.deny[0].hosts[0]', {
      line: 8,
      col: 17,
      message: /not a host name \(no port/,
    });
    assertIssue(err, 'segments.web.deny[0].hosts[1]', { line: 8, col: 42, message: /not a host name/ });
    assertIssue(err, 'segments.web.deny[0].hosts[2]', { line: 8, col: 58, message: /not a host name/ });
    assertIssue(err, 'segments.web.deny[0].headers["bad header"]', {
      line: 9,
      col: 20,
      message: /not a valid header name/,
    });
    assertIssue(err, 'segments.web.deny[0].paths[0]', {
      line: 10,
      col: 17,
      message: /cannot contain spaces/,
    });
  });

  it('rejects two rules with the same name in one list', () => {
    const { err } = rejected(
      oneSegment(
        '    vips: [{ listen: 127.0.0.1:8080 }]\n    pool: p\n    backend_subnets: [127.0.0.0/8]\n' +
          '    allow:\n      - { name: r, from: [any] }\n      - { name: r, from: [any] }\n',
        POOL,
      ),
    );
    assertIssue(err, 'segments.web.allow[1].name', {
      line: 8,
      col: 17,
      message: 'rule name "r" is already used by allow[0]',
    });
  });
});

describe('config: IP-set files', () => {
  it('positions errors in the IP-set file itself (its own file:line:col)', () => {
    const dir = tempDir();
    const list = join(dir, 'blocked.txt');
    writeFileSync(
      list,
      '# blocked networks\n10.0.0.0/8\n  10.1.0.0/8   # typo\n\nnot-an-ip\n192.0.2.1 junk\r\n2001:db8::/32\n',
    );
    const { file, err } = rejected(
      yaml`
        ipsets:
          blocked: { file: blocked.txt }
        segments:
          web:
            vips: [{ listen: 127.0.0.1:8080 }]
            pool: p
            backend_subnets: [127.0.0.0/8]
            deny: [{ from: [blocked] }]
        ${POOL}
      `,
      dir,
    );
    assert.deepEqual(
      err.issues.map((i) => [
        i.file === list ? 'LIST' : i.file === file ? 'F' : i.file,
        i.line,
        i.col,
        i.keyPath,
        i.code,
      ]),
      [
        ['LIST', 3, 3, 'ipsets.blocked.file', 'SEGLB_NET_NONCANONICAL_CIDR'],
        ['LIST', 5, 1, 'ipsets.blocked.file', 'SEGLB_NET_INVALID_CIDR'],
        ['LIST', 6, 11, 'ipsets.blocked.file', 'SEGLB_NET_INVALID_CIDR'],
      ],
    );
    assert.equal(
      err.message.split('\n')[0],
      `${list}:3:3 ipsets.blocked.file: 10.1.0.0/8 has host bits set; did you mean 10.0.0.0/8?`,
    );
  });

  it("lists the config file's issues first, then each IP-set file's", () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'a.txt'), 'bad-a\n');
    writeFileSync(join(dir, 'z.txt'), 'bad-z\n');
    const { file, err } = rejected(
      yaml`
        ipsets:
          z: { file: z.txt }
          a: { file: a.txt }
          c: { cidrs: [10.0.0.1/8] }
        segments:
          web:
            vips: [{ listen: 127.0.0.1:8080 }]
            pool: p
            backend_subnets: [127.0.0.0/8]
        ${POOL}
      `,
      dir,
    );
    assert.deepEqual(
      err.issues.map((i) => `${i.file === file ? 'F' : i.file.slice(dir.length + 1)}:${i.line}:${i.col}`),
      ['F:4:16', 'a.txt:1:1', 'z.txt:1:1'],
    );
  });

  it('reports an unreadable IP-set file at the file key, and caps the per-file error list', () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'many.txt'), 'x\n'.repeat(25));
    const { err } = rejected(
      yaml`
        ipsets:
          gone: { file: missing.txt }
          many: { file: many.txt }
        segments:
          web:
            vips: [{ listen: 127.0.0.1:8080 }]
            pool: p
            backend_subnets: [127.0.0.0/8]
        ${POOL}
      `,
      dir,
    );
    const gone = err.issues.filter((i) => i.keyPath === 'ipsets.gone.file');
    assert.equal(gone.length, 1);
    assert.deepEqual([gone[0]?.line, gone[0]?.col, gone[0]?.code], [2, 17, 'SEGLB_CONFIG_READ']);
    assert.match(gone[0]?.message ?? '', /cannot read .*missing\.txt: ENOENT/);
    const many = err.issues.filter((i) => i.keyPath === 'ipsets.many.file');
    assert.equal(many.length, 21, 'at most 20 positioned lines, then one summary');
    assert.ok(many.some((i) => /^5 more invalid lines in .*many\.txt$/.test(i.message)));
  });

  it('loads a valid file relative to the config folder, with unions expanded', () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'office.txt'), '10.0.0.0/8 # hq\n\n2001:db8::/32\n');
    const file = writeConfig(
      yaml`
        ipsets:
          office: { file: office.txt }
          vpn: { cidrs: [192.0.2.0/24] }
          staff: { union: [office, vpn], cidrs: [198.51.100.7] }
        segments:
          web:
            vips: [{ listen: 127.0.0.1:8080 }]
            pool: p
            backend_subnets: [127.0.0.0/8]
            allow: [{ from: [staff] }]
        ${POOL}
      `,
      dir,
    );
    const loaded = loadConfigFile(file);
    assert.equal(loaded.config.ipsets['office']?.file, join(dir, 'office.txt'));
    assert.deepEqual(
      loaded.ipsets.get('staff')?.map((c) => c.text),
      ['198.51.100.7/32', '10.0.0.0/8', '2001:db8::/32', '192.0.2.0/24'],
    );
  });
});

describe('config: IP-set unions and names', () => {
  it('reports union cycles with the chain, and unknown set names with a hint', () => {
    const { file, err } = rejected(yaml`
      ipsets:
        a: { union: [b] }
        b: { union: [a, officee] }
        self: { union: [self] }
        office: { cidrs: [10.0.0.0/8] }
      segments:
        web:
          vips: [{ listen: 127.0.0.1:8080 }]
          pool: p
          backend_subnets: [127.0.0.0/8]
          allow: [{ from: [a, nobody] }]
      ${POOL}
    `);
    assert.deepEqual(lines(file, err), [
      'F:3:16 ipsets.b.union[0]: IP-set union cycle: a -> b -> a',
      'F:3:19 ipsets.b.union[1]: IP set "officee" does not exist; did you mean "office"?',
      'F:4:19 ipsets.self.union[0]: IP-set union cycle: self -> self',
      'F:11:25 segments.web.allow[0].from[1]: IP set "nobody" does not exist',
    ]);
    assert.deepEqual(
      err.issues.map((i) => i.code),
      [
        'SEGLB_POLICY_IPSET_CYCLE',
        'SEGLB_POLICY_UNKNOWN_IPSET',
        'SEGLB_POLICY_IPSET_CYCLE',
        'SEGLB_POLICY_UNKNOWN_IPSET',
      ],
    );
  });

  it('reserves the name "any" and checks IP-set names in trusted_proxies and proxy_protocol', () => {
    const { file, err } = rejected(yaml`
      ipsets:
        any: { cidrs: [10.0.0.0/8] }
      segments:
        web:
          vips: [{ listen: 127.0.0.1:8080, proxy_protocol: { trusted: [lbs] } }]
          pool: p
          backend_subnets: [127.0.0.0/8]
          trusted_proxies: [proxies]
      ${POOL}
    `);
    assert.deepEqual(lines(file, err), [
      'F:2:3 ipsets.any: "any" is reserved (a source meaning every address); rename the set',
      'F:5:66 segments.web.vips[0].proxy_protocol.trusted[0]: IP set "lbs" does not exist',
      'F:8:23 segments.web.trusted_proxies[0]: IP set "proxies" does not exist',
    ]);
  });
});

describe('config: HTTPS and TLS secrets', () => {
  const dir = tempDir();
  const pair = makeCert(dir, 'web', ['web.example.com']);
  const other = makeCert(dir, 'other', ['other.example.com']);

  function https(certificates: string): string {
    return yaml`
      segments:
        web:
          vips:
            - listen: 127.0.0.1:8443
              protocol: https
              tls:
                certificates:
      ${certificates}
          pool: p
          backend_subnets: [127.0.0.0/8]
      ${POOL}
    `;
  }

  it('requires a tls section for https and refuses one for http or tcp', () => {
    const { file, err } = rejected(
      yaml`
      segments:
        web:
          vips:
            - listen: 127.0.0.1:8443
              protocol: https
            - listen: 127.0.0.1:8080
              tls: { certificates: [{ cert_file: web.crt, key_file: web.key }] }
          pool: p
          backend_subnets: [127.0.0.0/8]
      ${POOL}
    `,
      dir,
    );
    assert.deepEqual(lines(file, err), [
      'F:4:9 segments.web.vips[0]: protocol https needs a tls section',
      'F:7:9 segments.web.vips[1].tls: tls is only for protocol https, not http',
    ]);
  });

  it('needs exactly one of key_file and key_env', () => {
    const { file, err } = rejected(
      https(
        '          - { cert_file: web.crt }\n' +
          '          - { cert_file: web.crt, key_file: web.key, key_env: SEGLB_TEST_KEY }\n',
      ),
      dir,
    );
    assert.deepEqual(lines(file, err), [
      'F:8:13 segments.web.vips[0].tls.certificates[0]: the private key is missing: give exactly one of key_file or key_env (private keys are never inline)',
      'F:9:13 segments.web.vips[0].tls.certificates[1]: both key_file and key_env are given: give exactly one of key_file or key_env (private keys are never inline)',
    ]);
  });

  it('reports a missing environment variable and unreadable files, at their keys', () => {
    delete process.env['SEGLB_TEST_UNSET_KEY'];
    const { file, err } = rejected(
      https(
        '          - { cert_file: web.crt, key_env: SEGLB_TEST_UNSET_KEY }\n' +
          '          - { cert_file: nope.crt, key_file: web.key }\n' +
          '          - { cert_file: web.crt, key_file: nope.key }\n',
      ),
      dir,
    );
    assert.deepEqual(lines(file, err), [
      'F:8:44 segments.web.vips[0].tls.certificates[0].key_env: environment variable SEGLB_TEST_UNSET_KEY is not set',
      `F:9:26 segments.web.vips[0].tls.certificates[1].cert_file: cannot read ${join(dir, 'nope.crt')}: ENOENT`,
      `F:10:45 segments.web.vips[0].tls.certificates[2].key_file: cannot read ${join(dir, 'nope.key')}: ENOENT`,
    ]);
  });

  it('never puts key material in the error text', () => {
    const secret = 'TOPSECRET-c2VjcmV0LWtleS1tYXRlcmlhbA';
    process.env['SEGLB_TEST_BAD_KEY'] = `-----BEGIN PRIVATE KEY-----\n${secret}\n-----END PRIVATE KEY-----\n`;
    // A real key that does not belong to the certificate: its text must not leak either.
    process.env['SEGLB_TEST_OTHER_KEY'] = readFileSync(other.key, 'utf8');
    try {
      const { err } = rejected(
        https(
          '          - { cert_file: web.crt, key_env: SEGLB_TEST_BAD_KEY }\n' +
            '          - { cert_file: web.crt, key_env: SEGLB_TEST_OTHER_KEY }\n',
        ),
        dir,
      );
      assert.equal(err.issues.length, 2, err.message);
      assert.match(
        issueAt(err, 'segments.web.vips[0].tls.certificates[0]').message,
        /^certificate and key from environment variable SEGLB_TEST_BAD_KEY do not load: /,
      );
      const otherKeyBody = readFileSync(other.key, 'utf8').split('\n')[1] ?? '';
      const everything = `${err.message}\n${String(err.stack)}\n${JSON.stringify(err.issues)}`;
      assert.ok(!everything.includes(secret), 'the secret leaked into the error');
      assert.ok(otherKeyBody.length > 20 && !everything.includes(otherKeyBody), 'key material leaked');
    } finally {
      delete process.env['SEGLB_TEST_BAD_KEY'];
      delete process.env['SEGLB_TEST_OTHER_KEY'];
    }
  });

  it('loads key_file and key_env certificates into the resolved TLS material', () => {
    process.env['SEGLB_TEST_GOOD_KEY'] = readFileSync(pair.key, 'utf8');
    try {
      const loaded = loadConfigFile(
        writeConfig(
          https(
            '          - { cert_file: web.crt, key_file: web.key }\n' +
              '          - { cert_file: web.crt, key_env: SEGLB_TEST_GOOD_KEY, servernames: [web.example.com] }\n',
          ),
          dir,
        ),
      );
      const material = loaded.tls.get('web#0');
      assert.equal(material?.length, 2);
      assert.equal(material?.[1]?.key, process.env['SEGLB_TEST_GOOD_KEY']);
      assert.deepEqual(material?.[1]?.servernames, ['web.example.com']);
      // Paths are resolved against the config folder; the config never holds the key itself.
      const cert = loaded.config.segments['web']?.vips[0]?.tls?.certificates[0];
      assert.equal(cert?.cert_file, join(dir, 'web.crt'));
      assert.ok(!JSON.stringify(loaded.config).includes('PRIVATE KEY'));
    } finally {
      delete process.env['SEGLB_TEST_GOOD_KEY'];
    }
  });
});

describe('config: malformed YAML', () => {
  it('positions a syntax error (SEGLB_CONFIG_YAML)', () => {
    const { file, err } = rejected('segments:\n  web: [a, b\npools:\n  p: 1\n');
    assert.equal(err.code, 'SEGLB_CONFIG_YAML');
    assert.equal(err.issues.length >= 1, true);
    assert.match(lines(file, err)[0] ?? '', /^F:3:1 YAML: /);
  });

  it('rejects tabs used as indentation', () => {
    const { file, err } = rejected('segments:\n\tweb: {}\n');
    assert.deepEqual(lines(file, err), ['F:2:1 YAML: Tabs are not allowed as indentation']);
  });

  it('rejects duplicate keys, naming the key and pointing at the second one', () => {
    const { file, err } = rejected(yaml`
      segments:
        web:
          vips: [{ listen: 127.0.0.1:8080 }]
          pool: p
          backend_subnets: [127.0.0.0/8]
          pool: q
      ${POOL}
    `);
    assert.equal(err.code, 'SEGLB_CONFIG_YAML');
    assert.deepEqual(lines(file, err), [
      'F:6:5 YAML: duplicate key "pool" (each key may appear once per map)',
    ]);
  });

  it('rejects an alias without an anchor, and alias bombs, as YAML errors', () => {
    const unresolved = rejected('segments: *nothing\npools: {}\n');
    assert.equal(unresolved.err.code, 'SEGLB_CONFIG_YAML');
    assert.deepEqual(lines(unresolved.file, unresolved.err), [
      'F:1:11 YAML: alias *nothing has no anchor &nothing before it',
    ]);
    const bomb = rejected(
      'a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n' +
        'c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n',
    );
    assert.equal(bomb.err.code, 'SEGLB_CONFIG_YAML');
    assert.match(bomb.err.message, /too many alias expansions/);
  });

  it('rejects a file with two YAML documents', () => {
    const { file, err } = rejected(`${oneSegment('    vips: []\n')}---\n${POOL}`);
    assert.equal(err.code, 'SEGLB_CONFIG_YAML');
    assert.match(lines(file, err)[0] ?? '', /^F:4:1 YAML: the file holds more than one YAML document/);
  });

  it('accepts anchors, aliases and merge keys', () => {
    const loaded = loadConfigFile(
      writeConfig(yaml`
        segments:
          a:
            vips: [{ listen: 127.0.0.1:8080 }]
            pool: p
            backend_subnets: &nets [127.0.0.0/8]
            allow: &rules [{ from: [127.0.0.1] }]
          b:
            <<: { pool: p, backend_subnets: *nets }
            vips: [{ listen: 127.0.0.1:8081 }]
            allow: *rules
        ${POOL}
      `),
    );
    assert.deepEqual(loaded.config.segments['b']?.backend_subnets, ['127.0.0.0/8']);
    assert.equal(loaded.config.segments['b']?.pool, 'p');
  });

  it('reports an unreadable config file as SEGLB_CONFIG_READ', () => {
    const missing = join(tempDir(), 'nope.yaml');
    assert.throws(
      () => loadConfigFile(missing),
      (err: unknown) =>
        err instanceof ConfigError &&
        err.code === 'SEGLB_CONFIG_READ' &&
        err.message === `${missing}: cannot read config file: no such file (ENOENT)`,
    );
  });
});

/** Schema defaults, gathered from schema/seglb.schema.json (the one place defaults live). */
function schemaDefaults(): {
  schema: Record<string, unknown>;
  defaultsOf: (node: unknown) => Record<string, unknown>;
} {
  const schema = JSON.parse(readFileSync(SCHEMA_URL, 'utf8')) as Record<string, unknown>;
  const definitions = schema['definitions'] as Record<string, unknown>;
  const deref = (node: unknown): Record<string, unknown> => {
    const n = node as Record<string, unknown>;
    const ref = n['$ref'];
    return typeof ref === 'string'
      ? (definitions[ref.replace('#/definitions/', '')] as Record<string, unknown>)
      : n;
  };
  const defaultsOf = (node: unknown) => {
    const out: Record<string, unknown> = {};
    const props = (deref(node)['properties'] ?? {}) as Record<string, Record<string, unknown>>;
    for (const [k, v] of Object.entries(props)) if ('default' in v) out[k] = v['default'];
    return out;
  };
  return { schema, defaultsOf };
}

describe('config: defaults and immutability', () => {
  const minimal = yaml`
    segments:
      web:
        vips: [{ listen: 127.0.0.1:8080 }]
        pool: p
        backend_subnets: [127.0.0.0/8]
    pools:
      p:
        backends: [{ address: 127.0.0.1:9000 }]
    admin: { tokens_file: tokens.txt }
    cluster: { key_file: cluster.key }
  `;

  it('applies every schema default (and only those) to an omitted key', () => {
    const { schema, defaultsOf } = schemaDefaults();
    const c = loadConfigFile(writeConfig(minimal)).config;
    const props = schema['properties'] as Record<string, unknown>;
    const defs = schema['definitions'] as Record<string, unknown>;
    const pick = (obj: object, keys: string[]) =>
      Object.fromEntries(keys.map((k) => [k, (obj as Record<string, unknown>)[k]]));
    const check = (actual: object, node: unknown, where: string) => {
      const expected = defaultsOf(node);
      for (const [k, v] of Object.entries(expected)) {
        if (typeof v === 'object' && v !== null && !Array.isArray(v)) continue; // nested maps below
        assert.deepEqual(pick(actual, [k]), { [k]: v }, `${where}.${k}`);
      }
    };
    check(c.log, props['log'], 'log');
    check(c.timeouts, props['timeouts'], 'timeouts');
    check(c.limits, props['limits'], 'limits');
    check(c.admin as object, props['admin'], 'admin');
    check(c.cluster as object, props['cluster'], 'cluster');
    const seg = c.segments['web'] as object;
    check(seg, defs['segment'], 'segment');
    check(
      (seg as { forwarded_headers: object }).forwarded_headers,
      (defs['segment'] as { properties: Record<string, unknown> }).properties['forwarded_headers'],
      'forwarded_headers',
    );
    check(c.segments['web']?.vips[0] as object, defs['vip'], 'vip');
    check(c.pools['p'] as object, defs['pool'], 'pool');
    check(c.pools['p']?.backends[0] as object, defs['backend'], 'backend');
    assert.deepEqual(c.ipsets, {});
    // Keys without a default stay absent (no default invented in code).
    assert.equal('description' in seg, false);
    const backend = c.pools['p']?.backends[0];
    const vip = c.segments['web']?.vips[0];
    assert.ok(backend && vip);
    assert.equal('name' in backend, false);
    assert.equal('tls' in vip, false);
    // admin and cluster are off unless their section is present.
    const bare = loadConfigFile(
      writeConfig(
        minimal.replace('admin: { tokens_file: tokens.txt }\ncluster: { key_file: cluster.key }\n', ''),
      ),
    ).config;
    assert.equal(bare.admin, undefined);
    assert.equal(bare.cluster, undefined);
  });

  it('keeps values that are given, including falsy ones', () => {
    const c = loadConfigFile(
      writeConfig(
        minimal.replace(
          'admin: { tokens_file: tokens.txt }',
          'admin: { tokens_file: tokens.txt }\ntimeouts: { client_request_ms: 0 }\nlog: { deny_log_per_second: 0, level: warn }',
        ),
      ),
    ).config;
    assert.equal(c.timeouts.client_request_ms, 0);
    assert.equal(c.timeouts.client_header_ms, 10000);
    assert.equal(c.log.deny_log_per_second, 0);
    assert.equal(c.log.level, 'warn');
  });

  it('returns a deep-frozen config, and separate loads share nothing', () => {
    const file = writeConfig(minimal);
    const a = loadConfigFile(file).config;
    const b = loadConfigFile(file).config;
    const nodes: unknown[] = [a, a.log, a.timeouts, a.segments, a.segments['web'], a.segments['web']?.vips];
    nodes.push(a.segments['web']?.vips[0], a.segments['web']?.allow, a.pools['p']?.backends[0], a.ipsets);
    for (const n of nodes) assert.ok(Object.isFrozen(n), JSON.stringify(n));
    assert.throws(() => {
      (a.timeouts as { client_header_ms: number }).client_header_ms = 1;
    }, TypeError);
    assert.throws(() => {
      (a.segments['web']?.backend_subnets as string[] | undefined)?.push('10.0.0.0/8');
    }, TypeError);
    assert.notEqual(a, b);
    assert.notEqual(a.timeouts, b.timeouts);
    assert.notEqual(a.segments['web']?.allow, b.segments['web']?.allow);
  });
});

describe('config: valid configurations', () => {
  it('loads the shipped conf/seglb.yaml', () => {
    const loaded = loadConfigFile(new URL('../../conf/seglb.yaml', import.meta.url).pathname);
    assert.ok(Object.keys(loaded.config.segments).length > 0);
    assert.ok(Object.keys(loaded.config.pools).length > 0);
  });

  it('loads a full config and maps key paths back to positions', () => {
    const dir = tempDir();
    const text = yaml`
      log: { level: debug, format: pretty, deny_log_per_second: 5 }
      timeouts: { backend_connect_ms: 2000 }
      limits: { max_connections: 500 }
      ipsets:
        office: { cidrs: [10.0.0.0/8, "2001:db8::/32"] }
      segments:
        web:
          description: web front
          mode: audit
          vips:
            - listen: "[::]:8080"
            - listen: 127.0.0.1:8081
              proxy_protocol: { trusted: [office] }
          pool: web
          backend_subnets: [127.0.0.0/8]
          allow:
            - name: office
              from: [office, any]
            - from: [192.0.2.0/24]
              methods: [GET]
              paths: [/health]
          deny: [{ from: ["::ffff:10.9.9.9"] }]
          trusted_proxies: [127.0.0.1]
        db:
          vips: [{ listen: 127.0.0.1:5432, protocol: tcp }]
          pool: db
          backend_subnets: [127.0.0.0/8]
      pools:
        web:
          algorithm: least_connections
          backends:
            - { address: 127.0.0.1:9001, weight: 3, name: w1 }
            - { address: 127.0.0.1:9002, backup: true }
        db: { backends: [{ address: db.internal:5432 }] }
      admin: { listen: 127.0.0.1:9990, tokens_file: tokens.txt }
      cluster: { listen: 127.0.0.1:9991, peers: [10.0.0.2:9991], key_file: cluster.key }
    `;
    const loaded: LoadedConfig = loadConfigFile(writeConfig(text, dir));
    assert.equal(loaded.file, join(dir, 'seglb.yaml'));
    assert.equal(loaded.config.segments['web']?.mode, 'audit');
    assert.equal(loaded.config.pools['web']?.backends[0]?.weight, 3);
    assert.equal(loaded.config.timeouts.backend_connect_ms, 2000);
    assert.deepEqual(loaded.positionOf(['segments', 'web', 'allow', 1]), { line: 19, col: 9 });
    assert.deepEqual(loaded.positionOf(['segments', 'web', 'deny', 0]), { line: 22, col: 12 });
    assert.deepEqual(
      loaded.backendSubnets.get('web')?.map((c) => c.text),
      ['127.0.0.0/8'],
    );
    // loadConfigText gives the same result as reading the file.
    const again = loadConfigText(text, join(dir, 'seglb.yaml'));
    assert.deepEqual(again.config, loaded.config);
  });
});
