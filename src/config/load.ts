// Loads a seglb YAML config: read, parse with positions, apply schema defaults and validate
// (schema/seglb.schema.json), then the semantic checks; every problem is reported at once.

import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { Ajv, type ErrorObject } from 'ajv';
import { LineCounter, parseDocument } from 'yaml';
import { ConfigError, type ConfigIssue } from '../errors.ts';
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
  let text: string;
  try {
    text = readFileSync(abs, 'utf8');
  } catch (err) {
    const message = `cannot read config file: ${(err as NodeJS.ErrnoException).code ?? String(err)}`;
    throw new ConfigError('SEGLB_CONFIG_READ', [{ file: abs, line: 0, col: 0, keyPath: '', message }], {
      cause: err,
    });
  }
  return loadConfigText(text, abs);
}

/**
 * Validates config text as if it were the file `file` (relative paths inside it resolve against
 * the file's folder). Same results and errors as loadConfigFile.
 */
export function loadConfigText(text: string, file: string): LoadedConfig {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    const issues = doc.errors.map((e): ConfigIssue => {
      const pos = lines.linePos(e.pos[0]);
      return {
        file,
        line: pos.line,
        col: pos.col,
        keyPath: '',
        message: `YAML: ${e.message.split('\n')[0]}`,
      };
    });
    throw new ConfigError('SEGLB_CONFIG_YAML', issues);
  }
  const data: unknown = doc.toJS({ maxAliasCount: 100 }) ?? {};
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
    const issues = dedupe((validate.errors ?? []).map((e) => schemaIssue(e, data, issue)));
    throw new ConfigError('SEGLB_CONFIG_INVALID', sortIssues(issues));
  }
  const config = data as SeglbConfig;
  resolveRelativePaths(config, dirname(file));
  const { issues, extras } = checkSemantics(config, issue);
  if (issues.length > 0) throw new ConfigError('SEGLB_CONFIG_INVALID', sortIssues(dedupe(issues)));
  deepFreeze(config);
  return { ...extras, config, file, positionOf: (path) => at(path) };
}

type IssueAt = (path: readonly KeyPathStep[], message: string, target?: 'key' | 'value') => ConfigIssue;

/** Turns one Ajv error into a positioned issue with a message a person can act on. */
function schemaIssue(e: ErrorObject, data: unknown, issue: IssueAt): ConfigIssue {
  const path = pointerToPath(e.instancePath, data);
  switch (e.keyword) {
    case 'additionalProperties': {
      const key = String((e.params as { additionalProperty: string }).additionalProperty);
      const known = Object.keys((e.parentSchema as { properties?: object } | undefined)?.properties ?? {});
      const hint = closest(key, known);
      const suffix = hint
        ? `; did you mean "${hint}"?`
        : known.length
          ? `; known keys: ${known.join(', ')}`
          : '';
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
    case 'minItems':
      return issue(path, `must have at least ${(e.params as { limit: number }).limit} item(s)`);
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

function resolveRelativePaths(config: SeglbConfig, dir: string): void {
  for (const set of Object.values(config.ipsets)) {
    if (set.file) (set as { file: string }).file = resolve(dir, set.file);
  }
  for (const seg of Object.values(config.segments)) {
    for (const vip of seg.vips) {
      for (const cert of vip.tls?.certificates ?? []) {
        (cert as { cert_file: string }).cert_file = resolve(dir, cert.cert_file);
        if (cert.key_file) (cert as { key_file: string }).key_file = resolve(dir, cert.key_file);
      }
    }
  }
}

function article(type: string): string {
  return /^[aeiou]/.test(type) ? `an ${type}` : `a ${type}`;
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a map';
  return `${typeof value} ${JSON.stringify(value)}`;
}

/** The known key within edit distance 2 of `key`, if any (for "did you mean"). */
function closest(key: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = 3;
  for (const candidate of known) {
    const d = editDistance(key, candidate);
    if (d < bestDistance) {
      bestDistance = d;
      best = candidate;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0] as number;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = row[j] as number;
      row[j] = Math.min(
        (row[j] as number) + 1,
        (row[j - 1] as number) + 1,
        prev + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
      prev = tmp;
    }
  }
  return row[b.length] as number;
}

function dedupe(issues: ConfigIssue[]): ConfigIssue[] {
  const seen = new Set<string>();
  return issues.filter((i) => {
    const key = `${i.line}:${i.col}:${i.keyPath}:${i.message}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

function sortIssues(issues: ConfigIssue[]): ConfigIssue[] {
  return issues.sort((a, b) => a.file.localeCompare(b.file) || a.line - b.line || a.col - b.col);
}

function deepFreeze(value: unknown): void {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
}
