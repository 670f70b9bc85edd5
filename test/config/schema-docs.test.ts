// Keeps docs/config.md complete and true: every key of schema/seglb.schema.json has a row in the
// reference tables (`| \`key.path\` | type | default | meaning | example |`), with the schema's
// default (or "required"), every allowed value of an enum, and no row for a key the schema lacks.

import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { loadConfigFile, SCHEMA_URL } from '../../src/config/index.ts';
import { makeCert } from '../support/certs.ts';
import { tempDir, writeConfig } from '../support/seglb.ts';

type SchemaNode = {
  $ref?: string;
  type?: string;
  enum?: unknown[];
  default?: unknown;
  description?: string;
  required?: string[];
  properties?: Record<string, SchemaNode>;
  additionalProperties?: SchemaNode | boolean;
  items?: SchemaNode;
};

/** One documented key: its path as written in the docs and what the schema says about it. */
interface SchemaKey {
  readonly path: string;
  readonly node: SchemaNode;
  readonly required: boolean;
}

const schema = JSON.parse(readFileSync(SCHEMA_URL, 'utf8')) as SchemaNode & {
  definitions: Record<string, SchemaNode>;
};
const DOC = readFileSync(new URL('../../docs/config.md', import.meta.url), 'utf8');

/**
 * Every key path of the schema: `log.level`, `segments.NAME.vips[].listen` ... Map entries are
 * written NAME, list items []. A definition used in two places (a rule in allow and deny) has its
 * keys listed once, under the first place; the second place is documented as "same keys as".
 */
function schemaKeys(): SchemaKey[] {
  const out: SchemaKey[] = [];
  const walked = new Set<string>();
  const deref = (node: SchemaNode): SchemaNode => {
    if (!node.$ref) return node;
    const name = node.$ref.replace('#/definitions/', '');
    const def = schema.definitions[name];
    assert.ok(def, `unknown $ref ${node.$ref}`);
    return def;
  };
  const walk = (raw: SchemaNode, prefix: string) => {
    if (raw.$ref) {
      if (walked.has(raw.$ref)) return;
      walked.add(raw.$ref);
    }
    const node = deref(raw);
    for (const [key, child] of Object.entries(node.properties ?? {})) {
      const path = prefix ? `${prefix}.${key}` : key;
      out.push({ path, node: deref(child), required: node.required?.includes(key) ?? false });
      descend(child, path);
    }
    const extra = node.additionalProperties;
    if (typeof extra === 'object' && (deref(extra).properties || extra.$ref)) {
      const path = `${prefix}.NAME`;
      out.push({ path, node: deref(extra), required: false });
      walk(extra, path);
    }
  };
  const descend = (raw: SchemaNode, path: string) => {
    const node = deref(raw);
    if (node.items) {
      if (node.items.$ref || deref(node.items).properties) walk(node.items, `${path}[]`);
    } else {
      walk(raw, path);
    }
  };
  walk(schema, '');
  return out;
}

/** The rows of the tables under "## Key reference" in docs/config.md, by key path: the cells after the key. */
function docRows(): Map<string, string[]> {
  const rows = new Map<string, string[]>();
  const start = DOC.indexOf('\n## Key reference\n');
  assert.ok(start >= 0, 'docs/config.md has no "## Key reference" section');
  const end = DOC.indexOf('\n## ', start + 1);
  for (const line of DOC.slice(start, end < 0 ? undefined : end).split('\n')) {
    const m = /^\|\s*`([^`]+)`\s*\|(.*)\|\s*$/.exec(line);
    if (!m) continue;
    const cells = (m[2] as string).split(/(?<!\\)\|/).map((c) => c.trim());
    assert.ok(!rows.has(m[1] as string), `docs/config.md: two rows for ${m[1]}`);
    rows.set(m[1] as string, cells);
  }
  return rows;
}

/** How a default is written in the Default column. */
function formatDefault(value: unknown): string {
  return `\`${typeof value === 'string' ? value : JSON.stringify(value)}\``;
}

