// Parses HOST:PORT endpoints as used by VIP `listen`, backend `address` and admin/cluster listeners.
// IPv6 hosts are bracketed, as in URLs (RFC 3986 §3.2.2): [::]:443, [2001:db8::1]:80.

import { isIP } from 'node:net';
import { NetError } from '../errors.ts';

/** A parsed endpoint. `host` is the address or hostname without brackets; `port` 0..65535. */
export interface Endpoint {
  readonly host: string;
  readonly port: number;
  /** 4 or 6 for an IP literal, 0 for a hostname. */
  readonly family: 0 | 4 | 6;
}

/**
 * Parses `HOST:PORT`. Bracketed IPv6 (`[::1]:80`), IPv4 (`127.0.0.1:80`) or a DNS hostname
 * (`backend.internal:8080`, RFC 1123 labels).
 * @param text - the endpoint string
 * @param allowPortZero - accept port 0 (listen on an ephemeral port; used by tests)
 * @throws NetError SEGLB_NET_INVALID_ENDPOINT when the text is not HOST:PORT
 */
export function parseEndpoint(text: string, allowPortZero = false): Endpoint {
  const colon = text.lastIndexOf(':');
  if (colon <= 0) throw invalid(text, 'expected HOST:PORT');
  let host = text.slice(0, colon);
  const portText = text.slice(colon + 1);
  if (!/^[0-9]{1,5}$/.test(portText)) throw invalid(text, 'port must be a number 1-65535');
  const port = Number(portText);
  if (port > 65535 || (port === 0 && !allowPortZero)) throw invalid(text, 'port must be a number 1-65535');
  if (host.startsWith('[')) {
    if (!host.endsWith(']')) throw invalid(text, 'unterminated [IPv6] address');
    host = host.slice(1, -1);
    if (isIP(host) !== 6) throw invalid(text, `${host} is not an IPv6 address`);
    return { host, port, family: 6 };
  }
  if (host.includes(':')) throw invalid(text, 'an IPv6 address must be written in brackets, e.g. [::1]:80');
  const family = isIP(host);
  if (family === 4) return { host, port, family: 4 };
  if (/^[0-9.]+$/.test(host)) throw invalid(text, `${host} is not an IPv4 address`);
  if (
    !/^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/.test(
      host,
    )
  ) {
    throw invalid(text, `${host} is not a valid hostname`);
  }
  return { host, port, family: 0 };
}

/** Formats an endpoint back as HOST:PORT, bracketing IPv6. */
export function formatEndpoint(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

function invalid(text: string, why: string): NetError {
  return new NetError(
    'SEGLB_NET_INVALID_ENDPOINT',
    `${JSON.stringify(text)} is not a valid endpoint: ${why}`,
  );
}
