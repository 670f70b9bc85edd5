// Throw-away TLS certificates for HTTPS tests, made with the openssl command line.

import { execFileSync } from 'node:child_process';
import { join } from 'node:path';

/**
 * Makes a self-signed certificate for `names` (first is the CN; all are subjectAltNames).
 * @returns paths of the PEM certificate and key inside `dir`
 */
export function makeCert(
  dir: string,
  label: string,
  names: readonly string[],
): { cert: string; key: string } {
  const cert = join(dir, `${label}.crt`);
  const key = join(dir, `${label}.key`);
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      key,
      '-out',
      cert,
      '-days',
      '2',
      '-subj',
      `/CN=${names[0]}`,
      '-addext',
      `subjectAltName=${names.map((n) => `DNS:${n}`).join(',')}`,
    ],
    { stdio: 'ignore' },
  );
  return { cert, key };
}
