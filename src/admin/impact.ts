// Impact before commit: `simulate` replays the recently observed sources of each segment against a
// candidate policy, and `lint` finds rules that cannot do what they look like they do.

import type { LoadedConfig, RuleConfig, SegmentConfig } from '../config/index.ts';
import { ANY_SOURCE } from '../config/index.ts';
import { type Cidr, cidrCovers, ipsetSize } from '../net/index.ts';
import type { ObservedSources } from '../observe/sources.ts';
import { compileSegmentPolicy, expandSources, type SegmentPolicy, VERDICT_DENY } from '../policy/index.ts';

/** One lint finding. */
export interface LintFinding {
  readonly segment: string;
  /** `allow[2]` or the rule's name. */
  readonly rule: string;
  readonly kind:
    | 'allow_too_wide'
    | 'shadowed_by_deny'
    | 'redundant_allow'
    | 'deny_without_effect'
    | 'skipped_large_rule';
  readonly message: string;
}

/** Rules with more prefixes than this are not compared pairwise (the check is O(n·m)). */
export const LINT_MAX_PREFIXES = 5000;

/**
 * Lints every segment of a config.
 * - allow_too_wide: an allow source wider than /8 (IPv4) or /32 (IPv6), `any` included;
 * - shadowed_by_deny: every source of an allow rule is covered by unconditional deny rules, so it never allows;
 * - redundant_allow: every source of an unconditional allow is covered by another unconditional allow
 *   (of two identical rules, the later one is reported);
 * - deny_without_effect: a deny rule overlaps no allow rule (default deny refuses those sources anyway).
 */
export function lintConfig(loaded: LoadedConfig): LintFinding[] {
  const out: LintFinding[] = [];
  for (const [name, seg] of Object.entries(loaded.config.segments))
    out.push(...lintSegment(name, seg, loaded));
  return out;
}

function lintSegment(segment: string, seg: SegmentConfig, loaded: LoadedConfig): LintFinding[] {
  const out: LintFinding[] = [];
  const label = (kind: string, r: RuleConfig, i: number) => r.name ?? `${kind}[${i}]`;
  const isL7 = (r: RuleConfig) =>
    r.methods !== undefined || r.paths !== undefined || r.hosts !== undefined || r.headers !== undefined;
  // A rule over more than LINT_MAX_PREFIXES prefixes is never expanded into an array (it is not
  // compared pairwise anyway): its CIDRs stay packed and only the too-wide scan walks them.
  const expand = (kind: 'allow' | 'deny', r: RuleConfig, i: number) => {
    const count = sourceCount(r.from, loaded.ipsets);
    return {
      r,
      i,
      name: label(kind, r, i),
      count,
      cidrs: count > LINT_MAX_PREFIXES ? LARGE : expandSources(r.from, loaded.ipsets),
    };
  };
  const allows = seg.allow.map((r, i) => expand('allow', r, i));
  const denies = seg.deny.map((r, i) => expand('deny', r, i));
  for (const a of allows) {
    for (const c of eachSource(a.r.from, loaded.ipsets)) {
      if ((c.family === 4 && c.prefixLength < 8) || (c.family === 6 && c.prefixLength < 32)) {
        out.push({
          segment,
          rule: a.name,
          kind: 'allow_too_wide',
          message: `allows ${c.text}, wider than /${c.family === 4 ? 8 : 32}`,
        });
        break;
      }
    }
  }
  const big = (cidrs: readonly Cidr[]) => cidrs === LARGE || cidrs.length > LINT_MAX_PREFIXES;
  const hardDenies = denies.filter((d) => !isL7(d.r));
  const hardDenyCidrs = hardDenies.some((d) => d.cidrs === LARGE)
    ? LARGE
    : hardDenies.flatMap((d) => d.cidrs);
  // Redundant unconditional allows, judged from the last rule to the first: of two rules listing the
  // same sources, only the later one is reported, and a reported rule covers nothing for the rest
  // (else two identical rules would each hide behind the other, or both be reported).
  const plain = allows.filter((o) => !isL7(o.r));
  const redundant = new Set<(typeof allows)[number]>();
  for (let k = plain.length - 1; k >= 0; k--) {
    const a = plain[k] as (typeof allows)[number];
    const rest = plain.filter((o) => o !== a && !redundant.has(o));
    const others = rest.some((o) => o.cidrs === LARGE) ? LARGE : rest.flatMap((o) => o.cidrs);
    if (
      !big(others) &&
      !big(a.cidrs) &&
      a.cidrs.length > 0 &&
      a.cidrs.every((c) => others.some((o) => cidrCovers(o, c)))
    )
      redundant.add(a);
  }
  const hardDenyCount = hardDenies.reduce((n, d) => n + d.count, 0);
  for (const a of allows) {
    if (big(a.cidrs) || big(hardDenyCidrs)) {
      out.push({
        segment,
        rule: a.name,
        kind: 'skipped_large_rule',
        message: big(a.cidrs)
          ? `${a.count} prefixes, more than ${LINT_MAX_PREFIXES}: not compared`
          : `not compared with the deny rules: they hold ${hardDenyCount} prefixes, more than ${LINT_MAX_PREFIXES}`,
      });
      continue;
    }
    if (a.cidrs.length > 0 && a.cidrs.every((c) => hardDenyCidrs.some((d) => cidrCovers(d, c)))) {
      out.push({
        segment,
        rule: a.name,
        kind: 'shadowed_by_deny',
        message: 'every source is covered by a deny rule: this rule never allows anything',
      });
      continue;
    }
    if (redundant.has(a)) {
      out.push({
        segment,
        rule: a.name,
        kind: 'redundant_allow',
        message: 'every source is already allowed by another allow rule',
      });
    }
  }
  const allowCidrs = allows.some((a) => a.cidrs === LARGE) ? LARGE : allows.flatMap((a) => a.cidrs);
  for (const d of denies) {
    if (big(d.cidrs) || big(allowCidrs)) continue;
    const overlaps = d.cidrs.some((c) => allowCidrs.some((a) => cidrCovers(a, c) || cidrCovers(c, a)));
    if (!overlaps) {
      out.push({
        segment,
        rule: d.name,
        kind: 'deny_without_effect',
        message: 'overlaps no allow rule: default deny already refuses these sources',
      });
    }
  }
  return out;
}

