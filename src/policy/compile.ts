// Compiles one segment's allow/deny rules into a SegmentPolicy: a radix table per family whose
// longest-prefix match yields a precomputed verdict record (deny beats allow settled here, once).
//
// Semantics (order-independent, default deny), for the set M of rules whose sources cover an address:
//   1. an unconditional deny in M            -> connection DENY (reset at accept)
//   2. else an unconditional allow in M and no L7 deny in M -> connection ALLOW
//   3. else any allow in M                   -> connection L7: accepted, each request judged:
//        an L7 deny that matches the request -> 403; else an unconditional allow, or an L7 allow
//        that matches -> allowed; else 403 (default deny). The path is judged normalised and, when
//        the target was sent otherwise, as sent too: both must be allowed (see l7.ts)
//   4. else                                  -> connection DENY (default)
// Like Envoy's RBAC (rbac/engine_impl.cc) the result names the deciding rule; unlike its first-match
// over sorted policies, "deny beats allow" is decided when compiling, so lookup is one walk.

import type { RuleConfig, SegmentConfig } from '../config/types.ts';
import { parseIPv4, parseIPv6 } from '../net/address.ts';
import type { Cidr } from '../net/cidr.ts';
import { L7Matcher, type RequestAttributes, requestPathAsSent } from './l7.ts';
import { RadixBuilder, type RadixTable } from './radix.ts';
import { expandSources } from './source-set.ts';

/** Connection verdicts, as small integers so the hot path compares numbers. */
export const VERDICT_DENY = 0;
export const VERDICT_ALLOW = 1;
/** Accept the connection; judge every request against the record's L7 rules. */
export const VERDICT_L7 = 2;
export type ConnectionVerdict = typeof VERDICT_DENY | typeof VERDICT_ALLOW | typeof VERDICT_L7;

/** Rule id used for "no rule matched" (default deny). */
export const DEFAULT_DENY_RULE = -1;

/** One compiled rule. `id` indexes SegmentPolicy.rules and the counter arrays. */
export interface CompiledRule {
  readonly id: number;
  readonly kind: 'allow' | 'deny';
  /** The rule's name, or `allow[N]` / `deny[N]`. */
  readonly name: string;
  /** Index in the segment's allow or deny list. */
  readonly index: number;
  /** L7 conditions, or null for a rule that applies to whole connections. */
  readonly l7: L7Matcher | null;
  /** The request verdict this rule decides (`allowed` = kind is allow), shared so judging allocates nothing. */
  readonly verdict: RequestVerdict;
}

/** The precomputed outcome for every address covered by the same set of rules. */
export interface VerdictRecord {
  readonly verdict: ConnectionVerdict;
  /** Deciding rule id for the connection verdict, or DEFAULT_DENY_RULE. */
  readonly rule: number;
  /** Every rule whose sources cover the address, ascending ids (for explain). */
  readonly matched: readonly number[];
  /** For VERDICT_L7: L7 denies to test first, then L7 allows. */
  readonly l7Denies: readonly CompiledRule[];
  readonly l7Allows: readonly CompiledRule[];
  /** An unconditional allow covering the address, or DEFAULT_DENY_RULE. */
  readonly unconditionalAllow: number;
  /** That allow's request verdict (the default-deny verdict when there is none). */
  readonly unconditionalVerdict: RequestVerdict;
}

/** Outcome of judging one HTTP request on an L7 connection. */
export interface RequestVerdict {
  readonly allowed: boolean;
  /** Deciding rule id, or DEFAULT_DENY_RULE. */
  readonly rule: number;
}

const DEFAULT_DENIED: RequestVerdict = Object.freeze({ allowed: false, rule: DEFAULT_DENY_RULE });

/**
 * A compiled, immutable segment policy. Lookups allocate nothing.
 * Counters are plain numbers on the policy (exported by observers, not per-connection label calls).
 */
export class SegmentPolicy {
  readonly segment: string;
  readonly mode: 'enforce' | 'audit';
  readonly rules: readonly CompiledRule[];
  readonly records: readonly VerdictRecord[];
  /** The record for addresses no rule covers (default deny). */
  readonly defaultRecord: VerdictRecord;
  /** Per rule id: connections/requests allowed, denied, and denied-but-let-through (audit). */
  readonly allowed: Float64Array;
  readonly denied: Float64Array;
  readonly auditDenied: Float64Array;
  /** Default-deny counts (no rule matched), by enforce / audit. */
  defaultDenied = 0;
  defaultAuditDenied = 0;
  /** Number of prefixes in the tables (after IP-set expansion and de-duplication). */
  readonly prefixCount: number;
  readonly #v4: RadixTable;
  readonly #v6: RadixTable;
  readonly #scratch = new Uint32Array(4);

