// CIDR prefixes: a fast strict parser (single strings and blocklist-style files), containment checks.
// Canonical means host bits clear, no leading zeros, RFC 5952 IPv6 text; anything else is rejected
// with a message naming the canonical form, so a typo in an allow list never widens it silently.

import { NetError } from '../errors.ts';
import type { Address } from './address.ts';
import {
  formatIPv4,
  formatIPv6,
  normaliseSource,
  parseIPv4,
  parseIPv4Range,
  parseIPv6,
  parseIPv6Range,
} from './address.ts';

/** A CIDR prefix, discriminated by `family`. `text` is its canonical form (`10.0.0.0/8`, `2001:db8::/32`). */
export type Cidr = CidrV4 | CidrV6;

/** An IPv4 prefix: `v4` is the network address as an unsigned 32-bit integer, host bits zero. */
export interface CidrV4 {
  readonly family: 4;
  /** 0..32 */
  readonly prefixLength: number;
  readonly v4: number;
  readonly text: string;
}

/** An IPv6 prefix: `v6` is the network address as 4 big-endian 32-bit words, host bits zero. */
export interface CidrV6 {
  readonly family: 6;
  /** 0..128 */
  readonly prefixLength: number;
  readonly v6: Uint32Array;
  readonly text: string;
}

/** Options of parseCidr and parseCidrList. */
export interface ParseCidrOptions {
  /**
   * Accept prefixes with host bits set and clear them (`10.1.2.3/8` → `10.0.0.0/8`), as `ipset`
   * and ip-cidr do. Default false: such a prefix throws SEGLB_NET_NONCANONICAL_CIDR.
   */
  allowHostBits?: boolean;
}

/** Options of parseCidrList. */
export interface ParseCidrListOptions extends ParseCidrOptions {
  /** Stop recording errors after this many (errorCount still counts them all). Default 1000. */
  maxErrors?: number;
}

/** One rejected line of a CIDR list. */
export interface CidrListError {
  /** 1-based line number. */
  line: number;
  /** 1-based column (UTF-16 code units) of the offending text. */
  col: number;
  message: string;
  /** SEGLB_NET_INVALID_CIDR or SEGLB_NET_NONCANONICAL_CIDR. */
  code: 'SEGLB_NET_INVALID_CIDR' | 'SEGLB_NET_NONCANONICAL_CIDR';
}

/** Result of parseCidrList: the prefixes in file order, and the first `maxErrors` errors. */
export interface CidrList {
  cidrs: Cidr[];
  errors: CidrListError[];
  /** Total number of bad lines, including those beyond `maxErrors`. */
  errorCount: number;
}

/** Default of ParseCidrListOptions.maxErrors. */
export const DEFAULT_MAX_LIST_ERRORS = 1000;

// Scan outcome codes (plain numbers: the scanner is on the hot path of big lists, no throwing there).
const OK = 0;
const BAD_ADDRESS = 1;
const BAD_LENGTH = 2;
const HOST_BITS = 3;

// Scratch written by scanCidr (synchronous, never re-entered).
let scanFamily: 4 | 6 = 4;
let scanLength = 0;
let scanV4 = 0;
let scanSlash = false;
let scanHostBits = false;
const scanV6 = new Uint32Array(4);

/** Network mask of an IPv4 prefix length 0..32, as an unsigned 32-bit integer. */
export function maskV4(prefixLength: number): number {
  return prefixLength === 0 ? 0 : (-1 << (32 - prefixLength)) >>> 0;
}

/** Mask of word `w` (0..3) of an IPv6 prefix length 0..128. */
function maskV6Word(prefixLength: number, w: number): number {
  const bits = prefixLength - 32 * w;
  if (bits <= 0) return 0;
  if (bits >= 32) return 0xffffffff;
  return (-1 << (32 - bits)) >>> 0;
}

