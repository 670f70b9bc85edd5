// Cuts the schema-invalid parts out of a rejected config so the semantic checks can still run over
// the rest: one pass reports every problem, and a typo never hides a bad CIDR three lines below.

import type { ErrorObject } from 'ajv';
import type { SeglbConfig } from './types.ts';
import type { SchemaInvalidNames } from './validate.ts';

/** Segment lists whose items are checked one by one: a bad item is blanked, the others stay. */
const SEGMENT_ITEM_LISTS: ReadonlySet<string> = new Set(['vips', 'allow', 'deny']);
/** Segment keys that are lists: replaced by [] when broken as a whole. */
const SEGMENT_LISTS: ReadonlySet<string> = new Set([
  'vips',
  'allow',
  'deny',
  'backend_subnets',
  'trusted_proxies',
]);

/**
 * Removes what failed the schema, in place, keeping key paths stable for positions:
 * - a bad list item (a VIP, a rule, a backend) becomes `null`, which the semantic checks skip;
 * - a bad segment list becomes `[]`, a bad `pool` name is removed, a bad `demo` becomes false;
 * - a bad IP set, a segment or pool that is not a map, and a bad admin/cluster section are removed.
 * What was cut is returned so checks that need the whole of something (a segment's VIPs, its
 * subnets, a referenced name) stay quiet instead of reporting a consequence of the first error.
 * @param data - the document as plain data, after Ajv validation with defaults applied
 * @param errors - Ajv's errors for it
 * @returns undefined when the document is too broken to check further (not a map)
 */
export function pruneSchemaInvalid(
  data: unknown,
  errors: readonly ErrorObject[],
): { config: SeglbConfig; invalid: SchemaInvalidNames } | undefined {
  if (!isPlainMap(data)) return undefined;
  const invalid = {
    ipsets: new Set<string>(),
    pools: new Set<string>(),
    allIpsets: false,
    allPools: false,
    incompleteVips: new Set<string>(),
    incompleteSubnets: new Set<string>(),
  };
  for (const section of ['ipsets', 'segments', 'pools'] as const) {
    if (isPlainMap(data[section])) continue;
    // Missing or not a map: already reported; check the rest as if it were empty, and report no
    // reference into it.
    if (section === 'ipsets' && data[section] !== undefined) invalid.allIpsets = true;
    if (section === 'pools') invalid.allPools = true;
    data[section] = {};
  }
  for (const section of ['log', 'timeouts', 'limits'] as const) {
    if (!isPlainMap(data[section])) data[section] = {};
  }
  const ipsets = data['ipsets'] as Record<string, unknown>;
  const segments = data['segments'] as Record<string, unknown>;
  const pools = data['pools'] as Record<string, unknown>;

  for (const e of errors) {
    const steps = pointerSteps(e.instancePath);
    const [section, name, key, index] = steps;
    if (section === 'admin' || section === 'cluster') {
      delete data[section];
    } else if (section === 'ipsets') {
      const setName = name ?? propertyNameOf(e);
      if (setName !== undefined) {
        invalid.ipsets.add(setName);
        delete ipsets[setName];
      }
    } else if (section === 'segments' && name !== undefined) {
      pruneSegment(segments, name, key, index, e, invalid);
    } else if (section === 'segments') {
      const bad = propertyNameOf(e);
      if (bad !== undefined) delete segments[bad];
    } else if (section === 'pools') {
      const poolName = name ?? propertyNameOf(e);
      if (poolName === undefined) continue;
      const pool = pools[poolName];
      if (!isPlainMap(pool) || key === undefined) {
        // The pool map itself is wrong (a missing key, an unknown key, not a map).
        if (!isPlainMap(pool) || e.keyword === 'required') {
          invalid.pools.add(poolName);
          delete pools[poolName];
        }
      } else if (key === 'backends') {
        if (index !== undefined && Array.isArray(pool['backends'])) pool['backends'][Number(index)] = null;
        else pool['backends'] = [];
      } else if (key === 'demo') {
        pool['demo'] = false;
      }
    }
  }
  return { config: data as unknown as SeglbConfig, invalid };
}

function pruneSegment(
  segments: Record<string, unknown>,
  name: string,
  key: string | undefined,
  index: string | undefined,
  e: ErrorObject,
  invalid: { incompleteVips: Set<string>; incompleteSubnets: Set<string> },
): void {
  const seg = segments[name];
  if (!isPlainMap(seg)) {
    delete segments[name];
    return;
  }
  if (key === undefined) {
    // On the segment map: an unknown key harms nothing; a missing one is filled in as empty.
    if (e.keyword !== 'required') return;
    const missing = String(e.params['missingProperty']);
    if (SEGMENT_LISTS.has(missing)) seg[missing] = [];
    markIncomplete(name, missing, invalid);
    return;
  }
  markIncomplete(name, key, invalid);
  const list = seg[key];
  if (SEGMENT_ITEM_LISTS.has(key) && index !== undefined && Array.isArray(list)) {
    list[Number(index)] = null;
  } else if (SEGMENT_LISTS.has(key)) {
    seg[key] = [];
  } else if (key === 'pool') {
    delete seg['pool'];
  }
}

function markIncomplete(
  segment: string,
  key: string,
  invalid: { incompleteVips: Set<string>; incompleteSubnets: Set<string> },
): void {
  if (key === 'vips') invalid.incompleteVips.add(segment);
  if (key === 'backend_subnets') invalid.incompleteSubnets.add(segment);
}

/** The map key a `propertyNames` error is about. */
function propertyNameOf(e: ErrorObject): string | undefined {
  return e.keyword === 'propertyNames' ? String(e.params['propertyName']) : undefined;
}

/** JSON pointer (`/segments/web/vips/0`) to its unescaped steps. */
function pointerSteps(pointer: string): string[] {
  if (!pointer) return [];
  return pointer
    .slice(1)
    .split('/')
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
}

function isPlainMap(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
