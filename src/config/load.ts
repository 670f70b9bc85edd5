// Loads a seglb YAML config: read, parse with positions, apply schema defaults and validate
// (schema/seglb.schema.json), then the semantic checks; every problem is reported at once.

import { readFileSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { Ajv, type ErrorObject } from 'ajv';
import { type Document, isAlias, isScalar, LineCounter, parseDocument, visit, type YAMLError } from 'yaml';
import { ConfigError, type ConfigIssue } from '../errors.ts';
import { PackedCidrMap } from '../net/packed-cidrs.ts';
import { didYouMean } from './did-you-mean.ts';
import { pruneSchemaInvalid } from './schema-prune.ts';
import type { SeglbConfig } from './types.ts';
import { checkSemantics, type ResolvedExtras } from './validate.ts';
import { formatKeyPath, type KeyPathStep, positionOf } from './yaml-positions.ts';

/** Where the JSON Schema lives, both in the source tree and in the built package. */
export const SCHEMA_URL = new URL('../../schema/seglb.schema.json', import.meta.url);

let compiledValidator: ReturnType<Ajv['compile']> | undefined;

function schemaValidator(): ReturnType<Ajv['compile']> {
  if (!compiledValidator) {
    const schema = JSON.parse(readFileSync(SCHEMA_URL, 'utf8')) as object;
    const ajv = new Ajv({
      allErrors: true,
      useDefaults: true,
      strict: true,
      verbose: true,
      strictTypes: false,
    });
    compiledValidator = ajv.compile(schema);
  }
  return compiledValidator;
}

/** A validated configuration plus what was resolved from files while validating it. */
export interface LoadedConfig extends ResolvedExtras {
  /** The validated, defaulted, deep-frozen configuration. */
  readonly config: SeglbConfig;
  /** Absolute path of the config file. */
  readonly file: string;
  /** The YAML text that was validated (so a caller never has to read and validate the file twice). */
  readonly text: string;
  /** 1-based line/col of a key path in the file (e.g. a rule, for explain). */
  positionOf(path: readonly KeyPathStep[]): { line: number; col: number };
}

/**
 * Reads and validates a config file.
 * @param file - path to the YAML file (relative to the working directory)
 * @returns the loaded config; nothing is started
 * @throws ConfigError SEGLB_CONFIG_READ (file unreadable), SEGLB_CONFIG_YAML (malformed YAML, all
 *   syntax errors), SEGLB_CONFIG_INVALID (all schema and semantic issues, each positioned
 *   `file:line:col key.path: message`)
 */
export function loadConfigFile(file: string): LoadedConfig {
  const abs = resolve(file);
  return loadConfigText(readConfigText(abs), abs);
}

/** Largest config file accepted, bytes (IP sets that big belong in their own files). */
export const MAX_CONFIG_TEXT_BYTES = 32 * 1024 * 1024;

/**
 * Reads the config file itself: a regular file of at most 32 MiB (so `-c /dev/zero` or a FIFO is
 * an error, not an endless read or a hang).
 * @throws ConfigError SEGLB_CONFIG_READ naming the file
 */
export function readConfigText(file: string): string {
  try {
    const st = statSync(file);
    if (!st.isFile()) throw Object.assign(new Error('not a regular file'), { code: 'not a regular file' });
    if (st.size > MAX_CONFIG_TEXT_BYTES) {
      throw Object.assign(new Error('too large'), { code: `larger than ${MAX_CONFIG_TEXT_BYTES >> 20} MiB` });
    }
    return readFileSync(file, 'utf8');
  } catch (err) {
    const message = `cannot read config file: ${describeReadError(err)}`;
    throw new ConfigError('SEGLB_CONFIG_READ', [{ file, line: 0, col: 0, keyPath: '', message }], {
      cause: err,
    });
  }
}

/**
 * Validates config text as if it were the file `file` (relative paths inside it resolve against
 * the file's folder). Same results and errors as loadConfigFile.
 */
export function loadConfigText(text: string, file: string): LoadedConfig {
  const lines = new LineCounter();
  // merge: true accepts `<<: *defaults` (YAML 1.1 merge keys), which operators use to share VIP or
  // backend settings; uniqueKeys makes a repeated key an error rather than "last one wins".
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true, merge: true });
  if (doc.errors.length > 0) {
    const issues = doc.errors.map((e) => yamlIssue(e, doc, file, lines));
    throw new ConfigError('SEGLB_CONFIG_YAML', issues);
  }
  const data = documentToData(doc, file, lines);
  const at = (path: readonly KeyPathStep[], target: 'key' | 'value' = 'value') =>
    positionOf(doc, lines, path, target);
  const issue = (
    path: readonly KeyPathStep[],
    message: string,
    target: 'key' | 'value' = 'value',
  ): ConfigIssue => {
    const pos = at(path, target);
    return { file, line: pos.line, col: pos.col, keyPath: formatKeyPath(path), message };
  };

  const validate = schemaValidator();
  if (!validate(data)) {
    const errors = validate.errors ?? [];
    // Ajv reports a bad map key twice: once as `pattern` (with propertyName set), once as
    // `propertyNames`; the second names the key, so the first is dropped.
    const schemaIssues = errors
      .filter((e) => e.propertyName === undefined)
      .map((e) => schemaIssue(e, data, issue));
    // Every problem at once: the parts of the file that passed the schema still get the semantic
    // checks, so fixing a typo never uncovers a second round of errors elsewhere.
    const semanticIssues: ConfigIssue[] = [];
    const pruned = pruneSchemaInvalid(data, errors);
    if (pruned) {
      resolveRelativePaths(pruned.config, dirname(file), file);
      semanticIssues.push(...checkSemantics(pruned.config, issue, pruned.invalid).issues);
    }
    throw new ConfigError(
      'SEGLB_CONFIG_INVALID',
      sortIssues(dedupe([...schemaIssues, ...semanticIssues]), file),
    );
  }
  const config = data as SeglbConfig;
  resolveRelativePaths(config, dirname(file), file);
  const { issues, extras } = checkSemantics(config, issue);
  if (issues.length > 0) throw new ConfigError('SEGLB_CONFIG_INVALID', sortIssues(dedupe(issues), file));
  deepFreeze(config);
  // IP sets are kept packed (8 bytes an IPv4 prefix, 20 an IPv6 one, instead of ~170 as parsed
  // objects): a LoadedConfig lives as long as its snapshot (and the start-up one as long as the
  // process), and the matchers compile from decoded copies. 246k prefixes: 3 MB instead of 40 MB.
  const ipsets = new PackedCidrMap(extras.ipsets);
  return { ...extras, ipsets, config, file, text, positionOf: (path) => at(path) };
}