/** Scans `s[start..end)` as `address[/length]` into the scan scratch. */
function scanCidr(s: string, start: number, end: number, allowHostBits: boolean): number {
  let slash = -1;
  let colon = false;
  for (let i = start; i < end; i++) {
    const c = s.charCodeAt(i);
    if (c === 47) {
      slash = i;
      break;
    }
    if (c === 58) colon = true;
  }
  const addrEnd = slash < 0 ? end : slash;
  scanSlash = slash >= 0;
  const maxLength = colon ? 128 : 32;
  let length = maxLength;
  if (slash >= 0) {
    const digits = end - slash - 1;
    if (digits < 1 || digits > 3) return BAD_LENGTH;
    length = 0;
    for (let i = slash + 1; i < end; i++) {
      const c = s.charCodeAt(i);
      if (c < 48 || c > 57) return BAD_LENGTH;
      if (i > slash + 1 && length === 0) return BAD_LENGTH; // leading zero
      length = length * 10 + (c - 48);
    }
    if (length > maxLength) return BAD_LENGTH;
  }
  scanLength = length;
  if (!colon) {
    const v4 = parseIPv4Range(s, start, addrEnd);
    if (v4 < 0) return BAD_ADDRESS;
    scanFamily = 4;
    const network = (v4 & maskV4(length)) >>> 0;
    scanV4 = network;
    scanHostBits = network !== v4;
    return scanHostBits && !allowHostBits ? HOST_BITS : OK;
  }
  if (!parseIPv6Range(s, start, addrEnd, scanV6, false)) return BAD_ADDRESS;
  scanFamily = 6;
  let hostBits = false;
  for (let w = 0; w < 4; w++) {
    const word = scanV6[w]!;
    const network = (word & maskV6Word(length, w)) >>> 0;
    if (network !== word) {
      hostBits = true;
      scanV6[w] = network;
    }
  }
  scanHostBits = hostBits;
  return hostBits && !allowHostBits ? HOST_BITS : OK;
}

const CHUNK_WORDS = 4096;
let chunk = new Uint32Array(CHUNK_WORDS);
let chunkUsed = 0;

/** Builds a Cidr from the scan scratch. `exact`: the scanned text had no host bits to clear. */
function cidrFromScan(s: string, start: number, end: number, exact: boolean): Cidr {
  if (scanFamily === 4) {
    // Strict IPv4 text (no leading zeros anywhere) without host bits is already canonical: reuse it.
    let text: string;
    if (exact) {
      text = start === 0 && end === s.length ? s : s.slice(start, end);
      if (!scanSlash) text = `${text}/32`;
    } else {
      text = `${formatIPv4(scanV4)}/${scanLength}`;
    }
    return { family: 4, prefixLength: scanLength, v4: scanV4, text };
  }
  // Views into a shared chunk: one typed-array object per prefix instead of an object and its
  // own ArrayBuffer (3x cheaper for million-line lists). Each view is only ever its 4 words.
  if (chunkUsed === CHUNK_WORDS) {
    chunk = new Uint32Array(CHUNK_WORDS);
    chunkUsed = 0;
  }
  const v6 = chunk.subarray(chunkUsed, chunkUsed + 4);
  chunkUsed += 4;
  v6[0] = scanV6[0]!;
  v6[1] = scanV6[1]!;
  v6[2] = scanV6[2]!;
  v6[3] = scanV6[3]!;
  return { family: 6, prefixLength: scanLength, v6, text: `${formatIPv6(v6)}/${scanLength}` };
}

function canonicalText(): string {
  return scanFamily === 4 ? `${formatIPv4(scanV4)}/${scanLength}` : `${formatIPv6(scanV6)}/${scanLength}`;
}

function describe(status: number, token: string): string {
  const quoted = JSON.stringify(token);
  if (status === HOST_BITS) return `${token} has host bits set; did you mean ${canonicalText()}?`;
  if (status === BAD_LENGTH) {
    return `${quoted} is not a valid CIDR: the prefix length must be a decimal 0..32 (IPv4) or 0..128 (IPv6) without leading zeros`;
  }
  if (token.length === 0) return 'empty CIDR';
  return `${quoted} is not a valid CIDR: bad address (expected a.b.c.d[/len] or an IPv6 address[/len])`;
}

/**
 * Parses one CIDR prefix: `a.b.c.d/len`, `ipv6/len`, or a bare address (taken as /32 or /128).
 * Strict: no surrounding whitespace, no zone id, no leading zeros in octets or the length; IPv6
 * text may be in any valid RFC 4291 form (the result's `text` is canonical).
 * @returns a fresh Cidr object (its `v6` array is not shared)
 * @throws NetError SEGLB_NET_INVALID_CIDR for malformed text or an out-of-range length
 * @throws NetError SEGLB_NET_NONCANONICAL_CIDR when host bits are set (unless
 *   `options.allowHostBits`); the message names the canonical form:
 *   `10.1.2.3/8 has host bits set; did you mean 10.0.0.0/8?`
 */
export function parseCidr(s: string, options?: ParseCidrOptions): Cidr {
  const allowHostBits = options?.allowHostBits === true;
  const status = s.length === 0 ? BAD_ADDRESS : scanCidr(s, 0, s.length, allowHostBits);
  if (status === OK) return cidrFromScan(s, 0, s.length, !scanHostBits);
  throw new NetError(
    status === HOST_BITS ? 'SEGLB_NET_NONCANONICAL_CIDR' : 'SEGLB_NET_INVALID_CIDR',
    describe(status, s),
  );
}

