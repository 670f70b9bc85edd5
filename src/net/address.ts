// IPv4/IPv6 address parsing, formatting and source normalisation, without regexes or per-call arrays.
// Addresses are numbers: IPv4 is one unsigned 32-bit integer, IPv6 is four big-endian 32-bit words.

import { NetError } from '../errors.ts';

/**
 * A parsed address, discriminated by `family`. IPv4-mapped IPv6 (`::ffff:a.b.c.d`) stays family 6
 * here; `normaliseSource` (for text) and `unmapV4` (for words) turn it into IPv4 where the caller
 * wants one family per client, as seglb does at accept.
 */
export type Address = AddressV4 | AddressV6;

/** An IPv4 address: `v4` is the unsigned 32-bit value (`10.0.0.1` → `0x0a000001`). */
export interface AddressV4 {
  readonly family: 4;
  readonly v4: number;
}

/** An IPv6 address: `v6` holds 4 big-endian 32-bit words (`2001:db8::1` → `[0x20010db8, 0, 0, 1]`). */
export interface AddressV6 {
  readonly family: 6;
  readonly v6: Uint32Array;
}

// Scratch for the 8 16-bit groups of an IPv6 address being parsed. Module-level on purpose: parsing is
// synchronous and never re-entered, and this keeps parseIPv6 allocation-free.
const groups = new Int32Array(8);

/**
 * Parses the dotted-quad IPv4 address in `s[start..end)`.
 * Exactly four decimal octets 0..255; leading zeros are rejected (`010.0.0.1` is octal to some
 * resolvers and decimal to others, so accepting it invites allow-list bypasses), as are signs,
 * spaces and anything after the last octet.
 * @returns the address as an unsigned 32-bit integer, or -1 when the text is not an IPv4 address
 */
export function parseIPv4Range(s: string, start: number, end: number): number {
  if (end - start < 7 || end - start > 15) return -1;
  let acc = 0;
  let octet = 0;
  let digits = 0;
  let dots = 0;
  for (let i = start; i < end; i++) {
    const c = s.charCodeAt(i);
    if (c >= 48 && c <= 57) {
      if (digits > 0 && octet === 0) return -1; // leading zero
      octet = octet * 10 + (c - 48);
      if (octet > 255) return -1;
      digits++;
    } else if (c === 46) {
      if (digits === 0 || dots === 3) return -1;
      acc = acc * 256 + octet;
      octet = 0;
      digits = 0;
      dots++;
    } else {
      return -1;
    }
  }
  if (dots !== 3 || digits === 0) return -1;
  return (acc * 256 + octet) >>> 0;
}

/**
 * Parses a dotted-quad IPv4 address (`'192.0.2.1'`).
 * @returns the address as an unsigned 32-bit integer (0..2^32-1), or -1 when `s` is not exactly a
 *   dotted-quad IPv4 address (see parseIPv4Range for the accepted syntax). Never throws.
 */
export function parseIPv4(s: string): number {
  return parseIPv4Range(s, 0, s.length);
}

function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  const lower = c | 32;
  if (lower >= 97 && lower <= 102) return lower - 87;
  return -1;
}

/**
 * Parses the IPv6 address in `s[start..end)` into `out[0..3]` (big-endian 32-bit words).
 * Accepts RFC 4291 §2.2 text: 1–4 hex digits per group (any case), one `::`, and a dotted IPv4 tail
 * in the last 32 bits (`::ffff:192.0.2.1`). With `allowZone`, a non-empty `%zone` suffix
 * (RFC 4007 §11, `fe80::1%eth0`) is accepted and ignored; without it `%` is an error.
 * @param out - at least 4 elements; only written when the result is true
 * @returns true when the text is a valid IPv6 address
 */
