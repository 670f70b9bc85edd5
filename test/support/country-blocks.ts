// Loads the real per-country prefix lists (bench/data/country-ip-blocks, CC0) for the radix tests
// and benchmark: one value per country, both families, parsed with the project's own parser.

import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { CidrV4, CidrV6 } from '../../src/net/index.ts';
import { parseCidrList } from '../../src/net/index.ts';

/** Folder holding ipv4/<cc>.cidr and ipv6/<cc>.cidr. */
export const COUNTRY_BLOCKS_DIR = fileURLToPath(
  new URL('../../bench/data/country-ip-blocks/', import.meta.url),
);

/** The whole data set: prefixes with the index (into `codes`) of their country. */
export interface CountryBlocks {
  /** ISO 3166 codes, sorted; a prefix's value is its country's index here. */
  codes: string[];
  v4: CidrV4[];
  v4Country: number[];
  v6: CidrV6[];
  v6Country: number[];
  /** Wall time spent in parseCidrList, ms. */
  parseMs: number;
  /** Lines parsed. */
  lines: number;
}

/**
 * Reads and parses every list. Throws if any line fails to parse (the data set is clean).
 */
export function loadCountryBlocks(): CountryBlocks {
  const codes = [
    ...new Set([...readdirSync(`${COUNTRY_BLOCKS_DIR}ipv4`), ...readdirSync(`${COUNTRY_BLOCKS_DIR}ipv6`)]),
  ]
    .filter((f) => f.endsWith('.cidr'))
    .map((f) => f.slice(0, -5))
    .sort();
  const out: CountryBlocks = { codes, v4: [], v4Country: [], v6: [], v6Country: [], parseMs: 0, lines: 0 };
  for (const family of ['ipv4', 'ipv6'] as const) {
    codes.forEach((code, index) => {
      let text: string;
      try {
        text = readFileSync(`${COUNTRY_BLOCKS_DIR}${family}/${code}.cidr`, 'utf8');
      } catch {
        return; // a country with no list in this family
      }
      const t0 = performance.now();
      const list = parseCidrList(text);
      out.parseMs += performance.now() - t0;
      if (list.errorCount > 0) throw new Error(`${family}/${code}.cidr: ${JSON.stringify(list.errors[0])}`);
      out.lines += list.cidrs.length;
      for (const c of list.cidrs) {
        if (c.family === 4) {
          out.v4.push(c);
          out.v4Country.push(index);
        } else {
          out.v6.push(c);
          out.v6Country.push(index);
        }
      }
    });
  }
  return out;
}
