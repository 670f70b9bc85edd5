// A compiled set of source prefixes (trusted proxies, PROXY-protocol peers, quarantine) answering
// "is this address inside?" with one radix walk; built once, never mutated.

import { ANY_SOURCE, isIpSetName } from '../config/validate.ts';
import { parseIPv4, parseIPv6 } from '../net/address.ts';
import { type Cidr, parseCidr } from '../net/cidr.ts';
import { RadixBuilder, type RadixTable } from './radix.ts';

const KEEP_FIRST = { merge: (a: number) => a, inherit: (_ancestor: number, own: number) => own };
const scratch = new Uint32Array(4);

/**
 * Expands rule sources (CIDRs, addresses, IP-set names, `any`) into CIDRs.
 * @param sources - as written in the config (already validated)
 * @param ipsets - resolved IP sets by name
 * @returns the CIDRs, both families mixed
 */
export function expandSources(
  sources: readonly string[],
  ipsets: ReadonlyMap<string, readonly Cidr[]>,
): Cidr[] {
  const out: Cidr[] = [];
  for (const src of sources) {
    if (src === ANY_SOURCE) {
      out.push(parseCidr('0.0.0.0/0'), parseCidr('::/0'));
    } else if (isIpSetName(src)) {
      for (const c of ipsets.get(src) ?? []) out.push(c);
    } else {
      out.push(parseCidr(src));
    }
  }
  return out;
}

/**
 * An immutable set of prefixes with a value per prefix (the index of the entry that added it).
 * Lookup cost: one radix walk; an empty set answers without parsing the address.
 */
export class SourceSet {
  readonly #v4: RadixTable;
  readonly #v6: RadixTable;
  readonly size: number;
  /**
   * @param cidrs - prefixes; a CIDR's value is its index in this array (for quarantine entries)
   */
  constructor(cidrs: readonly Cidr[]) {
    const b4 = new RadixBuilder(4);
    const b6 = new RadixBuilder(6);
    cidrs.forEach((c, i) => {
      if (c.family === 4) b4.insert(c, i);
      else b6.insert(c, i);
    });
    this.#v4 = b4.build(KEEP_FIRST);
    this.#v6 = b6.build(KEEP_FIRST);
    this.size = cidrs.length;
  }

  /**
   * Longest-prefix match of a normalised source address (no `::ffff:` prefix).
   * @returns the index of the matching CIDR, or -1 when none covers the address (or it is not an IP)
   */
  lookup(source: string): number {
    if (this.size === 0) return -1;
    const v4 = parseIPv4(source);
    if (v4 >= 0) return this.#v4.lookupV4(v4);
    if (!parseIPv6(source, scratch)) return -1;
    return this.#v6.lookupV6(
      scratch[0] as number,
      scratch[1] as number,
      scratch[2] as number,
      scratch[3] as number,
    );
  }

  /** True when the address is inside the set. */
  has(source: string): boolean {
    return this.lookup(source) >= 0;
  }
}

/** The set with no members; `has()` is always false. */
export const EMPTY_SOURCE_SET = new SourceSet([]);
