// Reads, parses and builds HAProxy PROXY protocol headers (v1 text and v2 binary), per
// https://www.haproxy.org/download/3.0/doc/proxy-protocol.txt. Listeners call readProxyHeader on a
// paused socket from a trusted peer; the payload after the header is left untouched for the next reader.

import { isIPv4, isIPv6, type Socket } from 'node:net';
import { ListenerError } from '../errors.ts';

/** Result of reading a PROXY header from a freshly accepted (paused) socket. */
export type ProxyHeaderResult =
  | {
      kind: 'proxied';
      version: 1 | 2;
      /** The original client address: v1 text as sent, v2 dotted quad or RFC 5952 IPv6. IPv4-mapped stays mapped. */
      sourceAddress: string;
      /** The original client port, 0..65535. */
      sourcePort: number;
      /** The address the client connected to, same form as sourceAddress. */
      destinationAddress: string;
      /** The port the client connected to, 0..65535. */
      destinationPort: number;
    }
  /** v2 LOCAL command, v2 AF_UNSPEC / AF_UNIX, or v1 "PROXY UNKNOWN": use the socket's own addresses. */
  | { kind: 'local'; version: 1 | 2 }
  /** Malformed, too long, timed out, or the connection ended before the header was complete. */
  | { kind: 'invalid'; reason: string };

/** What parseProxyHeader returns: `incomplete`, or a result plus how many bytes the header took. */
export type ProxyHeaderParse = { kind: 'incomplete' } | (ProxyHeaderResult & { consumed: number });

/** A v1 line is at most 107 bytes including CRLF (spec §2.1: "PROXY UNKNOWN" + two full IPv6 + ports). */
export const PROXY_V1_MAX_BYTES = 107;
/** seglb's bound on a whole v2 header (16 fixed bytes + addresses + TLVs), in bytes; larger is invalid. */
export const PROXY_V2_MAX_BYTES = 4096;

const V1_PREFIX = Buffer.from('PROXY ', 'latin1');
// The 12-byte v2 signature (spec §2.2); its first byte (CR) can never start a v1 header ("P").
const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const V2_FIXED_BYTES = 16;
const CR = 0x0d;
const LF = 0x0a;

// v2 byte 13: high nibble address family, low nibble transport (spec §2.2).
const AF_UNSPEC = 0x0;
const AF_INET = 0x1;
const AF_INET6 = 0x2;
const AF_UNIX = 0x3;
const TRANSPORT_STREAM = 0x1;
const TRANSPORT_MAX = 0x2;
const V2_ADDRESS_BYTES_INET = 12;
const V2_ADDRESS_BYTES_INET6 = 36;
const V2_ADDRESS_BYTES_UNIX = 216;

/**
 * Parses a PROXY header at the start of `buf`, v1 or v2, chosen by the first byte ("P" or the v2
 * signature's CR; spec §2.2 guarantees the two never collide). Pure: never reads past the header.
 *
 * - `{ kind: 'incomplete' }` while every byte so far can still begin a valid header. Bytes that
 *   cannot (wrong first bytes, a non-printable byte in a v1 line, a bare LF, a v2 version other than 2)
 *   give `invalid` at once, without waiting for more.
 * - v1 (spec §2.1): exactly `PROXY TCP4|TCP6 <src> <dst> <sport> <dport>\r\n` with single spaces,
 *   addresses valid for their family (IPv4 without leading zeros, IPv6 without zone id), ports
 *   0..65535 in decimal without leading zeros; or `PROXY UNKNOWN[ anything]\r\n` → `local`.
 *   No CRLF within the first 107 bytes → invalid.
 * - v2 (spec §2.2): signature, version 2, command LOCAL (→ `local`, protocol block ignored) or PROXY;
 *   with PROXY, AF_INET / AF_INET6 over STREAM → `proxied` (IPv6 printed per RFC 5952 §4, IPv4-mapped as
 *   `::ffff:a.b.c.d`); AF_UNSPEC, and AF_UNIX over STREAM, → `local` (the real client is not an IP, so
 *   the trusted proxy's own address stands, as HAProxy does); DGRAM or unspecified transport over an IP
 *   family, unknown families or transports → invalid. The length must cover the address block, the whole
 *   header must be ≤ 4096 bytes, and TLVs (spec §2.2.1–2.2.8) must tile the rest exactly; their content
 *   is skipped (no CRC32C check, no ALPN/authority/SSL use).
 *
 * @param buf - bytes received so far from the connection, header first
 * @returns `incomplete`, or the result with `consumed` = header length in bytes (0 for `invalid`)
 */