/** One YAML syntax error as a positioned issue, worded for an operator rather than a programmer. */
function yamlIssue(e: YAMLError, doc: Document, file: string, lines: LineCounter): ConfigIssue {
  const pos = lines.linePos(e.pos[0]);
  let message = e.message.split('\n')[0] ?? e.code;
  if (e.code === 'DUPLICATE_KEY') {
    const key = keyStartingAt(doc, e.pos[0]);
    message = `duplicate key${key === undefined ? '' : ` ${JSON.stringify(key)}`} (each key may appear once per map)`;
  } else if (e.code === 'MULTIPLE_DOCS') {
    message = 'the file holds more than one YAML document (a second "---"); seglb reads exactly one';
  }
  return { file, line: pos.line, col: pos.col, keyPath: '', message: `YAML: ${message}` };
}

/** The text of the scalar map key whose source starts at `offset`, if there is one. */
function keyStartingAt(doc: Document, offset: number): string | undefined {
  let found: string | undefined;
  visit(doc, {
    Pair(_key, pair) {
      if (isScalar(pair.key) && pair.key.range?.[0] === offset) {
        found = String(pair.key.value);
        return visit.BREAK;
      }
      return undefined;
    },
  });
  return found;
}

/**
 * Converts the document to plain data. Alias problems surface only here (toJS throws), so they are
 * turned into positioned SEGLB_CONFIG_YAML errors instead of escaping as a bare ReferenceError.
 */
