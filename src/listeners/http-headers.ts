// Header rewriting for the HTTP reverse proxy: hop-by-hop removal (RFC 9110 §7.6.1), X-Forwarded-*
// and the client address behind trusted proxies. Works on raw [name, value, ...] arrays so that
// header order, case and duplicates reach the other side as sent.

import type { IncomingHttpHeaders } from 'node:http';
import { normaliseSource, parseIPv4, parseIPv6 } from '../net/address.ts';
import type { SourceSet } from '../policy/index.ts';

/**
 * True for headers that are meaningful only for one connection and must not be forwarded
 * (RFC 9110 §7.6.1, plus the de-facto Keep-Alive and Proxy-Connection). `expect` is answered by
 * seglb itself (node sends 100-continue) and `host` is forwarded separately.
 * @param lower - lowercase header name
 */
export function isHopByHop(lower: string): boolean {
  switch (lower) {
    case 'connection':
    case 'keep-alive':
    case 'proxy-connection':
    case 'transfer-encoding':
    case 'te':
    case 'trailer':
    case 'upgrade':
    case 'proxy-authenticate':
    case 'proxy-authorization':
    case 'http2-settings':
      return true;
    default:
      return false;
  }
}

/**
 * Header names listed in `Connection` (they are hop-by-hop too, RFC 9110 §7.6.1), lowercase.
 * @param connection - the Connection header value(s), or undefined
 * @param into - names already listed by an earlier Connection header (the set is extended and returned)
 * @returns null when there are none besides keep-alive/close (the common case: no allocation)
 */
export function connectionListed(
  connection: string | undefined,
  into: Set<string> | null = null,
): Set<string> | null {
  if (connection === undefined) return into;
  const lower = connection.toLowerCase();
  if (lower === 'keep-alive' || lower === 'close' || lower === 'upgrade') return into;
  const out = into ?? new Set<string>();
  for (const token of lower.split(',')) {
    const t = token.trim();
    if (t && t !== 'keep-alive' && t !== 'close') out.add(t);
  }
  return out.size ? out : null;
}

/** What the forwarding headers should say. */
export interface ForwardingInfo {
  /** Client address (after PROXY protocol / trusted XFF), normalised. */
  readonly client: string;
  /** The direct peer's address (differs from client behind a trusted proxy). */
  readonly peer: string;
  /** The peer is a trusted proxy: its X-Forwarded-* are kept and extended. */
  readonly trusted: boolean;
  readonly proto: 'http' | 'https';
  readonly xff: boolean;
  readonly xfProto: boolean;
  readonly xfHost: boolean;
}

/**
 * Builds the request header list for the backend from the client's raw headers.
 * Drops hop-by-hop headers (and those the client lists in Connection, except that a client can never
 * make seglb drop its own X-Forwarded-* or the Host header this way), drops `expect`, forwards only the
 * first Host header (the one node parsed and the L7 rules judged; RFC 9112 §3.2 allows only one), and
 * sets X-Forwarded-For/-Proto/-Host:
 * from an untrusted peer incoming X-Forwarded-* are discarded and replaced; from a trusted proxy they
 * are kept and the peer is appended to X-Forwarded-For (the nginx $proxy_add_x_forwarded_for behaviour).
 * From an untrusted peer `Forwarded` (RFC 7239) and `X-Real-IP` are dropped too: seglb does not set
 * them, and a backend that believes them would take the client's word for its own address.
 * @param raw - node's req.rawHeaders: [name, value, name, value, ...]
 * @returns a flat [name, value, ...] array for undici
 */
export function buildUpstreamHeaders(raw: readonly string[], info: ForwardingInfo): string[] {
  const out: string[] = [];
  let listed: Set<string> | null = null;
  let incomingXff: string | undefined;
  let incomingProto: string | undefined;
  let incomingHost: string | undefined;
  let host: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string;
    // Every Connection header counts (RFC 9110 §5.3: repeated fields form one list).
    if (name.length === 10 && name.toLowerCase() === 'connection')
      listed = connectionListed(raw[i + 1], listed);
  }
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string;
    const value = raw[i + 1] as string;
    const lower = name.toLowerCase();
    if (isHopByHop(lower) || lower === 'expect') continue;
    if (lower === 'x-forwarded-for') {
      incomingXff = incomingXff === undefined ? value : `${incomingXff}, ${value}`;
      continue;
    }
    if (lower === 'x-forwarded-proto') {
      incomingProto ??= value;
      continue;
    }
    if (lower === 'x-forwarded-host') {
      incomingHost ??= value;
      continue;
    }
    if (!info.trusted && isClientAddressClaim(lower)) continue;
    if (lower === 'host') {
      if (host !== undefined) continue;
      host = value;
    } else if (listed?.has(lower)) continue;
    out.push(name, value);
  }
  if (info.xff) {
    if (info.trusted && incomingXff !== undefined)
      out.push('x-forwarded-for', `${incomingXff}, ${info.peer}`);
    else out.push('x-forwarded-for', info.client);
  } else if (info.trusted && incomingXff !== undefined) out.push('x-forwarded-for', incomingXff);
  if (info.xfProto)
    out.push('x-forwarded-proto', info.trusted && incomingProto !== undefined ? incomingProto : info.proto);
  if (info.xfHost && (host !== undefined || (info.trusted && incomingHost !== undefined))) {
    out.push(
      'x-forwarded-host',
      info.trusted && incomingHost !== undefined ? incomingHost : (host as string),
    );
  }
  return out;
}