  constructor(
    segment: string,
    mode: 'enforce' | 'audit',
    rules: readonly CompiledRule[],
    records: readonly VerdictRecord[],
    v4: RadixTable,
    v6: RadixTable,
  ) {
    this.segment = segment;
    this.mode = mode;
    this.rules = rules;
    this.records = records;
    this.defaultRecord = records[0] as VerdictRecord;
    this.#v4 = v4;
    this.#v6 = v6;
    this.prefixCount = v4.prefixCount + v6.prefixCount;
    this.allowed = new Float64Array(rules.length);
    this.denied = new Float64Array(rules.length);
    this.auditDenied = new Float64Array(rules.length);
  }

  /**
   * Finds the verdict record for a source address: one longest-prefix-match walk.
   * @param source - normalised address text (IPv4 dotted quad or IPv6; no `::ffff:` prefix)
   * @returns the record (the default-deny record when no rule covers it or the text is not an IP)
   */
  lookup(source: string): VerdictRecord {
    const v4 = parseIPv4(source);
    let id: number;
    if (v4 >= 0) id = this.#v4.lookupV4(v4);
    else {
      const s = this.#scratch;
      id = parseIPv6(source, s)
        ? this.#v6.lookupV6(s[0] as number, s[1] as number, s[2] as number, s[3] as number)
        : -1;
    }
    return id < 0 ? this.defaultRecord : (this.records[id] as VerdictRecord);
  }

  /**
   * Judges one HTTP request. On a VERDICT_L7 record the L7 rules decide; an ALLOW or DENY record
   * (a client behind a trusted proxy) gives its connection verdict with the deciding rule.
   * When `req.rawPath` differs from `req.path` (once the query is dropped) the request must be
   * allowed under both forms, and the first form that denies decides.
   * @param record - the client's record from lookup()
   * @param req - method, normalised path, host (lowercase, no port) and headers of the request
   * @returns a shared, frozen verdict (no allocation)
   */
  judgeRequest(record: VerdictRecord, req: RequestAttributes): RequestVerdict {
    if (record.verdict !== VERDICT_L7) {
      return record.rule === DEFAULT_DENY_RULE
        ? DEFAULT_DENIED
        : (this.rules[record.rule] as CompiledRule).verdict;
    }
    const v = judgePath(record, req, req.path);
    const raw = req.rawPath;
    if (!v.allowed || raw === undefined || raw === req.path) return v;
    const asSent = requestPathAsSent(raw);
    return asSent === req.path ? v : judgePath(record, req, asSent);
  }

  /**
   * Counts a decision. `enforced` is false in audit mode for a deny that was let through.
   * @param rule - deciding rule id or DEFAULT_DENY_RULE
   */
  count(allowed: boolean, rule: number): void {
    if (allowed) {
      if (rule >= 0) bump(this.allowed, rule);
      return;
    }
    if (this.mode === 'audit') {
      if (rule >= 0) bump(this.auditDenied, rule);
      else this.defaultAuditDenied++;
    } else if (rule >= 0) bump(this.denied, rule);
    else this.defaultDenied++;
  }

  /** The deciding rule's display name (`default-deny` for DEFAULT_DENY_RULE). */
  ruleName(rule: number): string {
    return rule < 0 ? 'default-deny' : (this.rules[rule]?.name ?? 'default-deny');
  }
}

function judgePath(record: VerdictRecord, req: RequestAttributes, path: string): RequestVerdict {
  const denies = record.l7Denies;
  for (let i = 0; i < denies.length; i++) {
    const rule = denies[i] as CompiledRule;
    if ((rule.l7 as L7Matcher).matches(req, path)) return rule.verdict;
  }
  if (record.unconditionalAllow !== DEFAULT_DENY_RULE) return record.unconditionalVerdict;
  const allows = record.l7Allows;
  for (let i = 0; i < allows.length; i++) {
    const rule = allows[i] as CompiledRule;
    if ((rule.l7 as L7Matcher).matches(req, path)) return rule.verdict;
  }
  return DEFAULT_DENIED;
}

function bump(counters: Float64Array, i: number): void {
  counters[i] = (counters[i] as number) + 1;
}

/**
 * Compiles a segment's rules.
 * @param name - segment name
 * @param segment - validated segment config
 * @param ipsets - resolved IP sets (from config loading)
 * @returns an immutable SegmentPolicy; compile never fails on validated input
 * @throws PolicyError SEGLB_POLICY_TOO_LARGE when the radix tables overflow their capacity
 */