function documentToData(doc: Document, file: string, lines: LineCounter): unknown {
  try {
    return doc.toJS({ maxAliasCount: 100 }) ?? {};
  } catch (err) {
    let offset: number | undefined;
    let message = `YAML: ${(err as Error).message}`;
    visit(doc, {
      Alias(_key, node) {
        if (node.resolve(doc) !== undefined) return undefined;
        offset = node.range?.[0];
        message = `YAML: alias *${node.source} has no anchor &${node.source} before it`;
        return visit.BREAK;
      },
    });
    if (offset === undefined && /alias count/i.test((err as Error).message)) {
      message = 'YAML: too many alias expansions (more than 100; a "billion laughs" document?)';
      visit(doc, {
        Node(_key, node) {
          if (!isAlias(node)) return undefined;
          offset = node.range?.[0];
          return visit.BREAK;
        },
      });
    }
    const pos = lines.linePos(offset ?? 0);
    throw new ConfigError(
      'SEGLB_CONFIG_YAML',
      [{ file, line: pos.line, col: pos.col, keyPath: '', message }],
      {
        cause: err,
      },
    );
  }
}

function describeReadError(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  if (e.code === 'ENOENT') return 'no such file (ENOENT)';
  if (e.code === 'EACCES') return 'permission denied (EACCES)';
  if (e.code === 'EISDIR') return 'it is a directory, not a file (EISDIR)';
  return e.code ?? String(err);
}

type IssueAt = (path: readonly KeyPathStep[], message: string, target?: 'key' | 'value') => ConfigIssue;

/** Turns one Ajv error into a positioned issue with a message a person can act on. */
function schemaIssue(e: ErrorObject, data: unknown, issue: IssueAt): ConfigIssue {
  const path = pointerToPath(e.instancePath, data);
  switch (e.keyword) {
    case 'additionalProperties': {
      const key = String((e.params as { additionalProperty: string }).additionalProperty);
      const known = Object.keys((e.parentSchema as { properties?: object } | undefined)?.properties ?? {});
      const hint = didYouMean(key, known);
      const suffix = hint || (known.length ? `; known keys: ${known.join(', ')}` : '');
      return issue([...path, key], `unknown key "${key}"${suffix}`, 'key');
    }
    case 'required': {
      const key = String((e.params as { missingProperty: string }).missingProperty);
      return issue(path, `missing required key "${key}"`);
    }
    case 'enum': {
      const allowed = (e.params as { allowedValues: unknown[] }).allowedValues.map(String);
      return issue(path, `must be one of ${allowed.join(', ')} (got ${JSON.stringify(e.data)})`);
    }
    case 'type':
      return issue(
        path,
        `must be ${article(String((e.params as { type: string }).type))}, got ${describe(e.data)}`,
      );
    case 'propertyNames': {
      const name = String((e.params as { propertyName: string }).propertyName);
      return issue(
        [...path, name],
        `invalid name "${name}": use letters, digits, _ . - (starting with a letter)`,
        'key',
      );
    }
    case 'minProperties':
      return issue(path, 'must not be empty');
    case 'minItems': {
      const limit = (e.params as { limit: number }).limit;
      return issue(path, `must have at least ${limit} ${limit === 1 ? 'item' : 'items'}`);
    }
    case 'minimum':
    case 'maximum':
      return issue(
        path,
        `${e.message ?? 'is out of range'} (got ${Number.isFinite(e.data) ? JSON.stringify(e.data) : String(e.data)})`,
      );
    case 'pattern':
      return issue(path, `${JSON.stringify(e.data)} ${e.message ?? 'has the wrong form'}`);
    case 'minLength':
      return issue(path, 'must not be empty');
    default:
      return issue(path, e.message ?? 'is invalid');
  }
}

