// Outbound segmentation: seglb only dials backends inside the segment's backend_subnets. Static
// addresses are checked when the config loads; hostnames here, on the resolved address, at dial
// time (so a DNS answer outside the segment never gets a SYN).

import { lookup } from 'node:dns';
import { isIP } from 'node:net';
import { buildConnector } from 'undici';
import { PoolError } from '../errors.ts';
import { normaliseSource } from '../net/address.ts';
import type { SourceSet } from '../policy/index.ts';
import type { BackendTlsOptions } from './backend-tls.ts';

/** Called with the verdict of every dial-time check, for counters and logs. */
export type OutboundObserver = (host: string, address: string, allowed: boolean) => void;

/**
 * Resolves a backend host and checks the address against the segment's subnets.
 * @param host - IP literal or hostname
 * @param subnets - the segment's compiled backend_subnets
 * @param callback - (null, address) when allowed; (PoolError SEGLB_POOL_OUTBOUND_DENIED, httpStatus 502)
 *   when the address is outside; the DNS error when resolution fails
 */
export function resolveAllowedAddress(
  host: string,
  subnets: SourceSet,
  observe: OutboundObserver,
  callback: (err: Error | null, address: string) => void,
): void {
  if (isIP(host)) {
    const ok = subnets.has(normaliseSource(host));
    observe(host, host, ok);
    callback(ok ? null : deniedError(host, host), host);
    return;
  }
  lookup(host, { verbatim: true }, (err, address) => {
    if (err) {
      callback(err, '');
      return;
    }
    const normalised = normaliseSource(address);
    const ok = subnets.has(normalised);
    observe(host, normalised, ok);
    callback(ok ? null : deniedError(host, normalised), normalised);
  });
}

function deniedError(host: string, address: string): PoolError {
  const shown = host === address ? address : `${host} (resolved to ${address})`;
  return new PoolError(
    'SEGLB_POOL_OUTBOUND_DENIED',
    `backend ${shown} is outside the segment's backend_subnets`,
    502,
  );
}

/** undici's connector signature. */
export type Connector = buildConnector.connector;

/**
 * Builds an undici connector that runs the outbound check on every new backend connection.
 * @param connectTimeoutMs - TCP (and TLS) connect timeout, ms
 * @param subnets - allowed destination prefixes
 * @param observe - called with every check's outcome
 * @param tls - TLS settings when the pool connects with TLS (the dispatcher's origin is https:)
 */
export function createCheckedConnector(
  connectTimeoutMs: number,
  subnets: SourceSet,
  observe: OutboundObserver,
  tls: BackendTlsOptions | null = null,
): Connector {
  const base = buildConnector({
    timeout: connectTimeoutMs,
    keepAlive: true,
    keepAliveInitialDelay: 60_000,
    // HTTP/1.1 only: the data path forwards HTTP/1.1 messages and relies on its framing.
    allowH2: false,
    ...(tls === null
      ? {}
      : { servername: tls.servername, ca: tls.ca, rejectUnauthorized: tls.rejectUnauthorized }),
  });
  return (options, callback) => {
    resolveAllowedAddress(options.hostname, subnets, observe, (err, address) => {
      if (err) {
        callback(err, null);
        return;
      }
      // TLS to a backend named by hostname still verifies that name (SNI), not the address.
      const servername = options.servername || (isIP(options.hostname) ? undefined : options.hostname);
      base({ ...options, hostname: address, servername }, callback);
    });
  };
}
