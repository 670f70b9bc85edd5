// Runtime policy changes as operations on the YAML document: an API change edits the text the file
// would have, and that text is validated by the same loader as the file, so a change is accepted
// only if the file with it would be (and its errors carry the same file:line:col positions).

import { isMap, isSeq, parseDocument, type YAMLMap, type YAMLSeq } from 'yaml';
import type { RuleConfig } from '../config/index.ts';
import { AdminError } from '../errors.ts';

/** One runtime change to the policy part of the config. */
export type PolicyOp =
  | {
      readonly op: 'add_rule';
      readonly segment: string;
      readonly kind: 'allow' | 'deny';
      readonly rule: RuleConfig;
    }
  | {
      readonly op: 'remove_rule';
      readonly segment: string;
      readonly kind: 'allow' | 'deny';
      readonly name: string;
    }
  | { readonly op: 'set_mode'; readonly segment: string; readonly mode: 'enforce' | 'audit' }
  | { readonly op: 'add_ipset_entries'; readonly ipset: string; readonly cidrs: readonly string[] }
  | { readonly op: 'remove_ipset_entries'; readonly ipset: string; readonly cidrs: readonly string[] };

/** Operation names, for validation of API input. */
export const POLICY_OPS = [
  'add_rule',
  'remove_rule',
  'set_mode',
  'add_ipset_entries',
  'remove_ipset_entries',
] as const;

/**
 * Checks the shape of an operation received from the API (the config loader checks the rest).
 * @throws AdminError SEGLB_ADMIN_BAD_REQUEST (400) naming what is wrong
 */
export function parsePolicyOp(input: unknown): PolicyOp {
  const o = input as Record<string, unknown> | null;
  const bad = (msg: string) => new AdminError('SEGLB_ADMIN_BAD_REQUEST', msg, 400);
  if (!o || typeof o !== 'object' || Array.isArray(o)) throw bad('an operation must be a JSON object');
  const str = (k: string) => {
    if (typeof o[k] !== 'string' || o[k] === '') throw bad(`"${k}" must be a non-empty string`);
    return o[k] as string;
  };
  const kind = () => {
    const k = str('kind');
    if (k !== 'allow' && k !== 'deny') throw bad('"kind" must be allow or deny');
    return k;
  };
  const cidrs = () => {
    if (!Array.isArray(o.cidrs) || o.cidrs.length === 0 || !o.cidrs.every((c) => typeof c === 'string')) {
      throw bad('"cidrs" must be a non-empty list of strings');
    }
    return o.cidrs as string[];
  };
  switch (o.op) {
    case 'add_rule': {
      const rule = o.rule as Record<string, unknown> | undefined;
      if (!rule || typeof rule !== 'object' || Array.isArray(rule)) throw bad('"rule" must be an object');
      if (typeof rule.name !== 'string' || !rule.name)
        throw bad('a rule added at runtime needs a "name" (to remove it later)');
      return { op: 'add_rule', segment: str('segment'), kind: kind(), rule: rule as unknown as RuleConfig };
    }
    case 'remove_rule':
      return { op: 'remove_rule', segment: str('segment'), kind: kind(), name: str('name') };
    case 'set_mode': {
      const mode = str('mode');
      if (mode !== 'enforce' && mode !== 'audit') throw bad('"mode" must be enforce or audit');
      return { op: 'set_mode', segment: str('segment'), mode };
    }
    case 'add_ipset_entries':
      return { op: 'add_ipset_entries', ipset: str('ipset'), cidrs: cidrs() };
    case 'remove_ipset_entries':
      return { op: 'remove_ipset_entries', ipset: str('ipset'), cidrs: cidrs() };
    default:
      throw bad(`"op" must be one of ${POLICY_OPS.join(', ')}`);
  }
}

/**
 * Applies operations to config text.
 * @param text - YAML text (the file's, or the file's with earlier operations applied)
 * @param ops - operations, applied in order
 * @returns the new text (comments and layout of untouched parts kept)
 * @throws AdminError SEGLB_ADMIN_BAD_REQUEST (400) when an operation names a segment, IP set or rule
 *   that does not exist, or adds a rule name already used; SEGLB_ADMIN_CONFLICT (409) for an
 *   IP-set removal of entries the set does not hold
 */
