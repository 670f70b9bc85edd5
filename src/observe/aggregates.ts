// Per-segment traffic aggregates by source group (IPv4 /24, IPv6 /64) and verdict: who talks to a
// segment and what is refused, without keeping every address. Bounded: the least recently seen
// group is evicted first. IPv4 groups are keyed by number, so counting allocates nothing.

import { formatIPv4, formatIPv6, parseIPv4, parseIPv6 } from '../net/index.ts';
import { FLOW_AUDIT, FLOW_DENY, type FlowVerdict } from './flow-ring.ts';

/** Counts of one source group on one segment. */
export interface SourceGroupCounts {
  /** `192.0.2.0/24` or `2001:db8:1:2::/64`. */
  readonly group: string;
  readonly allow: number;
  readonly deny: number;
  readonly audit: number;
  /** ms since the epoch. */
  readonly firstSeen: number;
  readonly lastSeen: number;
}

class GroupEntry {
  allow = 0;
  deny = 0;
  audit = 0;
  firstSeen: number;
  lastSeen: number;
  constructor(now: number) {
    this.firstSeen = now;
    this.lastSeen = now;
  }
}

const scratch = new Uint32Array(4);

/** One segment's source groups. */
export class SourceGroups {
  readonly #v4 = new Map<number, GroupEntry>();
  readonly #v6 = new Map<string, GroupEntry>();
  readonly #max: number;

  /** @param maxGroups - groups remembered (both families together) */
  constructor(maxGroups: number) {
    this.#max = maxGroups;
  }

  get size(): number {
    return this.#v4.size + this.#v6.size;
  }

  /** Counts one flow from `source` (normalised address text). */
  count(source: string, verdict: FlowVerdict, now: number): void {
    if (this.#max === 0) return;
    const v4 = parseIPv4(source);
    let e: GroupEntry | undefined;
    if (v4 >= 0) {
      const key = v4 >>> 8;
      e = this.#v4.get(key);
      if (e === undefined) {
        this.#evict();
        e = new GroupEntry(now);
      } else this.#v4.delete(key);
      this.#v4.set(key, e); // re-insert: Map order is recency order
    } else if (parseIPv6(source, scratch)) {
      const key = `${scratch[0]}:${scratch[1]}`;
      e = this.#v6.get(key);
      if (e === undefined) {
        this.#evict();
        e = new GroupEntry(now);
      } else this.#v6.delete(key);
      this.#v6.set(key, e);
    } else return;
    e.lastSeen = now;
    if (verdict === FLOW_DENY) e.deny++;
    else if (verdict === FLOW_AUDIT) e.audit++;
    else e.allow++;
  }

  /** Every group, busiest first. */
  list(): SourceGroupCounts[] {
    const out: SourceGroupCounts[] = [];
    for (const [k, e] of this.#v4) out.push(view(`${formatIPv4(k << 8)}/24`, e));
    for (const [k, e] of this.#v6) {
      const [hi, lo] = k.split(':').map(Number) as [number, number];
      out.push(view(`${formatIPv6([hi, lo, 0, 0])}/64`, e));
    }
    return out.sort((a, b) => b.allow + b.deny + b.audit - (a.allow + a.deny + a.audit));
  }

  #evict(): void {
    if (this.size < this.#max) return;
    // Evict from the family holding the older least-recent entry.
    const a = this.#v4.entries().next().value;
    const b = this.#v6.entries().next().value;
    if (a && (!b || a[1].lastSeen <= b[1].lastSeen)) this.#v4.delete(a[0]);
    else if (b) this.#v6.delete(b[0]);
  }
}

function view(group: string, e: GroupEntry): SourceGroupCounts {
  return {
    group,
    allow: e.allow,
    deny: e.deny,
    audit: e.audit,
    firstSeen: e.firstSeen,
    lastSeen: e.lastSeen,
  };
}