/** Converts a JSON pointer to key path steps, using the data to tell array indexes from keys. */
function pointerToPath(pointer: string, data: unknown): KeyPathStep[] {
  if (!pointer) return [];
  const out: KeyPathStep[] = [];
  let node: unknown = data;
  for (const raw of pointer.slice(1).split('/')) {
    const step = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (Array.isArray(node)) {
      out.push(Number(step));
      node = node[Number(step)];
    } else {
      out.push(step);
      node = (node as Record<string, unknown> | undefined)?.[step];
    }
  }
  return out;
}

function resolveRelativePaths(config: SeglbConfig, dir: string, file: string): void {
  const admin = config.admin as
    | {
        tokens_file?: string;
        state_file?: string;
        audit_file?: string;
        tls?: { cert_file?: string; key_file?: string };
      }
    | undefined;
  if (admin) {
    const base = file.replace(/\.ya?ml$/i, '');
    if (typeof admin.tokens_file === 'string') admin.tokens_file = resolve(dir, admin.tokens_file);
    admin.state_file = resolve(dir, admin.state_file ?? `${base}.state.json`);
    admin.audit_file = resolve(dir, admin.audit_file ?? `${base}.audit.jsonl`);
    if (admin.tls?.cert_file) admin.tls.cert_file = resolve(dir, admin.tls.cert_file);
    if (admin.tls?.key_file) admin.tls.key_file = resolve(dir, admin.tls.key_file);
  }
  for (const set of Object.values(config.ipsets)) {
    if (set.file) (set as { file: string }).file = resolve(dir, set.file);
  }
  for (const seg of Object.values(config.segments)) {
    for (const vip of seg.vips) {
      // vip is null when it failed the schema (then only the other checks run; see schema-prune.ts).
      for (const cert of vip?.tls?.certificates ?? []) {
        (cert as { cert_file: string }).cert_file = resolve(dir, cert.cert_file);
        if (cert.key_file) (cert as { key_file: string }).key_file = resolve(dir, cert.key_file);
      }
    }
  }
  for (const pool of Object.values(config.pools)) {
    // pool is null when it failed the schema (see schema-prune.ts).
    const tls = pool?.tls as { ca_file?: string } | undefined;
    if (tls?.ca_file) tls.ca_file = resolve(dir, tls.ca_file);
    const cookie = pool?.sticky?.cookie as { key_file?: string } | undefined;
    if (cookie?.key_file) cookie.key_file = resolve(dir, cookie.key_file);
  }
}

function article(type: string): string {
  return /^[aeiou]/.test(type) ? `an ${type}` : `a ${type}`;
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a map';
  // JSON has no Infinity or NaN (`1e400` in YAML reads as Infinity): name them rather than "null".
  if (typeof value === 'number' && !Number.isFinite(value)) return `number ${String(value)} (out of range)`;
  return `${typeof value} ${JSON.stringify(value)}`;
}

function dedupe(issues: ConfigIssue[]): ConfigIssue[] {
  const seen = new Set<string>();
  return issues.filter((i) => {
    const key = `${i.file}:${i.line}:${i.col}:${i.keyPath}:${i.message}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

/** In reading order: the config file's issues first, then those of each IP-set file it names. */
function sortIssues(issues: ConfigIssue[], mainFile: string): ConfigIssue[] {
  const rank = (i: ConfigIssue) => (i.file === mainFile ? 0 : 1);
  return issues.sort(
    (a, b) => rank(a) - rank(b) || a.file.localeCompare(b.file) || a.line - b.line || a.col - b.col,
  );
}

function deepFreeze(value: unknown): void {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
}