export function parseIPv6Range(
  s: string,
  start: number,
  end: number,
  out: Uint32Array,
  allowZone: boolean,
): boolean {
  let stop = end;
  if (allowZone) {
    for (let i = start; i < end; i++) {
      if (s.charCodeAt(i) === 37) {
        if (i + 1 === end) return false; // empty zone
        stop = i;
        break;
      }
    }
  }
  if (stop - start < 2) return false;
  let n = 0; // groups parsed
  let gap = -1; // index in `groups` where `::` stands
  let i = start;
  if (s.charCodeAt(i) === 58) {
    if (s.charCodeAt(i + 1) !== 58) return false; // a single leading colon
    gap = 0;
    i += 2;
  }
  while (i < stop) {
    const groupStart = i;
    let value = 0;
    let digits = 0;
    while (i < stop) {
      const h = hexValue(s.charCodeAt(i));
      if (h < 0) break;
      if (++digits > 4) return false;
      value = value * 16 + h;
      i++;
    }
    if (digits === 0) return false;
    if (i < stop && s.charCodeAt(i) === 46) {
      // Embedded IPv4: must be the last 32 bits.
      if (n > 6) return false;
      const v4 = parseIPv4Range(s, groupStart, stop);
      if (v4 < 0) return false;
      groups[n++] = v4 >>> 16;
      groups[n++] = v4 & 0xffff;
      i = stop;
      break;
    }
    if (n === 8) return false;
    groups[n++] = value;
    if (i === stop) break;
    if (s.charCodeAt(i) !== 58) return false;
    i++;
    if (i < stop && s.charCodeAt(i) === 58) {
      if (gap >= 0) return false; // a second `::`
      gap = n;
      i++;
    } else if (i === stop) {
      return false; // a single trailing colon
    }
  }
  if (gap < 0 ? n !== 8 : n > 7) return false;
  // Expand the `::` gap: groups [0, gap) stay, the rest move to the end, zeros fill the middle.
  const missing = 8 - n;
  for (let w = 0; w < 4; w++) {
    const hi = groupAt(2 * w, gap, missing);
    const lo = groupAt(2 * w + 1, gap, missing);
    out[w] = ((hi << 16) | lo) >>> 0;
  }
  return true;
}

function groupAt(k: number, gap: number, missing: number): number {
  if (gap < 0 || k < gap) return groups[k]!;
  if (k < gap + missing) return 0;
  return groups[k - missing]!;
}

/**
 * Parses an IPv6 address (`'2001:db8::1'`, `'::ffff:192.0.2.1'`, `'fe80::1%eth0'`) into 4
 * big-endian 32-bit words. A zone id is accepted and ignored. No BigInt, no allocation.
 * @param out - receives the words in out[0..3]; left untouched when the result is false
 * @returns true when `s` is a valid IPv6 address
 */
export function parseIPv6(s: string, out: Uint32Array): boolean {
  return parseIPv6Range(s, 0, s.length, out, true);
}

/**
 * Unmaps an IPv4-mapped IPv6 address (`::ffff:0:0/96`, RFC 4291 §2.5.5.2).
 * @param words - 4 big-endian 32-bit words
 * @returns the embedded IPv4 address (unsigned 32-bit), or -1 when the address is not IPv4-mapped
 */
export function unmapV4(words: ArrayLike<number>): number {
  if (words[0] === 0 && words[1] === 0 && words[2] === 0xffff) return (words[3] ?? 0) >>> 0;
  return -1;
}

/**
 * Turns a socket's `remoteAddress` into the form seglb matches on: `::ffff:a.b.c.d` (any case of
 * `ffff`) becomes `a.b.c.d`; anything else is returned unchanged (the same string). A dual-stack
 * listener reports IPv4 clients this way (libuv's inet_ntop always writes the mapped form like
 * this), and unmapping once at accept lets IPv4 rules match them. Cheap: a length check and a few
 * char codes for non-mapped input.
 */