export function applyPolicyOps(text: string, ops: readonly PolicyOp[]): string {
  const doc = parseDocument(text);
  for (const op of ops) {
    switch (op.op) {
      case 'add_rule': {
        requireSegment(doc, op.segment);
        const path = ['segments', op.segment, op.kind];
        const list = doc.getIn(path, true);
        if (isSeq(list)) {
          if (list.items.some((r) => isMap(r) && r.get('name') === op.rule.name)) {
            throw new AdminError(
              'SEGLB_ADMIN_BAD_REQUEST',
              `segment ${op.segment} already has a ${op.kind} rule named "${op.rule.name}"`,
              400,
            );
          }
          list.add(doc.createNode(op.rule));
        } else doc.setIn(path, doc.createNode([op.rule]));
        break;
      }
      case 'remove_rule': {
        requireSegment(doc, op.segment);
        const list = doc.getIn(['segments', op.segment, op.kind], true) as YAMLSeq | undefined;
        const index = isSeq(list) ? list.items.findIndex((r) => isMap(r) && r.get('name') === op.name) : -1;
        if (index < 0 || !list) {
          throw new AdminError(
            'SEGLB_ADMIN_NOT_FOUND',
            `segment ${op.segment} has no ${op.kind} rule named "${op.name}"`,
            404,
          );
        }
        list.delete(index);
        break;
      }
      case 'set_mode':
        requireSegment(doc, op.segment);
        doc.setIn(['segments', op.segment, 'mode'], op.mode);
        break;
      case 'add_ipset_entries': {
        requireIpSet(doc, op.ipset);
        const path = ['ipsets', op.ipset, 'cidrs'];
        const list = doc.getIn(path, true);
        const present = new Set(
          isSeq(list) ? list.items.map((i) => String((i as { value?: unknown }).value ?? i)) : [],
        );
        const fresh = op.cidrs.filter((c) => !present.has(c));
        if (isSeq(list)) for (const c of fresh) list.add(doc.createNode(c));
        else doc.setIn(path, doc.createNode([...fresh]));
        break;
      }
      case 'remove_ipset_entries': {
        requireIpSet(doc, op.ipset);
        const list = doc.getIn(['ipsets', op.ipset, 'cidrs'], true);
        const items = isSeq(list) ? list.items.map((i) => String((i as { value?: unknown }).value ?? i)) : [];
        const missing = op.cidrs.filter((c) => !items.includes(c));
        if (missing.length > 0 || !isSeq(list)) {
          throw new AdminError(
            'SEGLB_ADMIN_CONFLICT',
            `IP set ${op.ipset} has no inline entries ${missing.join(', ')} (entries from its file are changed in the file)`,
            409,
          );
        }
        for (let i = list.items.length - 1; i >= 0; i--) {
          if (op.cidrs.includes(items[i] as string)) list.delete(i);
        }
        break;
      }
    }
  }
  return doc.toString();
}

function requireSegment(doc: ReturnType<typeof parseDocument>, segment: string): void {
  const segs = doc.get('segments', true) as YAMLMap | undefined;
  if (!isMap(segs) || !segs.has(segment))
    throw new AdminError('SEGLB_ADMIN_NOT_FOUND', `segment ${segment} does not exist`, 404);
}

function requireIpSet(doc: ReturnType<typeof parseDocument>, name: string): void {
  const sets = doc.get('ipsets', true) as YAMLMap | undefined;
  if (!isMap(sets) || !sets.has(name))
    throw new AdminError('SEGLB_ADMIN_NOT_FOUND', `IP set ${name} does not exist`, 404);
}

/**
 * Shortens an operation log without changing its effect on any file it applies to: a rule added
 * and later removed by name leaves no trace, only the last mode per segment is kept, and IP-set
 * entries collapse to one net add and one net remove per set. Keeps replay (restart, reload) and the
 * state file proportional to the runtime difference, not to the history of changes.
 * @param ops - operations in the order they were applied
 * @returns an equivalent, shorter list (same order of first appearance)
 */
export function compactOps(ops: readonly PolicyOp[]): PolicyOp[] {
  type Slot = { op: PolicyOp | null };
  const out: Slot[] = [];
  const addedRule = new Map<string, Slot>();
  const lastMode = new Map<string, Slot>();
  const sets = new Map<string, { add: Slot; remove: Slot; state: Map<string, 'added' | 'removed'> }>();
  for (const op of ops) {
    switch (op.op) {
      case 'add_rule': {
        const slot: Slot = { op };
        addedRule.set(`${op.segment}\u0000${op.kind}\u0000${op.rule.name}`, slot);
        out.push(slot);
        break;
      }
      case 'remove_rule': {
        const key = `${op.segment}\u0000${op.kind}\u0000${op.name}`;
        const added = addedRule.get(key);
        if (added?.op) {
          added.op = null; // added at runtime, removed again: neither is needed
          addedRule.delete(key);
        } else out.push({ op });
        break;
      }
      case 'set_mode': {
        const prev = lastMode.get(op.segment);
        if (prev) prev.op = null;
        const slot: Slot = { op };
        lastMode.set(op.segment, slot);
        out.push(slot);
        break;
      }
      case 'add_ipset_entries':
      case 'remove_ipset_entries': {
        let set = sets.get(op.ipset);
        if (!set) {
          set = { add: { op: null }, remove: { op: null }, state: new Map() };
          sets.set(op.ipset, set);
          out.push(set.add, set.remove);
        }
        for (const c of op.cidrs) {
          const before = set.state.get(c);
          if (op.op === 'add_ipset_entries') {
            // Removing a file entry and adding it back is no change; otherwise it is a net add.
            if (before === 'removed') set.state.delete(c);
            else set.state.set(c, 'added');
          } else if (before === 'added') set.state.delete(c);
          else set.state.set(c, 'removed');
        }
        const adds = [...set.state].filter(([, v]) => v === 'added').map(([c]) => c);
        const removes = [...set.state].filter(([, v]) => v === 'removed').map(([c]) => c);
        set.add.op = adds.length ? { op: 'add_ipset_entries', ipset: op.ipset, cidrs: adds } : null;
        set.remove.op = removes.length
          ? { op: 'remove_ipset_entries', ipset: op.ipset, cidrs: removes }
          : null;
        break;
      }
    }
  }
  return out.flatMap((s) => (s.op ? [s.op] : []));
}