export function parseProxyHeader(buf: Buffer): ProxyHeaderParse {
  if (buf.length === 0) return INCOMPLETE;
  if (buf[0] === V1_PREFIX[0]) return parseV1(buf);
  if (buf[0] === V2_SIGNATURE[0]) return parseV2(buf);
  return invalidParse('not a PROXY protocol header');
}

/**
 * Reads exactly one PROXY header from `socket` and leaves everything after it unread.
 *
 * The socket must be freshly accepted (e.g. `pauseOnConnect: true`), with nothing read and no encoding
 * set. This resumes it, takes chunks as they come, and as soon as the header is complete pauses it and
 * `unshift`s the bytes after the header, so the next reader (an `http.Server`, a TLS wrapper, a TCP
 * pipe) sees the payload intact. The socket is left paused on every outcome and never destroyed here:
 * on `invalid` the caller resets it.
 *
 * Handing off to an `http.Server`: `server.emit('connection', socket); socket.resume();` in the same
 * tick. http.Server does not resume a paused socket, and from the emit on it parses bytes straight from
 * the socket's handle, so resuming later would let newly arrived bytes overtake the unshifted ones
 * (checked on Node 24; test/listeners/proxy-protocol.test.ts covers the same-tick form).
 *
 * While reading, this holds its own 'data', 'end', 'close' and 'error' listeners and removes them all
 * before resolving; the caller keeps its own 'error' listener as for any accepted socket.
 *
 * @param socket - the accepted connection from a trusted peer (inside the VIP's trusted CIDRs)
 * @param timeoutMs - how long the whole header may take to arrive, in milliseconds (> 0)
 * @returns the parsed result (a `consumed` byte count is also present on it); never rejects: a
 *   malformed or oversize header, a timeout, an error or an early close all give `invalid` with a reason.
 *   Garbage is reported on the first bytes that cannot start a header, not at the timeout.
 * @throws RangeError synchronously when timeoutMs is not a positive finite number
 */
export function readProxyHeader(socket: Socket, timeoutMs: number): Promise<ProxyHeaderResult> {
  if (!(timeoutMs > 0 && Number.isFinite(timeoutMs))) {
    throw new RangeError(`timeoutMs must be a positive number of milliseconds, got ${timeoutMs}`);
  }
  return new Promise((resolve) => {
    if (socket.destroyed || socket.readableEnded) {
      resolve({ kind: 'invalid', reason: 'connection closed before the PROXY header' });
      return;
    }
    let received: Buffer | null = null;
    let settled = false;

    const finish = (result: ProxyHeaderResult, rest: Buffer | null): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      // Pause and drop the 'data' listener before unshifting, or the rest would be emitted straight back.
      socket.pause();
      socket.removeListener('data', onData);
      socket.removeListener('end', onEnd);
      socket.removeListener('close', onEnd);
      socket.removeListener('error', onError);
      if (rest !== null && rest.length > 0) socket.unshift(rest);
      resolve(result);
    };
    const onData = (chunk: Buffer): void => {
      const buf = received === null ? chunk : Buffer.concat([received, chunk]);
      const parsed = parseProxyHeader(buf);
      if (parsed.kind === 'incomplete') {
        received = buf;
        return;
      }
      finish(parsed, parsed.kind === 'invalid' ? null : buf.subarray(parsed.consumed));
    };
    const onEnd = (): void =>
      finish({ kind: 'invalid', reason: 'connection closed before the PROXY header' }, null);
    const onError = (err: Error): void =>
      finish({ kind: 'invalid', reason: `socket error before the PROXY header: ${err.message}` }, null);
    const onTimeout = (): void =>
      finish({ kind: 'invalid', reason: `no complete PROXY header within ${timeoutMs} ms` }, null);

    const timer = setTimeout(onTimeout, timeoutMs);
    socket.on('data', onData);
    socket.on('end', onEnd);
    socket.on('close', onEnd);
    socket.on('error', onError);
    socket.resume();
  });
}

/**
 * Builds a PROXY header announcing a TCP connection from `src` to `dst`.
 *
 * v1 (spec §2.1): `PROXY TCP4|TCP6 <src> <dst> <sport> <dport>\r\n`, IPv6 in RFC 5952 form so the
 * line always fits the 107-byte limit whatever form the caller used. v2 (spec §2.2):
 * signature, PROXY command, AF_INET or AF_INET6 over STREAM, addresses and ports in network order, no
 * TLVs. When one address is IPv4 and the other IPv6, the IPv4 one is written IPv4-mapped
 * (`::ffff:a.b.c.d`) and the header uses IPv6, as HAProxy's send-proxy does.
 *
 * @param version - 1 (text) or 2 (binary)
 * @param src - original client: IPv4 or IPv6 literal (no zone id), port 0..65535
 * @param dst - address the client connected to, same rules
 * @returns a new Buffer holding only the header (at most 104 bytes for v1, 52 for v2)
 * @throws ListenerError SEGLB_PROXY_PROTOCOL_INVALID when an address or port is not valid, or version is not 1 or 2
 */