export function normaliseSource(remoteAddress: string): string {
  const len = remoteAddress.length;
  // '::ffff:' is 7 characters, a dotted quad 7..15.
  if (len < 14 || len > 22) return remoteAddress;
  if (
    remoteAddress.charCodeAt(0) !== 58 ||
    remoteAddress.charCodeAt(1) !== 58 ||
    (remoteAddress.charCodeAt(2) | 32) !== 102 ||
    (remoteAddress.charCodeAt(3) | 32) !== 102 ||
    (remoteAddress.charCodeAt(4) | 32) !== 102 ||
    (remoteAddress.charCodeAt(5) | 32) !== 102 ||
    remoteAddress.charCodeAt(6) !== 58
  ) {
    return remoteAddress;
  }
  if (parseIPv4Range(remoteAddress, 7, len) < 0) return remoteAddress;
  return remoteAddress.slice(7);
}

/**
 * Formats an unsigned (or signed, it is reinterpreted) 32-bit integer as a dotted quad.
 * @example formatIPv4(0xc0000201) === '192.0.2.1'
 */
export function formatIPv4(n: number): string {
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

/**
 * Formats 4 big-endian 32-bit words as canonical IPv6 text (RFC 5952 §4): lowercase hex without
 * leading zeros, the longest run of two or more zero groups compressed to `::` (the first run on a
 * tie), a single zero group never compressed. IPv4-mapped addresses are written with a dotted tail
 * (`::ffff:192.0.2.1`, RFC 5952 §5), as Node and inet_ntop write them.
 */
export function formatIPv6(words: ArrayLike<number>): string {
  const w0 = (words[0] ?? 0) >>> 0;
  const w1 = (words[1] ?? 0) >>> 0;
  const w2 = (words[2] ?? 0) >>> 0;
  const w3 = (words[3] ?? 0) >>> 0;
  if (w0 === 0 && w1 === 0 && w2 === 0xffff) return `::ffff:${formatIPv4(w3)}`;
  groups[0] = w0 >>> 16;
  groups[1] = w0 & 0xffff;
  groups[2] = w1 >>> 16;
  groups[3] = w1 & 0xffff;
  groups[4] = w2 >>> 16;
  groups[5] = w2 & 0xffff;
  groups[6] = w3 >>> 16;
  groups[7] = w3 & 0xffff;
  let bestStart = -1;
  let bestLen = 1; // runs of one group are not compressed
  let runStart = -1;
  for (let k = 0; k <= 8; k++) {
    if (k < 8 && groups[k] === 0) {
      if (runStart < 0) runStart = k;
    } else if (runStart >= 0) {
      if (k - runStart > bestLen) {
        bestStart = runStart;
        bestLen = k - runStart;
      }
      runStart = -1;
    }
  }
  let text = '';
  for (let k = 0; k < 8; k++) {
    if (k === bestStart) {
      text += '::';
      k += bestLen - 1;
      continue;
    }
    if (text.length > 0 && k !== bestStart + bestLen) text += ':';
    text += groups[k]!.toString(16);
  }
  return text;
}

/**
 * Parses an IPv4 or IPv6 address (zone ids accepted and ignored).
 * @returns `{ family: 4, v4 }` or `{ family: 6, v6 }` (a fresh Uint32Array(4))
 * @throws NetError SEGLB_NET_INVALID_ADDRESS when `s` is neither
 */
export function parseAddress(s: string): Address {
  const v4 = parseIPv4(s);
  if (v4 >= 0) return { family: 4, v4 };
  const v6 = new Uint32Array(4);
  if (parseIPv6(s, v6)) return { family: 6, v6 };
  throw new NetError('SEGLB_NET_INVALID_ADDRESS', `${JSON.stringify(s)} is not a valid IPv4 or IPv6 address`);
}

/** Formats an Address back to canonical text (dotted quad or RFC 5952). */
export function formatAddress(a: Address): string {
  return a.family === 4 ? formatIPv4(a.v4) : formatIPv6(a.v6);
}