function isSpace(c: number): boolean {
  // space, tab, CR, vertical tab, form feed, no-break space, BOM
  return c === 32 || c === 9 || c === 13 || c === 11 || c === 12 || c === 0xa0 || c === 0xfeff;
}

/**
 * Parses a blocklist-style text: one CIDR (or bare address) per line; `#` starts a comment (whole
 * line or trailing); blank lines and surrounding whitespace are ignored; LF or CRLF line ends.
 * Never throws on bad lines: each is reported and skipped, so one typo does not hide the others.
 * @returns the prefixes in file order and the errors (line/col 1-based), at most
 *   `options.maxErrors` (default 1000) recorded; `errorCount` counts them all
 */
export function parseCidrList(text: string, options?: ParseCidrListOptions): CidrList {
  const allowHostBits = options?.allowHostBits === true;
  const maxErrors = options?.maxErrors ?? DEFAULT_MAX_LIST_ERRORS;
  const cidrs: Cidr[] = [];
  const errors: CidrListError[] = [];
  let errorCount = 0;
  const n = text.length;
  let lineStart = 0;
  let line = 0;
  while (lineStart <= n) {
    line++;
    let lineEnd = text.indexOf('\n', lineStart);
    if (lineEnd < 0) lineEnd = n;
    let a = lineStart;
    while (a < lineEnd && isSpace(text.charCodeAt(a))) a++;
    if (a < lineEnd && text.charCodeAt(a) !== 35) {
      let b = a;
      while (b < lineEnd) {
        const c = text.charCodeAt(b);
        if (c === 35 || isSpace(c)) break;
        b++;
      }
      let rest = b;
      while (rest < lineEnd && isSpace(text.charCodeAt(rest))) rest++;
      let status: number;
      let col = a - lineStart + 1;
      let message = '';
      if (rest < lineEnd && text.charCodeAt(rest) !== 35) {
        status = BAD_ADDRESS;
        col = rest - lineStart + 1;
        message = `unexpected text after the CIDR ${JSON.stringify(text.slice(a, b))} (one CIDR per line; comments start with #)`;
      } else {
        status = scanCidr(text, a, b, allowHostBits);
        if (status === OK) {
          cidrs.push(cidrFromScan(text, a, b, !scanHostBits));
        } else {
          message = describe(status, text.slice(a, b));
        }
      }
      if (status !== OK) {
        errorCount++;
        if (errors.length < maxErrors) {
          errors.push({
            line,
            col,
            message,
            code: status === HOST_BITS ? 'SEGLB_NET_NONCANONICAL_CIDR' : 'SEGLB_NET_INVALID_CIDR',
          });
        }
      }
    }
    lineStart = lineEnd + 1;
  }
  return { cidrs, errors, errorCount };
}

/**
 * True when `addr` lies inside `c`. A string is normalised first (`::ffff:a.b.c.d` → `a.b.c.d`, zone
 * ids ignored) and text that is not an IP address is inside nothing. Different families never
 * match. A plain check, meant for short lists (backend_subnets), not for rule sets: those go
 * through the radix matcher.
 */
export function cidrContains(c: Cidr, addr: Address | string): boolean {
  if (typeof addr === 'string') {
    const text = normaliseSource(addr);
    if (c.family === 4) {
      const v4 = parseIPv4(text);
      return v4 >= 0 && (v4 & maskV4(c.prefixLength)) >>> 0 === c.v4;
    }
    if (!parseIPv6(text, containsScratch)) return false;
    return containsV6(c, containsScratch);
  }
  if (c.family === 4) {
    return addr.family === 4 && (addr.v4 & maskV4(c.prefixLength)) >>> 0 === c.v4;
  }
  return addr.family === 6 && containsV6(c, addr.v6);
}

const containsScratch = new Uint32Array(4);

function containsV6(c: CidrV6, words: Uint32Array): boolean {
  for (let w = 0; w < 4; w++) {
    if ((words[w]! & maskV6Word(c.prefixLength, w)) >>> 0 !== c.v6[w]) return false;
  }
  return true;
}

/** True when every address of `inner` lies inside `outer` (same family, outer no longer than inner). */
export function cidrCovers(outer: Cidr, inner: Cidr): boolean {
  if (outer.prefixLength > inner.prefixLength) return false;
  if (outer.family === 4) {
    return inner.family === 4 && (inner.v4 & maskV4(outer.prefixLength)) >>> 0 === outer.v4;
  }
  if (inner.family !== 6) return false;
  for (let w = 0; w < 4; w++) {
    if ((inner.v6[w]! & maskV6Word(outer.prefixLength, w)) >>> 0 !== outer.v6[w]) return false;
  }
  return true;
}