export function encodeProxyHeader(
  version: 1 | 2,
  src: { address: string; port: number },
  dst: { address: string; port: number },
): Buffer {
  if (version !== 1 && version !== 2) throw encodeError(`version must be 1 or 2, got ${String(version)}`);
  const srcFamily = addressFamily(src.address, 'source');
  const dstFamily = addressFamily(dst.address, 'destination');
  checkPort(src.port, 'source');
  checkPort(dst.port, 'destination');
  // Mixed families: both go as IPv6, the IPv4 one mapped (HAProxy's make_proxy_line does the same).
  const family = srcFamily === dstFamily ? srcFamily : 6;
  const ipBytes = family === 4 ? 4 : 16;
  const addressBytes = family === 4 ? V2_ADDRESS_BYTES_INET : V2_ADDRESS_BYTES_INET6;
  const out = Buffer.alloc(V2_FIXED_BYTES + addressBytes);
  V2_SIGNATURE.copy(out, 0);
  out[12] = 0x21; // version 2, command PROXY
  out[13] = ((family === 4 ? AF_INET : AF_INET6) << 4) | TRANSPORT_STREAM;
  out.writeUInt16BE(addressBytes, 14);
  writeAddress(src.address, ipBytes, out, V2_FIXED_BYTES);
  writeAddress(dst.address, ipBytes, out, V2_FIXED_BYTES + ipBytes);
  out.writeUInt16BE(src.port, V2_FIXED_BYTES + 2 * ipBytes);
  out.writeUInt16BE(dst.port, V2_FIXED_BYTES + 2 * ipBytes + 2);
  if (version === 2) return out;
  // v1 text from the bytes: IPv6 comes out in RFC 5952 form, so the line always fits in 107 bytes.
  const proto = family === 4 ? 'TCP4' : 'TCP6';
  const format = family === 4 ? formatIPv4 : formatIPv6;
  const source = format(out, V2_FIXED_BYTES);
  const destination = format(out, V2_FIXED_BYTES + ipBytes);
  return Buffer.from(`PROXY ${proto} ${source} ${destination} ${src.port} ${dst.port}\r\n`, 'latin1');
}

// ---------------------------------------------------------------------------------------------------
// v1 (spec §2.1)

const INCOMPLETE: ProxyHeaderParse = { kind: 'incomplete' };

function parseV1(buf: Buffer): ProxyHeaderParse {
  const prefixBytes = Math.min(buf.length, V1_PREFIX.length);
  if (buf.compare(V1_PREFIX, 0, prefixBytes, 0, prefixBytes) !== 0) {
    return invalidParse('not a PROXY protocol header');
  }
  // Find CRLF within the first 107 bytes; only printable ASCII may come before it.
  const limit = Math.min(buf.length, PROXY_V1_MAX_BYTES);
  let lineEnd = -1;
  for (let i = prefixBytes; i < limit; i++) {
    const b = buf[i]!;
    if (b === CR) {
      if (i + 1 >= PROXY_V1_MAX_BYTES) return invalidParse('v1 header longer than 107 bytes');
      if (i + 1 >= buf.length) return INCOMPLETE;
      if (buf[i + 1] !== LF) return invalidParse('v1 header: CR not followed by LF');
      lineEnd = i;
      break;
    }
    if (b < 0x20 || b > 0x7e) return invalidParse('v1 header: non-printable byte before CRLF');
  }
  if (lineEnd < 0) {
    return buf.length >= PROXY_V1_MAX_BYTES ? invalidParse('v1 header longer than 107 bytes') : INCOMPLETE;
  }
  const consumed = lineEnd + 2;
  const fields = buf.toString('latin1', V1_PREFIX.length, lineEnd).split(' ');
  const proto = fields[0];
  if (proto === 'UNKNOWN') return { kind: 'local', version: 1, consumed };
  if (proto !== 'TCP4' && proto !== 'TCP6')
    return invalidParse('v1 header: protocol must be TCP4, TCP6 or UNKNOWN');
  if (fields.length !== 5)
    return invalidParse(`v1 ${proto} header needs exactly 4 fields separated by single spaces`);
  const [, sourceAddress = '', destinationAddress = '', sourcePortText = '', destinationPortText = ''] =
    fields;
  const valid = proto === 'TCP4' ? isIPv4 : isValidIPv6Text;
  if (!valid(sourceAddress)) return invalidParse(`v1 ${proto} header: bad source address`);
  if (!valid(destinationAddress)) return invalidParse(`v1 ${proto} header: bad destination address`);
  const sourcePort = parseV1Port(sourcePortText);
  const destinationPort = parseV1Port(destinationPortText);
  if (sourcePort < 0) return invalidParse('v1 header: bad source port');
  if (destinationPort < 0) return invalidParse('v1 header: bad destination port');
  return {
    kind: 'proxied',
    version: 1,
    sourceAddress,
    sourcePort,
    destinationAddress,
    destinationPort,
    consumed,
  };
}