export function compileSegmentPolicy(
  name: string,
  segment: Pick<SegmentConfig, 'mode' | 'allow' | 'deny'>,
  ipsets: ReadonlyMap<string, readonly Cidr[]>,
): SegmentPolicy {
  const rules: CompiledRule[] = [];
  const sources: Cidr[][] = [];
  const add = (kind: 'allow' | 'deny', list: readonly RuleConfig[]) => {
    list.forEach((r, index) => {
      const l7 = L7Matcher.fromRule(r, kind);
      const id = rules.length;
      const verdict = Object.freeze({ allowed: kind === 'allow', rule: id });
      rules.push(Object.freeze({ id, kind, name: r.name ?? `${kind}[${index}]`, index, l7, verdict }));
      sources.push(expandSources(r.from, ipsets));
    });
  };
  add('deny', segment.deny);
  add('allow', segment.allow);

  const interner = new RecordInterner(rules);
  const b4 = new RadixBuilder(4);
  const b6 = new RadixBuilder(6);
  rules.forEach((rule, id) => {
    const value = interner.single(rule.id);
    for (const c of sources[id] as Cidr[]) {
      if (c.family === 4) b4.insert(c, value);
      else b6.insert(c, value);
    }
  });
  const opts = {
    merge: (a: number, b: number) => interner.union(a, b),
    inherit: (ancestor: number, own: number) => interner.union(ancestor, own),
  };
  const v4 = b4.build(opts);
  const v6 = b6.build(opts);
  return new SegmentPolicy(name, segment.mode, rules, interner.records(), v4, v6);
}

/** Interns sets of rule ids as VerdictRecords; record 0 is the empty set (default deny). */
class RecordInterner {
  readonly #rules: readonly CompiledRule[];
  readonly #sets: number[][] = [[]];
  readonly #byKey = new Map<string, number>([['', 0]]);
  // Union cache keyed by (smaller id, larger id). Nested maps, not one packed number: record ids go up
  // to the radix value limit (2^31), and a packed key would collide past 2^20 records.
  readonly #unions = new Map<number, Map<number, number>>();

  constructor(rules: readonly CompiledRule[]) {
    this.#rules = rules;
  }

  single(ruleId: number): number {
    return this.#intern([ruleId]);
  }

  union(a: number, b: number): number {
    if (a === b || b === 0) return a;
    if (a === 0) return b;
    const lo = Math.min(a, b);
    const hi = Math.max(a, b);
    let byHi = this.#unions.get(lo);
    if (byHi === undefined) {
      byHi = new Map();
      this.#unions.set(lo, byHi);
    }
    const cached = byHi.get(hi);
    if (cached !== undefined) return cached;
    const merged = [...new Set([...(this.#sets[a] as number[]), ...(this.#sets[b] as number[])])].sort(
      (x, y) => x - y,
    );
    const id = this.#intern(merged);
    byHi.set(hi, id);
    return id;
  }

  #intern(ids: number[]): number {
    const key = ids.join(',');
    let id = this.#byKey.get(key);
    if (id === undefined) {
      id = this.#sets.length;
      this.#sets.push(ids);
      this.#byKey.set(key, id);
    }
    return id;
  }

  records(): VerdictRecord[] {
    return this.#sets.map((ids) => buildRecord(ids, this.#rules));
  }
}

function buildRecord(ids: readonly number[], rules: readonly CompiledRule[]): VerdictRecord {
  const matched = ids.map((id) => rules[id] as CompiledRule);
  const hardDeny = matched.find((r) => r.kind === 'deny' && r.l7 === null);
  const hardAllow = matched.find((r) => r.kind === 'allow' && r.l7 === null);
  const l7Denies = matched.filter((r) => r.kind === 'deny' && r.l7 !== null);
  const l7Allows = matched.filter((r) => r.kind === 'allow' && r.l7 !== null);
  const base = {
    matched: Object.freeze([...ids]),
    l7Denies: Object.freeze(l7Denies),
    l7Allows: Object.freeze(l7Allows),
    unconditionalAllow: hardAllow ? hardAllow.id : DEFAULT_DENY_RULE,
    unconditionalVerdict: hardAllow ? hardAllow.verdict : DEFAULT_DENIED,
  };
  if (hardDeny) return Object.freeze({ ...base, verdict: VERDICT_DENY, rule: hardDeny.id });
  if (hardAllow && l7Denies.length === 0) {
    return Object.freeze({ ...base, verdict: VERDICT_ALLOW, rule: hardAllow.id });
  }
  if (hardAllow || l7Allows.length > 0) {
    const rule = hardAllow ? hardAllow.id : (l7Allows[0] as CompiledRule).id;
    return Object.freeze({ ...base, verdict: VERDICT_L7, rule });
  }
  return Object.freeze({ ...base, verdict: VERDICT_DENY, rule: DEFAULT_DENY_RULE });
}
