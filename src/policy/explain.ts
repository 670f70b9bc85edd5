// Explains a verdict: for a source (and optionally an HTTP request) on a segment, the outcome,
// the deciding rule with its file:line, and every rule whose sources matched. The same function
// backs `seglb explain` and (later) the admin API's POST /explain.

import { normaliseSource } from '../net/address.ts';
import { DEFAULT_DENY_RULE, type SegmentPolicy, VERDICT_ALLOW, VERDICT_DENY, VERDICT_L7 } from './compile.ts';
import { normaliseRequestPath, requestHostName } from './l7.ts';
import type { Quarantine } from './quarantine.ts';

/** A rule as explain reports it. */
export interface ExplainedRule {
  readonly name: string;
  readonly kind: 'allow' | 'deny';
  /** `file:line:col` of the rule in the config, or '' when unknown. */
  readonly where: string;
  /** True when the rule has L7 conditions (methods/paths/hosts/headers). */
  readonly l7: boolean;
}

/** The outcome of explain. */
export interface Explanation {
  readonly segment: string;
  readonly mode: 'enforce' | 'audit';
  /** Normalised source address judged. */
  readonly source: string;
  /** What happens: allow, or deny (in audit mode a deny is reported as deny with enforced=false). */
  readonly verdict: 'allow' | 'deny';
  /** False in audit mode: the traffic would pass although the verdict is deny. */
  readonly enforced: boolean;
  /** At accept: allow, deny, or l7 (accepted; each request judged). */
  readonly connection: 'allow' | 'deny' | 'l7';
  /** The deciding rule; null for the default deny or a quarantine. */
  readonly decidingRule: ExplainedRule | null;
  /** Why, in one line. */
  readonly reason: string;
  /** Every rule whose sources cover the address. */
  readonly matchedRules: readonly ExplainedRule[];
}

/** Optional HTTP request attributes for explain. */
export interface ExplainRequest {
  readonly method?: string;
  readonly path?: string;
  readonly host?: string;
  readonly headers?: Readonly<Record<string, string>>;
}

/**
 * Explains the verdict for `source` on a segment.
 * @param policy - the segment's compiled policy
 * @param source - IPv4 or IPv6 address text (IPv4-mapped IPv6 is normalised)
 * @param request - HTTP attributes; without them an L7 connection is reported as `l7` and the
 *   verdict is allow only when an unconditional allow matched
 * @param where - maps (kind, index) to `file:line:col` of the rule
 * @param quarantine - the quarantine set, checked first
 */
export function explainVerdict(
  policy: SegmentPolicy,
  source: string,
  request: ExplainRequest | undefined,
  where: (kind: 'allow' | 'deny', index: number) => string,
  quarantine?: Quarantine,
): Explanation {
  const addr = normaliseSource(source);
  const describe = (id: number): ExplainedRule | null => {
    const r = policy.rules[id];
    if (id === DEFAULT_DENY_RULE || !r) return null;
    return { name: r.name, kind: r.kind, where: where(r.kind, r.index), l7: r.l7 !== null };
  };
  const record = policy.lookup(addr);
  const matchedRules = record.matched.map((id) => describe(id) as ExplainedRule);
  const base = { segment: policy.segment, mode: policy.mode, source: addr, matchedRules };
  const q = quarantine?.match(addr);
  if (q) {
    return {
      ...base,
      verdict: 'deny',
      enforced: true,
      connection: 'deny',
      decidingRule: null,
      reason: `quarantined (${q.cidr}): ${q.reason}`,
    };
  }
  const enforced = (allowed: boolean) => allowed || policy.mode === 'enforce';
  if (record.verdict === VERDICT_DENY) {
    const reason =
      record.rule === DEFAULT_DENY_RULE
        ? 'no allow rule covers this source (default deny)'
        : 'a deny rule covers this source';
    return {
      ...base,
      verdict: 'deny',
      enforced: enforced(false),
      connection: 'deny',
      decidingRule: describe(record.rule),
      reason,
    };
  }
  if (record.verdict === VERDICT_ALLOW) {
    return {
      ...base,
      verdict: 'allow',
      enforced: true,
      connection: 'allow',
      decidingRule: describe(record.rule),
      reason: 'an allow rule covers this source',
    };
  }
  if (record.verdict === VERDICT_L7 && request) {
    const v = policy.judgeRequest(record, {
      method: (request.method ?? 'GET').toUpperCase(),
      path: normaliseRequestPath(request.path ?? '/'),
      rawPath: request.path ?? '/',
      host: requestHostName(request.host),
      headers: Object.fromEntries(
        Object.entries(request.headers ?? {}).map(([k, val]) => [k.toLowerCase(), val]),
      ),
    });
    const reason = v.allowed
      ? 'the request meets an allow rule'
      : v.rule === DEFAULT_DENY_RULE
        ? 'no allow rule matches this request (default deny)'
        : 'a deny rule matches this request';
    return {
      ...base,
      verdict: v.allowed ? 'allow' : 'deny',
      enforced: enforced(v.allowed),
      connection: 'l7',
      decidingRule: describe(v.rule),
      reason,
    };
  }
  const allowedWithoutRequest =
    record.unconditionalAllow !== DEFAULT_DENY_RULE && record.l7Denies.length === 0;
  return {
    ...base,
    verdict: allowedWithoutRequest ? 'allow' : 'deny',
    enforced: enforced(allowedWithoutRequest),
    connection: 'l7',
    // Without a request nothing has decided yet: only an unconditional allow is a deciding rule.
    decidingRule: allowedWithoutRequest ? describe(record.unconditionalAllow) : null,
    reason:
      'the connection is accepted; each request is judged by L7 rules (give --method/--path/--host to judge one)',
  };
}