/** Decimal 0..65535 without sign or leading zeros; -1 when not. */
function parseV1Port(text: string): number {
  const n = text.length;
  if (n === 0 || n > 5 || (n > 1 && text.charCodeAt(0) === 0x30)) return -1;
  let value = 0;
  for (let i = 0; i < n; i++) {
    const digit = text.charCodeAt(i) - 0x30;
    if (digit < 0 || digit > 9) return -1;
    value = value * 10 + digit;
  }
  return value <= 65535 ? value : -1;
}

/** An IPv6 literal as v1 allows it: Node's isIPv6 also accepts a `%zone`, which has no place here. */
function isValidIPv6Text(text: string): boolean {
  return isIPv6(text) && !text.includes('%');
}

// ---------------------------------------------------------------------------------------------------
// v2 (spec §2.2)

function parseV2(buf: Buffer): ProxyHeaderParse {
  const signatureBytes = Math.min(buf.length, V2_SIGNATURE.length);
  if (buf.compare(V2_SIGNATURE, 0, signatureBytes, 0, signatureBytes) !== 0) {
    return invalidParse('not a PROXY protocol header');
  }
  if (buf.length <= 12) return INCOMPLETE;
  const versionCommand = buf[12]!;
  if (versionCommand >> 4 !== 2) return invalidParse(`v2 header: version ${versionCommand >> 4}, expected 2`);
  const command = versionCommand & 0x0f;
  if (command > 1) return invalidParse(`v2 header: unknown command ${command}`);
  if (buf.length < V2_FIXED_BYTES) return INCOMPLETE;
  const length = buf.readUInt16BE(14);
  const consumed = V2_FIXED_BYTES + length;
  if (consumed > PROXY_V2_MAX_BYTES)
    return invalidParse(`v2 header of ${consumed} bytes exceeds ${PROXY_V2_MAX_BYTES}`);
  if (buf.length < consumed) return INCOMPLETE;
  // LOCAL: the receiver must use the real endpoints and ignore the protocol block, family included.
  if (command === 0) return { kind: 'local', version: 2, consumed };

  const family = buf[13]! >> 4;
  const transport = buf[13]! & 0x0f;
  if (transport > TRANSPORT_MAX) return invalidParse(`v2 header: unknown transport ${transport}`);
  if (family === AF_UNSPEC) return { kind: 'local', version: 2, consumed };
  if (family > AF_UNIX) return invalidParse(`v2 header: unknown address family ${family}`);
  if (transport !== TRANSPORT_STREAM)
    return invalidParse('v2 header: only STREAM (TCP) connections are accepted');
  const addressBytes =
    family === AF_INET
      ? V2_ADDRESS_BYTES_INET
      : family === AF_INET6
        ? V2_ADDRESS_BYTES_INET6
        : V2_ADDRESS_BYTES_UNIX;
  if (length < addressBytes)
    return invalidParse(`v2 header: length ${length} is shorter than its address block`);
  const tlvProblem = checkTlvs(buf, V2_FIXED_BYTES + addressBytes, consumed);
  if (tlvProblem !== null) return invalidParse(tlvProblem);
  if (family === AF_UNIX) return { kind: 'local', version: 2, consumed };

  const at = V2_FIXED_BYTES;
  if (family === AF_INET) {
    return {
      kind: 'proxied',
      version: 2,
      sourceAddress: formatIPv4(buf, at),
      destinationAddress: formatIPv4(buf, at + 4),
      sourcePort: buf.readUInt16BE(at + 8),
      destinationPort: buf.readUInt16BE(at + 10),
      consumed,
    };
  }
  return {
    kind: 'proxied',
    version: 2,
    sourceAddress: formatIPv6(buf, at),
    destinationAddress: formatIPv6(buf, at + 16),
    sourcePort: buf.readUInt16BE(at + 32),
    destinationPort: buf.readUInt16BE(at + 34),
    consumed,
  };
}