/** What a candidate policy would change for one segment's recently seen sources. */
export interface SegmentImpact {
  readonly segment: string;
  readonly sourcesReplayed: number;
  readonly newlyDenied: readonly { source: string; connections: number }[];
  readonly newlyAllowed: readonly { source: string; connections: number }[];
  readonly connectionsNewlyDenied: number;
  readonly connectionsNewlyAllowed: number;
}

/**
 * Replays the sources seen on each segment in the last `windowMs` against the candidate config's
 * policies (connection-level verdicts; L7-judged sources count as allowed at accept).
 * @param current - the running policies by segment
 * @param candidate - the candidate config (validated)
 * @param observed - the recent-sources log
 * @param windowMs - how far back to replay, ms
 */
export function simulateImpact(
  current: ReadonlyMap<string, SegmentPolicy>,
  candidate: LoadedConfig,
  observed: ObservedSources,
  windowMs: number,
  now = Date.now(),
): SegmentImpact[] {
  const out: SegmentImpact[] = [];
  for (const [name, seg] of Object.entries(candidate.config.segments)) {
    const next = compileSegmentPolicy(name, seg, candidate.ipsets);
    const cur = current.get(name);
    const sources = observed.recent(name, now - windowMs);
    const newlyDenied: { source: string; connections: number }[] = [];
    const newlyAllowed: { source: string; connections: number }[] = [];
    for (const s of sources) {
      const was = cur ? cur.lookup(s.source).verdict !== VERDICT_DENY || cur.mode === 'audit' : false;
      const will = next.lookup(s.source).verdict !== VERDICT_DENY || next.mode === 'audit';
      if (was && !will) newlyDenied.push({ source: s.source, connections: s.connections });
      else if (!was && will) newlyAllowed.push({ source: s.source, connections: s.connections });
    }
    out.push({
      segment: name,
      sourcesReplayed: sources.length,
      newlyDenied,
      newlyAllowed,
      connectionsNewlyDenied: newlyDenied.reduce((n, s) => n + s.connections, 0),
      connectionsNewlyAllowed: newlyAllowed.reduce((n, s) => n + s.connections, 0),
    });
  }
  return out;
}

/** Stands for the CIDRs of a rule too large to expand (see lintSegment). */
const LARGE: readonly Cidr[] = Object.freeze([]);

/** Prefixes a rule's sources expand to, counted without expanding IP sets. */
function sourceCount(sources: readonly string[], ipsets: ReadonlyMap<string, readonly Cidr[]>): number {
  let n = 0;
  for (const src of sources) {
    if (src === ANY_SOURCE) n += 2;
    else if (ipsets.has(src)) n += ipsetSize(ipsets, src);
    else n += 1;
  }
  return n;
}

/** A rule's sources one at a time (IP sets decoded one list at a time, as expandSources would). */
function* eachSource(
  sources: readonly string[],
  ipsets: ReadonlyMap<string, readonly Cidr[]>,
): Generator<Cidr> {
  for (const src of sources) yield* expandSources([src], ipsets);
}
