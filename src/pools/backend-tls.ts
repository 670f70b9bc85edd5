// TLS settings for connections seglb opens to a pool's backends (requests, TCP VIPs, health checks),
// from `pools.NAME.tls` and the CA bundle read at load.

import { isIP } from 'node:net';
import type { BackendTlsConfig } from '../config/types.ts';

/** Options handed to tls.connect / undici's connector for one backend. */
export interface BackendTlsOptions {
  /** SNI and the name the certificate must carry; undefined sends no SNI (IP backends). */
  readonly servername: string | undefined;
  /** PEM CAs; undefined uses Node's bundled CAs. */
  readonly ca: string | undefined;
  readonly rejectUnauthorized: boolean;
}

/**
 * The TLS options for one backend, or null when the pool does not use TLS.
 * @param config - the pool's `tls:` section
 * @param ca - the CA bundle read from `tls.ca_file` at load, or null
 * @param host - the backend host as configured (a hostname is the default servername)
 */
export function backendTlsOptions(
  config: BackendTlsConfig | undefined,
  ca: string | null,
  host: string,
): BackendTlsOptions | null {
  if (config === undefined) return null;
  return {
    servername: config.servername ?? (isIP(host) ? undefined : host),
    ca: ca ?? undefined,
    rejectUnauthorized: config.verify,
  };
}