/** TLVs are type(1) length(2, big-endian) value; they must fill [start, end) exactly. Null when they do. */
function checkTlvs(buf: Buffer, start: number, end: number): string | null {
  let at = start;
  while (at < end) {
    if (at + 3 > end) return 'v2 header: truncated TLV';
    at += 3 + buf.readUInt16BE(at + 1);
  }
  return at === end ? null : 'v2 header: TLV runs past the header length';
}

function formatIPv4(buf: Buffer, at: number): string {
  return `${buf[at]}.${buf[at + 1]}.${buf[at + 2]}.${buf[at + 3]}`;
}

/** RFC 5952 §4 text: lowercase, no leading zeros, longest run (≥ 2) of zero groups as `::`, first on ties. */
function formatIPv6(buf: Buffer, at: number): string {
  // ::ffff:0:0/96 (IPv4-mapped, RFC 4291 §2.5.5.2) in the mixed notation of RFC 5952 §5, as Node prints it.
  let mapped = buf[at + 10] === 0xff && buf[at + 11] === 0xff;
  for (let i = 0; mapped && i < 10; i++) mapped = buf[at + i] === 0;
  if (mapped) return `::ffff:${formatIPv4(buf, at + 12)}`;

  let bestStart = -1;
  let bestLength = 1;
  let runStart = -1;
  for (let g = 0; g <= 8; g++) {
    const zero = g < 8 && buf.readUInt16BE(at + 2 * g) === 0;
    if (zero) {
      if (runStart < 0) runStart = g;
    } else if (runStart >= 0) {
      if (g - runStart > bestLength) {
        bestStart = runStart;
        bestLength = g - runStart;
      }
      runStart = -1;
    }
  }
  let text = '';
  for (let g = 0; g < 8; g++) {
    if (g === bestStart) {
      text += '::';
      g += bestLength - 1;
      continue;
    }
    if (text.length > 0 && !text.endsWith(':')) text += ':';
    text += buf.readUInt16BE(at + 2 * g).toString(16);
  }
  return text;
}

function invalidParse(reason: string): ProxyHeaderParse {
  return { kind: 'invalid', reason, consumed: 0 };
}

// ---------------------------------------------------------------------------------------------------
// encoding helpers

function addressFamily(address: string, which: string): 4 | 6 {
  if (isIPv4(address)) return 4;
  if (isValidIPv6Text(address)) return 6;
  throw encodeError(`${which} address ${JSON.stringify(address)} is not an IPv4 or IPv6 literal`);
}

function checkPort(port: number, which: string): void {
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw encodeError(`${which} port ${String(port)} is not an integer 0..65535`);
  }
}

/** Writes a validated literal as 4 bytes (IPv4) or 16 bytes (IPv6; an IPv4 one IPv4-mapped). */
function writeAddress(address: string, ipBytes: 4 | 16, out: Buffer, at: number): void {
  if (ipBytes === 16 && !address.includes(':')) {
    out[at + 10] = 0xff;
    out[at + 11] = 0xff;
    writeAddress(address, 4, out, at + 12);
    return;
  }
  if (ipBytes === 4) {
    const parts = address.split('.');
    for (let i = 0; i < 4; i++) out[at + i] = Number(parts[i]);
    return;
  }
  writeIPv6(address, out, at);
}

/** Writes a validated IPv6 literal (optionally with a trailing dotted quad) as 16 bytes. */
function writeIPv6(address: string, out: Buffer, at: number): void {
  const groups: number[] = [];
  const gap = address.indexOf('::');
  const head = gap < 0 ? address : address.slice(0, gap);
  const tail = gap < 0 ? '' : address.slice(gap + 2);
  const headGroups = parseGroups(head);
  const tailGroups = parseGroups(tail);
  groups.push(...headGroups);
  for (let i = headGroups.length + tailGroups.length; i < 8; i++) groups.push(0);
  groups.push(...tailGroups);
  for (let g = 0; g < 8; g++) out.writeUInt16BE(groups[g] ?? 0, at + 2 * g);
}

function parseGroups(text: string): number[] {
  if (text === '') return [];
  const groups: number[] = [];
  for (const part of text.split(':')) {
    if (part.includes('.')) {
      const octets = part.split('.').map(Number);
      groups.push(((octets[0] ?? 0) << 8) | (octets[1] ?? 0), ((octets[2] ?? 0) << 8) | (octets[3] ?? 0));
    } else {
      groups.push(Number.parseInt(part, 16));
    }
  }
  return groups;
}

function encodeError(why: string): ListenerError {
  return new ListenerError('SEGLB_PROXY_PROTOCOL_INVALID', `cannot build a PROXY header: ${why}`);
}
