// Checks of a parsed request head that node's parser (llhttp, strict mode) lets through but a proxy
// must refuse, because the backend or the L7 rules could read the request differently from seglb:
// the HTTP version, transfer codings, Host syntax and duplicates, and absolute-form targets.

import type { IncomingMessage } from 'node:http';

/** A refusal: the status to answer and a short reason (shown to the client and logged). */
export type RequestRefusal = readonly [status: number, reason: string];

/**
 * reg-name characters (RFC 3986 §3.2.2: unreserved, sub-delims, `%` of pct-encoded). Anything else in
 * a host (space, `@`, `/`, `\`, `?`, `#`, controls, a second `:`) could make the backend see another
 * host than the rules judged (`good.example:80@evil.example`).
 */
const REG_NAME = new Uint8Array(128);
for (const c of "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=%")
  REG_NAME[c.charCodeAt(0)] = 1;

/**
 * @returns null when the request may be forwarded, else the status and reason to refuse it with
 *   (the caller answers and closes the connection)
 */
export function checkRequestHead(req: IncomingMessage): RequestRefusal | null {
  // llhttp accepts any single-digit version; only HTTP/1.x is spoken here (RFC 9110 §15.6.6).
  if (req.httpVersionMajor !== 1) return [505, `HTTP/${req.httpVersion} is not supported`];
  const te = req.headers['transfer-encoding'];
  if (te !== undefined) {
    // RFC 9112 §6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing.
    if (req.httpVersionMinor === 0) return [400, 'Transfer-Encoding in an HTTP/1.0 request'];
    // llhttp has checked that chunked is the final coding; any other coding (gzip, chunked) would
    // be lost when seglb re-frames the body, so it is refused as nginx does (RFC 9112 §6.1: 501).
    if (te.length !== 7 || te.toLowerCase() !== 'chunked')
      return [501, 'transfer codings other than chunked are not supported'];
  }
  let host: string | undefined;
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string;
    if (name.length === 4 && name.toLowerCase() === 'host') {
      // RFC 9112 §3.2: more than one Host is answered with 400.
      if (host !== undefined) return [400, 'more than one Host header'];
      host = raw[i + 1] as string;
    }
  }
  if (host !== undefined && !isValidHost(host)) return [400, 'invalid Host header'];
  const target = req.url ?? '/';
  if (target.charCodeAt(0) !== 47 /* / */ && target !== '*') {
    // Absolute-form (RFC 9112 §3.2.2): its authority replaces Host. seglb forwards origin-form with
    // the Host header, so the two must name the same authority, or the rules would judge one host
    // and a backend that follows the RFC serve another.
    const u = absoluteFormUrl(target);
    if (u === null) return [400, 'invalid request target'];
    if (host === undefined || u.host !== hostAsUrlWrites(u.protocol, host))
      return [400, 'the absolute-form request target names another host than the Host header'];
  }
  return null;
}

/**
 * True when a Host header value is `uri-host [ ":" port ]` (RFC 9110 §7.2): a reg-name or IPv4
 * address, or an IPv6 literal in brackets, then optionally `:` and up to 5 digits. Empty is valid.
 */
export function isValidHost(value: string): boolean {
  const n = value.length;
  let i = 0;
  if (n > 0 && value.charCodeAt(0) === 91 /* [ */) {
    for (i = 1; i < n; i++) {
      const c = value.charCodeAt(i);
      if (c === 93 /* ] */) break;
      const hex = (c >= 48 && c <= 57) || (c >= 97 && c <= 102) || (c >= 65 && c <= 70);
      if (!hex && c !== 58 /* : */ && c !== 46 /* . */) return false;
    }
    if (i >= n) return false;
    i++;
  } else {
    for (; i < n; i++) {
      const c = value.charCodeAt(i);
      if (c === 58 /* : */) break;
      if (c >= 128 || REG_NAME[c] === 0) return false;
    }
  }
  if (i === n) return true;
  if (value.charCodeAt(i) !== 58 /* : */ || n - i - 1 > 5) return false;
  for (i++; i < n; i++) {
    const c = value.charCodeAt(i);
    if (c < 48 || c > 57) return false;
  }
  return true;
}

/** The URL of an http(s) absolute-form target without userinfo; null when invalid. */
function absoluteFormUrl(target: string): URL | null {
  try {
    const u = new URL(target);
    if (u.protocol !== 'http:' && u.protocol !== 'https:') return null;
    if (u.username !== '' || u.password !== '') return null; // userinfo is deprecated (RFC 9110 §4.2.4)
    return u;
  } catch {
    return null;
  }
}

/** A Host header value as URL.host writes it for `scheme` (lowercase, default port dropped). */
function hostAsUrlWrites(scheme: string, host: string): string {
  try {
    return new URL(`${scheme}//${host}/`).host;
  } catch {
    return '';
  }
}