describe('docs/config.md covers schema/seglb.schema.json', () => {
  const keys = schemaKeys();
  const rows = docRows();

  it('finds the schema keys (walker sanity)', () => {
    const paths = keys.map((k) => k.path);
    for (const p of [
      'log.level',
      'segments.NAME.vips[].tls.certificates[].key_env',
      'pools.NAME.backends[].weight',
    ]) {
      assert.ok(paths.includes(p), p);
    }
    assert.ok(keys.length > 60, String(keys.length));
  });

  it('has a row for every key of the schema', () => {
    const missing = keys.filter((k) => !rows.has(k.path)).map((k) => k.path);
    assert.deepEqual(missing, [], 'keys without a row in docs/config.md');
  });

  it('has no row for a key the schema does not have', () => {
    const known = new Set(keys.map((k) => k.path));
    const stale = [...rows.keys()].filter((p) => !known.has(p));
    assert.deepEqual(stale, [], 'rows in docs/config.md for keys that are not in the schema');
  });

  it('shows each key with the schema default, or "required", and a meaning and an example', () => {
    for (const { path, node, required } of keys) {
      const cells = rows.get(path);
      if (!cells) continue; // reported above
      assert.equal(cells.length, 4, `${path}: expected | key | type | default | meaning | example |`);
      const [type, def, meaning, example] = cells as [string, string, string, string];
      assert.ok(type.length > 0, `${path}: no type`);
      if ('default' in node) assert.equal(def, formatDefault(node.default), `${path}: default`);
      else if (required) assert.equal(def, 'required', `${path}: is required`);
      else assert.equal(def, '—', `${path}: has no default (write —)`);
      assert.ok(meaning.length > 10, `${path}: no meaning`);
      assert.ok(example.length > 0, `${path}: no example`);
      for (const value of node.enum ?? []) {
        assert.ok(
          `${type} ${meaning}`.includes(`\`${String(value)}\``),
          `${path}: enum value ${String(value)}`,
        );
      }
    }
  });

  it('has a full example that loads (with its files in place)', () => {
    const start = DOC.indexOf('\n## A full example\n');
    const block = /```yaml\n([\s\S]*?)\n```/.exec(DOC.slice(start));
    assert.ok(start >= 0 && block, 'docs/config.md: no yaml block under "## A full example"');
    const dir = tempDir();
    mkdirSync(join(dir, 'certs'));
    mkdirSync(join(dir, 'ipsets'));
    writeFileSync(join(dir, 'ipsets/vpn.txt'), '# VPN pool\n10.30.0.0/16\n');
    writeFileSync(join(dir, 'admin-tokens.txt'), `ops admin ${'t'.repeat(32)}\n`, { mode: 0o600 });
    writeFileSync(join(dir, 'cluster.key'), `${'ab'.repeat(32)}\n`, { mode: 0o600 });
    makeCert(join(dir, 'certs'), 'www', ['www.example.com']);
    const api = makeCert(join(dir, 'certs'), 'api', ['api.example.com']);
    makeCert(join(dir, 'certs'), 'admin', ['admin.example.com']);
    process.env['SEGLB_API_KEY'] = readFileSync(api.key, 'utf8');
    try {
      const loaded = loadConfigFile(writeConfig(block[1] as string, dir));
      assert.deepEqual(Object.keys(loaded.config.segments), ['web', 'admin-ui', 'db']);
      assert.equal(loaded.tls.get('web#0')?.length, 2);
    } finally {
      delete process.env['SEGLB_API_KEY'];
    }
  });

  it('is the reference the schema and the demo config point to', () => {
    assert.match(String(schema.description), /docs\/config\.md/);
    const demo = readFileSync(new URL('../../conf/seglb.yaml', import.meta.url), 'utf8');
    assert.match(demo, /docs\/config\.md/);
  });
});
