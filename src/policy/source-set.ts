// A compiled set of source prefixes (trusted proxies, PROXY-protocol peers, quarantine) answering
// "is this address inside?" with one radix walk; built once, never mutated.

import { ANY_SOURCE, isIpSetName } from '../config/validate.ts';
import { formatIPv4, parseIPv4, parseIPv6, unmapV4 } from '../net/address.ts';
import { type Cidr, parseCidr } from '../net/cidr.ts';
import { RadixBuilder, type RadixTable } from './radix.ts';

const KEEP_FIRST = { merge: (a: number) => a, inherit: (_ancestor: number, own: number) => own };
const scratch = new Uint32Array(4);

/**
 * An IPv4-mapped IPv6 prefix (inside `::ffff:0:0/96`, RFC 4291 §2.5.5.2) as the IPv4 prefix it
 * means; any other prefix unchanged. Sources are unmapped once at accept (`::ffff:10.1.2.3` is judged
 * as `10.1.2.3`), so a prefix written `::ffff:10.0.0.0/104` must become `10.0.0.0/8`, or it would
 * silently never match anything.
 */
export function unmapCidr(c: Cidr): Cidr {
  if (c.family !== 6 || c.prefixLength < 96) return c;
  const v4 = unmapV4(c.v6);
  return v4 < 0 ? c : parseCidr(`${formatIPv4(v4)}/${c.prefixLength - 96}`);
}

/**
 * Expands rule sources (CIDRs, addresses, IP-set names, `any`) into CIDRs.
 * @param sources - as written in the config (already validated)
 * @param ipsets - resolved IP sets by name
 * @returns the CIDRs, both families mixed; IPv4-mapped IPv6 prefixes as IPv4 (see unmapCidr)
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
      for (const c of ipsets.get(src) ?? []) out.push(unmapCidr(c));
    } else {
      out.push(unmapCidr(parseCidr(src)));
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
   * @param cidrs - prefixes; a CIDR's value is its index in this array (for quarantine entries).
   *   IPv4-mapped IPv6 prefixes are stored as IPv4 (see unmapCidr), since lookups take unmapped sources.
   */
  constructor(cidrs: readonly Cidr[]) {
    const b4 = new RadixBuilder(4);
    const b6 = new RadixBuilder(6);
    cidrs.forEach((mapped, i) => {
      const c = unmapCidr(mapped);
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
