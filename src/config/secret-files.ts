// Permission check of the files a config names that hold secrets (TLS private keys, the admin
// tokens file, the cluster key): one readable by group or others is reported, so that `seglb run`
// and `seglb check` can warn (as ssh does for a private key, without refusing to start).

import { statSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import type { SeglbConfig } from './types.ts';
import { formatKeyPath, type KeyPathStep } from './yaml-positions.ts';

/** A secret file whose mode lets group or others read (or write) it. */
export interface SecretFileWarning {
  readonly file: string;
  /** Where the config names it, e.g. `segments.web.vips[0].tls.certificates[0].key_file`. */
  readonly keyPath: string;
  /** Permission bits, octal text (`0644`). */
  readonly mode: string;
  /** One line for the log: what is wrong and how to fix it. */
  readonly message: string;
}

/**
 * The secret files of a loaded config (paths already absolute) whose permissions include any group
 * or other bit. Files that cannot be stat'ed are skipped (validation has reported them).
 * @param config - a validated config
 * @param configDir - folder of the config file, for paths not yet resolved (the cluster key)
 */
export function secretFileWarnings(config: SeglbConfig, configDir: string): SecretFileWarning[] {
  const files: [string, KeyPathStep[]][] = [];
  for (const [name, seg] of Object.entries(config.segments)) {
    seg.vips.forEach((vip, i) => {
      vip.tls?.certificates.forEach((c, j) => {
        if (c.key_file)
          files.push([c.key_file, ['segments', name, 'vips', i, 'tls', 'certificates', j, 'key_file']]);
      });
    });
  }
  if (config.admin) {
    files.push([config.admin.tokens_file, ['admin', 'tokens_file']]);
    if (config.admin.tls) files.push([config.admin.tls.key_file, ['admin', 'tls', 'key_file']]);
  }
  // The cluster's own key file key, when the cluster section has one.
  const clusterKey = (config.cluster as { key_file?: unknown } | undefined)?.key_file;
  if (typeof clusterKey === 'string') files.push([clusterKey, ['cluster', 'key_file']]);

  const out: SecretFileWarning[] = [];
  for (const [written, path] of files) {
    const file = isAbsolute(written) ? written : join(configDir, written);
    let mode: number;
    try {
      mode = statSync(file).mode & 0o777;
    } catch {
      continue;
    }
    if ((mode & 0o077) === 0) continue;
    const octal = `0${mode.toString(8).padStart(3, '0')}`;
    const can = [mode & 0o044 ? 'read' : '', mode & 0o022 ? 'write' : ''].filter(Boolean).join(' and ');
    out.push({
      file,
      keyPath: formatKeyPath(path),
      mode: octal,
      message: `${file} (${formatKeyPath(path)}) holds a secret but has mode ${octal}: group or others can ${can || 'use'} it; run chmod 600 ${file}`,
    });
  }
  return out;
}
