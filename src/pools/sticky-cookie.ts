// Cookie-based session persistence with a signed value: the cookie names a backend by an HMAC of
// (pool, backend address) under a key only seglb holds, so a client can neither forge a value nor
// learn an address from it; a value that is not one of the pool's is ignored, never trusted.

import { createHmac } from 'node:crypto';

/**
 * One pool's sticky cookie. Values are precomputed per backend when the pool is built (HMAC-SHA256,
 * first 128 bits, base64url), so checking a request's cookie is one Map lookup: equivalent to
 * recomputing and comparing every backend's MAC, without per-request crypto. HAProxy's `cookie ...
 * insert` names the server in clear; Envoy's stateful session cookie carries the address (base64):
 * both let a client point itself at any backend, which this does not.
 */
export class StickyCookie {
  readonly name: string;
  readonly #byValue = new Map<string, string>();
  readonly #headerByAddress = new Map<string, string>();
  readonly #secureHeaderByAddress = new Map<string, string>();
  readonly #valueByAddress = new Map<string, string>();

  /**
   * @param pool - pool name (part of the MAC, so a cookie of one pool means nothing in another)
   * @param name - cookie name
   * @param key - HMAC key (≥ 16 bytes, checked by config validation)
   * @param addresses - backend addresses of the pool
   * @param maxAgeS - Max-Age attribute; 0 for a session cookie
   */
  constructor(pool: string, name: string, key: Buffer, addresses: readonly string[], maxAgeS: number) {
    this.name = name;
    const attrs = `; Path=/; HttpOnly; SameSite=Lax${maxAgeS > 0 ? `; Max-Age=${maxAgeS}` : ''}`;
    for (const address of addresses) {
      const value = createHmac('sha256', key)
        .update(`seglb-sticky\u0000${pool}\u0000${address}`)
        .digest()
        .subarray(0, 16)
        .toString('base64url');
      this.#byValue.set(value, address);
      this.#valueByAddress.set(address, value);
      this.#headerByAddress.set(address, `${name}=${value}${attrs}`);
      this.#secureHeaderByAddress.set(address, `${name}=${value}${attrs}; Secure`);
    }
  }

  /**
   * The backend address a request's Cookie header names, or null when the cookie is absent or its
   * value is not one this pool issued (tampered, from another key, or for a removed backend).
   * @param cookieHeader - the request's Cookie header (joined when repeated)
   */
  lookup(cookieHeader: string | undefined): string | null {
    if (cookieHeader === undefined) return null;
    const value = cookieValue(cookieHeader, this.name);
    return value === null ? null : (this.#byValue.get(value) ?? null);
  }

  /** The cookie value that names `address`, or undefined for an unknown address. */
  valueFor(address: string): string | undefined {
    return this.#valueByAddress.get(address);
  }

  /** The Set-Cookie header value that sticks a client to `address` (precomputed). */
  setCookieFor(address: string, secure: boolean): string | undefined {
    return (secure ? this.#secureHeaderByAddress : this.#headerByAddress).get(address);
  }
}

/**
 * Index of the first character of cookie `name`'s value in a Cookie header (RFC 6265 §4.2.1:
 * `name=value` pairs separated by `;` and optional spaces), or -1 when absent.
 */
export function findCookie(header: string, name: string): number {
  const n = name.length;
  let i = 0;
  const len = header.length;
  while (i < len) {
    while (i < len && (header.charCodeAt(i) === 32 || header.charCodeAt(i) === 9)) i++;
    if (header.startsWith(name, i) && header.charCodeAt(i + n) === 61 /* = */) return i + n + 1;
    const next = header.indexOf(';', i);
    if (next < 0) return -1;
    i = next + 1;
  }
  return -1;
}

/** End (exclusive) of the cookie value starting at `start`: the next `;` or the end of the header. */
export function cookieValueEnd(header: string, start: number): number {
  const semi = header.indexOf(';', start);
  let end = semi < 0 ? header.length : semi;
  while (end > start && (header.charCodeAt(end - 1) === 32 || header.charCodeAt(end - 1) === 9)) end--;
  return end;
}

/** The value of cookie `name` (surrounding double quotes removed), or null when absent. */
export function cookieValue(header: string, name: string): string | null {
  const start = findCookie(header, name);
  if (start < 0) return null;
  let s = start;
  let e = cookieValueEnd(header, start);
  if (e - s >= 2 && header.charCodeAt(s) === 34 && header.charCodeAt(e - 1) === 34) {
    s++;
    e--;
  }
  return header.slice(s, e);
}