/** Headers other than X-Forwarded-* through which a client could claim an address (dropped when untrusted). */
function isClientAddressClaim(lower: string): boolean {
  return lower === 'forwarded' || lower === 'x-real-ip';
}

/**
 * The forwarding headers of a WebSocket upgrade (proxied by http-proxy-3 from node's header object),
 * with the same rules as buildUpstreamHeaders: untrusted X-Forwarded-*, Forwarded and X-Real-IP are
 * replaced or removed; a trusted proxy's are kept and extended. Mutates `headers`.
 * @param headers - node's req.headers (lowercase names, repeated X-Forwarded-For joined)
 */
export function sanitiseUpgradeHeaders(headers: IncomingHttpHeaders, info: ForwardingInfo): void {
  const incomingXff = info.trusted ? headers['x-forwarded-for'] : undefined;
  const incomingProto = info.trusted ? headers['x-forwarded-proto'] : undefined;
  const incomingHost = info.trusted ? headers['x-forwarded-host'] : undefined;
  delete headers['x-forwarded-for'];
  delete headers['x-forwarded-proto'];
  delete headers['x-forwarded-host'];
  if (!info.trusted) {
    delete headers.forwarded;
    delete headers['x-real-ip'];
  }
  if (info.xff) headers['x-forwarded-for'] = incomingXff ? `${incomingXff}, ${info.peer}` : info.client;
  else if (incomingXff) headers['x-forwarded-for'] = incomingXff;
  if (info.xfProto) headers['x-forwarded-proto'] = firstValue(incomingProto) ?? info.proto;
  const host = firstValue(incomingHost) ?? headers.host;
  if (info.xfHost && host !== undefined) headers['x-forwarded-host'] = host;
}

function firstValue(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

/**
 * Builds the response header list for the client from the backend's raw headers, dropping
 * hop-by-hop headers and those the backend lists in Connection.
 * @param raw - undici's raw response headers: [name, value, ...] as Buffers or strings
 * @returns a flat [name, value, ...] array for res.writeHead
 */
export function buildDownstreamHeaders(raw: readonly (Buffer | string)[]): string[] {
  const out: string[] = [];
  let listed: Set<string> | null = null;
  for (let i = 0; i < raw.length; i += 2) {
    const name = String(raw[i]);
    if (name.length === 10 && name.toLowerCase() === 'connection')
      listed = connectionListed(latin1(raw[i + 1]), listed);
  }
  for (let i = 0; i < raw.length; i += 2) {
    const name = latin1(raw[i]);
    const lower = name.toLowerCase();
    if (isHopByHop(lower) || listed?.has(lower)) continue;
    out.push(name, latin1(raw[i + 1]));
  }
  return out;
}

function latin1(v: Buffer | string | undefined): string {
  if (v === undefined) return '';
  return typeof v === 'string' ? v : v.toString('latin1');
}

/**
 * The client address behind trusted proxies: the right-most X-Forwarded-For entry that is not itself
 * a trusted proxy (the standard right-to-left walk; left-most entries are client-supplied and can be
 * forged). Returns `peer` when the header is absent or holds no valid address.
 * @param xff - the X-Forwarded-For header value(s)
 * @param peer - the direct peer (a trusted proxy)
 * @param trusted - trusted proxy prefixes
 */
export function clientFromForwardedFor(
  xff: string | string[] | undefined,
  peer: string,
  trusted: SourceSet,
): string {
  if (xff === undefined) return peer;
  const parts = (Array.isArray(xff) ? xff.join(',') : xff).split(',');
  let candidate = peer;
  for (let i = parts.length - 1; i >= 0; i--) {
    const addr = normaliseSource((parts[i] as string).trim());
    if (!isIpAddress(addr)) break;
    candidate = addr;
    if (!trusted.has(addr)) return addr;
  }
  return candidate;
}

const scratch = new Uint32Array(4);

/** A bare IPv4 or IPv6 address (no port, brackets or zone): anything else ends the XFF walk. */
function isIpAddress(s: string): boolean {
  return parseIPv4(s) >= 0 || (s.indexOf('%') === -1 && parseIPv6(s, scratch));
}
